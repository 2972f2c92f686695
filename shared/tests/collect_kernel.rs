//! Collection against the real kernel: a fake Docker container cgroup under
//! `/sys/fs/cgroup/<ctrl>/pidwarden-test-*/docker/<id>` (cgroup v1, as on the
//! test hosts), with real processes, duplicates and a zombie inside.
//!
//! Needs root and writable cgroup v1 `pids` and `memory` hierarchies; fails
//! with a clear message otherwise, unless `PIDWARDEN_SKIP_DOCKER=1` (the
//! switch for every test that needs Docker, root or real cgroups; see the
//! test kit's `require_cgroups`).
//!
//! Only one test here spawns processes: it makes this test binary a child
//! subreaper so that the orphans of its processes come back to it to be
//! reaped, and it reaps any child in its cleanup.

use std::time::{Duration, Instant};

use pidwarden_shared::collect::Collector;
use pidwarden_shared::groups::surplus;
use pidwarden_shared::Roots;

mod common;
use common::{become_subreaper, find, roots_with, TestContainer};

/// sh ─┬─ sleep 1000  ×3  (duplicates: one group of 3, surplus 2)
///     └─ sleep 1001 ── zombie (`sleep 0.1`, never reaped: sleep does not wait)
const SCRIPT: &str =
    "sleep 1000 & sleep 1000 & sleep 1000 & sh -c 'sleep 0.1 & exec sleep 1001' & wait";

#[test]
fn collects_processes_duplicates_and_zombies_from_a_real_cgroup() {
    become_subreaper();

    let Some(mut tc) = TestContainer::create() else {
        return;
    };
    tc.spawn(SCRIPT, &[]);
    let sh = tc.sh_pid();

    let mut collector = Collector::new(roots_with([&tc]));
    let deadline = Instant::now() + Duration::from_secs(15);
    let snap = loop {
        let snap = collector
            .collect_one(&tc.id)
            .expect("collect_one")
            .expect("container discovered");
        // Every child has exec'd (a fork not yet through exec still shows
        // the shell's command line) and the short sleep has become a zombie.
        let runs = |cmd: &str| {
            snap.processes
                .live
                .iter()
                .filter(|p| p.cmdline.display() == cmd)
                .count()
        };
        let steady = snap.processes.live.len() == 5
            && snap.processes.zombies.len() == 1
            && runs("sleep 1000") == 3
            && runs("sleep 1001") == 1;
        if steady {
            break snap;
        }
        assert!(
            Instant::now() < deadline,
            "never reached the expected state: {snap:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    let listed = tc.listed();
    let live_pids: Vec<i32> = snap.processes.live.iter().map(|p| p.pid).collect();
    assert_eq!(live_pids, listed, "live processes are exactly cgroup.procs");

    let mut cmdlines: Vec<String> = snap
        .processes
        .live
        .iter()
        .map(|p| p.cmdline.display().into_owned())
        .collect();
    cmdlines.sort_unstable();
    let sh_line = format!("sh -c {SCRIPT}");
    assert_eq!(
        cmdlines,
        vec![
            sh_line.as_str(),
            "sleep 1000",
            "sleep 1000",
            "sleep 1000",
            "sleep 1001"
        ]
    );
    let waiter = snap
        .processes
        .live
        .iter()
        .find(|p| p.cmdline.display() == "sleep 1001")
        .unwrap();
    assert_eq!(waiter.ppid, sh);
    for p in &snap.processes.live {
        assert!(!p.state.is_zombie());
        assert_eq!(p.threads, 1);
        if p.pid != sh {
            assert_eq!(p.ppid, sh, "{p:?}");
        }
    }

    let zombie = &snap.processes.zombies[0];
    assert!(zombie.state.is_zombie());
    assert_eq!(zombie.ppid, waiter.pid);
    assert_eq!(zombie.cmdline.display(), "");
    assert_eq!(&*zombie.comm, "sleep");
    assert!(
        !listed.contains(&zombie.pid),
        "a zombie is not in cgroup.procs"
    );

    assert_eq!(snap.groups.len(), 1, "{:#?}", snap.groups);
    let g = &snap.groups[0];
    assert_eq!(g.ppid, sh);
    assert_eq!(g.cmdline.display(), "sleep 1000");
    assert_eq!(g.pids.len(), 3);
    let mut oldest_first: Vec<(u64, i32)> = g
        .pids
        .iter()
        .map(|pid| {
            let p = snap.processes.live.iter().find(|p| p.pid == *pid).unwrap();
            (p.start_time, p.pid)
        })
        .collect();
    let as_given = oldest_first.clone();
    oldest_first.sort_unstable();
    assert_eq!(as_given, oldest_first, "pids oldest first");
    assert_eq!(surplus(&snap.groups), 2);

    // The pids controller charges the zombie too: 5 live tasks + 1 zombie.
    let pids = snap.pids.expect("pids stats");
    assert_eq!(pids.current, 6);
    let memory = snap.memory.expect("memory stats");
    assert!(memory.usage > 0);

    // The full collection sees the same container, and caches its processes.
    let full = collector.collect();
    let again = find(&full.containers, &tc.id).expect("container in the full snapshot");
    assert_eq!(again.processes, snap.processes);
    assert_eq!(again.groups, snap.groups);
    assert!(collector.cached_processes() >= 6);

    // After the processes are gone and the cgroup removed, the container is gone.
    drop(tc);
    let full = collector.collect();
    assert!(full
        .containers
        .iter()
        .all(|c| c.container.id != snap.container.id));
}

#[test]
fn collect_one_refuses_bad_and_unknown_ids() {
    // Reads the host's cgroup filesystem.
    if pidwarden_tests::skip_docker() {
        return;
    }
    let mut collector = Collector::new(Roots::default());
    for bad in [
        "",
        "..",
        "../../etc",
        &"A".repeat(64),
        &"a".repeat(63),
        &format!("{}/x", "a".repeat(64)),
    ] {
        assert!(collector.collect_one(bad).unwrap().is_none(), "{bad:?}");
    }
    // A well-formed id that no container has.
    assert!(collector.collect_one(&"0".repeat(64)).unwrap().is_none());
}
