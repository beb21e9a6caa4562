//! Physical backup primitives: the live WAL position, checkpoints and the sealed key
//! registry. Everything here hands out *ciphertext* locations and bytes; nothing is
//! decrypted. A backup agent copies checkpoint tables, the registry, archived segments and
//! a prefix of the live segment verbatim; [`crate::restore`] turns such copies into a new
//! database.
//!
//! The invariants a restore relies on:
//!
//! * Sequence numbers: memtables (and their WAL segments) hold consecutive, increasing
//!   ranges; tables only ever receive whole memtables, oldest first. So "everything in the
//!   tables" is exactly "every record with `seq <= covered_seq`", where `covered_seq` is the
//!   last sequence number assigned before the oldest unflushed memtable became active, and
//!   every later record is in that memtable's segment (`first_wal`) or a later one.
//! * Commit times: stamped under the writer lock as `max(now, floor)`, where `floor` is the
//!   previous commit time or one past the last `as_of` instant handed out. So commit times
//!   never decrease, and once `as_of_micros`/`taken_micros` is returned no later record can
//!   carry a time at or before it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::crypto::registry::registry_name;
use crate::engine::{Inner, wal_name};
use crate::error::{Error, Result};
use crate::manifest::CURRENT;
use crate::table::{Table, table_name};

/// Where the live WAL ends, taken under the writer lock (see [`crate::Engine::wal_position`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalPosition {
    /// Id of the live segment.
    pub segment: u64,
    /// Its path while it is live. Once retired it lies at `<dir>/archive/NNNNNN.wal` (archive
    /// mode), with the same bytes.
    pub path: PathBuf,
    /// Every record with `seq <= last_seq` lies within the first `len` bytes of `segment`
    /// or in an earlier segment. These bytes are fsynced before the call returns, so a
    /// power cut cannot take back anything a tail copy of `[0, len)` holds.
    pub len: u64,
    /// Closed segments not yet archived (ascending): complete, fsynced and immutable,
    /// holding records between the tables and `segment`. Each lies at `<dir>/NNNNNN.wal`
    /// until its memtable is flushed, then at `<dir>/archive/NNNNNN.wal` (archive mode) —
    /// a copier that finds one gone from the first place reads it from the second. Every
    /// older segment a restore needs is already in [`crate::Engine::archived_wal`].
    pub closed_segments: Vec<u64>,
    /// Last sequence number assigned.
    pub last_seq: u64,
    /// Commit time (Unix µs) of the last record appended (0 if none since creation).
    pub last_commit_micros: u64,
    /// Every record appended so far committed at or before this instant (Unix µs); every
    /// record appended later carries a strictly greater commit time.
    pub as_of_micros: u64,
}

/// One table of a [`Checkpoint`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointTable {
    /// Level (0..=6).
    pub level: u8,
    /// File id (needed to open it: the id is authenticated in the header and every block).
    pub id: u64,
    /// Size in bytes.
    pub size: u64,
    /// Where it lies; the file stays there while the [`Checkpoint`] is alive.
    pub path: PathBuf,
}

/// The sealed key registry as it is on disk (ciphertext under the root key).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedRegistry {
    /// Registry file id (authenticated in its header).
    pub id: u64,
    /// The file's bytes, exactly as on disk.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for SealedRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedRegistry")
            .field("id", &self.id)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// A consistent physical view of the database, taken without flushing: its tables plus
/// the WAL from `first_wal` on hold every record. The tables are pinned — not deleted,
/// even if compaction drops them from the live version — until the checkpoint is dropped
/// (within this process: reopening the database removes unreferenced tables).
pub struct Checkpoint {
    /// The table set, by level.
    pub tables: Vec<CheckpointTable>,
    /// Id of the key registry in force.
    pub registry_id: u64,
    /// That registry's sealed bytes; it holds every data key the tables use.
    pub registry: Vec<u8>,
    /// Every record with `seq <= covered_seq` is in `tables`; every record with a larger
    /// sequence number is in WAL segment `first_wal` or a later one (live or archived).
    pub covered_seq: u64,
    /// Largest commit time (Unix µs) of any record in `tables` (0 if none): a restore to an
    /// instant at or after it may start from this checkpoint.
    pub covered_commit_micros: u64,
    /// First WAL segment a restore from this checkpoint needs.
    pub first_wal: u64,
    /// When the checkpoint was taken (Unix µs; same rule as
    /// [`WalPosition::as_of_micros`]).
    pub taken_micros: u64,
    pinned: Vec<Arc<Table>>,
}

impl Clone for Checkpoint {
    fn clone(&self) -> Self {
        Checkpoint {
            tables: self.tables.clone(),
            registry_id: self.registry_id,
            registry: self.registry.clone(),
            covered_seq: self.covered_seq,
            covered_commit_micros: self.covered_commit_micros,
            first_wal: self.first_wal,
            taken_micros: self.taken_micros,
            pinned: self.pinned.clone(),
        }
    }
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("tables", &self.tables)
            .field("registry_id", &self.registry_id)
            .field("covered_seq", &self.covered_seq)
            .field("covered_commit_micros", &self.covered_commit_micros)
            .field("first_wal", &self.first_wal)
            .field("taken_micros", &self.taken_micros)
            .finish_non_exhaustive()
    }
}

impl Checkpoint {
    /// Total bytes of the checkpoint's tables.
    pub fn table_bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.size).sum()
    }
}

impl Inner {
    pub(crate) fn wal_position(&self) -> Result<WalPosition> {
        self.check_writable()?;
        let (pos, file) = {
            // writer -> manifest -> sv: a flush retires a segment under the manifest lock,
            // so each closed segment is either listed here or already archived.
            let mut w = self.writer.lock();
            self.check_writable()?;
            let as_of = w.as_of();
            let segment = w.wal.id();
            let closed_segments = {
                let _m = self.manifest.lock();
                let sv = self.sv.read();
                let mut ids: Vec<u64> = sv.imms.iter().map(|m| m.wal_id).collect();
                ids.sort_unstable();
                ids
            };
            let pos = WalPosition {
                segment,
                path: self.dir.join(wal_name(segment)),
                closed_segments,
                len: w.wal.bytes(),
                last_seq: self.last_seq.load(Ordering::Acquire),
                last_commit_micros: w.last_commit,
                as_of_micros: as_of,
            };
            (pos, w.wal.file())
        };
        // Outside the writer lock: writers keep appending while the bytes up to `len`
        // (and possibly more) reach the disk.
        self.durable("WAL fsync", || file.sync().map_err(Error::from))?;
        Ok(pos)
    }

    /// Reads the registry named by the manifest. Must be called with the manifest lock
    /// held (`state`): a registry file is only deleted after a manifest edit replaced it.
    fn read_current_registry(&self, registry: Option<u64>) -> Result<SealedRegistry> {
        let id = registry
            .ok_or_else(|| Error::corruption(CURRENT, None, "manifest names no key registry"))?;
        let bytes = self.fs.read_all(&self.dir.join(registry_name(id)))?;
        Ok(SealedRegistry { id, bytes })
    }

    pub(crate) fn key_registry(&self) -> Result<SealedRegistry> {
        self.check_open()?;
        let m = self.manifest.lock();
        self.read_current_registry(m.state.registry)
    }

    pub(crate) fn checkpoint(&self) -> Result<Checkpoint> {
        self.check_writable()?;
        // writer -> manifest -> sv: no memtable switch, flush install or registry change
        // can interleave, so tables, WAL boundary and registry agree.
        let mut w = self.writer.lock();
        let taken_micros = w.as_of();
        let m = self.manifest.lock();
        let sv = self.sv.read().clone();
        let reg = self.read_current_registry(m.state.registry)?;
        let covered_commit_micros = m.state.last_commit_micros;
        drop(m);
        drop(w);
        let oldest = sv.imms.last().unwrap_or(&sv.mem);
        let mut tables = Vec::new();
        let mut pinned = Vec::new();
        for (level, t) in sv.version.tables() {
            tables.push(CheckpointTable {
                level: level as u8,
                id: t.id,
                size: t.size,
                path: self.dir.join(table_name(t.id)),
            });
            pinned.push(t.clone());
        }
        Ok(Checkpoint {
            tables,
            registry_id: reg.id,
            registry: reg.bytes,
            covered_seq: oldest.prev_seq,
            covered_commit_micros,
            first_wal: oldest.wal_id,
            taken_micros,
            pinned,
        })
    }
}
