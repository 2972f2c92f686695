//! Resident memory of a process from `/proc/<pid>/statm`, parsed with no
//! I/O and read on its own: by the exporter's group-memory refresh, for the
//! members of the groups it shows, on its own schedule (never every process
//! every collection), and by the kill planner, for the copies it plans.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::is_vanished;
use crate::{Error, Result, Roots};

/// The resident pages of `statm` content (`size resident shared text lib
/// data dt`, in pages): the second field. Pure.
pub fn parse_statm_resident(content: &str) -> Option<u64> {
    content.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Bytes in a page, the unit of `statm`.
pub fn page_size() -> u64 {
    crate::sys::page_size()
}

/// The resident memory (RSS, bytes: the kernel's `VmRSS`) of process `pid`;
/// `Ok(None)` when it vanished. A kernel thread or zombie reads as 0.
///
/// This runs for thousands of processes per refresh: the path is built on
/// the stack (no allocation unless the proc root is very long) and the file
/// is read with one `read` into a stack buffer. `statm` is one seq_file
/// record of seven numbers, far below the buffer, which the kernel hands
/// over whole on the first read; a short read would still parse or fail
/// as a parse error, never be misread.
pub fn read_rss(roots: &Roots, pid: i32, page_size: u64) -> Result<Option<u64>> {
    let mut path_buf = [0u8; 256];
    let owned;
    let path = match statm_path(&mut path_buf, &roots.proc, pid) {
        Some(p) => p,
        None => {
            owned = roots.proc.join(pid.to_string()).join("statm");
            owned.as_path()
        }
    };
    let mut buf = [0u8; 256];
    let read = std::fs::File::open(path).and_then(|mut f| std::io::Read::read(&mut f, &mut buf));
    match read {
        Ok(n) => match std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(parse_statm_resident)
        {
            Some(pages) => Ok(Some(pages.saturating_mul(page_size))),
            None => Err(Error::Parse {
                path: path.to_path_buf(),
                msg: format!(
                    "expected statm fields, found {:?}",
                    String::from_utf8_lossy(&buf[..n])
                        .trim()
                        .chars()
                        .take(40)
                        .collect::<String>()
                ),
            }),
        },
        Err(e) if is_vanished(&e) => Ok(None),
        Err(e) => Err(Error::read(path, e)),
    }
}

/// `<proc>/<pid>/statm` written into `buf`; `None` when it does not fit.
fn statm_path<'a>(buf: &'a mut [u8], proc: &Path, pid: i32) -> Option<&'a Path> {
    let root = proc.as_os_str().as_bytes();
    let mut pid_text = itoa::Buffer::new();
    let pid_text = pid_text.format(pid).as_bytes();
    let parts: [&[u8]; 4] = [root, b"/", pid_text, b"/statm"];
    let mut n = 0;
    for part in parts {
        buf.get_mut(n..n + part.len())?.copy_from_slice(part);
        n += part.len();
    }
    Some(Path::new(OsStr::from_bytes(&buf[..n])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_is_the_second_field() {
        assert_eq!(
            parse_statm_resident("2871 951 817 201 0 127 0\n"),
            Some(951)
        );
        assert_eq!(parse_statm_resident("0 0 0 0 0 0 0\n"), Some(0));
        assert_eq!(parse_statm_resident("2871\n"), None);
        assert_eq!(parse_statm_resident("a b c\n"), None);
    }

    #[test]
    fn reads_under_the_proc_root_and_a_vanished_process_is_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("42")).unwrap();
        std::fs::write(dir.path().join("42/statm"), "2871 951 817 201 0 127 0\n").unwrap();
        let roots = Roots::new(dir.path(), dir.path());
        assert_eq!(read_rss(&roots, 42, 4096).unwrap(), Some(951 * 4096));
        assert_eq!(read_rss(&roots, 43, 4096).unwrap(), None);
        std::fs::write(dir.path().join("42/statm"), "garbage\n").unwrap();
        assert!(matches!(
            read_rss(&roots, 42, 4096),
            Err(Error::Parse { .. })
        ));
        // An empty read (the process exited between open and read) is a
        // parse error naming the file, not a figure.
        std::fs::write(dir.path().join("42/statm"), "").unwrap();
        match read_rss(&roots, 42, 4096) {
            Err(Error::Parse { path, .. }) => assert_eq!(path, dir.path().join("42/statm")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_proc_root_too_long_for_the_stack_path_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("p".repeat(200)).join("q".repeat(200));
        std::fs::create_dir_all(long.join("7")).unwrap();
        std::fs::write(long.join("7/statm"), "10 20 0 0 0 0 0\n").unwrap();
        let roots = Roots::new(&long, dir.path());
        let mut buf = [0u8; 256];
        assert_eq!(statm_path(&mut buf, &long, 7), None);
        assert_eq!(read_rss(&roots, 7, 4096).unwrap(), Some(20 * 4096));
        assert_eq!(read_rss(&roots, 8, 4096).unwrap(), None);
        assert_eq!(
            statm_path(&mut buf, Path::new("/host/proc"), -1),
            Some(Path::new("/host/proc/-1/statm"))
        );
    }
}
