//! The workspace's own daemons started from their built binaries: the
//! exporter and the remediator on free ports of 127.0.0.1, each a [`Daemon`]
//! (ended by PID on drop), plus the remediator's audit trail as rows.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::http::{free_port, try_http_get, try_http_post};
use crate::process::Daemon;
use crate::tempdir::TempDir;
use crate::util::{poll_until, unique_name, workspace_bin};

/// `pidwarden-exporter --listen 127.0.0.1:<port> <args>`.
#[derive(Debug)]
pub struct Exporter {
    /// The process.
    pub daemon: Daemon,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Exporter {
    /// Starts the exporter with extra `args` and waits until `/metrics` answers 2xx.
    pub fn start<I, S>(args: I) -> Exporter
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let port = free_port();
        let mut daemon = Daemon::spawn(
            Command::new(workspace_bin("pidwarden-exporter"))
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(args),
        );
        daemon.wait_ready("exporter", &format!("http://127.0.0.1:{port}/metrics"));
        Exporter { daemon, port }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `/metrics`, asked again until it answers 200 (a loaded host may be
    /// slow to answer); panics with the exporter's log after 30 s.
    pub fn metrics(&self) -> String {
        poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
            self.scrape().ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "{} never answered 200\n{}",
                self.url("/metrics"),
                self.daemon.log()
            )
        })
    }

    /// One scrape of `/metrics`: the exposition, or why there is none.
    pub fn scrape(&self) -> Result<String, String> {
        match try_http_get(&self.url("/metrics"))? {
            (200, body) => Ok(body),
            (status, body) => Err(format!("status {status}: {body}")),
        }
    }
}

/// `pidwarden-remediator` with a fresh bearer token and a state directory,
/// both inside a [`TempDir`] the caller owns.
#[derive(Debug)]
pub struct Remediator {
    /// The process.
    pub daemon: Daemon,
    /// Its listen address (127.0.0.1 unless started with
    /// [`Remediator::start_at`]).
    pub host: std::net::IpAddr,
    /// Its port.
    pub port: u16,
    /// The bearer token the webhook and the actions API accept.
    pub token: String,
    /// The file holding [`Remediator::token`].
    pub token_file: PathBuf,
    /// `--state-dir` (the audit store).
    pub state_dir: PathBuf,
}

impl Remediator {
    /// Starts the remediator with its files in `dir` (the TOML `config`
    /// when given) and extra `args`; waits until `/healthz` answers 2xx.
    pub fn start<I, S>(dir: &TempDir, config: Option<&str>, args: I) -> Remediator
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::start_on(dir, free_port(), config, args)
    }

    /// [`Remediator::start`] on a given port. The token is kept in `dir`
    /// across restarts on the same directory.
    pub fn start_on<I, S>(dir: &TempDir, port: u16, config: Option<&str>, args: I) -> Remediator
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let localhost = std::net::IpAddr::from([127, 0, 0, 1]);
        Self::start_at(dir, (localhost, port).into(), config, args)
    }

    /// [`Remediator::start`] listening on `addr` (a loopback address: a
    /// second "node" can be 127.0.0.2).
    pub fn start_at<I, S>(
        dir: &TempDir,
        addr: std::net::SocketAddr,
        config: Option<&str>,
        args: I,
    ) -> Remediator
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let port = addr.port();
        let token_file = dir.path().join("webhook-token");
        let token = match std::fs::read_to_string(&token_file) {
            Ok(t) => t.trim().to_string(),
            Err(_) => {
                let t = format!("token-{}", unique_name());
                dir.write("webhook-token", &format!("{t}\n"));
                t
            }
        };
        let state_dir = dir.path().join("state");
        let mut cmd = Command::new(workspace_bin("pidwarden-remediator"));
        cmd.args(["--listen", &addr.to_string()])
            .arg("--token-file")
            .arg(&token_file)
            .arg("--state-dir")
            .arg(&state_dir);
        if let Some(cfg) = config {
            cmd.arg("--config").arg(dir.write("remediator.toml", cfg));
        }
        cmd.args(args);
        let mut daemon = Daemon::spawn(&mut cmd);
        daemon.wait_ready("remediator", &format!("http://{addr}/healthz"));
        Remediator {
            daemon,
            host: addr.ip(),
            port,
            token,
            token_file,
            state_dir,
        }
    }

    /// `http://<host>:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.host, self.port)
    }

    /// `Authorization` header value.
    pub fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// POSTs a webhook `body` (JSON) with the token: `(status, body)`, or
    /// `Err` on a transport error.
    pub fn post_alerts(&self, body: &str) -> Result<(u16, String), String> {
        try_http_post(
            &self.url("/api/v1/alerts"),
            &[
                ("Authorization", &self.auth()),
                ("Content-Type", "application/json"),
            ],
            body,
        )
    }

    /// An authenticated GET of `path`: `(status, body)`; panics on a
    /// transport error.
    pub fn get(&self, path: &str) -> (u16, String) {
        let url = self.url(path);
        let resp = ureq::get(&url)
            .set("Authorization", &self.auth())
            .timeout(Duration::from_secs(30))
            .call();
        match resp {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
            Err(e) => panic!("GET {url}: {e}"),
        }
    }

    /// The audit trail, oldest first, from `GET /api/v1/actions`.
    pub fn actions(&self) -> Vec<AuditRow> {
        let (code, body) = self.get("/api/v1/actions?limit=1000");
        assert_eq!(code, 200, "GET /api/v1/actions: {body}");
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("actions JSON: {e}: {body}"));
        let mut rows: Vec<AuditRow> = v["actions"]
            .as_array()
            .unwrap_or_else(|| panic!("no `actions` array in {body}"))
            .iter()
            .map(AuditRow::from_json)
            .collect();
        rows.sort_by_key(|r| r.id);
        rows
    }

    /// `pidwarden-remediator history` (table, or JSON rows newest first).
    pub fn history(&self, json: bool) -> String {
        let mut cmd = Command::new(workspace_bin("pidwarden-remediator"));
        cmd.arg("history")
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(["--limit", "1000"]);
        if json {
            cmd.arg("--json");
        }
        let out = crate::run_ok(&mut cmd);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// One row of the remediator's audit trail.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// Row id (increasing).
    pub id: i64,
    /// When the alert was received, Unix ms.
    pub at_ms: i64,
    /// When the action finished, Unix ms (None while pending).
    pub finished_ms: Option<i64>,
    /// The alert's `alertname`.
    pub alertname: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// `kill-duplicates`, `restart`, …
    pub action: String,
    /// `done`, `duplicate`, `unknown_container`, …
    pub result: String,
    /// Why.
    pub reason: String,
    /// This decision opened the circuit breaker.
    pub opened_circuit: bool,
    /// The resolved container id ("" when none).
    pub container_id: String,
    /// The resolved container name ("" when none).
    pub container_name: String,
    /// Processes signalled (or planned): the stored count, or the listed
    /// entries when no count was stored.
    pub processes: usize,
    /// The row as JSON.
    pub json: Value,
}

impl AuditRow {
    fn from_json(v: &Value) -> AuditRow {
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        AuditRow {
            id: v["id"].as_i64().unwrap_or(0),
            at_ms: v["at_ms"].as_i64().unwrap_or(0),
            finished_ms: v["finished_ms"].as_i64(),
            alertname: s("alertname"),
            status: s("status"),
            action: s("action"),
            result: s("result"),
            reason: s("reason"),
            opened_circuit: v["opened_circuit"].as_bool().unwrap_or(false),
            container_id: s("container_id"),
            container_name: s("container_name"),
            processes: v["process_count"].as_u64().filter(|&n| n > 0).map_or_else(
                || v["processes"].as_array().map_or(0, Vec::len),
                |n| n as usize,
            ),
            json: v.clone(),
        }
    }
}

/// Counts by (action, result), in a stable order.
pub fn tally(rows: &[AuditRow]) -> Vec<((String, String), usize)> {
    let mut m: HashMap<(String, String), usize> = HashMap::new();
    for r in rows {
        *m.entry((r.action.clone(), r.result.clone())).or_default() += 1;
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort();
    v
}
