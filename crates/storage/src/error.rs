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
    /// A previous durable write failed (a full disk, an fsync error, ...); the engine is
    /// read-only until it is reopened, because the state of the failed write on disk is
    /// unknown. Reads keep working. [`Poison::cause`] says what to wait for before a reopen.
    #[error("engine is read-only after a failed durable write: {0}")]
    Poisoned(Poison),
    /// A [`Durability::NoWait`](crate::Durability::NoWait) write would have had to wait;
    /// nothing was written.
    #[error("the write would have to wait")]
    WouldBlock,
}

/// What kind of failure made the engine read-only: it decides when a reopen may work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The file system is full (`ENOSPC`, or a quota: `EDQUOT`). A reopen works once
    /// space is freed.
    NoSpace,
    /// The device reported an I/O error (`EIO`). After a failed fsync the page cache's
    /// state is unknown, so only a reopen (WAL replay from disk) is safe; it may fail
    /// again while the device is bad.
    Io,
    /// Anything else (another errno, corruption found while writing, ...).
    Other,
}

impl Cause {
    /// Classifies an operating-system error.
    pub fn of_io(e: &io::Error) -> Cause {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Cause::NoSpace,
            Some(libc::EIO) => Cause::Io,
            _ => Cause::Other,
        }
    }

    /// A short name for logs and status reports: `noSpace`, `ioError`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::NoSpace => "noSpace",
            Cause::Io => "ioError",
            Cause::Other => "other",
        }
    }
}

/// Why the engine is read-only: the failure's [`Cause`], the operation that failed (`WAL
/// append`, `WAL fsync`, `WAL switch`, `flush`, `compaction`, `manifest write`, ...) and
/// the error's text (file names and errno; never keys or data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Poison {
    /// The kind of failure.
    pub cause: Cause,
    /// The operation that failed.
    pub operation: &'static str,
    /// The underlying error, as text.
    pub message: String,
}

impl Poison {
    /// The poison a failed `operation` leaves, classified from its error.
    pub fn from_error(operation: &'static str, e: &Error) -> Poison {
        Poison {
            cause: e.cause(),
            operation,
            message: e.to_string(),
        }
    }
}

impl std::fmt::Display for Poison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.cause {
            Cause::NoSpace => "out of disk space",
            Cause::Io => "I/O error",
            Cause::Other => "failure",
        };
        write!(f, "{what} during {}: {}", self.operation, self.message)
    }
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

    /// The [`Cause`] of an error: the errno of an I/O error, the recorded cause of a
    /// poisoned engine, [`Cause::Other`] for the rest.
    pub fn cause(&self) -> Cause {
        match self {
            Error::Io(e) => Cause::of_io(e),
            Error::Poisoned(p) => p.cause,
            _ => Cause::Other,
        }
    }

    /// True for [`Error::Corruption`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}
