//! Walking the cgroup hierarchies for container cgroups.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::{classify_under, may_hold_containers, CgroupDirs, Container, Layout};
use crate::error::is_vanished;
use crate::{Error, Result};

/// One container cgroup found in one hierarchy.
struct Found {
    rel: String,
    dir: PathBuf,
    runtime: super::Runtime,
    id: String,
    pod_uid: Option<String>,
}

/// Reads the subdirectory names of `dir` (file types come from `readdir`, no
/// `stat` per entry). `Ok(None)` when `dir` vanished.
pub(crate) fn subdirs(dir: &Path) -> Result<Option<Vec<String>>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if is_vanished(&e) => return Ok(None),
        Err(e) => return Err(Error::read(dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if is_vanished(&e) => return Ok(None),
            Err(e) => return Err(Error::read(dir, e)),
        };
        let is_dir = match entry.file_type() {
            Ok(t) => t.is_dir(),
            Err(e) if is_vanished(&e) => continue,
            Err(e) => return Err(Error::read(entry.path(), e)),
        };
        if !is_dir {
            continue;
        }
        // cgroup names that are not UTF-8 are never a runtime's.
        if let Ok(name) = entry.file_name().into_string() {
            out.push(name);
        }
    }
    Ok(Some(out))
}

/// Walks one hierarchy, classifying each directory by its path relative to
/// `root`, not descending into containers nor into directories that cannot
/// hold one ([`may_hold_containers`]).
fn walk(root: &Path, parents: &[String]) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let Some(names) = subdirs(&dir)? else {
            continue;
        };
        for name in names {
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let child = dir.join(&name);
            match classify_under(&child_rel, parents) {
                Some((runtime, id, pod_uid)) => found.push(Found {
                    rel: child_rel,
                    dir: child,
                    runtime,
                    id,
                    pod_uid,
                }),
                None if may_hold_containers(&child_rel, parents) => stack.push((child, child_rel)),
                None => {}
            }
        }
    }
    Ok(found)
}

/// Which part a hierarchy plays for the containers found in it.
#[derive(Clone, Copy)]
enum Role {
    /// cgroup v2 with controllers: pids, memory and processes.
    Unified,
    V1Pids,
    V1Memory,
    /// Only the processes (named `systemd` hierarchy, or a controller-less v2 tree).
    ProcsOnly,
}

/// A container id whose cgroup name was found at two different places:
/// one of them is not the runtime's (or the runtime's own tree is
/// inconsistent), and nothing tells which. Neither is a container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ambiguous {
    /// The id both cgroups name.
    pub id: String,
    /// The cgroup paths (relative to their hierarchy roots), sorted.
    pub paths: Vec<String>,
}

/// What one walk found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    /// The containers, sorted by id.
    pub containers: Vec<Container>,
    /// Ids found at two or more places, refused (sorted by id).
    pub ambiguous: Vec<Ambiguous>,
}

fn merge(
    into: &mut BTreeMap<String, Container>,
    seen: &mut BTreeMap<String, BTreeSet<String>>,
    found: Vec<Found>,
    role: Role,
) {
    for f in found {
        seen.entry(f.id.clone()).or_default().insert(f.rel.clone());
        let c = into.entry(f.id.clone()).or_insert_with(|| Container {
            id: f.id,
            runtime: f.runtime,
            pod_uid: f.pod_uid,
            rel_path: PathBuf::from(&f.rel),
            dirs: CgroupDirs::default(),
        });
        let d = &mut c.dirs;
        match role {
            Role::Unified => {
                d.pids.get_or_insert_with(|| f.dir.clone());
                d.memory.get_or_insert_with(|| f.dir.clone());
                d.memory_v1 = false;
            }
            Role::V1Pids => {
                d.pids.get_or_insert_with(|| f.dir.clone());
            }
            Role::V1Memory => {
                if d.memory.is_none() {
                    d.memory = Some(f.dir.clone());
                    d.memory_v1 = true;
                }
            }
            Role::ProcsOnly => {}
        }
        d.procs.get_or_insert(f.dir);
    }
}

/// Walks the cgroup filesystem and returns every container cgroup, once each
/// (nested cgroups inside a container belong to it). Sorted by id.
///
/// On cgroup v2 (with controllers) the unified tree is walked. Otherwise the
/// v1 `pids` and `memory` hierarchies are walked and merged by container id
/// (processes are listed from the pids hierarchy, else the memory one); when
/// neither is mounted the named `systemd` hierarchy, then a controller-less
/// unified tree, give at least the containers and their processes.
/// Directories that vanish during the walk are skipped.
///
/// Only the parents each runtime uses are looked at ([`classify_under`]
/// with the layout's configured parents). An id named by two cgroups at
/// different paths (in one hierarchy, or at different paths in the v1
/// hierarchies) is left out: see [`discover_all`], which lists them.
pub fn discover(layout: &Layout) -> Result<Vec<Container>> {
    discover_all(layout).map(|d| d.containers)
}

/// [`discover`], with the ids it refused because their cgroup name was found
/// at two places ([`Ambiguous`]).
pub fn discover_all(layout: &Layout) -> Result<Discovered> {
    let mut by_id = BTreeMap::new();
    let mut seen = BTreeMap::new();
    let parents = layout.parents.as_slice();
    if layout.unified_controllers {
        if let Some(u) = &layout.unified {
            merge(&mut by_id, &mut seen, walk(u, parents)?, Role::Unified);
        }
    } else {
        let mut any_v1 = false;
        if let Some(p) = &layout.v1_pids {
            any_v1 = true;
            merge(&mut by_id, &mut seen, walk(p, parents)?, Role::V1Pids);
        }
        if let Some(m) = &layout.v1_memory {
            any_v1 = true;
            merge(&mut by_id, &mut seen, walk(m, parents)?, Role::V1Memory);
        }
        if !any_v1 {
            if let Some(s) = layout.v1_systemd.as_ref().or(layout.unified.as_ref()) {
                merge(&mut by_id, &mut seen, walk(s, parents)?, Role::ProcsOnly);
            }
        }
    }
    let mut ambiguous = Vec::new();
    for (id, paths) in seen {
        if paths.len() > 1 {
            by_id.remove(&id);
            ambiguous.push(Ambiguous {
                id,
                paths: paths.into_iter().collect(),
            });
        }
    }
    Ok(Discovered {
        containers: by_id.into_values().collect(),
        ambiguous,
    })
}
