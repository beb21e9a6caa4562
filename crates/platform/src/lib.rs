//! The platform under Strongroom's HTTPS services (identity, key vault, control plane):
//! the pieces each of them needs once, so that each exists once.
//!
//! - [`Server`] (`server`): the TLS + HTTP/1.1/2 accept loop with per-client
//!   [`Limits`], the [`Peer`] of each request and draining shutdown.
//! - [`https_client`] (`client`): the one `reqwest` client builder over the deployment's
//!   CA, optionally presenting the trusted-service client certificate.
//! - [`token`]: bearer tokens ([`AccessToken`]), how a managed identity is named
//!   ([`IdentitySelector`]) and the cached token sources the services call vaults with.
//! - [`arm`]: the Azure Resource Manager error shape `{"error":{"code","message"}}`
//!   every management API answers with, as an axum response.
//! - `conventions`: the request conventions the services share ([`ApiVersion`], [`ArmJson`]):
//!   the `api-version` query parameter and JSON bodies whose rejection is an ARM error.
//!
//! Durable secret files (the service master key, sealing, atomic replacement) are not
//! here but in `sealed`, one layer down: `pki` writes its CA key through `sealed`, and
//! this crate builds on `pki`, so `sealed` cannot be part of it without a cycle.

pub mod arm;
mod client;
mod conventions;
mod server;
pub mod token;

pub use client::{ClientError, ClientOptions, https_client, https_client_with};
pub use conventions::{ApiVersion, ArmJson, api_version, invalid_content};
pub use server::{Limits, Peer, Server};
pub use token::{AccessToken, IdentitySelector, TokenError, TokenSource};
