//! Alertmanager webhook bodies (anyone who can post an alert shapes them):
//! parsing and reading every alert never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pidwarden_remediator::alert::{clip, parse_payload};

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = parse_payload(data) else {
        return;
    };
    for a in &payload.alerts {
        let _ = a.alertname();
        let _ = a.is_resolved();
        let _ = a.action_label();
        let _ = a.starts_at_nanos();
        let _ = a.target();
        let _ = clip(&a.fingerprint, 16);
    }
});
