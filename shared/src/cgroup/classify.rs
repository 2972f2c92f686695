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

/// A container directly under a parent the operator configured
/// ([`crate::Roots::cgroup_parents`]): every name a runtime gives its
/// container cgroups, a bare id being Docker's (`--cgroup-parent` with the
/// cgroupfs driver).
fn custom_parent_container(leaf: &str) -> Option<(Runtime, &str)> {
    if is_container_id(leaf) {
        return Some((Runtime::Docker, leaf));
    }
    [
        ("docker-", ".scope", Runtime::Docker),
        ("libpod-", ".scope", Runtime::Podman),
        ("libpod-", "", Runtime::Podman),
        ("cri-containerd-", ".scope", Runtime::Containerd),
        ("crio-", ".scope", Runtime::Crio),
    ]
    .into_iter()
    .find_map(|(prefix, suffix, rt)| id_between(leaf, prefix, suffix).map(|id| (rt, id)))
}

/// The kubelet's QoS classes below `kubepods` (guaranteed pods sit directly in it).
const QOS: [&str; 2] = ["besteffort", "burstable"];

/// The pod uid when `ancestors` is the path of a pod cgroup as the kubelet
/// makes it, from the hierarchy root: cgroupfs driver
/// `[kubelet/]kubepods[/<qos>]/pod<uid>`, systemd driver
/// `[kubelet.slice/kubelet-]kubepods.slice[/…-<qos>.slice]/…-pod<uid>.slice`
/// (each slice named after its parent, as systemd nests them).
fn kube_pod(ancestors: &[&str]) -> Option<String> {
    let (&pod, above) = ancestors.split_last()?;
    if pod.ends_with(".slice") {
        let stems: Vec<&str> = ancestors
            .iter()
            .map(|c| c.strip_suffix(".slice"))
            .collect::<Option<_>>()?;
        let (&pod_stem, above) = stems.split_last()?;
        let base = match above {
            ["kubepods"] | ["kubelet", "kubelet-kubepods"] => above[above.len() - 1],
            ["kubepods", qos] | ["kubelet", "kubelet-kubepods", qos] => {
                let kube = above[above.len() - 2];
                let class = qos.strip_prefix(kube)?.strip_prefix('-')?;
                if !QOS.contains(&class) {
                    return None;
                }
                qos
            }
            _ => return None,
        };
        let raw = pod_stem.strip_prefix(base)?.strip_prefix("-pod")?;
        let uid = raw.replace('_', "-");
        return valid_pod_uid(&uid).then_some(uid);
    }
    let kube = match above {
        ["kubepods"] | ["kubelet", "kubepods"] => true,
        ["kubepods", qos] | ["kubelet", "kubepods", qos] => QOS.contains(qos),
        _ => false,
    };
    if !kube {
        return None;
    }
    pod_uid(pod)
}

/// Tells whether a cgroup path (relative to a hierarchy root, leading `/`
/// optional) is a container, and which: `(runtime, id, pod uid)`. Only the
/// parents the runtimes use by default are recognised; see
/// [`classify_under`] for parents an operator configured.
///
/// Recognised: Docker `docker/<id>` (cgroupfs driver) and
/// `system.slice/docker-<id>.scope` (systemd driver); Podman
/// `machine.slice/[machine-libpod_pod_<pod id>.slice/]libpod-<id>.scope` and
/// `libpod_parent/libpod-<id>`;
/// containerd and CRI-O `system.slice/cri-containerd-<id>.scope`,
/// `system.slice/crio-<id>.scope`; and in a Kubernetes pod cgroup
/// (`[kubelet/]kubepods[/besteffort|burstable]/pod<uid>` or the systemd
/// driver's `kubepods[-<qos>]-pod<uid>.slice` in its slices), a bare `<id>`
/// (containerd), `cri-containerd-<id>.scope`, `crio-<id>.scope` or
/// `docker-<id>.scope`, with the pod uid. The same names anywhere else (a
/// stray `mkdir`, a user's delegated subtree) are not containers, nor are
/// runtime helper cgroups (`libpod-conmon-…`, `crio-conmon-…`) and ids that
/// are not exactly 64 lowercase hex characters.
///
/// ```
/// use pidwarden_shared::cgroup::{classify, Runtime};
/// let id = "a".repeat(64);
/// let (rt, got, pod) = classify(&format!("system.slice/docker-{id}.scope")).unwrap();
/// assert_eq!((rt, got.as_str(), pod), (Runtime::Docker, id.as_str(), None));
/// assert!(classify(&format!("machine.slice/libpod-conmon-{id}.scope")).is_none());
/// assert!(classify(&format!("user.slice/docker-{id}.scope")).is_none());
/// ```
pub fn classify(rel_path: &str) -> Option<(Runtime, String, Option<String>)> {
    classify_under(rel_path, &[])
}

/// [`classify`], and besides the default parents the operator's `parents`
/// (paths relative to the hierarchy root, as a runtime's or the kubelet's
/// `--cgroup-parent`/`--cgroup-root` names them): a container cgroup directly
/// in one (`<parent>/<id>`, `<parent>/docker-<id>.scope`,
/// `<parent>/libpod-<id>[.scope]`, …), or any default layout below one
/// (`<parent>/kubepods/…`, `<parent>/docker/<id>`).
pub fn classify_under(
    rel_path: &str,
    parents: &[String],
) -> Option<(Runtime, String, Option<String>)> {
    let path = rel_path.trim_matches('/');
    for parent in parents {
        let parent = parent.trim_matches('/');
        if parent.is_empty() {
            continue;
        }
        let Some(rest) = path.strip_prefix(parent).and_then(|r| r.strip_prefix('/')) else {
            continue;
        };
        let found = if rest.contains('/') {
            classify_default(rest)
        } else {
            custom_parent_container(rest).map(|(rt, id)| (rt, id.to_string(), None))
        };
        if found.is_some() {
            return found;
        }
    }
    classify_default(path)
}

/// Whether a directory that is not a container (its path relative to the
/// hierarchy root) may hold one below it, by the layouts [`classify_under`]
/// recognises with `parents`: the walk descends only into those. The rest
/// of the tree (services, user sessions, a tenant's delegated subtree)
/// cannot hold a container by those rules, and is not listed. Pure.
pub fn may_hold_containers(rel_path: &str, parents: &[String]) -> bool {
    let comps: Vec<&str> = rel_path.split('/').filter(|c| !c.is_empty()).collect();
    if default_ancestor(&comps) {
        return true;
    }
    parents.iter().any(|parent| {
        let pc: Vec<&str> = parent.split('/').filter(|c| !c.is_empty()).collect();
        if pc.is_empty() {
            return false;
        }
        // On the way to the parent, the parent itself, or a default layout
        // below it.
        if comps.len() <= pc.len() {
            return pc.starts_with(&comps);
        }
        comps.starts_with(&pc) && default_ancestor(&comps[pc.len()..])
    })
}

/// Whether `comps` is a proper ancestor of a container path that
/// [`classify_default`] recognises (the root, a runtime's parent, a
/// Kubernetes QoS level, a pod).
fn default_ancestor(comps: &[&str]) -> bool {
    let qos = |c: &str, kube: &str| {
        c.strip_suffix(".slice")
            .and_then(|c| c.strip_prefix(kube))
            .and_then(|c| c.strip_prefix('-'))
            .is_some_and(|class| QOS.contains(&class))
    };
    match comps {
        [] | ["docker" | "libpod_parent" | "machine.slice" | "system.slice"] => true,
        ["machine.slice", pod] => id_between(pod, "machine-libpod_pod_", ".slice").is_some(),
        // Kubernetes, cgroupfs driver: [kubelet/]kubepods[/<qos>]
        ["kubelet"] | ["kubepods"] | ["kubelet", "kubepods"] => true,
        ["kubepods", q] | ["kubelet", "kubepods", q] if QOS.contains(q) => true,
        // systemd driver: kubepods.slice[/kubepods-<qos>.slice], and the same
        // under kubelet.slice/kubelet-kubepods.slice
        ["kubepods.slice"] | ["kubelet.slice"] | ["kubelet.slice", "kubelet-kubepods.slice"] => {
            true
        }
        ["kubepods.slice", q] if qos(q, "kubepods") => true,
        ["kubelet.slice", "kubelet-kubepods.slice", q] if qos(q, "kubelet-kubepods") => true,
        // a pod: its containers are its children
        _ => kube_pod(comps).is_some(),
    }
}

fn classify_default(path: &str) -> Option<(Runtime, String, Option<String>)> {
    let comps: Vec<&str> = path.split('/').collect();
    let (&leaf, ancestors) = comps.split_last()?;
    if let Some(uid) = kube_pod(ancestors) {
        return pod_container(leaf).map(|(rt, id)| (rt, id.to_string(), Some(uid)));
    }
    let found = match ancestors {
        ["docker"] => is_container_id(leaf).then_some((Runtime::Docker, leaf)),
        ["libpod_parent"] => id_between(leaf, "libpod-", "").map(|id| (Runtime::Podman, id)),
        ["machine.slice"] => id_between(leaf, "libpod-", ".scope").map(|id| (Runtime::Podman, id)),
        // A container of a Podman pod (systemd cgroup manager).
        ["machine.slice", pod] if id_between(pod, "machine-libpod_pod_", ".slice").is_some() => {
            id_between(leaf, "libpod-", ".scope").map(|id| (Runtime::Podman, id))
        }
        ["system.slice"] => [
            ("docker-", Runtime::Docker),
            ("cri-containerd-", Runtime::Containerd),
            ("crio-", Runtime::Crio),
        ]
        .into_iter()
        .find_map(|(prefix, rt)| id_between(leaf, prefix, ".scope").map(|id| (rt, id))),
        _ => None,
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
            // Docker, systemd driver
            (p("system.slice/docker-{id}.scope"), Some((Docker, None))),
            (p("/system.slice/docker-{id}.scope"), Some((Docker, None))),
            // Podman
            (p("machine.slice/libpod-{id}.scope"), Some((Podman, None))),
            (p("libpod_parent/libpod-{id}"), Some((Podman, None))),
            (
                format!("machine.slice/machine-libpod_pod_{}.slice/libpod-{ID}.scope", "e".repeat(64)),
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
            // the runtimes' names at parents no runtime uses: a stray mkdir,
            // a user's delegated subtree, a rootless runtime's own tree
            (p("pidwarden-test-1/docker/{id}"), None),
            (p("pidwarden-test-1/docker-{id}.scope"), None),
            (p("user.slice/docker-{id}.scope"), None),
            (p("user.slice/user-1000.slice/user@1000.service/docker/{id}"), None),
            (p("user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{id}.scope"), None),
            (p("system.slice/foo.service/docker-{id}.scope"), None),
            (p("system.slice/docker.service/docker/{id}"), None),
            (p("machine.slice/machine-qemu.scope/libpod-{id}.scope"), None),
            (p("a/libpod_parent/libpod-{id}"), None),
            (p("machine.slice/docker-{id}.scope"), None),
            (p("user.slice/kubepods/pod{uid}/{id}"), None),
            (p("kubepods/guaranteed/pod{uid}/{id}"), None),
            (p("kubepods/besteffort/x/pod{uid}/{id}"), None),
            (p("x/kubepods/pod{uid}/{id}"), None),
            (p("kubepods/pod{uid}/libpod-{id}.scope"), None),
            (
                p("user.slice/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{id}.scope"),
                None,
            ),
            (
                p("kubepods.slice/kubepods-burstable.slice/kubepods-besteffort-pod{uid_}.slice/crio-{id}.scope"),
                None,
            ),
            (
                p("kubepods.slice/kubepods-pod{uid_}.slice/x.slice/crio-{id}.scope"),
                None,
            ),
            (
                p("kubepods.slice/kubepods-pod{uid_}.slice/kubepods-pod{uid_}.slice/crio-{id}.scope"),
                None,
            ),
            (
                p("kubepods.slice/kubepods-guaranteed.slice/kubepods-guaranteed-pod{uid_}.slice/crio-{id}.scope"),
                None,
            ),
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
    fn configured_parents_add_to_the_defaults() {
        use Runtime::*;
        let parents = vec!["/custom".to_string(), "pidwarden-test-1/docker".to_string()];
        let cases: Vec<(String, Option<Runtime>)> = vec![
            (p("custom/{id}"), Some(Docker)),
            (p("/custom/docker-{id}.scope"), Some(Docker)),
            (p("custom/libpod-{id}"), Some(Podman)),
            (p("custom/libpod-{id}.scope"), Some(Podman)),
            (p("custom/crio-{id}.scope"), Some(Crio)),
            (
                p("custom/kubepods/besteffort/pod{uid}/{id}"),
                Some(Containerd),
            ),
            (p("custom/docker/{id}"), Some(Docker)),
            (p("pidwarden-test-1/docker/{id}"), Some(Docker)),
            // the defaults still hold
            (p("docker/{id}"), Some(Docker)),
            // and nothing else is added
            (p("custom/x/{id}"), None),
            (p("custom/libpod-conmon-{id}.scope"), None),
            (p("customer/{id}"), None),
            (p("x/custom/{id}"), None),
            (p("pidwarden-test-2/docker/{id}"), None),
        ];
        for (path, want) in cases {
            let got = classify_under(&path, &parents).map(|(rt, id, _)| (rt, id));
            assert_eq!(got, want.map(|rt| (rt, ID.to_string())), "path {path}");
        }
        assert_eq!(classify_under(&p("custom/{id}"), &["/".into()]), None);
    }

    /// Every proper ancestor of a recognised container path is walked into.
    fn assert_ancestors_walked(path: &str, parents: &[String]) {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        for n in 0..comps.len() {
            let ancestor = comps[..n].join("/");
            assert!(
                may_hold_containers(&ancestor, parents),
                "{ancestor:?} (an ancestor of {path}) is not walked"
            );
        }
    }

    #[test]
    fn the_walk_reaches_every_container_and_skips_the_rest() {
        let parents = vec!["/custom".to_string(), "pidwarden-test-1/docker".to_string()];
        let pod = "e".repeat(64);
        let mut containers: Vec<String> = [
            "docker/{id}",
            "system.slice/docker-{id}.scope",
            "machine.slice/libpod-{id}.scope",
            "libpod_parent/libpod-{id}",
            "system.slice/cri-containerd-{id}.scope",
            "system.slice/crio-{id}.scope",
            "kubepods/besteffort/pod{uid}/{id}",
            "kubepods/burstable/pod{uid}/{id}",
            "kubepods/pod{uid}/docker-{id}",
            "kubelet/kubepods/burstable/pod{uid}/{id}",
            "kubelet/kubepods/pod{uid}/{id}",
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{id}.scope",
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-{id}.scope",
            "kubepods.slice/kubepods-pod{uid_}.slice/docker-{id}.scope",
            "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{uid_}.slice/cri-containerd-{id}.scope",
            "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{uid_}.slice/{id}",
            "custom/{id}",
            "custom/docker/{id}",
            "custom/kubepods/besteffort/pod{uid}/{id}",
            "custom/kubepods.slice/kubepods-pod{uid_}.slice/{id}",
            "pidwarden-test-1/docker/{id}",
            "pidwarden-test-1/docker/docker/{id}",
        ]
        .iter()
        .map(|s| p(s))
        .collect();
        containers.push(format!(
            "machine.slice/machine-libpod_pod_{pod}.slice/libpod-{ID}.scope"
        ));
        for path in &containers {
            // The list holds only paths that are containers ...
            assert!(classify_under(path, &parents).is_some(), "{path}");
            // ... and the walk gets to each of them.
            assert_ancestors_walked(path, &parents);
        }
        for skipped in [
            "user.slice",
            "user.slice/user-1000.slice/user@1000.service",
            "system.slice/docker.service",
            "system.slice/ssh.service",
            "init.scope",
            "other",
            "x/custom",
            "customer",
            "kubepods/guaranteed",
            "kubepods.slice/kubepods-guaranteed.slice",
            "kubepods/podman",
            "machine.slice/machine-qemu.scope",
            "pidwarden-test-2",
            "pidwarden-test-1/other",
            "custom/other",
        ] {
            assert!(
                !may_hold_containers(skipped, &parents),
                "{skipped} is walked"
            );
        }
        // Without configured parents, theirs are not walked.
        assert!(!may_hold_containers("custom", &[]));
        assert!(may_hold_containers("", &[]));
        // A root parent adds nothing (it names no directory).
        assert!(!may_hold_containers("user.slice", &["/".into()]));
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
