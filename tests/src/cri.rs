//! A Kubernetes node's runtime without a kubelet: a private containerd with
//! its CRI plugin (started by `scripts/cri-node.sh`), and pods driven through
//! CRI exactly as the kubelet drives them — a host-network sandbox under the
//! cgroup parent `/kubepods/besteffort/pod<uid>`, a PID limit written to the
//! pod cgroup as `podPidsLimit` does, containers created in the sandbox.
//!
//! [`CriNode`] stops containerd and unmounts everything on drop; a
//! [`TestPod`] stops and removes its sandbox and its pod cgroups on drop.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::cgroup::CGROUP_ROOT;
use crate::node_script::{require_root_tools, script_down, script_up};
use crate::tempdir::TempDir;

/// The image every pod container runs (busybox; its default command is a
/// pause loop that exits on SIGTERM).
pub const CRI_IMAGE: &str = "docker.io/library/kbox:1";

/// How long one CRI call may take.
const CALL: Duration = Duration::from_secs(60);

/// True when the tests that need a private containerd can run: root, and
/// `containerd`, `ctr` and busybox installed. Returns `false` (the test
/// should return early) with a printed notice when `PIDWARDEN_SKIP_DOCKER=1`
/// or when not root; panics with a clear message when a binary is missing.
pub fn require_cri() -> bool {
    require_root_tools(
        "containerd",
        &["/usr/bin/containerd", "/usr/bin/ctr", "/bin/busybox"],
        "containerd and busybox-static",
    )
}

/// A private containerd with the CRI plugin, under its own temp dir.
pub struct CriNode {
    dir: TempDir,
    socket: PathBuf,
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

const SCRIPT: &str = "cri-node.sh";

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl CriNode {
    /// Starts containerd and imports the busybox image (about 1 s).
    pub fn start() -> CriNode {
        let dir = TempDir::new();
        let socket = script_up(SCRIPT, dir.path());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let path = socket.clone();
        let channel = rt.block_on(async move {
            tonic::transport::Endpoint::try_from("http://cri.sock")
                .expect("endpoint")
                .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                    let path = path.clone();
                    async move {
                        let s = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                    }
                }))
                .await
                .expect("connecting to the CRI socket")
        });
        CriNode {
            dir,
            socket,
            rt,
            client: RuntimeServiceClient::new(channel),
        }
    }

    /// The CRI endpoint, `unix:///…/containerd.sock` (for `--cri-endpoint`).
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Runs one CRI call to its answer; panics with the call's name on error.
    fn call<T, F>(&self, what: &str, f: impl FnOnce(RuntimeServiceClient<Channel>) -> F) -> T
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let fut = f(self.client.clone());
        match self
            .rt
            .block_on(async { tokio::time::timeout(CALL, fut).await })
        {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(s)) => panic!("CRI {what}: {s}"),
            Err(_) => panic!("CRI {what}: no answer in {CALL:?}"),
        }
    }

    /// Runs a pod sandbox `namespace/name` with the pod labels `pod_labels`,
    /// as the kubelet does for a best-effort host-network pod.
    pub fn run_pod(&self, namespace: &str, name: &str, pod_labels: &[(&str, &str)]) -> TestPod<'_> {
        let uid = pod_uid();
        let mut all = labels(pod_labels);
        all.extend(labels(&[
            ("io.kubernetes.pod.name", name),
            ("io.kubernetes.pod.namespace", namespace),
            ("io.kubernetes.pod.uid", &uid),
        ]));
        let logs = self
            .dir
            .path()
            .join(format!("logs/{namespace}_{name}_{uid}"));
        fs::create_dir_all(&logs).expect("pod log directory");
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            // No hostname: the kubelet leaves it empty for host-network pods.
            log_directory: logs.display().to_string(),
            labels: all,
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Node as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        let id = self
            .call("RunPodSandbox", |mut c| async move {
                c.run_pod_sandbox(req).await
            })
            .pod_sandbox_id;
        TestPod {
            node: self,
            id,
            uid,
            namespace: namespace.into(),
            name: name.into(),
            config,
        }
    }

    /// The state of a container (`cri::ContainerState` as i32) and when its
    /// run started (Unix nanoseconds, 0 when it never ran).
    pub fn container_state(&self, id: &str) -> (i32, i64) {
        let req = cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        let s = self
            .call("ContainerStatus", |mut c| async move {
                c.container_status(req).await
            })
            .status
            .expect("container status");
        (s.state, s.started_at)
    }
}

impl Drop for CriNode {
    fn drop(&mut self) {
        script_down(SCRIPT, self.dir.path());
    }
}

/// A pod uid: a UUID built from the pid, a counter and the clock.
fn pod_uid() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        std::process::id(),
        n & 0xffff,
        (nanos >> 48) & 0xfff,
        (nanos >> 36) & 0xfff,
        nanos & 0xffff_ffff_ffff
    )
}

/// A pod sandbox on a [`CriNode`], stopped and removed on drop with its
/// pod cgroups.
pub struct TestPod<'a> {
    node: &'a CriNode,
    /// The sandbox id (its pause container's id).
    pub id: String,
    /// The pod uid.
    pub uid: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    config: cri::PodSandboxConfig,
}

impl TestPod<'_> {
    /// The pod cgroup `kubepods/besteffort/pod<uid>` in `controller`'s v1
    /// hierarchy.
    pub fn cgroup_dir(&self, controller: &str) -> PathBuf {
        Path::new(CGROUP_ROOT)
            .join(controller)
            .join(format!("kubepods/besteffort/pod{}", self.uid))
    }

    /// Sets the pod's PID limit, as the kubelet's `podPidsLimit` does.
    pub fn set_pids_max(&self, max: u64) {
        let p = self.cgroup_dir("pids").join("pids.max");
        fs::write(&p, max.to_string()).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
    }

    /// Creates and starts container `name` running `command` in the pod;
    /// returns its id.
    pub fn start_container(&self, name: &str, command: &[&str]) -> String {
        self.start_container_with(name, 0, command, &[])
    }

    /// Creates and starts attempt `attempt` of container `name` running
    /// `command`, with the container annotations `annotations` (the kubelet
    /// writes `io.kubernetes.pod.terminationGracePeriod` there); returns its
    /// id. The kubelet restarts a container this way: the same name, the
    /// next attempt, a new id.
    pub fn start_container_with(
        &self,
        name: &str,
        attempt: u32,
        command: &[&str],
        annotations: &[(&str, &str)],
    ) -> String {
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt,
            }),
            annotations: labels(annotations),
            image: Some(cri::ImageSpec {
                image: CRI_IMAGE.into(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}/{attempt}.log"),
            labels: labels(&[
                ("io.kubernetes.container.name", name),
                ("io.kubernetes.pod.name", &self.name),
                ("io.kubernetes.pod.namespace", &self.namespace),
                ("io.kubernetes.pod.uid", &self.uid),
            ]),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    cpu_shares: 2,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: self.id.clone(),
            config: Some(config),
            sandbox_config: Some(self.config.clone()),
        };
        let id = self
            .node
            .call("CreateContainer", |mut c| async move {
                c.create_container(req).await
            })
            .container_id;
        let req = cri::StartContainerRequest {
            container_id: id.clone(),
        };
        self.node.call("StartContainer", |mut c| async move {
            c.start_container(req).await
        });
        id
    }

    /// The pids of the processes in container `id`'s cgroup.
    pub fn container_pids(&self, id: &str) -> Vec<i32> {
        let p = self.cgroup_dir("pids").join(id).join("cgroup.procs");
        fs::read_to_string(&p)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect()
    }
}

impl Drop for TestPod<'_> {
    fn drop(&mut self) {
        let id = self.id.clone();
        let stop = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        };
        let remove = cri::RemovePodSandboxRequest { pod_sandbox_id: id };
        let mut c = self.node.client.clone();
        let r = self.node.rt.block_on(async move {
            tokio::time::timeout(CALL, async {
                c.stop_pod_sandbox(stop).await?;
                c.remove_pod_sandbox(remove).await
            })
            .await
        });
        if !matches!(r, Ok(Ok(_))) {
            eprintln!("removing pod {}/{}: {r:?}", self.namespace, self.name);
        }
        // The kubelet removes the pod cgroups; here the pod does.
        if let Ok(ctrls) = fs::read_dir(CGROUP_ROOT) {
            for ctrl in ctrls.flatten() {
                let pod = ctrl
                    .path()
                    .join(format!("kubepods/besteffort/pod{}", self.uid));
                if pod.is_dir() {
                    if let Ok(children) = fs::read_dir(&pod) {
                        for ch in children.flatten().filter(|c| c.path().is_dir()) {
                            let _ = fs::remove_dir(ch.path());
                        }
                    }
                    let _ = fs::remove_dir(&pod);
                }
            }
        }
    }
}
