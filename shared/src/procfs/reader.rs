//! Reading processes from `/proc`, cheaply: what cannot change for a live
//! process (its command line and start time) is cached by (pid, start time),
//! so a scrape of an unchanged host re-reads only what can change. This is
//! the full-scan reader (`--collect-mode full`), the oracle of the
//! incremental [`super::table`], and its fallback.
//!
//! Reading goes through one reusable buffer per [`ProcessReader`]. A
//! command line is read in pieces into a [`CmdlineBuilder`], which keeps its
//! first [`super::parse::CMDLINE_PREFIX`] bytes and hashes the rest: what a
//! process puts on its command line costs a bounded amount of memory.
//! Everything a process controls is parsed as bytes; a process that cannot
//! be read all the same is left out and its error kept
//! ([`ProcessReader::take_skipped`]), never failing its container.
//!
//! On a real procfs the reader also keeps each process's `stat` file open
//! between scrapes and re-reads it with `pread` at offset 0, which saves the
//! path walk of `open` and the `close` per process per scrape. A kept handle
//! is bound to the process (its `struct pid`), not to the path: once the
//! process is reaped it reads `ESRCH` (or nothing) and is dropped, and it can
//! never show a later process that got the same PID.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::budget::FdPool;
use super::parse::{
    comm_text, parse_children, parse_nspid, parse_stat_ref, Cmdline, CmdlineBuilder, ProcState,
    StatRef,
};
use crate::error::is_vanished;
use crate::{Error, Result, Roots};

/// One process as read from `/proc/<pid>/stat` and `/proc/<pid>/cmdline`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    /// PID in the namespace of the proc root.
    pub pid: i32,
    /// Parent PID.
    pub ppid: i32,
    /// Start time in clock ticks since boot (`stat` field 22): with the pid,
    /// it identifies a process across PID reuse.
    pub start_time: u64,
    /// State (serialised as its letter: `R`, `S`, `D`, `Z`, …).
    pub state: ProcState,
    /// `comm`: the executable name, at most 15 bytes.
    pub comm: Arc<str>,
    /// Command line, its arguments kept apart (compare it exactly, show it
    /// with [`Cmdline::display`]); empty for kernel threads and zombies (a
    /// process that became a zombie since it was last read loses its command
    /// line too, so zombies read the same whenever they were first seen).
    pub cmdline: Cmdline,
    /// Threads in the process.
    pub threads: u64,
    /// user + system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// user + system CPU time of its children that it waited for (reaped),
    /// in clock ticks (`cutime` + `cstime`): the work a process does through
    /// short-lived subprocesses, which never show up on their own.
    pub child_cpu_ticks: u64,
}

impl Process {
    /// Whether the process is a zombie (exited, not yet reaped).
    pub fn is_zombie(&self) -> bool {
        self.state.is_zombie()
    }
}

/// Reads a whole file into `buf` (cleared first), reusing its capacity.
pub(super) fn read_into(path: &Path, buf: &mut Vec<u8>, line: bool) -> std::io::Result<()> {
    open_read(path, buf, line).map(drop)
}

/// Opens `path` and reads it whole into `buf`; returns the open file.
pub(super) fn open_read(path: &Path, buf: &mut Vec<u8>, line: bool) -> std::io::Result<File> {
    buf.clear();
    let file = File::open(path)?;
    read_at_into(&file, buf, line)?;
    Ok(file)
}

/// The longest first read that [`read_at_into`] may take as a whole file.
pub(crate) const SHORT_READ: usize = 2048;

/// Reads a whole file from offset 0 into `buf` (cleared first) with `pread`,
/// reusing its capacity; the file can be read again the same way (a kept
/// `stat` handle). With `line`, a first read of at most [`SHORT_READ`]
/// bytes that ends in a newline with room to spare is taken as the end of
/// the file: a proc or cgroup file is produced a page at most per read, in
/// whole records, so a short read is the end unless a record could be
/// missing (then a page ends short by less than a record: never below half
/// a page with these files' records). That saves the second read that
/// would return 0.
pub(crate) fn read_at_into(file: &File, buf: &mut Vec<u8>, line: bool) -> std::io::Result<()> {
    buf.clear();
    if buf.capacity() < 1024 {
        buf.reserve(1024);
    }
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        let len = buf.len();
        let cap = buf.capacity();
        buf.resize(cap, 0);
        let n = match file.read_at(&mut buf[len..], len as u64) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                buf.truncate(len);
                continue;
            }
            Err(e) => {
                buf.truncate(len);
                return Err(e);
            }
        };
        buf.truncate(len + n);
        let short = len == 0 && n <= SHORT_READ && n < cap;
        if n == 0 || (line && short && buf.last() == Some(&b'\n')) {
            return Ok(());
        }
    }
}

/// Keeps `file` as a `stat` handle when `pool` has a descriptor left,
/// counting it in `kept`.
fn keep(pool: &FdPool, kept: &mut usize, file: Option<File>) -> Option<File> {
    let file = file?;
    if !pool.take() {
        return None;
    }
    *kept += 1;
    Some(file)
}

/// A reusable `<proc>/<pid>/<file>` path: no allocation per process.
#[derive(Debug)]
pub(super) struct PathBuilder {
    root: PathBuf,
    path: PathBuf,
    tail: String,
}

impl PathBuilder {
    pub(super) fn new(proc_root: &Path) -> Self {
        PathBuilder {
            root: proc_root.to_path_buf(),
            path: PathBuf::with_capacity(proc_root.as_os_str().len() + 48),
            tail: String::with_capacity(48),
        }
    }

    /// `<proc>/<pid>/<rest>`; `rest` may contain further `/`.
    pub(super) fn pid_file(&mut self, pid: i32, rest: std::fmt::Arguments<'_>) -> &Path {
        use std::fmt::Write;
        self.tail.clear();
        let _ = write!(self.tail, "/{pid}/{rest}");
        let s = self.path.as_mut_os_string();
        s.clear();
        s.push(self.root.as_os_str());
        s.push(&self.tail);
        &self.path
    }
}

/// Parses a non-empty `stat` read (an empty one means the process went
/// away between open and read: callers skip it before).
pub(super) fn stat_of<'a>(path: &Path, buf: &'a [u8]) -> Result<StatRef<'a>> {
    parse_stat_ref(buf).ok_or_else(|| Error::Parse {
        path: path.to_path_buf(),
        msg: format!("unrecognised stat line {:?}", String::from_utf8_lossy(buf)),
    })
}

/// Bytes of `cmdline` read per `read`; the reader's buffer grows no
/// larger for it, whatever the command line's length.
const CMDLINE_CHUNK: usize = 16 * 1024;

/// Reads `cmdline` in pieces of [`CMDLINE_CHUNK`] bytes into a
/// [`CmdlineBuilder`], which keeps the first [`super::parse::CMDLINE_PREFIX`]
/// bytes and hashes the rest: memory is bounded whatever its length. A
/// vanished file is an empty command line (the process was exiting; its
/// stat was read a moment ago).
pub(super) fn read_cmdline_with(path: &Path, buf: &mut Vec<u8>) -> Result<Cmdline> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if is_vanished(&e) => return Ok(Cmdline::default()),
        Err(e) => return Err(Error::read(path, e)),
    };
    buf.clear();
    buf.resize(CMDLINE_CHUNK, 0);
    let mut out = CmdlineBuilder::new();
    let mut offset = 0u64;
    loop {
        match file.read_at(&mut buf[..CMDLINE_CHUNK], offset) {
            Ok(0) => break,
            Ok(n) => {
                out.push(&buf[..n]);
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if is_vanished(&e) => return Ok(Cmdline::default()),
            Err(e) => return Err(Error::read(path, e)),
        }
    }
    Ok(out.finish())
}

/// Reads one process; `Ok(None)` when it vanished. The same reading as a
/// [`ProcessReader`]'s, without a cache to keep.
pub fn read_process(roots: &Roots, pid: i32) -> Result<Option<Process>> {
    ProcessReader::with_kept_handle_cap(roots.clone(), 0).read_cached(pid)
}

/// The processes of one container, as read in one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerProcesses {
    /// Live processes (listed in `cgroup.procs` of the subtree), sorted by pid.
    pub live: Vec<Process>,
    /// Zombies: children of the container's processes in state `Z`. They are
    /// no longer listed in `cgroup.procs` but still hold a PID until reaped.
    pub zombies: Vec<Process>,
}

/// A process reader that remembers, across calls, what cannot change for a
/// live process. Create one per daemon and reuse it every scrape.
#[derive(Debug)]
pub struct ProcessReader {
    roots: Roots,
    cache: HashMap<i32, Cached>,
    /// Entries holding an open `stat` handle.
    kept: usize,
    /// Where kept handles are taken from; when it is spent, `stat` is
    /// opened and closed on every read.
    pool: FdPool,
    generation: u64,
    buf: Vec<u8>,
    paths: PathBuilder,
    children: Vec<i32>,
    /// The empty command line, shared.
    empty: Cmdline,
    /// Processes left out because reading them failed (other than by
    /// vanishing), with why: see [`ProcessReader::take_skipped`].
    skipped: Vec<Error>,
}

#[derive(Debug)]
struct Cached {
    start_time: u64,
    comm: Arc<str>,
    cmdline: Cmdline,
    generation: u64,
    /// The process's `stat`, kept open (see the module docs).
    stat: Option<File>,
}

impl ProcessReader {
    /// A reader with an empty cache that keeps `stat` handles open within
    /// what the process's descriptor budget has left ([`FdPool::claim`]).
    pub fn new(roots: Roots) -> Self {
        let pool = FdPool::claim(&roots, usize::MAX);
        Self::with_pool(roots, pool)
    }

    /// A reader with an empty cache that keeps at most `cap` `stat` handles
    /// open (0: open and close `stat` on every read).
    pub fn with_kept_handle_cap(roots: Roots, cap: usize) -> Self {
        Self::with_pool(roots, FdPool::fixed(cap))
    }

    /// A reader with an empty cache that keeps `stat` handles open as long
    /// as `pool` has descriptors.
    pub fn with_pool(roots: Roots, pool: FdPool) -> Self {
        ProcessReader {
            paths: PathBuilder::new(&roots.proc),
            roots,
            cache: HashMap::new(),
            kept: 0,
            pool,
            generation: 0,
            buf: Vec::with_capacity(4096),
            children: Vec::new(),
            empty: Cmdline::default(),
            skipped: Vec::new(),
        }
    }

    /// The roots it reads.
    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    /// Number of `stat` handles kept open (for tests and self metrics).
    pub fn kept_handles(&self) -> usize {
        self.kept
    }

    /// Removes a cache entry, accounting for its handle.
    fn forget(&mut self, pid: i32) {
        if let Some(c) = self.cache.remove(&pid) {
            if c.stat.is_some() {
                self.kept -= 1;
                self.pool.give(1);
            }
        }
    }

    /// Reads `stat` of `pid` into `self.buf`: through the kept handle when
    /// there is one, else by opening the file. Returns the newly opened file
    /// (to be kept or closed), or `None` when the process vanished.
    fn read_stat(&mut self, pid: i32) -> Result<Option<Option<File>>> {
        if let Some(f) = self.cache.get(&pid).and_then(|c| c.stat.as_ref()) {
            match read_at_into(f, &mut self.buf, true) {
                Ok(()) if !self.buf.is_empty() => return Ok(Some(None)),
                // Reaped (ESRCH, or nothing to read): this handle's process
                // is gone for good. The pid may be listed again because it
                // was recycled: that is another process, opened afresh.
                Ok(()) => self.forget(pid),
                Err(e) if is_vanished(&e) => self.forget(pid),
                Err(e) => {
                    let path = self.paths.pid_file(pid, format_args!("stat"));
                    return Err(Error::read(path, e));
                }
            }
        }
        let path = self.paths.pid_file(pid, format_args!("stat"));
        match open_read(path, &mut self.buf, true) {
            // An empty read: the process went away between open and read.
            Ok(_) if self.buf.is_empty() => Ok(None),
            Ok(file) => Ok(Some(Some(file))),
            Err(e) if is_vanished(&e) => Ok(None),
            Err(e) => Err(Error::read(path, e)),
        }
    }

    /// Takes the errors of the processes left out since the last call: a
    /// process whose files cannot be read (other than by vanishing) is
    /// skipped and its error kept here, never failing its container.
    pub fn take_skipped(&mut self) -> Vec<Error> {
        std::mem::take(&mut self.skipped)
    }

    /// Records a per-process error: the process is left out.
    pub(super) fn skip(&mut self, e: Error) {
        self.skipped.push(e);
    }

    /// [`Self::read_cached`], a failure recorded ([`Self::take_skipped`])
    /// and read as `None`.
    fn read_or_skip(&mut self, pid: i32) -> Option<Process> {
        match self.read_cached(pid) {
            Ok(p) => p,
            Err(e) => {
                self.forget(pid);
                self.skip(e);
                None
            }
        }
    }

    /// Reads one process afresh: its command line and `comm` too, even when
    /// the cache holds them (an exec that kept `comm`). `Ok(None)` when it
    /// vanished.
    pub(crate) fn read_fresh(&mut self, pid: i32) -> Result<Option<Process>> {
        self.forget(pid);
        self.read_cached(pid)
    }

    /// Reads one process through the cache; `Ok(None)` when it vanished.
    pub(crate) fn read_cached(&mut self, pid: i32) -> Result<Option<Process>> {
        let Some(mut opened) = self.read_stat(pid)? else {
            return Ok(None);
        };
        let path = self.paths.pid_file(pid, format_args!("stat"));
        let s = stat_of(path, &self.buf)?;
        let generation = self.generation;
        // The same process (pid, start time) with the same comm: nothing that
        // the cache holds can have changed, short of an exec that kept comm.
        let same = self
            .cache
            .get(&pid)
            .is_some_and(|c| c.start_time == s.start_time && *c.comm == *comm_text(s.comm));
        if same {
            let needs_handle = self.cache.get(&pid).is_some_and(|c| c.stat.is_none());
            let kept = if needs_handle {
                keep(&self.pool, &mut self.kept, opened.take())
            } else {
                None
            };
            if let Some(c) = self.cache.get_mut(&pid) {
                c.generation = generation;
                if kept.is_some() {
                    c.stat = kept;
                }
                return Ok(Some(Process {
                    pid,
                    ppid: s.ppid,
                    start_time: s.start_time,
                    state: s.state,
                    comm: Arc::clone(&c.comm),
                    cmdline: if s.state.is_zombie() {
                        self.empty.clone()
                    } else {
                        c.cmdline.clone()
                    },
                    threads: s.threads,
                    cpu_ticks: s.cpu_ticks,
                    child_cpu_ticks: s.child_cpu_ticks,
                }));
            }
        }
        // New, recycled or exec'd: read the command line (a zombie has none
        // left: nothing to read).
        let (state, ppid, start_time, threads, cpu_ticks, child_cpu_ticks) = (
            s.state,
            s.ppid,
            s.start_time,
            s.threads,
            s.cpu_ticks,
            s.child_cpu_ticks,
        );
        let comm: Arc<str> = Arc::from(comm_text(s.comm));
        let cmdline = if state.is_zombie() {
            self.empty.clone()
        } else {
            let path = self.paths.pid_file(pid, format_args!("cmdline"));
            read_cmdline_with(path, &mut self.buf)?
        };
        // A live process with an empty command line is not cached: besides
        // kernel threads, that is what a process caught inside exec shows
        // (its new `comm` is set before its new arguments are), and caching
        // it would hide its command line for as long as it lives.
        if cmdline.is_empty() && !state.is_zombie() {
            self.forget(pid);
        } else {
            // A kept handle of the entry being replaced (an exec that changed
            // comm) is the same process's: it stays.
            let stat = match self.cache.get_mut(&pid).and_then(|c| c.stat.take()) {
                // Still counted and holding its descriptor.
                Some(f) => Some(f),
                None => keep(&self.pool, &mut self.kept, opened),
            };
            self.forget(pid);
            self.cache.insert(
                pid,
                Cached {
                    start_time,
                    comm: Arc::clone(&comm),
                    cmdline: cmdline.clone(),
                    generation,
                    stat,
                },
            );
        }
        Ok(Some(Process {
            pid,
            ppid,
            start_time,
            state,
            comm,
            cmdline,
            threads,
            cpu_ticks,
            child_cpu_ticks,
        }))
    }

    /// Takes the children gathered by [`Self::collect_children`], leaving
    /// the list empty.
    pub(crate) fn take_children(&mut self) -> Vec<i32> {
        std::mem::take(&mut self.children)
    }

    /// Appends the children of `pid` (all its threads') to `self.children`.
    /// A single-threaded process has one task, named after the pid, so no
    /// directory listing is needed.
    pub(crate) fn collect_children(&mut self, pid: i32, threads: u64) -> Result<()> {
        if threads <= 1 {
            let path = self
                .paths
                .pid_file(pid, format_args!("task/{pid}/children"));
            match read_into(path, &mut self.buf, false) {
                Ok(()) => {
                    parse_children(&String::from_utf8_lossy(&self.buf), &mut self.children);
                    return Ok(());
                }
                // The leader is gone but other threads may live: list them.
                Err(e) if is_vanished(&e) => {}
                Err(e) => return Err(Error::read(path, e)),
            }
        }
        let found = read_children(&self.roots, pid)?;
        self.children.extend(found);
        Ok(())
    }

    /// Reads the given pids (from `cgroup.procs`) and finds their zombie
    /// children. `tasks` is the cgroup's `pids.current`, when known: the
    /// zombie search is skipped when the live processes' threads already
    /// account for every task. Vanished processes are skipped; so are
    /// processes that cannot be read, their errors kept for
    /// [`Self::take_skipped`].
    ///
    /// A listed process that is itself in state `Z` is reported among the
    /// zombies, so `live` holds no zombie.
    pub fn read_container(
        &mut self,
        pids: &[i32],
        tasks: Option<u64>,
    ) -> Result<ContainerProcesses> {
        let mut out = ContainerProcesses {
            live: Vec::with_capacity(pids.len()),
            zombies: Vec::new(),
        };
        let mut threads: u64 = 0;
        for &pid in pids {
            if let Some(p) = self.read_or_skip(pid) {
                threads = threads.saturating_add(p.threads.max(1));
                if p.is_zombie() {
                    out.zombies.push(p);
                } else {
                    out.live.push(p);
                }
            }
        }
        out.live.sort_unstable_by_key(|p| p.pid);
        out.live.dedup_by_key(|p| p.pid);

        let search = match tasks {
            Some(t) => t > threads,
            None => true,
        };
        if search {
            self.children.clear();
            for i in 0..out.live.len() {
                let (pid, threads) = (out.live[i].pid, out.live[i].threads);
                if let Err(e) = self.collect_children(pid, threads) {
                    self.skip(e);
                }
            }
            let mut children = std::mem::take(&mut self.children);
            children.sort_unstable();
            children.dedup();
            let known: HashSet<i32> = out
                .live
                .iter()
                .chain(out.zombies.iter())
                .map(|p| p.pid)
                .collect();
            for &child in &children {
                if known.contains(&child) {
                    continue;
                }
                if let Some(p) = self.read_or_skip(child) {
                    if p.is_zombie() {
                        out.zombies.push(p);
                    }
                }
            }
            self.children = children;
        }
        out.zombies.sort_unstable_by_key(|p| p.pid);
        out.zombies.dedup_by_key(|p| p.pid);
        Ok(out)
    }

    /// Drops cache entries not seen since the last call to `end_scrape`
    /// and starts a new generation. Call once per collection.
    pub fn end_scrape(&mut self) {
        let generation = self.generation;
        let mut closed = 0;
        self.cache.retain(|_, c| {
            let keep = c.generation == generation;
            if !keep && c.stat.is_some() {
                closed += 1;
            }
            keep
        });
        self.kept -= closed;
        self.pool.give(closed);
        self.generation = generation.wrapping_add(1);
    }

    /// Number of cached processes (for tests and self metrics).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// Children of `pid` (all threads' `children` files), read from `/proc`.
/// A vanished process has no children.
pub fn read_children(roots: &Roots, pid: i32) -> Result<Vec<i32>> {
    let task_dir = roots.proc.join(pid.to_string()).join("task");
    let entries = match std::fs::read_dir(&task_dir) {
        Ok(e) => e,
        Err(e) if is_vanished(&e) => return Ok(Vec::new()),
        Err(e) => return Err(Error::read(&task_dir, e)),
    };
    let mut out = Vec::new();
    let mut buf = Vec::with_capacity(256);
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if is_vanished(&e) => continue,
            Err(e) => return Err(Error::read(&task_dir, e)),
        };
        let path = entry.path().join("children");
        match read_into(&path, &mut buf, false) {
            Ok(()) => parse_children(&String::from_utf8_lossy(&buf), &mut out),
            Err(e) if is_vanished(&e) => continue,
            Err(e) => return Err(Error::read(&path, e)),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Reads a `/proc/<pid>/<name>` file whole; `Ok(None)` when the process
/// vanished. Bytes that are not UTF-8 are replaced: `status` shows the
/// process's name (any bytes it chose), `cgroup` the names of cgroups.
fn read_pid_file(roots: &Roots, pid: i32, name: &str) -> Result<Option<String>> {
    let path = roots.proc.join(pid.to_string()).join(name);
    match std::fs::read(&path) {
        Ok(s) => Ok(Some(match String::from_utf8(s) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })),
        Err(e) if is_vanished(&e) => Ok(None),
        Err(e) => Err(Error::read(path, e)),
    }
}

/// The PID of `pid` in its innermost PID namespace (`NSpid` of `status`):
/// 1 for a container's init. `Ok(None)` when the process vanished;
/// `Ok(Some(None))` when the kernel shows no `NSpid`.
pub fn read_ns_pid(roots: &Roots, pid: i32) -> Result<Option<Option<i32>>> {
    Ok(read_pid_file(roots, pid, "status")?.map(|s| parse_nspid(&s)))
}

/// The content of `/proc/<pid>/cgroup` (the process's cgroup in each
/// hierarchy); `Ok(None)` when the process vanished.
pub fn read_cgroup_membership(roots: &Roots, pid: i32) -> Result<Option<String>> {
    read_pid_file(roots, pid, "cgroup")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_from_the_host_proc() {
        let me = std::process::id() as i32;
        let p = read_process(&Roots::default(), me).unwrap().unwrap();
        assert_eq!(p.pid, me);
        assert_eq!(p.ppid, std::os::unix::process::parent_id() as i32);
        assert!(p.threads >= 1);
        assert!(!p.cmdline.is_empty());
        let exe = std::env::args().next().unwrap();
        let shown = p.cmdline.display();
        assert!(shown.starts_with(&exe), "{shown} vs {exe}");
    }

    /// A fixture `/proc` entry.
    fn put(
        root: &Path,
        pid: i32,
        ppid: i32,
        state: char,
        start: u64,
        cmdline: &[u8],
        children: &[i32],
    ) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(dir.join("task").join(pid.to_string())).unwrap();
        std::fs::write(
            dir.join("stat"),
            format!("{pid} (x y) {state} {ppid} 1 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 {start} 0 0\n"),
        )
        .unwrap();
        std::fs::write(dir.join("cmdline"), cmdline).unwrap();
        let kids: String = children.iter().map(|c| format!("{c} ")).collect();
        std::fs::write(
            dir.join("task").join(pid.to_string()).join("children"),
            kids,
        )
        .unwrap();
    }

    /// An empty fixture `/proc` (kept alive by the returned directory) and a
    /// reader over it.
    fn fixture_reader() -> (tempfile::TempDir, ProcessReader) {
        let dir = tempfile::tempdir().unwrap();
        let r = ProcessReader::new(Roots::new(dir.path(), dir.path()));
        (dir, r)
    }

    fn pids(v: &[Process]) -> Vec<i32> {
        v.iter().map(|p| p.pid).collect()
    }

    #[test]
    fn cmdline_is_cached_by_pid_and_start_time() {
        let (dir, mut r) = fixture_reader();
        let root = dir.path();
        put(root, 10, 1, 'S', 100, b"app\0--serve\0", &[]);

        let got = r.read_container(&[10], Some(1)).unwrap();
        assert_eq!(got.live[0].cmdline.display(), "app --serve");
        assert_eq!(&*got.live[0].comm, "x y");
        assert_eq!(got.live[0].cpu_ticks, 11);
        assert_eq!(r.cached(), 1);
        r.end_scrape();

        // Same start time: the cached command line stays even though the file changed.
        std::fs::write(root.join("10/cmdline"), b"other\0").unwrap();
        let got = r.read_container(&[10], Some(1)).unwrap();
        assert_eq!(got.live[0].cmdline.display(), "app --serve");
        r.end_scrape();

        // New start time: the pid was recycled, the command line is re-read.
        put(root, 10, 1, 'S', 200, b"other\0", &[]);
        let got = r.read_container(&[10], Some(1)).unwrap();
        assert_eq!(got.live[0].cmdline.display(), "other");
        assert_eq!(got.live[0].start_time, 200);
        assert_eq!(r.cached(), 1);
    }

    #[test]
    fn entries_not_seen_in_a_scrape_are_evicted() {
        let (dir, mut r) = fixture_reader();
        let root = dir.path();
        put(root, 10, 1, 'S', 100, b"a\0", &[]);
        put(root, 11, 1, 'S', 101, b"b\0", &[]);
        r.read_container(&[10, 11], Some(2)).unwrap();
        r.end_scrape();
        assert_eq!(r.cached(), 2);
        // Only 10 is read in this scrape: 11 goes at its end.
        r.read_container(&[10], Some(1)).unwrap();
        assert_eq!(r.cached(), 2);
        r.end_scrape();
        assert_eq!(r.cached(), 1);
        r.end_scrape();
        assert_eq!(r.cached(), 0);
    }

    #[test]
    fn vanished_pids_are_skipped() {
        let (dir, mut r) = fixture_reader();
        let root = dir.path();
        put(root, 10, 1, 'S', 100, b"a\0", &[]);
        let got = r.read_container(&[9, 10, 12], None).unwrap();
        assert_eq!(pids(&got.live), vec![10]);
        assert!(got.zombies.is_empty());
        // A pid whose directory exists but lost its stat is skipped too.
        std::fs::remove_file(root.join("10/stat")).unwrap();
        let got = r.read_container(&[10], None).unwrap();
        assert!(got.live.is_empty());
    }

    #[test]
    fn zombies_are_found_as_children_when_tasks_are_unaccounted_for() {
        let (dir, mut r) = fixture_reader();
        let root = dir.path();
        // 10 is listed; its children 20 (zombie, not listed) and 21 (live,
        // elsewhere); 22 vanished after the children file was read.
        put(root, 10, 1, 'S', 100, b"sh\0", &[20, 21, 22]);
        put(root, 20, 10, 'Z', 150, b"", &[]);
        put(root, 21, 10, 'S', 151, b"other\0", &[]);

        // Two tasks charged, one thread seen: search.
        let got = r.read_container(&[10], Some(2)).unwrap();
        assert_eq!(pids(&got.live), vec![10]);
        assert_eq!(pids(&got.zombies), vec![20]);
        assert_eq!(got.zombies[0].state, ProcState::Zombie);
        assert_eq!(got.zombies[0].ppid, 10);
        assert_eq!(got.zombies[0].cmdline.display(), "");

        // Unknown task count: search as well.
        let got = r.read_container(&[10], None).unwrap();
        assert_eq!(pids(&got.zombies), vec![20]);

        // Every task accounted for: no search (the zombie goes unseen, by design).
        let got = r.read_container(&[10], Some(1)).unwrap();
        assert!(got.zombies.is_empty());
    }

    #[test]
    fn a_process_seen_alive_then_as_zombie_loses_its_cmdline() {
        let (dir, mut r) = fixture_reader();
        let root = dir.path();
        put(root, 10, 1, 'S', 100, b"sh\0", &[20]);
        put(root, 20, 10, 'S', 150, b"sleep\x000.1\0", &[]);
        let got = r.read_container(&[10, 20], Some(2)).unwrap();
        assert_eq!(got.live[1].cmdline.display(), "sleep 0.1");
        put(root, 20, 10, 'Z', 150, b"sleep\x000.1\0", &[]);
        let got = r.read_container(&[10], Some(2)).unwrap();
        assert_eq!(pids(&got.zombies), vec![20]);
        assert_eq!(got.zombies[0].cmdline.display(), "");
    }

    #[test]
    fn an_exec_that_changes_comm_rereads_the_cmdline() {
        let (dir, mut r) = fixture_reader();
        let root = dir.path();
        put(root, 10, 1, 'S', 100, b"sh\0-c\0exec app\0", &[]);
        r.read_container(&[10], Some(1)).unwrap();
        let stat = root.join("10/stat");
        let line = std::fs::read_to_string(&stat)
            .unwrap()
            .replace("(x y)", "(app)");
        std::fs::write(&stat, line).unwrap();
        std::fs::write(root.join("10/cmdline"), b"app\0").unwrap();
        let got = r.read_container(&[10], Some(1)).unwrap();
        assert_eq!(&*got.live[0].comm, "app");
        assert_eq!(got.live[0].cmdline.display(), "app");
    }

    #[test]
    fn a_listed_zombie_counts_as_a_zombie_and_empty_cmdlines_are_fine() {
        let (dir, mut r) = fixture_reader();
        let root = dir.path();
        put(root, 10, 1, 'Z', 100, b"", &[]);
        put(root, 11, 1, 'S', 100, b"", &[]);
        let got = r.read_container(&[11, 10], Some(2)).unwrap();
        assert_eq!(pids(&got.live), vec![11]);
        assert_eq!(pids(&got.zombies), vec![10]);
        assert_eq!(got.live[0].cmdline.display(), "");
    }

    #[test]
    fn an_empty_command_line_of_a_live_process_is_read_again() {
        // Read inside exec: the new comm, the arguments not yet in place.
        let (dir, mut r) = fixture_reader();
        let root = dir.path();
        put(root, 10, 1, 'S', 100, b"", &[]);
        let got = r.read_container(&[10], Some(1)).unwrap();
        assert_eq!(got.live[0].cmdline.display(), "");
        assert_eq!(r.cached(), 0);
        std::fs::write(root.join("10/cmdline"), b"sleep\x001000\0").unwrap();
        let got = r.read_container(&[10], Some(1)).unwrap();
        assert_eq!(got.live[0].cmdline.display(), "sleep 1000");
        assert_eq!(r.cached(), 1);
    }

    #[test]
    fn children_of_all_threads_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        put(root, 10, 1, 'S', 100, b"a\0", &[30, 20]);
        let t = root.join("10/task/11");
        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(t.join("children"), "40 20 ").unwrap();
        let got = read_children(&Roots::new(root, root), 10).unwrap();
        assert_eq!(got, vec![20, 30, 40]);
    }

    /// `n` children sleeping on the host, killed and reaped on drop.
    fn sleepers(n: usize) -> Vec<pidwarden_tests::ChildGuard> {
        (0..n)
            .map(|_| {
                pidwarden_tests::ChildGuard::spawn(std::process::Command::new("sleep").arg("1000"))
            })
            .collect()
    }

    /// Reads `pid` until its command line shows the exec of `sleep`.
    fn read_sleeper(r: &mut ProcessReader, pid: i32) -> Process {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let p = r.read_cached(pid).unwrap().expect("the sleeper is alive");
            if p.cmdline.display() == "sleep 1000" {
                return p;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{pid} never exec'd: {p:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn a_kept_handle_of_a_reaped_process_reads_as_vanished() {
        let mut kids = sleepers(1);
        let pid = kids[0].id() as i32;
        let mut r = ProcessReader::with_kept_handle_cap(Roots::default(), 16);
        let first = read_sleeper(&mut r, pid);
        assert_eq!(r.kept_handles(), 1);
        // Read again through the kept handle: the same process, fresh figures.
        let again = r.read_cached(pid).unwrap().unwrap();
        assert_eq!((again.pid, again.start_time), (first.pid, first.start_time));
        assert_eq!(again.cmdline.display(), "sleep 1000");
        assert_eq!(r.kept_handles(), 1);

        kids[0].kill().unwrap();
        kids[0].wait().unwrap();
        // The handle itself: bound to the reaped process, whatever now has
        // its pid, it reads ESRCH or nothing.
        let handle = r.cache[&pid].stat.as_ref().unwrap();
        let mut buf = [0u8; 512];
        match handle.read_at(&mut buf, 0) {
            Ok(n) => assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ESRCH), "{e}"),
        }
        // Through the reader: vanished and dropped, or (the pid recycled in
        // between) another process, read afresh.
        match r.read_cached(pid).unwrap() {
            None => {
                assert_eq!(r.cached(), 0);
                assert_eq!(r.kept_handles(), 0);
            }
            Some(p) => assert_ne!(p.start_time, first.start_time, "{p:?}"),
        }
    }

    #[test]
    fn above_the_handle_cap_stat_is_opened_and_closed_on_every_read() {
        let kids = sleepers(3);
        let pids: Vec<i32> = kids.iter().map(|k| k.id() as i32).collect();
        let mut r = ProcessReader::with_kept_handle_cap(Roots::default(), 1);
        let mut starts = HashMap::new();
        for _ in 0..3 {
            for &pid in &pids {
                let p = read_sleeper(&mut r, pid);
                assert_eq!(p.pid, pid);
                assert_eq!(*starts.entry(pid).or_insert(p.start_time), p.start_time);
            }
            assert_eq!(r.cached(), 3);
            assert_eq!(r.kept_handles(), 1);
            let with_handle = pids.iter().filter(|p| r.cache[p].stat.is_some()).count();
            assert_eq!(with_handle, 1);
            r.end_scrape();
        }
        // No cap: nothing kept, everything still read.
        let mut r = ProcessReader::with_kept_handle_cap(Roots::default(), 0);
        for &pid in &pids {
            read_sleeper(&mut r, pid);
        }
        assert_eq!((r.cached(), r.kept_handles()), (3, 0));
        // Handles given back are kept again: a pool shared by two readers.
        let pool = FdPool::fixed(2);
        let mut a = ProcessReader::with_pool(Roots::default(), pool.clone());
        let mut b = ProcessReader::with_pool(Roots::default(), pool.clone());
        read_sleeper(&mut a, pids[0]);
        read_sleeper(&mut b, pids[1]);
        read_sleeper(&mut b, pids[2]);
        assert_eq!((a.kept_handles(), b.kept_handles(), pool.used()), (1, 1, 2));
        a.end_scrape();
        a.end_scrape();
        assert_eq!((a.kept_handles(), pool.used()), (0, 1));
        read_sleeper(&mut b, pids[2]);
        assert_eq!((b.kept_handles(), pool.used()), (2, 2));
    }

    #[test]
    fn eviction_closes_the_handles_of_processes_not_seen() {
        let kids = sleepers(2);
        let pids: Vec<i32> = kids.iter().map(|k| k.id() as i32).collect();
        let mut r = ProcessReader::with_kept_handle_cap(Roots::default(), 16);
        for &pid in &pids {
            read_sleeper(&mut r, pid);
        }
        r.end_scrape();
        assert_eq!(r.kept_handles(), 2);
        read_sleeper(&mut r, pids[0]);
        r.end_scrape();
        assert_eq!((r.cached(), r.kept_handles()), (1, 1));
        r.end_scrape();
        assert_eq!((r.cached(), r.kept_handles()), (0, 0));
    }

    #[test]
    fn a_missing_pid_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots::new(dir.path(), dir.path());
        assert_eq!(read_process(&roots, 123).unwrap(), None);
        assert_eq!(read_children(&roots, 123).unwrap(), Vec::<i32>::new());
    }
}
