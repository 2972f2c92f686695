//! `pidwarden-remediator plan`: the plan an alert would get now, without
//! acting. The container is resolved as an alert's is ([`crate::resolve`]),
//! the container's refusals apply, the kill engine plans it
//! ([`KillEngine::plan`]) and the runtime's view is checked against the
//! plan's cgroup ([`crate::identity`]), exactly as before a live action;
//! then nothing is signalled. The daemon's restraint state (cooldown,
//! circuit breaker, idempotency) is not consulted: it lives in the daemon.

use std::sync::Arc;

use serde::Serialize;

use crate::alert::Target;
use crate::config::Settings;
use crate::identity::runtime_view_mismatch;
use crate::kill::{CopyPlan, KillEngine, KillPlan};
use crate::outcome::Outcome;
use crate::resolve::{container_refusal, is_dry_run, resolve, Resolved};
use crate::runtime::ContainerRuntime;
use crate::task::blocking;
pub use crate::units::format_bytes;

/// What an alert for the container would get now.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// The container id (empty when it was not resolved).
    pub id: String,
    /// The container name (empty when it was not resolved).
    pub name: String,
    /// The result a live action would end with: `done` (or `dry_run`) when
    /// there are victims, `recovered` or `protected` when there are none;
    /// for a refused container, the refusal's result.
    pub result: Outcome,
    /// Why.
    pub reason: String,
    /// The container would be refused before any plan (protected, not on
    /// this node, not the runtime's container, a bad id).
    pub refused: bool,
    /// An action would only record what it would do.
    pub dry_run: bool,
    /// Copies kept per duplicate group.
    pub keep: usize,
    /// Sampling window, seconds.
    pub sample_secs: f64,
    /// Grace period between SIGTERM and SIGKILL, seconds.
    pub grace_secs: f64,
    /// The plan (absent when refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<KillPlan>,
}

/// Previewing failed (not a refusal: the question could not be answered).
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// The runtime could not be asked, or planning failed.
    #[error("{0}")]
    Failed(String),
}

/// Resolves `target` and plans a kill-duplicates for it as an alert would
/// now, acting on nothing. Blocks for the sampling window.
pub async fn preview(
    runtime: &dyn ContainerRuntime,
    engine: &Arc<dyn KillEngine>,
    settings: &Settings,
    target: &Target,
) -> Result<Preview, PreviewError> {
    let policy = &settings.kill;
    let mut out = Preview {
        id: String::new(),
        name: String::new(),
        result: Outcome::UnknownContainer,
        reason: String::new(),
        refused: true,
        dry_run: settings.dry_run,
        keep: policy.keep.max(1),
        sample_secs: policy.sample.as_secs_f64(),
        grace_secs: policy.grace.as_secs_f64(),
        plan: None,
    };
    let refuse = |mut out: Preview, result: Outcome, reason: String| {
        out.result = result;
        out.reason = reason;
        Ok(out)
    };
    let info = match resolve(runtime, engine, target, &|| {}).await {
        Resolved::Here(info) => info,
        Resolved::Elsewhere(why) => return refuse(out, Outcome::UnknownContainer, why),
        Resolved::Refused(Outcome::Failed, why, _) => return Err(PreviewError::Failed(why)),
        Resolved::Refused(result, why, _) => return refuse(out, result, why),
    };
    out.id = info.id.clone();
    out.name = info.name.clone();
    out.dry_run = is_dry_run(&info, settings);
    if let Some(why) = container_refusal(&info, settings) {
        return refuse(out, Outcome::Protected, why);
    }
    let (e, id, p) = (Arc::clone(engine), info.id.clone(), policy.clone());
    let plan = match blocking(move || e.plan(&id, &p)).await {
        Ok(Ok(Some(plan))) => plan,
        Ok(Ok(None)) => {
            let why = "no such container in the cgroup filesystem".to_string();
            return refuse(out, Outcome::UnknownContainer, why);
        }
        Ok(Err(e)) => return Err(PreviewError::Failed(format!("planning failed: {e}"))),
        Err(e) => return Err(PreviewError::Failed(format!("planning failed: {e}"))),
    };
    if let Some(end) = runtime_view_mismatch(engine, &info, Some(plan.scope.clone())).await {
        if end.retry {
            return Err(PreviewError::Failed(end.reason));
        }
        return refuse(out, end.result, end.reason);
    }
    out.refused = false;
    let procs: usize = plan.victims.iter().map(|c| c.members.len()).sum();
    (out.result, out.reason) = if plan.victims.is_empty() {
        if plan.protected_skipped > 0 {
            (
                Outcome::Protected,
                format!(
                    "only protected processes matched ({} copies skipped)",
                    plan.protected_skipped
                ),
            )
        } else {
            (
                Outcome::Recovered,
                "no duplicate copies to kill".to_string(),
            )
        }
    } else {
        let result = if out.dry_run {
            Outcome::DryRun
        } else {
            Outcome::Done
        };
        (
            result,
            format!(
                "would signal {procs} processes in {} copies (SIGTERM, {} s grace, SIGKILL), keeping {} per group; {} held",
                plan.victims.len(),
                out.grace_secs,
                out.keep,
                format_bytes(plan.victim_rss_bytes())
            ),
        )
    };
    out.plan = Some(plan);
    Ok(out)
}

/// The preview as a text table: a header, then one line per copy (victims,
/// kept, spared) with its processes.
pub fn format_preview(p: &Preview) -> String {
    use crate::alert::clip;
    let mut s = String::new();
    let container = if p.id.is_empty() {
        "-".to_string()
    } else if p.name.is_empty() {
        p.id.clone()
    } else {
        format!("{} ({})", p.id, clip(&p.name, 60))
    };
    s.push_str(&format!("{:<11}{container}\n", "container:"));
    s.push_str(&format!(
        "{:<11}keep {} per group, sample {} s, grace {} s{}\n",
        "policy:",
        p.keep,
        p.sample_secs,
        p.grace_secs,
        if p.dry_run { ", dry-run" } else { "" }
    ));
    let verdict = if p.refused { "refused" } else { "result" };
    s.push_str(&format!(
        "{:<11}{}: {}\n",
        format!("{verdict}:"),
        p.result,
        p.reason
    ));
    let Some(plan) = &p.plan else {
        return s;
    };
    s.push_str(&format!(
        "\n{:<22} {:>8} {:>14} {:>6} {:>6} {:>10}  {}\n",
        "FATE", "PID", "START", "PROCS", "CPU", "RSS", "COMMAND"
    ));
    let line = |s: &mut String, fate: &str, c: &CopyPlan| {
        s.push_str(&format!(
            "{:<22} {:>8} {:>14} {:>6} {:>6} {:>10}  {}\n",
            fate,
            c.root.pid,
            c.root.start_time,
            c.members.len(),
            c.cpu_ticks,
            format_bytes(c.rss_bytes),
            clip(&c.root.command, 80)
        ));
        let pids: Vec<String> = c.members.iter().map(|m| m.pid.to_string()).collect();
        s.push_str(&format!(
            "{:<22} processes: {}\n",
            "",
            clip(&pids.join(" "), 200)
        ));
    };
    for c in &plan.victims {
        line(&mut s, "signal", c);
    }
    for c in &plan.kept {
        line(&mut s, "keep (most active)", c);
    }
    for c in &plan.spared {
        line(&mut s, &format!("spare ({})", c.spared.as_str()), &c.copy);
    }
    s
}
