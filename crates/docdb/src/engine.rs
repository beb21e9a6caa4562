//! [`Kv`] for the encrypted LSM engine (`storage::Engine`), and [`Db::open`].

use std::io::Read;
use std::ops::Bound;
use std::sync::Arc;

use storage::{Direction, Durability, Engine, Snapshot, TempWriter, WriteBatch};

use crate::db::{Db, DbConfig};
use crate::error::{Error, Result, code};
use crate::kv::{Batch, DurableFn, Kv, KvSnapshot, ScanFn, TempStore, TempWrite};

/// The MongoDB error for a storage failure. A read-only engine answers what MongoDB
/// answers: `OutOfDiskSpace` (14031) for a full disk, and for an I/O error (or any other
/// failed durable write) `IllegalOperation` (20), MongoDB's answer to a write on a
/// read-only node; both name the failed operation. A closed engine (the node is shutting
/// down, or reopening the engine after such a failure) is `InterruptedAtShutdown` (11600),
/// which drivers retry.
pub(crate) fn map_err(e: storage::Error) -> Error {
    match e {
        storage::Error::Poisoned(p) => read_only_error(&p),
        storage::Error::Closed => Error::new(
            code::INTERRUPTED_AT_SHUTDOWN,
            "the storage engine was closed under this operation (shutting down, or reopening \
             after a storage failure); retry",
        ),
        storage::Error::Io(io) if storage::Cause::of_io(&io) == storage::Cause::NoSpace => {
            Error::new(
                code::OUT_OF_DISK_SPACE,
                format!("storage engine: out of disk space: {io}"),
            )
        }
        e => Error::internal(format!("storage engine: {e}")),
    }
}

/// What a write on a read-only engine gets (see [`map_err`]).
fn read_only_error(p: &storage::Poison) -> Error {
    let code = match p.cause {
        storage::Cause::NoSpace => code::OUT_OF_DISK_SPACE,
        storage::Cause::Io | storage::Cause::Other => code::ILLEGAL_OPERATION,
    };
    Error::new(
        code,
        format!("the storage engine is read-only after {p}; writes resume once it is reopened"),
    )
}

/// The real engine behind docdb.
pub struct EngineKv {
    engine: Engine,
}

impl EngineKv {
    pub fn new(engine: Engine) -> Self {
        EngineKv { engine }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

fn engine_batch(batch: &Batch) -> WriteBatch {
    let mut wb = WriteBatch::new();
    for (k, v) in &batch.ops {
        match v {
            Some(v) => wb.put(k, v),
            None => wb.delete(k),
        };
    }
    wb
}

struct EngineSnap(Snapshot);

fn owned(b: Bound<&[u8]>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(x) => Bound::Included(x.to_vec()),
        Bound::Excluded(x) => Bound::Excluded(x.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl KvSnapshot for EngineSnap {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.0.get(key).map_err(map_err)
    }

    fn scan(
        &self,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        reverse: bool,
        f: &mut ScanFn,
    ) -> Result<()> {
        let dir = if reverse {
            Direction::Reverse
        } else {
            Direction::Forward
        };
        let it = self
            .0
            .iter((owned(start), owned(end)), dir)
            .map_err(map_err)?;
        for item in it {
            let (k, v) = item.map_err(map_err)?;
            if !f(&k, &v)? {
                break;
            }
        }
        Ok(())
    }
}

struct EngineTemp(TempWriter);

impl std::io::Write for EngineTemp {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl TempWrite for EngineTemp {
    fn finish(self: Box<Self>) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.0.finish().map_err(map_err)?))
    }
}

impl TempStore for EngineKv {
    fn temp_file(&self) -> Result<Box<dyn TempWrite>> {
        Ok(Box::new(EngineTemp(
            self.engine.temp_file().map_err(map_err)?,
        )))
    }
}

impl Kv for EngineKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.engine.get(key).map_err(map_err)
    }

    fn write(&self, batch: Batch, sync: bool) -> Result<()> {
        let d = if sync {
            Durability::Sync
        } else {
            Durability::Buffered
        };
        self.engine.write(engine_batch(&batch), d).map_err(map_err)
    }

    fn sync(&self) -> Result<()> {
        self.engine.sync_wal().map_err(map_err)
    }

    fn snapshot(&self) -> Result<Arc<dyn KvSnapshot>> {
        Ok(Arc::new(EngineSnap(self.engine.snapshot())))
    }

    fn ticket(&self) -> u64 {
        self.engine.wal_ticket()
    }

    fn when_durable(&self, ticket: u64, done: DurableFn) {
        self.engine
            .sync_wal_then(ticket, Box::new(move |r| done(r.map_err(map_err))));
    }

    fn try_sync(&self, ticket: u64) -> Option<Result<()>> {
        self.engine.try_sync_wal(ticket).map(|r| r.map_err(map_err))
    }

    fn maintenance_pending(&self) -> bool {
        self.engine.background_work_pending()
    }

    fn read_only(&self) -> Option<Error> {
        self.engine.read_only().map(|p| read_only_error(&p))
    }

    fn write_now(&self, batch: Batch) -> Result<bool> {
        match self.engine.write(engine_batch(&batch), Durability::NoWait) {
            Ok(()) => Ok(true),
            Err(storage::Error::WouldBlock) => Ok(false),
            Err(e) => Err(map_err(e)),
        }
    }
}

impl Db {
    /// Open the document database on the encrypted engine with default settings.
    pub fn open(engine: Engine) -> Result<Db> {
        Db::open_with(engine, DbConfig::default())
    }

    /// Open with explicit settings (e.g. a small sort memory limit in tests).
    pub fn open_with(engine: Engine, cfg: DbConfig) -> Result<Db> {
        Db::open_kv(Arc::new(EngineKv::new(engine)), cfg)
    }
}
