//! The redactor over any text and any argument list: it never panics, the
//! length bound holds, and a value given to a password option never shows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pidwarden_shared::procfs::Cmdline;
use pidwarden_shared::redact::{redact_args, redact_cmdline, redact_command};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let max = data.len() % 300;
    let shown = redact_cmdline(&text, max);
    assert!(shown.chars().count() <= max);
    let args: Vec<&str> = text.split('\0').collect();
    let _ = redact_args(args.iter().copied());
    let shown = redact_command(&Cmdline::from_raw(data), max);
    assert!(shown.chars().count() <= max);
    // Whatever comes before, a secret given as `--password=…` never shows.
    let secret = "Zq7Kx9Wv3";
    let mut with = args.clone();
    let flag = format!("--password={secret}");
    with.push(&flag);
    let out = redact_args(with.iter().copied());
    assert!(!out.last().unwrap().contains(secret), "{:?}", out.last());
});
