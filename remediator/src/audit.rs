//! The audit stage of the pipeline: every decision becomes a row (and a
//! count), every background action's end updates its row. Process lists are
//! bounded here ([`ROW_PROCESSES_MAX`] entries and the total), so neither a
//! 4,000-process action nor the `/api/v1/actions` answer grows without bound.

use serde_json::json;

use crate::alert::{clip, Alert, RequestedAction};
use crate::kill::{JournalError, KillPlan, KillReport, ProcRef};
use crate::outcome::Outcome;
use crate::restraint::InstanceKey;
use crate::service::Service;
use crate::store::{AuditError, Finish, Record, Store, ROW_PROCESSES_MAX};
use crate::task::blocking;

/// What the webhook answers for one alert.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct AlertOutcome {
    /// Audit row id.
    pub row: i64,
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// The action decided (or requested).
    pub action: RequestedAction,
    /// `pending` when an action was started, else the final result.
    pub result: Outcome,
    /// Why.
    pub reason: String,
    /// True when a retry could succeed (the runtime was unreachable).
    #[serde(skip)]
    pub retryable: bool,
}

/// The processes an action concerned, as stored: at most
/// [`ROW_PROCESSES_MAX`] entries, and how many there were.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessList {
    /// The first entries, as JSON objects.
    pub entries: Vec<serde_json::Value>,
    /// How many there were in all.
    pub total: u64,
}

impl ProcessList {
    /// Adds one entry (kept while under the bound, always counted).
    pub fn push(&mut self, p: &ProcRef, extra: serde_json::Value) {
        self.total += 1;
        if self.entries.len() < ROW_PROCESSES_MAX {
            let mut v = json!({"pid": p.pid, "start_time": p.start_time, "command": p.command});
            if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
                o.extend(e);
            }
            self.entries.push(v);
        }
    }

    /// A list of one non-process entry (the restart target).
    pub fn single(v: serde_json::Value) -> ProcessList {
        ProcessList {
            entries: vec![v],
            total: 0,
        }
    }

    /// The stored JSON array.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(self.entries.clone())
    }
}

/// The processes a plan would signal: every member of every victim copy.
pub fn plan_processes(plan: &KillPlan) -> ProcessList {
    let mut out = ProcessList::default();
    for copy in &plan.victims {
        let mut seen = std::collections::HashSet::new();
        for p in std::iter::once(&copy.root).chain(copy.members.iter()) {
            if seen.insert(p.pid) {
                out.push(
                    p,
                    json!({"copy_root": copy.root.pid, "cpu_ticks": copy.cpu_ticks}),
                );
            }
        }
    }
    out
}

/// What an execution did, process by process.
pub fn report_processes(r: &KillReport) -> ProcessList {
    let mut out = ProcessList::default();
    for s in &r.signalled {
        out.push(&s.process, json!({"signal": s.signal}));
    }
    for p in &r.gone_before_signal {
        out.push(p, json!({"gone_before_signal": true}));
    }
    for (p, why) in &r.refused {
        out.push(p, json!({"refused": why}));
    }
    for p in &r.survivors {
        out.push(p, json!({"survived": true}));
    }
    out
}

/// How a background action ended.
#[derive(Debug, Clone)]
pub struct ActionEnd {
    /// The outcome.
    pub result: Outcome,
    /// Why.
    pub reason: String,
    /// What it concerned.
    pub processes: ProcessList,
    /// It failed without changing anything: the alert instance may be tried
    /// again by a redelivery.
    pub retry: bool,
}

impl ActionEnd {
    /// An end with no process list.
    pub fn new(result: Outcome, reason: impl Into<String>) -> ActionEnd {
        ActionEnd {
            result,
            reason: reason.into(),
            processes: ProcessList::default(),
            retry: false,
        }
    }

    /// A failure that changed nothing (retried on redelivery).
    pub fn retryable(reason: impl Into<String>) -> ActionEnd {
        ActionEnd {
            retry: true,
            ..ActionEnd::new(Outcome::Failed, reason)
        }
    }

    /// With a process list.
    pub fn with(mut self, processes: ProcessList) -> ActionEnd {
        self.processes = processes;
        self
    }
}

/// A decision about to be recorded.
pub(crate) struct Row<'a> {
    pub alert: &'a Alert,
    /// The restraint key, when not the container id.
    pub restraint_key: Option<&'a str>,
    pub container_id: &'a str,
    pub container_name: &'a str,
    pub action: &'a RequestedAction,
    pub result: Outcome,
    pub reason: String,
    pub claimed: bool,
    pub opened_circuit: bool,
    pub dry_run: bool,
}

/// The dedupe key of an alert in a mode.
pub(crate) fn instance_key(alert: &Alert, dry_run: bool) -> InstanceKey {
    InstanceKey::new(
        clip(&alert.fingerprint, 64),
        clip(&alert.starts_at, 64),
        dry_run,
    )
}

impl Service {
    /// Writes a decision row; a pending one durably.
    pub(crate) async fn record(&self, row: Row<'_>) -> Result<i64, AuditError> {
        let now_ms = self.now().wall_ms;
        let rec = Record {
            id: 0,
            at_ms: now_ms,
            status: clip(&row.alert.status, 16),
            alertname: clip(row.alert.alertname(), 200),
            fingerprint: clip(&row.alert.fingerprint, 64),
            starts_at: clip(&row.alert.starts_at, 64),
            container_id: row.container_id.to_string(),
            container_name: clip(row.container_name, 200),
            action: row.action.clone(),
            result: row.result,
            reason: row.reason,
            claimed: row.claimed,
            opened_circuit: row.opened_circuit,
            dry_run: row.dry_run,
            retry: false,
            processes: json!([]),
            process_count: 0,
            finished_ms: (row.result != Outcome::Pending).then_some(now_ms),
            restraint_key: row
                .restraint_key
                .filter(|k| *k != row.container_id)
                .map(str::to_string),
        };
        let store = self.store().clone();
        Ok(blocking(move || store.insert(&rec)).await??)
    }

    /// Records a final decision taken in the request and counts it.
    pub(crate) async fn refuse(
        &self,
        alert: &Alert,
        target: (&str, &str),
        action: &RequestedAction,
        result: Outcome,
        reason: String,
        opened_circuit: bool,
    ) -> AlertOutcome {
        self.refuse_keyed(alert, target, None, action, result, reason, opened_circuit)
            .await
    }

    /// [`Service::refuse`] with the restraint key of the decision (needed
    /// when it opened a circuit, which is rebuilt under that key).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn refuse_keyed(
        &self,
        alert: &Alert,
        target: (&str, &str),
        restraint_key: Option<&str>,
        action: &RequestedAction,
        result: Outcome,
        reason: String,
        opened_circuit: bool,
    ) -> AlertOutcome {
        if let Some(a) = action.action() {
            self.metrics().count(a, result);
        }
        tracing::info!(alertname = alert.alertname(), fingerprint = %clip(&alert.fingerprint, 64), id = target.0, action = action.as_str(), result = result.as_str(), reason = %reason, "decision");
        let row = self
            .record(Row {
                alert,
                restraint_key,
                container_id: target.0,
                container_name: target.1,
                action,
                result,
                reason: reason.clone(),
                claimed: false,
                opened_circuit,
                dry_run: false,
            })
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "recording a decision failed");
                -1
            });
        AlertOutcome {
            row,
            fingerprint: clip(&alert.fingerprint, 64),
            action: action.clone(),
            result,
            reason,
            retryable: false,
        }
    }

    /// Writes the end of a background action to its row.
    pub(crate) async fn record_end(&self, row: i64, end: &ActionEnd, reason: String) {
        let store = self.store().clone();
        let (result, retry) = (end.result, end.retry);
        let processes = end.processes.to_json();
        let process_count = end.processes.total;
        let finished_ms = self.now().wall_ms;
        let write = move || {
            store.finish(
                row,
                &Finish {
                    result,
                    reason: &reason,
                    processes: &processes,
                    process_count,
                    retry,
                    finished_ms,
                },
            )
        };
        let written: Result<(), AuditError> = match blocking(write).await {
            Ok(r) => r.map_err(AuditError::from),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = written {
            tracing::error!(row, error = %e, "recording an outcome failed");
        }
    }
}

/// A journal callback for the kill engine: writes the processes about to be
/// stopped to the store, durably, before they are. Runs on the engine's
/// blocking thread.
pub fn stop_journal(store: Store, row: i64) -> impl Fn(&[ProcRef]) -> Result<(), JournalError> {
    move |procs: &[ProcRef]| {
        let ids: Vec<(i32, u64)> = procs.iter().map(|p| (p.pid, p.start_time)).collect();
        store
            .journal_stopped(row, &ids)
            .map_err(|e| JournalError::new(format!("journaling the processes to stop: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pr(pid: i32) -> ProcRef {
        ProcRef {
            pid,
            start_time: pid as u64,
            command: "x".repeat(50),
        }
    }

    #[test]
    fn process_lists_are_bounded_and_counted() {
        let mut l = ProcessList::default();
        for pid in 0..4000 {
            l.push(&pr(pid), json!({"signal": "SIGTERM"}));
        }
        assert_eq!(l.total, 4000);
        assert_eq!(l.entries.len(), ROW_PROCESSES_MAX);
        assert_eq!(l.entries[0]["pid"], 0);
        assert_eq!(l.entries[0]["signal"], "SIGTERM");
    }
}
