//! Cgroups that borrow a real Docker container's id: the same names
//! (`docker-<id>.scope`, `docker/<id>`, `system.slice/docker-<id>.scope`)
//! made at parents no runtime uses, as a stray `mkdir` or a user with a
//! delegated subtree can, each holding another number of tasks. The
//! exporter publishes the kernel's figures of the real container; when the
//! id is at two places a runtime uses (here: a configured cgroup parent),
//! it publishes neither, counts the id and says so once in its log.

use std::process::Command;
use std::time::Duration;

use pidwarden_tests::{
    poll_until, require_docker, ChildGuard, Exporter, TestCgroup, TestContainer,
};

const WAIT: Duration = Duration::from_secs(20);
const STEP: Duration = Duration::from_millis(200);

/// The value of `name{…id="<id>"…}`, when served.
fn sample(body: &str, name: &str, id: &str) -> Option<String> {
    let id_label = format!("id=\"{id}\"");
    body.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix('{')?;
        let (labels, value) = rest.rsplit_once("} ")?;
        labels
            .split(',')
            .any(|x| x == id_label)
            .then(|| value.to_string())
    })
}

fn unlabelled(body: &str, name: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_string))
}

/// A stray cgroup named after the container, with `n` sleeps in it.
struct Stray {
    /// Declared first: the sleeps go before their cgroup.
    _sleeps: Vec<ChildGuard>,
    cg: TestCgroup,
}

fn stray(controllers: &[&str], rel: &str, n: usize) -> Stray {
    let cg = TestCgroup::new(controllers, rel);
    let sleeps = (0..n)
        .map(|_| ChildGuard(cg.spawn_in(Command::new("sleep").arg("1000"))))
        .collect();
    Stray {
        _sleeps: sleeps,
        cg,
    }
}

fn pids_current(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("pids.current"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn cgroups_borrowing_a_containers_id_never_take_its_place() {
    if !require_docker() {
        return;
    }
    let c = TestContainer::run(&[], &["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    let real = c.cgroup_dir("pids");
    poll_until(WAIT, STEP, || (pids_current(&real) == "3").then_some(()))
        .expect("the container runs three tasks");
    let id = c.id.clone();
    let strays = [
        stray(&["pids", "memory"], &format!("docker-{id}.scope"), 5),
        stray(&["pids"], &format!("docker/{id}"), 7),
        stray(&["pids"], &format!("system.slice/docker-{id}.scope"), 10),
    ];
    for (s, n) in strays.iter().zip(["5", "7", "10"]) {
        assert_eq!(pids_current(&s.cg.path("pids")), n);
    }

    let e = Exporter::start::<[&str; 0], &str>([]);
    let body = poll_until(WAIT, STEP, || {
        let b = e.metrics();
        sample(&b, "pidwarden_container_tasks", &id).map(|_| b)
    })
    .unwrap_or_else(|| panic!("the container is not published\n{}", e.metrics()));
    assert_eq!(
        sample(&body, "pidwarden_container_tasks", &id).as_deref(),
        Some(pids_current(&real).as_str()),
        "the real container's task count"
    );
    assert_eq!(
        sample(&body, "pidwarden_container_processes", &id).as_deref(),
        Some("3")
    );
    assert_eq!(
        unlabelled(&body, "pidwarden_ambiguous_container_ids").as_deref(),
        Some("0")
    );
    drop(e);

    // The first stray's parent configured as a runtime's: the id is at two
    // places a runtime uses, and neither is published.
    let parent = strays[0].cg.name().to_string();
    let e = Exporter::start(["--cgroup-parent", &parent]);
    for _ in 0..3 {
        let body = e.metrics();
        assert_eq!(
            sample(&body, "pidwarden_container_tasks", &id),
            None,
            "{body}"
        );
        assert_eq!(
            unlabelled(&body, "pidwarden_ambiguous_container_ids").as_deref(),
            Some("1"),
            "{body}"
        );
    }
    let log = e.daemon.log();
    assert_eq!(
        log.matches("names cgroups at two places").count(),
        1,
        "logged once, not every scrape:\n{log}"
    );
    assert!(log.contains(&id), "{log}");
}
