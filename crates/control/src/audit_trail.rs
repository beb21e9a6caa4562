//! The control plane's side of the security audit log: it is the log's only writer.
//!
//! Events come from the plane itself (clusters created, updated, deleted, restored), from
//! each runtime (Ready ⇄ Inaccessible, key re-wraps) and from the nodes (authentication
//! failures, user changes), which send them over their event pipe. The log is sealed
//! under a key derived from the control plane's master key; only an administrator of the
//! management API can read it back (`strongroom audit show`).
//!
//! The log's hash chain shows any record edited, removed or reordered *before* the newest
//! one, but not a clean cut at the end. So the control plane keeps the chain head (seq, tag
//! and newest segment: [`audit::Anchor`]) in its own sealed state, `audit-head.sealed` in
//! its data directory, updated after every append; at start and on every read it checks the
//! log still reaches that head. A shortfall is recorded there as a finding (never cleared by
//! the service) and `audit show` reports it as tampering, naming what is missing.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use audit::{Anchor, AuditEvent, AuditLog, AuditRecord, EventKind, Outcome, ReadFilter};
use cluster::protocol::AuditNotice;
use parking_lot::Mutex;
use zeroize::Zeroizing;

use crate::PlaneError;
use crate::plane::Plane;

pub(crate) const AUDIT_KEY_PURPOSE: &str = "strongroom audit log v1";

/// File (in the control plane's data directory) holding the audit chain head.
pub(crate) const AUDIT_HEAD_FILE: &str = "audit-head.sealed";
const AUDIT_HEAD_MAGIC: &[u8] = b"SRAUDH1";

/// What the control plane remembers about its audit log, sealed under its master key.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct AuditHead {
    /// The newest durable record and segment the log is known to have reached.
    anchor: Option<Anchor>,
    /// Tampering found so far (a truncated tail, a replaced record), oldest first.
    #[serde(default)]
    findings: Vec<String>,
}

/// The audit log together with its externally kept chain head.
pub(crate) struct AuditTrail {
    log: Arc<AuditLog>,
    key: Zeroizing<[u8; 32]>,
    head_file: sealed::SealedJson<AuditHead>,
    /// Held while the head is compared and stored, so heads are stored in order.
    head: Mutex<AuditHead>,
}

/// Whether an audit error is the log falling short of (or disagreeing with) its head.
fn is_tail_tampering(e: &audit::Error) -> bool {
    matches!(
        e,
        audit::Error::Truncated { .. } | audit::Error::AnchorMismatch { .. }
    )
}

impl AuditTrail {
    /// Checks the log in `dir` against the head kept in `data_dir`, then opens it for
    /// appending (which starts a new segment) and stores the new head. A log that no longer
    /// reaches the stored head is opened anyway — refusing would also stop auditing — and
    /// the shortfall is kept as a finding that `audit show` reports.
    pub(crate) fn open(
        dir: &Path,
        data_dir: &Path,
        master: &sealed::MasterKey,
        key: Zeroizing<[u8; 32]>,
    ) -> Result<AuditTrail, PlaneError> {
        let head_file = sealed::SealedJson::<AuditHead>::new(
            data_dir.join(AUDIT_HEAD_FILE),
            master,
            AUDIT_HEAD_MAGIC,
        );
        let mut head = head_file.load()?.unwrap_or_default();
        if let Some(anchor) = &head.anchor
            && dir.exists()
        {
            match AuditLog::verify(dir, &key, Some(anchor)) {
                Ok(_) => {}
                Err(e) if is_tail_tampering(&e) => {
                    tracing::error!(error = %e, "security audit log tampering detected at start");
                    head.findings.push(format!("at start: {e}"));
                }
                Err(e) => return Err(PlaneError::Internal(format!("audit log: {e}"))),
            }
        }
        let log = Arc::new(
            AuditLog::open(dir, key.clone())
                .map_err(|e| PlaneError::Internal(format!("audit log: {e}")))?,
        );
        head.anchor = Some(log.head());
        head_file.store(&head)?;
        Ok(AuditTrail {
            log,
            key,
            head_file,
            head: Mutex::new(head),
        })
    }

    /// Appends an event and then advances the stored head (blocking: call it off the
    /// async runtime).
    fn append(&self, event: &AuditEvent) -> Result<(), PlaneError> {
        self.log
            .append(event)
            .map_err(|e| PlaneError::Internal(format!("audit log: {e}")))?;
        let now = self.log.head();
        let mut head = self.head.lock();
        let newer = head
            .anchor
            .as_ref()
            .is_none_or(|a| now.seq > a.seq || now.segment > a.segment);
        if newer {
            let mut next = head.clone();
            next.anchor = Some(now);
            self.head_file.store(&next)?;
            *head = next;
        }
        Ok(())
    }

    /// Reads records after checking the log against the stored head. Returns the records
    /// and every tampering finding (earlier ones and one found now). When the log falls
    /// short of its head, the records it still has are returned with the finding.
    fn read(&self, filter: ReadFilter) -> Result<(Vec<AuditRecord>, Vec<String>), PlaneError> {
        let dir = self.log.dir();
        let (anchor, mut findings) = {
            let head = self.head.lock();
            (head.anchor.clone(), head.findings.clone())
        };
        let checked = ReadFilter {
            anchor: anchor.clone(),
            ..filter.clone()
        };
        let records = match AuditLog::read(dir, &self.key, &checked) {
            Ok(r) => r,
            Err(e) if is_tail_tampering(&e) => {
                tracing::error!(error = %e, "security audit log tampering detected");
                let finding = e.to_string();
                let mut head = self.head.lock();
                if !head.findings.contains(&finding) {
                    let mut next = head.clone();
                    next.findings.push(finding);
                    self.head_file.store(&next)?;
                    *head = next;
                }
                findings = head.findings.clone();
                drop(head);
                AuditLog::read(dir, &self.key, &filter).map_err(|e| {
                    PlaneError::Internal(format!("the audit log cannot be read: {e}"))
                })?
            }
            Err(e) => {
                return Err(PlaneError::Internal(format!(
                    "the audit log cannot be read: {e}"
                )));
            }
        };
        Ok((records, findings))
    }
}

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
        let Some(trail) = self.audit_trail() else {
            return;
        };
        let trail = trail.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = trail.append(&event) {
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

    /// Reads the audit log back, verifying its chain and that it still reaches the chain
    /// head the control plane recorded. Returns the records and the tampering findings.
    pub async fn audit_records(
        &self,
        filter: ReadFilter,
    ) -> Result<(Vec<AuditRecord>, Vec<String>), PlaneError> {
        let Some(trail) = self.audit_trail() else {
            return Ok((Vec::new(), Vec::new()));
        };
        let trail = trail.clone();
        tokio::task::spawn_blocking(move || trail.read(filter))
            .await
            .map_err(|e| PlaneError::Internal(format!("audit task: {e}")))?
    }
}
