//! The seam between the remediator's decisions and the kill-duplicates
//! engine ([`crate::kill`]): a trait, so the HTTP and restraint logic is
//! tested without real processes, and the implementation over the host.
//! Both calls block (sampling, grace period): run them in `spawn_blocking`.

use pidwarden_shared::collect::Collector;
use pidwarden_shared::Roots;

use crate::kill::{KillPlan, KillPolicy, KillReport, ProcRef};

/// Plans and executes kill-duplicates.
pub trait KillEngine: Send + Sync + 'static {
    /// Samples the container and chooses victims; `Ok(None)` when `id` is
    /// not a discovered container. Blocks for the sampling window.
    fn plan(&self, id: &str, policy: &KillPolicy) -> Result<Option<KillPlan>, String>;
    /// Signals the victims: SIGTERM, grace, SIGKILL. Blocks for the grace period.
    fn execute(&self, plan: &KillPlan, policy: &KillPolicy) -> KillReport;
    /// Continues (SIGCONT) each listed process that is still the same
    /// process and still stopped; returns those continued.
    fn resume_stopped(&self, procs: &[ProcRef]) -> Vec<ProcRef>;
}

/// The engine over the host's `/proc` and cgroup filesystem.
/// Each plan uses its own collector, so plans for different containers
/// sample in parallel.
#[derive(Debug)]
pub struct HostKillEngine {
    roots: Roots,
}

impl HostKillEngine {
    /// An engine reading and signalling under `roots`.
    pub fn new(roots: Roots) -> Self {
        HostKillEngine { roots }
    }
}

impl KillEngine for HostKillEngine {
    fn plan(&self, id: &str, policy: &KillPolicy) -> Result<Option<KillPlan>, String> {
        let mut c = Collector::new(self.roots.clone());
        crate::kill::plan(&mut c, id, policy).map_err(|e| e.to_string())
    }

    fn execute(&self, plan: &KillPlan, policy: &KillPolicy) -> KillReport {
        crate::kill::execute(&self.roots, plan, policy)
    }

    fn resume_stopped(&self, procs: &[ProcRef]) -> Vec<ProcRef> {
        use pidwarden_shared::procfs::read_process;
        use pidwarden_shared::signal::PinnedProcess;
        procs
            .iter()
            .filter(|p| {
                let Ok(Some(pin)) = PinnedProcess::pin(&self.roots, p.pid, p.start_time) else {
                    return false;
                };
                let stopped = matches!(read_process(&self.roots, p.pid), Ok(Some(now)) if now.start_time == p.start_time && matches!(now.state, 'T' | 't'));
                stopped && pin.signal(libc::SIGCONT).unwrap_or(false)
            })
            .cloned()
            .collect()
    }
}
