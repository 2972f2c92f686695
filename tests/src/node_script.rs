//! What the private runtimes of the kit ([`crate::CriNode`],
//! [`crate::PodmanNode`]) share: the check that they can run here, and
//! their project script's `up DIR` / `down DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::run_ok;
use crate::util::{skip_docker, workspace_root, SKIP_ENV};

/// True when a private `what` can run: root and every one of `bins`
/// installed (`package` says which Debian packages hold them). Returns
/// `false` with a printed notice when `PIDWARDEN_SKIP_DOCKER=1` or when not
/// root; panics with a clear message when a binary is missing.
pub(crate) fn require_root_tools(what: &str, bins: &[&str], package: &str) -> bool {
    if skip_docker() {
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: a private {what} needs root");
        return false;
    }
    for bin in bins {
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: install {package} (scripts/test.sh does), \
             or set {SKIP_ENV}=1 to skip the tests that need them"
        );
    }
    true
}

/// `scripts/<script>` path.
pub(crate) fn script(name: &str) -> PathBuf {
    workspace_root().join("scripts").join(name)
}

/// Runs `scripts/<name> up <dir>`; returns the socket path it prints last.
pub(crate) fn script_up(name: &str, dir: &Path) -> PathBuf {
    let out = run_ok(Command::new(script(name)).arg("up").arg(dir));
    let text = String::from_utf8_lossy(&out.stdout);
    let socket = PathBuf::from(text.lines().last().unwrap_or("").trim());
    assert!(socket.exists(), "{name} up printed no socket: {text}");
    socket
}

/// Runs `scripts/<name> down <dir>` (from a `Drop`: never panics).
pub(crate) fn script_down(name: &str, dir: &Path) {
    match Command::new(script(name)).arg("down").arg(dir).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!("{name} down: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => eprintln!("{name} down: {e}"),
    }
}
