//! A sorted run of non-overlapping tables (one level >= 1) as a single [`Source`]; tables
//! are opened lazily as the iterator reaches them.

use std::ops::Bound;
use std::sync::Arc;

use super::{Direction, Entry, Source};
use crate::error::Result;
use crate::table::Table;
use crate::table::iterator::TableIter;

pub(crate) struct LevelSource {
    tables: Vec<Arc<Table>>,
    next: usize,
    cur: Option<TableIter>,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    dir: Direction,
    /// Compaction reads leave the cache alone (see `TableIter::for_compaction`).
    compaction: bool,
}

fn above_lo(t: &Table, start: &Bound<Vec<u8>>) -> bool {
    match start {
        Bound::Unbounded => true,
        Bound::Included(k) => t.largest.as_slice() >= k.as_slice(),
        Bound::Excluded(k) => t.largest.as_slice() > k.as_slice(),
    }
}

fn below_hi(t: &Table, end: &Bound<Vec<u8>>) -> bool {
    match end {
        Bound::Unbounded => true,
        Bound::Included(k) => t.smallest.as_slice() <= k.as_slice(),
        Bound::Excluded(k) => t.smallest.as_slice() < k.as_slice(),
    }
}

impl LevelSource {
    /// `tables` sorted ascending by key and non-overlapping.
    pub(crate) fn new(
        tables: &[Arc<Table>],
        start: &Bound<Vec<u8>>,
        end: &Bound<Vec<u8>>,
        dir: Direction,
    ) -> Result<LevelSource> {
        let mut ts: Vec<Arc<Table>> = tables
            .iter()
            .filter(|t| above_lo(t, start) && below_hi(t, end))
            .cloned()
            .collect();
        if dir == Direction::Reverse {
            ts.reverse();
        }
        Self::opened(ts, start.clone(), end.clone(), dir, false)
    }

    /// Every entry of `tables` (sorted ascending by key and non-overlapping), forward, as
    /// a compaction reads them: without filling the cache.
    pub(crate) fn for_compaction(tables: Vec<Arc<Table>>) -> Result<LevelSource> {
        Self::opened(
            tables,
            Bound::Unbounded,
            Bound::Unbounded,
            Direction::Forward,
            true,
        )
    }

    fn opened(
        tables: Vec<Arc<Table>>,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
        dir: Direction,
        compaction: bool,
    ) -> Result<LevelSource> {
        let mut s = LevelSource {
            tables,
            next: 0,
            cur: None,
            start,
            end,
            dir,
            compaction,
        };
        s.open_next()?;
        Ok(s)
    }

    fn open_next(&mut self) -> Result<()> {
        while self.cur.as_ref().is_none_or(|c| c.peek_key().is_none()) {
            let Some(t) = self.tables.get(self.next).cloned() else {
                self.cur = None;
                return Ok(());
            };
            self.next += 1;
            self.cur = Some(if self.compaction {
                TableIter::for_compaction(t)?
            } else {
                TableIter::new(t, &self.start, &self.end, self.dir)?
            });
        }
        Ok(())
    }
}

impl Source for LevelSource {
    fn peek_key(&self) -> Option<&[u8]> {
        self.cur.as_ref().and_then(|c| c.peek_key())
    }
    fn take(&mut self) -> Result<Option<Entry>> {
        let Some(c) = self.cur.as_mut() else {
            return Ok(None);
        };
        let e = c.take()?;
        if c.peek_key().is_none() {
            self.open_next()?;
        }
        Ok(e)
    }
}
