//! Records the git revision the binaries are built from as the compile-time
//! environment variable `PIDWARDEN_BUILD_REVISION` ([`build_info`]): the
//! `PIDWARDEN_GIT_REVISION` environment variable when set (a build from a
//! source tarball, a packager), else `git rev-parse --short=12 HEAD` of the
//! source tree (a worktree, whose `.git` is a file, included), else
//! `unknown`. Reruns when HEAD moves: HEAD itself, the branch it points to
//! and `packed-refs` are watched.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Only characters safe in a label value and a version line, at most 64.
fn clean(s: &str) -> Option<String> {
    let s = s.trim();
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'));
    ok.then(|| s.to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PIDWARDEN_GIT_REVISION");
    let from_env = std::env::var("PIDWARDEN_GIT_REVISION").ok();
    let revision = match from_env.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(v) => clean(v).unwrap_or_else(|| {
            println!(
                "cargo:warning=PIDWARDEN_GIT_REVISION {v:?} is not a revision; using `unknown`"
            );
            "unknown".to_string()
        }),
        None => {
            let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
            watch_head(&dir);
            git(&dir, &["rev-parse", "--short=12", "HEAD"])
                .and_then(|r| clean(&r))
                .unwrap_or_else(|| "unknown".to_string())
        }
    };
    println!("cargo:rustc-env=PIDWARDEN_BUILD_REVISION={revision}");
}

/// Asks cargo to rerun when HEAD moves: the worktree's own HEAD file, the
/// ref it names (in the common git directory) and `packed-refs`.
fn watch_head(dir: &Path) {
    let abs = |p: String| -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            dir.join(p)
        }
    };
    let Some(git_dir) = git(dir, &["rev-parse", "--git-dir"]).map(abs) else {
        return;
    };
    let common = git(dir, &["rev-parse", "--git-common-dir"])
        .map(abs)
        .unwrap_or_else(|| git_dir.clone());
    let head = git_dir.join("HEAD");
    println!("cargo:rerun-if-changed={}", head.display());
    let packed = common.join("packed-refs");
    if packed.exists() {
        println!("cargo:rerun-if-changed={}", packed.display());
    }
    if let Ok(text) = std::fs::read_to_string(&head) {
        if let Some(r) = text.trim().strip_prefix("ref: ") {
            // A packed ref has no file of its own (packed-refs is watched);
            // a path that does not exist would rerun this on every build.
            let loose = common.join(r);
            if loose.exists() {
                println!("cargo:rerun-if-changed={}", loose.display());
            }
        }
    }
}
