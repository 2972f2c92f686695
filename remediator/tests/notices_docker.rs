//! Notices through a real Alertmanager: a real kill leads to Alertmanager
//! delivering a `PidwardenRemediation` alert, with the container's labels
//! and a summary of what was killed, to a webhook receiver (a small HTTP
//! sink in this test); an Alertmanager that never answers does not delay
//! the action, and its notice is counted `failed`. A bad URL is a clear
//! startup error. Fails with a clear message when Docker is not reachable,
//! unless `PIDWARDEN_SKIP_DOCKER=1`.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::binary::{alert, Remediator};
use common::containers::sleeps;
use pidwarden_tests::{free_port, poll_until, require_docker, Daemon, TempDir};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_millis(100);

/// A webhook receiver: every request body it gets, as JSON.
fn sink() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&got);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let body = loop {
                let Ok(n) = conn.read(&mut chunk) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                let Some(end) = text.find("\r\n\r\n") else {
                    continue;
                };
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break Some(buf[end + 4..end + 4 + len].to_vec());
                }
            };
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if let Some(v) = body.and_then(|b| serde_json::from_slice(&b).ok()) {
                keep.lock().unwrap().push(v);
            }
        }
    });
    (port, got)
}

/// A real Alertmanager on 127.0.0.1 routing everything to `sink_port`.
fn alertmanager(dir: &TempDir, sink_port: u16) -> (Daemon, u16) {
    let port = free_port();
    let cfg = dir.write(
        "am.yml",
        &format!(
            "route:\n  receiver: sink\n  group_by: ['alertname', 'id']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: sink\n    webhook_configs:\n      - url: http://127.0.0.1:{sink_port}/hook\n        send_resolved: false\n"
        ),
    );
    let mut am = Daemon::spawn(
        Command::new("/usr/bin/prometheus-alertmanager")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address="),
    );
    am.wait_ready("alertmanager", &format!("http://127.0.0.1:{port}/-/ready"));
    (am, port)
}

/// `pidwarden_remediator_notices_total{result}` on the remediator.
fn notices(r: &Remediator, result: &str) -> Option<f64> {
    let (_, text) = r.get("/metrics");
    let want = format!("pidwarden_remediator_notices_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&want)?.trim().parse().ok())
}

#[test]
fn a_kill_reaches_a_webhook_receiver_through_alertmanager() {
    if !require_docker() {
        return;
    }
    let dir = TempDir::new();
    let (sink_port, got) = sink();
    let (am, am_port) = alertmanager(&dir, sink_port);
    let c = sleeps(3, false);
    let url = format!("http://127.0.0.1:{am_port}");
    let r = Remediator::start(&dir, &["--insecure-no-auth", "--alertmanager-url", &url]);
    assert_eq!(notices(&r, "sent"), Some(0.0), "pre-seeded at 0");
    assert_eq!(notices(&r, "dropped"), Some(0.0), "pre-seeded at 0");
    let (code, v) = r.webhook(serde_json::json!([alert(
        "PidwardenDuplicates",
        "notice-fp",
        &c.id,
        "kill-duplicates"
    )]));
    assert_eq!(code, 200, "{v}");
    let row = r.finished_row(v["results"][0]["row"].as_i64().unwrap(), WAIT);
    assert_eq!(row.result, "done", "{:#}", row.json);
    let delivered = poll_until(WAIT, STEP, || {
        got.lock()
            .unwrap()
            .iter()
            .flat_map(|p| p["alerts"].as_array().cloned().unwrap_or_default())
            .find(|a| a["labels"]["alertname"] == "PidwardenRemediation")
    })
    .unwrap_or_else(|| {
        panic!(
            "no notice reached the receiver\n{}\n{}",
            r.daemon.log(),
            am.log()
        )
    });
    let labels = &delivered["labels"];
    assert_eq!(labels["id"], c.id.as_str(), "{delivered:#}");
    assert_eq!(labels["name"], c.name.as_str(), "{delivered:#}");
    assert_eq!(labels["action"], "kill-duplicates");
    assert_eq!(labels["result"], "done");
    assert!(
        labels.get("namespace").is_none(),
        "empty labels are left out: {delivered:#}"
    );
    let summary = delivered["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("killed 2 of 3 copies of `sleep 1000`") && summary.ends_with("freed"),
        "{summary}"
    );
    assert_eq!(delivered["status"], "firing");
    assert!(poll_until(WAIT, STEP, || (notices(&r, "sent") == Some(1.0))
        .then_some(()))
    .is_some());
    assert_eq!(notices(&r, "failed"), Some(0.0));
}

#[test]
fn an_alertmanager_that_never_answers_delays_no_action_and_counts_failed() {
    if !require_docker() {
        return;
    }
    let dir = TempDir::new();
    // Connections are accepted by the kernel and never answered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let c = sleeps(3, false);
    let r = Remediator::start(
        &dir,
        &[
            "--insecure-no-auth",
            "--dry-run",
            "--alertmanager-url",
            &url,
        ],
    );
    let mut took = Vec::new();
    for fp in ["silent-1", "silent-2"] {
        let t = Instant::now();
        let (code, v) = r.webhook(serde_json::json!([alert(
            "PidwardenDuplicates",
            fp,
            &c.id,
            "kill-duplicates"
        )]));
        assert_eq!(code, 200, "{v}");
        let row = r.finished_row(v["results"][0]["row"].as_i64().unwrap(), WAIT);
        took.push(t.elapsed());
        assert_eq!(row.result, "dry_run", "{:#}", row.json);
    }
    eprintln!("actions with a silent Alertmanager took {took:?}");
    // A notice waits up to 5 s per try: the second action would have
    // waited for the first one's notice if posting were in its path.
    assert!(
        took[1] < Duration::from_secs(4),
        "the second action took {:?}",
        took[1]
    );
    let failed = poll_until(Duration::from_secs(60), Duration::from_millis(250), || {
        (notices(&r, "failed") == Some(2.0)).then_some(())
    });
    assert!(
        failed.is_some(),
        "failed = {:?}\n{}",
        notices(&r, "failed"),
        r.daemon.log()
    );
    assert_eq!(notices(&r, "sent"), Some(0.0));
    drop(silent);
}

#[test]
fn a_bad_alertmanager_url_is_a_startup_error() {
    for bad in ["alertmanager:9093", "ftp://am", "http://am?x=1"] {
        let out = Command::new(env!("CARGO_BIN_EXE_pidwarden-remediator"))
            .args([
                "--insecure-no-auth",
                "--listen",
                "127.0.0.1:0",
                "--alertmanager-url",
                bad,
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}");
        assert!(err.contains("--alertmanager-url"), "{bad}: {err}");
    }
}
