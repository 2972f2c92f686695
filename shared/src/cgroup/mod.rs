//! The cgroup side of the model: which hierarchies the host mounts
//! ([`Layout`]), which cgroups are containers ([`discover`], and
//! [`ContainerIndex`] for lookups of one id), and what their pids and
//! memory controllers report ([`read_pids`], [`read_memory`]).
//!
//! Parsing is split from reading: the functions in [`parse`] (and
//! [`classify`]) take file contents or paths as strings and are tested on
//! literal strings; [`detect_layout`], [`discover`] and the `read_*`
//! functions do the I/O.

use std::path::PathBuf;

use serde::Serialize;

use crate::Limit;

mod classify;
mod discover;
mod index;
mod kept;
mod layout;
mod membership;
pub mod parse;
mod stats;

pub use classify::{classify, classify_under, is_container_id, may_hold_containers};
pub use discover::{discover, discover_all, Ambiguous, Discovered};
pub use index::{ContainerIndex, REWALK_AFTER};
pub use kept::ControlFiles;
pub use layout::{detect_layout, pids_local_events};
pub use membership::{is_within, path_in, CgroupScope, Hierarchy, Place};
pub use stats::{
    count_threads_from, count_threads_recursive, read_memory, read_memory_from, read_pids,
    read_pids_from, read_procs_from, read_procs_recursive, Fresh, Source,
};

/// How the cgroup filesystem is mounted under the cgroup root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// cgroup v2 unified tree (`<root>` itself on pure v2, `<root>/unified` on hybrid).
    pub unified: Option<PathBuf>,
    /// cgroup v1 `pids` hierarchy, when mounted.
    pub v1_pids: Option<PathBuf>,
    /// cgroup v1 `memory` hierarchy, when mounted.
    pub v1_memory: Option<PathBuf>,
    /// cgroup v1 named `systemd` hierarchy, when mounted.
    pub v1_systemd: Option<PathBuf>,
    /// Whether the unified tree carries the pids/memory controllers (pure v2).
    pub unified_controllers: bool,
    /// Cgroup parents configured besides the runtimes' defaults
    /// ([`crate::Roots::cgroup_parents`]).
    pub parents: Vec<String>,
    /// Whether cgroup2 is mounted with `pids_localevents` (Linux 6.12 and
    /// later): `pids.events` then counts a refused fork in the forking task's
    /// cgroup, as v1 and kernels before 6.12 do, instead of in the cgroup
    /// whose limit refused it and its ancestors. Read from the proc root's
    /// `self/mountinfo` (see [`layout::pids_local_events`]).
    pub pids_local_events: bool,
}

/// The container runtime that created a cgroup, told from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Docker (`docker/<id>`, `docker-<id>.scope`).
    Docker,
    /// Podman (`libpod-<id>.scope`, `libpod_parent/libpod-<id>`).
    Podman,
    /// containerd, usually under Kubernetes (`cri-containerd-<id>.scope`, `kubepods/…/<id>`).
    Containerd,
    /// CRI-O (`crio-<id>.scope`).
    Crio,
}

impl Runtime {
    /// The label value used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Containerd => "containerd",
            Runtime::Crio => "crio",
        }
    }
}

/// A container found in the cgroup filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    /// The full container id (64 lowercase hex characters).
    pub id: String,
    /// Who created it.
    pub runtime: Runtime,
    /// The Kubernetes pod uid, for containers under `kubepods`.
    pub pod_uid: Option<String>,
    /// The container's cgroup path relative to the hierarchy root, e.g.
    /// `system.slice/docker-<id>.scope` (the same in every v1 hierarchy on
    /// ordinary hosts; see [`Container::dirs`]).
    pub rel_path: PathBuf,
    /// Absolute directories of the container's cgroup per hierarchy.
    pub dirs: CgroupDirs,
}

/// Absolute directories of one container's cgroup, per hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CgroupDirs {
    /// Directory holding `pids.*` files (v1 pids hierarchy or v2 unified).
    pub pids: Option<PathBuf>,
    /// Directory holding `memory.*` files (v1 memory hierarchy or v2 unified).
    pub memory: Option<PathBuf>,
    /// Directory whose `cgroup.procs` (recursively) lists the container's processes.
    pub procs: Option<PathBuf>,
    /// Whether `memory` is a v1 directory (file names differ).
    pub memory_v1: bool,
}

/// What the pids controller reports for a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PidsStats {
    /// `pids.current`: tasks (threads, zombies included) charged to the cgroup.
    pub current: u64,
    /// Smallest `pids.max` of the cgroup and its ancestors.
    pub limit: Limit,
    /// Smallest `pids.max - pids.current` over the cgroup and its ancestors; `None` when all are unlimited.
    pub headroom: Option<u64>,
    /// `pids.events` `max`: forks refused at the limit.
    pub limit_hits: u64,
    /// `pids.peak`: the most tasks the cgroup ever had; `None` where the
    /// kernel has no such file.
    pub peak: Option<u64>,
}

/// What the memory controller reports for a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryStats {
    /// `memory.current` (v2) / `memory.usage_in_bytes` (v1).
    pub usage: u64,
    /// usage minus inactive file pages, floored at 0.
    pub working_set: u64,
    /// Smallest memory limit of the cgroup and its ancestors.
    pub limit: Limit,
    /// OOM kills in the cgroup.
    pub oom_kills: u64,
}
