//! The seam between the remediator's decisions and the kill-duplicates
//! engine: the [`KillEngine`] trait, so the HTTP and restraint logic is
//! tested without real processes, and [`HostKillEngine`], which plans,
//! executes and resumes over the host through [`super`].
//! The calls block (sampling, grace period): run them in `spawn_blocking`.

use std::sync::Arc;

use pidwarden_shared::cgroup::{detect_layout, discover_all, CgroupScope, ContainerIndex};
use pidwarden_shared::collect::Collector;
use pidwarden_shared::procfs::read_cgroup_membership;
use pidwarden_shared::Roots;

use super::{ExecControl, KillPlan, KillPolicy, KillReport, ProcRef};

/// Plans and executes kill-duplicates.
pub trait KillEngine: Send + Sync + 'static {
    /// Samples the container and chooses victims; `Ok(None)` when `id` is
    /// not a discovered container. Blocks for the sampling window.
    fn plan(&self, id: &str, policy: &KillPolicy) -> Result<Option<KillPlan>, String>;

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
    ) -> Result<(), String>;

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
    fn plan(&self, id: &str, policy: &KillPolicy) -> Result<Option<KillPlan>, String> {
        let mut c = Collector::new(self.roots.clone());
        super::plan(&mut c, id, policy).map_err(|e| e.to_string())
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
    ) -> Result<(), String> {
        let pid = init_pid.ok_or("the container runtime reports no init process for it")?;
        let layout = detect_layout(&self.roots).map_err(|e| e.to_string())?;
        let found = discover_all(&layout).map_err(|e| e.to_string())?;
        if let Some(a) = found.ambiguous.iter().find(|a| a.id == id) {
            return Err(format!(
                "its id names cgroups at {} places ({})",
                a.paths.len(),
                a.paths.join(", ")
            ));
        }
        let c = found
            .containers
            .iter()
            .find(|c| c.id == id)
            .ok_or("its cgroup is no longer found")?;
        let scope = CgroupScope::of(&layout, c);
        if planned.is_some_and(|p| *p != scope) {
            return Err(format!(
                "its cgroup changed since the plan (now {})",
                c.rel_path.display()
            ));
        }
        let text = match read_cgroup_membership(&self.roots, pid) {
            Ok(Some(t)) => t,
            Ok(None) => return Err(format!("the runtime's init process (pid {pid}) is gone")),
            Err(e) => return Err(e.to_string()),
        };
        if !scope.contains(&text) {
            let shown: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
            return Err(format!(
                "the runtime's init process (pid {pid}) is not in the discovered cgroup {} (it is in {})",
                c.rel_path.display(),
                crate::alert::clip(&shown.join(" "), 300)
            ));
        }
        Ok(())
    }

    fn known_local(&self, id: &str) -> bool {
        self.index.known(id).is_some()
    }
}
