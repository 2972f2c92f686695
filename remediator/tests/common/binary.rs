//! The remediator binary as a test daemon (the kit's
//! [`pidwarden_tests::Remediator`]) with this crate's fast defaults, driven
//! over HTTP like Alertmanager and an operator would.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use pidwarden_remediator::timefmt::{format_rfc3339, now_nanos};
use pidwarden_tests::{free_port, poll_until, AuditRow, TempDir};
use serde_json::{json, Value};

/// A running remediator.
pub struct Remediator(pub pidwarden_tests::Remediator);

impl Deref for Remediator {
    type Target = pidwarden_tests::Remediator;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Remediator {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Remediator {
    /// Starts the binary with its files in `dir` on a free port, with fast
    /// test defaults (grace 1 s, no cooldown, 0.5 s sampling) that `extra`
    /// flags override.
    pub fn start(dir: &TempDir, extra: &[&str]) -> Remediator {
        Self::start_on(dir, free_port(), extra)
    }

    /// [`Remediator::start`] on a given port (a restart on the same state).
    pub fn start_on(dir: &TempDir, port: u16, extra: &[&str]) -> Remediator {
        Self::start_at(dir, ([127, 0, 0, 1], port).into(), extra)
    }

    /// [`Remediator::start`] listening on `addr` (127.0.0.2 is a second node).
    pub fn start_at(dir: &TempDir, addr: std::net::SocketAddr, extra: &[&str]) -> Remediator {
        let mut args: Vec<&str> = Vec::new();
        for (flag, value) in [("--grace", "1"), ("--cooldown", "0"), ("--sample", "0.5")] {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        args.extend_from_slice(extra);
        Remediator(pidwarden_tests::Remediator::start_at(dir, addr, None, args))
    }

    /// Posts a webhook payload holding `alerts`; returns the status and JSON.
    pub fn webhook(&self, alerts: Value) -> (u16, Value) {
        let body = json!({
            "receiver": "pidwarden", "status": "firing", "alerts": alerts,
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "version": "4",
            "groupKey": "{}:{alertname=\"PidwardenStuck\"}", "truncatedAlerts": 0
        });
        let (code, text) = self
            .post_alerts(&format!("{body}\n"))
            .unwrap_or_else(|e| panic!("POST /api/v1/alerts: {e}\n{}", self.daemon.log()));
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The first result of a webhook call holding one alert.
    pub fn post_one(&self, alert: Value) -> String {
        let (code, v) = self.webhook(json!([alert]));
        assert_eq!(code, 200, "{v}\n{}", self.daemon.log());
        v["results"][0]["result"].as_str().unwrap_or("").to_string()
    }

    /// Waits for the row `row` to leave `pending`; returns it.
    pub fn finished_row(&self, row: i64, timeout: Duration) -> AuditRow {
        poll_until(timeout, Duration::from_millis(100), || {
            self.actions()
                .into_iter()
                .find(|r| r.id == row && r.result != "pending")
        })
        .unwrap_or_else(|| panic!("row {row} did not finish\n{}", self.daemon.log()))
    }
}

/// A firing alert for container `id` asking for `action`, begun now.
pub fn alert(alertname: &str, fingerprint: &str, id: &str, action: &str) -> Value {
    json!({
        "status": "firing",
        "labels": {"alertname": alertname, "id": id, "pidwarden_action": action},
        "annotations": {}, "startsAt": format_rfc3339(now_nanos()),
        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph",
        "fingerprint": fingerprint
    })
}
