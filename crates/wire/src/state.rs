//! The availability gate between the protocol and the database.
//!
//! The control plane decides whether the cluster's keys are usable. While they are, the
//! server holds a [`ClusterState::Ready`] database handle; when they stop being usable
//! (a customer-managed key was disabled, its vault deleted, ...), the control plane calls
//! [`crate::Server::make_inaccessible`], which swaps in [`ClusterState::Inaccessible`]:
//! the handle is dropped (so the storage engine and the keys it holds are released once
//! the last in-flight command finishes), every open connection is closed, and every
//! command on a new connection, `hello` included, gets an error naming the reason.

use std::sync::Arc;

use crate::backend::Db;
use crate::error::{CommandError, code};

/// Whether the database can be used.
pub enum ClusterState {
    Ready(Arc<Db>),
    Inaccessible { reason: String },
}

impl ClusterState {
    /// The handle, or the error every command gets while inaccessible.
    pub fn db(&self) -> Result<Arc<Db>, CommandError> {
        match self {
            ClusterState::Ready(db) => Ok(db.clone()),
            ClusterState::Inaccessible { reason } => Err(inaccessible_error(reason)),
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, ClusterState::Ready(_))
    }
}

/// `{ok: 0, code: 50000, codeName: "ClusterInaccessible", errmsg: "cluster is Inaccessible: <reason>"}`.
pub fn inaccessible_error(reason: &str) -> CommandError {
    CommandError::new(
        code::CLUSTER_INACCESSIBLE,
        format!("cluster is Inaccessible: {reason}"),
    )
}
