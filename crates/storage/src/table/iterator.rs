//! Walks one table in either direction from a bound, block by block through the cache.

use std::ops::Bound;
use std::sync::Arc;

use super::Table;
use crate::block::Block;
use crate::error::Result;
use crate::iterators::{Direction, Entry, Source};

pub(crate) struct TableIter {
    table: Arc<Table>,
    dir: Direction,
    bi: usize,
    block: Option<Arc<Block>>,
    pos: usize,
    /// Whether blocks read from disk are kept in the cache (not for compaction inputs).
    fill_cache: bool,
}

impl TableIter {
    /// Positions at the first entry inside the start bound (forward) or the last entry
    /// inside the end bound (reverse).
    pub(crate) fn new(
        table: Arc<Table>,
        start: &Bound<Vec<u8>>,
        end: &Bound<Vec<u8>>,
        dir: Direction,
    ) -> Result<TableIter> {
        Self::with_fill(table, start, end, dir, true)
    }

    /// The whole table, forward, for a compaction: blocks already cached are used, blocks
    /// read from disk are not cached. The table is about to be replaced, so caching them
    /// would only push out blocks readers want.
    pub(crate) fn for_compaction(table: Arc<Table>) -> Result<TableIter> {
        Self::with_fill(
            table,
            &Bound::Unbounded,
            &Bound::Unbounded,
            Direction::Forward,
            false,
        )
    }

    fn with_fill(
        table: Arc<Table>,
        start: &Bound<Vec<u8>>,
        end: &Bound<Vec<u8>>,
        dir: Direction,
        fill_cache: bool,
    ) -> Result<TableIter> {
        let mut it = TableIter {
            table,
            dir,
            bi: 0,
            block: None,
            pos: 0,
            fill_cache,
        };
        let n = it.table.num_blocks();
        match dir {
            Direction::Forward => {
                let (bi, key, excl) = match start {
                    Bound::Unbounded => (0, None, false),
                    Bound::Included(k) => {
                        (it.table.find_block(k, false), Some(k.as_slice()), false)
                    }
                    Bound::Excluded(k) => (it.table.find_block(k, true), Some(k.as_slice()), true),
                };
                if bi >= n {
                    return Ok(it);
                }
                let b = it.table.read_block(bi, it.fill_cache)?;
                let pos = key.map_or(0, |k| b.seek_key(k, excl));
                it.bi = bi;
                it.block = Some(b);
                it.pos = pos;
                it.fix_forward()?;
            }
            Direction::Reverse => {
                let (bi, key, excl) = match end {
                    Bound::Unbounded => (n - 1, None, false),
                    Bound::Included(k) => (
                        it.table.find_block(k, true).min(n - 1),
                        Some(k.as_slice()),
                        false,
                    ),
                    Bound::Excluded(k) => (
                        it.table.find_block(k, false).min(n - 1),
                        Some(k.as_slice()),
                        true,
                    ),
                };
                let b = it.table.read_block(bi, it.fill_cache)?;
                // Number of entries at or before the bound in this block.
                let upto = match key {
                    None => b.len(),
                    Some(k) => b.seek_key(k, !excl),
                };
                it.bi = bi;
                if upto == 0 {
                    it.block = None;
                    if bi > 0 {
                        it.bi = bi - 1;
                        let pb = it.table.read_block(it.bi, it.fill_cache)?;
                        it.pos = pb.len() - 1;
                        it.block = Some(pb);
                    }
                } else {
                    it.pos = upto - 1;
                    it.block = Some(b);
                }
            }
        }
        Ok(it)
    }

    /// Forward: move past the end of exhausted blocks.
    fn fix_forward(&mut self) -> Result<()> {
        while let Some(b) = &self.block {
            if self.pos < b.len() {
                return Ok(());
            }
            self.bi += 1;
            self.pos = 0;
            self.block = if self.bi < self.table.num_blocks() {
                Some(self.table.read_block(self.bi, self.fill_cache)?)
            } else {
                None
            };
        }
        Ok(())
    }

    fn advance(&mut self) -> Result<()> {
        match self.dir {
            Direction::Forward => {
                self.pos += 1;
                self.fix_forward()
            }
            Direction::Reverse => {
                if self.pos > 0 {
                    self.pos -= 1;
                } else if self.bi > 0 {
                    self.bi -= 1;
                    let b = self.table.read_block(self.bi, self.fill_cache)?;
                    self.pos = b.len().saturating_sub(1);
                    self.block = Some(b);
                } else {
                    self.block = None;
                }
                Ok(())
            }
        }
    }
}

impl Source for TableIter {
    fn peek_key(&self) -> Option<&[u8]> {
        self.block.as_ref().map(|b| b.key_at(self.pos))
    }
    fn take(&mut self) -> Result<Option<Entry>> {
        let Some(b) = &self.block else {
            return Ok(None);
        };
        let e = b.entry(self.pos);
        let out = Entry {
            key: e.key.to_vec(),
            seq: e.seq,
            value: e.value.map(|v| v.to_vec()),
        };
        self.advance()?;
        Ok(Some(out))
    }
}
