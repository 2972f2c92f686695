//! The remediator binary never acts on a cgroup that is not the runtime's.
//! A real Docker container runs under a cgroup parent the remediator is not
//! told of (`docker run --cgroup-parent`), and a stray cgroup named after it
//! (`docker-<id>.scope`) sits under a parent the remediator is told of, with
//! duplicate copies of its own: discovery finds only the stray, and the
//! runtime's view (the container's init, by the pid Docker reports) shows
//! it is not the container. Neither a kill nor a restart touches anything.

mod common;

use std::process::Command;
use std::time::Duration;

use common::binary::{alert, Remediator};
use pidwarden_shared::cgroup::read_procs_recursive;
use pidwarden_shared::procfs::read_process;
use pidwarden_shared::Roots;
use pidwarden_tests::{
    poll_until, require_docker, ChildGuard, TempDir, TestCgroup, TestContainer, CGROUP_ROOT,
};

const WAIT: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_millis(100);

/// Every cgroup hierarchy mounted on this host (Docker creates its parent
/// in each; the test cgroup made there removes what is left).
fn hierarchies() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(CGROUP_ROOT)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

/// Live `sleep 1000` processes under a pids cgroup directory.
fn sleeps_in(dir: &std::path::Path) -> Vec<(i32, u64)> {
    let roots = Roots::default();
    read_procs_recursive(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|pid| read_process(&roots, pid).ok().flatten())
        .filter(|p| !p.is_zombie() && p.cmdline.display() == "sleep 1000")
        .map(|p| (p.pid, p.start_time))
        .collect()
}

#[test]
fn a_stray_cgroup_named_after_a_container_is_never_acted_on() {
    if !require_docker() {
        return;
    }
    let controllers = hierarchies();
    let names: Vec<&str> = controllers.iter().map(String::as_str).collect();
    let parent = TestCgroup::new(&names, "");
    let copies = "sleep 1000 & sleep 1000 & sleep 1000 & wait";
    let c = TestContainer::run(
        &["--cgroup-parent", &format!("/{}", parent.name())],
        &["sh", "-c", copies],
    );
    let real = c.cgroup_dir("pids");
    assert_eq!(real, parent.path("pids").join(&c.id), "docker's placement");
    poll_until(WAIT, STEP, || (sleeps_in(&real).len() == 3).then_some(()))
        .expect("the container's copies started");

    let stray = TestCgroup::new(&["pids", "memory"], &format!("docker-{}.scope", c.id));
    let _stray_sh = ChildGuard(stray.spawn_in(Command::new("sh").args(["-c", copies])));
    poll_until(WAIT, STEP, || {
        (sleeps_in(&stray.path("pids")).len() == 3).then_some(())
    })
    .expect("the stray's copies started");
    let before = (sleeps_in(&real), sleeps_in(&stray.path("pids")));
    let started = c.started_at();

    let dir = TempDir::new();
    let r = Remediator::start(&dir, &["--cgroup-parent", stray.name()]);
    for (fp, action) in [("fp-kill", "kill-duplicates"), ("fp-restart", "restart")] {
        let (_, v) = r.webhook(serde_json::json!([alert(
            "PidwardenDuplicateProcesses",
            fp,
            &c.id,
            action
        )]));
        assert_eq!(v["results"][0]["result"], "pending", "{v}");
        let row = r.finished_row(v["results"][0]["row"].as_i64().unwrap(), WAIT);
        assert_eq!(row.result, "unknown_container", "{row:?}");
        assert!(
            row.reason.contains("not the runtime's container")
                && row.reason.contains(&format!("pid {}", c.init_pid())),
            "{row:?}"
        );
    }
    // Nothing was signalled, in the container or in the stray, and the
    // container was not restarted.
    let after = (sleeps_in(&real), sleeps_in(&stray.path("pids")));
    assert_eq!(after, before);
    assert_eq!(c.started_at(), started);
    assert!(c.is_running());
    drop(r);
    drop(c);
}
