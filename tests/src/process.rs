//! Processes a test starts: guards for plain children and logged daemons,
//! and one-shot commands whose success is checked.

use std::fs::{self, File};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::unique_name;

/// How long [`Daemon::wait_ready`] waits for the readiness URL.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`Daemon`]'s drop waits after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A child process killed (by its PID, which cannot be recycled before it is
/// reaped) and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Spawns `cmd` and guards the child; panics when the spawn fails.
    pub fn spawn(cmd: &mut Command) -> ChildGuard {
        ChildGuard(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}")),
        )
    }
}

impl Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A long-running process whose stdout and stderr go to a temp log file.
///
/// Drop sends SIGTERM, waits up to 5 s, then SIGKILLs. When the thread is
/// panicking (a failed test) the end of the log is printed to stderr; the log
/// file is removed otherwise.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    log_path: PathBuf,
    status: Option<ExitStatus>,
}

impl Daemon {
    /// Spawns `cmd` with stdin from /dev/null and stdout+stderr captured in a
    /// fresh log file. Panics when the spawn fails.
    pub fn spawn(cmd: &mut Command) -> Daemon {
        let log_path = std::env::temp_dir().join(format!("{}.log", unique_name()));
        let out = File::create(&log_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
        let err = out.try_clone().expect("cloning log file handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        Daemon {
            child,
            log_path,
            status: None,
        }
    }

    /// The daemon's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the daemon printed so far (stdout and stderr interleaved).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The exit status if the daemon has exited, without blocking.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) unless the daemon has exited.
    pub fn signal(&mut self, signal: i32) {
        if self.try_wait().is_none() {
            // SAFETY: kill(2) on our own unreaped child: the PID is still ours.
            unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        }
    }

    /// Waits until GET `url` answers 2xx, for at most [`READY_TIMEOUT`];
    /// panics naming `what`, with the exit status (if it exited) and the log,
    /// otherwise.
    pub fn wait_ready(&mut self, what: &str, url: &str) {
        if let Err(e) = crate::http::wait_http(url, READY_TIMEOUT) {
            let exited = self.try_wait();
            panic!(
                "{what} not ready ({e}); exited: {exited:?}; log:\n{}",
                self.log()
            );
        }
    }

    /// SIGTERM, wait up to `timeout`, then SIGKILL; returns the exit status.
    pub fn stop(&mut self, timeout: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.try_wait() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.try_wait().is_none() {
            let _ = self.child.kill();
        }
        let s = self.child.wait().expect("waiting for daemon");
        self.status = Some(s);
        s
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(STOP_TIMEOUT);
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- last lines of {} (pid {}) ---",
                self.log_path.display(),
                self.child.id()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            eprintln!("--- end of log ---");
        } else {
            let _ = fs::remove_file(&self.log_path);
        }
    }
}

/// Runs `cmd` to completion (stdin from /dev/null) and returns its output;
/// panics with the command and its stderr when it cannot start or exits
/// unsuccessfully.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd` like [`run_ok`] and parses its stdout as JSON; panics with the
/// output when it is not JSON.
pub fn run_json(cmd: &mut Command) -> serde_json::Value {
    let out = run_ok(cmd);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd:?} printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_json_parses_stdout() {
        let v = run_json(Command::new("echo").arg(r#"{"a": [1, 2]}"#));
        assert_eq!(v["a"][1], 2);
    }

    #[test]
    #[should_panic(expected = "failed")]
    fn run_ok_panics_on_failure() {
        run_ok(Command::new("sh").args(["-c", "echo oops >&2; exit 3"]));
    }

    #[test]
    #[should_panic(expected = "printed no JSON")]
    fn run_json_panics_on_other_output() {
        run_json(Command::new("echo").arg("not json"));
    }
}
