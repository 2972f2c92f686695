//! Checking an exposition with an independent parser: Prometheus's own
//! `promtool check metrics` (Debian package `prometheus`).

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Runs `promtool check metrics` on `text` (classic Prometheus text format)
/// and panics with promtool's findings and the exposition when it reports a
/// problem, or when promtool is not installed.
pub fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is required for this test (Debian package `prometheus`): {e}")
        });
    // Dropping the handle at the end of the statement closes promtool's stdin.
    child
        .stdin
        .take()
        .expect("promtool stdin is piped")
        .write_all(text.as_bytes())
        .expect("writing the exposition to promtool");
    let out = child.wait_with_output().expect("waiting for promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- exposition ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_valid_exposition() {
        promtool_check("# HELP x_total Things.\n# TYPE x_total counter\nx_total{a=\"b\"} 3\n");
    }

    #[test]
    #[should_panic(expected = "promtool check metrics failed")]
    fn rejects_a_malformed_exposition() {
        promtool_check("# TYPE x gauge\nx{a=\"unterminated} 1\n");
    }
}
