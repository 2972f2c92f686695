//! The incremental process table (`--collect-mode incremental`): a scrape
//! costs what changed, not what exists.
//!
//! - **Exits come from the kernel.** Each known process is held by a pidfd
//!   in one epoll set; a scrape asks `epoll_wait(0)` which of them exited and
//!   re-reads only those: a zombie stays in the table (checked each scrape)
//!   until its pid is gone, a reaped process leaves it. The children of an
//!   exited process are re-read: they were reparented.
//! - **Arrivals come from the cgroup.** `cgroup.procs` is read and diffed
//!   against the known set: only new pids get their `stat` and `cmdline`
//!   read. A known pid no longer listed is re-read once (it became a zombie,
//!   was reaped or moved away).
//! - **An unchanged container is not listed.** Listing `cgroup.procs` costs
//!   the kernel a walk of the cgroup's tasks (on v1 a sorted pid list
//!   built afresh), the largest share of a scrape left. It is skipped when
//!   nothing can have arrived: `pids.current` (which counts every task
//!   forked or moved in, and every zombie until reaped) equals its last
//!   reading, no process of the container exited (pidfds) or vanished
//!   (its known zombies are re-read), it holds no zombie the table does not
//!   know (a child of a process outside it), and every live process is held
//!   by a pidfd. An arrival is then missed only when, between two scrapes, it is
//!   balanced exactly by a thread exiting or a process moving out: the
//!   container is listed at least every [`RELIST`] (spread over scrapes),
//!   which bounds that.
//! - **What can change for a live process** besides its parent is its
//!   command line, at `exec`. A process's `stat` and `cmdline` are re-read
//!   while it is young ([`YOUNG`] after its start) each time its age has
//!   doubled since its last reading (an exec at age `t` shows by age `2t`
//!   plus one scrape interval; one read between fork and exec is read again
//!   at the next scrape), and every process's at least every [`REFRESH`], the re-reads spread over scrapes
//!   by pid, so an exec late in a process's life shows within [`REFRESH`]
//!   (plus one scrape interval).
//! - **Counts need no per-process read**: the cgroup's `pids.current` less
//!   its listed threads is the number of zombies it holds; only when that
//!   exceeds the zombies already known are the children of its processes
//!   searched for the ones that appeared unseen. The thread list itself is
//!   read only when `pids.current` exceeds the live processes and the known
//!   zombies (a process has one thread at least).
//!
//! The per-process figures that change all the time (CPU ticks, thread
//! count) are those of the last reading, not of this scrape: nothing the
//! exporter serves depends on them, and the remediator reads a container in
//! full ([`crate::collect::Collector::collect_one`]) before it acts.
//!
//! Where pidfds are not available (a fixture tree, a proc root of another
//! PID namespace, a kernel before 5.3) or the file descriptor budget
//! ([`super::budget`]) is spent, a process is read the full-scan way: its
//! `stat` every scrape through the [`ProcessReader`].
//!
//! This file is the bookkeeping only: exits come through an `ExitWatch`
//! (the kernel's pidfds and epoll in `procfs/exits.rs`), the re-read and
//! relist times from `procfs/schedule.rs`, and no system call is made here,
//! so the incremental logic is tested on fixture trees with a fake of each.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::budget::FdPool;
use super::exits::{ExitWatch, PidfdExits, Watch};
use super::reader::{ContainerProcesses, Process, ProcessReader};
use super::schedule::{self, refresh_after, relist_after, Clock, KernelClock};
pub use super::schedule::{REFRESH, RELIST, YOUNG};
use crate::fasthash::FastHasher;
use crate::groups::{duplicate_groups, Group};
use crate::{Error, Result, Roots};

type PidMap<V> = HashMap<i32, V, BuildHasherDefault<FastHasher>>;
type PidSet = HashSet<i32, BuildHasherDefault<FastHasher>>;

/// Counters of a table, for tests, benchmarks and self metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Processes in the table (live and zombies).
    pub tracked: usize,
    /// Processes held by a pidfd.
    pub pidfds: usize,
    /// Live processes read the full-scan way because the file descriptor
    /// budget was spent when they were first seen.
    pub over_budget: usize,
    /// Per-process reads (`stat`, with `cmdline` where due) in the last scrape.
    pub reads: u64,
    /// Exits learnt from pidfds in the last scrape.
    pub exits: u64,
    /// Containers whose `cgroup.procs` the last scrape read (the others
    /// were unchanged).
    pub listings: u64,
}

#[derive(Debug)]
struct Entry {
    /// The last reading.
    p: Process,
    /// The container it was last listed in.
    container: Arc<str>,
    /// Whether its exit is watched (a pidfd in the kernel's epoll set).
    watched: bool,
    /// Re-read while young until then...
    young_until: Instant,
    /// ...once its age has doubled since its last reading: from then.
    young_next: Instant,
    /// Re-read at the first scrape after then.
    next_refresh: Instant,
    /// The generation in which its container's `cgroup.procs` last listed it.
    listed: u64,
    /// Whether it has no pidfd because the budget was spent.
    over_budget: bool,
}

impl Entry {
    /// Whether its `stat` and `cmdline` are due a re-read: while young, and
    /// once its refresh time came.
    fn is_due(&self, now: Instant) -> bool {
        schedule::is_due(now, self.young_until, self.young_next, self.next_refresh)
    }
}

/// The pids of one container in the table, and what its last reading found.
#[derive(Debug)]
struct Members {
    pids: PidSet,
    /// The generation of the scrape that last read it.
    generation: u64,
    /// The generation in which its `cgroup.procs` was last read.
    listing: u64,
    /// `pids.current` at its last reading.
    tasks: Option<u64>,
    /// A member exited, vanished or arrived since the last listing: list again.
    dirty: bool,
    /// Listed again by then at the latest.
    relist_at: Instant,
    /// The earliest re-read due among its live processes.
    next_due: Instant,
    /// Whether a live member has no pidfd (its exit would go unseen).
    unwatched: bool,
    /// The zombies it holds (re-read each scrape).
    zombies: u64,
    /// Whether `pids.current` counts zombies it does not know.
    unknown_zombies: bool,
    /// What its last reading returned (and the duplicate groups of its
    /// processes), while no reading changed since.
    last: Option<(Arc<ContainerProcesses>, Arc<Vec<Group>>)>,
}

impl Members {
    fn new(now: Instant) -> Self {
        Members {
            pids: PidSet::default(),
            generation: 0,
            listing: 0,
            tasks: None,
            dirty: true,
            relist_at: now,
            next_due: now,
            unwatched: true,
            zombies: 0,
            unknown_zombies: false,
            last: None,
        }
    }
}

/// Whether a re-reading differs from the last one in what a reading
/// reports (CPU ticks aside: see the module docs).
fn differs(old: &Process, new: &Process) -> bool {
    old.ppid != new.ppid
        || old.state != new.state
        || old.threads != new.threads
        || old.comm != new.comm
        || old.cmdline != new.cmdline
}

/// What a re-read found.
enum Reread {
    /// The process is gone (or its pid is another process's now): removed.
    Gone,
    /// The same process, reading updated.
    Same,
    /// It could not be read: removed, the error recorded with the reader
    /// ([`ProcessReader::take_skipped`]).
    Failed,
}

/// The incremental process table of one collection shard.
#[derive(Debug)]
pub struct ProcessTable {
    /// Where exits come from; `None` where pidfds are not available.
    watch: Option<Box<dyn ExitWatch>>,
    entries: PidMap<Entry>,
    containers: HashMap<Arc<str>, Members>,
    /// Processes whose exit is watched.
    pidfds: usize,
    over_budget: usize,
    /// Reads every process (new ones, re-reads, the fallback).
    reader: ProcessReader,
    generation: u64,
    reads: u64,
    exits: u64,
    listings: u64,
    /// Processes seen to exit by a re-read (not through their pidfd) since
    /// their children were last re-read.
    exited: Vec<i32>,
    clock: Box<dyn Clock>,
    young: Duration,
}

impl ProcessTable {
    /// An empty table over `roots` holding the descriptors `pool` gives
    /// (pidfds; kept `stat` handles of the fallback when pidfds are not
    /// available).
    pub fn new(roots: Roots, pool: FdPool) -> Self {
        let exits =
            PidfdExits::new(&roots, pool.clone()).map(|x| Box::new(x) as Box<dyn ExitWatch>);
        Self::with_parts(roots, pool, exits, Box::new(KernelClock::new()))
    }

    /// A table learning exits from `exits` (none: every process is read
    /// the full-scan way) on the times of `clock`.
    pub(crate) fn with_parts(
        roots: Roots,
        pool: FdPool,
        exits: Option<Box<dyn ExitWatch>>,
        clock: Box<dyn Clock>,
    ) -> Self {
        let reader = if exits.is_some() {
            ProcessReader::with_kept_handle_cap(roots, 0)
        } else {
            ProcessReader::with_pool(roots, pool)
        };
        ProcessTable {
            watch: exits,
            entries: PidMap::default(),
            containers: HashMap::new(),
            pidfds: 0,
            over_budget: 0,
            reader,
            generation: 1,
            reads: 0,
            exits: 0,
            listings: 0,
            exited: Vec::new(),
            clock,
            young: YOUNG,
        }
    }

    /// Sets how long after its start a process is re-read every scrape
    /// ([`YOUNG`] by default); applies to processes first seen from now on.
    pub fn set_young(&mut self, young: Duration) {
        self.young = young;
    }

    /// Whether exits are learnt from pidfds (else every process is read the
    /// full-scan way).
    pub fn uses_pidfds(&self) -> bool {
        self.watch.is_some()
    }

    /// The reader behind the table, for one-off full readings.
    pub fn reader(&mut self) -> &mut ProcessReader {
        &mut self.reader
    }

    /// The table's counters.
    pub fn stats(&self) -> TableStats {
        TableStats {
            tracked: self.entries.len(),
            pidfds: self.pidfds,
            over_budget: self.over_budget,
            reads: self.reads,
            exits: self.exits,
            listings: self.listings,
        }
    }

    /// Takes the errors of the processes left out since the last call (see
    /// [`ProcessReader::take_skipped`]).
    pub fn take_skipped(&mut self) -> Vec<Error> {
        self.reader.take_skipped()
    }

    /// Whether the last scrape read the `cgroup.procs` of container `id`.
    pub fn listed_in_last_scrape(&self, id: &str) -> bool {
        self.containers
            .get(id)
            .is_some_and(|m| m.listing + 1 == self.generation)
    }

    /// Starts a scrape: learns which processes exited since the last one
    /// and re-reads those (zombie or gone) and their children (reparented).
    /// Errors are returned; the table stays usable.
    pub fn begin_scrape(&mut self) -> Vec<Error> {
        self.reads = 0;
        self.exits = 0;
        self.listings = 0;
        let mut errors = Vec::new();
        let exited = self.drain_exits(&mut errors);
        if exited.is_empty() {
            return errors;
        }
        self.exits = exited.len() as u64;
        for &pid in &exited {
            if let Err(e) = self.reread(pid, true) {
                errors.push(e);
            }
        }
        self.exited.extend(exited);
        if let Err(e) = self.reread_reparented() {
            errors.push(e);
        }
        errors
    }

    /// Re-reads the known children of the processes that exited (they were
    /// reparented), until no re-read finds another exit.
    fn reread_reparented(&mut self) -> Result<()> {
        let mut first = Ok(());
        while !self.exited.is_empty() {
            let parents: PidSet = self.exited.drain(..).collect();
            if let Err(e) = self.reread_children_of(&parents) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// Re-reads the known children of `parents`.
    fn reread_children_of(&mut self, parents: &PidSet) -> Result<()> {
        let reparented: Vec<i32> = self
            .entries
            .iter()
            .filter(|(_, e)| parents.contains(&e.p.ppid))
            .map(|(&pid, _)| pid)
            .collect();
        let mut first = Ok(());
        for pid in reparented {
            if let Err(e) = self.reread(pid, false) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// Takes the exits reported since the last scrape; returns their pids.
    fn drain_exits(&mut self, errors: &mut Vec<Error>) -> Vec<i32> {
        let mut exited = Vec::new();
        let Some(exits) = self.watch.as_mut() else {
            return exited;
        };
        if let Err(e) = exits.take_exited(&mut exited) {
            errors.push(Error::read("epoll_wait", e));
        }
        for &pid in &exited {
            if let Some(e) = self.entries.get_mut(&pid) {
                if std::mem::take(&mut e.watched) {
                    self.pidfds -= 1;
                }
            }
        }
        exited
    }

    /// Stops watching the exit of `pid`'s entry.
    fn unwatch(exits: &mut Option<Box<dyn ExitWatch>>, pidfds: &mut usize, e: &mut Entry) {
        if std::mem::take(&mut e.watched) {
            *pidfds -= 1;
            if let Some(x) = exits.as_mut() {
                x.unwatch(e.p.pid);
            }
        }
    }

    /// Removes `pid` from the table.
    fn remove(&mut self, pid: i32) {
        if let Some(mut e) = self.entries.remove(&pid) {
            Self::unwatch(&mut self.watch, &mut self.pidfds, &mut e);
            if e.over_budget {
                self.over_budget -= 1;
            }
            if let Some(m) = self.containers.get_mut(&e.container) {
                m.pids.remove(&pid);
                m.dirty = true;
                m.last = None;
            }
        }
    }

    /// Notes that a reading of a member of `container` changed what the
    /// container reports; `membership` when a process exited or vanished.
    fn touch(&mut self, container: &Arc<str>, membership: bool) {
        if let Some(m) = self.containers.get_mut(container) {
            m.last = None;
            m.dirty |= membership;
        }
    }

    /// Re-reads a known process; `fresh` re-reads its command line too.
    /// A process that is gone, or whose pid now names another process, is
    /// removed.
    fn reread(&mut self, pid: i32, fresh: bool) -> Result<Reread> {
        self.reads += 1;
        let got = if fresh {
            self.reader.read_fresh(pid)
        } else {
            self.reader.read_cached(pid)
        };
        let got = match got {
            Ok(g) => g,
            Err(e) => {
                // Unreadable: left out (recorded), never its container.
                self.remove(pid);
                self.reader.skip(e);
                return Ok(Reread::Failed);
            }
        };
        let Some(e) = self.entries.get_mut(&pid) else {
            return Ok(Reread::Gone);
        };
        match got {
            Some(p) if p.start_time == e.p.start_time => {
                if fresh {
                    e.next_refresh = self.clock.now() + refresh_after(pid);
                    e.young_next = schedule::young_next(&*self.clock, p.start_time);
                }
                let exited = p.is_zombie() && !e.p.is_zombie();
                if exited {
                    self.exited.push(pid);
                }
                if p.is_zombie() {
                    Self::unwatch(&mut self.watch, &mut self.pidfds, e);
                }
                if p.is_zombie() && e.over_budget {
                    e.over_budget = false;
                    self.over_budget -= 1;
                }
                let changed = differs(&e.p, &p);
                e.p = p;
                if changed {
                    let container = Arc::clone(&e.container);
                    self.touch(&container, exited);
                }
                Ok(Reread::Same)
            }
            _ => {
                if !e.p.is_zombie() {
                    self.exited.push(pid);
                }
                self.remove(pid);
                Ok(Reread::Gone)
            }
        }
    }

    /// Adds a pid listed by (or a zombie child found in) `container`:
    /// its exit watched first, then the reading, so the watch can only be
    /// of the process read or of one that exited before it (then it is
    /// reported at once and the next scrape re-reads the pid).
    fn add(&mut self, pid: i32, container: &Arc<str>, listed: bool) -> Result<Option<&Entry>> {
        let watch = match self.watch.as_mut() {
            Some(x) => x.watch(pid),
            None => Watch::Failed,
        };
        if watch == Watch::Gone {
            return Ok(None);
        }
        let unwatch = |exits: &mut Option<Box<dyn ExitWatch>>| {
            if let (Watch::Watched, Some(x)) = (watch, exits.as_mut()) {
                x.unwatch(pid);
            }
        };
        self.reads += 1;
        let p = match self.reader.read_fresh(pid) {
            Ok(Some(p)) => p,
            other => {
                unwatch(&mut self.watch);
                // Unreadable: left out (recorded), never its container.
                if let Err(e) = other {
                    self.reader.skip(e);
                }
                return Ok(None);
            }
        };
        // A zombie's exit is known already.
        let watched = watch == Watch::Watched && !p.is_zombie();
        if watch == Watch::Watched && !watched {
            unwatch(&mut self.watch);
        }
        let over_budget = watch == Watch::OverBudget && !p.is_zombie();
        if watched {
            self.pidfds += 1;
        }
        if over_budget {
            self.over_budget += 1;
        }
        let now = self.clock.now();
        let entry = Entry {
            young_until: schedule::young_until(&*self.clock, p.start_time, self.young),
            young_next: schedule::young_next(&*self.clock, p.start_time),
            next_refresh: now + refresh_after(pid),
            p,
            container: Arc::clone(container),
            watched,
            listed: if listed { self.generation } else { 0 },
            over_budget,
        };
        let m = self
            .containers
            .entry(Arc::clone(container))
            .or_insert_with(|| Members::new(now));
        m.pids.insert(pid);
        m.dirty = true;
        m.last = None;
        self.entries.insert(pid, entry);
        Ok(self.entries.get(&pid))
    }

    /// Reads one container: `tasks` is its `pids.current`, when known;
    /// `list` reads its `cgroup.procs` (subtree), called unless nothing can
    /// have arrived since the last listing (see the module docs), `None`
    /// when unreadable (the caller records why; the container is then
    /// reported as last read, and listed again next time); `threads`
    /// counts the threads its cgroup lists (called only when `tasks`
    /// exceeds the live processes and known zombies: a thread list costs
    /// the kernel a sorted pid list). The same result as
    /// [`ProcessReader::read_container`]: live processes (listed, not
    /// zombies) sorted by pid, and the zombies among them or among their
    /// children.
    pub fn read_container(
        &mut self,
        id: &str,
        tasks: Option<u64>,
        list: &mut dyn FnMut() -> Option<Vec<i32>>,
        threads: &mut dyn FnMut() -> Option<u64>,
    ) -> Result<(Arc<ContainerProcesses>, Arc<Vec<Group>>)> {
        let now = self.clock.now();
        let key: Arc<str> = match self.containers.get_key_value(id) {
            Some((k, _)) => Arc::clone(k),
            None => Arc::from(id),
        };
        self.containers
            .entry(Arc::clone(&key))
            .or_insert_with(|| Members::new(now))
            .generation = self.generation;
        if !self.unchanged(&key, tasks, now)? {
            self.listings += 1;
            match list() {
                Some(listed) => self.read_listed(&key, &listed, tasks, threads, now)?,
                None => self.touch(&key, true),
            }
        }
        Ok(self.output(&key))
    }

    /// Whether container `key` may be reported without listing it (see the
    /// module docs). Re-reads its known zombies and the processes due a
    /// re-read; `false` once one of them exited or vanished.
    fn unchanged(&mut self, key: &Arc<str>, tasks: Option<u64>, now: Instant) -> Result<bool> {
        let m = &self.containers[key];
        let quiet = self.watch.is_some()
            && tasks.is_some()
            && m.tasks == tasks
            && !m.dirty
            && !m.unwatched
            && !m.unknown_zombies
            && now < m.relist_at;
        if !quiet {
            return Ok(false);
        }
        // A zombie reaped frees a task that an arrival may have taken.
        let zombies: Vec<i32> = if m.zombies > 0 {
            m.pids
                .iter()
                .copied()
                .filter(|p| self.entries.get(p).is_some_and(|e| e.p.is_zombie()))
                .collect()
        } else {
            Vec::new()
        };
        for pid in zombies {
            self.reread(pid, false)?;
        }
        if now >= self.containers[key].next_due {
            let due: Vec<i32> = self.containers[key]
                .pids
                .iter()
                .copied()
                .filter(|p| {
                    self.entries
                        .get(p)
                        .is_some_and(|e| !e.p.is_zombie() && e.is_due(now))
                })
                .collect();
            for pid in due {
                self.reread(pid, true)?;
            }
            self.reread_reparented()?;
            self.settle(key, now);
        }
        Ok(!self.containers[key].dirty)
    }

    /// Reads container `key` from its listing: arrivals, re-reads, exits,
    /// zombies that appeared unseen.
    fn read_listed(
        &mut self,
        key: &Arc<str>,
        listed: &[i32],
        tasks: Option<u64>,
        threads: &mut dyn FnMut() -> Option<u64>,
        now: Instant,
    ) -> Result<()> {
        let generation = self.generation;
        if let Some(m) = self.containers.get_mut(key) {
            m.listing = generation;
            m.last = None;
        }

        // Arrivals, and the processes due a re-read.
        for &pid in listed {
            let Some(e) = self.entries.get_mut(&pid) else {
                self.add(pid, key, true)?;
                continue;
            };
            if e.container != *key {
                // Moved here from another container.
                self.remove(pid);
                self.add(pid, key, true)?;
                continue;
            }
            e.listed = generation;
            let due = e.is_due(now);
            if !e.watched || due {
                if let Reread::Gone = self.reread(pid, due)? {
                    // Its pid names another process now: the new one.
                    self.add(pid, key, true)?;
                }
            }
        }

        // Known here but not listed: became a zombie, was reaped, or left.
        let unlisted: Vec<i32> = match self.containers.get(key) {
            Some(m) => m
                .pids
                .iter()
                .filter(|p| self.entries.get(p).is_some_and(|e| e.listed != generation))
                .copied()
                .collect(),
            None => Vec::new(),
        };
        for pid in unlisted {
            let was_zombie = self.entries.get(&pid).is_some_and(|e| e.p.is_zombie());
            if let Reread::Same = self.reread(pid, !was_zombie)? {
                if self.entries.get(&pid).is_some_and(|e| !e.p.is_zombie()) {
                    // Alive in another cgroup: not this container's any more.
                    self.remove(pid);
                }
            }
        }

        // Children of processes found exited by a re-read (those without a
        // pidfd): reparented.
        self.reread_reparented()?;

        // Zombies that appeared unseen (born and exited between scrapes).
        let (mut live, mut live_threads, mut known_zombies) = (Vec::new(), 0u64, 0u64);
        for pid in self.members(key) {
            let e = &self.entries[&pid];
            if e.p.is_zombie() {
                known_zombies += 1;
            } else if e.listed == generation {
                live.push(pid);
                live_threads = live_threads.saturating_add(e.p.threads.max(1));
            }
        }
        live.sort_unstable();
        // A live process has a thread at least and a zombie holds one task:
        // when pids.current is no more than that, no zombie is unknown and
        // the thread list need not be read.
        let floor = (live.len() as u64).saturating_add(known_zombies);
        // The tasks that are no zombie: the listed threads, else the
        // threads the live processes had when last read.
        let mut nonzombie = None;
        let search = match tasks {
            None => true,
            Some(t) if t <= floor => false,
            Some(t) => {
                let n = threads().unwrap_or(live_threads);
                nonzombie = Some(n);
                t > n.saturating_add(known_zombies)
            }
        };
        if search {
            for &pid in &live {
                let threads = self.entries[&pid].p.threads;
                self.reads += 1;
                if let Err(e) = self.reader.collect_children(pid, threads) {
                    self.reader.skip(e);
                }
            }
            let mut children = self.reader.take_children();
            children.sort_unstable();
            children.dedup();
            for child in children {
                if self.entries.contains_key(&child) {
                    continue;
                }
                // Only a zombie child is this container's; a live one lives
                // in a cgroup of its own.
                if let Some(e) = self.add(child, key, false)? {
                    if !e.p.is_zombie() {
                        self.remove(child);
                    }
                }
            }
        }

        // Zombies still unaccounted for are children of processes outside
        // the container (an exec'd process's parent in the runtime): their
        // reaping would go unseen, so the container is listed until they
        // are gone.
        self.settle(key, now);
        if let Some(m) = self.containers.get_mut(key) {
            m.unknown_zombies = search
                && match (tasks, nonzombie) {
                    (Some(t), Some(n)) => t > n.saturating_add(m.zombies),
                    _ => true,
                };
            m.tasks = tasks;
            m.dirty = false;
            m.relist_at = now + relist_after(key);
        }
        Ok(())
    }

    /// Notes when container `key`'s next re-read is due, how many zombies
    /// it holds and whether each live process is held by a pidfd.
    fn settle(&mut self, key: &Arc<str>, now: Instant) {
        let Some(m) = self.containers.get(key) else {
            return;
        };
        let (mut next_due, mut zombies, mut unwatched) = (now + REFRESH, 0, false);
        for pid in &m.pids {
            let Some(e) = self.entries.get(pid) else {
                continue;
            };
            if e.p.is_zombie() {
                zombies += 1;
            } else if e.listed == m.listing {
                unwatched |= !e.watched;
                next_due = next_due.min(if now < e.young_until {
                    e.young_next.min(e.next_refresh)
                } else {
                    e.next_refresh
                });
            }
        }
        if let Some(m) = self.containers.get_mut(key) {
            m.next_due = next_due;
            m.zombies = zombies;
            m.unwatched = unwatched;
        }
    }

    /// What a full scan reports for container `key`: the listed live
    /// processes, and the zombies listed or whose parent is one of them;
    /// with their duplicate groups. Kept until a reading changes it.
    fn output(&mut self, key: &Arc<str>) -> (Arc<ContainerProcesses>, Arc<Vec<Group>>) {
        let Some(m) = self.containers.get(key) else {
            return Default::default();
        };
        if let Some(last) = &m.last {
            return last.clone();
        }
        let listing = m.listing;
        let mut out = ContainerProcesses::default();
        for pid in &m.pids {
            let Some(e) = self.entries.get(pid) else {
                continue;
            };
            if !e.p.is_zombie() && e.listed == listing {
                out.live.push(e.p.clone());
            }
        }
        out.live.sort_unstable_by_key(|p| p.pid);
        let live_set: PidSet = out.live.iter().map(|p| p.pid).collect();
        for pid in &m.pids {
            let Some(e) = self.entries.get(pid) else {
                continue;
            };
            if e.p.is_zombie() && (e.listed == listing || live_set.contains(&e.p.ppid)) {
                out.zombies.push(e.p.clone());
            }
        }
        out.zombies.sort_unstable_by_key(|p| p.pid);
        let groups = Arc::new(duplicate_groups(&out.live));
        let last = (Arc::new(out), groups);
        if let Some(m) = self.containers.get_mut(key) {
            m.last = Some(last.clone());
        }
        last
    }

    /// The pids of a container that are in the table.
    fn members(&self, key: &str) -> Vec<i32> {
        self.containers
            .get(key)
            .map(|m| {
                m.pids
                    .iter()
                    .copied()
                    .filter(|p| self.entries.contains_key(p))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ends a scrape: forgets the containers not read in it (and their
    /// processes).
    pub fn end_scrape(&mut self) {
        let generation = self.generation;
        let gone: Vec<Arc<str>> = self
            .containers
            .iter()
            .filter(|(_, m)| m.generation != generation)
            .map(|(k, _)| Arc::clone(k))
            .collect();
        for key in gone {
            if let Some(m) = self.containers.remove(&key) {
                for pid in m.pids {
                    self.remove(pid);
                }
            }
        }
        self.reader.end_scrape();
        self.generation += 1;
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
