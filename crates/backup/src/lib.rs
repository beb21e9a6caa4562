//! Continuous, encrypted backups of a Strongroom cluster and point-in-time restore.
//!
//! A backup is physical: the storage engine's own sealed files, copied verbatim — tables
//! (immutable, copied once), key registries, and every WAL byte — plus a sealed catalog.
//! Nothing is decrypted to back up, and everything stays sealed under the cluster's data
//! keys, whose root is the cluster's root DEK; the location also holds that DEK wrapped
//! by the cluster's KEK, so revoking the KEK locks the backups exactly as it locks the
//! cluster.
//!
//! ```text
//! <location>/key/wrapped-dek.json   the root DEK, wrapped by the KEK (mirrored)
//!            catalog/CATALOG-<gen>  sealed catalog (two newest generations)
//!            tables/NNNNNN.sst      tables, verbatim
//!            keys/KEYS-NNNNNN       key registries, verbatim (sealed under the root DEK)
//!            wal/NNNNNN.wal         WAL segments, appended as the engine writes them
//! ```

pub mod agent;
pub mod catalog;
mod error;
pub mod export;
pub mod location;
pub mod restore;
pub mod verify;

pub use agent::{Agent, AgentConfig, BackupStatus, WRAPPED_KEY_NAME};
pub use catalog::{BackupKeys, Catalog};
pub use error::{Error, Result};
pub use export::{ExportKey, ExportSummary, decrypt_export, export};
pub use location::{DirStore, Store};
pub use restore::{Phase, RestoreProgress, RestoreSummary, restore, rfc3339};
pub use verify::{BackupInfo, VerifyReport, describe, verify};
