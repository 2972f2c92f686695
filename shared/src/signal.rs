//! Safe signalling: a process is signalled only through a pidfd opened
//! after its start time was checked, so a recycled PID is never hit.
//!
//! The order matters: the pidfd is opened first and the start time read
//! second. A pidfd always refers to the process that held the pid when it was
//! opened; if that process was replaced by another one with the same pid
//! before the pidfd was opened, the start time read afterwards is the new
//! process's and does not match, so the pin is refused.
//!
//! The pid is interpreted in the caller's pid namespace (that is what
//! `pidfd_open` does) and the start time is read under `roots.proc`: the two
//! must be the same namespace (a containerised daemon runs with the host's
//! pid namespace and the host's `/proc`).

use std::os::fd::AsFd;

use crate::error::is_vanished;
use crate::procfs::parse_stat;
use crate::sys::{pidfd_open, pidfd_send_signal, poll_readable};
use crate::{Error, Result, Roots};

/// A process pinned by a pidfd whose identity (pid, start time) was verified
/// after the pidfd was opened.
#[derive(Debug)]
pub struct PinnedProcess {
    /// PID.
    pub pid: i32,
    /// The verified start time.
    pub start_time: u64,
    fd: std::os::fd::OwnedFd,
}

impl PinnedProcess {
    /// Opens a pidfd for `pid` and checks that the process behind it still
    /// has `start_time`. `Ok(None)` when the process is gone or the pid now
    /// belongs to another process.
    pub fn pin(roots: &Roots, pid: i32, start_time: u64) -> Result<Option<PinnedProcess>> {
        if pid <= 0 {
            return Ok(None);
        }
        let fd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
            Err(e) => return Err(Error::Signal { pid, source: e }),
        };
        let path = roots.proc.join(pid.to_string()).join("stat");
        // Bytes: `comm` may be any name a process gave itself.
        let content = match std::fs::read(&path) {
            Ok(c) => c,
            Err(e) if is_vanished(&e) => return Ok(None),
            Err(e) => return Err(Error::read(&path, e)),
        };
        let Some(stat) = parse_stat(&content) else {
            // Empty content: the process went away between open and read.
            if content.is_empty() {
                return Ok(None);
            }
            return Err(Error::Parse {
                path,
                msg: format!(
                    "unrecognised stat line {:?}",
                    String::from_utf8_lossy(&content)
                ),
            });
        };
        if stat.pid != pid || stat.start_time != start_time {
            return Ok(None);
        }
        Ok(Some(PinnedProcess {
            pid,
            start_time,
            fd,
        }))
    }

    /// Sends `signal` through the pidfd. `Ok(false)` when the process had already exited.
    pub fn signal(&self, signal: i32) -> Result<bool> {
        match pidfd_send_signal(self.fd.as_fd(), signal) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
            Err(e) => Err(Error::Signal {
                pid: self.pid,
                source: e,
            }),
        }
    }

    /// Whether the process has exited (it may be a zombie awaiting its reaper).
    pub fn exited(&self) -> bool {
        poll_readable(self.fd.as_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    /// A spawned child killed and reaped on drop, whatever the test did.
    struct Spawned(Option<Child>);

    impl Spawned {
        fn sleep() -> Spawned {
            Spawned(Some(Command::new("sleep").arg("1000").spawn().unwrap()))
        }
        fn pid(&self) -> i32 {
            self.0.as_ref().unwrap().id() as i32
        }
        fn child(&mut self) -> &mut Child {
            self.0.as_mut().unwrap()
        }
    }

    impl Drop for Spawned {
        fn drop(&mut self) {
            if let Some(mut c) = self.0.take() {
                if let Ok(None) = c.try_wait() {
                    let _ = c.kill();
                }
                let _ = c.wait();
            }
        }
    }

    fn start_time(pid: i32) -> u64 {
        crate::procfs::read_process(&Roots::default(), pid)
            .unwrap()
            .unwrap()
            .start_time
    }

    #[test]
    fn pinned_process_is_signalled_and_seen_to_exit() {
        let mut child = Spawned::sleep();
        let pid = child.pid();
        let pinned = PinnedProcess::pin(&Roots::default(), pid, start_time(pid))
            .unwrap()
            .expect("live child pins");
        assert_eq!(pinned.pid, pid);
        assert!(!pinned.exited());
        assert!(pinned.signal(libc::SIGTERM).unwrap());

        // Exited (a zombie until reaped) shows on the pidfd.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pinned.exited() {
            assert!(Instant::now() < deadline, "no exit seen on the pidfd");
            std::thread::sleep(Duration::from_millis(5));
        }
        let status = child.child().wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        // Reaped: signalling through the pidfd reports it gone, harmlessly.
        assert!(!pinned.signal(libc::SIGKILL).unwrap());
        assert!(pinned.exited());
    }

    #[test]
    fn wrong_start_time_is_refused_and_nothing_is_signalled() {
        let mut child = Spawned::sleep();
        let pid = child.pid();
        let real = start_time(pid);
        for wrong in [real + 1, real.saturating_sub(1), 0] {
            if wrong == real {
                continue;
            }
            assert!(PinnedProcess::pin(&Roots::default(), pid, wrong)
                .unwrap()
                .is_none());
        }
        std::thread::sleep(Duration::from_millis(50));
        assert!(child.child().try_wait().unwrap().is_none(), "child was hit");
        child.child().kill().unwrap();
        let status = child.child().wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn a_reaped_pid_is_not_pinned() {
        let mut child = Spawned::sleep();
        let pid = child.pid();
        let real = start_time(pid);
        child.child().kill().unwrap();
        child.child().wait().unwrap();
        // Gone, or (rarely) recycled to a process with another start time.
        assert!(PinnedProcess::pin(&Roots::default(), pid, real)
            .unwrap()
            .is_none());
        assert!(PinnedProcess::pin(&Roots::default(), 0, real)
            .unwrap()
            .is_none());
        assert!(PinnedProcess::pin(&Roots::default(), -1, real)
            .unwrap()
            .is_none());
    }
}
