//! TLS with client certificates on a real listener: a client without a
//! certificate (or with one from another CA) is refused, one with a
//! certificate from the configured CA gets through. Certificates are made
//! in the test with rcgen.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use common::*;
use pidwarden_remediator::forward::PeerEntry;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.distinguished_name.push(DnType::CommonName, name);
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

fn leaf(ca: &Ca, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, names[0]);
    p.extended_key_usages = vec![usage];
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// GET /healthz over TLS; Ok(status line) or the error that refused it.
async fn get(
    addr: SocketAddr,
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => b
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.lines()
        .next()
        .map(str::to_string)
        .ok_or_else(|| "empty response".to_string())
}

#[tokio::test]
async fn client_certificates_are_required() {
    let dir = tempfile::tempdir().unwrap();
    let good_ca = ca("pidwarden test CA");
    let other_ca = ca("someone else");
    let (srv_cert, srv_key) = leaf(
        &good_ca,
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (cli_cert, cli_key) = leaf(
        &good_ca,
        &["alertmanager"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let (bad_cert, bad_key) = leaf(
        &other_ca,
        &["intruder"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let cfg = pidwarden_remediator::tls::server_config(
        &write(dir.path(), "server.pem", &srv_cert),
        &write(dir.path(), "server.key", &srv_key),
        Some(&write(dir.path(), "ca.pem", &good_ca.cert.pem())),
    )
    .unwrap();

    let h = Harness::new(fast_settings());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(pidwarden_remediator::server::serve(
        listener,
        h.app.clone(),
        Some(cfg),
        pidwarden_remediator::server::Limits::default(),
        async {
            let _ = stop_rx.await;
        },
    ));
    let ca_pem = good_ca.cert.pem();

    let ok = get(addr, &ca_pem, Some((&cli_cert, &cli_key))).await;
    assert_eq!(ok.as_deref(), Ok("HTTP/1.1 200 OK"), "{ok:?}");
    let none = get(addr, &ca_pem, None).await;
    assert!(none.is_err(), "a client without a certificate got {none:?}");
    let other = get(addr, &ca_pem, Some((&bad_cert, &bad_key))).await;
    assert!(
        other.is_err(),
        "a certificate from another CA got {other:?}"
    );

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}

#[test]
fn broken_tls_files_are_startup_errors() {
    let dir = tempfile::tempdir().unwrap();
    let c = ca("x");
    let (cert, _) = leaf(&c, &["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let (_, other_key) = leaf(&c, &["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let cert = write(dir.path(), "c.pem", &cert);
    let key = write(dir.path(), "k.pem", &other_key);
    let e = pidwarden_remediator::tls::server_config(&cert, &key, None).unwrap_err();
    assert!(format!("{e:#}").contains("do not match"), "{e:#}");
    let missing =
        pidwarden_remediator::tls::server_config(&dir.path().join("nope"), &key, None).unwrap_err();
    assert!(format!("{e:#} {missing:#}").contains("nope"));
}

/// A peer served over TLS: the forward verifies it against `--peer-ca`,
/// and a peer whose certificate another CA signed is not reached.
#[tokio::test]
async fn forwarding_to_a_peer_verifies_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let fleet_ca = ca("pidwarden fleet CA");
    let other_ca = ca("someone else");
    let (srv_cert, srv_key) = leaf(
        &fleet_ca,
        &["127.0.0.2"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let cfg = pidwarden_remediator::tls::server_config(
        &write(dir.path(), "peer.pem", &srv_cert),
        &write(dir.path(), "peer.key", &srv_key),
        None,
    )
    .unwrap();
    // The peer node runs the container.
    let h = Harness::new(fast_settings());
    let id = cid(60);
    h.runtime.add(&id, "gateway", &[]);
    h.engine.set(&id, 1, 0);
    let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(pidwarden_remediator::server::serve(
        listener,
        h.app.clone(),
        Some(cfg),
        pidwarden_remediator::server::Limits::default(),
        async {
            let _ = stop_rx.await;
        },
    ));
    let body = payload(&[A::firing(
        "Dup",
        "f1",
        &[
            ("id", &id),
            ("pidwarden_action", "kill-duplicates"),
            ("instance", "127.0.0.2:9917"),
        ],
    )]);
    let alert = pidwarden_remediator::alert::parse_payload(body.as_bytes())
        .unwrap()
        .alerts
        .remove(0);
    let peers = |ca_pem: &str, name: &str| {
        pidwarden_remediator::forward::Peers::new(
            vec![PeerEntry::parse("127.0.0.0/8").unwrap()],
            addr.port(),
            TOKEN.as_bytes().to_vec(),
            Some(
                pidwarden_remediator::tls::client_config(&write(dir.path(), name, ca_pem)).unwrap(),
            ),
            "127.0.0.1:9918".parse().unwrap(),
        )
        .unwrap()
    };

    let wrong = peers(&other_ca.cert.pem(), "other.pem");
    let url = wrong.url_for(&alert).unwrap();
    assert_eq!(
        url,
        format!("https://127.0.0.2:{}/api/v1/alerts", addr.port())
    );
    let refused = wrong.forward(&url, &alert).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("TLS")),
        "{refused:?}"
    );
    assert!(
        h.rows().is_empty(),
        "the peer acted on an unverified forward"
    );

    let right = peers(&fleet_ca.cert.pem(), "fleet.pem");
    let answer = right.forward(&url, &alert).await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.result.as_deref(), Some("pending"), "{answer:?}");
    h.idle().await;
    assert_eq!(h.engine.executions().len(), 1);

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}
