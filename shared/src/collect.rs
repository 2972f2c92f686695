//! One collection: every container with its cgroup figures, its processes and
//! its duplicate groups. The exporter runs one per scrape; the remediator
//! runs one for a single container before it acts.

use serde::Serialize;

use crate::cgroup::{Container, Layout, MemoryStats, PidsStats};
use crate::groups::Group;
use crate::procfs::{ContainerProcesses, ProcessReader};
use crate::{Result, Roots};

/// Where a collection error happened (the `stage` label of
/// `pidwarden_scrape_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Walking the cgroup tree.
    Discovery,
    /// Reading a container's cgroup files.
    Cgroup,
    /// Reading `/proc`.
    Proc,
}

impl Stage {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Discovery => "discovery",
            Stage::Cgroup => "cgroup",
            Stage::Proc => "proc",
        }
    }
}

/// Everything read about one container.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerSnapshot {
    /// The container.
    pub container: Container,
    /// Pids controller figures, when readable.
    pub pids: Option<PidsStats>,
    /// Memory controller figures, when readable.
    pub memory: Option<MemoryStats>,
    /// Live processes and zombies.
    pub processes: ContainerProcesses,
    /// Sibling groups of identical command lines (size ≥ 2), largest first.
    pub groups: Vec<Group>,
}

/// One collection of the whole host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// Containers, sorted by id.
    pub containers: Vec<ContainerSnapshot>,
    /// Errors met, by stage (each also logged by the caller).
    pub errors: Vec<(Stage, String)>,
}

/// Collects snapshots, keeping the process cache between calls.
#[derive(Debug)]
pub struct Collector {
    roots: Roots,
    layout: Option<Layout>,
    reader: ProcessReader,
}

impl Collector {
    /// A collector over the given roots.
    pub fn new(roots: Roots) -> Self {
        Collector {
            reader: ProcessReader::new(roots.clone()),
            roots,
            layout: None,
        }
    }

    /// The roots it reads.
    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    /// Collects every container. Never fails as a whole: errors are listed in
    /// the snapshot and the rest is still returned.
    pub fn collect(&mut self) -> Snapshot {
        let _ = (&self.layout, &mut self.reader);
        unimplemented!("collect")
    }

    /// Collects one container by full id; `Ok(None)` when it is not a
    /// discovered container.
    pub fn collect_one(&mut self, id: &str) -> Result<Option<ContainerSnapshot>> {
        let _ = id;
        unimplemented!("collect_one")
    }
}
