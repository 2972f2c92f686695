//! Tests of the test kit itself, against real Docker, real cgroups and real
//! processes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pidwarden_tests::*;

fn pid_alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; count it as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

#[test]
fn container_appears_then_is_removed_on_drop() {
    if !require_docker() {
        return;
    }
    let c = TestContainer::run(&["--label", "pidwarden.test=kit"], &["sleep", "300"]);
    assert!(c.name.starts_with("pidwarden-test-"));
    assert_eq!(c.id.len(), 64);
    let listed = docker([
        "ps",
        "--filter",
        &format!("name={}", c.name),
        "--format",
        "{{.ID}}",
    ]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&c.id[..12]));

    let pid = c.init_pid();
    assert!(pid > 1 && pid_alive(pid), "init pid {pid} not alive");
    assert!(c.is_running());
    assert_eq!(
        c.labels().get("pidwarden.test").map(String::as_str),
        Some("kit")
    );
    assert!(
        c.started_at().starts_with("20"),
        "started_at {:?}",
        c.started_at()
    );

    let out = c.exec(&["sh", "-c", "echo hi; ps | wc -l"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hi\n"));

    let dir = c.cgroup_dir("pids");
    assert!(dir.ends_with(&c.id), "pids cgroup {dir:?}");
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");

    let (id, name) = (c.id.clone(), c.name.clone());
    drop(c);
    assert!(
        !docker(["inspect", id.as_str()]).status.success(),
        "{name} still exists"
    );
    assert!(
        poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
            (!pid_alive(pid)).then_some(())
        })
        .is_some()
    );
}

struct ImageGuard(String);
impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = docker(["rmi", "-f", self.0.as_str()]);
    }
}

#[test]
fn image_is_built_when_missing_even_with_concurrent_callers() {
    if !require_docker() {
        return;
    }
    let tag = format!("pidwarden-test-busybox:{}", unique_name());
    let _guard = ImageGuard(tag.clone());
    assert!(!image_exists(&tag));
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| ensure_image_tagged(&tag));
        }
    });
    assert!(image_exists(&tag));
    let out = docker([
        "run", "--rm", "--network", "none", tag.as_str(), "sh", "-c",
        "for a in sh sleep cat ps yes top kill wc seq awk; do command -v $a >/dev/null || echo missing $a; done; echo done",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
    assert_eq!(ensure_image(), TEST_IMAGE);
    assert!(image_exists(TEST_IMAGE));
}

#[test]
fn spawned_processes_land_in_the_cgroup_and_everything_is_gone_after_drop() {
    if !require_cgroups() {
        return;
    }
    let cg = TestCgroup::new(&["pids", "memory"], "inner/leaf");
    let top = cg.top_path("pids");
    assert!(cg.path("pids").ends_with("inner/leaf") && cg.path("pids").is_dir());
    cg.write("pids", "pids.max", "20");
    assert_eq!(cg.read("pids", "pids.max").trim(), "20");

    let mut child = cg.spawn_in(
        Command::new("sh")
            .args(["-c", "sleep 300 & sleep 300 & echo started; wait"])
            .stdout(std::process::Stdio::piped()),
    );
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "started\n");
    for ctrl in ["pids", "memory"] {
        let procs = cg.procs(ctrl);
        assert!(procs.contains(&child.id()), "{ctrl}: {procs:?}");
        assert_eq!(
            procs.len(),
            3,
            "{ctrl}: sh and two sleeps expected, got {procs:?}"
        );
    }
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
    assert!(own.contains(&format!("/{}/inner/leaf", cg.name())), "{own}");
    let pids: Vec<u32> = cg.all_pids().into_iter().collect();

    drop(cg);
    assert!(!top.exists(), "{top:?} still exists");
    assert!(!Path::new(&cg_memory_top(&top)).exists());
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    for pid in pids {
        assert!(
            poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
                (!pid_alive(pid)).then_some(())
            })
            .is_some(),
            "pid {pid} survived"
        );
    }
}

fn cg_memory_top(pids_top: &Path) -> String {
    pids_top.to_string_lossy().replace("/pids/", "/memory/")
}

#[test]
fn daemon_logs_output_and_is_stopped() {
    let mut d =
        Daemon::spawn(Command::new("sh").args(["-c", "echo hello; echo oops >&2; exec sleep 300"]));
    let got = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        let log = d.log();
        (log.contains("hello") && log.contains("oops")).then_some(log)
    });
    assert!(got.is_some(), "log: {:?}", d.log());
    assert!(d.try_wait().is_none());
    let status = d.stop(Duration::from_secs(5));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(SIGTERM)
    );

    // A daemon that ignores SIGTERM is killed after the timeout.
    let mut stubborn = Daemon::spawn(Command::new("sh").args([
        "-c",
        "trap '' TERM; echo ready; while :; do sleep 0.1; done",
    ]));
    assert!(
        poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
            stubborn.log().contains("ready").then_some(())
        })
        .is_some()
    );
    let status = stubborn.stop(Duration::from_millis(300));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let path = stubborn.log_path().to_path_buf();
    drop(stubborn);
    assert!(!path.exists());
}

const SIGTERM: i32 = 15;

#[test]
fn child_guard_kills_on_drop() {
    let g = ChildGuard::spawn(Command::new("sleep").arg("300"));
    let pid = g.id();
    assert!(pid_alive(pid));
    drop(g);
    assert!(!pid_alive(pid));
}

/// A one-connection-at-a-time HTTP server answering with the request's method,
/// `x-test` header and body.
fn echo_server(port: u16) {
    let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            r.read_line(&mut first).unwrap();
            let (mut len, mut hdr) = (0usize, String::new());
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h == "\r\n" || h.is_empty() {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if let Some(v) = lower.strip_prefix("x-test:") {
                    hdr = v.trim().to_string();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
            let status = if path == "/missing" {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let method = first.split_whitespace().next().unwrap_or("").to_string();
            let reply = format!("{method} {hdr} {}", String::from_utf8_lossy(&body));
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
}

#[test]
fn http_helpers_talk_to_a_real_server() {
    let port = free_port();
    assert!(port > 0);
    let base = format!("http://127.0.0.1:{port}");
    assert!(wait_http(&base, Duration::from_millis(300)).is_err());
    echo_server(port);
    wait_http(&base, Duration::from_secs(5)).unwrap();
    assert_eq!(http_get(&format!("{base}/x")), (200, "GET  ".to_string()));
    assert_eq!(http_get(&format!("{base}/missing")).0, 404);
    let (s, body) = http_post(&format!("{base}/p"), &[("x-test", "abc")], "{\"a\":1}");
    assert_eq!((s, body.as_str()), (200, "POST abc {\"a\":1}"));
    assert!(try_http_get("http://127.0.0.1:1/").is_err());
}

#[test]
fn poll_until_returns_first_some_or_none_at_timeout() {
    let mut n = 0;
    let v = poll_until(Duration::from_secs(5), Duration::from_millis(1), || {
        n += 1;
        (n == 3).then_some(n)
    });
    assert_eq!(v, Some(3));
    let none: Option<()> = poll_until(Duration::from_millis(50), Duration::from_millis(10), || {
        None
    });
    assert!(none.is_none());
}

#[test]
fn unique_names_differ() {
    let a = unique_name();
    let b = unique_name();
    assert_ne!(a, b);
    assert!(a.starts_with(NAME_PREFIX) && a.contains(&std::process::id().to_string()));
}

#[test]
#[should_panic(expected = "run `cargo build --workspace` first")]
fn workspace_bin_explains_a_missing_binary() {
    workspace_bin("pidwarden-no-such-binary");
}

#[test]
fn workspace_root_holds_the_workspace_manifest() {
    let root = workspace_root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("[workspace]"));
}
