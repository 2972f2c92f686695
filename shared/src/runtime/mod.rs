//! The container runtimes both daemons talk to: names, images and labels for
//! the exporter, state and restarts for the remediator.
//!
//! One trait per capability: [`Metadata`] (list containers, look one up,
//! follow events) and [`Control`] (inspect a container's state, restart it,
//! check the runtime answers). Implementations: the Docker Engine API and
//! Podman's Docker-compatible API ([`DockerApi`], bollard), and the
//! Kubernetes CRI (`runtime.v1`, containerd and CRI-O: [`CriApi`]).
//! [`Runtimes`] is the configured set; it picks the runtime of a container
//! from its cgroup classification.
//!
//! Every endpoint goes through one parser ([`Endpoint::parse`]) and every id
//! that arrives from outside through one check
//! ([`crate::cgroup::is_container_id`]) before
//! it reaches a URL or an RPC.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use crate::timefmt::UnixNanos;

mod cri;
mod docker;
mod set;

pub use cri::{CriApi, DEFAULT_CRI_ENDPOINTS};
pub use docker::DockerApi;
pub use set::{RuntimeFlags, Runtimes};

/// Default Docker Engine API endpoint.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
/// Default Podman API endpoint (its Docker-compatible service).
pub const DEFAULT_PODMAN_HOST: &str = "unix:///run/podman/podman.sock";

/// Compose project label.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// Compose service label.
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
/// The `container` label value of a pod's sandbox (pause) container.
pub const SANDBOX_CONTAINER: &str = "POD";

/// The runtime APIs pidwarden speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The Docker Engine API.
    Docker,
    /// Podman's Docker-compatible API.
    Podman,
    /// The Kubernetes Container Runtime Interface (containerd, CRI-O).
    Cri,
}

impl Kind {
    /// Every kind, in the order lookups try them.
    pub const ALL: [Kind; 3] = [Kind::Docker, Kind::Podman, Kind::Cri];

    /// The `runtime` label value of `pidwarden_runtime_up`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Docker => "docker",
            Kind::Podman => "podman",
            Kind::Cri => "cri",
        }
    }

    /// The API that manages containers of a cgroup classification.
    pub fn of(runtime: crate::cgroup::Runtime) -> Kind {
        use crate::cgroup::Runtime as R;
        match runtime {
            R::Docker => Kind::Docker,
            R::Podman => Kind::Podman,
            R::Containerd | R::Crio => Kind::Cri,
        }
    }
}

/// How to reach a runtime's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket, by absolute path.
    Unix(PathBuf),
    /// Plain HTTP (`tcp://host:port` is written as `http://host:port`).
    Http(String),
}

impl Endpoint {
    /// Parses `unix:///path`, `/path`, `tcp://host:port` or
    /// `http://host:port`; `none` (any case) is `Ok(None)`: the runtime is
    /// disabled.
    ///
    /// ```
    /// use pidwarden_shared::runtime::Endpoint;
    /// assert_eq!(
    ///     Endpoint::parse("unix:///run/podman/podman.sock").unwrap(),
    ///     Some(Endpoint::Unix("/run/podman/podman.sock".into()))
    /// );
    /// assert_eq!(
    ///     Endpoint::parse("tcp://127.0.0.1:2375").unwrap(),
    ///     Some(Endpoint::Http("http://127.0.0.1:2375".into()))
    /// );
    /// assert_eq!(Endpoint::parse("none").unwrap(), None);
    /// assert!(Endpoint::parse("docker.sock").is_err());
    /// ```
    pub fn parse(url: &str) -> Result<Option<Endpoint>, RuntimeError> {
        let url = url.trim();
        if url.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let bad = |why: &str| RuntimeError::InvalidEndpoint(format!("{url:?}: {why}"));
        let path = url
            .strip_prefix("unix://")
            .or_else(|| url.strip_prefix("/").map(|_| url));
        if let Some(path) = path {
            if !path.starts_with('/') || path.len() < 2 {
                return Err(bad(
                    "a unix socket needs an absolute path (unix:///run/x.sock)",
                ));
            }
            return Ok(Some(Endpoint::Unix(PathBuf::from(path))));
        }
        let rest = url
            .strip_prefix("tcp://")
            .or_else(|| url.strip_prefix("http://"));
        match rest {
            Some(hostport)
                if !hostport.is_empty()
                    && !hostport.contains(['/', '?', '#', '@', ' '])
                    && hostport.contains(':') =>
            {
                Ok(Some(Endpoint::Http(format!("http://{hostport}"))))
            }
            Some(_) => Err(bad("expected tcp://host:port")),
            None => Err(bad(
                "expected unix:///path, tcp://host:port, http://host:port or none",
            )),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Http(u) => f.write_str(u),
        }
    }
}

/// What went wrong talking to a runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The runtime does not know the container (HTTP 404, gRPC NotFound).
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
    /// An endpoint flag that is not a usable URL.
    #[error("invalid runtime endpoint {0}")]
    InvalidEndpoint(String),
    /// The runtime refuses this operation on this container.
    #[error("{0}")]
    Refused(String),
}

/// Kubernetes identity of a container, from CRI.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KubeRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name in the pod; [`SANDBOX_CONTAINER`] for the sandbox.
    pub container: String,
}

impl KubeRef {
    /// `<namespace>/<pod>/<container>`, the container's name.
    pub fn name(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.pod, self.container)
    }

    /// Splits `<namespace>/<pod>/<container>`; `None` for any other form.
    pub fn parse_name(name: &str) -> Option<KubeRef> {
        let mut it = name.split('/');
        let (ns, pod, c) = (it.next()?, it.next()?, it.next()?);
        if it.next().is_some() || ns.is_empty() || pod.is_empty() || c.is_empty() {
            return None;
        }
        Some(KubeRef {
            namespace: ns.into(),
            pod: pod.into(),
            container: c.into(),
        })
    }
}

/// What a runtime knows about one container (the exporter's view).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ContainerMeta {
    /// Name, without the leading `/`; `<namespace>/<pod>/<container>` for
    /// Kubernetes containers.
    pub name: String,
    /// Image as the container was created from it.
    pub image: String,
    /// `com.docker.compose.project`, when set.
    pub compose_project: Option<String>,
    /// `com.docker.compose.service`, when set.
    pub compose_service: Option<String>,
    /// Kubernetes namespace, pod and container, for CRI containers.
    pub kube: Option<KubeRef>,
    /// All labels (for a Kubernetes container: the pod's labels, then the
    /// container's).
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
            kube: None,
            labels,
        }
    }

    /// Metadata of a Kubernetes container: named `<namespace>/<pod>/<container>`.
    pub fn kube(kube: KubeRef, image: &str, labels: HashMap<String, String>) -> Self {
        ContainerMeta {
            name: kube.name(),
            kube: Some(kube),
            ..ContainerMeta::new("", image, labels)
        }
    }
}

/// What the remediator needs to know about a container (the controller's view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Full id.
    pub id: String,
    /// Name without the leading `/`; `<namespace>/<pod>/<container>` for
    /// Kubernetes containers.
    pub name: String,
    /// Labels (a Kubernetes container's include its pod's labels).
    pub labels: HashMap<String, String>,
    /// Running (not stopped, not paused).
    pub running: bool,
    /// When the current run started.
    pub started_at: Option<UnixNanos>,
    /// For a Kubernetes container (not a sandbox): its place in its pod.
    pub pod: Option<PodContainer>,
    /// The container's init process as the runtime reports it (host pid);
    /// `None` when it runs none or the runtime does not say.
    pub pid: Option<i32>,
}

/// The kubelet's container annotation holding the pod's
/// `terminationGracePeriodSeconds`.
pub const POD_TERMINATION_GRACE: &str = "io.kubernetes.pod.terminationGracePeriod";
/// The pod label or annotation that declares the pod's restart policy to
/// pidwarden (`Always`, `OnFailure`, `Never`): CRI does not carry the pod
/// spec's `restartPolicy`.
pub const RESTART_POLICY_LABEL: &str = "pidwarden.restart-policy";
/// Longest pod uid or container name kept in a [`PodContainer`].
const POD_FIELD_MAX: usize = 128;

/// A pod's restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// The kubelet starts a stopped container again.
    Always,
    /// Only after a non-zero exit.
    OnFailure,
    /// Never.
    Never,
}

impl RestartPolicy {
    /// `Always`, `OnFailure` or `Never` (as Kubernetes spells them, any case).
    pub fn parse(s: &str) -> Option<RestartPolicy> {
        let s = s.trim();
        [
            RestartPolicy::Always,
            RestartPolicy::OnFailure,
            RestartPolicy::Never,
        ]
        .into_iter()
        .find(|p| p.as_str().eq_ignore_ascii_case(s))
    }

    /// As Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "Always",
            RestartPolicy::OnFailure => "OnFailure",
            RestartPolicy::Never => "Never",
        }
    }
}

/// A Kubernetes container's place in its pod, from CRI: what stays when the
/// kubelet restarts the container under a new id, and what a restart of it
/// needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodContainer {
    /// The pod's uid.
    pub pod_uid: String,
    /// The container's name in the pod.
    pub container: String,
    /// The pod's `terminationGracePeriodSeconds`, when the kubelet wrote it
    /// ([`POD_TERMINATION_GRACE`]).
    pub termination_grace: Option<Duration>,
    /// The pod's restart policy as declared by its [`RESTART_POLICY_LABEL`]
    /// label or annotation; `None` when not declared (or not understood).
    pub restart_policy: Option<RestartPolicy>,
}

impl PodContainer {
    /// From the pod uid, the container name, the container's annotations and
    /// the pod's labels and annotations. `None` without a uid or a name.
    pub fn from_cri(
        pod_uid: &str,
        container: &str,
        annotations: &HashMap<String, String>,
        pod_labels: &HashMap<String, String>,
        pod_annotations: &HashMap<String, String>,
    ) -> Option<PodContainer> {
        if pod_uid.is_empty() || container.is_empty() {
            return None;
        }
        let clip = |s: &str| s.chars().take(POD_FIELD_MAX).collect::<String>();
        let termination_grace = annotations
            .get(POD_TERMINATION_GRACE)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let restart_policy = pod_annotations
            .get(RESTART_POLICY_LABEL)
            .or_else(|| pod_labels.get(RESTART_POLICY_LABEL))
            .and_then(|v| RestartPolicy::parse(v));
        Some(PodContainer {
            pod_uid: clip(pod_uid),
            container: clip(container),
            termination_grace,
            restart_policy,
        })
    }

    /// The key restraint is kept under: `pod:<uid>/<container>`, the same
    /// for every id the kubelet runs this container under.
    pub fn restraint_key(&self) -> String {
        format!("pod:{}/{}", self.pod_uid, self.container)
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

/// Container metadata from a runtime, for a cache kept by one task.
pub trait Metadata: Send + Sync + 'static {
    /// Which API this is.
    fn kind(&self) -> Kind;
    /// Prepares a connection (negotiates the API version, picks the
    /// endpoint). Called before every list/events cycle.
    fn connect(&self) -> impl Future<Output = Result<(), RuntimeError>> + Send {
        async { Ok(()) }
    }
    /// Every container (running or not) with its metadata, by full id.
    fn list(
        &self,
    ) -> impl Future<Output = Result<HashMap<String, ContainerMeta>, RuntimeError>> + Send;
    /// One container's metadata; `Ok(None)` when it does not exist (ids
    /// that are not full container ids included: they never reach the API).
    fn meta(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<ContainerMeta>, RuntimeError>> + Send;
    /// The stream of container events from now on, or `None` when the API
    /// has none: then the cache is kept by listing every `poll` interval.
    fn events(&self) -> Option<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>>;
}

/// Container state and restarts through a runtime.
pub trait Control: Send + Sync + 'static {
    /// Inspects a container by full id or by exact name: a name that only
    /// matches the start of some container's id is [`RuntimeError::NotFound`].
    fn inspect<'a>(
        &'a self,
        id_or_name: &'a str,
    ) -> BoxFuture<'a, Result<ContainerInfo, RuntimeError>>;
    /// Restarts a container, giving it `stop_timeout` to stop before SIGKILL.
    /// On Kubernetes this stops it; the kubelet starts it again.
    fn restart<'a>(
        &'a self,
        id: &'a str,
        stop_timeout: Duration,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Checks that the runtime answers.
    fn ping(&self) -> BoxFuture<'_, Result<(), RuntimeError>>;
}

/// How long a failed connection attempt answers for its runtime before the
/// next call tries again: a burst of lookups against an absent runtime costs
/// one attempt, not one each.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A client built on first use, kept while its runtime answers; and the
/// last failed attempt to build one.
#[derive(Debug)]
struct Slot<T> {
    client: std::sync::RwLock<Option<T>>,
    failed: std::sync::Mutex<Option<(std::time::Instant, RuntimeError)>>,
}

impl<T: Clone> Slot<T> {
    fn empty() -> Self {
        Slot {
            client: std::sync::RwLock::new(None),
            failed: std::sync::Mutex::new(None),
        }
    }

    fn get(&self) -> Option<T> {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, v: Option<T>) {
        *self.client.write().unwrap_or_else(|e| e.into_inner()) = v;
    }

    /// Records the outcome of an attempt to connect.
    fn attempted(&self, r: &Result<T, RuntimeError>) {
        let mut f = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        *f = r
            .as_ref()
            .err()
            .map(|e| (std::time::Instant::now(), e.clone()));
    }

    /// The error of an attempt that failed less than [`RETRY_AFTER`] ago.
    fn recent_failure(&self) -> Option<RuntimeError> {
        let f = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        f.as_ref()
            .filter(|(at, _)| at.elapsed() < RETRY_AFTER)
            .map(|(_, e)| e.clone())
    }
}

/// True when `s` is a Docker or Podman container name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`,
/// at most 128 characters, one leading `/` allowed as the APIs report
/// names): anything else never reaches a URL.
pub fn is_container_name(s: &str) -> bool {
    let s = s.strip_prefix('/').unwrap_or(s);
    let mut b = s.bytes();
    s.len() <= 128
        && b.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_or_are_refused() {
        let ok = [
            (
                "unix:///var/run/docker.sock",
                Some(Endpoint::Unix("/var/run/docker.sock".into())),
            ),
            (
                "/run/crio/crio.sock",
                Some(Endpoint::Unix("/run/crio/crio.sock".into())),
            ),
            (
                "tcp://10.0.0.1:2375",
                Some(Endpoint::Http("http://10.0.0.1:2375".into())),
            ),
            (
                "http://localhost:2375",
                Some(Endpoint::Http("http://localhost:2375".into())),
            ),
            ("none", None),
            ("NONE", None),
        ];
        for (url, want) in ok {
            assert_eq!(Endpoint::parse(url).unwrap(), want, "{url}");
        }
        for bad in [
            "",
            "docker.sock",
            "unix://relative.sock",
            "unix://",
            "/",
            "tcp://",
            "tcp://host",
            "tcp://host:1/path",
            "http://u@host:1",
            "https://host:1",
            "ftp://host:1",
        ] {
            let e = Endpoint::parse(bad).unwrap_err();
            assert!(matches!(e, RuntimeError::InvalidEndpoint(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn container_names_are_checked() {
        for ok in ["web-1", "/web-1", "a", "shop_web.1", "A9"] {
            assert!(is_container_name(ok), "{ok}");
        }
        for bad in [
            "",
            "/",
            "-x",
            ".x",
            "../x",
            "a/b",
            "a?b",
            "a b",
            "a%2f",
            &"a".repeat(129),
        ] {
            assert!(!is_container_name(bad), "{bad}");
        }
    }

    #[test]
    fn kube_names_round_trip() {
        let k = KubeRef {
            namespace: "shop".into(),
            pod: "web-7d9f".into(),
            container: "nginx".into(),
        };
        assert_eq!(k.name(), "shop/web-7d9f/nginx");
        assert_eq!(KubeRef::parse_name(&k.name()), Some(k.clone()));
        for bad in ["web-1", "a/b", "a/b/c/d", "/b/c", "a//c", "a/b/"] {
            assert_eq!(KubeRef::parse_name(bad), None, "{bad}");
        }
        let m = ContainerMeta::kube(k, "kbox:1", HashMap::new());
        assert_eq!(m.name, "shop/web-7d9f/nginx");
        assert_eq!(m.compose_project, None);
    }

    #[test]
    fn pod_containers_read_the_kubelet_annotations_and_the_declared_policy() {
        let map = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let ann = map(&[(POD_TERMINATION_GRACE, "45")]);
        let p = PodContainer::from_cri(
            "uid-1",
            "app",
            &ann,
            &map(&[(RESTART_POLICY_LABEL, "always")]),
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(p.restraint_key(), "pod:uid-1/app");
        assert_eq!(p.termination_grace, Some(Duration::from_secs(45)));
        assert_eq!(p.restart_policy, Some(RestartPolicy::Always));
        // The annotation wins over the label; nonsense is not a policy.
        let p = PodContainer::from_cri(
            "uid-1",
            "app",
            &map(&[(POD_TERMINATION_GRACE, "-3")]),
            &map(&[(RESTART_POLICY_LABEL, "Always")]),
            &map(&[(RESTART_POLICY_LABEL, "Never")]),
        )
        .unwrap();
        assert_eq!(p.restart_policy, Some(RestartPolicy::Never));
        assert_eq!(p.termination_grace, None);
        let p = PodContainer::from_cri(
            "uid-1",
            "app",
            &HashMap::new(),
            &map(&[(RESTART_POLICY_LABEL, "Sometimes")]),
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(p.restart_policy, None);
        let e = HashMap::new();
        assert!(PodContainer::from_cri("", "app", &e, &e, &e).is_none());
        assert!(PodContainer::from_cri("u", "", &e, &e, &e).is_none());
        let long = "x".repeat(1000);
        let p = PodContainer::from_cri(&long, &long, &e, &e, &e).unwrap();
        assert_eq!(p.restraint_key().len(), 4 + 128 + 1 + 128);
    }

    #[test]
    fn kinds_follow_the_cgroup_classification() {
        use crate::cgroup::Runtime as R;
        assert_eq!(Kind::of(R::Docker), Kind::Docker);
        assert_eq!(Kind::of(R::Podman), Kind::Podman);
        assert_eq!(Kind::of(R::Containerd), Kind::Cri);
        assert_eq!(Kind::of(R::Crio), Kind::Cri);
        let labels: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(labels, ["docker", "podman", "cri"]);
    }

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
