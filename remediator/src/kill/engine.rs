//! The seam between the remediator's decisions and the kill-duplicates
//! engine: the [`KillEngine`] trait, so the HTTP and restraint logic is
//! tested without real processes, and [`HostKillEngine`], which plans,
//! executes and resumes over the host through [`super`].
//! The calls block (sampling, grace period): run them in `spawn_blocking`.

use std::path::PathBuf;
use std::sync::Arc;

use crate::alert::clip;
use pidwarden_shared::cgroup::{detect_layout, discover_all, CgroupScope, ContainerIndex};
use pidwarden_shared::collect::Collector;
use pidwarden_shared::procfs::read_cgroup_membership;
use pidwarden_shared::Roots;

use super::{ExecControl, KillError, KillPlan, KillPolicy, KillReport, ProcRef};

/// Why the runtime's view of a container is not the cgroup discovery finds
/// for it (see [`KillEngine::check_runtime_view`]).
#[derive(Debug, thiserror::Error)]
pub enum ViewMismatch {
    /// The runtime names no init process.
    #[error("the container runtime reports no init process for it")]
    NoInit,
    /// The id names several cgroups.
    #[error("its id names cgroups at {} places ({})", .0.len(), .0.join(", "))]
    Ambiguous(Vec<String>),
    /// Its cgroup is gone.
    #[error("its cgroup is no longer found")]
    NotFound,
    /// Its cgroup is another one than the plan's (now this one).
    #[error("its cgroup changed since the plan (now {})", .0.display())]
    Changed(PathBuf),
    /// The init process is gone.
    #[error("the runtime's init process (pid {0}) is gone")]
    InitGone(i32),
    /// The init process is in another cgroup.
    #[error("the runtime's init process (pid {pid}) is not in the discovered cgroup {} (it is in {found})", .cgroup.display())]
    InitOutside {
        /// The init's pid.
        pid: i32,
        /// The cgroup discovery found.
        cgroup: PathBuf,
        /// Where the init is (its `/proc/<pid>/cgroup` lines, clipped).
        found: String,
    },
    /// Reading the cgroup filesystem or `/proc` failed.
    #[error(transparent)]
    Read(#[from] pidwarden_shared::Error),
}

/// Plans and executes kill-duplicates.
pub trait KillEngine: Send + Sync + 'static {
    /// Samples the container and chooses victims; `Ok(None)` when `id` is
    /// not a discovered container. Blocks for the sampling window.
    fn plan(&self, id: &str, policy: &KillPolicy) -> Result<Option<KillPlan>, KillError>;

    /// Signals the victims: SIGTERM, grace, SIGKILL. Blocks for the grace
    /// period. `control.journal` is told about every process before it is
    /// first stopped, and `control.abort` interrupts the run (no further
    /// signal, everything stopped continued, [`KillReport::interrupted`] set).
    fn execute(
        &self,
        plan: &KillPlan,
        policy: &KillPolicy,
        control: &ExecControl<'_>,
    ) -> KillReport;

    /// Continues the listed processes that are still the same process and
    /// stopped; returns those continued. Called at start-up with what the
    /// journal holds of an execution that never finished.
    fn resume_stopped(&self, procs: &[ProcRef]) -> Vec<ProcRef>;

    /// Whether container `id` runs on this node (its cgroup is here).
    /// May block for a walk of the cgroup filesystem.
    fn is_local(&self, id: &str) -> bool;

    /// Checks, right before acting on container `id`, that the runtime's
    /// own view is the cgroup discovery found: the container's init, as the
    /// runtime reports it (`init_pid`), is inside the cgroup discovery
    /// finds for `id` now; given the cgroup a plan was made in (`planned`),
    /// that cgroup is still the one. `Err` says why not: then nothing is
    /// done. Blocks for a walk of the cgroup filesystem.
    fn check_runtime_view(
        &self,
        id: &str,
        init_pid: Option<i32>,
        planned: Option<&CgroupScope>,
    ) -> Result<(), ViewMismatch>;

    /// Whether container `id` is already known to run on this node, without
    /// blocking (`false`: ask [`KillEngine::is_local`]).
    fn known_local(&self, _id: &str) -> bool {
        false
    }
}

/// The engine over the host's `/proc` and cgroup filesystem.
/// Each plan uses its own collector, so plans for different containers
/// sample in parallel.
#[derive(Debug)]
pub struct HostKillEngine {
    roots: Roots,
    /// The containers on this node (shared with the runtime layer).
    index: Arc<ContainerIndex>,
}

impl HostKillEngine {
    /// An engine reading and signalling under `roots`, finding the node's
    /// containers through `index` (over the same roots).
    pub fn new(roots: Roots, index: Arc<ContainerIndex>) -> Self {
        HostKillEngine { roots, index }
    }
}

impl KillEngine for HostKillEngine {
    fn plan(&self, id: &str, policy: &KillPolicy) -> Result<Option<KillPlan>, KillError> {
        let mut c = Collector::new(self.roots.clone());
        super::plan(&mut c, id, policy)
    }

    fn execute(
        &self,
        plan: &KillPlan,
        policy: &KillPolicy,
        control: &ExecControl<'_>,
    ) -> KillReport {
        super::execute(&self.roots, plan, policy, control)
    }

    fn resume_stopped(&self, procs: &[ProcRef]) -> Vec<ProcRef> {
        super::resume_stopped(&self.roots, procs)
    }

    fn is_local(&self, id: &str) -> bool {
        self.index.lookup(id).is_some()
    }

    fn check_runtime_view(
        &self,
        id: &str,
        init_pid: Option<i32>,
        planned: Option<&CgroupScope>,
    ) -> Result<(), ViewMismatch> {
        let pid = init_pid.ok_or(ViewMismatch::NoInit)?;
        let layout = detect_layout(&self.roots)?;
        let found = discover_all(&layout)?;
        if let Some(a) = found.ambiguous.iter().find(|a| a.id == id) {
            return Err(ViewMismatch::Ambiguous(a.paths.clone()));
        }
        let c = found
            .containers
            .iter()
            .find(|c| c.id == id)
            .ok_or(ViewMismatch::NotFound)?;
        let scope = CgroupScope::of(&layout, c);
        if planned.is_some_and(|p| *p != scope) {
            return Err(ViewMismatch::Changed(c.rel_path.clone()));
        }
        let text = match read_cgroup_membership(&self.roots, pid)? {
            Some(t) => t,
            None => return Err(ViewMismatch::InitGone(pid)),
        };
        if !scope.contains(&text) {
            let shown: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
            return Err(ViewMismatch::InitOutside {
                pid,
                cgroup: c.rel_path.clone(),
                found: clip(&shown.join(" "), 300),
            });
        }
        Ok(())
    }

    fn known_local(&self, id: &str) -> bool {
        self.index.known(id).is_some()
    }
}
