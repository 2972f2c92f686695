//! The remediator binary against a real Podman through its Docker-compatible
//! API (`--podman-host`): the container is found by id and by name, its
//! labels are read (opt-out), and restart goes through the API.

mod common;

use std::time::Duration;

use common::binary::{alert, Remediator};
use pidwarden_tests::{poll_until, require_podman, PodmanNode, TempDir};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn remediator(dir: &TempDir, node: &PodmanNode) -> Remediator {
    let host = node.host();
    Remediator::start(
        dir,
        &[
            "--docker-host",
            "none",
            "--cri-endpoint",
            "none",
            "--podman-host",
            &host,
        ],
    )
}

#[test]
fn restart_goes_through_the_podman_api() {
    if !require_podman() {
        return;
    }
    let node = PodmanNode::start();
    let c = node.run(
        &[],
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done",
        ],
    );
    let before = node.inspect(&c.id, "{{.State.StartedAt}}");
    let dir = TempDir::new();
    let r = remediator(&dir, &node);
    std::thread::sleep(Duration::from_millis(50));
    let first = alert("PidwardenStuck", "badc0de1", &c.id, "restart");
    let (code, v) = r.webhook(json!([first.clone()]));
    assert_eq!(code, 200, "{v}\n{}", r.daemon.log());
    assert_eq!(v["results"][0]["result"], "pending", "{v}");
    let row = r.finished_row(v["results"][0]["row"].as_i64().unwrap(), WAIT);
    assert_eq!(row.result, "done", "{:?}\n{}", row.json, r.daemon.log());
    assert_eq!(row.container_name, c.name);
    let after = poll_until(WAIT, Duration::from_millis(200), || {
        let s = node.inspect(&c.id, "{{.State.StartedAt}}");
        (s != before).then_some(s)
    })
    .unwrap_or_else(|| panic!("StartedAt never changed\n{}", r.daemon.log()));
    assert_eq!(
        node.inspect(&c.id, "{{.State.Running}}"),
        "true",
        "restarted at {after}"
    );

    // Another alert that began before the restart: the re-check reads the
    // new StartedAt from Podman and finds the container already restarted.
    let mut again = alert("PidwardenStuck", "badc0de4", &c.id, "restart");
    again["startsAt"] = first["startsAt"].clone();
    let (code, v) = r.webhook(json!([again]));
    assert_eq!(code, 200, "{v}");
    let row = r.finished_row(v["results"][0]["row"].as_i64().unwrap(), WAIT);
    assert_eq!(row.result, "recovered", "{:?}", row.json);
    assert!(row.reason.contains("already restarted"), "{}", row.reason);
    assert_eq!(
        node.inspect(&c.id, "{{.State.StartedAt}}"),
        after,
        "not restarted twice"
    );
}

#[test]
fn podman_labels_and_names_are_read_through_its_api() {
    if !require_podman() {
        return;
    }
    let node = PodmanNode::start();
    let out = node.run(&["--label", "pidwarden.enable=false"], &["sleep", "1000"]);
    let dir = TempDir::new();
    let r = remediator(&dir, &node);
    let result = r.post_one(alert("PidwardenStuck", "badc0de2", &out.id, "restart"));
    assert_eq!(result, "protected", "{}", r.daemon.log());
    let rows = r.actions();
    assert_eq!(rows[0].container_name, out.name);
    assert!(
        rows[0].reason.contains("pidwarden.enable=false"),
        "{}",
        rows[0].reason
    );
    // By name: the alert's `name` label resolves through the API too.
    let mut by_name = alert("PidwardenStuck", "badc0de3", "", "restart");
    by_name["labels"] =
        json!({"alertname": "PidwardenStuck", "name": out.name, "pidwarden_action": "restart"});
    let result = r.post_one(by_name);
    assert_eq!(result, "protected", "{}", r.daemon.log());
    let rows = r.actions();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].container_id, out.id);
    assert_eq!(rows[1].container_name, out.name);
}
