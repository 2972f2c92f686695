//! Telling container cgroups from the others by their path. Pure: no I/O.

use super::Runtime;

/// True when `s` is a full container id: exactly 64 lowercase hex characters.
pub fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `prefix<64hex>suffix` → the id.
fn id_between<'a>(name: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    let id = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    is_container_id(id).then_some(id)
}

/// A pod uid as it appears in a cgroup name: lowercase hex digits and
/// dashes (UUIDs, or the 32-hex hash of a static pod).
fn valid_pod_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().any(|b| b.is_ascii_hexdigit())
        && uid
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-'))
}

/// The pod uid of a kubelet pod cgroup name: `pod<uid>` (cgroupfs driver) or
/// `[…-]kubepods[-<qos>]-pod<uid_with_underscores>.slice` (systemd driver).
fn pod_uid(component: &str) -> Option<String> {
    if let Some(slice) = component.strip_suffix(".slice") {
        if !slice.contains("kubepods") {
            return None;
        }
        let (_, raw) = slice.rsplit_once("-pod")?;
        let uid = raw.replace('_', "-");
        return valid_pod_uid(&uid).then_some(uid);
    }
    let uid = component.strip_prefix("pod")?;
    valid_pod_uid(uid).then(|| uid.to_string())
}

/// The container in a pod cgroup, by the leaf's name.
fn pod_container(leaf: &str) -> Option<(Runtime, &str)> {
    if is_container_id(leaf) {
        return Some((Runtime::Containerd, leaf));
    }
    let name = leaf.strip_suffix(".scope").unwrap_or(leaf);
    for (prefix, runtime) in [
        ("cri-containerd-", Runtime::Containerd),
        ("docker-", Runtime::Docker),
        ("crio-", Runtime::Crio),
    ] {
        if let Some(id) = id_between(name, prefix, "") {
            return Some((runtime, id));
        }
    }
    None
}

/// Tells whether a cgroup path (relative to a hierarchy root, leading `/`
/// optional) is a container, and which: `(runtime, id, pod uid)`.
///
/// Recognised: Docker `…/docker/<id>` and `…/docker-<id>.scope`; Podman
/// `…/libpod-<id>.scope` and `libpod_parent/libpod-<id>`; containerd
/// `…/cri-containerd-<id>.scope`; CRI-O `…/crio-<id>.scope`; and under a
/// `kubepods` tree, any of those (or a bare `<id>`, containerd) directly in a
/// pod cgroup (`pod<uid>` or `kubepods-…-pod<uid>.slice`), with the pod uid.
/// Runtime helper cgroups (`libpod-conmon-…`, `crio-conmon-…`) and anything
/// whose id is not exactly 64 lowercase hex characters are not containers.
///
/// ```
/// use pidwarden_shared::cgroup::{classify, Runtime};
/// let id = "a".repeat(64);
/// let (rt, got, pod) = classify(&format!("system.slice/docker-{id}.scope")).unwrap();
/// assert_eq!((rt, got.as_str(), pod), (Runtime::Docker, id.as_str(), None));
/// assert!(classify(&format!("machine.slice/libpod-conmon-{id}.scope")).is_none());
/// ```
pub fn classify(rel_path: &str) -> Option<(Runtime, String, Option<String>)> {
    let path = rel_path.trim_matches('/');
    let (ancestors, leaf) = match path.rsplit_once('/') {
        Some((a, l)) => (a, l),
        None => ("", path),
    };
    let parent = ancestors.rsplit('/').next().unwrap_or("");

    if ancestors.split('/').any(|c| c.contains("kubepods")) {
        if let Some(uid) = pod_uid(parent) {
            return pod_container(leaf).map(|(rt, id)| (rt, id.to_string(), Some(uid)));
        }
    }

    let found = if let Some(id) = id_between(leaf, "docker-", ".scope") {
        Some((Runtime::Docker, id))
    } else if parent == "docker" && is_container_id(leaf) {
        Some((Runtime::Docker, leaf))
    } else if let Some(id) = id_between(leaf, "libpod-", ".scope") {
        Some((Runtime::Podman, id))
    } else if parent == "libpod_parent" {
        id_between(leaf, "libpod-", "").map(|id| (Runtime::Podman, id))
    } else if let Some(id) = id_between(leaf, "cri-containerd-", ".scope") {
        Some((Runtime::Containerd, id))
    } else {
        id_between(leaf, "crio-", ".scope").map(|id| (Runtime::Crio, id))
    };
    found.map(|(rt, id)| (rt, id.to_string(), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1a9c2e8b7d6f5a3c2e1d0b9a8f7e6d5c4b3a2918273645f0e1d2c3b4a59687";
    const UID: &str = "8dbc5577-d0e2-4706-8787-57d52c03ddf2";
    const UID_: &str = "8dbc5577_d0e2_4706_8787_57d52c03ddf2";

    fn p(s: &str) -> String {
        s.replace("{id}", ID)
            .replace("{uid}", UID)
            .replace("{uid_}", UID_)
    }

    #[test]
    fn id_check() {
        assert!(is_container_id(ID));
        assert!(!is_container_id(&ID.to_uppercase()));
        assert!(!is_container_id(&ID[..63]));
        assert!(!is_container_id(&format!("{ID}0")));
        assert!(!is_container_id(&format!("{}g", &ID[..63])));
        assert!(!is_container_id(""));
    }

    #[test]
    fn table() {
        use Runtime::*;
        let static_uid = "5b7e8f3f0c2d6e1a9b8c7d6e5f4a3b2c";
        type Want = Option<(Runtime, Option<String>)>;
        let cases: Vec<(String, Want)> = vec![
            // Docker, cgroupfs driver
            (p("docker/{id}"), Some((Docker, None))),
            (p("/docker/{id}"), Some((Docker, None))),
            (p("/docker/{id}/"), Some((Docker, None))),
            (p("pidwarden-test-1/docker/{id}"), Some((Docker, None))),
            // Docker, systemd driver
            (p("system.slice/docker-{id}.scope"), Some((Docker, None))),
            (p("/system.slice/docker-{id}.scope"), Some((Docker, None))),
            // Podman
            (p("machine.slice/libpod-{id}.scope"), Some((Podman, None))),
            (p("libpod_parent/libpod-{id}"), Some((Podman, None))),
            (
                p("user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{id}.scope"),
                Some((Podman, None)),
            ),
            // containerd / CRI-O outside kubepods
            (p("system.slice/cri-containerd-{id}.scope"), Some((Containerd, None))),
            (p("system.slice/crio-{id}.scope"), Some((Crio, None))),
            // kubepods, cgroupfs driver
            (
                p("kubepods/besteffort/pod{uid}/{id}"),
                Some((Containerd, Some(UID.into()))),
            ),
            (
                p("kubepods/burstable/pod{uid}/{id}"),
                Some((Containerd, Some(UID.into()))),
            ),
            (p("kubepods/pod{uid}/{id}"), Some((Containerd, Some(UID.into())))),
            (
                p("kubepods/pod{uid}/docker-{id}"),
                Some((Docker, Some(UID.into()))),
            ),
            (p("kubepods/pod{uid}/crio-{id}"), Some((Crio, Some(UID.into())))),
            (
                format!("kubepods/pod{static_uid}/{ID}"),
                Some((Containerd, Some(static_uid.into()))),
            ),
            (
                p("kubelet/kubepods/burstable/pod{uid}/{id}"),
                Some((Containerd, Some(UID.into()))),
            ),
            // kubepods, systemd driver
            (
                p("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{id}.scope"),
                Some((Containerd, Some(UID.into()))),
            ),
            (
                p("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-{id}.scope"),
                Some((Crio, Some(UID.into()))),
            ),
            (
                p("kubepods.slice/kubepods-pod{uid_}.slice/docker-{id}.scope"),
                Some((Docker, Some(UID.into()))),
            ),
            (
                p("kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{uid_}.slice/cri-containerd-{id}.scope"),
                Some((Containerd, Some(UID.into()))),
            ),
            // near misses
            (p("machine.slice/libpod-conmon-{id}.scope"), None),
            (p("system.slice/crio-conmon-{id}.scope"), None),
            (
                p("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/crio-conmon-{id}.scope"),
                None,
            ),
            (p("machine.slice/libpod-{id}.scope/container"), None),
            (p("system.slice/docker-{id}.scope/init.scope"), None),
            (p("docker/{id}/sub"), None),
            (p("kubepods/besteffort/pod{uid}/{id}/sub"), None),
            (p("kubepods/besteffort/pod{uid}"), None),
            (p("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice"), None),
            (p("kubepods/besteffort/podman/{id}"), None),
            (p("{id}"), None),
            (p("other/{id}"), None),
            (p("system.slice/{id}"), None),
            (p("docker"), None),
            (p("system.slice/docker.service"), None),
            (p("system.slice/docker-{id}.mount"), None),
            (p("system.slice/docker-{id}"), None),
            (p("docker/{id}.scope"), None),
            (p("libpod_parent/conmon"), None),
            (p("libpod_parent/libpod-conmon-{id}"), None),
            (p("mydocker/{id}"), None),
            (format!("docker/{}", ID.to_uppercase()), None),
            (format!("docker/{}", &ID[..63]), None),
            (format!("docker/{ID}0"), None),
            (format!("system.slice/docker-{}.scope", &ID[..12]), None),
            (format!("system.slice/docker-{}.scope", ID.to_uppercase()), None),
            (format!("machine.slice/libpod-{}x.scope", &ID[..63]), None),
            (format!("kubepods/pod{UID}/{}", &ID[..63]), None),
            (format!("kubepods/pod{UID}/{ID}x"), None),
            (format!("kubepods/podXYZ/{ID}"), None),
            (String::new(), None),
            ("/".into(), None),
        ];
        for (path, want) in cases {
            let got = classify(&path);
            match want {
                None => assert_eq!(got, None, "path {path}"),
                Some((rt, uid)) => {
                    assert_eq!(got, Some((rt, ID.to_string(), uid)), "path {path}")
                }
            }
        }
    }

    #[test]
    fn pod_uid_forms() {
        assert_eq!(pod_uid(&format!("pod{UID}")).as_deref(), Some(UID));
        assert_eq!(
            pod_uid(&format!("kubepods-burstable-pod{UID_}.slice")).as_deref(),
            Some(UID)
        );
        assert_eq!(
            pod_uid(&format!("kubepods-pod{UID_}.slice")).as_deref(),
            Some(UID)
        );
        assert_eq!(pod_uid("kubepods-burstable.slice"), None);
        assert_eq!(pod_uid("system-pod1.slice"), None);
        assert_eq!(pod_uid("pod"), None);
        assert_eq!(pod_uid("podman"), None);
        assert_eq!(pod_uid("pod-"), None);
    }
}
