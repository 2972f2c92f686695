//! The incremental table's bookkeeping on fixture `/proc` trees, without
//! root: exits from a [`FakeExits`] the test drives, times from a
//! [`FakeClock`] the test moves.

use std::path::Path;

use super::*;
use crate::procfs::exits::FakeExits;
use crate::procfs::schedule::FakeClock;

/// Seconds since boot at the fake clock's start; at 100 ticks a second, a
/// start time of `NOW_TICKS` is a process started now.
const BOOT_SECS: u64 = 10_000;
const NOW_TICKS: u64 = BOOT_SECS * 100;
/// A start time long past: never young.
const OLD: u64 = 100;

const ID: &str = "c1";

/// A fixture `/proc/<pid>` entry (written again to change it).
fn put(root: &Path, pid: i32, ppid: i32, state: char, start: u64, cmdline: &str) {
    let dir = root.join(pid.to_string());
    std::fs::create_dir_all(dir.join("task").join(pid.to_string())).unwrap();
    std::fs::write(
        dir.join("stat"),
        format!("{pid} (x) {state} {ppid} 1 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 {start} 0 0\n"),
    )
    .unwrap();
    let mut cmd: Vec<u8> = cmdline.replace(' ', "\0").into_bytes();
    if !cmd.is_empty() {
        cmd.push(0);
    }
    std::fs::write(dir.join("cmdline"), cmd).unwrap();
    std::fs::write(dir.join("task").join(pid.to_string()).join("children"), "").unwrap();
}

/// The process is gone: its `/proc` entry removed.
fn vanish(root: &Path, pid: i32) {
    std::fs::remove_dir_all(root.join(pid.to_string())).unwrap();
}

struct Fixture {
    dir: tempfile::TempDir,
    table: ProcessTable,
    exits: FakeExits,
    clock: FakeClock,
}

/// One scrape of one container: what it reported and whether it was listed.
struct Scraped {
    live: Vec<(i32, u64, String)>,
    zombies: Vec<i32>,
    listed: bool,
    errors: usize,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let exits = FakeExits::default();
        let clock = FakeClock::at_boot_plus(Duration::from_secs(BOOT_SECS));
        let table = ProcessTable::with_parts(
            Roots::new(dir.path(), dir.path()),
            FdPool::fixed(1000),
            Some(Box::new(exits.clone())),
            Box::new(clock.clone()),
        );
        Fixture {
            dir,
            table,
            exits,
            clock,
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A scrape where the cgroup lists `procs` and counts `tasks`.
    fn scrape(&mut self, procs: &[i32], tasks: u64) -> Scraped {
        let mut errors = self.table.begin_scrape().len();
        let mut listed = false;
        let (got, _) = self
            .table
            .read_container(
                ID,
                Some(tasks),
                &mut || {
                    listed = true;
                    Some(procs.to_vec())
                },
                &mut || Some(tasks),
            )
            .unwrap();
        errors += self.table.take_skipped().len();
        self.table.end_scrape();
        Scraped {
            live: got
                .live
                .iter()
                .map(|p| (p.pid, p.start_time, p.cmdline.display().into_owned()))
                .collect(),
            zombies: got.zombies.iter().map(|p| p.pid).collect(),
            listed,
            errors,
        }
    }
}

fn pids(s: &Scraped) -> Vec<i32> {
    s.live.iter().map(|p| p.0).collect()
}

#[test]
fn a_process_that_exits_is_dropped_and_a_new_one_appears() {
    let mut f = Fixture::new();
    put(f.root(), 10, 1, 'S', OLD, "app --serve");
    put(f.root(), 11, 10, 'S', OLD, "worker");
    let s = f.scrape(&[10, 11], 2);
    assert_eq!((pids(&s), s.listed, s.errors), (vec![10, 11], true, 0));
    assert_eq!(f.table.stats().pidfds, 2);

    // 11 exits and is reaped; 12 arrives.
    vanish(f.root(), 11);
    f.exits.exit(11);
    put(f.root(), 12, 10, 'S', OLD, "worker");
    let s = f.scrape(&[10, 12], 2);
    assert_eq!((pids(&s), s.listed, s.errors), (vec![10, 12], true, 0));
    let st = f.table.stats();
    assert_eq!((st.exits, st.tracked, st.pidfds), (1, 2, 2), "{st:?}");
    assert!(!f.exits.state().watched.contains(&11));
}

#[test]
fn a_reused_pid_with_another_start_time_is_a_new_process() {
    let mut f = Fixture::new();
    put(f.root(), 10, 1, 'S', OLD, "app");
    put(f.root(), 11, 10, 'S', OLD, "old-worker");
    f.scrape(&[10, 11], 2);

    // 11 exits; before the next scrape its pid names another process.
    f.exits.exit(11);
    put(f.root(), 11, 10, 'S', OLD + 500, "new-worker");
    let s = f.scrape(&[10, 11], 2);
    assert_eq!(
        s.live[1],
        (11, OLD + 500, "new-worker".to_string()),
        "the new process, read afresh"
    );
    assert_eq!(s.errors, 0);
    // Watched again: the new process's exit will be seen too.
    assert!(f.exits.state().watched.contains(&11));
}

#[test]
fn a_reused_pid_is_caught_by_its_start_time_without_a_watch() {
    let mut f = Fixture::new();
    // No budget for watches: every listed process is re-read each scrape.
    f.exits.state().budget = Some(0);
    put(f.root(), 10, 1, 'S', OLD, "app");
    let s = f.scrape(&[10], 1);
    assert_eq!(f.table.stats().over_budget, 1);
    assert_eq!(s.live, vec![(10, OLD, "app".to_string())]);

    put(f.root(), 10, 1, 'S', OLD + 7, "impostor");
    let s = f.scrape(&[10], 1);
    assert_eq!(s.live, vec![(10, OLD + 7, "impostor".to_string())]);
}

#[test]
fn an_unchanged_container_is_not_listed_until_relist_is_due() {
    let mut f = Fixture::new();
    put(f.root(), 10, 1, 'S', OLD, "app");
    put(f.root(), 11, 10, 'S', OLD, "worker");
    assert!(f.scrape(&[10, 11], 2).listed);

    // Same task count, no exit: reported as last read, not listed.
    let s = f.scrape(&[10, 11], 2);
    assert_eq!((pids(&s), s.listed), (vec![10, 11], false));
    assert_eq!(f.table.stats().listings, 0);
    assert!(!f.table.listed_in_last_scrape(ID));

    // A task more: listed.
    put(f.root(), 12, 10, 'S', OLD, "worker");
    let s = f.scrape(&[10, 11, 12], 3);
    assert_eq!((pids(&s), s.listed), (vec![10, 11, 12], true));

    // Nothing changes for RELIST: listed again all the same.
    assert!(!f.scrape(&[10, 11, 12], 3).listed);
    f.clock.advance(RELIST);
    assert!(f.scrape(&[10, 11, 12], 3).listed);
}

#[test]
fn young_processes_are_reread_once_their_age_doubled_old_ones_on_their_refresh() {
    let mut f = Fixture::new();
    // 10 started 10 s ago (young for 50 s more), 11 long ago.
    put(f.root(), 10, 1, 'S', NOW_TICKS - 1000, "npm exec");
    put(f.root(), 11, 1, 'S', OLD, "sleep 1000");
    f.scrape(&[10, 11], 2);

    // Both exec something else.
    put(f.root(), 10, 1, 'S', NOW_TICKS - 1000, "node server.js");
    put(f.root(), 11, 1, 'S', OLD, "sleep 2000");
    // Scraped again at once: the young one is not read again every scrape.
    let s = f.scrape(&[10, 11], 2);
    assert!(!s.listed);
    assert_eq!(s.live[0].2, "npm exec", "young, age not doubled: not due");
    assert_eq!(f.table.stats().reads, 0);
    // 10 s later it is 20 s old: re-read.
    f.clock.advance(Duration::from_secs(10));
    let s = f.scrape(&[10, 11], 2);
    assert_eq!(s.live[0].2, "node server.js", "young: re-read this scrape");
    assert_eq!(s.live[1].2, "sleep 1000", "old: not due yet");
    assert_eq!(f.table.stats().reads, 1);

    // Past its refresh time (REFRESH at the latest), the old one is re-read.
    f.clock.advance(REFRESH);
    let s = f.scrape(&[10, 11], 2);
    assert_eq!(s.live[1].2, "sleep 2000");
    assert_eq!(s.live[0].2, "node server.js");
}

#[test]
fn a_process_vanishing_mid_read_is_left_out_without_error() {
    let mut f = Fixture::new();
    put(f.root(), 10, 1, 'S', OLD, "app");
    // 11 and 12 are listed but gone before they are read: 11 before its
    // watch is taken, 12 between its watch and its reading.
    f.exits.state().gone.insert(11);
    let s = f.scrape(&[10, 11, 12], 3);
    assert_eq!((pids(&s), s.errors), (vec![10], 0));
    assert_eq!(f.table.stats().tracked, 1);
    assert_eq!(
        f.exits.state().watched.iter().copied().collect::<Vec<_>>(),
        vec![10],
        "the watch taken for 12 is given back"
    );

    // A known process vanishes without its exit reported (and so from the
    // listing): the listing re-reads it and drops it, the container still
    // reported.
    vanish(f.root(), 10);
    let s = f.scrape(&[], 0);
    assert_eq!((pids(&s), s.errors), (Vec::<i32>::new(), 0));
    assert_eq!(f.table.stats().tracked, 0);
}

#[test]
fn an_exit_into_a_zombie_keeps_it_until_it_is_reaped() {
    let mut f = Fixture::new();
    put(f.root(), 10, 1, 'S', OLD, "app");
    put(f.root(), 11, 10, 'S', OLD, "worker");
    f.scrape(&[10, 11], 2);

    // 11 exits; its parent has not reaped it: a zombie, no longer watched.
    put(f.root(), 11, 10, 'Z', OLD, "");
    f.exits.exit(11);
    let s = f.scrape(&[10, 11], 2);
    assert_eq!((pids(&s), s.zombies), (vec![10], vec![11]));
    assert_eq!(f.table.stats().pidfds, 1);

    // Reaped.
    vanish(f.root(), 11);
    let s = f.scrape(&[10], 1);
    assert_eq!((pids(&s), s.zombies), (vec![10], vec![]));
    assert_eq!(f.table.stats().tracked, 1);
}

#[test]
fn a_container_not_read_in_a_scrape_is_forgotten_with_its_watches() {
    let mut f = Fixture::new();
    put(f.root(), 10, 1, 'S', OLD, "app");
    f.scrape(&[10], 1);
    assert_eq!(f.exits.state().watched.len(), 1);
    f.table.begin_scrape();
    f.table.end_scrape();
    assert_eq!(f.table.stats().tracked, 0);
    assert!(f.exits.state().watched.is_empty());
}
