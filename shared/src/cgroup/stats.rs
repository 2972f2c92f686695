//! Reading the pids and memory controllers of a container, and the processes
//! of a cgroup subtree.

use std::fs;
use std::path::{Path, PathBuf};

use super::discover::subdirs;
use super::kept::ControlFiles;
use super::parse::{flat_keyed_value, limit_from_value, parse_limit, parse_procs, parse_u64};
use super::{Container, Layout, MemoryStats, PidsStats};
use crate::error::is_vanished;
use crate::{Error, Limit, Result};

/// Where control files are read from: opened afresh on every read
/// ([`Fresh`]) or kept open between collections ([`ControlFiles`]).
pub trait Source {
    /// Reads a control file; `Ok(None)` when it (or its cgroup) does not
    /// exist. The text lives until the next read.
    fn read_opt(&mut self, path: &Path) -> Result<Option<&str>>;
    /// The subdirectory names of `dir`; `Ok(None)` when `dir` vanished.
    fn subdirs(&mut self, dir: &Path) -> Result<Option<Vec<String>>> {
        subdirs(dir)
    }
    /// Reads a file the caller knows cannot change now; a source that
    /// keeps files may serve its last text for a while
    /// ([`ControlFiles::read_settled`]). By default, [`Source::read_opt`].
    fn read_settled(&mut self, path: &Path) -> Result<Option<&str>> {
        self.read_opt(path)
    }
}

/// Every read opens the file (into one reused buffer).
#[derive(Debug, Default)]
pub struct Fresh {
    buf: String,
}

impl Source for Fresh {
    fn read_opt(&mut self, path: &Path) -> Result<Option<&str>> {
        match read_small(path, &mut self.buf) {
            Ok(()) => Ok(Some(&self.buf)),
            Err(e) if is_vanished(&e) => Ok(None),
            Err(e) => Err(Error::read(path, e)),
        }
    }
}

impl Source for ControlFiles {
    fn read_opt(&mut self, path: &Path) -> Result<Option<&str>> {
        self.read(path)
    }

    fn subdirs(&mut self, dir: &Path) -> Result<Option<Vec<String>>> {
        ControlFiles::subdirs(self, dir)
    }

    fn read_settled(&mut self, path: &Path) -> Result<Option<&str>> {
        ControlFiles::read_settled(self, path)
    }
}

/// Reads a small text file to its end into `buf` (cleared first). Unlike
/// `fs::read_to_string`, it asks for no size hint (a `statx` per file, and
/// a control file's size is 0 or 4096 anyway).
fn read_small(path: &Path, buf: &mut String) -> std::io::Result<()> {
    use std::io::Read;
    buf.clear();
    fs::File::open(path)?.read_to_string(buf)?;
    Ok(())
}

fn parse_err(path: &Path, what: &str, content: &str) -> Error {
    let shown: String = content.trim().chars().take(40).collect();
    Error::Parse {
        path: path.to_path_buf(),
        msg: format!("expected {what}, found {shown:?}"),
    }
}

/// Reads a single-number file; `Ok(None)` when missing.
fn read_u64(src: &mut dyn Source, path: &Path) -> Result<Option<u64>> {
    match src.read_opt(path)? {
        None => Ok(None),
        Some(s) => parse_u64(s)
            .map(Some)
            .ok_or_else(|| parse_err(path, "an unsigned number", s)),
    }
}

/// Reads a limit file; `Ok(None)` when missing.
fn read_limit(src: &mut dyn Source, path: &Path) -> Result<Option<Limit>> {
    match src.read_opt(path)? {
        None => Ok(None),
        Some(s) => parse_limit(s)
            .map(Some)
            .ok_or_else(|| parse_err(path, "a limit (`max` or a number)", s)),
    }
}

/// Reads one key of a flat-keyed file; `Ok(None)` when the file is missing,
/// `Some(None)` when the key is.
fn read_key(src: &mut dyn Source, path: &Path, key: &str) -> Result<Option<Option<u64>>> {
    Ok(src.read_opt(path)?.map(|s| flat_keyed_value(s, key)))
}

/// `dir` and its ancestors up to, but excluding, the hierarchy root it lives
/// under (only `dir` when it is under none of the layout's roots).
fn levels(layout: &Layout, dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let Some(root) = layout.hierarchy_root(dir) else {
        return out;
    };
    // `dir` lies under `root`, so its ancestors longer than `root` do too.
    let root_len = root.as_os_str().len();
    let mut cur = dir.parent();
    while let Some(p) = cur.filter(|p| p.as_os_str().len() > root_len) {
        out.push(p.to_path_buf());
        cur = p.parent();
    }
    out
}

/// Reads the pids controller of a container; `Ok(None)` when the cgroup vanished
/// or has no pids controller.
///
/// The effective limit is the smallest `pids.max` of the cgroup and its
/// ancestors (up to, excluding, the hierarchy root); the headroom the
/// smallest `pids.max - pids.current` over those levels that have a limit.
///
/// `limit_hits` counts the forks refused at a pids limit that concern the
/// container, from what the kernel keeps (see `read_limit_hits`): on
/// cgroup v1, on cgroup v2 before Linux 6.12 and with the `pids_localevents`
/// mount option, every fork a task of the container's subtree was refused,
/// at whichever level's limit; from 6.12 on (no `pids_localevents`), the
/// forks refused at the container's own limit (and limits inside it) plus
/// every fork refused at an ancestor's limit (a pod's, a slice's), whichever
/// cgroup under that ancestor forked.
pub fn read_pids(layout: &Layout, c: &Container) -> Result<Option<PidsStats>> {
    read_pids_from(&mut Fresh::default(), layout, c)
}

/// [`read_pids`] through `src`.
pub fn read_pids_from(
    src: &mut dyn Source,
    layout: &Layout,
    c: &Container,
) -> Result<Option<PidsStats>> {
    let Some(dir) = c.dirs.pids.as_deref() else {
        return Ok(None);
    };
    let Some(current) = read_u64(src, &dir.join("pids.current"))? else {
        return Ok(None);
    };
    let mut limit = Limit::Unlimited;
    let mut headroom: Option<u64> = None;
    for (i, level) in levels(layout, dir).iter().enumerate() {
        let Some(level_limit) = read_limit(src, &level.join("pids.max"))? else {
            if i == 0 {
                return Ok(None);
            }
            // an ancestor without the controller enabled: no limit there
            continue;
        };
        let Limit::Max(max) = level_limit else {
            continue;
        };
        let level_current = if i == 0 {
            current
        } else {
            match read_u64(src, &level.join("pids.current"))? {
                Some(v) => v,
                None => return Ok(None),
            }
        };
        limit = limit.min(level_limit);
        let h = max.saturating_sub(level_current);
        headroom = Some(headroom.map_or(h, |old| old.min(h)));
    }
    let limit_hits = read_limit_hits(src, layout, dir, limit == Limit::Unlimited)?;
    let peak = read_u64(src, &dir.join("pids.peak"))?;
    Ok(Some(PidsStats {
        current,
        limit,
        headroom,
        limit_hits,
        peak,
    }))
}

/// The `max` of a `pids.events` or `pids.events.local` file; 0 when missing.
/// `settled`: no fork can be refused now (see `read_limit_hits`).
fn read_events_max(src: &mut dyn Source, path: &Path, settled: bool) -> Result<u64> {
    let text = if settled {
        src.read_settled(path)?
    } else {
        src.read_opt(path)?
    };
    Ok(text.and_then(|s| flat_keyed_value(s, "max")).unwrap_or(0))
}

/// The forks refused at a pids limit that concern the container at `dir`,
/// the way the kernel counts them:
///
/// - **in the forking task's cgroup** (cgroup v1; v2 before Linux 6.12; v2
///   mounted with `pids_localevents`): each cgroup's `pids.events` `max`
///   counts the forks its own tasks were refused, at any level's limit (the
///   container's, a pod's, a slice's). The sum over the container's subtree
///   (a runtime may put the processes in a sub-cgroup, as crun's
///   `container`) is every refusal the container's processes met.
/// - **hierarchically** (v2 from 6.12, told by its `pids.events.local`):
///   `pids.events` `max` counts the forks refused at the cgroup's own limit
///   or a limit below it, whoever forked; `pids.events.local` those refused
///   at the cgroup's own limit only; the forking cgroup is recorded nowhere.
///   The container's `pids.events` plus the `pids.events.local` of each
///   ancestor below the root counts each refusal that could have been the
///   container's once: its own (and its sub-cgroups') limits for its own
///   forks, and every refusal at a pod's or slice's limit above it. In a pod
///   of one container this is exact; when several containers share the
///   pod's limit, each one's count includes the refusals at the pod's limit
///   of its siblings' forks (the kernel does not say which one forked).
///
/// A sub-cgroup removed takes its count with it.
///
/// `unlimited`: neither the container nor an ancestor has a limit. With no
/// sub-cgroup either (none could hold a limit of its own), no fork of the
/// container can be refused and no refusal can be counted in these files:
/// they are read as settled (a source that keeps files re-reads them once
/// per its limits' interval; the counts are cumulative, so a refusal after
/// a limit was set shows, whole, once the limit is seen).
fn read_limit_hits(
    src: &mut dyn Source,
    layout: &Layout,
    dir: &Path,
    unlimited: bool,
) -> Result<u64> {
    let settled = unlimited && src.subdirs(dir)?.is_some_and(|names| names.is_empty());
    let hierarchical = !layout.pids_local_events
        && (if settled {
            src.read_settled(&dir.join("pids.events.local"))?
        } else {
            src.read_opt(&dir.join("pids.events.local"))?
        })
        .is_some();
    if hierarchical {
        let mut hits = read_events_max(src, &dir.join("pids.events"), settled)?;
        for level in levels(layout, dir).iter().skip(1) {
            hits += read_events_max(src, &level.join("pids.events.local"), settled)?;
        }
        return Ok(hits);
    }
    let mut hits = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        hits += read_events_max(src, &d.join("pids.events"), settled)?;
        if let Some(names) = src.subdirs(&d)? {
            stack.extend(names.into_iter().map(|n| d.join(n)));
        }
    }
    Ok(hits)
}

/// Reads the memory controller of a container; `Ok(None)` when the cgroup
/// vanished or has no memory controller.
///
/// cgroup v2: `memory.current`, `memory.stat` `inactive_file`, the smallest
/// `memory.max` over the cgroup and its ancestors, `memory.events`
/// `oom_kill`. cgroup v1: `memory.usage_in_bytes`, `memory.stat`
/// `total_inactive_file`, the smallest `memory.limit_in_bytes` over the
/// cgroup and its ancestors and `hierarchical_memory_limit`,
/// `memory.oom_control` `oom_kill`.
pub fn read_memory(layout: &Layout, c: &Container) -> Result<Option<MemoryStats>> {
    read_memory_from(&mut Fresh::default(), layout, c)
}

/// [`read_memory`] through `src`.
pub fn read_memory_from(
    src: &mut dyn Source,
    layout: &Layout,
    c: &Container,
) -> Result<Option<MemoryStats>> {
    let Some(dir) = c.dirs.memory.as_deref() else {
        return Ok(None);
    };
    let v1 = c.dirs.memory_v1;
    let (usage_file, limit_file, events_file) = if v1 {
        (
            "memory.usage_in_bytes",
            "memory.limit_in_bytes",
            "memory.oom_control",
        )
    } else {
        ("memory.current", "memory.max", "memory.events")
    };
    let Some(usage) = read_u64(src, &dir.join(usage_file))? else {
        return Ok(None);
    };
    let Some(stat) = src.read_opt(&dir.join("memory.stat"))? else {
        return Ok(None);
    };
    let inactive_file = if v1 {
        flat_keyed_value(stat, "total_inactive_file")
            .or_else(|| flat_keyed_value(stat, "inactive_file"))
    } else {
        flat_keyed_value(stat, "inactive_file")
    }
    .unwrap_or(0);
    // v1's `hierarchical_memory_limit` is already the smallest limit over
    // the cgroup and the ancestors whose limits apply to it.
    let hierarchical = if v1 {
        flat_keyed_value(stat, "hierarchical_memory_limit").map(limit_from_value)
    } else {
        None
    };

    let limit = match hierarchical {
        Some(limit) => limit,
        None => {
            let mut limit = Limit::Unlimited;
            for (i, level) in levels(layout, dir).iter().enumerate() {
                match read_limit(src, &level.join(limit_file))? {
                    Some(l) => limit = limit.min(l),
                    None if i == 0 => return Ok(None),
                    None => {}
                }
            }
            limit
        }
    };
    let oom_kills = read_key(src, &dir.join(events_file), "oom_kill")?
        .flatten()
        .unwrap_or(0);
    Ok(Some(MemoryStats {
        usage,
        working_set: usage.saturating_sub(inactive_file),
        limit,
        oom_kills,
    }))
}

/// Lists the PIDs (thread-group leaders) in a cgroup directory and all its
/// descendants (`cgroup.procs` of each), sorted and deduplicated. Directories
/// that vanish are skipped; a vanished `dir` yields an empty list.
///
/// A `threaded` cgroup below `dir` (cgroup v2) has no process list: reading
/// its `cgroup.procs` fails with `EOPNOTSUPP`. The processes its threads
/// belong to are listed by the threaded domain above it, and its
/// descendants are threaded too, so it is skipped with its subtree.
pub fn read_procs_recursive(dir: &Path) -> Result<Vec<i32>> {
    read_procs_from(&mut Fresh::default(), dir)
}

/// [`read_procs_recursive`] through `src`.
pub fn read_procs_from(src: &mut dyn Source, dir: &Path) -> Result<Vec<i32>> {
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let content = match src.read_opt(&d.join("cgroup.procs")) {
            Ok(Some(content)) => content,
            Ok(None) => continue,
            Err(e) if d != dir && is_threaded_refusal(&e) => continue,
            Err(e) => return Err(e),
        };
        pids.extend(parse_procs(content));
        if let Some(names) = src.subdirs(&d)? {
            stack.extend(names.into_iter().map(|n| d.join(n)));
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// Whether reading a process list failed because its cgroup is threaded.
fn is_threaded_refusal(e: &Error) -> bool {
    matches!(e, Error::Read { source, .. } if source.raw_os_error() == Some(libc::EOPNOTSUPP))
}

/// Counts the threads (tasks) listed in a cgroup directory and all its
/// descendants: `cgroup.threads` on cgroup v2, `tasks` on v1. Exited tasks
/// are not listed, so with `pids.current` (which still charges zombies until
/// they are reaped) it tells how many zombies a cgroup holds. `Ok(None)`
/// when `dir` has neither file (a fixture tree, a vanished cgroup).
pub fn count_threads_recursive(dir: &Path) -> Result<Option<u64>> {
    count_threads_from(&mut Fresh::default(), dir)
}

/// [`count_threads_recursive`] through `src`.
pub fn count_threads_from(src: &mut dyn Source, dir: &Path) -> Result<Option<u64>> {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    let mut top = true;
    while let Some(d) = stack.pop() {
        let content = match src.read_opt(&d.join("cgroup.threads"))? {
            Some(c) => Some(c),
            None => src.read_opt(&d.join("tasks"))?,
        };
        let Some(content) = content else {
            if top {
                return Ok(None);
            }
            continue;
        };
        top = false;
        total += content.split_ascii_whitespace().count() as u64;
        if let Some(names) = src.subdirs(&d)? {
            stack.extend(names.into_iter().map(|n| d.join(n)));
        }
    }
    Ok(Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::{CgroupDirs, Runtime};
    use std::fs;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (name, content) in files {
            fs::write(dir.join(name), content).unwrap();
        }
    }

    fn layout(root: &Path, pids_local_events: bool) -> Layout {
        Layout {
            unified: Some(root.to_path_buf()),
            v1_pids: None,
            v1_memory: None,
            v1_systemd: None,
            unified_controllers: true,
            parents: Vec::new(),
            pids_local_events,
        }
    }

    fn container(dir: &Path) -> Container {
        Container {
            id: "a".repeat(64),
            runtime: Runtime::Containerd,
            pod_uid: None,
            rel_path: dir.into(),
            dirs: CgroupDirs {
                pids: Some(dir.into()),
                ..CgroupDirs::default()
            },
        }
    }

    fn hits(layout: &Layout, dir: &Path) -> u64 {
        read_pids(layout, &container(dir))
            .unwrap()
            .unwrap()
            .limit_hits
    }

    /// A pod under `kubepods` with two containers; `c1` has a `container`
    /// sub-cgroup. The numbers are what Linux 6.12 shows after 3 forks of c1
    /// refused at the pod's limit and 2 at c1's own limit.
    fn pod_tree(root: &Path, local_files: bool) {
        let ev = |max: u64| format!("max {max}\n");
        let level = |dir: &Path, events: u64, local: u64| {
            write(
                dir,
                &[
                    ("pids.current", "3\n"),
                    ("pids.max", "max\n"),
                    ("pids.events", &ev(events)),
                ],
            );
            if local_files {
                write(dir, &[("pids.events.local", &ev(local))]);
            }
        };
        level(&root.join("kubepods"), 5, 0);
        level(&root.join("kubepods/pod1"), 5, 3);
        level(&root.join("kubepods/pod1/c1"), 2, 2);
        level(&root.join("kubepods/pod1/c1/container"), 0, 0);
        level(&root.join("kubepods/pod1/c2"), 0, 0);
    }

    #[test]
    fn refusals_at_a_pod_limit_show_on_its_containers_from_6_12() {
        let t = tempfile::tempdir().unwrap();
        pod_tree(t.path(), true);
        let l = layout(t.path(), false);
        let pod = t.path().join("kubepods/pod1");
        // Its own 2, and the pod's 3.
        assert_eq!(hits(&l, &pod.join("c1")), 5);
        // The pod's 3 (a sibling's forks: the kernel does not say whose).
        assert_eq!(hits(&l, &pod.join("c2")), 3);
    }

    #[test]
    fn refusals_are_summed_over_the_subtree_where_the_forking_cgroup_counts() {
        // Before 6.12 (no pids.events.local), or with pids_localevents: each
        // cgroup counts its own tasks' refused forks.
        let t = tempfile::tempdir().unwrap();
        let pod = t.path().join("kubepods/pod1");
        pod_tree(t.path(), false);
        write(&pod.join("c1/container"), &[("pids.events", "max 4\n")]);
        for l in [layout(t.path(), false), layout(t.path(), true)] {
            assert_eq!(hits(&l, &pod.join("c1")), 2 + 4);
            assert_eq!(hits(&l, &pod.join("c2")), 0);
        }
        // pids_localevents on 6.12: the .local files exist and are ignored.
        let t = tempfile::tempdir().unwrap();
        let pod = t.path().join("kubepods/pod1");
        pod_tree(t.path(), true);
        assert_eq!(hits(&layout(t.path(), true), &pod.join("c1")), 2);
    }

    #[test]
    fn refusal_counts_without_any_limit_are_read_once_per_interval() {
        use crate::procfs::FdPool;
        use std::time::Duration;
        let t = tempfile::tempdir().unwrap();
        let l = layout(t.path(), false);
        let free = t.path().join("docker/free");
        let capped = t.path().join("docker/capped");
        for (dir, max) in [(&free, "max\n"), (&capped, "10\n")] {
            write(
                dir,
                &[
                    ("pids.current", "3\n"),
                    ("pids.max", max),
                    ("pids.events", "max 0\n"),
                ],
            );
        }
        let mut files = ControlFiles::new(FdPool::fixed(64));
        files.set_limits_every(Duration::from_secs(3600));
        let kept = |files: &mut ControlFiles, dir: &Path| {
            read_pids_from(files, &l, &container(dir))
                .unwrap()
                .unwrap()
                .limit_hits
        };
        assert_eq!(kept(&mut files, &free), 0);
        assert_eq!(kept(&mut files, &capped), 0);
        files.end_scrape();
        // The files change (the kernel could not change `free`'s: no limit
        // applies to it, so none of its forks can be refused).
        write(&free, &[("pids.events", "max 5\n")]);
        write(&capped, &[("pids.events", "max 5\n")]);
        // Under a limit the count is read at every collection; without
        // one, and with no sub-cgroup, its last reading is served within
        // the limits' interval.
        assert_eq!(kept(&mut files, &capped), 5);
        assert_eq!(kept(&mut files, &free), 0);
        files.end_scrape();
        // A sub-cgroup could hold a limit of its own: read again.
        write(
            &free.join("sub"),
            &[("pids.max", "max\n"), ("pids.events", "max 1\n")],
        );
        assert_eq!(kept(&mut files, &free), 5 + 1);
        files.end_scrape();
        // Files opened afresh are read every time; and a reader that keeps
        // nothing for an interval reads every collection.
        assert_eq!(hits(&l, &free), 5 + 1);
        std::fs::remove_dir_all(free.join("sub")).unwrap();
        let mut every = ControlFiles::new(FdPool::fixed(64));
        assert_eq!(kept(&mut every, &free), 5);
        every.end_scrape();
        write(&free, &[("pids.events", "max 7\n")]);
        assert_eq!(kept(&mut every, &free), 7);
    }

    /// Reads a fixture tree, refusing the `cgroup.procs` of the `threaded`
    /// directories with EOPNOTSUPP, as the kernel does.
    struct WithThreaded {
        fresh: Fresh,
        threaded: Vec<PathBuf>,
    }

    impl Source for WithThreaded {
        fn read_opt(&mut self, path: &Path) -> Result<Option<&str>> {
            if path.ends_with("cgroup.procs") && self.threaded.iter().any(|t| path.starts_with(t)) {
                let e = std::io::Error::from_raw_os_error(libc::EOPNOTSUPP);
                return Err(Error::read(path, e));
            }
            self.fresh.read_opt(path)
        }
    }

    #[test]
    fn a_threaded_child_cgroup_is_skipped_its_processes_listed_above() {
        let t = tempfile::tempdir().unwrap();
        let c = t.path().join("docker/c");
        write(&c, &[("cgroup.procs", "10\n11\n")]);
        write(&c.join("sub"), &[("cgroup.procs", "12\n")]);
        write(&c.join("worker"), &[("cgroup.procs", "")]);
        write(&c.join("worker/deeper"), &[("cgroup.procs", "")]);
        let mut src = WithThreaded {
            fresh: Fresh::default(),
            threaded: vec![c.join("worker")],
        };
        assert_eq!(read_procs_from(&mut src, &c).unwrap(), vec![10, 11, 12]);
        // The container's own list refused is still an error.
        src.threaded = vec![c.clone()];
        let e = read_procs_from(&mut src, &c).unwrap_err();
        assert!(is_threaded_refusal(&e), "{e}");
    }
}
