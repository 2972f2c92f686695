//! `/proc/<pid>/cmdline`, any bytes at any length: parsing never panics,
//! reading in pieces gives the same command line as reading it whole, and
//! what is shown is bounded and redacted without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pidwarden_shared::procfs::{parse_cmdline, CmdlineBuilder, CMDLINE_PREFIX};
use pidwarden_shared::redact::redact_command;

fuzz_target!(|data: &[u8]| {
    let whole = parse_cmdline(data);
    assert!(
        whole.raw().len() <= CMDLINE_PREFIX * 3,
        "the prefix is bounded (text may grow by replacement)"
    );
    assert_eq!(whole.is_empty(), data.iter().all(|&b| b == 0));
    let _ = whole.display();
    let _ = whole.args().count();
    // Split at a point the input chooses, and in small pieces.
    let at = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let mut two = CmdlineBuilder::new();
    two.push(&data[..at]);
    two.push(&data[at..]);
    assert_eq!(two.finish(), whole);
    let mut bytes = CmdlineBuilder::new();
    for chunk in data.chunks(7) {
        bytes.push(chunk);
    }
    assert_eq!(bytes.finish(), whole);
    let max = data.len() % 200;
    let shown = redact_command(&whole, max);
    assert!(shown.chars().count() <= max);
});
