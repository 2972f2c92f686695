//! The resident memory of the command groups the exporter shows
//! (`pidwarden_container_process_group_memory_bytes`), on a schedule of its
//! own: once every [`REFRESH_EVERY`] (the first scrape included), the
//! copies of every group a scrape shows (the top K per container, each copy
//! with its whole subtree) have their `/proc/<pid>/statm` read; the scrapes
//! in between read nothing and show those figures. Never every process on
//! every scrape. A group first shown between two refreshes gets its figure
//! at the next one; a group no longer shown is forgotten then.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pidwarden_shared::collect::Snapshot;
use pidwarden_shared::groups;
use pidwarden_shared::procfs::statm::{page_size, read_rss};
use pidwarden_shared::procfs::Cmdline;
use pidwarden_shared::Roots;

use crate::metrics::{top_groups, GroupMemorySource};

/// How long a group's memory figure is kept before it is read again: the
/// most the metric lags behind the kernel.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// A group: container id, parent, command line.
type Key = (String, i32, Cmdline);

/// The groups' memory as last read.
#[derive(Debug)]
pub struct GroupMemory {
    every: Duration,
    page: u64,
    /// Bytes per group shown at the last refresh.
    entries: HashMap<Key, u64>,
    /// When the next refresh is due (`None`: at the next scrape).
    next: Option<Instant>,
    /// Processes whose `statm` was read, in total (a self check for tests).
    reads: u64,
}

impl GroupMemory {
    /// Figures refreshed every `every`.
    pub fn new(every: Duration) -> Self {
        GroupMemory {
            every,
            page: page_size(),
            entries: HashMap::new(),
            next: None,
            reads: 0,
        }
    }

    /// Processes read so far.
    #[cfg(test)]
    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// When a refresh is due (the first call, then once every interval):
    /// reads the memory of the top `k` groups of every container of `snap`
    /// (the groups `build_families` shows) and forgets the others. Between
    /// refreshes it does nothing. A process that vanished or cannot be read
    /// counts 0 (logged at debug): the group is still shown.
    pub fn refresh(&mut self, roots: &Roots, snap: &Snapshot, k: usize, max_chars: usize) {
        let now = Instant::now();
        if self.next.is_some_and(|t| now < t) {
            return;
        }
        self.next = Some(now + self.every);
        let cpu0 = pidwarden_shared::thread_cpu_time();
        let reads0 = self.reads;
        let mut entries: HashMap<Key, u64> = HashMap::new();
        for c in &snap.containers {
            let id = &c.container.id;
            let mut children: Option<HashMap<i32, Vec<i32>>> = None;
            for g in top_groups(c, k, max_chars) {
                let Some(g) = g.group else { continue };
                let kids = children.get_or_insert_with(|| groups::children_of(&c.processes.live));
                let mut bytes = 0u64;
                for pid in groups::descendants(kids, &g.pids) {
                    self.reads += 1;
                    match read_rss(roots, pid, self.page) {
                        Ok(Some(b)) => bytes = bytes.saturating_add(b),
                        Ok(None) => {}
                        Err(e) => tracing::debug!(pid, error = %e, "statm left out"),
                    }
                }
                entries.insert((id.clone(), g.ppid, g.cmdline), bytes);
            }
        }
        self.entries = entries;
        // The refresh's cost, apart from the scrapes' (the benchmark reads it).
        tracing::debug!(
            groups = self.entries.len(),
            processes = self.reads - reads0,
            cpu_ms = (pidwarden_shared::thread_cpu_time().saturating_sub(cpu0)).as_secs_f64() * 1e3,
            wall_ms = now.elapsed().as_secs_f64() * 1e3,
            "group memory refreshed"
        );
    }
}

impl GroupMemorySource for GroupMemory {
    fn group_memory(&self, id: &str, ppid: i32, cmdline: &Cmdline) -> Option<u64> {
        self.entries
            .get(&(id.to_string(), ppid, cmdline.clone()))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{snapshot, ID_A};

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
    fn groups_are_read_once_per_interval_and_forgotten_when_gone() {
        let snap = snapshot();
        let dir = proc_root(&snap);
        let roots = Roots::new(dir.path(), dir.path());
        let page = page_size();
        let mut mem = GroupMemory::new(Duration::from_secs(3600));
        mem.refresh(&roots, &snap, 5, 120);
        // `sleep 1000` under 1: pids 2..=5, each its own subtree; pid n
        // holds n pages.
        let cmd = &snap.containers[0].groups[0];
        assert_eq!(
            mem.group_memory(ID_A, 1, &cmd.cmdline),
            Some((2 + 3 + 4 + 5) * page)
        );
        // Pids 12..=14 are not in the proc root (vanished): counted as 0.
        let reads = mem.reads();
        assert!(reads > 0);
        // Within the interval nothing is read again, and the figure stays.
        std::fs::write(dir.path().join("2/statm"), "100 1000 0 0 0 0 0\n").unwrap();
        mem.refresh(&roots, &snap, 5, 120);
        assert_eq!(mem.reads(), reads);
        assert_eq!(
            mem.group_memory(ID_A, 1, &cmd.cmdline),
            Some((2 + 3 + 4 + 5) * page)
        );
        // Past it, the group is read afresh.
        let mut quick = GroupMemory::new(Duration::ZERO);
        quick.refresh(&roots, &snap, 5, 120);
        assert_eq!(
            quick.group_memory(ID_A, 1, &cmd.cmdline),
            Some((1000 + 3 + 4 + 5) * page)
        );
        // Only the groups shown are read: with K = 1, one group.
        let mut one = GroupMemory::new(Duration::ZERO);
        one.refresh(&roots, &snap, 1, 120);
        assert_eq!(one.reads(), 4);
        // A group no longer shown is forgotten at the next refresh.
        let mut gone = snap.clone();
        gone.containers[0].groups = Vec::new().into();
        quick.refresh(&roots, &gone, 5, 120);
        assert_eq!(quick.group_memory(ID_A, 1, &cmd.cmdline), None);
        assert!(quick.entries.is_empty());
        // Between refreshes nothing is read, not even a group first shown.
        let reads = mem.reads();
        mem.refresh(&roots, &gone, 5, 120);
        assert_eq!(mem.reads(), reads);
    }
}
