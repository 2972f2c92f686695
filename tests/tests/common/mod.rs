//! The whole control loop on 127.0.0.1, for the end-to-end tests: the
//! exporter and the remediator built from this workspace, a real Prometheus
//! loading the shipped rules (with every `for:` shortened), and a real
//! Alertmanager whose configuration is derived from the shipped example.
//! Plus the measuring side: a sampler reading the container's pids cgroup
//! every 250 ms, the remediator's audit trail, and the leaking workload.
//!
//! Every daemon is a [`Daemon`] (ended by PID on drop) and every file lives
//! in a [`TempDir`] removed on drop, so a failing test cleans up too.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pidwarden_tests::{free_port, unique_name, wait_http, workspace_bin, workspace_root, Daemon};
use serde_json::Value;

/// How long a daemon may take to answer its readiness URL.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A directory under the system temp dir, removed with its contents on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/pidwarden-test-<unique>`.
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique_name());
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
        TempDir(p)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        fs::write(&p, text).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The shipped rule file with every non-zero `for:` set to `for_value`
/// (`for: 0m` stays: those alerts are immediate by design).
///
/// Every `for:` of `alerts/pidwarden.rules.yml` sits on its own line (the
/// file promises it), so a line-wise substitution is exact. Panics when the
/// file has no `for:` at all (the promise broke).
pub fn rules_with_for(for_value: &str) -> String {
    let path = workspace_root().join("alerts/pidwarden.rules.yml");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut out = String::with_capacity(text.len());
    let mut n = 0;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let rest = trimmed.strip_prefix("for:");
        // `for: 0m` (events that already happened) stays immediate.
        let zero = rest
            .is_some_and(|r| matches!(r.split('#').next().unwrap_or("").trim(), "0" | "0s" | "0m"));
        if let (Some(rest), false) = (rest, zero) {
            // `for: 10m` possibly followed by a comment; keep the indentation.
            let indent = &line[..line.len() - trimmed.len()];
            let comment = rest.find('#').map(|i| &rest[i..]).unwrap_or("");
            let _ = writeln!(out, "{indent}for: {for_value} {comment}");
            n += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(n > 0, "no `for:` line found in {}", path.display());
    out
}

/// Replaces `from` by `to` in `text`, panicking when `from` is absent (the
/// shipped file changed shape and the test must be told).
fn must_replace(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "alerts/alertmanager.yml no longer contains {from:?}"
    );
    text.replace(from, to)
}

/// The shipped `alerts/alertmanager.yml` pointed at this test's remediator
/// and token file, with every group_wait/group_interval/repeat_interval set
/// to `interval` and the operators' placeholder webhook at `operators_port`.
pub fn alertmanager_config(
    remediator_port: u16,
    token_file: &Path,
    operators_port: u16,
    interval: &str,
) -> String {
    let path = workspace_root().join("alerts/alertmanager.yml");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let text = must_replace(
        &text,
        "http://127.0.0.1:9918/api/v1/alerts",
        &format!("http://127.0.0.1:{remediator_port}/api/v1/alerts"),
    );
    let text = must_replace(
        &text,
        "credentials_file: /etc/pidwarden/webhook-token",
        &format!("credentials_file: {}", token_file.display()),
    );
    let text = must_replace(
        &text,
        "http://127.0.0.1:9099/alerts",
        &format!("http://127.0.0.1:{operators_port}/alerts"),
    );
    let mut out = String::new();
    let mut timings = 0;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let key = ["group_wait:", "group_interval:", "repeat_interval:"]
            .into_iter()
            .find(|k| trimmed.starts_with(k));
        if let Some(k) = key {
            let _ = writeln!(out, "{indent}{k} {interval}");
            timings += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(
        timings >= 3,
        "alerts/alertmanager.yml: expected group_wait/group_interval/repeat_interval lines"
    );
    out
}

/// What to start.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Prometheus scrape interval (and timeout). Default 1s;
    /// `PIDWARDEN_E2E_SCRAPE_INTERVAL` overrides it for machines so loaded
    /// that a collection takes longer than a second.
    pub scrape_interval: String,
    /// Replacement for every `for:` of the shipped rules.
    pub rule_for: String,
    /// Start Alertmanager and send alerts to it.
    pub alertmanager: bool,
    /// Alertmanager group_wait / group_interval / repeat_interval.
    pub am_interval: String,
    /// Keep only container series of these ids (plus series without an `id`),
    /// so containers of other tests never reach this loop's rules.
    pub only_ids: Vec<String>,
    /// Extra remediator arguments (`--cooldown 5`, `--dry-run`, …).
    pub remediator_args: Vec<String>,
    /// Remediator TOML configuration, when any.
    pub remediator_config: Option<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            scrape_interval: std::env::var("PIDWARDEN_E2E_SCRAPE_INTERVAL")
                .unwrap_or_else(|_| "1s".into()),
            rule_for: "2s".into(),
            alertmanager: true,
            am_interval: "1s".into(),
            only_ids: Vec::new(),
            remediator_args: Vec::new(),
            remediator_config: None,
        }
    }
}

/// The running loop. Daemons stop (by PID) before the directory goes.
#[derive(Debug)]
pub struct Stack {
    pub prometheus: Daemon,
    pub alertmanager: Option<Daemon>,
    pub remediator: Daemon,
    pub exporter: Daemon,
    pub exporter_port: u16,
    pub remediator_port: u16,
    pub prometheus_port: u16,
    pub alertmanager_port: u16,
    pub token: String,
    pub state_dir: PathBuf,
    pub dir: TempDir,
}

fn wait_ready(d: &mut Daemon, what: &str, url: &str) {
    if let Err(e) = wait_http(url, READY_TIMEOUT) {
        let exited = d.try_wait();
        panic!(
            "{what} not ready ({e}); exited: {exited:?}; log:\n{}",
            d.log()
        );
    }
}

impl Stack {
    /// Starts exporter, remediator, (Alertmanager,) Prometheus and waits
    /// until each answers.
    pub fn start(opts: &StackOptions) -> Stack {
        let dir = TempDir::new();
        let exporter_port = free_port();
        let remediator_port = free_port();
        let prometheus_port = free_port();
        let alertmanager_port = free_port();
        let operators_port = free_port();

        let mut exporter = Daemon::spawn(
            Command::new(workspace_bin("pidwarden-exporter"))
                .args(["--listen", &format!("127.0.0.1:{exporter_port}")]),
        );
        wait_ready(
            &mut exporter,
            "exporter",
            &format!("http://127.0.0.1:{exporter_port}/metrics"),
        );

        let token = format!("token-{}", unique_name());
        let token_file = dir.write("webhook-token", &format!("{token}\n"));
        let state_dir = dir.path().join("state");
        let mut cmd = Command::new(workspace_bin("pidwarden-remediator"));
        cmd.args(["--listen", &format!("127.0.0.1:{remediator_port}")])
            .arg("--token-file")
            .arg(&token_file)
            .arg("--state-dir")
            .arg(&state_dir);
        if let Some(cfg) = &opts.remediator_config {
            cmd.arg("--config").arg(dir.write("remediator.toml", cfg));
        }
        cmd.args(&opts.remediator_args);
        let mut remediator = Daemon::spawn(&mut cmd);
        wait_ready(
            &mut remediator,
            "remediator",
            &format!("http://127.0.0.1:{remediator_port}/healthz"),
        );

        let alertmanager = if opts.alertmanager {
            let cfg = dir.write(
                "alertmanager.yml",
                &alertmanager_config(
                    remediator_port,
                    &token_file,
                    operators_port,
                    &opts.am_interval,
                ),
            );
            let mut am = Daemon::spawn(
                Command::new("/usr/bin/prometheus-alertmanager")
                    .arg(format!("--config.file={}", cfg.display()))
                    .arg(format!(
                        "--storage.path={}",
                        dir.path().join("am-data").display()
                    ))
                    .arg(format!(
                        "--web.listen-address=127.0.0.1:{alertmanager_port}"
                    ))
                    .arg("--cluster.listen-address="),
            );
            wait_ready(
                &mut am,
                "alertmanager",
                &format!("http://127.0.0.1:{alertmanager_port}/-/ready"),
            );
            Some(am)
        } else {
            None
        };

        let rules = dir.write("pidwarden.rules.yml", &rules_with_for(&opts.rule_for));
        let keep = if opts.only_ids.is_empty() {
            String::new()
        } else {
            format!(
                "    metric_relabel_configs:\n      - source_labels: [id]\n        regex: '({}|)'\n        action: keep\n",
                opts.only_ids.join("|")
            )
        };
        let alerting = if opts.alertmanager {
            format!(
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{alertmanager_port}']\n"
            )
        } else {
            String::new()
        };
        let prom_cfg = format!(
            "global:\n  scrape_interval: {si}\n  scrape_timeout: {si}\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n{alerting}\
             scrape_configs:\n\
             \x20 - job_name: pidwarden-exporter\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n{keep}\
             \x20 - job_name: pidwarden-remediator\n    static_configs:\n      - targets: ['127.0.0.1:{remediator_port}']\n",
            rules = rules.display(),
            si = opts.scrape_interval,
        );
        let prom_cfg_path = dir.write("prometheus.yml", &prom_cfg);
        let mut prometheus = Daemon::spawn(
            Command::new("/usr/bin/prometheus")
                .arg(format!("--config.file={}", prom_cfg_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("tsdb").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}")),
        );
        wait_ready(
            &mut prometheus,
            "prometheus",
            &format!("http://127.0.0.1:{prometheus_port}/-/ready"),
        );

        Stack {
            prometheus,
            alertmanager,
            remediator,
            exporter,
            exporter_port,
            remediator_port,
            prometheus_port,
            alertmanager_port,
            token,
            state_dir,
            dir,
        }
    }

    /// `Authorization` header value for the remediator.
    pub fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// Panics (with the logs) when a daemon has exited.
    pub fn assert_alive(&mut self) {
        let mut dead = Vec::new();
        if let Some(s) = self.exporter.try_wait() {
            dead.push(format!("exporter {s}:\n{}", self.exporter.log()));
        }
        if let Some(s) = self.remediator.try_wait() {
            dead.push(format!("remediator {s}:\n{}", self.remediator.log()));
        }
        if let Some(s) = self.prometheus.try_wait() {
            dead.push(format!("prometheus {s}:\n{}", self.prometheus.log()));
        }
        if let Some(am) = self.alertmanager.as_mut() {
            if let Some(s) = am.try_wait() {
                dead.push(format!("alertmanager {s}:\n{}", am.log()));
            }
        }
        assert!(dead.is_empty(), "daemons exited:\n{}", dead.join("\n"));
    }

    /// Instant query; `Ok(result array)` on success, `Err((status, body))`.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, (u16, String)> {
        prom_api(
            self.prometheus_port,
            "query",
            &[("query", expr.to_string())],
        )
    }

    /// Range query over the last `secs` seconds, step 1s.
    pub fn query_range(&self, expr: &str, secs: i64) -> Result<Vec<Value>, (u16, String)> {
        let end = now_ms() as f64 / 1000.0;
        prom_api(
            self.prometheus_port,
            "query_range",
            &[
                ("query", expr.to_string()),
                ("start", format!("{:.3}", end - secs as f64)),
                ("end", format!("{end:.3}")),
                ("step", "1".into()),
            ],
        )
    }

    /// Waits until Prometheus has at least one sample of `expr`.
    pub fn wait_series(&self, expr: &str, timeout: Duration) -> bool {
        pidwarden_tests::poll_until(timeout, Duration::from_millis(250), || {
            self.query(expr).ok().filter(|r| !r.is_empty()).map(|_| ())
        })
        .is_some()
    }

    /// Prometheus's view of its targets: `job health lastError (duration)`,
    /// for failure messages (a scrape slower than its 1 s timeout shows here).
    pub fn targets(&self) -> String {
        let url = format!("http://127.0.0.1:{}/api/v1/targets", self.prometheus_port);
        let Ok((200, body)) = pidwarden_tests::try_http_get(&url) else {
            return "targets: no answer".into();
        };
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        v["data"]["activeTargets"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| {
                        format!(
                            "{} {} last scrape {:.3}s {}",
                            t["labels"]["job"].as_str().unwrap_or("?"),
                            t["health"].as_str().unwrap_or("?"),
                            t["lastScrapeDuration"].as_f64().unwrap_or(-1.0),
                            t["lastError"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }

    /// "N of M exporter scrapes succeeded in the last `secs` s": a loaded
    /// machine (collections slower than the 1 s scrape timeout) shows here.
    pub fn exporter_scrapes(&self, secs: u64) -> String {
        let q = |e: String| {
            self.query(&e)
                .ok()
                .and_then(|r| r.first().cloned())
                .and_then(|v| v["value"][1].as_str().map(str::to_string))
                .unwrap_or_else(|| "?".into())
        };
        format!(
            "{} of {} exporter scrapes succeeded in the last {secs} s (slowest {} s)",
            q(format!(
                "sum_over_time(up{{job=\"pidwarden-exporter\"}}[{secs}s])"
            )),
            q(format!(
                "count_over_time(up{{job=\"pidwarden-exporter\"}}[{secs}s])"
            )),
            q(format!(
                "max_over_time(scrape_duration_seconds{{job=\"pidwarden-exporter\"}}[{secs}s])"
            )),
        )
    }

    /// Firing alerts from Prometheus: (alertname, id label).
    pub fn firing_alerts(&self) -> Vec<(String, String)> {
        let url = format!("http://127.0.0.1:{}/api/v1/alerts", self.prometheus_port);
        let Ok((200, body)) = pidwarden_tests::try_http_get(&url) else {
            return Vec::new();
        };
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        v["data"]["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|x| x["state"] == "firing")
                    .map(|x| {
                        (
                            x["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                            x["labels"]["id"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The audit trail, oldest first, from `GET /api/v1/actions`.
    pub fn actions(&self) -> Vec<Action> {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/actions?limit=1000",
            self.remediator_port
        );
        let resp = ureq::get(&url)
            .set("Authorization", &self.auth())
            .timeout(Duration::from_secs(10))
            .call();
        let body = match resp {
            Ok(r) => r.into_string().unwrap_or_default(),
            Err(e) => panic!("GET {url}: {e}"),
        };
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("actions JSON: {e}: {body}"));
        let mut rows: Vec<Action> = v["actions"]
            .as_array()
            .unwrap_or_else(|| panic!("no `actions` array in {body}"))
            .iter()
            .map(Action::from_json)
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
        let out = cmd.output().expect("running pidwarden-remediator history");
        assert!(
            out.status.success(),
            "history failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn prom_api(port: u16, api: &str, params: &[(&str, String)]) -> Result<Vec<Value>, (u16, String)> {
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    let url = format!("http://127.0.0.1:{port}/api/v1/{api}?{}", q.join("&"));
    let (status, body) = pidwarden_tests::try_http_get(&url).map_err(|e| (0, e))?;
    if status != 200 {
        return Err((status, body));
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| (status, format!("{e}: {body}")))?;
    if v["status"] != "success" {
        return Err((status, body));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// One audit row.
#[derive(Debug, Clone)]
pub struct Action {
    pub id: i64,
    pub at_ms: i64,
    pub finished_ms: Option<i64>,
    pub alertname: String,
    pub status: String,
    pub action: String,
    pub result: String,
    pub reason: String,
    pub opened_circuit: bool,
    pub container_id: String,
    pub processes: usize,
}

impl Action {
    fn from_json(v: &Value) -> Action {
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        Action {
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
            processes: v["processes"].as_array().map_or(0, Vec::len),
        }
    }
}

/// Counts by (action, result), in a stable order.
pub fn tally(rows: &[Action]) -> Vec<((String, String), usize)> {
    let mut m: HashMap<(String, String), usize> = HashMap::new();
    for r in rows {
        *m.entry((r.action.clone(), r.result.clone())).or_default() += 1;
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort();
    v
}

/// One reading of the container's pids cgroup and process table.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at_ms: i64,
    /// `pids.current` (None while the cgroup is gone, e.g. mid-restart).
    pub tasks: Option<u64>,
    /// Surplus duplicates: siblings with identical command lines, size - 1 summed.
    pub duplicates: u64,
    /// `pids.events` max (refused forks) of the current cgroup incarnation.
    pub refused: Option<u64>,
}

/// Reads the container's pids cgroup every 250 ms in a thread.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Sample>>>,
}

fn read_u64(p: &Path) -> Option<u64> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// `max` of a pids.events file.
pub fn refused_forks(pids_dir: &Path) -> Option<u64> {
    let text = fs::read_to_string(pids_dir.join("pids.events")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("max ").and_then(|v| v.trim().parse().ok()))
}

/// Surplus duplicates among the processes of a cgroup, computed the way the
/// exporter defines them: siblings (same parent) with identical command
/// lines, group size minus one, summed. Zombies (no command line) excluded.
pub fn duplicates(pids_dir: &Path) -> u64 {
    let procs = fs::read_to_string(pids_dir.join("cgroup.procs")).unwrap_or_default();
    let mut groups: HashMap<(u32, Vec<u8>), u64> = HashMap::new();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if cmdline.is_empty() {
            continue;
        }
        *groups.entry((ppid, cmdline)).or_default() += 1;
    }
    groups.values().map(|n| n - 1).sum()
}

impl Sampler {
    /// Starts sampling `pids_dir` (the container's v1 pids cgroup).
    pub fn start(pids_dir: PathBuf) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                out.push(Sample {
                    at_ms: now_ms(),
                    tasks: read_u64(&pids_dir.join("pids.current")),
                    duplicates: duplicates(&pids_dir),
                    refused: refused_forks(&pids_dir),
                });
                next += Duration::from_millis(250);
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
            out
        });
        Sampler {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops and returns the samples.
    pub fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Refused forks over the whole run: the sum, over every incarnation of the
/// cgroup (a restart starts a fresh counter), of its highest `max` count.
pub fn total_refused(samples: &[Sample]) -> u64 {
    let mut total = 0;
    let mut cur = 0;
    for s in samples {
        match s.refused {
            Some(v) if v >= cur => cur = v,
            Some(v) => {
                total += cur;
                cur = v;
            }
            None => {
                total += cur;
                cur = 0;
            }
        }
    }
    total + cur
}

/// The leaking workload: init starts one more copy of the same server
/// command line every `every` seconds, as long as fewer than `cap` copies
/// live (a cap far above the PID limit: an unbounded leak). Each copy is a
/// small tree (wrapper `sh -c "$SERVER"` → `sh -c "$IDLE"` → `sleep 1`,
/// three tasks); the first copy to create `/serving` becomes the active one
/// (it burns CPU in a loop, as a server answering a client would) and writes
/// its PID in the container's namespace to `/serving/pid`. Init counts its
/// live copies with builtins only (`read` of `/proc/<pid>/stat`), and its
/// foreground `sleep` reaps the copies that die, as a real gateway's event
/// loop would.
pub fn leaking_container_args(every: &str, cap: u32) -> (Vec<String>, Vec<String>) {
    let env = [
        "SERVER=if mkdir /serving 2>/dev/null; then echo $$ > /serving/pid; sh -c \"$BUSY\"; else sh -c \"$IDLE\"; fi; true".to_string(),
        "BUSY=while :; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 0.1; done".to_string(),
        "IDLE=while :; do sleep 1; done".to_string(),
        format!("EVERY={every}"),
        format!("CAP={cap}"),
    ]
    .into_iter()
    .flat_map(|e| ["-e".to_string(), e])
    .collect();
    let cmd = vec!["sh".to_string(), "-c".to_string(), LEAKING_INIT.to_string()];
    (env, cmd)
}

/// Init of the leaking container (see [`leaking_container_args`]).
pub const LEAKING_INIT: &str = "rm -rf /serving; pids=''; \
while :; do \
n=0; alive=''; \
for p in $pids; do s=''; { read -r _ _ s _ < /proc/$p/stat; } 2>/dev/null; \
case \"$s\" in ''|Z|X) ;; *) alive=\"$alive $p\"; n=$((n+1)) ;; esac; done; \
pids=$alive; \
if [ $n -lt $CAP ]; then sh -c \"$SERVER\" & pids=\"$pids $!\"; fi; \
sleep $EVERY; \
done";

/// Host PID and start time (clock ticks) of the serving copy, found through
/// `/proc/<init>/root/serving/pid` (a PID in the container's namespace) and
/// the `NSpid` lines of the processes in the container's cgroup.
pub fn serving_copy(init_pid: u32, pids_dir: &Path) -> Option<(u32, u64)> {
    let ns_pid: u32 = fs::read_to_string(format!("/proc/{init_pid}/root/serving/pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let procs = fs::read_to_string(pids_dir.join("cgroup.procs")).ok()?;
    for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let last = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|v| v.split_whitespace().last())
            .and_then(|v| v.parse::<u32>().ok());
        if last == Some(ns_pid) {
            return Some((pid, start_time(pid)?));
        }
    }
    None
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // After ")": field 3 is state; start time is field 22 → index 19.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Formats milliseconds as seconds with one decimal.
pub fn secs(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}
