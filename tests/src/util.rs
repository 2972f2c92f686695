//! Small shared helpers: unique names, polling, workspace paths, the skip switch.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Prefix of every container, cgroup and temp resource the kit creates.
pub const NAME_PREFIX: &str = "pidwarden-test-";

/// Environment variable that turns Docker/cgroup tests into early returns.
pub const SKIP_ENV: &str = "PIDWARDEN_SKIP_DOCKER";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique across threads and processes: `pidwarden-test-<pid>-<n>-<salt>`.
///
/// The salt (low bits of the wall clock) keeps names apart even when a PID is
/// recycled by a later test process.
pub fn unique_name() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let salt = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() & 0xffff)
        .unwrap_or(0);
    format!("{NAME_PREFIX}{}-{n}-{salt:04x}", std::process::id())
}

/// True when `PIDWARDEN_SKIP_DOCKER=1`; prints the skip notice in that case.
pub fn skip_docker() -> bool {
    if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
        println!("skipped: {SKIP_ENV}=1");
        true
    } else {
        false
    }
}

/// Calls `f` every `interval` until it returns `Some`, or `timeout` has passed.
///
/// `f` is always called at least once, and once more at the deadline.
pub fn poll_until<T>(
    timeout: Duration,
    interval: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(interval.min(deadline - now));
    }
}

/// The workspace root (the directory holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The revision the daemons' `build_info` and `--version` must name:
/// `PIDWARDEN_GIT_REVISION` when the build was given one, else what `git
/// rev-parse --short=12 HEAD` says of the source tree, else `unknown` (not
/// a git checkout).
pub fn source_revision() -> String {
    if let Some(r) = option_env!("PIDWARDEN_GIT_REVISION").filter(|r| !r.trim().is_empty()) {
        return r.trim().to_string();
    }
    std::process::Command::new("git")
        .arg("-C")
        .arg(workspace_root())
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Environment variable naming a directory whose binaries [`workspace_bin`]
/// prefers (e.g. `target/release` to measure a release build).
pub const BIN_DIR_ENV: &str = "PIDWARDEN_BIN_DIR";

/// Path of the workspace binary `name` built by `cargo build` (debug profile).
///
/// Looks in `$PIDWARDEN_BIN_DIR` first when set, then beside the running
/// test executable (`target/debug/deps/..`), then in
/// `$CARGO_TARGET_DIR/debug`, then `<workspace>/target/debug`.
/// Panics with "run `cargo build --workspace` first" when it is missing.
pub fn workspace_bin(name: &str) -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        candidates.push(PathBuf::from(dir).join(name));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            if dir.file_name().is_some_and(|n| n == "deps") {
                if let Some(profile) = dir.parent() {
                    candidates.push(profile.join(name));
                }
            }
        }
    }
    let root = workspace_root();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        let t = PathBuf::from(t);
        let t = if t.is_absolute() { t } else { root.join(t) };
        candidates.push(t.join("debug").join(name));
    }
    candidates.push(root.join("target").join("debug").join(name));
    for c in &candidates {
        if c.is_file() {
            return c.clone();
        }
    }
    panic!(
        "binary `{name}` not found (looked in {candidates:?}): run `cargo build --workspace` first"
    );
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `unix_ms` as RFC 3339 in UTC with milliseconds (`2026-11-30T04:20:00.123Z`),
/// the form Alertmanager gives `startsAt`.
pub fn rfc3339_ms(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339_ms;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_001), "2000-02-29T00:00:00.001Z");
        assert_eq!(rfc3339_ms(1_795_926_000_123), "2026-11-29T04:20:00.123Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }
}
