//! Both daemons on a real cgroup v2 host with systemd as PID 1 and Docker
//! with the systemd cgroup driver: a Debian 12 disk image (debootstrap,
//! cached) booted under QEMU by `scripts/vm/systemd-host.sh`. The guest
//! script (`scripts/vm/guest-systemd-docker.sh`) starts the exporter and the
//! remediator as a host would (Docker's socket, the real cgroup tree), runs a
//! container holding three copies of one command (each copy a tree: `sh`
//! and its `sleep`) and asks the remediator, through the webhook an
//! Alertmanager would call, to kill the surplus copies, then to restart the
//! container. Judged here: the exporter names the container and counts its
//! copies; the remediator kills two copies as whole trees, leaves one,
//! signals nothing outside the container and leaves nothing stopped; the
//! restart gives the container a new init and leaves it running.
//!
//! `PIDWARDEN_SKIP_VM=1` turns the test into an early return; nothing else
//! skips it.

use std::collections::HashMap;
use std::process::Command;

use pidwarden_tests::{series, workspace_bin, workspace_root};

#[derive(Debug, Clone)]
struct Proc {
    pid: u64,
    ppid: u64,
    state: String,
    cgroup: String,
    cmd: String,
}

#[derive(Debug, Default)]
struct Host {
    info: Vec<String>,
    sections: HashMap<String, String>,
    webhook: String,
    webhook_restart: String,
}

fn parse(out: &str) -> Host {
    let mut h = Host::default();
    let mut cur: Option<String> = None;
    for line in out.lines() {
        if let Some(head) = line.strip_prefix("=== ") {
            cur = None;
            if let Some(i) = head.strip_prefix("info ") {
                h.info.push(i.to_string());
            } else if let Some(w) = head.strip_prefix("webhook ") {
                h.webhook = w.to_string();
            } else if let Some(w) = head.strip_prefix("restart-webhook ") {
                h.webhook_restart = w.to_string();
            } else {
                h.sections.insert(head.to_string(), String::new());
                cur = Some(head.to_string());
            }
            continue;
        }
        if let Some(c) = &cur {
            let s = h.sections.get_mut(c).unwrap();
            s.push_str(line);
            s.push('\n');
        }
    }
    h
}

fn procs(dump: &str) -> Vec<Proc> {
    dump.lines()
        .filter_map(|l| l.strip_prefix("P "))
        .map(|rest| {
            let (head, cmd) = rest.split_once(" cmd=").unwrap_or((rest, ""));
            let f: HashMap<&str, &str> =
                head.split(' ').filter_map(|t| t.split_once('=')).collect();
            let n = |k: &str| f.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
            Proc {
                pid: n("pid"),
                ppid: n("ppid"),
                state: f.get("state").unwrap_or(&"").to_string(),
                cgroup: f.get("cg").unwrap_or(&"").to_string(),
                cmd: cmd.trim_end().to_string(),
            }
        })
        .collect()
}

fn info<'a>(h: &'a Host, key: &str) -> &'a str {
    h.info
        .iter()
        .find_map(|i| i.strip_prefix(key)?.strip_prefix(' '))
        .unwrap_or("")
}

#[test]
fn daemons_on_a_systemd_docker_cgroup_v2_host_kill_copies_as_whole_trees() {
    if std::env::var("PIDWARDEN_SKIP_VM").as_deref() == Ok("1") {
        println!("skipped: PIDWARDEN_SKIP_VM=1");
        return;
    }
    let root = workspace_root();
    let out = Command::new(root.join("scripts/vm/systemd-host.sh"))
        .arg("run")
        .arg(root.join("scripts/vm/guest-systemd-docker.sh"))
        .arg("/bin/busybox")
        .arg(workspace_bin("pidwarden-exporter"))
        .arg(workspace_bin("pidwarden-remediator"))
        .arg(workspace_bin("pidwarden-vm-helper"))
        .output()
        .expect("running scripts/vm/systemd-host.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "the systemd host failed ({}):\n{stdout}",
        out.status
    );
    let h = parse(&stdout);
    assert!(
        h.sections.contains_key("done"),
        "the host script did not finish:\n{stdout}"
    );
    let trouble: Vec<&String> = h.info.iter().filter(|i| i.contains("timeout")).collect();
    assert!(trouble.is_empty(), "{trouble:?}\n{stdout}");
    assert_eq!(info(&h, "cgroupfs"), "cgroup2fs", "{stdout}");
    assert_eq!(info(&h, "docker"), "systemd cgroup-v2", "{stdout}");
    let container = info(&h, "container");
    let id = container.split(' ').next().unwrap_or("");
    assert_eq!(id.len(), 64, "container id: {container}");
    let outside: u64 = info(&h, "outside").parse().expect("outside pid");
    let scope = format!("/system.slice/docker-{id}.scope");

    // The exporter names the container (Docker API, systemd driver) and
    // counts its copies.
    let before = &h.sections["metrics before"];
    let named = series(before, "pidwarden_container_info")
        .into_iter()
        .find(|s| s.label("id") == id)
        .unwrap_or_else(|| panic!("no pidwarden_container_info for {id}:\n{before}"));
    assert_eq!(named.label("name"), "web");
    assert_eq!(named.label("runtime"), "docker");
    let dups = |text: &str| {
        series(text, "pidwarden_container_duplicate_processes")
            .into_iter()
            .find(|s| s.label("id") == id)
            .map(|s| s.value)
    };
    assert_eq!(dups(before), Some(2.0), "copies before");

    let copy_cmd = "sh -c sleep 1000; true";
    let in_scope = |p: &Proc| p.cgroup == scope;
    let ps_before = procs(&h.sections["state before"]);
    let copies_before: Vec<&Proc> = ps_before
        .iter()
        .filter(|p| in_scope(p) && p.cmd == copy_cmd)
        .collect();
    assert_eq!(copies_before.len(), 3, "{ps_before:?}");
    let children_before: Vec<&Proc> = ps_before
        .iter()
        .filter(|p| copies_before.iter().any(|c| c.pid == p.ppid))
        .collect();
    assert_eq!(children_before.len(), 3, "each copy is sh and its sleep");

    assert!(h.webhook.starts_with("200 "), "webhook: {}", h.webhook);
    let actions = &h.sections["actions"];
    assert!(
        actions.contains("\"done\""),
        "the kill did not finish as done: {actions}\n{}",
        h.sections.get("log").map_or("", String::as_str)
    );

    let ps_after = procs(&h.sections["state after"]);
    let alive = |pid: u64| ps_after.iter().any(|p| p.pid == pid && p.state != "Z");
    let kept: Vec<&&Proc> = copies_before.iter().filter(|c| alive(c.pid)).collect();
    assert_eq!(kept.len(), 1, "one copy kept: {ps_after:?}");
    for c in &copies_before {
        let child = children_before.iter().find(|p| p.ppid == c.pid).unwrap();
        assert_eq!(
            alive(c.pid),
            alive(child.pid),
            "a copy is killed or kept whole (sh {} and its sleep {})",
            c.pid,
            child.pid
        );
    }
    assert!(
        alive(outside),
        "the same command outside the container was signalled"
    );
    let stopped: Vec<&Proc> = ps_after
        .iter()
        .filter(|p| in_scope(p) && p.state == "T")
        .collect();
    assert!(stopped.is_empty(), "left stopped: {stopped:?}");
    assert!(
        ps_after
            .iter()
            .any(|p| in_scope(p) && p.cmd == "sleep 1001"),
        "the other process in the container survives"
    );
    assert_eq!(
        info(&h, "running"),
        "true false",
        "the container runs, unpaused"
    );
    assert_eq!(
        dups(&h.sections["metrics after"]),
        Some(0.0),
        "copies after"
    );

    // restart: Docker restarts the container (a new init), it runs again.
    assert!(
        h.webhook_restart.starts_with("200 "),
        "webhook: {}",
        h.webhook_restart
    );
    let rows: serde_json::Value =
        serde_json::from_str(h.sections["actions-after-restart"].trim()).expect("actions JSON");
    let done = |action: &str| {
        rows["actions"].as_array().is_some_and(|a| {
            a.iter()
                .any(|r| r["action"] == action && r["result"] == "done")
        })
    };
    assert!(done("kill-duplicates") && done("restart"), "{rows}");
    let init = |key: &str| info(&h, key).split(' ').next().unwrap_or("").to_string();
    assert_ne!(
        init("before-restart"),
        init("after-restart"),
        "a new init after the restart"
    );
    assert_ne!(
        init("after-restart"),
        "0",
        "the container runs after the restart"
    );
    assert_eq!(info(&h, "running-after-restart"), "true false");
}
