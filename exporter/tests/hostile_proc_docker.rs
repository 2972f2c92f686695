//! The exporter against what a container's processes control: their names
//! and their command lines. A name that is not UTF-8 must not blind the
//! exporter to its container, and command lines of a megabyte each must not
//! bloat it; in both collection modes, against real Docker containers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pidwarden_tests::{
    bad_name_copies, long_argv_copies, poll_until, require_docker, secret_copies, series,
    series_with, Exporter, LONG_ARGS, LONG_ARG_BYTES, SECRET, SECRET_COMMANDS,
};

const WAIT: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_millis(300);

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The value of the one sample of `metric` for container `id`.
fn value(body: &str, metric: &str, id: &str) -> Option<f64> {
    series_with(body, metric, "id", id).first().map(|s| s.value)
}

/// `pidwarden_scrape_errors_total{stage="proc"}`.
fn proc_errors(body: &str) -> f64 {
    series_with(body, "pidwarden_scrape_errors_total", "stage", "proc")
        .first()
        .map_or(0.0, |s| s.value)
}

/// `command` label → group size, for container `id`.
fn groups(body: &str, id: &str) -> BTreeMap<String, f64> {
    series(body, "pidwarden_container_process_group_processes")
        .into_iter()
        .filter(|s| s.label("id") == id)
        .map(|s| (s.label("command").to_string(), s.value))
        .collect()
}

#[test]
fn names_and_arguments_that_are_not_utf8_do_not_blind_the_exporter() {
    if !require_docker() {
        return;
    }
    let c = bad_name_copies();

    for mode in ["incremental", "full"] {
        let ex = Exporter::start(["--collect-mode", mode]);
        let got = poll_until(WAIT, STEP, || {
            let body = ex.metrics();
            let ok = value(&body, "pidwarden_container_processes", &c.id) == Some(7.0)
                && value(&body, "pidwarden_container_duplicate_processes", &c.id) == Some(2.0)
                && groups(&body, &c.id).values().copied().collect::<Vec<_>>() == [3.0];
            ok.then_some(body)
        });
        let body = got.unwrap_or_else(|| {
            panic!(
                "{mode}: the container's processes and groups were never served\n{}\n--- log ---\n{}",
                ex.metrics(),
                ex.daemon.log()
            )
        });
        // The names and arguments are read, not errors.
        assert_eq!(proc_errors(&body), 0.0, "{mode}\n{body}");
        // Shown with the bytes replaced.
        let shown: Vec<String> = groups(&body, &c.id).into_keys().collect();
        assert!(
            shown[0].contains("\u{fffd}\u{fffd}x \u{fffd}\u{fffd}x"),
            "{shown:?}"
        );
        // Scraped again (the incremental table's unchanged path), still there.
        let again = ex.metrics();
        assert_eq!(
            value(&again, "pidwarden_container_processes", &c.id),
            Some(7.0)
        );
        assert_eq!(proc_errors(&again), 0.0, "{mode}\n{again}");
    }
}

/// Copies in the long-argument container (1 MiB of arguments each).
const LONG_COPIES: usize = 500;

#[test]
fn a_megabyte_of_arguments_per_process_does_not_bloat_the_exporter() {
    if !require_docker() {
        return;
    }
    let c = long_argv_copies(LONG_COPIES);
    for mode in ["incremental", "full"] {
        let ex = Exporter::start(["--collect-mode", mode]);
        let t = Instant::now();
        // Scraped as Prometheus would while the copies are young (their
        // command lines are re-read each scrape in their first minute).
        let got = poll_until(Duration::from_secs(120), Duration::from_secs(2), || {
            let body = ex.metrics();
            let ok = value(&body, "pidwarden_container_processes", &c.id)
                == Some((1 + 2 * LONG_COPIES) as f64)
                && value(&body, "pidwarden_container_duplicate_processes", &c.id)
                    == Some((LONG_COPIES - 2) as f64);
            ok.then_some(body)
        });
        let body = got.unwrap_or_else(|| {
            panic!(
                "{mode}: the long command lines were never served right\n{}\n--- log ---\n{}",
                ex.metrics(),
                ex.daemon.log()
            )
        });
        // Two groups, not one: the command lines differ past the kept prefix.
        let g = groups(&body, &c.id);
        assert_eq!(
            g.values().copied().collect::<Vec<_>>(),
            [(LONG_COPIES / 2) as f64],
            "one label for both groups, the size of the largest: {g:?}"
        );
        assert!(g.keys().all(|k| k.ends_with('…')), "{g:?}");
        for _ in 0..5 {
            ex.metrics();
            std::thread::sleep(Duration::from_secs(1));
        }
        let (rss, hwm) = (
            status_kib(ex.daemon.pid(), "VmRSS"),
            status_kib(ex.daemon.pid(), "VmHWM"),
        );
        println!(
            "{mode}: {LONG_COPIES} copies of {} KiB of arguments: exporter RSS {} MiB, peak {} MiB ({:?} of scrapes)",
            LONG_ARG_BYTES * LONG_ARGS / 1024,
            rss / 1024,
            hwm / 1024,
            t.elapsed()
        );
        // Loose bound (the whole command lines are 500 MiB).
        assert!(hwm < 96 * 1024, "{mode}: peak RSS {hwm} KiB");
    }
}

#[test]
fn secrets_on_command_lines_never_reach_labels() {
    if !require_docker() {
        return;
    }
    let c = secret_copies();
    let ex = Exporter::start(["--top-commands", "10"]);
    let got = poll_until(WAIT, STEP, || {
        let body = ex.metrics();
        (groups(&body, &c.id).len() == SECRET_COMMANDS.len()).then_some(body)
    });
    let body = got.unwrap_or_else(|| panic!("the groups were never served\n{}", ex.metrics()));
    let mut shown: Vec<String> = groups(&body, &c.id).into_keys().collect();
    shown.sort();
    let mut want: Vec<String> = SECRET_COMMANDS
        .iter()
        .map(|(_, redacted)| format!("sh -c sleep 1000; : {redacted}"))
        .collect();
    want.sort();
    assert_eq!(shown, want);
    assert!(!body.contains(SECRET), "{body}");
}
