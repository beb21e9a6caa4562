//! Strongroom's security audit log: an encrypted, append-only, hash-chained record of auth
//! failures, user changes, key-state changes and Inaccessible/Ready transitions.
//!
//! * [`AuditLog::open`] / [`AuditLog::append`] / [`AuditLog::head`]: the single writer (the
//!   control plane). Appends are fdatasynced before they return; concurrent appends share
//!   fsyncs.
//! * [`AuditLog::read`] / [`AuditLog::verify`]: readers (`strongroom audit show`), safe to
//!   run next to the writer.
//!
//! On disk: segment files `audit-NNNNNN.log`, each an authenticated header followed by
//! AES-256-GCM records whose AAD binds (segment, seq, previous record's tag), so any edit,
//! deletion, reordering or duplication breaks the chain at a named position. The format is
//! described in `docs/audit.md` and defined in [`format`].

mod error;
mod event;
pub mod format;
mod log;
mod read;
mod scan;

pub use error::{Error, Result};
pub use event::{AuditEvent, EventKind, Outcome, UnknownKind, truncate_to_micros};
pub use format::MAX_EVENT_LEN;
pub use log::{AuditLog, AuditOptions, DEFAULT_SEGMENT_BYTES};
pub use read::{Anchor, AuditRecord, ReadFilter, VerifyReport};
