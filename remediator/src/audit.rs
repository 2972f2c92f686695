//! The audit stage of the pipeline: every decision becomes a row (and a
//! count), every background action's end updates its row, and the kill
//! engine's journal writes what it is about to stop ([`stop_journal`]).
//! Plans and reports become [`ProcessList`]s, bounded
//! ([`crate::store::ROW_PROCESSES_MAX`] entries and the total), so neither a
//! 4,000-process action nor the `/api/v1/actions` answer grows without bound.

use serde_json::json;

use crate::alert::{clip, Alert, RequestedAction};
use crate::kill::{JournalError, KillPlan, KillReport, ProcRef};
use crate::outcome::Outcome;
use crate::pipeline::{ActionEnd, AlertOutcome, ProcessList};
use crate::restraint::InstanceKey;
use crate::service::Service;
use crate::store::{AuditError, Finish, Record, Store};
use crate::task::blocking;

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
            victim_memory_bytes: None,
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
        self.metrics().count_requested(action.action(), result);
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
        let victim_memory_bytes = end.victim_memory_bytes;
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
                    victim_memory_bytes,
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
    use crate::store::ROW_PROCESSES_MAX;

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
