//! Listen addresses as operators write them: `HOST:PORT`, `[V6]:PORT`, or
//! `:PORT` for every IPv4 address (as Go daemons such as Prometheus and
//! node_exporter accept it).

use std::net::{Ipv4Addr, SocketAddr};

/// Parses a listen address; `:9917` is `0.0.0.0:9917`.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?}: expected :PORT with a port from 0 to 65535"))?;
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
    }
    s.parse().map_err(|_| {
        format!(
            "{s:?}: expected HOST:PORT with an IP address (127.0.0.1:9917, [::1]:9917) or :PORT"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_operators_write() {
        for (input, want) in [
            (":9917", "0.0.0.0:9917"),
            ("0.0.0.0:9917", "0.0.0.0:9917"),
            ("127.0.0.1:9918", "127.0.0.1:9918"),
            ("[::1]:9918", "[::1]:9918"),
            ("[::]:9917", "[::]:9917"),
            (" :80 ", "0.0.0.0:80"),
        ] {
            assert_eq!(parse_listen(input).unwrap().to_string(), want, "{input}");
        }
        for bad in [
            "",
            ":",
            ":http",
            ":70000",
            "9917",
            "localhost:9917",
            "nowhere",
        ] {
            let e = parse_listen(bad).unwrap_err();
            assert!(e.contains("expected"), "{bad}: {e}");
        }
    }
}
