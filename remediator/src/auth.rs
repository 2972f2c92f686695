//! Credentials of the HTTP API: the bearer token and basic-auth
//! credentials read from their files at start (and again on SIGHUP), and
//! the constant-time check of an `Authorization` header. The middleware that
//! answers 401 with them is [`crate::http::require_auth`]. (TLS client
//! certificates are enforced by the listener, see [`crate::server`].)

use base64::Engine as _;
use subtle::ConstantTimeEq;

/// Credentials the API accepts. Empty = no HTTP-level authentication
/// (only with `--insecure-no-auth` or when TLS client certificates are required).
#[derive(Clone, Default)]
pub struct Credentials {
    /// Bearer token.
    pub bearer: Option<Vec<u8>>,
    /// Basic auth user and password.
    pub basic: Option<(Vec<u8>, Vec<u8>)>,
    /// The peer token (`--peer-token-file`): accepted only on webhook
    /// requests another remediator forwarded, which are never forwarded
    /// again.
    pub peer: Option<Vec<u8>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field("basic", &self.basic.as_ref().map(|_| "<redacted>"))
            .field("peer", &self.peer.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Credentials {
    /// True when a header check is configured.
    pub fn is_configured(&self) -> bool {
        self.bearer.is_some() || self.basic.is_some()
    }

    /// Checks an `Authorization` header value in constant time per secret.
    pub fn check(&self, authorization: Option<&[u8]>) -> bool {
        if !self.is_configured() {
            return true;
        }
        let Some(v) = authorization else { return false };
        let Some(sp) = v.iter().position(|&b| b == b' ') else {
            return false;
        };
        let (scheme, rest) = (&v[..sp], v[sp + 1..].trim_ascii());
        if scheme.eq_ignore_ascii_case(b"bearer") {
            if let Some(tok) = &self.bearer {
                return bool::from(tok.as_slice().ct_eq(rest));
            }
        } else if scheme.eq_ignore_ascii_case(b"basic") {
            if let Some((user, pass)) = &self.basic {
                let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
                    return false;
                };
                let Some(colon) = decoded.iter().position(|&b| b == b':') else {
                    return false;
                };
                let u_ok = user.as_slice().ct_eq(&decoded[..colon]);
                let p_ok = pass.as_slice().ct_eq(&decoded[colon + 1..]);
                return bool::from(u_ok & p_ok);
            }
        }
        false
    }

    /// Checks an `Authorization` header value against the peer token (in
    /// constant time); false when there is none.
    pub fn check_peer(&self, authorization: Option<&[u8]>) -> bool {
        let (Some(tok), Some(v)) = (&self.peer, authorization) else {
            return false;
        };
        let Some(sp) = v.iter().position(|&b| b == b' ') else {
            return false;
        };
        let (scheme, rest) = (&v[..sp], v[sp + 1..].trim_ascii());
        scheme.eq_ignore_ascii_case(b"bearer") && bool::from(tok.as_slice().ct_eq(rest))
    }
}

/// Reads a bearer token file (trimmed; must not be empty).
pub fn read_token_file(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let t = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading token file {}: {e}", path.display()))?;
    let t = t.trim();
    anyhow::ensure!(!t.is_empty(), "token file {} is empty", path.display());
    Ok(t.as_bytes().to_vec())
}

/// Reads a basic auth file: one `user:password` line.
pub fn read_basic_auth_file(path: &std::path::Path) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let t = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading basic auth file {}: {e}", path.display()))?;
    let line = t
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    let (u, p) = line
        .split_once(':')
        .filter(|(u, p)| !u.is_empty() && !p.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "basic auth file {} must hold one user:password line",
                path.display()
            )
        })?;
    Ok((u.as_bytes().to_vec(), p.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_check() {
        let c = Credentials {
            bearer: Some(b"s3cret".to_vec()),
            basic: Some((b"am".to_vec(), b"pw:x".to_vec())),
            peer: Some(b"p33r".to_vec()),
        };
        let h = |v: &str| v.as_bytes().to_vec();
        assert!(c.check(Some(&h("Bearer s3cret"))));
        assert!(c.check(Some(&h("bearer s3cret"))));
        assert!(!c.check(Some(&h("Bearer s3cre"))));
        assert!(!c.check(Some(&h("Bearer"))));
        assert!(!c.check(None));
        let basic = base64::engine::general_purpose::STANDARD.encode("am:pw:x");
        assert!(c.check(Some(&h(&format!("Basic {basic}")))));
        let wrong = base64::engine::general_purpose::STANDARD.encode("am:pw");
        assert!(!c.check(Some(&h(&format!("Basic {wrong}")))));
        assert!(Credentials::default().check(None));
        // The peer token is its own credential, not an inbound one.
        assert!(!c.check(Some(&h("Bearer p33r"))));
        assert!(c.check_peer(Some(&h("Bearer p33r"))));
        assert!(!c.check_peer(Some(&h("Bearer s3cret"))));
        assert!(!Credentials::default().check_peer(Some(&h("Bearer p33r"))));
    }

    #[test]
    fn credential_files() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        std::fs::write(&t, "  tok\n").unwrap();
        assert_eq!(read_token_file(&t).unwrap(), b"tok");
        std::fs::write(&t, "\n").unwrap();
        assert!(read_token_file(&t).is_err());
        std::fs::write(&t, "am:pw\n").unwrap();
        assert_eq!(
            read_basic_auth_file(&t).unwrap(),
            (b"am".to_vec(), b"pw".to_vec())
        );
        std::fs::write(&t, "nocolon\n").unwrap();
        assert!(read_basic_auth_file(&t).is_err());
    }
}
