//! The whole control loop on 127.0.0.1: the exporter and the remediator
//! built from this workspace, a real Prometheus loading the shipped rules
//! (with every `for:` shortened), and a real Alertmanager whose
//! configuration is derived from the shipped example.
//!
//! Every daemon is a [`Daemon`] (ended by PID on drop) and every file lives
//! in a [`TempDir`] removed on drop, so a failing test cleans up too.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::alerting::{alertmanager_config, rules_with_for};
use crate::daemons::{AuditRow, Exporter, Remediator};
use crate::http::{free_port, try_http_get};
use crate::process::Daemon;
use crate::prometheus::prom_api;
use crate::tempdir::TempDir;
use crate::util::{now_ms, poll_until};

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
    /// Prometheus.
    pub prometheus: Daemon,
    /// Alertmanager, when [`StackOptions::alertmanager`].
    pub alertmanager: Option<Daemon>,
    /// The remediator.
    pub remediator: Remediator,
    /// The exporter.
    pub exporter: Exporter,
    /// Prometheus's port on 127.0.0.1.
    pub prometheus_port: u16,
    /// Alertmanager's port on 127.0.0.1 (reserved even when not started).
    pub alertmanager_port: u16,
    /// Configuration, state and data of every daemon.
    pub dir: TempDir,
}

impl Stack {
    /// Starts exporter, remediator, (Alertmanager,) Prometheus and waits
    /// until each answers.
    pub fn start(opts: &StackOptions) -> Stack {
        let dir = TempDir::new();
        let prometheus_port = free_port();
        let alertmanager_port = free_port();
        let operators_port = free_port();

        let exporter = Exporter::start(std::iter::empty::<&str>());
        let remediator = Remediator::start(
            &dir,
            opts.remediator_config.as_deref(),
            &opts.remediator_args,
        );

        let alertmanager = if opts.alertmanager {
            let cfg = dir.write(
                "alertmanager.yml",
                &alertmanager_config(
                    remediator.port,
                    &remediator.token_file,
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
            am.wait_ready(
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
            exporter_port = exporter.port,
            remediator_port = remediator.port,
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
        prometheus.wait_ready(
            "prometheus",
            &format!("http://127.0.0.1:{prometheus_port}/-/ready"),
        );

        Stack {
            prometheus,
            alertmanager,
            remediator,
            exporter,
            prometheus_port,
            alertmanager_port,
            dir,
        }
    }

    /// `Authorization` header value for the remediator.
    pub fn auth(&self) -> String {
        self.remediator.auth()
    }

    /// Panics (with the logs) when a daemon has exited.
    pub fn assert_alive(&mut self) {
        let mut daemons: Vec<(&str, &mut Daemon)> = vec![
            ("exporter", &mut self.exporter.daemon),
            ("remediator", &mut self.remediator.daemon),
            ("prometheus", &mut self.prometheus),
        ];
        if let Some(am) = self.alertmanager.as_mut() {
            daemons.push(("alertmanager", am));
        }
        let dead: Vec<String> = daemons
            .into_iter()
            .filter_map(|(what, d)| d.try_wait().map(|s| format!("{what} {s}:\n{}", d.log())))
            .collect();
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
        poll_until(timeout, Duration::from_millis(250), || {
            self.query(expr).ok().filter(|r| !r.is_empty()).map(|_| ())
        })
        .is_some()
    }

    /// Prometheus's view of its targets: `job health lastError (duration)`,
    /// for failure messages (a scrape slower than its 1 s timeout shows here).
    pub fn targets(&self) -> String {
        let url = format!("http://127.0.0.1:{}/api/v1/targets", self.prometheus_port);
        let Ok((200, body)) = try_http_get(&url) else {
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
        let Ok((200, body)) = try_http_get(&url) else {
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
    pub fn actions(&self) -> Vec<AuditRow> {
        self.remediator.actions()
    }

    /// `pidwarden-remediator history` (table, or JSON rows newest first).
    pub fn history(&self, json: bool) -> String {
        self.remediator.history(json)
    }
}
