//! `/proc/<pid>/stat` as any process can shape it through its name: the
//! parser never panics, and what it reads back is what was written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pidwarden_shared::procfs::{parse_stat, ProcState};

fuzz_target!(|data: &[u8]| {
    let _ = parse_stat(data);
    // A well-formed line whose comm is the input (the kernel keeps any
    // bytes but NUL, cut at 15): the fields after it always parse.
    let comm: Vec<u8> = data.iter().copied().filter(|&b| b != 0).take(15).collect();
    let mut line = b"42 (".to_vec();
    line.extend_from_slice(&comm);
    line.extend_from_slice(b") S 7 42 42 0 -1 0 0 0 0 0 3 4 5 6 20 0 2 0 777 0 0\n");
    let s = parse_stat(&line).expect("a stat line with any comm parses");
    assert_eq!((s.pid, s.state, s.ppid), (42, ProcState::Sleeping, 7));
    assert_eq!(
        (s.cpu_ticks, s.child_cpu_ticks, s.threads, s.start_time),
        (7, 11, 2, 777)
    );
    assert_eq!(s.comm, String::from_utf8_lossy(&comm));
});
