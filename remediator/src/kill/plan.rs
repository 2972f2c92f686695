//! Planning a kill: [`read_samples`] reads the container's processes twice,
//! [`KillPolicy::sample`] apart, and re-reads the members of every
//! duplicate copy; [`plan_from`] then decides on those [`Samples`] with no
//! I/O. It groups siblings with identical command lines, argument for
//! argument ([`duplicate_groups`]), measures the CPU each copy's whole
//! subtree used in between (the children its processes reaped in the window
//! included), and keeps the [`KillPolicy::keep`] most active copies per
//! group (ties: the newest survive, the oldest die — see [`super::select`]).
//! Copies holding the container's init or a process matching a protected
//! pattern are never victims; a copy born during the window is not a
//! candidate at all.

use std::collections::{HashMap, HashSet};

use pidwarden_shared::cgroup::{is_container_id, CgroupScope};
use pidwarden_shared::collect::Collector;
use pidwarden_shared::groups::{children_of, descendants, duplicate_groups};
use pidwarden_shared::procfs::statm::{page_size, read_rss};
use pidwarden_shared::procfs::{read_ns_pid, read_process, Process};
use pidwarden_shared::Roots;

use super::select::{is_protected, select_victims, Candidate, CandidateGroup, Spared};
use super::{CopyPlan, KillError, KillPlan, KillPolicy, ProcRef, SparedCopy};

/// What planning reads of one container: two readings a sampling window
/// apart and the fresh reads of every copy member. Plain data:
/// [`plan_from`] decides on it without I/O, and a test builds one from
/// literal values.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// Full container id.
    pub container_id: String,
    /// The container's cgroup as discovery found it at the first reading.
    pub scope: CgroupScope,
    /// The container's live (non-zombie) processes at the first reading.
    pub before: Vec<Process>,
    /// Its live processes at the second reading; empty when the first found
    /// no duplicates (no second reading is taken then).
    pub after: Vec<Process>,
    /// Copy members read afresh after the second reading, by pid, when
    /// still the process the second reading saw (same start time): the
    /// collector caches command lines by identity, and an exec that keeps
    /// `comm` (sh → sh script) would otherwise go unseen by the protected
    /// patterns and the plan.
    pub fresh: HashMap<i32, Process>,
    /// Copy members that are PID 1 of their innermost namespace (the
    /// container's init).
    pub ns_inits: HashSet<i32>,
    /// Resident memory (bytes) of the copy members, read with the fresh
    /// reads; a member missing here counts as 0.
    pub rss: HashMap<i32, u64>,
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
    Ok(read_samples(collector, id, window)?.map(|s| plan_from(&s, policy)))
}

/// The read step of [`plan_with_window`]: the first reading, `window`, the
/// second reading, and the fresh reads of the members of every copy that
/// lived through the window. `Ok(None)` when `id` is not a discovered
/// container, it disappeared while sampling, or its id now names another
/// cgroup.
pub fn read_samples(
    collector: &mut Collector,
    id: &str,
    window: impl FnOnce(),
) -> Result<Option<Samples>, KillError> {
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
    let mut samples = Samples {
        container_id: id.to_string(),
        scope,
        before,
        ..Samples::default()
    };
    if groups.is_empty() {
        return Ok(Some(samples));
    }
    window();
    let Some(second) = collect(collector)? else {
        return Ok(None);
    };
    // The id now names another cgroup: not the container that was sampled.
    if collector
        .layout()
        .is_none_or(|l| CgroupScope::of(l, &second.container) != samples.scope)
    {
        return Ok(None);
    }
    samples.after = live(&second.processes.live);
    let roots = collector.roots().clone();
    let by_pid_after: HashMap<i32, &Process> = samples.after.iter().map(|p| (p.pid, p)).collect();
    let mut fresh = HashMap::new();
    let mut ns_inits = HashSet::new();
    let mut rss = HashMap::new();
    let page = page_size();
    for (_, now) in lived_through(&samples.before, &samples.after, &groups) {
        for pid in now {
            if let Ok(Some(bytes)) = read_rss(&roots, pid, page) {
                rss.insert(pid, bytes);
            }
            if let (Some(seen), Ok(Some(p))) = (by_pid_after.get(&pid), read_process(&roots, pid)) {
                if p.start_time == seen.start_time {
                    fresh.insert(pid, p);
                }
            }
            if is_ns_init(&roots, pid) == Some(true) {
                ns_inits.insert(pid);
            }
        }
    }
    samples.fresh = fresh;
    samples.ns_inits = ns_inits;
    samples.rss = rss;
    Ok(Some(samples))
}

/// The copies of `groups` whose root lived through the window (same pid and
/// start time in both readings): (root, its subtree in the second reading).
fn lived_through(
    before: &[Process],
    after: &[Process],
    groups: &[pidwarden_shared::groups::Group],
) -> Vec<(i32, Vec<i32>)> {
    let by_pid_before: HashMap<i32, &Process> = before.iter().map(|p| (p.pid, p)).collect();
    let by_pid_after: HashMap<i32, &Process> = after.iter().map(|p| (p.pid, p)).collect();
    let kids_after = children_of(after);
    groups
        .iter()
        .flat_map(|g| g.pids.iter().copied())
        .filter(
            |root| match (by_pid_before.get(root), by_pid_after.get(root)) {
                (Some(start), Some(now)) => now.start_time == start.start_time,
                _ => false,
            },
        )
        .map(|root| (root, descendants(&kids_after, &[root])))
        .collect()
}

/// Decides, with no I/O, which copies of the sampled container die: the
/// [`KillPolicy::keep`] most active copies of every duplicate group of the
/// first reading survive, copies holding the init or a protected process
/// are spared, and copies that ended (or whose pid was recycled) during the
/// window are left out.
pub fn plan_from(samples: &Samples, policy: &KillPolicy) -> KillPlan {
    let Samples {
        before,
        after,
        fresh,
        ns_inits,
        rss,
        ..
    } = samples;
    let groups = duplicate_groups(before);
    let empty = KillPlan {
        container_id: samples.container_id.clone(),
        scope: samples.scope.clone(),
        victims: Vec::new(),
        kept: Vec::new(),
        protected_skipped: 0,
        spared: Vec::new(),
    };
    if groups.is_empty() {
        return empty;
    }
    let by_pid_before: HashMap<i32, &Process> = before.iter().map(|p| (p.pid, p)).collect();
    let by_pid_after: HashMap<i32, &Process> = after.iter().map(|p| (p.pid, p)).collect();
    // Each root below is in both readings, so its copy is itself and its
    // descendants there.
    let (kids_before, kids_after) = (children_of(before), children_of(after));
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
            let was = descendants(&kids_before, &[root]);
            let now = descendants(&kids_after, &[root]);
            let cpu_ticks = window_ticks(&by_pid_before, &was, &by_pid_after, &now);
            let members: Vec<&Process> = now
                .iter()
                .filter_map(|p| fresh.get(p).or_else(|| by_pid_after.get(p).copied()))
                .collect();
            let spared = if members.iter().any(|p| ns_inits.contains(&p.pid)) {
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
            rss_bytes: c
                .members
                .iter()
                .map(|p| rss.get(p).copied().unwrap_or(0))
                .sum(),
        }
    };
    KillPlan {
        victims: sel.victims.iter().map(to_plan).collect(),
        kept: sel.kept.iter().map(to_plan).collect(),
        protected_skipped: sel.spared.len(),
        spared: sel
            .spared
            .iter()
            .map(|c| SparedCopy {
                copy: to_plan(c),
                spared: c.spared.unwrap_or(Spared::Protected),
            })
            .collect(),
        ..empty
    }
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
#[cfg(test)]
mod tests {
    use super::*;
    use pidwarden_shared::procfs::Cmdline;
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

    /// Samples of container `c…c` from two literal readings.
    fn samples(before: Vec<Process>, after: Vec<Process>) -> Samples {
        Samples {
            container_id: "c".repeat(64),
            before,
            after,
            ..Samples::default()
        }
    }

    fn roots(list: &[CopyPlan]) -> Vec<i32> {
        list.iter().map(|c| c.root.pid).collect()
    }

    fn policy(keep: usize) -> KillPolicy {
        KillPolicy {
            keep,
            ..KillPolicy::default()
        }
    }

    #[test]
    fn idle_copies_tie_and_the_oldest_die_the_newest_stay() {
        let copies = || {
            vec![
                proc(1, 0, 1, 0, "init"),
                proc(20, 1, 300, 7, "npm exec srv"),
                proc(21, 1, 100, 7, "npm exec srv"),
                proc(22, 1, 200, 7, "npm exec srv"),
            ]
        };
        let plan = plan_from(&samples(copies(), copies()), &policy(1));
        assert_eq!(plan.container_id, "c".repeat(64));
        assert_eq!(roots(&plan.victims), vec![21, 22]);
        assert_eq!(roots(&plan.kept), vec![20]);
        assert_eq!(plan.victims[0].root.command, "npm exec srv");
        assert_eq!(
            plan.victims[0].argv,
            Cmdline::from_args(["npm", "exec", "srv"])
        );
        assert_eq!(plan.protected_skipped, 0);
    }

    #[test]
    fn keep_n_keeps_the_n_most_active_copies_by_their_use_in_the_window() {
        let before = vec![
            // 30 used much CPU before the window, none in it: idle now.
            proc(30, 1, 10, 900, "worker"),
            proc(31, 1, 20, 0, "worker"),
            proc(32, 1, 30, 0, "worker"),
            proc(33, 1, 40, 0, "worker"),
        ];
        let mut after = vec![
            proc(30, 1, 10, 900, "worker"),
            proc(31, 1, 20, 4, "worker"),
            proc(32, 1, 30, 0, "worker"),
            proc(33, 1, 40, 9, "worker"),
        ];
        let plan = plan_from(&samples(before.clone(), after.clone()), &policy(2));
        assert_eq!(roots(&plan.victims), vec![30, 32]);
        assert_eq!(roots(&plan.kept), vec![33, 31]);
        assert_eq!(plan.kept[0].cpu_ticks, 9);
        // Work done through a child born and reaped in the window counts:
        // 32 now outworks everyone.
        after[2].child_cpu_ticks = 50;
        let plan = plan_from(&samples(before.clone(), after.clone()), &policy(2));
        assert_eq!(roots(&plan.victims), vec![30, 31]);
        assert_eq!(roots(&plan.kept), vec![32, 33]);
        // keep 0 still keeps one; a keep larger than the group kills nothing.
        assert_eq!(
            plan_from(&samples(before.clone(), after.clone()), &policy(0))
                .kept
                .len(),
            1
        );
        assert!(plan_from(&samples(before, after), &policy(9))
            .victims
            .is_empty());
    }

    #[test]
    fn copies_with_a_protected_member_or_the_init_are_spared() {
        let tree = || {
            vec![
                proc(40, 1, 1, 0, "sh -c job"),
                proc(41, 40, 2, 0, "postgres -D /data"),
                proc(42, 1, 3, 0, "sh -c job"),
                proc(43, 1, 4, 0, "sh -c job"),
                proc(44, 1, 5, 0, "sh -c job"),
            ]
        };
        let protected = KillPolicy {
            protected: vec![regex::Regex::new("^postgres").unwrap()],
            ..KillPolicy::default()
        };
        let mut s = samples(tree(), tree());
        s.ns_inits.insert(42);
        let plan = plan_from(&s, &protected);
        assert_eq!(plan.protected_skipped, 2);
        // 40 (protected child) and 42 (the init) are neither victims nor
        // counted towards keep.
        assert_eq!(roots(&plan.victims), vec![43]);
        assert_eq!(roots(&plan.kept), vec![44]);
        // The fresh read wins over the cached command line: an exec the
        // second reading missed still protects its copy.
        let mut s = samples(tree(), tree());
        s.fresh.insert(43, proc(43, 1, 4, 0, "postgres -c x"));
        let plan = plan_from(&s, &protected);
        assert_eq!(roots(&plan.victims), vec![42]);
        assert_eq!(roots(&plan.kept), vec![44]);
        assert_eq!(plan.protected_skipped, 2);
    }

    #[test]
    fn young_copies_and_copies_that_ended_in_the_window_are_not_candidates() {
        let before = vec![
            proc(50, 1, 10, 0, "srv"),
            proc(51, 1, 20, 0, "srv"),
            proc(52, 1, 30, 0, "srv"),
            proc(53, 1, 40, 0, "srv"),
        ];
        let after = vec![
            proc(50, 1, 10, 0, "srv"),
            // 51 exited; 52's pid now names a new process.
            proc(52, 1, 35, 0, "srv"),
            proc(53, 1, 40, 0, "srv"),
            // 54 and 55 were born in the window.
            proc(54, 1, 50, 0, "srv"),
            proc(55, 1, 60, 0, "srv"),
        ];
        let plan = plan_from(&samples(before, after), &policy(1));
        assert_eq!(roots(&plan.victims), vec![50]);
        assert_eq!(roots(&plan.kept), vec![53]);
    }

    #[test]
    fn members_are_the_subtree_of_the_second_reading() {
        let before = vec![proc(60, 1, 1, 0, "srv"), proc(61, 1, 2, 0, "srv")];
        let mut after = before.clone();
        after.push(proc(62, 60, 3, 0, "sleep 1"));
        after.push(proc(63, 62, 4, 0, "sleep 2"));
        let plan = plan_from(&samples(before, after), &policy(1));
        assert_eq!(roots(&plan.victims), vec![60]);
        let members: Vec<i32> = plan.victims[0].members.iter().map(|m| m.pid).collect();
        assert_eq!(members, vec![60, 62, 63]);
    }

    #[test]
    fn no_duplicates_plan_nothing() {
        let one = vec![proc(70, 1, 1, 0, "a"), proc(71, 1, 2, 0, "b")];
        let plan = plan_from(&samples(one, Vec::new()), &policy(1));
        assert!(plan.victims.is_empty() && plan.kept.is_empty());
        assert_eq!(plan.protected_skipped, 0);
    }
}
