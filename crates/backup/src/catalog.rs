//! The backup catalog: which files make up which snapshot, which WAL bytes were
//! archived, and how far the backup can restore. One sealed JSON object per generation.
//!
//! The catalog is what makes the backup location tamper-evident: it records the size and
//! SHA-256 of every immutable file and of every appended WAL chunk, so a flipped,
//! truncated, swapped or replayed file is caught before its blocks are even opened (and
//! the storage engine's own per-block authentication catches it again after). The
//! catalog itself is AES-256-GCM sealed under a key derived from the cluster's root DEK,
//! with its generation in the AAD; a rolled-back catalog is caught by comparing its
//! generation with the newest one the control plane recorded.

use std::collections::BTreeMap;

use aws_lc_rs::hkdf;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::location::Store;

const FORMAT: u32 = 1;
const AAD_PREFIX: &[u8] = b"strongroom backup catalog v1";
const PREFIX: &str = "catalog/CATALOG-";

/// The keys a backup needs, all from the cluster's root DEK: the storage root key (opens
/// the key registries, hence every table and WAL segment) and the catalog key. Cloning
/// copies them into new zeroizing buffers (a node keeps a copy to restart its backups on
/// the engine it reopened after a storage failure).
#[derive(Clone)]
pub struct BackupKeys {
    pub(crate) root: storage::RootKey,
    pub(crate) catalog: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for BackupKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupKeys(<redacted>)")
    }
}

impl BackupKeys {
    pub fn from_root_dek(dek: &[u8; 32]) -> Result<BackupKeys> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"strongroom backup v1");
        let prk = salt.extract(dek);
        let mut catalog = Zeroizing::new([0u8; 32]);
        // Expanding 32 bytes from SHA-256 is within HKDF's output limit.
        if let Ok(okm) = prk.expand(&[b"catalog"], hkdf::HKDF_SHA256) {
            let _ = okm.fill(catalog.as_mut());
        }
        Ok(BackupKeys {
            root: storage::RootKey::from_slice(dek)?,
            catalog,
        })
    }
}

/// An immutable file copied into the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub size: u64,
    pub sha256: String,
}

/// One physical snapshot: the tables of a checkpoint, at their levels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// Every record in the tables committed at or before this instant (Unix µs), so the
    /// snapshot can start a restore to any instant from here on.
    pub taken_micros: u64,
    pub covered_seq: u64,
    /// The first WAL segment holding records after `covered_seq`.
    pub first_wal: u64,
    pub registry_id: u64,
    /// (level, table id).
    pub tables: Vec<(u8, u64)>,
}

/// An appended run of WAL bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub offset: u64,
    pub len: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalEntry {
    pub chunks: Vec<Chunk>,
    /// The engine retired the segment and every byte of it is archived.
    pub complete: bool,
}

impl WalEntry {
    pub fn len(&self) -> u64 {
        self.chunks.last().map(|c| c.offset + c.len).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub format: u32,
    pub generation: u64,
    pub cluster: String,
    pub tables: BTreeMap<u64, FileEntry>,
    pub registries: BTreeMap<u64, FileEntry>,
    pub snapshots: Vec<SnapshotEntry>,
    pub wal: BTreeMap<u64, WalEntry>,
    /// Every record committed at or before this instant is archived (Unix µs).
    pub restorable_until_micros: u64,
}

pub fn table_name(id: u64) -> String {
    format!("tables/{id:06}.sst")
}

pub fn registry_name(id: u64) -> String {
    format!("keys/KEYS-{id:06}")
}

pub fn wal_name(id: u64) -> String {
    format!("wal/{id:06}.wal")
}

fn catalog_name(generation: u64) -> String {
    format!("{PREFIX}{generation:012}")
}

fn aad(generation: u64) -> Vec<u8> {
    let mut aad = AAD_PREFIX.to_vec();
    aad.extend_from_slice(&generation.to_le_bytes());
    aad
}

impl Catalog {
    pub fn new(cluster: &str) -> Catalog {
        Catalog {
            format: FORMAT,
            cluster: cluster.to_string(),
            ..Catalog::default()
        }
    }

    /// The earliest instant a restore can reach: the oldest snapshot's.
    pub fn earliest_micros(&self) -> Option<u64> {
        self.snapshots.iter().map(|s| s.taken_micros).min()
    }

    /// The newest snapshot usable for a restore to `micros`.
    pub fn snapshot_for(&self, micros: u64) -> Option<&SnapshotEntry> {
        self.snapshots
            .iter()
            .filter(|s| s.taken_micros <= micros)
            .max_by_key(|s| s.taken_micros)
    }

    /// Seals and stores this catalog as its generation, then removes generations older
    /// than the previous one (kept so a crash mid-write still leaves a whole catalog).
    pub fn store(&self, store: &dyn Store, keys: &BackupKeys) -> Result<()> {
        let json =
            Zeroizing::new(serde_json::to_vec(self).map_err(|e| Error::Format(e.to_string()))?);
        let sealed = sealed::seal(&keys.catalog, &aad(self.generation), &json)?;
        store.put(&catalog_name(self.generation), &sealed)?;
        for name in store.list("catalog")? {
            if generation_of(&name).is_some_and(|g| g + 1 < self.generation) {
                store.delete(&name)?;
            }
        }
        Ok(())
    }

    /// Loads the newest catalog. `min_generation` is the newest generation known to have
    /// been written (kept outside the backup location); anything older is a rollback.
    pub fn load(
        store: &dyn Store,
        keys: &BackupKeys,
        min_generation: u64,
    ) -> Result<Option<Catalog>> {
        let mut generations: Vec<(u64, String)> = store
            .list("catalog")?
            .into_iter()
            .filter_map(|n| generation_of(&n).map(|g| (g, n)))
            .collect();
        generations.sort();
        let Some((generation, name)) = generations.pop() else {
            if min_generation > 0 {
                return Err(Error::RolledBack {
                    found: 0,
                    expected: min_generation,
                });
            }
            return Ok(None);
        };
        if generation < min_generation {
            return Err(Error::RolledBack {
                found: generation,
                expected: min_generation,
            });
        }
        let sealed = store.read(&name)?;
        let json = sealed::open(&keys.catalog, &aad(generation), &sealed)
            .ok_or_else(|| Error::CatalogTampered { file: name.clone() })?;
        let catalog: Catalog =
            serde_json::from_slice(&json).map_err(|e| Error::Format(format!("{name}: {e}")))?;
        if catalog.generation != generation || catalog.format != FORMAT {
            return Err(Error::CatalogTampered { file: name });
        }
        Ok(Some(catalog))
    }
}

fn generation_of(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?.parse().ok()
}

/// Checks a file in the store against its catalog entry.
pub(crate) fn check_file(store: &dyn Store, name: &str, entry: &FileEntry) -> Result<()> {
    let path = store.local_path(name)?;
    let size = store.size(name)?.ok_or_else(|| Error::Tampered {
        file: name.to_string(),
        detail: "missing".into(),
    })?;
    if size != entry.size {
        return Err(Error::Tampered {
            file: name.to_string(),
            detail: format!("{size} bytes, the catalog recorded {}", entry.size),
        });
    }
    let (_, digest) = crate::location::sha256_file(&path)?;
    if hex::encode(digest) != entry.sha256 {
        return Err(Error::Tampered {
            file: name.to_string(),
            detail: "contents differ from what was backed up (SHA-256 mismatch)".into(),
        });
    }
    Ok(())
}

/// Checks every archived chunk of a WAL segment.
pub(crate) fn check_wal(store: &dyn Store, id: u64, entry: &WalEntry) -> Result<()> {
    let name = wal_name(id);
    let path = store.local_path(&name)?;
    let size = store.size(&name)?.ok_or_else(|| Error::Tampered {
        file: name.clone(),
        detail: "missing".into(),
    })?;
    if size < entry.len() {
        return Err(Error::Tampered {
            file: name,
            detail: format!("{size} bytes, the catalog recorded {}", entry.len()),
        });
    }
    let mut expected_offset = 0;
    for chunk in &entry.chunks {
        if chunk.offset != expected_offset {
            return Err(Error::Format(format!("{name}: chunks are not contiguous")));
        }
        let bytes = crate::location::read_range(&path, chunk.offset, chunk.len)?;
        if hex::encode(crate::location::sha256(&bytes)) != chunk.sha256 {
            return Err(Error::Tampered {
                file: name,
                detail: format!(
                    "bytes {}..{} differ from what was archived (SHA-256 mismatch)",
                    chunk.offset,
                    chunk.offset + chunk.len
                ),
            });
        }
        expected_offset += chunk.len;
    }
    Ok(())
}
