//! The one HTTPS client builder: `reqwest` over rustls (aws-lc-rs), trusting exactly the
//! deployment's CA and nothing from the system, optionally presenting a client
//! certificate (how the key vault's firewall recognises a first-party trusted service).
//!
//! Every service-to-service call goes through a client built here: token requests to the
//! identity service, the Key Vault REST client, the admin clients and the CLI. One policy
//! for all of them: redirects are never followed (a bearer token must not follow one, and
//! none of the services redirects), reqwest's own retry layer is off (callers classify
//! failures and retry where it is safe), and pooled connections are kept 30 s so that a
//! periodic caller (the revalidation loop) reuses its TLS sessions instead of paying a
//! handshake per call.

use std::sync::Arc;
use std::time::Duration;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("TLS configuration: {0}")]
    Tls(#[from] pki::Error),
    #[error("HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

/// Time limits of a client's requests.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    /// A whole request, from connecting to the last byte of the response (30 s).
    pub timeout: Duration,
    /// Establishing a connection, TLS included (5 s).
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl ClientOptions {
    /// The same limit for the whole request and for connecting.
    pub fn timeout(timeout: Duration) -> ClientOptions {
        ClientOptions {
            timeout,
            connect_timeout: timeout,
        }
    }
}

/// A client that trusts exactly the CA in `ca_pem` and, when `identity` is given,
/// presents it as its client certificate.
pub fn https_client(
    ca_pem: &str,
    identity: Option<&pki::CertifiedKey>,
    options: ClientOptions,
) -> Result<reqwest::Client, ClientError> {
    let tls = match identity {
        Some(identity) => pki::client_config_with_identity(ca_pem, identity)?,
        None => pki::client_config(ca_pem)?,
    };
    https_client_with(tls, options)
}

/// A client over a rustls configuration the caller built (tests that need a particular
/// trust store or protocol set).
pub fn https_client_with(
    tls: Arc<rustls::ClientConfig>,
    options: ClientOptions,
) -> Result<reqwest::Client, ClientError> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(Arc::unwrap_or_clone(tls))
        .timeout(options.timeout)
        .connect_timeout(options.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .retry(reqwest::retry::never())
        .build()?)
}
