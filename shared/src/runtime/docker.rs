//! The Docker Engine API through bollard, for Docker and for Podman's
//! Docker-compatible service (`podman system service`), which answers the
//! same routes (`/containers/json`, `/containers/<id>/json`, `…/restart`,
//! `/events`).

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use crate::cgroup::is_container_id;

use super::{
    is_container_name, name_matches, ContainerInfo, ContainerMeta, Control, Endpoint, Kind,
    Metadata, RuntimeError, RuntimeEvent, Slot,
};
use crate::timefmt::parse_rfc3339;

/// Seconds an ordinary API call may take.
const API_TIMEOUT_SECS: u64 = 30;

/// A Docker-compatible API (Docker or Podman). The client is built on first
/// use and rebuilt by [`Metadata::connect`], so a socket that appears later
/// (the daemon starting after pidwarden) is picked up; the API version is
/// negotiated with the daemon (Docker 20.10 and Podman 4 speak 1.41).
#[derive(Debug)]
pub struct DockerApi {
    kind: Kind,
    endpoint: Endpoint,
    client: Slot<bollard::Docker>,
}

impl DockerApi {
    /// The API of `kind` (Docker or Podman) at `endpoint`. Nothing connects
    /// until the first call.
    pub fn new(kind: Kind, endpoint: Endpoint) -> Self {
        DockerApi {
            kind,
            endpoint,
            client: Slot::empty(),
        }
    }

    /// Where this API is reached.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn build(&self) -> Result<bollard::Docker, RuntimeError> {
        let v = bollard::API_DEFAULT_VERSION;
        match &self.endpoint {
            Endpoint::Unix(path) => {
                bollard::Docker::connect_with_socket(&path.to_string_lossy(), API_TIMEOUT_SECS, v)
            }
            Endpoint::Http(url) => bollard::Docker::connect_with_http(url, API_TIMEOUT_SECS, v),
        }
        // A missing socket is a daemon that is not (yet) running.
        .map_err(|e| RuntimeError::Unreachable(format!("{} client: {e}", self.kind.as_str())))
    }

    /// Builds the client and negotiates the version; keeps it only when the
    /// negotiation succeeded.
    async fn negotiate(&self) -> Result<bollard::Docker, RuntimeError> {
        let r = match self.build() {
            Ok(c) => c.negotiate_version().await.map_err(|e| self.map_err(e)),
            Err(e) => Err(e),
        };
        self.client.attempted(&r);
        let client = r?;
        self.client.set(Some(client.clone()));
        Ok(client)
    }

    /// The negotiated client, negotiating first when there is none yet.
    async fn client(&self) -> Result<bollard::Docker, RuntimeError> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        match self.client.recent_failure() {
            Some(e) => Err(e),
            None => self.negotiate().await,
        }
    }

    fn map_err(&self, e: bollard::errors::Error) -> RuntimeError {
        use bollard::errors::Error as E;
        let rt = self.kind.as_str();
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
            } => RuntimeError::Other(format!("{rt}: HTTP {status_code}: {message}")),
            E::RequestTimeoutError => RuntimeError::Unreachable(format!("{rt}: request timed out")),
            E::IOError { .. } | E::HyperResponseError { .. } | E::HttpClientError { .. } => {
                RuntimeError::Unreachable(format!("{rt} at {}: {e}", self.endpoint))
            }
            other => RuntimeError::Other(format!("{rt}: {other}")),
        }
    }

    async fn inspect_raw(
        &self,
        id_or_name: &str,
    ) -> Result<bollard::models::ContainerInspectResponse, RuntimeError> {
        self.client()
            .await?
            .inspect_container(
                id_or_name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| self.map_err(e))
    }
}

impl Metadata for DockerApi {
    fn kind(&self) -> Kind {
        self.kind
    }

    async fn connect(&self) -> Result<(), RuntimeError> {
        self.negotiate().await.map(|_| ())
    }

    async fn list(&self) -> Result<HashMap<String, ContainerMeta>, RuntimeError> {
        let opts = bollard::query_parameters::ListContainersOptionsBuilder::new()
            .all(true)
            .build();
        let list = self
            .client()
            .await?
            .list_containers(Some(opts))
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let id = c.id?;
                let name = c
                    .names
                    .as_ref()
                    .and_then(|n| n.first().cloned())
                    .unwrap_or_default();
                let meta = ContainerMeta::new(
                    &name,
                    c.image.as_deref().unwrap_or(""),
                    c.labels.unwrap_or_default(),
                );
                Some((id, meta))
            })
            .collect())
    }

    /// Ids that are not full container ids never reach the API's URL.
    async fn meta(&self, id: &str) -> Result<Option<ContainerMeta>, RuntimeError> {
        if !is_container_id(id) {
            return Ok(None);
        }
        match self.inspect_raw(id).await {
            // Docker and Podman resolve a 64-hex string as a name too.
            Ok(r) if r.id.as_deref() != Some(id) => Ok(None),
            Ok(r) => {
                let config = r.config.unwrap_or_default();
                Ok(Some(ContainerMeta::new(
                    r.name.as_deref().unwrap_or(""),
                    config.image.as_deref().unwrap_or(""),
                    config.labels.unwrap_or_default(),
                )))
            }
            Err(RuntimeError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn events(&self) -> Option<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>> {
        let mut filters = HashMap::new();
        filters.insert("type", vec!["container"]);
        let opts = bollard::query_parameters::EventsOptionsBuilder::new()
            .filters(&filters)
            .build();
        let client = match self.client.get() {
            Some(c) => c,
            None => {
                let e = RuntimeError::Unreachable(format!("{} not connected", self.kind.as_str()));
                return Some(futures_util::stream::once(async { Err(e) }).boxed());
            }
        };
        let rt = self.kind.as_str();
        Some(
            client
                .events(Some(opts))
                .filter_map(move |r| async move {
                    match r {
                        Err(e) => Some(Err(RuntimeError::Unreachable(format!("{rt} events: {e}")))),
                        Ok(ev) => {
                            let id = ev.actor.and_then(|a| a.id)?;
                            match ev.action.as_deref()? {
                                "destroy" | "remove" => Some(Ok(RuntimeEvent::Remove(id))),
                                "create" | "start" | "rename" | "die" | "update" => {
                                    Some(Ok(RuntimeEvent::Refresh(id)))
                                }
                                _ => None,
                            }
                        }
                    }
                })
                .boxed(),
        )
    }
}

impl Control for DockerApi {
    fn inspect<'a>(
        &'a self,
        id_or_name: &'a str,
    ) -> BoxFuture<'a, Result<ContainerInfo, RuntimeError>> {
        Box::pin(async move {
            if !is_container_id(id_or_name) && !is_container_name(id_or_name) {
                return Err(RuntimeError::NotFound);
            }
            let r = self.inspect_raw(id_or_name).await?;
            // Docker and Podman resolve a 64-hex string as a container name
            // too (another container's): the answer to an id lookup must
            // carry exactly that id.
            if is_container_id(id_or_name) && r.id.as_deref() != Some(id_or_name) {
                return Err(RuntimeError::NotFound);
            }
            let name = r.name.unwrap_or_default();
            // Full ids are looked up as they are; anything else is a name,
            // and Docker answers a name lookup with an id-prefix match too.
            if !is_container_id(id_or_name) && !name_matches(&name, id_or_name) {
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
                pod: None,
                pid: state
                    .pid
                    .and_then(|p| i32::try_from(p).ok())
                    .filter(|p| *p > 0),
            })
        })
    }

    fn restart<'a>(
        &'a self,
        id: &'a str,
        stop_timeout: Duration,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            if !is_container_id(id) {
                return Err(RuntimeError::NotFound);
            }
            let t = stop_timeout.as_secs().max(1);
            // The HTTP call lasts as long as the stop: allow for it.
            let client = self
                .client()
                .await?
                .with_timeout(Duration::from_secs(t + API_TIMEOUT_SECS));
            let opts = bollard::query_parameters::RestartContainerOptions {
                t: Some(t.min(i32::MAX as u64) as i32),
                signal: None,
            };
            client
                .restart_container(id, Some(opts))
                .await
                .map_err(|e| self.map_err(e))
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move {
            self.client()
                .await?
                .ping()
                .await
                .map(|_| ())
                .map_err(|e| self.map_err(e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn malformed_ids_never_reach_the_api() {
        let api = DockerApi::new(
            Kind::Docker,
            Endpoint::Unix("/nonexistent/docker.sock".into()),
        );
        for bad in [
            "",
            "..",
            "../../containers/json",
            "abc?all=1",
            &"A".repeat(64),
            &"a".repeat(63),
            &format!("{}/x", "a".repeat(64)),
        ] {
            assert!(api.meta(bad).await.unwrap().is_none(), "{bad:?}");
            assert_eq!(
                api.restart(bad, Duration::from_secs(1)).await,
                Err(RuntimeError::NotFound),
                "{bad:?}"
            );
        }
        // A well-formed id does reach the client, which finds no daemon.
        let e = api.meta(&"a".repeat(64)).await.unwrap_err();
        assert!(matches!(e, RuntimeError::Unreachable(_)), "{e}");
        let e = api.ping().await.unwrap_err();
        assert!(e.to_string().contains("/nonexistent/docker.sock"), "{e}");
    }
}
