//! What only the end-to-end scenarios need on top of the kit's [`Stack`]:
//! a sampler reading the container's pids cgroup every 250 ms, the leaking
//! workload, and the arithmetic over their samples.
//!
//! [`Stack`]: pidwarden_tests::Stack
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pidwarden_tests::now_ms;

/// One reading of the container's pids cgroup and process table.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at_ms: i64,
    /// `pids.current` (None while the cgroup is gone, e.g. mid-restart).
    pub tasks: Option<u64>,
    /// Surplus duplicates: siblings with identical command lines, size - 1 summed.
    pub duplicates: u64,
    /// `pids.events` max (refused forks) of the current cgroup incarnation.
    pub refused: Option<u64>,
}

/// Reads the container's pids cgroup every 250 ms in a thread.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Sample>>>,
}

fn read_u64(p: &Path) -> Option<u64> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// `max` of a pids.events file.
pub fn refused_forks(pids_dir: &Path) -> Option<u64> {
    let text = fs::read_to_string(pids_dir.join("pids.events")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("max ").and_then(|v| v.trim().parse().ok()))
}

/// Surplus duplicates among the processes of a cgroup, computed the way the
/// exporter defines them: siblings (same parent) with identical command
/// lines, group size minus one, summed. Zombies (no command line) excluded.
pub fn duplicates(pids_dir: &Path) -> u64 {
    let procs = fs::read_to_string(pids_dir.join("cgroup.procs")).unwrap_or_default();
    let mut groups: HashMap<(u32, Vec<u8>), u64> = HashMap::new();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if cmdline.is_empty() {
            continue;
        }
        *groups.entry((ppid, cmdline)).or_default() += 1;
    }
    groups.values().map(|n| n - 1).sum()
}

impl Sampler {
    /// Starts sampling `pids_dir` (the container's v1 pids cgroup).
    pub fn start(pids_dir: PathBuf) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                out.push(Sample {
                    at_ms: now_ms(),
                    tasks: read_u64(&pids_dir.join("pids.current")),
                    duplicates: duplicates(&pids_dir),
                    refused: refused_forks(&pids_dir),
                });
                next += Duration::from_millis(250);
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
            out
        });
        Sampler {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops and returns the samples.
    pub fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Refused forks over the whole run: the sum, over every incarnation of the
/// cgroup (a restart starts a fresh counter), of its highest `max` count.
pub fn total_refused(samples: &[Sample]) -> u64 {
    let mut total = 0;
    let mut cur = 0;
    for s in samples {
        match s.refused {
            Some(v) if v >= cur => cur = v,
            Some(v) => {
                total += cur;
                cur = v;
            }
            None => {
                total += cur;
                cur = 0;
            }
        }
    }
    total + cur
}

/// The leaking workload: init starts one more copy of the same server
/// command line every `every` seconds, as long as fewer than `cap` copies
/// live (a cap far above the PID limit: an unbounded leak). Each copy is a
/// small tree (wrapper `sh -c "$SERVER"` → `sh -c "$IDLE"` → `sleep 1`,
/// three tasks); the first copy to create `/serving` becomes the active one
/// (it burns CPU in a loop, as a server answering a client would) and writes
/// its PID in the container's namespace to `/serving/pid`. Init counts its
/// live copies with builtins only (`read` of `/proc/<pid>/stat`), and its
/// foreground `sleep` reaps the copies that die, as a real gateway's event
/// loop would.
pub fn leaking_container_args(every: &str, cap: u32) -> (Vec<String>, Vec<String>) {
    let env = [
        "SERVER=if mkdir /serving 2>/dev/null; then echo $$ > /serving/pid; sh -c \"$BUSY\"; else sh -c \"$IDLE\"; fi; true".to_string(),
        "BUSY=while :; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 0.1; done".to_string(),
        "IDLE=while :; do sleep 1; done".to_string(),
        format!("EVERY={every}"),
        format!("CAP={cap}"),
    ]
    .into_iter()
    .flat_map(|e| ["-e".to_string(), e])
    .collect();
    let cmd = vec!["sh".to_string(), "-c".to_string(), LEAKING_INIT.to_string()];
    (env, cmd)
}

/// Init of the leaking container (see [`leaking_container_args`]).
pub const LEAKING_INIT: &str = "rm -rf /serving; pids=''; \
while :; do \
n=0; alive=''; \
for p in $pids; do s=''; { read -r _ _ s _ < /proc/$p/stat; } 2>/dev/null; \
case \"$s\" in ''|Z|X) ;; *) alive=\"$alive $p\"; n=$((n+1)) ;; esac; done; \
pids=$alive; \
if [ $n -lt $CAP ]; then sh -c \"$SERVER\" & pids=\"$pids $!\"; fi; \
sleep $EVERY; \
done";

/// Host PID and start time (clock ticks) of the serving copy, found through
/// `/proc/<init>/root/serving/pid` (a PID in the container's namespace) and
/// the `NSpid` lines of the processes in the container's cgroup.
pub fn serving_copy(init_pid: u32, pids_dir: &Path) -> Option<(u32, u64)> {
    let ns_pid: u32 = fs::read_to_string(format!("/proc/{init_pid}/root/serving/pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let procs = fs::read_to_string(pids_dir.join("cgroup.procs")).ok()?;
    for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let last = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|v| v.split_whitespace().last())
            .and_then(|v| v.parse::<u32>().ok());
        if last == Some(ns_pid) {
            return Some((pid, start_time(pid)?));
        }
    }
    None
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // After ")": field 3 is state; start time is field 22 → index 19.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Formats milliseconds as seconds with one decimal.
pub fn secs(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}
