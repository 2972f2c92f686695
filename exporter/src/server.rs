//! The HTTP side: `/metrics` (collection at scrape time, one at a time, off
//! the async workers), `/healthz`, and a small index page.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use pidwarden_shared::collect::{Collector, Snapshot};
use pidwarden_shared::exposition::Format;
use pidwarden_shared::runtime::Kind;
use pidwarden_shared::Roots;
use tokio::sync::Mutex;

use crate::encode::encode;
use crate::group_memory::GroupMemory;
use crate::metrics::{build_families, CommandLabels, RenderOptions, SelfStats};
use crate::runtime::MetaCache;
use crate::scrape_errors::{ErrorCounts, LogLimiter};

/// Something that produces one collection; blocking.
pub trait SnapshotSource: Send + 'static {
    /// Collects every container.
    fn collect(&mut self) -> Snapshot;
    /// The roots the collections were read under, when they are a live
    /// host's: the groups' memory is then read there too.
    fn roots(&self) -> Option<&Roots> {
        None
    }
}

impl SnapshotSource for Collector {
    fn collect(&mut self) -> Snapshot {
        Collector::collect(self)
    }

    fn roots(&self) -> Option<&Roots> {
        Some(Collector::roots(self))
    }
}

/// The collector with what accumulates across scrapes.
struct Scraper {
    source: Box<dyn SnapshotSource>,
    errors: ErrorCounts,
    limiter: LogLimiter,
    /// The `command` values each container showed lately (bounded).
    labels: CommandLabels,
    /// The shown groups' memory, refreshed on its own schedule.
    memory: GroupMemory,
    /// The last scrape's collection, kept for the group-memory refresh
    /// that follows its answer.
    rendered: Option<Snapshot>,
}

impl Scraper {
    fn scrape(
        &mut self,
        meta: &MetaCache,
        opts: RenderOptions,
        format: Format,
    ) -> Result<String, std::fmt::Error> {
        let start = Instant::now();
        let snap = self.source.collect();
        let duration = start.elapsed().as_secs_f64();
        for (stage, msg) in &snap.errors {
            self.errors.add(*stage);
            self.limiter.log(stage.as_str(), msg);
        }
        let stats = SelfStats {
            scrape_duration_seconds: duration,
            errors: self.errors.with_runtime(meta.errors()),
            runtime_up: meta
                .runtimes_up()
                .into_iter()
                .map(|(k, up)| (k.as_str(), up))
                .collect(),
        };
        let known = meta.snapshot();
        for c in &snap.containers {
            if !known.contains_key(&c.container.id) {
                meta.report_missing(Kind::of(c.container.runtime), &c.container.id);
            }
        }
        // The groups' memory as it stands (the previous refreshes'): the
        // refresh this collection calls for runs after the answer.
        let families = build_families(
            &snap,
            &known,
            &stats,
            opts,
            Some(&mut self.labels),
            Some(&self.memory),
        );
        self.rendered = Some(snap);
        encode(families, format)
    }

    /// The group-memory refresh due after a scrape, on the collection that
    /// scrape served: run once its answer is on its way.
    fn refresh_memory(&mut self, opts: RenderOptions) {
        let Some(snap) = self.rendered.take() else {
            return;
        };
        if let Some(roots) = self.source.roots() {
            self.memory
                .refresh(roots, &snap, opts.top_commands, opts.command_max_chars);
        }
    }
}

/// Shared state of the HTTP server.
#[derive(Clone)]
pub struct AppState {
    scraper: Arc<Mutex<Scraper>>,
    meta: Arc<MetaCache>,
    opts: RenderOptions,
    wait: Duration,
}

impl AppState {
    /// State around a snapshot source and a metadata cache. A scrape waits at
    /// most `wait` for a running collection to finish, then answers 503. A
    /// container's group memory is read once every `group_memory_every`.
    pub fn new(
        source: Box<dyn SnapshotSource>,
        meta: Arc<MetaCache>,
        opts: RenderOptions,
        wait: Duration,
        group_memory_every: Duration,
    ) -> Self {
        AppState {
            scraper: Arc::new(Mutex::new(Scraper {
                source,
                errors: ErrorCounts::default(),
                limiter: LogLimiter::new(Duration::from_secs(60)),
                labels: CommandLabels::new(opts.top_commands),
                memory: GroupMemory::new(group_memory_every),
                rendered: None,
            })),
            meta,
            opts,
            wait,
        }
    }
}

/// The router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn index() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html><html><head><title>pidwarden exporter</title></head><body>",
        "<h1>pidwarden exporter ",
        env!("CARGO_PKG_VERSION"),
        "</h1><p><a href=\"/metrics\">Metrics</a></p>",
        "<p><a href=\"/healthz\">Health</a></p></body></html>\n"
    ))
}

async fn healthz() -> &'static str {
    "ok"
}

/// The format for a request's `Accept` headers.
fn negotiate(headers: &HeaderMap) -> Format {
    Format::negotiate_headers(
        headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let format = negotiate(&headers);
    let guard = match tokio::time::timeout(st.wait, st.scraper.clone().lock_owned()).await {
        Ok(g) => g,
        Err(_) => {
            tracing::warn!(wait = ?st.wait, "scrape gave up waiting for the running collection");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "a collection is still running; try again\n",
            )
                .into_response();
        }
    };
    let meta = st.meta.clone();
    let opts = st.opts;
    let res = tokio::task::spawn_blocking(move || {
        let mut scraper = guard;
        let body = scraper.scrape(&meta, opts, format);
        (body, scraper)
    })
    .await
    .map(|(body, scraper)| {
        // The group-memory refresh, off the answer's path but under the
        // same lock: the next scrape waits for it as for a collection.
        tokio::task::spawn_blocking(move || {
            let mut scraper = scraper;
            scraper.refresh_memory(opts);
        });
        body
    });
    match res {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "encoding metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "collection task failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "collection failed\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{meta, snapshot, ID_A, ID_B};
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use pidwarden_tests::promtool_check;
    use std::sync::mpsc;
    use tower::ServiceExt;

    /// Returns the hand-built snapshot on every collection.
    struct Fixed;

    impl SnapshotSource for Fixed {
        fn collect(&mut self) -> Snapshot {
            snapshot()
        }
    }

    fn state(source: Box<dyn SnapshotSource>, wait: Duration) -> (AppState, Arc<MetaCache>) {
        let cache = MetaCache::new();
        let st = AppState::new(
            source,
            cache.clone(),
            RenderOptions::default(),
            wait,
            crate::group_memory::DEFAULT_INTERVAL,
        );
        (st, cache)
    }

    async fn get(app: Router, uri: &str, accept: Option<&str>) -> (StatusCode, String, String) {
        let mut req = Request::builder().uri(uri);
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, ct, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn healthz_and_index() {
        let (st, _) = state(Box::new(Fixed), Duration::from_secs(1));
        let (s, _, body) = get(app(st.clone()), "/healthz", None).await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "ok"));
        let (s, ct, body) = get(app(st.clone()), "/", None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(ct.starts_with("text/html"), "{ct}");
        assert!(body.contains("href=\"/metrics\""), "{body}");
        let (s, _, _) = get(app(st), "/nope", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn metrics_serves_text_and_openmetrics_and_accumulates_errors() {
        let (st, cache) = state(Box::new(Fixed), Duration::from_secs(1));
        cache.replace(Kind::Docker, meta());
        let (s, ct, body) = get(app(st.clone()), "/metrics", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(ct, Format::Text.content_type());
        assert!(body.contains(&format!(
            "pidwarden_container_tasks{{id=\"{ID_A}\",name=\"shop-web-1\"}} 12\n"
        )));
        assert!(body.contains("pidwarden_scrape_errors_total{stage=\"proc\"} 1\n"));
        assert!(body.contains("pidwarden_scrape_errors_total{stage=\"runtime\"} 0\n"));
        assert!(body.contains("pidwarden_runtime_up{runtime=\"docker\"} 0\n"));
        promtool_check(&body);

        // The runtime comes up and counted errors in between.
        cache.set_up(Kind::Docker, true);
        cache.count_error();
        let (s, ct, body) = get(
            app(st),
            "/metrics",
            Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(ct, Format::OpenMetrics.content_type());
        assert!(body.ends_with("# EOF\n"));
        assert!(
            body.contains("pidwarden_scrape_errors_total{stage=\"proc\"} 2\n"),
            "{body}"
        );
        assert!(body.contains("pidwarden_scrape_errors_total{stage=\"runtime\"} 1\n"));
        assert!(body.contains("pidwarden_runtime_up{runtime=\"docker\"} 1\n"));
        assert!(body.contains(&format!(
            "pidwarden_container_info{{id=\"{ID_B}\",name=\"bbbbbbbbbbbb\",image=\"\",runtime=\"docker\",compose_project=\"\",compose_service=\"\",namespace=\"\",pod=\"\",container=\"\"}} 1\n"
        )));
    }

    #[test]
    fn accept_negotiation_joins_every_accept_header() {
        let h = |vs: &[&str]| {
            let mut m = HeaderMap::new();
            for v in vs {
                m.append(header::ACCEPT, v.parse().unwrap());
            }
            negotiate(&m)
        };
        assert_eq!(h(&[]), Format::Text);
        assert_eq!(
            h(&["application/openmetrics-text; version=1.0.0"]),
            Format::OpenMetrics
        );
        assert_eq!(h(&["application/openmetrics-text;q=0"]), Format::Text);
        assert_eq!(
            h(&["text/plain;q=0.2", "application/openmetrics-text;q=0.5"]),
            Format::OpenMetrics
        );
    }

    /// Blocks each collection until the test lets it go.
    struct Gated {
        started: mpsc::Sender<()>,
        release: mpsc::Receiver<()>,
    }

    impl SnapshotSource for Gated {
        fn collect(&mut self) -> Snapshot {
            self.started.send(()).unwrap();
            self.release.recv().unwrap();
            snapshot()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_scrapes_wait_then_give_up_with_503() {
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let (st, _) = state(
            Box::new(Gated {
                started: started_tx,
                release: release_rx,
            }),
            Duration::from_millis(200),
        );
        let first = tokio::spawn(get(app(st.clone()), "/metrics", None));
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        // The first collection holds the collector: the second waits 200 ms, then 503.
        let (s, _, body) = get(app(st.clone()), "/metrics", None).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        // The async workers stay free while the collection blocks.
        let (s, _, _) = get(app(st.clone()), "/healthz", None).await;
        assert_eq!(s, StatusCode::OK);
        release_tx.send(()).unwrap();
        let (s, _, body) = first.await.unwrap();
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("pidwarden_containers 2\n"));
    }

    /// The hand-built snapshot, its processes under a fake proc root.
    struct UnderRoot(Roots);

    impl SnapshotSource for UnderRoot {
        fn collect(&mut self) -> Snapshot {
            snapshot()
        }

        fn roots(&self) -> Option<&Roots> {
            Some(&self.0)
        }
    }

    /// Lets a reader blocked opening a FIFO go, with `content`: retried
    /// while no reader has it open, for at most 5 s.
    fn feed_fifo(path: &std::path::Path, content: &str) -> bool {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            let open = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path);
            if let Ok(mut f) = open {
                return f.write_all(content.as_bytes()).is_ok();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Feeds the FIFO when dropped unless fed before, so that a refresh
    /// blocked on it never outlives a failed test.
    struct Release(Option<std::path::PathBuf>);

    impl Release {
        fn feed(&mut self, content: &str) -> bool {
            self.0.take().is_some_and(|p| feed_fifo(&p, content))
        }
    }

    impl Drop for Release {
        fn drop(&mut self) {
            self.feed("100 1 0 0 0 0 0\n");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_answer_does_not_wait_for_the_group_memory_refresh() {
        let dir = tempfile::tempdir().unwrap();
        for p in &snapshot().containers[0].processes.live {
            let d = dir.path().join(p.pid.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("statm"), format!("100 {} 0 0 0 0 0\n", p.pid)).unwrap();
        }
        // Reading pid 2's statm blocks until the test writes it.
        let fifo = dir.path().join("2/statm");
        std::fs::remove_file(&fifo).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        let mut release = Release(Some(fifo));
        let roots = Roots::new(dir.path(), dir.path());
        let (st, _) = state(Box::new(UnderRoot(roots)), Duration::from_millis(200));
        let series = format!(
            "pidwarden_container_process_group_memory_bytes{{id=\"{ID_A}\",name=\"aaaaaaaaaaaa\",command=\"sleep 1000\"}}"
        );

        // The first scrape is answered while the refresh it called for is
        // blocked on the FIFO: no figure yet.
        let first = tokio::time::timeout(
            Duration::from_secs(10),
            get(app(st.clone()), "/metrics", None),
        )
        .await;
        let (s, _, body) = first.expect("the answer waited for the group-memory refresh");
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("pidwarden_container_process_group_processes{"));
        assert!(!body.contains(&series), "{body}");
        // The refresh holds the collector: the next scrape waits, then 503.
        let (s, _, _) = get(app(st.clone()), "/metrics", None).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        // Released, the refresh ends; the next scrape serves its figures.
        let fed = tokio::task::spawn_blocking(move || release.feed("100 1000 0 0 0 0 0\n"))
            .await
            .unwrap();
        assert!(fed, "the refresh never opened pid 2's statm");
        let page = pidwarden_shared::procfs::statm::page_size();
        let want = format!("{series} {}\n", (1000 + 3 + 4 + 5) * page);
        let mut last = String::new();
        for _ in 0..50 {
            let (s, _, body) = get(app(st.clone()), "/metrics", None).await;
            if s == StatusCode::OK {
                last = body;
                break;
            }
        }
        assert!(last.contains(&want), "{want}\n{last}");
    }
}
