//! The decision stage: one webhook payload's alerts, in order, each to a
//! recorded decision. An alert that is to be acted on takes its container's
//! lock, is claimed in the restraint state and recorded `pending` (durably),
//! and its action starts in a background task that holds the lock until the
//! action has ended. The whole payload is handled in a task of its own, so a
//! client that disconnects mid-request never leaves a claimed instance
//! without its action.

use std::sync::Arc;
use std::time::Instant;

use crate::alert::{clip, Action, Alert, RequestedAction, WebhookPayload};
use crate::audit::{instance_key, Row};
use crate::forward::{Origin, MAX_FORWARD_FAILURES};
use crate::kill_action::KillAction;
use crate::notices::{is_noticed, notice, NoticeFacts};
use crate::outcome::Outcome;
use crate::pipeline::{ActionEnd, AlertOutcome, Job};
use crate::restart_action::{restart_refusal, RestartAction};
use crate::restraint::{Decision, Subject};
use crate::service::{set_circuit_open, ContainerLock, InFlight, Saturated, Service};
use pidwarden_shared::runtime::KubeRef;

use crate::resolve::{container_refusal, is_dry_run, resolve, Resolved};
pub use crate::resolve::{LABEL_DRY_RUN, LABEL_ENABLE, LABEL_POD_NAMESPACE};

impl Service {
    /// Handles every alert of a payload, in order, in a task detached from
    /// the caller: dropping the returned future (a client gone) does not
    /// stop it. Only decisions are taken here; actions continue in
    /// background tasks. [`Saturated`] when none of the
    /// [`MAX_PAYLOADS`](crate::service::MAX_PAYLOADS) slots came free within
    /// [`PAYLOAD_WAIT`](crate::service::PAYLOAD_WAIT) (nothing was looked
    /// at: a retry may succeed).
    pub async fn handle(
        self: &Arc<Self>,
        payload: &WebhookPayload,
    ) -> Result<Vec<AlertOutcome>, Saturated> {
        self.handle_from(payload, Origin::Direct).await
    }

    /// [`Service::handle`] for a request of the given origin: a request
    /// another remediator forwarded is never forwarded again.
    pub async fn handle_from(
        self: &Arc<Self>,
        payload: &WebhookPayload,
        origin: Origin,
    ) -> Result<Vec<AlertOutcome>, Saturated> {
        let slot = self.payload_slot().await?;
        let svc = Arc::clone(self);
        let alerts = payload.alerts.clone();
        let task = tokio::spawn(async move {
            let _slot = slot;
            let mut out = Vec::with_capacity(alerts.len());
            let mut forward_failures = 0;
            for alert in &alerts {
                out.push(svc.handle_one(alert, origin, &mut forward_failures).await);
            }
            out
        });
        Ok(match task.await {
            Ok(out) => out,
            Err(e) => {
                tracing::error!(error = %e, "handling a webhook payload failed");
                payload
                    .alerts
                    .iter()
                    .map(|a| AlertOutcome {
                        row: -1,
                        fingerprint: clip(&a.fingerprint, 64),
                        action: RequestedAction::from_label(a.action_label()),
                        result: Outcome::Failed,
                        reason: "internal error".into(),
                        retryable: true,
                    })
                    .collect()
            }
        })
    }

    async fn handle_one(
        self: &Arc<Self>,
        alert: &Alert,
        origin: Origin,
        forward_failures: &mut u32,
    ) -> AlertOutcome {
        // One snapshot of the settings for the whole decision: a reload
        // in the middle never mixes two configurations.
        let settings = self.settings();
        let label = &RequestedAction::from_label(alert.action_label());
        let none = ("", "");
        if alert.is_resolved() {
            let reason = "alert resolved; nothing to do".to_string();
            return self
                .refuse(alert, none, label, Outcome::Resolved, reason, false)
                .await;
        }
        let Some(requested) = label.action() else {
            let reason = if *label == RequestedAction::None {
                "no pidwarden_action label; ignored".to_string()
            } else {
                format!("unknown pidwarden_action {:?}; ignored", label.as_str())
            };
            return self
                .refuse(alert, none, label, Outcome::Ignored, reason, false)
                .await;
        };
        if !settings.allows(alert.alertname(), requested) {
            let reason = format!(
                "alert {:?} may not ask for {} (config [actions])",
                clip(alert.alertname(), 100),
                requested.as_str()
            );
            return self
                .refuse(alert, none, label, Outcome::Ignored, reason, false)
                .await;
        }
        let answered = || self.runtime_answered();
        let info = match resolve(&*self.runtime, &self.engine, &alert.target(), &answered).await {
            Resolved::Here(info) => info,
            Resolved::Elsewhere(why) => {
                return match (origin, self.peers()) {
                    (Origin::Direct, Some(_)) => self.forward(alert, label, forward_failures).await,
                    _ => {
                        self.refuse(alert, none, label, Outcome::UnknownContainer, why, false)
                            .await
                    }
                };
            }
            Resolved::Refused(result, reason, retryable) => {
                let mut o = self.refuse(alert, none, label, result, reason, false).await;
                o.retryable = retryable;
                return o;
            }
        };
        let target = (info.id.as_str(), info.name.as_str());
        if let Some(reason) = container_refusal(&info, &settings) {
            return self
                .refuse(alert, target, label, Outcome::Protected, reason, false)
                .await;
        }
        let no_restart = restart_refusal(&info);
        if let (Action::Restart, Some(why)) = (requested, &no_restart) {
            let reason = format!("not restarting: {why}");
            return self
                .refuse(alert, target, label, Outcome::Protected, reason, false)
                .await;
        }
        if self.is_aborted() {
            let reason = "the remediator is shutting down".to_string();
            let mut o = self
                .refuse(alert, target, label, Outcome::Failed, reason, false)
                .await;
            o.retryable = true;
            return o;
        }
        let dry_run = is_dry_run(&info, &settings);
        let key = instance_key(alert, dry_run);
        // A redelivery of the running action's own instance is a duplicate,
        // not a competing request.
        let lock = match self.lock_container(&info.id) {
            Some(lock) => lock,
            None => {
                let (result, reason) = if self.restraint().is_handled(&key) {
                    (
                        Outcome::Duplicate,
                        "this alert instance (fingerprint, startsAt) was already handled",
                    )
                } else {
                    (Outcome::Busy, "another action on this container is running")
                };
                return self
                    .refuse(alert, target, label, result, reason.into(), false)
                    .await;
            }
        };
        let no_restart = if settings.allows(alert.alertname(), Action::Restart) {
            no_restart
        } else {
            Some("this alert may not ask for restart (config [actions])".to_string())
        };
        let restraint_key = info
            .pod
            .as_ref()
            .map(|p| p.restraint_key())
            .unwrap_or_else(|| info.id.clone());
        let subject = Subject {
            key: &restraint_key,
            id: &info.id,
            name: &info.name,
        };
        let decision = {
            // Expired circuits close (and lose their gauge series) before
            // the decision, under the same lock, so a circuit that opens
            // again sets its series after the old one went.
            let mut r = self.restraint();
            let now = self.now().mono_ms;
            self.circuits_closed(r.expire(&settings, now));
            let d = r.decide(
                &key,
                subject,
                requested,
                no_restart.as_deref(),
                &settings,
                now,
            );
            if matches!(
                d,
                Decision::Refuse {
                    opened_circuit: true,
                    ..
                } | Decision::Act {
                    escalated: true,
                    ..
                }
            ) {
                set_circuit_open(self.metrics(), &info.id, &info.name);
            }
            d
        };
        let (action, escalated, token, reason) = match decision {
            Decision::Refuse {
                result,
                reason,
                opened_circuit,
            } => {
                return self
                    .refuse_keyed(
                        alert,
                        target,
                        Some(&restraint_key),
                        label,
                        result,
                        reason,
                        opened_circuit,
                    )
                    .await;
            }
            Decision::Act {
                action,
                escalated,
                token,
                reason,
            } => (action, escalated, token, reason),
        };
        let reason = if dry_run {
            format!("{reason} (dry-run)")
        } else {
            reason
        };
        let row = match self
            .record(Row {
                alert,
                restraint_key: Some(&restraint_key),
                container_id: &info.id,
                container_name: &info.name,
                action: &RequestedAction::Known(action),
                result: Outcome::Pending,
                reason: reason.clone(),
                claimed: true,
                opened_circuit: escalated,
                dry_run,
            })
            .await
        {
            Ok(row) => row,
            Err(e) => {
                // Without an audit row there is no action.
                tracing::error!(error = %e, "recording a decision failed; not acting");
                self.restraint().withdraw(&key, &restraint_key, token);
                self.metrics().count(action, Outcome::Failed);
                return AlertOutcome {
                    row: -1,
                    fingerprint: key.fingerprint,
                    action: action.into(),
                    result: Outcome::Failed,
                    reason: format!("state store: {e}"),
                    retryable: true,
                };
            }
        };
        tracing::info!(row, id = %info.id, name = %info.name, action = action.as_str(), dry_run, escalated, "action started");
        let fingerprint = key.fingerprint.clone();
        let job = Job {
            row,
            key,
            restraint_key,
            token,
            action,
            dry_run,
            info,
            alert_starts_at: alert.starts_at_nanos(),
            started: Instant::now(),
            decision: reason.clone(),
        };
        let running = self.start_action();
        let svc = Arc::clone(self);
        tokio::spawn(async move { svc.run(job, lock, running).await });
        AlertOutcome {
            row,
            fingerprint,
            action: action.into(),
            result: Outcome::Pending,
            reason,
            retryable: false,
        }
    }

    /// Sends an alert for a container of another node on to that node's
    /// remediator and records its answer.
    async fn forward(
        &self,
        alert: &Alert,
        label: &RequestedAction,
        failures: &mut u32,
    ) -> AlertOutcome {
        let none = ("", "");
        let Some(peers) = self.peers() else {
            let reason = "not on this node, and fleet routing is off".to_string();
            return self
                .refuse(alert, none, label, Outcome::UnknownContainer, reason, false)
                .await;
        };
        let url = match peers.url_for(alert) {
            Ok(url) => url,
            Err(why) => {
                let reason = format!("not on this node; {why}");
                return self
                    .refuse(alert, none, label, Outcome::UnknownContainer, reason, false)
                    .await;
            }
        };
        let answer = if *failures >= MAX_FORWARD_FAILURES {
            Err(crate::forward::ForwardError::GaveUp(*failures))
        } else {
            peers.forward(&url, alert).await
        };
        if answer.is_err() {
            *failures += 1;
        }
        let (result, reason, retryable) = match answer {
            Ok(a) if (200..300).contains(&a.status) || a.status == 503 => (
                Outcome::Forwarded,
                format!(
                    "not on this node; forwarded to {url}: {} {} ({})",
                    a.status,
                    a.result.as_deref().unwrap_or("-"),
                    a.reason.as_deref().unwrap_or("")
                ),
                a.status == 503,
            ),
            Ok(a) => (
                Outcome::Failed,
                format!(
                    "not on this node; the peer {url} refused the forwarded alert: {} {}",
                    a.status,
                    a.reason.as_deref().unwrap_or("")
                ),
                false,
            ),
            Err(e) => (
                Outcome::Failed,
                format!("not on this node; the peer {url} could not be reached: {e}"),
                true,
            ),
        };
        let mut o = self.refuse(alert, none, label, result, reason, false).await;
        o.retryable = retryable;
        o
    }

    /// Runs one job to its end, holding the container's lock until the
    /// outcome is recorded and restraint knows when it ended.
    async fn run(self: Arc<Self>, job: Job, lock: ContainerLock, running: InFlight) {
        let settings = self.settings();
        let end = match job.action {
            Action::KillDuplicates => {
                let action = KillAction {
                    engine: &self.engine,
                    policy: &settings.kill,
                    store: self.store(),
                    metrics: self.metrics(),
                    abort: self.abort_flag(),
                };
                action.run(&job, self.aborted()).await
            }
            Action::Restart => {
                let answered = || self.runtime_answered();
                let action = RestartAction {
                    runtime: &self.runtime,
                    engine: &self.engine,
                    grace: settings.kill.grace,
                    abort: &self.abort_flag(),
                    answered: &answered,
                };
                action.run(&job).await
            }
        };
        self.finish(&job, end).await;
        drop(lock);
        drop(running);
    }

    async fn finish(&self, job: &Job, end: ActionEnd) {
        {
            let mut r = self.restraint();
            let subject = job.restraint_key.as_str();
            if end.retry {
                r.retry(&job.key, subject, job.token);
            } else if matches!(
                end.result,
                Outcome::Recovered | Outcome::UnknownContainer | Outcome::Protected
            ) {
                r.release(&job.key, subject, job.token);
            } else {
                r.finished(&job.key, subject, job.token, self.now().mono_ms);
            }
        }
        self.metrics().count(job.action, end.result);
        self.metrics()
            .action_duration
            .get_or_create(&crate::metrics::ActionLabel {
                action: job.action.as_str().to_string(),
            })
            .observe(job.started.elapsed().as_secs_f64());
        let (result, reason) = (end.result.as_str(), &end.reason);
        if end.result == Outcome::Failed {
            tracing::warn!(row = job.row, id = %job.info.id, action = job.action.as_str(), result, reason = %reason, retry = end.retry, "action finished");
        } else {
            tracing::info!(row = job.row, id = %job.info.id, action = job.action.as_str(), result, reason = %reason, "action finished");
        }
        let retry_note = if end.retry {
            "; nothing was changed, a redelivery may try again"
        } else {
            ""
        };
        let reason = format!("{}: {}{retry_note}", job.decision, end.reason);
        let noticed = (self.notifier().is_some() && is_noticed(end.result)).then(|| {
            let kube = job
                .info
                .pod
                .as_ref()
                .and_then(|_| KubeRef::parse_name(&job.info.name));
            notice(&NoticeFacts {
                id: &job.info.id,
                name: &job.info.name,
                kube: kube
                    .as_ref()
                    .map(|k| (k.namespace.as_str(), k.pod.as_str(), k.container.as_str())),
                action: job.action,
                result: end.result,
                reason: &reason,
                tally: end.tally.as_ref(),
                row: job.row,
                now_nanos: crate::timefmt::now_nanos(),
            })
        });
        self.record_end(job.row, &end, reason).await;
        // After the row is final; queued, never waited for.
        if let (Some(n), Some(notice)) = (self.notifier(), noticed) {
            n.notify(notice);
        }
    }
}
