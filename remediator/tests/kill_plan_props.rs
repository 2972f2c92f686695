//! The kill planner over generated process trees (a cgroup v2 layout and a
//! `/proc` of plain files): processes in the target container, in another
//! container and on the host; duplicate groups; the container's init in a
//! group; protected command lines; and pids recycled between the two
//! readings of the sampling window (same pid, new start time, possibly
//! another cgroup, parent and command line). Whatever the tree, every
//! planned victim is a live process of the target container as of the
//! second reading, never its init, never protected, and never a kept copy.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use pidwarden_remediator::kill::{plan_with_window, CopyPlan, KillPlan, KillPolicy};
use pidwarden_shared::collect::Collector;
use pidwarden_shared::Roots;
use proptest::prelude::*;

/// The target container and another one.
const TARGET: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OTHER: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// Command lines to draw from, few enough that siblings often share one.
/// `a b` and `"a b"` read the same joined; `keep …` is protected.
const COMMANDS: &[&[&str]] = &[
    &["npm", "exec", "srv"],
    &["npm", "exec", "srv"],
    &["sh", "-c", "a b"],
    &["sh", "-c", "a", "b"],
    &["sleep", "1000"],
    &["keep", "me"],
];

/// Where a process lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Target,
    Other,
    Host,
}

/// One process of one reading.
#[derive(Debug, Clone)]
struct Proc {
    pid: i32,
    ppid: i32,
    start: u64,
    place: Place,
    /// PID 1 of its container's namespace.
    init: bool,
    argv: Vec<&'static str>,
    cpu: u64,
    child_cpu: u64,
}

impl Proc {
    fn identity(&self) -> (i32, u64) {
        (self.pid, self.start)
    }
    fn shown(&self) -> String {
        self.argv.join(" ")
    }
}

/// What happens to a process of the first reading by the second.
#[derive(Debug, Clone)]
enum Fate {
    /// Still there, having used this much more CPU (own, reaped children).
    Lives(u64, u64),
    /// Exited and reaped.
    Exits,
    /// Its pid now belongs to a new process: where, which command, and
    /// (an index into the earlier processes) whose child it is.
    Recycled(Place, usize, usize),
}

/// A process spec of the first reading, after the fixed ones: parent (an
/// index into earlier processes), moved to another place than its parent,
/// command, CPU, fate.
type Spec = (usize, Option<Place>, usize, u64, u64, Fate);

fn place() -> impl Strategy<Value = Place> {
    prop_oneof![Just(Place::Target), Just(Place::Other), Just(Place::Host)]
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        6 => (0..50u64, 0..50u64).prop_map(|(a, b)| Fate::Lives(a, b)),
        1 => Just(Fate::Exits),
        2 => (place(), 0..COMMANDS.len(), any::<prop::sample::Index>().prop_map(|i| i.index(1 << 16)))
            .prop_map(|(p, c, i)| Fate::Recycled(p, c, i)),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<prop::sample::Index>().prop_map(|i| i.index(1 << 16)),
        prop_oneof![4 => Just(None), 1 => place().prop_map(Some)],
        0..COMMANDS.len(),
        0..100u64,
        0..100u64,
        fate(),
    )
}

/// The two readings built from the specs. Fixed processes: the host's
/// init (1), a shim (2), the target's init (3, a child of the shim, with a
/// command line from the table so it can be in a group with a sibling the
/// shim also started in the container) and the other container's init (4).
fn readings(init_cmd: usize, specs: &[Spec]) -> (Vec<Proc>, Vec<Proc>) {
    let fixed = |pid, ppid, place, init, argv: &[&'static str]| Proc {
        pid,
        ppid,
        start: pid as u64,
        place,
        init,
        argv: argv.to_vec(),
        cpu: 0,
        child_cpu: 0,
    };
    let mut first = vec![
        fixed(1, 0, Place::Host, false, &["init"]),
        fixed(2, 1, Place::Host, false, &["shim"]),
        fixed(3, 2, Place::Target, true, COMMANDS[init_cmd]),
        fixed(4, 2, Place::Other, true, &["init"]),
    ];
    for (i, (parent, moved, cmd, cpu, child_cpu, _)) in specs.iter().enumerate() {
        let parent = &first[parent % first.len()];
        let pid = 10 + i as i32;
        first.push(Proc {
            pid,
            ppid: parent.pid,
            start: 100 + pid as u64,
            place: moved.unwrap_or(parent.place),
            init: false,
            argv: COMMANDS[*cmd].to_vec(),
            cpu: *cpu,
            child_cpu: *child_cpu,
        });
    }
    let mut second: Vec<Proc> = first[..4].to_vec();
    for (i, (.., fate)) in specs.iter().enumerate() {
        let was = &first[4 + i];
        match fate {
            Fate::Lives(cpu, child_cpu) => second.push(Proc {
                cpu: was.cpu + cpu,
                child_cpu: was.child_cpu + child_cpu,
                ..was.clone()
            }),
            Fate::Exits => {}
            Fate::Recycled(place, cmd, parent) => {
                // A parent among the processes before it (no cycles).
                let parents = &second[..];
                let parent = &parents[parent % parents.len()];
                second.push(Proc {
                    ppid: parent.pid,
                    start: 10_000 + was.pid as u64,
                    place: *place,
                    argv: COMMANDS[*cmd].to_vec(),
                    cpu: 1,
                    child_cpu: 0,
                    ..was.clone()
                });
            }
        }
    }
    // A process whose parent exited (its pid gone, or now another
    // process's) was reparented to the host's init.
    let gone: HashSet<(i32, u64)> = {
        let now: HashSet<(i32, u64)> = second.iter().map(Proc::identity).collect();
        first
            .iter()
            .map(Proc::identity)
            .filter(|id| !now.contains(id))
            .collect()
    };
    let parent_of: HashMap<i32, u64> = first.iter().map(|p| (p.pid, p.start)).collect();
    let live: HashSet<i32> = second.iter().map(|p| p.pid).collect();
    for p in &mut second {
        // Recycled processes got a parent of the second reading.
        let survivor = p.start < 10_000;
        let old_parent = parent_of.get(&p.ppid).map(|&start| (p.ppid, start));
        if p.pid != 1
            && (!live.contains(&p.ppid)
                || (survivor && old_parent.is_some_and(|id| gone.contains(&id))))
        {
            p.ppid = 1;
        }
    }
    (first, second)
}

fn write(path: &Path, content: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// The cgroup directory of `place` under the cgroup root.
fn cgroup_of(place: Place) -> String {
    match place {
        Place::Target => format!("/system.slice/docker-{TARGET}.scope"),
        Place::Other => format!("/system.slice/docker-{OTHER}.scope"),
        Place::Host => "/".into(),
    }
}

/// Writes one reading as a fixture tree (replacing the previous one).
fn lay_out(root: &Path, procs: &[Proc]) {
    let _ = std::fs::remove_dir_all(root);
    let cg = root.join("cgroup");
    let proc = root.join("proc");
    write(&cg.join("cgroup.controllers"), "cpu memory pids\n");
    for place in [Place::Target, Place::Other, Place::Host] {
        let members: Vec<&Proc> = procs.iter().filter(|p| p.place == place).collect();
        let list: String = members.iter().map(|p| format!("{}\n", p.pid)).collect();
        let dir = cg.join(cgroup_of(place).trim_start_matches('/'));
        write(&dir.join("cgroup.procs"), list);
        if place == Place::Host {
            continue;
        }
        write(&dir.join("pids.current"), format!("{}\n", members.len()));
        write(&dir.join("pids.max"), "max\n");
        write(&dir.join("pids.events"), "max 0\n");
        write(&dir.join("memory.current"), "10000\n");
        write(&dir.join("memory.stat"), "anon 6000\ninactive_file 4000\n");
        write(&dir.join("memory.max"), "max\n");
        write(
            &dir.join("memory.events"),
            "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
        );
    }
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    for p in procs {
        let dir = proc.join(p.pid.to_string());
        write(
            &dir.join("stat"),
            format!(
                "{} (x) S {} 1 1 0 -1 0 0 0 0 0 {} 0 {} 0 20 0 1 0 {} 0 0\n",
                p.pid, p.ppid, p.cpu, p.child_cpu, p.start
            ),
        );
        let raw: String = p.argv.iter().map(|a| format!("{a}\0")).collect();
        write(&dir.join("cmdline"), raw);
        let nspid = match (p.place, p.init) {
            (Place::Host, _) => format!("{}", p.pid),
            (_, true) => format!("{}\t1", p.pid),
            (_, false) => format!("{}\t{}", p.pid, p.pid + 1),
        };
        write(
            &dir.join("status"),
            format!("Name:\tx\nPid:\t{}\nNSpid:\t{nspid}\n", p.pid),
        );
        write(&dir.join("cgroup"), format!("0::{}\n", cgroup_of(p.place)));
        let kids: String = children
            .get(&p.pid)
            .into_iter()
            .flatten()
            .map(|c| format!("{c} "))
            .collect();
        write(
            &dir.join("task").join(p.pid.to_string()).join("children"),
            kids,
        );
    }
}

/// Checks every promise the plan makes about its victims.
fn check_plan(plan: &KillPlan, first: &[Proc], second: &[Proc]) -> Result<(), TestCaseError> {
    let now: HashMap<(i32, u64), &Proc> = second.iter().map(|p| (p.identity(), p)).collect();
    let then: HashSet<(i32, u64)> = first.iter().map(Proc::identity).collect();
    let protected = |p: &Proc| p.argv.first() == Some(&"keep");
    let kept_roots: HashSet<i32> = plan.kept.iter().map(|k| k.root.pid).collect();
    let in_kept: HashMap<i32, &CopyPlan> = plan
        .kept
        .iter()
        .flat_map(|k| k.members.iter().map(move |m| (m.pid, k)))
        .collect();
    for v in &plan.victims {
        // The copy's root is the same process in both readings.
        let root = (v.root.pid, v.root.start_time);
        prop_assert!(
            then.contains(&root),
            "root {root:?} not in the first reading"
        );
        prop_assert!(now.contains_key(&root), "root {root:?} not in the second");
        for m in &v.members {
            let id = (m.pid, m.start_time);
            let Some(p) = now.get(&id) else {
                return Err(TestCaseError::fail(format!(
                    "victim {id:?} is no live process of the second reading"
                )));
            };
            prop_assert_eq!(p.place, Place::Target, "victim {:?} outside the target", id);
            prop_assert!(!p.init, "victim {id:?} is the container's init");
            prop_assert!(!protected(p), "victim {id:?} is protected");
            prop_assert!(!kept_roots.contains(&m.pid), "victim {id:?} is a kept root");
            prop_assert_eq!(&m.command, &p.shown());
            // A duplicate group nested inside a kept copy is decided on its
            // own: its victims lie strictly below that copy's root.
            if let Some(k) = in_kept.get(&m.pid) {
                prop_assert!(
                    k.members.iter().any(|km| km.pid == v.root.pid) && k.root.pid != v.root.pid,
                    "victim {id:?} belongs to kept copy {:?} but its copy is not nested in it",
                    k.root
                );
            }
        }
        // Kept and victim copies of one group (one parent, one argument
        // list) never share a process.
        for k in &plan.kept {
            let same_group = now
                .get(&(k.root.pid, k.root.start_time))
                .map(|p| (p.ppid, &p.argv))
                == now.get(&root).map(|p| (p.ppid, &p.argv));
            if same_group {
                prop_assert!(
                    !k.members
                        .iter()
                        .any(|km| v.members.iter().any(|vm| vm.pid == km.pid)),
                    "kept {:?} and victim {:?} overlap",
                    k.root,
                    v.root
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn victims_are_live_unprotected_non_init_processes_of_the_target_only(
        init_cmd in 0..COMMANDS.len(),
        specs in prop::collection::vec(spec(), 2..28),
    ) {
        let (first, second) = readings(init_cmd, &specs);
        // In memory when the host has a tmpfs there: each case writes a few
        // hundred small files twice.
        let dir = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let root = dir.path().join("t");
        lay_out(&root, &first);
        let roots = Roots::new(root.join("proc"), root.join("cgroup"));
        let mut collector = Collector::with_threads(roots, 1);
        let policy = KillPolicy {
            protected: vec![regex::Regex::new(r"^keep\b").unwrap()],
            ..KillPolicy::default()
        };
        let plan = plan_with_window(&mut collector, TARGET, &policy, || lay_out(&root, &second))
            .expect("planning over the fixture")
            .expect("the target is discovered");
        check_plan(&plan, &first, &second)?;
    }
}
