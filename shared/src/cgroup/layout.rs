//! Recognising how the cgroup filesystem is mounted under the cgroup root,
//! from the files found there (no `/proc/mounts`, so fixture trees work),
//! and the one cgroup2 mount option that changes what a file means
//! (`pids_localevents`, from the proc root's `self/mountinfo`).

use std::path::{Path, PathBuf};

use super::Layout;
use crate::{Error, Result, Roots};

fn exists(path: &Path) -> Result<bool> {
    match path.try_exists() {
        Ok(b) => Ok(b),
        Err(e) if crate::error::is_vanished(&e) => Ok(false),
        Err(e) => Err(Error::read(path, e)),
    }
}

/// `<root>/<name>` when it is the root of a mounted cgroup hierarchy (it has
/// the given marker file).
fn hierarchy(root: &Path, name: &str, marker: &str) -> Result<Option<PathBuf>> {
    let dir = root.join(name);
    Ok(exists(&dir.join(marker))?.then_some(dir))
}

/// Recognises the hierarchies mounted under `roots.cgroup`:
///
/// - pure cgroup v2: `<root>/cgroup.controllers` exists; the unified tree is
///   the root and carries the controllers;
/// - cgroup v1 or hybrid: `<root>/pids`, `<root>/memory` and the named
///   `<root>/systemd` hierarchies (each recognised by its `cgroup.procs`), and
///   on hybrid hosts `<root>/unified` (recognised by its `cgroup.controllers`),
///   which then carries no pids/memory controllers.
///
/// [`Error::NoCgroupFs`] when none of these is found.
pub fn detect_layout(roots: &Roots) -> Result<Layout> {
    let root = roots.cgroup.as_path();
    if exists(&root.join("cgroup.controllers"))? {
        return Ok(Layout {
            unified: Some(root.to_path_buf()),
            v1_pids: None,
            v1_memory: None,
            v1_systemd: None,
            unified_controllers: true,
            parents: roots.cgroup_parents.clone(),
            pids_local_events: pids_local_events(roots),
        });
    }
    let layout = Layout {
        unified: hierarchy(root, "unified", "cgroup.controllers")?,
        v1_pids: hierarchy(root, "pids", "cgroup.procs")?,
        v1_memory: hierarchy(root, "memory", "cgroup.procs")?,
        v1_systemd: hierarchy(root, "systemd", "cgroup.procs")?,
        unified_controllers: false,
        parents: roots.cgroup_parents.clone(),
        pids_local_events: false,
    };
    if layout.unified.is_none()
        && layout.v1_pids.is_none()
        && layout.v1_memory.is_none()
        && layout.v1_systemd.is_none()
    {
        return Err(Error::NoCgroupFs(root.to_path_buf()));
    }
    Ok(layout)
}

/// Whether cgroup2 is mounted with `pids_localevents`, read from
/// `<proc root>/self/mountinfo`. The option is global (every cgroup2 mount,
/// bind mounts into a container included, shows it), so the mounts of the
/// reading process tell. `false` when mountinfo is unreadable or lists no
/// cgroup2 (fixture trees): the kernel's default.
pub fn pids_local_events(roots: &Roots) -> bool {
    std::fs::read_to_string(roots.proc.join("self/mountinfo"))
        .ok()
        .and_then(|m| super::parse::cgroup2_pids_local_events(&m))
        .unwrap_or(false)
}

impl Layout {
    /// The root of the hierarchy that `dir` belongs to: the longest of the
    /// layout's hierarchy roots that is a prefix of `dir`.
    pub fn hierarchy_root(&self, dir: &Path) -> Option<&Path> {
        [
            &self.unified,
            &self.v1_pids,
            &self.v1_memory,
            &self.v1_systemd,
        ]
        .into_iter()
        .flatten()
        .filter(|r| dir.starts_with(r))
        .max_by_key(|r| r.components().count())
        .map(PathBuf::as_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(p: &Path) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "").unwrap();
    }

    #[test]
    fn pure_v2() {
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("cgroup.controllers"));
        let l = detect_layout(&Roots::new("/proc", t.path())).unwrap();
        assert_eq!(l.unified.as_deref(), Some(t.path()));
        assert!(l.unified_controllers);
        assert_eq!((l.v1_pids, l.v1_memory, l.v1_systemd), (None, None, None));
    }

    #[test]
    fn hybrid() {
        let t = tempfile::tempdir().unwrap();
        for f in [
            "pids/cgroup.procs",
            "memory/cgroup.procs",
            "systemd/cgroup.procs",
            "unified/cgroup.controllers",
        ] {
            touch(&t.path().join(f));
        }
        // an empty mount point is not a hierarchy
        fs::create_dir(t.path().join("cpu")).unwrap();
        let l = detect_layout(&Roots::new("/proc", t.path())).unwrap();
        assert_eq!(l.unified, Some(t.path().join("unified")));
        assert_eq!(l.v1_pids, Some(t.path().join("pids")));
        assert_eq!(l.v1_memory, Some(t.path().join("memory")));
        assert_eq!(l.v1_systemd, Some(t.path().join("systemd")));
        assert!(!l.unified_controllers);
        let dir = t.path().join("pids/docker/x");
        assert_eq!(
            l.hierarchy_root(&dir),
            Some(t.path().join("pids").as_path())
        );
        assert_eq!(l.hierarchy_root(Path::new("/elsewhere")), None);
    }

    #[test]
    fn v1_without_unified() {
        let t = tempfile::tempdir().unwrap();
        touch(&t.path().join("pids/cgroup.procs"));
        let l = detect_layout(&Roots::new("/proc", t.path())).unwrap();
        assert_eq!(l.v1_pids, Some(t.path().join("pids")));
        assert_eq!(l.unified, None);
        assert_eq!(l.v1_memory, None);
    }

    #[test]
    fn nothing_recognised() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("pids")).unwrap();
        let err = detect_layout(&Roots::new("/proc", t.path())).unwrap_err();
        assert!(
            matches!(err, Error::NoCgroupFs(ref p) if p == t.path()),
            "{err}"
        );
        let err = detect_layout(&Roots::new("/proc", t.path().join("missing"))).unwrap_err();
        assert!(matches!(err, Error::NoCgroupFs(_)), "{err}");
    }
}
