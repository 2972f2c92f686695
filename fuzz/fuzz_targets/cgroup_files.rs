//! cgroup control files and cgroup paths (a tenant with a delegated
//! subtree names its cgroups): the parsers and the classifier never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pidwarden_shared::cgroup::classify;
use pidwarden_shared::cgroup::parse::{
    flat_keyed, flat_keyed_value, parse_limit, parse_procs, parse_u64,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_u64(&text);
    let _ = parse_limit(&text);
    let _ = flat_keyed(&text).count();
    for key in [
        "max",
        "oom_kill",
        "inactive_file",
        "total_inactive_file",
        "",
    ] {
        let _ = flat_keyed_value(&text, key);
    }
    // A key taken from the input too.
    if let Some((key, content)) = text.split_once('\n') {
        let _ = flat_keyed_value(content, key);
    }
    for pid in parse_procs(&text) {
        assert!(pid > 0);
    }
    let _ = classify(&text);
});
