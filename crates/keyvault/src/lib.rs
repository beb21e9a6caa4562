//! Strongroom key vault: a self-hosted service speaking the Azure Key Vault keys REST API
//! (data plane, api-version 7.0–7.6 and 2025-07-01) and an ARM-shaped management plane,
//! so that the official Azure SDKs work against it unmodified.
//!
//! Layout (private modules; what other crates use is re-exported or public below):
//! - `server`: listeners (one management listener, one data listener per vault), wiring.
//! - `data_plane` / `mgmt`: the two planes as axum routers — declared routes, the request
//!   pipeline as an envelope and extractors, one module per group of operations.
//! - `state`: the in-memory model backed by the sealed, crash-safe [`store`].
//! - [`crypto`]: RSA operations on aws-lc-rs, BYOK unwrapping.
//! - `auth` / [`authz`]: token verification and RBAC / access-policy decisions.
//! - [`audit`]: the append-only audit log.
//! - `rotation`: the scheduler (policy rotations, end-of-retention purges).
//! - [`client`]: a typed Rust client for both planes.
//!
//! Public for tests, benches, the fuzzer and the `strongroom` binary: [`Server`],
//! [`Config`], [`Error`], the token-verifier seam, and the data formats they need
//! ([`crypto`], [`jwk`], [`model`], [`store`], [`root_key`], [`clock`], [`audit`], [`authz`]'s
//! built-in roles).

mod api_error;
pub mod audit;
mod auth;
pub mod authz;
pub mod client;
pub mod clock;
mod config;
pub mod crypto;
mod data_plane;
mod duration;
mod error;
mod http_util;
pub mod jwk;
mod mgmt;
pub mod model;
pub mod root_key;
mod rotation;
mod server;
mod state;
pub mod store;

pub use auth::{AuthError, Claims, IdentityVerifier, TokenVerifier};
pub use config::Config;
pub use error::Error;
pub use server::{Ctx, Server};
pub use state::State;
