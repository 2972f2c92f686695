//! A kill of about 2,000 processes by the remediator binary running with an
//! open file limit of 1024, soft and hard (so raising the soft limit at
//! start gives nothing): the pidfds are pinned in batches within the
//! descriptor budget, the kill completes, every victim is gone, and
//! `/healthz` answers all along.
//!
//! The limit is set on this test process (one test in this binary) before
//! the remediator is spawned, which inherits it, as under a unit's
//! `LimitNOFILE=1024`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::binary::{alert, Remediator};
use common::containers::count;
use pidwarden_tests::{poll_until, require_docker, try_http_get, TempDir, TestContainer};

/// Parents in the container, each with its own command line.
const PARENTS: usize = 4;
/// `sleep 1000` copies per parent.
const PER_PARENT: usize = 500;

fn set_nofile(limit: u64) {
    let lim = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit reads the struct it is given.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

#[test]
fn a_kill_of_two_thousand_processes_completes_under_a_1024_descriptor_limit() {
    if !require_docker() {
        return;
    }
    // PARENTS shells (told apart by $0), each starting PER_PARENT sleeps.
    let spawn =
        format!("i=0; while [ $i -lt {PER_PARENT} ]; do sleep 1000 & i=$((i+1)); done; wait");
    let parents: Vec<String> = (1..=PARENTS)
        .map(|p| format!("sh -c '{spawn}' parent{p} &"))
        .collect();
    let init = format!("{} wait", parents.join(" "));
    let c = TestContainer::run(&["--pids-limit", "-1"], &["sh", "-c", &init]);
    let total = PARENTS * PER_PARENT;
    poll_until(Duration::from_secs(120), Duration::from_millis(500), || {
        (count(&c, "sleep 1000") == total).then_some(())
    })
    .unwrap_or_else(|| panic!("{total} copies did not start: {}", count(&c, "sleep 1000")));

    set_nofile(1024);
    let dir = TempDir::new();
    let r = Remediator::start(&dir, &["--grace", "2", "--sample", "0.5"]);

    // /healthz, probed every 100 ms from another thread while the kill runs.
    let stop = AtomicBool::new(false);
    let health_url = r.url("/healthz");
    let (report, probes) = std::thread::scope(|s| {
        let prober = s.spawn(|| {
            let mut probes: Vec<(Duration, Result<u16, String>)> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                let got = try_http_get(&health_url).map(|(code, _)| code);
                probes.push((t.elapsed(), got));
                std::thread::sleep(Duration::from_millis(100));
            }
            probes
        });
        let (_, v) = r.webhook(serde_json::json!([alert(
            "PidwardenDuplicateProcesses",
            "fp-2000",
            &c.id,
            "kill-duplicates"
        )]));
        assert_eq!(v["results"][0]["result"], "pending", "{v}");
        let started = Instant::now();
        let row = r.finished_row(
            v["results"][0]["row"].as_i64().unwrap(),
            Duration::from_secs(300),
        );
        let took = started.elapsed();
        stop.store(true, Ordering::SeqCst);
        ((row, took), prober.join().unwrap())
    });
    let (row, took) = report;
    let victims = PARENTS * (PER_PARENT - 1);
    eprintln!(
        "2,000-process kill under NOFILE 1024: {took:?}, {} /healthz probes, slowest {:?}",
        probes.len(),
        probes.iter().map(|p| p.0).max()
    );
    assert_eq!(row.result, "done", "{row:?}\n{}", r.daemon.log());
    assert!(
        row.reason.contains(&format!(
            "{victims} signals sent, 0 processes gone before their signal, 0 refused, 0 survivors"
        )),
        "{row:?}"
    );
    // Every victim gone, one copy per parent kept.
    poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        (count(&c, "sleep 1000") == PARENTS).then_some(())
    })
    .unwrap_or_else(|| panic!("{} copies left", count(&c, "sleep 1000")));
    assert!(!probes.is_empty());
    for (i, (_, got)) in probes.iter().enumerate() {
        assert_eq!(got, &Ok(200), "probe {i} of /healthz during the kill");
    }
    let log = r.daemon.log();
    assert!(!log.contains("Too many open files"), "{log}");
}
