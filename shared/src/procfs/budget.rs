//! The file descriptor budget: how many descriptors the process reader may
//! hold open (kept `stat` handles, pidfds) below the open file limit, and
//! raising that limit at startup.
//!
//! The budget is the process's, not a collector's: every collector claims
//! its share from what the others left, so two collectors in one process
//! (an oracle beside the incremental one, the remediator's plans beside
//! each other) never hold more than the limit between them. Within a
//! collector, one [`FdPool`] hands the share out a descriptor at a time to
//! whatever part needs one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::Roots;

/// File descriptors a process keeps free for everything else (sockets,
/// cgroup files, the runtime's connections) when handles are kept.
pub const RESERVED_FDS: u64 = 512;

/// How many `stat` handles readers over `roots` may keep open in all: the
/// soft `RLIMIT_NOFILE` limit less [`RESERVED_FDS`] when the proc root is a
/// real procfs, 0 otherwise (a kept handle to a plain file would never see
/// the file replaced or removed, so fixture trees are always re-opened).
pub fn kept_handle_budget(roots: &Roots) -> usize {
    if !is_procfs(&roots.proc) {
        return 0;
    }
    let Ok((soft, _)) = nofile_limit() else {
        return 0;
    };
    usize::try_from(soft.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX)
}

/// Descriptors claimed by the live claimed [`FdPool`]s of this process.
static CLAIMED: AtomicUsize = AtomicUsize::new(0);

/// The descriptors one collector's parts hold between scrapes (pidfds,
/// kept control files, kept `stat` handles): its share of the process's
/// budget, taken one at a time and given back when closed, so whoever needs
/// one first gets it, with no fixed split between the kinds or the
/// collection threads. Clones share the pool; the share goes back to the
/// process's budget when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct FdPool(Arc<Pool>);

#[derive(Debug)]
struct Pool {
    cap: usize,
    used: AtomicUsize,
    /// Whether `cap` is claimed from the process's budget.
    claimed: bool,
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.claimed {
            CLAIMED.fetch_sub(self.cap, Ordering::AcqRel);
        }
    }
}

impl FdPool {
    /// A pool of up to `want` descriptors of what the other claimed pools
    /// left of the budget over `roots` ([`kept_handle_budget`]); possibly
    /// none.
    pub fn claim(roots: &Roots, want: usize) -> FdPool {
        let budget = kept_handle_budget(roots);
        let mut got = 0;
        // The closure only computes; `fetch_update` retries it on a race.
        let _ = CLAIMED.fetch_update(Ordering::AcqRel, Ordering::Acquire, |claimed| {
            got = want.min(budget.saturating_sub(claimed));
            Some(claimed + got)
        });
        FdPool(Arc::new(Pool {
            cap: got,
            used: AtomicUsize::new(0),
            claimed: true,
        }))
    }

    /// A pool of `cap` descriptors outside the process's budget: one-off
    /// readers (0) and tests.
    pub fn fixed(cap: usize) -> FdPool {
        FdPool(Arc::new(Pool {
            cap,
            used: AtomicUsize::new(0),
            claimed: false,
        }))
    }

    /// Takes one descriptor; `false` when the pool is spent.
    pub fn take(&self) -> bool {
        self.0
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.0.cap).then_some(used + 1)
            })
            .is_ok()
    }

    /// Gives back `n` descriptors taken (closed).
    pub fn give(&self, n: usize) {
        if n > 0 {
            self.0.used.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// How many it may hold.
    pub fn cap(&self) -> usize {
        self.0.cap
    }

    /// How many are taken.
    pub fn used(&self) -> usize {
        self.0.used.load(Ordering::Acquire)
    }
}

/// This process's open file limit (`RLIMIT_NOFILE`): (soft, hard).
pub fn nofile_limit() -> std::io::Result<(u64, u64)> {
    crate::sys::nofile_limit()
}

pub(crate) use crate::sys::is_procfs;

/// Raises the soft `RLIMIT_NOFILE` limit to the hard one: the process reader
/// keeps descriptors per process below it. Returns the (old, new) soft limit.
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let (soft, hard) = nofile_limit()?;
    if soft < hard {
        set_nofile_soft_limit(hard)?;
    }
    Ok((soft, soft.max(hard)))
}

/// Sets the soft `RLIMIT_NOFILE` limit, keeping the hard one.
pub fn set_nofile_soft_limit(soft: u64) -> std::io::Result<()> {
    let (_, hard) = nofile_limit()?;
    crate::sys::set_nofile_limit(soft, hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_proc_keeps_handles_and_fixture_trees_do_not() {
        assert!(kept_handle_budget(&Roots::default()) > 0);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(kept_handle_budget(&Roots::new(dir.path(), dir.path())), 0);
    }

    #[test]
    fn claimed_pools_never_add_up_to_more_than_the_budget_and_are_given_back() {
        let first = FdPool::claim(&Roots::default(), usize::MAX);
        let second = FdPool::claim(&Roots::default(), usize::MAX);
        // Read after the claims: the other test here only raises the limit.
        let budget = kept_handle_budget(&Roots::default());
        assert!(first.cap() > 0);
        assert!(first.cap() + second.cap() <= budget);
        let fixture = tempfile::tempdir().unwrap();
        let none = FdPool::claim(&Roots::new(fixture.path(), fixture.path()), usize::MAX);
        assert_eq!(none.cap(), 0);
        let a = first.cap();
        // Given back when the last clone goes.
        let clone = first.clone();
        drop(first);
        assert_eq!(FdPool::claim(&Roots::default(), a).cap(), 0, "still held");
        drop(clone);
        assert_eq!(FdPool::claim(&Roots::default(), a).cap(), a, "given back");
    }

    #[test]
    fn a_pool_hands_out_at_most_its_cap_and_takes_back_what_is_given() {
        let pool = FdPool::fixed(2);
        let other = pool.clone();
        assert!(pool.take());
        assert!(other.take());
        assert!(!pool.take(), "spent");
        assert_eq!((pool.cap(), pool.used()), (2, 2));
        other.give(1);
        assert!(pool.take());
        assert!(!FdPool::fixed(0).take());
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let (old, new) = raise_nofile_limit().unwrap();
        assert!(new >= old);
        let (soft, hard) = nofile_limit().unwrap();
        assert_eq!((soft, hard), (new, new));
    }
}
