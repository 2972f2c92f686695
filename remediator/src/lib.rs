//! pidwarden's remediator: an Alertmanager webhook receiver that kills
//! surplus duplicate process copies in a container, or restarts it, only
//! when an authenticated alert asks, after re-checking the live state, and
//! with restraint (idempotency, cooldown, action limits, a circuit breaker).
//! Every decision is a row in a SQLite audit trail.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod alert;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod decide;
pub mod exchange;
pub mod forward;
pub mod http;
mod identity;
pub mod kill;
pub mod kill_action;
pub mod live;
pub mod metrics;
pub mod notices;
pub mod outcome;
pub mod pipeline;
pub mod preview;
pub mod recovery;
pub mod reload;
pub mod resolve;
pub mod restart_action;
pub mod restraint;
pub mod runtime;
pub mod server;
pub mod service;
pub mod store;
pub mod task;
pub mod timefmt;
pub mod tls;
pub mod units;
