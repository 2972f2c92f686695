//! The configuration file the package and the README ship must let every
//! shipped alert that carries `pidwarden_action` ask for that action (an
//! alert missing from `[actions]` is ignored, which no metric shows), must
//! leave the breaker able to escalate, and must start in dry-run; so must
//! every recipe that starts the remediator (package and systemd unit,
//! compose, DaemonSet).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pidwarden_remediator::alert::Action;
use pidwarden_remediator::config::{Overrides, Settings};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// alertname → `pidwarden_action` for each rule that carries one, read from
/// the rules file's `- alert:` entries and their `labels`.
fn rule_actions(rules: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in rules.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("- alert:") {
            current = Some(name.trim().to_string());
        } else if t.starts_with("- record:") {
            current = None;
        } else if let Some(action) = t.strip_prefix("pidwarden_action:") {
            let name = current.clone().expect("pidwarden_action outside an alert");
            out.insert(name, action.trim().trim_matches('"').to_string());
        }
    }
    out
}

fn shipped() -> Settings {
    Settings::load(
        Some(&repo().join("deploy/remediator.toml")),
        &Overrides::default(),
    )
    .expect("deploy/remediator.toml loads")
}

#[test]
fn every_action_alert_may_ask_for_its_action() {
    let rules = std::fs::read_to_string(repo().join("alerts/pidwarden.rules.yml")).unwrap();
    let wanted = rule_actions(&rules);
    assert_eq!(
        wanted.len(),
        4,
        "the shipped rules carry four action alerts: {wanted:?}"
    );
    let settings = shipped();
    let allowed = settings.allowed.as_ref().expect("[actions] present");
    for (alert, action) in &wanted {
        let action = Action::parse(action).expect("a known action");
        let acts = allowed
            .get(alert)
            .unwrap_or_else(|| panic!("{alert} missing from [actions]: it would be ignored"));
        assert!(acts.contains(&action), "{alert} may not ask for {action:?}");
    }
    for alert in allowed.keys() {
        assert!(
            wanted.contains_key(alert),
            "[actions] names {alert}, which no shipped rule sends with pidwarden_action"
        );
    }
}

#[test]
fn breaker_can_escalate_and_first_day_is_dry_run() {
    let settings = shipped();
    assert!(settings.dry_run, "the shipped config starts in dry-run");
    assert!(settings.escalate);
    let allowed = settings.allowed.as_ref().unwrap();
    // Escalation needs a kill alert that may also ask for restart.
    let rules = std::fs::read_to_string(repo().join("alerts/pidwarden.rules.yml")).unwrap();
    for (alert, action) in rule_actions(&rules) {
        if action == "kill-duplicates" {
            assert!(
                allowed[&alert].contains(&Action::Restart),
                "{alert}: restart not allowed, so the breaker could never escalate"
            );
        }
    }
}

#[test]
fn readme_and_reference_point_at_the_shipped_config() {
    for doc in ["README.md", "docs/remediator.md", "docs/install.md"] {
        let text = std::fs::read_to_string(repo().join(doc)).unwrap();
        assert!(text.contains("deploy/remediator.toml"), "{doc}");
        // No second, drifting copy of the [actions] table.
        assert!(
            !text.contains("PidwardenDuplicatesGrowing = ["),
            "{doc} shows an [actions] entry for an alert that never asks for an action"
        );
    }
}

#[test]
fn readme_is_a_short_index_whose_links_exist() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 200,
        "README.md has {lines} lines; details belong in docs/"
    );
    let mut linked = 0;
    for part in readme.split("](").skip(1) {
        let target = part.split([')', '#']).next().unwrap();
        if target.contains("://") || target.is_empty() {
            continue;
        }
        assert!(
            repo().join(target).exists(),
            "README links to {target}, which is missing"
        );
        linked += 1;
    }
    assert!(linked >= 10, "README links to {linked} files only");
    // The test command README gives is the one CI runs.
    assert!(
        readme.contains("\nscripts/test.sh\n"),
        "README gives no test command"
    );
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(
        ci.lines()
            .any(|l| l.trim_start().starts_with("scripts/test.sh")),
        ".ci/run does not call scripts/test.sh"
    );
}

/// alertname → its `runbook_url` annotation (None when it has none).
fn rule_runbook_urls(rules: &str) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in rules.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("- alert:") {
            let name = name.trim().to_string();
            out.insert(name.clone(), None);
            current = Some(name);
        } else if t.starts_with("- record:") {
            current = None;
        } else if let Some(url) = t.strip_prefix("runbook_url:") {
            let name = current.clone().expect("runbook_url outside an alert");
            let url = url.trim().trim_matches(['\'', '"']).to_string();
            out.insert(name, Some(url));
        }
    }
    out
}

/// The anchor GitHub gives a Markdown heading: lower case, spaces as `-`,
/// other punctuation dropped.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_links_to_its_runbook_section() {
    let rules = std::fs::read_to_string(repo().join("alerts/pidwarden.rules.yml")).unwrap();
    let cargo = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let repository = cargo
        .lines()
        .find_map(|l| l.trim().strip_prefix("repository = "))
        .expect("Cargo.toml names its repository")
        .trim_matches('"');
    let base = format!("{repository}/blob/main/docs/runbooks.md#");
    let runbooks = std::fs::read_to_string(repo().join("docs/runbooks.md")).unwrap();
    let anchors: Vec<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(github_anchor)
        .collect();
    let urls = rule_runbook_urls(&rules);
    assert!(urls.len() >= 19, "alerts found in the rules: {urls:?}");
    for (alert, url) in &urls {
        let url = url
            .as_deref()
            .unwrap_or_else(|| panic!("{alert} has no runbook_url annotation"));
        let anchor = url
            .strip_prefix(&base)
            .unwrap_or_else(|| panic!("{alert}: runbook_url {url} is not under {base}"));
        assert_eq!(
            anchor,
            alert.to_lowercase(),
            "{alert}: runbook_url points at another section"
        );
        assert!(
            anchors.iter().any(|a| a == anchor),
            "{alert}: docs/runbooks.md has no `## {alert}` section for #{anchor}"
        );
    }
}

#[test]
fn no_rule_selects_on_the_job_name() {
    // Scrape configs name their jobs as they like (a PodMonitor's default is
    // `<namespace>/<name>`); a rule that selects on one is silent elsewhere.
    let rules = std::fs::read_to_string(repo().join("alerts/pidwarden.rules.yml")).unwrap();
    for (n, line) in rules.lines().enumerate() {
        let code = line.split('#').next().unwrap();
        let squeezed: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        assert!(
            !squeezed.contains("job=")
                && !squeezed.contains("job!=")
                && !squeezed.contains("job=~"),
            "alerts/pidwarden.rules.yml:{}: selects on job: {line}",
            n + 1
        );
    }
}

/// alertname → (its `expr`, its `for:`), read from the rules file.
fn rule_exprs(rules: &str) -> BTreeMap<String, (String, String)> {
    let mut out: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_expr: Option<usize> = None; // indentation of a block `expr: |`
    for line in rules.lines() {
        let t = line.trim();
        let indent = line.len() - line.trim_start().len();
        if let Some(depth) = in_expr {
            if t.is_empty() || indent > depth {
                if let Some(name) = &current {
                    let e = &mut out.get_mut(name).unwrap().0;
                    e.push(' ');
                    e.push_str(t);
                }
                continue;
            }
            in_expr = None;
        }
        if let Some(name) = t.strip_prefix("- alert:") {
            let name = name.trim().to_string();
            out.insert(name.clone(), Default::default());
            current = Some(name);
        } else if t.starts_with("- record:") {
            current = None;
        } else if let (Some(e), Some(name)) = (t.strip_prefix("expr:"), &current) {
            if e.trim() == "|" {
                in_expr = Some(indent);
            } else {
                out.get_mut(name).unwrap().0.push_str(e.trim());
            }
        } else if let (Some(f), Some(name)) = (t.strip_prefix("for:"), &current) {
            out.get_mut(name).unwrap().1 = f.trim().to_string();
        }
    }
    out
}

#[test]
fn every_threshold_and_for_is_in_the_tuning_table() {
    let rules = std::fs::read_to_string(repo().join("alerts/pidwarden.rules.yml")).unwrap();
    let alerts_md = std::fs::read_to_string(repo().join("docs/alerts.md")).unwrap();
    let tuning = alerts_md
        .split("\n## Tuning\n")
        .nth(1)
        .expect("docs/alerts.md has a `## Tuning` section");
    let tuning = tuning.split("\n## ").next().unwrap();
    // A comparison with a number on its right, past any `on(…)` / `group_left`.
    let comparison = regex::Regex::new(
        r"(>=|<=|==|!=|>|<)\s*(?:on\s*\([^)]*\)\s*)?(?:group_(?:left|right)\s*(?:\([^)]*\))?\s*)?(-?[0-9][0-9.]*)",
    )
    .unwrap();
    let code_span = regex::Regex::new(r"`([^`]+)`").unwrap();
    let exprs = rule_exprs(&rules);
    assert!(exprs.len() >= 19, "alerts found: {:?}", exprs.keys());
    let mut checked = 0;
    for (alert, (expr, for_)) in &exprs {
        assert!(!expr.is_empty(), "{alert}: no expr read");
        assert!(!for_.is_empty(), "{alert}: no `for:` read");
        let rows: Vec<&str> = tuning
            .lines()
            .filter(|l| l.starts_with(&format!("| `{alert}` |")))
            .collect();
        assert!(!rows.is_empty(), "{alert} has no row in the Tuning table");
        let spans: Vec<&str> = rows
            .iter()
            .flat_map(|r| {
                code_span
                    .captures_iter(r)
                    .map(|c| c.get(1).unwrap().as_str())
            })
            .collect();
        for c in comparison.captures_iter(expr) {
            let (op, number) = (&c[1], &c[2]);
            let wanted = regex::Regex::new(&format!(
                r"(^|[^<>=!]){}\s*{}($|[^0-9.])",
                regex::escape(op),
                regex::escape(number)
            ))
            .unwrap();
            assert!(
                spans.iter().any(|s| wanted.is_match(s)),
                "{alert}: the threshold `{op} {number}` is not in its Tuning rows"
            );
            checked += 1;
        }
        assert!(
            spans.contains(&format!("for: {for_}").as_str()),
            "{alert}: `for: {for_}` is not in its Tuning rows"
        );
    }
    assert!(
        checked >= 25,
        "only {checked} thresholds found in the rules"
    );
}

// Every recipe starts in dry-run: the remediator's command line in each
// recipe (the systemd unit the package and a by-hand install use, the
// compose file, the DaemonSet) is read with the config file it points to,
// and resolved as the binary resolves it (flags over the file).

/// The value of `--flag=value` or `--flag value` in `args`.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let eq = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if let Some(v) = a.strip_prefix(&eq) {
            Some(v)
        } else if a == flag {
            args.get(i + 1).map(String::as_str)
        } else {
            None
        }
    })
}

/// Fails unless the remediator started with `args` would be in dry-run;
/// `config_source` maps the `--config` path the daemon sees to the file in
/// this repository that lands there.
fn assert_starts_dry_run(recipe: &str, args: &[String], config_source: impl Fn(&str) -> PathBuf) {
    for a in args {
        assert!(
            !a.starts_with("--dry-run="),
            "{recipe}: {a} (the remediator must start in dry-run)"
        );
    }
    let flag = args.iter().any(|a| a == "--dry-run");
    let config = flag_value(args, "--config").map(&config_source);
    let settings = Settings::load(
        config.as_deref(),
        &Overrides {
            dry_run: flag,
            ..Overrides::default()
        },
    )
    .unwrap_or_else(|e| panic!("{recipe}: {e}"));
    assert!(
        settings.dry_run,
        "{recipe} starts the remediator live: args {args:?}, config {config:?}"
    );
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The lines of the YAML block opened by `lines[at]` (deeper indented, or
/// list items at the same indentation for a key whose value is a list).
fn block<'a>(lines: &[&'a str], at: usize) -> Vec<&'a str> {
    let base = indent(lines[at]);
    let opens_list_item = lines[at].trim_start().starts_with("- ");
    lines[at + 1..]
        .iter()
        .take_while(|l| {
            !is_content(l)
                || indent(l) > base
                || (!opens_list_item && indent(l) == base && l.trim_start().starts_with("- "))
        })
        .copied()
        .collect()
}

/// The scalars of the YAML list under `key:` within `lines`.
fn yaml_list(lines: &[&str], key: &str) -> Vec<String> {
    let Some(at) = lines.iter().position(|l| l.trim() == format!("{key}:")) else {
        return Vec::new();
    };
    block(lines, at)
        .iter()
        .filter(|l| is_content(l))
        .filter_map(|l| l.trim().strip_prefix("- "))
        .map(|v| v.trim().trim_matches('"').to_string())
        .collect()
}

/// `ExecStart=` of a unit, continuation lines joined, split into words.
fn exec_start(unit: &str) -> Vec<String> {
    let mut line = String::new();
    let mut in_exec = false;
    for l in unit.lines() {
        if let Some(rest) = l.strip_prefix("ExecStart=") {
            in_exec = true;
            line.push_str(rest);
        } else if in_exec {
            line.push(' ');
            line.push_str(l);
        } else {
            continue;
        }
        if line.ends_with('\\') {
            line.pop();
        } else {
            break;
        }
    }
    line.split_whitespace().map(str::to_string).collect()
}

/// The Debian package's assets: installed path → source file.
fn package_assets() -> BTreeMap<String, PathBuf> {
    let manifest: toml::Value = toml::from_str(&read("remediator/Cargo.toml")).unwrap();
    manifest["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let src = a[0].as_str().unwrap();
            let mut dst = format!("/{}", a[1].as_str().unwrap());
            if dst.ends_with('/') {
                // A directory: the file keeps its name.
                dst.push_str(src.rsplit('/').next().unwrap());
            }
            (dst, repo().join("remediator").join(src))
        })
        .collect()
}

#[test]
fn the_systemd_unit_and_the_package_start_in_dry_run() {
    let unit = read("deploy/systemd/pidwarden-remediator.service");
    let args = exec_start(&unit);
    assert!(
        args.first()
            .is_some_and(|a| a.ends_with("pidwarden-remediator")),
        "{args:?}"
    );
    let assets = package_assets();
    assert!(
        assets.contains_key("/lib/systemd/system/pidwarden-remediator.service"),
        "the package installs the unit: {assets:?}"
    );
    assert_starts_dry_run("deploy/systemd/pidwarden-remediator.service", &args, |p| {
        assets
            .get(p)
            .cloned()
            .unwrap_or_else(|| panic!("the package installs nothing at {p}"))
    });
}

#[test]
fn the_compose_file_starts_in_dry_run() {
    let text = read("deploy/docker-compose.yml");
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == "remediator:" && indent(l) == 2)
        .expect("a remediator service");
    let service = block(&lines, at);
    let args = yaml_list(&service, "command");
    assert!(!args.is_empty(), "no command for the remediator");
    let volumes = yaml_list(&service, "volumes");
    assert_starts_dry_run("deploy/docker-compose.yml", &args, |p| {
        volumes
            .iter()
            .find_map(|v| {
                let mut parts = v.split(':');
                let (src, dst) = (parts.next()?, parts.next()?);
                (dst == p).then(|| repo().join("deploy").join(src))
            })
            .unwrap_or_else(|| panic!("compose mounts nothing at {p}: {volumes:?}"))
    });
}

#[test]
fn the_daemonset_starts_in_dry_run() {
    let text = read("deploy/kubernetes/daemonset.yaml");
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == "- name: remediator")
        .expect("a remediator container");
    let container = block(&lines, at);
    let args = yaml_list(&container, "args");
    assert!(!args.is_empty(), "no args for the remediator");
    let kustomization = read("deploy/kubernetes/kustomization.yaml");
    assert_starts_dry_run("deploy/kubernetes/daemonset.yaml", &args, |p| {
        let (dir, file) = p.rsplit_once('/').unwrap();
        // The volume mounted at the config's directory…
        let mount = container
            .iter()
            .position(|l| l.trim() == format!("mountPath: {dir}"))
            .unwrap_or_else(|| panic!("nothing mounted at {dir}"));
        let volume = container[..mount]
            .iter()
            .rev()
            .find_map(|l| l.trim().strip_prefix("- name: "))
            .unwrap();
        // …is a ConfigMap…
        let v = lines
            .iter()
            .rposition(|l| l.trim() == format!("- name: {volume}"))
            .unwrap();
        let cm = block(&lines, v)
            .iter()
            .skip_while(|l| l.trim() != "configMap:")
            .find_map(|l| l.trim().strip_prefix("name: "))
            .unwrap_or_else(|| panic!("volume {volume} is not a ConfigMap"))
            .to_string();
        // …that kustomization.yaml generates from a file of that name.
        let k: Vec<&str> = kustomization.lines().collect();
        let g = k
            .iter()
            .position(|l| l.trim() == format!("- name: {cm}"))
            .unwrap_or_else(|| panic!("kustomization.yaml generates no {cm}"));
        let files = yaml_list(&block(&k, g), "files");
        assert!(files.iter().any(|f| f == file), "{cm}: {files:?}");
        repo().join("deploy/kubernetes").join(file)
    });
}

#[test]
fn no_shipped_config_or_recipe_turns_dry_run_off() {
    let mut files = Vec::new();
    let mut dirs = vec![repo().join("deploy")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    let mut tomls = 0;
    for p in files {
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        assert!(!text.contains("--dry-run=false"), "{}", p.display());
        if p.extension().is_some_and(|e| e == "toml") {
            tomls += 1;
            let f = Settings::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(f.dry_run, Some(true), "{} is not in dry-run", p.display());
        }
    }
    assert!(tomls >= 2, "the package's and the ConfigMap's config");
}
