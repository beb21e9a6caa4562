//! Writes an SST: sealed data blocks, then a sealed index, bloom filter and footer.
//!
//! ```text
//! header(84)
//! data block i      : AES-GCM(block plaintext) || tag     nonce/AAD index i, is_last 0
//! index block       : count:u32 { offset:u64 len:u32 last_key:bytes }*   index INDEX_IDX
//! bloom block       : 0xFB probes:u8 64-byte lines (bloom.rs)            index BLOOM_IDX
//! footer            : index_off:u64 index_len:u32 bloom_off:u64 bloom_len:u32
//!                     entries:u64 max_seq:u64 smallest:bytes largest:bytes
//!                                                        index FOOTER_IDX, is_last 1
//! footer_len:u32    (plaintext; bounds-checked, the footer itself is authenticated)
//! ```

use std::path::Path;
use std::sync::Arc;

use super::bloom::{Bloom, hash};
use super::{BLOOM_IDX, FOOTER_IDX, INDEX_IDX};
use crate::block::BlockBuilder;
use crate::cache::BlockCache;
use crate::codec::PutExt;
use crate::crypto::header::FileCipher;
use crate::crypto::keys::DataKey;
use crate::crypto::{CipherSuite, FileKind};
use crate::error::Result;
use crate::fs::{Fs, WritableFile};

const WRITE_BUFFER: usize = 1 << 20;

pub(crate) struct TableBuilder {
    file: Arc<dyn WritableFile>,
    cipher: FileCipher,
    block: BlockBuilder,
    block_size: usize,
    out: Vec<u8>,
    offset: u64,
    index: Vec<(u64, u32, Vec<u8>)>,
    hashes: Vec<u64>,
    last_key: Vec<u8>,
    smallest: Option<Vec<u8>>,
    entries: u64,
    max_seq: u64,
    /// Where finished data blocks are offered while they are still plaintext.
    warm: Option<Arc<BlockCache>>,
    finished: bool,
    pub(crate) id: u64,
}

impl TableBuilder {
    pub(crate) fn create(
        fs: &dyn Fs,
        dir: &Path,
        id: u64,
        key: &DataKey,
        suite: CipherSuite,
        block_size: usize,
    ) -> Result<TableBuilder> {
        let name = super::table_name(id);
        let (header, cipher) = FileCipher::create(FileKind::Sst, id, key, suite, name.clone())?;
        let file = fs.create(&dir.join(&name))?;
        let mut out = Vec::with_capacity(WRITE_BUFFER + block_size * 2);
        out.extend_from_slice(&header);
        Ok(TableBuilder {
            file,
            cipher,
            block: BlockBuilder::default(),
            block_size: block_size.max(64),
            offset: header.len() as u64,
            out,
            index: Vec::new(),
            hashes: Vec::new(),
            last_key: Vec::new(),
            smallest: None,
            entries: 0,
            max_seq: 0,
            warm: None,
            finished: false,
            id,
        })
    }

    /// Offers each data block to `cache` as it is written (see [`BlockCache::warm`]).
    pub(crate) fn warming(mut self, cache: Arc<BlockCache>) -> TableBuilder {
        self.warm = Some(cache);
        self
    }

    /// Adds an entry; entries must arrive in (key asc, seq desc) order.
    pub(crate) fn add(&mut self, key: &[u8], seq: u64, value: Option<&[u8]>) -> Result<()> {
        if self.smallest.is_none() {
            self.smallest = Some(key.to_vec());
        }
        if self.entries == 0 || key != self.last_key.as_slice() {
            self.hashes.push(hash(key));
            self.last_key.clear();
            self.last_key.extend_from_slice(key);
        }
        self.block.add(key, seq, value);
        self.entries += 1;
        self.max_seq = self.max_seq.max(seq);
        if self.block.size() >= self.block_size {
            self.finish_block()?;
        }
        Ok(())
    }

    /// Bytes written or buffered so far.
    pub(crate) fn approx_size(&self) -> u64 {
        self.offset + self.block.size() as u64
    }

    fn finish_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let idx = self.index.len() as u64;
        let start = self.out.len();
        match &self.warm {
            Some(cache) if cache.has_room(self.id, idx, self.block.size()) => {
                let b = self.block.finish_owned(&mut self.out);
                cache.warm(self.id, idx, b);
            }
            _ => self.block.finish_into(&mut self.out),
        }
        self.cipher.seal(idx, false, &mut self.out, start)?;
        let len = (self.out.len() - start) as u32;
        self.index.push((self.offset, len, self.last_key.clone()));
        self.offset += len as u64;
        if self.out.len() >= WRITE_BUFFER {
            self.file.append(&self.out)?;
            self.out.clear();
            // A hint: the table's fsync in `finish` reports any write error.
            let _ = self.file.start_writeback();
        }
        Ok(())
    }

    fn sealed(&mut self, idx: u64, is_last: bool, plain: &[u8]) -> Result<(u64, u32)> {
        let start = self.out.len();
        self.out.extend_from_slice(plain);
        self.cipher.seal(idx, is_last, &mut self.out, start)?;
        let len = (self.out.len() - start) as u32;
        let off = self.offset;
        self.offset += len as u64;
        Ok((off, len))
    }

    /// Writes index, bloom and footer and fsyncs. Returns the file size. The caller syncs
    /// the directory before referencing the table.
    pub(crate) fn finish(mut self) -> Result<u64> {
        self.finish_block()?;
        let mut index = Vec::new();
        index.put_u32(self.index.len() as u32);
        for (off, len, k) in &self.index {
            index.put_u64(*off);
            index.put_u32(*len);
            index.put_bytes(k);
        }
        let (index_off, index_len) = self.sealed(INDEX_IDX, false, &index)?;
        let bloom = Bloom::build(&self.hashes);
        let (bloom_off, bloom_len) = self.sealed(BLOOM_IDX, false, &bloom)?;
        let mut footer = Vec::new();
        footer.put_u64(index_off);
        footer.put_u32(index_len);
        footer.put_u64(bloom_off);
        footer.put_u32(bloom_len);
        footer.put_u64(self.entries);
        footer.put_u64(self.max_seq);
        footer.put_bytes(self.smallest.as_deref().unwrap_or_default());
        footer.put_bytes(&self.last_key);
        let (_, footer_len) = self.sealed(FOOTER_IDX, true, &footer)?;
        self.out.put_u32(footer_len);
        self.offset += 4;
        self.file.append(&self.out)?;
        self.file.sync()?;
        self.finished = true;
        Ok(self.offset)
    }
}

impl Drop for TableBuilder {
    /// A table that never finished is deleted by its caller: its warmed blocks go too.
    fn drop(&mut self) {
        if !self.finished
            && let Some(cache) = &self.warm
        {
            cache.evict_file(self.id, self.index.len() as u64);
        }
    }
}
