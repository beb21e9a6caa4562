//! A memtable as a [`Source`]: reads the skiplist in small batches so the iterator owns no
//! borrow of the map and writers continue meanwhile (entries newer than the snapshot are
//! filtered out later by sequence number).

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;

use super::{Direction, Entry, Source};
use crate::error::Result;
use crate::memtable::{IKey, MemTable};

const BATCH: usize = 256;

pub(crate) struct MemSource {
    mem: Arc<MemTable>,
    dir: Direction,
    /// Remaining range in internal-key terms.
    lo: Bound<IKey>,
    hi: Bound<IKey>,
    buf: VecDeque<Entry>,
    done: bool,
}

/// Converts user-key bounds to internal-key bounds covering every version.
pub(crate) fn ikey_bounds(
    start: &Bound<Vec<u8>>,
    end: &Bound<Vec<u8>>,
) -> (Bound<IKey>, Bound<IKey>) {
    let lo = match start {
        Bound::Included(k) => Bound::Included(IKey {
            key: k.clone(),
            seq: u64::MAX,
        }),
        Bound::Excluded(k) => Bound::Excluded(IKey {
            key: k.clone(),
            seq: 0,
        }),
        Bound::Unbounded => Bound::Unbounded,
    };
    let hi = match end {
        Bound::Included(k) => Bound::Included(IKey {
            key: k.clone(),
            seq: 0,
        }),
        Bound::Excluded(k) => Bound::Excluded(IKey {
            key: k.clone(),
            seq: u64::MAX,
        }),
        Bound::Unbounded => Bound::Unbounded,
    };
    (lo, hi)
}

impl MemSource {
    pub(crate) fn new(
        mem: Arc<MemTable>,
        start: &Bound<Vec<u8>>,
        end: &Bound<Vec<u8>>,
        dir: Direction,
    ) -> MemSource {
        let (lo, hi) = ikey_bounds(start, end);
        let mut s = MemSource {
            mem,
            dir,
            lo,
            hi,
            buf: VecDeque::new(),
            done: false,
        };
        s.refill();
        s
    }

    fn refill(&mut self) {
        if self.done {
            return;
        }
        let mut v = Vec::with_capacity(BATCH);
        self.mem
            .scan(self.lo.clone(), self.hi.clone(), self.dir, BATCH, &mut v);
        if v.len() < BATCH {
            self.done = true;
        }
        if let Some(last) = v.last() {
            let ik = IKey {
                key: last.key.clone(),
                seq: last.seq,
            };
            match self.dir {
                Direction::Forward => self.lo = Bound::Excluded(ik),
                Direction::Reverse => self.hi = Bound::Excluded(ik),
            }
        }
        self.buf.extend(v);
    }
}

impl Source for MemSource {
    fn peek_key(&self) -> Option<&[u8]> {
        self.buf.front().map(|e| e.key.as_slice())
    }
    fn take(&mut self) -> Result<Option<Entry>> {
        let e = self.buf.pop_front();
        if self.buf.is_empty() {
            self.refill();
        }
        Ok(e)
    }
}
