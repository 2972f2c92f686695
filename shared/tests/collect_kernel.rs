//! Collection against the real kernel: a fake Docker container cgroup under
//! `/sys/fs/cgroup/<ctrl>/pidwarden-test-*/docker/<id>` (cgroup v1, as on the
//! test hosts), with real processes, duplicates and a zombie inside.
//!
//! Needs root and a writable cgroup v1 `pids` hierarchy; fails with a clear
//! message otherwise, unless `PIDWARDEN_SKIP_DOCKER=1` (the switch for every
//! test that needs Docker, root or real cgroups).
//!
//! Only one test here spawns processes: it makes this test binary a child
//! subreaper so that the orphans of its processes come back to it to be
//! reaped, and it reaps any child in its cleanup.

use std::collections::hash_map::RandomState;
use std::ffi::CString;
use std::hash::{BuildHasher, Hasher};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use pidwarden_shared::collect::{Collector, ContainerSnapshot};
use pidwarden_shared::groups::surplus;
use pidwarden_shared::Roots;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// sh ─┬─ sleep 1000  ×3  (duplicates: one group of 3, surplus 2)
///     └─ sleep 1001 ── zombie (`sleep 0.1`, never reaped: sleep does not wait)
const SCRIPT: &str =
    "sleep 1000 & sleep 1000 & sleep 1000 & sh -c 'sleep 0.1 & exec sleep 1001' & wait";

/// True (after saying so) when `PIDWARDEN_SKIP_DOCKER=1`: tests that need
/// root and real cgroups return early.
fn skip() -> bool {
    if std::env::var("PIDWARDEN_SKIP_DOCKER").as_deref() == Ok("1") {
        println!("skipped: PIDWARDEN_SKIP_DOCKER=1");
        return true;
    }
    false
}

fn random_hex(n: usize) -> String {
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

/// The test cgroups and the processes started in them; everything is
/// killed, reaped and removed on drop, on failure too.
struct TestContainer {
    id: String,
    /// Top directories (`<ctrl>/pidwarden-test-*`), one per controller.
    tops: Vec<PathBuf>,
    /// Leaf directories (`<top>/docker/<id>`).
    leaves: Vec<PathBuf>,
    child: Option<Child>,
}

impl TestContainer {
    /// Creates the cgroups; `None` when `PIDWARDEN_SKIP_DOCKER=1`.
    fn create() -> Option<TestContainer> {
        if skip() {
            return None;
        }
        let id = random_hex(64);
        let name = format!("pidwarden-test-collect-{}-{}", std::process::id(), &id[..8]);
        let mut tc = TestContainer {
            id: id.clone(),
            tops: Vec::new(),
            leaves: Vec::new(),
            child: None,
        };
        for ctrl in ["pids", "memory"] {
            let top = Path::new(CGROUP_ROOT).join(ctrl).join(&name);
            let leaf = top.join("docker").join(&id);
            if let Err(e) = std::fs::create_dir_all(&leaf) {
                // Clean what was made before failing.
                drop(tc);
                let _ = std::fs::remove_dir(top.join("docker"));
                let _ = std::fs::remove_dir(&top);
                panic!(
                    "cannot create the test cgroup {}: {e}. This test needs root and a \
                     cgroup v1 `{ctrl}` hierarchy at {CGROUP_ROOT}/{ctrl}; set \
                     PIDWARDEN_SKIP_DOCKER=1 to skip it",
                    leaf.display()
                );
            }
            tc.tops.push(top);
            tc.leaves.push(leaf);
        }
        Some(tc)
    }

    /// Starts `sh -c script` inside the cgroups: the child moves itself in
    /// (writing 0 to `cgroup.procs` moves the writer) before exec, so all
    /// its descendants are born inside.
    fn spawn(&mut self, script: &str) {
        let procs: Vec<CString> = self
            .leaves
            .iter()
            .map(|l| {
                CString::new(l.join("cgroup.procs").into_os_string().into_encoded_bytes()).unwrap()
            })
            .collect();
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        // SAFETY: the hook runs between fork and exec and only calls
        // async-signal-safe functions (open, write, close) on memory
        // prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                for path in &procs {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                    let err = std::io::Error::last_os_error();
                    libc::close(fd);
                    if n != 1 {
                        return Err(err);
                    }
                }
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().expect("spawn sh into the test cgroup"));
    }

    fn sh_pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// The pids listed in the pids leaf's `cgroup.procs`.
    fn listed(&self) -> Vec<i32> {
        let mut v: Vec<i32> = std::fs::read_to_string(self.leaves[0].join("cgroup.procs"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect();
        v.sort_unstable();
        v
    }
}

/// Reaps whatever child of this process has exited, without blocking.
fn reap_any() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer and WNOHANG.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r <= 0 {
            break;
        }
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        // Every process in these fresh cgroups was started by this test.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut alive = Vec::new();
            for leaf in &self.leaves {
                let content =
                    std::fs::read_to_string(leaf.join("cgroup.procs")).unwrap_or_default();
                alive.extend(
                    content
                        .split_whitespace()
                        .filter_map(|t| t.parse::<i32>().ok()),
                );
            }
            for &pid in &alive {
                // SAFETY: plain kill(2) of a pid in this test's own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if let Some(child) = self.child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
            }
            reap_any();
            let removed = self.leaves.iter().all(|l| match std::fs::remove_dir(l) {
                Ok(()) => true,
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            });
            if removed || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for top in &self.tops {
            let _ = std::fs::remove_dir(top.join("docker"));
            if let Err(e) = std::fs::remove_dir(top) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("could not remove {}: {e}", top.display());
                }
            }
        }
    }
}

fn find(snapshot: &[ContainerSnapshot], id: &str) -> Option<ContainerSnapshot> {
    snapshot.iter().find(|c| c.container.id == id).cloned()
}

#[test]
fn collects_processes_duplicates_and_zombies_from_a_real_cgroup() {
    // SAFETY: prctl with an integer argument; it only marks this process.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER");

    let Some(mut tc) = TestContainer::create() else {
        return;
    };
    tc.spawn(SCRIPT);
    let sh = tc.sh_pid();

    let mut collector = Collector::new(Roots::default());
    let deadline = Instant::now() + Duration::from_secs(15);
    let snap = loop {
        let snap = collector
            .collect_one(&tc.id)
            .expect("collect_one")
            .expect("container discovered");
        let steady = snap.processes.live.len() == 5
            && snap.processes.zombies.len() == 1
            && snap
                .processes
                .live
                .iter()
                .any(|p| &*p.cmdline == "sleep 1001");
        if steady {
            break snap;
        }
        assert!(
            Instant::now() < deadline,
            "never reached the expected state: {snap:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    let listed = tc.listed();
    let live_pids: Vec<i32> = snap.processes.live.iter().map(|p| p.pid).collect();
    assert_eq!(live_pids, listed, "live processes are exactly cgroup.procs");

    let mut cmdlines: Vec<&str> = snap.processes.live.iter().map(|p| &*p.cmdline).collect();
    cmdlines.sort_unstable();
    let sh_line = format!("sh -c {SCRIPT}");
    assert_eq!(
        cmdlines,
        vec![
            sh_line.as_str(),
            "sleep 1000",
            "sleep 1000",
            "sleep 1000",
            "sleep 1001"
        ]
    );
    let waiter = snap
        .processes
        .live
        .iter()
        .find(|p| &*p.cmdline == "sleep 1001")
        .unwrap();
    assert_eq!(waiter.ppid, sh);
    for p in &snap.processes.live {
        assert_ne!(p.state, 'Z');
        assert_eq!(p.threads, 1);
        if p.pid != sh {
            assert_eq!(p.ppid, sh, "{p:?}");
        }
    }

    let zombie = &snap.processes.zombies[0];
    assert_eq!(zombie.state, 'Z');
    assert_eq!(zombie.ppid, waiter.pid);
    assert_eq!(&*zombie.cmdline, "");
    assert_eq!(&*zombie.comm, "sleep");
    assert!(
        !listed.contains(&zombie.pid),
        "a zombie is not in cgroup.procs"
    );

    assert_eq!(snap.groups.len(), 1, "{:#?}", snap.groups);
    let g = &snap.groups[0];
    assert_eq!(g.ppid, sh);
    assert_eq!(&*g.cmdline, "sleep 1000");
    assert_eq!(g.pids.len(), 3);
    let mut oldest_first: Vec<(u64, i32)> = g
        .pids
        .iter()
        .map(|pid| {
            let p = snap.processes.live.iter().find(|p| p.pid == *pid).unwrap();
            (p.start_time, p.pid)
        })
        .collect();
    let as_given = oldest_first.clone();
    oldest_first.sort_unstable();
    assert_eq!(as_given, oldest_first, "pids oldest first");
    assert_eq!(surplus(&snap.groups), 2);

    // The pids controller charges the zombie too: 5 live tasks + 1 zombie.
    let pids = snap.pids.expect("pids stats");
    assert_eq!(pids.current, 6);
    let memory = snap.memory.expect("memory stats");
    assert!(memory.usage > 0);

    // The full collection sees the same container, and caches its processes.
    let full = collector.collect();
    let again = find(&full.containers, &tc.id).expect("container in the full snapshot");
    assert_eq!(again.processes, snap.processes);
    assert_eq!(again.groups, snap.groups);
    assert!(collector.cached_processes() >= 6);

    // After the processes are gone and the cgroup removed, the container is gone.
    drop(tc);
    let full = collector.collect();
    assert!(full
        .containers
        .iter()
        .all(|c| c.container.id != snap.container.id));
}

#[test]
fn collect_one_refuses_bad_and_unknown_ids() {
    // Reads the host's cgroup filesystem.
    if skip() {
        return;
    }
    let mut collector = Collector::new(Roots::default());
    for bad in [
        "",
        "..",
        "../../etc",
        &"A".repeat(64),
        &"a".repeat(63),
        &format!("{}/x", "a".repeat(64)),
    ] {
        assert!(collector.collect_one(bad).unwrap().is_none(), "{bad:?}");
    }
    // A well-formed id that no container has.
    assert!(collector.collect_one(&"0".repeat(64)).unwrap().is_none());
}
