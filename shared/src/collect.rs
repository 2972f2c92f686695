//! One collection: every container with its cgroup figures, its processes and
//! its duplicate groups. The exporter runs one per scrape; the remediator
//! runs one for a single container before it acts.

use serde::Serialize;

use crate::cgroup::{self, Container, Layout, MemoryStats, PidsStats};
use crate::groups::{duplicate_groups, Group};
use crate::procfs::{ContainerProcesses, ProcessReader};
use crate::{Error, Result, Roots};

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

    /// Processes whose command line is cached (a self metric).
    pub fn cached_processes(&self) -> usize {
        self.reader.cached()
    }

    /// Collects every container. Never fails as a whole: errors are listed in
    /// the snapshot and the rest is still returned.
    pub fn collect(&mut self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let mut errors: Vec<(Stage, Error)> = Vec::new();
        if let Some((layout, containers)) = self.discover(&mut errors) {
            for c in containers {
                if let Some(cs) = snapshot_container(&mut self.reader, &layout, c, &mut errors) {
                    snapshot.containers.push(cs);
                }
            }
        }
        snapshot
            .containers
            .sort_by(|a, b| a.container.id.cmp(&b.container.id));
        self.reader.end_scrape();
        snapshot.errors = errors
            .into_iter()
            .map(|(stage, e)| (stage, e.to_string()))
            .collect();
        snapshot
    }

    /// Collects one container by full id; `Ok(None)` when it is not a
    /// discovered container (or `id` is not a 64-hex container id at all).
    /// Unlike [`Collector::collect`], any error fails the call: the caller
    /// is about to act on what it returns.
    pub fn collect_one(&mut self, id: &str) -> Result<Option<ContainerSnapshot>> {
        if !cgroup::is_container_id(id) {
            return Ok(None);
        }
        let mut errors = Vec::new();
        let found = self.discover(&mut errors);
        if let Some((_, e)) = errors.into_iter().next() {
            return Err(e);
        }
        let Some((layout, containers)) = found else {
            return Ok(None);
        };
        let Some(c) = containers.into_iter().find(|c| c.id == id) else {
            return Ok(None);
        };
        let mut errors = Vec::new();
        let cs = snapshot_container(&mut self.reader, &layout, c, &mut errors);
        match errors.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(cs),
        }
    }

    /// The layout (detected once, re-detected after a failure) and the
    /// containers under it. `None` after an error, which is recorded.
    fn discover(&mut self, errors: &mut Vec<(Stage, Error)>) -> Option<(Layout, Vec<Container>)> {
        // A cached layout that stopped working (a hierarchy was remounted)
        // is detected afresh once before giving up.
        let attempts = if self.layout.is_some() { 2 } else { 1 };
        for attempt in 1..=attempts {
            let layout = match &self.layout {
                Some(l) => l.clone(),
                None => match cgroup::detect_layout(&self.roots) {
                    Ok(l) => {
                        self.layout = Some(l.clone());
                        l
                    }
                    Err(e) => {
                        errors.push((Stage::Discovery, e));
                        return None;
                    }
                },
            };
            match cgroup::discover(&layout) {
                Ok(containers) => return Some((layout, containers)),
                Err(e) => {
                    self.layout = None;
                    if attempt == attempts {
                        errors.push((Stage::Discovery, e));
                    }
                }
            }
        }
        None
    }
}

/// Reads one container; `None` when it vanished meanwhile. Errors are
/// recorded and what could be read is still returned.
fn snapshot_container(
    reader: &mut ProcessReader,
    layout: &Layout,
    container: Container,
    errors: &mut Vec<(Stage, Error)>,
) -> Option<ContainerSnapshot> {
    let pids = cgroup::read_pids(layout, &container).unwrap_or_else(|e| {
        errors.push((Stage::Cgroup, e));
        None
    });
    let memory = cgroup::read_memory(layout, &container).unwrap_or_else(|e| {
        errors.push((Stage::Cgroup, e));
        None
    });
    let listed = match container.dirs.procs.as_deref() {
        Some(dir) => match cgroup::read_procs_recursive(dir) {
            Ok(p) => p,
            Err(e) => {
                errors.push((Stage::Cgroup, e));
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    // An empty cgroup may simply have been removed since discovery.
    if listed.is_empty() && vanished(&container) {
        return None;
    }
    let processes = match reader.read_container(&listed, pids.map(|p| p.current)) {
        Ok(p) => p,
        Err(e) => {
            errors.push((Stage::Proc, e));
            ContainerProcesses::default()
        }
    };
    let groups = duplicate_groups(&processes.live);
    Some(ContainerSnapshot {
        container,
        pids,
        memory,
        processes,
        groups,
    })
}

/// Whether every directory of the container's cgroup is gone.
fn vanished(c: &Container) -> bool {
    [&c.dirs.procs, &c.dirs.pids, &c.dirs.memory]
        .into_iter()
        .flatten()
        .all(|d| !d.is_dir())
}
