//! The last check before an action: the container runtime's own view of
//! the container (its init process, by the pid the runtime reports) must be
//! the cgroup that discovery found for the id, so an action never lands on
//! a cgroup that only borrows a container's name. Both actions call
//! [`runtime_view_mismatch`] with the kill engine, which does the check.

use std::sync::Arc;

use pidwarden_shared::cgroup::CgroupScope;

use crate::kill::KillEngine;
use crate::outcome::Outcome;
use crate::pipeline::ActionEnd;
use crate::runtime::ContainerInfo;
use crate::task::blocking;

/// `Some(end)` (nothing done, `unknown_container`) when the runtime's
/// init process of `info` is not inside the cgroup discovered for its id
/// (or, given `planned`, the cgroup a plan was made in).
pub(crate) async fn runtime_view_mismatch(
    engine: &Arc<dyn KillEngine>,
    info: &ContainerInfo,
    planned: Option<CgroupScope>,
) -> Option<ActionEnd> {
    let engine = Arc::clone(engine);
    let (id, pid) = (info.id.clone(), info.pid);
    let checked = blocking(move || engine.check_runtime_view(&id, pid, planned.as_ref())).await;
    match checked {
        Ok(Ok(())) => None,
        Ok(Err(why)) => {
            tracing::warn!(id = %info.id, reason = %why, "the runtime's view is not the discovered cgroup; not acting");
            Some(ActionEnd::new(
                Outcome::UnknownContainer,
                format!("not the runtime's container: {why}; nothing done"),
            ))
        }
        Err(e) => Some(ActionEnd::retryable(format!(
            "checking the runtime's view failed: {e}; nothing done"
        ))),
    }
}
