//! Containers of duplicate copies for the remediator's Docker tests, and
//! their processes as the kernel shows them.

use std::collections::BTreeSet;
use std::time::Duration;

use pidwarden_shared::cgroup::read_procs_recursive;
use pidwarden_shared::procfs::read_process;
use pidwarden_shared::Roots;
use pidwarden_tests::{poll_until, TestContainer};

/// The container's live processes: (pid, state, command line).
pub fn procs(c: &TestContainer) -> Vec<(i32, char, String)> {
    let pids = read_procs_recursive(&c.cgroup_dir("pids")).unwrap_or_default();
    let roots = Roots::default();
    pids.into_iter()
        .filter_map(|pid| read_process(&roots, pid).ok().flatten())
        .filter(|p| !p.is_zombie())
        .map(|p| (p.pid, p.state.letter(), p.cmdline.display().into_owned()))
        .collect()
}

pub fn count(c: &TestContainer, cmd: &str) -> usize {
    procs(c).iter().filter(|p| p.2 == cmd).count()
}

/// Processes of the container in state `T` (stopped).
pub fn stopped(c: &TestContainer) -> BTreeSet<i32> {
    procs(c)
        .into_iter()
        .filter(|p| matches!(p.1, 'T' | 't'))
        .map(|p| p.0)
        .collect()
}

/// A container whose init starts `n` copies of `sleep 1000` (with SIGTERM
/// ignored when `ignore_term`), and returns once all run.
pub fn sleeps(n: usize, ignore_term: bool) -> TestContainer {
    let copy = if ignore_term {
        "sh -c \"trap '' TERM; exec sleep 1000\""
    } else {
        "sleep 1000"
    };
    let init = format!("i=0; while [ $i -lt {n} ]; do {copy} & i=$((i+1)); done; wait");
    let c = TestContainer::run(&[], &["sh", "-c", &init]);
    poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
        (count(&c, "sleep 1000") == n).then_some(())
    })
    .unwrap_or_else(|| panic!("{n} copies did not start"));
    c
}
