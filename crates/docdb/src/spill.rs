//! External sort: sorts documents within a memory budget, spilling sorted runs to
//! (encrypted) engine temp files and merging them. Nothing is ever written in plaintext.

use std::io::Read;
use std::sync::Arc;

use bson::{Bson, Document};

use crate::error::{Error, Result, code};
use crate::interrupt::{Interrupt, Ticker};
use crate::kv::TempStore;
use crate::sort::SortSpec;

/// Default memory budget for a blocking sort or group (MongoDB's 100 MiB).
pub const DEFAULT_MEMORY_LIMIT: usize = 100 * 1024 * 1024;

/// Memory/disk policy for blocking stages.
#[derive(Clone)]
pub struct SpillConfig {
    pub memory_limit: usize,
    pub allow_disk_use: bool,
    pub temp: Option<Arc<dyn TempStore>>,
    /// Polled by the blocking stages' loops (`maxTimeMS`).
    pub interrupt: Interrupt,
}

impl Default for SpillConfig {
    fn default() -> Self {
        SpillConfig {
            memory_limit: DEFAULT_MEMORY_LIMIT,
            allow_disk_use: true,
            temp: None,
            interrupt: Interrupt::none(),
        }
    }
}

/// A buffered document: its sort key, the document, its estimated size.
type Entry = (Vec<Bson>, Document, usize);

/// Entries sorted at once between two interrupt checks ([`ExternalSorter::sort_buf`]).
const SORT_RUN: usize = 4096;

/// Merges two sorted runs (stable: `a`'s entries first among equals), polling `ticker`.
fn merge_runs(
    spec: &SortSpec,
    a: Vec<Entry>,
    b: Vec<Entry>,
    ticker: &mut Ticker,
) -> Result<Vec<Entry>> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let mut a = a.into_iter().peekable();
    let mut b = b.into_iter().peekable();
    loop {
        ticker.tick()?;
        let take_b = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => spec.compare_keys(&y.0, &x.0).is_lt(),
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (None, None) => return Ok(out),
        };
        let next = if take_b { b.next() } else { a.next() };
        out.extend(next);
    }
}

/// Boxed document stream.
pub type DocIter = Box<dyn Iterator<Item = Result<Document>> + Send>;

pub struct ExternalSorter {
    spec: SortSpec,
    cfg: SpillConfig,
    buf: Vec<Entry>,
    buf_bytes: usize,
    runs: Vec<Box<dyn Read + Send>>,
    /// Number of runs written (for explain/tests).
    pub spills: usize,
    /// Keep only the first `limit` documents (a `$sort` followed by `$limit`: top-k).
    limit: Option<usize>,
    ticker: Ticker,
}

/// Append one length-prefixed document to a spill run.
pub(crate) fn write_doc(w: &mut dyn std::io::Write, doc: &Document) -> Result<()> {
    let bytes = serialize(doc)?;
    w.write_all(&(bytes.len() as u32).to_le_bytes())
        .map_err(|e| crate::tempquota::from_io(e, "spill write"))?;
    w.write_all(&bytes)
        .map_err(|e| crate::tempquota::from_io(e, "spill write"))
}

fn serialize(doc: &Document) -> Result<Vec<u8>> {
    doc.to_vec()
        .map_err(|e| Error::internal(format!("cannot serialize document: {e}")))
}

impl ExternalSorter {
    pub fn new(spec: SortSpec, cfg: SpillConfig) -> Self {
        ExternalSorter {
            ticker: cfg.interrupt.ticker(),
            spec,
            cfg,
            buf: Vec::new(),
            buf_bytes: 0,
            runs: Vec::new(),
            spills: 0,
            limit: None,
        }
    }

    /// Only the first `k` documents will be consumed: keep memory bounded by `k`.
    pub fn with_limit(mut self, k: usize) -> Self {
        self.limit = Some(k);
        self
    }

    pub fn push(&mut self, doc: Document) -> Result<()> {
        self.ticker.tick()?;
        let size = serialize(&doc)?.len() + 64;
        let key = self.spec.key(&doc);
        self.buf.push((key, doc, size));
        self.buf_bytes += size;
        if let Some(k) = self.limit
            && self.buf.len() > 2 * k + 64
        {
            self.sort_buf()?;
            for (_, _, sz) in self.buf.drain(k..) {
                self.buf_bytes -= sz;
            }
        }
        if self.buf_bytes > self.cfg.memory_limit {
            self.spill()?;
        }
        Ok(())
    }

    /// Sorts the buffer; `Err` when the operation's interrupt fired meanwhile.
    ///
    /// A slice sort cannot be abandoned (and a comparator that starts answering
    /// differently half-way may make the standard sort panic), so an interruptible
    /// operation sorts runs of [`SORT_RUN`] entries, checking between them, and merges
    /// them pairwise, polling as it goes: stable, and never more than one run's sort
    /// between two checks.
    fn sort_buf(&mut self) -> Result<()> {
        let spec = &self.spec;
        if !self.cfg.interrupt.is_armed() || self.buf.len() <= SORT_RUN {
            self.buf.sort_by(|a, b| spec.compare_keys(&a.0, &b.0));
            return self.cfg.interrupt.check();
        }
        let mut runs: Vec<Vec<Entry>> = Vec::new();
        let mut all = std::mem::take(&mut self.buf).into_iter();
        loop {
            self.cfg.interrupt.check()?;
            let mut run: Vec<Entry> = all.by_ref().take(SORT_RUN).collect();
            if run.is_empty() {
                break;
            }
            run.sort_by(|a, b| spec.compare_keys(&a.0, &b.0));
            runs.push(run);
        }
        let mut ticker = self.cfg.interrupt.ticker();
        while runs.len() > 1 {
            let mut next = Vec::with_capacity(runs.len().div_ceil(2));
            let mut pairs = runs.into_iter();
            while let Some(a) = pairs.next() {
                match pairs.next() {
                    Some(b) => next.push(merge_runs(spec, a, b, &mut ticker)?),
                    None => next.push(a),
                }
            }
            runs = next;
        }
        self.buf = runs.pop().unwrap_or_default();
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        if !self.cfg.allow_disk_use {
            return Err(Error::new(
                code::QUERY_EXCEEDED_MEMORY_LIMIT,
                format!(
                    "Sort exceeded memory limit of {} bytes, but did not opt in to external sorting.",
                    self.cfg.memory_limit
                ),
            ));
        }
        let Some(temp) = self.cfg.temp.clone() else {
            return Err(Error::new(
                code::QUERY_EXCEEDED_MEMORY_LIMIT,
                "Sort exceeded memory limit and no temporary storage is available",
            ));
        };
        self.sort_buf()?;
        let mut w = temp.temp_file()?;
        for (_, doc, _) in self.buf.drain(..) {
            write_doc(&mut w, &doc)?;
        }
        self.runs.push(w.finish()?);
        self.buf_bytes = 0;
        self.spills += 1;
        tracing::debug!(runs = self.runs.len(), "sort spilled a run");
        Ok(())
    }

    /// Finish and stream documents in order.
    pub fn finish(mut self) -> Result<DocIter> {
        self.sort_buf()?;
        if self.runs.is_empty() {
            let k = self.limit.unwrap_or(usize::MAX);
            return Ok(Box::new(
                self.buf.into_iter().take(k).map(|(_, d, _)| Ok(d)),
            ));
        }
        // Spill the tail too so merging is uniform.
        if !self.buf.is_empty() {
            self.spill()?;
        }
        let mut heads = Vec::with_capacity(self.runs.len());
        for mut r in self.runs {
            let first = read_doc(&mut r)?;
            heads.push((r, first.map(|d| (self.spec.key(&d), d))));
        }
        Ok(Box::new(Merge {
            ticker: self.cfg.interrupt.ticker(),
            spec: self.spec,
            heads,
            failed: false,
        }))
    }
}

/// Read one length-prefixed document from a spill run (None at the end).
pub(crate) fn read_doc(r: &mut Box<dyn Read + Send>) -> Result<Option<Document>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r
            .read(&mut len[got..])
            .map_err(|e| Error::internal(format!("spill read: {e}")))?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(Error::internal("truncated spill run"));
        }
        got += n;
    }
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut buf)
        .map_err(|e| Error::internal(format!("spill read: {e}")))?;
    crate::rawdoc::decode(&buf)
        .map(Some)
        .map_err(|e| Error::internal(format!("corrupt spill run: {e}")))
}

type Head = (Box<dyn Read + Send>, Option<(Vec<Bson>, Document)>);

struct Merge {
    ticker: Ticker,
    spec: SortSpec,
    heads: Vec<Head>,
    failed: bool,
}

impl Iterator for Merge {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if let Err(e) = self.ticker.tick() {
            self.failed = true;
            return Some(Err(e));
        }
        let mut best: Option<usize> = None;
        for (i, (_, h)) in self.heads.iter().enumerate() {
            if let Some((k, _)) = h {
                let better = match best {
                    None => true,
                    Some(b) => match &self.heads[b].1 {
                        Some((bk, _)) => self.spec.compare_keys(k, bk).is_lt(),
                        None => true,
                    },
                };
                if better {
                    best = Some(i);
                }
            }
        }
        let i = best?;
        let (reader, head) = &mut self.heads[i];
        let (_, doc) = head.take()?;
        match read_doc(reader) {
            Ok(next) => *head = next.map(|d| (self.spec.key(&d), d)),
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        }
        Some(Ok(doc))
    }
}
