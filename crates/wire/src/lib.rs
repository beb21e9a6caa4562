//! wire — Strongroom's MongoDB wire-protocol server.
//!
//! Layout (in the style of mini-redis):
//! - [`message`]: the protocol's messages (`OP_MSG` with document sequences and
//!   CRC-32C checksums, legacy `OP_QUERY`/`OP_REPLY`, `OP_COMPRESSED`);
//! - [`compression`]: snappy, zlib and zstd for `OP_COMPRESSED`;
//! - [`connection`]: framing over a (TLS) stream with length checks;
//! - [`server`]: accept loop, connection limit, graceful shutdown, the availability gate;
//! - `cmd/`: one file per command family, dispatched with authentication and roles;
//! - [`auth`]: SCRAM-SHA-256, users in `admin.system.users`, built-in roles;
//! - [`cursor`]: the cursor registry (ids, batches, ownership, idle timeout);
//! - [`tls`]: the rustls configuration for the listener.
//!
//! Start a server with [`Server::start`] and a [`ServerConfig`].

pub mod audit;
pub mod auth;
mod backend;
pub mod client;
mod cmd;
pub mod compression;
pub mod connection;
pub mod cursor;
pub mod error;
pub mod message;
pub mod server;
pub mod state;
pub mod tls;

pub use backend::Db;
pub use cmd::{command_names, redacted_shape};
pub use error::{CommandError, Error, ProtocolError};
pub use server::{
    DEFAULT_IDLE_POLL, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CURSORS_PER_USER,
    DEFAULT_PRE_AUTH_TIMEOUT, Server, ServerConfig,
};
