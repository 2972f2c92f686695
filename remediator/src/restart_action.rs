//! The restart action: re-check the container through its runtime (still
//! running, not restarted since the alert began), then restart it with the
//! grace period as stop timeout. Docker and Podman restart it; on Kubernetes
//! the CRI stops it and the kubelet starts it again, and the stop timeout is
//! the pod's `terminationGracePeriodSeconds` when the kubelet wrote it (at
//! most [`MAX_POD_GRACE`]). A runtime error or timeout changed nothing the
//! re-check would not see, so it is retried on redelivery; a refusal (a pod
//! sandbox) is not. `RestartAction` is given the runtime, the kill engine
//! (for the runtime-view check), the grace and the abort flag it needs;
//! `restart_refusal` says why a container may not be restarted at all.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::identity::runtime_view_mismatch;
use crate::kill::KillEngine;
use crate::outcome::Outcome;
use crate::pipeline::{ActionEnd, Job, ProcessList};
use crate::runtime::{ContainerInfo, ContainerRuntime, RestartPolicy, RuntimeError};
use crate::service::INSPECT_TIMEOUT;

/// The longest pod grace period a restart waits for: a pod's own value
/// (which its owner sets) never holds the container's lock longer.
pub const MAX_POD_GRACE: Duration = Duration::from_secs(600);

/// What the restart action is given: the runtime that restarts, the kill
/// engine that checks the runtime's view, the grace period, the shutdown's
/// abort flag, and what to call each time the runtime answers (the
/// readiness probe's source).
pub(crate) struct RestartAction<'a> {
    pub runtime: &'a Arc<dyn ContainerRuntime>,
    pub engine: &'a Arc<dyn KillEngine>,
    pub grace: Duration,
    pub abort: &'a AtomicBool,
    pub answered: &'a (dyn Fn() + Sync),
}

impl RestartAction<'_> {
    /// Re-checks the container and restarts it, unless in dry-run.
    pub(crate) async fn run(&self, job: &Job) -> ActionEnd {
        let id = &job.info.id;
        let info = match tokio::time::timeout(INSPECT_TIMEOUT, self.runtime.inspect(id)).await {
            Ok(Ok(i)) => i,
            Ok(Err(RuntimeError::NotFound)) => {
                return ActionEnd::new(
                    Outcome::UnknownContainer,
                    "container vanished before the restart",
                )
            }
            Ok(Err(e)) => return ActionEnd::retryable(format!("re-check failed: {e}")),
            Err(_) => return ActionEnd::retryable("re-check timed out"),
        };
        (self.answered)();
        if !info.running {
            return ActionEnd::new(
                Outcome::Recovered,
                "container is not running; not restarting it",
            );
        }
        if let (Some(started), Some(alert)) = (info.started_at, job.alert_starts_at) {
            if started > alert {
                return ActionEnd::new(
                    Outcome::Recovered,
                    format!(
                        "container started at {}, after the alert began at {}: already restarted",
                        crate::timefmt::format_rfc3339(started),
                        crate::timefmt::format_rfc3339(alert)
                    ),
                );
            }
        }
        if let Some(end) = runtime_view_mismatch(self.engine, &info, None).await {
            return end;
        }
        if let Some(why) = restart_refusal(&info) {
            return ActionEnd::new(Outcome::Protected, format!("not restarting: {why}"));
        }
        let (grace, source) = match info.pod.as_ref().and_then(|p| p.termination_grace) {
            Some(g) => (
                g.min(MAX_POD_GRACE),
                "the pod's terminationGracePeriodSeconds",
            ),
            None => (self.grace, "--grace"),
        };
        let stop_timeout = grace.as_secs().max(1);
        if job.dry_run {
            return ActionEnd::new(
                Outcome::DryRun,
                format!("would restart the container (stop timeout {stop_timeout} s, {source})"),
            )
            .with(ProcessList::single(
                serde_json::json!({"restart": info.id, "name": info.name}),
            ));
        }
        if self.abort.load(Ordering::SeqCst) {
            return ActionEnd::retryable("the remediator is shutting down; not restarting");
        }
        match self.runtime.restart(id, grace).await {
            Ok(()) | Err(RuntimeError::NotModified) => {
                (self.answered)();
                ActionEnd::new(
                    Outcome::Done,
                    format!("restarted (stop timeout {stop_timeout} s, {source})"),
                )
            }
            Err(RuntimeError::NotFound) => ActionEnd::new(
                Outcome::UnknownContainer,
                "container vanished during the restart",
            ),
            Err(e @ RuntimeError::Refused(_)) => {
                ActionEnd::new(Outcome::Failed, format!("not restarted: {e}"))
            }
            Err(e) => ActionEnd::retryable(format!("restart failed: {e}")),
        }
    }
}

/// Why a container may not be restarted, or `None` when it may. A
/// Kubernetes container is stopped through CRI and only comes back when the
/// kubelet starts it again, which it does for every stop only under the
/// pod's `restartPolicy: Always`. CRI does not carry the pod's policy, so
/// the pod declares it: the label or annotation `pidwarden.restart-policy`.
pub(crate) fn restart_refusal(info: &ContainerInfo) -> Option<String> {
    let pod = info.pod.as_ref()?;
    match pod.restart_policy {
        Some(RestartPolicy::Always) => None,
        Some(p) => Some(format!(
            "the pod's restart policy is {} ({}), so a stopped container may stay stopped",
            p.as_str(),
            crate::runtime::RESTART_POLICY_LABEL
        )),
        None => Some(format!(
            "the pod's restart policy is not known to be Always (CRI does not carry it; the pod declares it with the label or annotation {}=Always)",
            crate::runtime::RESTART_POLICY_LABEL
        )),
    }
}
