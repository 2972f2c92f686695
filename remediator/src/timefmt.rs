//! RFC 3339 timestamps as Alertmanager and the container runtimes write them:
//! the shared parser and formatter, used here for alert times and audit rows.

pub use pidwarden_shared::timefmt::*;
