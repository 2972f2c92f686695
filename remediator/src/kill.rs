//! The kill-duplicates engine: plans which duplicate copies of one container
//! to kill, then kills them without ever touching anything else.
//!
//! [`plan`] reads the container's processes twice, [`KillPolicy::sample`]
//! apart, groups siblings with identical command lines, argument for
//! argument ([`duplicate_groups`]), measures the CPU each copy's whole
//! subtree used in between (the children its processes reaped in the window
//! included), and keeps the [`KillPolicy::keep`] most active copies per
//! group (ties: the newest survive, the oldest die — see
//! [`pidwarden_shared::victims`]). Copies holding the container's init or a
//! process matching a protected pattern are never victims.
//!
//! [`execute`] trusts nothing in the plan but identities and the
//! container's cgroup as discovery found it ([`KillPlan::scope`]). Every
//! planned process is pinned by a pidfd whose (pid, start time) was
//! verified, then re-checked: its `/proc/<pid>/cgroup` path, in every
//! hierarchy the container was found in, is the container's directory or
//! below it (a sibling that only names the id, such as
//! `libpod-conmon-<id>.scope`, is outside), not the container's init,
//! not a zombie; the copy root still runs exactly the planned arguments. A copy
//! is frozen (SIGSTOP through the pidfds) before its subtree is re-read, so
//! children spawned since the plan are found and none can be forked behind
//! the scan; only descendants of pinned members that are themselves inside
//! the container are added. Then SIGTERM (and SIGCONT, so handlers run),
//! up to [`KillPolicy::grace`] for the copies to exit, a second freeze and
//! rescan of what is left, SIGKILL, and a bounded wait. Every process is
//! checked again (same process, still inside the container) right before
//! its SIGTERM and right before its SIGKILL, so one moved out of the
//! container meanwhile is continued and never signalled. A pid whose start
//! time changed is never signalled; everything refused is reported with the
//! reason.
//!
//! Pidfds are held from pinning to the end of a batch: copies are taken in
//! batches that fit in the run's share of the file descriptor budget
//! ([`BATCH_FDS`], [`FdPool`]), each batch signalled to its end (SIGTERM,
//! grace, SIGKILL) and its pidfds closed before the next is pinned, so a
//! kill of thousands of processes stays below the open file limit.
//!
//! Every process is handed to the journal ([`ExecControl::journal`]) before
//! its first SIGSTOP, and the abort flag ([`ExecControl::abort`]) is checked
//! between every two steps and in every wait: an interrupted run sends no
//! further signal and continues everything it stopped. [`resume_stopped`]
//! continues, after a crash, what a run had journaled and left frozen.
//! A descendant is taken only through [`pin_child`], which proves after
//! pinning it that it is the child of the pinned parent.
//!
//! A copy found to hold a protected process at execute time is resumed and
//! left alone (its members were stopped for the scan, the protected process
//! never). Out of reach: a process a copy forks while handling SIGTERM whose
//! parent then exits before the second freeze — it is reparented to the
//! container's init and can no longer be told apart from the init's own
//! children, so it is not guessed at.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pidwarden_shared::cgroup::is_container_id;
use pidwarden_shared::cgroup::CgroupScope;
use pidwarden_shared::collect::Collector;
use pidwarden_shared::groups::{duplicate_groups, subtree};
use pidwarden_shared::procfs::{
    read_cgroup_membership, read_children, read_ns_pid, read_process, Cmdline, FdPool, Process,
};
use pidwarden_shared::redact::redact_command;
use pidwarden_shared::signal::PinnedProcess;
use pidwarden_shared::victims::{is_protected, select_victims, Candidate, CandidateGroup, Spared};
use pidwarden_shared::Roots;
use serde::{Deserialize, Serialize};

/// Longest command line kept in a [`ProcRef`] (after redaction).
pub const COMMAND_CHARS: usize = 200;

/// How often exits are polled while waiting.
const POLL: Duration = Duration::from_millis(50);

/// How long to wait for SIGKILLed processes to exit before calling them survivors.
pub const KILL_WAIT: Duration = Duration::from_secs(2);

/// Pidfds one run asks of the process's descriptor budget
/// ([`FdPool::claim`]): processes are pinned, signalled and let go in
/// batches of copies that fit in what it gets.
pub const BATCH_FDS: usize = 1024;

/// The smallest batch, in pidfds, when the budget has less to give (other
/// runs or collections hold it): taken from the descriptors kept free for
/// everything else ([`pidwarden_shared::procfs::RESERVED_FDS`]).
pub const MIN_BATCH_FDS: usize = 64;

/// How the engine chooses and kills.
#[derive(Debug, Clone)]
pub struct KillPolicy {
    /// Copies kept per duplicate group (at least one is always kept).
    pub keep: usize,
    /// Length of the CPU sampling window.
    pub sample: Duration,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Patterns matched against full (unredacted) command lines: a copy with
    /// any matching member is never killed.
    pub protected: Vec<regex::Regex>,
}

impl Default for KillPolicy {
    fn default() -> Self {
        KillPolicy {
            keep: 1,
            sample: Duration::from_secs(2),
            grace: Duration::from_secs(5),
            protected: Vec::new(),
        }
    }
}

/// A process identity: pid plus start time, and its redacted command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    /// PID in the namespace of the proc root.
    pub pid: i32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
    /// Command line, redacted, at most [`COMMAND_CHARS`] characters.
    pub command: String,
}

impl ProcRef {
    fn of(p: &Process) -> ProcRef {
        ProcRef {
            pid: p.pid,
            start_time: p.start_time,
            command: redact_command(&p.cmdline, COMMAND_CHARS),
        }
    }
}

/// One copy: a group member and its subtree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyPlan {
    /// The group member.
    pub root: ProcRef,
    /// The root's exact command line (arguments apart, unredacted) when
    /// planned: [`execute`] leaves the copy alone unless the root still runs
    /// exactly this. Never serialised (it may hold secrets); a plan read
    /// back from JSON has none, and its copies are left alone.
    #[serde(skip)]
    pub argv: Cmdline,
    /// The root and all its descendants, root first.
    pub members: Vec<ProcRef>,
    /// CPU ticks the subtree used during the sampling window.
    pub cpu_ticks: u64,
}

/// What [`plan`] decided for one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KillPlan {
    /// Full container id.
    pub container_id: String,
    /// The container's cgroup as discovery found it when planning: the only
    /// place [`execute`] signals in. A plan without one (read back from
    /// older JSON) signals nothing.
    #[serde(default)]
    pub scope: CgroupScope,
    /// Copies to kill, least active first. Empty: nothing to do.
    pub victims: Vec<CopyPlan>,
    /// Copies kept, most active first.
    pub kept: Vec<CopyPlan>,
    /// Copies left alone because a member matched a protected pattern or is
    /// the container's init.
    pub protected_skipped: usize,
}

/// Planning failed.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    /// Reading the container's cgroup or processes failed.
    #[error("reading container {id}: {source}")]
    Collect {
        /// The container.
        id: String,
        /// What went wrong.
        #[source]
        source: pidwarden_shared::Error,
    },
}

/// Plans the kill for container `id`. Blocking: sleeps for
/// [`KillPolicy::sample`] between two readings (skipped when there are no
/// duplicates). `Ok(None)` when `id` is not a discovered container (a
/// malformed id included) or the container disappeared while sampling.
pub fn plan(
    collector: &mut Collector,
    id: &str,
    policy: &KillPolicy,
) -> Result<Option<KillPlan>, KillError> {
    plan_with_window(collector, id, policy, || std::thread::sleep(policy.sample))
}

/// [`plan`] with the sampling window given: `window` runs between the two
/// readings (and not at all when the first finds no duplicates). [`plan`]
/// sleeps [`KillPolicy::sample`] there; a caller that controls what the
/// second reading sees (fixture trees) changes it there instead.
pub fn plan_with_window(
    collector: &mut Collector,
    id: &str,
    policy: &KillPolicy,
    window: impl FnOnce(),
) -> Result<Option<KillPlan>, KillError> {
    if !is_container_id(id) {
        return Ok(None);
    }
    let collect = |c: &mut Collector| {
        c.collect_one(id).map_err(|source| KillError::Collect {
            id: id.to_string(),
            source,
        })
    };
    let Some(first) = collect(collector)? else {
        return Ok(None);
    };
    let Some(layout) = collector.layout() else {
        return Ok(None);
    };
    let scope = CgroupScope::of(layout, &first.container);
    let before = live(&first.processes.live);
    let groups = duplicate_groups(&before);
    let empty = KillPlan {
        container_id: id.to_string(),
        scope: scope.clone(),
        victims: Vec::new(),
        kept: Vec::new(),
        protected_skipped: 0,
    };
    if groups.is_empty() {
        return Ok(Some(empty));
    }
    window();
    let Some(second) = collect(collector)? else {
        return Ok(None);
    };
    // The id now names another cgroup: not the container that was sampled.
    if collector
        .layout()
        .is_none_or(|l| CgroupScope::of(l, &second.container) != scope)
    {
        return Ok(None);
    }
    let after = live(&second.processes.live);
    let roots = collector.roots().clone();
    let by_pid_before: HashMap<i32, &Process> = before.iter().map(|p| (p.pid, p)).collect();
    let by_pid_after: HashMap<i32, &Process> = after.iter().map(|p| (p.pid, p)).collect();
    // Command lines of copy members read afresh: the collector caches them
    // by identity, and an exec that keeps `comm` (sh → sh script) would
    // otherwise go unseen by the protected patterns and the plan.
    let mut fresh: HashMap<i32, Process> = HashMap::new();
    let mut cands = Vec::with_capacity(groups.len());
    for g in &groups {
        let mut copies = Vec::new();
        for &root in &g.pids {
            let Some(start) = by_pid_before.get(&root) else {
                continue;
            };
            match by_pid_after.get(&root) {
                Some(now) if now.start_time == start.start_time => {}
                _ => continue, // the copy ended while sampling
            }
            let was = subtree(&before, root);
            let now = subtree(&after, root);
            let cpu_ticks = window_ticks(&by_pid_before, &was, &by_pid_after, &now);
            for pid in &now {
                if let (Some(seen), Ok(Some(p))) =
                    (by_pid_after.get(pid), read_process(&roots, *pid))
                {
                    if p.start_time == seen.start_time {
                        fresh.insert(*pid, p);
                    }
                }
            }
            let members: Vec<&Process> = now
                .iter()
                .filter_map(|p| fresh.get(p).or_else(|| by_pid_after.get(p).copied()))
                .collect();
            let spared = if members
                .iter()
                .any(|p| is_ns_init(&roots, p.pid) == Some(true))
            {
                Some(Spared::Init)
            } else if is_protected(
                members.iter().map(|p| p.cmdline.display()),
                &policy.protected,
            ) {
                Some(Spared::Protected)
            } else {
                None
            };
            copies.push(Candidate {
                root,
                start_time: start.start_time,
                members: now,
                cpu_ticks,
                spared,
            });
        }
        cands.push(CandidateGroup {
            ppid: g.ppid,
            copies,
        });
    }
    let sel = select_victims(&cands, policy.keep);
    let newest = |pid: &i32| fresh.get(pid).or_else(|| by_pid_after.get(pid).copied());
    let to_plan = |c: &Candidate| {
        // Every candidate's root is in the second reading.
        let root = newest(&c.root).unwrap_or(by_pid_after[&c.root]);
        CopyPlan {
            root: ProcRef::of(root),
            argv: root.cmdline.clone(),
            members: c
                .members
                .iter()
                .filter_map(newest)
                .map(ProcRef::of)
                .collect(),
            cpu_ticks: c.cpu_ticks,
        }
    };
    Ok(Some(KillPlan {
        victims: sel.victims.iter().map(to_plan).collect(),
        kept: sel.kept.iter().map(to_plan).collect(),
        protected_skipped: sel.spared.len(),
        ..empty
    }))
}

/// Drops zombies: they hold no CPU and cannot be signalled to any effect.
fn live(procs: &[Process]) -> Vec<Process> {
    procs.iter().filter(|p| !p.is_zombie()).cloned().collect()
}

/// CPU ticks a copy used between two readings, its own and that of the
/// children it reaped (`cutime` + `cstime`, so work done through
/// short-lived subprocesses born and reaped inside the window counts): for
/// each process present in both (same pid and start time) the difference;
/// for a process gone by the second reading nothing past the first (what
/// it used until last seen); for a process new in the second reading all
/// it used (it started in the window).
///
/// A member that was seen in the first reading and then reaped by its
/// parent within the window brings its whole past into the parent's
/// reaped-children time; what it had used by the first reading is taken
/// back out of that parent's increase (never below zero), so an old child
/// that merely exited does not make its copy look busy.
fn window_ticks(
    before: &HashMap<i32, &Process>,
    was: &[i32],
    after: &HashMap<i32, &Process>,
    now: &[i32],
) -> u64 {
    let key =
        |list: &HashMap<i32, &Process>, pids: &[i32]| -> HashMap<(i32, u64), (u64, u64, i32)> {
            pids.iter()
                .filter_map(|pid| list.get(pid))
                .map(|p| {
                    (
                        (p.pid, p.start_time),
                        (p.cpu_ticks, p.child_cpu_ticks, p.ppid),
                    )
                })
                .collect()
        };
    let was = key(before, was);
    let now = key(after, now);
    // Per parent pid: what its members that vanished had used by the first reading.
    let mut vanished_past: HashMap<i32, u64> = HashMap::new();
    for (k, &(cpu, child, ppid)) in &was {
        if !now.contains_key(k) {
            *vanished_past.entry(ppid).or_default() += cpu.saturating_add(child);
        }
    }
    now.iter()
        .map(|(k, &(cpu, child, _))| match was.get(k) {
            Some(&(cpu0, child0, _)) => {
                let reaped = child.saturating_sub(child0);
                let past = vanished_past.get(&k.0).copied().unwrap_or(0);
                cpu.saturating_sub(cpu0) + reaped.saturating_sub(past)
            }
            None => cpu.saturating_add(child),
        })
        .sum()
}

/// Whether `pid` is PID 1 of its innermost namespace; `None` when unreadable.
fn is_ns_init(roots: &Roots, pid: i32) -> Option<bool> {
    read_ns_pid(roots, pid).ok()??.map(|ns| ns == 1)
}

/// A signal sent to a process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Signalled {
    /// The process.
    pub process: ProcRef,
    /// `"SIGTERM"` or `"SIGKILL"`.
    pub signal: String,
}

/// What [`execute`] did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KillReport {
    /// Every SIGTERM and SIGKILL delivered, in order.
    pub signalled: Vec<Signalled>,
    /// Planned processes that had exited (or become zombies) before their
    /// first signal.
    pub gone_before_signal: Vec<ProcRef>,
    /// Processes not signalled, with the reason (pid recycled, outside the
    /// container, container init, protected, command changed, journal
    /// failed, interrupted, …).
    pub refused: Vec<(ProcRef, String)>,
    /// Processes still alive after SIGKILL and [`KILL_WAIT`].
    pub survivors: Vec<ProcRef>,
    /// The run was interrupted through [`ExecControl::abort`]: no signal was
    /// sent after that, and every process the run had stopped was continued.
    #[serde(default)]
    pub interrupted: bool,
}

/// The journal [`execute`] reports to before it stops anything: called with
/// every process (pid, start time, command) before that process's first
/// SIGSTOP. An `Err` (the reason) leaves those processes unstopped.
pub type Journal<'a> = dyn Fn(&[ProcRef]) -> Result<(), String> + 'a;

/// Outside control over one [`execute`] run: an abort flag and a journal.
///
/// The journal is what lets a restarted remediator continue processes a
/// crashed one left frozen ([`resume_stopped`]): everything the run may
/// stop was written down before it was stopped.
pub struct ExecControl<'a> {
    /// Set (from any thread) to interrupt the run: it is checked between
    /// every two steps and in every wait, and the run then sends no further
    /// signal, continues everything it stopped and returns a report marked
    /// [`KillReport::interrupted`], within about 50 ms of the flag.
    pub abort: &'a AtomicBool,
    /// Called before processes are first stopped; see [`Journal`].
    pub journal: &'a Journal<'a>,
}

impl std::fmt::Debug for ExecControl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecControl")
            .field("abort", &self.abort)
            .finish_non_exhaustive()
    }
}

/// A journal that records nothing and never fails.
fn no_journal(_: &[ProcRef]) -> Result<(), String> {
    Ok(())
}

/// The abort flag of unattended runs: never set.
static NEVER: AtomicBool = AtomicBool::new(false);

impl ExecControl<'static> {
    /// No abort flag and no journal: the run goes to its end.
    pub fn unattended() -> ExecControl<'static> {
        ExecControl {
            abort: &NEVER,
            journal: &no_journal,
        }
    }
}

/// The run was interrupted through [`ExecControl::abort`].
#[derive(Debug)]
struct Interrupted;

/// A process the engine holds and may signal.
struct Member {
    proc: ProcRef,
    pin: PinnedProcess,
    stopped: bool,
    /// A signal (SIGTERM or SIGKILL) was delivered to it.
    signalled: bool,
}

impl Member {
    fn new(proc: ProcRef, pin: PinnedProcess) -> Member {
        Member {
            proc,
            pin,
            stopped: false,
            signalled: false,
        }
    }
}

/// What re-checking a pinned process found.
enum Check {
    /// Still the pinned process, inside the container: its fresh reading.
    Ok(Process),
    /// Exited or a zombie.
    Gone,
    /// Must not be signalled, for this reason.
    Refused(String),
}

/// Kills the plan's victims. Blocking: SIGTERM, wait up to
/// [`KillPolicy::grace`], SIGKILL what is left, wait up to [`KILL_WAIT`].
/// Never signals a process it could not verify (see the module docs).
/// `control` interrupts the run and journals every process before it is
/// first stopped ([`ExecControl`]).
pub fn execute(
    roots: &Roots,
    plan: &KillPlan,
    policy: &KillPolicy,
    control: &ExecControl<'_>,
) -> KillReport {
    let mut run = Run {
        roots,
        id: plan.container_id.as_str(),
        scope: &plan.scope,
        policy,
        control,
        seen: HashSet::new(),
        report: KillReport::default(),
    };
    let bad_plan = if !is_container_id(run.id) {
        Some("plan names no valid container id")
    } else if run.scope.places.is_empty() {
        Some("plan names no container cgroup")
    } else {
        None
    };
    if let Some(why) = bad_plan {
        for p in plan.victims.iter().flat_map(|c| &c.members) {
            run.report.refused.push((p.clone(), why.into()));
        }
        return run.report;
    }
    let mut held: Vec<Member> = Vec::new();
    if run.kill(plan, &mut held).is_err() {
        for m in &mut held {
            resume(m);
            if !m.signalled {
                run.report
                    .refused
                    .push((m.proc.clone(), "interrupted before its signal".into()));
            }
        }
        run.report.interrupted = true;
    }
    run.report
}

/// One execution: what it reads, what it was told, what it did.
struct Run<'a> {
    roots: &'a Roots,
    id: &'a str,
    /// The container's cgroup: where every signalled process must be.
    scope: &'a CgroupScope,
    policy: &'a KillPolicy,
    control: &'a ExecControl<'a>,
    /// Identities (pid, start time) already handled, so a process is taken,
    /// refused or recorded once even when copies overlap.
    seen: HashSet<(i32, u64)>,
    report: KillReport,
}

impl Run<'_> {
    /// `Err` once the abort flag is set.
    fn go_on(&self) -> Result<(), Interrupted> {
        if self.control.abort.load(Ordering::SeqCst) {
            Err(Interrupted)
        } else {
            Ok(())
        }
    }

    /// The whole run. Every process it stops is in `held`, so an
    /// interruption (`Err`) can continue them all.
    fn kill(&mut self, plan: &KillPlan, held: &mut Vec<Member>) -> Result<(), Interrupted> {
        // Pidfds are held from a copy's pinning to the end of its batch:
        // batches of copies within this run's share of the descriptor budget.
        let pool = FdPool::claim(self.roots, BATCH_FDS);
        let cap = pool.cap().max(MIN_BATCH_FDS);
        let mut copies = plan.victims.iter().peekable();
        while let Some(copy) = copies.next() {
            self.go_on()?;
            self.take_copy(copy, held)?;
            let full = copies
                .peek()
                .is_none_or(|next| held.len() + next.members.len() > cap);
            if full && !held.is_empty() {
                self.end_batch(held)?;
            }
        }
        Ok(())
    }

    /// Signals one batch of taken copies (all frozen, in `held`) to their
    /// end, then lets go of their pidfds (`held` is empty after).
    fn end_batch(&mut self, held: &mut Vec<Member>) -> Result<(), Interrupted> {
        // SIGTERM everything frozen and still inside, then let it run its
        // handlers.
        self.recheck(held, "SIGTERM");
        for m in held.iter_mut() {
            self.go_on()?;
            self.send(m, libc::SIGTERM, "SIGTERM");
        }
        for m in held.iter_mut() {
            resume(m);
        }
        self.wait_exit(held, self.policy.grace)?;

        // What is left: freeze again, pick up children forked since, SIGKILL.
        held.retain(|m| !m.pin.exited());
        if held.is_empty() {
            return Ok(());
        }
        for m in held.iter_mut() {
            self.go_on()?;
            stop(m);
        }
        // The copies were already told to stop: a protected process that
        // appeared since is left out on its own, the rest still dies.
        let mut scanned = HashSet::new();
        let _ = self.freeze_descendants(OnRefusal::SkipProcess, held, 0, &mut scanned)?;
        self.recheck(held, "SIGKILL");
        for m in held.iter_mut() {
            self.go_on()?;
            self.send(m, libc::SIGKILL, "SIGKILL");
        }
        self.wait_exit(held, KILL_WAIT)?;
        for m in held.iter_mut() {
            if !m.pin.exited() {
                resume(m);
                self.report.survivors.push(m.proc.clone());
            }
        }
        held.clear();
        Ok(())
    }

    /// Pins and checks one copy's planned members, journals them, freezes
    /// them and every descendant inside the container, and appends them to
    /// `held`. When the copy must be left alone, everything of it is
    /// continued and recorded as refused, and `held` is as it was.
    fn take_copy(&mut self, copy: &CopyPlan, held: &mut Vec<Member>) -> Result<(), Interrupted> {
        let start = held.len();
        let mut current: Vec<Cmdline> = Vec::new();
        let mut refuse_copy: Option<String> = None;
        for pr in &copy.members {
            self.go_on()?;
            if !self.seen.insert((pr.pid, pr.start_time)) {
                continue;
            }
            let Some(pin) = pin_planned(self.roots, pr, &mut self.report) else {
                continue;
            };
            match check(self.roots, self.scope, &pin) {
                Check::Ok(p) => {
                    if pr.pid == copy.root.pid && p.cmdline != copy.argv {
                        refuse_copy = Some("command line changed since the plan".into());
                    }
                    current.push(p.cmdline);
                    held.push(Member::new(pr.clone(), pin));
                }
                Check::Gone => self.report.gone_before_signal.push(pr.clone()),
                Check::Refused(reason) => self.report.refused.push((pr.clone(), reason)),
            }
        }
        if refuse_copy.is_none()
            && is_protected(current.iter().map(Cmdline::display), &self.policy.protected)
        {
            refuse_copy = Some("copy matches a protected pattern".into());
        }
        if refuse_copy.is_none() {
            refuse_copy = self.journal(&held[start..]).err();
        }
        if refuse_copy.is_none() {
            for m in &mut held[start..] {
                stop(m);
            }
            let mut scanned = HashSet::new();
            refuse_copy = self
                .freeze_descendants(OnRefusal::LeaveCopy, held, start, &mut scanned)?
                .err();
        }
        if let Some(reason) = refuse_copy {
            for mut m in held.drain(start..) {
                resume(&mut m);
                self.report.refused.push((m.proc, reason.clone()));
            }
        }
        Ok(())
    }

    /// Tells the journal about `members` before they are stopped; `Err`
    /// holds the reason to refuse them with.
    fn journal(&self, members: &[Member]) -> Result<(), String> {
        if members.is_empty() {
            return Ok(());
        }
        let procs: Vec<ProcRef> = members.iter().map(|m| m.proc.clone()).collect();
        (self.control.journal)(&procs).map_err(|e| format!("journal failed: {e}"))
    }

    /// Adds to `held` (journaled, then frozen) every descendant of a held
    /// member from index `from` on that is inside the container, until no
    /// new one appears. A frozen process cannot fork, so when the loop ends
    /// the subtree is complete. A protected descendant is never held or
    /// stopped, nor one the journal refused; see [`OnRefusal`]. The outer
    /// `Err` is an interruption, the inner one a reason to leave the copy.
    fn freeze_descendants(
        &mut self,
        on_refusal: OnRefusal,
        held: &mut Vec<Member>,
        from: usize,
        scanned: &mut HashSet<i32>,
    ) -> Result<Result<(), String>, Interrupted> {
        let mut i = from;
        while i < held.len() {
            self.go_on()?;
            let parent = held[i].pin.pid;
            i += 1;
            if !scanned.insert(parent) {
                continue;
            }
            let Ok(children) = read_children(self.roots, parent) else {
                continue;
            };
            let mut batch: Vec<Member> = Vec::new();
            for child in children {
                // A refused child (recorded) is no reason to leave the copy:
                // it is not the copy's.
                let Some((p, pin)) = self.descendant(&held[i - 1].pin, child) else {
                    continue;
                };
                if is_protected([p.cmdline.display()], &self.policy.protected) {
                    let reason = format!("descendant {} matches a protected pattern", p.pid);
                    if on_refusal == OnRefusal::LeaveCopy {
                        return Ok(Err(reason));
                    }
                    self.report.refused.push((ProcRef::of(&p), reason));
                    continue;
                }
                batch.push(Member::new(ProcRef::of(&p), pin));
            }
            match self.journal(&batch) {
                Ok(()) => {
                    for mut m in batch {
                        stop(&mut m);
                        held.push(m);
                    }
                }
                Err(reason) if on_refusal == OnRefusal::LeaveCopy => return Ok(Err(reason)),
                Err(reason) => {
                    for m in batch {
                        self.report.refused.push((m.proc, reason.clone()));
                    }
                }
            }
        }
        Ok(Ok(()))
    }

    /// Offers `child` (listed among the children of `parent`) to
    /// [`pin_child`]. `None`: gone, already handled, or refused (recorded).
    fn descendant(
        &mut self,
        parent: &PinnedProcess,
        child: i32,
    ) -> Option<(Process, PinnedProcess)> {
        match pin_child(self.roots, self.scope, parent, child) {
            Descendant::Child { pin, process } => self
                .seen
                .insert((pin.pid, pin.start_time))
                .then_some((process, pin)),
            Descendant::Gone => None,
            Descendant::Refused { process, reason } => {
                if self.seen.insert((process.pid, process.start_time)) {
                    self.report.refused.push((process, reason));
                }
                None
            }
        }
    }

    /// Checks every held process again right before `signal` is sent to
    /// it: one that is no longer the pinned process inside the container
    /// (moved to another cgroup since it was taken) is continued, recorded
    /// as refused and let go; one that exited is let go.
    fn recheck(&mut self, held: &mut Vec<Member>, signal: &str) {
        let mut kept = Vec::with_capacity(held.len());
        for mut m in held.drain(..) {
            match check(self.roots, self.scope, &m.pin) {
                Check::Ok(_) => kept.push(m),
                Check::Gone => {
                    if !m.signalled {
                        self.report.gone_before_signal.push(m.proc.clone());
                    }
                }
                Check::Refused(reason) => {
                    resume(&mut m);
                    self.report
                        .refused
                        .push((m.proc.clone(), format!("at {signal}: {reason}")));
                }
            }
        }
        *held = kept;
    }

    /// Sends `sig` through the pidfd and records it; a process that exited
    /// before its first signal is recorded as gone.
    fn send(&mut self, m: &mut Member, sig: i32, name: &str) {
        match m.pin.signal(sig) {
            Ok(true) => {
                m.signalled = true;
                self.report.signalled.push(Signalled {
                    process: m.proc.clone(),
                    signal: name.to_string(),
                });
            }
            Ok(false) => {
                if !m.signalled {
                    self.report.gone_before_signal.push(m.proc.clone());
                }
            }
            Err(e) => self
                .report
                .refused
                .push((m.proc.clone(), format!("{name} failed: {e}"))),
        }
    }

    /// Polls until every held process has exited or `limit` has passed;
    /// `Err` as soon as the abort flag is seen.
    fn wait_exit(&self, held: &[Member], limit: Duration) -> Result<(), Interrupted> {
        let deadline = Instant::now() + limit;
        while held.iter().any(|m| !m.pin.exited()) {
            self.go_on()?;
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            std::thread::sleep(POLL.min(deadline - now));
        }
        Ok(())
    }
}

/// Pins a planned process. `None` (recorded) when it is gone, its pid now
/// belongs to another process, or pinning failed.
fn pin_planned(roots: &Roots, pr: &ProcRef, report: &mut KillReport) -> Option<PinnedProcess> {
    match PinnedProcess::pin(roots, pr.pid, pr.start_time) {
        Ok(Some(pin)) => Some(pin),
        Ok(None) => {
            match read_process(roots, pr.pid) {
                Ok(Some(p)) if p.start_time != pr.start_time => report.refused.push((
                    pr.clone(),
                    format!(
                        "pid recycled: now another process (start time {})",
                        p.start_time
                    ),
                )),
                _ => report.gone_before_signal.push(pr.clone()),
            }
            None
        }
        Err(e) => {
            report
                .refused
                .push((pr.clone(), format!("cannot pin: {e}")));
            None
        }
    }
}

/// Re-checks a pinned process: reads its cgroup membership and namespace
/// PID, then its stat, whose unchanged start time proves the first two
/// readings were about the pinned process. Inside means inside `scope`:
/// the container's own directories and what is below them.
fn check(roots: &Roots, scope: &CgroupScope, pin: &PinnedProcess) -> Check {
    let cgroup = match read_cgroup_membership(roots, pin.pid) {
        Ok(Some(s)) => s,
        Ok(None) => return Check::Gone,
        Err(e) => return Check::Refused(e.to_string()),
    };
    let nspid = match read_ns_pid(roots, pin.pid) {
        Ok(Some(ns)) => ns,
        Ok(None) => return Check::Gone,
        Err(e) => return Check::Refused(e.to_string()),
    };
    let p = match read_process(roots, pin.pid) {
        Ok(Some(p)) => p,
        Ok(None) => return Check::Gone,
        Err(e) => return Check::Refused(format!("cannot read it: {e}")),
    };
    if p.start_time != pin.start_time {
        return Check::Refused(format!(
            "pid recycled: now another process (start time {})",
            p.start_time
        ));
    }
    if p.is_zombie() || pin.exited() {
        return Check::Gone;
    }
    if !scope.contains(&cgroup) {
        return Check::Refused("not inside the target container's cgroup".into());
    }
    if nspid == Some(1) {
        return Check::Refused("the container's init".into());
    }
    Check::Ok(p)
}

/// SIGSTOP through the pidfd: it keeps a copy from forking while it is
/// scanned (not recorded: SIGTERM/SIGKILL follow, or SIGCONT).
fn stop(m: &mut Member) {
    if !m.stopped && matches!(m.pin.signal(libc::SIGSTOP), Ok(true)) {
        m.stopped = true;
    }
}

/// SIGCONT through the pidfd for a member this run stopped.
fn resume(m: &mut Member) {
    if m.stopped {
        let _ = m.pin.signal(libc::SIGCONT);
        m.stopped = false;
    }
}

/// What a refused descendant (protected, outside the rules, or refused by
/// the journal) means for the rest of its copy.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnRefusal {
    /// Stop scanning: the caller leaves the whole copy.
    LeaveCopy,
    /// Leave that process out (recorded as refused) and go on.
    SkipProcess,
}

/// What [`pin_child`] found.
#[derive(Debug)]
pub enum Descendant {
    /// A child of the pinned parent inside the container: pinned, with its
    /// reading taken after the pin.
    Child {
        /// The child's pidfd.
        pin: PinnedProcess,
        /// Its reading.
        process: Process,
    },
    /// Exited, a zombie, or vanished before it could be pinned.
    Gone,
    /// Must not be taken, for this reason.
    Refused {
        /// The process as read.
        process: ProcRef,
        /// Why.
        reason: String,
    },
}

/// Decides whether `pid`, found among the children of the pinned `parent`,
/// may join the parent's copy. It is pinned first; then, reading after the
/// pin, it must be inside the container's cgroup `scope`, not its init, not a zombie, and
/// have `parent.pid` as its parent while `parent` is still the pinned
/// process (its pidfd not exited, its start time unchanged). A pid that was
/// recycled since the children list was read (by a kept copy's process, or
/// anything else) fails one of these and is refused, never stopped.
pub fn pin_child(
    roots: &Roots,
    scope: &CgroupScope,
    parent: &PinnedProcess,
    pid: i32,
) -> Descendant {
    let first = match read_process(roots, pid) {
        Ok(Some(p)) if !p.is_zombie() => p,
        Ok(_) => return Descendant::Gone,
        Err(e) => {
            return Descendant::Refused {
                process: ProcRef {
                    pid,
                    start_time: 0,
                    command: String::new(),
                },
                reason: format!("cannot read it: {e}"),
            }
        }
    };
    let refused = |p: &Process, reason: String| Descendant::Refused {
        process: ProcRef::of(p),
        reason,
    };
    let pin = match PinnedProcess::pin(roots, pid, first.start_time) {
        Ok(Some(pin)) => pin,
        Ok(None) => return Descendant::Gone,
        Err(e) => return refused(&first, format!("cannot pin: {e}")),
    };
    let now = match check(roots, scope, &pin) {
        Check::Ok(p) => p,
        Check::Gone => return Descendant::Gone,
        Check::Refused(reason) => return refused(&first, reason),
    };
    if now.ppid != parent.pid {
        return refused(
            &now,
            format!("not a child of {}: its parent is {}", parent.pid, now.ppid),
        );
    }
    // That ppid names the pinned parent only if the parent had not exited
    // when it was read: it is still alive now, so it had not (a pid is
    // never reused before its process has exited and been reaped).
    let parent_now = read_process(roots, parent.pid);
    let same_parent = matches!(&parent_now, Ok(Some(p)) if p.start_time == parent.start_time);
    if parent.exited() || !same_parent {
        return refused(
            &now,
            format!("its parent {} exited while it was checked", parent.pid),
        );
    }
    Descendant::Child { pin, process: now }
}

/// Continues every listed process that is still the same process (pid and
/// start time, through a pidfd) and is stopped (state `T` or `t`); returns
/// those continued. For start-up: the processes a remediator that crashed
/// mid-run had journaled ([`ExecControl::journal`]) and may have left
/// frozen. A process that is gone, recycled or running is left alone.
pub fn resume_stopped(roots: &Roots, procs: &[ProcRef]) -> Vec<ProcRef> {
    let mut out = Vec::new();
    for pr in procs {
        let Ok(Some(pin)) = PinnedProcess::pin(roots, pr.pid, pr.start_time) else {
            continue;
        };
        let stopped = matches!(
            read_process(roots, pr.pid),
            Ok(Some(p)) if p.start_time == pr.start_time && p.state.is_stopped()
        );
        if stopped && matches!(pin.signal(libc::SIGCONT), Ok(true)) {
            out.push(pr.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn proc(pid: i32, ppid: i32, start_time: u64, cpu_ticks: u64, cmd: &str) -> Process {
        Process {
            pid,
            ppid,
            start_time,
            state: pidwarden_shared::procfs::ProcState::Sleeping,
            comm: Arc::from("sh"),
            cmdline: Cmdline::from_args(cmd.split(' ')),
            threads: 1,
            cpu_ticks,
            child_cpu_ticks: 0,
        }
    }

    #[test]
    fn window_ticks_counts_deltas_reaped_children_new_members_and_vanished_ones_until_seen() {
        let before = vec![
            proc(10, 1, 100, 50, "sh"),
            proc(11, 10, 101, 7, "sleep"),
            proc(12, 10, 102, 9, "yes"),
        ];
        let after = vec![
            // 10 used 5 more; 11 vanished; 12 recycled into a new process
            // (new start time, so all of its 3 ticks count); 13 is new.
            proc(10, 1, 100, 55, "sh"),
            proc(12, 10, 300, 3, "yes"),
            proc(13, 10, 301, 4, "cat"),
        ];
        let map = |l: &[Process]| -> Vec<(i32, Process)> {
            l.iter().map(|p| (p.pid, p.clone())).collect()
        };
        let (b, a) = (map(&before), map(&after));
        let b: HashMap<i32, &Process> = b.iter().map(|(k, v)| (*k, v)).collect();
        let a: HashMap<i32, &Process> = a.iter().map(|(k, v)| (*k, v)).collect();
        assert_eq!(
            window_ticks(&b, &[10, 11, 12], &a, &[10, 12, 13]),
            5 + 3 + 4
        );
        // 10 reaped 11 (7 ticks by the first reading) and children born and
        // reaped in the window (20): only those 20 count as its reaped work.
        let mut reaper = proc(10, 1, 100, 55, "sh");
        reaper.child_cpu_ticks = 7 + 20;
        let after = [reaper, proc(12, 10, 102, 9, "yes")];
        let a: HashMap<i32, &Process> = after.iter().map(|p| (p.pid, p)).collect();
        assert_eq!(window_ticks(&b, &[10, 11, 12], &a, &[10, 12]), 5 + 20);
        // A new process brings its reaped children's time too.
        let mut fresh = proc(14, 10, 400, 1, "sh");
        fresh.child_cpu_ticks = 30;
        let after = [proc(10, 1, 100, 50, "sh"), fresh];
        let a: HashMap<i32, &Process> = after.iter().map(|p| (p.pid, p)).collect();
        assert_eq!(window_ticks(&b, &[10], &a, &[10, 14]), 31);
        // A counter that went backwards never underflows.
        let back = [proc(10, 1, 100, 40, "sh")];
        let a: HashMap<i32, &Process> = back.iter().map(|p| (p.pid, p)).collect();
        assert_eq!(window_ticks(&b, &[10], &a, &[10]), 0);
    }

    #[test]
    fn policy_defaults_match_the_design() {
        let p = KillPolicy::default();
        assert_eq!(p.keep, 1);
        assert_eq!(p.sample, Duration::from_secs(2));
        assert_eq!(p.grace, Duration::from_secs(5));
        assert!(p.protected.is_empty());
    }

    #[test]
    fn a_plan_without_a_valid_container_id_or_cgroup_signals_nothing() {
        let victim = ProcRef {
            pid: std::process::id() as i32,
            start_time: 1,
            command: "x".into(),
        };
        let ids = [String::new(), "a".repeat(64)];
        for id in ids {
            let plan = KillPlan {
                container_id: id,
                scope: CgroupScope::default(),
                victims: vec![CopyPlan {
                    root: victim.clone(),
                    argv: Cmdline::default(),
                    members: vec![victim.clone()],
                    cpu_ticks: 0,
                }],
                kept: Vec::new(),
                protected_skipped: 0,
            };
            let r = execute(
                &Roots::default(),
                &plan,
                &KillPolicy::default(),
                &ExecControl::unattended(),
            );
            assert!(r.signalled.is_empty());
            assert_eq!(r.refused.len(), 1);
            assert_eq!(r.refused[0].0, victim);
        }
    }

    #[test]
    fn proc_refs_round_trip_through_json() {
        let plan = KillPlan {
            container_id: "a".repeat(64),
            scope: CgroupScope::default(),
            victims: Vec::new(),
            kept: vec![CopyPlan {
                argv: Cmdline::from_args(["sh", "-c", "x"]),
                root: ProcRef {
                    pid: 5,
                    start_time: 9,
                    command: "sh -c x".into(),
                },
                members: Vec::new(),
                cpu_ticks: 3,
            }],
            protected_skipped: 1,
        };
        let json = serde_json::to_string(&plan).unwrap();
        let back: KillPlan = serde_json::from_str(&json).unwrap();
        assert_eq!(back.kept[0].root.command, "sh -c x");
        // The unredacted command line stays out of the JSON.
        assert!(!json.contains("argv"), "{json}");
        assert!(back.kept[0].argv.is_empty());
        assert_eq!(back.protected_skipped, 1);
        let report = KillReport {
            refused: vec![(plan.kept[0].root.clone(), "why".into())],
            ..KillReport::default()
        };
        let back: KillReport =
            serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
        assert_eq!(back.refused[0].1, "why");
    }
}
