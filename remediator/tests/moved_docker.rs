//! A kill against a real Docker container whose victims are moved out of
//! the container's cgroup while the kill runs (root writing their pids into
//! another cgroup's `cgroup.procs`, in the pids hierarchy, one of those the
//! membership check reads): a process moved out after it was frozen and
//! before its SIGTERM is never signalled, one moved out during the grace
//! period never gets its SIGKILL, and both are continued and survive.

use std::time::{Duration, Instant};

use pidwarden_remediator::kill::{execute, plan, ExecControl, JournalError, KillPolicy, ProcRef};
use pidwarden_shared::cgroup::read_procs_recursive;
use pidwarden_shared::collect::Collector;
use pidwarden_shared::procfs::read_process;
use pidwarden_shared::Roots;
use pidwarden_tests::{poll_until, require_docker, TestCgroup, TestContainer};

const WAIT: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_millis(100);

/// Pids of the container's `sleep 1000` processes.
fn sleeps(c: &TestContainer) -> Vec<i32> {
    let roots = Roots::default();
    read_procs_recursive(&c.cgroup_dir("pids"))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|pid| read_process(&roots, pid).ok().flatten())
        .filter(|p| !p.is_zombie() && p.cmdline.display() == "sleep 1000")
        .map(|p| p.pid)
        .collect()
}

/// The state of the process `r` while it is that process and alive.
fn state(r: &ProcRef) -> Option<char> {
    match read_process(&Roots::default(), r.pid) {
        Ok(Some(p)) if p.start_time == r.start_time && !p.is_zombie() => Some(p.state.letter()),
        _ => None,
    }
}

#[test]
fn a_process_moved_out_of_the_container_is_never_signalled() {
    if !require_docker() {
        return;
    }
    // Four copies of `sleep 1000` that ignore SIGTERM (only SIGKILL ends them).
    let c = TestContainer::run(
        &[],
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 4 ]; do sh -c \"trap '' TERM; exec sleep 1000\" & \
             i=$((i+1)); done; wait",
        ],
    );
    poll_until(WAIT, STEP, || (sleeps(&c).len() == 4).then_some(())).expect("four copies started");
    let pol = KillPolicy {
        keep: 1,
        sample: Duration::from_millis(500),
        grace: Duration::from_secs(6),
        protected: Vec::new(),
    };
    let mut collector = Collector::new(Roots::default());
    let plan = plan(&mut collector, &c.id, &pol)
        .expect("planning")
        .expect("the container is discovered");
    assert_eq!(plan.victims.len(), 3, "{plan:#?}");
    let victim = |i: usize| plan.victims[i].root.clone();
    let (first, second, third) = (victim(0), victim(1), victim(2));
    let elsewhere = TestCgroup::new(&["pids"], "moved");

    // The journal hears of each copy just before it is frozen: when the
    // second copy is announced, the first is already frozen; it is moved
    // out then, before any SIGTERM.
    let moved_first = std::sync::atomic::AtomicBool::new(false);
    let journal = |procs: &[ProcRef]| -> Result<(), JournalError> {
        if procs.iter().any(|p| p.pid == second.pid) {
            // SIGSTOP takes effect when the copy is next scheduled: a
            // copy that was running shows `R` for a moment.
            let frozen = poll_until(Duration::from_secs(2), STEP, || {
                (state(&first) == Some('T')).then_some(())
            });
            assert!(
                frozen.is_some(),
                "the first copy is frozen: {:?}",
                state(&first)
            );
            elsewhere.add_pid(first.pid as u32);
            moved_first.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    };
    let abort = std::sync::atomic::AtomicBool::new(false);
    let started = Instant::now();
    let report = std::thread::scope(|s| {
        // The second copy is moved out during the grace period, after its
        // SIGTERM (which it ignores) and before its SIGKILL.
        let mover = s.spawn(|| {
            std::thread::sleep(Duration::from_secs(2));
            assert_eq!(state(&second), Some('S'), "running its grace period");
            elsewhere.add_pid(second.pid as u32);
        });
        let control = ExecControl {
            abort: &abort,
            journal: &journal,
        };
        let r = execute(&Roots::default(), &plan, &pol, &control);
        mover.join().unwrap();
        r
    });
    assert!(moved_first.load(std::sync::atomic::Ordering::SeqCst));
    assert!(started.elapsed() >= pol.grace, "the grace period ran");

    let signals = |r: &ProcRef| -> Vec<String> {
        report
            .signalled
            .iter()
            .filter(|s| s.process.pid == r.pid)
            .map(|s| s.signal.to_string())
            .collect()
    };
    let refusal = |r: &ProcRef| -> String {
        report
            .refused
            .iter()
            .find(|(p, _)| p.pid == r.pid)
            .map(|(_, why)| why.clone())
            .unwrap_or_default()
    };
    assert_eq!(signals(&first), Vec::<String>::new(), "{report:#?}");
    assert!(refusal(&first).contains("at SIGTERM"), "{report:#?}");
    assert!(refusal(&first).contains("not inside"), "{report:#?}");
    assert_eq!(signals(&second), vec!["SIGTERM"], "{report:#?}");
    assert!(refusal(&second).contains("at SIGKILL"), "{report:#?}");
    assert_eq!(signals(&third), vec!["SIGTERM", "SIGKILL"], "{report:#?}");
    assert!(report.survivors.is_empty(), "{report:#?}");

    // Both moved processes live on, continued; the third is gone.
    for moved in [&first, &second] {
        let st = state(moved).unwrap_or_else(|| panic!("{moved:?} was killed"));
        assert!(!matches!(st, 'T' | 't'), "{moved:?} left stopped");
        assert!(elsewhere.procs("pids").contains(&(moved.pid as u32)));
    }
    poll_until(WAIT, STEP, || state(&third).is_none().then_some(()))
        .expect("the third victim died");
    // The kept copy is untouched.
    assert_eq!(state(&plan.kept[0].root), Some('S'));
    drop(c);
    drop(elsewhere);
}
