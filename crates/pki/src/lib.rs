//! Strongroom's certificate authority and TLS configurations.
//!
//! Every Strongroom service speaks TLS, on loopback included. `strongroom up` has no
//! public CA to lean on, so it keeps a small private CA in its data directory and issues
//! short-chain server certificates (and, for first-party services, client certificates)
//! from it. Clients trust exactly that CA; nothing here trusts the system roots.
//!
//! All rustls configurations are built with the aws-lc-rs provider explicitly, so no
//! process-wide default provider is ever needed (two providers in one process make
//! rustls refuse to guess).

mod ca;
mod config;

pub use ca::{CertifiedKey, DevCa, TRUSTED_SERVICE_URI};
pub use config::{client_config, client_config_with_identity, provider, server_config};

/// Everything that can go wrong while creating, loading or using certificates.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("certificate authority files in {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid PEM input: {0}")]
    Pem(String),
    #[error("TLS configuration rejected: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// True when `chain`'s leaf certificate names [`TRUSTED_SERVICE_URI`] among its URI SANs.
///
/// Call it only on a chain the TLS layer has already verified against the service CA
/// (as [`server_config`] with a `client_ca` does): this function reads, it does not verify.
pub fn is_trusted_service(chain: &[rustls::pki_types::CertificateDer<'_>]) -> bool {
    use x509_parser::extensions::GeneralName;
    let Some(leaf) = chain.first() else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    san.value
        .general_names
        .iter()
        .any(|name| matches!(name, GeneralName::URI(uri) if *uri == TRUSTED_SERVICE_URI))
}
