//! What a remediator that died mid-action left behind. Before an action
//! stops its first process, the processes it is about to stop are journaled
//! durably ([`crate::store::Store::journal_stopped`]); at the next start every
//! action still `pending` is closed here: each journaled process that is
//! still the same process (pid and start time) and still stopped is
//! continued (SIGCONT through a pidfd), and the row becomes `failed` with
//! the reason `interrupted` and what was found. An interrupted action that
//! had stopped nothing changed nothing: its alert instance may be retried.

use crate::kill::KillEngine;
use crate::kill::ProcRef;
use crate::outcome::Outcome;
use crate::store::{Finish, Store, StoreError};

/// Closes every action a previous process left pending; returns how many.
pub fn close_interrupted(
    store: &Store,
    engine: &dyn KillEngine,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let rows = store.interrupted()?;
    for row in &rows {
        let procs: Vec<ProcRef> = row
            .stopped
            .iter()
            .map(|&(pid, start_time)| ProcRef {
                pid,
                start_time,
                command: String::new(),
            })
            .collect();
        let resumed = if procs.is_empty() {
            Vec::new()
        } else {
            engine.resume_stopped(&procs)
        };
        let reason = if procs.is_empty() {
            "interrupted: the remediator stopped before the action stopped or signalled any process"
                .to_string()
        } else {
            format!(
                "interrupted: the remediator stopped during the action; of {} processes it had stopped or was about to stop, {} were still stopped and were continued, the others had been signalled, had exited, or were running",
                procs.len(),
                resumed.len()
            )
        };
        let listed: Vec<serde_json::Value> = resumed
            .iter()
            .take(crate::store::ROW_PROCESSES_MAX)
            .map(|p| serde_json::json!({"pid": p.pid, "start_time": p.start_time, "continued": true}))
            .collect();
        tracing::warn!(row = row.id, action = %row.action, journaled = procs.len(), continued = resumed.len(), "closing an action interrupted by a previous stop");
        store.finish(
            row.id,
            &Finish {
                result: Outcome::Failed,
                reason: &reason,
                processes: &serde_json::Value::Array(listed),
                process_count: procs.len() as u64,
                retry: procs.is_empty(),
                finished_ms: now_ms,
                victim_memory_bytes: None,
            },
        )?;
    }
    Ok(rows.len())
}
