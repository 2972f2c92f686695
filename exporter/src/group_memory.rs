//! The resident memory of the command groups the exporter shows
//! (`pidwarden_container_process_group_memory_bytes`): never every process
//! on every scrape, yet a group's new copies counted at the next scrape.
//!
//! Each container keeps the RSS of every member of its shown groups (the
//! top K, each copy with its whole subtree), read from `/proc/<pid>/statm`
//! with the time it was read, keyed by pid and start time (a reused pid is
//! a new member, never served the old process's figure). At each refresh
//! (each scrape) a member not in that cache (a new copy, a new child) is
//! read, and only it; a member gone (exited, or no longer in a shown
//! group) is dropped without a read; a group's figure is the sum over its
//! current members. A container's members are looked at only when its
//! group list changed (the incremental collection keeps the list while
//! the processes do not change), when it is due, or while members wait
//! for their first read.
//!
//! All the members of a container are read again on its own schedule: when
//! it is first seen, then once every interval. Its second reading is placed
//! at a phase drawn from a hash of its id, uniform over the interval, so
//! that containers that started together (a node's reboot) are read a share
//! at each scrape from then on, not all in one scrape forever. A member
//! that stayed is thus never served older than the interval.
//!
//! One refresh reads at most [`MAX_NEW_READS`] new members, containers
//! whose members waited from the previous refresh first, then in the
//! collection's order; the rest wait for the next refreshes. A group's
//! figure is the sum over its members read so far; a group none of whose
//! members was read yet has no figure (its series is left out). During a
//! mass start (a deploy, a node's reboot) the figures grow to their full
//! value over a few scrapes; on a host that keeps starting more processes
//! than the bound per scrape the newest members count from their first
//! read on, and every group still has a figure at every scrape (an alert on
//! it is never interrupted by a missing series).
//!
//! The refresh runs once per scrape, after the scrape's answer (which
//! serves the figures as they stood): a container is read at the last
//! refresh before its figures would be served more than one interval old,
//! judged from the time between the last two refreshes. With scrapes at a
//! steady rate a figure served is at most one interval old.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use pidwarden_shared::collect::{ContainerSnapshot, Snapshot};
use pidwarden_shared::groups;
use pidwarden_shared::procfs::statm::{page_size, read_rss};
use pidwarden_shared::procfs::Cmdline;
use pidwarden_shared::Roots;

use crate::metrics::{top_groups, GroupMemorySource};

/// The default of `--group-memory-interval`: how long a member's figure is
/// kept before it is read again, the most the metric lags behind the
/// kernel for members that stayed (the reasons for the figure:
/// docs/metrics.md, "Group memory").
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1800);

/// The most new members (not in the cache) one refresh reads. At ~10 µs
/// of CPU per `statm` read that is ≲10 ms per scrape, half of the 20 ms a
/// scrape may cost on a host whose processes all just started; such a host
/// of 10,000 processes is read in full within 10 scrapes (2.5 min at 15 s,
/// far inside the 15 min an alert on the figure waits). A leak adds copies
/// far more slowly than 1,000 processes per scrape (67 per second at 15 s):
/// its new copies are read at the next scrape. The 627 copies of the
/// incident, with a child or two each, would take 2 or 3 scrapes even if
/// they all appeared at once.
pub const MAX_NEW_READS: usize = 1000;

/// A group of a container: parent, command line.
type GroupKey = (i32, Cmdline);

/// A process: pid and start time (clock ticks after boot), so that a pid
/// reused by a new process is a new key.
type ProcKey = (i32, u64);

/// A member's figure.
#[derive(Debug, Clone, Copy)]
struct Member {
    /// Resident bytes (0 when it vanished or could not be read).
    bytes: u64,
    /// When it was read.
    read_at: Instant,
}

/// One container's figures.
#[derive(Debug)]
struct Figures {
    /// The members of the shown groups as last read.
    members: HashMap<ProcKey, Member>,
    /// Bytes per shown group with at least one member read (the sum over
    /// its members read), summed at the last refresh that looked at the
    /// container.
    groups: HashMap<GroupKey, u64>,
    /// When every member was last read (the schedule's reading).
    read_at: Instant,
    /// One interval after `read_at`: the members must be read again before
    /// they are served older than that.
    next: Instant,
    /// After the first sight, when the second reading is due (the id's
    /// phase): read at the first refresh at or after it.
    phased: Option<Instant>,
    /// The container's group list whose members were last looked at (weak:
    /// it keeps the allocation, so its address is not reused, not the
    /// groups).
    checked: Weak<Vec<pidwarden_shared::groups::Group>>,
    /// Members wait for their first read (the bound was reached).
    waiting: bool,
}

impl Figures {
    /// Whether the container is read at a refresh at `now`, the figures
    /// being next served at `horizon`: at its phase, or at the last
    /// refresh before they would be served more than one interval old.
    fn due(&self, now: Instant, horizon: Instant) -> bool {
        self.next < horizon || self.phased.is_some_and(|t| t <= now)
    }
}

/// What one refresh read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    /// Containers whose members were all read again (due, or first seen).
    pub containers: usize,
    /// Groups with a member read.
    pub groups: usize,
    /// Processes whose `statm` was read.
    pub processes: u64,
    /// New members left for the next refreshes (the bound was reached).
    pub waiting: u64,
}

/// The groups' memory as last read, per container.
#[derive(Debug)]
pub struct GroupMemory {
    every: Duration,
    page: u64,
    /// New members read per refresh at most ([`MAX_NEW_READS`]).
    bound: usize,
    /// Figures by container id.
    containers: HashMap<String, Figures>,
    /// When the previous refresh ran (the previous scrape).
    last_refresh: Option<Instant>,
    /// Processes whose `statm` was read, in total (a self check for tests).
    reads: u64,
}

/// Where in the interval a container's second reading falls: a hash of
/// its id, uniform over `[0, every]`. The same id always gets the same
/// phase; ids that differ get unrelated ones.
fn phase(id: &str, every: Duration) -> Duration {
    // `DefaultHasher::new` has fixed keys: the same phase in every run.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    every.mul_f64(h.finish() as f64 / 18_446_744_073_709_551_616.0)
}

impl GroupMemory {
    /// Each container's members read again every `every`.
    pub fn new(every: Duration) -> Self {
        GroupMemory {
            every,
            page: page_size(),
            bound: MAX_NEW_READS,
            containers: HashMap::new(),
            last_refresh: None,
            reads: 0,
        }
    }

    /// Processes read so far.
    #[cfg(test)]
    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// [`GroupMemory::refresh_at`] now.
    pub fn refresh(&mut self, roots: &Roots, snap: &Snapshot, k: usize, max_chars: usize) {
        self.refresh_at(Instant::now(), roots, snap, k, max_chars);
    }

    /// Reads, for the top `k` groups of the containers of `snap` (the groups
    /// `build_families` shows), each copy with its subtree: every member of
    /// a container due, and the members not read yet of the others (at most
    /// the bound in all); drops the members and groups gone and forgets the
    /// containers gone. A process that vanished or cannot be read counts 0
    /// (logged at debug). `now` is the time of the call (a parameter for
    /// the tests).
    pub fn refresh_at(
        &mut self,
        now: Instant,
        roots: &Roots,
        snap: &Snapshot,
        k: usize,
        max_chars: usize,
    ) -> Refreshed {
        // Figures are next served at the next scrape: expected as far
        // ahead as the previous one was behind (at most an interval).
        let ahead = self
            .last_refresh
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
            .min(self.every);
        self.last_refresh = Some(now);
        let horizon = now + ahead;
        let cpu0 = pidwarden_shared::thread_cpu_time();
        let wall0 = Instant::now();
        let reads0 = self.reads;
        let mut done = Refreshed::default();

        let present: HashSet<&str> = snap
            .containers
            .iter()
            .map(|c| c.container.id.as_str())
            .collect();
        self.containers
            .retain(|id, _| present.contains(id.as_str()));
        // Containers whose members waited first, then the collection's
        // order.
        let mut order: Vec<&ContainerSnapshot> = snap.containers.iter().collect();
        order.sort_by_key(|c| {
            !self
                .containers
                .get(c.container.id.as_str())
                .is_some_and(|f| f.waiting)
        });
        let mut budget = self.bound;
        for c in order {
            let id = &c.container.id;
            let first = !self.containers.contains_key(id.as_str());
            let f = match self.containers.get_mut(id.as_str()) {
                Some(f) => f,
                None => {
                    // First sight: the second reading at the id's phase.
                    done.containers += 1;
                    self.containers.entry(id.clone()).or_insert(Figures {
                        members: HashMap::new(),
                        groups: HashMap::new(),
                        read_at: now,
                        next: now + self.every,
                        phased: Some(now + phase(id, self.every)),
                        checked: Weak::new(),
                        waiting: false,
                    })
                }
            };
            // First sight reads every member (all new) already.
            let due = !first && f.due(now, horizon);
            if !due && !f.waiting && std::ptr::eq(f.checked.as_ptr(), Arc::as_ptr(&c.groups)) {
                // Nothing changed since the container was last looked at.
                continue;
            }
            if due {
                done.containers += 1;
                f.read_at = now;
                f.next = now + self.every;
                f.phased = None;
            }
            let mut reader = Reader {
                roots,
                page: self.page,
                reads: &mut self.reads,
                now,
                reread: due,
                budget: &mut budget,
            };
            let live = &c.processes.live;
            let kids = groups::children_of(live);
            let mut members = HashSet::new();
            let mut figures = HashMap::new();
            f.waiting = false;
            for g in top_groups(c, k, max_chars) {
                let Some(g) = g.group else { continue };
                let reads = *reader.reads;
                let mut bytes = None::<u64>;
                for pid in groups::descendants(&kids, &g.pids) {
                    // A pid not among the live processes (a zombie, or gone
                    // since the listing) holds nothing to read.
                    let Ok(i) = live.binary_search_by_key(&pid, |p| p.pid) else {
                        continue;
                    };
                    let key = (pid, live[i].start_time);
                    members.insert(key);
                    match reader.member(&mut f.members, key) {
                        Some(b) => bytes = Some(bytes.unwrap_or(0).saturating_add(b)),
                        None => {
                            f.waiting = true;
                            done.waiting += 1;
                        }
                    }
                }
                if *reader.reads > reads {
                    done.groups += 1;
                }
                if let Some(bytes) = bytes {
                    figures.insert((g.ppid, g.cmdline), bytes);
                }
            }
            f.members.retain(|key, _| members.contains(key));
            f.groups = figures;
            f.checked = Arc::downgrade(&c.groups);
        }
        done.processes = self.reads - reads0;
        if !snap.containers.is_empty() {
            // The refresh's cost, apart from the rest of the scrape (the
            // benchmark reads it; one line per scrape, reading or not);
            // `oldest_s`: the oldest reading of a container's members kept
            // (worked out only when logged).
            let containers = &self.containers;
            let oldest = || {
                containers
                    .values()
                    .map(|f| now.saturating_duration_since(f.read_at))
                    .max()
                    .unwrap_or_default()
            };
            tracing::debug!(
                containers = done.containers,
                groups = done.groups,
                processes = done.processes,
                waiting = done.waiting,
                cpu_ms =
                    (pidwarden_shared::thread_cpu_time().saturating_sub(cpu0)).as_secs_f64() * 1e3,
                wall_ms = wall0.elapsed().as_secs_f64() * 1e3,
                oldest_s = oldest().as_secs_f64(),
                "group memory refreshed"
            );
        }
        done
    }
}

/// Reads members for one container at one refresh.
struct Reader<'a> {
    roots: &'a Roots,
    page: u64,
    reads: &'a mut u64,
    now: Instant,
    /// The container is due: members read before this refresh are read
    /// again.
    reread: bool,
    /// New members this refresh may still read.
    budget: &'a mut usize,
}

impl Reader<'_> {
    /// The figure of member `key`: the cached one, or read (and cached)
    /// when it has none or the container is due and it was not read at
    /// this refresh yet (a member in two shown groups' subtrees is read
    /// once); `None` when it has none and the bound is reached.
    fn member(&mut self, cache: &mut HashMap<ProcKey, Member>, key: ProcKey) -> Option<u64> {
        match cache.get(&key) {
            Some(m) if !self.reread || m.read_at == self.now => return Some(m.bytes),
            Some(_) => {}
            None if *self.budget == 0 => return None,
            None => *self.budget -= 1,
        }
        let bytes = self.read(key.0);
        cache.insert(
            key,
            Member {
                bytes,
                read_at: self.now,
            },
        );
        Some(bytes)
    }

    /// The resident bytes of `pid`, 0 when it vanished or cannot be read.
    fn read(&mut self, pid: i32) -> u64 {
        *self.reads += 1;
        match read_rss(self.roots, pid, self.page) {
            Ok(Some(b)) => b,
            Ok(None) => 0,
            Err(e) => {
                tracing::debug!(pid, error = %e, "statm left out");
                0
            }
        }
    }
}

impl GroupMemorySource for GroupMemory {
    fn group_memory(&self, id: &str, ppid: i32, cmdline: &Cmdline) -> Option<u64> {
        self.containers
            .get(id)?
            .groups
            .get(&(ppid, cmdline.clone()))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{snapshot, ID_A};

    const SCRAPE: Duration = Duration::from_secs(15);

    /// A fake proc root where every process of the hand-built snapshot has
    /// a `statm` saying it holds `pid` pages.
    fn proc_root(snap: &Snapshot) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for c in &snap.containers {
            for p in &c.processes.live {
                let d = dir.path().join(p.pid.to_string());
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join("statm"), format!("100 {} 0 0 0 0 0\n", p.pid)).unwrap();
            }
        }
        dir
    }

    fn id(n: usize) -> String {
        format!("{n:064x}")
    }

    /// Copies of container A (the same processes) under the ids given.
    fn copies_of_a(ids: &[String]) -> Snapshot {
        let mut snap = snapshot();
        let a = snap.containers[0].clone();
        snap.containers = ids
            .iter()
            .map(|id| {
                let mut c = a.clone();
                c.container.id = id.clone();
                c
            })
            .collect();
        snap
    }

    /// Container A's groups shown (top 5): `sleep 1000` under 1 (pids
    /// 2..=5; the same command under 6 shares its label and is smaller),
    /// `worker …` (6..=8), and two groups whose pids 12..=14 vanished.
    fn sleep_cmd(snap: &Snapshot) -> Cmdline {
        snap.containers[0].groups[0].cmdline.clone()
    }

    fn worker_cmd(snap: &Snapshot) -> Cmdline {
        snap.containers[0].groups[1].cmdline.clone()
    }

    #[test]
    fn copies_include_their_subtrees_once() {
        let procs: Vec<pidwarden_shared::procfs::Process> =
            snapshot().containers[0].processes.live.clone();
        let kids = groups::children_of(&procs);
        // 1 is the parent of 2..=11; none of them has children.
        let mut m = groups::descendants(&kids, &[2, 3]);
        m.sort_unstable();
        assert_eq!(m, vec![2, 3]);
        let mut all = groups::descendants(&kids, &[1, 2]);
        all.sort_unstable();
        assert_eq!(all, (1..=11).collect::<Vec<_>>());
    }

    #[test]
    fn a_container_first_seen_is_read_at_once_then_not_until_due() {
        let snap = snapshot();
        let dir = proc_root(&snap);
        let roots = Roots::new(dir.path(), dir.path());
        let page = page_size();
        let every = Duration::from_secs(120);
        let mut mem = GroupMemory::new(every);
        let t0 = Instant::now();
        // First sight: every shown group of A (B shows none) with a live
        // member: 3 groups, 8 processes (12..=14 are not live processes:
        // nothing to read).
        let r = mem.refresh_at(t0, &roots, &snap, 5, 120);
        assert_eq!(
            r,
            Refreshed {
                containers: 2,
                groups: 3,
                processes: 8,
                waiting: 0
            }
        );
        assert_eq!(
            mem.group_memory(ID_A, 1, &sleep_cmd(&snap)),
            Some((2 + 3 + 4 + 5) * page)
        );
        assert_eq!(
            mem.group_memory(ID_A, 1, &worker_cmd(&snap)),
            Some((6 + 7 + 8) * page)
        );
        // Until it is due nothing is read, and the figures stay.
        std::fs::write(dir.path().join("2/statm"), "100 1000 0 0 0 0 0\n").unwrap();
        let due = t0 + phase(ID_A, every);
        assert_eq!(mem.containers[ID_A].phased, Some(due));
        assert_eq!(mem.containers[ID_A].next, t0 + every);
        let mut t = t0;
        loop {
            t += SCRAPE;
            let r = mem.refresh_at(t, &roots, &snap, 5, 120);
            if r.containers == 0 {
                assert_eq!(r, Refreshed::default());
                assert!(t < due, "{:?} past its phase", t - t0);
                assert_eq!(
                    mem.group_memory(ID_A, 1, &sleep_cmd(&snap)),
                    Some((2 + 3 + 4 + 5) * page)
                );
                continue;
            }
            // At its phase (or before its figures would be served older
            // than the interval) A is read afresh.
            assert_eq!((r.containers, r.processes), (1, 8), "{r:?}");
            assert!(t < due + SCRAPE);
            break;
        }
        assert_eq!(
            mem.group_memory(ID_A, 1, &sleep_cmd(&snap)),
            Some((1000 + 3 + 4 + 5) * page)
        );
        // From then on, once every interval.
        assert_eq!(mem.containers[ID_A].next, t + every);
        assert_eq!(mem.containers[ID_A].phased, None);
        // Only the groups shown are read: with K = 1, one group.
        let mut one = GroupMemory::new(every);
        one.refresh_at(t0, &roots, &snap, 1, 120);
        assert_eq!(one.reads(), 4);
    }

    #[test]
    fn second_readings_are_spread_over_the_interval() {
        let every = Duration::from_secs(120);
        // Two ids, two phases, both within the interval.
        let (a, b) = (phase(&id(1), every), phase(&id(2), every));
        assert_ne!(a, b);
        assert!(a <= every && b <= every, "{a:?} {b:?}");
        assert_eq!(phase(&id(1), every), a, "the same id, the same phase");

        // 200 containers that started together, scraped every 15 s.
        let ids: Vec<String> = (1..=200).map(id).collect();
        let snap = copies_of_a(&ids);
        let dir = proc_root(&snap);
        let roots = Roots::new(dir.path(), dir.path());
        let mut mem = GroupMemory::new(every);
        // The schedule alone: no bound on the first sight's reads.
        mem.bound = usize::MAX;
        let t0 = Instant::now();
        let first = mem.refresh_at(t0, &roots, &snap, 5, 120);
        assert_eq!(first.containers, 200);
        for id in &ids {
            assert_eq!(mem.containers[id].phased, Some(t0 + phase(id, every)));
        }
        // Over each interval after the first sight (8 scrapes) every
        // container is read once, about an eighth at each scrape (25; a
        // scrape reading twice that would be a cohort kept together).
        for round in 0..3u32 {
            let mut per_scrape = Vec::new();
            for i in 1..=8u32 {
                let t = t0 + SCRAPE * (round * 8 + i);
                let r = mem.refresh_at(t, &roots, &snap, 5, 120);
                assert_eq!(r.processes, 8 * r.containers as u64);
                per_scrape.push(r.containers);
            }
            assert_eq!(per_scrape.iter().sum::<usize>(), 200, "{per_scrape:?}");
            assert!(
                per_scrape.iter().all(|&n| (12..=38).contains(&n)),
                "{per_scrape:?}"
            );
        }
    }

    #[test]
    fn a_figure_served_is_never_older_than_the_interval() {
        let ids: Vec<String> = (1..=20).map(id).collect();
        let snap = copies_of_a(&ids);
        let dir = proc_root(&snap);
        let roots = Roots::new(dir.path(), dir.path());
        for every in [100, 120, 300].map(Duration::from_secs) {
            let mut mem = GroupMemory::new(every);
            let t0 = Instant::now();
            let mut reads = 0;
            for i in 0..100u32 {
                let t = t0 + SCRAPE * i;
                // Served at this scrape: the figures as they stand.
                for id in &ids {
                    if let Some(f) = mem.containers.get(id) {
                        let age = t - f.read_at;
                        assert!(age <= every, "{id} at scrape {i}: {age:?} > {every:?}");
                    }
                }
                reads += mem.refresh_at(t, &roots, &snap, 5, 120).containers;
            }
            // Never read more often than needed: after the first sight and
            // the second (phased) reading, once every whole number of
            // scrapes that fits in the interval.
            let per = (every.as_secs() / SCRAPE.as_secs()) as usize;
            let most = ids.len() * (2 + 99 / per);
            assert!(reads <= most, "{every:?}: {reads} readings > {most}");
        }
    }

    #[test]
    fn a_group_first_shown_between_readings_is_read_at_the_next_refresh_alone() {
        let full = snapshot();
        let dir = proc_root(&full);
        let roots = Roots::new(dir.path(), dir.path());
        let page = page_size();
        let every = Duration::from_secs(3600);
        assert!(phase(ID_A, every) > Duration::from_secs(1));
        // A without its `worker` group at first.
        let mut before = full.clone();
        let mut groups = (*before.containers[0].groups).clone();
        groups.remove(1);
        before.containers[0].groups = groups.into();
        let mut mem = GroupMemory::new(every);
        let t0 = Instant::now();
        assert_eq!(mem.refresh_at(t0, &roots, &before, 5, 120).processes, 5);
        assert_eq!(mem.group_memory(ID_A, 1, &worker_cmd(&full)), None);
        // The group shows up: the next refresh reads its copies, only them.
        std::fs::write(dir.path().join("2/statm"), "100 1000 0 0 0 0 0\n").unwrap();
        let t1 = t0 + Duration::from_millis(1);
        let r = mem.refresh_at(t1, &roots, &full, 5, 120);
        assert_eq!(
            r,
            Refreshed {
                containers: 0,
                groups: 1,
                processes: 3,
                waiting: 0
            }
        );
        assert_eq!(
            mem.group_memory(ID_A, 1, &worker_cmd(&full)),
            Some((6 + 7 + 8) * page)
        );
        assert_eq!(
            mem.group_memory(ID_A, 1, &sleep_cmd(&full)),
            Some((2 + 3 + 4 + 5) * page),
            "the other groups wait for the container's reading"
        );
        // Read once: the refresh after reads nothing.
        let t2 = t1 + Duration::from_millis(1);
        assert_eq!(
            mem.refresh_at(t2, &roots, &full, 5, 120),
            Refreshed::default()
        );
    }

    #[test]
    fn containers_gone_and_groups_no_longer_shown_are_forgotten() {
        let ids = vec![id(1), id(2)];
        let snap = copies_of_a(&ids);
        let dir = proc_root(&snap);
        let roots = Roots::new(dir.path(), dir.path());
        let every = Duration::from_secs(3600);
        let mut mem = GroupMemory::new(every);
        let t0 = Instant::now();
        mem.refresh_at(t0, &roots, &snap, 5, 120);
        let (sleep, worker) = (sleep_cmd(&snap), worker_cmd(&snap));
        assert!(mem.group_memory(&ids[1], 1, &sleep).is_some());
        // The second container is gone; the first no longer shows `worker`.
        let mut after = copies_of_a(&ids[..1]);
        let mut groups = (*after.containers[0].groups).clone();
        groups.remove(1);
        after.containers[0].groups = groups.into();
        let t1 = t0 + Duration::from_millis(1);
        let r = mem.refresh_at(t1, &roots, &after, 5, 120);
        assert_eq!(mem.group_memory(&ids[1], 1, &sleep), None);
        assert!(!mem.containers.contains_key(&ids[1]));
        // `worker` and its members are dropped at once, without a read.
        assert_eq!(r, Refreshed::default());
        assert_eq!(mem.group_memory(&ids[0], 1, &worker), None);
        assert!(mem.group_memory(&ids[0], 1, &sleep).is_some());
        assert!(mem.containers[&ids[0]]
            .members
            .keys()
            .all(|&(pid, _)| !(6..=8).contains(&pid)));
        // Its next reading reads the members shown only.
        let due = mem.containers[&ids[0]].next;
        let r = mem.refresh_at(due + SCRAPE, &roots, &after, 5, 120);
        assert_eq!((r.containers, r.processes), (1, 5));
        assert_eq!(mem.group_memory(&ids[0], 1, &worker), None);
        assert!(mem.group_memory(&ids[0], 1, &sleep).is_some());
        // A container that comes back is read at once.
        let t3 = due + SCRAPE + Duration::from_millis(1);
        let r = mem.refresh_at(t3, &roots, &snap, 5, 120);
        assert_eq!(r.containers, 1);
        assert!(mem.group_memory(&ids[1], 1, &worker).is_some());
    }

    /// Container A holding only `npm exec x` copies under pid 1, each
    /// `(pid, start time)`, and `children` `(pid, parent)` running `node`.
    fn leak(copies: &[(i32, u64)], children: &[(i32, i32)]) -> Snapshot {
        let mut snap = snapshot();
        snap.containers.truncate(1);
        let c = &mut snap.containers[0];
        let init = c.processes.live[0].clone();
        let mut live = vec![init.clone()];
        for &(pid, start) in copies {
            let mut p = init.clone();
            (p.pid, p.ppid, p.start_time) = (pid, 1, start);
            p.cmdline = Cmdline::from_args(["npm", "exec", "x"]);
            live.push(p);
        }
        for &(pid, ppid) in children {
            let mut p = init.clone();
            (p.pid, p.ppid, p.start_time) = (pid, ppid, 5000 + pid as u64);
            p.cmdline = Cmdline::from_args(["node", "server.js"]);
            live.push(p);
        }
        live.sort_by_key(|p| p.pid);
        c.groups = Arc::new(groups::duplicate_groups(&live));
        c.processes = pidwarden_shared::procfs::ContainerProcesses {
            live,
            zombies: Vec::new(),
        }
        .into();
        snap
    }

    fn npm() -> Cmdline {
        Cmdline::from_args(["npm", "exec", "x"])
    }

    fn copies(pids: std::ops::RangeInclusive<i32>) -> Vec<(i32, u64)> {
        pids.map(|p| (p, 1000 + p as u64)).collect()
    }

    #[test]
    fn new_copies_are_read_at_the_next_refresh_only_they_and_exits_cost_no_read() {
        let big = leak(&copies(10..=15), &[(40, 10)]);
        let dir = proc_root(&big);
        let roots = Roots::new(dir.path(), dir.path());
        let page = page_size();
        let every = Duration::from_secs(3600);
        assert!(phase(ID_A, every) > SCRAPE * 4);
        let mut mem = GroupMemory::new(every);
        let t0 = Instant::now();
        // Two copies: read at first sight.
        let r = mem.refresh_at(t0, &roots, &leak(&copies(10..=11), &[]), 5, 120);
        assert_eq!(r.processes, 2);
        assert_eq!(mem.group_memory(ID_A, 1, &npm()), Some((10 + 11) * page));
        // The copies already read keep their figure until the container is
        // due (a change to one of them is not seen yet)…
        std::fs::write(dir.path().join("10/statm"), "100 500 0 0 0 0 0\n").unwrap();
        // …and the group grows to six copies between two readings: the
        // next refresh reads the four new ones, only them.
        let t1 = t0 + SCRAPE;
        let six = leak(&copies(10..=15), &[]);
        let r = mem.refresh_at(t1, &roots, &six, 5, 120);
        assert_eq!((r.containers, r.groups, r.processes), (0, 1, 4), "{r:?}");
        assert_eq!(
            mem.group_memory(ID_A, 1, &npm()),
            Some((10 + 11 + 12 + 13 + 14 + 15) * page)
        );
        // Nothing new: nothing read.
        let r = mem.refresh_at(t1 + SCRAPE, &roots, &six, 5, 120);
        assert_eq!(r, Refreshed::default());
        // A copy's new child (its subtree) is read alone.
        let t2 = t1 + SCRAPE * 2;
        let r = mem.refresh_at(t2, &roots, &big, 5, 120);
        assert_eq!(r.processes, 1);
        assert_eq!(
            mem.group_memory(ID_A, 1, &npm()),
            Some((10 + 11 + 12 + 13 + 14 + 15 + 40) * page)
        );
        // A copy exits (13), and the child: dropped, no read.
        let t3 = t2 + SCRAPE;
        let five: Vec<_> = copies(10..=15).into_iter().filter(|c| c.0 != 13).collect();
        let r = mem.refresh_at(t3, &roots, &leak(&five, &[]), 5, 120);
        assert_eq!(r, Refreshed::default());
        assert_eq!(
            mem.group_memory(ID_A, 1, &npm()),
            Some((10 + 11 + 12 + 14 + 15) * page)
        );
        assert_eq!(mem.containers[ID_A].members.len(), 5);
        // At its scheduled reading every member is read again.
        let due = mem.containers[ID_A].phased.unwrap();
        let r = mem.refresh_at(due, &roots, &leak(&five, &[]), 5, 120);
        assert_eq!((r.containers, r.processes), (1, 5), "{r:?}");
        assert_eq!(
            mem.group_memory(ID_A, 1, &npm()),
            Some((500 + 11 + 12 + 14 + 15) * page)
        );
    }

    #[test]
    fn a_reused_pid_is_read_afresh() {
        let before = leak(&copies(10..=12), &[]);
        let dir = proc_root(&before);
        let roots = Roots::new(dir.path(), dir.path());
        let page = page_size();
        let mut mem = GroupMemory::new(Duration::from_secs(3600));
        let t0 = Instant::now();
        mem.refresh_at(t0, &roots, &before, 5, 120);
        assert_eq!(
            mem.group_memory(ID_A, 1, &npm()),
            Some((10 + 11 + 12) * page)
        );
        // 12 exits and a new copy gets its pid (a later start time) before
        // the next scrape: the same pid, a new process, read afresh.
        std::fs::write(dir.path().join("12/statm"), "100 777 0 0 0 0 0\n").unwrap();
        let after = leak(&[(10, 1010), (11, 1011), (12, 9999)], &[]);
        let r = mem.refresh_at(t0 + SCRAPE, &roots, &after, 5, 120);
        assert_eq!(r.processes, 1);
        assert_eq!(
            mem.group_memory(ID_A, 1, &npm()),
            Some((10 + 11 + 777) * page)
        );
        assert!(mem.containers[ID_A].members.contains_key(&(12, 9999)));
        assert!(!mem.containers[ID_A].members.contains_key(&(12, 1012)));
    }

    #[test]
    fn one_refresh_reads_at_most_the_bound_and_a_group_waiting_counts_what_was_read() {
        // The default bound: a mass start of more new members than it.
        let n = MAX_NEW_READS as i32 + 500;
        let mass = leak(&copies(10..=9 + n), &[]);
        let dir = proc_root(&mass);
        let roots = Roots::new(dir.path(), dir.path());
        let page = page_size();
        let mut mem = GroupMemory::new(Duration::from_secs(3600));
        let t0 = Instant::now();
        let r = mem.refresh_at(t0, &roots, &mass, 5, 120);
        assert_eq!(r.processes, MAX_NEW_READS as u64);
        assert_eq!(r.waiting, 500);
        // Not all its members read: the members read so far.
        let read: u64 = mem.containers[ID_A].members.values().map(|m| m.bytes).sum();
        assert_eq!(mem.containers[ID_A].members.len(), MAX_NEW_READS);
        assert_eq!(mem.group_memory(ID_A, 1, &npm()), Some(read));
        let r = mem.refresh_at(t0 + SCRAPE, &roots, &mass, 5, 120);
        assert_eq!((r.processes, r.waiting), (500, 0));
        let all: u64 = (10..=9 + n as u64).sum();
        assert_eq!(mem.group_memory(ID_A, 1, &npm()), Some(all * page));

        // A smaller bound, two containers: the members left wait for the
        // next refreshes, containers whose members waited first.
        let mut two = leak(&copies(10..=15), &[]);
        let mut b = two.containers[0].clone();
        b.container.id = id(2);
        two.containers.push(b);
        let mut mem = GroupMemory::new(Duration::from_secs(3600));
        mem.bound = 4;
        let six = (10 + 11 + 12 + 13 + 14 + 15) * page;
        let r = mem.refresh_at(t0, &roots, &two, 5, 120);
        assert_eq!((r.processes, r.waiting), (4, 8));
        // Four of A's six members read; none of B's: B has no figure yet.
        let a = mem.group_memory(ID_A, 1, &npm()).unwrap();
        assert!(a > 0 && a < six, "{a}");
        assert_eq!(mem.group_memory(&id(2), 1, &npm()), None);
        let r = mem.refresh_at(t0 + SCRAPE, &roots, &two, 5, 120);
        assert_eq!((r.processes, r.waiting), (4, 4));
        assert_eq!(mem.group_memory(ID_A, 1, &npm()), Some(six));
        let b = mem.group_memory(&id(2), 1, &npm()).unwrap();
        assert!(b > 0 && b < six, "{b}");
        let r = mem.refresh_at(t0 + SCRAPE * 2, &roots, &two, 5, 120);
        assert_eq!((r.processes, r.waiting), (4, 0));
        assert_eq!(mem.group_memory(&id(2), 1, &npm()), Some(six));
        assert_eq!(mem.reads(), 12);
    }
}
