//! Kill-duplicates through the remediator binary against containers whose
//! processes do what a tenant can: names that are not UTF-8, secrets on
//! their command lines, a megabyte of arguments each. Planning works, the
//! audit trail shows no secret, and memory stays bounded.

mod common;

use std::time::{Duration, Instant};

use common::binary::{alert, Remediator};
use pidwarden_tests::{
    bad_name_copies, container_pids, long_argv_copies, named, poll_until, require_docker,
    secret_copies, AuditRow, TempDir, TestContainer, BAD_NAME, SECRET, SECRET_COMMANDS,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// Posts a kill-duplicates alert for `c` and returns its finished row.
fn kill(r: &Remediator, c: &TestContainer, fingerprint: &str, wait: Duration) -> AuditRow {
    let (code, v) = r.webhook(json!([alert(
        "PidwardenDuplicateProcesses",
        fingerprint,
        &c.id,
        "kill-duplicates"
    )]));
    assert_eq!(code, 200, "{v}\n{}", r.daemon.log());
    let row = v["results"][0]["row"]
        .as_i64()
        .unwrap_or_else(|| panic!("no row: {v}"));
    r.finished_row(row, wait)
}

/// A `/proc/<pid>/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

#[test]
fn copies_named_with_bytes_that_are_not_utf8_are_killed() {
    if !require_docker() {
        return;
    }
    let c = bad_name_copies();
    let dir = TempDir::new();
    let r = Remediator::start(&dir, &[]);
    let row = kill(&r, &c, "badname1", WAIT);
    assert_eq!(row.result, "done", "{:?}\n{}", row.json, r.daemon.log());
    // Two of the three copies (each a shell and its sleep) are gone.
    let left = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        (named(&c, BAD_NAME) == 1 && container_pids(&c).len() == 3).then_some(())
    });
    assert!(left.is_some(), "{} copies left", named(&c, BAD_NAME));
    // The audit trail shows their arguments with the bytes replaced.
    let text = row.json.to_string();
    assert!(text.contains("\u{fffd}\u{fffd}x"), "{text}");
}

#[test]
fn secrets_on_command_lines_never_reach_the_audit_trail() {
    if !require_docker() {
        return;
    }
    let c = secret_copies();
    let dir = TempDir::new();
    let r = Remediator::start(&dir, &[]);
    let row = kill(&r, &c, "secret01", WAIT);
    assert_eq!(row.result, "done", "{:?}\n{}", row.json, r.daemon.log());
    // One copy of each group left: the init and a shell and its sleep each.
    let want = 1 + 2 * SECRET_COMMANDS.len();
    let left = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        (container_pids(&c).len() == want).then_some(())
    });
    assert!(
        left.is_some(),
        "{} processes left",
        container_pids(&c).len()
    );
    let text = row.json.to_string();
    for (_, shown) in SECRET_COMMANDS {
        assert!(text.contains(shown), "{shown} not in {text}");
    }
    assert!(!text.contains(SECRET), "{text}");
    assert!(!r.history(true).contains(SECRET));
}

/// Copies in the long-argument container (1 MiB of arguments each).
const LONG_COPIES: usize = 500;

#[test]
fn killing_copies_with_a_megabyte_of_arguments_each_stays_small() {
    if !require_docker() {
        return;
    }
    let c = long_argv_copies(LONG_COPIES);
    let dir = TempDir::new();
    let r = Remediator::start(&dir, &["--grace", "2"]);
    let t = Instant::now();
    let row = kill(&r, &c, "longargv", Duration::from_secs(300));
    let took = t.elapsed();
    assert_eq!(row.result, "done", "{:?}\n{}", row.json, r.daemon.log());
    // One copy kept per group: the two groups differ only in their last
    // argument, a megabyte in, and were not taken for one.
    let left = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        (container_pids(&c).len() == 1 + 2 * 2).then_some(())
    });
    assert!(
        left.is_some(),
        "{} processes left",
        container_pids(&c).len()
    );
    let (rss, hwm) = (
        status_kib(r.daemon.pid(), "VmRSS"),
        status_kib(r.daemon.pid(), "VmHWM"),
    );
    println!(
        "killed {} of {LONG_COPIES} copies of 1 MiB of arguments in {took:?}: remediator RSS {} MiB, peak {} MiB",
        LONG_COPIES - 2,
        rss / 1024,
        hwm / 1024
    );
    assert!(hwm < 96 * 1024, "peak RSS {hwm} KiB");
}
