//! An idle-connection flood does not stop remediation. The release-shaped
//! setup: the binary under systemd's default open file limit (1024), the
//! real Docker runtime, a real container running duplicate copies. 1,500
//! idle TCP connections are opened and held; then a kill-duplicates alert
//! is posted. It is answered 2xx, the action completes (audit row `done`,
//! the surplus copies gone) and the binary keeps running.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{payload, A, TOKEN};
use pidwarden_shared::cgroup::read_procs_recursive;
use pidwarden_shared::procfs::{nofile_limit, read_process};
use pidwarden_shared::Roots;
use pidwarden_tests::{
    free_port, http_get, poll_until, require_docker, run_json, run_ok, try_http_get, try_http_post,
    wait_http, Daemon, TestContainer,
};

/// Idle connections held during the alert.
const FLOOD: usize = 1500;
/// The remediator's open file limit (systemd's default soft limit).
const NOFILE: u64 = 1024;
/// The copy every duplicate runs.
const COPY: &str = "while :; do sleep 1000; done";
/// Generous bounds; the measured figures are printed.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
const DONE_WITHIN: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_millis(100);

/// Live copies of [`COPY`] in the container.
fn copies(c: &TestContainer) -> usize {
    let cmd = format!("sh -c {COPY}");
    read_procs_recursive(&c.cgroup_dir("pids"))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|pid| read_process(&Roots::default(), pid).ok().flatten())
        .filter(|p| !p.is_zombie() && p.cmdline.display() == cmd)
        .count()
}

/// Makes sure this test process may hold the flood's descriptors.
fn ensure_own_fd_room(need: u64) {
    let (soft, hard) = nofile_limit().unwrap();
    if soft < need {
        let want = need.max(hard);
        run_ok(Command::new("prlimit").args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={want}:{want}"),
        ]));
    }
}

/// Opens `n` TCP connections to `addr` concurrently (3 s each) and returns
/// those established, held open by the returned runtime-less std sockets.
fn open_idle(addr: SocketAddr, n: usize) -> Vec<std::net::TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            set.spawn(tokio::time::timeout(
                Duration::from_secs(3),
                tokio::net::TcpStream::connect(addr),
            ));
        }
        let mut held = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(Ok(Ok(s))) = r {
                held.push(s.into_std().unwrap());
            }
        }
        held
    })
}

#[test]
fn an_idle_connection_flood_does_not_stop_a_kill() {
    if !require_docker() {
        return;
    }
    ensure_own_fd_room(FLOOD as u64 + 512);
    let c = TestContainer::run(
        &["-e", &format!("COPY={COPY}")],
        &[
            "sh",
            "-c",
            "for i in 1 2 3; do sh -c \"$COPY\" & done; wait",
        ],
    );
    poll_until(Duration::from_secs(20), STEP, || {
        (copies(&c) == 3).then_some(())
    })
    .expect("three copies started");

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut daemon = Daemon::spawn(
        Command::new("prlimit")
            .arg(format!("--nofile={NOFILE}:{NOFILE}"))
            .arg(env!("CARGO_BIN_EXE_pidwarden-remediator"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--token-file")
            .arg(&token)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--sample", "1", "--grace", "2", "--cooldown", "0"]),
    );
    wait_http(&format!("{base}/healthz"), Duration::from_secs(20)).expect("remediator up");
    // /readyz turns ready once the runtime answered its first probe.
    wait_http(&format!("{base}/readyz"), Duration::from_secs(20)).expect("remediator ready");

    let t = Instant::now();
    let held = open_idle(format!("127.0.0.1:{port}").parse().unwrap(), FLOOD);
    println!(
        "{} of {FLOOD} idle connections established in {:?}",
        held.len(),
        t.elapsed()
    );
    assert!(held.len() >= NOFILE as usize, "the flood was not a flood");

    let body = payload(&[A::firing(
        "PidwardenDuplicateProcesses",
        "flood-1",
        &[("id", &c.id), ("pidwarden_action", "kill-duplicates")],
    )]);
    let auth = format!("Bearer {TOKEN}");
    let t = Instant::now();
    let answer = try_http_post(
        &format!("{base}/api/v1/alerts"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    let answered = t.elapsed();
    println!("alert answered in {answered:?} with {FLOOD} idle connections: {answer:?}");
    let (status, text) = answer.expect("the alert is answered during the flood");
    assert!((200..300).contains(&status), "{status}: {text}");
    assert!(answered < ANSWER_WITHIN, "{answered:?}");

    let state = dir.path().join("state");
    let rows = poll_until(DONE_WITHIN, STEP, || {
        let v = run_json(
            Command::new(env!("CARGO_BIN_EXE_pidwarden-remediator"))
                .args(["history", "--json", "--state-dir"])
                .arg(&state),
        );
        let done = v.as_array()?.iter().any(|r| {
            r["container_id"] == c.id.as_str()
                && r["action"] == "kill-duplicates"
                && r["result"] == "done"
        });
        done.then_some(v)
    });
    let completed = t.elapsed();
    println!("action done {completed:?} after the alert (sample 1 s, grace 2 s)");
    assert!(
        rows.is_some(),
        "no `done` audit row; log:\n{}",
        daemon.log()
    );
    let left = poll_until(Duration::from_secs(10), STEP, || {
        (copies(&c) == 1).then_some(())
    });
    assert!(left.is_some(), "{} copies left", copies(&c));
    assert!(daemon.try_wait().is_none(), "the remediator exited");
    assert_eq!(http_get(&format!("{base}/healthz")).0, 200);
    drop(held);
    assert!(try_http_get(&format!("{base}/healthz")).is_ok());
    drop(c);
}
