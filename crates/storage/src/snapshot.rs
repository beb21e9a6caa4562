//! Snapshots and the public iterator.
//!
//! A snapshot pins a sequence number and the memtables and tables that existed when it was
//! taken (so their files are not deleted), and registers its sequence number so compaction
//! keeps the versions it can see. Writes continue while it lives.

use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use crate::engine::{Inner, SuperVersion, to_bounds};
use crate::error::Result;
use crate::iterators::memtable::MemSource;
use crate::iterators::merge::{Merger, visible};
use crate::iterators::{Direction, Entry, Source};

struct Pinned {
    inner: Arc<Inner>,
    seq: u64,
    sv: Arc<SuperVersion>,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let mut s = self.inner.snapshots.lock();
        if let Some(c) = s.get_mut(&self.seq) {
            *c -= 1;
            if *c == 0 {
                s.remove(&self.seq);
            }
        }
    }
}

/// A consistent point-in-time view of the engine. Cheap to clone.
#[derive(Clone)]
pub struct Snapshot {
    p: Arc<Pinned>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("seq", &self.p.seq)
            .finish()
    }
}

impl Snapshot {
    pub(crate) fn new(inner: Arc<Inner>) -> Snapshot {
        // Register under the snapshot lock so compaction never sees a gap between reading
        // the sequence number and registering it.
        let seq;
        {
            let mut s = inner.snapshots.lock();
            seq = inner.last_seq.load(std::sync::atomic::Ordering::Acquire);
            *s.entry(seq).or_insert(0) += 1;
        }
        // Sequence first, then the super-version: the super-version then holds every entry
        // with seq <= `seq` (later writes are filtered out by sequence number).
        let sv = inner.sv.read().clone();
        Snapshot {
            p: Arc::new(Pinned { inner, seq, sv }),
        }
    }

    /// The sequence number this snapshot reads at.
    pub fn sequence(&self) -> u64 {
        self.p.seq
    }

    /// Value of `key` as of this snapshot.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.p.inner.check_open()?;
        self.p.inner.get_at(&self.p.sv, key, self.p.seq)
    }

    /// Iterates `range` as of this snapshot.
    pub fn iter(&self, range: impl RangeBounds<Vec<u8>>, dir: Direction) -> Result<Iter> {
        self.p.inner.check_open()?;
        let (start, end) = to_bounds(&range);
        let sv = &self.p.sv;
        let mut sources: Vec<Box<dyn Source>> = Vec::new();
        sources.push(Box::new(MemSource::new(sv.mem.clone(), &start, &end, dir)));
        for m in &sv.imms {
            sources.push(Box::new(MemSource::new(m.clone(), &start, &end, dir)));
        }
        sv.version.sources(&start, &end, dir, &mut sources)?;
        let stop = match dir {
            Direction::Forward => end,
            Direction::Reverse => start,
        };
        Ok(Iter {
            _snap: self.clone(),
            merger: Merger::new(sources, dir),
            stop,
            dir,
            seq: self.p.seq,
            group: Vec::new(),
            done: false,
        })
    }
}

/// Iterator over live key/value pairs of a snapshot. Yields an error at most once, then
/// ends.
pub struct Iter {
    _snap: Snapshot,
    merger: Merger,
    stop: Bound<Vec<u8>>,
    dir: Direction,
    seq: u64,
    group: Vec<Entry>,
    done: bool,
}

impl Iter {
    fn past_stop(&self, key: &[u8]) -> bool {
        match (&self.stop, self.dir) {
            (Bound::Unbounded, _) => false,
            (Bound::Included(s), Direction::Forward) => key > s.as_slice(),
            (Bound::Excluded(s), Direction::Forward) => key >= s.as_slice(),
            (Bound::Included(s), Direction::Reverse) => key < s.as_slice(),
            (Bound::Excluded(s), Direction::Reverse) => key <= s.as_slice(),
        }
    }
}

impl Iterator for Iter {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.group.clear();
            match self.merger.next_group(&mut self.group) {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(false) => self.done = true,
                Ok(true) => {
                    let Some(first) = self.group.first() else {
                        continue;
                    };
                    if self.past_stop(&first.key) {
                        self.done = true;
                        break;
                    }
                    if let Some(e) = visible(&self.group, self.seq)
                        && let Some(v) = &e.value
                    {
                        let key = e.key.clone();
                        let value = v.clone();
                        return Some(Ok((key, value)));
                    }
                }
            }
        }
        None
    }
}
