//! The binary's startup checks: no credentials, a bad config file, and the
//! `history` subcommand on an empty state directory.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pidwarden-remediator"))
}

fn run(args: &[&str]) -> (i32, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn refuses_to_start_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (code, err) = run(&[
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no credentials") && err.contains("--insecure-no-auth"),
        "{err}"
    );
    // An empty token file is no credential either.
    let token = dir.path().join("token");
    std::fs::write(&token, " \n").unwrap();
    let (code, err) = run(&[
        "--token-file",
        token.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("is empty"), "{err}");
}

#[test]
fn a_bad_config_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "protected = [\"(unclosed\"]\n").unwrap();
    let (code, err) = run(&["--insecure-no-auth", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("protected pattern \"(unclosed\""), "{err}");
    std::fs::write(&cfg, "[actions]\nX = [\"reboot\"]\n").unwrap();
    let (code, err) = run(&["--insecure-no-auth", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown action \"reboot\""), "{err}");
    std::fs::write(&cfg, "coolddown = 3\n").unwrap();
    let (code, err) = run(&["--insecure-no-auth", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("coolddown"), "{err}");
}

#[test]
fn history_needs_a_state_store() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run(&["history", "--state-dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("no state store"), "{err}");
}
