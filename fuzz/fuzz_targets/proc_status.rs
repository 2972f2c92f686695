//! `/proc/<pid>/status` (its `Name:` line is the process's own choice):
//! the `NSpid` parser never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pidwarden_shared::procfs::parse_nspid;
use pidwarden_shared::victims::cgroup_names_container;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_nspid(&text);
    // `/proc/<pid>/cgroup`, read as text the same way.
    let id = "a".repeat(64);
    let _ = cgroup_names_container(&text, &id);
});
