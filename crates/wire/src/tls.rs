//! TLS for the MongoDB listener.
//!
//! Strongroom is TLS-only by default: a [`crate::ServerConfig`] without a TLS
//! configuration is refused unless `insecure_plaintext` is set explicitly. Certificates
//! come from the development CA in `pki`; the rustls config always uses the aws-lc-rs
//! provider (built by `pki`).

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::Error;

/// The rustls server configuration for the MongoDB listener presenting `identity`.
///
/// `pki::server_config` offers ALPN `h2`/`http/1.1` for the HTTP services; MongoDB
/// drivers send no ALPN (or an unrelated one), and a server that insists on ALPN would
/// abort their handshakes, so the list is cleared here.
pub fn server_config(identity: &pki::CertifiedKey) -> Result<Arc<rustls::ServerConfig>, Error> {
    let shared = pki::server_config(identity, None).map_err(|e| Error::Tls(e.to_string()))?;
    let mut config = (*shared).clone();
    config.alpn_protocols.clear();
    Ok(Arc::new(config))
}

/// A byte stream the server speaks the protocol over: TLS or (only when configured
/// insecure) plain TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
