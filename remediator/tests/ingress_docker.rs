//! What an Alertmanager poster can make the remediator do with ids that name
//! no container of this node, against the binary and real Docker
//! containers: a flood of unknown ids is answered at once and does not hold
//! back a real alert, and a container *named* like a 64-hex id is never
//! taken for the container of that id.
//! Fails with a clear message when Docker is not reachable, unless
//! `PIDWARDEN_SKIP_DOCKER=1`.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::binary::{alert, Remediator};
use common::containers::{count, sleeps};
use pidwarden_shared::runtime::{
    Control as _, DockerApi, Endpoint, Kind, Metadata as _, RuntimeError, DEFAULT_DOCKER_HOST,
};
use pidwarden_tests::{docker, free_port, require_docker, TempDir};
use serde_json::{json, Value};

/// Alerts in the flood: with the real alert's row, the 1,000 rows
/// `/api/v1/actions` lists at most (a payload may hold 1,000).
const FLOOD: usize = 999;

fn node(n: u8, port: u16) -> SocketAddr {
    ([127, 0, 0, n], port).into()
}

/// A 64-hex id no container has, different per call and per test run.
fn stranger(i: usize) -> String {
    let salt = std::process::id() as u64 ^ 0x5eed_0000_0000;
    format!("{:016x}{:048x}", salt, 0xdead_0000_0000u64 + i as u64)
}

#[test]
fn a_flood_of_unknown_ids_does_not_delay_a_real_alert() {
    if !require_docker() {
        return;
    }
    let c = sleeps(3, false);
    let dir = TempDir::new();
    let port = free_port();
    // The instance every flood alert names: a host that accepts connections
    // (in the kernel's backlog) and never answers, so any forward to it
    // would wait out its timeout.
    let _hang = TcpListener::bind(node(3, port)).unwrap();
    let r = Remediator::start_at(&dir, node(1, port), &[]);
    let flood: Vec<Value> = (0..FLOOD)
        .map(|i| {
            let mut a = alert(
                "PidwardenDuplicatesExhaustingPids",
                &format!("{i:016x}"),
                &stranger(i),
                "kill-duplicates",
            );
            a["labels"]["instance"] = json!("127.0.0.3:9917");
            a
        })
        .collect();
    let started = Instant::now();
    let (code, v, flood_took, real) = std::thread::scope(|s| {
        let flooding = s.spawn(|| {
            let (code, v) = r.webhook(json!(flood));
            (code, v, started.elapsed())
        });
        // The real alert, while the flood is being handled.
        std::thread::sleep(Duration::from_millis(20));
        let real = alert(
            "PidwardenDuplicatesExhaustingPids",
            "00000000000000c1",
            &c.id,
            "kill-duplicates",
        );
        let (code, v) = r.webhook(json!([real]));
        assert_eq!(code, 200, "{v}\n{}", r.daemon.log());
        assert_eq!(v["results"][0]["result"], "pending", "{v}");
        let row = v["results"][0]["row"].as_i64().unwrap();
        let (code, v, took) = flooding.join().unwrap();
        (code, v, took, row)
    });
    assert_eq!(code, 200, "{v}\n{}", r.daemon.log());
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), FLOOD);
    assert!(
        results.iter().all(|o| o["result"] == "unknown_container"),
        "{:?}",
        results.iter().find(|o| o["result"] != "unknown_container")
    );
    let done = r.finished_row(real, Duration::from_secs(60));
    assert_eq!(done.result, "done", "{done:?}\n{}", r.daemon.log());
    assert_eq!(count(&c, "sleep 1000"), 1, "the surplus copies were killed");
    // The real action took its normal course: sampling (0.5 s) and grace
    // (1 s), plus the runtime and /proc work, not a share of the flood.
    let action = Duration::from_millis((done.finished_ms.unwrap() - done.at_ms) as u64);
    assert!(
        action < Duration::from_secs(15),
        "the real action took {action:?}"
    );
    eprintln!(
        "flood of {FLOOD} unknown ids answered in {flood_took:?}; the real action took {action:?}"
    );
}

#[test]
fn a_container_named_like_an_id_is_never_acted_on() {
    if !require_docker() {
        return;
    }
    let c = sleeps(3, false);
    let before = c.started_at();
    // Its name is a 64-hex id that no container has.
    let fake = stranger(FLOOD + 1);
    let out = docker(["rename", &c.id, &fake]);
    assert!(out.status.success(), "{out:?}");

    // The runtime layer: Docker resolves the name, the answer is refused.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let endpoint = Endpoint::parse(DEFAULT_DOCKER_HOST).unwrap().unwrap();
    let api = DockerApi::new(Kind::Docker, endpoint);
    rt.block_on(async {
        assert_eq!(api.inspect(&fake).await, Err(RuntimeError::NotFound));
        assert!(api.meta(&fake).await.unwrap().is_none());
        assert_eq!(api.inspect(&c.id).await.unwrap().id, c.id);
    });

    // The remediator: neither action reaches the container.
    let dir = TempDir::new();
    let r = Remediator::start(&dir, &[]);
    for (fp, action) in [
        ("00000000000000b1", "kill-duplicates"),
        ("00000000000000b2", "restart"),
    ] {
        let (code, v) = r.webhook(json!([alert(
            "PidwardenDuplicatesExhaustingPids",
            fp,
            &fake,
            action
        )]));
        assert_eq!(code, 200, "{v}\n{}", r.daemon.log());
        assert_eq!(
            v["results"][0]["result"], "unknown_container",
            "{action}: {v}"
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        count(&c, "sleep 1000"),
        3,
        "copies of the named container were killed"
    );
    assert_eq!(c.started_at(), before, "the named container was restarted");
    assert!(r.actions().iter().all(|a| a.container_id != c.id));
}
