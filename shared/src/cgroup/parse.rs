//! Pure parsers for cgroup control files: no I/O, tested on literal strings.

use crate::Limit;

/// cgroup v1 reports "no limit" as `i64::MAX` rounded down to a page
/// (`9223372036854771712` with 4 KiB pages). Anything at or above this value
/// is treated as unlimited.
pub const V1_UNLIMITED_THRESHOLD: u64 = 0x7FFF_FFFF_FFFF_F000;

/// Parses a single unsigned number file (`pids.current`, `memory.current`,
/// `memory.usage_in_bytes`), surrounding whitespace allowed.
pub fn parse_u64(content: &str) -> Option<u64> {
    content.trim().parse().ok()
}

/// Parses a limit file (`pids.max`, `memory.max`, `memory.limit_in_bytes`):
/// `max` is [`Limit::Unlimited`], as is any value at or above
/// [`V1_UNLIMITED_THRESHOLD`]; otherwise [`Limit::Max`].
pub fn parse_limit(content: &str) -> Option<Limit> {
    let s = content.trim();
    if s == "max" {
        return Some(Limit::Unlimited);
    }
    let v: u64 = s.parse().ok()?;
    Some(limit_from_value(v))
}

/// Turns a number read as a limit into a [`Limit`], mapping v1's page-rounded
/// `i64::MAX` (and anything above) to [`Limit::Unlimited`].
pub fn limit_from_value(v: u64) -> Limit {
    if v >= V1_UNLIMITED_THRESHOLD {
        Limit::Unlimited
    } else {
        Limit::Max(v)
    }
}

/// Iterates over the `key value` lines of a flat-keyed file (`pids.events`,
/// `memory.stat`, `memory.events`, `memory.oom_control`). Lines whose value is
/// not an unsigned number are skipped.
pub fn flat_keyed(content: &str) -> impl Iterator<Item = (&str, u64)> {
    content.lines().filter_map(|line| {
        let mut parts = line.split_whitespace();
        let key = parts.next()?;
        let value = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some((key, value))
    })
}

/// The value of `key` in a flat-keyed file, when present. The key must match
/// exactly (`max` does not match `max.imposed`).
pub fn flat_keyed_value(content: &str, key: &str) -> Option<u64> {
    // The key is searched for, not each line split and parsed: memory.stat
    // has dozens of lines.
    content.match_indices(key).find_map(|(at, _)| {
        let before = content[..at].bytes().next_back();
        if before.is_some_and(|b| b != b'\n' && !b.is_ascii_whitespace()) {
            return None;
        }
        let line = content[at + key.len()..].lines().next()?;
        if !line.starts_with(|c: char| c.is_ascii_whitespace()) {
            return None;
        }
        let mut parts = line.split_whitespace();
        let value = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(value)
    })
}

/// Whether the cgroup2 mounts in a `/proc/<pid>/mountinfo` carry the
/// `pids_localevents` super option; `None` when no cgroup2 is mounted.
pub fn cgroup2_pids_local_events(mountinfo: &str) -> Option<bool> {
    mountinfo.lines().find_map(|line| {
        // `<id> <parent> <dev> <root> <mount point> <options> [tags] - <type> <source> <super options>`
        let (_, after) = line.split_once(" - ")?;
        let mut f = after.split_ascii_whitespace();
        if f.next()? != "cgroup2" {
            return None;
        }
        let super_opts = f.nth(1).unwrap_or("");
        Some(super_opts.split(',').any(|o| o == "pids_localevents"))
    })
}

/// Parses `cgroup.procs`: one PID per line. Lines that are not a positive PID
/// are skipped.
pub fn parse_procs(content: &str) -> Vec<i32> {
    content
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_files() {
        assert_eq!(parse_u64("42\n"), Some(42));
        assert_eq!(parse_u64("  0 "), Some(0));
        assert_eq!(parse_u64("18446744073709551615\n"), Some(u64::MAX));
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("-1\n"), None);
        assert_eq!(parse_u64("max\n"), None);
        assert_eq!(parse_u64("12 34\n"), None);
    }

    #[test]
    fn limits() {
        let cases: &[(&str, Option<Limit>)] = &[
            ("max\n", Some(Limit::Unlimited)),
            ("max", Some(Limit::Unlimited)),
            ("100\n", Some(Limit::Max(100))),
            ("0\n", Some(Limit::Max(0))),
            ("268435456\n", Some(Limit::Max(268_435_456))),
            // v1 memory.limit_in_bytes when unlimited (4 KiB pages)
            ("9223372036854771712\n", Some(Limit::Unlimited)),
            // i64::MAX itself, and the 64 KiB-page rounding
            ("9223372036854775807\n", Some(Limit::Unlimited)),
            (
                "9223372036854710272\n",
                Some(Limit::Max(9_223_372_036_854_710_272)),
            ),
            (
                "9223372036854767616\n",
                Some(Limit::Max(9_223_372_036_854_767_616)),
            ),
            ("", None),
            ("Max\n", None),
            ("-1\n", None),
            ("12k\n", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_limit(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn flat_keyed_files() {
        let pids_events = "max 7\n";
        assert_eq!(flat_keyed_value(pids_events, "max"), Some(7));
        let pids_events_new = "max 3\nmax.imposed 5\n";
        assert_eq!(flat_keyed_value(pids_events_new, "max"), Some(3));
        assert_eq!(flat_keyed_value(pids_events_new, "max.imposed"), Some(5));

        let mem_events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(flat_keyed_value(mem_events, "oom_kill"), Some(1));
        assert_eq!(flat_keyed_value(mem_events, "oom"), Some(2));
        assert_eq!(flat_keyed_value(mem_events, "oom_group_kill"), Some(0));

        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n";
        assert_eq!(flat_keyed_value(oom_control, "oom_kill"), Some(4));
        assert_eq!(flat_keyed_value(oom_control, "oom_kill_disable"), Some(0));

        let v1_stat = "cache 9478144\nrss 3751936\ninactive_file 176128\n\
                       hierarchical_memory_limit 9223372036854771712\n\
                       total_inactive_file 121614336\n";
        assert_eq!(flat_keyed_value(v1_stat, "inactive_file"), Some(176_128));
        assert_eq!(
            flat_keyed_value(v1_stat, "total_inactive_file"),
            Some(121_614_336)
        );
        assert_eq!(
            flat_keyed_value(v1_stat, "hierarchical_memory_limit"),
            Some(9_223_372_036_854_771_712)
        );

        assert_eq!(flat_keyed_value("", "max"), None);
        assert_eq!(flat_keyed_value("maximum 3\n", "max"), None);
        assert_eq!(flat_keyed_value("max\n", "max"), None);
        assert_eq!(flat_keyed_value("max x\nmax 2\n", "max"), Some(2));
        assert_eq!(flat_keyed_value("max 1 2\n", "max"), None);
        let all: Vec<_> = flat_keyed("a 1\n\nb 2\nc -3\n").collect();
        assert_eq!(all, vec![("a", 1), ("b", 2)]);
    }

    #[test]
    fn procs() {
        assert_eq!(parse_procs("1\n23\n456\n"), vec![1, 23, 456]);
        assert_eq!(parse_procs(""), Vec::<i32>::new());
        assert_eq!(parse_procs("0\n-5\nx\n7\n"), vec![7]);
    }

    #[test]
    fn pids_localevents_mount_option() {
        // As mounted in the VM tests' guest (6.12), before and after
        // `mount -o remount,pids_localevents`.
        let plain = "22 1 0:20 / /proc rw,relatime - proc proc rw\n\
                     28 25 0:25 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n";
        let local = "28 25 0:25 / /sys/fs/cgroup rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,pids_localevents\n";
        assert_eq!(cgroup2_pids_local_events(plain), Some(false));
        assert_eq!(cgroup2_pids_local_events(local), Some(true));
        // Only the super options count, and only of cgroup2.
        let v1 = "30 25 0:26 / /sys/fs/cgroup/pids rw,pids_localevents - cgroup cgroup rw,pids\n";
        assert_eq!(cgroup2_pids_local_events(v1), None);
        assert_eq!(cgroup2_pids_local_events(""), None);
        assert_eq!(
            cgroup2_pids_local_events("1 2 0:1 / /x rw - cgroup2 none rw,pids_localevents_x\n"),
            Some(false)
        );
    }
}
