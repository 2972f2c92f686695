//! SIGHUP, sent by PID to the remediator this test started: the token and
//! basic-auth files and the config are read again; a bad file keeps the old
//! one (a bad config keeps deciding, and
//! `pidwarden_remediator_config_last_reload_successful` is 0); a valid
//! change decides the next alert.

mod common;

use std::time::Duration;

use common::binary::{alert, Remediator};
use pidwarden_tests::{poll_until, try_http_post, TempDir};
use serde_json::json;

const RELOAD_WAIT: Duration = Duration::from_secs(15);

fn gauge(m: &str, name: &str) -> f64 {
    m.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{m}"))
        .trim()
        .parse()
        .unwrap()
}

const OK: &str = "pidwarden_remediator_config_last_reload_successful";
const AT: &str = "pidwarden_remediator_config_last_reload_success_timestamp_seconds";

fn start(dir: &TempDir, config: &str) -> Remediator {
    Remediator(pidwarden_tests::Remediator::start(
        dir,
        Some(config),
        ["--cooldown", "0"],
    ))
}

fn reloads(r: &Remediator) -> usize {
    r.daemon.log().matches("reload finished").count()
}

/// Sends SIGHUP, waits until the reload has finished, and checks the
/// gauges: `ok` → 1 with a newer success time; else 0 with the old time.
fn hup_and_wait(r: &mut Remediator, ok: bool) {
    let (n, before) = (reloads(r), gauge(&r.get("/metrics").1, AT));
    // The success timestamp has sub-second resolution; make sure it moves.
    std::thread::sleep(Duration::from_millis(20));
    r.daemon.signal(libc::SIGHUP);
    poll_until(RELOAD_WAIT, Duration::from_millis(50), || {
        (reloads(r) > n).then_some(())
    })
    .unwrap_or_else(|| panic!("no reload seen after SIGHUP\n{}", r.daemon.log()));
    assert!(r.daemon.try_wait().is_none(), "SIGHUP ended the remediator");
    let m = r.get("/metrics").1;
    if ok {
        assert_eq!(gauge(&m, OK), 1.0, "{}", r.daemon.log());
        assert!(gauge(&m, AT) > before, "{m}");
    } else {
        assert_eq!(gauge(&m, OK), 0.0, "{}", r.daemon.log());
        assert_eq!(gauge(&m, AT), before, "{m}");
    }
}

fn status_with(r: &Remediator, token: &str) -> u16 {
    status_auth(r, &format!("Bearer {token}"))
}

fn status_auth(r: &Remediator, authorization: &str) -> u16 {
    let body = json!({"version": "4", "status": "firing", "alerts": []}).to_string();
    try_http_post(
        &r.url("/api/v1/alerts"),
        &[
            ("Authorization", authorization),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
    .unwrap()
    .0
}

fn basic(user_password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

#[test]
fn a_rotated_token_file_is_read_again_on_sighup() {
    let dir = TempDir::new();
    let basic_file = dir.write("basic-auth", "ops:first-password\n");
    let mut r = Remediator(pidwarden_tests::Remediator::start(
        &dir,
        Some("dry_run = true\n"),
        ["--basic-auth-file".as_ref(), basic_file.as_os_str()],
    ));
    let old = r.token.clone();
    assert_eq!(status_with(&r, &old), 200);
    let new = format!("{old}-rotated");
    std::fs::write(&r.token_file, format!("{new}\n")).unwrap();
    assert_eq!(status_with(&r, &new), 401, "read before the SIGHUP");
    r.token = new.clone();
    hup_and_wait(&mut r, true);
    assert_eq!(status_with(&r, &old), 401);
    assert_eq!(status_with(&r, &new), 200);
    // The basic-auth file is read again too.
    assert_eq!(status_auth(&r, &basic("ops:first-password")), 200);
    std::fs::write(&basic_file, "ops:second-password\n").unwrap();
    hup_and_wait(&mut r, true);
    assert_eq!(status_auth(&r, &basic("ops:first-password")), 401);
    assert_eq!(status_auth(&r, &basic("ops:second-password")), 200);
    // An empty token file keeps the token in force.
    std::fs::write(&r.token_file, "\n").unwrap();
    hup_and_wait(&mut r, false);
    assert_eq!(status_with(&r, &new), 200);
    assert_eq!(status_auth(&r, &basic("ops:second-password")), 200);
    assert!(r.daemon.log().contains("WARN"), "{}", r.daemon.log());
}

#[test]
fn a_bad_config_keeps_the_old_one_and_a_good_one_decides_the_next_alert() {
    let dir = TempDir::new();
    let allow_kill =
        "dry_run = true\n[actions]\nPidwardenDuplicateProcesses = [\"kill-duplicates\"]\n";
    let mut r = start(&dir, allow_kill);
    let config = dir.path().join("remediator.toml");
    // An id no runtime knows: once the config lets the alert through, it is
    // refused as unknown_container instead of ignored.
    let id = "b".repeat(64);
    let restart = |fp: &str| alert("PidwardenDuplicateProcesses", fp, &id, "restart");
    assert_eq!(r.post_one(restart("f1")), "ignored");

    for bad in [
        "[actions]\nPidwardenDuplicateProcesses = [\"reboot\"]\n",
        "dry_run = \n",
        "\n",
        "",
    ] {
        if bad.is_empty() {
            std::fs::remove_file(&config).unwrap();
        } else {
            std::fs::write(&config, bad).unwrap();
        }
        hup_and_wait(&mut r, false);
        assert_eq!(
            r.post_one(restart(&format!("bad-{}", bad.len()))),
            "ignored",
            "after {bad:?} the old config no longer decides"
        );
    }
    let log = r.daemon.log();
    assert!(
        log.contains("config not reloaded") && log.contains("reboot"),
        "{log}"
    );

    std::fs::write(
        &config,
        "dry_run = true\n[actions]\nPidwardenDuplicateProcesses = [\"kill-duplicates\", \"restart\"]\n",
    )
    .unwrap();
    hup_and_wait(&mut r, true);
    assert_eq!(r.post_one(restart("f2")), "unknown_container");
}
