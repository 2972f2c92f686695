//! The remediator's modules import one way: a test reads every file under
//! `src/`, collects the modules it names through `crate::…` and `super::…`
//! paths (comments and `#[cfg(test)]` parts left out), and fails on any
//! cycle, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `src/kill/plan.rs` → `kill::plan`, `src/kill/mod.rs` → `kill`; `None`
/// for the crate roots.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    let name = parts.join("::");
    (!name.is_empty() && name != "lib" && name != "main").then_some(name)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file that counts as imports: up to its `#[cfg(test)]`
/// part, comment lines dropped and trailing comments cut.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line.split(" //").next().unwrap_or(""));
        out.push('\n');
    }
    out
}

/// The paths (`a::b::c`) written after `prefix` in `code`, a brace group
/// (`prefix{a::b, c}`) giving one path per item.
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect::<String>()
            .trim_end_matches(':')
            .to_string()
    };
    let mut out = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        // `crate::` but not `pidwarden_crate::`.
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(inner.split(',').map(|s| ident(s.trim())));
        } else {
            out.push(ident(rest));
        }
    }
    out
}

/// The longest known module that `path` (relative to the crate) starts with.
fn target(modules: &BTreeSet<String>, path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// Module → the modules it imports.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let named: Vec<(String, PathBuf)> = files
        .into_iter()
        .filter_map(|f| Some((module_of(src, &f)?, f)))
        .collect();
    let modules: BTreeSet<String> = named.iter().map(|(m, _)| m.clone()).collect();
    let mut g = BTreeMap::new();
    for (m, f) in &named {
        let code = code(&std::fs::read_to_string(f).unwrap());
        let parent = m.rsplit_once("::").map(|(p, _)| p.to_string());
        let mut deps = BTreeSet::new();
        for p in paths_after(&code, "crate::") {
            deps.extend(target(&modules, &p));
        }
        for p in paths_after(&code, "super::") {
            let full = match &parent {
                Some(parent) => format!("{parent}::{p}"),
                None => p,
            };
            deps.extend(target(&modules, &full));
        }
        deps.remove(m);
        g.insert(m.clone(), deps);
    }
    g
}

/// The first cycle found, as the modules along it (first repeated last).
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        m: &str,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut cycle = path[at..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(g, d, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|m| visit(g, m, &mut done, &mut Vec::new()))
}

#[test]
fn the_checker_finds_a_cycle_and_reads_paths_as_rust_does() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    let mut acyclic = g.clone();
    acyclic.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&acyclic), None);

    let text = "//! see crate::x\nuse crate::{a::B, b};\nuse super::c::D; // crate::z\nfn f() { crate::d::e(); my_crate::q(); }\n#[cfg(test)]\nmod tests { use crate::t; }\n";
    let code = code(text);
    assert_eq!(paths_after(&code, "crate::"), ["a::B", "b", "d::e"]);
    assert_eq!(paths_after(&code, "super::"), ["c::D"]);
    let modules: BTreeSet<String> = ["kill", "kill::plan"].map(String::from).into();
    assert_eq!(
        target(&modules, "kill::plan::Samples").as_deref(),
        Some("kill::plan")
    );
    assert_eq!(target(&modules, "kill::KillPlan").as_deref(), Some("kill"));
    assert_eq!(target(&modules, "audit::Row"), None);
}

#[test]
fn remediator_modules_import_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    assert!(
        g.contains_key("service") && g.contains_key("kill::plan"),
        "{g:?}"
    );
    if let Some(cycle) = find_cycle(&g) {
        let edges: Vec<String> = g
            .iter()
            .map(|(m, d)| {
                format!(
                    "{m} -> {}",
                    d.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        panic!(
            "import cycle: {}\nthe graph:\n{}",
            cycle.join(" -> "),
            edges.join("\n")
        );
    }
}
