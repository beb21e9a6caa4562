//! `backup verify` and `backup list`: read every byte of a backup, authenticate it, and
//! say what is wrong — without writing any plaintext anywhere.

use std::collections::BTreeSet;

use serde::Serialize;
use storage::offline::{WalReader, verify_table};

use crate::catalog::{
    BackupKeys, Catalog, check_file, check_wal, registry_name, table_name, wal_name,
};
use crate::error::{Error, Result};
use crate::location::Store;
use crate::restore::offline_keys;

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub generation: u64,
    pub snapshots: usize,
    pub tables: usize,
    pub registries: usize,
    pub wal_segments: usize,
    pub wal_records: u64,
    pub bytes: u64,
    /// Damage: each names the file and what is wrong.
    pub problems: Vec<String>,
    /// Files the catalog does not know (left by a crash, or planted).
    pub unexpected_files: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the whole backup. A catalog that cannot be opened is an error; damage to
/// individual files is listed in the report (every file is checked, not just the first).
pub fn verify(store: &dyn Store, keys: &BackupKeys, min_generation: u64) -> Result<VerifyReport> {
    let catalog = Catalog::load(store, keys, min_generation)?.ok_or(Error::Empty)?;
    let mut report = VerifyReport {
        generation: catalog.generation,
        snapshots: catalog.snapshots.len(),
        ..VerifyReport::default()
    };
    let offline = match offline_keys(store, &catalog, keys) {
        Ok(k) => Some(k),
        Err(e) => {
            report.problems.push(e.to_string());
            None
        }
    };
    report.registries = catalog.registries.len();
    for (id, entry) in &catalog.tables {
        report.tables += 1;
        let name = table_name(*id);
        let outcome = check_file(store, &name, entry).and_then(|()| match &offline {
            Some(k) => verify_table(&store.local_path(&name)?, *id, k)
                .map(|_| ())
                .map_err(Error::from),
            None => Ok(()),
        });
        match outcome {
            Ok(()) => report.bytes += entry.size,
            Err(e) => report.problems.push(e.to_string()),
        }
    }
    for (id, entry) in &catalog.wal {
        report.wal_segments += 1;
        let outcome = check_wal(store, *id, entry).and_then(|()| {
            let Some(k) = &offline else { return Ok(0) };
            let mut records = 0u64;
            let mut last_seq = None;
            for record in WalReader::open(&store.local_path(&wal_name(*id))?, *id, k)? {
                let record = record?;
                if last_seq.is_some_and(|s| record.base_seq <= s) {
                    return Err(Error::Tampered {
                        file: wal_name(*id),
                        detail: "sequence numbers go backwards".into(),
                    });
                }
                last_seq = Some(record.base_seq);
                records += 1;
            }
            Ok(records)
        });
        match outcome {
            Ok(n) => {
                report.wal_records += n;
                report.bytes += entry.len();
            }
            Err(e) => report.problems.push(e.to_string()),
        }
    }
    for snapshot in &catalog.snapshots {
        for (_, id) in &snapshot.tables {
            if !catalog.tables.contains_key(id) {
                report.problems.push(format!(
                    "a snapshot names table {id}, which the catalog lacks"
                ));
            }
        }
    }
    let known: BTreeSet<String> = catalog
        .tables
        .keys()
        .map(|id| table_name(*id))
        .chain(catalog.registries.keys().map(|id| registry_name(*id)))
        .chain(catalog.wal.keys().map(|id| wal_name(*id)))
        .collect();
    for prefix in ["tables", "keys", "wal"] {
        for name in store.list(prefix)? {
            if !known.contains(&name) {
                report.unexpected_files.push(name);
            }
        }
    }
    Ok(report)
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotInfo {
    pub taken: String,
    pub tables: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupInfo {
    pub location: String,
    pub generation: u64,
    pub earliest_restore_time: Option<String>,
    pub latest_restore_time: Option<String>,
    pub snapshots: Vec<SnapshotInfo>,
    pub wal_segments: usize,
    pub wal_bytes: u64,
    pub table_bytes: u64,
}

/// What the backup holds (reads only the catalog).
pub fn describe(store: &dyn Store, keys: &BackupKeys, min_generation: u64) -> Result<BackupInfo> {
    let catalog = Catalog::load(store, keys, min_generation)?.ok_or(Error::Empty)?;
    let snapshots = catalog
        .snapshots
        .iter()
        .map(|s| SnapshotInfo {
            taken: crate::restore::rfc3339(s.taken_micros),
            tables: s.tables.len(),
            bytes: s
                .tables
                .iter()
                .filter_map(|(_, id)| catalog.tables.get(id).map(|t| t.size))
                .sum(),
        })
        .collect();
    Ok(BackupInfo {
        location: store.describe(),
        generation: catalog.generation,
        earliest_restore_time: catalog.earliest_micros().map(crate::restore::rfc3339),
        latest_restore_time: (catalog.restorable_until_micros > 0)
            .then(|| crate::restore::rfc3339(catalog.restorable_until_micros)),
        snapshots,
        wal_segments: catalog.wal.len(),
        wal_bytes: catalog.wal.values().map(|w| w.len()).sum(),
        table_bytes: catalog.tables.values().map(|t| t.size).sum(),
    })
}
