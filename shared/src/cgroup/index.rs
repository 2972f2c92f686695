//! Which containers have their cgroup on this host, from one walk of the
//! cgroup tree shared by every lookup: the remediator asks whether an
//! alert's container runs here, and the runtime layer which runtime made it
//! ([`crate::runtime::Runtimes`]); a new container costs one walk for both.
//!
//! An id the last walk did not show is looked for by a new walk, unless a
//! walk started after the lookup did (it waited for that walk: concurrent
//! lookups share one) or the last walk started less than [`REWALK_AFTER`]
//! ago (a flood of unknown ids costs one walk per interval, not one each).
//! A container removed since the last walk still shows until a walk is
//! made; whoever acts on a container reads it afresh first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{detect_layout, discover, Runtime};
use crate::Roots;

/// The least time between two walks made for unknown ids.
pub const REWALK_AFTER: Duration = Duration::from_millis(250);

/// The containers found by the last walk; see the module docs.
#[derive(Debug)]
pub struct ContainerIndex {
    roots: Roots,
    last: Mutex<Walk>,
}

#[derive(Debug, Default)]
struct Walk {
    /// When it started; `None` before the first.
    started: Option<Instant>,
    /// Container id → the runtime its cgroup path names.
    found: HashMap<String, Runtime>,
}

impl ContainerIndex {
    /// An index of the containers under `roots` (nothing walked yet).
    pub fn new(roots: Roots) -> Self {
        ContainerIndex {
            roots,
            last: Mutex::new(Walk::default()),
        }
    }

    /// The runtime of container `id` when the last walk found it; never
    /// blocks (`None` also while a walk runs): the fast path on async
    /// workers before [`ContainerIndex::lookup`].
    pub fn known(&self, id: &str) -> Option<Runtime> {
        let last = self.last.try_lock().ok()?;
        last.found.get(id).copied()
    }

    /// The runtime of container `id` when its cgroup is on this host.
    /// Blocks for a walk of the cgroup tree when `id` is unknown (see the
    /// module docs): call it off the async workers. A walk that fails keeps
    /// what the last one found.
    pub fn lookup(&self, id: &str) -> Option<Runtime> {
        let asked = Instant::now();
        // Held through the walk: lookups meanwhile wait and share it.
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = last.found.get(id) {
            return Some(*r);
        }
        if let Some(started) = last.started {
            if started >= asked || started.elapsed() < REWALK_AFTER {
                return None;
            }
        }
        last.started = Some(Instant::now());
        match detect_layout(&self.roots).and_then(|layout| discover(&layout)) {
            Ok(found) => {
                last.found = found.into_iter().map(|c| (c.id, c.runtime)).collect();
            }
            Err(e) => tracing::warn!(error = %e, "walking the cgroup tree for containers failed"),
        }
        last.found.get(id).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_ids_walk_again_at_most_once_per_interval() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cgroup.controllers"), "pids memory\n").unwrap();
        let id = "4f1a9c2e8b7d6f5a3c2e1d0b9a8f7e6d5c4b3a2918273645f0e1d2c3b4a59687";
        std::fs::create_dir_all(d.path().join(format!("system.slice/docker-{id}.scope"))).unwrap();
        let index = ContainerIndex::new(Roots::new("/proc", d.path()));
        assert_eq!(index.known(id), None, "nothing walked yet");
        assert_eq!(index.lookup(id), Some(Runtime::Docker));
        assert_eq!(index.known(id), Some(Runtime::Docker));
        // A container that appears later is found by the next walk, which
        // comes no sooner than REWALK_AFTER after the last.
        let late = "c".repeat(64);
        std::fs::create_dir_all(d.path().join(format!("machine.slice/libpod-{late}.scope")))
            .unwrap();
        assert_eq!(index.lookup(&late), None, "no walk per unknown id");
        std::thread::sleep(REWALK_AFTER);
        assert_eq!(index.lookup(&late), Some(Runtime::Podman));
        // Known ids need no walk; a removed one shows until the next walk.
        std::fs::remove_dir(d.path().join(format!("system.slice/docker-{id}.scope"))).unwrap();
        assert_eq!(index.lookup(id), Some(Runtime::Docker));
        std::thread::sleep(REWALK_AFTER);
        assert_eq!(index.lookup(&"d".repeat(64)), None);
        assert_eq!(index.lookup(id), None);
        assert_eq!(index.lookup(&late), Some(Runtime::Podman));
    }

    #[test]
    fn concurrent_lookups_share_one_walk() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cgroup.controllers"), "pids memory\n").unwrap();
        let index = std::sync::Arc::new(ContainerIndex::new(Roots::new("/proc", d.path())));
        let ids: Vec<String> = (0..8).map(|i| format!("{i:x}").repeat(64)).collect();
        for id in &ids {
            std::fs::create_dir_all(d.path().join(format!("system.slice/docker-{id}.scope")))
                .unwrap();
        }
        let found: Vec<Option<Runtime>> = std::thread::scope(|s| {
            let handles: Vec<_> = ids
                .iter()
                .map(|id| {
                    let index = std::sync::Arc::clone(&index);
                    s.spawn(move || index.lookup(id))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            found.iter().all(|r| *r == Some(Runtime::Docker)),
            "{found:?}"
        );
    }
}
