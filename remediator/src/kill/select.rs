//! Choosing which duplicate copies to kill, and whether a command line is
//! protected. Everything here is pure: the planner reads `/proc` and the
//! cgroup filesystem, then asks these functions what to do.
//!
//! A *copy* is one sibling of a duplicate group together with its whole
//! subtree. Within a group, copies are killed least active first (CPU ticks
//! the subtree used during a sampling window), ties broken oldest first, so
//! the copies that survive are the most active and then the newest: a copy
//! serving a client burns CPU, and among idle copies the newest is the one
//! most likely to belong to a client that is still connected, while the oldest
//! idle ones are the leaked leftovers.

use std::cmp::Ordering;
use std::collections::HashSet;

use regex::Regex;

/// Why a copy must not be killed whatever its activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spared {
    /// A member's command line matches a protected pattern.
    Protected,
    /// A member is the container's init (PID 1 in its namespace).
    Init,
}

impl Spared {
    /// The reason, in words.
    pub fn as_str(self) -> &'static str {
        match self {
            Spared::Protected => "protected",
            Spared::Init => "init",
        }
    }
}

/// One copy considered for killing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// PID of the copy's root (the group member).
    pub root: i32,
    /// Start time of the root, in clock ticks since boot.
    pub start_time: u64,
    /// PIDs of the root and all its descendants, root first.
    pub members: Vec<i32>,
    /// CPU ticks the whole subtree used during the sampling window.
    pub cpu_ticks: u64,
    /// Set when the copy must survive whatever its activity.
    pub spared: Option<Spared>,
}

/// The copies of one duplicate group (siblings with one parent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateGroup {
    /// The common parent.
    pub ppid: i32,
    /// The copies, in any order.
    pub copies: Vec<Candidate>,
}

/// What [`select_victims`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Copies to kill, least active (then oldest) first.
    pub victims: Vec<Candidate>,
    /// Copies kept, most active (then newest) first.
    pub kept: Vec<Candidate>,
    /// Copies left alone because they are protected or hold the init.
    pub spared: Vec<Candidate>,
}

/// Kill order: least CPU first, then oldest (smallest start time), then
/// smallest pid so the order is total.
pub fn kill_order(a: &Candidate, b: &Candidate) -> Ordering {
    a.cpu_ticks
        .cmp(&b.cpu_ticks)
        .then(a.start_time.cmp(&b.start_time))
        .then(a.root.cmp(&b.root))
}

/// Picks the victims of every group, keeping `keep` copies per group (at
/// least one: a `keep` of 0 is treated as 1, so a group is never wiped out).
///
/// Spared copies are neither victims nor counted towards `keep`: they are
/// outside the decision. A group nested inside a victim copy (its parent is a
/// member of that copy) is dropped from the result, since its copies die with
/// their ancestor; groups nested inside kept copies are decided on their own.
pub fn select_victims(groups: &[CandidateGroup], keep: usize) -> Selection {
    let keep = keep.max(1);
    let mut victims: Vec<(i32, Candidate)> = Vec::new();
    let mut kept: Vec<(i32, Candidate)> = Vec::new();
    let mut spared: Vec<(i32, Candidate)> = Vec::new();
    for g in groups {
        let mut eligible: Vec<&Candidate> = Vec::new();
        for c in &g.copies {
            if c.spared.is_some() {
                spared.push((g.ppid, c.clone()));
            } else {
                eligible.push(c);
            }
        }
        eligible.sort_by(|a, b| kill_order(a, b));
        let n_kill = eligible.len().saturating_sub(keep);
        for (i, c) in eligible.into_iter().enumerate() {
            if i < n_kill {
                victims.push((g.ppid, c.clone()));
            } else {
                kept.push((g.ppid, c.clone()));
            }
        }
    }
    let doomed: HashSet<i32> = victims
        .iter()
        .flat_map(|(_, c)| c.members.iter().copied())
        .collect();
    let outside = |list: Vec<(i32, Candidate)>| -> Vec<Candidate> {
        list.into_iter()
            .filter(|(ppid, _)| !doomed.contains(ppid))
            .map(|(_, c)| c)
            .collect()
    };
    let mut victims = outside(victims);
    let mut kept = outside(kept);
    let spared = outside(spared);
    victims.sort_by(kill_order);
    kept.sort_by(|a, b| kill_order(b, a));
    Selection {
        victims,
        kept,
        spared,
    }
}

/// True when any of `cmdlines` (as shown: arguments joined by spaces)
/// matches any of the `protected` patterns.
pub fn is_protected<S: AsRef<str>>(
    cmdlines: impl IntoIterator<Item = S>,
    protected: &[Regex],
) -> bool {
    if protected.is_empty() {
        return false;
    }
    cmdlines
        .into_iter()
        .any(|c| protected.iter().any(|re| re.is_match(c.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(root: i32, start_time: u64, cpu_ticks: u64) -> Candidate {
        Candidate {
            root,
            start_time,
            members: vec![root],
            cpu_ticks,
            spared: None,
        }
    }

    fn roots(list: &[Candidate]) -> Vec<i32> {
        list.iter().map(|c| c.root).collect()
    }

    #[test]
    fn least_active_die_first_and_ties_go_oldest_first() {
        let g = CandidateGroup {
            ppid: 1,
            copies: vec![
                copy(10, 500, 0),
                copy(11, 100, 0),
                copy(12, 300, 40),
                copy(13, 200, 0),
                copy(14, 400, 3),
            ],
        };
        let s = select_victims(std::slice::from_ref(&g), 1);
        assert_eq!(roots(&s.victims), vec![11, 13, 10, 14]);
        assert_eq!(roots(&s.kept), vec![12]);
        assert!(s.spared.is_empty());

        let s = select_victims(std::slice::from_ref(&g), 2);
        assert_eq!(roots(&s.victims), vec![11, 13, 10]);
        assert_eq!(roots(&s.kept), vec![12, 14]);

        // All idle: the newest survives.
        let idle = CandidateGroup {
            ppid: 1,
            copies: vec![copy(20, 30, 0), copy(21, 10, 0), copy(22, 20, 0)],
        };
        let s = select_victims(&[idle], 1);
        assert_eq!(roots(&s.victims), vec![21, 22]);
        assert_eq!(roots(&s.kept), vec![20]);
    }

    #[test]
    fn equal_start_times_fall_back_to_pid() {
        let g = CandidateGroup {
            ppid: 1,
            copies: vec![copy(31, 7, 0), copy(30, 7, 0)],
        };
        let s = select_victims(&[g], 1);
        assert_eq!(roots(&s.victims), vec![30]);
        assert_eq!(roots(&s.kept), vec![31]);
    }

    #[test]
    fn keep_zero_still_keeps_one_and_small_groups_lose_nothing() {
        let g = CandidateGroup {
            ppid: 1,
            copies: vec![copy(2, 1, 0), copy(3, 2, 0)],
        };
        let s = select_victims(std::slice::from_ref(&g), 0);
        assert_eq!(roots(&s.victims), vec![2]);
        assert_eq!(roots(&s.kept), vec![3]);
        let s = select_victims(&[g], 5);
        assert!(s.victims.is_empty());
        assert_eq!(s.kept.len(), 2);
    }

    #[test]
    fn spared_copies_are_never_victims_and_do_not_count_towards_keep() {
        let mut p = copy(40, 1, 0);
        p.spared = Some(Spared::Protected);
        let mut i = copy(41, 2, 0);
        i.spared = Some(Spared::Init);
        let g = CandidateGroup {
            ppid: 1,
            copies: vec![p, i, copy(42, 3, 0), copy(43, 4, 0), copy(44, 5, 9)],
        };
        let s = select_victims(&[g], 1);
        assert_eq!(roots(&s.victims), vec![42, 43]);
        assert_eq!(roots(&s.kept), vec![44]);
        assert_eq!(roots(&s.spared), vec![40, 41]);
    }

    #[test]
    fn groups_nested_in_a_victim_die_with_it_and_others_are_decided_alone() {
        // Outer group under pid 1: copies 10 (members 10, 11, 12) and 20
        // (members 20, 21, 22, 23). Inside 10: group of 11 and 12 under 10.
        // Inside 20: group of 22 and 23 under 21.
        let mut a = copy(10, 1, 0);
        a.members = vec![10, 11, 12];
        let mut b = copy(20, 2, 50);
        b.members = vec![20, 21, 22, 23];
        let outer = CandidateGroup {
            ppid: 1,
            copies: vec![a, b],
        };
        let in_victim = CandidateGroup {
            ppid: 10,
            copies: vec![copy(11, 3, 0), copy(12, 4, 0)],
        };
        let in_kept = CandidateGroup {
            ppid: 21,
            copies: vec![copy(22, 5, 0), copy(23, 6, 1)],
        };
        let s = select_victims(&[in_victim, in_kept, outer], 1);
        assert_eq!(roots(&s.victims), vec![10, 22]);
        assert_eq!(roots(&s.kept), vec![20, 23]);
    }

    #[test]
    fn protected_matches_any_command_line() {
        let pats = vec![
            Regex::new(r"^postgres\b").unwrap(),
            Regex::new(r"--keep-me").unwrap(),
        ];
        assert!(is_protected(["sh -c x", "postgres -D /data"], &pats));
        assert!(is_protected(["node server.js --keep-me"], &pats));
        assert!(!is_protected(["sh -c postgres", "sleep 10"], &pats));
        assert!(!is_protected(["anything"], &[]));
        assert!(!is_protected(std::iter::empty::<&str>(), &pats));
    }
}
