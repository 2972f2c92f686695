//! Restraint: the decisions that keep remediation from becoming the outage.
//! Per alert instance idempotency (`fingerprint`, `startsAt`), a
//! per-container cooldown, a bound on actions per container per window, and
//! a circuit breaker that escalates a container that keeps coming back to
//! one restart and then stops acting on it until the window passes.
//!
//! Pure state, no I/O and no clock: the caller passes `now` (Unix ms), and
//! rebuilds the state from the audit store at start.

use std::collections::{HashMap, HashSet};

use crate::alert::Action;
use crate::config::Settings;
use crate::store::{Record, PENDING};

/// Results whose action counts for cooldown, limits and the breaker.
const ACTING: [&str; 4] = [PENDING, "done", "dry_run", "failed"];

/// An alert instance: (fingerprint, startsAt).
pub type InstanceKey = (String, String);

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
        /// `duplicate`, `cooldown` or `circuit_open`.
        result: &'static str,
        /// Why.
        reason: String,
        /// True when this refusal opened the circuit (escalation off).
        opened_circuit: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct Event {
    at_ms: i64,
    action: Action,
    token: u64,
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
    events: HashMap<String, Vec<Event>>,
    circuits: HashMap<String, OpenCircuit>,
    next_token: u64,
}

fn ms(d: std::time::Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl Restraint {
    /// Rebuilds the state from the dedupe keys and the recent audit rows
    /// (oldest first).
    pub fn rebuild(
        claimed: Vec<InstanceKey>,
        recent: &[Record],
        s: &Settings,
        now_ms: i64,
    ) -> Restraint {
        let mut r = Restraint {
            handled: claimed.into_iter().collect(),
            ..Default::default()
        };
        for rec in recent {
            if rec.claimed && ACTING.contains(&rec.result.as_str()) {
                if let Some(action) = Action::parse(&rec.action) {
                    r.next_token += 1;
                    r.events
                        .entry(rec.container_id.clone())
                        .or_default()
                        .push(Event {
                            at_ms: rec.at_ms,
                            action,
                            token: r.next_token,
                        });
                }
            }
            if rec.opened_circuit && rec.at_ms + ms(s.circuit_window) > now_ms {
                r.circuits.insert(
                    rec.container_id.clone(),
                    OpenCircuit {
                        opened_ms: rec.at_ms,
                        name: rec.container_name.clone(),
                    },
                );
            }
        }
        r
    }

    /// Open circuits (for the gauge).
    pub fn open_circuits(&self) -> impl Iterator<Item = (&String, &OpenCircuit)> {
        self.circuits.iter()
    }

    /// Closes circuits whose window has passed; returns them (id, circuit).
    pub fn expire(&mut self, s: &Settings, now_ms: i64) -> Vec<(String, OpenCircuit)> {
        let window = ms(s.circuit_window);
        let closed: Vec<String> = self
            .circuits
            .iter()
            .filter(|(_, c)| c.opened_ms + window <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        closed
            .into_iter()
            .filter_map(|id| self.circuits.remove(&id).map(|c| (id, c)))
            .collect()
    }

    /// True when the instance was already acted on.
    pub fn is_handled(&self, key: &InstanceKey) -> bool {
        self.handled.contains(key)
    }

    /// Decides on one firing alert for a known, not opted-out container.
    /// When the decision is to act, the instance is claimed and the action
    /// counted at once, so a concurrent redelivery is a duplicate.
    pub fn decide(
        &mut self,
        key: &InstanceKey,
        container_id: &str,
        container_name: &str,
        requested: Action,
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
                "duplicate",
                "this alert instance (fingerprint, startsAt) was already handled".into(),
            );
        }
        if let Some(c) = self.circuits.get(container_id) {
            let until = c.opened_ms + ms(s.circuit_window);
            if until > now_ms {
                return refuse(
                    "circuit_open",
                    format!(
                        "circuit breaker open for this container for another {} s",
                        (until - now_ms + 999) / 1000
                    ),
                );
            }
            self.circuits.remove(container_id);
        }
        let horizon = ms(s.history_horizon());
        let events = self.events.entry(container_id.to_string()).or_default();
        events.retain(|e| e.at_ms + horizon > now_ms);
        if let Some(last) = events.iter().map(|e| e.at_ms).max() {
            let cooldown = ms(s.cooldown);
            if last + cooldown > now_ms {
                return refuse(
                    "cooldown",
                    format!(
                        "last action on this container {} s ago; cooldown is {} s",
                        (now_ms - last) / 1000,
                        s.cooldown.as_secs()
                    ),
                );
            }
        }
        let in_window = events
            .iter()
            .filter(|e| e.at_ms + ms(s.limit_window) > now_ms)
            .count();
        if in_window >= s.max_actions as usize {
            return refuse(
                "cooldown",
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
                    e.action == Action::KillDuplicates && e.at_ms + ms(s.circuit_window) > now_ms
                })
                .count();
            if kills >= s.kill_threshold as usize {
                self.circuits.insert(
                    container_id.to_string(),
                    OpenCircuit {
                        opened_ms: now_ms,
                        name: container_name.to_string(),
                    },
                );
                let why = format!(
                    "circuit breaker: {kills} kill-duplicates actions within {} s",
                    s.circuit_window.as_secs()
                );
                if !s.escalate {
                    return Decision::Refuse {
                        result: "circuit_open",
                        reason: format!(
                            "{why}; not acting on this container until the window passes"
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
        self.events
            .entry(container_id.to_string())
            .or_default()
            .push(Event {
                at_ms: now_ms,
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
        self.release(container_id, token);
    }

    /// Un-counts a claimed action that turned out to do nothing (recovered,
    /// unknown, only protected processes): it does not start a cooldown. The
    /// instance stays handled.
    pub fn release(&mut self, container_id: &str, token: u64) {
        if let Some(ev) = self.events.get_mut(container_id) {
            ev.retain(|e| e.token != token);
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
        (format!("fp{n}"), "2024-01-01T00:00:00Z".into())
    }

    #[test]
    fn duplicate_then_cooldown_then_allowed() {
        let s = settings();
        let mut r = Restraint::default();
        assert!(matches!(
            r.decide(&key(1), "c", "n", Action::Restart, &s, 0),
            Decision::Act { .. }
        ));
        assert!(matches!(
            r.decide(&key(1), "c", "n", Action::Restart, &s, 100_000),
            Decision::Refuse {
                result: "duplicate",
                ..
            }
        ));
        assert!(matches!(
            r.decide(&key(2), "c", "n", Action::Restart, &s, 5_000),
            Decision::Refuse {
                result: "cooldown",
                ..
            }
        ));
        assert!(matches!(
            r.decide(&key(3), "other", "n", Action::Restart, &s, 5_000),
            Decision::Act { .. }
        ));
        assert!(matches!(
            r.decide(&key(2), "c", "n", Action::Restart, &s, 10_000),
            Decision::Act { .. }
        ));
    }

    #[test]
    fn released_claims_do_not_cool_down() {
        let s = settings();
        let mut r = Restraint::default();
        let Decision::Act { token, .. } =
            r.decide(&key(1), "c", "n", Action::KillDuplicates, &s, 0)
        else {
            panic!()
        };
        r.release("c", token);
        assert!(matches!(
            r.decide(&key(2), "c", "n", Action::KillDuplicates, &s, 1),
            Decision::Act { .. }
        ));
    }

    #[test]
    fn withdrawn_claims_leave_no_trace() {
        let s = settings();
        let mut r = Restraint::default();
        let Decision::Act { token, .. } = r.decide(&key(1), "c", "n", Action::Restart, &s, 0)
        else {
            panic!()
        };
        r.withdraw(&key(1), "c", token);
        assert!(!r.is_handled(&key(1)));
        assert!(matches!(
            r.decide(&key(1), "c", "n", Action::Restart, &s, 1),
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
            let d = r.decide(&key(i), "c", "n", Action::KillDuplicates, &s, i as i64);
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
        let d = r.decide(&key(3), "c", "n", Action::KillDuplicates, &s, 10);
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
        let d = r.decide(&key(4), "c", "n", Action::KillDuplicates, &s, 20);
        assert!(
            matches!(
                d,
                Decision::Refuse {
                    result: "circuit_open",
                    ..
                }
            ),
            "{d:?}"
        );
        assert_eq!(r.open_circuits().count(), 1);
        assert!(r.expire(&s, 50_000).is_empty());
        assert_eq!(r.expire(&s, 100_010).len(), 1);
        // Window passed: the old kills fell out of it too.
        let d = r.decide(&key(5), "c", "n", Action::KillDuplicates, &s, 200_000);
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
            r.decide(&key(1), "c", "n", Action::Restart, &s, 0),
            Decision::Act { .. }
        ));
        assert!(matches!(
            r.decide(&key(2), "c", "n", Action::Restart, &s, 1),
            Decision::Act { .. }
        ));
        let d = r.decide(&key(3), "c", "n", Action::Restart, &s, 2);
        assert!(
            matches!(&d, Decision::Refuse { result: "cooldown", reason, .. } if reason.contains("limit 2")),
            "{d:?}"
        );
        assert!(matches!(
            r.decide(&key(3), "c", "n", Action::Restart, &s, 60_001),
            Decision::Act { .. }
        ));
    }
}
