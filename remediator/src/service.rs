//! The remediator's core: turns each alert of a webhook payload into a
//! recorded decision, and runs the chosen action in a background task
//! (kill-duplicates samples and waits out a grace period; a request never
//! waits for that). Every decision is an audit row and a count.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tokio::sync::Notify;

use crate::alert::{clip, Action, Alert, Target, WebhookPayload};
use crate::config::Settings;
use crate::engine::KillEngine;
use crate::kill::{KillPlan, KillPolicy, KillReport, ProcRef};
use crate::metrics::{ContainerLabels, Metrics};
use crate::restraint::{Decision, Restraint};
use crate::runtime::{ContainerInfo, ContainerRuntime, RuntimeError};
use crate::store::{Record, Store, StoreError, PENDING};
use crate::timefmt::now_nanos;

/// Opt-out label: `pidwarden.enable=false`.
pub const LABEL_ENABLE: &str = "pidwarden.enable";
/// Per-container dry-run label: `pidwarden.dry-run=true`.
pub const LABEL_DRY_RUN: &str = "pidwarden.dry-run";
/// How long the webhook waits for the runtime to inspect a container.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How recent a runtime answer must be for readiness.
pub const RUNTIME_FRESH: Duration = Duration::from_secs(30);

/// What the webhook answers for one alert.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AlertOutcome {
    /// Audit row id.
    pub row: i64,
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// The action decided (or requested).
    pub action: String,
    /// `pending` when an action was started, else the final result.
    pub result: String,
    /// Why.
    pub reason: String,
    /// True when a retry could succeed (the runtime was unreachable).
    #[serde(skip)]
    pub retryable: bool,
}

/// Everything the handlers share.
pub struct Service {
    settings: Settings,
    store: Store,
    runtime: Arc<dyn ContainerRuntime>,
    engine: Arc<dyn KillEngine>,
    metrics: Arc<Metrics>,
    restraint: Mutex<Restraint>,
    runtime_ok_ms: AtomicI64,
    in_flight: AtomicUsize,
    idle: Notify,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    (now_nanos() / 1_000_000) as i64
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("background task failed: {e}"))
}

/// A process as recorded in the audit row.
fn proc_json(p: &ProcRef, extra: serde_json::Value) -> serde_json::Value {
    let mut v = json!({"pid": p.pid, "start_time": p.start_time, "command": p.command});
    if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

/// The processes a plan would signal: every member of every victim copy.
pub fn plan_processes(plan: &KillPlan) -> serde_json::Value {
    let mut out = Vec::new();
    for copy in &plan.victims {
        let mut seen = std::collections::HashSet::new();
        for p in std::iter::once(&copy.root).chain(copy.members.iter()) {
            if seen.insert(p.pid) {
                out.push(proc_json(
                    p,
                    json!({"copy_root": copy.root.pid, "cpu_ticks": copy.cpu_ticks}),
                ));
            }
        }
    }
    serde_json::Value::Array(out)
}

fn report_processes(r: &KillReport) -> serde_json::Value {
    let mut out: Vec<_> = r
        .signalled
        .iter()
        .map(|s| proc_json(&s.process, json!({"signal": s.signal})))
        .collect();
    out.extend(
        r.gone_before_signal
            .iter()
            .map(|p| proc_json(p, json!({"gone_before_signal": true}))),
    );
    out.extend(
        r.refused
            .iter()
            .map(|(p, why)| proc_json(p, json!({"refused": why}))),
    );
    out.extend(
        r.survivors
            .iter()
            .map(|p| proc_json(p, json!({"survived": true}))),
    );
    serde_json::Value::Array(out)
}

/// Rows deleted per write when pruning the audit trail.
const PRUNE_BATCH: usize = 500;

/// Rebuilds the restraint state from the audit store as of `now_ms`: the
/// live dedupe keys, and the rows of the restraint windows.
pub fn rebuild_restraint(
    store: &Store,
    settings: &Settings,
    now_ms: i64,
) -> Result<Restraint, StoreError> {
    let horizon = settings.history_horizon().as_millis().min(i64::MAX as u128) as i64;
    let recent = store.since(now_ms.saturating_sub(horizon))?;
    let claimed = store.claimed_instances(settings.prune_before(now_ms))?;
    Ok(Restraint::rebuild(claimed, &recent, settings, now_ms))
}

fn set_circuit_open(metrics: &Metrics, id: &str, name: &str) {
    metrics
        .circuit_open
        .get_or_create(&ContainerLabels {
            id: id.to_string(),
            name: name.to_string(),
        })
        .set(1);
}

/// A decision about to be recorded.
struct Row<'a> {
    alert: &'a Alert,
    container_id: &'a str,
    container_name: &'a str,
    action: &'a str,
    result: &'a str,
    reason: String,
    claimed: bool,
    opened_circuit: bool,
}

impl Service {
    /// Opens the state: rebuilds restraint from the audit store and marks
    /// actions a previous process left pending as failed.
    pub fn new(
        settings: Settings,
        store: Store,
        runtime: Arc<dyn ContainerRuntime>,
        engine: Arc<dyn KillEngine>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Service>, StoreError> {
        let now = now_ms();
        let interrupted = store.fail_interrupted(now)?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "actions left pending by a previous run marked failed"
            );
        }
        let restraint = rebuild_restraint(&store, &settings, now)?;
        for (id, c) in restraint.open_circuits() {
            set_circuit_open(&metrics, id, &c.name);
        }
        Ok(Arc::new(Service {
            settings,
            store,
            runtime,
            engine,
            metrics,
            restraint: Mutex::new(restraint),
            runtime_ok_ms: AtomicI64::new(i64::MIN / 2),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
        }))
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The audit store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn restraint(&self) -> std::sync::MutexGuard<'_, Restraint> {
        self.restraint.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn runtime_answered(&self) {
        self.runtime_ok_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Pings the runtime (the readiness probe's source).
    pub async fn probe_runtime(&self) -> Result<(), RuntimeError> {
        let r = tokio::time::timeout(INSPECT_TIMEOUT, self.runtime.ping())
            .await
            .unwrap_or_else(|_| Err(RuntimeError::Unreachable("ping timed out".into())));
        if r.is_ok() {
            self.runtime_answered();
        }
        r
    }

    /// `Ok` when the store answers and the runtime answered recently; the
    /// reason otherwise.
    pub async fn readiness(&self) -> Result<(), String> {
        let store = self.store.clone();
        blocking(move || store.ping())
            .await?
            .map_err(|e| format!("state store not answering: {e}"))?;
        let age = now_ms() - self.runtime_ok_ms.load(Ordering::Relaxed);
        if age > RUNTIME_FRESH.as_millis() as i64 {
            return Err(format!(
                "container runtime has not answered in the last {} s",
                RUNTIME_FRESH.as_secs()
            ));
        }
        Ok(())
    }

    /// Closes circuits whose window passed (and removes their gauge series).
    pub fn expire_circuits(&self) {
        let closed = self.restraint().expire(&self.settings, now_ms());
        for (id, c) in closed {
            tracing::info!(id = %id, name = %c.name, "circuit breaker closed");
            self.metrics
                .circuit_open
                .remove(&ContainerLabels { id, name: c.name });
        }
    }

    /// Deletes audit rows past the retention period that no state needs
    /// ([`Store::prune`]), in short batches off the async workers. Returns
    /// how many went (none when rows are kept forever).
    pub async fn prune_audit(&self) -> Result<usize, String> {
        let Some(before) = self.settings.prune_before(now_ms()) else {
            return Ok(0);
        };
        let store = self.store.clone();
        blocking(move || store.prune(before, PRUNE_BATCH))
            .await?
            .map_err(|e| e.to_string())
    }

    /// Actions still running in the background.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until no action runs in the background, at most `timeout`.
    /// Returns whether it became idle.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.in_flight() == 0;
            }
        }
    }

    fn kill_policy(&self) -> KillPolicy {
        KillPolicy {
            keep: self.settings.keep,
            sample: self.settings.sample,
            grace: self.settings.grace,
            protected: self.settings.protected.clone(),
        }
    }

    async fn record(&self, row: Row<'_>) -> Result<i64, String> {
        let rec = Record {
            id: 0,
            at_ms: now_ms(),
            status: clip(&row.alert.status, 16),
            alertname: clip(row.alert.alertname(), 200),
            fingerprint: clip(&row.alert.fingerprint, 64),
            starts_at: clip(&row.alert.starts_at, 64),
            container_id: row.container_id.to_string(),
            container_name: clip(row.container_name, 200),
            action: clip(row.action, 64),
            result: row.result.to_string(),
            reason: row.reason,
            claimed: row.claimed,
            opened_circuit: row.opened_circuit,
            processes: json!([]),
            finished_ms: if row.result == PENDING {
                None
            } else {
                Some(now_ms())
            },
        };
        let store = self.store.clone();
        blocking(move || store.insert(&rec))
            .await?
            .map_err(|e| e.to_string())
    }

    /// Records a final decision taken in the request and counts it.
    async fn refuse(
        &self,
        alert: &Alert,
        target: (&str, &str),
        action: &str,
        result: &'static str,
        reason: String,
        opened_circuit: bool,
    ) -> AlertOutcome {
        if let Some(a) = Action::parse(action) {
            if crate::metrics::RESULTS.contains(&result) {
                self.metrics.count(a, result);
            }
        }
        tracing::info!(alertname = alert.alertname(), fingerprint = %clip(&alert.fingerprint, 64), id = target.0, action, result, reason = %reason, "decision");
        let row = self
            .record(Row {
                alert,
                container_id: target.0,
                container_name: target.1,
                action,
                result,
                reason: reason.clone(),
                claimed: false,
                opened_circuit,
            })
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "recording a decision failed");
                -1
            });
        AlertOutcome {
            row,
            fingerprint: clip(&alert.fingerprint, 64),
            action: clip(action, 64),
            result: result.to_string(),
            reason,
            retryable: false,
        }
    }

    /// Handles every alert of a payload, in order. Only decisions are taken
    /// here; actions continue in background tasks.
    pub async fn handle(self: &Arc<Self>, payload: &WebhookPayload) -> Vec<AlertOutcome> {
        let mut out = Vec::with_capacity(payload.alerts.len());
        for alert in &payload.alerts {
            out.push(self.handle_one(alert).await);
        }
        out
    }

    async fn handle_one(self: &Arc<Self>, alert: &Alert) -> AlertOutcome {
        let label = alert.action_label().unwrap_or("");
        let none = ("", "");
        if alert.is_resolved() {
            return self
                .refuse(
                    alert,
                    none,
                    label,
                    "resolved",
                    "alert resolved; nothing to do".into(),
                    false,
                )
                .await;
        }
        let Some(requested) = Action::parse(label) else {
            let reason = if label.is_empty() {
                "no pidwarden_action label; ignored".to_string()
            } else {
                format!("unknown pidwarden_action {:?}; ignored", clip(label, 64))
            };
            return self
                .refuse(alert, none, label, "ignored", reason, false)
                .await;
        };
        if !self.settings.allows(alert.alertname(), requested) {
            let reason = format!(
                "alert {:?} may not ask for {} (config [actions])",
                clip(alert.alertname(), 100),
                requested.as_str()
            );
            return self
                .refuse(alert, none, label, "ignored", reason, false)
                .await;
        }
        let lookup = match alert.target() {
            Target::Invalid(why) => {
                return self
                    .refuse(alert, none, label, "unknown_container", why, false)
                    .await;
            }
            Target::Id(id) => id,
            Target::Name(name) => name,
        };
        let info = match tokio::time::timeout(INSPECT_TIMEOUT, self.runtime.inspect(&lookup)).await
        {
            Ok(Ok(info)) => {
                self.runtime_answered();
                info
            }
            Ok(Err(RuntimeError::NotFound)) => {
                self.runtime_answered();
                let reason = "the container runtime does not know this container".to_string();
                return self
                    .refuse(alert, none, label, "unknown_container", reason, false)
                    .await;
            }
            Ok(Err(e)) => {
                let mut o = self
                    .refuse(alert, none, label, "failed", e.to_string(), false)
                    .await;
                o.retryable = matches!(e, RuntimeError::Unreachable(_));
                return o;
            }
            Err(_) => {
                let reason = "container runtime did not answer the inspect in time".to_string();
                let mut o = self
                    .refuse(alert, none, label, "failed", reason, false)
                    .await;
                o.retryable = true;
                return o;
            }
        };
        if !crate::alert::is_full_id(&info.id) {
            let reason = "the runtime returned no usable container id".to_string();
            return self
                .refuse(alert, none, label, "unknown_container", reason, false)
                .await;
        }
        let target = (info.id.as_str(), info.name.as_str());
        if info
            .labels
            .get(LABEL_ENABLE)
            .is_some_and(|v| v.eq_ignore_ascii_case("false"))
        {
            let reason = format!("container opted out ({LABEL_ENABLE}=false)");
            return self
                .refuse(alert, target, label, "protected", reason, false)
                .await;
        }
        let dry_run = self.settings.dry_run
            || info
                .labels
                .get(LABEL_DRY_RUN)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let key = (clip(&alert.fingerprint, 64), clip(&alert.starts_at, 64));
        let decision = self.restraint().decide(
            &key,
            &info.id,
            &info.name,
            requested,
            &self.settings,
            now_ms(),
        );
        let (action, escalated, token, reason) = match decision {
            Decision::Refuse {
                result,
                reason,
                opened_circuit,
            } => {
                if opened_circuit {
                    set_circuit_open(&self.metrics, &info.id, &info.name);
                }
                return self
                    .refuse(alert, target, label, result, reason, opened_circuit)
                    .await;
            }
            Decision::Act {
                action,
                escalated,
                token,
                reason,
            } => (action, escalated, token, reason),
        };
        if escalated {
            set_circuit_open(&self.metrics, &info.id, &info.name);
        }
        let reason = if dry_run {
            format!("{reason} (dry-run)")
        } else {
            reason
        };
        let row = match self
            .record(Row {
                alert,
                container_id: &info.id,
                container_name: &info.name,
                action: action.as_str(),
                result: PENDING,
                reason: reason.clone(),
                claimed: true,
                opened_circuit: escalated,
            })
            .await
        {
            Ok(row) => row,
            Err(e) => {
                // Without an audit row there is no action.
                tracing::error!(error = %e, "recording a decision failed; not acting");
                self.restraint().withdraw(&key, &info.id, token);
                self.metrics.count(action, "failed");
                return AlertOutcome {
                    row: -1,
                    fingerprint: key.0,
                    action: action.as_str().into(),
                    result: "failed".into(),
                    reason: format!("state store: {e}"),
                    retryable: true,
                };
            }
        };
        tracing::info!(row, id = %info.id, name = %info.name, action = action.as_str(), dry_run, escalated, "action started");
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let svc = Arc::clone(self);
        let job = Job {
            row,
            token,
            action,
            dry_run,
            info,
            alert_starts_at: alert.starts_at_nanos(),
            started: Instant::now(),
            decision: reason.clone(),
        };
        tokio::spawn(async move {
            let (result, reason, processes) = match job.action {
                Action::KillDuplicates => svc.run_kill(&job).await,
                Action::Restart => svc.run_restart(&job).await,
            };
            svc.finish(&job, result, reason, processes).await;
        });
        AlertOutcome {
            row,
            fingerprint: key.0,
            action: action.as_str().into(),
            result: PENDING.into(),
            reason,
            retryable: false,
        }
    }

    async fn run_kill(&self, job: &Job) -> (&'static str, String, serde_json::Value) {
        let policy = self.kill_policy();
        let engine = Arc::clone(&self.engine);
        let id = job.info.id.clone();
        let p2 = policy.clone();
        let plan = match blocking(move || engine.plan(&id, &p2)).await {
            Ok(Ok(Some(plan))) => plan,
            Ok(Ok(None)) => {
                return (
                    "unknown_container",
                    "no such container in the cgroup filesystem".into(),
                    json!([]),
                );
            }
            Ok(Err(e)) | Err(e) => return ("failed", format!("planning failed: {e}"), json!([])),
        };
        let copies = plan.victims.len();
        if copies == 0 {
            return if plan.protected_skipped > 0 {
                (
                    "protected",
                    format!(
                        "only protected processes matched ({} copies skipped)",
                        plan.protected_skipped
                    ),
                    json!([]),
                )
            } else {
                (
                    "recovered",
                    "no duplicate copies left on re-check".into(),
                    json!([]),
                )
            };
        }
        let procs = plan_processes(&plan);
        let n = procs.as_array().map_or(0, Vec::len);
        if job.dry_run {
            return (
                "dry_run",
                format!(
                    "would signal {n} processes in {copies} copies (SIGTERM, {} s grace, SIGKILL), keeping {} per group",
                    policy.grace.as_secs_f64(),
                    policy.keep
                ),
                procs,
            );
        }
        let engine = Arc::clone(&self.engine);
        let report = match blocking(move || engine.execute(&plan, &policy)).await {
            Ok(r) => r,
            Err(e) => return ("failed", e, procs),
        };
        for s in &report.signalled {
            self.metrics
                .signals
                .get_or_create(&crate::metrics::SignalLabel {
                    signal: s.signal.clone(),
                })
                .inc();
        }
        let processes = report_processes(&report);
        let summary = format!(
            "{} signals sent, {} processes gone before their signal, {} refused, {} survivors",
            report.signalled.len(),
            report.gone_before_signal.len(),
            report.refused.len(),
            report.survivors.len()
        );
        if !report.survivors.is_empty() {
            ("failed", summary, processes)
        } else if report.signalled.is_empty() && report.refused.is_empty() {
            (
                "recovered",
                format!("every victim exited on its own; {summary}"),
                processes,
            )
        } else {
            ("done", summary, processes)
        }
    }

    async fn run_restart(&self, job: &Job) -> (&'static str, String, serde_json::Value) {
        let id = &job.info.id;
        let info = match tokio::time::timeout(INSPECT_TIMEOUT, self.runtime.inspect(id)).await {
            Ok(Ok(i)) => i,
            Ok(Err(RuntimeError::NotFound)) => {
                return (
                    "unknown_container",
                    "container vanished before the restart".into(),
                    json!([]),
                )
            }
            Ok(Err(e)) => return ("failed", format!("re-check failed: {e}"), json!([])),
            Err(_) => return ("failed", "re-check timed out".into(), json!([])),
        };
        self.runtime_answered();
        if !info.running {
            return (
                "recovered",
                "container is not running; not restarting it".into(),
                json!([]),
            );
        }
        if let (Some(started), Some(alert)) = (info.started_at, job.alert_starts_at) {
            if started > alert {
                return (
                    "recovered",
                    format!(
                        "container started at {}, after the alert began at {}: already restarted",
                        crate::timefmt::format_rfc3339(started),
                        crate::timefmt::format_rfc3339(alert)
                    ),
                    json!([]),
                );
            }
        }
        let grace = self.settings.grace;
        if job.dry_run {
            return (
                "dry_run",
                format!(
                    "would restart the container (stop timeout {} s)",
                    grace.as_secs().max(1)
                ),
                json!([{"restart": info.id, "name": info.name}]),
            );
        }
        match self.runtime.restart(id, grace).await {
            Ok(()) | Err(RuntimeError::NotModified) => {
                self.runtime_answered();
                (
                    "done",
                    format!("restarted (stop timeout {} s)", grace.as_secs().max(1)),
                    json!([]),
                )
            }
            Err(RuntimeError::NotFound) => (
                "unknown_container",
                "container vanished during the restart".into(),
                json!([]),
            ),
            Err(e) => ("failed", format!("restart failed: {e}"), json!([])),
        }
    }

    async fn finish(
        &self,
        job: &Job,
        result: &'static str,
        reason: String,
        processes: serde_json::Value,
    ) {
        if matches!(result, "recovered" | "unknown_container" | "protected") {
            self.restraint().release(&job.info.id, job.token);
        }
        self.metrics.count(job.action, result);
        self.metrics
            .action_duration
            .get_or_create(&crate::metrics::ActionLabel {
                action: job.action.as_str().to_string(),
            })
            .observe(job.started.elapsed().as_secs_f64());
        let level_warn = result == "failed";
        if level_warn {
            tracing::warn!(row = job.row, id = %job.info.id, action = job.action.as_str(), result, reason = %reason, "action finished");
        } else {
            tracing::info!(row = job.row, id = %job.info.id, action = job.action.as_str(), result, reason = %reason, "action finished");
        }
        let store = self.store.clone();
        let row = job.row;
        let reason = format!("{}: {reason}", job.decision);
        if let Err(e) = blocking(move || store.finish(row, result, &reason, &processes, now_ms()))
            .await
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            tracing::error!(row, error = %e, "recording an outcome failed");
        }
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// One action running in the background.
struct Job {
    row: i64,
    token: u64,
    action: Action,
    dry_run: bool,
    info: ContainerInfo,
    alert_starts_at: Option<i128>,
    started: Instant,
    decision: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const MIN: i64 = 60_000;
    const NOW: i64 = 1000 * DAY;

    struct R {
        ago: i64,
        fp: &'static str,
        starts_at: &'static str,
        container: &'static str,
        action: &'static str,
        result: &'static str,
        claimed: bool,
        opened_circuit: bool,
    }

    fn insert(store: &Store, r: R) -> i64 {
        store
            .insert(&Record {
                id: 0,
                at_ms: NOW - r.ago,
                status: "firing".into(),
                alertname: "PidwardenDuplicatesExhaustingPids".into(),
                fingerprint: r.fp.into(),
                starts_at: r.starts_at.into(),
                container_id: r.container.into(),
                container_name: format!("{}-name", r.container),
                action: r.action.into(),
                result: r.result.into(),
                reason: "r".into(),
                claimed: r.claimed,
                opened_circuit: r.opened_circuit,
                processes: json!([]),
                finished_ms: None,
            })
            .unwrap()
    }

    fn acted(ago: i64, fp: &'static str, starts_at: &'static str, container: &'static str) -> R {
        R {
            ago,
            fp,
            starts_at,
            container,
            action: "kill-duplicates",
            result: "done",
            claimed: true,
            opened_circuit: false,
        }
    }

    /// The escalated restart that opened `container`'s circuit.
    fn escalated(ago: i64, container: &'static str) -> R {
        R {
            action: "restart",
            opened_circuit: true,
            ..acted(ago, "esc", "s1", container)
        }
    }

    fn refused(ago: i64, fp: &'static str, result: &'static str) -> R {
        R {
            result,
            claimed: false,
            ..acted(ago, fp, "s1", "c9")
        }
    }

    fn ids(store: &Store) -> Vec<i64> {
        let mut v: Vec<i64> = store.recent(1000).unwrap().iter().map(|r| r.id).collect();
        v.sort();
        v
    }

    fn retention(days: u64) -> Settings {
        Settings {
            retention: Some(Duration::from_secs(days * 86_400)),
            ..Settings::default()
        }
    }

    #[test]
    fn pruning_drops_old_rows_and_keeps_what_restraint_reads() {
        // Retention 1 day; cooldown 5 min, action bound and circuit 1 h.
        let s = retention(1);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let gone = [
            // An action whose alert instance was never seen again.
            insert(&store, acted(10 * DAY, "gone", "s1", "c1")),
            insert(&store, refused(10 * DAY, "x", "ignored")),
            insert(&store, refused(2 * DAY, "y", "cooldown")),
            // Same fingerprint as a live instance, another startsAt: another instance.
            insert(&store, acted(10 * DAY, "live", "s0", "c1")),
        ];
        let kept = [
            // Claimed long ago, redelivered (a duplicate row) within the retention:
            // its dedupe key is live.
            insert(&store, acted(10 * DAY, "live", "s1", "c1")),
            insert(&store, refused(2 * 60 * MIN, "live", "duplicate")),
            // Still pending.
            insert(
                &store,
                R {
                    result: PENDING,
                    ..acted(10 * DAY, "stuck", "s1", "c4")
                },
            ),
            insert(&store, refused(20 * 60 * MIN, "z", "recovered")),
            // Cooldown source and an open circuit.
            insert(&store, acted(2 * MIN, "recent", "s1", "c2")),
            insert(&store, escalated(20 * MIN, "c3")),
        ];

        let before = rebuild_restraint(&store, &s, NOW).unwrap();
        let cutoff = s.prune_before(NOW).unwrap();
        assert_eq!(cutoff, NOW - DAY);
        assert_eq!(store.prune(cutoff, 2).unwrap(), gone.len());
        assert_eq!(ids(&store), kept.to_vec());
        assert_eq!(store.prune(cutoff, 2).unwrap(), 0);

        let mut after = rebuild_restraint(&store, &s, NOW).unwrap();
        assert_eq!(after, before);
        let key = |fp: &str, st: &str| (fp.to_string(), st.to_string());
        assert!(after.is_handled(&key("live", "s1")));
        assert!(after.is_handled(&key("recent", "s1")));
        assert!(!after.is_handled(&key("gone", "s1")));
        assert_eq!(after.open_circuits().count(), 1);
        let d = after.decide(&key("new", "s1"), "c2", "n", Action::Restart, &s, NOW);
        assert!(
            matches!(
                d,
                Decision::Refuse {
                    result: "cooldown",
                    ..
                }
            ),
            "{d:?}"
        );
        let d = after.decide(&key("new", "s2"), "c3", "n", Action::Restart, &s, NOW);
        assert!(
            matches!(
                d,
                Decision::Refuse {
                    result: "circuit_open",
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn pruning_never_cuts_into_a_restraint_window_longer_than_the_retention() {
        let s = Settings {
            circuit_window: Duration::from_secs(3 * 86_400),
            ..retention(1)
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old = insert(&store, refused(4 * DAY, "x", "ignored"));
        let circuit = insert(&store, escalated(2 * DAY, "c3"));
        let before = rebuild_restraint(&store, &s, NOW).unwrap();
        assert_eq!(before.open_circuits().count(), 1);
        assert_eq!(store.prune(s.prune_before(NOW).unwrap(), 100).unwrap(), 1);
        assert_eq!(ids(&store), vec![circuit]);
        assert!(store.get(old).unwrap().is_none());
        assert_eq!(rebuild_restraint(&store, &s, NOW).unwrap(), before);
    }
}
