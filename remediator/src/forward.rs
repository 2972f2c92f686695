//! Fleet routing: an alert for a container that does not run on this node
//! is sent on, once, to the remediator of the node that runs it — the host
//! of the alert's `instance` label (the exporter that saw the container), on
//! `--peer-port` — with this remediator's outbound credentials. The request
//! carries [`FORWARDED_HEADER`]; a forwarded request is never forwarded
//! again, so a loop is impossible. The acting node deduplicates as usual.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;

use crate::alert::{clip, Alert};

/// Header marking a request forwarded by another remediator.
pub const FORWARDED_HEADER: &str = "x-pidwarden-forwarded";

/// How long one forward may take, connection included.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Alertmanager (or an operator): may be forwarded once.
    Direct,
    /// Another remediator: never forwarded again.
    Forwarded,
}

/// How this remediator reaches its peers.
#[derive(Clone)]
pub struct Peers {
    /// The port peers listen on.
    pub port: u16,
    /// The bearer token sent to them (none: no `Authorization`).
    pub token: Option<Vec<u8>>,
    /// TLS towards them, verified against `--peer-ca`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// This remediator's own listen address: never a peer.
    pub own: std::net::SocketAddr,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("port", &self.port)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.is_some())
            .field("own", &self.own)
            .finish()
    }
}

/// What a peer answered.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerAnswer {
    /// The peer's URL.
    pub url: String,
    /// HTTP status.
    pub status: u16,
    /// Its first result (`pending`, `duplicate`, …) when it gave one.
    pub result: Option<String>,
    /// Its reason, clipped.
    pub reason: Option<String>,
}

/// The host of an `instance` label (`host:port`, `[v6]:port` or a bare
/// host); `None` when there is none or it is not a plain host name or
/// address (no scheme, path, user or space ever reaches a URL).
pub fn instance_host(instance: &str) -> Option<String> {
    let host = if let Some(rest) = instance.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        h.parse::<std::net::Ipv6Addr>().ok()?;
        return Some(format!("[{h}]"));
    } else {
        match instance.rsplit_once(':') {
            Some((h, p)) if is_port(p) => h,
            Some(_) => return None,
            None => instance,
        }
    };
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    ok.then(|| host.to_string())
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

impl Peers {
    /// The peer URL for `alert`, or why there is none.
    pub fn url_for(&self, alert: &Alert) -> Result<String, String> {
        let instance = alert
            .labels
            .get("instance")
            .map(String::as_str)
            .unwrap_or("");
        let host = instance_host(instance).ok_or_else(|| {
            format!(
                "the alert's instance label {:?} names no node to forward to",
                clip(instance, 80)
            )
        })?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
            if ip == self.own.ip() && self.port == self.own.port() {
                return Err("the alert's instance is this node".into());
            }
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        Ok(format!("{scheme}://{host}:{}/api/v1/alerts", self.port))
    }

    /// Sends `alert` alone to `url`, marked forwarded; the peer's answer, or
    /// why it could not be had (unreachable, timed out).
    pub async fn forward(&self, url: &str, alert: &Alert) -> Result<PeerAnswer, String> {
        tokio::time::timeout(FORWARD_TIMEOUT, self.send(url, alert))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", FORWARD_TIMEOUT.as_secs())))
    }

    async fn send(&self, url: &str, alert: &Alert) -> Result<PeerAnswer, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("peer URL {url}: {e}"))?;
        let host = uri.host().ok_or("peer URL without host")?.to_string();
        let port = uri.port_u16().unwrap_or(self.port);
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tcp = TcpStream::connect((bare.as_str(), port))
            .await
            .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
        let body = json!({
            "receiver": "pidwarden-peer", "status": "firing", "alerts": [alert],
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "", "version": "4", "groupKey": "forwarded",
            "truncatedAlerts": 0
        })
        .to_string();
        let mut req = Request::post(uri.path())
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(FORWARDED_HEADER, "1");
        if let Some(t) = &self.token {
            let mut v = b"Bearer ".to_vec();
            v.extend_from_slice(t);
            req = req.header(
                hyper::header::AUTHORIZATION,
                hyper::header::HeaderValue::from_bytes(&v).map_err(|e| e.to_string())?,
            );
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let (status, bytes) = match &self.tls {
            None => exchange(TokioIo::new(tcp), req).await?,
            Some(cfg) => {
                let name = rustls::pki_types::ServerName::try_from(bare.clone())
                    .map_err(|e| format!("peer name {bare}: {e}"))?;
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(cfg))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
                exchange(TokioIo::new(tls), req).await?
            }
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let first = &v["results"][0];
        Ok(PeerAnswer {
            url: url.to_string(),
            status,
            result: first["result"].as_str().map(str::to_string),
            reason: first["reason"]
                .as_str()
                .or_else(|| v["error"].as_str())
                .map(|r| clip(r, 300)),
        })
    }
}

async fn exchange<IO>(io: IO, req: Request<Full<Bytes>>) -> Result<(u16, Bytes), String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    Ok((status, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_hosts() {
        assert_eq!(instance_host("node-2:9917").as_deref(), Some("node-2"));
        assert_eq!(
            instance_host("127.0.0.2:9917").as_deref(),
            Some("127.0.0.2")
        );
        assert_eq!(instance_host("[::1]:9917").as_deref(), Some("[::1]"));
        assert_eq!(instance_host("node-2").as_deref(), Some("node-2"));
        for bad in [
            "",
            ":9917",
            "http://x:1",
            "a/b:1",
            "x:port",
            "user@host:1",
            "a b:1",
            "[::1",
            "[zz]:1",
            "host:123456",
        ] {
            assert_eq!(instance_host(bad), None, "{bad}");
        }
    }
}
