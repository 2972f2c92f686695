//! Control files kept open between collections: a file read in one
//! collection is re-read in the next with `pread` at offset 0, which saves
//! its path walk and its `close`. A file that a collection did not read is
//! closed at its end. A kept file of a removed cgroup reads as gone
//! (`ENODEV`); it is dropped and the path opened afresh, so a cgroup
//! removed and created again under the same path (a restarted container) is
//! read anew. Files that do not exist are remembered as missing for as long
//! as they are asked for, so a cgroup v1 directory is not asked every
//! collection for its v2 files.
//!
//! Limits (`pids.max`, `memory.max`) change only when someone writes them:
//! with [`ControlFiles::set_limits_every`] a kept limit file is re-read at
//! most once per that interval and its last text served in between (so a
//! changed limit shows within the interval), and so is a file the caller
//! knows cannot change now ([`ControlFiles::read_settled`]); every other
//! file is read in every collection. By default (zero) they are read every
//! collection too.
//!
//! The process and thread lists (`cgroup.procs`, `tasks`) are opened afresh
//! on every collection, never kept: on cgroup v1 an open file keeps serving
//! the pid list the kernel built for it (cached for a second after each
//! read, shared by every reader of that cgroup), so a kept handle re-read
//! within a second sees the processes of the last read, not the new ones. Within one collection a file is read once:
//! the files of ancestors shared by every container (`docker/pids.max`) and
//! the subdirectory lists asked for twice are served from the first read.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::hash::BuildHasherDefault;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::is_vanished;
use crate::fasthash::FastHasher;
use crate::procfs::reader::read_at_into;
use crate::procfs::FdPool;
use crate::{Error, Result};

/// Keyed by the path's bytes (hashing a `Path` walks its components).
type ByPath<V> = HashMap<OsString, V, BuildHasherDefault<FastHasher>>;

fn key(p: &Path) -> &OsStr {
    p.as_os_str()
}

/// A control file's text: ASCII, so anything else is an error.
fn text<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|_| Error::Parse {
        path: path.to_path_buf(),
        msg: "not UTF-8".into(),
    })
}

/// Whether a file holds a limit, re-read on its own schedule (see the
/// module docs).
fn is_limit(path: &Path) -> bool {
    matches!(
        path.file_name().and_then(OsStr::to_str),
        Some("pids.max" | "memory.max")
    )
}

/// Whether a file may be kept open (see the module docs).
fn keepable(path: &Path) -> bool {
    !matches!(
        path.file_name().and_then(OsStr::to_str),
        Some("cgroup.procs" | "tasks" | "cgroup.threads")
    )
}

/// Control files kept open, as many as the pool gives.
#[derive(Debug)]
pub struct ControlFiles {
    files: ByPath<Kept>,
    /// Subdirectory lists read in this collection.
    dirs: ByPath<Option<Vec<String>>>,
    /// Parents of the directories whose subdirectories were asked, kept
    /// open (`O_PATH`) to ask their children's link counts.
    parents: ByPath<KeptDir>,
    open: usize,
    pool: FdPool,
    generation: u64,
    buf: Vec<u8>,
    /// How long a kept limit file's text is served before it is re-read.
    limits_every: Duration,
}

#[derive(Debug)]
struct Kept {
    /// `None`: the file does not exist.
    file: Option<File>,
    generation: u64,
    /// What it read last, its buffer reused by the next read.
    content: Vec<u8>,
    /// Whether `content` was read in this collection.
    fresh: bool,
    /// When `content` was read from the file.
    read_at: Instant,
}

/// A directory kept open to ask its children's link counts.
#[derive(Debug)]
struct KeptDir {
    /// `None`: no descriptor to spare; ask by path.
    fd: Option<File>,
    generation: u64,
}

/// What a kept entry gave for a path.
enum Got {
    /// Its content of this collection is in the entry.
    Content,
    /// The file does not exist.
    Missing,
    /// Not kept (or its cgroup removed): open the path.
    Open,
}

impl ControlFiles {
    /// Keeps files open as long as `pool` has descriptors (when it has
    /// none, every read opens its file).
    pub fn new(pool: FdPool) -> Self {
        ControlFiles {
            files: ByPath::default(),
            dirs: ByPath::default(),
            parents: ByPath::default(),
            open: 0,
            pool,
            generation: 0,
            buf: Vec::with_capacity(4096),
            limits_every: Duration::ZERO,
        }
    }

    /// Re-reads a kept limit file (`pids.max`, `memory.max`) at most once
    /// per `every`, serving its last text in between (zero: every
    /// collection, the default).
    pub fn set_limits_every(&mut self, every: Duration) {
        self.limits_every = every;
    }

    /// Files kept open.
    pub fn open_files(&self) -> usize {
        self.open
    }

    /// Reads a control file whole; `Ok(None)` when it (or its cgroup) does
    /// not exist. The text lives until the next read.
    pub fn read(&mut self, path: &Path) -> Result<Option<&str>> {
        self.read_with(path, is_limit(path))
    }

    /// [`ControlFiles::read`] of a file the caller knows cannot change
    /// now (a counter of events that cannot happen): like a limit, a kept
    /// file's last text is served for up to the limits' interval (so a
    /// cgroup made again under the same path is read anew within it).
    pub fn read_settled(&mut self, path: &Path) -> Result<Option<&str>> {
        self.read_with(path, true)
    }

    fn read_with(&mut self, path: &Path, settled: bool) -> Result<Option<&str>> {
        let generation = self.generation;
        let limits_every = self.limits_every;
        let got = match self.files.get_mut(key(path)) {
            None => Got::Open,
            Some(k) => {
                k.generation = generation;
                match &k.file {
                    _ if k.fresh => Got::Content,
                    None => Got::Missing,
                    Some(_)
                        if !limits_every.is_zero()
                            && settled
                            && k.read_at.elapsed() < limits_every =>
                    {
                        k.fresh = true;
                        Got::Content
                    }
                    Some(f) => match read_at_into(f, &mut k.content, true) {
                        Ok(()) => {
                            k.fresh = true;
                            k.read_at = Instant::now();
                            Got::Content
                        }
                        // The cgroup was removed: open the path afresh.
                        Err(e) if is_vanished(&e) => {
                            self.files.remove(key(path));
                            self.open -= 1;
                            self.pool.give(1);
                            Got::Open
                        }
                        Err(e) => return Err(Error::read(path, e)),
                    },
                }
            }
        };
        match got {
            Got::Missing => return Ok(None),
            Got::Content => {
                let k = &self.files[key(path)];
                return text(path, &k.content).map(Some);
            }
            Got::Open => {}
        }
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if is_vanished(&e) => {
                self.files.insert(
                    key(path).to_owned(),
                    Kept {
                        file: None,
                        generation,
                        content: Vec::new(),
                        fresh: false,
                        read_at: Instant::now(),
                    },
                );
                return Ok(None);
            }
            Err(e) => return Err(Error::read(path, e)),
        };
        match read_at_into(&file, &mut self.buf, true) {
            Ok(()) => {}
            Err(e) if is_vanished(&e) => return Ok(None),
            Err(e) => return Err(Error::read(path, e)),
        }
        if keepable(path) && self.pool.take() {
            self.open += 1;
            let k = self.files.entry(key(path).to_owned()).or_insert(Kept {
                file: Some(file),
                generation,
                content: Vec::new(),
                fresh: true,
                read_at: Instant::now(),
            });
            k.content.clone_from(&self.buf);
            return text(path, &k.content).map(Some);
        }
        text(path, &self.buf).map(Some)
    }

    /// The subdirectory names of `dir`, listed once per collection;
    /// `Ok(None)` when `dir` vanished.
    pub fn subdirs(&mut self, dir: &Path) -> Result<Option<Vec<String>>> {
        if let Some(d) = self.dirs.get(key(dir)) {
            return Ok(d.clone());
        }
        // A directory's link count is 2 plus its subdirectories on cgroupfs
        // (kernfs), ext4 and tmpfs: 2 means none, without listing it.
        let found = match self.nlink(dir) {
            Ok(Some(2)) => Some(Vec::new()),
            Ok(Some(_)) => super::discover::subdirs(dir)?,
            Ok(None) => None,
            Err(e) => return Err(Error::read(dir, e)),
        };
        self.dirs.insert(key(dir).to_owned(), found.clone());
        Ok(found)
    }

    /// The link count of `dir`, `None` when it vanished. Asked relative to
    /// its parent kept open (a one-component walk instead of the whole
    /// path; every container's directory shares a parent); without a kept
    /// parent (no descriptor to spare), by the path. A kept parent that was
    /// removed (and perhaps made again) answers `ENOENT` for every name: the
    /// path then decides, and a parent found stale is dropped.
    fn nlink(&mut self, dir: &Path) -> std::io::Result<Option<u64>> {
        use std::os::unix::fs::MetadataExt;
        let by_path = |dir: &Path| match std::fs::symlink_metadata(dir) {
            Ok(m) => Ok(Some(m.nlink())),
            Err(e) if is_vanished(&e) => Ok(None),
            Err(e) => Err(e),
        };
        let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
            return by_path(dir);
        };
        let generation = self.generation;
        if !self.parents.contains_key(key(parent)) {
            let fd = if self.pool.take() {
                let opened = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                    .open(parent);
                match opened {
                    Ok(f) => Some(f),
                    Err(_) => {
                        self.pool.give(1);
                        None
                    }
                }
            } else {
                None
            };
            self.parents
                .insert(key(parent).to_owned(), KeptDir { fd, generation });
        }
        let kept = self.parents.get_mut(key(parent)).expect("inserted above");
        kept.generation = generation;
        let Some(fd) = kept.fd.as_ref() else {
            return by_path(dir);
        };
        match crate::sys::nlink_at(std::os::fd::AsFd::as_fd(fd), name) {
            Ok(n) => Ok(Some(n)),
            Err(e) if is_vanished(&e) => {
                let got = by_path(dir)?;
                if got.is_some() {
                    // The path names a directory the kept parent does not
                    // hold: the parent was made again.
                    self.parents.remove(key(parent));
                    self.pool.give(1);
                }
                Ok(got)
            }
            Err(e) => Err(e),
        }
    }

    /// Closes the files (and forgets the missing ones) not read since the
    /// last call. Call once per collection.
    pub fn end_scrape(&mut self) {
        let generation = self.generation;
        let mut closed = 0;
        self.dirs.clear();
        let mut closed_dirs = 0;
        self.parents.retain(|_, d| {
            let keep = d.generation == generation;
            if !keep && d.fd.is_some() {
                closed_dirs += 1;
            }
            keep
        });
        self.pool.give(closed_dirs);
        self.files.retain(|_, k| {
            k.fresh = false;
            let keep = k.generation == generation;
            if !keep && k.file.is_some() {
                closed += 1;
            }
            keep
        });
        self.open -= closed;
        self.pool.give(closed);
        self.generation = generation.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_files_are_reread_missing_ones_remembered_and_unused_ones_closed() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("pids.current");
        std::fs::write(&a, "3\n").unwrap();
        let mut f = ControlFiles::new(FdPool::fixed(8));
        assert_eq!(f.read(&a).unwrap(), Some("3\n"));
        assert_eq!(f.open_files(), 1);
        // Within one collection the first read serves.
        std::fs::write(&a, "42\n").unwrap();
        assert_eq!(f.read(&a).unwrap(), Some("3\n"));
        // In the next, the kept handle reads the content rewritten in place.
        f.end_scrape();
        assert_eq!(f.read(&a).unwrap(), Some("42\n"));
        let missing = dir.path().join("cgroup.threads");
        assert_eq!(f.read(&missing).unwrap(), None);
        assert_eq!(f.open_files(), 1);
        f.end_scrape();
        // Not read in this collection: closed at its end.
        f.end_scrape();
        assert_eq!(f.open_files(), 0);
        assert!(f.files.is_empty());
        // At the cap, files are read and closed.
        let mut f = ControlFiles::new(FdPool::fixed(0));
        assert_eq!(f.read(&a).unwrap(), Some("42\n"));
        assert_eq!(f.open_files(), 0);
    }

    #[test]
    fn limits_are_reread_once_per_interval_other_files_every_collection() {
        let dir = tempfile::tempdir().unwrap();
        let max = dir.path().join("pids.max");
        let cur = dir.path().join("pids.current");
        std::fs::write(&max, "100\n").unwrap();
        std::fs::write(&cur, "3\n").unwrap();
        let mut f = ControlFiles::new(FdPool::fixed(8));
        f.set_limits_every(Duration::from_secs(3600));
        assert_eq!(f.read(&max).unwrap(), Some("100\n"));
        assert_eq!(f.read(&cur).unwrap(), Some("3\n"));
        f.end_scrape();
        std::fs::write(&max, "200\n").unwrap();
        std::fs::write(&cur, "4\n").unwrap();
        // Within the interval the limit's last text is served, the counter
        // is read afresh.
        assert_eq!(f.read(&max).unwrap(), Some("100\n"));
        assert_eq!(f.read(&cur).unwrap(), Some("4\n"));
        f.end_scrape();
        // Past the interval (here: none), the limit is read again.
        f.set_limits_every(Duration::ZERO);
        assert_eq!(f.read(&max).unwrap(), Some("200\n"));
    }

    #[test]
    fn link_counts_are_asked_through_the_kept_parent_and_a_parent_made_again_is_noticed() {
        if !pidwarden_tests::require_cgroups() {
            return;
        }
        let cg = pidwarden_tests::TestCgroup::new(&["pids"], "parent");
        let parent = cg.path("pids").join("parent");
        let child = parent.join("child");
        std::fs::create_dir_all(&child).unwrap();
        let mut f = ControlFiles::new(FdPool::fixed(8));
        assert_eq!(f.subdirs(&child).unwrap(), Some(Vec::new()));
        f.end_scrape();
        std::fs::create_dir(child.join("a")).unwrap();
        assert_eq!(f.subdirs(&child).unwrap(), Some(vec!["a".to_string()]));
        f.end_scrape();
        // The parent is removed and made again, with a child of the same
        // name that holds a subdirectory: the kept parent (removed) knows
        // no such child, the path does.
        std::fs::remove_dir(child.join("a")).unwrap();
        std::fs::remove_dir(&child).unwrap();
        std::fs::remove_dir(&parent).unwrap();
        std::fs::create_dir_all(child.join("b")).unwrap();
        assert_eq!(f.subdirs(&child).unwrap(), Some(vec!["b".to_string()]));
        f.end_scrape();
        // and the parent is opened afresh.
        std::fs::remove_dir(child.join("b")).unwrap();
        assert_eq!(f.subdirs(&child).unwrap(), Some(Vec::new()));
        f.end_scrape();
        // A child removed is gone, through the kept parent.
        std::fs::remove_dir(&child).unwrap();
        assert_eq!(f.subdirs(&child).unwrap(), None);
        std::fs::remove_dir(&parent).unwrap();
        // Unused, the parent is closed: every descriptor is back.
        f.end_scrape();
        f.end_scrape();
        assert!(f.parents.is_empty());
    }

    #[test]
    fn a_kept_file_of_a_removed_cgroup_is_opened_afresh() {
        if !pidwarden_tests::require_cgroups() {
            return;
        }
        let cg = pidwarden_tests::TestCgroup::new(&["pids"], "again");
        let dir = cg.path("pids");
        let max = dir.join("pids.max");
        cg.write("pids", "pids.max", "5");
        let mut f = ControlFiles::new(FdPool::fixed(8));
        assert_eq!(f.read(&max).unwrap(), Some("5\n"));
        assert_eq!(f.open_files(), 1);
        assert_eq!(f.subdirs(&dir).unwrap(), Some(Vec::new()));
        f.end_scrape();
        // The cgroup is removed and created again under the same path.
        std::fs::remove_dir(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        cg.write("pids", "pids.max", "7");
        std::fs::create_dir(dir.join("sub")).unwrap();
        assert_eq!(f.read(&max).unwrap(), Some("7\n"));
        assert_eq!(f.open_files(), 1);
        assert_eq!(f.subdirs(&dir).unwrap(), Some(vec!["sub".to_string()]));
        f.end_scrape();
        // Removed for good: gone.
        std::fs::remove_dir(dir.join("sub")).unwrap();
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(f.read(&max).unwrap(), None);
        assert_eq!(f.subdirs(&dir).unwrap(), None);
    }
}
