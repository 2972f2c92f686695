//! After a crash: [`resume_stopped`] continues what a run had journaled
//! ([`super::ExecControl::journal`]) and left frozen, each process only if it
//! is still the same process (pid and start time, through a pidfd).

use pidwarden_shared::procfs::read_process;
use pidwarden_shared::signal::PinnedProcess;
use pidwarden_shared::Roots;

use super::ProcRef;

/// Continues every listed process that is still the same process (pid and
/// start time, through a pidfd) and is stopped (state `T` or `t`); returns
/// those continued. For start-up: the processes a remediator that crashed
/// mid-run had journaled ([`super::ExecControl::journal`]) and may have left
/// frozen. A process that is gone, recycled or running is left alone.
pub fn resume_stopped(roots: &Roots, procs: &[ProcRef]) -> Vec<ProcRef> {
    let mut out = Vec::new();
    for pr in procs {
        let Ok(Some(pin)) = PinnedProcess::pin(roots, pr.pid, pr.start_time) else {
            continue;
        };
        let stopped = matches!(
            read_process(roots, pr.pid),
            Ok(Some(p)) if p.start_time == pr.start_time && p.state.is_stopped()
        );
        if stopped && matches!(pin.signal(libc::SIGCONT), Ok(true)) {
            out.push(pr.clone());
        }
    }
    out
}
