//! The Kubernetes Container Runtime Interface (`runtime.v1` over gRPC), as
//! containerd and CRI-O serve it to the kubelet: pod sandboxes and their
//! containers, named `<namespace>/<pod>/<container>` (`POD` for the sandbox),
//! with the pod's labels merged under the container's.
//!
//! Restart on Kubernetes is `StopContainer` with the grace period: the
//! kubelet starts the container again per the pod's restart policy.
//! Nothing here stops or removes a pod sandbox.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::cgroup::is_container_id;

use super::{
    ContainerInfo, ContainerMeta, Control, Endpoint, Kind, KubeRef, Metadata, PodContainer,
    RuntimeError, RuntimeEvent, Slot, SANDBOX_CONTAINER,
};

/// Where the kubelet's runtimes listen by default, tried in this order.
pub const DEFAULT_CRI_ENDPOINTS: [&str; 2] = [
    "unix:///run/containerd/containerd.sock",
    "unix:///run/crio/crio.sock",
];

/// Seconds an ordinary call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Seconds a runtime has to answer `Version` when endpoints are probed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
struct Clients {
    runtime: RuntimeServiceClient<Channel>,
    image: ImageServiceClient<Channel>,
    endpoint: usize,
}

/// A CRI runtime (containerd, CRI-O). With several endpoints the first that
/// answers `Version` is used, and probed again after it stops answering.
pub struct CriApi {
    endpoints: Vec<Endpoint>,
    clients: Slot<Clients>,
}

impl std::fmt::Debug for CriApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriApi")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// A lazily connecting channel to `endpoint`.
fn channel(endpoint: &Endpoint) -> Result<Channel, RuntimeError> {
    let bad =
        |e: tonic::transport::Error| RuntimeError::InvalidEndpoint(format!("{endpoint}: {e}"));
    match endpoint {
        Endpoint::Unix(path) => {
            let path: PathBuf = path.clone();
            // The URI is not used: every connection goes to the socket.
            let ep = tonic::transport::Endpoint::try_from("http://cri.sock").map_err(bad)?;
            Ok(ep
                .connect_timeout(PROBE_TIMEOUT)
                .connect_with_connector_lazy(tower::service_fn(move |_: tonic::transport::Uri| {
                    let path = path.clone();
                    async move {
                        let s = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                    }
                })))
        }
        Endpoint::Http(url) => Ok(tonic::transport::Endpoint::from_shared(url.clone())
            .map_err(bad)?
            .connect_timeout(PROBE_TIMEOUT)
            .connect_lazy()),
    }
}

fn map_status(s: tonic::Status) -> RuntimeError {
    use tonic::Code;
    match s.code() {
        Code::NotFound => RuntimeError::NotFound,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            RuntimeError::Unreachable(format!("cri: {}", s.message()))
        }
        Code::Unknown if s.message().contains("transport") => {
            RuntimeError::Unreachable(format!("cri: {}", s.message()))
        }
        c => RuntimeError::Other(format!("cri: {c:?}: {}", s.message())),
    }
}

/// Runs one call with a deadline.
async fn call<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, RuntimeError> {
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(map_status(s)),
        Err(_) => Err(RuntimeError::Unreachable(format!(
            "cri: no answer in {timeout:?}"
        ))),
    }
}

/// The Kubernetes identity of a sandbox, from its metadata.
fn pod_ref(sb: &cri::PodSandbox, container: &str) -> KubeRef {
    let md = sb.metadata.clone().unwrap_or_default();
    KubeRef {
        namespace: md.namespace,
        pod: md.name,
        container: container.to_string(),
    }
}

/// The Kubernetes identity of a container: pod from its sandbox, or from the
/// kubelet's `io.kubernetes.pod.*` labels when the sandbox is gone.
fn container_ref(c: &cri::Container, sb: Option<&cri::PodSandbox>) -> KubeRef {
    let name = c
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    match sb {
        Some(sb) => pod_ref(sb, &name),
        None => KubeRef {
            namespace: c
                .labels
                .get("io.kubernetes.pod.namespace")
                .cloned()
                .unwrap_or_default(),
            pod: c
                .labels
                .get("io.kubernetes.pod.name")
                .cloned()
                .unwrap_or_default(),
            container: name,
        },
    }
}

/// A container's place in its pod: the pod uid from the sandbox's metadata
/// (else the kubelet's `io.kubernetes.pod.uid` label), the container's name
/// from its metadata (else `io.kubernetes.container.name`), the grace period
/// from its annotations and the declared restart policy from the pod's.
fn pod_container(c: &cri::Container, sb: Option<&cri::PodSandbox>) -> Option<PodContainer> {
    let uid = sb
        .and_then(|s| s.metadata.as_ref())
        .map(|m| m.uid.as_str())
        .filter(|u| !u.is_empty())
        .or_else(|| c.labels.get("io.kubernetes.pod.uid").map(String::as_str))
        .unwrap_or("");
    let name = c
        .metadata
        .as_ref()
        .map(|m| m.name.as_str())
        .filter(|n| !n.is_empty())
        .or_else(|| {
            c.labels
                .get("io.kubernetes.container.name")
                .map(String::as_str)
        })
        .unwrap_or("");
    let empty = HashMap::new();
    PodContainer::from_cri(
        uid,
        name,
        &c.annotations,
        sb.map_or(&empty, |s| &s.labels),
        sb.map_or(&empty, |s| &s.annotations),
    )
}

/// The pod's labels, overlaid with the container's own.
fn merged_labels(
    c: &HashMap<String, String>,
    sb: Option<&cri::PodSandbox>,
) -> HashMap<String, String> {
    let mut labels = sb.map(|s| s.labels.clone()).unwrap_or_default();
    labels.extend(c.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

/// A container's image as a name: runtimes list the image id
/// (`sha256:…`); its first tag reads better.
fn image_name(spec: Option<&cri::ImageSpec>, tags: &HashMap<String, String>) -> String {
    let image = spec.map(|s| s.image.as_str()).unwrap_or("");
    tags.get(image)
        .cloned()
        .unwrap_or_else(|| image.to_string())
}

fn sandbox_meta(sb: &cri::PodSandbox) -> ContainerMeta {
    ContainerMeta::kube(pod_ref(sb, SANDBOX_CONTAINER), "", sb.labels.clone())
}

fn container_meta(
    c: &cri::Container,
    sb: Option<&cri::PodSandbox>,
    tags: &HashMap<String, String>,
) -> ContainerMeta {
    ContainerMeta::kube(
        container_ref(c, sb),
        &image_name(c.image.as_ref(), tags),
        merged_labels(&c.labels, sb),
    )
}

/// What one id names in CRI.
enum Found {
    Container(Box<cri::Container>, Option<cri::PodSandbox>),
    Sandbox(cri::PodSandbox),
}

impl CriApi {
    /// A client for the first of `endpoints` that answers. Nothing connects
    /// until the first call.
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        CriApi {
            endpoints,
            clients: Slot::empty(),
        }
    }

    /// The endpoints tried, in order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The endpoint in use, once one answered.
    pub fn active_endpoint(&self) -> Option<Endpoint> {
        let c = self.clients.get()?;
        self.endpoints.get(c.endpoint).cloned()
    }

    /// Probes the endpoints in order; keeps the first that answers `Version`.
    async fn probe(&self) -> Result<Clients, RuntimeError> {
        let r = self.probe_all().await;
        self.clients.attempted(&r);
        r
    }

    async fn probe_all(&self) -> Result<Clients, RuntimeError> {
        let mut why = Vec::new();
        for (i, ep) in self.endpoints.iter().enumerate() {
            let ch = channel(ep)?;
            let mut runtime = RuntimeServiceClient::new(ch.clone());
            let req = cri::VersionRequest {
                version: "v1".into(),
            };
            match call(PROBE_TIMEOUT, runtime.version(req)).await {
                Ok(v) => {
                    tracing::debug!(endpoint = %ep, runtime = %v.runtime_name, version = %v.runtime_version, "CRI endpoint answers");
                    let c = Clients {
                        runtime,
                        image: ImageServiceClient::new(ch),
                        endpoint: i,
                    };
                    self.clients.set(Some(c.clone()));
                    return Ok(c);
                }
                Err(e) => why.push(format!("{ep}: {e}")),
            }
        }
        Err(RuntimeError::Unreachable(format!(
            "no CRI endpoint answers ({})",
            why.join("; ")
        )))
    }

    async fn clients(&self) -> Result<Clients, RuntimeError> {
        if let Some(c) = self.clients.get() {
            return Ok(c);
        }
        match self.clients.recent_failure() {
            Some(e) => Err(e),
            None => self.probe().await,
        }
    }

    /// Forgets the endpoint after it stopped answering, so the next call
    /// probes again.
    fn check<T>(&self, r: Result<T, RuntimeError>) -> Result<T, RuntimeError> {
        if matches!(r, Err(RuntimeError::Unreachable(_))) {
            self.clients.set(None);
        }
        r
    }

    async fn containers(
        &self,
        filter: Option<cri::ContainerFilter>,
    ) -> Result<Vec<cri::Container>, RuntimeError> {
        let mut c = self.clients().await?;
        let r = call(
            CALL_TIMEOUT,
            c.runtime
                .list_containers(cri::ListContainersRequest { filter }),
        )
        .await;
        self.check(r).map(|r| r.containers)
    }

    async fn sandboxes(
        &self,
        filter: Option<cri::PodSandboxFilter>,
    ) -> Result<Vec<cri::PodSandbox>, RuntimeError> {
        let mut c = self.clients().await?;
        let r = call(
            CALL_TIMEOUT,
            c.runtime
                .list_pod_sandbox(cri::ListPodSandboxRequest { filter }),
        )
        .await;
        self.check(r).map(|r| r.items)
    }

    async fn sandbox(&self, id: &str) -> Result<Option<cri::PodSandbox>, RuntimeError> {
        if !is_container_id(id) {
            return Ok(None);
        }
        let filter = cri::PodSandboxFilter {
            id: id.to_string(),
            ..Default::default()
        };
        Ok(self
            .sandboxes(Some(filter))
            .await?
            .into_iter()
            .find(|s| s.id == id))
    }

    /// Image id → first tag, for every image the runtime holds.
    async fn image_tags(&self) -> Result<HashMap<String, String>, RuntimeError> {
        let mut c = self.clients().await?;
        let r = call(
            CALL_TIMEOUT,
            c.image.list_images(cri::ListImagesRequest { filter: None }),
        )
        .await;
        Ok(self
            .check(r)?
            .images
            .into_iter()
            .filter_map(|i| Some((i.id, i.repo_tags.into_iter().next()?)))
            .collect())
    }

    /// A container or sandbox by full id.
    async fn find(&self, id: &str) -> Result<Option<Found>, RuntimeError> {
        if !is_container_id(id) {
            return Ok(None);
        }
        let filter = cri::ContainerFilter {
            id: id.to_string(),
            ..Default::default()
        };
        if let Some(c) = self
            .containers(Some(filter))
            .await?
            .into_iter()
            .find(|c| c.id == id)
        {
            let sb = self.sandbox(&c.pod_sandbox_id).await?;
            return Ok(Some(Found::Container(Box::new(c), sb)));
        }
        Ok(self.sandbox(id).await?.map(Found::Sandbox))
    }

    /// The id named `<namespace>/<pod>/<container>`: in the pod's ready
    /// sandbox (else its newest), the running container of that name (else
    /// its latest attempt); `POD` names the sandbox.
    async fn resolve_name(&self, k: &KubeRef) -> Result<String, RuntimeError> {
        let mut pods: Vec<cri::PodSandbox> = self
            .sandboxes(None)
            .await?
            .into_iter()
            .filter(|s| {
                s.metadata
                    .as_ref()
                    .is_some_and(|m| m.namespace == k.namespace && m.name == k.pod)
            })
            .collect();
        let ready = cri::PodSandboxState::SandboxReady as i32;
        pods.sort_by_key(|s| (s.state == ready, s.created_at));
        let sb = pods.pop().ok_or(RuntimeError::NotFound)?;
        if k.container == SANDBOX_CONTAINER {
            return Ok(sb.id);
        }
        let filter = cri::ContainerFilter {
            pod_sandbox_id: sb.id.clone(),
            ..Default::default()
        };
        let running = cri::ContainerState::ContainerRunning as i32;
        self.containers(Some(filter))
            .await?
            .into_iter()
            .filter(|c| {
                c.pod_sandbox_id == sb.id
                    && c.metadata.as_ref().is_some_and(|m| m.name == k.container)
            })
            .max_by_key(|c| {
                (
                    c.state == running,
                    c.metadata.as_ref().map_or(0, |m| m.attempt),
                    c.created_at,
                )
            })
            .map(|c| c.id)
            .ok_or(RuntimeError::NotFound)
    }

    /// A container's status, and its init pid from the verbose `info`
    /// (containerd and CRI-O both give `{"pid": …}` there).
    async fn container_status(
        &self,
        id: &str,
    ) -> Result<(cri::ContainerStatus, Option<i32>), RuntimeError> {
        let mut c = self.clients().await?;
        let req = cri::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: true,
        };
        let r = call(CALL_TIMEOUT, c.runtime.container_status(req)).await;
        let r = self.check(r)?;
        let pid = r.info.get("info").and_then(|i| info_pid(i));
        Ok((r.status.ok_or(RuntimeError::NotFound)?, pid))
    }

    /// A pod sandbox's init (pause) pid from its verbose status `info`;
    /// `None` when the runtime does not say.
    async fn sandbox_pid(&self, id: &str) -> Result<Option<i32>, RuntimeError> {
        let mut c = self.clients().await?;
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        };
        let r = call(CALL_TIMEOUT, c.runtime.pod_sandbox_status(req)).await;
        Ok(self.check(r)?.info.get("info").and_then(|i| info_pid(i)))
    }
}

/// The `pid` of a CRI verbose `info` JSON object, when positive.
fn info_pid(info: &str) -> Option<i32> {
    let v: serde_json::Value = serde_json::from_str(info).ok()?;
    let pid = i32::try_from(v.get("pid")?.as_i64()?).ok()?;
    (pid > 0).then_some(pid)
}

impl Metadata for CriApi {
    fn kind(&self) -> Kind {
        Kind::Cri
    }

    async fn connect(&self) -> Result<(), RuntimeError> {
        self.probe().await.map(|_| ())
    }

    async fn list(&self) -> Result<HashMap<String, ContainerMeta>, RuntimeError> {
        let pods: HashMap<String, cri::PodSandbox> = self
            .sandboxes(None)
            .await?
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        let containers = self.containers(None).await?;
        let tags = self.image_tags().await.unwrap_or_default();
        let mut out: HashMap<String, ContainerMeta> = pods
            .iter()
            .map(|(id, s)| (id.clone(), sandbox_meta(s)))
            .collect();
        for c in &containers {
            let meta = container_meta(c, pods.get(&c.pod_sandbox_id), &tags);
            out.insert(c.id.clone(), meta);
        }
        Ok(out)
    }

    async fn meta(&self, id: &str) -> Result<Option<ContainerMeta>, RuntimeError> {
        Ok(match self.find(id).await? {
            None => None,
            Some(Found::Sandbox(sb)) => Some(sandbox_meta(&sb)),
            Some(Found::Container(c, sb)) => {
                let tags = self.image_tags().await.unwrap_or_default();
                Some(container_meta(&c, sb.as_ref(), &tags))
            }
        })
    }

    /// CRI's event stream is not served by every runtime version: the cache
    /// is kept by listing.
    fn events(&self) -> Option<BoxStream<'static, Result<RuntimeEvent, RuntimeError>>> {
        None
    }
}

impl Control for CriApi {
    fn inspect<'a>(
        &'a self,
        id_or_name: &'a str,
    ) -> BoxFuture<'a, Result<ContainerInfo, RuntimeError>> {
        Box::pin(async move {
            let id = if is_container_id(id_or_name) {
                id_or_name.to_string()
            } else {
                let k = KubeRef::parse_name(id_or_name).ok_or(RuntimeError::NotFound)?;
                self.resolve_name(&k).await?
            };
            match self.find(&id).await?.ok_or(RuntimeError::NotFound)? {
                Found::Sandbox(sb) => Ok(ContainerInfo {
                    id: sb.id.clone(),
                    name: pod_ref(&sb, SANDBOX_CONTAINER).name(),
                    labels: sb.labels.clone(),
                    running: sb.state == cri::PodSandboxState::SandboxReady as i32,
                    started_at: (sb.created_at > 0).then_some(i128::from(sb.created_at)),
                    pod: None,
                    pid: self.sandbox_pid(&sb.id).await?,
                }),
                Found::Container(c, sb) => {
                    let (st, pid) = self.container_status(&id).await?;
                    Ok(ContainerInfo {
                        id: c.id.clone(),
                        name: container_ref(&c, sb.as_ref()).name(),
                        labels: merged_labels(&c.labels, sb.as_ref()),
                        running: st.state == cri::ContainerState::ContainerRunning as i32,
                        started_at: (st.started_at > 0).then_some(i128::from(st.started_at)),
                        pod: pod_container(&c, sb.as_ref()),
                        pid,
                    })
                }
            }
        })
    }

    /// `StopContainer` with the stop timeout; the kubelet restarts the
    /// container. A sandbox id is refused: pods are never stopped.
    fn restart<'a>(
        &'a self,
        id: &'a str,
        stop_timeout: Duration,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            match self.find(id).await?.ok_or(RuntimeError::NotFound)? {
                Found::Sandbox(_) => Err(RuntimeError::Refused(
                    "this is a pod sandbox: pidwarden stops containers, never pods".into(),
                )),
                Found::Container(..) => {
                    let t = stop_timeout.as_secs().max(1);
                    let req = cri::StopContainerRequest {
                        container_id: id.to_string(),
                        timeout: i64::try_from(t).unwrap_or(i64::MAX),
                    };
                    let mut c = self.clients().await?;
                    let r = call(
                        Duration::from_secs(t) + CALL_TIMEOUT,
                        c.runtime.stop_container(req),
                    )
                    .await;
                    self.check(r).map(|_| ())
                }
            }
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move {
            let mut c = self.clients().await?;
            let req = cri::VersionRequest {
                version: "v1".into(),
            };
            let r = call(PROBE_TIMEOUT, c.runtime.version(req)).await;
            self.check(r).map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_init_pid_comes_from_the_verbose_info() {
        assert_eq!(info_pid(r#"{"pid":4242,"sandboxID":"x"}"#), Some(4242));
        assert_eq!(info_pid(r#"{"pid":0}"#), None);
        assert_eq!(info_pid(r#"{"pid":-1}"#), None);
        assert_eq!(info_pid(r#"{"pid":"7"}"#), None);
        assert_eq!(info_pid(r#"{"other":1}"#), None);
        assert_eq!(info_pid("not json"), None);
        assert_eq!(info_pid(r#"{"pid":4294967296}"#), None);
    }

    use super::*;

    fn sandbox(labels: &[(&str, &str)]) -> cri::PodSandbox {
        cri::PodSandbox {
            id: "b".repeat(64),
            metadata: Some(cri::PodSandboxMetadata {
                name: "web-1".into(),
                uid: "8dbc5577-d0e2-4706-8787-57d52c03ddf2".into(),
                namespace: "shop".into(),
                attempt: 0,
            }),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn container() -> cri::Container {
        cri::Container {
            id: "c".repeat(64),
            pod_sandbox_id: "b".repeat(64),
            metadata: Some(cri::ContainerMetadata {
                name: "app".into(),
                attempt: 2,
            }),
            image: Some(cri::ImageSpec {
                image: "sha256:1234".into(),
                ..Default::default()
            }),
            labels: [
                ("io.kubernetes.pod.namespace", "shop"),
                ("io.kubernetes.pod.name", "web-1"),
                ("io.kubernetes.container.name", "app"),
                ("tier", "container"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn pod_labels_merge_under_the_container_labels() {
        let sb = sandbox(&[("pidwarden.enable", "false"), ("tier", "pod")]);
        let mut tags = HashMap::new();
        tags.insert(
            "sha256:1234".to_string(),
            "docker.io/library/kbox:1".to_string(),
        );
        let m = container_meta(&container(), Some(&sb), &tags);
        assert_eq!(m.name, "shop/web-1/app");
        assert_eq!(m.image, "docker.io/library/kbox:1");
        assert_eq!(m.labels["pidwarden.enable"], "false");
        assert_eq!(m.labels["tier"], "container");
        let k = m.kube.unwrap();
        assert_eq!(
            (k.namespace.as_str(), k.pod.as_str(), k.container.as_str()),
            ("shop", "web-1", "app")
        );
        let s = sandbox_meta(&sb);
        assert_eq!(s.name, "shop/web-1/POD");
        assert_eq!(s.kube.unwrap().container, "POD");
        assert_eq!(s.labels["pidwarden.enable"], "false");
    }

    #[test]
    fn a_container_is_placed_in_its_pod_by_uid_and_name() {
        let mut c = container();
        c.annotations.insert(
            "io.kubernetes.pod.terminationGracePeriod".into(),
            "30".into(),
        );
        let mut sb = sandbox(&[]);
        sb.annotations
            .insert("pidwarden.restart-policy".into(), "Always".into());
        let p = pod_container(&c, Some(&sb)).unwrap();
        assert_eq!(
            p.restraint_key(),
            "pod:8dbc5577-d0e2-4706-8787-57d52c03ddf2/app"
        );
        assert_eq!(p.termination_grace, Some(Duration::from_secs(30)));
        assert_eq!(p.restart_policy, Some(super::super::RestartPolicy::Always));
        // Without its sandbox: the kubelet's labels; no policy declared.
        c.labels
            .insert("io.kubernetes.pod.uid".into(), "u-2".into());
        let p = pod_container(&c, None).unwrap();
        assert_eq!(p.restraint_key(), "pod:u-2/app");
        assert_eq!(p.restart_policy, None);
    }

    #[test]
    fn a_container_without_its_sandbox_is_named_from_the_kubelet_labels() {
        let m = container_meta(&container(), None, &HashMap::new());
        assert_eq!(m.name, "shop/web-1/app");
        assert_eq!(m.image, "sha256:1234");
        assert!(!m.labels.contains_key("pidwarden.enable"));
    }

    #[tokio::test]
    async fn an_absent_endpoint_is_unreachable_and_bad_ids_never_leave() {
        let api = CriApi::new(vec![
            Endpoint::Unix("/nonexistent/containerd.sock".into()),
            Endpoint::Unix("/nonexistent/crio.sock".into()),
        ]);
        for bad in ["", "../x", &"A".repeat(64), "shop/web-1", "a/b/c/d"] {
            assert_eq!(api.inspect(bad).await, Err(RuntimeError::NotFound), "{bad}");
            assert!(api.meta(bad).await.unwrap().is_none(), "{bad}");
        }
        let e = api.ping().await.unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, RuntimeError::Unreachable(_)), "{text}");
        assert!(
            text.contains("/nonexistent/containerd.sock")
                && text.contains("/nonexistent/crio.sock"),
            "{text}"
        );
        assert_eq!(api.active_endpoint(), None);
    }
}
