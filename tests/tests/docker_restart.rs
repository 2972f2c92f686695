//! Fault: the Docker daemon restarts while the exporter and the remediator
//! run against it.
//!
//! A private dockerd (`--live-restore`, its own containerd and directories;
//! the main daemon is not involved) runs a busybox container with a few
//! processes. The exporter and the remediator both use it through
//! `--docker-host`. The daemon is stopped (SIGTERM) and, after an outage
//! of a few seconds, started again with the same flags. Expected:
//!
//! - the container keeps running, same init process (live restore);
//! - every scrape during the outage still has the container's cgroup series
//!   (`pidwarden_container_tasks`, `pidwarden_container_processes`);
//! - `pidwarden_runtime_up{runtime="docker"}` goes 0 during the outage and
//!   back to 1 after, and the container's `name` label is there again;
//! - the remediator's `/readyz` answers 200 again and a restart alert sent
//!   after the restart restarts the container.
//!
//! The outage and recovery times are printed.

use std::io::Write as _;
use std::time::{Duration, Instant};

use pidwarden_tests::{
    now_ms, poll_until, require_docker, rfc3339_ms, series_with, try_http_get, unique_name,
    Exporter, PrivateDocker, Remediator, TempDir,
};
use serde_json::json;

/// How long the daemon stays down once the exporter has noticed it.
const OUTAGE: Duration = Duration::from_secs(5);
/// Bound on every wait for a recovery.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(90);

fn out(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// What one scrape says about the container and the runtime.
#[derive(Debug)]
struct View {
    tasks: Option<f64>,
    processes: Option<f64>,
    name: Option<String>,
    runtime_up: Option<f64>,
}

fn view(exporter: &Exporter, id: &str) -> Result<View, String> {
    let text = exporter.scrape()?;
    let one = |metric: &str| series_with(&text, metric, "id", id).into_iter().next();
    let tasks = one("pidwarden_container_tasks");
    Ok(View {
        name: tasks.as_ref().map(|s| s.label("name").to_string()),
        tasks: tasks.map(|s| s.value),
        processes: one("pidwarden_container_processes").map(|s| s.value),
        runtime_up: series_with(&text, "pidwarden_runtime_up", "runtime", "docker")
            .first()
            .map(|s| s.value),
    })
}

fn readyz(r: &Remediator) -> u16 {
    try_http_get(&r.url("/readyz")).map_or(0, |(s, _)| s)
}

/// Waits until a scrape shows the runtime up and the container under `name`.
fn wait_named(exporter: &Exporter, id: &str, name: &str, what: &str) -> View {
    poll_until(RECOVERY_TIMEOUT, Duration::from_millis(250), || {
        view(exporter, id)
            .ok()
            .filter(|v| v.runtime_up == Some(1.0) && v.name.as_deref() == Some(name))
    })
    .unwrap_or_else(|| {
        panic!(
            "{what}: {:?}\n{}",
            view(exporter, id),
            exporter.daemon.log()
        )
    })
}

/// Waits until the remediator's `/readyz` answers 200.
fn wait_ready(r: &Remediator, what: &str) {
    poll_until(RECOVERY_TIMEOUT, Duration::from_millis(250), || {
        (readyz(r) == 200).then_some(())
    })
    .unwrap_or_else(|| panic!("{what}\n{}", r.daemon.log()));
}

#[test]
fn docker_restart_keeps_cgroup_data_and_both_daemons_recover() {
    if !require_docker() {
        return;
    }
    let mut pd = PrivateDocker::start();
    pd.load_test_image();
    let name = unique_name();
    let id = pd.run(
        &name,
        &[],
        &["sh", "-c", "sleep 300 & sleep 300 & sleep 300 & wait"],
    );
    let init_pid = pd.inspect(&id, "{{.State.Pid}}");
    let host = pd.host().to_string();

    let dir = TempDir::new();
    let exporter = Exporter::start(["--docker-host", &host]);
    let remediator = Remediator::start(
        &dir,
        None,
        [
            "--docker-host",
            &host,
            "--grace",
            "1",
            "--cooldown",
            "0",
            "--sample",
            "0.5",
        ],
    );

    // Before: cgroup data, the name from the runtime, runtime up, ready.
    let before = wait_named(
        &exporter,
        &id,
        &name,
        "the exporter never named the container",
    );
    assert!(before.tasks.unwrap_or(0.0) >= 4.0, "{before:?}");
    assert!(before.processes.unwrap_or(0.0) >= 4.0, "{before:?}");
    wait_ready(&remediator, "remediator never ready");

    // The outage: scrape every 250 ms while the daemon is down.
    let t_stop = Instant::now();
    pd.stop();
    let stopped_in = t_stop.elapsed();
    assert!(!pd.is_up(), "the private dockerd still answers after stop");
    let mut scrapes = 0;
    let mut saw_down_at = None;
    let mut readyz_codes = Vec::new();
    let outage_start = Instant::now();
    while saw_down_at.map_or(outage_start.elapsed() < RECOVERY_TIMEOUT, |t: Duration| {
        outage_start.elapsed() < t + OUTAGE
    }) {
        let v = view(&exporter, &id).unwrap_or_else(|e| {
            panic!(
                "scrape failed during the outage: {e}\n{}",
                exporter.daemon.log()
            )
        });
        scrapes += 1;
        assert!(
            v.tasks.is_some() && v.processes.is_some(),
            "cgroup series missing during the outage: {v:?}"
        );
        if v.runtime_up == Some(0.0) && saw_down_at.is_none() {
            saw_down_at = Some(outage_start.elapsed());
        }
        readyz_codes.push(readyz(&remediator));
        std::thread::sleep(Duration::from_millis(250));
    }
    let down_after = saw_down_at.unwrap_or_else(|| {
        panic!("pidwarden_runtime_up{{runtime=\"docker\"}} never went 0 during the outage")
    });
    assert!(
        std::path::Path::new(&format!("/proc/{init_pid}")).exists(),
        "the container's init ({init_pid}) died with the daemon"
    );
    let outage = t_stop.elapsed();

    // Back: same flags; the container is the same run.
    let t_start = Instant::now();
    pd.start_again();
    let started_in = t_start.elapsed();
    assert_eq!(pd.inspect(&id, "{{.State.Running}}"), "true");
    assert_eq!(
        pd.inspect(&id, "{{.State.Pid}}"),
        init_pid,
        "live restore lost the container"
    );
    let started_at = pd.inspect(&id, "{{.State.StartedAt}}");

    let after = wait_named(&exporter, &id, &name, "the exporter did not recover");
    let exporter_back = t_start.elapsed();
    assert!(
        after.tasks.is_some() && after.processes.is_some(),
        "{after:?}"
    );
    wait_ready(&remediator, "remediator /readyz did not recover");
    let remediator_back = t_start.elapsed();

    // A restart alert after the restart acts.
    let alert = json!({
        "receiver": "pidwarden", "status": "firing", "version": "4",
        "groupKey": "{}:{alertname=\"PidwardenStuck\"}", "truncatedAlerts": 0,
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "PidwardenStuck", "id": id, "pidwarden_action": "restart"},
            "annotations": {}, "startsAt": rfc3339_ms(now_ms()),
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph",
            "fingerprint": "00000000000000f1"
        }]
    });
    let (code, body) = remediator
        .post_alerts(&format!("{alert}\n"))
        .unwrap_or_else(|e| panic!("webhook: {e}"));
    assert_eq!(code, 200, "{body}\n{}", remediator.daemon.log());
    poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        (pd.inspect(&id, "{{.State.StartedAt}}") != started_at).then_some(())
    })
    .unwrap_or_else(|| panic!("the restart never happened\n{}", remediator.daemon.log()));
    let row = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        remediator
            .actions()
            .into_iter()
            .find(|r| r.result != "pending")
    })
    .unwrap();
    assert_eq!(row.result, "done", "{row:?}");
    assert_eq!(row.container_id, id);
    assert_eq!(row.container_name, name);
    assert_eq!(pd.inspect(&id, "{{.State.Running}}"), "true");

    out(&format!(
        "dockerd restart: stop took {:.1}s; exporter saw runtime_up=0 {:.1}s after; \
         outage {:.1}s with {scrapes} scrapes, all with cgroup series; \
         remediator /readyz during the outage: {:?}; \
         dockerd answered {:.1}s after start; exporter runtime_up=1 and name back {:.1}s after start; \
         remediator ready {:.1}s after start",
        stopped_in.as_secs_f64(),
        down_after.as_secs_f64(),
        outage.as_secs_f64(),
        summarize(&readyz_codes),
        started_in.as_secs_f64(),
        exporter_back.as_secs_f64(),
        remediator_back.as_secs_f64(),
    ));
}

/// `[200, 200, 503]` → "200 ×2, 503 ×1".
fn summarize(codes: &[u16]) -> String {
    let mut v: Vec<(u16, usize)> = Vec::new();
    for &c in codes {
        match v.iter_mut().find(|(k, _)| *k == c) {
            Some((_, n)) => *n += 1,
            None => v.push((c, 1)),
        }
    }
    v.iter()
        .map(|(c, n)| format!("{c} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
