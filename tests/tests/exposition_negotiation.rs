//! Both daemons answer the same `Accept` headers with the same exposition
//! format: the exporter and the remediator are started from their built
//! binaries and `/metrics` is fetched from each over real HTTP with the
//! headers Prometheus sends, `q=0`, wildcards, garbage and none; then
//! both stop gracefully on SIGTERM.

use std::time::Duration;

use pidwarden_tests::{try_http_get_with, Exporter, Remediator, Reply, TempDir};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `Accept` headers (each a list of header values) and the format both
/// daemons must serve.
const CASES: &[(&[&str], &str)] = &[
    (&[], TEXT),
    // Prometheus 2.x default scrape protocols.
    (
        &["application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"],
        OPENMETRICS,
    ),
    // Prometheus 3.x default.
    (
        &["application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"],
        OPENMETRICS,
    ),
    // Prometheus with scrape_protocols: [PrometheusText0.0.4].
    (&["text/plain;version=0.0.4;q=1,*/*;q=0.1"], TEXT),
    (&["application/openmetrics-text; version=1.0.0"], OPENMETRICS),
    (&["application/openmetrics-text;q=0"], TEXT),
    (&["application/openmetrics-text;q=0, */*"], TEXT),
    (&["text/plain;q=0.5,application/openmetrics-text;q=0.1"], TEXT),
    (&["text/plain;q=0.1", "application/openmetrics-text;q=0.5"], OPENMETRICS),
    (&["*/*"], TEXT),
    (&["garbage;;,,q=x"], TEXT),
    (&["application/openmetrics-text;q=high"], TEXT),
];

fn fetch(url: &str, accept: &[&str]) -> Reply {
    let headers: Vec<(&str, &str)> = accept.iter().map(|v| ("Accept", *v)).collect();
    try_http_get_with(url, &headers).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

#[test]
fn both_daemons_serve_the_same_format_for_the_same_accept() {
    let mut exporter = Exporter::start(Vec::<String>::new());
    let dir = TempDir::new();
    let mut remediator = Remediator::start(&dir, None, Vec::<String>::new());
    for &(accept, want) in CASES {
        for (daemon, url) in [
            ("exporter", exporter.url("/metrics")),
            ("remediator", remediator.url("/metrics")),
        ] {
            let reply = fetch(&url, accept);
            assert_eq!(reply.status, 200, "{daemon}, Accept {accept:?}: {reply:?}");
            assert_eq!(
                reply.content_type, want,
                "{daemon}, Accept {accept:?}: the format served"
            );
            // The body is what the Content-Type says: OpenMetrics ends in
            // `# EOF` and names counter families without `_total`; the text
            // format has neither `# EOF` nor `# UNIT` and names them with it.
            let om = want == OPENMETRICS;
            let body = &reply.body;
            let counter_total = body
                .lines()
                .filter(|l| l.starts_with("# TYPE ") && l.ends_with(" counter"))
                .map(|l| l.trim_end_matches(" counter").ends_with("_total"))
                .collect::<Vec<_>>();
            assert!(!counter_total.is_empty(), "{daemon}: no counter\n{body}");
            assert!(
                counter_total.iter().all(|&t| t != om),
                "{daemon}, Accept {accept:?}: counter names\n{body}"
            );
            assert_eq!(body.ends_with("# EOF\n"), om, "{daemon}, Accept {accept:?}");
            if !om {
                assert!(!body.contains("# UNIT "), "{daemon}: {body}");
            }
        }
    }
    // Both shut down gracefully on SIGTERM (the shared shutdown_signal).
    for (daemon, d) in [
        ("exporter", &mut exporter.daemon),
        ("remediator", &mut remediator.daemon),
    ] {
        let status = d.stop(Duration::from_secs(10));
        assert!(status.success(), "{daemon}: {status:?}\n{}", d.log());
    }
}
