//! Fleet routing with two remediators on this machine — "node 1" on
//! 127.0.0.1 that does not see the container (an empty cgroup root) and
//! "node 2" on 127.0.0.2 that runs it — and a real Alertmanager posting to
//! node 1: the alert is forwarded once, acted on once; forwarding never
//! loops; an unreachable peer is a 503 that Alertmanager retries. Each node
//! has its own webhook token; they forward to each other (`--peer`) with a
//! shared peer token (`--peer-token-file`).
//! Fails with a clear message when Docker is not reachable, unless
//! `PIDWARDEN_SKIP_DOCKER=1`.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::binary::Remediator;
use common::containers::{count, sleeps};
use pidwarden_remediator::timefmt::{format_rfc3339, now_nanos};
use pidwarden_tests::{
    alertmanager_config, free_port, http_post, poll_until, require_docker, AuditRow, Daemon,
    TempDir,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
const STEP: Duration = Duration::from_millis(200);

/// The exporter address of node 2, as Prometheus labels its series.
const NODE2_INSTANCE: &str = "127.0.0.2:9917";

fn node(n: u8, port: u16) -> SocketAddr {
    ([127, 0, 0, n], port).into()
}

/// The fleet's peer token, in `dir` (the same value on every node).
fn peer_token(dir: &TempDir) -> String {
    dir.write("peer-token", "fleet-peer-token-5a1t\n")
        .display()
        .to_string()
}

/// Node 1's remediator: sees no container (an empty cgroup root), forwards
/// to node 2.
fn blind(dir: &TempDir, port: u16, peer_port: u16) -> Remediator {
    let empty = dir.path().join("no-cgroups");
    std::fs::create_dir_all(&empty).unwrap();
    let (empty, peer) = (empty.display().to_string(), peer_port.to_string());
    let token = peer_token(dir);
    Remediator::start_at(
        dir,
        node(1, port),
        &[
            "--cgroup-root",
            &empty,
            "--peer",
            "127.0.0.2",
            "--peer-port",
            &peer,
            "--peer-token-file",
            &token,
        ],
    )
}

/// Node 2's remediator, with its own webhook token, accepting forwards made
/// with the fleet's peer token.
fn seeing(dir: &TempDir, port: u16, extra: &[&str]) -> Remediator {
    let token = peer_token(dir);
    let mut args = vec!["--peer-token-file", &token];
    args.extend_from_slice(extra);
    Remediator::start_at(dir, node(2, port), &args)
}

fn alert_labels(id: &str) -> serde_json::Value {
    json!({
        "alertname": "PidwardenDuplicatesExhaustingPids", "severity": "critical",
        "id": id, "name": "gateway", "pidwarden_action": "kill-duplicates",
        "instance": NODE2_INSTANCE, "job": "pidwarden-exporter"
    })
}

/// A real Alertmanager routing with the shipped config to `to`.
fn alertmanager(dir: &TempDir, to: &Remediator) -> (Daemon, u16) {
    let port = free_port();
    let config = alertmanager_config(to.port, &to.token_file, free_port(), "2s");
    let cfg = dir.write("alertmanager.yml", &config);
    let data = dir.path().join("am-data");
    std::fs::create_dir_all(&data).unwrap();
    let mut am = Daemon::spawn(
        Command::new("/usr/bin/prometheus-alertmanager")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address="),
    );
    am.wait_ready("alertmanager", &format!("http://127.0.0.1:{port}/-/ready"));
    (am, port)
}

fn fire(am_port: u16, labels: serde_json::Value) {
    let body = json!([{
        "labels": labels,
        "annotations": {"summary": "duplicates exhausting PIDs"},
        "startsAt": format_rfc3339(now_nanos()),
        "generatorURL": "http://prometheus:9090/graph"
    }]);
    let (code, text) = http_post(
        &format!("http://127.0.0.1:{am_port}/api/v2/alerts"),
        &[("Content-Type", "application/json")],
        &body.to_string(),
    );
    assert_eq!(code, 200, "alertmanager refused the alert: {text}");
}

fn results(rows: &[AuditRow]) -> Vec<&str> {
    rows.iter().map(|r| r.result.as_str()).collect()
}

#[test]
fn an_alert_on_the_wrong_node_is_forwarded_once_and_acted_on_once() {
    if !require_docker() {
        return;
    }
    let c = sleeps(3, false);
    let (d1, d2) = (TempDir::new(), TempDir::new());
    let port = free_port();
    let n1 = blind(&d1, port, port);
    let n2 = seeing(&d2, port, &[]);
    assert_ne!(n1.token, n2.token, "each node has its own webhook token");
    let (am, am_port) = alertmanager(&d1, &n1);
    fire(am_port, alert_labels(&c.id));

    // Alertmanager redelivers every 2 s: wait for a second forward.
    let rows1 = poll_until(WAIT, STEP, || {
        let rows = n1.actions();
        (rows.iter().filter(|r| r.result == "forwarded").count() >= 2).then_some(rows)
    })
    .unwrap_or_else(|| {
        panic!(
            "node 1 never forwarded twice: {:?}\n{}\n{}",
            n1.actions(),
            n1.daemon.log(),
            am.log()
        )
    });
    assert!(
        rows1.iter().all(|r| r.result == "forwarded"),
        "{:?}",
        results(&rows1)
    );
    assert!(
        rows1[0].reason.contains("127.0.0.2") && rows1[0].reason.contains("pending"),
        "{}",
        rows1[0].reason
    );
    let rows2 = poll_until(WAIT, STEP, || {
        let rows = n2.actions();
        rows.iter().any(|r| r.result == "done").then_some(rows)
    })
    .unwrap_or_else(|| {
        panic!(
            "node 2 never acted: {:?}\n{}",
            n2.actions(),
            n2.daemon.log()
        )
    });
    let acted: Vec<_> = rows2
        .iter()
        .filter(|r| !matches!(r.result.as_str(), "duplicate"))
        .collect();
    assert_eq!(acted.len(), 1, "{:?}", results(&rows2));
    assert_eq!(acted[0].container_id, c.id);
    poll_until(WAIT, STEP, || (count(&c, "sleep 1000") == 1).then_some(()))
        .expect("the surplus copies were killed");
    // A redelivery reached node 2 and was a duplicate there.
    poll_until(WAIT, STEP, || {
        n2.actions()
            .iter()
            .any(|r| r.result == "duplicate")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("{:?}", results(&n2.actions())));
}

#[test]
fn forwarding_never_loops() {
    if !require_docker() {
        return;
    }
    let c = sleeps(2, false);
    let (d1, d2) = (TempDir::new(), TempDir::new());
    let port = free_port();
    let n1 = blind(&d1, port, port);
    // Node 2 does not see the container either.
    let empty = d2.path().join("no-cgroups");
    std::fs::create_dir_all(&empty).unwrap();
    let empty = empty.display().to_string();
    let n2 = seeing(&d2, port, &["--cgroup-root", &empty, "--peer", "127.0.0.1"]);
    let alert = json!({
        "status": "firing", "labels": alert_labels(&c.id), "annotations": {},
        "startsAt": format_rfc3339(now_nanos()), "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "", "fingerprint": "00000000000000f1"
    });
    assert_eq!(n1.post_one(alert.clone()), "forwarded");
    // Node 2 answered once, and did not send it back.
    let rows2 = n2.actions();
    assert_eq!(results(&rows2), ["unknown_container"], "{rows2:?}");
    assert_eq!(results(&n1.actions()), ["forwarded"]);
    assert!(
        n1.actions()[0].reason.contains("unknown_container"),
        "{:?}",
        n1.actions()
    );
    // An alert sent to node 2 naming node 1: forwarded to node 1 once, which
    // does not forward it back.
    let mut back = alert.clone();
    back["labels"]["instance"] = json!(format!("127.0.0.1:{port}"));
    back["fingerprint"] = json!("00000000000000f2");
    assert_eq!(n2.post_one(back), "forwarded");
    assert_eq!(results(&n1.actions()), ["forwarded", "unknown_container"]);
    assert_eq!(results(&n2.actions()), ["unknown_container", "forwarded"]);
    assert_eq!(count(&c, "sleep 1000"), 2, "something acted");
}

#[test]
fn an_unreachable_peer_is_503_and_alertmanagers_retry_succeeds() {
    if !require_docker() {
        return;
    }
    let c = sleeps(2, false);
    let (d1, d2) = (TempDir::new(), TempDir::new());
    let port = free_port();
    let n1 = blind(&d1, port, port);
    let (am, am_port) = alertmanager(&d1, &n1);
    fire(am_port, alert_labels(&c.id));
    let first = poll_until(WAIT, STEP, || n1.actions().into_iter().next())
        .unwrap_or_else(|| panic!("no delivery\n{}", am.log()));
    assert_eq!(first.result, "failed", "{first:?}");
    assert!(
        first.reason.contains("could not be reached"),
        "{}",
        first.reason
    );
    // Node 2 comes up; Alertmanager's retry is forwarded and acted on.
    let n2 = seeing(&d2, port, &[]);
    poll_until(WAIT, STEP, || {
        n2.actions()
            .iter()
            .any(|r| r.result == "done")
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the retry never arrived: node 1 {:?}, node 2 {:?}\n{}",
            results(&n1.actions()),
            results(&n2.actions()),
            am.log()
        )
    });
    assert!(n1.actions().iter().any(|r| r.result == "forwarded"));
    poll_until(WAIT, STEP, || (count(&c, "sleep 1000") == 1).then_some(()))
        .expect("the surplus copy was killed");
}
