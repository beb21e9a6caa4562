//! Iteration: sources (memtable, table, level) produce entries in user-key order for one
//! direction; [`merge::Merger`] groups all versions of the next user key across sources;
//! the public iterator then picks the newest version visible at its snapshot.

pub(crate) mod level;
pub(crate) mod memtable;
pub(crate) mod merge;

use crate::error::Result;

/// Iteration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Ascending keys.
    Forward,
    /// Descending keys.
    Reverse,
}

/// One version of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: Vec<u8>,
    pub(crate) seq: u64,
    /// None is a tombstone.
    pub(crate) value: Option<Vec<u8>>,
}

/// A stream of entries ordered by user key in the source's direction. Versions of the same
/// key are adjacent (their relative order does not matter).
pub(crate) trait Source: Send {
    /// Key of the current entry, None when exhausted.
    fn peek_key(&self) -> Option<&[u8]>;
    /// Returns the current entry and advances.
    fn take(&mut self) -> Result<Option<Entry>>;
}
