//! Container metadata from the runtime APIs (names, images, compose and
//! Kubernetes labels), through the shared runtime layer.
//!
//! One background task per configured runtime fills the cache: it lists the
//! containers, then follows the events stream (Docker, Podman) or lists again
//! every poll interval (CRI), reconnecting with backoff when the runtime is
//! absent or restarts. Scrapes only read the cache: a slow or dead runtime
//! never delays `/metrics`. Runtimes sit behind the shared [`Metadata`] trait
//! so tests can inject metadata.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
pub use pidwarden_shared::runtime::ContainerMeta;
use pidwarden_shared::runtime::{Kind, Metadata, RuntimeError, RuntimeEvent};

/// The metadata of every runtime, merged by container id.
#[derive(Debug, Default)]
struct Entries {
    meta: HashMap<String, ContainerMeta>,
    owner: HashMap<String, Kind>,
}

/// One configured runtime's health and pending lookups.
#[derive(Debug)]
struct Source {
    kind: Kind,
    /// On a default endpoint the host may not have: quiet until first up.
    probed: bool,
    ever_up: AtomicBool,
    up: AtomicBool,
    /// Whether a refresher is running (only then are misses queued).
    followed: AtomicBool,
    misses: Mutex<Misses>,
    missed: tokio::sync::Notify,
}

/// The shared metadata cache, plus each runtime's health and the error count.
#[derive(Debug)]
pub struct MetaCache {
    entries: RwLock<Entries>,
    sources: Vec<Source>,
    errors: AtomicU64,
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
    /// An empty cache for the Docker runtime alone, down (tests).
    #[cfg(test)]
    pub fn new() -> Arc<Self> {
        MetaCache::with_runtimes(&[Kind::Docker], &[])
    }

    /// An empty cache for the configured runtimes, all down. Those in
    /// `probed` run on a default endpoint the host may not have: they get a
    /// `pidwarden_runtime_up` series and count errors only once they have
    /// answered.
    pub fn with_runtimes(kinds: &[Kind], probed: &[Kind]) -> Arc<Self> {
        Arc::new(MetaCache {
            entries: RwLock::default(),
            sources: kinds
                .iter()
                .map(|&kind| Source {
                    kind,
                    probed: probed.contains(&kind),
                    ever_up: AtomicBool::new(false),
                    up: AtomicBool::new(false),
                    followed: AtomicBool::new(false),
                    misses: Mutex::default(),
                    missed: tokio::sync::Notify::new(),
                })
                .collect(),
            errors: AtomicU64::new(0),
        })
    }

    fn source(&self, kind: Kind) -> Option<&Source> {
        self.sources.iter().find(|s| s.kind == kind)
    }

    /// A copy of the current map.
    pub fn snapshot(&self) -> HashMap<String, ContainerMeta> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .meta
            .clone()
    }

    /// Replaces every container of one runtime.
    pub fn replace(&self, kind: Kind, map: HashMap<String, ContainerMeta>) {
        {
            let mut e = self.entries.write().unwrap_or_else(|e| e.into_inner());
            let Entries { meta, owner } = &mut *e;
            owner.retain(|id, k| {
                let keep = *k != kind;
                if !keep {
                    meta.remove(id);
                }
                keep
            });
            for (id, m) in map {
                owner.insert(id.clone(), kind);
                meta.insert(id, m);
            }
        }
        if let Some(s) = self.source(kind) {
            s.misses
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .asked
                .clear();
        }
    }

    /// Asks the refresher of `kind` (if one runs) to look up a container the
    /// cgroups show but the cache does not know, e.g. one created between
    /// the list and the events subscription. Never blocks; each id is asked
    /// once.
    pub fn report_missing(&self, kind: Kind, id: &str) {
        let Some(s) = self.source(kind) else { return };
        if !s.followed.load(Ordering::Relaxed) {
            return;
        }
        let mut m = s.misses.lock().unwrap_or_else(|e| e.into_inner());
        if m.pending.len() >= MAX_PENDING || !m.asked.insert(id.to_string()) {
            return;
        }
        m.pending.push(id.to_string());
        drop(m);
        s.missed.notify_one();
    }

    fn take_missing(&self, kind: Kind) -> Vec<String> {
        let Some(s) = self.source(kind) else {
            return Vec::new();
        };
        std::mem::take(&mut s.misses.lock().unwrap_or_else(|e| e.into_inner()).pending)
    }

    fn forget_asked(&self, kind: Kind, id: &str) {
        if let Some(s) = self.source(kind) {
            s.misses
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .asked
                .remove(id);
        }
    }

    /// Sets or drops one container of one runtime.
    pub fn set(&self, kind: Kind, id: &str, meta: Option<ContainerMeta>) {
        let mut e = self.entries.write().unwrap_or_else(|e| e.into_inner());
        match meta {
            Some(meta) => {
                e.meta.insert(id.to_string(), meta);
                e.owner.insert(id.to_string(), kind);
            }
            None if e.owner.get(id) == Some(&kind) => {
                e.meta.remove(id);
                e.owner.remove(id);
            }
            None => {}
        }
    }

    /// Drops a destroyed container: its metadata and its "already asked"
    /// mark, so the set of asked ids does not grow with every container the
    /// host ever ran.
    pub fn remove(&self, kind: Kind, id: &str) {
        self.set(kind, id, None);
        self.forget_asked(kind, id);
    }

    /// Whether the last list/events connection of `kind` succeeded.
    pub fn up(&self, kind: Kind) -> bool {
        self.source(kind)
            .is_some_and(|s| s.up.load(Ordering::Relaxed))
    }

    /// Each configured runtime and whether it is up, in configuration
    /// order; a probed runtime only once it has answered.
    pub fn runtimes_up(&self) -> Vec<(Kind, bool)> {
        self.sources
            .iter()
            .filter(|s| !s.probed || s.ever_up.load(Ordering::Relaxed))
            .map(|s| (s.kind, s.up.load(Ordering::Relaxed)))
            .collect()
    }

    /// Marks a runtime up or down.
    pub fn set_up(&self, kind: Kind, up: bool) {
        if let Some(s) = self.source(kind) {
            s.up.store(up, Ordering::Relaxed);
            if up {
                s.ever_up.store(true, Ordering::Relaxed);
            }
        }
    }

    /// True while a probed runtime has never answered: its failures are
    /// the host not having it, not errors.
    fn absent(&self, kind: Kind) -> bool {
        self.source(kind)
            .is_some_and(|s| s.probed && !s.ever_up.load(Ordering::Relaxed))
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

/// How often a runtime without events (CRI) is listed again.
pub const POLL_EVERY: Duration = Duration::from_secs(10);

/// Keeps `cache` fresh from `rt` forever: list, then follow events (or list
/// again every `poll`); on any connection error mark the runtime down,
/// count the error and retry with exponential backoff (1 s doubling up to
/// `max_backoff`).
pub async fn refresh_loop<R: Metadata>(
    rt: Arc<R>,
    cache: Arc<MetaCache>,
    max_backoff: Duration,
    poll: Duration,
) {
    let kind = rt.kind();
    let mut backoff = Duration::from_secs(1);
    let mut limiter = crate::scrape_errors::LogLimiter::new(Duration::from_secs(60));
    if let Some(s) = cache.source(kind) {
        s.followed.store(true, Ordering::Relaxed);
    }
    loop {
        match follow(&*rt, &cache, poll).await {
            Ok(()) => {
                // The events stream ended (daemon restart): reconnect at once.
                backoff = Duration::from_secs(1);
                tracing::info!(
                    runtime = kind.as_str(),
                    "runtime events stream ended; reconnecting"
                );
            }
            Err(e) => {
                if cache.up(kind) {
                    // It had been working: start the backoff over.
                    backoff = Duration::from_secs(1);
                }
                cache.set_up(kind, false);
                if cache.absent(kind) {
                    tracing::debug!(runtime = kind.as_str(), error = %e, "runtime not (yet) present on its default endpoint");
                } else {
                    cache.count_error();
                    limiter.log(kind.as_str(), &e.to_string());
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max_backoff);
    }
}

/// One connection: list everything, then apply events (or list again every
/// `poll`) until the stream ends or a list fails.
async fn follow<R: Metadata>(
    rt: &R,
    cache: &MetaCache,
    poll: Duration,
) -> Result<(), RuntimeError> {
    let kind = rt.kind();
    let Some(source) = cache.source(kind) else {
        return Err(RuntimeError::Other(format!(
            "{} is not configured",
            kind.as_str()
        )));
    };
    rt.connect().await?;
    let mut events = rt.events();
    cache.replace(kind, rt.list().await?);
    cache.set_up(kind, true);
    tracing::debug!(runtime = kind.as_str(), "runtime metadata listed");
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            ev = async {
                match events.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            } => {
                let Some(ev) = ev else { return Ok(()) };
                match ev? {
                    RuntimeEvent::Remove(id) => cache.remove(kind, &id),
                    RuntimeEvent::Refresh(id) => refresh(rt, cache, &id).await,
                }
            }
            _ = tick.tick(), if events.is_none() => {
                cache.replace(kind, rt.list().await?);
            }
            _ = source.missed.notified() => {
                for id in cache.take_missing(kind) {
                    refresh(rt, cache, &id).await;
                }
            }
        }
    }
}

/// Looks one container up again; errors are counted and logged, and the id
/// may be asked for again.
async fn refresh<R: Metadata>(rt: &R, cache: &MetaCache, id: &str) {
    let kind = rt.kind();
    match rt.meta(id).await {
        Ok(meta) => cache.set(kind, id, meta),
        Err(e) => {
            cache.count_error();
            cache.forget_asked(kind, id);
            tracing::warn!(runtime = kind.as_str(), error = %e, "refreshing container metadata");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream::BoxStream;

    /// A runtime whose list fails a given number of times, then answers with
    /// a fixed list and a scripted events stream (or none: then it is polled).
    struct Scripted {
        kind: Kind,
        fail_lists: Mutex<u32>,
        lists: Mutex<u32>,
        list: HashMap<String, ContainerMeta>,
        events: Option<Vec<RuntimeEvent>>,
        inspect: HashMap<String, ContainerMeta>,
    }

    impl Scripted {
        fn new(kind: Kind, list: HashMap<String, ContainerMeta>) -> Self {
            Scripted {
                kind,
                fail_lists: Mutex::new(0),
                lists: Mutex::new(0),
                list,
                events: None,
                inspect: HashMap::new(),
            }
        }
    }

    impl Metadata for Scripted {
        fn kind(&self) -> Kind {
            self.kind
        }
        async fn list(&self) -> Result<HashMap<String, ContainerMeta>, RuntimeError> {
            *self.lists.lock().unwrap() += 1;
            let mut f = self.fail_lists.lock().unwrap();
            if *f > 0 {
                *f -= 1;
                return Err(RuntimeError::Unreachable("connection refused".into()));
            }
            Ok(self.list.clone())
        }
        async fn meta(&self, id: &str) -> Result<Option<ContainerMeta>, RuntimeError> {
            Ok(self.inspect.get(id).cloned())
        }
        fn events(&self) -> Option<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>> {
            let events = self.events.clone()?;
            Some(
                futures_util::stream::iter(events.into_iter().map(Ok))
                    .chain(futures_util::stream::pending())
                    .boxed(),
            )
        }
    }

    fn meta(name: &str) -> ContainerMeta {
        ContainerMeta::new(name, "img:1", HashMap::new())
    }

    #[test]
    fn meta_strips_slash_and_reads_compose_labels() {
        use pidwarden_shared::runtime::{COMPOSE_PROJECT, COMPOSE_SERVICE};
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
        let mut rt = Scripted::new(Kind::Docker, list);
        rt.fail_lists = Mutex::new(2);
        rt.inspect.insert("c".to_string(), meta("/gamma"));
        rt.inspect.insert("a".to_string(), meta("/alpha-renamed"));
        rt.inspect.insert("d".to_string(), meta("/delta"));
        rt.events = Some(vec![
            RuntimeEvent::Remove("b".into()),
            RuntimeEvent::Refresh("c".into()),
            RuntimeEvent::Refresh("a".into()),
        ]);
        let cache = MetaCache::new();
        let task = tokio::spawn(refresh_loop(
            Arc::new(rt),
            cache.clone(),
            Duration::from_secs(30),
            POLL_EVERY,
        ));
        // Two failures: down, two errors counted.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!cache.up(Kind::Docker));
        assert_eq!(cache.errors(), 1);
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(cache.up(Kind::Docker));
        assert_eq!(cache.errors(), 2);
        let m = cache.snapshot();
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m["a"].name, "alpha-renamed");
        assert_eq!(m["c"].name, "gamma");
        assert!(!m.contains_key("b"));
        // A container the scrape saw but the cache missed is looked up.
        cache.report_missing(Kind::Docker, "d");
        cache.report_missing(Kind::Docker, "d");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(cache.snapshot()["d"].name, "delta");
        // An id the runtime does not know is asked once, not on every scrape.
        cache.report_missing(Kind::Docker, "zz");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!cache.snapshot().contains_key("zz"));
        assert_eq!(cache.take_missing(Kind::Docker), Vec::<String>::new());
        cache.report_missing(Kind::Docker, "zz");
        assert_eq!(cache.take_missing(Kind::Docker), Vec::<String>::new());
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn runtimes_without_events_are_polled_and_keep_to_their_own_containers() {
        let cache = MetaCache::with_runtimes(&[Kind::Docker, Kind::Cri], &[]);
        let mut docker = HashMap::new();
        docker.insert("d".to_string(), meta("/web"));
        cache.replace(Kind::Docker, docker);
        cache.set_up(Kind::Docker, true);
        let mut pods = HashMap::new();
        pods.insert("k".to_string(), meta("shop/web-1/app"));
        let rt = Arc::new(Scripted::new(Kind::Cri, pods));
        let task = tokio::spawn(refresh_loop(
            rt.clone(),
            cache.clone(),
            Duration::from_secs(30),
            POLL_EVERY,
        ));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            cache.runtimes_up(),
            vec![(Kind::Docker, true), (Kind::Cri, true)]
        );
        assert_eq!(*rt.lists.lock().unwrap(), 1);
        tokio::time::sleep(POLL_EVERY * 2 + Duration::from_millis(10)).await;
        assert_eq!(*rt.lists.lock().unwrap(), 3, "listed again every poll");
        let m = cache.snapshot();
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m["k"].name, "shop/web-1/app");
        // A list of one runtime never drops another's containers, and a
        // removal of an id another runtime owns changes nothing.
        cache.replace(Kind::Cri, HashMap::new());
        cache.remove(Kind::Cri, "d");
        assert_eq!(cache.snapshot().keys().collect::<Vec<_>>(), vec!["d"]);
        // Misses of an unconfigured runtime are not queued.
        cache.report_missing(Kind::Podman, "p");
        assert!(cache.take_missing(Kind::Podman).is_empty());
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_probed_runtime_is_quiet_until_it_first_answers() {
        let cache = MetaCache::with_runtimes(&[Kind::Docker, Kind::Podman], &[Kind::Podman]);
        let mut rt = Scripted::new(Kind::Podman, HashMap::new());
        rt.fail_lists = Mutex::new(3);
        rt.events = Some(Vec::new());
        let task = tokio::spawn(refresh_loop(
            Arc::new(rt),
            cache.clone(),
            Duration::from_secs(2),
            POLL_EVERY,
        ));
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Absent: no series, no error.
        assert_eq!(cache.runtimes_up(), vec![(Kind::Docker, false)]);
        assert_eq!(cache.errors(), 0);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            cache.runtimes_up(),
            vec![(Kind::Docker, false), (Kind::Podman, true)]
        );
        assert_eq!(cache.errors(), 0);
        // Once it has answered, going down is reported and counted.
        cache.set_up(Kind::Podman, false);
        assert!(!cache.absent(Kind::Podman));
        assert_eq!(cache.runtimes_up()[1], (Kind::Podman, false));
        task.abort();
    }

    #[test]
    fn a_removed_container_is_forgotten_by_the_miss_tracking() {
        let cache = MetaCache::new();
        let docker = cache.source(Kind::Docker).unwrap();
        docker.followed.store(true, Ordering::Relaxed);
        cache.set(Kind::Docker, "x", Some(meta("/x")));
        cache.report_missing(Kind::Docker, "x");
        assert_eq!(cache.take_missing(Kind::Docker), vec!["x".to_string()]);
        cache.report_missing(Kind::Docker, "x");
        assert!(
            cache.take_missing(Kind::Docker).is_empty(),
            "asked once only"
        );
        cache.remove(Kind::Docker, "x");
        assert!(cache.snapshot().is_empty());
        let asked = docker.misses.lock().unwrap().asked.len();
        assert_eq!(asked, 0, "the asked mark goes with the container");
    }
}
