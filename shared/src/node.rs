//! The node's own PID figures: tasks on the node and the kernel's limits on
//! them, plus the boot time that turns a process's start time into a Unix
//! time. Parsing is split from reading; every file is read under the proc
//! root given.
//!
//! - tasks: the 4th field of `<proc>/loadavg` (`running/total`): `total` is
//!   the kernel's `nr_threads`, every task (thread) on the node, which is
//!   what `kernel.threads-max` caps and what the PID allocator hands out
//!   numbers to. It is not namespaced: a daemon in a container reading the
//!   host's `/proc` sees the node's count.
//! - limit: the smaller of `<proc>/sys/kernel/pid_max` and
//!   `<proc>/sys/kernel/threads-max`: a fork fails at whichever comes first.
//! - boot time: `btime` in `<proc>/stat` (seconds since the epoch).
//!
//! A proc root without these files (a fixture tree) has no node figures:
//! `Ok(None)`, not an error.

use std::path::Path;

use serde::Serialize;

use crate::error::is_vanished;
use crate::{Error, Result, Roots};

/// The node's task count and limits, as read in one collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NodeStats {
    /// Tasks (threads) on the node (`loadavg`'s total).
    pub tasks: u64,
    /// `kernel.pid_max`.
    pub pid_max: u64,
    /// `kernel.threads-max`.
    pub threads_max: u64,
    /// Boot time, seconds since the epoch (`btime` of `<proc>/stat`).
    pub boot_time: u64,
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`): the unit of a
    /// process's start time.
    pub ticks_per_second: u64,
}

impl NodeStats {
    /// The effective limit: the smaller of `pid_max` and `threads-max`.
    pub fn limit(&self) -> u64 {
        self.pid_max.min(self.threads_max)
    }

    /// What is left before the limit (0 at or past it).
    pub fn headroom(&self) -> u64 {
        self.limit().saturating_sub(self.tasks)
    }

    /// The Unix time (seconds) of a start time given in clock ticks since
    /// boot (`stat` field 22).
    pub fn start_time_unix(&self, start_ticks: u64) -> f64 {
        start_time_unix(self.boot_time, self.ticks_per_second, start_ticks)
    }
}

/// The Unix time (seconds) of `start_ticks` clock ticks after `boot_time`,
/// at `ticks_per_second` (100 when 0 is given). Pure.
pub fn start_time_unix(boot_time: u64, ticks_per_second: u64, start_ticks: u64) -> f64 {
    let hz = if ticks_per_second == 0 {
        100
    } else {
        ticks_per_second
    };
    boot_time as f64 + (start_ticks / hz) as f64 + (start_ticks % hz) as f64 / hz as f64
}

/// The task total of `loadavg` content (`0.00 0.01 0.05 2/311 4242`). Pure.
pub fn parse_loadavg_tasks(content: &str) -> Option<u64> {
    let field = content.split_ascii_whitespace().nth(3)?;
    let (_, total) = field.split_once('/')?;
    total.parse().ok()
}

/// `btime` of `<proc>/stat` content. Pure.
pub fn parse_btime(content: &str) -> Option<u64> {
    content
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// A single-number sysctl file's content. Pure.
pub fn parse_sysctl_u64(content: &str) -> Option<u64> {
    content.trim().parse().ok()
}

/// A file's content; `Ok(None)` when it does not exist (a proc root that is
/// a fixture tree without node files).
fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if is_vanished(&e) => Ok(None),
        Err(e) => Err(Error::read(path, e)),
    }
}

fn parse_err(path: &Path, what: &str, content: &str) -> Error {
    let shown: String = content.trim().chars().take(40).collect();
    Error::Parse {
        path: path.to_path_buf(),
        msg: format!("expected {what}, found {shown:?}"),
    }
}

/// Reads the node's boot time (`btime` of `<proc>/stat`); it does not
/// change while the node runs, so read it once. `Ok(None)` when the file
/// does not exist.
pub fn read_boot_time(roots: &Roots) -> Result<Option<u64>> {
    let path = roots.proc.join("stat");
    let Some(s) = read(&path)? else {
        return Ok(None);
    };
    parse_btime(&s)
        .map(Some)
        .ok_or_else(|| parse_err(&path, "a btime line", &s))
}

/// The clock ticks per second process start times are counted in.
pub fn ticks_per_second() -> u64 {
    crate::sys::clock_ticks_per_sec()
}

/// Reads the node's tasks and limits under `roots.proc`, with the boot time
/// given (see [`read_boot_time`]). `Ok(None)` when one of the files does
/// not exist (a proc root without them); a file that does not parse is an
/// error naming it.
pub fn read_node(roots: &Roots, boot_time: u64) -> Result<Option<NodeStats>> {
    let loadavg = roots.proc.join("loadavg");
    let Some(s) = read(&loadavg)? else {
        return Ok(None);
    };
    let tasks =
        parse_loadavg_tasks(&s).ok_or_else(|| parse_err(&loadavg, "running/total tasks", &s))?;
    let kernel = roots.proc.join("sys").join("kernel");
    let sysctl = |name: &str| -> Result<Option<u64>> {
        let path = kernel.join(name);
        let Some(s) = read(&path)? else {
            return Ok(None);
        };
        parse_sysctl_u64(&s)
            .map(Some)
            .ok_or_else(|| parse_err(&path, "an unsigned number", &s))
    };
    let (Some(pid_max), Some(threads_max)) = (sysctl("pid_max")?, sysctl("threads-max")?) else {
        return Ok(None);
    };
    Ok(Some(NodeStats {
        tasks,
        pid_max,
        threads_max,
        boot_time,
        ticks_per_second: ticks_per_second(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadavg_total_is_the_task_count() {
        assert_eq!(
            parse_loadavg_tasks("0.00 0.01 0.05 2/311 4242\n"),
            Some(311)
        );
        assert_eq!(parse_loadavg_tasks("3.01 1.83 2.28 3/155 12307"), Some(155));
        assert_eq!(parse_loadavg_tasks("0.00 0.01 0.05 311 4242\n"), None);
        assert_eq!(parse_loadavg_tasks("0.00 0.01\n"), None);
        assert_eq!(parse_loadavg_tasks(""), None);
        assert_eq!(parse_loadavg_tasks("0.00 0.01 0.05 2/x 4242"), None);
    }

    #[test]
    fn btime_is_found_among_the_stat_lines() {
        let stat = "cpu  7442 0 4012 1233444 313 0 133 0 0 0\n\
                    cpu0 3721 0 2006 616722 156 0 66 0 0 0\n\
                    intr 2486210 9 0 0\nctxt 4456601\nbtime 1796661192\n\
                    processes 26133\nprocs_running 1\nprocs_blocked 0\n";
        assert_eq!(parse_btime(stat), Some(1796661192));
        assert_eq!(parse_btime("cpu 1 2 3\n"), None);
        assert_eq!(parse_btime("btime soon\n"), None);
    }

    #[test]
    fn limit_is_the_smaller_and_headroom_floors_at_zero() {
        let n = NodeStats {
            tasks: 300,
            pid_max: 4_194_304,
            threads_max: 192_740,
            boot_time: 1_700_000_000,
            ticks_per_second: 100,
        };
        assert_eq!(n.limit(), 192_740);
        assert_eq!(n.headroom(), 192_440);
        let full = NodeStats {
            tasks: 40_000,
            pid_max: 32_768,
            ..n
        };
        assert_eq!(full.limit(), 32_768);
        assert_eq!(full.headroom(), 0);
        assert_eq!(parse_sysctl_u64("32768\n"), Some(32768));
        assert_eq!(parse_sysctl_u64("-1\n"), None);
    }

    #[test]
    fn start_ticks_become_unix_time() {
        assert_eq!(start_time_unix(1_700_000_000, 100, 0), 1_700_000_000.0);
        assert_eq!(
            start_time_unix(1_700_000_000, 100, 12_345),
            1_700_000_123.45
        );
        assert_eq!(start_time_unix(1_700_000_000, 250, 500), 1_700_000_002.0);
        assert_eq!(start_time_unix(1_700_000_000, 0, 150), 1_700_000_001.5);
    }

    #[test]
    fn reads_literal_files_under_a_proc_root() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("sys/kernel");
        std::fs::create_dir_all(&kernel).unwrap();
        std::fs::write(dir.path().join("loadavg"), "0.10 0.20 0.30 4/977 5555\n").unwrap();
        std::fs::write(kernel.join("pid_max"), "4194304\n").unwrap();
        std::fs::write(kernel.join("threads-max"), "62811\n").unwrap();
        std::fs::write(dir.path().join("stat"), "cpu 1 2 3\nbtime 1700000000\n").unwrap();
        let roots = Roots::new(dir.path(), dir.path());
        let boot = read_boot_time(&roots).unwrap().unwrap();
        assert_eq!(boot, 1_700_000_000);
        let n = read_node(&roots, boot).unwrap().unwrap();
        assert_eq!(
            (n.tasks, n.pid_max, n.threads_max, n.limit(), n.headroom()),
            (977, 4_194_304, 62_811, 62_811, 62_811 - 977)
        );
        // A malformed file is an error naming it; a missing one too.
        std::fs::write(kernel.join("pid_max"), "lots\n").unwrap();
        match read_node(&roots, boot) {
            Err(Error::Parse { path, .. }) => assert_eq!(path, kernel.join("pid_max")),
            other => panic!("{other:?}"),
        }
        // A proc root without the files (a fixture tree) has no node figures.
        std::fs::remove_file(dir.path().join("loadavg")).unwrap();
        assert_eq!(read_node(&roots, boot).unwrap(), None);
        std::fs::remove_file(dir.path().join("stat")).unwrap();
        assert_eq!(read_boot_time(&roots).unwrap(), None);
    }
}
