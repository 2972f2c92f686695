//! The remediator binary as a test daemon: started on a free loopback port
//! with a bearer token and a state directory, driven over HTTP like
//! Alertmanager and an operator would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pidwarden_remediator::timefmt::{format_rfc3339, now_nanos};
use pidwarden_tests::{free_port, http_post, poll_until, wait_http, Daemon};
use serde_json::{json, Value};

/// The token the daemons of these tests accept.
pub const BIN_TOKEN: &str = "docker-test-token-42";

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pidwarden-remediator")
}

/// A running remediator.
pub struct Remediator {
    pub port: u16,
    pub daemon: Daemon,
    pub state: PathBuf,
}

impl Remediator {
    /// Starts the binary in `dir` (token file and `state/` inside it) on a
    /// free port, with fast test defaults (grace 1 s, no cooldown, 0.5 s
    /// sampling) that `extra` flags override.
    pub fn start(dir: &Path, extra: &[&str]) -> Remediator {
        Self::start_on(dir, free_port(), extra)
    }

    /// [`Remediator::start`] on a given port.
    pub fn start_on(dir: &Path, port: u16, extra: &[&str]) -> Remediator {
        let token = dir.join("token");
        std::fs::write(&token, format!("{BIN_TOKEN}\n")).unwrap();
        let state = dir.join("state");
        let mut cmd = Command::new(bin());
        for (flag, value) in [("--grace", "1"), ("--cooldown", "0"), ("--sample", "0.5")] {
            if !extra.contains(&flag) {
                cmd.args([flag, value]);
            }
        }
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--token-file")
            .arg(&token)
            .arg("--state-dir")
            .arg(&state)
            .args(extra)
            .env("RUST_LOG", "info");
        let daemon = Daemon::spawn(&mut cmd);
        wait_http(
            &format!("http://127.0.0.1:{port}/healthz"),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("remediator did not come up: {e}\n{}", daemon.log()));
        Remediator {
            port,
            daemon,
            state,
        }
    }

    /// Posts a webhook payload holding `alerts`; returns the status and JSON.
    pub fn webhook(&self, alerts: Value) -> (u16, Value) {
        let body = json!({
            "receiver": "pidwarden", "status": "firing", "alerts": alerts,
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "version": "4",
            "groupKey": "{}:{alertname=\"PidwardenStuck\"}", "truncatedAlerts": 0
        });
        let (code, text) = http_post(
            &format!("http://127.0.0.1:{}/api/v1/alerts", self.port),
            &[
                ("Authorization", &format!("Bearer {BIN_TOKEN}")),
                ("Content-Type", "application/json"),
            ],
            &format!("{body}\n"),
        );
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The first result of a webhook call holding one alert.
    pub fn post_one(&self, alert: Value) -> String {
        let (code, v) = self.webhook(json!([alert]));
        assert_eq!(code, 200, "{v}\n{}", self.daemon.log());
        v["results"][0]["result"].as_str().unwrap_or("").to_string()
    }

    /// The newest audit rows (up to 100), newest first.
    pub fn actions(&self) -> Vec<Value> {
        let (code, body) = authed_get(self.port, "/api/v1/actions?limit=100");
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["actions"].as_array().unwrap().clone()
    }

    /// Waits for the row `row` to leave `pending`; returns it.
    pub fn finished_row(&self, row: i64, timeout: Duration) -> Value {
        poll_until(timeout, Duration::from_millis(100), || {
            self.actions()
                .into_iter()
                .find(|r| r["id"] == row && r["result"] != "pending")
        })
        .unwrap_or_else(|| panic!("row {row} did not finish\n{}", self.daemon.log()))
    }
}

/// An authenticated GET by hand (the kit's GET sends no headers).
pub fn authed_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {BIN_TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Tolerate chunked framing: the JSON object is between the first '{' and the last '}'.
    let body = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => body[a..=b].to_string(),
        _ => body,
    };
    (code, body)
}

/// A firing alert for container `id` asking for `action`, begun now.
pub fn alert(alertname: &str, fingerprint: &str, id: &str, action: &str) -> Value {
    alert_since(
        alertname,
        fingerprint,
        id,
        action,
        &format_rfc3339(now_nanos()),
    )
}

/// A firing alert begun at `starts_at`.
pub fn alert_since(
    alertname: &str,
    fingerprint: &str,
    id: &str,
    action: &str,
    starts_at: &str,
) -> Value {
    json!({
        "status": "firing",
        "labels": {"alertname": alertname, "id": id, "pidwarden_action": action},
        "annotations": {}, "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph",
        "fingerprint": fingerprint
    })
}
