//! Duplicate grouping: sibling processes (same parent) with identical command
//! lines (argument for argument, not as joined text) are copies of one
//! another. A *copy* is one such sibling together with its whole subtree.

use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};

use crate::procfs::{Cmdline, Process};

/// A group of sibling processes with the same command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// The common parent.
    pub ppid: i32,
    /// The common command line (unredacted; redact its display text before
    /// it becomes a label).
    pub cmdline: Cmdline,
    /// The members' pids, oldest first (by start time, then pid).
    pub pids: Vec<i32>,
}

/// Groups `procs` into sibling groups of 2 or more with identical, non-empty
/// command lines (compared argument for argument), largest first (ties by command line, then parent). Zombies
/// are left out: they are no copies, only unreaped exits. Pure.
pub fn duplicate_groups(procs: &[Process]) -> Vec<Group> {
    let mut by_key: HashMap<(i32, &Cmdline), Vec<&Process>> = HashMap::new();
    // Keyed by the arguments, byte for byte (see [`Cmdline`]): `a "b c"` and
    // `a b c` differ, and so do two command lines that differ only past the
    // prefix kept of them, or only in bytes that are not UTF-8.
    for p in procs {
        if p.cmdline.is_empty() || p.is_zombie() {
            continue;
        }
        by_key.entry((p.ppid, &p.cmdline)).or_default().push(p);
    }
    let mut groups: Vec<Group> = by_key
        .into_values()
        .filter(|members| members.len() >= 2)
        .map(|mut members| {
            members.sort_unstable_by_key(|p| (p.start_time, p.pid));
            members.dedup_by_key(|p| p.pid);
            Group {
                ppid: members[0].ppid,
                cmdline: members[0].cmdline.clone(),
                pids: members.iter().map(|p| p.pid).collect(),
            }
        })
        .filter(|g| g.pids.len() >= 2)
        .collect();
    groups.sort_by(|a, b| {
        b.pids
            .len()
            .cmp(&a.pids.len())
            .then_with(|| a.cmdline.cmp(&b.cmdline))
            .then_with(|| a.ppid.cmp(&b.ppid))
    });
    groups
}

/// Surplus copies: Σ (group size − 1) over all groups.
pub fn surplus(groups: &[Group]) -> u64 {
    groups.iter().map(|g| g.pids.len() as u64 - 1).sum()
}

/// The pids of `root` and all its descendants among `procs` (a copy), root
/// first, then breadth first (siblings by pid). Empty when `root` is not
/// among `procs`. Pure.
pub fn subtree(procs: &[Process], root: i32) -> Vec<i32> {
    if !procs.iter().any(|p| p.pid == root) {
        return Vec::new();
    }
    descendants(&children_of(procs), &[root])
}

/// Parent pid → its children's pids among `procs`, each list sorted. Pure.
pub fn children_of(procs: &[Process]) -> HashMap<i32, Vec<i32>> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in procs {
        if p.pid != p.ppid {
            children.entry(p.ppid).or_default().push(p.pid);
        }
    }
    for kids in children.values_mut() {
        kids.sort_unstable();
        kids.dedup();
    }
    children
}

/// `roots` and every descendant of them in `children` (from
/// [`children_of`]), each once: roots first, then breadth first. Pure.
pub fn descendants(children: &HashMap<i32, Vec<i32>>, roots: &[i32]) -> Vec<i32> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut queue: VecDeque<i32> = roots.iter().copied().collect();
    while let Some(pid) = queue.pop_front() {
        if !seen.insert(pid) {
            continue;
        }
        out.push(pid);
        if let Some(kids) = children.get(&pid) {
            queue.extend(kids.iter().copied().filter(|k| !seen.contains(k)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A command line from text, one argument per space-separated word.
    fn cmd(text: &str) -> Cmdline {
        Cmdline::from_args(text.split(' ').filter(|w| !w.is_empty()))
    }

    fn p(pid: i32, ppid: i32, start: u64, cmd_text: &str) -> Process {
        Process {
            pid,
            ppid,
            start_time: start,
            state: crate::procfs::ProcState::Sleeping,
            comm: Arc::from("x"),
            cmdline: cmd(cmd_text),
            threads: 1,
            cpu_ticks: 0,
            child_cpu_ticks: 0,
        }
    }

    #[test]
    fn siblings_with_identical_cmdlines_group_oldest_first() {
        let procs = vec![
            p(1, 0, 1, "init"),
            p(10, 1, 50, "npm exec srv"),
            p(11, 1, 40, "npm exec srv"),
            p(12, 1, 40, "npm exec srv"),
            p(20, 1, 60, "uvx tool"),
            p(21, 1, 61, "uvx tool"),
            p(30, 1, 70, "lonely"),
            // Same cmdline, other parent: not a sibling of 10..12.
            p(40, 10, 80, "npm exec srv"),
            // Kernel-thread-like empty command lines never group.
            p(50, 1, 90, ""),
            p(51, 1, 91, ""),
        ];
        let groups = duplicate_groups(&procs);
        assert_eq!(
            groups,
            vec![
                Group {
                    ppid: 1,
                    cmdline: cmd("npm exec srv"),
                    pids: vec![11, 12, 10],
                },
                Group {
                    ppid: 1,
                    cmdline: cmd("uvx tool"),
                    pids: vec![20, 21],
                },
            ]
        );
        assert_eq!(surplus(&groups), 3);
    }

    #[test]
    fn equal_sizes_order_by_cmdline_then_parent() {
        let procs = vec![
            p(10, 2, 1, "b"),
            p(11, 2, 2, "b"),
            p(12, 1, 1, "b"),
            p(13, 1, 2, "b"),
            p(14, 1, 1, "a"),
            p(15, 1, 2, "a"),
        ];
        let groups = duplicate_groups(&procs);
        let keys: Vec<(i32, &str)> = groups.iter().map(|g| (g.ppid, g.cmdline.raw())).collect();
        assert_eq!(keys, vec![(1, "a"), (1, "b"), (2, "b")]);
        assert_eq!(surplus(&groups), 3);
    }

    #[test]
    fn arguments_are_compared_apart_not_as_joined_text() {
        // `sh /w.sh "a b"` three times and `sh /w.sh a b` three times: two
        // groups of three (surplus 4), not one of six (surplus 5).
        let quoted = Cmdline::from_args(["sh", "/w.sh", "a b"]);
        let split = Cmdline::from_args(["sh", "/w.sh", "a", "b"]);
        let mut procs = Vec::new();
        for i in 0..3 {
            let mut a = p(10 + i, 1, 1, "");
            a.cmdline = quoted.clone();
            let mut b = p(20 + i, 1, 1, "");
            b.cmdline = split.clone();
            procs.extend([a, b]);
        }
        let groups = duplicate_groups(&procs);
        assert_eq!(groups.len(), 2, "{groups:#?}");
        assert_eq!(surplus(&groups), 4);
        let mut members: Vec<Vec<i32>> = groups.iter().map(|g| g.pids.clone()).collect();
        members.sort();
        assert_eq!(members, vec![vec![10, 11, 12], vec![20, 21, 22]]);
        assert!(groups.iter().all(|g| g.cmdline.display() == "sh /w.sh a b"));
    }

    #[test]
    fn zombies_and_no_processes_make_no_groups() {
        let mut z = p(11, 1, 2, "a");
        z.state = crate::procfs::ProcState::Zombie;
        assert!(duplicate_groups(&[p(10, 1, 1, "a"), z]).is_empty());
        assert!(duplicate_groups(&[]).is_empty());
        assert_eq!(surplus(&[]), 0);
    }

    #[test]
    fn subtree_is_root_first_breadth_first() {
        // 10 ─┬─ 12 ── 14
        //     └─ 11 ── 13 ── 15
        let procs = vec![
            p(1, 0, 1, "init"),
            p(10, 1, 1, "npm exec x"),
            p(12, 10, 1, "sh -c x"),
            p(11, 10, 1, "node x"),
            p(13, 11, 1, "a"),
            p(14, 12, 1, "b"),
            p(15, 13, 1, "c"),
            p(20, 1, 1, "other"),
        ];
        assert_eq!(subtree(&procs, 10), vec![10, 11, 12, 13, 14, 15]);
        assert_eq!(subtree(&procs, 13), vec![13, 15]);
        assert_eq!(subtree(&procs, 20), vec![20]);
        assert_eq!(subtree(&procs, 99), Vec::<i32>::new());
    }

    #[test]
    fn subtree_survives_cycles_in_bad_data() {
        let procs = vec![p(5, 6, 1, "a"), p(6, 5, 1, "b"), p(7, 7, 1, "c")];
        assert_eq!(subtree(&procs, 5), vec![5, 6]);
        assert_eq!(subtree(&procs, 7), vec![7]);
    }
}
