//! rustls configurations for servers and clients, always on the aws-lc-rs provider.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::{CertifiedKey, Error};

/// The crypto provider every Strongroom TLS endpoint uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A server configuration presenting `identity`. With `client_ca`, clients MAY present a
/// certificate issued by that CA (it is verified when present, and the application
/// decides what an authenticated client is allowed); without, client certificates are
/// not requested. ALPN offers HTTP/2 and HTTP/1.1; protocols that do not use ALPN ignore it.
pub fn server_config(
    identity: &CertifiedKey,
    client_ca: Option<&str>,
) -> Result<Arc<ServerConfig>, Error> {
    let certs = parse_certs(&identity.cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| Error::Pem(format!("private key: {e}")))?;
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            let roots = Arc::new(root_store(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| Error::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration that trusts exactly the CA in `ca_pem`.
pub fn client_config(ca_pem: &str) -> Result<Arc<ClientConfig>, Error> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(ca_pem)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client configuration that trusts `ca_pem` and presents `identity` (mutual TLS).
pub fn client_config_with_identity(
    ca_pem: &str,
    identity: &CertifiedKey,
) -> Result<Arc<ClientConfig>, Error> {
    let certs = parse_certs(&identity.cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| Error::Pem(format!("private key: {e}")))?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(ca_pem)?)
        .with_client_auth_cert(certs, key)?;
    Ok(Arc::new(config))
}

fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Pem("no certificate found".into()));
    }
    Ok(certs)
}

fn root_store(ca_pem: &str) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(ca_pem)? {
        roots.add(cert)?;
    }
    Ok(roots)
}
