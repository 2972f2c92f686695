//! Where the host's `/proc` and cgroup filesystem are mounted, and the
//! cgroup parents its runtimes were configured with.

use std::path::PathBuf;

/// The filesystem roots every reader works under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// The proc filesystem, normally `/proc`.
    pub proc: PathBuf,
    /// The cgroup filesystem, normally `/sys/fs/cgroup`.
    pub cgroup: PathBuf,
    /// Cgroup parents (relative to a hierarchy root) under which container
    /// cgroups are recognised besides the runtimes' defaults: what a
    /// runtime's `--cgroup-parent` or the kubelet's `--cgroup-root` was set
    /// to. See [`crate::cgroup::classify_under`].
    pub cgroup_parents: Vec<String>,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            proc: PathBuf::from("/proc"),
            cgroup: PathBuf::from("/sys/fs/cgroup"),
            cgroup_parents: Vec::new(),
        }
    }
}

impl Roots {
    /// Roots at the given directories.
    pub fn new(proc: impl Into<PathBuf>, cgroup: impl Into<PathBuf>) -> Self {
        Roots {
            proc: proc.into(),
            cgroup: cgroup.into(),
            cgroup_parents: Vec::new(),
        }
    }

    /// These roots with `parent` added to [`Roots::cgroup_parents`].
    pub fn with_cgroup_parent(mut self, parent: impl Into<String>) -> Self {
        self.cgroup_parents.push(parent.into());
        self
    }
}
