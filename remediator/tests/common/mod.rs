//! Fakes and helpers shared by the remediator's integration tests: a fake
//! container runtime, a fake kill engine, Alertmanager-shaped payloads, and
//! an `app()` harness over a SQLite store in a temporary directory.
#![allow(dead_code)]

pub mod binary;
pub mod containers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use futures_util::future::BoxFuture;
use http_body_util::BodyExt as _;
use pidwarden_remediator::auth::Credentials;
use pidwarden_remediator::clock::{Clock, SystemClock};
use pidwarden_remediator::config::Settings;
use pidwarden_remediator::http::{app, AppState};
use pidwarden_remediator::kill::KillEngine;
use pidwarden_remediator::kill::{
    CopyPlan, ExecControl, KillError, KillPlan, KillPolicy, KillReport, ProcRef, Signal, Signalled,
    ViewMismatch,
};
use pidwarden_remediator::metrics::Metrics;
use pidwarden_remediator::runtime::{ContainerInfo, ContainerRuntime, RuntimeError};
use pidwarden_remediator::service::Service;
use pidwarden_remediator::store::{Record, Store};
use pidwarden_remediator::timefmt::{now_nanos, parse_rfc3339};
use pidwarden_shared::cgroup::CgroupScope;
use serde_json::Value;
use tower::ServiceExt as _;

pub const TOKEN: &str = "test-token-0123456789";

/// A container id made from a byte.
pub fn cid(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// A runtime that knows a fixed set of containers.
#[derive(Default)]
pub struct FakeRuntime {
    pub containers: Mutex<HashMap<String, ContainerInfo>>,
    pub restarts: Mutex<Vec<String>>,
    pub inspects: AtomicUsize,
    pub down: AtomicBool,
    /// Restarts fail with this error while set.
    pub restart_error: Mutex<Option<RuntimeError>>,
    /// Every inspect takes this long.
    pub inspect_delay: Mutex<Duration>,
}

impl FakeRuntime {
    pub fn add(&self, id: &str, name: &str, labels: &[(&str, &str)]) {
        self.containers.lock().unwrap().insert(
            id.to_string(),
            ContainerInfo {
                id: id.to_string(),
                name: name.to_string(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                running: true,
                started_at: parse_rfc3339("2020-01-01T00:00:00Z"),
                pod: None,
                pid: Some(4242),
            },
        );
    }

    pub fn restarts(&self) -> Vec<String> {
        self.restarts.lock().unwrap().clone()
    }

    pub fn set(&self, id: &str, f: impl FnOnce(&mut ContainerInfo)) {
        f(self.containers.lock().unwrap().get_mut(id).unwrap())
    }
}

impl ContainerRuntime for FakeRuntime {
    fn inspect<'a>(
        &'a self,
        id_or_name: &'a str,
    ) -> BoxFuture<'a, Result<ContainerInfo, RuntimeError>> {
        Box::pin(async move {
            self.inspects.fetch_add(1, Ordering::SeqCst);
            let delay = *self.inspect_delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            if self.down.load(Ordering::SeqCst) {
                return Err(RuntimeError::Unreachable("connection refused".into()));
            }
            let c = self.containers.lock().unwrap();
            c.get(id_or_name)
                .or_else(|| c.values().find(|i| i.name == id_or_name))
                .cloned()
                .ok_or(RuntimeError::NotFound)
        })
    }

    fn restart<'a>(
        &'a self,
        id: &'a str,
        _stop: Duration,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            if let Some(e) = self.restart_error.lock().unwrap().clone() {
                return Err(e);
            }
            let mut c = self.containers.lock().unwrap();
            let info = c.get_mut(id).ok_or(RuntimeError::NotFound)?;
            info.started_at = Some(now_nanos());
            self.restarts.lock().unwrap().push(id.to_string());
            Ok(())
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                Err(RuntimeError::Unreachable("connection refused".into()))
            } else {
                Ok(())
            }
        })
    }
}

fn proc_ref(pid: i32, cmd: &str) -> ProcRef {
    ProcRef {
        pid,
        start_time: 1000 + pid as u64,
        command: cmd.to_string(),
    }
}

/// An engine whose containers hold a configurable number of surplus copies.
/// `plan` sleeps the sampling window, `execute` the grace period, like the
/// real one; both are recorded.
#[derive(Default)]
pub struct FakeEngine {
    /// id → (victim copies, protected copies skipped).
    pub copies: Mutex<HashMap<String, (usize, usize)>>,
    pub plans: AtomicUsize,
    pub executions: Mutex<Vec<Vec<i32>>>,
    pub executing: AtomicBool,
    /// Planning fails with this error while set.
    pub plan_error: Mutex<Option<String>>,
    /// Processes `resume_stopped` reports as stopped (and continues).
    pub stopped: Mutex<Vec<(i32, u64)>>,
    /// Every process `resume_stopped` was asked about.
    pub resume_asked: Mutex<Vec<(i32, u64)>>,
    /// Containers whose cgroup is on another node.
    pub remote: Mutex<Vec<String>>,
    /// Containers whose discovered cgroup is not the runtime's.
    pub foreign: Mutex<Vec<String>>,
}

impl FakeEngine {
    pub fn set(&self, id: &str, victims: usize, protected: usize) {
        self.copies
            .lock()
            .unwrap()
            .insert(id.to_string(), (victims, protected));
    }

    pub fn executions(&self) -> Vec<Vec<i32>> {
        self.executions.lock().unwrap().clone()
    }
}

impl KillEngine for FakeEngine {
    fn is_local(&self, id: &str) -> bool {
        !self.remote.lock().unwrap().iter().any(|r| r == id)
    }

    fn check_runtime_view(
        &self,
        id: &str,
        init_pid: Option<i32>,
        _planned: Option<&CgroupScope>,
    ) -> Result<(), ViewMismatch> {
        if self.foreign.lock().unwrap().iter().any(|f| f == id) {
            return Err(ViewMismatch::InitOutside {
                pid: init_pid.unwrap_or(0),
                cgroup: format!("docker/{id}").into(),
                found: "elsewhere".into(),
            });
        }
        Ok(())
    }

    fn resume_stopped(&self, procs: &[ProcRef]) -> Vec<ProcRef> {
        let mut stopped = self.stopped.lock().unwrap();
        let mut asked = self.resume_asked.lock().unwrap();
        procs
            .iter()
            .filter(|p| {
                asked.push((p.pid, p.start_time));
                let was = stopped.contains(&(p.pid, p.start_time));
                stopped.retain(|&s| s != (p.pid, p.start_time));
                was
            })
            .cloned()
            .collect()
    }

    fn plan(&self, id: &str, policy: &KillPolicy) -> Result<Option<KillPlan>, KillError> {
        self.plans.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(policy.sample);
        if let Some(e) = self.plan_error.lock().unwrap().clone() {
            return Err(KillError::Collect {
                id: id.to_string(),
                source: pidwarden_shared::Error::Read {
                    path: "/proc".into(),
                    source: std::io::Error::other(e),
                },
            });
        }
        let Some(&(n, protected)) = self.copies.lock().unwrap().get(id) else {
            return Ok(None);
        };
        let copy = |i: usize| {
            let root = proc_ref(100 + 10 * i as i32, "npm exec @x/server");
            CopyPlan {
                argv: Default::default(),
                members: vec![
                    root.clone(),
                    proc_ref(101 + 10 * i as i32, "node /x/server.js"),
                ],
                root,
                cpu_ticks: i as u64,
                rss_bytes: 1 << 20,
            }
        };
        Ok(Some(KillPlan {
            container_id: id.to_string(),
            scope: CgroupScope::default(),
            victims: (1..=n).map(copy).collect(),
            kept: vec![copy(0)],
            protected_skipped: protected,
            spared: Vec::new(),
        }))
    }

    fn execute(
        &self,
        plan: &KillPlan,
        policy: &KillPolicy,
        control: &ExecControl<'_>,
    ) -> KillReport {
        let planned: Vec<ProcRef> = plan
            .victims
            .iter()
            .flat_map(|c| c.members.iter().cloned())
            .collect();
        if let Err(e) = (control.journal)(&planned) {
            return KillReport {
                refused: planned.into_iter().map(|p| (p, e.to_string())).collect(),
                ..Default::default()
            };
        }
        self.executing.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + policy.grace;
        while Instant::now() < deadline {
            if control.abort.load(Ordering::SeqCst) {
                self.executing.store(false, Ordering::SeqCst);
                return KillReport {
                    interrupted: true,
                    ..Default::default()
                };
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let pids: Vec<i32> = plan
            .victims
            .iter()
            .flat_map(|c| c.members.iter().map(|p| p.pid))
            .collect();
        self.executions.lock().unwrap().push(pids);
        // The copies are gone now.
        self.copies
            .lock()
            .unwrap()
            .insert(plan.container_id.clone(), (0, 0));
        self.executing.store(false, Ordering::SeqCst);
        KillReport {
            signalled: plan
                .victims
                .iter()
                .flat_map(|c| c.members.iter())
                .map(|p| Signalled {
                    process: p.clone(),
                    signal: Signal::Term,
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// Settings for tests: tiny sampling and grace, no cooldown.
pub fn fast_settings() -> Settings {
    Settings {
        kill: KillPolicy {
            sample: Duration::from_millis(10),
            grace: Duration::from_millis(10),
            ..KillPolicy::default()
        },
        cooldown: Duration::ZERO,
        ..Settings::default()
    }
}

pub struct Harness {
    pub app: Router,
    pub service: Arc<Service>,
    pub runtime: Arc<FakeRuntime>,
    pub engine: Arc<FakeEngine>,
    pub dir: tempfile::TempDir,
    pub settings: Settings,
}

pub fn bearer() -> Credentials {
    Credentials {
        bearer: Some(TOKEN.as_bytes().to_vec()),
        basic: None,
        peer: None,
    }
}

impl Harness {
    pub fn new(settings: Settings) -> Harness {
        Self::with(
            settings,
            bearer(),
            false,
            tempfile::tempdir().unwrap(),
            Default::default(),
            Default::default(),
        )
    }

    pub fn with(
        settings: Settings,
        credentials: Credentials,
        metrics_auth: bool,
        dir: tempfile::TempDir,
        runtime: Arc<FakeRuntime>,
        engine: Arc<FakeEngine>,
    ) -> Harness {
        Self::clocked(
            settings,
            credentials,
            metrics_auth,
            dir,
            runtime,
            engine,
            Arc::new(SystemClock::new()),
        )
    }

    /// A harness on the given clocks.
    pub fn with_clock(settings: Settings, clock: Arc<dyn Clock>) -> Harness {
        Self::clocked(
            settings,
            bearer(),
            false,
            tempfile::tempdir().unwrap(),
            Default::default(),
            Default::default(),
            clock,
        )
    }

    fn clocked(
        settings: Settings,
        credentials: Credentials,
        metrics_auth: bool,
        dir: tempfile::TempDir,
        runtime: Arc<FakeRuntime>,
        engine: Arc<FakeEngine>,
        clock: Arc<dyn Clock>,
    ) -> Harness {
        let store = Store::open(dir.path()).unwrap();
        let service = Service::with_clock(
            settings.clone(),
            store,
            runtime.clone(),
            engine.clone(),
            Arc::new(Metrics::new()),
            clock,
        )
        .unwrap();
        let app = app(AppState {
            service: service.clone(),
            credentials: Arc::new(credentials.into()),
            metrics_auth,
        });
        Harness {
            app,
            service,
            runtime,
            engine,
            dir,
            settings,
        }
    }

    /// The same state directory, runtime and engine, a new process.
    pub fn restarted(self) -> Harness {
        let settings = self.settings.clone();
        self.restarted_with(settings)
    }

    /// The same state directory, runtime and engine, a new process with
    /// other settings.
    pub fn restarted_with(self, settings: Settings) -> Harness {
        let Harness {
            dir,
            runtime,
            engine,
            ..
        } = self;
        Self::with(settings, bearer(), false, dir, runtime, engine)
    }

    pub async fn send(
        &self,
        req: Request<Body>,
    ) -> (StatusCode, Vec<u8>, axum::http::HeaderMap, Duration) {
        let t = Instant::now();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let took = t.elapsed();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, body, headers, took)
    }

    /// POSTs a webhook body with the bearer token; returns status, JSON and duration.
    pub async fn post(&self, body: &str) -> (StatusCode, Value, Duration) {
        let req = Request::post("/api/v1/alerts")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::from(body.to_string()))
            .unwrap();
        let (s, b, _, d) = self.send(req).await;
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null), d)
    }

    pub async fn get(&self, uri: &str, auth: Option<&str>) -> (StatusCode, String) {
        let mut req = Request::get(uri);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let (s, b, _, _) = self.send(req.body(Body::empty()).unwrap()).await;
        (s, String::from_utf8_lossy(&b).into_owned())
    }

    pub async fn idle(&self) {
        assert!(
            self.service.wait_idle(Duration::from_secs(20)).await,
            "background actions did not finish"
        );
    }

    /// Audit rows, oldest first.
    pub fn rows(&self) -> Vec<Record> {
        let mut r = self.service.store().recent(1000).unwrap();
        r.reverse();
        r
    }

    pub fn results(&self) -> Vec<(String, String)> {
        self.rows()
            .into_iter()
            .map(|r| (r.action.to_string(), r.result.as_str().to_string()))
            .collect()
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics", None).await.1
    }
}

/// One alert of an Alertmanager payload.
pub struct A<'a> {
    pub status: &'a str,
    pub alertname: &'a str,
    pub labels: Vec<(&'a str, &'a str)>,
    pub starts_at: &'a str,
    pub fingerprint: &'a str,
}

impl<'a> A<'a> {
    pub fn firing(alertname: &'a str, fingerprint: &'a str, labels: &[(&'a str, &'a str)]) -> Self {
        A {
            status: "firing",
            alertname,
            labels: labels.to_vec(),
            starts_at: "2026-11-25T10:00:00.123456789Z",
            fingerprint,
        }
    }

    pub fn starts(mut self, s: &'a str) -> Self {
        self.starts_at = s;
        self
    }

    pub fn resolved(mut self) -> Self {
        self.status = "resolved";
        self
    }
}

/// The body exactly as Alertmanager (v0.25+) posts it, trailing newline included.
pub fn payload(alerts: &[A<'_>]) -> String {
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|a| {
            let mut labels = serde_json::Map::new();
            labels.insert("alertname".into(), a.alertname.into());
            labels.insert("severity".into(), "warning".into());
            for (k, v) in &a.labels {
                labels.insert(k.to_string(), (*v).into());
            }
            serde_json::json!({
                "status": a.status,
                "labels": labels,
                "annotations": {"summary": "duplicate processes", "description": "x"},
                "startsAt": a.starts_at,
                "endsAt": if a.status == "resolved" { "2026-11-25T10:30:00Z" } else { "0001-01-01T00:00:00Z" },
                "generatorURL": "http://prometheus:9090/graph?g0.expr=pidwarden_container_duplicate_processes+%3E+5&g0.tab=1",
                "fingerprint": a.fingerprint,
            })
        })
        .collect();
    let status = if alerts.iter().any(|a| a["status"] == "firing") {
        "firing"
    } else {
        "resolved"
    };
    let body = serde_json::json!({
        "receiver": "pidwarden",
        "status": status,
        "alerts": alerts,
        "groupLabels": {"alertname": alerts.first().map(|a| a["labels"]["alertname"].clone()).unwrap_or_default()},
        "commonLabels": {"severity": "warning"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": "{}/{pidwarden_action=~\"^(?:.+)$\"}:{alertname=\"PidwardenDuplicateProcesses\"}",
        "truncatedAlerts": 0
    });
    format!("{body}\n")
}

pub fn results_of(v: &Value) -> Vec<String> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"].as_str().unwrap().to_string())
        .collect()
}
