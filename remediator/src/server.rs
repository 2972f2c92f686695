//! The listener: an accept loop that keeps the webhook answering when
//! clients misbehave. Connections are HTTP/1.1 (over TLS when configured,
//! with client certificates when a client CA is given, see [`crate::tls`]),
//! and each one is bounded:
//!
//! - the TLS handshake, every request head and every request body must
//!   arrive within their timeouts (hyper's header timer also runs while a
//!   kept-alive connection waits for its next request; a body cut off is
//!   answered 408, see [`BodyTimeout`]);
//! - a connection with no request in flight is closed after the idle timeout;
//! - request heads over [`Limits::max_header_bytes`] are answered 431;
//! - at most [`Limits::max_connections`] connections are open, a number kept
//!   below the open file limit so pidfds, SQLite and the runtime socket
//!   always find a descriptor. At the cap the connection idle the longest
//!   (no request in flight: never accepted a request head, or waiting for
//!   the next one) is closed to make room; when every connection is busy the
//!   new one is closed at once. The loop keeps accepting, so the kernel's
//!   backlog drains instead of holding alerts behind idle sockets.
//!
//! Shutdown stops accepting, lets requests in flight finish and waits at
//! most [`Limits::shutdown_grace`] for them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::Router;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

/// Descriptors kept free for everything but connections: pidfds of the
/// victims, SQLite, the container runtime's socket, /proc and cgroup reads.
pub const FD_RESERVE: u64 = 256;
/// The most connections served at once, however high the file limit.
pub const MAX_CONNECTIONS: usize = 1024;
/// The fewest connections served at once, however low the file limit.
pub const MIN_CONNECTIONS: usize = 16;
/// How long a new connection at the cap waits for the idle one it displaces.
const DISPLACE_WAIT: Duration = Duration::from_millis(500);
/// How long the accept loop pauses after an accept error (e.g. EMFILE).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// At most one warning about refused connections in this interval.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Bounds of the listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request head (or the first one after a response) must be complete within this.
    pub header_read_timeout: Duration,
    /// A request body must be complete within this after its head.
    pub body_read_timeout: Duration,
    /// A TLS handshake must be complete within this.
    pub tls_handshake_timeout: Duration,
    /// A connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Largest request head (request line and headers); above it: 431.
    pub max_header_bytes: usize,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: MAX_CONNECTIONS,
            max_header_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(3),
        }
    }
}

impl Limits {
    /// The defaults with the connection cap below this process's soft open
    /// file limit ([`connection_cap`]).
    pub fn for_this_process() -> Limits {
        let soft = pidwarden_shared::procfs::nofile_limit().map_or(1024, |(soft, _)| soft);
        Limits {
            max_connections: connection_cap(soft),
            ..Limits::default()
        }
    }
}

/// Connections allowed under a soft open file limit: the limit less
/// [`FD_RESERVE`], within [`MIN_CONNECTIONS`]..=[`MAX_CONNECTIONS`].
pub fn connection_cap(soft_nofile: u64) -> usize {
    let budget = usize::try_from(soft_nofile.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    budget.clamp(MIN_CONNECTIONS, MAX_CONNECTIONS)
}

/// What the accept loop knows of one open connection.
#[derive(Debug)]
struct ConnState {
    /// Requests whose response is not yet produced.
    in_flight: AtomicUsize,
    /// When the last request ended (or the connection was accepted).
    last_active: Mutex<Instant>,
    /// Asked to close to make room (set once).
    displaced: AtomicBool,
    /// Wakes the connection's task to close.
    close: Notify,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            in_flight: AtomicUsize::new(0),
            last_active: Mutex::new(Instant::now()),
            displaced: AtomicBool::new(false),
            close: Notify::new(),
        }
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
    }

    fn last_active(&self) -> Instant {
        *self.last_active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the connection is idle long enough to close (re-checked then).
    fn idle_deadline(&self, idle_timeout: Duration) -> Instant {
        if self.idle() {
            self.last_active() + idle_timeout
        } else {
            Instant::now() + idle_timeout
        }
    }
}

/// Counts a request in flight until dropped (when its response is ready).
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn start(c: &Arc<ConnState>) -> InFlight {
        c.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(c))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last_active.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The open connections.
#[derive(Debug, Default)]
struct Registry {
    next: AtomicUsize,
    conns: Mutex<HashMap<usize, Arc<ConnState>>>,
}

impl Registry {
    fn insert(self: &Arc<Self>, c: Arc<ConnState>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, c);
        Registered(Arc::clone(self), id)
    }

    /// Asks the connection idle the longest to close; false when every
    /// connection has a request in flight (or is already closing).
    fn displace_idlest(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let idlest = conns
            .values()
            .filter(|c| c.idle() && !c.displaced.load(Ordering::SeqCst))
            .min_by_key(|c| c.last_active());
        match idlest {
            Some(c) => {
                c.displaced.store(true, Ordering::SeqCst);
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Removes its connection from the registry when dropped.
struct Registered(Arc<Registry>, usize);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

/// Serves `app` on `listener` (TLS when `tls` is given) within `limits`
/// until `shutdown` resolves; then stops accepting and waits up to
/// [`Limits::shutdown_grace`] for requests in flight.
pub async fn serve(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<Arc<ServerConfig>>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener).context("listener")?;
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let registry = Arc::new(Registry::default());
    let acceptor = tls.map(TlsAcceptor::from);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut refused: u64 = 0;
    let mut last_refusal_log: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                let freed = if registry.displace_idlest() {
                    tokio::time::timeout(DISPLACE_WAIT, Arc::clone(&slots).acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok)
                } else {
                    None
                };
                match freed {
                    Some(slot) => slot,
                    None => {
                        drop(stream);
                        refused += 1;
                        if last_refusal_log.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
                            last_refusal_log = Some(Instant::now());
                            tracing::warn!(
                                refused,
                                max_connections = limits.max_connections,
                                "connection limit reached with every connection busy; closing new connections"
                            );
                        }
                        continue;
                    }
                }
            }
        };
        let state = Arc::new(ConnState::new());
        let registered = registry.insert(Arc::clone(&state));
        let (app, acceptor, limits, stop) = (
            app.clone(),
            acceptor.clone(),
            Arc::clone(&limits),
            stop_rx.clone(),
        );
        tokio::spawn(async move {
            connection(stream, acceptor, app, &limits, &state, stop).await;
            drop(registered);
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            open = limits.max_connections - slots.available_permits(),
            "stopping with connections still open"
        );
    }
    Ok(())
}

/// One connection: the TLS handshake if any, then HTTP/1.1 until the client
/// leaves, a timeout passes, it is displaced or the server stops.
async fn connection(
    stream: TcpStream,
    acceptor: Option<TlsAcceptor>,
    app: Router,
    limits: &Limits,
    state: &Arc<ConnState>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = acceptor else {
        return http(stream, app, limits, state, stop).await;
    };
    let handshake = tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream));
    let tls = tokio::select! {
        r = handshake => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return;
            }
        },
        _ = state.close.notified() => return,
        _ = stop.wait_for(|s| *s) => return,
    };
    http(tls, app, limits, state, stop).await
}

async fn http<I>(
    io: I,
    app: Router,
    limits: &Limits,
    state: &Arc<ConnState>,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let counted = Arc::clone(state);
    let body_timeout = limits.body_read_timeout;
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let in_flight = InFlight::start(&counted);
        let req = req.map(|body| axum::body::Body::new(DeadlineBody::new(body, body_timeout)));
        let app = app.clone();
        async move {
            let resp = app.oneshot(req).await;
            drop(in_flight);
            resp
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let idle_deadline = state.idle_deadline(limits.idle_timeout);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended");
                }
                return;
            }
            _ = state.close.notified(), if !closing => {
                if state.idle() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(idle_deadline.into()), if !closing => {
                if state.idle() && state.last_active().elapsed() >= limits.idle_timeout {
                    return;
                }
            }
            _ = stop.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// The error a request body gives when it is not complete in time.
#[derive(Debug, thiserror::Error)]
#[error("request body not complete within {} s", .0.as_secs_f64())]
pub struct BodyTimeout(pub Duration);

/// A request body that fails with [`BodyTimeout`] once its deadline passes,
/// so a client trickling a body cannot keep a request in flight forever.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl DeadlineBody {
    fn new(inner: Incoming, limit: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_cap_stays_below_the_file_limit() {
        assert_eq!(connection_cap(1024), 768);
        assert_eq!(connection_cap(1_048_576), MAX_CONNECTIONS);
        assert_eq!(connection_cap(300), 44);
        assert_eq!(connection_cap(100), MIN_CONNECTIONS);
        assert_eq!(connection_cap(u64::MAX), MAX_CONNECTIONS);
    }

    #[test]
    fn the_idlest_idle_connection_is_displaced_never_a_busy_one() {
        let reg = Arc::new(Registry::default());
        let old = Arc::new(ConnState::new());
        std::thread::sleep(Duration::from_millis(5));
        let young = Arc::new(ConnState::new());
        let busy = Arc::new(ConnState::new());
        let _r = [&old, &young, &busy].map(|c| reg.insert(Arc::clone(c)));
        let _req = InFlight::start(&busy);
        assert!(reg.displace_idlest());
        assert!(old.displaced.load(Ordering::SeqCst));
        assert!(reg.displace_idlest());
        assert!(young.displaced.load(Ordering::SeqCst));
        assert!(!reg.displace_idlest(), "only the busy connection is left");
        assert!(!busy.displaced.load(Ordering::SeqCst));
    }
}
