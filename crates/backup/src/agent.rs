//! The backup agent: runs inside a cluster's node next to its open engine and keeps the
//! backup location current. Each [`Agent::cycle`]:
//!
//! 1. mirrors the cluster's wrapped root DEK (so the backup is locked by the same KEK);
//! 2. appends every WAL byte written since the last cycle — the live segment's tail,
//!    segments rolled but not yet flushed, and segments the engine retired into its
//!    `archive/` — then lets the engine delete retired segments once the catalog that
//!    records them is durable;
//! 3. takes a physical snapshot when one is due, copying only tables the backup does not
//!    hold yet (tables are immutable, so a table copied once is never copied again);
//! 4. prunes snapshots, WAL and files that fell out of the retention window;
//! 5. writes a new catalog generation when anything changed.
//!
//! The WAL bytes are the engine's sealed records, copied verbatim: nothing is decrypted,
//! so the agent never handles plaintext.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::catalog::{
    BackupKeys, Catalog, Chunk, FileEntry, SnapshotEntry, registry_name, table_name, wal_name,
};
use crate::error::{Error, Result, io_error};
use crate::location::{Store, read_range, sha256};

/// Largest WAL run recorded as one chunk (a retired segment is appended in pieces).
const CHUNK: u64 = 4 << 20;
/// Where the wrapped root DEK is mirrored (the layout `envelope::WrappedKeyStore` reads).
pub const WRAPPED_KEY_NAME: &str = "key/wrapped-dek.json";

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// How often a physical snapshot is taken (WAL is archived every cycle regardless).
    pub snapshot_interval: Duration,
    /// How long a restore point stays available (Azure's default: 35 days).
    pub retention: Duration,
    /// How often an idle cluster still writes a catalog, so the restorable window keeps
    /// moving forward without any writes.
    pub idle_catalog_interval: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            snapshot_interval: Duration::from_secs(3600),
            retention: Duration::from_secs(35 * 24 * 3600),
            idle_catalog_interval: Duration::from_secs(30),
        }
    }
}

/// What a cycle leaves behind (reported to the control plane).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupStatus {
    pub generation: u64,
    pub earliest_micros: Option<u64>,
    pub restorable_until_micros: u64,
    pub snapshots: usize,
    pub bytes_copied: u64,
}

pub struct Agent {
    engine: storage::Engine,
    store: Arc<dyn Store>,
    keys: BackupKeys,
    catalog: Catalog,
    cfg: AgentConfig,
    wrapped_key: Option<PathBuf>,
    mirrored_key: Option<Vec<u8>>,
    registry_id: Option<u64>,
    last_store: Instant,
    /// When a snapshot was last considered (an idle cluster does not take identical ones).
    last_snapshot_attempt: Option<u64>,
    /// The engine's last sequence number at the last full cycle.
    last_seen_seq: Option<u64>,
    /// `as_of` of this cycle's WAL position.
    position_micros: u64,
}

pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Agent {
    /// Resumes from the newest catalog (refusing one older than `min_generation`) or
    /// starts an empty backup.
    pub fn start(
        engine: storage::Engine,
        store: Arc<dyn Store>,
        keys: BackupKeys,
        cluster: &str,
        cfg: AgentConfig,
        min_generation: u64,
        wrapped_key: Option<PathBuf>,
    ) -> Result<Agent> {
        let catalog = Catalog::load(store.as_ref(), &keys, min_generation)?
            .unwrap_or_else(|| Catalog::new(cluster));
        Ok(Agent {
            engine,
            store,
            keys,
            catalog,
            cfg,
            wrapped_key,
            mirrored_key: None,
            registry_id: None,
            last_store: Instant::now(),
            last_snapshot_attempt: None,
            last_seen_seq: None,
            position_micros: u64::MAX,
        })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// One pass; see the module documentation.
    pub fn cycle(&mut self) -> Result<BackupStatus> {
        // An idle cluster costs one atomic load per cycle: nothing was written, so there
        // is nothing to copy until a snapshot or the idle catalog write is due (a segment
        // the flush thread retires meanwhile waits in the archive until then).
        let seq = self.engine.last_sequence();
        if self.last_seen_seq == Some(seq)
            && !self.snapshot_due(now_micros())
            && self.last_store.elapsed() < self.cfg.idle_catalog_interval
        {
            return Ok(self.status(0));
        }
        self.last_seen_seq = Some(seq);
        let mut copied = 0u64;
        let mut changed = self.mirror_wrapped_key()?;
        let pos = self.engine.wal_position()?;
        self.position_micros = pos.as_of_micros;
        // Closed-but-unflushed segments were listed with the position; the engine then
        // moves a segment to its archive only after flushing it, so one that left the
        // data directory since is in the archive listing taken after.
        let data_dir = pos.path.parent().map(Path::to_path_buf).unwrap_or_default();
        let rolled: Vec<(u64, PathBuf)> = pos
            .closed_segments
            .iter()
            .map(|id| (*id, data_dir.join(format!("{id:06}.wal"))))
            .collect();
        let archived = self.engine.archived_wal()?;
        let mut complete_through_pos = true;
        for seg in &archived {
            let (n, completed) = self.copy_wal(seg.id, &seg.path, seg.len, true)?;
            copied += n;
            changed |= completed;
        }
        // A closed or live segment may move into the archive while it is read: then this
        // cycle cannot vouch for everything up to the position, and the next one will.
        let moved = |e: &Error| matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
        let mut sources: Vec<(u64, PathBuf, Option<u64>)> =
            rolled.into_iter().map(|(id, p)| (id, p, None)).collect();
        if pos.len > 0 {
            sources.push((pos.segment, pos.path.clone(), Some(pos.len)));
        }
        for (id, path, len) in sources {
            let len = match len {
                Some(len) => len,
                None => match std::fs::metadata(&path) {
                    Ok(m) => m.len(),
                    Err(_) => {
                        complete_through_pos = false;
                        continue;
                    }
                },
            };
            match self.copy_wal(id, &path, len, false) {
                Ok((n, _)) => copied += n,
                Err(e) if moved(&e) => complete_through_pos = false,
                Err(e) => return Err(e),
            }
        }
        changed |= copied > 0;
        let now = now_micros();
        if self.snapshot_due(now) {
            self.last_snapshot_attempt = Some(now);
            let n = self.snapshot()?;
            copied += n;
            changed |= n > 0 || self.catalog.snapshots.is_empty();
        } else if copied > 0 {
            // Keys rotate between snapshots; WAL under a new data key needs its registry.
            copied += self.mirror_registry()?;
        }
        changed |= self.prune(now)?;
        if complete_through_pos && pos.as_of_micros > self.catalog.restorable_until_micros {
            self.catalog.restorable_until_micros = pos.as_of_micros;
            // The window's end lives in the catalog: a cycle that only moves it (its bytes
            // were copied by the cycle before, which read the sequence number first) must
            // still store it, or the status would offer an instant a restore refuses.
            changed = true;
        }
        if changed || self.last_store.elapsed() >= self.cfg.idle_catalog_interval {
            self.catalog.generation += 1;
            self.catalog.store(self.store.as_ref(), &self.keys)?;
            self.last_store = Instant::now();
            // Only now is every archived byte recorded durably: the engine may let go.
            let done: Vec<u64> = archived
                .iter()
                .filter(|s| self.catalog.wal.get(&s.id).is_some_and(|w| w.complete))
                .map(|s| s.id)
                .collect();
            for id in done {
                self.engine.release_archived_wal(id)?;
            }
        }
        Ok(self.status(copied))
    }

    pub fn status(&self, bytes_copied: u64) -> BackupStatus {
        BackupStatus {
            generation: self.catalog.generation,
            earliest_micros: self.catalog.earliest_micros(),
            restorable_until_micros: self.catalog.restorable_until_micros,
            snapshots: self.catalog.snapshots.len(),
            bytes_copied,
        }
    }

    fn mirror_wrapped_key(&mut self) -> Result<bool> {
        let Some(path) = &self.wrapped_key else {
            return Ok(false);
        };
        let bytes = std::fs::read(path).map_err(io_error(path))?;
        if self.mirrored_key.as_deref() == Some(bytes.as_slice()) {
            return Ok(false);
        }
        let same_in_store = self
            .store
            .size(WRAPPED_KEY_NAME)?
            .is_some()
            .then(|| self.store.read(WRAPPED_KEY_NAME))
            .transpose()?
            .is_some_and(|b| b == bytes);
        if !same_in_store {
            self.store.put(WRAPPED_KEY_NAME, &bytes)?;
        }
        self.mirrored_key = Some(bytes);
        Ok(!same_in_store)
    }

    /// Appends bytes `[archived, len)` of a WAL segment; returns how many, and whether the
    /// segment just became complete (a catalog change even when no byte moved).
    fn copy_wal(&mut self, id: u64, path: &Path, len: u64, retired: bool) -> Result<(u64, bool)> {
        let entry = self.catalog.wal.entry(id).or_default();
        let mut at = entry.len();
        if len < at {
            return Err(Error::Tampered {
                file: path.display().to_string(),
                detail: format!("WAL segment shrank from {at} to {len} bytes"),
            });
        }
        let start = at;
        while at < len {
            let n = (len - at).min(CHUNK);
            let bytes = read_range(path, at, n)?;
            self.store.append(&wal_name(id), at, &bytes)?;
            entry.chunks.push(Chunk {
                offset: at,
                len: n,
                sha256: hex::encode(sha256(&bytes)),
            });
            at += n;
        }
        let newly_complete = retired && !entry.complete;
        if newly_complete && entry.chunks.len() > 1 {
            // A finished segment is recorded as one hash over all of it: the catalog is
            // rewritten whole on every change, so it must not grow by a chunk per cycle
            // for the whole retention window.
            let (len, digest) = crate::location::sha256_file(path)?;
            if len != at {
                return Err(Error::Tampered {
                    file: path.display().to_string(),
                    detail: format!("retired segment holds {len} bytes, {at} were archived"),
                });
            }
            entry.chunks = vec![Chunk {
                offset: 0,
                len,
                sha256: hex::encode(digest),
            }];
        }
        entry.complete |= retired;
        Ok((at - start, newly_complete))
    }

    fn snapshot_due(&self, now: u64) -> bool {
        match self.last_snapshot_attempt.or(self
            .catalog
            .snapshots
            .iter()
            .map(|s| s.taken_micros)
            .max())
        {
            None => true,
            Some(last) => now.saturating_sub(last) >= self.cfg.snapshot_interval.as_micros() as u64,
        }
    }

    /// Takes a physical snapshot now (also called on demand).
    pub fn snapshot(&mut self) -> Result<u64> {
        let checkpoint = self.engine.checkpoint()?;
        let tables: Vec<(u8, u64)> = checkpoint.tables.iter().map(|t| (t.level, t.id)).collect();
        if let Some(last) = self.catalog.snapshots.last()
            && last.covered_seq == checkpoint.covered_seq
            && last.tables == tables
        {
            // Nothing was flushed since: the last snapshot plus the WAL already covers it.
            return Ok(0);
        }
        let mut copied = 0;
        for t in &checkpoint.tables {
            if self.catalog.tables.contains_key(&t.id) {
                continue;
            }
            let (size, digest) = self.store.put_file(&table_name(t.id), &t.path)?;
            if size != t.size {
                return Err(Error::Tampered {
                    file: t.path.display().to_string(),
                    detail: format!("{size} bytes read, the engine recorded {}", t.size),
                });
            }
            copied += size;
            self.catalog.tables.insert(
                t.id,
                FileEntry {
                    size,
                    sha256: hex::encode(digest),
                },
            );
        }
        copied += self.store_registry(checkpoint.registry_id, &checkpoint.registry)?;
        self.catalog.snapshots.push(SnapshotEntry {
            // The newest commit in the tables: the snapshot can start any restore to an
            // instant at or after it (commit times rise with sequence numbers). An empty
            // database has none; then the moment it was taken.
            taken_micros: if checkpoint.covered_commit_micros > 0 {
                checkpoint.covered_commit_micros
            } else {
                // Empty tables: the WAL holds everything, so the snapshot serves any
                // instant the archived WAL reaches — from this cycle's position on.
                checkpoint.taken_micros.min(self.position_micros)
            },
            covered_seq: checkpoint.covered_seq,
            first_wal: checkpoint.first_wal,
            registry_id: checkpoint.registry_id,
            tables,
        });
        tracing::info!(
            cluster = %self.catalog.cluster,
            tables = checkpoint.tables.len(),
            bytes_copied = copied,
            "backup snapshot taken"
        );
        Ok(copied)
    }

    fn mirror_registry(&mut self) -> Result<u64> {
        let checkpoint = self.engine.checkpoint()?;
        if self.registry_id == Some(checkpoint.registry_id) {
            return Ok(0);
        }
        self.store_registry(checkpoint.registry_id, &checkpoint.registry)
    }

    fn store_registry(&mut self, id: u64, bytes: &[u8]) -> Result<u64> {
        self.registry_id = Some(id);
        if self.catalog.registries.contains_key(&id) {
            return Ok(0);
        }
        self.store.put(&registry_name(id), bytes)?;
        self.catalog.registries.insert(
            id,
            FileEntry {
                size: bytes.len() as u64,
                sha256: hex::encode(sha256(bytes)),
            },
        );
        Ok(bytes.len() as u64)
    }

    /// Drops what no restore point inside the retention window needs. The newest
    /// snapshot older than the window start is kept: it is what restores to the start.
    fn prune(&mut self, now: u64) -> Result<bool> {
        let window_start = now.saturating_sub(self.cfg.retention.as_micros() as u64);
        self.catalog.snapshots.sort_by_key(|s| s.taken_micros);
        let Some(base) = self
            .catalog
            .snapshots
            .iter()
            .rposition(|s| s.taken_micros < window_start)
        else {
            return Ok(false);
        };
        if base == 0 {
            return Ok(false);
        }
        self.catalog.snapshots.drain(..base);
        let first_wal = self
            .catalog
            .snapshots
            .iter()
            .map(|s| s.first_wal)
            .min()
            .unwrap_or(u64::MAX);
        let min_registry = self
            .catalog
            .snapshots
            .iter()
            .map(|s| s.registry_id)
            .min()
            .unwrap_or(u64::MAX);
        let live_tables: std::collections::BTreeSet<u64> = self
            .catalog
            .snapshots
            .iter()
            .flat_map(|s| s.tables.iter().map(|(_, id)| *id))
            .collect();
        let dead_wal: Vec<u64> = self
            .catalog
            .wal
            .range(..first_wal)
            .map(|(id, _)| *id)
            .collect();
        let dead_tables: Vec<u64> = self
            .catalog
            .tables
            .keys()
            .filter(|id| !live_tables.contains(id))
            .copied()
            .collect();
        let dead_registries: Vec<u64> = self
            .catalog
            .registries
            .range(..min_registry)
            .map(|(id, _)| *id)
            .collect();
        // The catalog forgets them first; a crash before the deletes leaves orphans that
        // `verify` reports and the next prune of the same files is harmless.
        for id in &dead_wal {
            self.catalog.wal.remove(id);
        }
        for id in &dead_tables {
            self.catalog.tables.remove(id);
        }
        for id in &dead_registries {
            self.catalog.registries.remove(id);
        }
        self.catalog.generation += 1;
        self.catalog.store(self.store.as_ref(), &self.keys)?;
        for id in dead_wal {
            self.store.delete(&wal_name(id))?;
        }
        for id in dead_tables {
            self.store.delete(&table_name(id))?;
        }
        for id in dead_registries {
            self.store.delete(&registry_name(id))?;
        }
        tracing::info!(cluster = %self.catalog.cluster, snapshots = base, "pruned backups past the retention window");
        Ok(true)
    }
}
