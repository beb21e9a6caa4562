//! Strongroom's control plane: the `mongoClusters` resource and its lifecycle.
//!
//! - [`model`]: the ARM-shaped resource; [`validate`]: the rules checked before anything
//!   is touched.
//! - [`plane`]: create/update/delete/revalidate, the SMK infrastructure ([`smk`]), and the
//!   sealed [`registry`] of clusters.
//! - [`runtime`]: one cluster's node process and its Ready ⇄ Inaccessible state machine,
//!   driven by the revalidation loop, which also restarts a crashed node at once (with
//!   the [`restart`] backoff when it keeps crashing).
//! - [`api`]: the HTTPS management API over all of it.

pub mod api;
mod audit_trail;
pub mod backups;
pub mod model;
pub mod plane;
pub mod registry;
pub mod restart;
pub mod runtime;
pub mod smk;
pub mod validate;

pub use plane::{BackupConfig, Config, Plane, RestoreStatus};

/// A failed management operation, mapped to an ARM error response by [`api`].
#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    #[error("{code}: {message}")]
    BadRequest { code: String, message: String },
    #[error("cluster {0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Kek(#[from] envelope::KekError),
    #[error(transparent)]
    Sealed(#[from] sealed::Error),
}
