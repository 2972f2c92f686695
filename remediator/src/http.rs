//! The HTTP surface: the Alertmanager webhook, the audit trail, self
//! metrics and probes, behind [`require_auth`], which checks the
//! credentials of [`crate::auth`] and answers 401 without them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pidwarden_shared::exposition::Format;
use serde_json::json;

use crate::alert::parse_payload;
use crate::auth::Credentials;
use crate::metrics::CodeLabel;
use crate::service::{NotReady, Service};

/// Largest webhook body accepted.
pub const BODY_LIMIT: usize = 1 << 20;
/// Most alerts one webhook payload may hold; more is answered 413 (set
/// `max_alerts` in Alertmanager's webhook config to stay under it).
pub const MAX_ALERTS: usize = 1000;
/// Default and largest `limit` of `/api/v1/actions`.
pub const ACTIONS_DEFAULT: usize = 50;
/// Largest `limit` of `/api/v1/actions`.
pub const ACTIONS_MAX: usize = 1000;

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The core.
    pub service: Arc<Service>,
    /// Accepted credentials (SIGHUP re-reads their files).
    pub credentials: Arc<crate::live::Live<Credentials>>,
    /// Require credentials on `/metrics` too.
    pub metrics_auth: bool,
}

/// Errors answered to callers: a clear message, internals only in the log.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong credentials.
    #[error("authentication required")]
    Unauthorized {
        /// Offer bearer.
        bearer: bool,
        /// Offer basic.
        basic: bool,
    },
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The body is over [`BODY_LIMIT`].
    #[error("request body larger than {BODY_LIMIT} bytes")]
    PayloadTooLarge,
    /// The payload holds more than [`MAX_ALERTS`] alerts.
    #[error("the payload holds {0} alerts, more than {MAX_ALERTS}: set max_alerts: {MAX_ALERTS} (or fewer) in Alertmanager's webhook config")]
    TooManyAlerts(usize),
    /// The request did not arrive in time.
    #[error("{0}")]
    Timeout(String),
    /// Not ready, or a dependency is down.
    #[error("{0}")]
    Unavailable(String),
    /// Something broke inside.
    #[error("internal error")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge | ApiError::TooManyAlerts(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut resp = (status, Json(json!({"error": self.to_string()}))).into_response();
        if let ApiError::Unauthorized { bearer, basic } = self {
            let h = resp.headers_mut();
            if bearer || !basic {
                h.append(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"pidwarden\""),
                );
            }
            if basic {
                h.append(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"pidwarden\""),
                );
            }
        }
        resp
    }
}

/// Middleware: answers 401 (with the schemes on offer) unless the request
/// carries accepted credentials: the inbound ones, or the peer token on a
/// webhook request marked forwarded.
pub async fn require_auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let credentials = st.credentials.get();
    let from_peer = req.uri().path() == "/api/v1/alerts"
        && req.headers().contains_key(crate::forward::FORWARDED_HEADER)
        && credentials.check_peer(auth);
    if from_peer || credentials.check(auth) {
        next.run(req).await
    } else {
        ApiError::Unauthorized {
            bearer: credentials.bearer.is_some(),
            basic: credentials.basic.is_some(),
        }
        .into_response()
    }
}

async fn count_webhook(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    st.service
        .metrics()
        .webhook_requests
        .get_or_create(&CodeLabel {
            code: resp.status().as_u16().to_string(),
        })
        .inc();
    resp
}

async fn alerts(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else if let Some(t) = find_source::<crate::server::BodyTimeout>(&e) {
            ApiError::Timeout(t.to_string())
        } else {
            ApiError::BadRequest(format!("reading the body: {e}"))
        }
    })?;
    let payload = parse_payload(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if payload.alerts.len() > MAX_ALERTS {
        return Err(ApiError::TooManyAlerts(payload.alerts.len()));
    }
    let origin = if headers.contains_key(crate::forward::FORWARDED_HEADER) {
        crate::forward::Origin::Forwarded
    } else {
        crate::forward::Origin::Direct
    };
    let outcomes = st
        .service
        .handle_from(&payload, origin)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let retry = outcomes.iter().any(|o| o.retryable);
    let status = if retry {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"results": outcomes}))).into_response())
}

/// The first error of type `T` in `e`'s source chain (`e` included).
fn find_source<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// A `limit` that is not an integer from 1 to [`ACTIONS_MAX`] (as given,
/// clipped).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("limit must be an integer from 1 to {ACTIONS_MAX}, got {0:?}")]
pub struct BadLimit(pub String);

/// Parses `limit` from a raw query string.
pub fn parse_limit(query: Option<&str>) -> Result<usize, BadLimit> {
    let mut limit = ACTIONS_DEFAULT;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "limit" {
            limit = v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=ACTIONS_MAX).contains(n))
                .ok_or_else(|| BadLimit(crate::alert::clip(v, 20)))?;
        }
    }
    Ok(limit)
}

async fn actions(State(st): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let limit = parse_limit(q.as_deref()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let store = st.service.store().clone();
    let rows = tokio::task::spawn_blocking(move || store.recent(limit))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(json!({"actions": rows})).into_response())
}

async fn metrics(State(st): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let format = Format::negotiate_headers(
        headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let body = st.service.metrics().encode_as(format);
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// How long a "ready" answer is served to every probe before it is checked again.
pub const READY_TTL: Duration = Duration::from_secs(2);

/// A readiness answer, shared by the probes that waited for it.
type Readiness = Result<(), Arc<NotReady>>;

/// The readiness answer shared by the probes: a check (a SQLite round trip
/// among others) runs at most once per [`READY_TTL`] while ready, and probes
/// arriving while one runs wait for it and share its answer. A "not ready"
/// answer is only shared with those waiting probes, so recovery shows at the
/// next probe.
#[derive(Debug, Default)]
pub struct ReadyCache {
    last: tokio::sync::Mutex<Option<(Instant, Readiness)>>,
}

impl ReadyCache {
    /// The cached answer, or the one `check` gives.
    pub async fn get<F>(&self, check: impl FnOnce() -> F) -> Readiness
    where
        F: std::future::Future<Output = Result<(), NotReady>>,
    {
        let arrived = Instant::now();
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = &*last {
            let fresh = answer.is_ok() && at.elapsed() < READY_TTL;
            if fresh || *at >= arrived {
                return answer.clone();
            }
        }
        let answer = check().await.map_err(Arc::new);
        *last = Some((Instant::now(), answer.clone()));
        answer
    }
}

async fn readyz(st: AppState, cache: &ReadyCache) -> Result<&'static str, ApiError> {
    cache
        .get(|| st.service.readiness())
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok("ready\n")
}

/// The landing page: what this is and where to look, no secrets, no auth.
async fn index() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html><html><head><title>pidwarden remediator</title></head><body>",
        "<h1>pidwarden remediator ",
        env!("CARGO_PKG_VERSION"),
        "</h1><p>Alertmanager webhook: <code>POST /api/v1/alerts</code> (authenticated)</p>",
        "<p>Audit trail: <code>GET /api/v1/actions?limit=N</code> (authenticated)</p>",
        "<p><a href=\"/metrics\">Metrics</a> &middot; <a href=\"/healthz\">Health</a>",
        " &middot; <a href=\"/readyz\">Readiness</a></p></body></html>\n"
    ))
}

/// The router.
pub fn app(state: AppState) -> Router {
    let webhook = Router::new()
        .route("/api/v1/alerts", post(alerts))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_auth))
        .route_layer(middleware::from_fn_with_state(state.clone(), count_webhook));
    let audit = Router::new()
        .route("/api/v1/actions", get(actions))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_auth));
    let ready = Arc::new(ReadyCache::default());
    let mut metrics_route = Router::new().route("/metrics", get(metrics));
    if state.metrics_auth {
        metrics_route =
            metrics_route.route_layer(middleware::from_fn_with_state(state.clone(), require_auth));
    }
    Router::new()
        .merge(webhook)
        .merge(audit)
        .merge(metrics_route)
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route(
            "/readyz",
            get(move |State(st): State<AppState>| async move { readyz(st, &ready).await }),
        )
        .with_state(state)
}

/// How long shutdown waits for interrupted actions to record themselves.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_landing_page_names_the_routes() {
        let Html(page) = index().await;
        for route in [
            "/api/v1/alerts",
            "/api/v1/actions",
            "/metrics",
            "/healthz",
            "/readyz",
        ] {
            assert!(page.contains(route), "{route}");
        }
        assert!(page.contains(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None), Ok(50));
        assert_eq!(parse_limit(Some("limit=7")), Ok(7));
        assert_eq!(parse_limit(Some("x=1&limit=1000")), Ok(1000));
        for bad in ["limit=0", "limit=1001", "limit=abc", "limit=", "limit=-1"] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn readiness_is_checked_once_for_concurrent_probes_and_cached_while_ready() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let cache = Arc::new(ReadyCache::default());
        let checks = Arc::new(AtomicUsize::new(0));
        let probe = |answer: Result<(), NotReady>| {
            let (cache, checks) = (Arc::clone(&cache), Arc::clone(&checks));
            async move {
                cache
                    .get(|| async move {
                        checks.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        answer
                    })
                    .await
            }
        };
        // 100 probes at once while not ready: one check, one shared answer.
        let answers = futures_util::future::join_all(
            (0..100).map(|_| tokio::spawn(probe(Err(NotReady::RuntimeSilent(1))))),
        )
        .await;
        assert!(answers.iter().all(|a| a.as_ref().unwrap().is_err()));
        assert_eq!(checks.load(Ordering::SeqCst), 1);
        // Not ready is not cached: the next probe checks again and sees recovery.
        assert!(probe(Ok(())).await.is_ok());
        assert_eq!(checks.load(Ordering::SeqCst), 2);
        // Ready is cached for READY_TTL.
        for _ in 0..50 {
            assert!(probe(Err(NotReady::RuntimeSilent(2))).await.is_ok());
        }
        assert_eq!(checks.load(Ordering::SeqCst), 2);
        tokio::time::sleep(READY_TTL).await;
        assert!(probe(Err(NotReady::RuntimeSilent(3))).await.is_err());
        assert_eq!(checks.load(Ordering::SeqCst), 3);
    }
}
