//! The remediator binary against pods on a real CRI runtime (a private
//! containerd driven as the kubelet drives it), reached with
//! `--cri-endpoint`: kill-duplicates in a pod container keeps the active
//! copy, restart stops the container through CRI (the kubelet would start it
//! again), a sandbox is never stopped, and a pod label opts the pod out.
//! Restraint follows the pod's container across the new ids the kubelet
//! restarts it under; a restart needs the pod's declared `Always` policy and
//! waits the pod's grace period.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::binary::{alert, Remediator};
use pidwarden_tests::{poll_until, require_cri, unique_name, AuditRow, CriNode, TempDir, TestPod};

const WAIT: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_millis(100);
/// `cri::ContainerState::ContainerRunning` / `ContainerExited`.
const RUNNING: i32 = 1;
const EXITED: i32 = 2;

/// A unique pod name (the pod cgroups live in the host's tree).
fn pod_name(base: &str) -> String {
    format!("{base}-{}", unique_name().rsplit('-').next().unwrap_or("0"))
}

fn remediator(dir: &TempDir, node: &CriNode) -> Remediator {
    let ep = node.endpoint();
    Remediator::start(
        dir,
        &[
            "--docker-host",
            "none",
            "--podman-host",
            "none",
            "--cri-endpoint",
            &ep,
        ],
    )
}

/// Children of `pid` (from `/proc/<pid>/task/*/children`).
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// The copies (processes running the copy script) in container `cid`.
fn copies(pod: &TestPod<'_>, cid: &str) -> Vec<i32> {
    pod.container_pids(cid)
        .into_iter()
        .filter(|p| cmdline(*p).starts_with("sh -c if mkdir"))
        .collect()
}

/// Posts one alert that starts an action; returns its row once finished.
fn act(r: &Remediator, alert: serde_json::Value) -> AuditRow {
    let (code, v) = r.webhook(serde_json::json!([alert]));
    assert_eq!(code, 200, "{v}\n{}", r.daemon.log());
    assert_eq!(
        v["results"][0]["result"],
        "pending",
        "{v}\n{}",
        r.daemon.log()
    );
    let row = v["results"][0]["row"].as_i64().expect("row id");
    r.finished_row(row, WAIT)
}

#[test]
fn kill_duplicates_in_a_pod_keeps_the_busy_copy() {
    if !require_cri() {
        return;
    }
    let node = CriNode::start();
    let pod = node.run_pod("shop", &pod_name("dups"), &[]);
    // Three copies of one script: the first to create /busy spins, the
    // others sleep (each with a `sleep` child).
    let copy = "if mkdir /busy 2>/dev/null; then while :; do :; done; else while :; do sleep 1000; done; fi";
    let init = format!("for i in 1 2 3; do sh -c '{copy}' & done; wait");
    let cid = pod.start_container("app", &["sh", "-c", &init]);
    let found = poll_until(WAIT, STEP, || {
        let c = copies(&pod, &cid);
        (c.len() == 3 && c.iter().filter(|p| children(**p).is_empty()).count() == 1).then_some(c)
    })
    .expect("three copies, one busy");
    let busy = *found.iter().find(|p| children(**p).is_empty()).unwrap();
    // Give the busy copy a CPU lead the sampling can see.
    std::thread::sleep(Duration::from_millis(500));

    let dir = TempDir::new();
    let r = remediator(&dir, &node);
    let t0 = Instant::now();
    let row = act(
        &r,
        alert(
            "PidwardenDuplicateProcesses",
            "c0ffee01",
            &cid,
            "kill-duplicates",
        ),
    );
    eprintln!(
        "kill-duplicates in a pod: {:?} to the row's end",
        t0.elapsed()
    );
    assert_eq!(row.result, "done", "{:?}\n{}", row.json, r.daemon.log());
    assert_eq!(row.container_id, cid);
    assert_eq!(row.container_name, format!("shop/{}/app", pod.name));
    let left = poll_until(WAIT, STEP, || {
        let c = copies(&pod, &cid);
        (c.len() == 1).then_some(c)
    })
    .unwrap_or_else(|| panic!("copies left: {:?}", copies(&pod, &cid)));
    assert_eq!(left, vec![busy], "the busy copy is kept");
    assert_eq!(node.container_state(&cid).0, RUNNING);
}

#[test]
fn restart_stops_the_container_through_cri_and_never_the_sandbox() {
    if !require_cri() {
        return;
    }
    let node = CriNode::start();
    // The pod declares its restart policy (CRI does not carry it).
    let pod = node.run_pod(
        "shop",
        &pod_name("restart"),
        &[("pidwarden.restart-policy", "Always")],
    );
    // A shell with a trap stops on SIGTERM.
    let cid = pod.start_container(
        "app",
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done",
        ],
    );
    let (state, started) = node.container_state(&cid);
    assert_eq!(state, RUNNING);
    assert!(started > 0);
    let dir = TempDir::new();
    let r = remediator(&dir, &node);
    std::thread::sleep(Duration::from_millis(50));

    // The sandbox is refused: pods are never stopped.
    let row = act(&r, alert("PidwardenStuck", "c0ffee02", &pod.id, "restart"));
    assert_eq!(row.result, "failed", "{:?}", row.json);
    assert!(row.reason.contains("pod sandbox"), "{}", row.reason);
    assert_eq!(row.container_name, format!("shop/{}/POD", pod.name));

    let t0 = Instant::now();
    let row = act(&r, alert("PidwardenStuck", "c0ffee03", &cid, "restart"));
    let took = t0.elapsed();
    assert_eq!(row.result, "done", "{:?}\n{}", row.json, r.daemon.log());
    let (state, _) = node.container_state(&cid);
    assert_eq!(state, EXITED, "stopped through CRI");
    assert!(pod.container_pids(&cid).is_empty());
    eprintln!("restart through CRI (StopContainer, grace 1 s): {took:?} to the row's end");
    // Nothing starts it again here (no kubelet): a second alert finds it
    // not running, and the sandbox still runs.
    let row = act(&r, alert("PidwardenStuck", "c0ffee04", &cid, "restart"));
    assert_eq!(row.result, "recovered", "{:?}", row.json);
    let sandbox_pids = pod.container_pids(&pod.id);
    assert!(!sandbox_pids.is_empty(), "the sandbox runs on");
}

#[test]
fn a_pod_label_asks_for_a_dry_run() {
    if !require_cri() {
        return;
    }
    let node = CriNode::start();
    let pod = node.run_pod(
        "shop",
        &pod_name("dry"),
        &[
            ("pidwarden.dry-run", "true"),
            ("pidwarden.restart-policy", "Always"),
        ],
    );
    let cid = pod.start_container("app", &["sleep", "1000"]);
    let dir = TempDir::new();
    let r = remediator(&dir, &node);
    std::thread::sleep(Duration::from_millis(50));
    let row = act(&r, alert("PidwardenStuck", "c0ffee06", &cid, "restart"));
    assert_eq!(row.result, "dry_run", "{:?}\n{}", row.json, r.daemon.log());
    assert_eq!(node.container_state(&cid).0, RUNNING, "left running");
}

#[test]
fn a_pod_label_opts_the_pod_out() {
    if !require_cri() {
        return;
    }
    let node = CriNode::start();
    let pod = node.run_pod(
        "shop",
        &pod_name("optout"),
        &[("pidwarden.enable", "false")],
    );
    let cid = pod.start_container("app", &["sleep", "1000"]);
    let dir = TempDir::new();
    let r = remediator(&dir, &node);
    let result = r.post_one(alert("PidwardenStuck", "c0ffee05", &cid, "restart"));
    assert_eq!(result, "protected", "{}", r.daemon.log());
    let rows = r.actions();
    assert!(
        rows[0].reason.contains("pidwarden.enable=false"),
        "{}",
        rows[0].reason
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(node.container_state(&cid).0, RUNNING, "left alone");
}

/// The kubelet's container annotation with the pod's grace period.
const GRACE_ANNOTATION: &str = "io.kubernetes.pod.terminationGracePeriod";
/// The pod label that declares the pod's restart policy to pidwarden.
const ALWAYS: (&str, &str) = ("pidwarden.restart-policy", "Always");

/// What the kubelet does after the remediator stopped a container of an
/// `Always` pod: the same container name, the next attempt, a new id.
fn kubelet_restarts(
    node: &CriNode,
    pod: &TestPod<'_>,
    old: &str,
    attempt: u32,
    command: &[&str],
    annotations: &[(&str, &str)],
) -> String {
    poll_until(WAIT, STEP, || {
        (node.container_state(old).0 == EXITED).then_some(())
    })
    .expect("stopped through CRI");
    let new = pod.start_container_with("app", attempt, command, annotations);
    assert_ne!(new, old, "a restarted container has a new id");
    new
}

#[test]
fn the_circuit_holds_across_the_kubelets_restart_of_the_container() {
    if !require_cri() {
        return;
    }
    let node = CriNode::start();
    let pod = node.run_pod("shop", &pod_name("circuit"), &[ALWAYS]);
    // Three `sleep 1000` copies beside an init that stops on SIGTERM.
    let init = "for i in 1 2 3; do sleep 1000 & done; trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done";
    let cmd = ["sh", "-c", init];
    let grace = [(GRACE_ANNOTATION, "2")];
    let sleeps = |cid: &str| {
        pod.container_pids(cid)
            .into_iter()
            .filter(|p| cmdline(*p) == "sleep 1000")
            .count()
    };
    let cid0 = pod.start_container_with("app", 0, &cmd, &grace);
    poll_until(WAIT, STEP, || (sleeps(&cid0) == 3).then_some(())).expect("three copies");

    let dir = TempDir::new();
    let config = dir.path().join("remediator.toml");
    fs::write(&config, "[circuit]\nkill_threshold = 1\n").unwrap();
    let ep = node.endpoint();
    let r = Remediator::start(
        &dir,
        &[
            "--docker-host",
            "none",
            "--podman-host",
            "none",
            "--cri-endpoint",
            &ep,
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let dup = "PidwardenDuplicateProcesses";
    let row = act(&r, alert(dup, "c1rc0001", &cid0, "kill-duplicates"));
    assert_eq!(row.result, "done", "{:?}\n{}", row.json, r.daemon.log());
    assert_eq!(sleeps(&cid0), 1);
    // The leak is back: the breaker escalates to one restart and opens.
    let row = act(&r, alert(dup, "c1rc0002", &cid0, "kill-duplicates"));
    assert_eq!(row.result, "done", "{:?}\n{}", row.json, r.daemon.log());
    assert_eq!(row.action, "restart", "{:?}", row.json);
    assert!(
        row.reason
            .contains("stop timeout 2 s, the pod's terminationGracePeriodSeconds"),
        "{}",
        row.reason
    );

    let cid1 = kubelet_restarts(&node, &pod, &cid0, 1, &cmd, &grace);
    poll_until(WAIT, STEP, || (sleeps(&cid1) == 3).then_some(())).expect("three copies again");
    // Same pod, same container name, a new id: the circuit still holds.
    for (fp, action) in [("c1rc0003", "kill-duplicates"), ("c1rc0004", "restart")] {
        let result = r.post_one(alert(dup, fp, &cid1, action));
        assert_eq!(result, "circuit_open", "{action}\n{}", r.daemon.log());
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sleeps(&cid1), 3, "nothing killed");
    assert_eq!(node.container_state(&cid1).0, RUNNING, "not stopped");
}

#[test]
fn a_restart_needs_the_pods_declared_policy_waits_its_grace_and_cools_down_across_ids() {
    if !require_cri() {
        return;
    }
    let node = CriNode::start();
    // A pod that does not declare its restart policy: refused, recorded.
    let undeclared = node.run_pod("shop", &pod_name("never"), &[]);
    let kept = undeclared.start_container("app", &["sleep", "1000"]);
    // A container that ignores SIGTERM: the stop lasts the whole timeout,
    // then SIGKILL.
    let pod = node.run_pod("shop", &pod_name("always"), &[ALWAYS]);
    let cmd = ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"];
    let grace = [(GRACE_ANNOTATION, "3")];
    let cid0 = pod.start_container_with("app", 0, &cmd, &grace);

    let dir = TempDir::new();
    let ep = node.endpoint();
    let r = Remediator::start(
        &dir,
        &[
            "--docker-host",
            "none",
            "--podman-host",
            "none",
            "--cri-endpoint",
            &ep,
            "--cooldown",
            "3600",
        ],
    );
    std::thread::sleep(Duration::from_millis(50));
    let (code, v) = r.webhook(serde_json::json!([alert(
        "PidwardenStuck",
        "c2rc0001",
        &kept,
        "restart"
    )]));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["results"][0]["result"], "protected", "{v}");
    let reason = v["results"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("pidwarden.restart-policy=Always"),
        "{reason}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(node.container_state(&kept).0, RUNNING, "left running");

    // Declared Always: stopped with the pod's grace period (3 s), not --grace (1 s).
    let t0 = Instant::now();
    let row = act(&r, alert("PidwardenStuck", "c2rc0002", &cid0, "restart"));
    let took = t0.elapsed();
    assert_eq!(row.result, "done", "{:?}\n{}", row.json, r.daemon.log());
    assert!(
        row.reason
            .contains("stop timeout 3 s, the pod's terminationGracePeriodSeconds"),
        "{}",
        row.reason
    );
    assert!(took >= Duration::from_secs(3), "stopped after {took:?}");
    eprintln!("restart through CRI with the pod's 3 s grace: {took:?} to the row's end");

    // The kubelet starts it again under a new id: the cooldown holds.
    let cid1 = kubelet_restarts(&node, &pod, &cid0, 1, &cmd, &grace);
    let result = r.post_one(alert("PidwardenStuck", "c2rc0003", &cid1, "restart"));
    assert_eq!(result, "cooldown", "{}", r.daemon.log());
    assert_eq!(node.container_state(&cid1).0, RUNNING);
}
