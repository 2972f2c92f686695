//! The resident memory of the command groups the exporter shows
//! (`pidwarden_container_process_group_memory_bytes`), read on each
//! container's own schedule: never every process on every scrape, and
//! never every container in the same scrape.
//!
//! A container's shown groups (the top K, each copy with its whole
//! subtree) have their `/proc/<pid>/statm` read when the container is
//! first seen, then once every interval. Its second reading is placed at a
//! phase drawn from a hash of its id, uniform over the interval, so that
//! containers that started together (a node's reboot) are read a share at
//! each scrape from then on, not all in one scrape forever. Between its
//! readings a container's figures are kept, except that a group it shows
//! with no figure yet (a new leak) is read, alone, at the next refresh.
//! A container gone from the collection is forgotten; a group no longer
//! shown is forgotten at its container's next reading.
//!
//! The refresh runs once per scrape, after the scrape's answer (which
//! serves the figures as they stood): a container is read at the last
//! refresh before its figures would be served more than one interval old,
//! judged from the time between the last two refreshes. With scrapes at a
//! steady rate a figure served is at most one interval old.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use pidwarden_shared::collect::{ContainerSnapshot, Snapshot};
use pidwarden_shared::groups::{self, Group};
use pidwarden_shared::procfs::statm::{page_size, read_rss};
use pidwarden_shared::procfs::Cmdline;
use pidwarden_shared::Roots;

use crate::metrics::{top_groups, GroupMemorySource};

/// The default of `--group-memory-interval`: how long a container's group
/// figures are kept before they are read again, the most the metric lags
/// behind the kernel (the reasons for the figure: docs/metrics.md, "Group
/// memory").
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1800);

/// A group of a container: parent, command line.
type GroupKey = (i32, Cmdline);

/// One container's figures.
#[derive(Debug)]
struct Figures {
    /// Bytes per group shown at its last reading (or read since, when new).
    groups: HashMap<GroupKey, u64>,
    /// When every group shown was last read.
    read_at: Instant,
    /// One interval after `read_at`: the figures must be read again before
    /// they are served older than that.
    next: Instant,
    /// After the first sight, when the second reading is due (the id's
    /// phase): read at the first refresh at or after it.
    phased: Option<Instant>,
    /// The container's group list whose shown groups all have a figure
    /// (weak: it keeps the allocation, so its address is not reused, not
    /// the groups).
    checked: Weak<Vec<Group>>,
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
    /// Containers whose shown groups were all read (due, or first seen).
    pub containers: usize,
    /// Groups read (those of the containers above, and new ones alone).
    pub groups: usize,
    /// Processes whose `statm` was read.
    pub processes: u64,
}

/// The groups' memory as last read, per container.
#[derive(Debug)]
pub struct GroupMemory {
    every: Duration,
    page: u64,
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
    /// Each container's figures refreshed every `every`.
    pub fn new(every: Duration) -> Self {
        GroupMemory {
            every,
            page: page_size(),
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
    /// `build_families` shows): every group of a container seen for the
    /// first time or due, and the groups with no figure yet of the others;
    /// forgets the containers gone and, in the containers read, the groups
    /// no longer shown. A process that vanished or cannot be read counts 0
    /// (logged at debug): the group is still shown. `now` is the time of
    /// the call (a parameter for the tests).
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
        for c in &snap.containers {
            let id = &c.container.id;
            let mut reader = Reader {
                roots,
                page: self.page,
                reads: &mut self.reads,
                container: c,
                children: None,
            };
            match self.containers.get_mut(id.as_str()) {
                Some(f) if !f.due(now, horizon) => {
                    // Not due: only the groups first shown since its
                    // reading, looked for only when its groups changed (the
                    // incremental collection keeps their list while they
                    // do not).
                    if std::ptr::eq(f.checked.as_ptr(), Arc::as_ptr(&c.groups)) {
                        continue;
                    }
                    for g in top_groups(c, k, max_chars) {
                        let Some(g) = g.group else { continue };
                        if let Entry::Vacant(e) = f.groups.entry((g.ppid, g.cmdline)) {
                            e.insert(reader.group(&g.pids));
                            done.groups += 1;
                        }
                    }
                    f.checked = Arc::downgrade(&c.groups);
                }
                seen => {
                    // First sight: the second reading at the id's phase.
                    let phased = seen.is_none().then(|| now + phase(id, self.every));
                    let mut groups = HashMap::new();
                    for g in top_groups(c, k, max_chars) {
                        let Some(g) = g.group else { continue };
                        let bytes = reader.group(&g.pids);
                        groups.insert((g.ppid, g.cmdline), bytes);
                        done.groups += 1;
                    }
                    done.containers += 1;
                    self.containers.insert(
                        id.clone(),
                        Figures {
                            groups,
                            read_at: now,
                            next: now + self.every,
                            phased,
                            checked: Arc::downgrade(&c.groups),
                        },
                    );
                }
            }
        }
        done.processes = self.reads - reads0;
        if !snap.containers.is_empty() {
            // The refresh's cost, apart from the rest of the scrape (the
            // benchmark reads it; one line per scrape, reading or not);
            // `oldest_s`: the oldest figure kept (worked out only when
            // logged).
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

/// Reads the groups of one container: its children map built once, when
/// the first group is read.
struct Reader<'a> {
    roots: &'a Roots,
    page: u64,
    reads: &'a mut u64,
    container: &'a ContainerSnapshot,
    children: Option<HashMap<i32, Vec<i32>>>,
}

impl Reader<'_> {
    /// The bytes held by the copies `pids`, each with its subtree.
    fn group(&mut self, pids: &[i32]) -> u64 {
        let live = &self.container.processes.live;
        let kids = self
            .children
            .get_or_insert_with(|| groups::children_of(live));
        let mut bytes = 0u64;
        for pid in groups::descendants(kids, pids) {
            *self.reads += 1;
            match read_rss(self.roots, pid, self.page) {
                Ok(Some(b)) => bytes = bytes.saturating_add(b),
                Ok(None) => {}
                Err(e) => tracing::debug!(pid, error = %e, "statm left out"),
            }
        }
        bytes
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
        // First sight: every shown group of A (B shows none): 4 groups, 11
        // processes (12..=14 vanished: counted 0).
        let r = mem.refresh_at(t0, &roots, &snap, 5, 120);
        assert_eq!(
            r,
            Refreshed {
                containers: 2,
                groups: 4,
                processes: 11
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
            assert_eq!((r.containers, r.processes), (1, 11), "{r:?}");
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
                assert_eq!(r.processes, 11 * r.containers as u64);
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
        assert_eq!(mem.refresh_at(t0, &roots, &before, 5, 120).processes, 8);
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
                processes: 3
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
        mem.refresh_at(t1, &roots, &after, 5, 120);
        assert_eq!(mem.group_memory(&ids[1], 1, &sleep), None);
        assert!(!mem.containers.contains_key(&ids[1]));
        // `worker` is kept until its container's next reading…
        assert!(mem.group_memory(&ids[0], 1, &worker).is_some());
        // …which forgets it.
        let due = mem.containers[&ids[0]].next;
        let r = mem.refresh_at(due + SCRAPE, &roots, &after, 5, 120);
        assert_eq!(r.containers, 1);
        assert_eq!(mem.group_memory(&ids[0], 1, &worker), None);
        assert!(mem.group_memory(&ids[0], 1, &sleep).is_some());
        // A container that comes back is read at once.
        let t3 = due + SCRAPE + Duration::from_millis(1);
        let r = mem.refresh_at(t3, &roots, &snap, 5, 120);
        assert_eq!(r.containers, 1);
        assert!(mem.group_memory(&ids[1], 1, &worker).is_some());
    }
}
