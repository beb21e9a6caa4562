//! The engine's error type. Corruption always names the file (and block when known) so an
//! operator can tell a flipped bit in one SST from a wrong root key.

use std::io;

/// Every failure the engine reports. Secrets never appear in any variant.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The root key does not open this database (key-check value mismatch).
    #[error("wrong root key for this database")]
    WrongKey,
    /// Authenticated data failed to verify or a structure is malformed.
    #[error("corruption in {file} (block {block:?}): {detail}")]
    Corruption {
        /// File name relative to the database directory.
        file: String,
        /// Block index inside the file (WAL/manifest: record index), if known.
        block: Option<u64>,
        /// What failed.
        detail: String,
    },
    /// An operating-system I/O error.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The engine was closed (or is being closed).
    #[error("engine is closed")]
    Closed,
    /// Another process (or handle) holds the directory lock.
    #[error("database directory is locked by another process: {0}")]
    Locked(String),
    /// A caller-supplied argument is out of range (key or value too large, bad key length).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A previous durable write failed (e.g. fsync error); the engine refuses further writes
    /// until it is reopened, because the state of the failed write on disk is unknown.
    #[error("engine is read-only after a failed durable write: {0}")]
    Poisoned(String),
    /// A [`Durability::NoWait`](crate::Durability::NoWait) write would have had to wait;
    /// nothing was written.
    #[error("the write would have to wait")]
    WouldBlock,
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds a [`Error::Corruption`].
    pub(crate) fn corruption(
        file: impl Into<String>,
        block: Option<u64>,
        detail: impl Into<String>,
    ) -> Self {
        Error::Corruption {
            file: file.into(),
            block,
            detail: detail.into(),
        }
    }

    /// True for [`Error::Corruption`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}
