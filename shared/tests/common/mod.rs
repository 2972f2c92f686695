//! Helpers of the kernel tests: fake Docker containers made of the kit's
//! test cgroups, reaping, and the kernel's own view of a container read
//! straight from `cgroup.procs` and `/proc`, to hold collections against.
#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::process::Command;

use pidwarden_shared::collect::ContainerSnapshot;
use pidwarden_shared::groups::{duplicate_groups, Group};
use pidwarden_shared::procfs::{parse_cmdline, parse_stat, Cmdline, Process};
use pidwarden_tests::{require_cgroups, ChildGuard, TestCgroup};

pub fn random_hex(n: usize) -> String {
    let mut out = String::new();
    while out.len() < n {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        h.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(n);
    out
}

/// The host's roots, with the cgroup parents of `containers` configured:
/// what a collection of fake containers needs.
pub fn roots_with<'a>(
    containers: impl IntoIterator<Item = &'a TestContainer>,
) -> pidwarden_shared::Roots {
    containers
        .into_iter()
        .fold(pidwarden_shared::Roots::default(), |r, c| {
            r.with_cgroup_parent(c.cgroup_parent())
        })
}

/// A fake Docker container: the kit's test cgroups
/// `<ctrl>/pidwarden-test-…/docker/<id>` in the given hierarchies, and the
/// shell started in them. On drop, on failure too, the shell is killed and
/// reaped, the kit kills whatever is left inside and removes the cgroups,
/// and the orphans that came back to this subreaper are reaped.
pub struct TestContainer {
    pub id: String,
    cg: Option<TestCgroup>,
    child: Option<ChildGuard>,
}

impl TestContainer {
    /// Creates the cgroups (pids and memory); `None` when
    /// `PIDWARDEN_SKIP_DOCKER=1`.
    pub fn create() -> Option<TestContainer> {
        Self::create_in(&["pids", "memory"])
    }

    /// Creates the cgroups in the given hierarchies; `None` when
    /// `PIDWARDEN_SKIP_DOCKER=1`.
    pub fn create_in(controllers: &[&str]) -> Option<TestContainer> {
        if !require_cgroups() {
            return None;
        }
        let id = random_hex(64);
        let cg = TestCgroup::new(controllers, &format!("docker/{id}"));
        Some(TestContainer {
            id,
            cg: Some(cg),
            child: None,
        })
    }

    pub fn cgroup(&self) -> &TestCgroup {
        self.cg.as_ref().expect("the cgroups live until drop")
    }

    /// The cgroup parent its `docker/<id>` sits under: the top test cgroup,
    /// which no runtime uses, so collections are told of it
    /// ([`roots_with`]).
    pub fn cgroup_parent(&self) -> String {
        self.cgroup().name().to_string()
    }

    /// Starts `sh -c script [sh args…]` inside the cgroups: the child
    /// moves itself in before exec, so all its descendants are born inside.
    pub fn spawn(&mut self, script: &str, args: &[&str]) {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        if !args.is_empty() {
            cmd.arg("sh").args(args);
        }
        let child = self.cgroup().spawn_in(&mut cmd);
        self.child = Some(ChildGuard(child));
    }

    pub fn sh_pid(&self) -> i32 {
        self.child.as_ref().expect("a shell was spawned").id() as i32
    }

    /// The pids listed in the pids leaf's `cgroup.procs`.
    pub fn listed(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .cgroup()
            .procs("pids")
            .into_iter()
            .map(|p| p as i32)
            .collect();
        v.sort_unstable();
        v
    }

    /// What the kernel says about the container, read directly.
    pub fn kernel_view(&self) -> View {
        let mut listed: Vec<i32> = self
            .cgroup()
            .all_pids()
            .into_iter()
            .map(|p| p as i32)
            .collect();
        listed.sort_unstable();
        let mut live = Vec::new();
        let mut zombies = Vec::new();
        for pid in listed {
            match read(pid) {
                Some(p) if p.is_zombie() => zombies.push(p),
                Some(p) => live.push(p),
                None => {}
            }
        }
        for p in &live {
            for child in children(p.pid) {
                if live.iter().chain(&zombies).any(|q| q.pid == child) {
                    continue;
                }
                if let Some(c) = read(child).filter(Process::is_zombie) {
                    zombies.push(c);
                }
            }
        }
        let tasks = self
            .cgroup()
            .read("pids", "pids.current")
            .trim()
            .parse()
            .ok();
        View::of(&live, &zombies, tasks)
    }
}

/// Reads one process straight from `/proc`.
fn read(pid: i32) -> Option<Process> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let s = parse_stat(&stat)?;
    let cmdline = if s.state.is_zombie() {
        Cmdline::default()
    } else {
        parse_cmdline(&std::fs::read(format!("/proc/{pid}/cmdline")).ok()?)
    };
    Some(Process {
        pid,
        ppid: s.ppid,
        start_time: s.start_time,
        state: s.state,
        comm: s.comm.into(),
        cmdline,
        threads: s.threads,
        cpu_ticks: s.cpu_ticks,
        child_cpu_ticks: s.child_cpu_ticks,
    })
}

/// The children of every thread of `pid`, straight from `/proc`.
fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    out
}

/// A container's processes as compared: what identifies each and what the
/// metrics are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// (pid, ppid, start time, command line) of the live processes.
    pub live: BTreeSet<(i32, i32, u64, String)>,
    /// (pid, ppid, start time) of the zombies.
    pub zombies: BTreeSet<(i32, i32, u64)>,
    /// Duplicate groups.
    pub groups: Vec<Group>,
    /// `pids.current`.
    pub tasks: Option<u64>,
}

impl View {
    pub fn of(live: &[Process], zombies: &[Process], tasks: Option<u64>) -> View {
        View {
            live: live
                .iter()
                .map(|p| (p.pid, p.ppid, p.start_time, p.cmdline.raw().to_owned()))
                .collect(),
            zombies: zombies
                .iter()
                .map(|p| (p.pid, p.ppid, p.start_time))
                .collect(),
            groups: duplicate_groups(live),
            tasks,
        }
    }

    pub fn of_snapshot(c: &ContainerSnapshot) -> View {
        let mut v = View::of(
            &c.processes.live,
            &c.processes.zombies,
            c.pids.map(|p| p.current),
        );
        v.groups = c.groups.to_vec();
        v
    }
}

/// Reaps whatever child of this process has exited, without blocking.
pub fn reap_any() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer and WNOHANG.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r <= 0 {
            break;
        }
    }
}

/// Makes this test binary a child subreaper: orphans of the processes it
/// starts come back to it to be reaped.
pub fn become_subreaper() {
    // SAFETY: prctl with an integer argument; it only marks this process.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER");
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        self.child = None;
        self.cg = None;
        reap_any();
    }
}

pub fn find(snapshot: &[ContainerSnapshot], id: &str) -> Option<ContainerSnapshot> {
    snapshot.iter().find(|c| c.container.id == id).cloned()
}
