//! The shipped alerting configuration (`alerts/pidwarden.rules.yml`,
//! `alerts/alertmanager.yml`) rewritten for a test: shorter `for:` and
//! grouping timings, and addresses on 127.0.0.1.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use crate::util::workspace_root;

/// The shipped rule file with every non-zero `for:` set to `for_value`
/// (`for: 0m` stays: those alerts are immediate by design).
///
/// Every `for:` of `alerts/pidwarden.rules.yml` sits on its own line (the
/// file promises it), so a line-wise substitution is exact. Panics when the
/// file has no `for:` at all (the promise broke).
pub fn rules_with_for(for_value: &str) -> String {
    let path = workspace_root().join("alerts/pidwarden.rules.yml");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut out = String::with_capacity(text.len());
    let mut n = 0;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let rest = trimmed.strip_prefix("for:");
        // `for: 0m` (events that already happened) stays immediate.
        let zero = rest
            .is_some_and(|r| matches!(r.split('#').next().unwrap_or("").trim(), "0" | "0s" | "0m"));
        if let (Some(rest), false) = (rest, zero) {
            // `for: 10m` possibly followed by a comment; keep the indentation.
            let indent = &line[..line.len() - trimmed.len()];
            let comment = rest.find('#').map(|i| &rest[i..]).unwrap_or("");
            let _ = writeln!(out, "{indent}for: {for_value} {comment}");
            n += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(n > 0, "no `for:` line found in {}", path.display());
    out
}

/// Replaces `from` by `to` in `text`, panicking when `from` is absent (the
/// shipped file changed shape and the test must be told).
fn must_replace(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "alerts/alertmanager.yml no longer contains {from:?}"
    );
    text.replace(from, to)
}

/// The shipped `alerts/alertmanager.yml` pointed at this test's remediator
/// and token file, with every group_wait/group_interval/repeat_interval set
/// to `interval` and the operators' placeholder webhook at `operators_port`.
pub fn alertmanager_config(
    remediator_port: u16,
    token_file: &Path,
    operators_port: u16,
    interval: &str,
) -> String {
    let path = workspace_root().join("alerts/alertmanager.yml");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let text = must_replace(
        &text,
        "http://127.0.0.1:9918/api/v1/alerts",
        &format!("http://127.0.0.1:{remediator_port}/api/v1/alerts"),
    );
    let text = must_replace(
        &text,
        "credentials_file: /etc/pidwarden/webhook-token",
        &format!("credentials_file: {}", token_file.display()),
    );
    let text = must_replace(
        &text,
        "http://127.0.0.1:9099/alerts",
        &format!("http://127.0.0.1:{operators_port}/alerts"),
    );
    let mut out = String::new();
    let mut timings = 0;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let key = ["group_wait:", "group_interval:", "repeat_interval:"]
            .into_iter()
            .find(|k| trimmed.starts_with(k));
        if let Some(k) = key {
            let _ = writeln!(out, "{indent}{k} {interval}");
            timings += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(
        timings >= 3,
        "alerts/alertmanager.yml: expected group_wait/group_interval/repeat_interval lines"
    );
    out
}
