//! One HTTP/1.1 request on a connection the caller opened (plain TCP or
//! TLS): the client side both peers' forwarding ([`crate::forward`]) and
//! Alertmanager notices ([`crate::notices`]) use. Bounded by the caller's
//! timeout.

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;

/// The exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The HTTP handshake failed.
    #[error("HTTP handshake: {0}")]
    Handshake(#[source] hyper::Error),
    /// Sending the request failed.
    #[error("sending: {0}")]
    Send(#[source] hyper::Error),
    /// Reading the answer failed.
    #[error("reading the answer: {0}")]
    Answer(#[source] hyper::Error),
}

/// Sends `req` on `io` and returns the answer's status and body.
pub async fn exchange<IO>(io: IO, req: Request<Full<Bytes>>) -> Result<(u16, Bytes), ExchangeError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(ExchangeError::Handshake)?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let answer = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(ExchangeError::Send)?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(ExchangeError::Answer)?
            .to_bytes();
        Ok((status, bytes))
    }
    .await;
    conn.abort();
    answer
}
