//! The two clocks restraint needs. Live cooldowns, action windows and open
//! circuits run on a monotonic clock, so an NTP step of the wall clock
//! (backwards or forwards) neither shortens nor lengthens them; the wall
//! clock only stamps audit rows, and is read back once, when restraint is
//! rebuilt from those rows at start ([`Now::mono_of_wall`]).
//!
//! [`SystemClock`] is the process's own; [`ManualClock`] lets tests step the
//! two clocks apart.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use crate::timefmt::now_nanos;

/// One reading of both clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Unix time in milliseconds (the wall clock: may step).
    pub wall_ms: i64,
    /// Milliseconds on the monotonic timeline (never steps; its origin is
    /// arbitrary, and instants before it are negative).
    pub mono_ms: i64,
}

impl Now {
    /// The monotonic instant of a wall-clock stamp read back from the audit
    /// store: as far before `mono_ms` as the stamp is before `wall_ms`. A
    /// stamp in the future (written while the clock was ahead) is taken as
    /// now, so it can never hold a container back longer than the window
    /// itself. Returns the instant and whether the stamp was clamped.
    pub fn mono_of_wall(&self, wall_ms: i64) -> (i64, bool) {
        let clamped = wall_ms > self.wall_ms;
        let ago = self.wall_ms.saturating_sub(wall_ms.min(self.wall_ms));
        (self.mono_ms.saturating_sub(ago), clamped)
    }
}

/// A source of both clocks.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Reads both clocks.
    fn now(&self) -> Now;
}

/// The system's clocks: `CLOCK_REALTIME` and [`Instant`] (`CLOCK_MONOTONIC`).
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose monotonic origin is now.
    pub fn new() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Now {
        let mono = self.origin.elapsed().as_millis().min(i64::MAX as u128) as i64;
        Now {
            wall_ms: (now_nanos() / 1_000_000) as i64,
            mono_ms: mono,
        }
    }
}

/// A clock tests set by hand: the wall clock steps independently of the
/// monotonic one.
#[derive(Debug)]
pub struct ManualClock {
    wall_ms: AtomicI64,
    mono_ms: AtomicI64,
}

impl ManualClock {
    /// Both clocks at the given values.
    pub fn new(wall_ms: i64, mono_ms: i64) -> Self {
        ManualClock {
            wall_ms: AtomicI64::new(wall_ms),
            mono_ms: AtomicI64::new(mono_ms),
        }
    }

    /// Time passes: both clocks advance by `ms`.
    pub fn advance(&self, ms: i64) {
        self.wall_ms.fetch_add(ms, Ordering::SeqCst);
        self.mono_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// The wall clock steps by `ms` (negative: backwards); the monotonic
    /// clock does not move.
    pub fn step_wall(&self, ms: i64) {
        self.wall_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Now {
        Now {
            wall_ms: self.wall_ms.load(Ordering::SeqCst),
            mono_ms: self.mono_ms.load(Ordering::SeqCst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_stamps_map_back_and_future_ones_are_clamped() {
        let now = Now {
            wall_ms: 1_000_000,
            mono_ms: 5_000,
        };
        assert_eq!(now.mono_of_wall(1_000_000), (5_000, false));
        assert_eq!(now.mono_of_wall(999_000), (4_000, false));
        // Before the monotonic origin: negative, still ordered.
        assert_eq!(now.mono_of_wall(990_000), (-5_000, false));
        // Written while the clock was an hour ahead: now, not an hour on.
        assert_eq!(now.mono_of_wall(1_000_000 + 3_600_000), (5_000, true));
        assert!(!now.mono_of_wall(i64::MIN).1);
        assert_eq!(now.mono_of_wall(i64::MAX), (5_000, true));
    }

    #[test]
    fn the_manual_clock_steps_the_wall_alone() {
        let c = ManualClock::new(10, 20);
        c.advance(5);
        c.step_wall(-100);
        assert_eq!(
            c.now(),
            Now {
                wall_ms: -85,
                mono_ms: 25
            }
        );
        let s = SystemClock::new();
        let (a, b) = (s.now(), s.now());
        assert!(b.mono_ms >= a.mono_ms && a.mono_ms >= 0);
    }
}
