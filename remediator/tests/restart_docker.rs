//! Against real Docker (and a real Alertmanager): the remediator binary
//! restarts a container when the webhook asks, does not restart it twice for
//! a redelivered alert, and receives, decides and records an alert that
//! travelled through Alertmanager's webhook with bearer credentials from a
//! file. Fails with a clear message when Docker is not reachable, unless
//! `PIDWARDEN_SKIP_DOCKER=1`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::binary::{alert, Remediator};
use pidwarden_remediator::timefmt::{format_rfc3339, now_nanos};
use pidwarden_tests::{
    free_port, http_post, poll_until, require_docker, try_http_get, wait_http, Daemon, TempDir,
    TestContainer,
};
use serde_json::{json, Value};

#[test]
fn restart_via_webhook_changes_started_at_once() {
    if !require_docker() {
        return;
    }
    let c = TestContainer::run(&[], &["sleep", "300"]);
    let before = c.started_at();
    let dir = TempDir::new();
    let r = Remediator::start(&dir, &[]);
    let (port, d) = (r.port, &r.daemon);
    // The alert began after the container started.
    std::thread::sleep(Duration::from_millis(50));
    let alert = json!([alert(
        "PidwardenStuck",
        "0123456789abcdef",
        &c.id,
        "restart"
    )]);
    let (code, v) = r.webhook(alert.clone());
    assert_eq!(code, 200, "{v}\n{}", d.log());
    assert_eq!(v["results"][0]["result"], "pending", "{v}");
    let after = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        let s = c.started_at();
        (s != before).then_some(s)
    })
    .unwrap_or_else(|| panic!("StartedAt never changed\n{}", d.log()));
    assert!(c.is_running());
    let row = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        r.actions()
            .into_iter()
            .map(|a| a.json)
            .find(|r| r["result"] != "pending")
    })
    .unwrap();
    assert_eq!(row["result"], "done", "{row}");
    assert_eq!(row["container_id"], c.id.as_str());
    assert_eq!(row["container_name"], c.name.as_str());

    // Redelivery of the same alert instance: recorded, not acted on.
    let (code, v) = r.webhook(alert);
    assert_eq!(code, 200);
    assert_eq!(v["results"][0]["result"], "duplicate", "{v}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.started_at(), after, "restarted twice");
    let rows = r.actions();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].result, "duplicate");

    // The metrics count it, and `history` reads the same trail.
    let (_, m) = try_http_get(&format!("http://127.0.0.1:{port}/metrics")).unwrap();
    assert!(
        m.contains(r#"pidwarden_remediations_total{action="restart",result="done"} 1"#),
        "{m}"
    );
    assert!(m.contains(r#"pidwarden_remediations_total{action="restart",result="duplicate"} 1"#));
    let hist: serde_json::Value = serde_json::from_str(&r.history(true)).unwrap();
    assert_eq!(hist.as_array().unwrap().len(), 2);
    let table = r.history(false);
    assert!(table.starts_with("ROW"), "{table}");
    assert!(
        table.contains("duplicate") && table.contains("done"),
        "{table}"
    );
}

#[test]
fn an_alert_through_real_alertmanager_is_received_and_recorded() {
    if !require_docker() {
        return;
    }
    // Three identical sleeps under one shell: two surplus copies.
    let c = TestContainer::run(
        &["--label", "pidwarden.dry-run=true"],
        &["sh", "-c", "sleep 300 & sleep 300 & sleep 300 & wait"],
    );
    let dir = TempDir::new();
    let r = Remediator::start(&dir, &[]);
    let (port, d) = (r.port, &r.daemon);
    let am_port = free_port();
    let token = r.token_file.clone();
    let config = format!(
        r#"route:
  receiver: pidwarden
  group_by: ['alertname', 'id']
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1h
receivers:
  - name: pidwarden
    webhook_configs:
      - url: http://127.0.0.1:{port}/api/v1/alerts
        send_resolved: true
        max_alerts: 20
        http_config:
          authorization:
            type: Bearer
            credentials_file: {}
"#,
        token.display()
    );
    std::fs::write(dir.path().join("am.yml"), config).unwrap();
    std::fs::create_dir_all(dir.path().join("am-data")).unwrap();
    let am = Daemon::spawn(
        Command::new("/usr/bin/prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.path().join("am.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address="),
    );
    wait_http(
        &format!("http://127.0.0.1:{am_port}/-/ready"),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("alertmanager did not come up: {e}\n{}", am.log()));
    let alert = json!([{
        "labels": {"alertname": "PidwardenDuplicateProcesses", "id": c.id, "pidwarden_action": "kill-duplicates", "severity": "warning"},
        "annotations": {"summary": "duplicate copies"},
        "startsAt": format_rfc3339(now_nanos()),
        "generatorURL": "http://prometheus:9090/graph"
    }]);
    let (code, text) = http_post(
        &format!("http://127.0.0.1:{am_port}/api/v2/alerts"),
        &[("Content-Type", "application/json")],
        &alert.to_string(),
    );
    assert_eq!(code, 200, "alertmanager refused the alert: {text}");
    let row = poll_until(Duration::from_secs(30), Duration::from_millis(250), || {
        r.actions()
            .into_iter()
            .map(|a| a.json)
            .find(|r| r["container_id"] == c.id.as_str() && r["result"] != "pending")
    })
    .unwrap_or_else(|| {
        panic!(
            "no decision recorded\nremediator:\n{}\nalertmanager:\n{}",
            d.log(),
            am.log()
        )
    });
    assert_eq!(row["alertname"], "PidwardenDuplicateProcesses");
    assert_eq!(row["result"], "dry_run", "{row}");
    let fp = row["fingerprint"].as_str().unwrap();
    assert_eq!(fp.len(), 16, "Alertmanager's fingerprint: {fp}");
    let procs = row["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 2, "{row}");
    for p in procs {
        assert_eq!(p["command"], "sleep 300");
        assert!(p["pid"].as_i64().unwrap() > 1);
        assert!(p["start_time"].as_u64().unwrap() > 0);
    }
    // Dry-run: all three copies still run.
    let ps = c.exec(&["ps"]);
    let sleeps = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.split_whitespace().skip(2).collect::<Vec<_>>() == ["sleep", "300"])
        .count();
    assert_eq!(sleeps, 3, "{}", String::from_utf8_lossy(&ps.stdout));
}

/// A restart alert that names its container by `name` alone.
fn restart_by_name(name: &str, fingerprint: &str) -> Value {
    json!([{
        "status": "firing",
        "labels": {"alertname": "PidwardenStuck", "name": name, "pidwarden_action": "restart"},
        "annotations": {}, "startsAt": format_rfc3339(now_nanos()),
        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint
    }])
}

#[test]
fn a_name_label_resolves_by_exact_name_never_by_id_prefix() {
    if !require_docker() {
        return;
    }
    let b = TestContainer::run(&[], &["sleep", "300"]);
    let before = b.started_at();
    let dir = TempDir::new();
    let r = Remediator::start(&dir, &[]);
    let d = &r.daemon;
    std::thread::sleep(Duration::from_millis(50));

    // Docker's inspect resolves a unique id prefix on the name route: the
    // first 12 hex digits of B's id are not B's name and must not reach B.
    let prefix = &b.id[..12];
    let (code, v) = r.webhook(restart_by_name(prefix, "00000000000000a1"));
    assert_eq!(code, 200, "{v}\n{}", d.log());
    assert_eq!(v["results"][0]["result"], "unknown_container", "{v}");
    let rows = r.actions();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].result, "unknown_container", "{rows:?}");
    assert_ne!(rows[0].container_id, b.id, "{rows:?}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        b.started_at(),
        before,
        "an id prefix restarted the container"
    );

    // B's real name resolves to B and the restart acts.
    let (code, v) = r.webhook(restart_by_name(&b.name, "00000000000000a2"));
    assert_eq!(code, 200, "{v}\n{}", d.log());
    assert_eq!(v["results"][0]["result"], "pending", "{v}");
    poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        (b.started_at() != before).then_some(())
    })
    .unwrap_or_else(|| panic!("the name never restarted the container\n{}", d.log()));
    let row = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        r.actions()
            .into_iter()
            .map(|a| a.json)
            .find(|row| row["fingerprint"] == "00000000000000a2" && row["result"] != "pending")
    })
    .unwrap();
    assert_eq!(row["result"], "done", "{row}");
    assert_eq!(row["container_id"], b.id.as_str(), "{row}");
    assert_eq!(row["container_name"], b.name.as_str(), "{row}");
}
