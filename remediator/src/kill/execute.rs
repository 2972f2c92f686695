//! Executing a [`KillPlan`]: [`execute`] trusts nothing in the plan but
//! identities and the container's cgroup as discovery found it
//! ([`KillPlan::scope`]). Every planned process is pinned by a pidfd whose
//! (pid, start time) was verified, then re-checked: its `/proc/<pid>/cgroup`
//! path, in every hierarchy the container was found in, is the container's
//! directory or below it (a sibling that only names the id, such as
//! `libpod-conmon-<id>.scope`, is outside), not the container's init, not a
//! zombie; the copy root still runs exactly the planned arguments. A copy is
//! frozen (SIGSTOP through the pidfds) before its subtree is re-read, so
//! children spawned since the plan are found and none can be forked behind
//! the scan; only descendants of pinned members that are themselves inside
//! the container are added, each through [`pin_child`], which proves after
//! pinning it that it is the child of the pinned parent. Then SIGTERM (and
//! SIGCONT, so handlers run), up to [`KillPolicy::grace`] for the copies to
//! exit, a second freeze and rescan of what is left, SIGKILL, and a bounded
//! wait. Every process is checked again (same process, still inside the
//! container) right before its SIGTERM and right before its SIGKILL, so one
//! moved out of the container meanwhile is continued and never signalled.
//! A pid whose start time changed is never signalled; everything refused is
//! reported with the reason.
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
//! further signal and continues everything it stopped.
//!
//! A copy found to hold a protected process at execute time is resumed and
//! left alone (its members were stopped for the scan, the protected process
//! never). Out of reach: a process a copy forks while handling SIGTERM whose
//! parent then exits before the second freeze — it is reparented to the
//! container's init and can no longer be told apart from the init's own
//! children, so it is not guessed at.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pidwarden_shared::cgroup::{is_container_id, CgroupScope};
use pidwarden_shared::procfs::{
    read_cgroup_membership, read_children, read_ns_pid, read_process, Cmdline, FdPool, Process,
};
use pidwarden_shared::signal::PinnedProcess;
use pidwarden_shared::Roots;
use serde::{Deserialize, Serialize};

use super::select::is_protected;
use super::{CopyPlan, KillPlan, KillPolicy, ProcRef};

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

/// A signal the engine delivers and records (SIGSTOP and SIGCONT, which
/// only freeze and continue, are not recorded). Text (`"SIGTERM"`,
/// `"SIGKILL"`) only in JSON, logs and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Signal {
    /// SIGTERM: asks the process to end.
    #[serde(rename = "SIGTERM")]
    Term,
    /// SIGKILL: ends it.
    #[serde(rename = "SIGKILL")]
    Kill,
}

impl Signal {
    /// Both, in the order a run sends them.
    pub const ALL: [Signal; 2] = [Signal::Term, Signal::Kill];

    /// The signal's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Kill => "SIGKILL",
        }
    }

    /// The signal's number.
    pub fn number(self) -> i32 {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signal sent to a process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Signalled {
    /// The process.
    pub process: ProcRef,
    /// Which signal.
    pub signal: Signal,
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
/// SIGSTOP. An `Err` leaves those processes unstopped (refused, with it as
/// the reason).
pub type Journal<'a> = dyn Fn(&[ProcRef]) -> Result<(), JournalError> + 'a;

/// The journal could not write the processes down.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JournalError(pub Box<dyn std::error::Error + Send + Sync>);

impl JournalError {
    /// Wraps what went wrong.
    pub fn new(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        JournalError(e.into())
    }
}

/// Outside control over one [`execute`] run: an abort flag and a journal.
///
/// The journal is what lets a restarted remediator continue processes a
/// crashed one left frozen ([`super::resume_stopped`]): everything the run may
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
fn no_journal(_: &[ProcRef]) -> Result<(), JournalError> {
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
        self.recheck(held, Signal::Term);
        for m in held.iter_mut() {
            self.go_on()?;
            self.send(m, Signal::Term);
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
        self.recheck(held, Signal::Kill);
        for m in held.iter_mut() {
            self.go_on()?;
            self.send(m, Signal::Kill);
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
            refuse_copy = self.journal(&held[start..]);
        }
        if refuse_copy.is_none() {
            for m in &mut held[start..] {
                stop(m);
            }
            let mut scanned = HashSet::new();
            refuse_copy =
                match self.freeze_descendants(OnRefusal::LeaveCopy, held, start, &mut scanned)? {
                    Scan::Complete => None,
                    Scan::LeaveCopy(reason) => Some(reason),
                };
        }
        if let Some(reason) = refuse_copy {
            for mut m in held.drain(start..) {
                resume(&mut m);
                self.report.refused.push((m.proc, reason.clone()));
            }
        }
        Ok(())
    }

    /// Tells the journal about `members` before they are stopped; when it
    /// fails, the reason to refuse them with.
    fn journal(&self, members: &[Member]) -> Option<String> {
        if members.is_empty() {
            return None;
        }
        let procs: Vec<ProcRef> = members.iter().map(|m| m.proc.clone()).collect();
        (self.control.journal)(&procs)
            .err()
            .map(|e| format!("journal failed: {e}"))
    }

    /// Adds to `held` (journaled, then frozen) every descendant of a held
    /// member from index `from` on that is inside the container, until no
    /// new one appears. A frozen process cannot fork, so when the loop ends
    /// the subtree is complete. A protected descendant is never held or
    /// stopped, nor one the journal refused; see [`OnRefusal`]. `Err` is an
    /// interruption.
    fn freeze_descendants(
        &mut self,
        on_refusal: OnRefusal,
        held: &mut Vec<Member>,
        from: usize,
        scanned: &mut HashSet<i32>,
    ) -> Result<Scan, Interrupted> {
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
                        return Ok(Scan::LeaveCopy(reason));
                    }
                    self.report.refused.push((ProcRef::of(&p), reason));
                    continue;
                }
                batch.push(Member::new(ProcRef::of(&p), pin));
            }
            match self.journal(&batch) {
                None => {
                    for mut m in batch {
                        stop(&mut m);
                        held.push(m);
                    }
                }
                Some(reason) if on_refusal == OnRefusal::LeaveCopy => {
                    return Ok(Scan::LeaveCopy(reason))
                }
                Some(reason) => {
                    for m in batch {
                        self.report.refused.push((m.proc, reason.clone()));
                    }
                }
            }
        }
        Ok(Scan::Complete)
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
    fn recheck(&mut self, held: &mut Vec<Member>, signal: Signal) {
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
    fn send(&mut self, m: &mut Member, signal: Signal) {
        match m.pin.signal(signal.number()) {
            Ok(true) => {
                m.signalled = true;
                self.report.signalled.push(Signalled {
                    process: m.proc.clone(),
                    signal,
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
                .push((m.proc.clone(), format!("{signal} failed: {e}"))),
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

/// How a scan of a copy's descendants ended.
enum Scan {
    /// Every descendant inside the container is held and frozen.
    Complete,
    /// The copy must be left alone, for this reason.
    LeaveCopy(String),
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

#[cfg(test)]
mod tests {
    use super::*;

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
                    rss_bytes: 0,
                }],
                kept: Vec::new(),
                protected_skipped: 0,
                spared: Vec::new(),
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
}
