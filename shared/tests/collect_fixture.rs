//! Collection over fixture trees: a cgroup v2 root and a `/proc` made of
//! plain files, so every outcome (groups, zombies, errors by stage,
//! re-detection) is exact and independent of the host.

use std::path::{Path, PathBuf};

use pidwarden_shared::collect::{CollectMode, Collector, Snapshot, Stage};
use pidwarden_shared::groups::surplus;
use pidwarden_shared::{Limit, Roots};

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// A `/proc/<pid>` entry.
fn proc_entry(
    proc: &Path,
    pid: i32,
    ppid: i32,
    state: char,
    start: u64,
    cmdline: &str,
    children: &[i32],
) {
    let dir = proc.join(pid.to_string());
    write(
        &dir.join("stat"),
        &format!("{pid} (cmd) {state} {ppid} 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 {start} 0 0\n"),
    );
    let raw: String = cmdline
        .split(' ')
        .filter(|a| !a.is_empty())
        .map(|a| format!("{a}\0"))
        .collect();
    write(&dir.join("cmdline"), &raw);
    let kids: String = children.iter().map(|c| format!("{c} ")).collect();
    write(
        &dir.join("task").join(pid.to_string()).join("children"),
        &kids,
    );
}

/// A cgroup v2 container directory with pids and memory files.
fn cgroup_v2(dir: &Path, procs: &[i32], pids_current: &str) {
    let list: String = procs.iter().map(|p| format!("{p}\n")).collect();
    write(&dir.join("cgroup.procs"), &list);
    write(&dir.join("pids.current"), pids_current);
    write(&dir.join("pids.max"), "100\n");
    write(&dir.join("pids.events"), "max 3\n");
    write(&dir.join("memory.current"), "10000\n");
    write(&dir.join("memory.stat"), "anon 6000\ninactive_file 4000\n");
    write(&dir.join("memory.max"), "max\n");
    write(
        &dir.join("memory.events"),
        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 2\n",
    );
}

/// The cgroup of container `id` (Docker, systemd driver) under `cg`.
fn scope(cg: &Path, id: &str) -> PathBuf {
    cg.join("system.slice").join(format!("docker-{id}.scope"))
}

/// The ids of a snapshot's containers, in order.
fn ids(snap: &Snapshot) -> Vec<&str> {
    snap.containers
        .iter()
        .map(|c| c.container.id.as_str())
        .collect()
}

/// cgroup root + proc root with two containers:
///
/// A (`docker-A.scope`, plus a nested cgroup): sh (10) ─┬─ worker ×3 (11, 12, 13 — 13 in the nested cgroup)
///                                                      └─ zombie 14 (child of 11, not listed)
///   and a listed pid (99) that has no /proc entry (vanished).
/// B: `pids.current` is garbage, so its pids read fails; its processes are still read.
fn fixture(root: &Path) -> Roots {
    let cg = root.join("cgroup");
    let proc = root.join("proc");
    write(&cg.join("cgroup.controllers"), "cpu memory pids\n");
    write(&cg.join("cgroup.procs"), "1\n");
    let a = scope(&cg, A);
    cgroup_v2(&a, &[10, 11, 12, 99], "6\n");
    cgroup_v2(&a.join("inner"), &[13], "1\n");
    // Before Linux 6.12 (no pids.events.local) the nested cgroup counts
    // the forks its own tasks were refused.
    write(&a.join("inner/pids.events"), "max 4\n");
    let b = scope(&cg, B);
    cgroup_v2(&b, &[20, 21], "not a number\n");

    proc_entry(&proc, 10, 1, 'S', 100, "sh -c run", &[11, 12, 13]);
    proc_entry(&proc, 11, 10, 'S', 103, "worker --serve", &[14]);
    proc_entry(&proc, 12, 10, 'S', 101, "worker --serve", &[]);
    proc_entry(&proc, 13, 10, 'S', 102, "worker --serve", &[]);
    proc_entry(&proc, 14, 11, 'Z', 104, "", &[]);
    proc_entry(&proc, 20, 1, 'S', 200, "app", &[]);
    proc_entry(&proc, 21, 1, 'S', 201, "app", &[]);
    Roots::new(proc, cg)
}

#[test]
fn collects_groups_zombies_and_stats_and_records_errors_by_stage() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Collector::new(fixture(dir.path()));
    let snap = collector.collect();

    assert_eq!(ids(&snap), vec![A, B]);

    let a = &snap.containers[0];
    let live: Vec<i32> = a.processes.live.iter().map(|p| p.pid).collect();
    assert_eq!(live, vec![10, 11, 12, 13], "99 vanished and is skipped");
    let zombies: Vec<(i32, i32, char)> = a
        .processes
        .zombies
        .iter()
        .map(|p| (p.pid, p.ppid, p.state.letter()))
        .collect();
    assert_eq!(zombies, vec![(14, 11, 'Z')]);
    assert_eq!(a.groups.len(), 1);
    assert_eq!(a.groups[0].ppid, 10);
    assert_eq!(a.groups[0].cmdline.display(), "worker --serve");
    assert_eq!(a.groups[0].pids, vec![12, 13, 11], "oldest first");
    assert_eq!(surplus(&a.groups), 2);
    let pids = a.pids.unwrap();
    assert_eq!(
        (pids.current, pids.limit, pids.headroom, pids.limit_hits),
        (6, Limit::Max(100), Some(94), 3 + 4)
    );
    let mem = a.memory.unwrap();
    assert_eq!(
        (mem.usage, mem.working_set, mem.limit, mem.oom_kills),
        (10000, 6000, Limit::Unlimited, 2)
    );

    // B: the pids read failed (recorded, stage cgroup); everything else was read.
    let b = &snap.containers[1];
    assert!(b.pids.is_none());
    assert!(b.memory.is_some());
    assert_eq!(b.processes.live.len(), 2);
    assert!(b.processes.zombies.is_empty());
    assert_eq!(
        b.groups.len(),
        1,
        "20 and 21 are siblings under pid 1 with the same cmdline"
    );
    assert_eq!(snap.errors.len(), 1, "{:?}", snap.errors);
    assert_eq!(snap.errors[0].0, Stage::Cgroup);
    assert!(
        snap.errors[0].1.contains("pids.current"),
        "{}",
        snap.errors[0].1
    );

    // Everything read is cached, and stays cached across an identical scrape.
    assert_eq!(collector.cached_processes(), 7);
    let again = collector.collect();
    assert_eq!(again.containers[0].processes, a.processes);
    assert_eq!(collector.cached_processes(), 7);
}

#[test]
fn collect_one_returns_the_container_or_fails_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let roots = fixture(dir.path());
    let mut collector = Collector::new(roots);
    let full = collector.collect();
    let one = collector.collect_one(A).unwrap().expect("A is a container");
    assert_eq!(one.processes, full.containers[0].processes);
    assert_eq!(one.groups, full.containers[0].groups);
    // B's pids controller cannot be read: the caller must not act on it.
    let err = collector.collect_one(B).unwrap_err();
    assert!(err.to_string().contains("pids.current"), "{err}");
    // Not a container, not an id.
    assert!(collector.collect_one(&"c".repeat(64)).unwrap().is_none());
    assert!(collector.collect_one("../system.slice").unwrap().is_none());
    assert!(collector.collect_one(&A.to_uppercase()).unwrap().is_none());
}

#[test]
fn a_missing_cgroup_root_is_a_discovery_error_and_is_detected_again_later() {
    let dir = tempfile::tempdir().unwrap();
    let staged = tempfile::tempdir().unwrap();
    let roots = fixture(staged.path());
    let cg = dir.path().join("cgroup");
    let mut collector = Collector::new(Roots::new(roots.proc.clone(), &cg));

    let snap = collector.collect();
    assert!(snap.containers.is_empty());
    assert_eq!(snap.errors.len(), 1);
    assert_eq!(snap.errors[0].0, Stage::Discovery);
    assert!(collector.collect_one(A).is_err());

    // The hierarchy appears (mounted late): the next collection finds it.
    std::fs::rename(&roots.cgroup, &cg).unwrap();
    let snap = collector.collect();
    assert_eq!(snap.containers.len(), 2);
}

#[test]
fn a_removed_container_is_omitted_and_its_processes_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let roots = fixture(dir.path());
    let mut collector = Collector::new(roots.clone());
    assert_eq!(collector.collect().containers.len(), 2);
    assert_eq!(collector.cached_processes(), 7);
    std::fs::remove_dir_all(scope(&roots.cgroup, B)).unwrap();
    let snap = collector.collect();
    assert_eq!(ids(&snap), vec![A]);
    assert!(snap.errors.is_empty(), "{:?}", snap.errors);
    assert_eq!(collector.cached_processes(), 5);
}

/// The fixture plus `extra` more containers of `per` processes each (a shell
/// and its workers, one of them a zombie), and one more whose memory files
/// are garbage (a second error, in another container).
fn many_containers(root: &Path, extra: usize, per: i32) -> Roots {
    let roots = fixture(root);
    for i in 0..extra {
        let id = format!("{:064x}", 0xc0de_0000_u64 + i as u64);
        let base = 1000 + i as i32 * 100;
        let listed: Vec<i32> = (base..base + per).collect();
        cgroup_v2(
            &scope(&roots.cgroup, &id),
            &listed,
            &format!("{}\n", per + 1),
        );
        let workers: Vec<i32> = (base + 1..base + per).collect();
        let mut children = workers.clone();
        children.push(base + per); // the zombie
        proc_entry(&roots.proc, base, 1, 'S', 5000, "sh -c serve", &children);
        for &w in &workers {
            let cmd = if w % 3 == 0 { "worker --odd" } else { "worker" };
            proc_entry(&roots.proc, w, base, 'S', 5000 + w as u64, cmd, &[]);
        }
        proc_entry(&roots.proc, base + per, base, 'Z', 9000, "", &[]);
    }
    let bad = format!("{:064x}", 0xbad);
    let dir = scope(&roots.cgroup, &bad);
    cgroup_v2(&dir, &[30], "1\n");
    write(&dir.join("memory.current"), "lots\n");
    proc_entry(&roots.proc, 30, 1, 'S', 300, "bad", &[]);
    roots
}

#[test]
fn a_sharded_collection_returns_what_one_thread_does() {
    let dir = tempfile::tempdir().unwrap();
    let roots = many_containers(dir.path(), 20, 7);
    let mut single = Collector::with_threads(roots.clone(), 1);
    assert_eq!(single.threads(), 1);
    let want = single.collect();
    assert_eq!(want.containers.len(), 23);
    assert_eq!(want.errors.len(), 2, "{:?}", want.errors);
    let json = |s: &Snapshot| serde_json::to_value(s).unwrap();

    for threads in [2, 3, 4, 8] {
        let mut sharded = Collector::with_threads(roots.clone(), threads);
        assert_eq!(sharded.threads(), threads);
        // Twice: the first fills the shards' caches, the second reads through them.
        for _ in 0..2 {
            let got = sharded.collect();
            let ids_got: Vec<&str> = ids(&got);
            assert_eq!(
                ids_got,
                ids(&want),
                "{threads} threads: containers in id order"
            );
            let mut errs_got = got.errors.clone();
            let mut errs_want = want.errors.clone();
            errs_got.sort_by(|a, b| a.1.cmp(&b.1));
            errs_want.sort_by(|a, b| a.1.cmp(&b.1));
            assert_eq!(errs_got, errs_want, "{threads} threads");
            assert_eq!(
                json(&got)["containers"],
                json(&want)["containers"],
                "{threads} threads"
            );
        }
        assert_eq!(sharded.cached_processes(), single.cached_processes());
        // One container, through its shard: the same as in the collection.
        let id = format!("{:064x}", 0xc0de_0005_u64);
        let one = sharded.collect_one(&id).unwrap().unwrap();
        let full = want
            .containers
            .iter()
            .find(|c| c.container.id == id)
            .unwrap();
        assert_eq!(one.processes, full.processes);
        assert_eq!(one.groups, full.groups);
        assert_eq!(sharded.cached_processes(), single.cached_processes());
    }
    // 0 threads means the calling thread only.
    assert_eq!(Collector::with_threads(roots, 0).threads(), 1);
}

/// A container whose processes gave themselves names and arguments that are
/// not UTF-8, and one whose `stat` cannot be parsed: the names are read
/// (replaced where shown), the unreadable process alone is left out and
/// counted, never the container; in both collection modes.
#[test]
fn bad_names_are_read_and_an_unreadable_process_is_skipped_not_its_container() {
    for mode in [CollectMode::Full, CollectMode::Incremental] {
        let dir = tempfile::tempdir().unwrap();
        let roots = fixture(dir.path());
        let proc = &roots.proc;
        let a = scope(&roots.cgroup, A);
        cgroup_v2(&a, &[10, 11, 12, 30, 31, 32, 33], "9\n");
        // `printf '\377\376x' > /proc/self/comm`, and a name cut by the
        // kernel in the middle of a character; both with such arguments.
        for (pid, comm, argv) in [
            (30, &b"\xff\xfex"[..], &b"\xff\xfex\0--serve\0"[..]),
            (31, &b"\xff\xfex"[..], &b"\xff\xfex\0--serve\0"[..]),
            (32, &b"aaaaaaaaaaaaaa\xc3"[..], &b"\xfe\xfex\0--serve\0"[..]),
        ] {
            let d = proc.join(pid.to_string());
            let mut stat = format!("{pid} (").into_bytes();
            stat.extend_from_slice(comm);
            stat.extend_from_slice(b") S 10 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 300 0 0\n");
            std::fs::create_dir_all(d.join("task").join(pid.to_string())).unwrap();
            std::fs::write(d.join("stat"), stat).unwrap();
            std::fs::write(d.join("cmdline"), argv).unwrap();
            std::fs::write(d.join("task").join(pid.to_string()).join("children"), "").unwrap();
        }
        // Not a stat line at all.
        proc_entry(proc, 33, 10, 'S', 301, "odd", &[]);
        std::fs::write(proc.join("33/stat"), b"33 (odd) \xff garbage\n").unwrap();

        let mut collector = Collector::with_mode(roots.clone(), 1, mode);
        for round in 0..2 {
            let snap = collector.collect();
            let a = &snap.containers[0];
            assert_eq!(a.container.id, A);
            let live: Vec<i32> = a.processes.live.iter().map(|p| p.pid).collect();
            assert_eq!(live, vec![10, 11, 12, 13, 30, 31, 32], "{mode:?} {round}");
            let p30 = &a.processes.live[4];
            assert_eq!(&*p30.comm, "\u{fffd}\u{fffd}x");
            assert_eq!(&*a.processes.live[6].comm, "aaaaaaaaaaaaaa\u{fffd}");
            // 30 and 31 are copies; 32 shows the same text but its bytes differ.
            let mut groups: Vec<Vec<i32>> = a.groups.iter().map(|g| g.pids.clone()).collect();
            groups.sort();
            assert_eq!(groups, vec![vec![12, 13, 11], vec![30, 31]], "{mode:?}");
            assert_eq!(surplus(&a.groups), 3);
            let proc_errors: Vec<&String> = snap
                .errors
                .iter()
                .filter(|(s, _)| *s == Stage::Proc)
                .map(|(_, e)| e)
                .collect();
            assert_eq!(proc_errors.len(), 1, "{mode:?} {:?}", snap.errors);
            assert!(proc_errors[0].contains("33/stat"), "{}", proc_errors[0]);
        }
        // The remediator's reading of the one container works too.
        let one = collector.collect_one(A).unwrap().expect("A is a container");
        assert_eq!(one.processes.live.len(), 7);
        assert_eq!(one.groups.len(), 2);
    }
}
