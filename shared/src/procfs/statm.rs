//! Resident memory of a process from `/proc/<pid>/statm`, parsed with no
//! I/O and read on its own: by the exporter's group-memory refresh, for the
//! members of the groups it shows, on its own schedule (never every process
//! every collection), and by the kill planner, for the copies it plans.

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
pub fn read_rss(roots: &Roots, pid: i32, page_size: u64) -> Result<Option<u64>> {
    let path = roots.proc.join(pid.to_string()).join("statm");
    // Seven numbers: one read into a buffer on the stack (no size probe,
    // no allocation; this runs for thousands of processes per refresh).
    let mut buf = [0u8; 256];
    let read = std::fs::File::open(&path).and_then(|mut f| {
        let mut n = 0;
        while n < buf.len() {
            match std::io::Read::read(&mut f, &mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    });
    match read.map(|n| String::from_utf8_lossy(&buf[..n])) {
        Ok(s) => match parse_statm_resident(&s) {
            Some(pages) => Ok(Some(pages.saturating_mul(page_size))),
            None => Err(Error::Parse {
                path,
                msg: format!(
                    "expected statm fields, found {:?}",
                    s.trim().chars().take(40).collect::<String>()
                ),
            }),
        },
        Err(e) if is_vanished(&e) => Ok(None),
        Err(e) => Err(Error::read(path, e)),
    }
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
    }
}
