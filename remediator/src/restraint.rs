//! Restraint: the decisions that keep remediation from becoming the outage.
//! Per alert instance idempotency (`fingerprint`, `startsAt`), a
//! per-container cooldown counted from the end of the last action, a bound
//! on actions per container per window, a circuit breaker that escalates a
//! container that keeps coming back to one restart (when its alert may ask
//! for one) and then stops acting on it until the window passes, and a
//! bounded number of retries for actions that failed without changing
//! anything.
//!
//! [`rebuild_restraint`] rebuilds the state from the audit store at start.
//!
//! Restraint is kept per [`Subject::key`]: the container id, or for a
//! Kubernetes container the pod uid and container name, which outlive the
//! new container id the kubelet restarts a container under.
//!
//! Dry-run and live decisions keep apart: an instance or a cooldown seen
//! only in dry-run never holds back the live action.
//!
//! Pure state, no I/O and no clock: every instant is passed in, in
//! milliseconds on the monotonic timeline ([`crate::clock::Now::mono_ms`]),
//! so a step of the wall clock changes no live window. The state is rebuilt
//! from the audit store at start, its wall-clock stamps mapped onto that
//! timeline ([`Restraint::rebuild`]).

use std::collections::{HashMap, HashSet};

use crate::alert::Action;
use crate::clock::Now;
use crate::config::Settings;
use crate::outcome::Outcome;
pub use crate::store::InstanceKey;
use crate::store::{KeyRow, Store, StoreError};

/// Attempts per alert instance that may fail without changing anything
/// before the instance is given up.
pub const MAX_ATTEMPTS: u32 = 3;

/// Restraint is kept per mode and subject key: (dry-run, key).
type Scope = (bool, String);

/// What one decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    /// What restraint is counted for: the container id, or
    /// `pod:<uid>/<container>` for a Kubernetes container.
    pub key: &'a str,
    /// The container id (for the gauge of an open circuit).
    pub id: &'a str,
    /// The container name (for the gauge).
    pub name: &'a str,
}

impl<'a> Subject<'a> {
    /// A subject keyed by its container id.
    pub fn container(id: &'a str, name: &'a str) -> Self {
        Subject { key: id, id, name }
    }
}

/// What to do with one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Act. `token` identifies the claim for [`Restraint::release`].
    Act {
        /// The action to run (a kill-duplicates request may be escalated).
        action: Action,
        /// True when the circuit breaker escalated to this restart (and
        /// opened the circuit).
        escalated: bool,
        /// Claim token.
        token: u64,
        /// Why.
        reason: String,
    },
    /// Do nothing.
    Refuse {
        /// `duplicate`, `cooldown`, `circuit_open`, or `failed` (attempts
        /// used up).
        result: Outcome,
        /// Why.
        reason: String,
        /// True when this refusal opened the circuit (escalation off).
        opened_circuit: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct Event {
    at_ms: i64,
    /// When the action finished; `None` while it runs.
    end_ms: Option<i64>,
    action: Action,
    token: u64,
}

impl Event {
    /// The instant cooldown counts from: the end, or now while running.
    fn last_ms(&self, now_ms: i64) -> i64 {
        self.end_ms.unwrap_or(now_ms).max(self.at_ms)
    }
}

/// An open circuit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCircuit {
    /// When it opened (monotonic ms).
    pub opened_ms: i64,
    /// The id of the container it opened on, for the gauge.
    pub id: String,
    /// The container's name, for the gauge.
    pub name: String,
}

/// The in-memory restraint state.
#[derive(Debug, Default, PartialEq)]
pub struct Restraint {
    handled: HashSet<InstanceKey>,
    attempts: HashMap<InstanceKey, u32>,
    events: HashMap<Scope, Vec<Event>>,
    circuits: HashMap<Scope, OpenCircuit>,
    next_token: u64,
}

fn ms(d: std::time::Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl Restraint {
    /// Rebuilds the state from the dedupe keys, the failed attempts and the
    /// recent audit rows (oldest first), as of `now`. The rows' wall-clock
    /// stamps are mapped onto the monotonic timeline; a stamp in the future
    /// (written while the clock was ahead) counts as now
    /// ([`Now::mono_of_wall`]). Returns the state and how many rows had a
    /// stamp in the future.
    pub fn rebuild(
        claimed: Vec<InstanceKey>,
        attempts: Vec<(InstanceKey, u32)>,
        recent: &[KeyRow],
        s: &Settings,
        now: Now,
    ) -> (Restraint, usize) {
        let mut r = Restraint {
            handled: claimed.into_iter().collect(),
            attempts: attempts.into_iter().collect(),
            ..Default::default()
        };
        let mut future = 0;
        for rec in recent {
            let (at_ms, ahead) = now.mono_of_wall(rec.at_ms);
            let end = rec.finished_ms.map(|f| now.mono_of_wall(f));
            if ahead || end.is_some_and(|e| e.1) {
                future += 1;
            }
            let key = rec
                .restraint_key
                .clone()
                .unwrap_or_else(|| rec.container_id.clone());
            let scope = (rec.dry_run, key);
            if rec.claimed && !rec.retry && rec.result.is_acting() {
                if let Some(action) = rec.action.action() {
                    r.next_token += 1;
                    r.events.entry(scope.clone()).or_default().push(Event {
                        at_ms,
                        end_ms: end.map(|e| e.0),
                        action,
                        token: r.next_token,
                    });
                }
            }
            if rec.opened_circuit && at_ms.saturating_add(ms(s.circuit_window)) > now.mono_ms {
                r.circuits.insert(
                    scope,
                    OpenCircuit {
                        opened_ms: at_ms,
                        id: rec.container_id.clone(),
                        name: rec.container_name.clone(),
                    },
                );
            }
        }
        (r, future)
    }

    /// Open circuits (for the gauge).
    pub fn open_circuits(&self) -> impl Iterator<Item = &OpenCircuit> {
        self.circuits.values()
    }

    /// Closes circuits whose window has passed at `now_ms` (monotonic);
    /// returns them, so their gauge series can go. Call it before
    /// [`Restraint::decide`]: a circuit that has expired is never refused
    /// on, but only this call removes it.
    pub fn expire(&mut self, s: &Settings, now_ms: i64) -> Vec<OpenCircuit> {
        let window = ms(s.circuit_window);
        let closed: Vec<Scope> = self
            .circuits
            .iter()
            .filter(|(_, c)| c.opened_ms.saturating_add(window) <= now_ms)
            .map(|(scope, _)| scope.clone())
            .collect();
        closed
            .into_iter()
            .filter_map(|scope| self.circuits.remove(&scope))
            .collect()
    }

    /// True when the instance was already acted on.
    pub fn is_handled(&self, key: &InstanceKey) -> bool {
        self.handled.contains(key)
    }

    /// Decides on one firing alert for a known, not opted-out container, at
    /// `now_ms` (monotonic). The mode is the key's third part. `no_restart`:
    /// why the breaker may not escalate to a restart (the alert may not ask
    /// for one, config `[actions]`, or the container may not be restarted);
    /// `None` when it may. When
    /// the decision is to act, the instance is claimed and the action
    /// counted at once, so a concurrent redelivery is a duplicate.
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &mut self,
        key: &InstanceKey,
        subject: Subject<'_>,
        requested: Action,
        no_restart: Option<&str>,
        s: &Settings,
        now_ms: i64,
    ) -> Decision {
        let refuse = |result, reason| Decision::Refuse {
            result,
            reason,
            opened_circuit: false,
        };
        if self.handled.contains(key) {
            return refuse(
                Outcome::Duplicate,
                "this alert instance (fingerprint, startsAt) was already handled".into(),
            );
        }
        let tried = self.attempts.get(key).copied().unwrap_or(0);
        if tried >= MAX_ATTEMPTS {
            return refuse(
                Outcome::Failed,
                format!("this alert instance failed {tried} times without changing anything; not trying again"),
            );
        }
        let scope: Scope = (key.dry_run, subject.key.to_string());
        if let Some(c) = self.circuits.get(&scope) {
            let until = c.opened_ms.saturating_add(ms(s.circuit_window));
            if until > now_ms {
                return refuse(
                    Outcome::CircuitOpen,
                    format!(
                        "circuit breaker open for this container for another {} s",
                        (until - now_ms + 999) / 1000
                    ),
                );
            }
        }
        let horizon = ms(s.history_horizon());
        let events = self.events.entry(scope.clone()).or_default();
        events.retain(|e| e.last_ms(now_ms).saturating_add(horizon) > now_ms);
        if let Some(last) = events.iter().map(|e| e.last_ms(now_ms)).max() {
            let cooldown = ms(s.cooldown);
            if last.saturating_add(cooldown) > now_ms {
                return refuse(
                    Outcome::Cooldown,
                    format!(
                        "last action on this container ended {} s ago; cooldown is {} s",
                        now_ms.saturating_sub(last) / 1000,
                        s.cooldown.as_secs()
                    ),
                );
            }
        }
        let in_window = events
            .iter()
            .filter(|e| e.at_ms.saturating_add(ms(s.limit_window)) > now_ms)
            .count();
        if in_window >= s.max_actions as usize {
            return refuse(
                Outcome::Cooldown,
                format!(
                    "{in_window} actions on this container within {} s (limit {})",
                    s.limit_window.as_secs(),
                    s.max_actions
                ),
            );
        }
        let mut action = requested;
        let mut escalated = false;
        let mut reason = format!("{} requested by the alert", requested.as_str());
        if requested == Action::KillDuplicates {
            let kills = events
                .iter()
                .filter(|e| {
                    e.action == Action::KillDuplicates
                        && e.at_ms.saturating_add(ms(s.circuit_window)) > now_ms
                })
                .count();
            if kills >= s.kill_threshold as usize {
                self.circuits.insert(
                    scope.clone(),
                    OpenCircuit {
                        opened_ms: now_ms,
                        id: subject.id.to_string(),
                        name: subject.name.to_string(),
                    },
                );
                let why = format!(
                    "circuit breaker: {kills} kill-duplicates actions within {} s",
                    s.circuit_window.as_secs()
                );
                if !s.escalate || no_restart.is_some() {
                    let not = match no_restart {
                        Some(why) if s.escalate => format!("{why}, so no escalation"),
                        _ => "escalation is off".to_string(),
                    };
                    return Decision::Refuse {
                        result: Outcome::CircuitOpen,
                        reason: format!(
                            "{why}; {not}; not acting on this container until the window passes"
                        ),
                        opened_circuit: true,
                    };
                }
                action = Action::Restart;
                escalated = true;
                reason = format!("{why}; escalated to one restart, then the circuit stays open");
            }
        }
        self.next_token += 1;
        let token = self.next_token;
        self.handled.insert(key.clone());
        self.events.entry(scope).or_default().push(Event {
            at_ms: now_ms,
            end_ms: None,
            action,
            token,
        });
        Decision::Act {
            action,
            escalated,
            token,
            reason,
        }
    }

    /// Withdraws a claim entirely (the decision could not be recorded, so
    /// nothing was done): the instance is not handled and does not count.
    pub fn withdraw(&mut self, key: &InstanceKey, subject_key: &str, token: u64) {
        self.handled.remove(key);
        self.release(key, subject_key, token);
    }

    /// Un-counts a claimed action that turned out to do nothing (recovered,
    /// unknown, protected, nothing signalled): it does not start a cooldown
    /// and does not count toward the action bound or the breaker. The
    /// instance stays handled.
    pub fn release(&mut self, key: &InstanceKey, subject_key: &str, token: u64) {
        if let Some(ev) = self.events.get_mut(&(key.dry_run, subject_key.to_string())) {
            ev.retain(|e| e.token != token);
        }
    }

    /// A claimed action failed without changing anything: it does not
    /// count, and the instance is free again for a redelivery, up to
    /// [`MAX_ATTEMPTS`] failed attempts.
    pub fn retry(&mut self, key: &InstanceKey, subject_key: &str, token: u64) {
        self.withdraw(key, subject_key, token);
        *self.attempts.entry(key.clone()).or_default() += 1;
    }

    /// The action of `token` ended at `now_ms` (monotonic): cooldown counts
    /// from here.
    pub fn finished(&mut self, key: &InstanceKey, subject_key: &str, token: u64, now_ms: i64) {
        if let Some(ev) = self.events.get_mut(&(key.dry_run, subject_key.to_string())) {
            for e in ev.iter_mut().filter(|e| e.token == token) {
                e.end_ms = Some(now_ms);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> Settings {
        Settings {
            cooldown: Duration::from_secs(10),
            ..Settings::default()
        }
    }

    fn sub(id: &str) -> Subject<'_> {
        Subject::container(id, "n")
    }

    fn key(n: u32) -> InstanceKey {
        InstanceKey::new(format!("fp{n}"), "2024-01-01T00:00:00Z", false)
    }

    #[test]
    fn duplicate_then_cooldown_then_allowed() {
        let s = settings();
        let mut r = Restraint::default();
        let Decision::Act { token, .. } = r.decide(&key(1), sub("c"), Action::Restart, None, &s, 0)
        else {
            panic!()
        };
        r.finished(&key(1), "c", token, 0);
        assert!(matches!(
            r.decide(&key(1), sub("c"), Action::Restart, None, &s, 100_000),
            Decision::Refuse {
                result: Outcome::Duplicate,
                ..
            }
        ));
        assert!(matches!(
            r.decide(&key(2), sub("c"), Action::Restart, None, &s, 5_000),
            Decision::Refuse {
                result: Outcome::Cooldown,
                ..
            }
        ));
        assert!(matches!(
            r.decide(&key(3), sub("other"), Action::Restart, None, &s, 5_000),
            Decision::Act { .. }
        ));
        assert!(matches!(
            r.decide(&key(2), sub("c"), Action::Restart, None, &s, 10_000),
            Decision::Act { .. }
        ));
    }

    #[test]
    fn released_claims_do_not_cool_down() {
        let s = settings();
        let mut r = Restraint::default();
        let Decision::Act { token, .. } =
            r.decide(&key(1), sub("c"), Action::KillDuplicates, None, &s, 0)
        else {
            panic!()
        };
        r.release(&key(1), "c", token);
        assert!(matches!(
            r.decide(&key(2), sub("c"), Action::KillDuplicates, None, &s, 1),
            Decision::Act { .. }
        ));
    }

    #[test]
    fn withdrawn_claims_leave_no_trace() {
        let s = settings();
        let mut r = Restraint::default();
        let Decision::Act { token, .. } = r.decide(&key(1), sub("c"), Action::Restart, None, &s, 0)
        else {
            panic!()
        };
        r.withdraw(&key(1), "c", token);
        assert!(!r.is_handled(&key(1)));
        assert!(matches!(
            r.decide(&key(1), sub("c"), Action::Restart, None, &s, 1),
            Decision::Act { .. }
        ));
    }

    #[test]
    fn breaker_escalates_once_then_opens_until_window_passes() {
        let s = Settings {
            cooldown: Duration::ZERO,
            circuit_window: Duration::from_secs(100),
            ..Settings::default()
        };
        let mut r = Restraint::default();
        for i in 0..3 {
            let d = r.decide(
                &key(i),
                sub("c"),
                Action::KillDuplicates,
                None,
                &s,
                i as i64,
            );
            assert!(
                matches!(
                    d,
                    Decision::Act {
                        action: Action::KillDuplicates,
                        escalated: false,
                        ..
                    }
                ),
                "{d:?}"
            );
        }
        let d = r.decide(&key(3), sub("c"), Action::KillDuplicates, None, &s, 10);
        assert!(
            matches!(
                d,
                Decision::Act {
                    action: Action::Restart,
                    escalated: true,
                    ..
                }
            ),
            "{d:?}"
        );
        let d = r.decide(&key(4), sub("c"), Action::KillDuplicates, None, &s, 20);
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
        assert_eq!(r.open_circuits().count(), 1);
        assert!(r.expire(&s, 50_000).is_empty());
        assert_eq!(r.expire(&s, 100_010).len(), 1);
        // Window passed: the old kills fell out of it too.
        let d = r.decide(&key(5), sub("c"), Action::KillDuplicates, None, &s, 200_000);
        assert!(
            matches!(
                d,
                Decision::Act {
                    action: Action::KillDuplicates,
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn max_actions_per_window() {
        let s = Settings {
            cooldown: Duration::ZERO,
            max_actions: 2,
            limit_window: Duration::from_secs(60),
            ..Settings::default()
        };
        let mut r = Restraint::default();
        assert!(matches!(
            r.decide(&key(1), sub("c"), Action::Restart, None, &s, 0),
            Decision::Act { .. }
        ));
        assert!(matches!(
            r.decide(&key(2), sub("c"), Action::Restart, None, &s, 1),
            Decision::Act { .. }
        ));
        let d = r.decide(&key(3), sub("c"), Action::Restart, None, &s, 2);
        assert!(
            matches!(&d, Decision::Refuse { result: Outcome::Cooldown, reason, .. } if reason.contains("limit 2")),
            "{d:?}"
        );
        assert!(matches!(
            r.decide(&key(3), sub("c"), Action::Restart, None, &s, 60_001),
            Decision::Act { .. }
        ));
    }

    #[test]
    fn dry_run_and_live_keep_apart() {
        let s = settings();
        let mut r = Restraint::default();
        let dry = InstanceKey::new("fp", "t", true);
        let live = InstanceKey::new("fp", "t", false);
        assert!(matches!(
            r.decide(&dry, sub("c"), Action::KillDuplicates, None, &s, 0),
            Decision::Act { .. }
        ));
        // The same instance, live, within the dry-run action's cooldown: acts.
        let d = r.decide(&live, sub("c"), Action::KillDuplicates, None, &s, 1);
        assert!(matches!(d, Decision::Act { .. }), "{d:?}");
        let d = r.decide(&live, sub("c"), Action::KillDuplicates, None, &s, 2);
        assert!(
            matches!(
                d,
                Decision::Refuse {
                    result: Outcome::Duplicate,
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn cooldown_counts_from_the_end_of_the_action() {
        let s = settings();
        let mut r = Restraint::default();
        let Decision::Act { token, .. } =
            r.decide(&key(1), sub("c"), Action::KillDuplicates, None, &s, 0)
        else {
            panic!()
        };
        // Still running at 30 s: cooldown holds.
        let d = r.decide(&key(2), sub("c"), Action::KillDuplicates, None, &s, 30_000);
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
        r.finished(&key(1), "c", token, 40_000);
        let d = r.decide(&key(2), sub("c"), Action::KillDuplicates, None, &s, 45_000);
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
        let d = r.decide(&key(2), sub("c"), Action::KillDuplicates, None, &s, 50_000);
        assert!(matches!(d, Decision::Act { .. }), "{d:?}");
    }

    #[test]
    fn failed_attempts_retry_up_to_the_bound() {
        let s = settings();
        let mut r = Restraint::default();
        for i in 0..MAX_ATTEMPTS {
            let d = r.decide(&key(1), sub("c"), Action::Restart, None, &s, i as i64);
            let Decision::Act { token, .. } = d else {
                panic!("attempt {i}: {d:?}")
            };
            r.retry(&key(1), "c", token);
        }
        let d = r.decide(&key(1), sub("c"), Action::Restart, None, &s, 10);
        assert!(
            matches!(
                d,
                Decision::Refuse {
                    result: Outcome::Failed,
                    ..
                }
            ),
            "{d:?}"
        );
        // Other instances are not affected, nor held back by a cooldown.
        let d = r.decide(&key(2), sub("c"), Action::Restart, None, &s, 11);
        assert!(matches!(d, Decision::Act { .. }), "{d:?}");
    }

    #[test]
    fn breaker_opens_without_escalating_when_restart_is_not_allowed() {
        let s = Settings {
            cooldown: Duration::ZERO,
            ..Settings::default()
        };
        let mut r = Restraint::default();
        for i in 0..3 {
            let d = r.decide(
                &key(i),
                sub("c"),
                Action::KillDuplicates,
                Some("this alert may not ask for restart (config [actions])"),
                &s,
                i as i64,
            );
            assert!(
                matches!(
                    d,
                    Decision::Act {
                        action: Action::KillDuplicates,
                        ..
                    }
                ),
                "{d:?}"
            );
        }
        let d = r.decide(
            &key(3),
            sub("c"),
            Action::KillDuplicates,
            Some("this alert may not ask for restart (config [actions])"),
            &s,
            10,
        );
        assert!(
            matches!(
                &d,
                Decision::Refuse { result: Outcome::CircuitOpen, opened_circuit: true, reason } if reason.contains("[actions]")
            ),
            "{d:?}"
        );
    }
}

#[cfg(test)]
mod rebuild_tests {
    use super::*;
    use crate::config::Settings;
    use crate::restraint::{Decision, Subject};
    use crate::store::Record;
    use serde_json::json;
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
                victim_memory_bytes: None,
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
                    victim_memory_bytes: None,
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
            victim_memory_bytes: None,
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
