//! Container metadata from the runtime API (names, images, compose labels).
//!
//! A background task fills a cache by listing containers and keeps it fresh
//! from the events stream, reconnecting with backoff when the daemon is absent
//! or restarts. Scrapes only read the cache: a slow or dead runtime never
//! delays `/metrics`. The runtime sits behind [`ContainerRuntime`] so tests
//! can inject metadata.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use pidwarden_shared::cgroup::is_container_id;

/// Compose project label.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// Compose service label.
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";

/// What the runtime knows about one container.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ContainerMeta {
    /// Name, without the leading `/`.
    pub name: String,
    /// Image as the container was created from it.
    pub image: String,
    /// `com.docker.compose.project`, when set.
    pub compose_project: Option<String>,
    /// `com.docker.compose.service`, when set.
    pub compose_service: Option<String>,
    /// All labels.
    pub labels: HashMap<String, String>,
}

impl ContainerMeta {
    /// Metadata from a name (leading `/` dropped), an image and labels.
    pub fn new(name: &str, image: &str, labels: HashMap<String, String>) -> Self {
        ContainerMeta {
            name: name.trim_start_matches('/').to_string(),
            image: image.to_string(),
            compose_project: labels.get(COMPOSE_PROJECT).cloned(),
            compose_service: labels.get(COMPOSE_SERVICE).cloned(),
            labels,
        }
    }
}

/// The shared metadata cache, plus the runtime's health and error count.
#[derive(Debug, Default)]
pub struct MetaCache {
    map: RwLock<HashMap<String, ContainerMeta>>,
    up: AtomicBool,
    errors: AtomicU64,
    /// Whether a refresher is running (only then are misses queued).
    followed: AtomicBool,
    misses: Mutex<Misses>,
    missed: tokio::sync::Notify,
}

/// Containers seen in the cgroups but not in the cache, for the refresher to
/// look up (each id once per full list).
#[derive(Debug, Default)]
struct Misses {
    pending: Vec<String>,
    asked: HashSet<String>,
}

/// At most this many lookups wait at once.
const MAX_PENDING: usize = 1024;

impl MetaCache {
    /// An empty cache, runtime down.
    pub fn new() -> Arc<Self> {
        Arc::new(MetaCache::default())
    }

    /// A copy of the current map.
    pub fn snapshot(&self) -> HashMap<String, ContainerMeta> {
        self.map.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the whole map.
    pub fn replace(&self, map: HashMap<String, ContainerMeta>) {
        *self.map.write().unwrap_or_else(|e| e.into_inner()) = map;
        self.misses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .asked
            .clear();
    }

    /// Asks the refresher (if one runs) to look up a container the cgroups
    /// show but the cache does not know, e.g. one created between the list
    /// and the events subscription. Never blocks; each id is asked once.
    pub fn report_missing(&self, id: &str) {
        if !self.followed.load(Ordering::Relaxed) {
            return;
        }
        let mut m = self.misses.lock().unwrap_or_else(|e| e.into_inner());
        if m.pending.len() >= MAX_PENDING || !m.asked.insert(id.to_string()) {
            return;
        }
        m.pending.push(id.to_string());
        drop(m);
        self.missed.notify_one();
    }

    fn take_missing(&self) -> Vec<String> {
        std::mem::take(
            &mut self
                .misses
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pending,
        )
    }

    fn forget_asked(&self, id: &str) {
        self.misses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .asked
            .remove(id);
    }

    /// Sets or drops one container.
    pub fn set(&self, id: &str, meta: Option<ContainerMeta>) {
        let mut m = self.map.write().unwrap_or_else(|e| e.into_inner());
        match meta {
            Some(meta) => {
                m.insert(id.to_string(), meta);
            }
            None => {
                m.remove(id);
            }
        }
    }

    /// Drops a destroyed container: its metadata and its "already asked"
    /// mark, so the set of asked ids does not grow with every container the
    /// host ever ran.
    pub fn remove(&self, id: &str) {
        self.set(id, None);
        self.forget_asked(id);
    }

    /// Whether the last list/events connection succeeded.
    pub fn up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Marks the runtime up or down.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    /// Runtime errors since start.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Counts one runtime error.
    pub fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// A container event that may change metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeEvent {
    /// Created, started or renamed: refresh this id.
    Refresh(String),
    /// Destroyed: drop this id.
    Remove(String),
}

/// Runtime error (carried as text: the refresher only logs and counts it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RuntimeError(pub String);

/// Access to a container runtime's API.
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Prepares a connection (e.g. negotiates the API version). Called
    /// before every list/events cycle.
    fn connect(&self) -> impl Future<Output = Result<(), RuntimeError>> + Send {
        async { Ok(()) }
    }
    /// Every container (running or not) with its metadata, by full id.
    fn list(
        &self,
    ) -> impl Future<Output = Result<HashMap<String, ContainerMeta>, RuntimeError>> + Send;
    /// One container's metadata; `Ok(None)` when it no longer exists.
    fn inspect(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<ContainerMeta>, RuntimeError>> + Send;
    /// The stream of container events, from now on.
    fn events(&self) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>>;
}

/// How to reach the Docker Engine API.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    Socket(String),
    Http(String),
}

/// The Docker Engine API through bollard. The client is (re)built on every
/// [`ContainerRuntime::connect`], so a socket that appears later (dockerd
/// starting after the exporter) is picked up.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    endpoint: Endpoint,
    docker: Arc<RwLock<Option<bollard::Docker>>>,
}

impl DockerRuntime {
    /// A runtime for `host` (`unix:///path`, `tcp://host:port` or
    /// `http://host:port`). Only the form is checked here; nothing connects
    /// until [`ContainerRuntime::connect`].
    pub fn new(host: &str) -> Result<Self, RuntimeError> {
        let endpoint = if let Some(path) = host.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(RuntimeError(format!(
                    "docker host {host:?}: a unix socket needs an absolute path (unix:///var/run/docker.sock)"
                )));
            }
            Endpoint::Socket(path.to_string())
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            Endpoint::Http(host.to_string())
        } else {
            return Err(RuntimeError(format!(
                "unsupported docker host {host:?} (expected unix:///path, tcp://host:port or none)"
            )));
        };
        Ok(DockerRuntime {
            endpoint,
            docker: Arc::new(RwLock::new(None)),
        })
    }

    fn client(&self) -> Result<bollard::Docker, RuntimeError> {
        self.docker
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| RuntimeError("docker client not connected".into()))
    }
}

impl ContainerRuntime for DockerRuntime {
    /// Builds the client and negotiates the API version with the daemon (it
    /// may be older than the client's default, e.g. 1.41 for Docker 20.10).
    async fn connect(&self) -> Result<(), RuntimeError> {
        let client = match &self.endpoint {
            Endpoint::Socket(path) => {
                bollard::Docker::connect_with_socket(path, 30, bollard::API_DEFAULT_VERSION)
            }
            Endpoint::Http(url) => {
                bollard::Docker::connect_with_http(url, 30, bollard::API_DEFAULT_VERSION)
            }
        }
        .map_err(|e| RuntimeError(format!("docker client: {e}")))?;
        let negotiated = client
            .negotiate_version()
            .await
            .map_err(|e| RuntimeError(format!("docker version negotiation: {e}")))?;
        *self.docker.write().unwrap_or_else(|e| e.into_inner()) = Some(negotiated);
        Ok(())
    }

    async fn list(&self) -> Result<HashMap<String, ContainerMeta>, RuntimeError> {
        let opts = bollard::query_parameters::ListContainersOptionsBuilder::new()
            .all(true)
            .build();
        let list = self
            .client()?
            .list_containers(Some(opts))
            .await
            .map_err(|e| RuntimeError(format!("listing containers: {e}")))?;
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

    /// Ids that are not full container ids (64 lowercase hex characters)
    /// never reach the API's URL: they name no container.
    async fn inspect(&self, id: &str) -> Result<Option<ContainerMeta>, RuntimeError> {
        if !is_container_id(id) {
            return Ok(None);
        }
        match self
            .client()?
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        {
            Ok(r) => {
                let config = r.config.unwrap_or_default();
                Ok(Some(ContainerMeta::new(
                    r.name.as_deref().unwrap_or(""),
                    config.image.as_deref().unwrap_or(""),
                    config.labels.unwrap_or_default(),
                )))
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(RuntimeError(format!("inspecting container {id}: {e}"))),
        }
    }

    fn events(&self) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
        let mut filters = HashMap::new();
        filters.insert("type", vec!["container"]);
        let opts = bollard::query_parameters::EventsOptionsBuilder::new()
            .filters(&filters)
            .build();
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => return futures_util::stream::once(async { Err(e) }).boxed(),
        };
        client
            .events(Some(opts))
            .filter_map(|r| async move {
                match r {
                    Err(e) => Some(Err(RuntimeError(format!("docker events: {e}")))),
                    Ok(ev) => {
                        let id = ev.actor.and_then(|a| a.id)?;
                        match ev.action.as_deref()? {
                            "destroy" => Some(Ok(RuntimeEvent::Remove(id))),
                            "create" | "start" | "rename" | "die" | "update" => {
                                Some(Ok(RuntimeEvent::Refresh(id)))
                            }
                            _ => None,
                        }
                    }
                }
            })
            .boxed()
    }
}

/// Keeps `cache` fresh from `rt` forever: list, then follow events; on any
/// connection error mark the runtime down, count the error and retry with
/// exponential backoff (1 s doubling up to `max_backoff`).
pub async fn refresh_loop<R: ContainerRuntime>(
    rt: R,
    cache: Arc<MetaCache>,
    max_backoff: Duration,
) {
    let mut backoff = Duration::from_secs(1);
    let mut limiter = crate::errors::LogLimiter::new(Duration::from_secs(60));
    cache.followed.store(true, Ordering::Relaxed);
    loop {
        match follow(&rt, &cache).await {
            Ok(()) => {
                // The events stream ended (daemon restart): reconnect at once.
                backoff = Duration::from_secs(1);
                tracing::info!("runtime events stream ended; reconnecting");
            }
            Err(e) => {
                if cache.up() {
                    // It had been working: start the backoff over.
                    backoff = Duration::from_secs(1);
                }
                cache.set_up(false);
                cache.count_error();
                limiter.log("runtime", &e.0);
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max_backoff);
    }
}

/// One connection: list everything, then apply events until the stream ends.
async fn follow<R: ContainerRuntime>(rt: &R, cache: &MetaCache) -> Result<(), RuntimeError> {
    rt.connect().await?;
    let mut events = rt.events();
    let all = rt.list().await?;
    cache.replace(all);
    cache.set_up(true);
    tracing::debug!("runtime metadata listed");
    loop {
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { return Ok(()) };
                match ev? {
                    RuntimeEvent::Remove(id) => cache.remove(&id),
                    RuntimeEvent::Refresh(id) => refresh(rt, cache, &id).await,
                }
            }
            _ = cache.missed.notified() => {
                for id in cache.take_missing() {
                    refresh(rt, cache, &id).await;
                }
            }
        }
    }
}

/// Looks one container up again; errors are counted and logged, and the id
/// may be asked for again.
async fn refresh<R: ContainerRuntime>(rt: &R, cache: &MetaCache, id: &str) {
    match rt.inspect(id).await {
        Ok(meta) => cache.set(id, meta),
        Err(e) => {
            cache.count_error();
            cache.forget_asked(id);
            tracing::warn!(error = %e, "refreshing container metadata");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime whose list fails a given number of times, then answers with
    /// a fixed list and a scripted events stream.
    struct Scripted {
        fail_lists: Mutex<u32>,
        list: HashMap<String, ContainerMeta>,
        events: Vec<RuntimeEvent>,
        inspect: HashMap<String, ContainerMeta>,
    }

    impl ContainerRuntime for Scripted {
        async fn list(&self) -> Result<HashMap<String, ContainerMeta>, RuntimeError> {
            let mut f = self.fail_lists.lock().unwrap();
            if *f > 0 {
                *f -= 1;
                return Err(RuntimeError("connection refused".into()));
            }
            Ok(self.list.clone())
        }
        async fn inspect(&self, id: &str) -> Result<Option<ContainerMeta>, RuntimeError> {
            Ok(self.inspect.get(id).cloned())
        }
        fn events(&self) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
            futures_util::stream::iter(self.events.clone().into_iter().map(Ok))
                .chain(futures_util::stream::pending())
                .boxed()
        }
    }

    #[tokio::test]
    async fn docker_inspect_refuses_ids_that_are_not_container_ids() {
        // Not connected: a request that went out would fail, not answer None.
        let rt = DockerRuntime::new("unix:///nonexistent/docker.sock").unwrap();
        for bad in [
            "",
            "..",
            "../../containers/json",
            "abc?all=1",
            &"A".repeat(64),
            &"a".repeat(63),
            &format!("{}/x", "a".repeat(64)),
        ] {
            assert!(rt.inspect(bad).await.unwrap().is_none(), "{bad:?}");
        }
        // A well-formed id does reach the client (which is not connected).
        assert!(rt.inspect(&"a".repeat(64)).await.is_err());
    }

    fn meta(name: &str) -> ContainerMeta {
        ContainerMeta::new(name, "img:1", HashMap::new())
    }

    #[test]
    fn meta_strips_slash_and_reads_compose_labels() {
        let mut labels = HashMap::new();
        labels.insert(COMPOSE_PROJECT.to_string(), "shop".to_string());
        labels.insert(COMPOSE_SERVICE.to_string(), "web".to_string());
        let m = ContainerMeta::new("/shop-web-1", "nginx:1", labels);
        assert_eq!(m.name, "shop-web-1");
        assert_eq!(m.compose_project.as_deref(), Some("shop"));
        assert_eq!(m.compose_service.as_deref(), Some("web"));
        assert_eq!(m.labels.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_loop_recovers_and_applies_events() {
        let mut list = HashMap::new();
        list.insert("a".to_string(), meta("/alpha"));
        list.insert("b".to_string(), meta("/beta"));
        let mut inspect = HashMap::new();
        inspect.insert("c".to_string(), meta("/gamma"));
        inspect.insert("a".to_string(), meta("/alpha-renamed"));
        inspect.insert("d".to_string(), meta("/delta"));
        let rt = Scripted {
            fail_lists: Mutex::new(2),
            list,
            events: vec![
                RuntimeEvent::Remove("b".into()),
                RuntimeEvent::Refresh("c".into()),
                RuntimeEvent::Refresh("a".into()),
            ],
            inspect,
        };
        let cache = MetaCache::new();
        let task = tokio::spawn(refresh_loop(rt, cache.clone(), Duration::from_secs(30)));
        // Two failures: down, two errors counted.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!cache.up());
        assert_eq!(cache.errors(), 1);
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(cache.up());
        assert_eq!(cache.errors(), 2);
        let m = cache.snapshot();
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m["a"].name, "alpha-renamed");
        assert_eq!(m["c"].name, "gamma");
        assert!(!m.contains_key("b"));
        // A container the scrape saw but the cache missed is looked up.
        cache.report_missing("d");
        cache.report_missing("d");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(cache.snapshot()["d"].name, "delta");
        // An id the runtime does not know is asked once, not on every scrape.
        cache.report_missing("zz");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!cache.snapshot().contains_key("zz"));
        assert_eq!(cache.take_missing(), Vec::<String>::new());
        cache.report_missing("zz");
        assert_eq!(cache.take_missing(), Vec::<String>::new());
        task.abort();
    }

    #[test]
    fn a_removed_container_is_forgotten_by_the_miss_tracking() {
        let cache = MetaCache::new();
        cache.followed.store(true, Ordering::Relaxed);
        cache.set("x", Some(meta("/x")));
        cache.report_missing("x");
        assert_eq!(cache.take_missing(), vec!["x".to_string()]);
        cache.report_missing("x");
        assert!(cache.take_missing().is_empty(), "asked once only");
        cache.remove("x");
        assert!(cache.snapshot().is_empty());
        let asked = cache.misses.lock().unwrap().asked.len();
        assert_eq!(asked, 0, "the asked mark goes with the container");
    }
}
