//! Strongroom key vault: a self-hosted service speaking the Azure Key Vault keys REST API
//! (data plane, api-version 7.4/7.5/7.6) and an ARM-shaped management plane, so that the
//! official Azure SDKs work against it unmodified.
//!
//! Layout:
//! - [`server`]: listeners (one management listener, one data listener per vault) and wiring.
//! - [`mgmt`] / [`data_plane`]: request handlers for the two planes.
//! - [`state`]: the in-memory model backed by the sealed, crash-safe [`store`].
//! - [`crypto`]: RSA operations on aws-lc-rs, BYOK unwrapping, backup sealing.
//! - [`auth`] / [`authz`]: token verification and RBAC / access-policy decisions.
//! - [`audit`]: the append-only audit log.
//! - [`client`]: a typed Rust client for both planes.

pub mod api_error;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod client;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod data_plane;
pub mod duration;
pub mod error;
mod http_util;
pub mod jwk;
pub mod mgmt;
pub mod model;
pub mod root_key;
pub mod rotation;
pub mod server;
pub mod state;
pub mod store;

pub use config::Config;
pub use error::Error;
pub use server::Server;
