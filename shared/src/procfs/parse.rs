//! Parsing of `/proc/<pid>` files, with no I/O: `stat`, `cmdline`,
//! `children` and `status`. Tested on literal strings.

use std::sync::Arc;

use serde::Serialize;

/// Fields parsed from `/proc/<pid>/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// PID.
    pub pid: i32,
    /// `comm`, without the parentheses.
    pub comm: String,
    /// State letter.
    pub state: char,
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
/// form the reader uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StatRef<'a> {
    pub(super) pid: i32,
    pub(super) comm: &'a str,
    pub(super) state: char,
    pub(super) ppid: i32,
    pub(super) cpu_ticks: u64,
    pub(super) child_cpu_ticks: u64,
    pub(super) threads: u64,
    pub(super) start_time: u64,
}

/// Parses `stat` content. `comm` may hold spaces and `)`, so the fields after
/// it start after the *last* `)`.
pub(super) fn parse_stat_ref(content: &str) -> Option<StatRef<'_>> {
    let open = content.find('(')?;
    let close = content.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = content[..open].trim().parse().ok()?;
    let comm = &content[open + 1..close];
    // Fields from 3 (state) on; index i is field i + 3.
    let mut rest = content[close + 1..].split_ascii_whitespace();
    let state = rest.next()?.chars().next()?;
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

/// Parses the content of `/proc/<pid>/stat` (comm may contain spaces and
/// parentheses). Pure.
pub fn parse_stat(content: &str) -> Option<Stat> {
    let s = parse_stat_ref(content)?;
    Some(Stat {
        pid: s.pid,
        comm: s.comm.to_owned(),
        state: s.state,
        ppid: s.ppid,
        cpu_ticks: s.cpu_ticks,
        child_cpu_ticks: s.child_cpu_ticks,
        threads: s.threads,
        start_time: s.start_time,
    })
}

/// A command line as the kernel holds it: the arguments separated by NUL,
/// in one shared allocation. Two command lines are equal only when their
/// arguments are: `sh /w.sh "a b"` (three arguments) and `sh /w.sh a b`
/// (four) differ, although both show as `sh /w.sh a b`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cmdline(Arc<str>);

impl Cmdline {
    /// From the bytes of `/proc/<pid>/cmdline`: trailing NULs (the
    /// terminator, or the padding left by programs that rewrite their title)
    /// are dropped; invalid UTF-8 is replaced. Pure.
    pub fn from_raw(raw: &[u8]) -> Cmdline {
        let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        Cmdline(Arc::from(String::from_utf8_lossy(&raw[..end])))
    }

    /// From separate arguments.
    pub fn from_args<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Cmdline {
        let mut raw = String::new();
        for (i, a) in args.into_iter().enumerate() {
            if i > 0 {
                raw.push('\0');
            }
            raw.push_str(a.as_ref());
        }
        Cmdline(Arc::from(raw))
    }

    /// The arguments separated by NUL, as compared.
    pub fn raw(&self) -> &str {
        &self.0
    }

    /// The arguments; none for an empty command line.
    pub fn args(&self) -> impl Iterator<Item = &str> {
        let mut it = self.0.split('\0');
        if self.0.is_empty() {
            it.next();
        }
        it
    }

    /// The arguments joined by single spaces: how a command line is shown
    /// (and matched by protected patterns). Borrowed for a single argument.
    pub fn display(&self) -> std::borrow::Cow<'_, str> {
        if self.0.contains('\0') {
            std::borrow::Cow::Owned(self.0.replace('\0', " "))
        } else {
            std::borrow::Cow::Borrowed(&self.0)
        }
    }

    /// True for the empty command line (kernel threads, zombies).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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

    const STAT: &str = "7378 (cat) R 7375 7375 5668 0 -1 4194304 100 0 0 0 3 4 0 0 20 0 1 0 59100 3133440 383 18446744073709551615 0 0\n";

    #[test]
    fn parses_a_plain_stat_line() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(
            s,
            Stat {
                pid: 7378,
                comm: "cat".into(),
                state: 'R',
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
        assert_eq!(s.state, 'Z');
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
    fn children_files_parse() {
        let mut v = Vec::new();
        parse_children("12 34 \n", &mut v);
        parse_children("", &mut v);
        parse_children("56", &mut v);
        assert_eq!(v, vec![12, 34, 56]);
    }
}
