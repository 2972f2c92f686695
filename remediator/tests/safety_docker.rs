//! The remediator binary against real containers where a wrong or a second
//! action would do harm: a dry-run instance does not poison live mode, two
//! alerts for one container never act at once, and a remediator killed or
//! stopped mid-action leaves no process of the container stopped.
//! Fails with a clear message when Docker is not reachable, unless
//! `PIDWARDEN_SKIP_DOCKER=1`.

mod common;

use std::time::{Duration, Instant};

use common::binary::{alert, Remediator};
use common::containers::{count, procs, sleeps, stopped};
use pidwarden_shared::procfs::read_process;
use pidwarden_shared::Roots;
use pidwarden_tests::{poll_until, require_docker, TempDir, TestContainer};

const WAIT: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_millis(100);

fn row_id(v: &serde_json::Value) -> i64 {
    v["results"][0]["row"].as_i64().unwrap()
}

#[test]
fn an_instance_handled_in_dry_run_acts_when_live() {
    if !require_docker() {
        return;
    }
    let c = sleeps(3, false);
    let dir = TempDir::new();
    let a = alert(
        "PidwardenDuplicateProcesses",
        "fp-dry-live",
        &c.id,
        "kill-duplicates",
    );
    let dry = Remediator::start(&dir, &["--dry-run"]);
    let (_, v) = dry.webhook(serde_json::json!([a.clone()]));
    assert_eq!(v["results"][0]["result"], "pending", "{v}");
    let row = dry.finished_row(row_id(&v), WAIT);
    assert_eq!(row.result, "dry_run", "{row:?}");
    assert_eq!(dry.post_one(a.clone()), "duplicate");
    drop(dry);
    assert_eq!(count(&c, "sleep 1000"), 3, "dry-run signalled");

    // Same state, live mode, the same firing instance redelivered.
    let live = Remediator::start(&dir, &[]);
    let (_, v) = live.webhook(serde_json::json!([a.clone()]));
    assert_eq!(v["results"][0]["result"], "pending", "{v}");
    let row = live.finished_row(row_id(&v), WAIT);
    assert_eq!(row.result, "done", "{row:?}");
    poll_until(WAIT, STEP, || (count(&c, "sleep 1000") == 1).then_some(()))
        .expect("two surplus copies killed");
    assert_eq!(live.post_one(a), "duplicate");
}

#[test]
fn two_alerts_for_one_container_never_act_at_once() {
    if !require_docker() {
        return;
    }
    let c = sleeps(4, false);
    let dir = TempDir::new();
    let r = Remediator::start(&dir, &["--sample", "2", "--cooldown", "3"]);
    let t0 = Instant::now();
    let first = alert(
        "PidwardenDuplicateProcesses",
        "fp-a",
        &c.id,
        "kill-duplicates",
    );
    let (_, v) = r.webhook(serde_json::json!([first]));
    assert_eq!(v["results"][0]["result"], "pending", "{v}");
    let second = alert("PidwardenPidsExhausting", "fp-b", &c.id, "kill-duplicates");
    assert_eq!(r.post_one(second.clone()), "busy");
    let row = r.finished_row(row_id(&v), WAIT);
    let ended = t0.elapsed();
    assert_eq!(row.result, "done", "{row:?}");
    poll_until(WAIT, STEP, || (count(&c, "sleep 1000") == 1).then_some(()))
        .expect("exactly one copy kept");
    // The cooldown (3 s) runs from the end of the action (≥ 2 s of sampling),
    // so 1.2 s after the end is more than 3 s after its start but still cold.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(t0.elapsed() > Duration::from_secs(3), "{ended:?}");
    assert_eq!(r.post_one(second), "cooldown");
    let m = pidwarden_tests::try_http_get(&format!("http://127.0.0.1:{}/metrics", r.port))
        .unwrap()
        .1;
    assert!(
        m.contains(r#"pidwarden_remediations_total{action="kill-duplicates",result="busy"} 1"#),
        "{m}"
    );
}

/// Starts a kill-duplicates action on 500 copies that ignore SIGTERM and
/// returns once some of them are stopped (the engine's freeze), with the
/// action's row id.
fn catch_the_freeze(r: &Remediator, c: &TestContainer) -> i64 {
    let a = alert(
        "PidwardenDuplicateProcesses",
        "fp-freeze",
        &c.id,
        "kill-duplicates",
    );
    let (_, v) = r.webhook(serde_json::json!([a]));
    assert_eq!(v["results"][0]["result"], "pending", "{v}");
    let pids: Vec<i32> = procs(c).iter().map(|p| p.0).collect();
    let roots = Roots::default();
    let deadline = Instant::now() + WAIT;
    loop {
        let any_stopped = pids
            .iter()
            .any(|&pid| matches!(read_process(&roots, pid), Ok(Some(p)) if p.state.is_stopped()));
        if any_stopped {
            return row_id(&v);
        }
        assert!(
            Instant::now() < deadline,
            "no copy was ever stopped\n{}",
            r.daemon.log()
        );
    }
}

#[test]
fn a_remediator_killed_mid_action_leaves_nothing_stopped_after_its_restart() {
    if !require_docker() {
        return;
    }
    let c = sleeps(500, true);
    let dir = TempDir::new();
    let mut r = Remediator::start(&dir, &["--grace", "30", "--sample", "0.5"]);
    let port = r.port;
    let row = catch_the_freeze(&r, &c);
    r.daemon.signal(libc::SIGKILL);
    let _ = r.daemon.stop(Duration::from_secs(5));
    let left = stopped(&c);
    eprintln!("{} processes stopped when the remediator died", left.len());
    drop(r);

    let t = Instant::now();
    let r = Remediator::start_on(&dir, port, &[]);
    let resumed = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        stopped(&c).is_empty().then(|| t.elapsed())
    });
    assert!(
        resumed.is_some(),
        "still stopped 5 s after the restart: {:?}\n{}",
        stopped(&c),
        r.daemon.log()
    );
    eprintln!(
        "nothing stopped {:?} after the restart began",
        resumed.unwrap()
    );
    let rec = r.finished_row(row, Duration::from_secs(5));
    assert_eq!(rec.result, "failed", "{rec:?}");
    assert!(rec.reason.contains("interrupted"), "{rec:?}");
    assert!(c.is_running());
}

#[test]
fn sigterm_mid_action_continues_what_was_stopped_and_exits_within_five_seconds() {
    if !require_docker() {
        return;
    }
    let c = sleeps(500, true);
    let dir = TempDir::new();
    let mut r = Remediator::start(&dir, &["--grace", "30", "--sample", "0.5"]);
    let row = catch_the_freeze(&r, &c);
    let t = Instant::now();
    r.daemon.signal(libc::SIGTERM);
    let status = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        r.daemon.try_wait()
    })
    .expect("the remediator did not exit");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    assert!(status.success(), "{status:?}\n{}", r.daemon.log());
    assert!(stopped(&c).is_empty(), "left stopped: {:?}", stopped(&c));
    let port = r.port;
    drop(r);
    let r = Remediator::start_on(&dir, port, &[]);
    let rec = r.finished_row(row, Duration::from_secs(5));
    assert_eq!(rec.result, "failed", "{rec:?}");
    assert!(rec.reason.contains("interrupted"), "{rec:?}");
}
