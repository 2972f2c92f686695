//! What the exporter keeps about collection errors: counters per
//! [`Stage`] that accumulate across scrapes (`pidwarden_scrape_errors_total`),
//! and a log limiter so that a persistent failure does not flood the log on
//! every scrape.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pidwarden_shared::collect::Stage;

/// Logs at most once per interval per key, reporting how many were suppressed.
#[derive(Debug)]
pub struct LogLimiter {
    every: Duration,
    last: HashMap<String, (Instant, u64)>,
}

impl LogLimiter {
    /// A limiter logging each key at most once per `every`.
    pub fn new(every: Duration) -> Self {
        LogLimiter {
            every,
            last: HashMap::new(),
        }
    }

    /// Whether a message for `key` should be logged now; returns the number
    /// of messages suppressed since the last one logged.
    pub fn allow(&mut self, key: &str) -> Option<u64> {
        let now = Instant::now();
        match self.last.get_mut(key) {
            Some((at, suppressed)) if now.duration_since(*at) < self.every => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let n = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                self.last.insert(key.to_string(), (now, 0));
                Some(0)
            }
        }
    }

    /// Logs `msg` as a warning for `stage`, rate-limited.
    pub fn log(&mut self, stage: &str, msg: &str) {
        if let Some(suppressed) = self.allow(stage) {
            tracing::warn!(stage, suppressed, error = msg, "collection error");
        }
    }
}

/// Errors per stage since start.
#[derive(Debug, Default, Clone)]
pub struct ErrorCounts {
    counts: [u64; Stage::ALL.len()],
}

impl ErrorCounts {
    /// Adds one error for `stage`.
    pub fn add(&mut self, stage: Stage) {
        self.counts[stage as usize] += 1;
    }

    /// Every stage with its count, in exposition order; the runtime errors
    /// are given from outside (the metadata cache counts them).
    pub fn with_runtime(&self, runtime: u64) -> Vec<(Stage, u64)> {
        Stage::ALL
            .into_iter()
            .map(|s| {
                let n = match s {
                    Stage::Runtime => runtime,
                    _ => self.counts[s as usize],
                };
                (s, n)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_logs_once_per_interval_per_key() {
        let mut l = LogLimiter::new(Duration::from_secs(3600));
        assert_eq!(l.allow("proc"), Some(0));
        assert_eq!(l.allow("proc"), None);
        assert_eq!(l.allow("proc"), None);
        assert_eq!(l.allow("cgroup"), Some(0));
        let mut l = LogLimiter::new(Duration::ZERO);
        assert_eq!(l.allow("proc"), Some(0));
        assert_eq!(l.allow("proc"), Some(0));
    }

    #[test]
    fn counts_accumulate_per_stage() {
        let mut c = ErrorCounts::default();
        c.add(Stage::Proc);
        c.add(Stage::Proc);
        c.add(Stage::Discovery);
        // Runtime errors are the metadata cache's count, not added here.
        c.add(Stage::Runtime);
        assert_eq!(
            c.with_runtime(7),
            vec![
                (Stage::Discovery, 1),
                (Stage::Cgroup, 0),
                (Stage::Proc, 2),
                (Stage::Runtime, 7)
            ]
        );
    }
}
