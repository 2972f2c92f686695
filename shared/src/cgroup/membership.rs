//! Whether a process is inside one container's cgroup, told from its
//! `/proc/<pid>/cgroup` against the directories discovery found for the
//! container: exact paths, compared on component boundaries, in every
//! hierarchy the container was found in. A sibling cgroup that merely names
//! the id (`libpod-conmon-<id>.scope`, a stray `…/docker-<id>.scope`) is
//! not the container. Pure: [`CgroupScope::of`] works from paths, and
//! [`CgroupScope::contains`] from the file's text.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Container, Layout};

/// Which hierarchy a line of `/proc/<pid>/cgroup` belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hierarchy {
    /// The cgroup v2 unified tree (`0::<path>`).
    Unified,
    /// A cgroup v1 hierarchy, by one of its controllers as the file lists
    /// them (`pids`, `memory`, `name=systemd`).
    V1(String),
}

/// One container cgroup: its path in one hierarchy, as
/// `/proc/<pid>/cgroup` shows it (absolute from the hierarchy root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    /// The hierarchy.
    pub hierarchy: Hierarchy,
    /// The path, e.g. `/docker/<id>`.
    pub path: String,
}

/// A container's cgroup in every hierarchy it was discovered in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupScope {
    /// One place per hierarchy; empty: no container (contains nothing).
    pub places: Vec<Place>,
}

impl CgroupScope {
    /// The places of container `c` under `layout`: its pids, memory and
    /// processes directories, each in its hierarchy. Directories outside
    /// every known hierarchy, or not UTF-8, are left out.
    pub fn of(layout: &Layout, c: &Container) -> CgroupScope {
        let mut places: Vec<Place> = Vec::new();
        for dir in [&c.dirs.pids, &c.dirs.memory, &c.dirs.procs]
            .into_iter()
            .flatten()
        {
            if let Some(place) = place_of(layout, dir) {
                if !places.contains(&place) {
                    places.push(place);
                }
            }
        }
        CgroupScope { places }
    }

    /// Whether `/proc/<pid>/cgroup` content `text` puts the process inside
    /// this scope: in every place's hierarchy, its path equals the place's
    /// or is below it (on a component boundary). `false` when the scope is
    /// empty or a hierarchy is missing from `text`.
    pub fn contains(&self, text: &str) -> bool {
        !self.places.is_empty()
            && self.places.iter().all(|place| {
                path_in(text, &place.hierarchy).is_some_and(|p| is_within(p, &place.path))
            })
    }
}

/// The place of an absolute cgroup directory under `layout`.
fn place_of(layout: &Layout, dir: &Path) -> Option<Place> {
    let root = layout.hierarchy_root(dir)?;
    let hierarchy = if Some(root) == layout.unified.as_deref() {
        Hierarchy::Unified
    } else if Some(root) == layout.v1_pids.as_deref() {
        Hierarchy::V1("pids".into())
    } else if Some(root) == layout.v1_memory.as_deref() {
        Hierarchy::V1("memory".into())
    } else if Some(root) == layout.v1_systemd.as_deref() {
        Hierarchy::V1("name=systemd".into())
    } else {
        return None;
    };
    let rel = dir.strip_prefix(root).ok()?.to_str()?;
    Some(Place {
        hierarchy,
        path: format!("/{}", rel.trim_matches('/')),
    })
}

/// The path `/proc/<pid>/cgroup` content gives for hierarchy `h`.
pub fn path_in<'a>(text: &'a str, h: &Hierarchy) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = match h {
            Hierarchy::Unified => id == "0" && ctrls.is_empty(),
            Hierarchy::V1(name) => !ctrls.is_empty() && ctrls.split(',').any(|c| c == name),
        };
        hit.then_some(path)
    })
}

/// `path` equals `scope` or is below it, on component boundaries.
pub fn is_within(path: &str, scope: &str) -> bool {
    let scope = scope.trim_end_matches('/');
    if scope.is_empty() {
        // The hierarchy root is no container.
        return false;
    }
    path == scope
        || path
            .strip_prefix(scope)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::CgroupDirs;
    use std::path::PathBuf;

    const ID: &str = "4f1a9c2e8b7d6f5a3c2e1d0b9a8f7e6d5c4b3a2918273645f0e1d2c3b4a59687";

    fn scope(places: &[(Hierarchy, String)]) -> CgroupScope {
        CgroupScope {
            places: places
                .iter()
                .map(|(h, p)| Place {
                    hierarchy: h.clone(),
                    path: p.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn only_the_exact_directory_and_below_are_inside() {
        let podman = scope(&[(
            Hierarchy::Unified,
            format!("/machine.slice/libpod-{ID}.scope"),
        )]);
        let inside = format!("0::/machine.slice/libpod-{ID}.scope\n");
        let below = format!("0::/machine.slice/libpod-{ID}.scope/container\n");
        // conmon's scope names the id, beside the container's own
        let conmon = format!("0::/machine.slice/libpod-conmon-{ID}.scope\n");
        let longer = format!("0::/machine.slice/libpod-{ID}.scope2\n");
        let stray = format!("0::/user.slice/x/machine.slice/libpod-{ID}.scope\n");
        assert!(podman.contains(&inside));
        assert!(podman.contains(&below));
        assert!(!podman.contains(&conmon));
        assert!(!podman.contains(&longer));
        assert!(!podman.contains(&stray));
        assert!(!podman.contains("0::/\n"));
        assert!(!podman.contains(""));
        assert!(!CgroupScope::default().contains(&inside));
        // the root of a hierarchy is never a container's scope
        assert!(!scope(&[(Hierarchy::Unified, "/".into())]).contains(&inside));
    }

    #[test]
    fn every_hierarchy_of_the_container_must_hold_the_process() {
        let docker = scope(&[
            (Hierarchy::V1("pids".into()), format!("/docker/{ID}")),
            (Hierarchy::V1("memory".into()), format!("/docker/{ID}")),
        ]);
        let both =
            format!("12:pids:/docker/{ID}\n9:memory:/docker/{ID}\n1:name=systemd:/x\n0::/\n");
        assert!(docker.contains(&both));
        // moved out in the pids hierarchy only
        let moved = format!("12:pids:/pidwarden-test-1\n9:memory:/docker/{ID}\n0::/\n");
        assert!(!docker.contains(&moved));
        // a hierarchy missing from the file
        assert!(!docker.contains(&format!("12:pids:/docker/{ID}\n")));
        // controllers sharing a hierarchy are matched by name
        let shared = format!("5:cpu,pids:/docker/{ID}\n9:memory:/docker/{ID}/sub\n");
        assert!(docker.contains(&shared));
        // a v1 line never stands for the unified one
        let v2 = scope(&[(Hierarchy::Unified, format!("/docker/{ID}"))]);
        assert!(!v2.contains(&format!("12:pids:/docker/{ID}\n")));
        assert!(v2.contains(&format!("12:pids:/\n0::/docker/{ID}\n")));
    }

    #[test]
    fn places_come_from_the_discovered_directories() {
        let layout = Layout {
            unified: Some(PathBuf::from("/cg/unified")),
            v1_pids: Some(PathBuf::from("/cg/pids")),
            v1_memory: Some(PathBuf::from("/cg/memory")),
            v1_systemd: Some(PathBuf::from("/cg/systemd")),
            unified_controllers: false,
            parents: Vec::new(),
            pids_local_events: false,
        };
        let c = Container {
            id: ID.into(),
            runtime: crate::cgroup::Runtime::Docker,
            pod_uid: None,
            rel_path: PathBuf::from(format!("docker/{ID}")),
            dirs: CgroupDirs {
                pids: Some(PathBuf::from(format!("/cg/pids/docker/{ID}"))),
                memory: Some(PathBuf::from(format!("/cg/memory/docker/{ID}"))),
                procs: Some(PathBuf::from(format!("/cg/pids/docker/{ID}"))),
                memory_v1: true,
            },
        };
        assert_eq!(
            CgroupScope::of(&layout, &c),
            scope(&[
                (Hierarchy::V1("pids".into()), format!("/docker/{ID}")),
                (Hierarchy::V1("memory".into()), format!("/docker/{ID}")),
            ])
        );
    }
}
