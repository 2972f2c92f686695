//! Authenticated webhook load on the real remediator binary: an open-loop
//! 1,000 requests/s (`PIDWARDEN_LOAD_RATE`) for `PIDWARDEN_LOAD_SECS`
//! seconds (default 10), each request one valid Alertmanager payload. Half
//! are redeliveries of one alert instance about a real container (dry-run
//! label: the first delivery is decided, the rest are `duplicate`), half
//! name well-formed ids the runtime does not know (`unknown_container`).
//! The runtime is a private dockerd, so the inspects of the load never
//! reach the machine's main daemon.
//!
//! Asserts that every request is answered 2xx and that every alert is
//! counted as a decision; prints p50/p90/p99 (from each request's due time)
//! and the achieved rate. The goal, p99 ≤ 20 ms, is measured and printed,
//! not asserted. `PIDWARDEN_BIN_DIR=target/release` measures a release build.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use pidwarden_tests::{
    now_ms, require_docker, rfc3339_ms, run_load, series, unique_name, LoadSpec, PrivateDocker,
    Remediator, TempDir,
};
use serde_json::json;

/// Distinct unknown containers in the mix.
const UNKNOWN: usize = 16;
/// Latency goal for p99, reported against.
const P99_GOAL: Duration = Duration::from_millis(20);

fn env_u32(name: &str, default: u32) -> u32 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}")),
        Err(_) => default,
    }
}

/// One Alertmanager (version 4) payload with one firing kill-duplicates alert.
fn payload(id: &str, fingerprint: &str, starts_at: &str) -> String {
    let body = json!({
        "receiver": "pidwarden", "status": "firing", "version": "4",
        "groupKey": "{}:{alertname=\"PidwardenDuplicatesGrowing\"}", "truncatedAlerts": 0,
        "groupLabels": {"alertname": "PidwardenDuplicatesGrowing"},
        "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": "firing",
            "labels": {
                "alertname": "PidwardenDuplicatesGrowing", "id": id,
                "pidwarden_action": "kill-duplicates", "severity": "warning"
            },
            "annotations": {"summary": "duplicate processes"},
            "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph", "fingerprint": fingerprint
        }]
    });
    format!("{body}\n")
}

#[test]
fn webhook_load_is_answered_2xx_with_latency_reported() {
    if !require_docker() {
        return;
    }
    let secs = env_u32("PIDWARDEN_LOAD_SECS", 10);
    let rate = env_u32("PIDWARDEN_LOAD_RATE", 1000);

    let pd = PrivateDocker::start();
    pd.load_test_image();
    let id = pd.run(
        &unique_name(),
        &["--label", "pidwarden.dry-run=true"],
        &["sleep", "300"],
    );
    let dir = TempDir::new();
    let remediator = Remediator::start(&dir, None, ["--docker-host", pd.host()]);

    // The real container's alert instance began after it started.
    let starts_at = rfc3339_ms(now_ms());
    let mut bodies = Vec::new();
    for k in 0..UNKNOWN {
        bodies.push(payload(&id, "5eed5eed5eed5eed", &starts_at));
        let unknown = format!("{:02x}", 0xa0 + k).repeat(32);
        bodies.push(payload(&unknown, &format!("{k:016x}"), &starts_at));
    }
    let addr: SocketAddr = format!("127.0.0.1:{}", remediator.port).parse().unwrap();
    let report = run_load(&LoadSpec {
        addr,
        path: "/api/v1/alerts".into(),
        headers: vec![
            ("authorization".into(), remediator.auth()),
            ("content-type".into(), "application/json".into()),
        ],
        bodies,
        rate,
        duration: Duration::from_secs(u64::from(secs)),
        max_connections: 256,
        timeout: Duration::from_secs(10),
    });
    let load1 = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let _ = writeln!(
        std::io::stderr(),
        "webhook load, {rate}/s for {secs} s, binary {}: {}\n\
         p50 {:.2} ms, p99 {:.2} ms (goal ≤ {} ms: {}), achieved {:.0} answered/s; loadavg {}",
        remediator_binary(),
        report.summary(),
        report.quantile(0.5).as_secs_f64() * 1000.0,
        report.quantile(0.99).as_secs_f64() * 1000.0,
        P99_GOAL.as_millis(),
        if report.quantile(0.99) <= P99_GOAL {
            "met"
        } else {
            "missed"
        },
        report.achieved_rate(),
        load1.trim(),
    );
    assert_eq!(
        report.failures(),
        0,
        "non-2xx or unanswered requests: {}\n{}",
        report.summary(),
        remediator
            .daemon
            .log()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(report.statuses.get(&200).copied(), Some(report.sent));

    // Every alert became one decision: the dry-run decision on the real
    // container, duplicates of it, and unknown containers.
    let (_, metrics) = pidwarden_tests::http_get(&remediator.url("/metrics"));
    let decisions = series(&metrics, "pidwarden_remediations_total");
    let count = |result: &str| -> f64 {
        decisions
            .iter()
            .filter(|s| s.label("result") == result)
            .map(|s| s.value)
            .sum()
    };
    let total: f64 = decisions.iter().map(|s| s.value).sum();
    let half = (report.sent / 2) as f64;
    assert_eq!(total, report.sent as f64, "{metrics}");
    assert_eq!(count("unknown_container"), half, "{metrics}");
    assert!(
        count("duplicate") + count("busy") >= half - 1.0,
        "redeliveries not recognised: {metrics}"
    );
}

fn remediator_binary() -> String {
    pidwarden_tests::workspace_bin("pidwarden-remediator")
        .display()
        .to_string()
}
