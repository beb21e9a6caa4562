//! The key-value contract docdb needs from the storage engine.
//!
//! docdb is written against this small object-safe trait so the rest of the crate does not
//! depend on iterator lifetimes of the engine; [`crate::engine`] implements it for
//! `storage::Engine`. Scans are callback-based and resumable by key: a cursor reads a chunk,
//! remembers the last key, and continues later from `Excluded(last)` on the same snapshot.

use std::io::{Read, Write};
use std::ops::Bound;
use std::sync::Arc;

use crate::error::Result;

/// One atomic group of puts/deletes.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub fn put(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.ops.push((k, Some(v)));
    }

    pub fn delete(&mut self, k: Vec<u8>) {
        self.ops.push((k, None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Callback for scans: return `Ok(false)` to stop.
pub type ScanFn<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// A consistent read view.
pub trait KvSnapshot: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        f: &mut ScanFn,
    ) -> Result<()>;
}

/// Writer of an encrypted temporary file (sort spills).
pub trait TempWrite: Write + Send {
    fn finish(self: Box<Self>) -> Result<Box<dyn Read + Send>>;
}

/// Source of temporary files.
pub trait TempStore: Send + Sync {
    fn temp_file(&self) -> Result<Box<dyn TempWrite>>;
}

/// The engine.
pub trait Kv: TempStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Apply a batch atomically; `sync` asks for durability before returning.
    fn write(&self, batch: Batch, sync: bool) -> Result<()>;
    /// Makes every write appended so far durable (one fsync shared by concurrent callers).
    fn sync(&self) -> Result<()>;
    fn snapshot(&self) -> Result<Arc<dyn KvSnapshot>>;

    /// A ticket covering every write appended so far, for [`Kv::when_durable`].
    fn ticket(&self) -> u64 {
        0
    }

    /// Calls `done` once every write up to `ticket` is durable, without blocking the
    /// caller when the engine can sync on a thread of its own. The default syncs here.
    fn when_durable(&self, ticket: u64, done: DurableFn) {
        let _ = ticket;
        done(self.sync());
    }

    /// Makes every write up to `ticket` durable on the calling thread if that needs no
    /// wait for another thread's sync; `None` otherwise (use [`Kv::when_durable`]).
    fn try_sync(&self, ticket: u64) -> Option<Result<()>> {
        let _ = ticket;
        None
    }

    /// Whether background work (memtable flushes, compactions) is queued or running.
    fn maintenance_pending(&self) -> bool {
        false
    }

    /// The error every write gets while the engine is read-only (a full disk, a failed
    /// fsync: see `storage::Engine::read_only`); `None` while it takes writes.
    fn read_only(&self) -> Option<crate::error::Error> {
        None
    }

    /// Appends `batch` without waiting for anything (no fsync, no memtable switch, no
    /// stall): `Ok(false)`, with nothing written, when the write would have to wait.
    fn write_now(&self, batch: Batch) -> Result<bool> {
        self.write(batch, false).map(|()| true)
    }
}

/// Answer of [`Kv::when_durable`].
pub type DurableFn = Box<dyn FnOnce(Result<()>) + Send>;
