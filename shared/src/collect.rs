//! One collection: every container with its cgroup figures, its processes and
//! its duplicate groups. The exporter runs one per scrape; the remediator
//! runs one for a single container before it acts.
//!
//! A collection of every container is spread over a few threads: containers
//! are sharded by a stable hash of their id, so a container is always read
//! by the same shard and finds its cache there: the shard's
//! [`ProcessTable`] (the default, [`CollectMode::Incremental`]) or its
//! full-scan [`ProcessReader`] ([`CollectMode::Full`], the oracle).

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cgroup::{self, Container, ControlFiles, Layout, MemoryStats, PidsStats};
use crate::fasthash::stable_hash;
use crate::groups::{duplicate_groups, Group};
use crate::node::{read_boot_time, read_node, NodeStats};
use crate::procfs::{ContainerProcesses, FdPool, ProcessReader, ProcessTable, TableStats};
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
    /// Asking a container runtime for names and labels (the exporter's
    /// metadata cache; a collection never reports it).
    Runtime,
}

impl Stage {
    /// Every stage, in exposition order.
    pub const ALL: [Stage; 4] = [Stage::Discovery, Stage::Cgroup, Stage::Proc, Stage::Runtime];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Discovery => "discovery",
            Stage::Cgroup => "cgroup",
            Stage::Proc => "proc",
            Stage::Runtime => "runtime",
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
    /// Live processes and zombies (shared with the incremental table while
    /// they do not change).
    pub processes: Arc<ContainerProcesses>,
    /// Sibling groups of identical command lines (size ≥ 2), largest first.
    pub groups: Arc<Vec<Group>>,
}

/// One collection of the whole host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// Containers, sorted by id.
    pub containers: Vec<ContainerSnapshot>,
    /// Errors met, by stage (each also logged by the caller).
    pub errors: Vec<(Stage, String)>,
    /// Container ids whose cgroup name was found at two places: refused,
    /// neither published (logged once by the collector when first seen).
    pub ambiguous: Vec<cgroup::Ambiguous>,
    /// The node's tasks, PID limits and boot time; `None` when they could
    /// not be read (the error is listed).
    pub node: Option<NodeStats>,
}

/// How a collection reads processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectMode {
    /// Learn exits from pidfds and arrivals from `cgroup.procs`; read only
    /// what changed ([`ProcessTable`]).
    #[default]
    Incremental,
    /// Read every listed process's `stat` each collection ([`ProcessReader`]).
    Full,
}

impl CollectMode {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            CollectMode::Incremental => "incremental",
            CollectMode::Full => "full",
        }
    }
}

/// One shard's process state.
#[derive(Debug)]
enum Shard {
    Full(Box<ProcessReader>),
    Incremental(Box<ProcessTable>, Box<ControlFiles>),
}

impl Shard {
    /// The reader for full readings (`collect_one`, and every read in full mode).
    fn reader(&mut self) -> &mut ProcessReader {
        match self {
            Shard::Full(r) => r,
            Shard::Incremental(t, _) => t.reader(),
        }
    }

    /// Starts a collection (exits learnt by the incremental table).
    fn begin(&mut self) -> Vec<(Stage, Error)> {
        match self {
            Shard::Full(_) => Vec::new(),
            Shard::Incremental(t, _) => t
                .begin_scrape()
                .into_iter()
                .map(|e| (Stage::Proc, e))
                .collect(),
        }
    }

    fn end(&mut self) {
        match self {
            Shard::Full(r) => r.end_scrape(),
            Shard::Incremental(t, files) => {
                t.end_scrape();
                files.end_scrape();
            }
        }
    }

    fn cached(&self) -> usize {
        match self {
            Shard::Full(r) => r.cached(),
            Shard::Incremental(t, _) => t.stats().tracked,
        }
    }
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
    /// When the cached layout's mount options were last read.
    mount_read: Option<Instant>,
    mode: CollectMode,
    /// One per shard.
    readers: Vec<Shard>,
    /// Whether the spent descriptor budget was logged.
    budget_logged: bool,
    /// The ambiguous ids of the last walk, each logged when it first showed.
    ambiguous: Vec<cgroup::Ambiguous>,
    /// The node's boot time, read once (it does not change while it runs).
    boot_time: Option<u64>,
}

impl Collector {
    /// A collector over the given roots, collecting incrementally with
    /// [`default_threads`] threads.
    pub fn new(roots: Roots) -> Self {
        Self::with_threads(roots, default_threads())
    }

    /// An incremental collector over the given roots that spreads a
    /// collection over `threads` threads (0 or 1: the calling thread only).
    pub fn with_threads(roots: Roots, threads: usize) -> Self {
        Self::with_mode(roots, threads, CollectMode::default())
    }

    /// A collector over the given roots, reading processes the `mode` way,
    /// spread over `threads` threads. It claims what other collectors of
    /// this process left of the file descriptor budget ([`FdPool`]: pidfds,
    /// kept control files and `stat` handles), one pool for its shards.
    pub fn with_mode(roots: Roots, threads: usize, mode: CollectMode) -> Self {
        Self::with_fd_budget(roots, threads, mode, usize::MAX)
    }

    /// As [`Collector::with_mode`], holding at most `budget` descriptors.
    pub fn with_fd_budget(roots: Roots, threads: usize, mode: CollectMode, budget: usize) -> Self {
        let threads = threads.max(1);
        // One pool for all shards and every kind of kept descriptor.
        let pool = FdPool::claim(&roots, budget);
        Collector {
            readers: (0..threads)
                .map(|_| match mode {
                    CollectMode::Full => Shard::Full(Box::new(ProcessReader::with_pool(
                        roots.clone(),
                        pool.clone(),
                    ))),
                    CollectMode::Incremental => Shard::Incremental(
                        Box::new(ProcessTable::new(roots.clone(), pool.clone())),
                        Box::new(ControlFiles::new(pool.clone())),
                    ),
                })
                .collect(),
            roots,
            layout: None,
            mount_read: None,
            mode,
            budget_logged: false,
            ambiguous: Vec::new(),
            boot_time: None,
        }
    }

    /// Sets how long after its start the incremental tables re-read a
    /// process every collection ([`crate::procfs::table::YOUNG`] by
    /// default), for processes first seen from now on.
    pub fn set_young_window(&mut self, young: std::time::Duration) {
        for s in &mut self.readers {
            if let Shard::Incremental(t, _) = s {
                t.set_young(young);
            }
        }
    }

    /// Re-reads the containers' limit files (`pids.max`, `memory.max`) at
    /// most once per `every` in incremental mode (see
    /// [`ControlFiles::set_limits_every`]); every collection by default.
    pub fn set_limits_every(&mut self, every: std::time::Duration) {
        for s in &mut self.readers {
            if let Shard::Incremental(_, files) = s {
                files.set_limits_every(every);
            }
        }
    }

    /// How it reads processes.
    pub fn mode(&self) -> CollectMode {
        self.mode
    }

    /// The incremental tables' counters, summed over the shards (all zero
    /// in full mode).
    pub fn table_stats(&self) -> TableStats {
        let mut sum = TableStats::default();
        for s in &self.readers {
            if let Shard::Incremental(t, _) = s {
                let st = t.stats();
                sum.tracked += st.tracked;
                sum.pidfds += st.pidfds;
                sum.over_budget += st.over_budget;
                sum.reads += st.reads;
                sum.exits += st.exits;
                sum.listings += st.listings;
            }
        }
        sum
    }

    /// Whether the last collection read the `cgroup.procs` of container
    /// `id` (always in full mode; in incremental mode unless it was
    /// unchanged).
    pub fn listed_in_last_collection(&self, id: &str) -> bool {
        match &self.readers[self.shard_of(id)] {
            Shard::Full(_) => true,
            Shard::Incremental(t, _) => t.listed_in_last_scrape(id),
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
        self.readers.iter().map(Shard::cached).sum()
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
                    .map(|(shard, cs)| scope.spawn(move || collect_shard(shard, layout, cs)))
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
            r.end();
        }
        let stats = self.table_stats();
        log_budget_once(&mut self.budget_logged, stats);
        snapshot.ambiguous = self.ambiguous.clone();
        snapshot.node = self.read_node(&mut errors);
        snapshot.errors = errors
            .into_iter()
            .map(|(stage, e)| (stage, e.to_string()))
            .collect();
        snapshot
    }

    /// The node's figures (three small files; the boot time read once).
    fn read_node(&mut self, errors: &mut Vec<(Stage, Error)>) -> Option<NodeStats> {
        let boot = match self.boot_time {
            Some(b) => b,
            None => match read_boot_time(&self.roots) {
                Ok(Some(b)) => *self.boot_time.insert(b),
                Ok(None) => return None,
                Err(e) => {
                    errors.push((Stage::Proc, e));
                    return None;
                }
            },
        };
        match read_node(&self.roots, boot) {
            Ok(n) => n,
            Err(e) => {
                errors.push((Stage::Proc, e));
                None
            }
        }
    }

    /// The cgroup layout of the last collection, when it found one.
    pub fn layout(&self) -> Option<&Layout> {
        self.layout.as_ref()
    }

    /// Collects one container by full id; `Ok(None)` when it is not a
    /// discovered container (or `id` is not a 64-hex container id at all).
    /// Unlike [`Collector::collect`], an error reading the container fails
    /// the call: the caller is about to act on what it returns. A process
    /// that cannot be read is left out (logged), as in a collection: it is
    /// then never planned for, and one process cannot keep its container
    /// from being read.
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
        let cs = snapshot_container(
            &mut Read::Full(self.readers[shard].reader()),
            &layout,
            c,
            &mut errors,
        );
        let mut first = None;
        for (stage, e) in errors {
            // Proc errors are per-process (the container's own reads are
            // cgroup and listing errors).
            if stage == Stage::Proc {
                tracing::warn!(container = %id, error = %e, "process left out: unreadable");
            } else {
                first.get_or_insert(e);
            }
        }
        match first {
            Some(e) => Err(e),
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
            let layout = match &mut self.layout {
                Some(l) => {
                    // `pids_localevents` can be changed by a remount.
                    if l.unified_controllers
                        && self
                            .mount_read
                            .is_none_or(|t| t.elapsed() >= MOUNT_OPTIONS_EVERY)
                    {
                        l.pids_local_events = cgroup::pids_local_events(&self.roots);
                        self.mount_read = Some(Instant::now());
                    }
                    l.clone()
                }
                None => match cgroup::detect_layout(&self.roots) {
                    Ok(l) => {
                        self.layout = Some(l.clone());
                        self.mount_read = Some(Instant::now());
                        l
                    }
                    Err(e) => {
                        errors.push((Stage::Discovery, e));
                        return None;
                    }
                },
            };
            match cgroup::discover_all(&layout) {
                Ok(found) => {
                    self.note_ambiguous(found.ambiguous);
                    return Some((layout, found.containers));
                }
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

/// How often the cgroup2 mount options of a cached layout are read again.
const MOUNT_OPTIONS_EVERY: Duration = Duration::from_secs(60);

impl Collector {
    /// Keeps the ambiguous ids of the last walk, logging those that were
    /// not ambiguous in the walk before (once, not every collection).
    fn note_ambiguous(&mut self, now: Vec<cgroup::Ambiguous>) {
        for a in &now {
            if !self.ambiguous.iter().any(|b| b.id == a.id) {
                tracing::warn!(
                    id = %a.id,
                    paths = ?a.paths,
                    "a container id names cgroups at two places; neither is taken as the container"
                );
            }
        }
        self.ambiguous = now;
    }
}

/// Says once, when the descriptor budget first runs out, that processes
/// beyond it are read the full-scan way.
fn log_budget_once(logged: &mut bool, stats: TableStats) {
    if stats.over_budget > 0 && !*logged {
        *logged = true;
        tracing::warn!(
            over_budget = stats.over_budget,
            pidfds = stats.pidfds,
            "file descriptor budget spent (RLIMIT_NOFILE): processes beyond it are read by full scan each collection"
        );
    }
}

/// The shard of container `id` among `n`: FNV-1a of the id, stable across
/// runs and platforms.
fn shard_of(id: &str, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    (stable_hash(id) % n as u64) as usize
}

/// Reads one shard's containers (errors are returned beside them).
fn collect_shard(
    shard: &mut Shard,
    layout: &Layout,
    containers: Vec<Container>,
) -> (Vec<ContainerSnapshot>, Vec<(Stage, Error)>) {
    let mut errors = shard.begin();
    let mut read = match shard {
        Shard::Full(r) => Read::Full(r),
        Shard::Incremental(t, files) => Read::Incremental(t, files),
    };
    let found = containers
        .into_iter()
        .filter_map(|c| snapshot_container(&mut read, layout, c, &mut errors))
        .collect();
    if let Read::Incremental(t, _) = read {
        // Left out while learning exits, in no container's reading.
        errors.extend(t.take_skipped().into_iter().map(|e| (Stage::Proc, e)));
    }
    (found, errors)
}

/// How one container's processes are read.
enum Read<'a> {
    Full(&'a mut ProcessReader),
    Incremental(&'a mut ProcessTable, &'a mut ControlFiles),
}

/// Reads one container; `None` when it vanished meanwhile. Errors are
/// recorded and what could be read is still returned.
fn snapshot_container(
    read: &mut Read<'_>,
    layout: &Layout,
    container: Container,
    errors: &mut Vec<(Stage, Error)>,
) -> Option<ContainerSnapshot> {
    let c = &container;
    let procs_dir = c.dirs.procs.as_deref();
    // The incremental mode keeps the control files open between collections.
    let (pids, memory) = match read {
        Read::Full(_) => (cgroup::read_pids(layout, c), cgroup::read_memory(layout, c)),
        Read::Incremental(_, files) => (
            cgroup::read_pids_from(&mut **files, layout, c),
            cgroup::read_memory_from(&mut **files, layout, c),
        ),
    };
    let pids = recorded(pids, Stage::Cgroup, errors).flatten();
    let memory = recorded(memory, Stage::Cgroup, errors).flatten();
    let tasks = pids.map(|p| p.current);
    let pids_dir = c.dirs.pids.as_deref();
    // An empty cgroup may simply have been removed since discovery.
    let mut gone = false;
    let got = match read {
        Read::Full(r) => {
            let listed = read_listing(&mut cgroup::Fresh::default(), procs_dir, errors);
            gone = listed.as_ref().is_some_and(Vec::is_empty) && vanished(c);
            r.read_container(&listed.unwrap_or_default(), tasks)
                .map(|p| {
                    let groups = Arc::new(duplicate_groups(&p.live));
                    (Arc::new(p), groups)
                })
        }
        Read::Incremental(t, files) => {
            // The table asks for the listing only when something may have
            // arrived, and for the thread count only when tasks are
            // unaccounted for; both read through the kept files.
            let ctx = RefCell::new((&mut **files, &mut *errors));
            let mut list = || {
                let (files, errors) = &mut *ctx.borrow_mut();
                let listed = read_listing(&mut **files, procs_dir, errors);
                gone = listed.as_ref().is_some_and(Vec::is_empty) && vanished(c);
                listed
            };
            let mut threads = || {
                let dir = pids_dir?;
                let (files, errors) = &mut *ctx.borrow_mut();
                recorded(
                    cgroup::count_threads_from(&mut **files, dir),
                    Stage::Cgroup,
                    errors,
                )
                .flatten()
            };
            t.read_container(&c.id, tasks, &mut list, &mut threads)
        }
    };
    // Processes that could not be read were left out, each error recorded:
    // the container is still reported with the others.
    let skipped = match read {
        Read::Full(r) => r.take_skipped(),
        Read::Incremental(t, _) => t.take_skipped(),
    };
    errors.extend(skipped.into_iter().map(|e| (Stage::Proc, e)));
    if gone {
        return None;
    }
    let (processes, groups) = recorded(got, Stage::Proc, errors).unwrap_or_default();
    Some(ContainerSnapshot {
        container,
        pids,
        memory,
        processes,
        groups,
    })
}

/// The pids listed in the `cgroup.procs` of `dir` and its descendants (none
/// without a `dir`); `None` with the error recorded when unreadable.
fn read_listing(
    src: &mut dyn cgroup::Source,
    dir: Option<&Path>,
    errors: &mut Vec<(Stage, Error)>,
) -> Option<Vec<i32>> {
    match dir {
        Some(dir) => recorded(cgroup::read_procs_from(src, dir), Stage::Cgroup, errors),
        None => Some(Vec::new()),
    }
}

/// The value, or `None` with the error recorded at `stage`.
fn recorded<T>(r: Result<T>, stage: Stage, errors: &mut Vec<(Stage, Error)>) -> Option<T> {
    r.map_err(|e| errors.push((stage, e))).ok()
}

/// Whether every directory of the container's cgroup is gone.
fn vanished(c: &Container) -> bool {
    [&c.dirs.procs, &c.dirs.pids, &c.dirs.memory]
        .into_iter()
        .flatten()
        .all(|d| !d.is_dir())
}
