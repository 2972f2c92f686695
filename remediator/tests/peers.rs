//! Where the remediator may connect, and with which token, for an alert
//! about a container that is not on its node: the binary against listeners
//! this test runs on other loopback addresses (127.0.0.2, 127.0.0.3) that
//! record every connection and the `Authorization` it carried. The alert
//! names an id that is no container on this node (an empty cgroup root), so
//! only the `instance` label and the flags decide.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::binary::Remediator;
use pidwarden_remediator::timefmt::{format_rfc3339, now_nanos};
use pidwarden_tests::{free_port, TempDir};
use serde_json::json;

/// An id no container has.
const NOBODY: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

/// A fake peer remediator: accepts connections on `addr`, records each
/// request's `Authorization` and forwarded marker, answers `pending`.
struct Listener {
    addr: SocketAddr,
    /// One entry per connection: (authorization, forwarded header present).
    seen: Arc<Mutex<Vec<(String, bool)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    fn on(addr: SocketAddr) -> Listener {
        let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        l.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((conn, _)) => s.lock().unwrap().push(answer(conn)),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Listener {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<(String, bool)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request; answers like a remediator that took the alert.
fn answer(conn: std::net::TcpStream) -> (String, bool) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(conn);
    let (mut auth, mut forwarded, mut len) = (String::new(), false, 0usize);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let (k, v) = line.split_once(':').unwrap_or((&line, ""));
        match k.trim().to_ascii_lowercase().as_str() {
            "authorization" => auth = v.trim().to_string(),
            "x-pidwarden-forwarded" => forwarded = true,
            "content-length" => len = v.trim().parse().unwrap_or(0),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    let _ = r.read_exact(&mut body);
    let reply = r#"{"results":[{"result":"pending","reason":"taken"}]}"#;
    let mut conn = r.into_inner();
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
    (auth, forwarded)
}

fn node(n: u8, port: u16) -> SocketAddr {
    ([127, 0, 0, n], port).into()
}

/// A remediator on 127.0.0.1:`port` that sees no container.
fn start(dir: &TempDir, port: u16, extra: &[&str]) -> Remediator {
    let empty = dir.path().join("no-cgroups");
    std::fs::create_dir_all(&empty).unwrap();
    let empty = empty.display().to_string();
    let mut args = vec!["--cgroup-root", &empty];
    args.extend_from_slice(extra);
    Remediator::start_at(dir, node(1, port), &args)
}

fn alert(instance: &str, fingerprint: &str) -> serde_json::Value {
    json!({
        "status": "firing",
        "labels": {
            "alertname": "PidwardenDuplicatesExhaustingPids", "id": NOBODY,
            "pidwarden_action": "kill-duplicates", "instance": instance
        },
        "annotations": {}, "startsAt": format_rfc3339(now_nanos()),
        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": fingerprint
    })
}

/// Whatever a connection attempt would take has passed.
fn settle() {
    std::thread::sleep(Duration::from_millis(500));
}

#[test]
fn by_default_an_alert_for_an_unknown_id_connects_nowhere() {
    let dir = TempDir::new();
    let port = free_port();
    // Where the old default sent the token: the instance host, on the
    // remediator's own port.
    let trap = Listener::on(node(3, port));
    let r = start(&dir, port, &[]);
    let (code, v) = r.webhook(json!([alert("127.0.0.3:9917", "00000000000000d1")]));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["results"][0]["result"], "unknown_container", "{v}");
    settle();
    assert_eq!(
        trap.seen(),
        [],
        "a connection reached the instance host {}",
        trap.addr
    );
    let rows = r.actions();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].result, "unknown_container");
}

#[test]
fn an_instance_that_is_not_a_listed_peer_is_never_connected_to() {
    let dir = TempDir::new();
    let port = free_port();
    let trap = Listener::on(node(3, port));
    let listed = Listener::on(node(2, port));
    let peer_token = dir.write("peer-token", "peer-secret-b2\n");
    let r = start(
        &dir,
        port,
        &[
            "--peer",
            "127.0.0.2",
            "--peer-token-file",
            peer_token.to_str().unwrap(),
        ],
    );
    for (i, instance) in [
        "127.0.0.3:9917",
        "127.0.0.3",
        "localhost:9917",
        "[::1]:9917",
    ]
    .iter()
    .enumerate()
    {
        let (code, v) = r.webhook(json!([alert(instance, &format!("00000000000000e{i}"))]));
        assert_eq!(code, 200, "{instance}: {v}");
        assert_eq!(
            v["results"][0]["result"], "unknown_container",
            "{instance}: {v}"
        );
        let reason = v["results"][0]["reason"].as_str().unwrap_or("");
        assert!(reason.contains("not a listed peer"), "{instance}: {reason}");
    }
    settle();
    assert_eq!(trap.seen(), [], "an unlisted instance host was reached");
    assert_eq!(listed.seen(), [], "a listed peer not named was reached");
}

#[test]
fn a_listed_peer_gets_the_peer_token_never_the_inbound_one() {
    let dir = TempDir::new();
    let port = free_port();
    let peer = Listener::on(node(2, port));
    let peer_token = dir.write("peer-token", "peer-secret-c3\n");
    let r = start(
        &dir,
        port,
        &[
            "--peer",
            "127.0.0.0/8",
            "--peer-token-file",
            peer_token.to_str().unwrap(),
        ],
    );
    let (code, v) = r.webhook(json!([alert("127.0.0.2:9917", "00000000000000f1")]));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["results"][0]["result"], "forwarded", "{v}");
    let seen = peer.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (auth, forwarded) = &seen[0];
    assert_eq!(auth, "Bearer peer-secret-c3");
    assert!(!auth.contains(&r.token), "the inbound token left the node");
    assert!(forwarded, "the forward is not marked");
}

/// The peer token is accepted only on forwarded webhook requests: it posts
/// no direct alert and reads no audit trail.
#[test]
fn the_peer_token_opens_only_forwarded_webhook_requests() {
    let dir = TempDir::new();
    let peer_token = dir.write("peer-token", "peer-secret-d4\n");
    let r = start(
        &dir,
        free_port(),
        &["--peer-token-file", peer_token.to_str().unwrap()],
    );
    let body = json!({"alerts": [alert("127.0.0.2:9917", "00000000000000a4")]}).to_string();
    let post = |headers: &[(&str, &str)]| {
        let mut h = vec![("Content-Type", "application/json")];
        h.extend_from_slice(headers);
        pidwarden_tests::http_post(&r.url("/api/v1/alerts"), &h, &body).0
    };
    let bearer = "Bearer peer-secret-d4";
    assert_eq!(post(&[("Authorization", bearer)]), 401);
    assert_eq!(
        post(&[("Authorization", bearer), ("X-Pidwarden-Forwarded", "1")]),
        200
    );
    let get = |auth: &str| {
        let mut c = std::net::TcpStream::connect((r.host, r.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            c,
            "GET /api/v1/actions HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nX-Pidwarden-Forwarded: 1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut status = String::new();
        BufReader::new(c).read_line(&mut status).unwrap();
        status
    };
    assert!(
        get(bearer).contains(" 401 "),
        "the peer token read the audit trail"
    );
    assert!(get(&r.auth()).contains(" 200 "));
}
