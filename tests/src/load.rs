//! An open-loop HTTP load generator: requests leave at a fixed rate whatever
//! the server does, each on an idle keep-alive connection (a new one when
//! all are busy), and every latency is measured from the moment the request
//! was due, so a stalled server shows in the quantiles instead of slowing
//! the generator down (no coordinated omission).
//!
//! It runs on its own single-threaded Tokio runtime inside the calling test.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;

/// What to send, how often, for how long.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Server address.
    pub addr: SocketAddr,
    /// Request path (`/api/v1/alerts`).
    pub path: String,
    /// Headers of every request (besides `Host` and `Content-Length`).
    pub headers: Vec<(String, String)>,
    /// Bodies POSTed in turn (request `i` sends `bodies[i % len]`).
    pub bodies: Vec<String>,
    /// Requests per second.
    pub rate: u32,
    /// How long requests are started.
    pub duration: Duration,
    /// At most this many connections; a request due while all are busy
    /// waits for one (and its wait counts in its latency).
    pub max_connections: usize,
    /// A request without a complete answer after this is an error.
    pub timeout: Duration,
}

/// What came back.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Requests started.
    pub sent: u64,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests without an answer (connection error or timeout), by reason.
    pub errors: BTreeMap<String, u64>,
    /// Latency of every answered request, due time to complete body, sorted.
    pub latencies: Vec<Duration>,
    /// First due time to last answer.
    pub elapsed: Duration,
    /// Connections opened.
    pub connections: usize,
}

impl LoadReport {
    /// Answers with a status outside 200–299, plus requests without an answer.
    pub fn failures(&self) -> u64 {
        let non_2xx: u64 = self
            .statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum();
        non_2xx + self.errors.values().sum::<u64>()
    }

    /// The `q` quantile (0.0–1.0) of the latencies (nearest rank); zero when none.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = (q.clamp(0.0, 1.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    /// Answered requests per second over [`LoadReport::elapsed`].
    pub fn achieved_rate(&self) -> f64 {
        let answered: u64 = self.statuses.values().sum();
        answered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// One line: sent, rate, p50/p90/p99/max, statuses, errors, connections.
    pub fn summary(&self) -> String {
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
        format!(
            "{} requests in {:.1} s ({:.0} answered/s); latency p50 {} p90 {} p99 {} max {}; \
             statuses {:?}; errors {:?}; {} connections",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.achieved_rate(),
            ms(self.quantile(0.50)),
            ms(self.quantile(0.90)),
            ms(self.quantile(0.99)),
            ms(self.latencies.last().copied().unwrap_or_default()),
            self.statuses,
            self.errors,
            self.connections,
        )
    }
}

type Conn = SendRequest<Full<Bytes>>;

/// A kept-alive connection is not reused after idling this long: below the
/// remediator's 10 s wait for the next request head, so the client, as HTTP
/// clients' pools do, drops it before the server closes it under a request.
const CLIENT_IDLE: Duration = Duration::from_secs(5);

/// The idle connections (with when each was last used) and how many exist.
#[derive(Default)]
struct Pool {
    idle: Vec<(Conn, Instant)>,
    open: usize,
}

enum Outcome {
    Status(u16, Duration),
    Error(String),
}

/// Runs the load and returns what came back. Panics only when the runtime
/// cannot be built or `spec` has no bodies.
pub fn run_load(spec: &LoadSpec) -> LoadReport {
    assert!(!spec.bodies.is_empty(), "LoadSpec without bodies");
    assert!(spec.rate > 0, "LoadSpec with rate 0");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the load generator's runtime");
    rt.block_on(drive(spec.clone()))
}

async fn drive(spec: LoadSpec) -> LoadReport {
    let spec = Arc::new(spec);
    let pool = Arc::new(Mutex::new(Pool::default()));
    let freed = Arc::new(tokio::sync::Notify::new());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let total = (spec.duration.as_secs_f64() * f64::from(spec.rate)).round() as u64;
    let period = Duration::from_secs_f64(1.0 / f64::from(spec.rate));
    let start = Instant::now();
    for i in 0..total {
        let due = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let (spec, pool, freed, tx) = (spec.clone(), pool.clone(), freed.clone(), tx.clone());
        tokio::spawn(async move {
            let body = spec.bodies[(i % spec.bodies.len() as u64) as usize].clone();
            let outcome =
                tokio::time::timeout(spec.timeout, one_request(&spec, &pool, &freed, body, due))
                    .await
                    .unwrap_or_else(|_| Outcome::Error("timeout".into()));
            let _ = tx.send(outcome);
        });
    }
    drop(tx);
    let mut report = LoadReport {
        sent: total,
        ..LoadReport::default()
    };
    while let Some(o) = rx.recv().await {
        match o {
            Outcome::Status(s, d) => {
                *report.statuses.entry(s).or_default() += 1;
                report.latencies.push(d);
            }
            Outcome::Error(e) => *report.errors.entry(e).or_default() += 1,
        }
    }
    report.elapsed = start.elapsed();
    report.latencies.sort_unstable();
    report.connections = pool.lock().unwrap().open;
    report
}

async fn one_request(
    spec: &LoadSpec,
    pool: &Mutex<Pool>,
    freed: &tokio::sync::Notify,
    body: String,
    due: Instant,
) -> Outcome {
    let mut conn = match checkout(spec, pool, freed).await {
        Ok(c) => c,
        Err(e) => return Outcome::Error(e),
    };
    let mut req = hyper::Request::post(spec.path.as_str()).header("host", spec.addr.to_string());
    for (k, v) in &spec.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = match req.body(Full::new(Bytes::from(body))) {
        Ok(r) => r,
        Err(e) => return Outcome::Error(format!("request: {e}")),
    };
    let result = async {
        conn.ready().await?;
        let resp = conn.send_request(req).await?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        Ok::<u16, hyper::Error>(status)
    }
    .await;
    match result {
        Ok(status) => {
            let took = due.elapsed();
            pool.lock().unwrap().idle.push((conn, Instant::now()));
            freed.notify_one();
            Outcome::Status(status, took)
        }
        Err(e) => {
            pool.lock().unwrap().open -= 1;
            freed.notify_one();
            Outcome::Error(if e.is_closed() {
                "connection closed".into()
            } else {
                e.to_string()
            })
        }
    }
}

/// An idle connection, a new one while fewer than `max_connections` exist,
/// or the next one to come free.
async fn checkout(
    spec: &LoadSpec,
    pool: &Mutex<Pool>,
    freed: &tokio::sync::Notify,
) -> Result<Conn, String> {
    loop {
        let wait = freed.notified();
        {
            let mut p = pool.lock().unwrap();
            while let Some((c, used)) = p.idle.pop() {
                if used.elapsed() < CLIENT_IDLE && !c.is_closed() {
                    return Ok(c);
                }
                p.open -= 1;
            }
            if p.open < spec.max_connections {
                p.open += 1;
                break;
            }
        }
        wait.await;
    }
    match connect(spec.addr).await {
        Ok(c) => Ok(c),
        Err(e) => {
            pool.lock().unwrap().open -= 1;
            freed.notify_one();
            Err(e)
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<Conn, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let r = LoadReport {
            latencies: (1..=100).map(Duration::from_millis).collect(),
            ..LoadReport::default()
        };
        assert_eq!(r.quantile(0.5), Duration::from_millis(50));
        assert_eq!(r.quantile(0.99), Duration::from_millis(99));
        assert_eq!(r.quantile(1.0), Duration::from_millis(100));
        assert_eq!(r.quantile(0.0), Duration::from_millis(1));
        assert_eq!(LoadReport::default().quantile(0.5), Duration::ZERO);
    }

    #[test]
    fn failures_count_non_2xx_and_errors() {
        let mut r = LoadReport::default();
        r.statuses.insert(200, 5);
        r.statuses.insert(204, 1);
        r.statuses.insert(503, 2);
        r.errors.insert("timeout".into(), 1);
        assert_eq!(r.failures(), 3);
    }

    /// Against a tiny HTTP/1.1 server on 127.0.0.1 that answers 200 to the
    /// first requests and 500 to every fifth: the rate is kept and the
    /// statuses are counted.
    #[test]
    fn a_local_server_is_loaded_at_the_rate_asked() {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = served.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(stream.try_clone().unwrap());
                    let mut w = stream;
                    loop {
                        let mut len = 0usize;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if r.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if let Some(v) =
                                line.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                len = v.trim().parse().unwrap();
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0; len];
                        r.read_exact(&mut body).unwrap();
                        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let status = if n % 5 == 4 { "500 Oops" } else { "200 OK" };
                        write!(w, "HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\nok").unwrap();
                    }
                });
            }
        });
        let report = run_load(&LoadSpec {
            addr,
            path: "/x".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            bodies: vec!["{}".into(), "[]".into()],
            rate: 200,
            duration: Duration::from_secs(1),
            max_connections: 16,
            timeout: Duration::from_secs(5),
        });
        assert_eq!(report.sent, 200, "{}", report.summary());
        assert_eq!(
            report.statuses.get(&200),
            Some(&160),
            "{}",
            report.summary()
        );
        assert_eq!(report.statuses.get(&500), Some(&40), "{}", report.summary());
        assert_eq!(report.failures(), 40);
        assert!(report.errors.is_empty(), "{}", report.summary());
        assert!(
            report.elapsed < Duration::from_secs(3),
            "{}",
            report.summary()
        );
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 200);
    }
}
