//! Restraint: the decisions that keep remediation from becoming the outage.
//! Per alert instance idempotency (`fingerprint`, `startsAt`), a
//! per-container cooldown counted from the end of the last action, a bound
//! on actions per container per window, a circuit breaker that escalates a
//! container that keeps coming back to one restart (when its alert may ask
//! for one) and then stops acting on it until the window passes, and a
//! bounded number of retries for actions that failed without changing
//! anything.
//!
//! Dry-run and live decisions keep apart: an instance or a cooldown seen
//! only in dry-run never holds back the live action.
//!
//! Pure state, no I/O and no clock: the caller passes `now` (Unix ms), and
//! rebuilds the state from the audit store at start.

use std::collections::{HashMap, HashSet};

use crate::alert::Action;
use crate::config::Settings;
use crate::outcome::Outcome;
use crate::store::KeyRow;

/// An alert instance in one mode: (fingerprint, startsAt, dry-run).
pub type InstanceKey = (String, String, bool);

/// Attempts per alert instance that may fail without changing anything
/// before the instance is given up.
pub const MAX_ATTEMPTS: u32 = 3;

/// Restraint is kept per container and mode: (dry-run, container id).
type Scope = (bool, String);

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
    /// When it opened (Unix ms).
    pub opened_ms: i64,
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
    /// recent audit rows (oldest first).
    pub fn rebuild(
        claimed: Vec<InstanceKey>,
        attempts: Vec<(InstanceKey, u32)>,
        recent: &[KeyRow],
        s: &Settings,
        now_ms: i64,
    ) -> Restraint {
        let mut r = Restraint {
            handled: claimed.into_iter().collect(),
            attempts: attempts.into_iter().collect(),
            ..Default::default()
        };
        for rec in recent {
            let scope = (rec.dry_run, rec.container_id.clone());
            if rec.claimed && !rec.retry && rec.result.is_acting() {
                if let Some(action) = Action::parse(&rec.action) {
                    r.next_token += 1;
                    r.events.entry(scope.clone()).or_default().push(Event {
                        at_ms: rec.at_ms,
                        end_ms: rec.finished_ms,
                        action,
                        token: r.next_token,
                    });
                }
            }
            if rec.opened_circuit && rec.at_ms.saturating_add(ms(s.circuit_window)) > now_ms {
                r.circuits.insert(
                    scope,
                    OpenCircuit {
                        opened_ms: rec.at_ms,
                        name: rec.container_name.clone(),
                    },
                );
            }
        }
        r
    }

    /// Open circuits (for the gauge): container id and circuit.
    pub fn open_circuits(&self) -> impl Iterator<Item = (&String, &OpenCircuit)> {
        self.circuits.iter().map(|((_, id), c)| (id, c))
    }

    /// Closes circuits whose window has passed; returns them (id, circuit).
    pub fn expire(&mut self, s: &Settings, now_ms: i64) -> Vec<(String, OpenCircuit)> {
        let window = ms(s.circuit_window);
        let closed: Vec<Scope> = self
            .circuits
            .iter()
            .filter(|(_, c)| c.opened_ms.saturating_add(window) <= now_ms)
            .map(|(scope, _)| scope.clone())
            .collect();
        closed
            .into_iter()
            .filter_map(|scope| self.circuits.remove(&scope).map(|c| (scope.1, c)))
            .collect()
    }

    /// True when the instance was already acted on.
    pub fn is_handled(&self, key: &InstanceKey) -> bool {
        self.handled.contains(key)
    }

    /// Decides on one firing alert for a known, not opted-out container.
    /// The mode is the key's third part. `may_restart`: the alert may ask
    /// for `restart` (config `[actions]`), so the breaker may escalate to
    /// one. When the decision is to act, the instance is claimed and the
    /// action counted at once, so a concurrent redelivery is a duplicate.
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &mut self,
        key: &InstanceKey,
        container_id: &str,
        container_name: &str,
        requested: Action,
        may_restart: bool,
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
        let scope: Scope = (key.2, container_id.to_string());
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
            self.circuits.remove(&scope);
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
                        name: container_name.to_string(),
                    },
                );
                let why = format!(
                    "circuit breaker: {kills} kill-duplicates actions within {} s",
                    s.circuit_window.as_secs()
                );
                if !s.escalate || !may_restart {
                    let not = if s.escalate {
                        "this alert may not ask for restart (config [actions]), so no escalation"
                    } else {
                        "escalation is off"
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
    pub fn withdraw(&mut self, key: &InstanceKey, container_id: &str, token: u64) {
        self.handled.remove(key);
        self.release(key, container_id, token);
    }

    /// Un-counts a claimed action that turned out to do nothing (recovered,
    /// unknown, only protected processes): it does not start a cooldown. The
    /// instance stays handled.
    pub fn release(&mut self, key: &InstanceKey, container_id: &str, token: u64) {
        if let Some(ev) = self.events.get_mut(&(key.2, container_id.to_string())) {
            ev.retain(|e| e.token != token);
        }
    }

    /// A claimed action failed without changing anything: it does not
    /// count, and the instance is free again for a redelivery, up to
    /// [`MAX_ATTEMPTS`] failed attempts.
    pub fn retry(&mut self, key: &InstanceKey, container_id: &str, token: u64) {
        self.withdraw(key, container_id, token);
        *self.attempts.entry(key.clone()).or_default() += 1;
    }

    /// The action of `token` ended at `now_ms`: cooldown counts from here.
    pub fn finished(&mut self, key: &InstanceKey, container_id: &str, token: u64, now_ms: i64) {
        if let Some(ev) = self.events.get_mut(&(key.2, container_id.to_string())) {
            for e in ev.iter_mut().filter(|e| e.token == token) {
                e.end_ms = Some(now_ms);
            }
        }
    }
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

    fn key(n: u32) -> InstanceKey {
        (format!("fp{n}"), "2024-01-01T00:00:00Z".into(), false)
    }

    #[test]
    fn duplicate_then_cooldown_then_allowed() {
        let s = settings();
        let mut r = Restraint::default();
        let Decision::Act { token, .. } = r.decide(&key(1), "c", "n", Action::Restart, true, &s, 0)
        else {
            panic!()
        };
        r.finished(&key(1), "c", token, 0);
        assert!(matches!(
            r.decide(&key(1), "c", "n", Action::Restart, true, &s, 100_000),
            Decision::Refuse {
                result: Outcome::Duplicate,
                ..
            }
        ));
        assert!(matches!(
            r.decide(&key(2), "c", "n", Action::Restart, true, &s, 5_000),
            Decision::Refuse {
                result: Outcome::Cooldown,
                ..
            }
        ));
        assert!(matches!(
            r.decide(&key(3), "other", "n", Action::Restart, true, &s, 5_000),
            Decision::Act { .. }
        ));
        assert!(matches!(
            r.decide(&key(2), "c", "n", Action::Restart, true, &s, 10_000),
            Decision::Act { .. }
        ));
    }

    #[test]
    fn released_claims_do_not_cool_down() {
        let s = settings();
        let mut r = Restraint::default();
        let Decision::Act { token, .. } =
            r.decide(&key(1), "c", "n", Action::KillDuplicates, true, &s, 0)
        else {
            panic!()
        };
        r.release(&key(1), "c", token);
        assert!(matches!(
            r.decide(&key(2), "c", "n", Action::KillDuplicates, true, &s, 1),
            Decision::Act { .. }
        ));
    }

    #[test]
    fn withdrawn_claims_leave_no_trace() {
        let s = settings();
        let mut r = Restraint::default();
        let Decision::Act { token, .. } = r.decide(&key(1), "c", "n", Action::Restart, true, &s, 0)
        else {
            panic!()
        };
        r.withdraw(&key(1), "c", token);
        assert!(!r.is_handled(&key(1)));
        assert!(matches!(
            r.decide(&key(1), "c", "n", Action::Restart, true, &s, 1),
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
                "c",
                "n",
                Action::KillDuplicates,
                true,
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
        let d = r.decide(&key(3), "c", "n", Action::KillDuplicates, true, &s, 10);
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
        let d = r.decide(&key(4), "c", "n", Action::KillDuplicates, true, &s, 20);
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
        let d = r.decide(&key(5), "c", "n", Action::KillDuplicates, true, &s, 200_000);
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
            r.decide(&key(1), "c", "n", Action::Restart, true, &s, 0),
            Decision::Act { .. }
        ));
        assert!(matches!(
            r.decide(&key(2), "c", "n", Action::Restart, true, &s, 1),
            Decision::Act { .. }
        ));
        let d = r.decide(&key(3), "c", "n", Action::Restart, true, &s, 2);
        assert!(
            matches!(&d, Decision::Refuse { result: Outcome::Cooldown, reason, .. } if reason.contains("limit 2")),
            "{d:?}"
        );
        assert!(matches!(
            r.decide(&key(3), "c", "n", Action::Restart, true, &s, 60_001),
            Decision::Act { .. }
        ));
    }

    #[test]
    fn dry_run_and_live_keep_apart() {
        let s = settings();
        let mut r = Restraint::default();
        let dry = ("fp".to_string(), "t".to_string(), true);
        let live = ("fp".to_string(), "t".to_string(), false);
        assert!(matches!(
            r.decide(&dry, "c", "n", Action::KillDuplicates, true, &s, 0),
            Decision::Act { .. }
        ));
        // The same instance, live, within the dry-run action's cooldown: acts.
        let d = r.decide(&live, "c", "n", Action::KillDuplicates, true, &s, 1);
        assert!(matches!(d, Decision::Act { .. }), "{d:?}");
        let d = r.decide(&live, "c", "n", Action::KillDuplicates, true, &s, 2);
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
            r.decide(&key(1), "c", "n", Action::KillDuplicates, true, &s, 0)
        else {
            panic!()
        };
        // Still running at 30 s: cooldown holds.
        let d = r.decide(&key(2), "c", "n", Action::KillDuplicates, true, &s, 30_000);
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
        let d = r.decide(&key(2), "c", "n", Action::KillDuplicates, true, &s, 45_000);
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
        let d = r.decide(&key(2), "c", "n", Action::KillDuplicates, true, &s, 50_000);
        assert!(matches!(d, Decision::Act { .. }), "{d:?}");
    }

    #[test]
    fn failed_attempts_retry_up_to_the_bound() {
        let s = settings();
        let mut r = Restraint::default();
        for i in 0..MAX_ATTEMPTS {
            let d = r.decide(&key(1), "c", "n", Action::Restart, true, &s, i as i64);
            let Decision::Act { token, .. } = d else {
                panic!("attempt {i}: {d:?}")
            };
            r.retry(&key(1), "c", token);
        }
        let d = r.decide(&key(1), "c", "n", Action::Restart, true, &s, 10);
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
        let d = r.decide(&key(2), "c", "n", Action::Restart, true, &s, 11);
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
                "c",
                "n",
                Action::KillDuplicates,
                false,
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
        let d = r.decide(&key(3), "c", "n", Action::KillDuplicates, false, &s, 10);
        assert!(
            matches!(
                &d,
                Decision::Refuse { result: Outcome::CircuitOpen, opened_circuit: true, reason } if reason.contains("[actions]")
            ),
            "{d:?}"
        );
    }
}
