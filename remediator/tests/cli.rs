//! The binary's startup checks: no credentials, `--insecure-no-auth` off
//! loopback, a proc root of another pid namespace, a bad config file, and
//! the `history` subcommand on an empty state directory; `--version` and
//! `build_info` name the source revision.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a refusal may take; a binary still running then has started.
const EXIT_WITHIN: Duration = Duration::from_secs(20);

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pidwarden-remediator"))
}

/// Runs the binary; its exit code (-1 when it was still running after
/// [`EXIT_WITHIN`] and was killed) and its stderr.
fn run(args: &[&str]) -> (i32, String) {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + EXIT_WITHIN;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (code, err)
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

#[test]
fn insecure_no_auth_only_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for listen in [
        "0.0.0.0:0",
        "[::]:0",
        "192.0.2.1:9918",
        "[2001:db8::1]:9918",
    ] {
        let (code, err) = run(&[
            "--insecure-no-auth",
            "--listen",
            listen,
            "--state-dir",
            state.to_str().unwrap(),
        ]);
        assert_eq!(code, 1, "{listen}: {err}");
        assert!(
            err.contains("--insecure-no-auth is allowed only on a loopback address"),
            "{listen}: {err}"
        );
    }
    assert!(!state.exists(), "nothing is created before the refusal");
}

#[test]
fn proc_root_must_be_our_own_pid_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let fake = dir.path().join("proc");
    std::fs::create_dir(&fake).unwrap();
    let start = |proc_root: &std::path::Path| {
        run(&[
            "--insecure-no-auth",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            state.to_str().unwrap(),
            "--proc-root",
            proc_root.to_str().unwrap(),
        ])
    };
    // No `self` at all.
    let (code, err) = start(&fake);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--proc-root") && err.contains("self"), "{err}");
    // `self` naming another process (pid 1 of a container's namespace).
    std::os::unix::fs::symlink("1", fake.join("self")).unwrap();
    let (code, err) = start(&fake);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--proc-root") && err.contains("not the proc filesystem"),
        "{err}"
    );
}

#[test]
fn out_of_bounds_settings_are_startup_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cfg = dir.path().join("c.toml");
    let base = [
        "--insecure-no-auth",
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    for (flags, named) in [
        (&["--grace", "NaN"][..], "--grace"),
        (&["--grace=-1"][..], "--grace"),
        (&["--sample", "inf"][..], "--sample"),
        (&["--cooldown", "18446744073709551615"][..], "--cooldown"),
        (&["--keep", "0"][..], "--keep"),
        (&["--retention-days", "4294967295"][..], "--retention-days"),
    ] {
        let args: Vec<&str> = base.iter().chain(flags).copied().collect();
        let (code, err) = run(&args);
        assert_eq!(code, 1, "{flags:?}: {err}");
        assert!(
            err.contains(named) && err.contains("must be"),
            "{flags:?}: {err}"
        );
    }
    for (toml, named) in [
        (
            "[defaults]\ncooldown_secs = 2592001\n",
            "defaults.cooldown_secs",
        ),
        ("[defaults]\ngrace_secs = nan\n", "defaults.grace_secs"),
        ("[limits]\nmax_actions = 0\n", "limits.max_actions"),
        ("[circuit]\nwindow_secs = 0\n", "circuit.window_secs"),
    ] {
        std::fs::write(&cfg, toml).unwrap();
        let args: Vec<&str> = base
            .iter()
            .copied()
            .chain(["--config", cfg.to_str().unwrap()])
            .collect();
        let (code, err) = run(&args);
        assert_eq!(code, 1, "{toml:?}: {err}");
        assert!(
            err.contains(named) && err.contains("must be"),
            "{toml:?}: {err}"
        );
    }
}

#[test]
fn peer_flags_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let token = dir.path().join("token");
    std::fs::write(&token, "inbound\n").unwrap();
    let peer_token = dir.path().join("peer-token");
    std::fs::write(&peer_token, "peer\n").unwrap();
    let base = [
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        token.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        run(&a)
    };
    // --peer without a peer token: never the inbound one by default.
    let (code, err) = with(&["--peer", "127.0.0.2"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--peer-token-file"), "{err}");
    // A peer off the loopback interface would get the token in plain text.
    let pt = peer_token.to_str().unwrap();
    for peer in ["10.0.0.0/8", "node-2.example", "0.0.0.0/0"] {
        let (code, err) = with(&[
            "--peer",
            "127.0.0.2",
            "--peer",
            peer,
            "--peer-token-file",
            pt,
        ]);
        assert_eq!(code, 1, "{peer}: {err}");
        assert!(err.contains(peer) && err.contains("--peer-ca"), "{err}");
    }
    // Malformed entries, and peer settings without any peer.
    let (code, err) = with(&["--peer", "user@host", "--peer-token-file", pt]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a host name"), "{err}");
    for flag in ["--peer-port", "--peer-ca"] {
        let (code, err) = with(&[flag, "1"]);
        assert_eq!(code, 2, "{flag}: {err}");
        assert!(err.contains("--peer <HOST|IP|CIDR>"), "{flag}: {err}");
    }
}

#[test]
fn build_info_and_version_name_the_source_revision() {
    let rev = pidwarden_tests::source_revision();
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!(
            "pidwarden-remediator {} (revision {rev})",
            env!("CARGO_PKG_VERSION")
        )
    );
    let dir = pidwarden_tests::TempDir::new();
    let r = pidwarden_tests::Remediator::start(&dir, None, ["--dry-run"]);
    let want = format!(
        "pidwarden_remediator_build_info{{version=\"{}\",revision=\"{rev}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let m = r.get("/metrics").1;
    assert!(m.lines().any(|l| l == want), "{want} not in\n{m}");
}
