//! How the process table learns that a process exited without re-reading
//! it: [`ExitWatch`], with the kernel's way ([`PidfdExits`]: a pidfd per
//! process in one epoll set, asked without waiting each scrape) and, for
//! tests, a fake the test tells which pids exited.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::BuildHasherDefault;
use std::os::fd::{AsFd, OwnedFd};

use super::budget::{is_procfs, FdPool};
use crate::fasthash::FastHasher;
use crate::sys::{epoll_add, epoll_create, epoll_ready, pidfd_open};
use crate::Roots;

/// Most epoll events taken per `epoll_wait`.
const EVENTS: usize = 1024;

/// What [`ExitWatch::watch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    /// The process is watched: its exit will be reported.
    Watched,
    /// No process has that pid (any more).
    Gone,
    /// The file descriptor budget is spent: not watched.
    OverBudget,
    /// It could not be watched (another error): not watched.
    Failed,
}

/// Reports the exits of the processes it watches.
pub(crate) trait ExitWatch: Debug + Send {
    /// Starts watching `pid`. The watch is taken *before* the process is
    /// read, so it can only be of the process read or of one that exited
    /// before it (then its exit is reported at once).
    fn watch(&mut self, pid: i32) -> Watch;
    /// Stops watching `pid`; whether it was watched.
    fn unwatch(&mut self, pid: i32) -> bool;
    /// Appends to `exited` the watched pids whose process exited since the
    /// last call, and stops watching them.
    fn take_exited(&mut self, exited: &mut Vec<i32>) -> std::io::Result<()>;
}

type PidMap<V> = HashMap<i32, V, BuildHasherDefault<FastHasher>>;

/// Exits from the kernel: a pidfd per watched process (one descriptor of
/// the [`FdPool`] each) in one epoll set; a pidfd turns readable when its
/// process exits.
#[derive(Debug)]
pub(crate) struct PidfdExits {
    epoll: OwnedFd,
    pidfds: PidMap<OwnedFd>,
    pool: FdPool,
    events: Vec<libc::epoll_event>,
    ready: Vec<u64>,
}

impl PidfdExits {
    /// Exits of the processes under `roots`, when pidfds can be opened for
    /// them: the proc root is a procfs of this process's own PID namespace
    /// (its `self` is this process) and the kernel has `pidfd_open`.
    pub(crate) fn new(roots: &Roots, pool: FdPool) -> Option<PidfdExits> {
        if !is_procfs(&roots.proc) {
            return None;
        }
        let me = std::process::id();
        match std::fs::read_link(roots.proc.join("self")) {
            Ok(link) if link.as_os_str() == me.to_string().as_str() => {}
            _ => return None,
        }
        pidfd_open(me as i32).ok()?;
        Some(PidfdExits {
            epoll: epoll_create().ok()?,
            pidfds: PidMap::default(),
            pool,
            events: Vec::with_capacity(EVENTS),
            ready: Vec::with_capacity(EVENTS),
        })
    }
}

impl ExitWatch for PidfdExits {
    fn watch(&mut self, pid: i32) -> Watch {
        if !self.pool.take() {
            return Watch::OverBudget;
        }
        let fd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                self.pool.give(1);
                return if e.raw_os_error() == Some(libc::ESRCH) {
                    Watch::Gone
                } else {
                    Watch::Failed
                };
            }
        };
        if epoll_add(self.epoll.as_fd(), fd.as_fd(), u64::from(pid as u32)).is_err() {
            self.pool.give(1);
            return Watch::Failed;
        }
        if self.pidfds.insert(pid, fd).is_some() {
            // The table unwatches a pid before it watches it again.
            self.pool.give(1);
        }
        Watch::Watched
    }

    fn unwatch(&mut self, pid: i32) -> bool {
        // Closing the pidfd takes it out of the epoll set.
        let had = self.pidfds.remove(&pid).is_some();
        if had {
            self.pool.give(1);
        }
        had
    }

    fn take_exited(&mut self, exited: &mut Vec<i32>) -> std::io::Result<()> {
        loop {
            self.ready.clear();
            let n = epoll_ready(
                self.epoll.as_fd(),
                &mut self.events,
                EVENTS,
                &mut self.ready,
            )?;
            for i in 0..self.ready.len() {
                let pid = self.ready[i] as u32 as i32;
                exited.push(pid);
                // Closing a ready pidfd takes it out of the set, so the
                // next wait returns the others.
                self.unwatch(pid);
            }
            if n < EVENTS {
                return Ok(());
            }
        }
    }
}

/// Exits as a test says: [`FakeExits::exit`] marks a watched pid exited;
/// `budget` watches at most that many at once, `gone` pids have no process.
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeExits(std::sync::Arc<std::sync::Mutex<FakeState>>);

#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FakeState {
    pub(crate) watched: std::collections::BTreeSet<i32>,
    pub(crate) exited: Vec<i32>,
    pub(crate) budget: Option<usize>,
    pub(crate) gone: std::collections::BTreeSet<i32>,
}

#[cfg(test)]
impl FakeExits {
    /// The state the test inspects and changes.
    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.0.lock().unwrap()
    }

    /// Reports `pid` exited at the next [`ExitWatch::take_exited`] (when watched).
    pub(crate) fn exit(&self, pid: i32) {
        let mut s = self.state();
        if s.watched.contains(&pid) {
            s.exited.push(pid);
        }
    }
}

#[cfg(test)]
impl ExitWatch for FakeExits {
    fn watch(&mut self, pid: i32) -> Watch {
        let mut s = self.state();
        if s.budget.is_some_and(|b| s.watched.len() >= b) {
            return Watch::OverBudget;
        }
        if s.gone.contains(&pid) {
            return Watch::Gone;
        }
        s.watched.insert(pid);
        Watch::Watched
    }

    fn unwatch(&mut self, pid: i32) -> bool {
        let mut s = self.state();
        s.exited.retain(|&p| p != pid);
        s.watched.remove(&pid)
    }

    fn take_exited(&mut self, exited: &mut Vec<i32>) -> std::io::Result<()> {
        let mut s = self.state();
        let ready = std::mem::take(&mut s.exited);
        for pid in ready {
            if s.watched.remove(&pid) {
                exited.push(pid);
            }
        }
        Ok(())
    }
}
