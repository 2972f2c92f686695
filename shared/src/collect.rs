//! One collection: every container with its cgroup figures, its processes and
//! its duplicate groups. The exporter runs one per scrape; the remediator
//! runs one for a single container before it acts.
//!
//! A collection of every container is spread over a few threads: containers
//! are sharded by a stable hash of their id, so a container is always read
//! by the same shard's [`ProcessReader`] and finds its cache (and its kept
//! `stat` handles) there.

use serde::Serialize;

use crate::cgroup::{self, Container, Layout, MemoryStats, PidsStats};
use crate::groups::{duplicate_groups, Group};
use crate::procfs::{kept_handle_budget, ContainerProcesses, ProcessReader};
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

/// Most threads [`Collector::new`] collects with.
pub const MAX_DEFAULT_THREADS: usize = 4;

/// The default number of collection threads: the available parallelism,
/// at most [`MAX_DEFAULT_THREADS`].
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_DEFAULT_THREADS)
}

/// Collects snapshots, keeping the process cache between calls.
#[derive(Debug)]
pub struct Collector {
    roots: Roots,
    layout: Option<Layout>,
    /// One reader per shard.
    readers: Vec<ProcessReader>,
}

impl Collector {
    /// A collector over the given roots, collecting with
    /// [`default_threads`] threads.
    pub fn new(roots: Roots) -> Self {
        Self::with_threads(roots, default_threads())
    }

    /// A collector over the given roots that spreads a collection over
    /// `threads` threads (0 or 1: the calling thread only). The kept `stat`
    /// handle budget ([`kept_handle_budget`]) is shared between the shards.
    pub fn with_threads(roots: Roots, threads: usize) -> Self {
        let threads = threads.max(1);
        let cap = kept_handle_budget(&roots) / threads;
        Collector {
            readers: (0..threads)
                .map(|_| ProcessReader::with_kept_handle_cap(roots.clone(), cap))
                .collect(),
            roots,
            layout: None,
        }
    }

    /// Threads a collection is spread over.
    pub fn threads(&self) -> usize {
        self.readers.len()
    }

    /// The shard that reads container `id`.
    fn shard_of(&self, id: &str) -> usize {
        shard_of(id, self.readers.len())
    }

    /// The roots it reads.
    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    /// Processes whose command line is cached (a self metric).
    pub fn cached_processes(&self) -> usize {
        self.readers.iter().map(ProcessReader::cached).sum()
    }

    /// Collects every container. Never fails as a whole: errors are listed in
    /// the snapshot and the rest is still returned.
    pub fn collect(&mut self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let mut errors: Vec<(Stage, Error)> = Vec::new();
        if let Some((layout, containers)) = self.discover(&mut errors) {
            let n = self.readers.len();
            let mut shards: Vec<Vec<Container>> = (0..n).map(|_| Vec::new()).collect();
            for c in containers {
                shards[shard_of(&c.id, n)].push(c);
            }
            let layout = &layout;
            let mut readers = self.readers.iter_mut().zip(shards);
            // The first shard runs on the calling thread, the others on
            // scoped threads of their own.
            let first = readers.next();
            std::thread::scope(|scope| {
                let handles: Vec<_> = readers
                    .filter(|(_, cs)| !cs.is_empty())
                    .map(|(reader, cs)| scope.spawn(move || collect_shard(reader, layout, cs)))
                    .collect();
                if let Some((reader, cs)) = first {
                    let (found, errs) = collect_shard(reader, layout, cs);
                    snapshot.containers.extend(found);
                    errors.extend(errs);
                }
                for h in handles {
                    match h.join() {
                        Ok((found, errs)) => {
                            snapshot.containers.extend(found);
                            errors.extend(errs);
                        }
                        Err(panic) => std::panic::resume_unwind(panic),
                    }
                }
            });
        }
        snapshot
            .containers
            .sort_by(|a, b| a.container.id.cmp(&b.container.id));
        for r in &mut self.readers {
            r.end_scrape();
        }
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
        let shard = self.shard_of(&c.id);
        let cs = snapshot_container(&mut self.readers[shard], &layout, c, &mut errors);
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

/// The shard of container `id` among `n`: FNV-1a of the id, stable across
/// runs and platforms.
fn shard_of(id: &str, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % n as u64) as usize
}

/// Reads one shard's containers (errors are returned beside them).
fn collect_shard(
    reader: &mut ProcessReader,
    layout: &Layout,
    containers: Vec<Container>,
) -> (Vec<ContainerSnapshot>, Vec<(Stage, Error)>) {
    let mut errors = Vec::new();
    let found = containers
        .into_iter()
        .filter_map(|c| snapshot_container(reader, layout, c, &mut errors))
        .collect();
    (found, errors)
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
