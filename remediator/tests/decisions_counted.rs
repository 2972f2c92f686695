//! Every decision is counted in `pidwarden_remediations_total`, over real
//! HTTP against the binary: an alert the config does not allow is counted
//! `ignored` under the action it asked for, and an alert asking for an
//! unknown action is counted under `action="none"` (the label stays
//! bounded).

mod common;

use common::binary::{alert, Remediator};
use pidwarden_tests::TempDir;

fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn refused_and_unknown_actions_are_counted_with_a_bounded_action_label() {
    let dir = TempDir::new();
    let config = "dry_run = true\n[actions]\nPidwardenDuplicateProcesses = [\"kill-duplicates\"]\n";
    let r = Remediator(pidwarden_tests::Remediator::start(
        &dir,
        Some(config),
        ["--cooldown", "0"],
    ));
    let metrics = || r.get("/metrics").1;
    let ignored_restart = r#"pidwarden_remediations_total{action="restart",result="ignored"}"#;
    let ignored_none = r#"pidwarden_remediations_total{action="none",result="ignored"}"#;
    let before = metrics();
    let (restart0, none0) = (
        sample(&before, ignored_restart),
        sample(&before, ignored_none),
    );
    let id = "a".repeat(64);
    let one = |a: serde_json::Value| r.post_one(a);
    // The config allows this alert only kill-duplicates.
    assert_eq!(
        one(alert("PidwardenDuplicateProcesses", "f1", &id, "restart")),
        "ignored"
    );
    let m = metrics();
    assert_eq!(sample(&m, ignored_restart), restart0 + 1.0, "{m}");
    assert_eq!(sample(&m, ignored_none), none0, "{m}");
    // A bogus action is counted as `none`, never as a label of its own.
    assert_eq!(
        one(alert(
            "PidwardenDuplicateProcesses",
            "f2",
            &id,
            "bogus-action"
        )),
        "ignored"
    );
    let m = metrics();
    assert_eq!(sample(&m, ignored_none), none0 + 1.0, "{m}");
    assert_eq!(sample(&m, ignored_restart), restart0 + 1.0, "{m}");
    assert!(!m.contains("bogus-action"), "{m}");
    for line in m
        .lines()
        .filter(|l| l.starts_with("pidwarden_remediations_total{"))
    {
        assert!(
            [
                "action=\"kill-duplicates\"",
                "action=\"restart\"",
                "action=\"none\""
            ]
            .iter()
            .any(|a| line.contains(a)),
            "{line}"
        );
    }
}
