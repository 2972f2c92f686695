//! `/proc/<pid>/status` (its `Name:` line is the process's own choice):
//! the `NSpid` parser never panics; nor does reading a container process's
//! `/proc/<pid>/cgroup` (paths it can choose inside a delegated subtree)
//! for the membership check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pidwarden_shared::cgroup::{is_within, path_in, Hierarchy};
use pidwarden_shared::procfs::parse_nspid;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_nspid(&text);
    // `/proc/<pid>/cgroup`, read as text the same way.
    let scope = format!("/system.slice/docker-{}.scope", "a".repeat(64));
    for h in [Hierarchy::Unified, Hierarchy::V1("pids".to_string())] {
        if let Some(path) = path_in(&text, &h) {
            let _ = is_within(path, &scope);
        }
    }
});
