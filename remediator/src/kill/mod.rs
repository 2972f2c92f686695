//! Kill-duplicates: choosing the idle duplicate copies of one container
//! and killing them without ever touching anything else.
//!
//! - [`plan`](mod@plan): read two samples of the container, then decide on
//!   them with no I/O ([`plan_from`]);
//! - [`select`]: which copies of a duplicate group die (pure);
//! - [`execute`](mod@execute): pin, re-check, freeze, SIGTERM, grace,
//!   SIGKILL, everything journaled and interruptible;
//! - [`resume`]: continue, after a crash, what a run left frozen;
//! - [`engine`]: the [`KillEngine`] seam the remediator's decisions call,
//!   and its implementation over the host.
//!
//! This module holds what they share: the [`KillPolicy`] (the settings'
//! own, declared once with its defaults) and the plan's types.

use std::time::Duration;

use pidwarden_shared::cgroup::CgroupScope;
use pidwarden_shared::procfs::{Cmdline, Process};
use pidwarden_shared::redact::redact_command;
use serde::{Deserialize, Serialize};

pub mod engine;
pub mod execute;
pub mod plan;
pub mod resume;
pub mod select;

pub use engine::{HostKillEngine, KillEngine, ViewMismatch};
pub use execute::{
    execute, pin_child, Descendant, ExecControl, Journal, JournalError, KillReport, Signal,
    Signalled, BATCH_FDS, KILL_WAIT, MIN_BATCH_FDS,
};
pub use plan::{plan, plan_from, plan_with_window, read_samples, Samples};
pub use resume::resume_stopped;
pub use select::Spared;

/// Longest command line kept in a [`ProcRef`] (after redaction).
pub const COMMAND_CHARS: usize = 200;

/// How the engine chooses and kills.
#[derive(Debug, Clone)]
pub struct KillPolicy {
    /// Copies kept per duplicate group (at least one is always kept).
    pub keep: usize,
    /// Length of the CPU sampling window.
    pub sample: Duration,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Patterns matched against full (unredacted) command lines: a copy with
    /// any matching member is never killed.
    pub protected: Vec<regex::Regex>,
}

impl Default for KillPolicy {
    fn default() -> Self {
        KillPolicy {
            keep: 1,
            sample: Duration::from_secs(2),
            grace: Duration::from_secs(5),
            protected: Vec::new(),
        }
    }
}

/// A process identity: pid plus start time, and its redacted command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    /// PID in the namespace of the proc root.
    pub pid: i32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
    /// Command line, redacted, at most [`COMMAND_CHARS`] characters.
    pub command: String,
}

impl ProcRef {
    fn of(p: &Process) -> ProcRef {
        ProcRef {
            pid: p.pid,
            start_time: p.start_time,
            command: redact_command(&p.cmdline, COMMAND_CHARS),
        }
    }
}

/// One copy: a group member and its subtree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyPlan {
    /// The group member.
    pub root: ProcRef,
    /// The root's exact command line (arguments apart, unredacted) when
    /// planned: [`execute()`] leaves the copy alone unless the root still runs
    /// exactly this. Never serialised (it may hold secrets); a plan read
    /// back from JSON has none, and its copies are left alone.
    #[serde(skip)]
    pub argv: Cmdline,
    /// The root and all its descendants, root first.
    pub members: Vec<ProcRef>,
    /// CPU ticks the subtree used during the sampling window.
    pub cpu_ticks: u64,
    /// Resident memory (RSS, bytes) of the subtree's members when planned;
    /// 0 in plans read back from older JSON.
    #[serde(default)]
    pub rss_bytes: u64,
}

/// A copy left alone whatever its activity, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SparedCopy {
    /// The copy.
    #[serde(flatten)]
    pub copy: CopyPlan,
    /// Why it is spared.
    pub spared: Spared,
}

/// What [`plan()`] decided for one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KillPlan {
    /// Full container id.
    pub container_id: String,
    /// The container's cgroup as discovery found it when planning: the only
    /// place [`execute()`] signals in. A plan without one (read back from
    /// older JSON) signals nothing.
    #[serde(default)]
    pub scope: CgroupScope,
    /// Copies to kill, least active first. Empty: nothing to do.
    pub victims: Vec<CopyPlan>,
    /// Copies kept, most active first.
    pub kept: Vec<CopyPlan>,
    /// Copies left alone because a member matched a protected pattern or is
    /// the container's init.
    pub protected_skipped: usize,
    /// The copies counted in `protected_skipped`, each with why it is spared.
    #[serde(default)]
    pub spared: Vec<SparedCopy>,
}

impl KillPlan {
    /// Resident memory of the victim copies when planned (bytes).
    pub fn victim_rss_bytes(&self) -> u64 {
        self.victims.iter().map(|c| c.rss_bytes).sum()
    }
}

/// Planning failed.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    /// Reading the container's cgroup or processes failed.
    #[error("reading container {id}: {source}")]
    Collect {
        /// The container.
        id: String,
        /// What went wrong.
        #[source]
        source: pidwarden_shared::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_defaults_match_the_design() {
        let p = KillPolicy::default();
        assert_eq!(p.keep, 1);
        assert_eq!(p.sample, Duration::from_secs(2));
        assert_eq!(p.grace, Duration::from_secs(5));
        assert!(p.protected.is_empty());
    }

    #[test]
    fn proc_refs_round_trip_through_json() {
        let plan = KillPlan {
            container_id: "a".repeat(64),
            scope: CgroupScope::default(),
            victims: Vec::new(),
            kept: vec![CopyPlan {
                argv: Cmdline::from_args(["sh", "-c", "x"]),
                root: ProcRef {
                    pid: 5,
                    start_time: 9,
                    command: "sh -c x".into(),
                },
                members: Vec::new(),
                cpu_ticks: 3,
                rss_bytes: 4096,
            }],
            protected_skipped: 1,
            spared: Vec::new(),
        };
        let json = serde_json::to_string(&plan).unwrap();
        let back: KillPlan = serde_json::from_str(&json).unwrap();
        assert_eq!(back.kept[0].root.command, "sh -c x");
        // The unredacted command line stays out of the JSON.
        assert!(!json.contains("argv"), "{json}");
        assert!(back.kept[0].argv.is_empty());
        assert_eq!(back.protected_skipped, 1);
        let report = KillReport {
            refused: vec![(plan.kept[0].root.clone(), "why".into())],
            ..KillReport::default()
        };
        let back: KillReport =
            serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
        assert_eq!(back.refused[0].1, "why");
    }
}
