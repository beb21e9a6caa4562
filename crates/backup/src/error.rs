use std::path::Path;

/// What can go wrong with a backup. Messages name the file and say what is wrong with it;
/// they never carry key material or user data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("backup location {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] storage::Error),
    #[error(transparent)]
    Sealed(#[from] sealed::Error),
    /// A file in the backup location does not match what the sealed catalog recorded.
    #[error("backup file {file} is damaged or was replaced: {detail}")]
    Tampered { file: String, detail: String },
    /// The catalog fails authentication: altered, or sealed under another cluster's key.
    #[error("backup catalog {file} failed authentication (altered, or another cluster's key)")]
    CatalogTampered { file: String },
    #[error(
        "backup catalog generation {found} is older than the newest one recorded ({expected}): the backup location was rolled back"
    )]
    RolledBack { found: u64, expected: u64 },
    #[error("the backup location holds no backup yet")]
    Empty,
    #[error("{0}")]
    OutOfRange(String),
    #[error("backup catalog: {0}")]
    Format(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}
