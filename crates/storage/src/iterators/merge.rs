//! Merges sources by user key. Sources are few (memtables, L0 tables, one per level), so a
//! linear scan for the next key is simpler than a heap and just as fast.

use std::cmp::Ordering;

use super::{Direction, Entry, Source};
use crate::error::Result;

pub(crate) struct Merger {
    sources: Vec<Box<dyn Source>>,
    dir: Direction,
}

impl Merger {
    pub(crate) fn new(sources: Vec<Box<dyn Source>>, dir: Direction) -> Merger {
        Merger { sources, dir }
    }

    /// Moves every version of the next user key (from all sources) into `out`.
    /// Returns false when all sources are exhausted.
    pub(crate) fn next_group(&mut self, out: &mut Vec<Entry>) -> Result<bool> {
        let mut best: Option<usize> = None;
        for (i, s) in self.sources.iter().enumerate() {
            if let Some(k) = s.peek_key() {
                best = match best {
                    None => Some(i),
                    Some(b) => {
                        let bk = self.sources[b].peek_key().unwrap_or_default();
                        let better = match self.dir {
                            Direction::Forward => k.cmp(bk) == Ordering::Less,
                            Direction::Reverse => k.cmp(bk) == Ordering::Greater,
                        };
                        if better { Some(i) } else { Some(b) }
                    }
                };
            }
        }
        let Some(b) = best else { return Ok(false) };
        let key = self.sources[b].peek_key().unwrap_or_default().to_vec();
        for s in self.sources.iter_mut() {
            while s.peek_key() == Some(key.as_slice()) {
                match s.take()? {
                    Some(e) => out.push(e),
                    None => break,
                }
            }
        }
        Ok(true)
    }
}

/// Newest version in `group` with seq <= `snap`.
pub(crate) fn visible(group: &[Entry], snap: u64) -> Option<&Entry> {
    group.iter().filter(|e| e.seq <= snap).max_by_key(|e| e.seq)
}
