//! Blocking HTTP helpers for talking to the daemons under test.

use std::net::TcpListener;
use std::time::Duration;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(REQUEST_TIMEOUT).build()
}

fn finish(result: Result<ureq::Response, ureq::Error>) -> Result<(u16, String), String> {
    match result {
        Ok(resp) => {
            let status = resp.status();
            let body = resp
                .into_string()
                .map_err(|e| format!("reading body: {e}"))?;
            Ok((status, body))
        }
        Err(ureq::Error::Status(status, resp)) => {
            Ok((status, resp.into_string().unwrap_or_default()))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// GET `url`; `Ok((status, body))` for any HTTP answer, `Err` on transport errors.
pub fn try_http_get(url: &str) -> Result<(u16, String), String> {
    finish(agent().get(url).call())
}

/// An HTTP answer with its `Content-Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` header, empty when there is none.
    pub content_type: String,
    /// The body.
    pub body: String,
}

/// GET `url` with extra request `headers`; `Err` only on transport errors.
pub fn try_http_get_with(url: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = match req.call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    let status = resp.status();
    let content_type = resp.header("Content-Type").unwrap_or_default().to_string();
    let body = resp
        .into_string()
        .map_err(|e| format!("reading body: {e}"))?;
    Ok(Reply {
        status,
        content_type,
        body,
    })
}

/// POST `body` to `url` with extra `headers`; `Err` only on transport errors.
pub fn try_http_post(
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String), String> {
    let mut req = agent().post(url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    finish(req.send_string(body))
}

/// GET `url` and return `(status, body)`; panics when no HTTP answer arrives.
pub fn http_get(url: &str) -> (u16, String) {
    try_http_get(url).unwrap_or_else(|e| panic!("GET {url} failed: {e}"))
}

/// POST `body` to `url` with `headers`, return `(status, body)`; panics when no
/// HTTP answer arrives.
pub fn http_post(url: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    try_http_post(url, headers, body).unwrap_or_else(|e| panic!("POST {url} failed: {e}"))
}

/// Waits until GET `url` answers with a 2xx status, polling every 100 ms.
///
/// `Err` carries the last status or transport error seen when `timeout` passed.
pub fn wait_http(url: &str, timeout: Duration) -> Result<(), String> {
    let mut last = String::from("never polled");
    let ok = crate::poll_until(timeout, Duration::from_millis(100), || {
        match try_http_get(url) {
            Ok((s, _)) if (200..300).contains(&s) => Some(()),
            Ok((s, body)) => {
                last = format!("status {s}: {}", body.chars().take(200).collect::<String>());
                None
            }
            Err(e) => {
                last = e;
                None
            }
        }
    });
    ok.ok_or_else(|| format!("{url} not ready after {timeout:?}: {last}"))
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}
