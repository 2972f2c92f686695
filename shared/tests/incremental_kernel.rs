//! The incremental collection's edges against the real kernel: a pid
//! recycled inside a container between two collections, an unchanged
//! container that is not listed again (and every change that makes it
//! listed), and a host with more processes than the file descriptor budget
//! has room for pidfds.
//!
//! Needs root and a writable cgroup v1 `pids` hierarchy, unless
//! `PIDWARDEN_SKIP_DOCKER=1`.

use std::io::Write;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pidwarden_shared::collect::{CollectMode, Collector};
use pidwarden_shared::procfs::budget::set_nofile_soft_limit;
use pidwarden_shared::procfs::{kept_handle_budget, nofile_limit, RESERVED_FDS};
use pidwarden_shared::Roots;
use pidwarden_tests::ChildGuard;

mod common;
use common::{find, roots_with, TestContainer, View};

/// The tests here run one at a time: one steers the pids the kernel hands
/// out, the other forks thousands of processes and lowers the open file
/// limit of the whole binary.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Restores the soft open file limit on drop (a failed test too), before
/// the kit's cleanup needs descriptors for every process it kills.
struct SoftLimit(u64);

impl Drop for SoftLimit {
    fn drop(&mut self) {
        let _ = set_nofile_soft_limit(self.0);
    }
}

/// Collects until `ok` holds for the container's snapshot (10 s at most).
fn collect_until(
    c: &mut Collector,
    id: &str,
    what: &str,
    ok: impl Fn(&pidwarden_shared::collect::ContainerSnapshot) -> bool,
) -> pidwarden_shared::collect::ContainerSnapshot {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let snap = c.collect();
        if let Some(cs) = find(&snap.containers, id) {
            if ok(&cs) {
                return cs;
            }
            assert!(Instant::now() < deadline, "{what}: {cs:#?}");
        }
        assert!(Instant::now() < deadline, "{what}: container not collected");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Spawns `sleep <arg>` in the container's cgroups, with pid `want` when
/// the kernel hands it out next (`ns_last_pid`); `None` when another
/// process of the host took it first.
fn spawn_with_pid(tc: &TestContainer, want: i32, arg: &str) -> Option<ChildGuard> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/kernel/ns_last_pid")
        .expect("ns_last_pid (root)");
    f.write_all((want - 1).to_string().as_bytes()).unwrap();
    let child = ChildGuard(tc.cgroup().spawn_in(Command::new("sleep").arg(arg)));
    (child.id() as i32 == want).then_some(child)
}

#[test]
fn a_pid_recycled_between_collections_is_a_new_process() {
    let _serial = serial();
    let Some(tc) = TestContainer::create_in(&["pids"]) else {
        return;
    };
    let mut inc = Collector::with_mode(roots_with([&tc]), 1, CollectMode::Incremental);
    let mut old = ChildGuard(tc.cgroup().spawn_in(Command::new("sleep").arg("1000")));
    let pid = old.id() as i32;
    let before = collect_until(&mut inc, &tc.id, "the first process", |cs| {
        cs.processes
            .live
            .iter()
            .any(|p| p.pid == pid && p.cmdline.display() == "sleep 1000")
    });
    let first = before
        .processes
        .live
        .iter()
        .find(|p| p.pid == pid)
        .unwrap()
        .clone();
    assert!(inc.table_stats().pidfds >= 1, "{:?}", inc.table_stats());

    // The process exits and is reaped; another one in the same container
    // gets its pid before the next collection, a few clock ticks later
    // (start times count in ticks: within one tick both would read alike).
    std::thread::sleep(Duration::from_millis(50));
    old.kill().unwrap();
    old.wait().unwrap();
    let mut new = None;
    for _ in 0..50 {
        new = spawn_with_pid(&tc, pid, "1001");
        if new.is_some() {
            break;
        }
    }
    let new = new.expect("the pid was never handed out again in 50 tries");
    assert_eq!(new.id() as i32, pid);

    let after = collect_until(&mut inc, &tc.id, "the recycled pid", |cs| {
        cs.processes
            .live
            .iter()
            .any(|p| p.pid == pid && p.cmdline.display() == "sleep 1001")
    });
    let second = after.processes.live.iter().find(|p| p.pid == pid).unwrap();
    assert_ne!(
        second.start_time, first.start_time,
        "{first:?} vs {second:?}"
    );
    assert_eq!(after.processes.live.len(), 1, "{:#?}", after.processes);
    assert!(after.processes.zombies.is_empty(), "{:#?}", after.processes);
    let full = Collector::with_mode(roots_with([&tc]), 1, CollectMode::Full)
        .collect_one(&tc.id)
        .unwrap()
        .unwrap();
    assert_eq!(View::of_snapshot(&after), View::of_snapshot(&full));
}

/// One collection of the container: its view, and whether it was listed.
fn collect_view(c: &mut Collector, tc: &TestContainer) -> (View, bool) {
    let snap = c.collect();
    assert!(snap.errors.is_empty(), "{:?}", snap.errors);
    let cs = find(&snap.containers, &tc.id).expect("collected");
    (View::of_snapshot(&cs), c.listed_in_last_collection(&tc.id))
}

#[test]
fn an_unchanged_container_is_not_listed_and_every_change_lists_it() {
    let _serial = serial();
    let Some(tc) = TestContainer::create_in(&["pids"]) else {
        return;
    };
    let mut inc = Collector::with_mode(roots_with([&tc]), 1, CollectMode::Incremental);
    // Nobody young: only a change may make the container listed.
    inc.set_young_window(Duration::ZERO);
    let spawn = |arg: &str| ChildGuard(tc.cgroup().spawn_in(Command::new("sleep").arg(arg)));
    let mut a = spawn("1000");
    let _b = spawn("1001");
    let (first, listed) = collect_view(&mut inc, &tc);
    assert!(listed, "a new container is listed");
    assert_eq!(first.live.len(), 2, "{first:?}");

    // Unchanged: served without its listing, and still what the kernel says.
    for _ in 0..3 {
        let (view, listed) = collect_view(&mut inc, &tc);
        assert!(!listed, "an unchanged container was listed");
        assert_eq!(view, tc.kernel_view());
    }

    // An arrival raises pids.current.
    let c = spawn("1002");
    let (view, listed) = collect_view(&mut inc, &tc);
    assert!(listed);
    assert!(view.live.iter().any(|p| p.0 == c.id() as i32), "{view:?}");
    assert_eq!(view, tc.kernel_view());
    assert!(!collect_view(&mut inc, &tc).1);

    // An exit and an arrival between two collections: pids.current is the
    // same, the exit comes from the pidfd.
    a.kill().unwrap();
    a.wait().unwrap();
    let d = spawn("1003");
    let (view, listed) = collect_view(&mut inc, &tc);
    assert!(listed, "an exit balanced by an arrival went unseen");
    assert!(view.live.iter().any(|p| p.0 == d.id() as i32), "{view:?}");
    assert!(!view.live.iter().any(|p| p.0 == a.id() as i32), "{view:?}");
    assert_eq!(view, tc.kernel_view());
    assert!(!collect_view(&mut inc, &tc).1);

    // A zombie whose parent is outside the container (this test) is
    // charged to it but listed nowhere: its reaping would go unseen, so the
    // container is listed for as long as it holds one.
    let mut z = spawn("0");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(format!("/proc/{}/stat", z.id()))
        .unwrap()
        .contains(") Z ")
    {
        assert!(Instant::now() < deadline, "sleep 0 never exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..2 {
        let (view, listed) = collect_view(&mut inc, &tc);
        assert!(
            listed,
            "a container charged with an unknown zombie was not listed"
        );
        assert_eq!(view, tc.kernel_view());
    }
    z.wait().unwrap();
    let (view, listed) = collect_view(&mut inc, &tc);
    assert!(listed);
    assert_eq!(view, tc.kernel_view());
    assert!(!collect_view(&mut inc, &tc).1);

    // A zombie of a process inside is known and re-read each collection
    // without a listing; reaped and balanced by an arrival, it is seen.
    // (Debian's python3 itself: a wrapper that execs it would exec after
    // the first reading, which this collector re-reads only in REFRESH.)
    let reaper = tc.cgroup().spawn_in(Command::new("/usr/bin/python3").args([
        "-c",
        "import signal, subprocess\n\
         signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])\n\
         p = subprocess.Popen(['sleep', '0'])\n\
         signal.sigwait([signal.SIGUSR1])\n\
         p.wait()\n\
         signal.sigwait([signal.SIGUSR1])\n",
    ]));
    let reaper = ChildGuard(reaper);
    let deadline = Instant::now() + Duration::from_secs(10);
    let zombie = loop {
        let (view, _) = collect_view(&mut inc, &tc);
        if view.zombies.iter().any(|z| z.1 == reaper.id() as i32) {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "the zombie never showed: {view:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(zombie, tc.kernel_view());
    let (view, listed) = collect_view(&mut inc, &tc);
    assert!(!listed, "a container holding a known zombie was listed");
    assert_eq!(view, zombie);
    // SAFETY: a signal to the python process this test started.
    unsafe { libc::kill(reaper.id() as i32, libc::SIGUSR1) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while tc.kernel_view().zombies.len() == zombie.zombies.len() {
        assert!(Instant::now() < deadline, "the zombie was never reaped");
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = spawn("1004");
    let (view, listed) = collect_view(&mut inc, &tc);
    assert!(listed, "a reaped zombie balanced by an arrival went unseen");
    assert!(view.live.iter().any(|p| p.0 == e.id() as i32), "{view:?}");
    assert!(view.zombies.is_empty(), "{view:?}");
    assert_eq!(view, tc.kernel_view());
}

#[test]
fn a_process_started_just_after_a_collection_is_listed_by_the_next() {
    let _serial = serial();
    let Some(tc) = TestContainer::create_in(&["pids"]) else {
        return;
    };
    let mut inc = Collector::with_mode(roots_with([&tc]), 1, CollectMode::Incremental);
    let first = ChildGuard(tc.cgroup().spawn_in(Command::new("sleep").arg("1000")));
    collect_until(&mut inc, &tc.id, "the first process", |cs| {
        cs.processes.live.len() == 1 && cs.processes.live[0].pid == first.id() as i32
    });
    // Nothing else reads the cgroup's process list in between: on cgroup
    // v1 a list kept open would still be the one of the last collection
    // for a second.
    let mut kept = Vec::new();
    for n in 2..=6 {
        let started = Instant::now();
        let next = ChildGuard(tc.cgroup().spawn_in(Command::new("sleep").arg("1000")));
        let snap = inc.collect();
        let cs = find(&snap.containers, &tc.id).expect("collected");
        let pids: Vec<i32> = cs.processes.live.iter().map(|p| p.pid).collect();
        assert!(
            pids.contains(&(next.id() as i32)),
            "collection {n}, {:?} after the last: {pids:?} lacks {}",
            started.elapsed(),
            next.id()
        );
        assert_eq!(pids.len(), n, "{pids:?}");
        kept.push(next);
    }
}

/// A writer into a shared buffer, to read the log back.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Open descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

const PROCS: usize = 5000;

#[test]
fn beyond_the_fd_budget_processes_are_read_by_full_scan_and_it_is_said_once() {
    let _serial = serial();
    let Some(mut tc) = TestContainer::create_in(&["pids"]) else {
        return;
    };
    let (soft, _) = nofile_limit().unwrap();
    let _restore = SoftLimit(soft);
    set_nofile_soft_limit(1024).unwrap();
    let budget = kept_handle_budget(&Roots::default());
    assert_eq!(budget as u64, 1024 - RESERVED_FDS);

    // 5,000 sleeps under one shell (busybox: a small process each).
    tc.spawn(
        "i=0; while [ $i -lt $1 ]; do busybox sleep 1000 & i=$((i + 1)); done; exec busybox sleep 1000",
        &[&PROCS.to_string()],
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while tc.listed().len() < PROCS + 1 {
        assert!(
            Instant::now() < deadline,
            "only {} of {} processes started",
            tc.listed().len(),
            PROCS + 1
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let mut inc = Collector::with_mode(roots_with([&tc]), 1, CollectMode::Incremental);
    // The oracle claims its kept `stat` handles from the same budget: what
    // the incremental table left (nothing). Each claiming the whole budget,
    // the two ran out of descriptors together.
    let mut full = Collector::with_mode(roots_with([&tc]), 1, CollectMode::Full);
    tracing::subscriber::with_default(subscriber, || {
        for round in 0..3 {
            let before = tc.kernel_view();
            let i = inc.collect();
            let f = full.collect();
            let after = tc.kernel_view();
            let stats = inc.table_stats();
            assert!(i.errors.is_empty(), "{:?}", i.errors);
            assert!(f.errors.is_empty(), "{:?}", f.errors);
            assert!(stats.pidfds <= budget, "{stats:?}");
            assert!(stats.over_budget >= PROCS + 1 - budget, "{stats:?}");
            assert!(open_fds() < 1024, "{} descriptors open", open_fds());
            let i = View::of_snapshot(&find(&i.containers, &tc.id).expect("collected"));
            let f = View::of_snapshot(&find(&f.containers, &tc.id).expect("collected"));
            assert_eq!(i.live.len(), PROCS + 1, "round {round}");
            assert_eq!(i, f, "round {round}: incremental vs full scan");
            if before == after {
                assert_eq!(i, before, "round {round}: incremental vs kernel");
            }
        }
    });
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let said = text.matches("file descriptor budget spent").count();
    assert_eq!(said, 1, "{text}");
}
