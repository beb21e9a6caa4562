//! Errors of the benchmark harness.

/// Everything that can stop a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("mongodb driver: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("certificate authority: {0}")]
    Pki(#[from] pki::Error),
    #[error("strongroom server process: {0}")]
    Server(String),
    #[error("postgresql cluster: {0}")]
    Cluster(String),
    #[error("workload: {0}")]
    Workload(String),
}

pub type Result<T> = std::result::Result<T, Error>;
