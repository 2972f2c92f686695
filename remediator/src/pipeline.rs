//! The plain types that pass between the pipeline's stages: what the
//! webhook answers for one alert ([`AlertOutcome`]), an action handed from
//! the decision to the background (`Job`), how it ended ([`ActionEnd`])
//! and the bounded list of the processes it concerned ([`ProcessList`]).
//! Data only: no stage's behaviour lives here, and every stage may import
//! it.

use std::time::Instant;

use serde_json::json;

use crate::alert::{Action, RequestedAction};
use crate::kill::ProcRef;
use crate::outcome::Outcome;
use crate::runtime::ContainerInfo;
use crate::store::{InstanceKey, ROW_PROCESSES_MAX};

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

/// One action running in the background.
pub(crate) struct Job {
    pub row: i64,
    pub key: InstanceKey,
    /// What restraint counts this action for ([`crate::restraint::Subject::key`]).
    pub restraint_key: String,
    pub token: u64,
    pub action: Action,
    pub dry_run: bool,
    pub info: ContainerInfo,
    pub alert_starts_at: Option<i128>,
    pub started: Instant,
    pub decision: String,
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
    /// Resident memory of the copies a kill-duplicates killed (would have
    /// killed, in dry-run), read when planned.
    pub victim_memory_bytes: Option<u64>,
    /// What a kill-duplicates did, in copies (for notices).
    pub tally: Option<KillTally>,
}

/// What a kill-duplicates did (or would do), in copies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillTally {
    /// Copies killed (in dry-run: that would be).
    pub killed: usize,
    /// Copies planned for: killed, kept and spared.
    pub of: usize,
    /// The most common command of the victim copies' roots (redacted).
    pub command: String,
    /// Resident memory those copies held when planned (bytes).
    pub bytes: u64,
}

impl ActionEnd {
    /// An end with no process list.
    pub fn new(result: Outcome, reason: impl Into<String>) -> ActionEnd {
        ActionEnd {
            result,
            reason: reason.into(),
            processes: ProcessList::default(),
            retry: false,
            victim_memory_bytes: None,
            tally: None,
        }
    }

    /// A failure that changed nothing (retried on redelivery).
    pub fn retryable(reason: impl Into<String>) -> ActionEnd {
        ActionEnd {
            retry: true,
            ..ActionEnd::new(Outcome::Failed, reason)
        }
    }

    /// With what the kill did, and the memory of the copies it killed.
    pub fn tallied(mut self, tally: KillTally) -> ActionEnd {
        self.victim_memory_bytes = Some(tally.bytes);
        self.tally = Some(tally);
        self
    }

    /// With a process list.
    pub fn with(mut self, processes: ProcessList) -> ActionEnd {
        self.processes = processes;
        self
    }
}
