//! Strongroom's identity service: a stand-in for Microsoft Entra ID and the Azure
//! managed-identity endpoint, served over HTTPS.
//!
//! * [`server::Server`] runs the HTTPS service (OIDC discovery, JWKS, client-credentials
//!   token endpoint, App Service / IMDS managed-identity endpoints, principal liveness,
//!   an ARM-shaped admin API).
//! * [`service::Service`] is the transport-independent core: durable state in a data dir,
//!   the ES256 signing key sealed under a master key, token minting.
//! * [`verify::Verifier`] is what other services (key vault, control plane) use to accept
//!   these tokens: JWKS over HTTPS, signature/time/issuer/audience checks and a principal
//!   liveness check.
//! * [`client::AdminClient`] drives the admin API and token endpoints from Rust.
//!
//! Wire contract and file formats: `docs/identity.md`.

pub mod client;
pub mod crypto;
mod error;
pub mod model;
pub mod server;
pub mod service;
pub mod store;
pub mod token;
pub mod verify;

pub use error::Error;
pub use server::{Config, Server};
pub use service::{Bootstrap, Credentials, IdentitySelector, PrincipalInfo, Service};
pub use token::{Claims, TokenError};

/// A new random (v4) GUID in Entra's lower-case hyphenated form.
pub(crate) fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}
