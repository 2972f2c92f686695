//! The kill-duplicates action (`KillAction`, given the engine, policy,
//! store, metrics and abort flag it needs rather than the whole service):
//! plan (sample the container), then, unless in dry-run, execute through
//! the kill engine with the processes about to be stopped journaled first
//! and the shutdown's abort flag watched. A run that
//! signalled nothing ends `protected` (or `recovered` when every victim was
//! gone), never `done`: it starts no cooldown and does not count toward the
//! circuit breaker.

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::audit::{plan_processes, report_processes, stop_journal};
use crate::identity::runtime_view_mismatch;
use crate::kill::{ExecControl, KillEngine, KillPolicy};
use crate::metrics::Metrics;
use crate::outcome::Outcome;
use crate::pipeline::{ActionEnd, Job, KillTally};
use crate::store::Store;
use crate::task::blocking;

/// What the kill-duplicates action is given: the engine, the policy, the
/// audit store its journal writes to, the metrics it counts signals in,
/// and the shutdown's abort flag.
pub(crate) struct KillAction<'a> {
    pub engine: &'a Arc<dyn KillEngine>,
    pub policy: &'a KillPolicy,
    pub store: &'a Store,
    pub metrics: &'a Metrics,
    pub abort: Arc<AtomicBool>,
}

impl KillAction<'_> {
    /// Runs `job` to its end; `aborted` resolves when the remediator shuts
    /// down (sampling is then abandoned, an execution interrupted).
    pub(crate) async fn run(&self, job: &Job, aborted: impl Future<Output = ()>) -> ActionEnd {
        let policy = self.policy.clone();
        let engine = Arc::clone(self.engine);
        let id = job.info.id.clone();
        let p2 = policy.clone();
        let planning = blocking(move || engine.plan(&id, &p2));
        let planned = tokio::select! {
            r = planning => r,
            _ = aborted => {
                return ActionEnd::retryable("interrupted while sampling: the remediator is shutting down; no signal sent");
            }
        };
        let plan = match planned {
            Ok(Ok(Some(plan))) => plan,
            Ok(Ok(None)) => {
                return ActionEnd::new(
                    Outcome::UnknownContainer,
                    "no such container in the cgroup filesystem",
                )
            }
            Ok(Err(e)) => {
                return ActionEnd::retryable(format!("planning failed: {e}; no signal sent"))
            }
            Err(e) => return ActionEnd::retryable(format!("planning failed: {e}; no signal sent")),
        };
        let copies = plan.victims.len();
        if copies == 0 {
            return if plan.protected_skipped > 0 {
                ActionEnd::new(
                    Outcome::Protected,
                    format!(
                        "only protected processes matched ({} copies skipped)",
                        plan.protected_skipped
                    ),
                )
            } else {
                ActionEnd::new(Outcome::Recovered, "no duplicate copies left on re-check")
            };
        }
        if let Some(end) =
            runtime_view_mismatch(self.engine, &job.info, Some(plan.scope.clone())).await
        {
            return end;
        }
        let procs = plan_processes(&plan);
        let of_copies = copies + plan.kept.len() + plan.spared.len();
        let command = most_common(plan.victims.iter().map(|c| c.root.command.as_str()));
        if job.dry_run {
            return ActionEnd::new(
                Outcome::DryRun,
                format!(
                    "would signal {} processes in {copies} copies (SIGTERM, {} s grace, SIGKILL), keeping {} per group",
                    procs.total,
                    policy.grace.as_secs_f64(),
                    policy.keep
                ),
            )
            .with(procs)
            .tallied(KillTally {
                killed: copies,
                of: of_copies,
                command: command.clone(),
                bytes: plan.victim_rss_bytes(),
            });
        }
        // What each victim copy held, to count those that were signalled.
        let copies: Vec<(Vec<(i32, u64)>, u64)> = plan
            .victims
            .iter()
            .map(|c| {
                let ids = c.members.iter().map(|m| (m.pid, m.start_time)).collect();
                (ids, c.rss_bytes)
            })
            .collect();
        let engine = Arc::clone(self.engine);
        let journal = stop_journal(self.store.clone(), job.row);
        let abort = Arc::clone(&self.abort);
        let report = match blocking(move || {
            let control = ExecControl {
                abort: &abort,
                journal: &journal,
            };
            engine.execute(&plan, &policy, &control)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => return ActionEnd::new(Outcome::Failed, e.to_string()).with(procs),
        };
        for s in &report.signalled {
            self.metrics
                .signals
                .get_or_create(&crate::metrics::SignalLabel {
                    signal: s.signal.as_str().to_string(),
                })
                .inc();
        }
        let processes = report_processes(&report);
        let hit: std::collections::HashSet<(i32, u64)> = report
            .signalled
            .iter()
            .map(|s| (s.process.pid, s.process.start_time))
            .collect();
        let killed: Vec<u64> = copies
            .iter()
            .filter(|(ids, _)| ids.iter().any(|id| hit.contains(id)))
            .map(|(_, rss)| *rss)
            .collect();
        let freed = KillTally {
            killed: killed.len(),
            of: of_copies,
            command,
            bytes: killed.iter().sum(),
        };
        let summary = format!(
            "{} signals sent, {} processes gone before their signal, {} refused, {} survivors",
            report.signalled.len(),
            report.gone_before_signal.len(),
            report.refused.len(),
            report.survivors.len()
        );
        if report.interrupted {
            let sent = report.signalled.len();
            let end = if sent == 0 {
                ActionEnd::retryable(format!(
                    "interrupted: the remediator is shutting down; every stopped process was continued; {summary}"
                ))
            } else {
                ActionEnd::new(
                    Outcome::Failed,
                    format!("interrupted: the remediator is shutting down; every stopped process was continued; {summary}"),
                )
            };
            end.with(processes).tallied(freed.clone())
        } else if !report.survivors.is_empty() {
            ActionEnd::new(Outcome::Failed, summary)
                .with(processes)
                .tallied(freed.clone())
        } else if report.signalled.is_empty() && report.refused.is_empty() {
            ActionEnd::new(
                Outcome::Recovered,
                format!("every victim exited on its own; {summary}"),
            )
            .with(processes)
        } else if report.signalled.is_empty() {
            // Nothing was killed (copies changed their command line, a
            // protected process appeared in them, pinning failed): not a
            // kill, so no cooldown and nothing toward the breaker.
            let why = report.refused.first().map_or("", |(_, why)| why.as_str());
            ActionEnd::new(
                Outcome::Protected,
                format!("nothing signalled: every planned process was refused or gone (first refusal: {why}); {summary}"),
            )
            .with(processes)
        } else {
            ActionEnd::new(Outcome::Done, summary)
                .with(processes)
                .tallied(freed.clone())
        }
    }
}

/// The most frequent item (the first of equals); empty for none.
fn most_common<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for i in items {
        match counts.iter_mut().find(|(c, _)| *c == i) {
            Some((_, n)) => *n += 1,
            None => counts.push((i, 1)),
        }
    }
    let best = counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
    counts
        .into_iter()
        .find(|(_, n)| *n == best)
        .map_or_else(String::new, |(c, _)| c.to_string())
}
