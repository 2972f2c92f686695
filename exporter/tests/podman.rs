//! The exporter against a real Podman through its Docker-compatible API
//! (`--podman-host`): the container is named from the API, and its figures
//! equal what its cgroup reports.

use std::time::Duration;

use pidwarden_tests::{poll_until, require_podman, series, Exporter, PodmanNode, PODMAN_IMAGE};

#[test]
fn podman_containers_are_named_through_its_api() {
    if !require_podman() {
        return;
    }
    let node = PodmanNode::start();
    let before = node.run(&["--label", "tier=web"], &["sleep", "1000"]);
    let ex = Exporter::start([
        "--docker-host",
        "none",
        "--cri-endpoint",
        "none",
        "--podman-host",
        &node.host(),
    ]);
    // Started after the exporter: named from the events stream.
    let after = node.run(&[], &["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    for c in [&before, &after] {
        let body = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
            let body = ex.scrape().ok()?;
            series(&body, "pidwarden_container_info")
                .iter()
                .any(|s| s.label("id") == c.id && s.label("name") == c.name)
                .then_some(body)
        })
        .unwrap_or_else(|| panic!("{} was not named\n{}", c.name, ex.daemon.log()));
        let info = series(&body, "pidwarden_container_info")
            .into_iter()
            .find(|s| s.label("id") == c.id)
            .unwrap();
        assert_eq!(info.label("runtime"), "podman", "{info:?}");
        assert_eq!(info.label("image"), PODMAN_IMAGE);
        assert_eq!(info.label("namespace"), "");
        let tasks = series(&body, "pidwarden_container_tasks")
            .into_iter()
            .find(|s| s.label("id") == c.id)
            .unwrap();
        assert_eq!(tasks.value as u64, node.tasks(&c.id), "pids.current");
        let up: Vec<(String, f64)> = series(&body, "pidwarden_runtime_up")
            .into_iter()
            .map(|s| (s.label("runtime").to_string(), s.value))
            .collect();
        assert_eq!(up, vec![("podman".to_string(), 1.0)]);
    }
}
