//! Safe signalling: a process is signalled only through a pidfd opened
//! after its start time was checked, so a recycled PID is never hit.

use crate::{Result, Roots};

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
        let _ = (roots, pid, start_time);
        unimplemented!("pin")
    }

    /// Sends `signal` through the pidfd. `Ok(false)` when the process had already exited.
    pub fn signal(&self, signal: i32) -> Result<bool> {
        let _ = (signal, &self.fd);
        unimplemented!("signal")
    }

    /// Whether the process has exited (it may be a zombie awaiting its reaper).
    pub fn exited(&self) -> bool {
        unimplemented!("exited")
    }
}
