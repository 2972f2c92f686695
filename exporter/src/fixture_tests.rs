//! The whole exporter (real collector, real encoders, the router) over a
//! cgroup v2 fixture tree with Docker's cgroupfs layout and a fake `/proc`.

use std::fs;
use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use pidwarden_shared::collect::Collector;
use pidwarden_shared::Roots;
use pidwarden_tests::promtool_check;
use tower::ServiceExt;

use crate::metrics::RenderOptions;
use crate::runtime::{ContainerMeta, MetaCache};
use crate::server::{app, AppState};

const ID: &str = "4f1c2a9e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a19";
const ID_FREE: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

fn write(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn stat_line(pid: i32, comm: &str, state: char, ppid: i32, threads: u64) -> String {
    format!(
        "{pid} ({comm}) {state} {ppid} {pid} {pid} 0 -1 4194560 100 0 0 0 3 2 0 0 20 0 {threads} 0 {} 1000000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n",
        5000 + pid
    )
}

fn process(
    proc_root: &Path,
    pid: i32,
    state: char,
    ppid: i32,
    threads: u64,
    argv: &[&str],
    children: &[i32],
) {
    let dir = proc_root.join(pid.to_string());
    let comm = argv.first().copied().unwrap_or("defunct");
    write(
        &dir.join("stat"),
        &stat_line(pid, comm, state, ppid, threads),
    );
    let mut cmdline = Vec::new();
    for a in argv {
        cmdline.extend_from_slice(a.as_bytes());
        cmdline.push(0);
    }
    fs::write(dir.join("cmdline"), cmdline).unwrap();
    let kids: Vec<String> = children.iter().map(i32::to_string).collect();
    let kids = if kids.is_empty() {
        String::new()
    } else {
        format!("{} ", kids.join(" "))
    };
    write(
        &dir.join("task").join(pid.to_string()).join("children"),
        &kids,
    );
}

fn memory_stat(inactive_file: u64) -> String {
    format!("anon 1048576\nfile 8388608\ninactive_anon 0\nactive_anon 1048576\ninactive_file {inactive_file}\nactive_file 4194304\nunevictable 0\n")
}

/// cgroup v2 host, Docker cgroupfs driver: `/docker/<id>`.
fn fixture(root: &Path) -> Roots {
    let cg = root.join("cgroup");
    let pr = root.join("proc");
    write(
        &cg.join("cgroup.controllers"),
        "cpuset cpu io memory pids\n",
    );
    write(&cg.join("cgroup.subtree_control"), "memory pids\n");
    write(&cg.join("cgroup.procs"), "1\n");
    let docker = cg.join("docker");
    write(&docker.join("cgroup.controllers"), "memory pids\n");
    write(&docker.join("cgroup.subtree_control"), "memory pids\n");
    write(&docker.join("cgroup.procs"), "");
    write(&docker.join("pids.max"), "max\n");
    write(&docker.join("pids.current"), "8\n");
    write(&docker.join("memory.max"), "max\n");
    write(&docker.join("memory.current"), "120000000\n");

    // Limited container: sh (pid 1000) with three sleeps, a two-thread
    // worker with a secret on its command line, and a zombie child.
    let c = docker.join(ID);
    write(&c.join("cgroup.controllers"), "memory pids\n");
    write(&c.join("cgroup.procs"), "1000\n1001\n1002\n1003\n1004\n");
    write(&c.join("pids.current"), "7\n");
    write(&c.join("pids.max"), "50\n");
    write(&c.join("pids.events"), "max 3\n");
    write(&c.join("memory.current"), "104857600\n");
    write(&c.join("memory.max"), "268435456\n");
    write(&c.join("memory.stat"), &memory_stat(4_194_304));
    write(
        &c.join("memory.events"),
        "low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\noom_group_kill 0\n",
    );
    process(
        &pr,
        1000,
        'S',
        0,
        1,
        &["sh", "-c", "run"],
        &[1001, 1002, 1003, 1004, 1005],
    );
    for pid in [1001, 1002, 1003] {
        process(&pr, pid, 'S', 1000, 1, &["sleep", "1000"], &[]);
    }
    process(
        &pr,
        1004,
        'S',
        1000,
        2,
        &["worker", "--token", "s3cret"],
        &[],
    );
    process(&pr, 1005, 'Z', 1000, 1, &[], &[]);

    // Unlimited container with a single process.
    let f = docker.join(ID_FREE);
    write(&f.join("cgroup.controllers"), "memory pids\n");
    write(&f.join("cgroup.procs"), "2000\n");
    write(&f.join("pids.current"), "1\n");
    write(&f.join("pids.max"), "max\n");
    write(&f.join("pids.events"), "max 0\n");
    write(&f.join("memory.current"), "4096\n");
    write(&f.join("memory.max"), "max\n");
    write(&f.join("memory.stat"), &memory_stat(0));
    write(
        &f.join("memory.events"),
        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    );
    process(&pr, 2000, 'S', 0, 1, &["sleep", "1000"], &[]);
    Roots::new(pr, cg)
}

async fn scrape(st: &AppState) -> String {
    let resp = app(st.clone())
        .oneshot(
            Request::builder()
                .uri("/metrics")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

fn value(body: &str, series: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .map(str::to_string)
}

#[tokio::test]
async fn serves_the_fixture_values() {
    let dir = tempfile::tempdir().unwrap();
    let roots = fixture(dir.path());
    let cache = MetaCache::new();
    let mut labels = std::collections::HashMap::new();
    labels.insert("com.docker.compose.project".to_string(), "shop".to_string());
    cache.set(
        pidwarden_shared::runtime::Kind::Docker,
        ID,
        Some(ContainerMeta::new("/shop-api-1", "shop/api:2", labels)),
    );
    let st = AppState::new(
        Box::new(Collector::new(roots)),
        cache,
        RenderOptions::default(),
        Duration::from_secs(5),
        crate::group_memory::DEFAULT_INTERVAL,
    );
    let body = scrape(&st).await;
    let l = format!("{{id=\"{ID}\",name=\"shop-api-1\"}}");
    let free = format!("{{id=\"{ID_FREE}\",name=\"0a1b2c3d4e5f\"}}");
    let expect = [
        (format!("pidwarden_container_info{{id=\"{ID}\",name=\"shop-api-1\",image=\"shop/api:2\",runtime=\"docker\",compose_project=\"shop\",compose_service=\"\",namespace=\"\",pod=\"\",container=\"\"}}"), "1"),
        (format!("pidwarden_container_tasks{l}"), "7"),
        (format!("pidwarden_container_processes{l}"), "5"),
        (format!("pidwarden_container_zombie_processes{l}"), "1"),
        (format!("pidwarden_container_pids_limit{l}"), "50"),
        (format!("pidwarden_container_pids_headroom{l}"), "43"),
        (format!("pidwarden_container_pids_limit_hits_total{l}"), "3"),
        (format!("pidwarden_container_memory_usage_bytes{l}"), "104857600"),
        (format!("pidwarden_container_memory_working_set_bytes{l}"), "100663296"),
        (format!("pidwarden_container_memory_limit_bytes{l}"), "268435456"),
        (format!("pidwarden_container_oom_kills_total{l}"), "2"),
        (format!("pidwarden_container_duplicate_processes{l}"), "2"),
        (format!("pidwarden_container_process_group_processes{{id=\"{ID}\",name=\"shop-api-1\",command=\"sleep 1000\"}}"), "3"),
        (format!("pidwarden_container_tasks{free}"), "1"),
        (format!("pidwarden_container_processes{free}"), "1"),
        (format!("pidwarden_container_zombie_processes{free}"), "0"),
        (format!("pidwarden_container_duplicate_processes{free}"), "0"),
        ("pidwarden_containers".to_string(), "2"),
        ("pidwarden_scrape_errors_total{stage=\"discovery\"}".to_string(), "0"),
        ("pidwarden_scrape_errors_total{stage=\"cgroup\"}".to_string(), "0"),
        ("pidwarden_scrape_errors_total{stage=\"proc\"}".to_string(), "0"),
    ];
    for (series, want) in &expect {
        assert_eq!(
            value(&body, series).as_deref(),
            Some(*want),
            "{series}\n--- exposition ---\n{body}"
        );
    }
    for absent in [
        format!("pidwarden_container_pids_limit{free}"),
        format!("pidwarden_container_pids_headroom{free}"),
        format!("pidwarden_container_memory_limit_bytes{free}"),
    ] {
        assert_eq!(
            value(&body, &absent),
            None,
            "{absent} must be absent:\n{body}"
        );
    }
    assert!(!body.contains("s3cret"), "{body}");
    promtool_check(&body);

    // A process vanishing between scrapes is not an error.
    fs::remove_dir_all(dir.path().join("proc/1003")).unwrap();
    let body = scrape(&st).await;
    assert_eq!(
        value(&body, &format!("pidwarden_container_processes{l}")).as_deref(),
        Some("4")
    );
    assert_eq!(
        value(
            &body,
            &format!("pidwarden_container_duplicate_processes{l}")
        )
        .as_deref(),
        Some("1")
    );
    assert_eq!(
        value(&body, "pidwarden_scrape_errors_total{stage=\"proc\"}").as_deref(),
        Some("0")
    );

    // A cgroup root without any cgroup filesystem is a discovery error, counted.
    let empty = tempfile::tempdir().unwrap();
    let st = AppState::new(
        Box::new(Collector::new(Roots::new(empty.path(), empty.path()))),
        MetaCache::new(),
        RenderOptions::default(),
        Duration::from_secs(5),
        crate::group_memory::DEFAULT_INTERVAL,
    );
    let body = scrape(&st).await;
    assert_eq!(value(&body, "pidwarden_containers").as_deref(), Some("0"));
    assert_eq!(
        value(&body, "pidwarden_scrape_errors_total{stage=\"discovery\"}").as_deref(),
        Some("1")
    );
    let body = scrape(&st).await;
    assert_eq!(
        value(&body, "pidwarden_scrape_errors_total{stage=\"discovery\"}").as_deref(),
        Some("2")
    );
}
