//! The model both pidwarden daemons share: which containers exist (found by
//! walking the cgroup filesystem, v1, v2 or hybrid), what their cgroups say
//! about tasks, PID limits and memory, which processes live in them (from
//! `/proc`), which of those processes are duplicate copies, and how to signal
//! a process without ever hitting a recycled PID.
//!
//! Every entry point takes its roots (`/proc`, `/sys/fs/cgroup`) as a value,
//! so tests point it at fixture trees and a containerised daemon at the
//! host's trees mounted under `/host`.
#![deny(missing_docs)]

pub mod build_info;
pub mod cgroup;
pub mod collect;
pub mod error;
pub mod exposition;
mod fasthash;
pub mod groups;
pub mod limit;
pub mod listen;
pub mod node;
pub mod procfs;
pub mod redact;
pub mod roots;
pub mod runtime;
pub mod signal;
mod sys;
pub mod timefmt;

pub use error::{Error, Result};
pub use limit::Limit;
pub use roots::Roots;
pub use sys::{keep_freed_memory, thread_cpu_time};
