//! Parsing of `/proc/<pid>` files, with no I/O: `stat`, `cmdline`,
//! `children` and `status`. Tested on literal strings.

use std::sync::Arc;

use serde::Serialize;

/// A process's state, `stat` field 3 (`proc_pid_stat(5)`), as a type: code
/// asks [`ProcState::is_zombie`] rather than comparing letters. Serialised
/// (and shown) as the kernel's letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcState {
    /// `R`: running or runnable.
    Running,
    /// `S`: interruptible sleep.
    Sleeping,
    /// `D`: uninterruptible sleep (usually I/O).
    DiskSleep,
    /// `I`: an idle kernel thread.
    Idle,
    /// `T`: stopped by a signal.
    Stopped,
    /// `t`: stopped by a tracer.
    TracingStop,
    /// `Z`: exited, not yet reaped by its parent.
    Zombie,
    /// `X` (or `x`): dead, about to disappear.
    Dead,
    /// Any other letter (`W`, `K`, `P` on some kernels).
    Other(char),
}

impl ProcState {
    /// The state for a `stat` letter.
    pub fn from_letter(c: char) -> ProcState {
        match c {
            'R' => ProcState::Running,
            'S' => ProcState::Sleeping,
            'D' => ProcState::DiskSleep,
            'I' => ProcState::Idle,
            'T' => ProcState::Stopped,
            't' => ProcState::TracingStop,
            'Z' => ProcState::Zombie,
            'X' | 'x' => ProcState::Dead,
            c => ProcState::Other(c),
        }
    }

    /// The kernel's letter (`X` for [`ProcState::Dead`]).
    pub fn letter(self) -> char {
        match self {
            ProcState::Running => 'R',
            ProcState::Sleeping => 'S',
            ProcState::DiskSleep => 'D',
            ProcState::Idle => 'I',
            ProcState::Stopped => 'T',
            ProcState::TracingStop => 't',
            ProcState::Zombie => 'Z',
            ProcState::Dead => 'X',
            ProcState::Other(c) => c,
        }
    }

    /// Whether the process exited and waits to be reaped.
    pub fn is_zombie(self) -> bool {
        self == ProcState::Zombie
    }

    /// Whether the process is stopped, by a signal or a tracer.
    pub fn is_stopped(self) -> bool {
        matches!(self, ProcState::Stopped | ProcState::TracingStop)
    }
}

impl std::fmt::Display for ProcState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.letter())
    }
}

impl Serialize for ProcState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_char(self.letter())
    }
}

/// Fields parsed from `/proc/<pid>/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// PID.
    pub pid: i32,
    /// `comm`, without the parentheses.
    pub comm: String,
    /// State.
    pub state: ProcState,
    /// Parent PID.
    pub ppid: i32,
    /// utime + stime in ticks.
    pub cpu_ticks: u64,
    /// cutime + cstime in ticks: the reaped children's CPU time.
    pub child_cpu_ticks: u64,
    /// Threads.
    pub threads: u64,
    /// Start time in ticks since boot.
    pub start_time: u64,
}

/// `stat` fields with `comm` borrowed from the content: the allocation-free
/// form the reader uses. `comm` is bytes: a process may set any name
/// (`prctl(PR_SET_NAME)`, a write to `/proc/self/comm`), and the kernel cuts
/// a long one at 15 bytes, in the middle of a character if it falls there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StatRef<'a> {
    pub(super) pid: i32,
    pub(super) comm: &'a [u8],
    pub(super) state: ProcState,
    pub(super) ppid: i32,
    pub(super) cpu_ticks: u64,
    pub(super) child_cpu_ticks: u64,
    pub(super) threads: u64,
    pub(super) start_time: u64,
}

/// Parses `stat` content. `comm` may hold any byte but NUL, spaces and `)`
/// included, so the fields after it start after the *last* `)`.
pub(super) fn parse_stat_ref(content: &[u8]) -> Option<StatRef<'_>> {
    let open = content.iter().position(|&b| b == b'(')?;
    let close = content.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let pid = std::str::from_utf8(&content[..open])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = &content[open + 1..close];
    // The fields after comm are numbers and a state letter: ASCII.
    let after = std::str::from_utf8(&content[close + 1..]).ok()?;
    // Fields from 3 (state) on; index i is field i + 3.
    let mut rest = after.split_ascii_whitespace();
    let state = ProcState::from_letter(rest.next()?.chars().next()?);
    let ppid = rest.next()?.parse().ok()?;
    // Skip fields 5..=13 (pgrp … cmajflt) to reach utime (14).
    let mut rest = rest.skip(9);
    let utime: u64 = rest.next()?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    // cutime (16) and cstime (17) are signed in the kernel's format.
    let child = |t: Option<&str>| -> Option<u64> { Some(t?.parse::<i64>().ok()?.max(0) as u64) };
    let cutime = child(rest.next())?;
    let cstime = child(rest.next())?;
    // Skip 18 and 19 (priority, nice) to reach num_threads (20).
    let mut rest = rest.skip(2);
    let threads = rest.next()?.parse().ok()?;
    // Skip 21 (itrealvalue) to reach starttime (22).
    let start_time = rest.nth(1)?.parse().ok()?;
    Some(StatRef {
        pid,
        comm,
        state,
        ppid,
        cpu_ticks: utime.saturating_add(stime),
        child_cpu_ticks: cutime.saturating_add(cstime),
        threads,
        start_time,
    })
}

/// `comm` as text: invalid UTF-8 (a name cut mid-character, or bytes a
/// process wrote there) is replaced, never an error. Borrowed when valid.
pub(super) fn comm_text(comm: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(comm)
}

/// Parses the content of `/proc/<pid>/stat` (comm may contain spaces,
/// parentheses and bytes that are not UTF-8: it is shown with those
/// replaced). Pure.
pub fn parse_stat(content: impl AsRef<[u8]>) -> Option<Stat> {
    let s = parse_stat_ref(content.as_ref())?;
    Some(Stat {
        pid: s.pid,
        comm: comm_text(s.comm).into_owned(),
        state: s.state,
        ppid: s.ppid,
        cpu_ticks: s.cpu_ticks,
        child_cpu_ticks: s.child_cpu_ticks,
        threads: s.threads,
        start_time: s.start_time,
    })
}

/// How much of a command line is kept: its first 4 KiB. The rest is only
/// counted and hashed as it is read, never held (a process may have
/// megabytes of arguments; a container may run thousands of them).
pub const CMDLINE_PREFIX: usize = 4096;

/// The key of the command-line hash: one per process, random, so the hash
/// cannot be aimed at by a process choosing its arguments.
fn hash_key() -> &'static std::collections::hash_map::RandomState {
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    KEY.get_or_init(std::collections::hash_map::RandomState::new)
}

/// A command line as the kernel holds it: the arguments separated by NUL.
///
/// Only its first [`CMDLINE_PREFIX`] bytes are kept (as text, invalid UTF-8
/// replaced); beside them its full length in bytes and a keyed hash of all
/// its bytes, computed while it was read. Two command lines are equal when
/// all three are: when their arguments are, byte for byte (up to a 64-bit
/// keyed hash collision, which a process cannot aim at). So `sh /w.sh "a b"`
/// (three arguments) and `sh /w.sh a b` (four) differ although both show as
/// `sh /w.sh a b`; two names that differ only in invalid bytes differ; and
/// two command lines that differ only after the kept prefix differ too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cmdline(Arc<Inner>);

#[derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Inner {
    /// The kept prefix, as text.
    text: Box<str>,
    /// Length in bytes of the whole command line (trailing NULs dropped).
    len: u64,
    /// Keyed hash of the whole command line's bytes.
    hash: u64,
    /// Whether `text` is the whole command line.
    whole: bool,
}

impl Default for Cmdline {
    fn default() -> Self {
        CmdlineBuilder::new().finish()
    }
}

/// Builds a [`Cmdline`] from the bytes of `/proc/<pid>/cmdline` given in
/// pieces as they are read: it keeps the first [`CMDLINE_PREFIX`] bytes and
/// hashes and counts the rest, so memory stays bounded whatever the length.
#[derive(Debug)]
pub struct CmdlineBuilder {
    prefix: Vec<u8>,
    hasher: std::collections::hash_map::DefaultHasher,
    /// Bytes fed to the hasher.
    len: u64,
    /// NULs seen after the last other byte, not yet hashed: trailing NULs
    /// (the terminator, or the padding of a rewritten title) are dropped.
    zeros: u64,
}

impl Default for CmdlineBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl CmdlineBuilder {
    /// An empty command line.
    pub fn new() -> Self {
        use std::hash::BuildHasher;
        CmdlineBuilder {
            prefix: Vec::new(),
            hasher: hash_key().build_hasher(),
            len: 0,
            zeros: 0,
        }
    }

    /// Appends bytes.
    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            // A run of NULs is held back until something follows it.
            let nul = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            let (data, rest) = bytes.split_at(nul);
            if !data.is_empty() {
                self.flush_zeros();
                self.take(data);
            }
            let run = rest.iter().position(|&b| b != 0).unwrap_or(rest.len());
            self.zeros += run as u64;
            bytes = &rest[run..];
        }
    }

    /// Hashes (and keeps, within the prefix) the NULs held back.
    fn flush_zeros(&mut self) {
        const ZEROS: [u8; 64] = [0; 64];
        while self.zeros > 0 {
            let n = self.zeros.min(ZEROS.len() as u64) as usize;
            self.take(&ZEROS[..n]);
            self.zeros -= n as u64;
        }
    }

    fn take(&mut self, data: &[u8]) {
        use std::hash::Hasher;
        let room = CMDLINE_PREFIX.saturating_sub(self.prefix.len());
        self.prefix.extend_from_slice(&data[..room.min(data.len())]);
        self.hasher.write(data);
        self.len += data.len() as u64;
    }

    /// The command line.
    pub fn finish(self) -> Cmdline {
        use std::hash::Hasher;
        let mut hasher = self.hasher;
        hasher.write_u64(self.len);
        let whole = self.len == self.prefix.len() as u64;
        Cmdline(Arc::new(Inner {
            text: String::from_utf8_lossy(&self.prefix).into(),
            len: self.len,
            hash: hasher.finish(),
            whole,
        }))
    }
}

impl Cmdline {
    /// From the bytes of `/proc/<pid>/cmdline`: trailing NULs (the
    /// terminator, or the padding left by programs that rewrite their title)
    /// are dropped; invalid UTF-8 is replaced in the text shown. Pure.
    pub fn from_raw(raw: &[u8]) -> Cmdline {
        let mut b = CmdlineBuilder::new();
        b.push(raw);
        b.finish()
    }

    /// From separate arguments.
    pub fn from_args<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Cmdline {
        let mut b = CmdlineBuilder::new();
        for (i, a) in args.into_iter().enumerate() {
            if i > 0 {
                b.push(b"\0");
            }
            b.push(a.as_ref().as_bytes());
        }
        b.finish()
    }

    /// The kept prefix: the arguments separated by NUL (invalid UTF-8
    /// replaced). The whole command line unless [`Cmdline::is_truncated`].
    pub fn raw(&self) -> &str {
        &self.0.text
    }

    /// Length in bytes of the whole command line.
    pub fn len(&self) -> u64 {
        self.0.len
    }

    /// Whether only a prefix of it is kept.
    pub fn is_truncated(&self) -> bool {
        !self.0.whole
    }

    /// The arguments that are kept whole: all of them, unless the command
    /// line is longer than [`CMDLINE_PREFIX`] (then the argument cut by the
    /// prefix is left out, and [`Cmdline::display`] ends in `…`). None for
    /// an empty command line.
    pub fn args(&self) -> impl Iterator<Item = &str> {
        let text: &str = if self.0.whole {
            &self.0.text
        } else {
            // Up to the last separator: the argument after it was cut.
            match self.0.text.rfind('\0') {
                Some(i) => &self.0.text[..i],
                None => "",
            }
        };
        let empty = text.is_empty() && (self.0.whole || !self.0.text.contains('\0'));
        let mut it = text.split('\0');
        if empty {
            it.next();
        }
        it
    }

    /// The arguments joined by single spaces: how a command line is shown
    /// (and matched by protected patterns). A truncated command line shows
    /// its whole arguments and then `…`. Borrowed for a single argument.
    pub fn display(&self) -> std::borrow::Cow<'_, str> {
        if self.0.whole && !self.0.text.contains('\0') {
            return std::borrow::Cow::Borrowed(&self.0.text);
        }
        let mut out = String::with_capacity(self.0.text.len() + 4);
        for (i, a) in self.args().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(a);
        }
        if !self.0.whole {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push('…');
        }
        std::borrow::Cow::Owned(out)
    }

    /// True for the empty command line (kernel threads, zombies).
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }
}

/// Serialised as shown: the arguments joined by spaces.
impl Serialize for Cmdline {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.display())
    }
}

/// Parses `/proc/<pid>/cmdline` bytes; see [`Cmdline::from_raw`]. Pure.
pub fn parse_cmdline(raw: &[u8]) -> Cmdline {
    Cmdline::from_raw(raw)
}

/// Parses a `children` file: pids separated by spaces. Pure.
pub(super) fn parse_children(content: &str, out: &mut Vec<i32>) {
    out.extend(
        content
            .split_ascii_whitespace()
            .filter_map(|t| t.parse::<i32>().ok()),
    );
}

/// The innermost namespace PID from the `NSpid:` line of
/// `/proc/<pid>/status` (its last field). `None` when the line is missing
/// (kernels before 4.1) or malformed. Pure.
pub fn parse_nspid(status: &str) -> Option<i32> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_states_round_trip_their_letters() {
        for c in ['R', 'S', 'D', 'I', 'T', 't', 'Z', 'X', 'W', 'P'] {
            let st = ProcState::from_letter(c);
            assert_eq!(st.letter(), c, "{st:?}");
            assert_eq!(st.to_string(), c.to_string());
            assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{c}\""));
        }
        assert_eq!(ProcState::from_letter('x'), ProcState::Dead);
        assert!(ProcState::from_letter('Z').is_zombie());
        assert!(!ProcState::from_letter('S').is_zombie());
        assert!(
            ProcState::from_letter('T').is_stopped() && ProcState::from_letter('t').is_stopped()
        );
        assert!(!ProcState::from_letter('R').is_stopped());
        let s = parse_stat("7 (x) t 1 1 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 99 0 0\n").unwrap();
        assert_eq!(s.state, ProcState::TracingStop);
    }

    const STAT: &str = "7378 (cat) R 7375 7375 5668 0 -1 4194304 100 0 0 0 3 4 0 0 20 0 1 0 59100 3133440 383 18446744073709551615 0 0\n";

    #[test]
    fn parses_a_plain_stat_line() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(
            s,
            Stat {
                pid: 7378,
                comm: "cat".into(),
                state: ProcState::Running,
                ppid: 7375,
                cpu_ticks: 7,
                child_cpu_ticks: 0,
                threads: 1,
                start_time: 59100,
            }
        );
    }

    #[test]
    fn comm_with_spaces_and_parentheses_splits_at_the_last_paren() {
        let line = "42 (a) b (c)) Z 1 42 42 0 -1 0 0 0 0 0 10 20 0 0 20 0 3 0 777 0 0\n";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.pid, 42);
        assert_eq!(s.comm, "a) b (c)");
        assert_eq!(s.state, ProcState::Zombie);
        assert_eq!(s.ppid, 1);
        assert_eq!(s.cpu_ticks, 30);
        assert_eq!(s.threads, 3);
        assert_eq!(s.start_time, 777);
    }

    #[test]
    fn reaped_children_cpu_is_read_from_cutime_and_cstime() {
        let s = parse_stat("9 (sh) S 1 9 9 0 -1 0 0 0 0 0 3 4 25 17 20 0 1 0 50 0 0\n").unwrap();
        assert_eq!((s.cpu_ticks, s.child_cpu_ticks), (7, 42));
        assert_eq!((s.threads, s.start_time), (1, 50));
        // Signed in the kernel's format: a negative value reads as none.
        let s = parse_stat("9 (sh) S 1 9 9 0 -1 0 0 0 0 0 3 4 -1 5 20 0 1 0 50 0 0\n").unwrap();
        assert_eq!(s.child_cpu_ticks, 5);
    }

    #[test]
    fn empty_comm_and_unicode_comm_parse() {
        let s = parse_stat("5 () S 0 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 0\n").unwrap();
        assert_eq!(s.comm, "");
        assert_eq!(s.start_time, 9);
        let s = parse_stat("6 (nöde ✓) S 1 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 10 0\n").unwrap();
        assert_eq!(s.comm, "nöde ✓");
    }

    #[test]
    fn malformed_stat_lines_are_rejected() {
        for bad in [
            "",
            "12",
            "12 (x",
            "x) 12 (",
            "12 (x) S",
            "12 (x) S 1 2 3",
            "abc (x) S 1 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 10 0",
            "12 (x) S 1 0 0 0 -1 0 0 0 0 0 q 0 0 0 20 0 1 0 10 0",
        ] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cmdline_keeps_arguments_apart_and_shows_them_joined() {
        let shown = |raw: &[u8]| parse_cmdline(raw).display().into_owned();
        assert_eq!(shown(b"sleep\x001000\x00"), "sleep 1000");
        assert_eq!(shown(b"sh\x00-c\x00echo a b\x00"), "sh -c echo a b");
        assert_eq!(shown(b""), "");
        assert_eq!(shown(b"\x00\x00"), "");
        assert_eq!(
            shown(b"nginx: worker process\x00\x00\x00"),
            "nginx: worker process"
        );
        assert_eq!(shown(b"no-terminator"), "no-terminator");
        assert_eq!(shown(b"a\x00\x00b\x00"), "a  b");
        assert_eq!(shown(b"bad\xff\x00utf8\x00"), "bad\u{fffd} utf8");

        // One argument with a space is not two arguments.
        let quoted = parse_cmdline(b"sh\x00/w.sh\x00a b\x00");
        let split = parse_cmdline(b"sh\x00/w.sh\x00a\x00b\x00");
        assert_ne!(quoted, split);
        assert_eq!(quoted.display(), split.display());
        assert_eq!(quoted.args().collect::<Vec<_>>(), ["sh", "/w.sh", "a b"]);
        assert_eq!(quoted, Cmdline::from_args(["sh", "/w.sh", "a b"]));
        assert_eq!(quoted.raw(), "sh\0/w.sh\0a b");
        assert_eq!(parse_cmdline(b"").args().count(), 0);
        assert!(parse_cmdline(b"\x00").is_empty());
        assert_eq!(serde_json::to_string(&split).unwrap(), "\"sh /w.sh a b\"");
    }

    #[test]
    fn comm_that_is_not_utf8_parses_with_the_rest_of_the_line() {
        // `printf '\377\376x' > /proc/self/comm`, and a name cut by the
        // kernel at 15 bytes in the middle of a character.
        let line = b"7 (\xff\xfex) S 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 2 0 99 0 0\n";
        let s = parse_stat(line).unwrap();
        assert_eq!((s.pid, s.state, s.ppid), (7, ProcState::Sleeping, 1));
        assert_eq!((s.cpu_ticks, s.threads, s.start_time), (7, 2, 99));
        assert_eq!(s.comm, "\u{fffd}\u{fffd}x");
        let cut = "aaaaaaaaaaaaaa\u{e9}".as_bytes()[..15].to_vec();
        let mut line = b"8 (".to_vec();
        line.extend_from_slice(&cut);
        line.extend_from_slice(b") R 1 8 8 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n");
        let s = parse_stat(&line).unwrap();
        assert_eq!(s.comm, "aaaaaaaaaaaaaa\u{fffd}");
        assert_eq!(s.start_time, 5);
        // A `)` and bytes that are not UTF-8 after the last one: not a stat line.
        assert_eq!(parse_stat(b"9 (x) S 1 \xff 0"), None);
    }

    #[test]
    fn cmdlines_that_differ_only_in_invalid_bytes_differ() {
        let a = parse_cmdline(b"sh\0\xff\0");
        let b = parse_cmdline(b"sh\0\xfe\0");
        assert_eq!(a.display(), b.display());
        assert_ne!(a, b);
        assert_eq!(a, parse_cmdline(b"sh\0\xff"));
    }

    #[test]
    fn long_cmdlines_keep_a_prefix_and_compare_whole() {
        let mut long = b"node\0-e\0".to_vec();
        long.extend(std::iter::repeat_n(b'x', 3 * CMDLINE_PREFIX));
        let mut other = long.clone();
        *other.last_mut().unwrap() = b'y';
        let a = parse_cmdline(&long);
        let b = parse_cmdline(&other);
        assert!(a.is_truncated() && b.is_truncated());
        assert_eq!(a.raw().len(), CMDLINE_PREFIX);
        assert_eq!(a.len(), long.len() as u64);
        // The same prefix and length, a different tail: not the same.
        assert_eq!(a.raw(), b.raw());
        assert_ne!(a, b);
        assert_eq!(a, parse_cmdline(&long));
        // The cut argument is left out of what is shown.
        assert_eq!(a.args().collect::<Vec<_>>(), ["node", "-e"]);
        assert_eq!(a.display(), "node -e …");
        // Read in pieces, trailing NULs dropped however they arrive.
        let mut pieces = CmdlineBuilder::new();
        for chunk in long.chunks(1000) {
            pieces.push(chunk);
        }
        pieces.push(b"\0\0");
        pieces.push(b"\0");
        assert_eq!(pieces.finish(), a);
        // NULs inside are kept: `a\0\0b` is not `a\0b`.
        assert_ne!(parse_cmdline(b"a\0\0b"), parse_cmdline(b"a\0b"));
        let mut split = CmdlineBuilder::new();
        split.push(b"a\0");
        split.push(b"\0b\0");
        assert_eq!(split.finish(), parse_cmdline(b"a\0\0b"));
        // One argument longer than the prefix: nothing shown but the mark.
        let one = parse_cmdline(&vec![b'z'; CMDLINE_PREFIX + 1]);
        assert_eq!(one.args().count(), 0);
        assert_eq!(one.display(), "…");
        assert!(!one.is_empty());
        // Exactly the prefix: whole.
        let exact = parse_cmdline(&vec![b'z'; CMDLINE_PREFIX]);
        assert!(!exact.is_truncated());
        assert_eq!(exact.args().count(), 1);
    }

    #[test]
    fn children_files_parse() {
        let mut v = Vec::new();
        parse_children("12 34 \n", &mut v);
        parse_children("", &mut v);
        parse_children("56", &mut v);
        assert_eq!(v, vec![12, 34, 56]);
    }
}
