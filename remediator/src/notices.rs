//! Notices: every finished decision that acted or would have acted (`done`,
//! `failed`, `dry_run`) is posted to each configured Alertmanager
//! (`--alertmanager-url`, repeatable for an HA pair) as an alert
//! [`NOTICE_ALERTNAME`], so the operator's existing receivers say what was
//! done. It resolves by itself ([`RESOLVE_AFTER`]).
//!
//! Posting is off the decision path: [`Notifier::notify`] only puts the
//! notice in a bounded queue ([`QUEUE`]); a task posts it, each request
//! bounded by [`REQUEST_TIMEOUT`] and tried [`TRIES`] times with a growing
//! pause. When the queue is full the notice is dropped. Every notice is
//! counted once per Alertmanager in
//! `pidwarden_remediator_notices_total{result="sent|failed|dropped"}`.
//!
//! Label and annotation values come from alerts and containers (hostile):
//! control characters are replaced and lengths bounded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::Request;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::alert::{clip, Action};
use crate::exchange::{exchange, ExchangeError};
use crate::metrics::Metrics;
use crate::outcome::Outcome;
use crate::pipeline::KillTally;
use crate::units::format_bytes;

/// The `alertname` of a notice.
pub const NOTICE_ALERTNAME: &str = "PidwardenRemediation";
/// Notices waiting to be posted at most; more are dropped (and counted).
pub const QUEUE: usize = 256;
/// Longest one request to an Alertmanager may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Notices being posted at once at most.
pub const CONCURRENT: usize = 8;
/// Tries per notice and Alertmanager.
pub const TRIES: u32 = 3;
/// Pause before the second try; doubled before each further one.
pub const BACKOFF: Duration = Duration::from_millis(500);
/// `endsAt` is this long after `startsAt`: the notice resolves by itself.
pub const RESOLVE_AFTER: Duration = Duration::from_secs(300);
/// Longest label value, in characters.
pub const LABEL_MAX: usize = 128;
/// Longest annotation value, in characters.
pub const ANNOTATION_MAX: usize = 1000;

/// An `--alertmanager-url` that does not name an Alertmanager.
#[derive(Debug, thiserror::Error)]
pub enum NoticeUrlError {
    /// Not an http(s) URL with a host.
    #[error("--alertmanager-url {0:?}: expected http://HOST[:PORT][/PATH] or https://…")]
    Form(String),
    /// Query, fragment or credentials in the URL.
    #[error("--alertmanager-url {0:?}: no user, query or fragment allowed")]
    Extra(String),
}

/// An Alertmanager to post notices to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertmanagerUrl {
    /// HTTPS (verified against the system's roots) instead of HTTP.
    pub https: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port (default 80 / 443).
    pub port: u16,
    /// Path prefix (Alertmanager's `--web.route-prefix`), no trailing `/`.
    pub prefix: String,
}

impl AlertmanagerUrl {
    /// Parses `http://host[:port][/prefix]` or `https://…`.
    pub fn parse(s: &str) -> Result<AlertmanagerUrl, NoticeUrlError> {
        let form = || NoticeUrlError::Form(clip(s, 200));
        let (https, rest) = if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(form());
        };
        if rest.contains(['?', '#', '@']) {
            return Err(NoticeUrlError::Extra(clip(s, 200)));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let uri: hyper::Uri = s.parse().map_err(|_| form())?;
        let host = uri.host().ok_or_else(form)?;
        if authority.is_empty() || host.is_empty() || path.chars().any(|c| c.is_whitespace()) {
            return Err(form());
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        // The port as written (the URI parser does not bound it).
        let written = authority
            .rsplit_once(':')
            .map(|(_, p)| p)
            .filter(|p| !p.contains(']'));
        let port = match written {
            Some(p) => p.parse::<u16>().map_err(|_| form())?,
            None => {
                if https {
                    443
                } else {
                    80
                }
            }
        };
        Ok(AlertmanagerUrl {
            https,
            host: host.to_string(),
            port,
            prefix: path.trim_end_matches('/').to_string(),
        })
    }

    /// The URL notices are posted to.
    pub fn alerts_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "{scheme}://{host}:{}{}/api/v2/alerts",
            self.port, self.prefix
        )
    }
}

impl std::str::FromStr for AlertmanagerUrl {
    type Err = NoticeUrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertmanagerUrl::parse(s)
    }
}

/// One alert as Alertmanager's `POST /api/v2/alerts` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// `alertname`, `id`, `name`, `namespace`, `pod`, `container`,
    /// `action`, `result` (empty ones left out).
    pub labels: BTreeMap<String, String>,
    /// `summary`, `description`.
    pub annotations: BTreeMap<String, String>,
    /// Now (RFC 3339).
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    /// [`RESOLVE_AFTER`] later.
    #[serde(rename = "endsAt")]
    pub ends_at: String,
}

/// What a notice says: the container, the action and how it ended.
#[derive(Debug, Clone)]
pub struct NoticeFacts<'a> {
    /// Full container id.
    pub id: &'a str,
    /// Container name (`<namespace>/<pod>/<container>` on Kubernetes).
    pub name: &'a str,
    /// Kubernetes namespace, pod and container, when it is one.
    pub kube: Option<(&'a str, &'a str, &'a str)>,
    /// The action.
    pub action: Action,
    /// How it ended.
    pub result: Outcome,
    /// Why (the audit row's reason).
    pub reason: &'a str,
    /// What a kill did, in copies.
    pub tally: Option<&'a KillTally>,
    /// The audit row.
    pub row: i64,
    /// Now, Unix nanoseconds.
    pub now_nanos: i128,
}

/// Whether a decision with this result is noticed.
pub fn is_noticed(result: Outcome) -> bool {
    matches!(result, Outcome::Done | Outcome::Failed | Outcome::DryRun)
}

/// A label or annotation value: control characters replaced by spaces,
/// at most `max` characters.
fn value(s: &str, max: usize) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    clip(cleaned.trim(), max)
}

/// The notice for a finished decision. Pure.
pub fn notice(f: &NoticeFacts<'_>) -> Notice {
    let mut labels = BTreeMap::new();
    let (ns, pod, container) = f.kube.unwrap_or(("", "", ""));
    for (k, v) in [
        ("alertname", NOTICE_ALERTNAME),
        ("id", f.id),
        ("name", f.name),
        ("namespace", ns),
        ("pod", pod),
        ("container", container),
        ("action", f.action.as_str()),
        ("result", f.result.as_str()),
    ] {
        let v = value(v, LABEL_MAX);
        if !v.is_empty() {
            labels.insert(k.to_string(), v);
        }
    }
    let who = if f.name.is_empty() {
        f.id.chars().take(12).collect::<String>()
    } else {
        f.name.to_string()
    };
    let summary = match (f.action, f.result, f.tally) {
        (Action::KillDuplicates, result, Some(t)) => {
            let command = clip(&t.command, 80);
            let memory = format_bytes(t.bytes);
            match result {
                Outcome::DryRun => format!(
                    "would kill {} of {} copies of `{command}` in {who}, {memory} would be freed (dry-run)",
                    t.killed, t.of
                ),
                Outcome::Failed => format!(
                    "kill-duplicates in {who} failed: killed {} of {} copies of `{command}`, {memory} freed",
                    t.killed, t.of
                ),
                _ => format!(
                    "killed {} of {} copies of `{command}` in {who}, {memory} freed",
                    t.killed, t.of
                ),
            }
        }
        (action, Outcome::DryRun, _) => format!("would {} {who} (dry-run)", action.as_str()),
        (action, Outcome::Failed, _) => format!("{} of {who} failed", action.as_str()),
        (Action::Restart, _, _) => format!("restarted {who}"),
        (action, result, _) => format!("{} of {who}: {}", action.as_str(), result.as_str()),
    };
    let description = format!(
        "pidwarden-remediator audit row {}: {} {} → {}. {}",
        f.row,
        f.action.as_str(),
        f.id,
        f.result.as_str(),
        f.reason
    );
    let annotations = BTreeMap::from([
        ("summary".to_string(), value(&summary, ANNOTATION_MAX)),
        (
            "description".to_string(),
            value(&description, ANNOTATION_MAX),
        ),
    ]);
    let ends = f.now_nanos + RESOLVE_AFTER.as_nanos() as i128;
    Notice {
        labels,
        annotations,
        starts_at: crate::timefmt::format_rfc3339(f.now_nanos),
        ends_at: crate::timefmt::format_rfc3339(ends),
    }
}

/// Posting one notice failed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// No connection.
    #[error("connecting to {0}: {1}")]
    Connect(String, #[source] std::io::Error),
    /// The TLS handshake failed.
    #[error("TLS with {0}: {1}")]
    Tls(String, #[source] std::io::Error),
    /// The host name is not a TLS server name.
    #[error("{0} is not a TLS server name")]
    Name(String),
    /// HTTPS without roots to verify against.
    #[error("no trusted roots for https")]
    NoRoots,
    /// HTTP failed.
    #[error("HTTP: {0}")]
    Http(#[from] ExchangeError),
    /// The request could not be built.
    #[error("request: {0}")]
    Request(#[from] hyper::http::Error),
    /// Alertmanager answered with an error status.
    #[error("answered {0}")]
    Status(u16),
    /// No answer in [`REQUEST_TIMEOUT`].
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Posts notices to Alertmanagers, off the decision path.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Notice>,
    targets: usize,
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// Starts the posting task (on the current tokio runtime) for `urls`;
    /// `tls` verifies `https` ones.
    pub fn start(
        urls: Vec<AlertmanagerUrl>,
        tls: Option<Arc<rustls::ClientConfig>>,
        metrics: Arc<Metrics>,
    ) -> Notifier {
        let (tx, mut rx) = mpsc::channel::<Notice>(QUEUE);
        let targets = urls.len();
        let urls = Arc::new(urls);
        let m = Arc::clone(&metrics);
        // Notices are posted concurrently, a few at a time, so one
        // Alertmanager that never answers does not hold the queue.
        let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
        tokio::spawn(async move {
            while let Some(notice) = rx.recv().await {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                let body = Bytes::from(serde_json::to_vec(&[&notice]).unwrap_or_default());
                let (urls, tls, m) = (Arc::clone(&urls), tls.clone(), Arc::clone(&m));
                tokio::spawn(async move {
                    let posts = urls.iter().map(|u| deliver(u, tls.clone(), body.clone()));
                    let results = futures_util::future::join_all(posts).await;
                    for (u, r) in urls.iter().zip(results) {
                        match r {
                            Ok(()) => m.notice("sent"),
                            Err(e) => {
                                tracing::warn!(alertmanager = %u.alerts_url(), error = %e, "posting a notice failed");
                                m.notice("failed");
                            }
                        }
                    }
                    drop(slot);
                });
            }
        });
        Notifier {
            tx,
            targets,
            metrics,
        }
    }

    /// Queues `notice`; never waits. A full queue drops it (counted).
    pub fn notify(&self, notice: Notice) {
        if self.tx.try_send(notice).is_err() {
            tracing::warn!("notice queue full; notice dropped");
            for _ in 0..self.targets {
                self.metrics.notice("dropped");
            }
        }
    }
}

/// One notice to one Alertmanager: [`TRIES`] tries, each bounded by
/// [`REQUEST_TIMEOUT`], with a doubling pause between them.
async fn deliver(
    url: &AlertmanagerUrl,
    tls: Option<Arc<rustls::ClientConfig>>,
    body: Bytes,
) -> Result<(), PostError> {
    let mut pause = BACKOFF;
    let mut tried = 0;
    loop {
        tried += 1;
        let r = match tokio::time::timeout(REQUEST_TIMEOUT, post(url, tls.clone(), body.clone()))
            .await
        {
            Ok(r) => r,
            Err(_) => Err(PostError::Timeout(REQUEST_TIMEOUT)),
        };
        // A 4xx will not change on a retry.
        let final_answer = matches!(r, Ok(()) | Err(PostError::Status(400..=499)));
        if final_answer || tried >= TRIES {
            return r;
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
}

async fn post(
    url: &AlertmanagerUrl,
    tls: Option<Arc<rustls::ClientConfig>>,
    body: Bytes,
) -> Result<(), PostError> {
    let authority = format!("{}:{}", url.host, url.port);
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| PostError::Connect(authority.clone(), e))?;
    let host_header = if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        authority.clone()
    };
    let req = Request::post(format!("{}/api/v2/alerts", url.prefix))
        .header(hyper::header::HOST, host_header)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))?;
    let status = if url.https {
        let cfg = tls.ok_or(PostError::NoRoots)?;
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|_| PostError::Name(url.host.clone()))?;
        let stream = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| PostError::Tls(authority.clone(), e))?;
        exchange(stream, req).await?.0
    } else {
        exchange(tcp, req).await?.0
    };
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(PostError::Status(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_are_refused() {
        let u = AlertmanagerUrl::parse("http://127.0.0.1:9093").unwrap();
        assert_eq!(u.alerts_url(), "http://127.0.0.1:9093/api/v2/alerts");
        let u = AlertmanagerUrl::parse("https://am.example/prefix/").unwrap();
        assert_eq!(
            u.alerts_url(),
            "https://am.example:443/prefix/api/v2/alerts"
        );
        let u = AlertmanagerUrl::parse("http://[::1]:9093").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.alerts_url(), "http://[::1]:9093/api/v2/alerts");
        for bad in [
            "",
            "am:9093",
            "ftp://am",
            "http://",
            "http:///x",
            "http://a b",
            "http://u:p@am",
            "http://am?x=1",
            "http://am:99999",
        ] {
            assert!(AlertmanagerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    fn facts<'a>(tally: Option<&'a KillTally>, result: Outcome) -> NoticeFacts<'a> {
        NoticeFacts {
            id: "abc",
            name: "shop/web-1/app",
            kube: Some(("shop", "web-1", "app")),
            action: Action::KillDuplicates,
            result,
            reason: "r",
            tally,
            row: 7,
            now_nanos: 1_700_000_000_000_000_000,
        }
    }

    #[test]
    fn a_kill_notice_says_what_was_killed_and_freed() {
        let t = KillTally {
            killed: 12,
            of: 13,
            command: "npm exec @x/server".into(),
            bytes: 3_328_599_654,
        };
        let n = notice(&facts(Some(&t), Outcome::Done));
        assert_eq!(
            n.annotations["summary"],
            "killed 12 of 13 copies of `npm exec @x/server` in shop/web-1/app, 3.1 GiB freed"
        );
        assert_eq!(n.labels["alertname"], NOTICE_ALERTNAME);
        assert_eq!(n.labels["namespace"], "shop");
        assert_eq!(n.labels["result"], "done");
        assert_eq!(n.starts_at, "2023-11-14T22:13:20.000Z");
        assert_eq!(n.ends_at, "2023-11-14T22:18:20.000Z");
        let n = notice(&facts(Some(&t), Outcome::DryRun));
        assert!(n.annotations["summary"].starts_with("would kill 12 of 13"));
    }

    #[test]
    fn hostile_values_are_bounded_and_empty_labels_left_out() {
        let long = format!("x\n\u{7}{}", "é".repeat(5000));
        let f = NoticeFacts {
            name: &long,
            kube: None,
            reason: &long,
            ..facts(None, Outcome::Failed)
        };
        let n = notice(&f);
        assert!(n.labels["name"].chars().count() <= LABEL_MAX + 1);
        assert!(!n.labels["name"].contains(['\n', '\u{7}']));
        assert!(!n.labels.contains_key("namespace"));
        assert!(n.annotations["description"].chars().count() <= ANNOTATION_MAX + 1);
        assert!(!is_noticed(Outcome::Recovered));
        assert!(is_noticed(Outcome::DryRun));
    }
}
