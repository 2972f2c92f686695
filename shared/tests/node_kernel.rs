//! The node's figures read from this host's `/proc`, compared with what the
//! kernel says at the same moment: the limits exactly, the task count
//! within the tasks that came and went meanwhile, and moving by N when this
//! test starts N threads.

use std::sync::{Arc, Barrier};

use pidwarden_shared::node::{read_boot_time, read_node};
use pidwarden_shared::Roots;

fn kernel_tasks() -> u64 {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap()
        .split_whitespace()
        .nth(3)
        .and_then(|f| f.split_once('/'))
        .and_then(|(_, t)| t.parse().ok())
        .unwrap()
}

fn sysctl(name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Other work on the host starts and ends tasks between two reads.
const SLACK: u64 = 60;

#[test]
fn node_figures_are_the_kernels_and_follow_threads() {
    let roots = Roots::default();
    let boot = read_boot_time(&roots)
        .unwrap()
        .expect("/proc/stat has btime");
    let read = || read_node(&roots, boot).unwrap().expect("node files exist");

    let before = kernel_tasks();
    let n = read();
    let after = kernel_tasks();
    assert_eq!(n.pid_max, sysctl("pid_max"));
    assert_eq!(n.threads_max, sysctl("threads-max"));
    assert_eq!(n.limit(), n.pid_max.min(n.threads_max));
    assert_eq!(n.headroom(), n.limit() - n.tasks);
    assert!(
        n.tasks + SLACK >= before.min(after) && n.tasks <= before.max(after) + SLACK,
        "read {}, kernel {before}..{after}",
        n.tasks
    );

    // N more threads: the count moves by N (give or take the host's churn).
    const N: usize = 300;
    let idle = read().tasks;
    let gate = Arc::new(Barrier::new(N + 1));
    let release = Arc::new(Barrier::new(N + 1));
    let handles: Vec<_> = (0..N)
        .map(|_| {
            let (g, r) = (gate.clone(), release.clone());
            std::thread::spawn(move || {
                g.wait();
                r.wait();
            })
        })
        .collect();
    gate.wait();
    let busy = read().tasks;
    release.wait();
    for h in handles {
        h.join().unwrap();
    }
    let moved = busy as i64 - idle as i64;
    assert!(
        (moved - N as i64).unsigned_abs() <= SLACK,
        "{N} threads moved the count by {moved} ({idle} → {busy})"
    );
}
