//! The crate's error type. Messages never carry secret material: secrets, hashes and key
//! bytes stay out of every variant.

use std::path::PathBuf;

/// Everything the identity service, its verifier and its client can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The state file exists but cannot be read back; the service refuses to start rather
    /// than re-bootstrap over it (that would mint a new signing key and orphan every token).
    #[error("state file {path} is corrupt: {reason}")]
    CorruptState { path: PathBuf, reason: String },
    /// The master key file is missing while state exists, has the wrong size, or is
    /// readable by group/other.
    #[error("master key {path}: {reason}")]
    MasterKey { path: PathBuf, reason: String },
    /// Another identity service (this or another process) already uses the data dir.
    #[error("data dir {path} is in use by another identity service")]
    Locked { path: PathBuf },
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
    #[error("{kind} '{id}' not found")]
    NotFound { kind: &'static str, id: String },
    #[error("invalid request: {0}")]
    InvalidInput(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// A background task failed (panicked or was cancelled).
    #[error("internal error: {0}")]
    Internal(String),
    /// An HTTP call made by the verifier or the admin client failed.
    #[error("HTTP request to {url} failed: {reason}")]
    Http { url: String, reason: String },
    /// The server answered a client call with an error status.
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
