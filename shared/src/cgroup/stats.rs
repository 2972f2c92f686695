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
/// `limit_hits` is the cgroup's own `pids.events` `max`. On cgroup v1 (and
/// on older cgroup v2 kernels, or with the `pids_localevents` mount option)
/// the kernel counts a refused fork in the cgroup of the forking task,
/// whichever level's limit refused it. Recent cgroup v2 kernels count it in
/// the cgroup whose limit was hit and that cgroup's ancestors instead, so a
/// fork refused by an ancestor's limit (a pod or a slice) does not show in
/// the container's file.
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
    let limit_hits = read_key(src, &dir.join("pids.events"), "max")?
        .flatten()
        .unwrap_or(0);
    Ok(Some(PidsStats {
        current,
        limit,
        headroom,
        limit_hits,
    }))
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
pub fn read_procs_recursive(dir: &Path) -> Result<Vec<i32>> {
    read_procs_from(&mut Fresh::default(), dir)
}

/// [`read_procs_recursive`] through `src`.
pub fn read_procs_from(src: &mut dyn Source, dir: &Path) -> Result<Vec<i32>> {
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Some(content) = src.read_opt(&d.join("cgroup.procs"))? else {
            continue;
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
