//! The listener's bounds on a real socket: oversized request heads are
//! answered 431, slow heads and idle connections are closed after their
//! timeouts, a trickled body is answered 408, at the connection cap the idlest connection makes room for a
//! new one, and shutdown does not wait for idle connections.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use pidwarden_remediator::server::{serve, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any single read in these tests waits.
const READ_WAIT: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _harness: Harness,
}

impl Server {
    fn start(limits: Limits) -> Server {
        let h = Harness::new(fast_settings());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, h.app.clone(), None, limits, async {
            let _ = rx.await;
        }));
        Server {
            addr,
            stop: Some(tx),
            task,
            _harness: h,
        }
    }

    /// Stops the server; how long it took to return.
    async fn stop(mut self) -> Duration {
        let t = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(READ_WAIT, &mut self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
        t.elapsed()
    }
}

/// Reads until the peer closes (or `READ_WAIT`); everything read and when
/// the close came (None: still open at the deadline).
async fn read_until_closed(s: &mut TcpStream) -> (Vec<u8>, Option<Instant>) {
    let deadline = tokio::time::Instant::now() + READ_WAIT;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (out, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, Some(Instant::now())),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends one keep-alive `GET /healthz` and reads its whole response.
async fn healthz(s: &mut TcpStream) -> String {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.ends_with(b"ok\n") {
        let n = tokio::time::timeout(READ_WAIT, s.read(&mut buf))
            .await
            .expect("a response")
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends a webhook request head announcing 100 body bytes and only 9 of them.
async fn partial_webhook(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST /api/v1/alerts HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"alerts\""
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    s
}

fn status_line(resp: &[u8]) -> String {
    String::from_utf8_lossy(resp)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn oversized_request_heads_are_answered_431() {
    let srv = Server::start(Limits::default());
    for (size, want) in [(60 * 1024, "HTTP/1.1 200 OK"), (70 * 1024, "HTTP/1.1 431")] {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        let head = format!(
            "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(size)
        );
        // The server may answer and close before reading everything.
        let _ = s.write_all(head.as_bytes()).await;
        let (resp, closed) = read_until_closed(&mut s).await;
        assert!(closed.is_some(), "{size}: connection left open");
        let line = status_line(&resp);
        assert!(line.starts_with(want), "{size}: {line:?}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn slow_request_heads_are_cut_off_at_the_header_timeout() {
    let timeout = Duration::from_secs(1);
    let srv = Server::start(Limits {
        header_read_timeout: timeout,
        ..Limits::default()
    });
    // Half a request head, then nothing; and a connection that never speaks.
    let mut half = TcpStream::connect(srv.addr).await.unwrap();
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    let t = Instant::now();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .unwrap();
    for s in [&mut half, &mut silent] {
        let (resp, closed) = read_until_closed(s).await;
        let after = closed.expect("closed at the header timeout") - t;
        println!(
            "closed after {after:?} (timeout {timeout:?}): {:?}",
            status_line(&resp)
        );
        assert!(after >= timeout - Duration::from_millis(50), "{after:?}");
    }
    // A connection that completes its head in time is served.
    let mut ok = TcpStream::connect(srv.addr).await.unwrap();
    assert!(healthz(&mut ok).await.starts_with("HTTP/1.1 200 OK"));
    srv.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let idle = Duration::from_secs(1);
    let srv = Server::start(Limits {
        idle_timeout: idle,
        header_read_timeout: Duration::from_secs(60),
        ..Limits::default()
    });
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    assert!(healthz(&mut s).await.starts_with("HTTP/1.1 200 OK"));
    // The same connection serves a second request (keep-alive)…
    assert!(healthz(&mut s).await.starts_with("HTTP/1.1 200 OK"));
    let answered = Instant::now();
    // …and is closed once idle for the timeout.
    let (rest, closed) = read_until_closed(&mut s).await;
    assert!(rest.is_empty());
    let after = closed.expect("closed when idle") - answered;
    println!("idle connection closed after {after:?} (timeout {idle:?})");
    assert!(after >= idle - Duration::from_millis(50), "{after:?}");
    srv.stop().await;
}

#[tokio::test]
async fn at_the_cap_the_idlest_connection_makes_room() {
    let cap = 4;
    let srv = Server::start(Limits {
        max_connections: cap,
        header_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        ..Limits::default()
    });
    let mut idle = Vec::new();
    for _ in 0..cap {
        idle.push(TcpStream::connect(srv.addr).await.unwrap());
        // Accepted in this order, so the first is the idlest.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = Instant::now();
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    assert!(healthz(&mut s).await.starts_with("HTTP/1.1 200 OK"));
    let took = t.elapsed();
    println!("answered at the cap in {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let (_, closed) = read_until_closed(&mut idle[0]).await;
    assert!(closed.is_some(), "the idlest connection was closed");
    // The others are still open (a short read times out).
    for s in &mut idle[1..] {
        let mut b = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(200), s.read(&mut b))
                .await
                .is_err(),
            "a younger idle connection was closed"
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_idle_connections() {
    let srv = Server::start(Limits::default());
    let addr = srv.addr;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut kept = TcpStream::connect(addr).await.unwrap();
    assert!(healthz(&mut kept).await.starts_with("HTTP/1.1 200 OK"));
    let took = srv.stop().await;
    println!("shutdown with two idle connections took {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    for s in [&mut silent, &mut kept] {
        assert!(read_until_closed(s).await.1.is_some());
    }
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[tokio::test]
async fn shutdown_waits_for_a_request_in_flight_at_most_the_grace() {
    let grace = Duration::from_secs(1);
    let srv = Server::start(Limits {
        shutdown_grace: grace,
        ..Limits::default()
    });
    // A webhook request whose body never completes stays in flight.
    let _s = partial_webhook(srv.addr).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let took = srv.stop().await;
    println!("shutdown with a request in flight took {took:?} (grace {grace:?})");
    assert!(took >= grace - Duration::from_millis(50), "{took:?}");
    assert!(took < grace + Duration::from_secs(1), "{took:?}");
}

#[tokio::test]
async fn a_trickled_body_is_cut_off_with_408() {
    let timeout = Duration::from_secs(1);
    let srv = Server::start(Limits {
        body_read_timeout: timeout,
        ..Limits::default()
    });
    let t = Instant::now();
    let mut s = partial_webhook(srv.addr).await;
    let (resp, closed) = read_until_closed(&mut s).await;
    let after = t.elapsed();
    let line = status_line(&resp);
    println!("trickled body answered {line:?} after {after:?} (timeout {timeout:?})");
    assert!(line.starts_with("HTTP/1.1 408"), "{line:?}");
    assert!(after >= timeout - Duration::from_millis(50), "{after:?}");
    assert!(
        closed.is_some(),
        "the connection with an unread body stays open"
    );
    srv.stop().await;
}
