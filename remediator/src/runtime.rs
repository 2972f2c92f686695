//! The container runtime the remediator asks for names, labels and state, and
//! tells to restart a container: a trait, with the Docker Engine API
//! implementation (bollard). Tests use their own implementation.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::alert::is_full_id;
use crate::timefmt::{parse_rfc3339, UnixNanos};

/// What the remediator needs to know about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Full id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// Running (not stopped, not paused).
    pub running: bool,
    /// When the current run started.
    pub started_at: Option<UnixNanos>,
}

/// What went wrong talking to the runtime.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime does not know the container (HTTP 404).
    #[error("no such container")]
    NotFound,
    /// Nothing to do: already in the requested state (HTTP 304).
    #[error("container already in the requested state")]
    NotModified,
    /// The runtime could not be reached or timed out.
    #[error("container runtime unreachable: {0}")]
    Unreachable(String),
    /// The runtime answered with an error.
    #[error("container runtime error: {0}")]
    Other(String),
}

/// A container runtime.
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Inspects a container by full id or by exact name: a name that only
    /// matches the start of some container's id is [`RuntimeError::NotFound`].
    fn inspect<'a>(
        &'a self,
        id_or_name: &'a str,
    ) -> BoxFuture<'a, Result<ContainerInfo, RuntimeError>>;
    /// Restarts a container, giving it `stop_timeout` to stop before SIGKILL.
    fn restart<'a>(
        &'a self,
        id: &'a str,
        stop_timeout: Duration,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Checks that the runtime answers.
    fn ping(&self) -> BoxFuture<'_, Result<(), RuntimeError>>;
}

/// The Docker Engine API through bollard.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: bollard::Docker,
}

/// Seconds the ordinary API calls may take.
const API_TIMEOUT_SECS: u64 = 10;

impl DockerRuntime {
    /// Connects to `host` (`unix:///var/run/docker.sock`, `tcp://…`,
    /// `http://…`) or the local default, and negotiates the API version
    /// (dockerd 20.10 speaks 1.41). Negotiation failing is not fatal: the
    /// daemon may come up later; readiness reports it.
    pub async fn connect(host: Option<&str>) -> anyhow::Result<DockerRuntime> {
        use bollard::API_DEFAULT_VERSION;
        let docker = match host {
            None => bollard::Docker::connect_with_local_defaults()?,
            Some(h) if h.starts_with("unix://") || h.starts_with('/') => {
                bollard::Docker::connect_with_unix(h, API_TIMEOUT_SECS, API_DEFAULT_VERSION)?
            }
            Some(h) => {
                let h = h.replacen("tcp://", "http://", 1);
                bollard::Docker::connect_with_http(&h, API_TIMEOUT_SECS, API_DEFAULT_VERSION)?
            }
        };
        let docker = match docker.clone().negotiate_version().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "docker API version negotiation failed; using the client default");
                docker
            }
        };
        Ok(DockerRuntime { docker })
    }
}

/// True when the name a runtime reports for a container is exactly the name
/// that was asked for. Docker reports names with a leading `/`; the alert's
/// name may carry it or not. Nothing else matches: Docker's inspect also
/// resolves a unique id prefix, which must never stand in for a name.
pub fn name_matches(reported: &str, requested: &str) -> bool {
    let reported = reported.strip_prefix('/').unwrap_or(reported);
    let requested = requested.strip_prefix('/').unwrap_or(requested);
    !requested.is_empty() && reported == requested
}

fn map_err(e: bollard::errors::Error) -> RuntimeError {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError {
            status_code: 404, ..
        } => RuntimeError::NotFound,
        E::DockerResponseServerError {
            status_code: 304, ..
        } => RuntimeError::NotModified,
        E::DockerResponseServerError {
            status_code,
            message,
        } => RuntimeError::Other(format!("HTTP {status_code}: {message}")),
        E::RequestTimeoutError => RuntimeError::Unreachable("request timed out".into()),
        E::IOError { .. } | E::HyperResponseError { .. } | E::HttpClientError { .. } => {
            RuntimeError::Unreachable(e.to_string())
        }
        other => RuntimeError::Other(other.to_string()),
    }
}

impl ContainerRuntime for DockerRuntime {
    fn inspect<'a>(
        &'a self,
        id_or_name: &'a str,
    ) -> BoxFuture<'a, Result<ContainerInfo, RuntimeError>> {
        Box::pin(async move {
            let r = self
                .docker
                .inspect_container(
                    id_or_name,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                .map_err(map_err)?;
            let name = r.name.unwrap_or_default();
            // Full ids are looked up as they are; anything else is a name,
            // and Docker answers a name lookup with an id-prefix match too.
            if !is_full_id(id_or_name) && !name_matches(&name, id_or_name) {
                return Err(RuntimeError::NotFound);
            }
            let state = r.state.unwrap_or_default();
            let running = state.running.unwrap_or(false) && !state.paused.unwrap_or(false);
            Ok(ContainerInfo {
                id: r.id.unwrap_or_default(),
                name: name.trim_start_matches('/').to_string(),
                labels: r.config.and_then(|c| c.labels).unwrap_or_default(),
                running,
                started_at: state.started_at.as_deref().and_then(parse_rfc3339),
            })
        })
    }

    fn restart<'a>(
        &'a self,
        id: &'a str,
        stop_timeout: Duration,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let t = stop_timeout.as_secs().max(1);
            // The HTTP call lasts as long as the stop: allow for it.
            let docker = self
                .docker
                .clone()
                .with_timeout(Duration::from_secs(t + 30));
            let opts = bollard::query_parameters::RestartContainerOptions {
                t: Some(t.min(i32::MAX as u64) as i32),
                signal: None,
            };
            docker
                .restart_container(id, Some(opts))
                .await
                .map_err(map_err)
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move { self.docker.ping().await.map(|_| ()).map_err(map_err) })
    }
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn names_match_exactly_with_or_without_the_slash() {
        let cases = [
            // (reported by the runtime, requested by the alert, matches)
            ("/web-1", "web-1", true),
            ("/web-1", "/web-1", true),
            ("web-1", "web-1", true),
            // Docker resolves id prefixes on the name route: never a match.
            ("/pidwarden-test-1", "3f2a9c0d1e7b", false),
            ("/web-1", "web", false),
            ("/web-1", "web-10", false),
            ("/web-1", "Web-1", false),
            ("/web-1", "", false),
            ("/", "/", false),
            ("", "", false),
        ];
        for (reported, requested, want) in cases {
            assert_eq!(
                name_matches(reported, requested),
                want,
                "{reported:?} vs {requested:?}"
            );
        }
    }
}
