//! Fleet routing: an alert for a container that does not run on this node
//! is sent on, once, to the remediator of the node that runs it — the host
//! of the alert's `instance` label (the exporter that saw the container), on
//! `--peer-port` — with the peer token (`--peer-token-file`, never the
//! inbound token). Forwarding is off unless `--peer` lists the nodes it may
//! go to: the label only picks among them, it never chooses where a
//! connection goes. Without `--peer-ca` only loopback peers are reached (in
//! plain HTTP); with it every peer is reached over TLS verified against that
//! CA. The request carries [`FORWARDED_HEADER`]; a forwarded request is
//! never forwarded again, so a loop is impossible. The acting node
//! deduplicates as usual.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::Request;
use serde_json::json;
use tokio::net::TcpStream;

use crate::alert::{clip, Alert};
use crate::exchange::{exchange, ExchangeError};

/// Header marking a request forwarded by another remediator.
pub const FORWARDED_HEADER: &str = "x-pidwarden-forwarded";

/// How long one forward may take, connection included.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a peer that could not be reached is not tried again: alerts for
/// it meanwhile fail at once (retryable), instead of each waiting for
/// [`FORWARD_TIMEOUT`].
pub const PEER_BACKOFF: Duration = Duration::from_secs(15);

/// Forwards of one payload that may fail (unreachable, timed out) before
/// the rest of its forwards are answered at once as failed and retryable:
/// a payload naming many dead peers costs at most this many timeouts.
pub const MAX_FORWARD_FAILURES: u32 = 3;

/// Peers remembered as unreachable at most (then the memory starts over).
const MAX_DOWN: usize = 1024;

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Alertmanager (or an operator): may be forwarded once.
    Direct,
    /// Another remediator: never forwarded again.
    Forwarded,
}

/// One `--peer` entry: a host name, an address or a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEntry {
    /// A host name, matched exactly (ASCII case-insensitive) against the
    /// instance host; never resolved to decide whether a host is a peer.
    Host(String),
    /// An address (`/32` or `/128`) or a network in CIDR notation.
    Net(IpAddr, u8),
}

/// A `--peer` entry that is none of `HOST`, `IP`, `CIDR`.
#[derive(Debug, thiserror::Error)]
pub enum PeerEntryError {
    /// The part before the `/` is no address.
    #[error("--peer {entry:?}: {ip:?} is not an IP address")]
    NotAnAddress {
        /// The entry.
        entry: String,
        /// Its address part.
        ip: String,
    },
    /// The prefix length is out of range.
    #[error("--peer {entry:?}: prefix length must be 0 to {max}")]
    PrefixLength {
        /// The entry.
        entry: String,
        /// The largest length for its address family.
        max: u8,
    },
    /// Neither a host name nor an address (clipped).
    #[error("--peer {0:?} is not a host name, an IP address or a CIDR network")]
    Unrecognised(String),
}

/// Why an alert has no peer to be forwarded to.
#[derive(Debug, thiserror::Error)]
pub enum NoRoute {
    /// Its `instance` label names no host (clipped).
    #[error("the alert's instance label {0:?} names no node to forward to")]
    NoNode(String),
    /// Its host matches no `--peer` entry (clipped).
    #[error("the alert's instance host {0:?} is not a listed peer (--peer); no connection made")]
    NotListed(String),
    /// It is this node.
    #[error("the alert's instance is this node")]
    ThisNode,
}

/// Why forwarding an alert to a peer got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The peer could not be reached a moment ago: not tried again yet.
    #[error(
        "not tried: it could not be reached {ago_secs} s ago (tried again after {backoff_secs} s)"
    )]
    BackingOff {
        /// Seconds since it failed.
        ago_secs: u64,
        /// [`PEER_BACKOFF`] in seconds.
        backoff_secs: u64,
    },
    /// Forwards of this payload failed too often: not tried.
    #[error("not tried: {0} forwards of this payload failed already")]
    GaveUp(u32),
    /// No answer within [`FORWARD_TIMEOUT`] (seconds).
    #[error("no answer within {0} s")]
    Timeout(u64),
    /// The peer URL does not parse.
    #[error("peer URL {url}: {source}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: hyper::http::uri::InvalidUri,
    },
    /// The peer URL has no host.
    #[error("peer URL without host")]
    NoHost,
    /// The host name did not resolve.
    #[error("resolving {host}: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Plain HTTP goes to loopback peers only.
    #[error("{0} has no loopback address: plain HTTP only to loopback peers (--peer-ca enables TLS); no connection made")]
    NotLoopback(String),
    /// The TCP connection failed.
    #[error("connecting to {peer}: {source}")]
    Connect {
        /// `host:port`.
        peer: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The request could not be built.
    #[error("{0}")]
    Request(#[from] hyper::http::Error),
    /// The peer's name is no TLS server name.
    #[error("peer name {name}: {source}")]
    PeerName {
        /// The name.
        name: String,
        /// Why.
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// The TLS handshake failed.
    #[error("TLS with {peer}: {source}")]
    Tls {
        /// `host:port`.
        peer: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The request or its answer failed.
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
}

impl PeerEntry {
    /// Parses `HOST`, `IP` or `CIDR`.
    pub fn parse(s: &str) -> Result<PeerEntry, PeerEntryError> {
        let s = s.trim();
        if let Some((ip, len)) = s.split_once('/') {
            let ip: IpAddr = ip.parse().map_err(|_| PeerEntryError::NotAnAddress {
                entry: s.to_string(),
                ip: ip.to_string(),
            })?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = len
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| PeerEntryError::PrefixLength {
                    entry: s.to_string(),
                    max,
                })?;
            return Ok(PeerEntry::Net(ip.to_canonical(), len));
        }
        let bare = s.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            let ip = ip.to_canonical();
            return Ok(PeerEntry::Net(ip, if ip.is_ipv4() { 32 } else { 128 }));
        }
        if is_host_name(s) {
            return Ok(PeerEntry::Host(s.to_ascii_lowercase()));
        }
        Err(PeerEntryError::Unrecognised(clip(s, 80)))
    }

    /// Whether `host` (an instance host: a name, an address, `[v6]`)
    /// matches this entry. Names match names, addresses match addresses.
    pub fn matches(&self, host: &str) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match (self, bare.parse::<IpAddr>()) {
            (PeerEntry::Net(net, len), Ok(ip)) => in_net(ip.to_canonical(), *net, *len),
            (PeerEntry::Host(name), Err(_)) => name.eq_ignore_ascii_case(bare),
            _ => false,
        }
    }

    /// Whether every host this entry admits is on the loopback interface
    /// (`localhost`, 127.0.0.0/8, `::1`): the only peers reached in plain
    /// HTTP.
    pub fn is_loopback(&self) -> bool {
        match self {
            PeerEntry::Host(name) => name == "localhost",
            PeerEntry::Net(IpAddr::V4(ip), len) => *len >= 8 && ip.octets()[0] == 127,
            PeerEntry::Net(IpAddr::V6(ip), len) => *len == 128 && ip.is_loopback(),
        }
    }
}

impl std::fmt::Display for PeerEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerEntry::Host(h) => write!(f, "{h}"),
            PeerEntry::Net(ip, len) => write!(f, "{ip}/{len}"),
        }
    }
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn is_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// How this remediator reaches its peers: the nodes it may forward to and
/// the credentials it sends them.
pub struct Peers {
    listed: Vec<PeerEntry>,
    port: u16,
    token: std::sync::RwLock<Vec<u8>>,
    tls: Option<Arc<rustls::ClientConfig>>,
    own: SocketAddr,
    down: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("listed", &self.listed)
            .field("port", &self.port)
            .field("token", &"<redacted>")
            .field("tls", &self.tls.is_some())
            .field("own", &self.own)
            .finish()
    }
}

/// Why fleet routing cannot be configured as asked.
#[derive(Debug, thiserror::Error)]
pub enum PeerConfigError {
    /// No `--peer`.
    #[error("no --peer given: forwarding is off unless --peer lists the nodes it may forward to")]
    NoPeers,
    /// A peer that is not loopback, without `--peer-ca`.
    #[error("--peer {0} is not a loopback address: the peer token is sent in plain HTTP only to loopback peers; give --peer-ca (the CA the peers' TLS certificates chain to) or list only loopback peers")]
    PlainTextNotLoopback(String),
}

impl Peers {
    /// Fleet routing to the `listed` nodes on `port`, sending `token`, over
    /// TLS when `tls` is given; `own` is this remediator's listen address
    /// (never a peer). Refuses a peer that would get the token in plain
    /// text off the loopback interface.
    pub fn new(
        listed: Vec<PeerEntry>,
        port: u16,
        token: Vec<u8>,
        tls: Option<Arc<rustls::ClientConfig>>,
        own: SocketAddr,
    ) -> Result<Peers, PeerConfigError> {
        if listed.is_empty() {
            return Err(PeerConfigError::NoPeers);
        }
        if tls.is_none() {
            if let Some(p) = listed.iter().find(|p| !p.is_loopback()) {
                return Err(PeerConfigError::PlainTextNotLoopback(p.to_string()));
            }
        }
        Ok(Peers {
            listed,
            port,
            token: std::sync::RwLock::new(token),
            tls,
            own,
            down: Mutex::new(HashMap::new()),
        })
    }

    /// The nodes forwarding may go to.
    pub fn listed(&self) -> &[PeerEntry] {
        &self.listed
    }

    /// Replaces the token sent to peers (a reloaded `--peer-token-file`).
    pub fn set_token(&self, token: Vec<u8>) {
        *self.token.write().unwrap_or_else(|e| e.into_inner()) = token;
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
    /// The peer URL for `alert`, or why there is none: the host of its
    /// `instance` label must match a `--peer` entry, and not be this node.
    pub fn url_for(&self, alert: &Alert) -> Result<String, NoRoute> {
        let instance = alert
            .labels
            .get("instance")
            .map(String::as_str)
            .unwrap_or("");
        let host = instance_host(instance).ok_or_else(|| NoRoute::NoNode(clip(instance, 80)))?;
        if !self.listed.iter().any(|p| p.matches(&host)) {
            return Err(NoRoute::NotListed(clip(&host, 80)));
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            if ip.to_canonical() == self.own.ip().to_canonical() && self.port == self.own.port() {
                return Err(NoRoute::ThisNode);
            }
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        Ok(format!("{scheme}://{host}:{}/api/v1/alerts", self.port))
    }

    /// Sends `alert` alone to `url` (from [`Peers::url_for`]), marked
    /// forwarded; the peer's answer, or why it could not be had
    /// (unreachable, timed out, or so within the last [`PEER_BACKOFF`]).
    pub async fn forward(&self, url: &str, alert: &Alert) -> Result<PeerAnswer, ForwardError> {
        if let Some(ago) = self.down_since(url) {
            return Err(ForwardError::BackingOff {
                ago_secs: ago.as_secs(),
                backoff_secs: PEER_BACKOFF.as_secs(),
            });
        }
        let r = tokio::time::timeout(FORWARD_TIMEOUT, self.send(url, alert))
            .await
            .unwrap_or_else(|_| Err(ForwardError::Timeout(FORWARD_TIMEOUT.as_secs())));
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_err() {
            if down.len() >= MAX_DOWN {
                down.clear();
            }
            down.insert(url.to_string(), Instant::now());
        } else {
            down.remove(url);
        }
        r
    }

    fn down_since(&self, url: &str) -> Option<Duration> {
        let down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        let ago = down.get(url)?.elapsed();
        (ago < PEER_BACKOFF).then_some(ago)
    }

    /// The addresses of `host` this remediator may connect to: without TLS
    /// only loopback ones (a listed host name could resolve elsewhere).
    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ForwardError> {
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|source| ForwardError::Resolve {
                    host: host.to_string(),
                    source,
                })?
                .collect(),
        };
        if self.tls.is_some() {
            return Ok(addrs);
        }
        let plain: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| a.ip().to_canonical().is_loopback())
            .collect();
        if plain.is_empty() {
            return Err(ForwardError::NotLoopback(host.to_string()));
        }
        Ok(plain)
    }

    async fn send(&self, url: &str, alert: &Alert) -> Result<PeerAnswer, ForwardError> {
        let uri: hyper::Uri = url.parse().map_err(|source| ForwardError::Url {
            url: url.to_string(),
            source,
        })?;
        let host = uri.host().ok_or(ForwardError::NoHost)?.to_string();
        let port = uri.port_u16().unwrap_or(self.port);
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let addrs = self.addresses(&bare, port).await?;
        let tcp = TcpStream::connect(addrs.as_slice())
            .await
            .map_err(|source| ForwardError::Connect {
                peer: format!("{host}:{port}"),
                source,
            })?;
        let body = json!({
            "receiver": "pidwarden-peer", "status": "firing", "alerts": [alert],
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "", "version": "4", "groupKey": "forwarded",
            "truncatedAlerts": 0
        })
        .to_string();
        let mut auth = b"Bearer ".to_vec();
        auth.extend_from_slice(&self.token.read().unwrap_or_else(|e| e.into_inner()));
        let req = Request::post(uri.path())
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(FORWARDED_HEADER, "1")
            .header(
                hyper::header::AUTHORIZATION,
                hyper::header::HeaderValue::from_bytes(&auth).map_err(hyper::http::Error::from)?,
            )
            .body(Full::new(Bytes::from(body)))?;
        let (status, bytes) = match &self.tls {
            None => exchange(tcp, req).await?,
            Some(cfg) => {
                let name =
                    rustls::pki_types::ServerName::try_from(bare.clone()).map_err(|source| {
                        ForwardError::PeerName {
                            name: bare.clone(),
                            source,
                        }
                    })?;
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(cfg))
                    .connect(name, tcp)
                    .await
                    .map_err(|source| ForwardError::Tls {
                        peer: format!("{host}:{port}"),
                        source,
                    })?;
                exchange(tls, req).await?
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

    fn entries(list: &[&str]) -> Vec<PeerEntry> {
        list.iter().map(|s| PeerEntry::parse(s).unwrap()).collect()
    }

    #[test]
    fn peer_entries_parse_and_match() {
        let net = PeerEntry::parse("10.1.0.0/16").unwrap();
        assert!(net.matches("10.1.200.3") && !net.matches("10.2.0.1"));
        assert!(!net.matches("node-2"), "a name never matches a network");
        let one = PeerEntry::parse("127.0.0.2").unwrap();
        assert!(one.matches("127.0.0.2") && !one.matches("127.0.0.3"));
        let v6 = PeerEntry::parse("fd00::/8").unwrap();
        assert!(v6.matches("[fd12::1]") && !v6.matches("[fe80::1]"));
        assert!(PeerEntry::parse("[::1]").unwrap().matches("[::1]"));
        let host = PeerEntry::parse("Node-2.example").unwrap();
        assert!(host.matches("node-2.example") && !host.matches("node-2"));
        assert!(!host.matches("10.1.0.1"), "an address never matches a name");
        assert!(PeerEntry::parse("0.0.0.0/0").unwrap().matches("8.8.8.8"));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "a b",
            "x/8",
            "http://h",
            "-a.b",
            "h:1",
        ] {
            assert!(PeerEntry::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_loopback_peers_go_without_tls() {
        for lo in ["127.0.0.2", "127.0.0.0/8", "::1", "localhost"] {
            assert!(PeerEntry::parse(lo).unwrap().is_loopback(), "{lo}");
        }
        for not in ["127.0.0.0/7", "10.0.0.1", "::/0", "node-2", "0.0.0.0/0"] {
            assert!(!PeerEntry::parse(not).unwrap().is_loopback(), "{not}");
        }
        let own: SocketAddr = "127.0.0.1:9918".parse().unwrap();
        let e = Peers::new(
            entries(&["127.0.0.2", "10.0.0.0/8"]),
            9918,
            b"t".to_vec(),
            None,
            own,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("--peer 10.0.0.0/8") && e.to_string().contains("--peer-ca"),
            "{e}"
        );
        assert!(matches!(
            Peers::new(vec![], 9918, b"t".to_vec(), None, own),
            Err(PeerConfigError::NoPeers)
        ));
        Peers::new(entries(&["127.0.0.0/8"]), 9918, b"t".to_vec(), None, own).unwrap();
    }

    #[test]
    fn the_instance_must_name_a_listed_peer() {
        let own: SocketAddr = "127.0.0.1:9918".parse().unwrap();
        let peers = Peers::new(
            entries(&["127.0.0.2", "localhost"]),
            9918,
            b"t".to_vec(),
            None,
            own,
        )
        .unwrap();
        let alert = |instance: &str| Alert {
            status: "firing".into(),
            labels: [("instance".to_string(), instance.to_string())].into(),
            annotations: Default::default(),
            starts_at: String::new(),
            ends_at: String::new(),
            generator_url: String::new(),
            fingerprint: String::new(),
        };
        assert_eq!(
            peers.url_for(&alert("127.0.0.2:9917")).unwrap(),
            "http://127.0.0.2:9918/api/v1/alerts"
        );
        assert!(peers.url_for(&alert("localhost:9917")).is_ok());
        for unlisted in [
            "127.0.0.3:9917",
            "evil.example:9917",
            "10.0.0.1:1",
            "",
            "a/b",
        ] {
            assert!(peers.url_for(&alert(unlisted)).is_err(), "{unlisted}");
        }
        assert!(peers
            .url_for(&alert("127.0.0.3:1"))
            .unwrap_err()
            .to_string()
            .contains("not a listed peer"));
    }
}
