//! The HTTP surface: the Alertmanager webhook, the audit trail, self
//! metrics and probes, behind bearer/basic authentication (TLS client
//! certificates are enforced by the listener, see [`crate::tls`]).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::alert::parse_payload;
use crate::metrics::CodeLabel;
use crate::service::Service;

/// Largest webhook body accepted.
pub const BODY_LIMIT: usize = 1 << 20;
/// Default and largest `limit` of `/api/v1/actions`.
pub const ACTIONS_DEFAULT: usize = 50;
/// Largest `limit` of `/api/v1/actions`.
pub const ACTIONS_MAX: usize = 1000;

/// Credentials the API accepts. Empty = no HTTP-level authentication
/// (only with `--insecure-no-auth` or when TLS client certificates are required).
#[derive(Clone, Default)]
pub struct Credentials {
    /// Bearer token.
    pub bearer: Option<Vec<u8>>,
    /// Basic auth user and password.
    pub basic: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field("basic", &self.basic.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Credentials {
    /// True when a header check is configured.
    pub fn is_configured(&self) -> bool {
        self.bearer.is_some() || self.basic.is_some()
    }

    /// Checks an `Authorization` header value in constant time per secret.
    pub fn check(&self, authorization: Option<&[u8]>) -> bool {
        if !self.is_configured() {
            return true;
        }
        let Some(v) = authorization else { return false };
        let Some(sp) = v.iter().position(|&b| b == b' ') else {
            return false;
        };
        let (scheme, rest) = (&v[..sp], v[sp + 1..].trim_ascii());
        if scheme.eq_ignore_ascii_case(b"bearer") {
            if let Some(tok) = &self.bearer {
                return bool::from(tok.as_slice().ct_eq(rest));
            }
        } else if scheme.eq_ignore_ascii_case(b"basic") {
            if let Some((user, pass)) = &self.basic {
                let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
                    return false;
                };
                let Some(colon) = decoded.iter().position(|&b| b == b':') else {
                    return false;
                };
                let u_ok = user.as_slice().ct_eq(&decoded[..colon]);
                let p_ok = pass.as_slice().ct_eq(&decoded[colon + 1..]);
                return bool::from(u_ok & p_ok);
            }
        }
        false
    }
}

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The core.
    pub service: Arc<Service>,
    /// Accepted credentials.
    pub credentials: Arc<Credentials>,
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
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
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

async fn require_auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    if st.credentials.check(auth) {
        next.run(req).await
    } else {
        ApiError::Unauthorized {
            bearer: st.credentials.bearer.is_some(),
            basic: st.credentials.basic.is_some(),
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
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(format!("reading the body: {e}"))
        }
    })?;
    let payload = parse_payload(&body).map_err(ApiError::BadRequest)?;
    let outcomes = st.service.handle(&payload).await;
    let retry = outcomes.iter().any(|o| o.retryable);
    let status = if retry {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"results": outcomes}))).into_response())
}

/// Parses `limit` from a raw query string.
pub fn parse_limit(query: Option<&str>) -> Result<usize, String> {
    let mut limit = ACTIONS_DEFAULT;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "limit" {
            limit = v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=ACTIONS_MAX).contains(n))
                .ok_or_else(|| {
                    format!(
                        "limit must be an integer from 1 to {ACTIONS_MAX}, got {:?}",
                        crate::alert::clip(v, 20)
                    )
                })?;
        }
    }
    Ok(limit)
}

async fn actions(State(st): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let limit = parse_limit(q.as_deref()).map_err(ApiError::BadRequest)?;
    let store = st.service.store().clone();
    let rows = tokio::task::spawn_blocking(move || store.recent(limit))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(json!({"actions": rows})).into_response())
}

async fn metrics(State(st): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    use crate::metrics::{OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let m = st.service.metrics();
    if openmetrics {
        (
            [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
            m.encode(),
        )
            .into_response()
    } else {
        ([(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)], m.encode_text()).into_response()
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(st): State<AppState>) -> Result<&'static str, ApiError> {
    st.service
        .readiness()
        .await
        .map_err(ApiError::Unavailable)?;
    Ok("ready\n")
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
    let mut metrics_route = Router::new().route("/metrics", get(metrics));
    if state.metrics_auth {
        metrics_route =
            metrics_route.route_layer(middleware::from_fn_with_state(state.clone(), require_auth));
    }
    Router::new()
        .merge(webhook)
        .merge(audit)
        .merge(metrics_route)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Reads a bearer token file (trimmed; must not be empty).
pub fn read_token_file(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let t = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading token file {}: {e}", path.display()))?;
    let t = t.trim();
    anyhow::ensure!(!t.is_empty(), "token file {} is empty", path.display());
    Ok(t.as_bytes().to_vec())
}

/// Reads a basic auth file: one `user:password` line.
pub fn read_basic_auth_file(path: &std::path::Path) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let t = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading basic auth file {}: {e}", path.display()))?;
    let line = t
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    let (u, p) = line
        .split_once(':')
        .filter(|(u, p)| !u.is_empty() && !p.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "basic auth file {} must hold one user:password line",
                path.display()
            )
        })?;
    Ok((u.as_bytes().to_vec(), p.as_bytes().to_vec()))
}

/// How long shutdown waits for interrupted actions to record themselves.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_check() {
        let c = Credentials {
            bearer: Some(b"s3cret".to_vec()),
            basic: Some((b"am".to_vec(), b"pw:x".to_vec())),
        };
        let h = |v: &str| v.as_bytes().to_vec();
        assert!(c.check(Some(&h("Bearer s3cret"))));
        assert!(c.check(Some(&h("bearer s3cret"))));
        assert!(!c.check(Some(&h("Bearer s3cre"))));
        assert!(!c.check(Some(&h("Bearer"))));
        assert!(!c.check(None));
        let basic = base64::engine::general_purpose::STANDARD.encode("am:pw:x");
        assert!(c.check(Some(&h(&format!("Basic {basic}")))));
        let wrong = base64::engine::general_purpose::STANDARD.encode("am:pw");
        assert!(!c.check(Some(&h(&format!("Basic {wrong}")))));
        assert!(Credentials::default().check(None));
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

    #[test]
    fn credential_files() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        std::fs::write(&t, "  tok\n").unwrap();
        assert_eq!(read_token_file(&t).unwrap(), b"tok");
        std::fs::write(&t, "\n").unwrap();
        assert!(read_token_file(&t).is_err());
        std::fs::write(&t, "am:pw\n").unwrap();
        assert_eq!(
            read_basic_auth_file(&t).unwrap(),
            (b"am".to_vec(), b"pw".to_vec())
        );
        std::fs::write(&t, "nocolon\n").unwrap();
        assert!(read_basic_auth_file(&t).is_err());
    }
}
