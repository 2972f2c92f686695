//! From an alert's target to a container this node may act on: the
//! runtime's answer for the id or name, checked to be the container asked
//! for and to have its cgroup on this node, then the container's own
//! refusals (opt-out label, protected namespaces). The decision stage and
//! the `plan` command both go through here, so a plan shows what an alert
//! would get.

use std::sync::Arc;

use crate::alert::{clip, is_full_id, Target};
use crate::config::Settings;
use crate::kill::KillEngine;
use crate::outcome::Outcome;
use crate::runtime::{ContainerInfo, ContainerRuntime, RuntimeError};
use crate::service::INSPECT_TIMEOUT;
use crate::task::{blocking, TaskFailed};

/// Opt-out label: `pidwarden.enable=false`.
pub const LABEL_ENABLE: &str = "pidwarden.enable";
/// The kubelet's container label naming the pod's namespace.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Per-container dry-run label: `pidwarden.dry-run=true`.
pub const LABEL_DRY_RUN: &str = "pidwarden.dry-run";

/// Where the container an alert names is.
#[derive(Debug)]
pub enum Resolved {
    /// On this node.
    Here(ContainerInfo),
    /// Not on this node (the runtime does not know it, or its cgroup is not
    /// here): why.
    Elsewhere(String),
    /// Refused: result, reason, whether a retry could succeed.
    Refused(Outcome, String, bool),
}

/// Whether container `id` runs on this node: its cgroup is here (the
/// engine's index of the node's containers; one not found is looked for
/// again, as it may just have started).
pub async fn is_local(engine: &Arc<dyn KillEngine>, id: &str) -> Result<bool, TaskFailed> {
    if engine.known_local(id) {
        return Ok(true);
    }
    let engine = Arc::clone(engine);
    let owned = id.to_string();
    blocking(move || engine.is_local(&owned)).await
}

/// The container `target` names, through the runtime and this node's
/// cgroups. `answered` is called whenever the runtime answered.
pub async fn resolve(
    runtime: &dyn ContainerRuntime,
    engine: &Arc<dyn KillEngine>,
    target: &Target,
    answered: &(dyn Fn() + Send + Sync),
) -> Resolved {
    let lookup = match target {
        Target::Invalid(why) => {
            return Resolved::Refused(Outcome::UnknownContainer, why.clone(), false)
        }
        // An id whose cgroup is not on this node needs no runtime call:
        // whatever the runtime says, nothing here can act on it.
        Target::Id(id) => match is_local(engine, id).await {
            Ok(true) => id.clone(),
            Ok(false) => {
                return Resolved::Elsewhere("no container with this id runs on this node".into())
            }
            Err(e) => return Resolved::Refused(Outcome::Failed, e.to_string(), true),
        },
        Target::Name(name) => name.clone(),
    };
    let info = match tokio::time::timeout(INSPECT_TIMEOUT, runtime.inspect(&lookup)).await {
        Ok(Ok(info)) => info,
        Ok(Err(RuntimeError::NotFound)) => {
            answered();
            return Resolved::Elsewhere(
                "the container runtime of this node does not know this container".into(),
            );
        }
        Ok(Err(e)) => {
            let retry = matches!(e, RuntimeError::Unreachable(_));
            return Resolved::Refused(Outcome::Failed, e.to_string(), retry);
        }
        Err(_) => {
            let reason = "container runtime did not answer the inspect in time".to_string();
            return Resolved::Refused(Outcome::Failed, reason, true);
        }
    };
    answered();
    if !is_full_id(&info.id) {
        let reason = "the runtime returned no usable container id".to_string();
        return Resolved::Refused(Outcome::UnknownContainer, reason, false);
    }
    // A runtime may resolve a 64-hex string as a name too: the answer
    // must be the container asked for.
    if matches!(target, Target::Id(id) if *id != info.id) {
        let reason = format!(
            "the runtime answered for another container ({}) than the id asked for",
            clip(&info.id, 64)
        );
        return Resolved::Refused(Outcome::UnknownContainer, reason, false);
    }
    match is_local(engine, &info.id).await {
        Ok(true) => Resolved::Here(info),
        Ok(false) => Resolved::Elsewhere("the container's cgroup is not on this node".into()),
        Err(e) => Resolved::Refused(Outcome::Failed, e.to_string(), true),
    }
}

/// Why the container itself refuses any action (`protected`): it opted out
/// (`pidwarden.enable=false`) or its Kubernetes namespace is excluded.
pub fn container_refusal(info: &ContainerInfo, settings: &Settings) -> Option<String> {
    if info
        .labels
        .get(LABEL_ENABLE)
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
    {
        return Some(format!("container opted out ({LABEL_ENABLE}=false)"));
    }
    let namespace = info.labels.get(LABEL_POD_NAMESPACE).map(String::as_str);
    settings.namespace_refusal(namespace)
}

/// Whether an action on this container only records what it would do:
/// global dry-run, or the container's `pidwarden.dry-run=true` label.
pub fn is_dry_run(info: &ContainerInfo, settings: &Settings) -> bool {
    settings.dry_run
        || info
            .labels
            .get(LABEL_DRY_RUN)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}
