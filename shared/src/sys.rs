//! Every raw system call the crate makes, each behind a safe function with
//! its `SAFETY` argument: pidfds (open, signal, poll), the epoll set that
//! learns exits, the open file limit, the filesystem type of a path, a link
//! count asked relative to a kept directory, the allocator's trim settings,
//! and the clocks of `/proc/<pid>/stat`. The rest of the crate holds no
//! `unsafe`.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// The link count of `name` in the directory `dir` (not following a
/// symlink): `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`, a one-component
/// path walk.
pub(crate) fn nlink_at(dir: BorrowedFd<'_>, name: &std::ffi::OsStr) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(name.as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is an open descriptor for the duration of the call,
    // `name` a NUL-terminated string and `st` a writable `stat`.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.st_nlink as u64)
}

/// `pidfd_open(pid, 0)`.
pub(crate) fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new
    // file descriptor or -1; no memory is shared with the kernel.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(ret).map_err(|_| std::io::Error::other("pidfd out of range"))?;
    // SAFETY: `fd` was just returned by the kernel as a new descriptor that
    // nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(pidfd, signal, NULL, 0)`.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal(pidfd, sig, info, flags) with an open pidfd,
    // a null siginfo (the kernel fills in a default one) and no flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether `fd` is readable now (for a pidfd: its process exited), without
/// waiting.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid, initialised pollfd; zero timeout, so no blocking.
    let ret = unsafe { libc::poll(&mut pfd, 1, 0) };
    ret > 0 && pfd.revents & libc::POLLIN != 0
}

/// `epoll_create1(EPOLL_CLOEXEC)`.
pub(crate) fn epoll_create() -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall with a flag; returns a new descriptor or -1.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds `fd` to the epoll set `epoll`, readable events reported with `data`.
/// Closing `fd` takes it out of the set again.
pub(crate) fn epoll_add(
    epoll: BorrowedFd<'_>,
    fd: BorrowedFd<'_>,
    data: u64,
) -> std::io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: data,
    };
    // SAFETY: both descriptors are open; `ev` is a valid event the kernel
    // copies.
    let r = unsafe {
        libc::epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            fd.as_raw_fd(),
            &mut ev,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `epoll_wait(epoll, …, 0)`: the data of at most `max` ready events,
/// appended to `out`, without waiting; returns how many. `buf` is scratch
/// space kept by the caller. An interrupted wait is retried.
pub(crate) fn epoll_ready(
    epoll: BorrowedFd<'_>,
    buf: &mut Vec<libc::epoll_event>,
    max: usize,
    out: &mut Vec<u64>,
) -> std::io::Result<usize> {
    buf.clear();
    buf.reserve(max);
    let max = max.min(buf.capacity()).min(i32::MAX as usize);
    loop {
        // SAFETY: the buffer has room for `max` events; the kernel writes at
        // most that many and returns how many it wrote.
        let n = unsafe { libc::epoll_wait(epoll.as_raw_fd(), buf.as_mut_ptr(), max as i32, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let n = n as usize;
        // SAFETY: the kernel initialised the first n events (n ≤ max ≤ capacity).
        unsafe { buf.set_len(n) };
        out.extend(buf.iter().map(|ev| ev.u64));
        return Ok(n);
    }
}

/// This process's open file limit (`RLIMIT_NOFILE`): (soft, hard).
pub(crate) fn nofile_limit() -> std::io::Result<(u64, u64)> {
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

/// Sets this process's open file limit (`RLIMIT_NOFILE`).
pub(crate) fn set_nofile_limit(soft: u64, hard: u64) -> std::io::Result<()> {
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

/// Bytes in a page (`sysconf(_SC_PAGESIZE)`), the unit of `statm`; 4096
/// when unknown.
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf takes a constant and returns a value.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of `stat`'s
/// times; 100 when unknown.
pub(crate) fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf takes a constant and returns a value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// Time since boot (`CLOCK_BOOTTIME`, the clock of `stat`'s start time);
/// zero when unreadable.
pub(crate) fn since_boot() -> Duration {
    clock_now(libc::CLOCK_BOOTTIME)
}

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`): what a
/// periodic task's log line reports as its cost; zero when unreadable.
pub fn thread_cpu_time() -> Duration {
    clock_now(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// `clock_gettime(clock)`; zero when unreadable.
fn clock_now(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Asks the C allocator to keep the memory a collection freed for the next
/// one instead of handing it back to the kernel after each: a daemon that
/// builds and drops a snapshot and a large exposition every scrape
/// otherwise pays the page faults (and zeroing) of the same pages again at
/// every scrape. Heap tops up to `keep` bytes stay mapped, and blocks below
/// `keep` come from the heap (glibc's `M_TRIM_THRESHOLD` and
/// `M_MMAP_THRESHOLD`; capped by glibc at 32 MiB on 64-bit). Returns whether
/// the allocator took both; elsewhere than glibc it does nothing.
pub fn keep_freed_memory(keep: usize) -> bool {
    #[cfg(target_env = "gnu")]
    {
        let keep = keep.min(32 << 20) as libc::c_int;
        // SAFETY: mallopt only sets allocator parameters; called before the
        // process allocates in earnest, and it is thread-safe in glibc.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, keep) == 1
                && libc::mallopt(libc::M_MMAP_THRESHOLD, keep) == 1
        }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        let _ = keep;
        false
    }
}
