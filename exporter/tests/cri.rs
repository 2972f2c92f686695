//! The exporter against pods on a real CRI runtime (a private containerd
//! driven as the kubelet drives it): the values equal what the kernel
//! reports for the pod's cgroups, and the Kubernetes labels equal what CRI
//! reports for the sandbox and its container.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use pidwarden_tests::{
    poll_until, require_cri, series, unique_name, CriNode, Exporter, Series, TempDir, CRI_IMAGE,
};

const WAIT: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_millis(200);

fn read_trim(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The sample of `metric` for container `id`.
fn of(body: &str, metric: &str, id: &str) -> Option<Series> {
    series(body, metric)
        .into_iter()
        .find(|s| s.label("id") == id)
}

/// Every `pidwarden_runtime_up` series: (runtime, value).
fn runtimes_up(body: &str) -> Vec<(String, f64)> {
    series(body, "pidwarden_runtime_up")
        .into_iter()
        .map(|s| (s.label("runtime").to_string(), s.value))
        .collect()
}

#[test]
fn pods_are_named_and_measured_from_cri_and_the_kernel() {
    if !require_cri() {
        return;
    }
    let t0 = Instant::now();
    let node = CriNode::start();
    let started = t0.elapsed();
    // The pod name is unique: the sandbox's cgroups live in the host's tree.
    let pod_name = format!("web-{}", unique_name().rsplit('-').next().unwrap_or("0"));
    let pod = node.run_pod("shop", &pod_name, &[("app", "web")]);
    pod.set_pids_max(50);
    // Three sleeps under one parent: a duplicate group of 3, surplus 2.
    let cid = pod.start_container(
        "app",
        &[
            "sh",
            "-c",
            "for i in 1 2 3; do sleep 1000 & done; exec sleep 1000",
        ],
    );
    let ready = t0.elapsed();
    let ex = Exporter::start([
        "--docker-host",
        "none",
        "--podman-host",
        "none",
        "--cri-endpoint",
        &node.endpoint(),
    ]);
    let body = poll_until(WAIT, STEP, || {
        let body = ex.scrape().ok()?;
        let named = of(&body, "pidwarden_container_info", &cid)?.label("container") == "app";
        let sandbox = of(&body, "pidwarden_container_info", &pod.id).is_some();
        let procs = of(&body, "pidwarden_container_processes", &cid)?.value == 4.0;
        (named && sandbox && procs).then_some(body)
    })
    .unwrap_or_else(|| panic!("the pod was not exported\n{}", ex.daemon.log()));
    eprintln!(
        "cri node: containerd + image {:?}, pod + container {:?}, exported {:?}",
        started,
        ready - started,
        t0.elapsed() - ready
    );

    // Labels: what CRI reports for the sandbox and the container.
    let info = of(&body, "pidwarden_container_info", &cid).unwrap();
    assert_eq!(
        info.label("name"),
        format!("shop/{pod_name}/app"),
        "{info:?}"
    );
    assert_eq!(info.label("namespace"), "shop");
    assert_eq!(info.label("pod"), pod_name);
    assert_eq!(info.label("container"), "app");
    assert_eq!(info.label("runtime"), "containerd");
    assert_eq!(info.label("image"), CRI_IMAGE);
    assert_eq!(info.label("compose_project"), "");
    let sb = of(&body, "pidwarden_container_info", &pod.id).unwrap();
    assert_eq!(sb.label("name"), format!("shop/{pod_name}/POD"), "{sb:?}");
    assert_eq!(sb.label("container"), "POD");
    assert_eq!(sb.label("pod"), pod_name);
    assert_eq!(runtimes_up(&body), vec![("cri".to_string(), 1.0)]);

    // Values: what the kernel reports for the container and its pod cgroup.
    let pod_dir = pod.cgroup_dir("pids");
    let dir = pod_dir.join(&cid);
    let v = |m: &str| of(&body, m, &cid).map(|s| s.value as u64);
    let tasks: u64 = read_trim(&dir.join("pids.current")).parse().unwrap();
    assert_eq!(v("pidwarden_container_tasks"), Some(tasks));
    assert_eq!(
        v("pidwarden_container_processes"),
        Some(pod.container_pids(&cid).len() as u64)
    );
    assert_eq!(v("pidwarden_container_duplicate_processes"), Some(2));
    assert_eq!(read_trim(&pod_dir.join("pids.max")), "50");
    assert_eq!(
        v("pidwarden_container_pids_limit"),
        Some(50),
        "the pod's limit"
    );
    let pod_tasks: u64 = read_trim(&pod_dir.join("pids.current")).parse().unwrap();
    assert_eq!(
        v("pidwarden_container_pids_headroom"),
        Some(50 - pod_tasks),
        "the pod's headroom, shared with the sandbox"
    );

    // A container started while the exporter runs is named without waiting
    // for the next full list: the scrape that first sees its cgroup asks
    // CRI for it.
    let t1 = Instant::now();
    let side = pod.start_container("sidecar", &["sleep", "1000"]);
    let body = poll_until(WAIT, Duration::from_millis(50), || {
        let body = ex.scrape().ok()?;
        let info = of(&body, "pidwarden_container_info", &side)?;
        (info.label("container") == "sidecar").then_some(body)
    })
    .unwrap_or_else(|| panic!("the sidecar was not named\n{}", ex.daemon.log()));
    eprintln!("a new pod container named after {:?}", t1.elapsed());
    let info = of(&body, "pidwarden_container_info", &side).unwrap();
    assert_eq!(info.label("name"), format!("shop/{pod_name}/sidecar"));
    assert_eq!(
        of(&body, "pidwarden_container_pids_limit", &side).map(|s| s.value),
        Some(50.0)
    );
}

/// A CRI socket that accepts connections and never answers: scrapes go on
/// without names, and the runtime is reported down. Needs no root.
#[test]
fn a_cri_runtime_that_never_answers_does_not_hold_up_scrapes() {
    let dir = TempDir::new();
    let sock = dir.path().join("hung.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            keep.lock().unwrap().push(conn);
        }
    });
    let ex = Exporter::start([
        "--docker-host",
        "none",
        "--podman-host",
        "none",
        "--cri-endpoint",
        &format!("unix://{}", sock.display()),
    ]);
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        let body = ex
            .scrape()
            .unwrap_or_else(|e| panic!("{e}\n{}", ex.daemon.log()));
        slowest = slowest.max(t.elapsed());
        assert_eq!(runtimes_up(&body), vec![("cri".to_string(), 0.0)]);
    }
    assert!(!held.lock().unwrap().is_empty(), "the exporter did connect");
    eprintln!("scrapes with a hung CRI socket: slowest {slowest:?}");
}
