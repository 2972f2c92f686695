//! The configuration file the package and the README ship must let every
//! shipped alert that carries `pidwarden_action` ask for that action (an
//! alert missing from `[actions]` is ignored, which no metric shows), must
//! leave the breaker able to escalate, and must start in dry-run.

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
