//! Real test cgroups under `/sys/fs/cgroup/<controller>/pidwarden-test-*`.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::util::{skip_docker, unique_name, SKIP_ENV};

/// Where the cgroup filesystems are mounted on the host.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// How long `Drop` keeps killing and waiting before it gives up on a cgroup.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Gate for tests that create real cgroups (root, a writable cgroup tree).
///
/// Returns `false` (after printing `skipped: PIDWARDEN_SKIP_DOCKER=1`) when
/// `PIDWARDEN_SKIP_DOCKER=1`. Otherwise returns `true` when a cgroup can be
/// created under the `pids` hierarchy (or the unified root on a v2-only host)
/// and panics with a clear message when it cannot.
pub fn require_cgroups() -> bool {
    if skip_docker() {
        return false;
    }
    let root = Path::new(CGROUP_ROOT);
    let base = if root.join("pids").is_dir() {
        root.join("pids")
    } else {
        root.to_path_buf()
    };
    let probe = base.join(unique_name());
    match fs::create_dir(&probe) {
        Ok(()) => {
            let _ = fs::remove_dir(&probe);
            true
        }
        Err(e) => panic!(
            "cannot create a cgroup under {} ({e}); these tests need root and a writable \
             cgroup filesystem. Set {SKIP_ENV}=1 to skip them",
            base.display()
        ),
    }
}

/// Finds the host directory of the cgroup a `/proc/<pid>/cgroup` text names
/// for `controller` (v1), or the unified (v2) cgroup when `controller` is `""`.
pub(crate) fn dir_from_proc_cgroup(text: &str, controller: &str) -> Option<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(hier), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if controller.is_empty() {
            if hier == "0" && ctrls.is_empty() {
                let base = if root.join("cgroup.controllers").exists() {
                    root.to_path_buf()
                } else {
                    root.join("unified")
                };
                return Some(base.join(rel));
            }
        } else if ctrls.split(',').any(|c| c == controller) {
            let dir = controller.strip_prefix("name=").unwrap_or(controller);
            return Some(root.join(dir).join(rel));
        }
    }
    None
}

/// A cgroup created for one test in each requested controller hierarchy:
/// `/sys/fs/cgroup/<ctrl>/pidwarden-test-<unique>/<rel>`.
///
/// On drop, every process still inside the test's cgroups (which can only be
/// processes the test started) is killed, and the directories are removed,
/// deepest first.
#[derive(Debug)]
pub struct TestCgroup {
    top: String,
    rel: PathBuf,
    controllers: Vec<String>,
}

impl TestCgroup {
    /// Creates `/sys/fs/cgroup/<ctrl>/pidwarden-test-<unique>/<rel>` for each
    /// controller (`"pids"`, `"memory"`, …; `"unified"` on a hybrid host's v2
    /// tree). `rel` may be `""` and must be relative without `..`.
    /// Panics when a directory cannot be created.
    pub fn new(controllers: &[&str], rel: &str) -> TestCgroup {
        let rel_path = PathBuf::from(rel);
        assert!(
            rel_path
                .components()
                .all(|c| matches!(c, Component::Normal(_))),
            "cgroup path {rel:?} must be relative, without `..`"
        );
        assert!(
            !controllers.is_empty(),
            "TestCgroup needs at least one controller"
        );
        let cg = TestCgroup {
            top: unique_name(),
            rel: rel_path,
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
        };
        // Created after `cg` exists so a failure half way still cleans up.
        for ctrl in &cg.controllers {
            let base = Path::new(CGROUP_ROOT).join(ctrl);
            assert!(
                base.is_dir(),
                "cgroup controller {ctrl:?} is not mounted at {}",
                base.display()
            );
            let mut dir = base.join(&cg.top);
            create_level(ctrl, &dir);
            for comp in cg.rel.components() {
                dir = dir.join(comp);
                create_level(ctrl, &dir);
            }
        }
        cg
    }

    /// The unique top-level name, `pidwarden-test-<pid>-<n>-<salt>`.
    pub fn name(&self) -> &str {
        &self.top
    }

    /// The controllers this cgroup exists in.
    pub fn controllers(&self) -> &[String] {
        &self.controllers
    }

    /// `/sys/fs/cgroup/<ctrl>/pidwarden-test-<unique>/<rel>`.
    pub fn path(&self, ctrl: &str) -> PathBuf {
        self.top_path(ctrl).join(&self.rel)
    }

    /// `/sys/fs/cgroup/<ctrl>/pidwarden-test-<unique>` (the directory removed on drop).
    pub fn top_path(&self, ctrl: &str) -> PathBuf {
        Path::new(CGROUP_ROOT).join(ctrl).join(&self.top)
    }

    /// Writes `value` to `<path(ctrl)>/<file>`; panics with the path on error.
    pub fn write(&self, ctrl: &str, file: &str, value: &str) {
        let p = self.path(ctrl).join(file);
        fs::write(&p, value)
            .unwrap_or_else(|e| panic!("writing {value:?} to {}: {e}", p.display()));
    }

    /// Reads `<path(ctrl)>/<file>`; panics with the path on error.
    pub fn read(&self, ctrl: &str, file: &str) -> String {
        let p = self.path(ctrl).join(file);
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
    }

    /// PIDs listed in `<path(ctrl)>/cgroup.procs` (this cgroup only, not below).
    pub fn procs(&self, ctrl: &str) -> Vec<u32> {
        read_procs(&self.path(ctrl).join("cgroup.procs"))
    }

    /// Moves the existing process `pid` into this cgroup in every controller.
    pub fn add_pid(&self, pid: u32) {
        for ctrl in &self.controllers {
            self.write(ctrl, "cgroup.procs", &pid.to_string());
        }
    }

    /// Spawns `cmd` inside this cgroup in every controller.
    ///
    /// The child writes its own PID into each `cgroup.procs` before `exec`, so
    /// the program and all its descendants are born inside. Panics when the
    /// spawn (or the move) fails.
    pub fn spawn_in(&self, cmd: &mut Command) -> Child {
        let files: Vec<CString> = self
            .controllers
            .iter()
            .map(|c| {
                let p = self.path(c).join("cgroup.procs");
                CString::new(p.as_os_str().as_bytes()).expect("cgroup path has a NUL byte")
            })
            .collect();
        // SAFETY: the hook only calls async-signal-safe functions (getpid,
        // open, write, close) on data prepared before the fork; no allocation.
        unsafe {
            cmd.pre_exec(move || {
                let mut buf = [0u8; 24];
                let len = format_pid(libc::getpid() as u64, &mut buf);
                for f in &files {
                    let fd = libc::open(f.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let n = libc::write(fd, buf.as_ptr().cast(), len);
                    let err = std::io::Error::last_os_error();
                    libc::close(fd);
                    if n != len as isize {
                        return Err(err);
                    }
                }
                Ok(())
            });
        }
        cmd.spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?} in cgroup {}: {e}", self.top))
    }

    /// Every PID in the test's cgroups (all controllers, whole subtree).
    pub fn all_pids(&self) -> HashSet<u32> {
        let mut pids = HashSet::new();
        for ctrl in &self.controllers {
            for dir in subtree(&self.top_path(ctrl)) {
                pids.extend(read_procs(&dir.join("cgroup.procs")));
            }
        }
        pids
    }

    fn kill_all(&self, deadline: Instant) -> bool {
        loop {
            let first = self.all_pids();
            if first.is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "warning: cgroup {} still holds processes {first:?} after {CLEANUP_TIMEOUT:?}",
                    self.top
                );
                return false;
            }
            // Pin each process with a pidfd, then confirm it is (still) in our
            // cgroups: a PID recycled in between is never signalled.
            let fds: Vec<(u32, i32)> = first
                .iter()
                .filter_map(|&pid| {
                    // SAFETY: plain syscall, no pointers.
                    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
                    (fd >= 0).then_some((pid, fd as i32))
                })
                .collect();
            let second = self.all_pids();
            for (pid, fd) in fds {
                if second.contains(&pid) {
                    // SAFETY: fd is a pidfd we own; null siginfo is allowed.
                    unsafe {
                        libc::syscall(
                            libc::SYS_pidfd_send_signal,
                            fd,
                            libc::SIGKILL,
                            std::ptr::null::<libc::siginfo_t>(),
                            0,
                        );
                    }
                }
                // SAFETY: closing the descriptor we opened.
                unsafe { libc::close(fd) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + CLEANUP_TIMEOUT;
        // Frozen (v1 freezer) tasks cannot die until thawed.
        if self.controllers.iter().any(|c| c == "freezer") {
            for dir in subtree(&self.top_path("freezer")) {
                let _ = fs::write(dir.join("freezer.state"), "THAWED");
            }
        }
        self.kill_all(deadline);
        for ctrl in &self.controllers {
            let mut dirs = subtree(&self.top_path(ctrl));
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for dir in dirs {
                loop {
                    match fs::remove_dir(&dir) {
                        Ok(()) => break,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                        Err(e) if Instant::now() < deadline => {
                            let _ = e;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => {
                            eprintln!("warning: cannot remove cgroup {}: {e}", dir.display());
                            break;
                        }
                    }
                }
            }
        }
    }
}

fn create_level(ctrl: &str, dir: &Path) {
    if let Err(e) = fs::create_dir(dir) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            panic!("creating cgroup {}: {e}", dir.display());
        }
    }
    // A v1 cpuset cgroup accepts no task until cpus and mems are set.
    if ctrl == "cpuset" {
        if let Some(parent) = dir.parent() {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let cur = fs::read_to_string(dir.join(f)).unwrap_or_default();
                if cur.trim().is_empty() {
                    let v = fs::read_to_string(parent.join(f)).unwrap_or_default();
                    let _ = fs::write(dir.join(f), v.trim());
                }
            }
        }
    }
}

/// `dir` and every cgroup directory below it (missing `dir`: empty).
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            }
        }
        out.push(d);
    }
    out
}

fn read_procs(file: &Path) -> Vec<u32> {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Writes `pid` as decimal ASCII into `buf`, returning the length; no allocation.
fn format_pid(mut pid: u64, buf: &mut [u8; 24]) -> usize {
    let mut tmp = [0u8; 24];
    let mut n = 0;
    loop {
        tmp[n] = b'0' + (pid % 10) as u8;
        n += 1;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    for i in 0..n {
        buf[i] = tmp[n - 1 - i];
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_pids() {
        let mut b = [0u8; 24];
        let n = format_pid(0, &mut b);
        assert_eq!(&b[..n], b"0");
        let n = format_pid(32768, &mut b);
        assert_eq!(&b[..n], b"32768");
    }

    #[test]
    fn finds_dirs_in_proc_cgroup() {
        let text =
            "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/x\n0::/docker/abc\n";
        assert_eq!(
            dir_from_proc_cgroup(text, "pids").unwrap(),
            Path::new("/sys/fs/cgroup/pids/docker/abc")
        );
        assert_eq!(
            dir_from_proc_cgroup(text, "cpuacct").unwrap(),
            Path::new("/sys/fs/cgroup/cpuacct/docker/abc")
        );
        assert_eq!(
            dir_from_proc_cgroup(text, "name=systemd").unwrap(),
            Path::new("/sys/fs/cgroup/systemd/x")
        );
        assert!(dir_from_proc_cgroup(text, "memory").is_none());
        assert!(dir_from_proc_cgroup(text, "")
            .unwrap()
            .ends_with("docker/abc"));
    }
}
