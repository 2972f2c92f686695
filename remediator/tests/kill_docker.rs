//! The kill-duplicates engine against real Docker containers: who dies, who
//! survives, and that nothing outside the target container or behind a
//! recycled pid is ever signalled.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pidwarden_remediator::kill::{
    execute, pin_child, plan, resume_stopped, CopyPlan, Descendant, ExecControl, JournalError,
    KillPlan, KillPolicy, KillReport, ProcRef, Signal,
};
use pidwarden_shared::cgroup::read_procs_recursive;
use pidwarden_shared::collect::Collector;
use pidwarden_shared::procfs::{
    parse_nspid, read_children, read_process, Cmdline, ProcState, Process,
};
use pidwarden_shared::signal::PinnedProcess;
use pidwarden_shared::Roots;
use pidwarden_tests::{poll_until, require_docker, ChildGuard, TestContainer};

/// How long a container gets to reach an expected state, and how often it is looked at.
const WAIT: Duration = Duration::from_secs(20);
const STEP: Duration = Duration::from_millis(100);

fn policy(keep: usize) -> KillPolicy {
    KillPolicy {
        keep,
        sample: Duration::from_secs(1),
        grace: Duration::from_secs(5),
        protected: Vec::new(),
    }
}

/// The container's live processes (zombies excluded), sorted by pid.
fn procs(c: &TestContainer) -> Vec<Process> {
    let pids = read_procs_recursive(&c.cgroup_dir("pids")).expect("reading cgroup.procs");
    let roots = Roots::default();
    let mut v: Vec<Process> = pids
        .into_iter()
        .filter_map(|pid| read_process(&roots, pid).ok().flatten())
        .filter(|p| !p.is_zombie())
        .collect();
    v.sort_by_key(|p| p.pid);
    v
}

/// Identities (pid, start time) of the container's live processes.
fn identities(c: &TestContainer) -> BTreeSet<(i32, u64)> {
    procs(c).iter().map(|p| (p.pid, p.start_time)).collect()
}

/// How many of `procs` run exactly the command line `cmd`.
fn count(procs: &[Process], cmd: &str) -> usize {
    procs.iter().filter(|p| p.cmdline.display() == cmd).count()
}

/// The container's init (PID 1 in its namespace) among `procs`.
fn init_of(procs: &[Process]) -> Process {
    procs
        .iter()
        .find(|p| nspid(p.pid) == Some(1))
        .expect("the container's init is among its processes")
        .clone()
}

/// Waits until the container runs exactly `n` processes and `ok` holds for them.
fn wait_procs(c: &TestContainer, n: usize, ok: impl Fn(&[Process]) -> bool) -> Vec<Process> {
    poll_until(WAIT, STEP, || {
        let p = procs(c);
        (p.len() == n && ok(&p)).then_some(p)
    })
    .unwrap_or_else(|| panic!("container never reached {n} processes: {:#?}", procs(c)))
}

/// True while `(pid, start_time)` is a live (not zombie) process.
fn alive(r: &ProcRef) -> bool {
    matches!(read_process(&Roots::default(), r.pid), Ok(Some(p)) if p.start_time == r.start_time && !p.is_zombie())
}

fn nspid(pid: i32) -> Option<i32> {
    parse_nspid(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// A container whose init writes `script` to `/work.sh` and runs `n` copies
/// of `sh /work.sh` in the background (identical command lines).
fn script_copies(script: &str, n: usize) -> TestContainer {
    let env = format!("WORK={script}");
    let list: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let init = format!(
        "echo \"$WORK\" > /work.sh; for i in {}; do sh /work.sh & done; wait",
        list.join(" ")
    );
    TestContainer::run(&["-e", &env], &["sh", "-c", &init])
}

/// A container whose init runs three copies of `sh -c <copy>`; returns
/// once all three are running.
fn three_copies(copy: &str) -> TestContainer {
    let env = format!("COPY={copy}");
    let c = TestContainer::run(
        &["-e", &env],
        &[
            "sh",
            "-c",
            "for i in 1 2 3; do sh -c \"$COPY\" & done; wait",
        ],
    );
    let copy_cmd = format!("sh -c {copy}");
    poll_until(WAIT, STEP, || {
        (count(&procs(&c), &copy_cmd) == 3).then_some(())
    })
    .expect("three copies started");
    c
}

fn make_plan(c: &TestContainer, pol: &KillPolicy) -> KillPlan {
    let mut collector = Collector::new(Roots::default());
    plan(&mut collector, &c.id, pol)
        .expect("planning")
        .expect("the container is discovered")
}

/// Runs the plan and returns the report and how long it took.
fn run(plan: &KillPlan, pol: &KillPolicy) -> (KillReport, Duration) {
    let t = Instant::now();
    let report = execute(&Roots::default(), plan, pol, &ExecControl::unattended());
    (report, t.elapsed())
}

fn signalled_pids(r: &KillReport) -> BTreeSet<i32> {
    r.signalled.iter().map(|s| s.process.pid).collect()
}

fn all_members(copies: &[CopyPlan]) -> Vec<ProcRef> {
    copies.iter().flat_map(|c| c.members.clone()).collect()
}

/// The (namespace) pid a copy wrote to `path` inside the container.
fn pid_written(c: &TestContainer, path: &str) -> i32 {
    poll_until(WAIT, STEP, || {
        let out = c.exec(&["cat", path]);
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    })
    .unwrap_or_else(|| panic!("no pid in {path}"))
}

#[test]
fn idle_duplicates_die_and_the_busy_copy_survives() {
    if !require_docker() {
        return;
    }
    // Five copies of one command line; the first to create /busy spins,
    // the others sleep.
    let c = script_copies(
        "if busybox mkdir /busy 2>/dev/null; then echo $$ > /busy/pid; \
         while :; do :; done; else while :; do sleep 1000; done; fi",
        5,
    );
    // init + 5 copies + 4 sleeps
    let init = init_of(&wait_procs(&c, 10, |_| true));
    let busy_ns = pid_written(&c, "/busy/pid");

    let pol = policy(1);
    let plan = make_plan(&c, &pol);
    assert_eq!(plan.victims.len(), 4, "{plan:#?}");
    assert_eq!(plan.kept.len(), 1, "{plan:#?}");
    assert_eq!(plan.protected_skipped, 0);
    let kept = &plan.kept[0];
    assert_eq!(
        nspid(kept.root.pid),
        Some(busy_ns),
        "the busy copy is kept: {plan:#?}"
    );
    assert!(plan
        .victims
        .iter()
        .all(|v| v.members.len() == 2 && v.cpu_ticks < kept.cpu_ticks));
    assert!(all_members(&plan.victims).iter().all(|m| m.pid != init.pid));

    let (report, took) = run(&plan, &pol);
    eprintln!(
        "idle duplicates: execute took {took:?}, {} signals",
        report.signalled.len()
    );
    assert!(report.refused.is_empty(), "{report:#?}");
    assert!(report.survivors.is_empty(), "{report:#?}");
    for m in all_members(&plan.victims) {
        assert!(!alive(&m), "victim {m:?} still alive");
    }
    let after = wait_procs(&c, 2, |_| true);
    let left: BTreeSet<i32> = after.iter().map(|p| p.pid).collect();
    assert_eq!(left, BTreeSet::from([init.pid, kept.root.pid]));
    assert!(alive(&kept.root));
    let init_after = read_process(&Roots::default(), init.pid).unwrap().unwrap();
    assert_eq!(init_after.start_time, init.start_time, "init untouched");
    assert!(c.is_running());
}

#[test]
fn a_three_level_copy_leaves_no_orphan() {
    if !require_docker() {
        return;
    }
    // Each copy: sh -c (waits for /go, spawning `sleep 1` children while
    // it waits) → then a background `sleep 1000` and sh -c → sleep 1000.
    let c = three_copies(
        "while [ ! -e /go ]; do sleep 1; done; sleep 1000 & \
         sh -c \"sleep 1000; echo x\"; echo y",
    );
    let pol = policy(1);
    // Plan while the copies are still one or two levels deep…
    let plan = make_plan(&c, &pol);
    assert_eq!(plan.victims.len(), 2, "{plan:#?}");
    assert_eq!(plan.kept.len(), 1);
    // …then let them grow to three levels and a background child.
    assert!(c.exec(&["sh", "-c", ": > /go"]).status.success());
    let init = init_of(&wait_procs(&c, 1 + 3 * 4, |p| count(p, "sleep 1000") == 6));
    let roots = Roots::default();
    let kept_root = plan.kept[0].root.clone();

    let (report, took) = run(&plan, &pol);
    eprintln!(
        "three-level copies: execute took {took:?}, {} signals, refused {:?}",
        report.signalled.len(),
        report.refused
    );
    assert!(report.survivors.is_empty(), "{report:#?}");
    // The copies' transient `sleep 1` seen by the plan may have exited since,
    // and its pid been handed to another process: that one is refused.
    assert!(
        report
            .refused
            .iter()
            .all(|(p, why)| p.command == "sleep 1" && why.contains("recycled")),
        "{report:#?}"
    );
    // Every process of the two killed copies got a signal: the roots and
    // the six processes they spawned after the plan.
    assert_eq!(signalled_pids(&report).len(), 2 * 4, "{report:#?}");

    // Left: init and the kept copy's four processes, nothing reparented.
    let after = wait_procs(&c, 1 + 4, |_| true);
    let mut kept_tree = BTreeSet::from([kept_root.pid]);
    loop {
        let more: Vec<i32> = after
            .iter()
            .filter(|p| kept_tree.contains(&p.ppid) && !kept_tree.contains(&p.pid))
            .map(|p| p.pid)
            .collect();
        if more.is_empty() {
            break;
        }
        kept_tree.extend(more);
    }
    let left: BTreeSet<i32> = after
        .iter()
        .map(|p| p.pid)
        .filter(|p| *p != init.pid)
        .collect();
    assert_eq!(left, kept_tree, "only the kept copy remains: {after:#?}");
    let init_children = read_children(&roots, init.pid).unwrap();
    assert_eq!(
        init_children,
        vec![kept_root.pid],
        "nothing reparented to init"
    );
    assert!(alive(&kept_root));
}

/// A host child pinned to a chosen pid: forked until the kernel hands it out.
struct PidHolder(i32);

impl PidHolder {
    /// Forks until a child gets `target` (each other child exits at once).
    fn take(target: i32, timeout: Duration) -> Option<PidHolder> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            // Nudge the allocator to the target when allowed (root); it is
            // only a hint: other processes may take pids meanwhile.
            let _ = std::fs::write("/proc/sys/kernel/ns_last_pid", (target - 1).to_string());
            // SAFETY: the child only calls async-signal-safe functions
            // (getpid, pause, _exit) before it exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                unsafe {
                    if libc::getpid() == target {
                        loop {
                            libc::pause();
                        }
                    }
                    libc::_exit(0);
                }
            }
            assert!(pid > 0, "fork failed: {}", std::io::Error::last_os_error());
            if pid == target {
                return Some(PidHolder(pid));
            }
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
        None
    }
}

impl Drop for PidHolder {
    fn drop(&mut self) {
        // SAFETY: our own unreaped child: the pid cannot have been recycled.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

#[test]
fn a_victim_whose_pid_was_recycled_is_not_signalled() {
    if !require_docker() {
        return;
    }
    let c = TestContainer::run(
        &[],
        &["sh", "-c", "for i in 1 2 3; do sleep 1000 & done; wait"],
    );
    wait_procs(&c, 4, |p| count(p, "sleep 1000") == 3);
    let pol = policy(1);
    let plan = make_plan(&c, &pol);
    assert_eq!(plan.victims.len(), 2, "{plan:#?}");
    let gone = plan.victims[0].root.clone();
    let roots = Roots::default();

    // Kill that victim ourselves and wait until init has reaped it.
    let pin = PinnedProcess::pin(&roots, gone.pid, gone.start_time)
        .unwrap()
        .expect("victim alive");
    assert!(pin.signal(libc::SIGKILL).unwrap());
    drop(pin);
    poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        read_process(&roots, gone.pid)
            .unwrap()
            .is_none()
            .then_some(())
    })
    .expect("the killed victim was reaped");
    let holder = PidHolder::take(gone.pid, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("pid {} was not handed out again within 30 s", gone.pid));
    let new = read_process(&roots, holder.0)
        .unwrap()
        .expect("holder alive");
    assert_ne!(new.start_time, gone.start_time);

    let (report, _) = run(&plan, &pol);
    assert!(!signalled_pids(&report).contains(&gone.pid), "{report:#?}");
    assert!(
        report
            .refused
            .iter()
            .any(|(p, why)| p == &gone && why.contains("recycled"))
            || report.gone_before_signal.contains(&gone),
        "{report:#?}"
    );
    let after = read_process(&roots, holder.0)
        .unwrap()
        .expect("the new holder of the pid lives");
    assert_eq!(after.start_time, new.start_time);
    assert_ne!(
        after.state,
        ProcState::Stopped,
        "the new holder was not even stopped"
    );
    // The other victim died, the kept copy lives.
    assert!(!alive(&plan.victims[1].root), "{report:#?}");
    assert!(alive(&plan.kept[0].root));
    drop(holder);
}

#[test]
fn nothing_outside_the_target_container_is_signalled() {
    if !require_docker() {
        return;
    }
    let cmd = [
        "sh",
        "-c",
        "for i in 1 2 3; do sh -c 'sleep 1000; echo' & done; wait",
    ];
    let target = TestContainer::run(&[], &cmd);
    let other = TestContainer::run(&[], &cmd);
    let three_sleeps = |p: &[Process]| count(p, "sleep 1000") == 3;
    wait_procs(&target, 7, three_sleeps);
    wait_procs(&other, 7, three_sleeps);
    let other_before = identities(&other);

    // A host process with its real identity, and a process of the other
    // container, smuggled into the plan.
    let host = ChildGuard::spawn(std::process::Command::new("sleep").arg("1000"));
    let roots = Roots::default();
    let host_proc = read_process(&roots, host.id() as i32)
        .unwrap()
        .expect("host sleep");
    let host_ref = ProcRef {
        pid: host_proc.pid,
        start_time: host_proc.start_time,
        command: "sleep 1000".into(),
    };
    let stranger = procs(&other)
        .into_iter()
        .find(|p| p.cmdline.display() == "sleep 1000")
        .expect("a sleep in the other container");
    let stranger_ref = ProcRef {
        pid: stranger.pid,
        start_time: stranger.start_time,
        command: "sleep 1000".into(),
    };

    let pol = policy(1);
    let mut plan = make_plan(&target, &pol);
    assert_eq!(plan.victims.len(), 2, "{plan:#?}");
    plan.victims.push(CopyPlan {
        root: host_ref.clone(),
        argv: Cmdline::from_args(["sleep", "1000"]),
        members: vec![host_ref.clone()],
        cpu_ticks: 0,
        rss_bytes: 0,
    });
    plan.victims[0].members.push(stranger_ref.clone());

    let (report, took) = run(&plan, &pol);
    eprintln!("two containers: execute took {took:?}");
    let refused: Vec<&ProcRef> = report.refused.iter().map(|(p, _)| p).collect();
    assert!(refused.contains(&&host_ref), "{report:#?}");
    assert!(refused.contains(&&stranger_ref), "{report:#?}");
    assert!(!signalled_pids(&report).contains(&host_ref.pid));
    assert!(!signalled_pids(&report).contains(&stranger_ref.pid));
    assert!(report.survivors.is_empty(), "{report:#?}");

    let host_now = read_process(&roots, host_ref.pid)
        .unwrap()
        .expect("host process lives");
    assert_eq!(host_now.start_time, host_ref.start_time);
    assert_ne!(host_now.state, ProcState::Stopped);
    assert_eq!(
        identities(&other),
        other_before,
        "the other container is intact"
    );
    assert!(procs(&other).iter().all(|p| p.state != ProcState::Stopped));
    // The target lost its two idle duplicates (and their sleeps).
    wait_procs(&target, 3, |_| true);
    drop(host);
}

#[test]
fn protected_copies_are_never_victims_and_keep_two_keeps_two() {
    if !require_docker() {
        return;
    }
    // Four identical copies; the first to create /p runs `sleep 1001`,
    // which the policy protects, the others `sleep 1000`.
    let c = script_copies(
        "if busybox mkdir /p 2>/dev/null; then sleep 1001; else sleep 1000; fi; echo",
        4,
    );
    wait_procs(&c, 9, |p| count(p, "sleep 1001") == 1);
    let mut pol = policy(2);
    pol.protected = vec![regex::Regex::new(r"^sleep 1001$").unwrap()];
    let plan = make_plan(&c, &pol);
    assert_eq!(plan.protected_skipped, 1, "{plan:#?}");
    assert_eq!(plan.kept.len(), 2, "{plan:#?}");
    assert_eq!(plan.victims.len(), 1, "{plan:#?}");
    let is_protected_copy = |cp: &CopyPlan| cp.members.iter().any(|m| m.command == "sleep 1001");
    assert!(!plan.victims.iter().any(is_protected_copy));
    assert!(!plan.kept.iter().any(is_protected_copy));

    let (report, _) = run(&plan, &pol);
    assert!(
        report.refused.is_empty() && report.survivors.is_empty(),
        "{report:#?}"
    );
    // init + protected copy (2) + two kept copies (4)
    let after = wait_procs(&c, 7, |_| true);
    assert_eq!(count(&after, "sleep 1001"), 1);
    for k in all_members(&plan.kept) {
        assert!(alive(&k), "kept {k:?} died");
    }

    // With keep=1 the protected copy still survives: one more victim.
    let mut pol1 = pol.clone();
    pol1.keep = 1;
    let plan = make_plan(&c, &pol1);
    assert_eq!(
        (plan.victims.len(), plan.kept.len(), plan.protected_skipped),
        (1, 1, 1),
        "{plan:#?}"
    );
    run(&plan, &pol1);
    let after = wait_procs(&c, 5, |_| true);
    assert_eq!(count(&after, "sleep 1001"), 1);
}

#[test]
fn copies_that_ignore_sigterm_are_killed_after_the_grace_with_what_they_spawned() {
    if !require_docker() {
        return;
    }
    // On SIGTERM each copy forks a `sleep 1000` and carries on: the second
    // freeze must find that child and SIGKILL it with its parent.
    let c = three_copies("trap \"sleep 1000 &\" TERM; while :; do sleep 1; done");
    let mut pol = policy(1);
    pol.grace = Duration::from_millis(1500);
    let plan = make_plan(&c, &pol);
    assert_eq!(plan.victims.len(), 2, "{plan:#?}");
    let kept_root = plan.kept[0].root.clone();

    let (report, took) = run(&plan, &pol);
    eprintln!(
        "SIGTERM ignored: execute took {took:?} (grace {:?})",
        pol.grace
    );
    assert!(took >= pol.grace, "the grace period was honoured");
    assert!(report.survivors.is_empty(), "{report:#?}");
    for v in &plan.victims {
        let signals: Vec<&str> = report
            .signalled
            .iter()
            .filter(|s| s.process.pid == v.root.pid)
            .map(|s| s.signal.as_str())
            .collect();
        assert_eq!(signals, ["SIGTERM", "SIGKILL"], "{report:#?}");
        assert!(!alive(&v.root));
    }
    let spawned_on_term: Vec<&ProcRef> = report
        .signalled
        .iter()
        .filter(|s| s.signal == Signal::Kill && s.process.command == "sleep 1000")
        .map(|s| &s.process)
        .collect();
    assert_eq!(spawned_on_term.len(), 2, "{report:#?}");
    // Only init and the kept copy (its root and at most its `sleep 1`) remain.
    let after = poll_until(WAIT, STEP, || {
        let p = procs(&c);
        p.iter()
            .all(|p| nspid(p.pid) == Some(1) || p.pid == kept_root.pid || p.ppid == kept_root.pid)
            .then_some(p)
    })
    .unwrap_or_else(|| panic!("leftovers: {:#?}", procs(&c)));
    assert_eq!(count(&after, "sleep 1000"), 0, "{after:#?}");
    assert!(alive(&kept_root));
}

#[test]
fn a_copy_that_spawned_a_protected_process_since_the_plan_is_left_alone() {
    if !require_docker() {
        return;
    }
    // The copies start a protected `sleep 1001` only once /go exists, i.e.
    // after the plan was made.
    let c = three_copies("while [ ! -e /go ]; do sleep 1; done; sleep 1001; echo");
    let mut pol = policy(1);
    pol.protected = vec![regex::Regex::new(r"^sleep 1001$").unwrap()];
    let plan = make_plan(&c, &pol);
    assert_eq!(
        (plan.victims.len(), plan.protected_skipped),
        (2, 0),
        "{plan:#?}"
    );

    assert!(c.exec(&["sh", "-c", ": > /go"]).status.success());
    let before = wait_procs(&c, 7, |p| count(p, "sleep 1001") == 3);
    let (report, _) = run(&plan, &pol);
    assert!(report.signalled.is_empty(), "{report:#?}");
    for v in &plan.victims {
        assert!(
            report
                .refused
                .iter()
                .any(|(p, why)| p.pid == v.root.pid && why.contains("protected")),
            "{report:#?}"
        );
    }
    let after = procs(&c);
    let ids = |p: &[Process]| -> BTreeSet<(i32, u64)> {
        p.iter().map(|p| (p.pid, p.start_time)).collect()
    };
    assert_eq!(ids(&after), ids(&before));
    assert!(
        after.iter().all(|p| p.state != ProcState::Stopped),
        "nothing left stopped: {after:#?}"
    );
}

/// The state letter of a live `(pid, start time)`; `None` once it is gone.
fn state_of(r: &ProcRef) -> Option<char> {
    match read_process(&Roots::default(), r.pid) {
        Ok(Some(p)) if p.start_time == r.start_time => Some(p.state.letter()),
        _ => None,
    }
}

/// Waits (up to 5 s) until no process of the container is stopped.
fn assert_none_stopped(c: &TestContainer) {
    let settled = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        procs(c)
            .iter()
            .all(|p| p.state != ProcState::Stopped)
            .then_some(())
    });
    assert!(settled.is_some(), "left stopped: {:#?}", procs(c));
}

/// Watches the container's processes every millisecond while `f` runs and
/// returns `f`'s result with every identity seen stopped (state `T`) that
/// `journaled` did not hold at that moment.
fn watch_stops<T>(
    c: &TestContainer,
    journaled: &Mutex<Vec<ProcRef>>,
    f: impl FnOnce() -> T,
) -> (T, Vec<Process>) {
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut unjournaled = Vec::new();
            while !done.load(Ordering::SeqCst) {
                for p in procs(c)
                    .into_iter()
                    .filter(|p| p.state == ProcState::Stopped)
                {
                    let known = journaled
                        .lock()
                        .unwrap()
                        .iter()
                        .any(|j| (j.pid, j.start_time) == (p.pid, p.start_time));
                    if !known {
                        unjournaled.push(p);
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            unjournaled
        });
        let out = f();
        done.store(true, Ordering::SeqCst);
        (out, watcher.join().unwrap())
    })
}

#[test]
fn an_interrupted_run_journals_first_and_leaves_nothing_stopped_or_killed() {
    if !require_docker() {
        return;
    }
    let c = three_copies("sleep 1000; echo");
    wait_procs(&c, 7, |p| count(p, "sleep 1000") == 3);
    let before = identities(&c);
    let pol = policy(1);
    let plan = make_plan(&c, &pol);
    assert_eq!(plan.victims.len(), 2, "{plan:#?}");
    let first = plan.victims[0].clone();

    // The journal records every call; on the call after the first copy was
    // taken, it checks that copy is frozen and sets the abort flag.
    let abort = AtomicBool::new(false);
    let journaled: Mutex<Vec<ProcRef>> = Mutex::new(Vec::new());
    let calls: Mutex<Vec<Vec<ProcRef>>> = Mutex::new(Vec::new());
    let first_frozen: Mutex<Option<Vec<Option<char>>>> = Mutex::new(None);
    let aborted_at: Mutex<Option<Instant>> = Mutex::new(None);
    let journal = |procs: &[ProcRef]| -> Result<(), JournalError> {
        journaled.lock().unwrap().extend_from_slice(procs);
        let mut calls = calls.lock().unwrap();
        calls.push(procs.to_vec());
        if calls.len() == 2 {
            // SIGSTOP takes effect when the target is next scheduled: give a
            // loaded machine a moment before reading the states.
            let states = poll_until(Duration::from_secs(1), Duration::from_millis(5), || {
                let s: Vec<Option<char>> = first.members.iter().map(state_of).collect();
                s.iter().all(|c| *c == Some('T')).then_some(s)
            })
            .unwrap_or_else(|| first.members.iter().map(state_of).collect());
            *first_frozen.lock().unwrap() = Some(states);
            *aborted_at.lock().unwrap() = Some(Instant::now());
            abort.store(true, Ordering::SeqCst);
        }
        Ok(())
    };
    let control = ExecControl {
        abort: &abort,
        journal: &journal,
    };
    let (report, unjournaled) = watch_stops(&c, &journaled, || {
        execute(&Roots::default(), &plan, &pol, &control)
    });
    let after_abort = aborted_at.lock().unwrap().expect("abort set").elapsed();
    eprintln!("interrupted run: returned {after_abort:?} after the abort flag was set");

    assert!(report.interrupted, "{report:#?}");
    assert!(report.signalled.is_empty(), "{report:#?}");
    assert!(
        unjournaled.is_empty(),
        "stopped before journaled: {unjournaled:#?}"
    );
    let calls = calls.lock().unwrap().clone();
    assert!(calls.len() >= 2, "{calls:#?}");
    assert_eq!(calls[0], first.members, "the first copy journaled first");
    assert_eq!(
        first_frozen.lock().unwrap().clone().unwrap(),
        vec![Some('T'); first.members.len()],
        "the first copy was frozen when the flag was set"
    );
    assert!(
        after_abort < Duration::from_secs(1),
        "took {after_abort:?} to stop"
    );
    // Nothing stays stopped, nothing died.
    assert_none_stopped(&c);
    assert_eq!(identities(&c), before, "nothing was killed");
}

#[test]
fn an_abort_during_the_grace_period_continues_the_copies_at_once() {
    if !require_docker() {
        return;
    }
    // Copies that ignore SIGTERM: the run would wait the whole grace.
    let c = three_copies("trap '' TERM; while :; do sleep 1; done");
    let mut pol = policy(1);
    pol.grace = Duration::from_secs(20);
    let plan = make_plan(&c, &pol);
    assert_eq!(plan.victims.len(), 2, "{plan:#?}");
    let abort = AtomicBool::new(false);
    let journal = |_: &[ProcRef]| -> Result<(), JournalError> { Ok(()) };
    let control = ExecControl {
        abort: &abort,
        journal: &journal,
    };
    let (report, after_abort) = std::thread::scope(|s| {
        let setter = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(800));
            abort.store(true, Ordering::SeqCst);
            Instant::now()
        });
        let report = execute(&Roots::default(), &plan, &pol, &control);
        let returned = Instant::now();
        (report, returned - setter.join().unwrap())
    });
    eprintln!("abort in the grace period: returned {after_abort:?} after the flag was set");
    assert!(report.interrupted, "{report:#?}");
    let sigkills = report.signalled.iter().filter(|s| s.signal == Signal::Kill);
    assert_eq!(sigkills.count(), 0, "{report:#?}");
    assert!(
        report.signalled.iter().any(|s| s.signal == Signal::Term),
        "the flag came during the grace: {report:#?}"
    );
    assert!(
        after_abort < Duration::from_secs(2),
        "the 20 s grace was not waited out: {after_abort:?}"
    );
    for v in &plan.victims {
        assert!(alive(&v.root), "{v:?} died");
    }
    assert_none_stopped(&c);
}

#[test]
fn a_failing_journal_stops_nothing() {
    if !require_docker() {
        return;
    }
    let c = three_copies("sleep 1000; echo");
    wait_procs(&c, 7, |p| count(p, "sleep 1000") == 3);
    let before = identities(&c);
    let pol = policy(1);
    let plan = make_plan(&c, &pol);
    let abort = AtomicBool::new(false);
    let journal =
        |_: &[ProcRef]| -> Result<(), JournalError> { Err(JournalError::new("disk full")) };
    let control = ExecControl {
        abort: &abort,
        journal: &journal,
    };
    let none: Mutex<Vec<ProcRef>> = Mutex::new(Vec::new());
    let (report, stopped) = watch_stops(&c, &none, || {
        execute(&Roots::default(), &plan, &pol, &control)
    });
    assert!(stopped.is_empty(), "stopped: {stopped:#?}");
    assert!(report.signalled.is_empty(), "{report:#?}");
    assert!(!report.interrupted);
    for m in all_members(&plan.victims) {
        assert!(
            report
                .refused
                .iter()
                .any(|(p, why)| p == &m && why == "journal failed: disk full"),
            "{m:?} not refused: {report:#?}"
        );
    }
    assert_eq!(identities(&c), before);
}

#[test]
fn resume_stopped_continues_the_same_stopped_process_only() {
    if !require_docker() {
        return;
    }
    let c = TestContainer::run(
        &[],
        &["sh", "-c", "for i in 1 2 3; do sleep 1000 & done; wait"],
    );
    let sleeps: Vec<ProcRef> = wait_procs(&c, 4, |p| count(p, "sleep 1000") == 3)
        .iter()
        .filter(|p| p.cmdline.display() == "sleep 1000")
        .map(|p| ProcRef {
            pid: p.pid,
            start_time: p.start_time,
            command: "sleep 1000".into(),
        })
        .collect();
    let roots = Roots::default();
    let pins: Vec<PinnedProcess> = sleeps[..2]
        .iter()
        .map(|s| {
            PinnedProcess::pin(&roots, s.pid, s.start_time)
                .unwrap()
                .expect("sleep alive")
        })
        .collect();
    for p in &pins {
        assert!(p.signal(libc::SIGSTOP).unwrap());
    }
    poll_until(WAIT, Duration::from_millis(10), || {
        sleeps[..2]
            .iter()
            .all(|s| state_of(s) == Some('T'))
            .then_some(())
    })
    .expect("both sleeps stopped");

    let wrong = ProcRef {
        start_time: sleeps[1].start_time + 1,
        ..sleeps[1].clone()
    };
    // The first: stopped and itself. The second: named with another start
    // time. The third: running.
    let resumed = resume_stopped(&roots, &[sleeps[0].clone(), wrong, sleeps[2].clone()]);
    assert_eq!(resumed, vec![sleeps[0].clone()]);
    poll_until(WAIT, Duration::from_millis(10), || {
        (state_of(&sleeps[0]) == Some('S')).then_some(())
    })
    .expect("the first sleep runs again");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        state_of(&sleeps[1]),
        Some('T'),
        "the mismatch stays stopped"
    );
    assert_eq!(state_of(&sleeps[2]), Some('S'));
    // Named correctly, it is continued too.
    assert_eq!(
        resume_stopped(&roots, &sleeps[1..2]),
        vec![sleeps[1].clone()]
    );
}

/// The reason `pin_child` refused, or a panic naming what it did instead.
fn refusal(d: Descendant, pid: i32) -> String {
    match d {
        Descendant::Refused { process, reason } => {
            assert_eq!(process.pid, pid);
            reason
        }
        other => panic!("{pid} was not refused: {other:?}"),
    }
}

#[test]
fn a_descendant_is_taken_only_as_the_child_of_its_pinned_parent() {
    if !require_docker() {
        return;
    }
    let c = three_copies("sleep 1000; echo");
    let all = wait_procs(&c, 7, |p| count(p, "sleep 1000") == 3);
    let init = init_of(&all);
    let plan = make_plan(&c, &policy(1));
    let (victim, kept) = (&plan.victims[0], &plan.kept[0]);
    assert_eq!(
        (victim.members.len(), kept.members.len()),
        (2, 2),
        "{plan:#?}"
    );
    let roots = Roots::default();
    let parent = PinnedProcess::pin(&roots, victim.root.pid, victim.root.start_time)
        .unwrap()
        .expect("victim alive");
    let host = ChildGuard::spawn(std::process::Command::new("sleep").arg("1000"));

    // Offered as the victim's children: the kept copy's sleep and root (a
    // pid recycled into the kept copy looks just like this), the
    // container's init and a host process. None is taken.
    let kept_child = &kept.members[1];
    let why = refusal(
        pin_child(&roots, &plan.scope, &parent, kept_child.pid),
        kept_child.pid,
    );
    assert!(why.contains("not a child"), "{why}");
    let why = refusal(
        pin_child(&roots, &plan.scope, &parent, kept.root.pid),
        kept.root.pid,
    );
    assert!(why.contains("not a child"), "{why}");
    let why = refusal(pin_child(&roots, &plan.scope, &parent, init.pid), init.pid);
    assert!(why.contains("init"), "{why}");
    let host_pid = host.id() as i32;
    let why = refusal(pin_child(&roots, &plan.scope, &parent, host_pid), host_pid);
    assert!(why.contains("not inside"), "{why}");

    // Its own child is taken, pinned, and not stopped by being taken.
    let own = &victim.members[1];
    match pin_child(&roots, &plan.scope, &parent, own.pid) {
        Descendant::Child { pin, process } => {
            assert_eq!((pin.pid, pin.start_time), (own.pid, own.start_time));
            assert_eq!(process.ppid, victim.root.pid);
        }
        other => panic!("own child not taken: {other:?}"),
    }
    for p in [kept_child, &kept.root, own] {
        assert_eq!(state_of(p), Some('S'), "{p:?} was touched");
    }
    assert_ne!(
        read_process(&roots, host_pid).unwrap().unwrap().state,
        ProcState::Stopped
    );

    // Once the parent is gone, its former child is no longer taken for it.
    assert!(parent.signal(libc::SIGKILL).unwrap());
    poll_until(WAIT, Duration::from_millis(10), || {
        parent.exited().then_some(())
    })
    .expect("the victim exited");
    let why = refusal(pin_child(&roots, &plan.scope, &parent, own.pid), own.pid);
    assert!(
        why.contains("not a child") || why.contains("exited"),
        "{why}"
    );
    assert_eq!(state_of(own), Some('S'));
    drop(host);
}

/// The arguments of a live process, as the kernel keeps them.
fn argv_of(pid: i32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    Cmdline::from_raw(&raw).args().map(str::to_string).collect()
}

#[test]
fn copies_are_grouped_by_their_arguments_not_their_joined_text() {
    if !require_docker() {
        return;
    }
    // Three copies of `sh /w.sh "a b"` and three of `sh /w.sh a b`, each
    // waiting on its `sleep`: two groups of three, one copy of each kept.
    let c = TestContainer::run_lookalike_copies();
    wait_procs(&c, 13, |p| count(p, "sleep 1000") == 6);
    let pol = policy(1);
    let plan = make_plan(&c, &pol);
    assert_eq!((plan.victims.len(), plan.kept.len()), (4, 2), "{plan:#?}");
    let quoted = ["sh", "/w.sh", "a b"];
    let split = ["sh", "/w.sh", "a", "b"];
    let of_kind = |copies: &[CopyPlan], kind: &[&str]| {
        copies
            .iter()
            .filter(|cp| argv_of(cp.root.pid) == kind && cp.argv.args().eq(kind.iter().copied()))
            .count()
    };
    assert_eq!(of_kind(&plan.kept, &quoted), 1, "{plan:#?}");
    assert_eq!(of_kind(&plan.kept, &split), 1, "{plan:#?}");
    assert_eq!(of_kind(&plan.victims, &quoted), 2, "{plan:#?}");
    assert_eq!(of_kind(&plan.victims, &split), 2, "{plan:#?}");

    let (report, _) = run(&plan, &pol);
    assert!(report.refused.is_empty(), "{report:#?}");
    assert!(report.survivors.is_empty(), "{report:#?}");
    let after = wait_procs(&c, 5, |_| true);
    let mut kinds: Vec<Vec<String>> = after
        .iter()
        .filter(|p| p.cmdline.display() == "sh /w.sh a b")
        .map(|p| argv_of(p.pid))
        .collect();
    kinds.sort();
    assert_eq!(kinds, [split.to_vec(), quoted.to_vec()]);
}

#[test]
fn a_root_whose_arguments_changed_but_read_the_same_is_left_alone() {
    if !require_docker() {
        return;
    }
    // Copies of `sh /w.sh a b` that, once /go exists, exec `sh /w.sh "a b"`:
    // the same text, other arguments. The plan is made before.
    let script = "if [ $# = 2 ]; then while [ ! -e /go ]; do sleep 1; done; \
                  exec sh /w.sh \"$1 $2\"; fi; sleep 1000";
    let env = format!("W={script}");
    let c = TestContainer::run(
        &["-e", &env],
        &[
            "sh",
            "-c",
            "echo \"$W\" > /w.sh; for i in 1 2 3; do sh /w.sh a b & done; wait",
        ],
    );
    let split = ["sh", "/w.sh", "a", "b"];
    poll_until(WAIT, STEP, || {
        let roots: Vec<Process> = procs(&c)
            .into_iter()
            .filter(|p| argv_of(p.pid) == split)
            .collect();
        (roots.len() == 3).then_some(())
    })
    .expect("three copies started");
    let pol = policy(1);
    let plan = make_plan(&c, &pol);
    assert_eq!(plan.victims.len(), 2, "{plan:#?}");

    assert!(c.exec(&["sh", "-c", ": > /go"]).status.success());
    let before = wait_procs(&c, 7, |p| count(p, "sleep 1000") == 3);
    for v in &plan.victims {
        assert_eq!(argv_of(v.root.pid), ["sh", "/w.sh", "a b"]);
        assert_eq!(
            state_of(&v.root).map(|_| v.root.command.as_str()),
            Some("sh /w.sh a b"),
            "the shown text did not change"
        );
    }
    let (report, _) = run(&plan, &pol);
    assert!(report.signalled.is_empty(), "{report:#?}");
    for v in &plan.victims {
        assert!(
            report
                .refused
                .iter()
                .any(|(p, why)| p == &v.root && why == "command line changed since the plan"),
            "{report:#?}"
        );
    }
    let ids = |p: &[Process]| -> BTreeSet<(i32, u64)> {
        p.iter().map(|p| (p.pid, p.start_time)).collect()
    };
    assert_eq!(ids(&procs(&c)), ids(&before));
    assert_none_stopped(&c);
}

#[test]
fn a_copy_working_through_short_lived_subprocesses_is_the_active_one() {
    if !require_docker() {
        return;
    }
    // Two copies of one command line. The first to create /spawner does no
    // work itself: it keeps running `sh -c <count to 7000>` subprocesses
    // (each lives some 20–50 ms, born and reaped inside the window). The
    // other counts to 3000 itself, then sleeps 0.1 s: a little CPU of its
    // own, far less than the spawner's subprocesses, yet more than the
    // spawner's own.
    let c = script_copies(
        "if busybox mkdir /spawner 2>/dev/null; then echo $$ > /spawner/pid; \
         while :; do sh -c 'i=0; while [ $i -lt 7000 ]; do i=$((i+1)); done'; done; \
         else while :; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; \
         sleep 0.1; done; fi",
        2,
    );
    let spawner_ns = pid_written(&c, "/spawner/pid");
    let mut pol = policy(1);
    pol.sample = Duration::from_secs(2);
    for round in 1..=2 {
        let plan = make_plan(&c, &pol);
        assert_eq!((plan.victims.len(), plan.kept.len()), (1, 1), "{plan:#?}");
        let (kept, victim) = (&plan.kept[0], &plan.victims[0]);
        eprintln!(
            "round {round}: kept copy {} ticks, victim {} ticks in {:?}",
            kept.cpu_ticks, victim.cpu_ticks, pol.sample
        );
        assert_eq!(
            nspid(kept.root.pid),
            Some(spawner_ns),
            "the spawning copy is kept: {plan:#?}"
        );
        assert!(kept.cpu_ticks > victim.cpu_ticks, "{plan:#?}");
    }
}
