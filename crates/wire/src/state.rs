//! The availability gate between the protocol and the database.
//!
//! The control plane decides whether the cluster's keys are usable. While they are, the
//! server holds a [`ClusterState::Ready`] database handle; when they stop being usable
//! (a customer-managed key was disabled, its vault deleted, ...), the control plane calls
//! [`crate::Server::make_inaccessible`], which swaps in [`ClusterState::Inaccessible`]:
//! the handle is dropped (so the storage engine and the keys it holds are released once
//! the last in-flight command finishes), every open connection is closed, and every
//! command on a new connection, `hello` included, gets an error naming the reason.
//!
//! A storage failure (a full disk, an I/O error) makes the engine read-only; the node then
//! closes it and opens it again from disk. Meanwhile the gate is
//! [`ClusterState::Reopening`]: connections stay open and every command gets a retryable
//! `InterruptedAtShutdown` naming the failure, until [`crate::Server::make_ready`].

use std::sync::Arc;

use crate::backend::Db;
use crate::error::{CommandError, code};

/// Whether the database can be used.
pub enum ClusterState {
    Ready(Arc<Db>),
    Inaccessible {
        reason: String,
    },
    /// The storage engine is being closed and reopened after `reason` (see the module).
    Reopening {
        reason: String,
    },
}

impl ClusterState {
    /// The handle, or the error every command gets while inaccessible.
    pub fn db(&self) -> Result<Arc<Db>, CommandError> {
        match self {
            ClusterState::Ready(db) => Ok(db.clone()),
            ClusterState::Inaccessible { reason } => Err(inaccessible_error(reason)),
            ClusterState::Reopening { reason } => Err(CommandError::new(
                code::INTERRUPTED_AT_SHUTDOWN,
                format!("the storage engine is being reopened after {reason}; retry"),
            )),
        }
    }

    /// The storage failure being recovered from, while [`ClusterState::Reopening`].
    pub fn reopening(&self) -> Option<&str> {
        match self {
            ClusterState::Reopening { reason } => Some(reason),
            _ => None,
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
