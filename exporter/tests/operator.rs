//! What an operator sees of the exporter binary itself: `build_info` and
//! `--version` name the git revision it was built from, and
//! `--log-format json` writes one JSON object per log line.

use std::process::Command;
use std::time::Duration;

use pidwarden_tests::{poll_until, source_revision, workspace_bin, Exporter};

#[test]
fn build_info_and_version_name_the_source_revision() {
    let rev = source_revision();
    let e = Exporter::start(["--log-format", "text"]);
    let want = format!(
        "pidwarden_build_info{{version=\"{}\",revision=\"{rev}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let m = e.metrics();
    assert!(m.lines().any(|l| l == want), "{want} not in\n{m}");
    let out = Command::new(workspace_bin("pidwarden-exporter"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!(
            "pidwarden-exporter {} (revision {rev})",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn log_format_json_writes_json_lines() {
    let e = Exporter::start(["--log-format", "json"]);
    e.metrics();
    let line = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        e.daemon.log().lines().next().map(str::to_string)
    })
    .unwrap_or_else(|| panic!("the exporter logged nothing"));
    for line in e.daemon.log().lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a JSON log line ({err}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(v["timestamp"].is_string(), "{line}");
}
