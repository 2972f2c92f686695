//! The configured runtimes, and the choice of the one that manages a
//! container: by the container's cgroup classification (Docker, Podman, or
//! containerd/CRI-O → CRI), else by asking each configured runtime in turn.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::cgroup::is_container_id;

use super::{
    ContainerInfo, Control, CriApi, DockerApi, Endpoint, Kind, KubeRef, RuntimeError,
    DEFAULT_CRI_ENDPOINTS,
};
use crate::cgroup::ContainerIndex;

/// The endpoint flags both daemons take (`--docker-host`, `--podman-host`,
/// `--cri-endpoint`); `none` disables one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeFlags {
    /// Docker Engine API.
    pub docker_host: String,
    /// Podman's Docker-compatible API; `None` probes
    /// [`DEFAULT_PODMAN_HOST`](super::DEFAULT_PODMAN_HOST).
    pub podman_host: Option<String>,
    /// The CRI endpoint; `None` probes [`DEFAULT_CRI_ENDPOINTS`] in order.
    pub cri_endpoint: Option<String>,
}

impl Default for RuntimeFlags {
    fn default() -> Self {
        RuntimeFlags {
            docker_host: super::DEFAULT_DOCKER_HOST.into(),
            podman_host: None,
            cri_endpoint: None,
        }
    }
}

/// Ids remembered with their runtime at most (then the memory starts over).
const MAX_REMEMBERED: usize = 4096;

/// The configured runtimes.
#[derive(Debug, Default)]
pub struct Runtimes {
    docker: Option<Arc<DockerApi>>,
    podman: Option<Arc<DockerApi>>,
    cri: Option<Arc<CriApi>>,
    cgroups: Option<Arc<ContainerIndex>>,
    probed: Vec<Kind>,
    seen: Mutex<HashMap<String, Kind>>,
}

fn with_flag<T>(flag: &str, r: Result<T, RuntimeError>) -> Result<T, RuntimeError> {
    r.map_err(|e| match e {
        RuntimeError::InvalidEndpoint(m) => RuntimeError::InvalidEndpoint(format!("{flag} {m}")),
        e => e,
    })
}

impl Runtimes {
    /// The runtimes the flags configure. A malformed URL is an error naming
    /// its flag; nothing connects yet.
    pub fn from_flags(f: &RuntimeFlags) -> Result<Self, RuntimeError> {
        let docker = with_flag("--docker-host", Endpoint::parse(&f.docker_host))?;
        let podman_host = f
            .podman_host
            .as_deref()
            .unwrap_or(super::DEFAULT_PODMAN_HOST);
        let podman = with_flag("--podman-host", Endpoint::parse(podman_host))?;
        let mut probed = Vec::new();
        if f.podman_host.is_none() {
            probed.push(Kind::Podman);
        }
        if f.cri_endpoint.is_none() {
            probed.push(Kind::Cri);
        }
        let cri = match &f.cri_endpoint {
            Some(url) => with_flag("--cri-endpoint", Endpoint::parse(url))?.map(|e| vec![e]),
            None => Some(
                DEFAULT_CRI_ENDPOINTS
                    .iter()
                    .filter_map(|u| Endpoint::parse(u).ok().flatten())
                    .collect(),
            ),
        };
        Ok(Runtimes {
            docker: docker.map(|e| Arc::new(DockerApi::new(Kind::Docker, e))),
            podman: podman.map(|e| Arc::new(DockerApi::new(Kind::Podman, e))),
            cri: cri.map(|e| Arc::new(CriApi::new(e))),
            probed,
            ..Runtimes::default()
        })
    }

    /// Classifies containers by their cgroups, found through `index`, to
    /// pick their runtime (without, every configured runtime is asked in
    /// turn).
    pub fn with_cgroups(mut self, index: Arc<ContainerIndex>) -> Self {
        self.cgroups = Some(index);
        self
    }

    /// The Docker API, when configured.
    pub fn docker(&self) -> Option<Arc<DockerApi>> {
        self.docker.clone()
    }

    /// The Podman API, when configured.
    pub fn podman(&self) -> Option<Arc<DockerApi>> {
        self.podman.clone()
    }

    /// The CRI API, when configured.
    pub fn cri(&self) -> Option<Arc<CriApi>> {
        self.cri.clone()
    }

    /// True when `kind` runs on its default endpoint because no flag named
    /// one (Podman, CRI): a host may well have none of it, so until it first
    /// answers it is probed quietly — no `pidwarden_runtime_up` series, no
    /// errors counted. Docker's default and every given flag are expected
    /// to answer.
    pub fn probed(&self, kind: Kind) -> bool {
        self.probed.contains(&kind)
    }

    /// The configured kinds, in lookup order.
    pub fn configured(&self) -> Vec<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|k| self.control(*k).is_some())
            .collect()
    }

    fn control(&self, kind: Kind) -> Option<&dyn Control> {
        match kind {
            Kind::Docker => self.docker.as_deref().map(|d| d as &dyn Control),
            Kind::Podman => self.podman.as_deref().map(|d| d as &dyn Control),
            Kind::Cri => self.cri.as_deref().map(|d| d as &dyn Control),
        }
    }

    /// The runtime of the container `id` from its cgroup, when it has one
    /// (a walk of the cgroup tree for an id not seen yet, at most one per
    /// [`REWALK_AFTER`](crate::cgroup::REWALK_AFTER)).
    pub async fn classify(&self, id: &str) -> Option<Kind> {
        let index = Arc::clone(self.cgroups.as_ref()?);
        if let Some(r) = index.known(id) {
            return Some(Kind::of(r));
        }
        let id = id.to_string();
        tokio::task::spawn_blocking(move || index.lookup(&id))
            .await
            .ok()
            .flatten()
            .map(Kind::of)
    }

    fn remember(&self, id: &str, kind: Kind) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_REMEMBERED {
            seen.clear();
        }
        seen.insert(id.to_string(), kind);
    }

    fn remembered(&self, id: &str) -> Option<Kind> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(id).copied()
    }

    /// The runtimes to ask about `id_or_name`, in order: the one its cgroup
    /// names; for a `<namespace>/<pod>/<container>` name CRI; else all.
    async fn candidates(&self, id_or_name: &str) -> Vec<Kind> {
        let configured = self.configured();
        if is_container_id(id_or_name) {
            let kind = match self.classify(id_or_name).await {
                Some(k) => Some(k),
                None => self.remembered(id_or_name),
            };
            if let Some(k) = kind.filter(|k| configured.contains(k)) {
                return vec![k];
            }
            return configured;
        }
        if KubeRef::parse_name(id_or_name).is_some() {
            return configured.into_iter().filter(|k| *k == Kind::Cri).collect();
        }
        configured.into_iter().filter(|k| *k != Kind::Cri).collect()
    }
}

/// No runtime could be asked.
fn none_configured() -> RuntimeError {
    RuntimeError::Unreachable("no container runtime is configured for this container".into())
}

impl Control for Runtimes {
    /// The first runtime that knows the container answers. When none does,
    /// a runtime's "no such container" outweighs another's being down.
    fn inspect<'a>(
        &'a self,
        id_or_name: &'a str,
    ) -> BoxFuture<'a, Result<ContainerInfo, RuntimeError>> {
        Box::pin(async move {
            let mut not_found = false;
            let mut first_err = None;
            for kind in self.candidates(id_or_name).await {
                let Some(rt) = self.control(kind) else {
                    continue;
                };
                match rt.inspect(id_or_name).await {
                    Ok(info) => {
                        self.remember(&info.id, kind);
                        return Ok(info);
                    }
                    Err(RuntimeError::NotFound) => not_found = true,
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if not_found {
                return Err(RuntimeError::NotFound);
            }
            Err(first_err.unwrap_or_else(none_configured))
        })
    }

    fn restart<'a>(
        &'a self,
        id: &'a str,
        stop_timeout: Duration,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let kind = match self.remembered(id) {
                Some(k) => k,
                None => {
                    // Found through the same lookup as an inspect.
                    let _ = self.inspect(id).await?;
                    self.remembered(id).ok_or(RuntimeError::NotFound)?
                }
            };
            let rt = self.control(kind).ok_or_else(none_configured)?;
            rt.restart(id, stop_timeout).await
        })
    }

    /// Answers when any configured runtime answers.
    fn ping(&self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move {
            let kinds = self.configured();
            let pings = kinds
                .iter()
                .filter_map(|k| self.control(*k))
                .map(|rt| rt.ping());
            let results = futures_util::future::join_all(pings).await;
            if results.iter().any(|r| r.is_ok()) {
                return Ok(());
            }
            let why: Vec<String> = kinds
                .iter()
                .zip(results)
                .filter_map(|(k, r)| r.err().map(|e| format!("{}: {e}", k.as_str())))
                .collect();
            if why.is_empty() {
                return Err(none_configured());
            }
            Err(RuntimeError::Unreachable(why.join("; ")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Roots;

    fn flags(d: &str, p: &str, c: Option<&str>) -> RuntimeFlags {
        RuntimeFlags {
            docker_host: d.into(),
            podman_host: Some(p.into()),
            cri_endpoint: c.map(String::from),
        }
    }

    #[test]
    fn flags_configure_runtimes_and_none_disables() {
        let all = Runtimes::from_flags(&RuntimeFlags::default()).unwrap();
        assert_eq!(all.configured(), Kind::ALL.to_vec());
        assert!(!all.probed(Kind::Docker));
        assert!(all.probed(Kind::Podman) && all.probed(Kind::Cri));
        let pm: Vec<String> = [all.podman().unwrap().endpoint()]
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(pm, [super::super::DEFAULT_PODMAN_HOST]);
        let cri = all.cri().unwrap();
        let eps: Vec<String> = cri.endpoints().iter().map(|e| e.to_string()).collect();
        assert_eq!(eps, DEFAULT_CRI_ENDPOINTS.to_vec());
        let some = Runtimes::from_flags(&flags("none", "unix:///p.sock", Some("none"))).unwrap();
        assert_eq!(some.configured(), vec![Kind::Podman]);
        assert!(!some.probed(Kind::Podman));
        let one = Runtimes::from_flags(&flags("none", "none", Some("unix:///k/c.sock"))).unwrap();
        assert!(!one.probed(Kind::Cri));
        assert_eq!(
            one.cri().unwrap().endpoints(),
            &[Endpoint::Unix("/k/c.sock".into())]
        );
        for (f, flag) in [
            (flags("docker.sock", "none", None), "--docker-host"),
            (flags("none", "podman.sock", None), "--podman-host"),
            (flags("none", "none", Some("tcp://x")), "--cri-endpoint"),
        ] {
            let e = Runtimes::from_flags(&f).unwrap_err().to_string();
            assert!(e.contains(flag), "{e}");
        }
    }

    #[tokio::test]
    async fn lookups_go_to_the_runtimes_a_name_can_belong_to() {
        let r = Runtimes::from_flags(&RuntimeFlags::default()).unwrap();
        assert_eq!(
            r.candidates("web-1").await,
            vec![Kind::Docker, Kind::Podman]
        );
        assert_eq!(r.candidates("shop/web-1/app").await, vec![Kind::Cri]);
        assert_eq!(r.candidates(&"a".repeat(64)).await, Kind::ALL.to_vec());
        r.remember(&"a".repeat(64), Kind::Podman);
        assert_eq!(r.candidates(&"a".repeat(64)).await, vec![Kind::Podman]);
    }

    #[tokio::test]
    async fn the_cgroup_classification_picks_the_runtime() {
        let d = tempfile::tempdir().unwrap();
        let id = "4f1a9c2e8b7d6f5a3c2e1d0b9a8f7e6d5c4b3a2918273645f0e1d2c3b4a59687";
        let uid = "8dbc5577-d0e2-4706-8787-57d52c03ddf2";
        // A cgroup v2 tree with one pod container and one Podman container.
        std::fs::write(d.path().join("cgroup.controllers"), "pids memory\n").unwrap();
        let pod = d.path().join(format!("kubepods/besteffort/pod{uid}/{id}"));
        std::fs::create_dir_all(&pod).unwrap();
        let pm_id = "b".repeat(64);
        let pm = d.path().join(format!("machine.slice/libpod-{pm_id}.scope"));
        std::fs::create_dir_all(&pm).unwrap();
        let r = Runtimes::from_flags(&RuntimeFlags::default())
            .unwrap()
            .with_cgroups(Arc::new(ContainerIndex::new(Roots::new("/proc", d.path()))));
        assert_eq!(r.classify(id).await, Some(Kind::Cri));
        assert_eq!(r.candidates(id).await, vec![Kind::Cri]);
        assert_eq!(r.classify(&pm_id).await, Some(Kind::Podman));
        // A container that appears later is found by the next walk, which
        // comes no sooner than RECLASSIFY_AFTER after the last.
        let late = "c".repeat(64);
        assert_eq!(r.classify(&late).await, None);
        std::fs::create_dir_all(d.path().join(format!("system.slice/docker-{late}.scope")))
            .unwrap();
        assert_eq!(r.classify(&late).await, None, "no walk per unknown id");
        tokio::time::sleep(crate::cgroup::REWALK_AFTER).await;
        assert_eq!(r.classify(&late).await, Some(Kind::Docker));
        // With CRI disabled, the pod container falls back to asking all.
        let r = Runtimes::from_flags(&flags(
            "unix:///nonexistent/d.sock",
            "unix:///nonexistent/p.sock",
            Some("none"),
        ))
        .unwrap()
        .with_cgroups(Arc::new(ContainerIndex::new(Roots::new("/proc", d.path()))));
        assert_eq!(r.candidates(id).await, vec![Kind::Docker, Kind::Podman]);
        let e = r.inspect(id).await.unwrap_err();
        assert!(matches!(e, RuntimeError::Unreachable(_)), "{e}");
        let e = r.ping().await.unwrap_err().to_string();
        assert!(e.contains("docker:") && e.contains("podman:"), "{e}");
    }
}
