//! Point-in-time restore: a snapshot's tables, re-sealed under the target's own keys,
//! then the archived WAL replayed up to the requested instant.
//!
//! The target is a new engine directory under a new root key. Tables are re-sealed block
//! by block by the storage engine (fresh data key, file ids and salts), so two restores
//! of the same backup never share a (key, nonce) pair and the source's keys can open
//! nothing in the target. Every file is checked against the catalog's SHA-256 and every
//! block authenticated on the way: a damaged backup fails the restore, it never yields
//! wrong data.

use std::path::Path;
use std::time::Instant;

use storage::offline::{OfflineKeys, WalReader};
use storage::restore::RestoreBuilder;

use crate::catalog::{
    BackupKeys, Catalog, check_file, check_wal, registry_name, table_name, wal_name,
};
use crate::error::{Error, Result};
use crate::location::Store;

/// Where a restore is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Tables,
    Wal,
    Flush,
}

#[derive(Debug, Clone, Copy)]
pub struct RestoreProgress {
    pub phase: Phase,
    pub done_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RestoreSummary {
    pub snapshot_taken_micros: u64,
    pub tables: usize,
    pub table_bytes: u64,
    pub wal_records: u64,
    pub wal_bytes: u64,
    pub elapsed_ms: u64,
}

/// Formats Unix microseconds as RFC 3339 for messages.
pub fn rfc3339(micros: u64) -> String {
    let nanos = i128::from(micros) * 1000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{micros}µs"))
}

/// Loads every key registry the catalog lists (checked against its hash) into one ring.
pub(crate) fn offline_keys(
    store: &dyn Store,
    catalog: &Catalog,
    keys: &BackupKeys,
) -> Result<OfflineKeys> {
    let mut registries = Vec::new();
    for (id, entry) in &catalog.registries {
        let name = registry_name(*id);
        check_file(store, &name, entry)?;
        registries.push((*id, store.read(&name)?));
    }
    let refs: Vec<(u64, &[u8])> = registries
        .iter()
        .map(|(id, b)| (*id, b.as_slice()))
        .collect();
    Ok(OfflineKeys::from_registries(&keys.root, &refs)?)
}

/// Restores the backup in `store` (sealed under `source`) as it was at `point_in_time`
/// (Unix µs) into `target_dir` under `target_root`.
#[allow(clippy::too_many_arguments)]
pub fn restore(
    store: &dyn Store,
    source: &BackupKeys,
    min_generation: u64,
    point_in_time: u64,
    target_dir: &Path,
    target_root: storage::RootKey,
    options: storage::Options,
    progress: &mut dyn FnMut(RestoreProgress),
) -> Result<RestoreSummary> {
    let started = Instant::now();
    let catalog = Catalog::load(store, source, min_generation)?.ok_or(Error::Empty)?;
    let earliest = catalog.earliest_micros().ok_or(Error::Empty)?;
    if point_in_time < earliest || point_in_time > catalog.restorable_until_micros {
        return Err(Error::OutOfRange(format!(
            "{} is outside the restorable window of this backup: {} to {}",
            rfc3339(point_in_time),
            rfc3339(earliest),
            rfc3339(catalog.restorable_until_micros)
        )));
    }
    let snapshot = catalog
        .snapshot_for(point_in_time)
        .ok_or(Error::Empty)?
        .clone();
    let offline = offline_keys(store, &catalog, source)?;
    let wal_ids: Vec<u64> = catalog
        .wal
        .range(snapshot.first_wal..)
        .map(|(id, _)| *id)
        .collect();
    let table_total: u64 = snapshot
        .tables
        .iter()
        .filter_map(|(_, id)| catalog.tables.get(id).map(|t| t.size))
        .sum();
    let wal_total: u64 = wal_ids.iter().map(|id| catalog.wal[id].len()).sum();
    let total = table_total + wal_total;
    let mut summary = RestoreSummary {
        snapshot_taken_micros: snapshot.taken_micros,
        ..RestoreSummary::default()
    };

    let mut builder = RestoreBuilder::new(target_dir, target_root, options)?;
    let mut done = 0u64;
    progress(RestoreProgress {
        phase: Phase::Tables,
        done_bytes: 0,
        total_bytes: total,
    });
    for (level, id) in &snapshot.tables {
        let name = table_name(*id);
        let entry = catalog.tables.get(id).ok_or_else(|| {
            Error::Format(format!(
                "snapshot names table {id}, which the catalog lacks"
            ))
        })?;
        // The catalog's hash is checked on one core while the table is re-sealed (every
        // block authenticated) on the other.
        let path = store.local_path(&name)?;
        let (hashed, added) = std::thread::scope(|scope| {
            let hasher = scope.spawn(|| check_file(store, &name, entry));
            let added = builder.add_table(*level, &path, *id, &offline);
            (hasher.join(), added)
        });
        hashed.unwrap_or_else(|_| Err(Error::Format("the hashing thread panicked".into())))?;
        added?;
        done += entry.size;
        summary.tables += 1;
        summary.table_bytes += entry.size;
        progress(RestoreProgress {
            phase: Phase::Tables,
            done_bytes: done,
            total_bytes: total,
        });
    }
    let engine = builder.finish(snapshot.covered_seq)?;

    // Sequence numbers must run on without a gap from the snapshot: a missing segment or
    // record cannot pass unnoticed even though the catalog vouches for every byte.
    let mut next_seq = snapshot.covered_seq + 1;
    'segments: for id in wal_ids {
        let entry = &catalog.wal[&id];
        check_wal(store, id, entry)?;
        let path = store.local_path(&wal_name(id))?;
        for record in WalReader::open(&path, id, &offline)? {
            let record = record?;
            let count = record.batch.len() as u64;
            if record.base_seq + count <= next_seq {
                continue; // already in the snapshot's tables
            }
            if record.commit_micros > point_in_time {
                break 'segments;
            }
            if record.base_seq != next_seq {
                return Err(Error::Tampered {
                    file: wal_name(id),
                    detail: format!(
                        "the archived WAL jumps from sequence {next_seq} to {}",
                        record.base_seq
                    ),
                });
            }
            next_seq = record.base_seq + count;
            engine.write(record.batch, storage::Durability::Buffered)?;
            summary.wal_records += 1;
        }
        done += entry.len();
        summary.wal_bytes += entry.len();
        progress(RestoreProgress {
            phase: Phase::Wal,
            done_bytes: done,
            total_bytes: total,
        });
    }
    progress(RestoreProgress {
        phase: Phase::Flush,
        done_bytes: done,
        total_bytes: total,
    });
    engine.flush()?;
    engine.close()?;
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(summary)
}
