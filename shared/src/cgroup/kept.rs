//! Control files kept open between collections: a file read in one
//! collection is re-read in the next with `pread` at offset 0, which saves
//! its path walk and its `close`. A file that a collection did not read is
//! closed at its end. A kept file of a removed cgroup reads as gone
//! (`ENODEV`); it is dropped and the path opened afresh, so a cgroup
//! removed and created again under the same path (a restarted container) is
//! read anew. Files that do not exist are remembered as missing for as long
//! as they are asked for, so a cgroup v1 directory is not asked every
//! collection for its v2 files.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::is_vanished;
use crate::procfs::reader::read_at_into;
use crate::{Error, Result};

/// Control files kept open, at most `cap` of them.
#[derive(Debug)]
pub struct ControlFiles {
    files: HashMap<PathBuf, Kept>,
    open: usize,
    cap: usize,
    generation: u64,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Kept {
    /// `None`: the file does not exist.
    file: Option<File>,
    generation: u64,
}

impl ControlFiles {
    /// Keeps at most `cap` files open (0: every read opens its file).
    pub fn new(cap: usize) -> Self {
        ControlFiles {
            files: HashMap::new(),
            open: 0,
            cap,
            generation: 0,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Files kept open.
    pub fn open_files(&self) -> usize {
        self.open
    }

    /// Reads a control file whole; `Ok(None)` when it (or its cgroup) does
    /// not exist.
    pub fn read(&mut self, path: &Path) -> Result<Option<String>> {
        let generation = self.generation;
        if let Some(k) = self.files.get_mut(path) {
            k.generation = generation;
            match &k.file {
                None => return Ok(None),
                Some(f) => match read_at_into(f, &mut self.buf, true) {
                    Ok(()) => return Ok(Some(String::from_utf8_lossy(&self.buf).into_owned())),
                    // The cgroup was removed: open the path afresh.
                    Err(e) if is_vanished(&e) => {
                        self.files.remove(path);
                        self.open -= 1;
                    }
                    Err(e) => return Err(Error::read(path, e)),
                },
            }
        }
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if is_vanished(&e) => {
                self.files.insert(
                    path.to_path_buf(),
                    Kept {
                        file: None,
                        generation,
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
        if self.open < self.cap {
            self.open += 1;
            self.files.insert(
                path.to_path_buf(),
                Kept {
                    file: Some(file),
                    generation,
                },
            );
        }
        Ok(Some(String::from_utf8_lossy(&self.buf).into_owned()))
    }

    /// Closes the files (and forgets the missing ones) not read since the
    /// last call. Call once per collection.
    pub fn end_scrape(&mut self) {
        let generation = self.generation;
        let mut closed = 0;
        self.files.retain(|_, k| {
            let keep = k.generation == generation;
            if !keep && k.file.is_some() {
                closed += 1;
            }
            keep
        });
        self.open -= closed;
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
        let mut f = ControlFiles::new(8);
        assert_eq!(f.read(&a).unwrap().as_deref(), Some("3\n"));
        assert_eq!(f.open_files(), 1);
        // Rewritten in place: the kept handle reads the new content.
        std::fs::write(&a, "42\n").unwrap();
        assert_eq!(f.read(&a).unwrap().as_deref(), Some("42\n"));
        let missing = dir.path().join("cgroup.threads");
        assert_eq!(f.read(&missing).unwrap(), None);
        assert_eq!(f.open_files(), 1);
        f.end_scrape();
        // Not read in this collection: closed at its end.
        f.end_scrape();
        assert_eq!(f.open_files(), 0);
        assert!(f.files.is_empty());
        // At the cap, files are read and closed.
        let mut f = ControlFiles::new(0);
        assert_eq!(f.read(&a).unwrap().as_deref(), Some("42\n"));
        assert_eq!(f.open_files(), 0);
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
        let mut f = ControlFiles::new(8);
        assert_eq!(f.read(&max).unwrap().as_deref(), Some("5\n"));
        assert_eq!(f.open_files(), 1);
        // The cgroup is removed and created again under the same path.
        std::fs::remove_dir(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        cg.write("pids", "pids.max", "7");
        assert_eq!(f.read(&max).unwrap().as_deref(), Some("7\n"));
        assert_eq!(f.open_files(), 1);
        // Removed for good: gone.
        std::fs::remove_dir(&dir).unwrap();
        assert_eq!(f.read(&max).unwrap(), None);
    }
}
