//! The result of one decision or action, as one type. It becomes text only
//! where it leaves the process: the audit store, the metrics and the JSON
//! answers ([`Outcome::as_str`]), and comes back through [`Outcome::parse`].

use serde::{Deserialize, Serialize};

/// What became of one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// An action was started and is still running.
    Pending,
    /// The action ran.
    Done,
    /// Dry-run: what would have been done was recorded.
    DryRun,
    /// The condition was gone on re-check; nothing done.
    Recovered,
    /// This alert instance was already handled.
    Duplicate,
    /// Too soon after the last action on the container, or too many actions
    /// in the window.
    Cooldown,
    /// The circuit breaker is open for the container.
    CircuitOpen,
    /// The container opted out, only protected processes matched, a kill
    /// signalled nothing (every planned process refused at signal time), or
    /// a restart the pod's restart policy does not allow.
    Protected,
    /// The alert names no container this node runs.
    UnknownContainer,
    /// The action failed.
    Failed,
    /// Another action on the same container was running.
    Busy,
    /// The container runs on another node: the alert was sent on to that
    /// node's remediator (the row holds its answer).
    Forwarded,
    /// The alert was resolved: recorded, never acted on.
    Resolved,
    /// The alert asked for no action (or one this alert may not ask for).
    Ignored,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 14] = [
        Outcome::Pending,
        Outcome::Done,
        Outcome::DryRun,
        Outcome::Recovered,
        Outcome::Duplicate,
        Outcome::Cooldown,
        Outcome::CircuitOpen,
        Outcome::Protected,
        Outcome::UnknownContainer,
        Outcome::Failed,
        Outcome::Busy,
        Outcome::Forwarded,
        Outcome::Resolved,
        Outcome::Ignored,
    ];

    /// The stored and exported text.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Done => "done",
            Outcome::DryRun => "dry_run",
            Outcome::Recovered => "recovered",
            Outcome::Duplicate => "duplicate",
            Outcome::Cooldown => "cooldown",
            Outcome::CircuitOpen => "circuit_open",
            Outcome::Protected => "protected",
            Outcome::UnknownContainer => "unknown_container",
            Outcome::Failed => "failed",
            Outcome::Busy => "busy",
            Outcome::Forwarded => "forwarded",
            Outcome::Resolved => "resolved",
            Outcome::Ignored => "ignored",
        }
    }

    /// The outcome a stored text names.
    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// Whether it is counted in `pidwarden_remediations_total`: every
    /// decision is, once, at its end. `pending` is a transient state (the
    /// action's end is counted) and `resolved` is no decision (an alert
    /// that stopped firing); both are audit rows only.
    pub fn is_counted(self) -> bool {
        !matches!(self, Outcome::Pending | Outcome::Resolved)
    }

    /// The outcomes counted in `pidwarden_remediations_total`.
    pub fn counted() -> impl Iterator<Item = Outcome> {
        Outcome::ALL.into_iter().filter(|o| o.is_counted())
    }

    /// Whether an action of this outcome counts for cooldowns, the action
    /// bound and the circuit breaker: it was started, or it ran.
    pub fn is_acting(self) -> bool {
        matches!(
            self,
            Outcome::Pending | Outcome::Done | Outcome::DryRun | Outcome::Failed
        )
    }
}

impl PartialEq<&str> for Outcome {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_matches_serde() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
            assert_eq!(
                serde_json::to_value(o).unwrap(),
                serde_json::json!(o.as_str())
            );
        }
        assert_eq!(Outcome::parse("nope"), None);
        assert!(Outcome::Busy.is_counted());
        assert!(Outcome::Ignored.is_counted());
        assert!(!Outcome::Pending.is_counted() && !Outcome::Resolved.is_counted());
    }
}
