//! The memtable: a concurrent skiplist (crossbeam-skiplist) of (user key, seq) -> value or
//! tombstone, with a [`MemFilter`] that lets point reads skip it. Writers insert under the
//! engine's writer lock; readers never block.

mod filter;

use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtOrd};

use crossbeam_skiplist::SkipMap;

use crate::iterators::{Direction, Entry};
use crate::table::bloom;
use filter::MemFilter;

/// Internal key: user key ascending, then sequence number descending, so the newest
/// version of a key comes first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IKey {
    pub(crate) key: Vec<u8>,
    pub(crate) seq: u64,
}

impl Ord for IKey {
    fn cmp(&self, o: &Self) -> Ordering {
        self.key.cmp(&o.key).then(o.seq.cmp(&self.seq))
    }
}
impl PartialOrd for IKey {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// One memtable and the WAL segment that protects it.
pub(crate) struct MemTable {
    map: SkipMap<IKey, Option<Vec<u8>>>,
    filter: MemFilter,
    bytes: AtomicUsize,
    pub(crate) wal_id: u64,
    /// Last sequence number assigned before this memtable became active: every record it
    /// (and its WAL segment) holds has a larger one, every record in tables flushed before
    /// it a smaller-or-equal one. A checkpoint uses it as its `covered_seq`.
    pub(crate) prev_seq: u64,
    /// Largest commit time (Unix µs) of the records inserted; logged when it is flushed so
    /// commit times stay monotonic across a reopen even after the WAL is gone.
    max_commit: AtomicU64,
}

impl MemTable {
    /// An empty memtable that flushes at about `capacity` bytes (which sizes its filter).
    pub(crate) fn new(wal_id: u64, prev_seq: u64, capacity: usize) -> MemTable {
        MemTable {
            map: SkipMap::new(),
            filter: MemFilter::with_capacity(capacity),
            bytes: AtomicUsize::new(0),
            wal_id,
            prev_seq,
            max_commit: AtomicU64::new(0),
        }
    }

    /// Records that a batch committed at `micros` went into this memtable.
    pub(crate) fn note_commit(&self, micros: u64) {
        self.max_commit.fetch_max(micros, AtOrd::AcqRel);
    }

    /// Largest commit time of the records inserted (0 if none).
    pub(crate) fn max_commit(&self) -> u64 {
        self.max_commit.load(AtOrd::Acquire)
    }

    pub(crate) fn insert(&self, key: Vec<u8>, seq: u64, value: Option<Vec<u8>>) {
        let n = key.len() + value.as_ref().map_or(0, |v| v.len()) + 48;
        // Before the skiplist: see the filter module on why readers cannot miss the key.
        self.filter.insert(bloom::hash(&key));
        self.map.insert(IKey { key, seq }, value);
        self.bytes.fetch_add(n, AtOrd::Relaxed);
    }

    /// Approximate memory used.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(AtOrd::Relaxed)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Newest version of `key` (whose [`bloom::hash`] is `hash`) with seq <= `snap`:
    /// Some(None) is a tombstone.
    pub(crate) fn get(&self, key: &[u8], hash: u64, snap: u64) -> Option<Option<Vec<u8>>> {
        if !self.filter.may_contain(hash) {
            return None;
        }
        let probe = IKey {
            key: key.to_vec(),
            seq: snap,
        };
        let e = self.map.lower_bound(Bound::Included(&probe))?;
        if e.key().key == key {
            Some(e.value().clone())
        } else {
            None
        }
    }

    /// Up to `limit` entries strictly after `after` (or from `start`) in `dir` order.
    pub(crate) fn scan(
        &self,
        from: Bound<IKey>,
        to: Bound<IKey>,
        dir: Direction,
        limit: usize,
        out: &mut Vec<Entry>,
    ) {
        let range = self.map.range((from, to));
        let conv = |e: crossbeam_skiplist::map::Entry<'_, IKey, Option<Vec<u8>>>| Entry {
            key: e.key().key.clone(),
            seq: e.key().seq,
            value: e.value().clone(),
        };
        match dir {
            Direction::Forward => out.extend(range.take(limit).map(conv)),
            Direction::Reverse => out.extend(range.rev().take(limit).map(conv)),
        }
    }

    /// Every entry in internal-key order (for flush).
    pub(crate) fn for_each(
        &self,
        mut f: impl FnMut(&[u8], u64, Option<&[u8]>) -> crate::Result<()>,
    ) -> crate::Result<()> {
        for e in self.map.iter() {
            f(&e.key().key, e.key().seq, e.value().as_deref())?;
        }
        Ok(())
    }
}
