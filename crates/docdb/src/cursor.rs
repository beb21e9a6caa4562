//! Lazy, resumable query streams over an engine snapshot.
//!
//! A [`Cursor`] owns an `Arc` of the snapshot and an iterator chain
//! (scan → fetch → filter → sort → skip → limit → project). Scans read the engine in
//! chunks and remember the last key, so nothing borrows engine iterators across
//! `getMore` calls and every batch sees the same point-in-time view.

use std::collections::{HashSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bson::Document;

use crate::error::{Error, Result};
use crate::index::IndexMeta;
use crate::keycodec;
use crate::kv::KvSnapshot;
use crate::planner::KeyRange;
use crate::spill::DocIter;

const CHUNK: usize = 256;

/// Counters reported by `explain` (`executionStats`).
#[derive(Debug, Default)]
pub struct ExecStats {
    pub keys_examined: AtomicU64,
    pub docs_examined: AtomicU64,
    pub returned: AtomicU64,
    pub spills: AtomicU64,
}

impl ExecStats {
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.keys_examined.load(Ordering::Relaxed),
            self.docs_examined.load(Ordering::Relaxed),
            self.returned.load(Ordering::Relaxed),
        )
    }
}

/// Chunked scan over a list of `[start, end)` ranges of full keys.
pub struct RangeScan {
    snap: Arc<dyn KvSnapshot>,
    ranges: Vec<KeyRange>,
    reverse: bool,
    pos: usize,
    resume: Option<Vec<u8>>,
    buf: VecDeque<(Vec<u8>, Vec<u8>)>,
    range_done: bool,
}

impl RangeScan {
    pub fn new(snap: Arc<dyn KvSnapshot>, mut ranges: Vec<KeyRange>, reverse: bool) -> Self {
        if reverse {
            ranges.reverse();
        }
        RangeScan {
            snap,
            ranges,
            reverse,
            pos: 0,
            resume: None,
            buf: VecDeque::new(),
            range_done: false,
        }
    }

    fn fill(&mut self) -> Result<()> {
        while self.buf.is_empty() && self.pos < self.ranges.len() {
            if self.range_done {
                self.pos += 1;
                self.resume = None;
                self.range_done = false;
                continue;
            }
            let (start, end) = &self.ranges[self.pos];
            let (lo, hi): (Bound<&[u8]>, Bound<&[u8]>) = match (&self.resume, self.reverse) {
                (Some(r), false) => (
                    Bound::Excluded(r.as_slice()),
                    end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
                ),
                (Some(r), true) => (
                    Bound::Included(start.as_slice()),
                    Bound::Excluded(r.as_slice()),
                ),
                (None, _) => (
                    Bound::Included(start.as_slice()),
                    end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
                ),
            };
            let mut got = 0;
            let buf = &mut self.buf;
            self.snap.scan(lo, hi, self.reverse, &mut |k, v| {
                buf.push_back((k.to_vec(), v.to_vec()));
                got += 1;
                Ok(got < CHUNK)
            })?;
            if got < CHUNK {
                self.range_done = true;
            }
            if let Some((k, _)) = self.buf.back() {
                self.resume = Some(k.clone());
            }
        }
        Ok(())
    }
}

impl Iterator for RangeScan {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty()
            && let Err(e) = self.fill()
        {
            self.pos = self.ranges.len();
            return Some(Err(e));
        }
        self.buf.pop_front().map(Ok)
    }
}

pub fn decode_doc(bytes: &[u8]) -> Result<Document> {
    crate::rawdoc::decode(bytes)
        .map_err(|e| Error::internal(format!("corrupt stored document: {e}")))
}

/// Stored documents as BSON bytes, before decoding.
pub type RawIter = Box<dyn Iterator<Item = Result<Vec<u8>>> + Send>;

/// Collection scan: documents of one collection in `_id` order.
pub fn coll_scan(
    snap: Arc<dyn KvSnapshot>,
    data_prefix: Vec<u8>,
    ranges: Option<Vec<KeyRange>>,
    reverse: bool,
    stats: Arc<ExecStats>,
    count_keys: bool,
) -> DocIter {
    Box::new(
        coll_scan_raw(snap, data_prefix, ranges, reverse, stats, count_keys)
            .map(|r| r.and_then(|v| decode_doc(&v))),
    )
}

/// [`coll_scan`] yielding the stored bytes.
pub fn coll_scan_raw(
    snap: Arc<dyn KvSnapshot>,
    data_prefix: Vec<u8>,
    ranges: Option<Vec<KeyRange>>,
    reverse: bool,
    stats: Arc<ExecStats>,
    count_keys: bool,
) -> RawIter {
    let ranges = ranges.unwrap_or_else(|| vec![(Vec::new(), None)]);
    let full: Vec<KeyRange> = ranges
        .into_iter()
        .map(|(s, e)| {
            let start = [data_prefix.as_slice(), &s].concat();
            let end = match e {
                Some(e) => Some([data_prefix.as_slice(), &e].concat()),
                None => keycodec::prefix_end(&data_prefix),
            };
            (start, end)
        })
        .collect();
    Box::new(RangeScan::new(snap, full, reverse).map(move |r| {
        let (_, v) = r?;
        if count_keys {
            stats.keys_examined.fetch_add(1, Ordering::Relaxed);
        }
        stats.docs_examined.fetch_add(1, Ordering::Relaxed);
        Ok(v)
    }))
}

/// Index scan + fetch of the documents the entries point to (deduplicated when the index
/// is multikey or scanned through several ranges).
pub fn index_scan(
    snap: Arc<dyn KvSnapshot>,
    ix: IndexMeta,
    index_prefix: Vec<u8>,
    data_prefix: Vec<u8>,
    ranges: Vec<KeyRange>,
    reverse: bool,
    stats: Arc<ExecStats>,
) -> DocIter {
    Box::new(
        index_scan_raw(snap, ix, index_prefix, data_prefix, ranges, reverse, stats)
            .map(|r| r.and_then(|v| decode_doc(&v))),
    )
}

/// [`index_scan`] yielding the stored bytes.
pub fn index_scan_raw(
    snap: Arc<dyn KvSnapshot>,
    ix: IndexMeta,
    index_prefix: Vec<u8>,
    data_prefix: Vec<u8>,
    ranges: Vec<KeyRange>,
    reverse: bool,
    stats: Arc<ExecStats>,
) -> RawIter {
    let dedup = ix.multikey || ranges.len() > 1;
    let full: Vec<KeyRange> = ranges
        .into_iter()
        .map(|(s, e)| {
            let start = [index_prefix.as_slice(), &s].concat();
            let end = match e {
                Some(e) => Some([index_prefix.as_slice(), &e].concat()),
                None => keycodec::prefix_end(&index_prefix),
            };
            (start, end)
        })
        .collect();
    let plen = index_prefix.len();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let fetch_snap = snap.clone();
    let mut dk = data_prefix.clone();
    Box::new(RangeScan::new(snap, full, reverse).filter_map(move |r| {
        let step = || -> Result<Option<Vec<u8>>> {
            let (k, _) = r?;
            stats.keys_examined.fetch_add(1, Ordering::Relaxed);
            let (_, id) = ix.split_entry(&k[plen..])?;
            if dedup && !seen.insert(id.to_vec()) {
                return Ok(None);
            }
            dk.truncate(data_prefix.len());
            dk.extend_from_slice(id);
            stats.docs_examined.fetch_add(1, Ordering::Relaxed);
            fetch_snap.get(&dk)
        };
        step().transpose()
    }))
}

/// A query result stream, kept by the wire layer across `getMore` batches.
pub struct Cursor {
    ns: String,
    iter: DocIter,
    peeked: Option<Result<Document>>,
    stats: Arc<ExecStats>,
    exhausted: bool,
}

impl Cursor {
    pub fn new(ns: String, iter: DocIter, stats: Arc<ExecStats>) -> Cursor {
        Cursor {
            ns,
            iter,
            peeked: None,
            stats,
            exhausted: false,
        }
    }

    pub fn empty(ns: String) -> Cursor {
        Cursor::new(
            ns,
            Box::new(std::iter::empty()),
            Arc::new(ExecStats::default()),
        )
    }

    pub fn from_docs(ns: String, docs: Vec<Document>) -> Cursor {
        Cursor::new(
            ns,
            Box::new(docs.into_iter().map(Ok)),
            Arc::new(ExecStats::default()),
        )
    }

    /// `db.coll` this cursor reads.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    pub fn stats(&self) -> &ExecStats {
        &self.stats
    }

    /// Up to `max` documents (stops early at an error, which is returned on its own).
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<Document>> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.next() {
                Some(Ok(d)) => out.push(d),
                Some(Err(e)) => {
                    if out.is_empty() {
                        return Err(e);
                    }
                    self.peeked = Some(Err(e));
                    break;
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// Up to `max_docs` documents whose BSON sizes add up to at most `max_bytes` (at least
    /// one document is returned when any is available), for replies that must stay under
    /// the 16 MiB message limit.
    pub fn next_batch_limited(
        &mut self,
        max_docs: usize,
        max_bytes: usize,
    ) -> Result<Vec<Document>> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max_docs {
            match self.next() {
                Some(Ok(d)) => {
                    let size = d.to_vec().map(|v| v.len()).unwrap_or(0);
                    if !out.is_empty() && bytes + size > max_bytes {
                        self.peeked = Some(Ok(d));
                        self.stats.returned.fetch_sub(1, Ordering::Relaxed);
                        break;
                    }
                    bytes += size;
                    out.push(d);
                }
                Some(Err(e)) => {
                    if out.is_empty() {
                        return Err(e);
                    }
                    self.peeked = Some(Err(e));
                    break;
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// True when no more documents will come (the wire layer then returns cursor id 0).
    pub fn is_exhausted(&mut self) -> bool {
        if self.exhausted {
            return true;
        }
        if self.peeked.is_none() {
            match self.iter.next() {
                Some(x) => self.peeked = Some(x),
                None => self.exhausted = true,
            }
        }
        self.exhausted
    }
}

impl Iterator for Cursor {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = match self.peeked.take() {
            Some(x) => Some(x),
            None if self.exhausted => None,
            None => self.iter.next(),
        };
        match &item {
            None => self.exhausted = true,
            Some(Ok(_)) => {
                self.stats.returned.fetch_add(1, Ordering::Relaxed);
            }
            Some(Err(_)) => {}
        }
        item
    }
}
