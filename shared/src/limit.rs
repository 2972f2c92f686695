//! A cgroup limit: "unlimited" is a value of its own, never 0 or a sentinel.

use serde::Serialize;

/// A limit read from `pids.max`, `memory.max` or `memory.limit_in_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Limit {
    /// No limit (`max`, or cgroup v1's page-rounded `i64::MAX`).
    Unlimited,
    /// At most this many tasks or bytes.
    Max(u64),
}

impl Limit {
    /// The limit as a number, `None` when unlimited.
    pub fn value(self) -> Option<u64> {
        match self {
            Limit::Unlimited => None,
            Limit::Max(v) => Some(v),
        }
    }

    /// The tighter of two limits.
    pub fn min(self, other: Limit) -> Limit {
        match (self, other) {
            (Limit::Unlimited, o) => o,
            (s, Limit::Unlimited) => s,
            (Limit::Max(a), Limit::Max(b)) => Limit::Max(a.min(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_prefers_the_tighter_limit() {
        assert_eq!(Limit::Unlimited.min(Limit::Max(5)), Limit::Max(5));
        assert_eq!(Limit::Max(7).min(Limit::Unlimited), Limit::Max(7));
        assert_eq!(Limit::Max(7).min(Limit::Max(3)), Limit::Max(3));
        assert_eq!(Limit::Unlimited.min(Limit::Unlimited), Limit::Unlimited);
        assert_eq!(Limit::Max(9).value(), Some(9));
        assert_eq!(Limit::Unlimited.value(), None);
    }
}
