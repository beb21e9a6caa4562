//! Offline readers for backup copies: no [`Engine`](crate::Engine), no directory lock, no
//! writes. They authenticate sealed files (tables, key registries, WAL segments) wherever
//! they lie — a backup location, a staging directory — and never write plaintext anywhere.
//!
//! Errors name the file by the path given (and the block / record index where a block
//! failed), as the engine's own errors do; a wrong root key is [`Error::WrongKey`].

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::constant_time;

use crate::batch::WriteBatch;
use crate::cache::BlockCache;
use crate::crypto::header::FileCipher;
use crate::crypto::keys::{DataKey, KeyId};
use crate::crypto::registry::{parse_registry, registry_name};
use crate::crypto::{FileKind, RootKey};
use crate::error::{Error, Result};
use crate::fs::RealFs;
use crate::logfile::LogCursor;
use crate::table::Table;
use crate::wal::{DecodedBatch, decode_batch};

/// Data keys taken from one or more sealed key registries (the union of their keys).
/// Key material stays in zeroizing buffers; `Debug` shows key ids only.
#[derive(Clone, Default)]
pub struct OfflineKeys {
    keys: BTreeMap<KeyId, Arc<DataKey>>,
}

impl std::fmt::Debug for OfflineKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfflineKeys")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

pub(crate) fn root_data_key(root: &RootKey) -> Arc<DataKey> {
    Arc::new(DataKey {
        id: KeyId::ROOT,
        created_unix: 0,
        bytes: zeroize::Zeroizing::new(*root.bytes()),
    })
}

impl OfflineKeys {
    /// Authenticates each sealed registry `(file id, bytes)` under `root` (the id must match
    /// the one sealed in the header) and unions their data keys. The same key id carrying
    /// different key material in two registries is corruption (ids are never reused within
    /// a database, so the registries are from different databases or were tampered with).
    pub fn from_registries(root: &RootKey, registries: &[(u64, &[u8])]) -> Result<OfflineKeys> {
        let root = root_data_key(root);
        let mut keys: BTreeMap<KeyId, Arc<DataKey>> = BTreeMap::new();
        for &(id, bytes) in registries {
            let name = registry_name(id);
            let ring = parse_registry(bytes, id, &name, &root)?;
            for k in ring.keys {
                match keys.get(&k.id) {
                    Some(have) => {
                        if constant_time::verify_slices_are_equal(&have.bytes[..], &k.bytes[..])
                            .is_err()
                        {
                            return Err(Error::corruption(
                                name,
                                Some(0),
                                format!("data key {} differs from another registry's", k.id),
                            ));
                        }
                    }
                    None => {
                        keys.insert(k.id, k);
                    }
                }
            }
        }
        Ok(OfflineKeys { keys })
    }

    /// Ids of the keys held.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.keys.keys().copied().collect()
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn resolver(&self) -> impl Fn(KeyId) -> Option<Arc<DataKey>> + '_ {
        move |k| self.keys.get(&k).cloned()
    }
}

/// Authenticates sealed registry bytes of registry file `id` under `root`.
pub fn verify_registry(bytes: &[u8], id: u64, root: &RootKey) -> Result<()> {
    parse_registry(bytes, id, &registry_name(id), &root_data_key(root)).map(|_| ())
}

/// What [`verify_table`] found. Holds no user keys or values (they are plaintext).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSummary {
    /// File id (as sealed in the header).
    pub id: u64,
    /// Entries (all versions and tombstones).
    pub entries: u64,
    /// Largest sequence number in the table.
    pub max_seq: u64,
    /// File size in bytes.
    pub size: u64,
    /// Data blocks.
    pub blocks: usize,
    /// Data key the table is sealed under.
    pub key_id: KeyId,
}

pub(crate) fn display_name(path: &Path) -> String {
    path.display().to_string()
}

/// Opens (and authenticates header, footer, index and bloom filter of) the table with file
/// id `id` at `path`, without a block cache.
pub(crate) fn open_table(path: &Path, id: u64, keys: &OfflineKeys) -> Result<Table> {
    let resolve = keys.resolver();
    Table::open_at(
        Arc::new(RealFs),
        path.to_path_buf(),
        display_name(path),
        id,
        None,
        &resolve,
        Arc::new(BlockCache::new(0)),
    )
}

/// Authenticates every part of a table — header, EVERY data block, index, bloom filter,
/// footer — and checks its structure: blocks tile the file, entries are in (key asc, seq
/// desc) order within and across blocks, each block ends at its index key, and the entry
/// count, largest sequence number, key bounds and bloom filter match the footer.
pub fn verify_table(path: &Path, id: u64, keys: &OfflineKeys) -> Result<TableSummary> {
    let t = open_table(path, id, keys)?;
    t.sealed_regions()?;
    let name = t.name().to_string();
    let mut entries = 0u64;
    let mut max_seq = 0u64;
    let mut prev: Option<(Vec<u8>, u64)> = None;
    let mut first_key: Option<Vec<u8>> = None;
    for (i, h) in t.block_handles().enumerate() {
        let b = t.read_block_uncached(i)?;
        let bad = |d: &str| Error::corruption(&name, Some(i as u64), d.to_string());
        if b.len() == 0 {
            return Err(bad("empty data block"));
        }
        for j in 0..b.len() {
            let e = b.entry(j);
            if let Some((pk, ps)) = &prev {
                let ordered = match pk.as_slice().cmp(e.key) {
                    std::cmp::Ordering::Less => true,
                    std::cmp::Ordering::Equal => *ps > e.seq,
                    std::cmp::Ordering::Greater => false,
                };
                if !ordered {
                    return Err(bad("entries out of order"));
                }
            }
            if prev.as_ref().is_none_or(|(pk, _)| pk.as_slice() != e.key)
                && !t.bloom_may_contain(e.key)
            {
                return Err(Error::corruption(
                    &name,
                    Some(crate::table::BLOOM_IDX),
                    "bloom filter misses a key of the table",
                ));
            }
            if first_key.is_none() {
                first_key = Some(e.key.to_vec());
            }
            max_seq = max_seq.max(e.seq);
            entries += 1;
            prev = Some((e.key.to_vec(), e.seq));
        }
        let last = b.entry(b.len() - 1).key;
        if last != h.last_key {
            return Err(bad("last key differs from the index"));
        }
    }
    let footer = |d: &str| Error::corruption(&name, Some(crate::table::FOOTER_IDX), d.to_string());
    if entries != t.entries || max_seq != t.max_seq {
        return Err(footer(
            "entry count or max sequence differs from the blocks",
        ));
    }
    if first_key.as_deref() != Some(t.smallest.as_slice())
        || prev.as_ref().map(|(k, _)| k.as_slice()) != Some(t.largest.as_slice())
    {
        return Err(footer("key bounds differ from the blocks"));
    }
    Ok(TableSummary {
        id,
        entries,
        max_seq,
        size: t.size,
        blocks: t.num_blocks(),
        key_id: t.key_id(),
    })
}

/// One WAL record: a write batch with its first sequence number and commit time.
#[derive(Clone)]
pub struct WalRecord {
    /// Sequence number of the batch's first operation; operation *i* has `base_seq + i`.
    pub base_seq: u64,
    /// Commit time, Unix microseconds (non-decreasing along the WAL).
    pub commit_micros: u64,
    /// The operations (plaintext, in memory only).
    pub batch: WriteBatch,
}

impl WalRecord {
    /// Sequence number of the batch's last operation.
    pub fn last_seq(&self) -> u64 {
        self.base_seq + (self.batch.len() as u64).saturating_sub(1)
    }
}

impl std::fmt::Debug for WalRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalRecord")
            .field("base_seq", &self.base_seq)
            .field("commit_micros", &self.commit_micros)
            .field("ops", &self.batch.len())
            .finish()
    }
}

/// Reads the records of a WAL segment copy — a whole archived segment or a byte prefix of
/// a live one — with recovery's torn-tail rule: a garbled or cut tail after which nothing
/// authentic follows ends the iteration cleanly ([`torn_tail`](Self::torn_tail) then says
/// so); damage followed by an authentic record is `Error::Corruption { file, block }` with
/// the record index. Sequence numbers must increase and commit times must not decrease.
pub struct WalReader {
    name: String,
    buf: Vec<u8>,
    cipher: FileCipher,
    cursor: LogCursor,
    prev_last_seq: Option<u64>,
    prev_commit: u64,
    failed: bool,
}

impl std::fmt::Debug for WalReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalReader")
            .field("file", &self.name)
            .field("len", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl WalReader {
    /// Opens the copy of WAL segment `id` at `path` (reads it whole) and authenticates its
    /// header with `keys`.
    pub fn open(path: &Path, id: u64, keys: &OfflineKeys) -> Result<WalReader> {
        let buf = std::fs::read(path)?;
        WalReader::from_bytes(&display_name(path), buf, id, keys)
    }

    /// Like [`open`](Self::open) over bytes already in memory; `name` names them in errors.
    pub fn from_bytes(name: &str, buf: Vec<u8>, id: u64, keys: &OfflineKeys) -> Result<WalReader> {
        let resolve = keys.resolver();
        let cipher = FileCipher::open(&buf, FileKind::Wal, id, name, &resolve)?;
        Ok(WalReader {
            name: name.to_string(),
            buf,
            cipher,
            cursor: LogCursor::new(),
            prev_last_seq: None,
            prev_commit: 0,
            failed: false,
        })
    }

    /// True once iteration ended at a torn (cut or garbled) tail rather than at the end of
    /// the file. Meaningful after the iterator returned `None`.
    pub fn torn_tail(&self) -> bool {
        self.cursor.torn()
    }

    /// Bytes of the authentic prefix read so far (header + whole records).
    pub fn valid_len(&self) -> u64 {
        self.cursor.valid_len()
    }

    fn decode(&mut self, idx: u64, payload: &[u8]) -> Result<WalRecord> {
        let DecodedBatch {
            base_seq,
            commit_micros,
            ops,
        } = decode_batch(payload, &self.name, idx)?;
        let last = base_seq + (ops.len() as u64).saturating_sub(1);
        if self.prev_last_seq.is_some_and(|p| base_seq <= p) {
            return Err(Error::corruption(
                &self.name,
                Some(idx),
                "sequence numbers go backwards",
            ));
        }
        if commit_micros < self.prev_commit {
            return Err(Error::corruption(
                &self.name,
                Some(idx),
                "commit times go backwards",
            ));
        }
        self.prev_last_seq = Some(last);
        self.prev_commit = commit_micros;
        Ok(WalRecord {
            base_seq,
            commit_micros,
            batch: WriteBatch { ops },
        })
    }
}

impl Iterator for WalReader {
    type Item = Result<WalRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = match self.cursor.next(&self.cipher, &self.buf, &self.name)? {
            Ok((idx, payload)) => self.decode(idx, &payload),
            Err(e) => Err(e),
        };
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}
