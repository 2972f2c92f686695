//! A private dockerd for tests that must stop or restart the daemon: its own
//! data root, exec root, pid file and socket under one `pidwarden-test-*`
//! directory, `--live-restore`, no bridge and no iptables, and the managed
//! containerd dockerd starts for itself (state under the exec root). The
//! main dockerd and its containers are never involved.
//!
//! [`PrivateDocker`]'s drop removes every container of the private daemon,
//! stops the daemon, ends what is left of its containerd and shims (by PID:
//! processes whose command line names the private directory), kills what is
//! left in the cgroups of the containers it ran, unmounts what it mounted
//! under its directory and removes the directory.

use std::ffi::OsStr;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cgroup::CGROUP_ROOT;
use crate::docker::{docker_command, ensure_image, TEST_IMAGE};
use crate::process::Daemon;
use crate::util::{poll_until, unique_name};

/// How long the private dockerd may take to answer after a start.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long it may take to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A dockerd of its own, with its own containerd, stopped and removed on drop.
#[derive(Debug)]
pub struct PrivateDocker {
    dir: PathBuf,
    host: String,
    daemon: Option<Daemon>,
    /// Containers started through [`PrivateDocker::run`].
    containers: Mutex<Vec<String>>,
}

impl PrivateDocker {
    /// Starts the daemon in a fresh `<tmp>/pidwarden-test-*` directory and
    /// waits until it answers. Panics (after cleaning up) when it does not.
    pub fn start() -> PrivateDocker {
        let dir = std::env::temp_dir().join(unique_name());
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        // An empty configuration: /etc/docker/daemon.json is the main daemon's.
        fs::write(dir.join("daemon.json"), "{}\n").expect("writing daemon.json");
        let host = format!("unix://{}", dir.join("docker.sock").display());
        let mut pd = PrivateDocker {
            dir,
            host,
            daemon: None,
            containers: Mutex::new(Vec::new()),
        };
        pd.start_daemon();
        pd
    }

    /// The daemon's address, `unix:///…/docker.sock` (for `--docker-host`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The private directory (data root, exec root, socket, pid file).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// PID of the running dockerd, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Daemon::pid)
    }

    /// The daemon's log (the current run's).
    pub fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::log).unwrap_or_default()
    }

    fn start_daemon(&mut self) {
        if let Err(e) = self.try_start_daemon() {
            panic!("{e}");
        }
    }

    /// Spawns dockerd and waits until it answers; `Err` (daemon ended) when
    /// it exits or does not answer in time.
    fn try_start_daemon(&mut self) -> Result<(), String> {
        assert!(self.daemon.is_none(), "the private dockerd already runs");
        let d = &self.dir;
        let mut cmd = Command::new("dockerd");
        cmd.arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .args(["-H", &self.host])
            .args([
                "--live-restore",
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
            ]);
        self.daemon = Some(Daemon::spawn(&mut cmd));
        let mut exited = None;
        let up = poll_until(START_TIMEOUT, Duration::from_millis(100), || {
            exited = self.daemon.as_mut().and_then(Daemon::try_wait);
            (exited.is_some() || self.is_up()).then_some(())
        });
        if up.is_some() && exited.is_none() {
            return Ok(());
        }
        let log = self.log();
        self.stop();
        Err(match exited {
            Some(s) => format!("private dockerd exited ({s}):\n{log}"),
            None => format!("private dockerd did not answer within {START_TIMEOUT:?}:\n{log}"),
        })
    }

    /// SIGTERM to the daemon, and waits for it to exit (SIGKILL after 30 s).
    /// With `--live-restore` its containers keep running.
    pub fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let status = d.stop(STOP_TIMEOUT);
            if !status.success() {
                eprintln!("private dockerd exited with {status}:\n{}", d.log());
            }
        }
    }

    /// Starts the stopped daemon again with the same flags and waits until
    /// it answers.
    pub fn start_again(&mut self) {
        self.start_daemon();
    }

    /// True when the daemon answers `docker version`.
    pub fn is_up(&self) -> bool {
        self.docker(["version"]).status.success()
    }

    /// `docker -H <private> <args>`; the output whatever the exit status.
    pub fn docker<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        docker_command()
            .args(["-H", &self.host])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run the `docker` command: {e}"))
    }

    fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "`docker -H {} {}` failed: {}",
            self.host,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Copies the kit's busybox image ([`TEST_IMAGE`], built on the main
    /// daemon when missing) into the private daemon: `docker save | docker load`.
    pub fn load_test_image(&self) {
        ensure_image();
        let mut save = docker_command()
            .args(["save", TEST_IMAGE])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("running docker save");
        let out = docker_command()
            .args(["-H", &self.host, "load"])
            .stdin(save.stdout.take().expect("docker save stdout"))
            .output()
            .expect("running docker load");
        let saved = save.wait().expect("waiting for docker save");
        assert!(
            saved.success() && out.status.success(),
            "docker save {TEST_IMAGE} | docker -H {} load failed: {}",
            self.host,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    /// `docker run -d --network none --name <name> <opts> <TEST_IMAGE> <cmd>`
    /// on the private daemon; returns the full id. The container is removed
    /// when `self` drops.
    pub fn run(&self, name: &str, opts: &[&str], cmd: &[&str]) -> String {
        let mut args = vec!["run", "-d", "--network", "none", "--name", name];
        args.extend_from_slice(opts);
        args.push(TEST_IMAGE);
        args.extend_from_slice(cmd);
        let out = self.docker(&args);
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !id.is_empty() {
            self.containers.lock().unwrap().push(id.clone());
        }
        assert!(
            out.status.success(),
            "`docker {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        id
    }

    /// `docker inspect --format <format> <container>` on the private daemon.
    pub fn inspect(&self, container: &str, format: &str) -> String {
        self.docker_ok(&["inspect", "--format", format, container])
    }

    /// Ends processes whose command line names the private directory
    /// (its containerd and shims), by PID.
    fn kill_leftovers(&self) -> usize {
        let needle = self.dir.as_os_str().as_encoded_bytes();
        let me = std::process::id();
        let mut n = 0;
        let Ok(entries) = fs::read_dir("/proc") else {
            return 0;
        };
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            if cmdline.windows(needle.len()).any(|w| w == needle) {
                // SAFETY: kill(2) with a plain PID; the process runs our private daemon's files.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                n += 1;
            }
        }
        n
    }

    /// Kills what still runs in the cgroups of the containers this daemon
    /// ran (cgroupfs driver: `<controller>/docker/<id>`) and removes them.
    fn clean_container_cgroups(&self) {
        let ids = self.containers.lock().unwrap().clone();
        let Ok(controllers) = fs::read_dir(CGROUP_ROOT) else {
            return;
        };
        let controllers: Vec<PathBuf> = controllers.flatten().map(|e| e.path()).collect();
        for id in &ids {
            for c in &controllers {
                let dir = c.join("docker").join(id);
                let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else {
                    continue;
                };
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: kill(2) with a plain PID of a process in our container's cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                let _ = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
                    fs::remove_dir(&dir).is_ok().then_some(())
                });
            }
        }
    }

    /// Unmounts (lazily, deepest first) every mount under the private directory.
    fn unmount_all(&self) {
        for _ in 0..5 {
            let mounts = mounts_under(&self.dir);
            if mounts.is_empty() {
                return;
            }
            for m in mounts {
                let Ok(c) = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()) else {
                    continue;
                };
                // SAFETY: umount2 with a valid NUL-terminated path.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let left = mounts_under(&self.dir);
        if !left.is_empty() {
            eprintln!(
                "warning: still mounted under {}: {left:?}",
                self.dir.display()
            );
        }
    }
}

/// Mount points under `dir`, deepest first, from `/proc/self/mountinfo`.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    v.dedup();
    v
}

/// `\040`-style octal escapes of mountinfo (space, tab, newline, backslash).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                u8::try_from(v).ok()
            });
        if let (b'\\', Some(v)) = (b[i], octal) {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Drop for PrivateDocker {
    fn drop(&mut self) {
        let t = Instant::now();
        // Containers go through the daemon when it can be reached (started
        // again if a test left it stopped), so their mounts and cgroups go too.
        if self.daemon.is_none() {
            if let Err(e) = self.try_start_daemon() {
                eprintln!("warning: cleanup could not start the private dockerd: {e}");
            }
        }
        if self.daemon.is_some() {
            let all = self.docker(["ps", "-aq", "--no-trunc"]);
            for id in String::from_utf8_lossy(&all.stdout).split_whitespace() {
                let _ = self.docker(["rm", "-f", "-v", id]);
            }
        }
        self.stop();
        let killed = self.kill_leftovers();
        self.clean_container_cgroups();
        self.unmount_all();
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("warning: removing {}: {e}", self.dir.display());
        }
        if killed > 0 {
            let _ = writeln!(
                std::io::stderr(),
                "private dockerd cleanup ended {killed} leftover processes ({:?})",
                t.elapsed()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::unescape_mountinfo;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo(r"/tmp/plain"), "/tmp/plain");
        assert_eq!(unescape_mountinfo(r"/tmp/x\134y"), r"/tmp/x\y");
        assert_eq!(unescape_mountinfo(r"/tmp/end\04"), r"/tmp/end\04");
        assert_eq!(unescape_mountinfo(r"/tmp/big\777"), r"/tmp/big\777");
    }
}
