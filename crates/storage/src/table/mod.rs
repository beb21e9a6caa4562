//! Sorted string tables: immutable, sealed block by block (see [`builder`] for the layout).
//! A [`Table`] keeps its index and bloom filter in memory and reads data blocks through the
//! shared block cache. A table marked obsolete deletes its file when the last reference
//! (version, snapshot or iterator) is dropped.

pub(crate) mod bloom;
pub(crate) mod builder;
pub(crate) mod index;
pub(crate) mod iterator;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bloom::Bloom;
pub(crate) use builder::TableBuilder;
use index::{BlockIndex, BlockRef};

use crate::block::Block;
use crate::cache::BlockCache;
use crate::codec::Reader;
use crate::crypto::FileKind;
use crate::crypto::header::{FileCipher, HEADER_LEN, TAG_LEN};
use crate::crypto::keys::{DataKey, KeyId};
use crate::error::{Error, Result};
use crate::fs::{Fs, ReadableFile};

/// Reserved block indices (nonce/AAD) of the metadata blocks; data blocks count from 0.
pub(crate) const INDEX_IDX: u64 = u64::MAX - 2;
pub(crate) const BLOOM_IDX: u64 = u64::MAX - 1;
pub(crate) const FOOTER_IDX: u64 = u64::MAX;

pub(crate) fn table_name(id: u64) -> String {
    format!("{id:06}.sst")
}

/// Where the sealed metadata blocks sit in the file (offset, sealed length).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MetaLayout {
    pub(crate) index: (u64, u32),
    pub(crate) bloom: (u64, u32),
    pub(crate) footer: (u64, u32),
}

pub(crate) struct Table {
    pub(crate) id: u64,
    name: String,
    file: Arc<dyn ReadableFile>,
    cipher: FileCipher,
    index: BlockIndex,
    pub(crate) meta: MetaLayout,
    bloom: Bloom,
    pub(crate) smallest: Vec<u8>,
    pub(crate) largest: Vec<u8>,
    pub(crate) size: u64,
    pub(crate) entries: u64,
    pub(crate) max_seq: u64,
    cache: Arc<BlockCache>,
    fs: Arc<dyn Fs>,
    path: PathBuf,
    obsolete: AtomicBool,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("id", &self.id)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

fn read_sealed(
    file: &dyn ReadableFile,
    cipher: &FileCipher,
    off: u64,
    len: u32,
    idx: u64,
    is_last: bool,
) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    file.read_at(&mut buf, off)?;
    let n = cipher.open_block(idx, is_last, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

impl Table {
    /// Opens and authenticates table `id`. `expect_size` comes from the manifest; a
    /// different size on disk (truncation, or another file copied over) is corruption.
    pub(crate) fn open(
        fs: Arc<dyn Fs>,
        dir: &std::path::Path,
        id: u64,
        expect_size: Option<u64>,
        resolve: &dyn Fn(KeyId) -> Option<Arc<DataKey>>,
        cache: Arc<BlockCache>,
    ) -> Result<Table> {
        let name = table_name(id);
        let path = dir.join(&name);
        Table::open_at(fs, path, name, id, expect_size, resolve, cache)
    }

    /// Opens and authenticates the table with file id `id` stored at `path` (which need not
    /// be named after its id, e.g. a backup copy); `name` is what errors call the file.
    pub(crate) fn open_at(
        fs: Arc<dyn Fs>,
        path: PathBuf,
        name: String,
        id: u64,
        expect_size: Option<u64>,
        resolve: &dyn Fn(KeyId) -> Option<Arc<DataKey>>,
        cache: Arc<BlockCache>,
    ) -> Result<Table> {
        let file = fs.open(&path)?;
        let size = file.len()?;
        let bad = |block: Option<u64>, d: &str| Error::corruption(&name, block, d.to_string());
        if let Some(exp) = expect_size
            && exp != size
        {
            return Err(bad(
                None,
                &format!("file is {size} bytes, manifest says {exp}"),
            ));
        }
        if size < (HEADER_LEN + 4 + TAG_LEN) as u64 {
            return Err(bad(None, "file too short for an SST"));
        }
        let mut hdr = [0u8; HEADER_LEN];
        file.read_at(&mut hdr, 0)?;
        let cipher = FileCipher::open(&hdr, FileKind::Sst, id, &name, resolve)?;
        let mut t = [0u8; 4];
        file.read_at(&mut t, size - 4)?;
        let footer_len = u32::from_le_bytes(t);
        let data_end = size - 4;
        if footer_len as u64 > data_end - HEADER_LEN as u64 || (footer_len as usize) < TAG_LEN {
            return Err(bad(
                Some(FOOTER_IDX),
                "footer length out of range (truncated file?)",
            ));
        }
        let footer_off = data_end - footer_len as u64;
        let footer = read_sealed(&*file, &cipher, footer_off, footer_len, FOOTER_IDX, true)
            .map_err(|e| relabel(e, "footer"))?;
        let mut r = Reader::new(&footer);
        let fe = |e: crate::codec::DecodeError| bad(Some(FOOTER_IDX), e.0);
        let index_off = r.u64().map_err(fe)?;
        let index_len = r.u32().map_err(fe)?;
        let bloom_off = r.u64().map_err(fe)?;
        let bloom_len = r.u32().map_err(fe)?;
        let entries = r.u64().map_err(fe)?;
        let max_seq = r.u64().map_err(fe)?;
        let smallest = r.bytes().map_err(fe)?.to_vec();
        let largest = r.bytes().map_err(fe)?.to_vec();
        let in_range = |off: u64, len: u32| {
            off >= HEADER_LEN as u64 && off.checked_add(len as u64).is_some_and(|e| e <= data_end)
        };
        if !in_range(index_off, index_len) || !in_range(bloom_off, bloom_len) {
            return Err(bad(Some(FOOTER_IDX), "index or bloom handle out of range"));
        }
        let index_buf = read_sealed(&*file, &cipher, index_off, index_len, INDEX_IDX, false)
            .map_err(|e| relabel(e, "index"))?;
        let ie = |e: crate::codec::DecodeError| bad(Some(INDEX_IDX), e.0);
        let mut r = Reader::new(&index_buf);
        let n = r.u32().map_err(ie)? as usize;
        let mut index = BlockIndex::with_capacity(n.min(1 << 20));
        let mut prev_end = HEADER_LEN as u64;
        for _ in 0..n {
            let offset = r.u64().map_err(ie)?;
            let len = r.u32().map_err(ie)?;
            let last_key = r.bytes().map_err(ie)?;
            if offset != prev_end || !in_range(offset, len) || (len as usize) < TAG_LEN {
                return Err(bad(Some(INDEX_IDX), "block handle out of range"));
            }
            prev_end = offset + len as u64;
            index
                .push(offset, len, last_key)
                .ok_or_else(|| bad(Some(INDEX_IDX), "index keys too large"))?;
        }
        if n == 0 || entries == 0 {
            return Err(bad(Some(INDEX_IDX), "table has no entries"));
        }
        index.finish();
        let bloom_buf = read_sealed(&*file, &cipher, bloom_off, bloom_len, BLOOM_IDX, false)
            .map_err(|e| relabel(e, "bloom filter"))?;
        let bloom = Bloom::decode(bloom_buf).map_err(|e| bad(Some(BLOOM_IDX), e.0))?;
        Ok(Table {
            id,
            name,
            file,
            cipher,
            index,
            meta: MetaLayout {
                index: (index_off, index_len),
                bloom: (bloom_off, bloom_len),
                footer: (footer_off, footer_len),
            },
            bloom,
            smallest,
            largest,
            size,
            entries,
            max_seq,
            cache,
            fs,
            path,
            obsolete: AtomicBool::new(false),
        })
    }

    pub(crate) fn key_id(&self) -> KeyId {
        self.cipher.key_id()
    }

    pub(crate) fn num_blocks(&self) -> usize {
        self.index.len()
    }

    /// Marks the file for deletion once no one references this table.
    pub(crate) fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::SeqCst);
    }

    /// The handles of the data blocks, in file order.
    pub(crate) fn block_handles(&self) -> impl Iterator<Item = BlockRef<'_>> + '_ {
        self.index.iter()
    }

    /// True if the bloom filter may contain `key` (false means certainly absent).
    pub(crate) fn bloom_may_contain(&self, key: &[u8]) -> bool {
        self.bloom.may_contain(bloom::hash(key))
    }

    /// Every sealed block of the file in file order as `(block index, is_last, offset,
    /// sealed length)`: data blocks, index, bloom filter, footer. Checks that they tile the
    /// file exactly (header, blocks, 4-byte footer length, nothing else), which is what lets
    /// a restore re-seal the file block by block without re-encoding anything.
    pub(crate) fn sealed_regions(&self) -> Result<Vec<(u64, bool, u64, u32)>> {
        let mut out = Vec::with_capacity(self.index.len() + 3);
        for (i, h) in self.index.iter().enumerate() {
            out.push((i as u64, false, h.offset, h.len));
        }
        out.push((INDEX_IDX, false, self.meta.index.0, self.meta.index.1));
        out.push((BLOOM_IDX, false, self.meta.bloom.0, self.meta.bloom.1));
        out.push((FOOTER_IDX, true, self.meta.footer.0, self.meta.footer.1));
        let mut pos = HEADER_LEN as u64;
        for &(idx, _, off, len) in &out {
            if off != pos {
                return Err(Error::corruption(
                    &self.name,
                    Some(idx),
                    "sealed blocks do not tile the file",
                ));
            }
            pos = off + len as u64;
        }
        if pos + 4 != self.size {
            return Err(Error::corruption(
                &self.name,
                Some(FOOTER_IDX),
                "footer does not end the file",
            ));
        }
        Ok(out)
    }

    /// The name errors use for this file.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The sealing context (and subkey) of this file.
    pub(crate) fn cipher(&self) -> &FileCipher {
        &self.cipher
    }

    /// Reads, authenticates and decodes data block `i` without touching the cache (offline
    /// verification must not leave plaintext in a shared cache).
    pub(crate) fn read_block_uncached(&self, i: usize) -> Result<Block> {
        let idx = i as u64;
        let h = self
            .index
            .get(i)
            .ok_or_else(|| Error::corruption(&self.name, Some(idx), "no such data block"))?;
        let plain = read_sealed(&*self.file, &self.cipher, h.offset, h.len, idx, false)?;
        Block::decode(plain).map_err(|e| Error::corruption(&self.name, Some(idx), e.0))
    }

    /// Data block `i`, from the cache or from disk; `fill_cache` keeps a block read from
    /// disk in the cache.
    pub(crate) fn read_block(&self, i: usize, fill_cache: bool) -> Result<Arc<Block>> {
        let idx = i as u64;
        if let Some(b) = self.cache.get(self.id, idx) {
            return Ok(b);
        }
        let h = self
            .index
            .get(i)
            .ok_or_else(|| Error::corruption(&self.name, Some(idx), "no such data block"))?;
        let plain = read_sealed(&*self.file, &self.cipher, h.offset, h.len, idx, false)?;
        let b = Arc::new(
            Block::decode(plain).map_err(|e| Error::corruption(&self.name, Some(idx), e.0))?,
        );
        if fill_cache {
            self.cache.insert(self.id, idx, b.clone());
        }
        Ok(b)
    }

    /// First block whose last key is >= key (or > key when `exclusive`).
    pub(crate) fn find_block(&self, key: &[u8], exclusive: bool) -> usize {
        self.index.find(key, exclusive)
    }

    pub(crate) fn overlaps(&self, lo: &[u8], hi: &[u8]) -> bool {
        self.largest.as_slice() >= lo && self.smallest.as_slice() <= hi
    }

    /// Newest version of `key` (whose [`bloom::hash`] is `hash`) with seq <= `snap`:
    /// Some(None) is a tombstone.
    pub(crate) fn get(&self, key: &[u8], hash: u64, snap: u64) -> Result<Option<Option<Vec<u8>>>> {
        if key < self.smallest.as_slice() || key > self.largest.as_slice() {
            return Ok(None);
        }
        if !self.bloom.may_contain(hash) {
            return Ok(None);
        }
        let mut bi = self.find_block(key, false);
        while bi < self.index.len() {
            let b = self.read_block(bi, true)?;
            let pos = b.seek(key, snap);
            if pos < b.len() {
                let e = b.entry(pos);
                return Ok(if e.key == key {
                    Some(e.value.map(|v| v.to_vec()))
                } else {
                    None
                });
            }
            bi += 1;
        }
        Ok(None)
    }
}

fn relabel(e: Error, what: &str) -> Error {
    match e {
        Error::Corruption {
            file,
            block,
            detail,
        } => Error::Corruption {
            file,
            block,
            detail: format!("{what}: {detail}"),
        },
        other => other,
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::SeqCst) {
            self.cache.evict_file(self.id, self.num_blocks() as u64);
            if let Err(e) = self.fs.remove(&self.path) {
                tracing::warn!(file = %self.name, error = %e, "could not delete obsolete table");
            }
        }
    }
}
