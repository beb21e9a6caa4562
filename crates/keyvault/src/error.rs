//! Library-level errors (startup, storage, crypto). HTTP-facing errors live in
//! [`crate::api_error`].

/// Errors from starting or running the vault service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
    /// The sealed state log is damaged somewhere other than a torn final record (or was
    /// sealed under another root key). Nothing was truncated or written.
    #[error("{}: state log is corrupt at byte offset {offset}: {reason}", path.display())]
    CorruptLog {
        path: std::path::PathBuf,
        offset: u64,
        reason: &'static str,
    },
    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("serialization error: {0}")]
    Json(#[from] serde_json::Error),
    /// The root key file (`root.key`) or a seal under it.
    #[error(transparent)]
    Sealed(#[from] sealed::Error),
}
