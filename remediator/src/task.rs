//! Blocking work off the async workers ([`blocking`]) and the wall clock in
//! Unix milliseconds ([`now_ms`]): the two helpers every stage of the
//! pipeline uses, kept apart from them so they import nothing of each other.

use crate::timefmt::now_nanos;

/// A blocking task ended without an answer (it panicked or was cancelled).
#[derive(Debug, thiserror::Error)]
#[error("background task failed: {0}")]
pub struct TaskFailed(#[from] tokio::task::JoinError);

/// Runs blocking work off the async workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TaskFailed> {
    Ok(tokio::task::spawn_blocking(f).await?)
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    (now_nanos() / 1_000_000) as i64
}
