//! The audit stage of the pipeline: every decision becomes a row (and a
//! count), every background action's end updates its row. Process lists are
//! bounded here ([`ROW_PROCESSES_MAX`] entries and the total), so neither a
//! 4,000-process action nor the `/api/v1/actions` answer grows without bound.

use serde_json::json;

use crate::alert::{clip, Action, Alert};
use crate::clock::Now;
use crate::kill::{JournalError, KillPlan, KillReport, ProcRef};
use crate::outcome::Outcome;
use crate::restraint::{InstanceKey, Restraint};
use crate::service::Service;
use crate::store::{Finish, Record, Store, StoreError, ROW_PROCESSES_MAX};
use crate::task::{blocking, TaskFailed};

/// What the webhook answers for one alert.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct AlertOutcome {
    /// Audit row id.
    pub row: i64,
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// The action decided (or requested).
    pub action: String,
    /// `pending` when an action was started, else the final result.
    pub result: Outcome,
    /// Why.
    pub reason: String,
    /// True when a retry could succeed (the runtime was unreachable).
    #[serde(skip)]
    pub retryable: bool,
}

/// The processes an action concerned, as stored: at most
/// [`ROW_PROCESSES_MAX`] entries, and how many there were.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessList {
    /// The first entries, as JSON objects.
    pub entries: Vec<serde_json::Value>,
    /// How many there were in all.
    pub total: u64,
}

impl ProcessList {
    /// Adds one entry (kept while under the bound, always counted).
    pub fn push(&mut self, p: &ProcRef, extra: serde_json::Value) {
        self.total += 1;
        if self.entries.len() < ROW_PROCESSES_MAX {
            let mut v = json!({"pid": p.pid, "start_time": p.start_time, "command": p.command});
            if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
                o.extend(e);
            }
            self.entries.push(v);
        }
    }

    /// A list of one non-process entry (the restart target).
    pub fn single(v: serde_json::Value) -> ProcessList {
        ProcessList {
            entries: vec![v],
            total: 0,
        }
    }

    /// The stored JSON array.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(self.entries.clone())
    }
}

/// The processes a plan would signal: every member of every victim copy.
pub fn plan_processes(plan: &KillPlan) -> ProcessList {
    let mut out = ProcessList::default();
    for copy in &plan.victims {
        let mut seen = std::collections::HashSet::new();
        for p in std::iter::once(&copy.root).chain(copy.members.iter()) {
            if seen.insert(p.pid) {
                out.push(
                    p,
                    json!({"copy_root": copy.root.pid, "cpu_ticks": copy.cpu_ticks}),
                );
            }
        }
    }
    out
}

/// What an execution did, process by process.
pub fn report_processes(r: &KillReport) -> ProcessList {
    let mut out = ProcessList::default();
    for s in &r.signalled {
        out.push(&s.process, json!({"signal": s.signal}));
    }
    for p in &r.gone_before_signal {
        out.push(p, json!({"gone_before_signal": true}));
    }
    for (p, why) in &r.refused {
        out.push(p, json!({"refused": why}));
    }
    for p in &r.survivors {
        out.push(p, json!({"survived": true}));
    }
    out
}

/// How a background action ended.
#[derive(Debug, Clone)]
pub struct ActionEnd {
    /// The outcome.
    pub result: Outcome,
    /// Why.
    pub reason: String,
    /// What it concerned.
    pub processes: ProcessList,
    /// It failed without changing anything: the alert instance may be tried
    /// again by a redelivery.
    pub retry: bool,
}

impl ActionEnd {
    /// An end with no process list.
    pub fn new(result: Outcome, reason: impl Into<String>) -> ActionEnd {
        ActionEnd {
            result,
            reason: reason.into(),
            processes: ProcessList::default(),
            retry: false,
        }
    }

    /// A failure that changed nothing (retried on redelivery).
    pub fn retryable(reason: impl Into<String>) -> ActionEnd {
        ActionEnd {
            retry: true,
            ..ActionEnd::new(Outcome::Failed, reason)
        }
    }

    /// With a process list.
    pub fn with(mut self, processes: ProcessList) -> ActionEnd {
        self.processes = processes;
        self
    }
}

/// Rebuilds the restraint state from the audit store as of `now`: the live
/// dedupe keys, the failed attempts, and the key columns of the rows of the
/// restraint windows, mapped onto the monotonic timeline. Rows stamped in
/// the future (written while the wall clock was ahead) count as written
/// now, and are logged.
pub fn rebuild_restraint(
    store: &Store,
    settings: &crate::config::Settings,
    now: Now,
) -> Result<Restraint, StoreError> {
    let horizon = settings.history_horizon().as_millis().min(i64::MAX as u128) as i64;
    let recent = store.since(now.wall_ms.saturating_sub(horizon))?;
    let seen = settings.prune_before(now.wall_ms);
    let claimed = store.claimed_instances(seen)?;
    let attempts = store.failed_attempts(seen)?;
    let (restraint, future) = Restraint::rebuild(claimed, attempts, &recent, settings, now);
    if future > 0 {
        tracing::warn!(
            rows = future,
            "audit rows stamped later than the clock now reads (the clock was ahead, or stepped back): their cooldowns, windows and circuits count from now"
        );
    }
    Ok(restraint)
}

/// A decision about to be recorded.
pub(crate) struct Row<'a> {
    pub alert: &'a Alert,
    /// The restraint key, when not the container id.
    pub restraint_key: Option<&'a str>,
    pub container_id: &'a str,
    pub container_name: &'a str,
    pub action: &'a str,
    pub result: Outcome,
    pub reason: String,
    pub claimed: bool,
    pub opened_circuit: bool,
    pub dry_run: bool,
}

/// The dedupe key of an alert in a mode.
pub(crate) fn instance_key(alert: &Alert, dry_run: bool) -> InstanceKey {
    InstanceKey::new(
        clip(&alert.fingerprint, 64),
        clip(&alert.starts_at, 64),
        dry_run,
    )
}

impl Service {
    /// Writes a decision row; a pending one durably.
    pub(crate) async fn record(&self, row: Row<'_>) -> Result<i64, AuditError> {
        let now_ms = self.now().wall_ms;
        let rec = Record {
            id: 0,
            at_ms: now_ms,
            status: clip(&row.alert.status, 16),
            alertname: clip(row.alert.alertname(), 200),
            fingerprint: clip(&row.alert.fingerprint, 64),
            starts_at: clip(&row.alert.starts_at, 64),
            container_id: row.container_id.to_string(),
            container_name: clip(row.container_name, 200),
            action: clip(row.action, 64),
            result: row.result,
            reason: row.reason,
            claimed: row.claimed,
            opened_circuit: row.opened_circuit,
            dry_run: row.dry_run,
            retry: false,
            processes: json!([]),
            process_count: 0,
            finished_ms: (row.result != Outcome::Pending).then_some(now_ms),
            restraint_key: row
                .restraint_key
                .filter(|k| *k != row.container_id)
                .map(str::to_string),
        };
        let store = self.store().clone();
        Ok(blocking(move || store.insert(&rec)).await??)
    }

    /// Records a final decision taken in the request and counts it.
    pub(crate) async fn refuse(
        &self,
        alert: &Alert,
        target: (&str, &str),
        action: &str,
        result: Outcome,
        reason: String,
        opened_circuit: bool,
    ) -> AlertOutcome {
        self.refuse_keyed(alert, target, None, action, result, reason, opened_circuit)
            .await
    }

    /// [`Service::refuse`] with the restraint key of the decision (needed
    /// when it opened a circuit, which is rebuilt under that key).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn refuse_keyed(
        &self,
        alert: &Alert,
        target: (&str, &str),
        restraint_key: Option<&str>,
        action: &str,
        result: Outcome,
        reason: String,
        opened_circuit: bool,
    ) -> AlertOutcome {
        if let Some(a) = Action::parse(action) {
            self.metrics().count(a, result);
        }
        tracing::info!(alertname = alert.alertname(), fingerprint = %clip(&alert.fingerprint, 64), id = target.0, action, result = result.as_str(), reason = %reason, "decision");
        let row = self
            .record(Row {
                alert,
                restraint_key,
                container_id: target.0,
                container_name: target.1,
                action,
                result,
                reason: reason.clone(),
                claimed: false,
                opened_circuit,
                dry_run: false,
            })
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "recording a decision failed");
                -1
            });
        AlertOutcome {
            row,
            fingerprint: clip(&alert.fingerprint, 64),
            action: clip(action, 64),
            result,
            reason,
            retryable: false,
        }
    }

    /// Writes the end of a background action to its row.
    pub(crate) async fn record_end(&self, row: i64, end: &ActionEnd, reason: String) {
        let store = self.store().clone();
        let (result, retry) = (end.result, end.retry);
        let processes = end.processes.to_json();
        let process_count = end.processes.total;
        let finished_ms = self.now().wall_ms;
        let write = move || {
            store.finish(
                row,
                &Finish {
                    result,
                    reason: &reason,
                    processes: &processes,
                    process_count,
                    retry,
                    finished_ms,
                },
            )
        };
        let written: Result<(), AuditError> = match blocking(write).await {
            Ok(r) => r.map_err(AuditError::from),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = written {
            tracing::error!(row, error = %e, "recording an outcome failed");
        }
    }
}

/// A journal callback for the kill engine: writes the processes about to be
/// stopped to the store, durably, before they are. Runs on the engine's
/// blocking thread.
pub fn stop_journal(store: Store, row: i64) -> impl Fn(&[ProcRef]) -> Result<(), JournalError> {
    move |procs: &[ProcRef]| {
        let ids: Vec<(i32, u64)> = procs.iter().map(|p| (p.pid, p.start_time)).collect();
        store
            .journal_stopped(row, &ids)
            .map_err(|e| JournalError::new(format!("journaling the processes to stop: {e}")))
    }
}

/// Writing to the audit trail failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The write could not run.
    #[error(transparent)]
    Task(#[from] TaskFailed),
    /// The store refused it.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pr(pid: i32) -> ProcRef {
        ProcRef {
            pid,
            start_time: pid as u64,
            command: "x".repeat(50),
        }
    }

    #[test]
    fn process_lists_are_bounded_and_counted() {
        let mut l = ProcessList::default();
        for pid in 0..4000 {
            l.push(&pr(pid), json!({"signal": "SIGTERM"}));
        }
        assert_eq!(l.total, 4000);
        assert_eq!(l.entries.len(), ROW_PROCESSES_MAX);
        assert_eq!(l.entries[0]["pid"], 0);
        assert_eq!(l.entries[0]["signal"], "SIGTERM");
    }
}

#[cfg(test)]
mod rebuild_tests {
    use super::*;
    use crate::config::Settings;
    use crate::restraint::{Decision, Subject};
    use std::time::Duration;

    const DAY: i64 = 86_400_000;
    const MIN: i64 = 60_000;
    const NOW: i64 = 1000 * DAY;

    /// Both clocks at `wall_ms`.
    fn at(wall_ms: i64) -> Now {
        Now {
            wall_ms,
            mono_ms: wall_ms,
        }
    }

    struct R {
        ago: i64,
        fp: &'static str,
        starts_at: &'static str,
        container: &'static str,
        action: &'static str,
        result: Outcome,
        claimed: bool,
        opened_circuit: bool,
    }

    fn insert(store: &Store, r: R) -> i64 {
        store
            .insert(&Record {
                id: 0,
                at_ms: NOW - r.ago,
                status: "firing".into(),
                alertname: "PidwardenDuplicatesExhaustingPids".into(),
                fingerprint: r.fp.into(),
                starts_at: r.starts_at.into(),
                container_id: r.container.into(),
                container_name: format!("{}-name", r.container),
                action: r.action.into(),
                result: r.result,
                reason: "r".into(),
                claimed: r.claimed,
                opened_circuit: r.opened_circuit,
                dry_run: false,
                retry: false,
                processes: json!([]),
                process_count: 0,
                finished_ms: None,
                restraint_key: None,
            })
            .unwrap()
    }

    fn acted(ago: i64, fp: &'static str, starts_at: &'static str, container: &'static str) -> R {
        R {
            ago,
            fp,
            starts_at,
            container,
            action: "kill-duplicates",
            result: Outcome::Done,
            claimed: true,
            opened_circuit: false,
        }
    }

    /// The escalated restart that opened `container`'s circuit.
    fn escalated(ago: i64, container: &'static str) -> R {
        R {
            action: "restart",
            opened_circuit: true,
            ..acted(ago, "esc", "s1", container)
        }
    }

    fn refused(ago: i64, fp: &'static str, result: Outcome) -> R {
        R {
            result,
            claimed: false,
            ..acted(ago, fp, "s1", "c9")
        }
    }

    fn ids(store: &Store) -> Vec<i64> {
        let mut v: Vec<i64> = store.recent(1000).unwrap().iter().map(|r| r.id).collect();
        v.sort();
        v
    }

    fn retention(days: u64) -> Settings {
        Settings {
            retention: Some(Duration::from_secs(days * 86_400)),
            ..Settings::default()
        }
    }

    #[test]
    fn pruning_drops_old_rows_and_keeps_what_restraint_reads() {
        // Retention 1 day; cooldown 5 min, action bound and circuit 1 h.
        let s = retention(1);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let gone = [
            // An action whose alert instance was never seen again.
            insert(&store, acted(10 * DAY, "gone", "s1", "c1")),
            insert(&store, refused(10 * DAY, "x", Outcome::Ignored)),
            insert(&store, refused(2 * DAY, "y", Outcome::Cooldown)),
            // Same fingerprint as a live instance, another startsAt: another instance.
            insert(&store, acted(10 * DAY, "live", "s0", "c1")),
        ];
        let kept = [
            // Claimed long ago, redelivered (a duplicate row) within the retention:
            // its dedupe key is live.
            insert(&store, acted(10 * DAY, "live", "s1", "c1")),
            insert(&store, refused(2 * 60 * MIN, "live", Outcome::Duplicate)),
            // Still pending.
            insert(
                &store,
                R {
                    result: Outcome::Pending,
                    ..acted(10 * DAY, "stuck", "s1", "c4")
                },
            ),
            insert(&store, refused(20 * 60 * MIN, "z", Outcome::Recovered)),
            // Cooldown source and an open circuit.
            insert(&store, acted(2 * MIN, "recent", "s1", "c2")),
            insert(&store, escalated(20 * MIN, "c3")),
        ];

        let before = rebuild_restraint(&store, &s, at(NOW)).unwrap();
        let cutoff = s.prune_before(NOW).unwrap();
        assert_eq!(cutoff, NOW - DAY);
        assert_eq!(store.prune(cutoff, 2).unwrap(), gone.len());
        assert_eq!(ids(&store), kept.to_vec());
        assert_eq!(store.prune(cutoff, 2).unwrap(), 0);

        let mut after = rebuild_restraint(&store, &s, at(NOW)).unwrap();
        assert_eq!(after, before);
        let key = |fp: &str, st: &str| InstanceKey::new(fp, st, false);
        assert!(after.is_handled(&key("live", "s1")));
        assert!(after.is_handled(&key("recent", "s1")));
        assert!(!after.is_handled(&key("gone", "s1")));
        assert_eq!(after.open_circuits().count(), 1);
        let d = after.decide(
            &key("new", "s1"),
            Subject::container("c2", "n"),
            Action::Restart,
            None,
            &s,
            NOW,
        );
        assert!(
            matches!(
                d,
                Decision::Refuse {
                    result: Outcome::Cooldown,
                    ..
                }
            ),
            "{d:?}"
        );
        let d = after.decide(
            &key("new", "s2"),
            Subject::container("c3", "n"),
            Action::Restart,
            None,
            &s,
            NOW,
        );
        assert!(
            matches!(
                d,
                Decision::Refuse {
                    result: Outcome::CircuitOpen,
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn pruning_never_cuts_into_a_restraint_window_longer_than_the_retention() {
        let s = Settings {
            circuit_window: Duration::from_secs(3 * 86_400),
            ..retention(1)
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old = insert(&store, refused(4 * DAY, "x", Outcome::Ignored));
        let circuit = insert(&store, escalated(2 * DAY, "c3"));
        let before = rebuild_restraint(&store, &s, at(NOW)).unwrap();
        assert_eq!(before.open_circuits().count(), 1);
        assert_eq!(store.prune(s.prune_before(NOW).unwrap(), 100).unwrap(), 1);
        assert_eq!(ids(&store), vec![circuit]);
        assert!(store.get(old).unwrap().is_none());
        assert_eq!(rebuild_restraint(&store, &s, at(NOW)).unwrap(), before);
    }

    #[test]
    fn rows_stamped_in_the_future_count_from_now() {
        let s = Settings {
            cooldown: Duration::from_secs(300),
            circuit_window: Duration::from_secs(3600),
            ..Settings::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Written while the wall clock was two hours ahead.
        let ahead = 120 * MIN;
        for (fp, container, action, opened) in [
            ("a", "c1", "kill-duplicates", false),
            ("b", "c3", "restart", true),
        ] {
            store
                .insert(&Record {
                    id: 0,
                    at_ms: NOW + ahead,
                    status: "firing".into(),
                    alertname: "A".into(),
                    fingerprint: fp.into(),
                    starts_at: "s1".into(),
                    container_id: container.into(),
                    container_name: "n".into(),
                    action: action.into(),
                    result: Outcome::Done,
                    reason: "r".into(),
                    claimed: true,
                    opened_circuit: opened,
                    dry_run: false,
                    retry: false,
                    processes: json!([]),
                    process_count: 0,
                    finished_ms: Some(NOW + ahead + 1000),
                    restraint_key: None,
                })
                .unwrap();
        }
        // The clock is right again; the monotonic timeline reads 50 s.
        let now = Now {
            wall_ms: NOW,
            mono_ms: 50_000,
        };
        let mut r = rebuild_restraint(&store, &s, now).unwrap();
        let key = |fp: &str| InstanceKey::new(fp, "s9", false);
        let c1 = Subject::container("c1", "n");
        let decide = |r: &mut Restraint, fp: &str, sub, at: i64| {
            r.decide(&key(fp), sub, Action::Restart, None, &s, at)
        };
        let cooldown_end = now.mono_ms + 300_000;
        let d = decide(&mut r, "x", c1, cooldown_end - 1);
        assert!(
            matches!(
                d,
                Decision::Refuse {
                    result: Outcome::Cooldown,
                    ..
                }
            ),
            "{d:?}"
        );
        // Cooldown counts from now, not from two hours on.
        let d = decide(&mut r, "x", c1, cooldown_end);
        assert!(matches!(d, Decision::Act { .. }), "{d:?}");

        let c3 = Subject::container("c3", "n");
        let circuit_end = now.mono_ms + 3_600_000;
        let d = decide(&mut r, "y", c3, circuit_end - 1);
        assert!(
            matches!(
                d,
                Decision::Refuse {
                    result: Outcome::CircuitOpen,
                    ..
                }
            ),
            "{d:?}"
        );
        let closed = r.expire(&s, circuit_end);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].id, "c3");
        let d = decide(&mut r, "y", c3, circuit_end);
        assert!(matches!(d, Decision::Act { .. }), "{d:?}");
    }

    #[test]
    fn a_pod_containers_circuit_is_rebuilt_under_its_restraint_key() {
        let s = Settings::default();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut rec = Record {
            id: 0,
            at_ms: NOW - MIN,
            status: "firing".into(),
            alertname: "A".into(),
            fingerprint: "esc".into(),
            starts_at: "s1".into(),
            container_id: "c-old".into(),
            container_name: "shop/web-1/app".into(),
            action: "restart".into(),
            result: Outcome::Done,
            reason: "r".into(),
            claimed: true,
            opened_circuit: true,
            dry_run: false,
            retry: false,
            processes: json!([]),
            process_count: 0,
            finished_ms: Some(NOW - MIN + 1000),
            restraint_key: Some("pod:u-1/app".into()),
        };
        store.insert(&rec).unwrap();
        rec.restraint_key = None;
        rec.container_id = "c-docker".into();
        store.insert(&rec).unwrap();
        let mut r = rebuild_restraint(&store, &s, at(NOW)).unwrap();
        let mut ids: Vec<&str> = r.open_circuits().map(|c| c.id.as_str()).collect();
        ids.sort();
        assert_eq!(
            ids,
            ["c-docker", "c-old"],
            "the gauge keeps the ids it was set with"
        );
        // The kubelet's new container of the same pod and name: held.
        let new = Subject {
            key: "pod:u-1/app",
            id: "c-new",
            name: "shop/web-1/app",
        };
        let key = InstanceKey::new("f", "s2", false);
        let d = r.decide(&key, new, Action::Restart, None, &s, NOW);
        assert!(
            matches!(
                d,
                Decision::Refuse {
                    result: Outcome::CircuitOpen,
                    ..
                }
            ),
            "{d:?}"
        );
        // Another pod's container of the same name is not.
        let other = Subject {
            key: "pod:u-2/app",
            ..new
        };
        let d = r.decide(&key, other, Action::Restart, None, &s, NOW);
        assert!(matches!(d, Decision::Act { .. }), "{d:?}");
    }
}
