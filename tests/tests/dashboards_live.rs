//! Every PromQL expression of the Grafana dashboards, against a real
//! Prometheus scraping the real exporter and remediator.
//!
//! Containers: one near its PID limit (8) with a memory limit, five
//! identical sibling copies and a zombie; one with PID and memory limits and
//! nothing else; one without limits. The shipped rules are loaded (every
//! non-zero `for:` shortened to 1 s so `ALERTS` has firing Pidwarden alerts
//! for the annotation query). The remediator runs in dry-run with a circuit
//! breaker that trips on the second kill-duplicates request; two webhook
//! calls posted directly give the remediation panels data (a dry-run
//! kill-duplicates, then the escalated restart that opens the circuit).
//!
//! Every query must parse (no 400/422, instant and range); at least 80%
//! must return data, and every panel of [`MUST_HAVE_DATA`] must (the leaky
//! container gives each of them something to show). The ratio and the
//! empty ones are printed.

use std::io::Write as _;
use std::process::Command;
use std::time::Duration;

use pidwarden_tests::{
    http_post, require_docker, workspace_root, Stack, StackOptions, TestContainer,
};
use serde_json::{json, Value};

fn out(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn webhook_payload(id: &str, fingerprint: &str, starts_at: &str) -> String {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"PidwardenDuplicatesExhaustingPids\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "pidwarden-remediator",
        "groupLabels": {"alertname": "PidwardenDuplicatesExhaustingPids", "id": id},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [{
            "status": "firing",
            "labels": {
                "alertname": "PidwardenDuplicatesExhaustingPids",
                "id": id,
                "severity": "critical",
                "pidwarden_action": "kill-duplicates"
            },
            "annotations": {},
            "startsAt": starts_at,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph",
            "fingerprint": fingerprint
        }]
    })
    .to_string()
}

/// Panels (dashboard uid, title) whose every query must return data here:
/// the group memory and oldest copy of the five `sleep 300`, the `sleep 600`
/// holding the zombie, the node's headroom (grafana/test_dashboards.py
/// lists the metric each reads).
const MUST_HAVE_DATA: &[(&str, &str)] = &[
    ("pidwarden-container", "Memory per command group"),
    ("pidwarden-container", "Oldest copy age"),
    ("pidwarden-container", "Zombie parents"),
    ("pidwarden-fleet", "Node PID headroom"),
    ("pidwarden-fleet", "Zombie parents, top 20"),
];

fn dashboard_queries() -> Vec<(String, String, String)> {
    let root = workspace_root();
    let o = Command::new("python3")
        .arg(root.join("grafana/queries.py"))
        .current_dir(&root)
        .output()
        .expect("running python3 grafana/queries.py");
    assert!(
        o.status.success(),
        "grafana/queries.py failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
            (s("dashboard"), s("panel"), s("expr"))
        })
        .collect()
}

#[test]
fn every_dashboard_query_parses_and_most_return_data() {
    if !require_docker() {
        return;
    }
    let queries = dashboard_queries();
    assert!(!queries.is_empty(), "grafana/queries.py printed nothing");

    // 7 tasks of 8 (87%): 5 sibling `sleep 300` (4 surplus), a zombie
    // (`sleep 1`, never reaped by the exec'd `sleep 600`), and init.
    let leaky = TestContainer::run(
        &["--pids-limit", "8", "--memory", "64m"],
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do sleep 300 & done; sleep 1 & exec sleep 600",
        ],
    );
    let _limited = TestContainer::run(
        &["--pids-limit", "32", "--memory", "32m"],
        &["sleep", "600"],
    );
    let _unlimited = TestContainer::run(&[], &["sleep", "600"]);

    let mut stack = Stack::start(&StackOptions {
        rule_for: "1s".into(),
        alertmanager: false,
        remediator_args: ["--dry-run", "--cooldown", "0", "--sample", "0.5"]
            .map(String::from)
            .to_vec(),
        remediator_config: Some("[circuit]\nkill_threshold = 1\n".into()),
        ..Default::default()
    });
    assert!(
        stack.wait_series(
            "up{job=\"pidwarden-remediator\"} == 1",
            Duration::from_secs(30)
        ),
        "Prometheus never scraped the remediator ({})",
        stack.targets()
    );
    let zombie_expr = format!(
        "pidwarden_container_zombie_processes{{id=\"{}\"}} >= 1",
        leaky.id
    );
    assert!(
        stack.wait_series(&zombie_expr, Duration::from_secs(30)),
        "the exporter never reported the zombie of {} ({})",
        leaky.name,
        stack.targets()
    );

    // Two requests for the leaky container: a dry-run kill-duplicates, then
    // (breaker threshold 1) the escalated restart, which opens the circuit.
    let url = format!("http://127.0.0.1:{}/api/v1/alerts", stack.remediator.port);
    let auth = stack.auth();
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    // startsAt after the container started: otherwise the restart re-check
    // would rightly call it "already restarted".
    let now = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("running date");
    let starts = String::from_utf8_lossy(&now.stdout).trim().to_string();
    for fp in ["00000000000000a1", "00000000000000a2"] {
        let (status, body) = http_post(&url, &headers, &webhook_payload(&leaky.id, fp, &starts));
        assert!((200..300).contains(&status), "webhook {status}: {body}");
        std::thread::sleep(Duration::from_millis(1500));
    }
    // Both dry-run outcomes are recorded; then a few scrapes of them.
    let recorded =
        pidwarden_tests::poll_until(Duration::from_secs(20), Duration::from_millis(250), || {
            let rows = stack.actions();
            (rows.iter().filter(|r| r.result == "dry_run").count() >= 2).then_some(rows)
        });
    let rows =
        recorded.unwrap_or_else(|| panic!("dry-run outcomes missing: {:#?}", stack.actions()));
    assert!(
        rows.iter()
            .any(|r| r.action == "restart" && r.opened_circuit),
        "the second request did not escalate: {rows:#?}"
    );
    assert!(
        stack.wait_series(
            "pidwarden_remediator_circuit_open == 1",
            Duration::from_secs(20)
        ),
        "the open circuit never reached Prometheus"
    );
    assert!(
        stack.wait_series(
            "ALERTS{alertstate=\"firing\",alertname=~\"Pidwarden.*\"}",
            Duration::from_secs(30)
        ),
        "no Pidwarden alert fired"
    );
    // Let the 1m rate windows hold several samples after the actions.
    std::thread::sleep(Duration::from_secs(5));
    stack.assert_alive();

    let mut bad = Vec::new();
    let mut empty = Vec::new();
    let mut with_data = 0;
    for (dash, panel, expr) in &queries {
        match stack.query(expr) {
            Ok(r) if r.is_empty() => empty.push((format!("{dash} / {panel}"), expr.clone())),
            Ok(_) => with_data += 1,
            Err((status, body)) => bad.push(format!(
                "{dash} / {panel} (instant, {status}): {expr}\n    {}",
                body.chars().take(300).collect::<String>()
            )),
        }
        if let Err((status, body)) = stack.query_range(expr, 120) {
            bad.push(format!(
                "{dash} / {panel} (range, {status}): {expr}\n    {}",
                body.chars().take(300).collect::<String>()
            ));
        }
    }
    // A scrape that failed just before the query leaves the series stale
    // for a moment: ask the empty ones again a few times.
    for _ in 0..3 {
        if empty.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
        let before = std::mem::take(&mut empty);
        for (label, expr) in before {
            match stack.query(&expr) {
                Ok(r) if !r.is_empty() => with_data += 1,
                _ => empty.push((label, expr)),
            }
        }
    }
    let ratio = with_data as f64 / queries.len() as f64;
    let mut lines = vec![
        String::new(),
        "===== dashboard queries against a live Prometheus =====".to_string(),
        format!(
            "queries: {}, with data: {with_data} ({:.0}%), empty: {}, errors: {}",
            queries.len(),
            ratio * 100.0,
            empty.len(),
            bad.len()
        ),
    ];
    lines.push(stack.exporter_scrapes(60));
    lines.extend(empty.iter().map(|(l, e)| format!("  empty: {l}: {e}")));
    lines.extend(bad.iter().map(|e| format!("  ERROR: {e}")));
    lines.push("===== end of dashboard queries =====".into());
    out(&lines.join("\n"));

    assert!(
        bad.is_empty(),
        "queries Prometheus rejected:\n{}",
        bad.join("\n")
    );
    for (dash, panel) in MUST_HAVE_DATA {
        let label = format!("{dash} / {panel}");
        assert!(
            queries.iter().any(|(d, p, _)| d == dash && p == panel),
            "no query for panel {label}"
        );
        assert!(
            !empty.iter().any(|(l, _)| *l == label),
            "panel {label} shows nothing: {empty:?}"
        );
    }
    assert!(
        ratio >= 0.8,
        "only {with_data} of {} queries returned data ({}); empty:\n{}",
        queries.len(),
        stack.targets(),
        empty
            .iter()
            .map(|(l, e)| format!("{l}: {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
