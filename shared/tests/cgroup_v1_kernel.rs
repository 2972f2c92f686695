//! cgroup v1 through the real kernel: test cgroups are created under
//! `/sys/fs/cgroup/{pids,memory}/pidwarden-test-*`, shaped like Docker's
//! cgroupfs driver (`…/docker/<id>`), with processes moved into them and the
//! limits on ancestors; then read back through the public API.
//!
//! Needs root and the v1 `pids` and `memory` hierarchies. Without them these
//! tests fail with a clear message, unless `PIDWARDEN_SKIP_DOCKER=1` (the
//! switch for every test that needs Docker, root or real cgroups; see the
//! test kit's `require_cgroups`).

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pidwarden_shared::cgroup::{
    detect_layout, discover, parse::flat_keyed_value, read_memory, read_pids, read_procs_recursive,
    Container, Runtime,
};
use pidwarden_shared::{Limit, Roots};
use pidwarden_tests::{require_cgroups, ChildGuard, TestCgroup, CGROUP_ROOT};

/// A fresh 64-hex container id.
fn random_id() -> String {
    let state = RandomState::new();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    (0..4u64)
        .map(|i| {
            let mut h = state.build_hasher();
            h.write_u128(nanos);
            h.write_u32(std::process::id());
            h.write_u64(i);
            format!("{:016x}", h.finish())
        })
        .collect()
}

/// Test cgroups `<ctrl>/pidwarden-test-…/docker/<id>/sub` in the pids and
/// memory hierarchies (the kit's [`TestCgroup`]), and the processes spawned
/// into them. Dropping it kills and reaps those processes, then the kit
/// kills whatever is left inside and removes the cgroups, deepest first.
struct Fixture {
    id: String,
    /// Declared before `cg`: the children go first, then the cgroups.
    children: Vec<ChildGuard>,
    cg: TestCgroup,
}

impl Fixture {
    fn new() -> Fixture {
        let id = random_id();
        let cg = TestCgroup::new(&["pids", "memory"], &format!("docker/{id}/sub"));
        Fixture {
            id,
            children: Vec::new(),
            cg,
        }
    }

    /// The top test cgroup's name, `pidwarden-test-…`.
    fn name(&self) -> &str {
        self.cg.name()
    }

    /// `<ctrl>/pidwarden-test-…/<rel>` with `{id}` replaced.
    fn dir(&self, ctrl: &str, rel: &str) -> PathBuf {
        let mut d = self.cg.top_path(ctrl);
        if !rel.is_empty() {
            d.push(rel.replace("{id}", &self.id));
        }
        d
    }

    fn set(&self, ctrl: &str, rel: &str, file: &str, value: &str) {
        let p = self.dir(ctrl, rel).join(file);
        fs::write(&p, value).unwrap_or_else(|e| panic!("writing {value} to {}: {e}", p.display()));
    }

    /// Spawns `cmd` and moves it into `rel` in both hierarchies; returns its pid.
    fn spawn_into(&mut self, rel: &str, cmd: &mut Command) -> i32 {
        let child = ChildGuard::spawn(cmd);
        let pid = child.id() as i32;
        self.children.push(child);
        for ctrl in ["pids", "memory"] {
            self.set(ctrl, rel, "cgroup.procs", &pid.to_string());
        }
        pid
    }

    fn sleep_into(&mut self, rel: &str) -> i32 {
        self.spawn_into(rel, Command::new("sleep").arg("300").stdin(Stdio::null()))
    }

    fn find<'a>(&self, cs: &'a [Container]) -> &'a Container {
        cs.iter()
            .find(|c| c.id == self.id)
            .unwrap_or_else(|| panic!("test container {} not discovered", self.id))
    }
}

#[test]
fn v1_kernel_discovery_limits_and_procs() {
    if !require_cgroups() {
        return;
    }
    let mut f = Fixture::new();
    // limits on ancestors: pids on the top test cgroup, memory on `docker`
    f.set("pids", "", "pids.max", "20");
    f.set("memory", "docker", "memory.limit_in_bytes", "67108864");
    let mut pids: Vec<i32> = (0..3).map(|_| f.sleep_into("docker/{id}")).collect();
    pids.push(f.sleep_into("docker/{id}/sub"));
    pids.sort_unstable();

    let layout =
        detect_layout(&Roots::new("/proc", CGROUP_ROOT).with_cgroup_parent(f.name())).unwrap();
    assert_eq!(layout.v1_pids, Some(PathBuf::from("/sys/fs/cgroup/pids")));
    assert_eq!(
        layout.v1_memory,
        Some(PathBuf::from("/sys/fs/cgroup/memory"))
    );
    assert!(!layout.unified_controllers);

    let cs = discover(&layout).unwrap();
    let c = f.find(&cs);
    let leaf_pids = f.dir("pids", "docker/{id}");
    assert_eq!(c.runtime, Runtime::Docker);
    assert_eq!(c.pod_uid, None);
    assert_eq!(
        c.rel_path,
        PathBuf::from(format!("{}/docker/{}", f.name(), f.id))
    );
    assert_eq!(c.dirs.pids.as_deref(), Some(leaf_pids.as_path()));
    assert_eq!(c.dirs.memory, Some(f.dir("memory", "docker/{id}")));
    assert_eq!(c.dirs.procs.as_deref(), Some(leaf_pids.as_path()));
    assert!(c.dirs.memory_v1);
    // the nested cgroup belongs to the container: not a container of its own
    let inside: Vec<_> = cs
        .iter()
        .filter(|o| o.rel_path.starts_with(f.name()))
        .map(|o| &o.id)
        .collect();
    assert_eq!(inside, vec![&f.id]);

    let p = read_pids(&layout, c).unwrap().expect("pids stats");
    assert_eq!(p.current, pids.len() as u64);
    assert_eq!(p.limit, Limit::Max(20));
    assert_eq!(p.headroom, Some(20 - pids.len() as u64));
    assert_eq!(p.limit_hits, 0);

    let m = read_memory(&layout, c).unwrap().expect("memory stats");
    assert_eq!(m.limit, Limit::Max(67108864));
    assert!(m.working_set <= m.usage, "{m:?}");
    assert_eq!(m.oom_kills, 0);

    assert_eq!(read_procs_recursive(&leaf_pids).unwrap(), pids);
    assert_eq!(
        read_procs_recursive(&f.dir("memory", "docker/{id}")).unwrap(),
        pids
    );
}

#[test]
fn v1_kernel_fork_refused_at_the_limit_counts_a_hit() {
    if !require_cgroups() {
        return;
    }
    let mut f = Fixture::new();
    f.set("pids", "", "pids.max", "50");
    let s1 = f.sleep_into("docker/{id}");
    let s2 = f.sleep_into("docker/{id}");
    // a shell that waits for a line on stdin, then tries to fork
    let sh = f.spawn_into(
        "docker/{id}",
        Command::new("sh")
            .arg("-c")
            .arg("read line; sleep 300 & sleep 300 & wait")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    // no room for one more task in the container itself
    f.set("pids", "docker/{id}", "pids.max", "3");

    let layout =
        detect_layout(&Roots::new("/proc", CGROUP_ROOT).with_cgroup_parent(f.name())).unwrap();
    let cs = discover(&layout).unwrap();
    let c = f.find(&cs).clone();
    let mut expected = vec![s1, s2, sh];
    expected.sort_unstable();
    assert_eq!(
        read_procs_recursive(c.dirs.procs.as_deref().unwrap()).unwrap(),
        expected
    );
    let before = read_pids(&layout, &c).unwrap().unwrap();
    assert_eq!(before.current, 3);
    assert_eq!(before.limit, Limit::Max(3));
    assert_eq!(before.headroom, Some(0));
    assert_eq!(before.limit_hits, 0);

    let shell = f.children.last_mut().unwrap();
    shell
        .stdin
        .take()
        .unwrap()
        .write_all(b"go\n")
        .expect("waking the shell");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = shell.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the shell did not exit after its fork failed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        !status.success(),
        "the shell's fork should have been refused"
    );

    let after = read_pids(&layout, &c).unwrap().unwrap();
    let events = fs::read_to_string(f.dir("pids", "docker/{id}").join("pids.events")).unwrap();
    let kernel_hits = flat_keyed_value(&events, "max").unwrap();
    assert!(after.limit_hits >= 1, "{after:?}");
    assert_eq!(after.limit_hits, kernel_hits);
    assert_eq!(after.current, 2);
    assert_eq!(after.headroom, Some(1));
    let mut left = vec![s1, s2];
    left.sort_unstable();
    assert_eq!(
        read_procs_recursive(c.dirs.procs.as_deref().unwrap()).unwrap(),
        left
    );
}
