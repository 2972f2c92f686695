//! Duplicate grouping: sibling processes (same parent) with identical command
//! lines are copies of one another. A *copy* is one such sibling together
//! with its whole subtree.

use std::sync::Arc;

use serde::Serialize;

use crate::procfs::Process;

/// A group of sibling processes with the same command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// The common parent.
    pub ppid: i32,
    /// The common command line (unredacted; redact before it becomes a label).
    pub cmdline: Arc<str>,
    /// The members' pids, oldest first (by start time, then pid).
    pub pids: Vec<i32>,
}

/// Groups `procs` into sibling groups of 2 or more with identical, non-empty
/// command lines, largest first (ties by command line). Pure.
pub fn duplicate_groups(procs: &[Process]) -> Vec<Group> {
    let _ = procs;
    unimplemented!("duplicate_groups")
}

/// Surplus copies: Σ (group size − 1) over all groups.
pub fn surplus(groups: &[Group]) -> u64 {
    groups.iter().map(|g| g.pids.len() as u64 - 1).sum()
}

/// The pids of `root` and all its descendants among `procs` (a copy), root first. Pure.
pub fn subtree(procs: &[Process], root: i32) -> Vec<i32> {
    let _ = (procs, root);
    unimplemented!("subtree")
}
