//! Where the host's `/proc` and cgroup filesystem are mounted.

use std::path::PathBuf;

/// The filesystem roots every reader works under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// The proc filesystem, normally `/proc`.
    pub proc: PathBuf,
    /// The cgroup filesystem, normally `/sys/fs/cgroup`.
    pub cgroup: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            proc: PathBuf::from("/proc"),
            cgroup: PathBuf::from("/sys/fs/cgroup"),
        }
    }
}

impl Roots {
    /// Roots at the given directories.
    pub fn new(proc: impl Into<PathBuf>, cgroup: impl Into<PathBuf>) -> Self {
        Roots {
            proc: proc.into(),
            cgroup: cgroup.into(),
        }
    }
}
