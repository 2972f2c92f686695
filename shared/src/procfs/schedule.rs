//! When the process table re-reads a process and re-lists a container: a
//! process is re-read while young ([`YOUNG`]) each time its age has doubled
//! since its last reading (so at most ~log2 of the window over its first
//! minute, however often it is scraped) and at least every [`REFRESH`]; a container is listed at least every [`RELIST`]; both spread
//! over scrapes by pid or id so that what was first seen together is not all
//! read again in the same scrape. The times come from a [`Clock`], the
//! kernel's or, in tests, one the test moves.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use crate::fasthash::stable_hash;

/// How long after its start a process's `stat` and `cmdline` are re-read
/// each time its age has doubled (a fresh process is the one that execs:
/// one read between its fork and its exec is read again at the next scrape).
pub const YOUNG: Duration = Duration::from_secs(60);

/// The longest a live process goes without its `stat` and `cmdline` being
/// re-read: the staleness bound of a command line changed by a late exec.
pub const REFRESH: Duration = Duration::from_secs(600);

/// The longest a container goes without its `cgroup.procs` being read:
/// the staleness bound of an arrival balanced exactly by a thread exit (see
/// the process table's docs).
pub const RELIST: Duration = Duration::from_secs(300);

/// How long after a full re-read the next one is due: between half of
/// [`REFRESH`] and all of it, spread by pid so that processes first seen
/// together are not all re-read in the same scrape.
pub(crate) fn refresh_after(pid: i32) -> Duration {
    spread(REFRESH, u64::from(pid as u32).wrapping_mul(2_654_435_761))
}

/// How long after a listing container `key` is listed again at the latest:
/// between half of [`RELIST`] and all of it, spread by id.
pub(crate) fn relist_after(key: &str) -> Duration {
    spread(RELIST, stable_hash(key))
}

/// Between half of `period` and all of it, placed by `hash`.
fn spread(period: Duration, hash: u64) -> Duration {
    let half = period.as_millis() as u64 / 2;
    period - Duration::from_millis(hash % half)
}

/// Until when a process that started at `start_time` (ticks since boot)
/// is young, `young` after its start: `now` plus what is left of it.
pub(crate) fn young_until(clock: &dyn Clock, start_time: u64, young: Duration) -> Instant {
    let started = Duration::from_millis(start_time.saturating_mul(1000) / clock.ticks_per_sec());
    let age = clock.since_boot().saturating_sub(started);
    clock.now() + young.saturating_sub(age)
}

/// When a young process read now is due its next young re-read: once its
/// age has doubled (now plus its age), so an exec at age `t` shows by age
/// `2t` (plus one scrape interval), and a process re-read every scrape only
/// while its age is below one interval.
pub(crate) fn young_next(clock: &dyn Clock, start_time: u64) -> Instant {
    let started = Duration::from_millis(start_time.saturating_mul(1000) / clock.ticks_per_sec());
    clock.now() + clock.since_boot().saturating_sub(started)
}

/// Whether a process is due a re-read of its `stat` and `cmdline`: while
/// young, once its age doubled since the last reading (`young_next`); and
/// once its refresh time came.
pub(crate) fn is_due(
    now: Instant,
    young_until: Instant,
    young_next: Instant,
    next_refresh: Instant,
) -> bool {
    (now < young_until && now >= young_next) || now >= next_refresh
}

/// The times the schedules run on.
pub(crate) trait Clock: Debug + Send {
    /// Now, for the schedules.
    fn now(&self) -> Instant;
    /// Time since boot, the clock of `stat`'s start time.
    fn since_boot(&self) -> Duration;
    /// The unit of `stat`'s times, per second.
    fn ticks_per_sec(&self) -> u64;
}

/// The kernel's clocks.
#[derive(Debug)]
pub(crate) struct KernelClock {
    ticks_per_sec: u64,
}

impl KernelClock {
    pub(crate) fn new() -> Self {
        KernelClock {
            ticks_per_sec: crate::sys::clock_ticks_per_sec(),
        }
    }
}

impl Clock for KernelClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn since_boot(&self) -> Duration {
        crate::sys::since_boot()
    }

    fn ticks_per_sec(&self) -> u64 {
        self.ticks_per_sec
    }
}

/// A clock the test moves: it starts at boot + `since_boot`, 100 ticks a
/// second, and [`FakeClock::advance`] moves both its times.
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct FakeClock {
    start: Instant,
    boot: Duration,
    passed: std::sync::Arc<std::sync::Mutex<Duration>>,
}

#[cfg(test)]
impl FakeClock {
    pub(crate) fn at_boot_plus(since_boot: Duration) -> Self {
        FakeClock {
            start: Instant::now(),
            boot: since_boot,
            passed: Default::default(),
        }
    }

    pub(crate) fn advance(&self, by: Duration) {
        *self.passed.lock().unwrap() += by;
    }
}

#[cfg(test)]
impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.start + *self.passed.lock().unwrap()
    }

    fn since_boot(&self) -> Duration {
        self.boot + *self.passed.lock().unwrap()
    }

    fn ticks_per_sec(&self) -> u64 {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_stay_between_half_and_all_of_the_period() {
        for pid in [1, 2, 3, 1000, 4_194_304, i32::MAX] {
            let d = refresh_after(pid);
            assert!(d > REFRESH / 2 && d <= REFRESH, "{pid}: {d:?}");
        }
        let mut seen = std::collections::HashSet::new();
        for pid in 1..100 {
            seen.insert(refresh_after(pid));
        }
        assert!(seen.len() > 50, "pids spread over the period");
        for id in ["a", "b", &"c".repeat(64)] {
            let d = relist_after(id);
            assert!(d > RELIST / 2 && d <= RELIST, "{id}: {d:?}");
            assert_eq!(d, relist_after(id), "stable for an id");
        }
    }

    #[test]
    fn a_process_is_young_for_what_is_left_of_young_after_its_start() {
        let clock = FakeClock::at_boot_plus(Duration::from_secs(1000));
        let now = clock.now();
        // Started 10 s ago (ticks at 100 a second).
        assert_eq!(
            young_until(&clock, 99_000, YOUNG),
            now + Duration::from_secs(50)
        );
        // Started long ago: not young.
        assert_eq!(young_until(&clock, 100, YOUNG), now);
        // Started "after now" (a clock step): young for all of it.
        assert_eq!(young_until(&clock, 200_000, YOUNG), now + YOUNG);
    }

    #[test]
    fn due_while_young_once_its_age_doubled_and_from_the_refresh_time() {
        let t = Instant::now();
        let s = Duration::from_secs(1);
        assert!(is_due(t, t + 5 * s, t, t + 10 * s), "young, age doubled");
        assert!(!is_due(t, t + 5 * s, t + s, t + 10 * s), "young, too soon");
        assert!(
            !is_due(t + 2 * s, t + s, t, t + 10 * s),
            "grown up, refresh ahead"
        );
        assert!(is_due(t + 10 * s, t + s, t, t + 10 * s), "refresh due");
    }

    #[test]
    fn a_young_process_is_next_due_when_its_age_doubled() {
        let clock = FakeClock::at_boot_plus(Duration::from_secs(1000));
        let now = clock.now();
        // Started 10 s ago: due again in 10 s; started 50 ms ago: in 50 ms.
        assert_eq!(young_next(&clock, 99_000), now + Duration::from_secs(10));
        assert_eq!(young_next(&clock, 99_995), now + Duration::from_millis(50));
        // Started "after now" (a clock step): due at once.
        assert_eq!(young_next(&clock, 200_000), now);
    }
}
