//! A version: the set of live tables by level. Immutable; a change builds a new version.
//! L0 tables may overlap and are ordered newest first (by max sequence number); levels 1..
//! hold sorted, non-overlapping runs.

use std::collections::HashSet;
use std::ops::Bound;
use std::sync::Arc;

use crate::error::Result;
use crate::iterators::level::LevelSource;
use crate::iterators::{Direction, Source};
use crate::table::Table;
use crate::table::iterator::TableIter;

/// Number of levels (L0..L6).
pub(crate) const NUM_LEVELS: usize = 7;

#[derive(Clone, Debug)]
pub(crate) struct Version {
    pub(crate) levels: Vec<Vec<Arc<Table>>>,
}

impl Default for Version {
    fn default() -> Self {
        Version {
            levels: vec![Vec::new(); NUM_LEVELS],
        }
    }
}

impl Version {
    /// A new version with `remove` dropped and `add` inserted.
    pub(crate) fn apply(&self, add: &[(usize, Arc<Table>)], remove: &HashSet<u64>) -> Version {
        let mut v = self.clone();
        for l in v.levels.iter_mut() {
            l.retain(|t| !remove.contains(&t.id));
        }
        for (level, t) in add {
            v.levels[*level].push(t.clone());
        }
        v.levels[0].sort_by(|a, b| b.max_seq.cmp(&a.max_seq).then(b.id.cmp(&a.id)));
        for l in v.levels.iter_mut().skip(1) {
            l.sort_by(|a, b| a.smallest.cmp(&b.smallest));
        }
        v
    }

    pub(crate) fn tables(&self) -> impl Iterator<Item = (usize, &Arc<Table>)> {
        self.levels
            .iter()
            .enumerate()
            .flat_map(|(l, ts)| ts.iter().map(move |t| (l, t)))
    }

    pub(crate) fn level_bytes(&self, l: usize) -> u64 {
        self.levels[l].iter().map(|t| t.size).sum()
    }

    /// Newest visible version of `key` across tables: Some(None) is a tombstone.
    /// Newest version of `key` (whose [`bloom::hash`](crate::table::bloom::hash) is `hash`)
    /// with seq <= `snap`: Some(None) is a tombstone.
    pub(crate) fn get(&self, key: &[u8], hash: u64, snap: u64) -> Result<Option<Option<Vec<u8>>>> {
        for t in &self.levels[0] {
            if let Some(v) = t.get(key, hash, snap)? {
                return Ok(Some(v));
            }
        }
        for l in self.levels.iter().skip(1) {
            let i = l.partition_point(|t| t.largest.as_slice() < key);
            if let Some(t) = l.get(i)
                && t.smallest.as_slice() <= key
                && let Some(v) = t.get(key, hash, snap)?
            {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// One source per L0 table and one per deeper level.
    pub(crate) fn sources(
        &self,
        start: &Bound<Vec<u8>>,
        end: &Bound<Vec<u8>>,
        dir: Direction,
        out: &mut Vec<Box<dyn Source>>,
    ) -> Result<()> {
        for t in &self.levels[0] {
            out.push(Box::new(TableIter::new(t.clone(), start, end, dir)?));
        }
        for l in self.levels.iter().skip(1) {
            if !l.is_empty() {
                out.push(Box::new(LevelSource::new(l, start, end, dir)?));
            }
        }
        Ok(())
    }
}
