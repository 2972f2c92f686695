//! What the binaries were built from: the crate version and the git
//! revision (see `shared/build.rs`: `PIDWARDEN_GIT_REVISION`, else `git
//! rev-parse --short=12 HEAD`, else `unknown`). Both daemons export them in
//! their `build_info` metric and print them with `--version`.

/// The workspace's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision (12 hex digits), or `unknown`.
pub const REVISION: &str = env!("PIDWARDEN_BUILD_REVISION");

/// `--version`'s text: `0.1.0 (revision 0123456789ab)`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("PIDWARDEN_BUILD_REVISION"),
    ")"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_is_a_short_hash_or_unknown_or_given() {
        let given = option_env!("PIDWARDEN_GIT_REVISION").filter(|s| !s.trim().is_empty());
        assert!(
            REVISION == "unknown"
                || given.is_some()
                || (REVISION.len() >= 12 && REVISION.bytes().all(|b| b.is_ascii_hexdigit())),
            "{REVISION}"
        );
        assert!(LONG_VERSION.starts_with(VERSION) && LONG_VERSION.contains(REVISION));
    }
}
