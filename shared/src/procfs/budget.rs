//! The file descriptor budget: how many descriptors the process reader may
//! hold open (kept `stat` handles, pidfds) below the open file limit, and
//! raising that limit at startup.

use std::path::Path;

use crate::Roots;

/// File descriptors a process keeps free for everything else (sockets,
/// cgroup files, the runtime's connections) when handles are kept.
pub const RESERVED_FDS: u64 = 512;

/// How many `stat` handles readers over `roots` may keep open in all: the
/// soft `RLIMIT_NOFILE` limit less [`RESERVED_FDS`] when the proc root is a
/// real procfs, 0 otherwise (a kept handle to a plain file would never see
/// the file replaced or removed, so fixture trees are always re-opened).
pub fn kept_handle_budget(roots: &Roots) -> usize {
    if !is_procfs(&roots.proc) {
        return 0;
    }
    let Ok((soft, _)) = nofile_limit() else {
        return 0;
    };
    usize::try_from(soft.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX)
}

/// This process's open file limit (`RLIMIT_NOFILE`): (soft, hard).
pub fn nofile_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Whether `path` is on a proc filesystem.
pub(crate) fn is_procfs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statfs is a valid value to be overwritten.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    st.f_type == libc::PROC_SUPER_MAGIC
}

/// Raises the soft `RLIMIT_NOFILE` limit to the hard one: the process reader
/// keeps descriptors per process below it. Returns the (old, new) soft limit.
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let (soft, hard) = nofile_limit()?;
    if soft < hard {
        set_nofile_soft_limit(hard)?;
    }
    Ok((soft, soft.max(hard)))
}

/// Sets the soft `RLIMIT_NOFILE` limit, keeping the hard one.
pub fn set_nofile_soft_limit(soft: u64) -> std::io::Result<()> {
    let (_, hard) = nofile_limit()?;
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_proc_keeps_handles_and_fixture_trees_do_not() {
        assert!(kept_handle_budget(&Roots::default()) > 0);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(kept_handle_budget(&Roots::new(dir.path(), dir.path())), 0);
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let (old, new) = raise_nofile_limit().unwrap();
        assert!(new >= old);
        let (soft, hard) = nofile_limit().unwrap();
        assert_eq!((soft, hard), (new, new));
    }
}
