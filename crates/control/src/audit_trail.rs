//! The control plane's side of the security audit log: it is the log's only writer.
//!
//! Events come from the plane itself (clusters created, updated, deleted, restored), from
//! each runtime (Ready ⇄ Inaccessible, key re-wraps) and from the nodes (authentication
//! failures, user changes), which send them over their event pipe. The log is sealed
//! under a key derived from the control plane's master key; only an administrator of the
//! management API can read it back (`strongroom audit show`).

use std::str::FromStr;
use std::sync::Arc;

use audit::{AuditEvent, AuditRecord, EventKind, Outcome, ReadFilter};
use cluster::protocol::AuditNotice;

use crate::PlaneError;
use crate::plane::Plane;

pub(crate) const AUDIT_KEY_PURPOSE: &str = "strongroom audit log v1";

/// A notice for the audit log, as a runtime or node sends it.
pub(crate) fn notice(kind: EventKind, success: bool, detail: impl Into<String>) -> AuditNotice {
    AuditNotice {
        kind: kind.as_str().to_string(),
        principal: None,
        remote: None,
        success,
        detail: detail.into(),
    }
}

impl Plane {
    /// Appends an event; a failure to audit is logged loudly but does not fail the
    /// operation that caused it (the operation already happened).
    pub(crate) fn audit(&self, event: AuditEvent) {
        let Some(log) = self.audit_log() else { return };
        let log: Arc<audit::AuditLog> = log.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = log.append(&event) {
                tracing::error!(error = %e, kind = event.kind.as_str(), "audit event not recorded");
            }
        });
    }

    pub(crate) fn node_audit(&self, cluster: &str, notice: AuditNotice) {
        let kind = EventKind::from_str(&notice.kind).unwrap_or(EventKind::Other);
        let outcome = if notice.success {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        let mut event = AuditEvent::now(kind, outcome, notice.detail).cluster(cluster);
        event.principal = notice.principal;
        event.remote = notice.remote;
        self.audit(event);
    }

    /// Reads the audit log back, verifying its chain.
    pub async fn audit_records(&self, filter: ReadFilter) -> Result<Vec<AuditRecord>, PlaneError> {
        let Some(log) = self.audit_log() else {
            return Ok(Vec::new());
        };
        let dir = log.dir().to_path_buf();
        let key = self.audit_key();
        tokio::task::spawn_blocking(move || audit::AuditLog::read(&dir, &key, &filter))
            .await
            .map_err(|e| PlaneError::Internal(format!("audit task: {e}")))?
            .map_err(|e| PlaneError::Internal(format!("the audit log cannot be read: {e}")))
    }
}
