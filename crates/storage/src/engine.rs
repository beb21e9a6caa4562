//! The engine: write path (WAL + memtable, group commit), read path (memtables + version),
//! flush, recovery, the background thread, key rotation and re-encryption.
//!
//! Locks are always taken in this order, never the reverse:
//! `writer -> ids -> manifest -> sv`, `flush_lock -> ids -> manifest -> sv`,
//! `compaction_lock -> ids -> manifest -> sv`, `keys_lock -> ids -> manifest -> keys`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};

use crate::archive::{ArchivedWal, scan_archive_keys};
use crate::batch::WriteBatch;
use crate::cache::BlockCache;
use crate::checkpoint::{Checkpoint, SealedRegistry, WalPosition};
use crate::crypto::keys::{DataKey, KeyId, KeyRing, now_unix};
use crate::crypto::registry::{read_registry, registry_name, write_registry};
use crate::crypto::{CipherSuite, FileKind, RootKey};
use crate::error::{Cause, Error, Poison, Result};
use crate::fs::{Fs, LockGuard, WritableFile};
use crate::iterators::Direction;
use crate::logfile::{LogWriter, Reserve, read_log};
use crate::manifest::{self, CURRENT, ManifestState, ManifestWriter, VersionEdit, manifest_name};
use crate::memtable::MemTable;
use crate::options::Options;
use crate::snapshot::{Iter, Snapshot};
use crate::table::{Table, TableBuilder, bloom, table_name};
use crate::temp::{TempWriter, temp_name};
use crate::version::Version;
use crate::wal::{DecodedBatch, Op, decode_batch, encode_batch};
use crate::wal_spare::{SpareWal, spare_name};
use crate::wal_sync::{self, DurableCallback, SyncQueue};

/// Subdirectory that holds archived WAL segments (archive mode).
pub(crate) const ARCHIVE_DIR: &str = "archive";
/// Marker file present while a restore builds a directory; `open` refuses such a directory.
pub(crate) const RESTORE_MARKER: &str = "RESTORING";

/// Largest accepted key.
pub const MAX_KEY_LEN: usize = 64 << 10;
/// Largest accepted value.
pub const MAX_VALUE_LEN: usize = 32 << 20;
/// Immutable memtables allowed before writers stall for the flush.
const MAX_IMMUTABLE: usize = 4;
/// L0 tables that stall writers while background compaction catches up.
const L0_STALL: usize = 20;
/// File ids reserved per manifest record, so ids are never reused after a crash.
const ID_RESERVATION: u64 = 1024;

/// How durable a write is when the call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The WAL record is fsynced before returning; concurrent writers share one fsync.
    Sync,
    /// Written to the OS (survives a process crash, not a power cut) without fsync.
    Buffered,
    /// Like `Buffered`, for callers that must not block: when the write would first have
    /// to wait (a full memtable's switch creates and syncs a WAL segment; writes stall
    /// behind flushes and compactions) nothing is written and the call fails with
    /// [`Error::WouldBlock`].
    NoWait,
}

/// Progress of [`Engine::reencrypt`].
#[derive(Clone, Debug)]
pub struct Progress {
    /// Files rewritten so far.
    pub done: usize,
    /// Files to rewrite in total.
    pub total: usize,
    /// Bytes rewritten so far.
    pub bytes: u64,
}

/// Per-level numbers in [`Stats`].
#[derive(Clone, Debug, Default)]
pub struct LevelStats {
    /// Tables in the level.
    pub files: usize,
    /// Bytes on disk.
    pub bytes: u64,
    /// Entries (all versions and tombstones) in the level's tables.
    pub entries: u64,
}

/// A snapshot of engine statistics.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Live table files.
    pub files: usize,
    /// Tables and bytes per level (index = level).
    pub levels: Vec<LevelStats>,
    /// Total bytes of live tables.
    pub table_bytes: u64,
    /// Live WAL segments.
    pub wal_files: usize,
    /// Data keys used by live tables, live WAL segments and unreleased archived segments.
    pub key_ids_in_use: Vec<KeyId>,
    /// Data keys held in the registry.
    pub key_ids_known: Vec<KeyId>,
    /// Newest data key (used for new files).
    pub newest_key: KeyId,
    /// Approximate bytes in memtables (active + immutable).
    pub memtable_bytes: usize,
    /// Immutable memtables waiting for flush.
    pub immutable_memtables: usize,
    /// Last sequence number assigned.
    pub last_sequence: u64,
    /// Live snapshots (including those held by iterators).
    pub snapshots: usize,
    /// A level is over its bound: background compaction has work queued or running.
    /// With `immutable_memtables`, says whether the engine has settled after a burst of
    /// writes.
    pub compaction_due: bool,
}

pub(crate) struct SuperVersion {
    pub(crate) mem: Arc<MemTable>,
    /// Newest first.
    pub(crate) imms: Vec<Arc<MemTable>>,
    pub(crate) version: Arc<Version>,
}

pub(crate) struct Writer {
    pub(crate) wal: LogWriter,
    frame: Vec<u8>,
    /// Commit time (Unix µs) of the last record appended.
    pub(crate) last_commit: u64,
    /// Smallest commit time the next record may carry: the last commit time, or one past
    /// an `as_of` instant handed out by [`Engine::wal_position`] / [`Engine::checkpoint`].
    floor: u64,
}

impl Writer {
    /// Commit time for the next record: `max(now, floor)`, so never below an earlier one.
    fn stamp(&mut self) -> u64 {
        let t = now_micros().max(self.floor);
        self.last_commit = t;
        self.floor = t;
        t
    }

    /// An instant that every record appended so far is at or before and every later record
    /// will be strictly after.
    pub(crate) fn as_of(&mut self) -> u64 {
        let t = now_micros().max(self.floor);
        self.floor = t.saturating_add(1);
        t
    }
}

/// Current wall-clock time in microseconds since the Unix epoch (0 before 1970).
pub(crate) fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[derive(Default)]
struct SyncState {
    synced: u64,
    leader: bool,
}

#[derive(Default)]
struct Bg {
    /// An immutable memtable waits for the flush thread.
    flush: bool,
    /// The file set changed; the compaction thread should look for work.
    compact: bool,
    /// A memtable switch took (or wanted) the spare WAL segment.
    spare: bool,
    shutdown: bool,
}

struct IdAlloc {
    next: u64,
    reserved: u64,
}

pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) memtable_bytes: usize,
    pub(crate) block_size: usize,
    rotation: Option<Duration>,
    background_compaction: bool,
    compaction_nice: i32,
    /// Retired WAL segments are moved to `archive/` instead of being deleted.
    pub(crate) archive_wal: bool,
    /// Key id of every segment in `archive/` (kept so `reencrypt` never retires a key an
    /// unreleased archived segment needs, without reading files on every call).
    pub(crate) archived_keys: Mutex<BTreeMap<u64, KeyId>>,
    pub(crate) suite: CipherSuite,
    root: Arc<DataKey>,
    keys: RwLock<Arc<KeyRing>>,
    pub(crate) sv: RwLock<Arc<SuperVersion>>,
    pub(crate) writer: Mutex<Writer>,
    wal_file: Mutex<Arc<dyn WritableFile>>,
    appended: AtomicU64,
    sync: Mutex<SyncState>,
    sync_cv: Condvar,
    /// Callbacks waiting for durability (see `wal_sync`).
    sync_queue: SyncQueue,
    /// The next WAL segment, written ahead (see `wal_spare`).
    spare_wal: SpareWal,
    pub(crate) last_seq: AtomicU64,
    pub(crate) manifest: Mutex<ManifestWriter>,
    ids: Mutex<IdAlloc>,
    pub(crate) cache: Arc<BlockCache>,
    pub(crate) snapshots: Mutex<BTreeMap<u64, usize>>,
    bg: Mutex<Bg>,
    bg_cv: Condvar,
    stall_cv: Condvar,
    flush_lock: Mutex<()>,
    pub(crate) compaction_lock: Mutex<()>,
    keys_lock: Mutex<()>,
    poisoned: Mutex<Option<Poison>>,
    /// Fast-path flag mirroring `poisoned.is_some()`.
    is_poisoned: AtomicBool,
    closed: AtomicBool,
    lock_guard: Mutex<Option<Box<dyn LockGuard>>>,
    bg_threads: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) compact_cursor: Mutex<Vec<Vec<u8>>>,
}

/// Closes the engine when the last [`Engine`] clone is dropped.
struct Handle {
    inner: Arc<Inner>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Err(e) = self.inner.shutdown() {
            tracing::warn!(error = %e, "engine close on drop failed");
        }
    }
}

/// The encrypted LSM key-value engine. Cheap to clone; all clones share one engine, which
/// closes when the last clone is dropped (or on [`Engine::close`]).
#[derive(Clone)]
pub struct Engine {
    h: Arc<Handle>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.h.inner.dir)
            .finish_non_exhaustive()
    }
}

fn parse_id(name: &str) -> Option<(u64, &'static str)> {
    if let Some(s) = name.strip_suffix(".sst") {
        return s.parse().ok().map(|id| (id, "sst"));
    }
    if let Some(s) = name.strip_suffix(".wal") {
        return s.parse().ok().map(|id| (id, "wal"));
    }
    if let Some(s) = name.strip_suffix(".tmp") {
        return s.parse().ok().map(|id| (id, "tmp"));
    }
    if let Some(s) = name.strip_suffix(".walspare") {
        return s.parse().ok().map(|id| (id, "walspare"));
    }
    if let Some(s) = name.strip_prefix("MANIFEST-") {
        return s.parse().ok().map(|id| (id, "manifest"));
    }
    if let Some(s) = name.strip_prefix("KEYS-") {
        return s.parse().ok().map(|id| (id, "keys"));
    }
    None
}

pub(crate) fn wal_name(id: u64) -> String {
    format!("{id:06}.wal")
}

impl Engine {
    /// Opens (or creates) the database in `dir` under `root`. Recovers from the manifest and
    /// WAL: a torn WAL tail is dropped, damage elsewhere is reported. A wrong root key is
    /// [`Error::WrongKey`]; another process holding the directory is [`Error::Locked`].
    pub fn open(dir: &Path, root: RootKey, opts: Options) -> Result<Engine> {
        let inner = Inner::open(dir, root, opts)?;
        let inner = Arc::new(inner);
        // Flushes and compactions run on separate threads so a long compaction never
        // delays the flush that writers may be stalled on.
        let f = inner.clone();
        let flush = std::thread::Builder::new()
            .name("storage-flush".into())
            .spawn(move || f.flush_loop())?;
        inner.bg_threads.lock().push(flush);
        let c = inner.clone();
        let compact = std::thread::Builder::new()
            .name("storage-compact".into())
            .spawn(move || c.compaction_loop())?;
        inner.bg_threads.lock().push(compact);
        let w = inner.clone();
        let wal_sync = std::thread::Builder::new()
            .name("storage-wal-sync".into())
            .spawn(move || wal_sync::sync_loop(w))?;
        inner.bg_threads.lock().push(wal_sync);
        let s = inner.clone();
        let spare = std::thread::Builder::new()
            .name("storage-wal-spare".into())
            .spawn(move || s.spare_loop())?;
        inner.bg_threads.lock().push(spare);
        inner.maybe_rotate()?;
        Ok(Engine {
            h: Arc::new(Handle { inner }),
        })
    }

    fn inner(&self) -> &Arc<Inner> {
        &self.h.inner
    }

    /// Reads the newest value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let i = self.inner();
        i.check_open()?;
        let snap = i.last_seq.load(Ordering::Acquire);
        let sv = i.sv.read().clone();
        i.get_at(&sv, key, snap)
    }

    /// Writes `key = value`.
    pub fn put(&self, key: &[u8], value: &[u8], d: Durability) -> Result<()> {
        self.inner()
            .write_ops(vec![Op::Put(key.to_vec(), value.to_vec())], d)
    }

    /// Deletes `key` (writes a tombstone).
    pub fn delete(&self, key: &[u8], d: Durability) -> Result<()> {
        self.inner().write_ops(vec![Op::Delete(key.to_vec())], d)
    }

    /// Applies a batch atomically.
    pub fn write(&self, batch: WriteBatch, d: Durability) -> Result<()> {
        self.inner().write_ops(batch.ops, d)
    }

    /// Makes every write appended so far durable: waits for a (group-commit) fsync that
    /// covers them. Lets a caller append several `Buffered` writes, release its own locks,
    /// and then wait once — sharing the fsync with concurrent writers.
    pub fn sync_wal(&self) -> Result<()> {
        let i = self.inner();
        i.check_open()?;
        let ticket = i.appended.load(Ordering::Acquire);
        i.sync_upto(ticket)
    }

    /// A consistent point-in-time view; files it needs stay alive while it exists.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.inner().clone())
    }

    /// Iterates the live keys in `range` in direction `dir` at a snapshot taken now.
    pub fn iter(&self, range: impl RangeBounds<Vec<u8>>, dir: Direction) -> Result<Iter> {
        self.inner().check_open()?;
        self.snapshot().iter(range, dir)
    }

    /// Writes the memtable to an SST and makes it durable (the WAL is then retired).
    pub fn flush(&self) -> Result<()> {
        let i = self.inner();
        i.check_open()?;
        i.force_switch(false)?;
        i.flush_imms()
    }

    /// Flushes, then merges every table into the bottom level (drops shadowed versions and
    /// tombstones no snapshot needs). Waits until done.
    pub fn compact(&self) -> Result<()> {
        self.flush()?;
        let i = self.inner();
        i.durable("compaction", || i.compact_full())
    }

    /// Creates a new data key; files written from now on use it.
    pub fn rotate_data_key(&self) -> Result<KeyId> {
        let i = self.inner();
        i.check_open()?;
        i.rotate()
    }

    /// Rewrites every table (and rolls the WAL) under the newest data key, then removes
    /// every other key from the registry. `progress` is called after each file.
    pub fn reencrypt(&self, progress: &dyn Fn(Progress)) -> Result<()> {
        let i = self.inner();
        i.check_open()?;
        i.reencrypt(progress)
    }

    /// Starts an encrypted spill file (deleted when its reader is dropped).
    pub fn temp_file(&self) -> Result<TempWriter> {
        let i = self.inner();
        i.check_open()?;
        let id = i.alloc_id()?;
        let key = i.newest_key()?;
        TempWriter::create(i.fs.clone(), &i.dir, id, &key, i.suite)
    }

    /// Where the live WAL ends: every record with `seq <= last_seq` lies in the first `len`
    /// bytes of the live segment or an earlier one, and every record appended later commits
    /// strictly after `as_of_micros`. The live segment only grows while live, so a backup
    /// agent can tail-copy `[already_copied, len)`; the bytes are fsynced before returning.
    pub fn wal_position(&self) -> Result<WalPosition> {
        self.inner().wal_position()
    }

    /// A consistent physical view (tables + registry + WAL boundary) without flushing; the
    /// tables stay on disk while the returned [`Checkpoint`] lives.
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        self.inner().checkpoint()
    }

    /// The key registry in force, sealed, exactly as on disk. In archive mode it holds every
    /// data key a live table, the live WAL or an unreleased archived segment needs.
    pub fn key_registry(&self) -> Result<SealedRegistry> {
        self.inner().key_registry()
    }

    /// Archived WAL segments (archive mode), ascending by id.
    pub fn archived_wal(&self) -> Result<Vec<ArchivedWal>> {
        self.inner().check_open()?;
        self.inner().archived_wal()
    }

    /// Deletes archived segment `id` (the backup agent has its copy). Its data key may then
    /// be retired by the next [`reencrypt`](Self::reencrypt).
    pub fn release_archived_wal(&self, id: u64) -> Result<()> {
        self.inner().check_open()?;
        self.inner().release_archived_wal(id)
    }

    /// The last sequence number assigned (an atomic load: cheap enough to poll).
    pub fn last_sequence(&self) -> u64 {
        self.inner().last_seq.load(Ordering::Acquire)
    }

    /// The durability ticket covering every write appended so far (for
    /// [`sync_wal_then`](Self::sync_wal_then)).
    pub fn wal_ticket(&self) -> u64 {
        self.inner().appended.load(Ordering::Acquire)
    }

    /// Calls `done` once every write up to `ticket` is durable — at once when it already
    /// is, otherwise from the engine's sync thread after a group-commit fsync. The caller
    /// never blocks: this is [`sync_wal`](Self::sync_wal) for code that must not wait on
    /// the disk (an async task).
    pub fn sync_wal_then(&self, ticket: u64, done: DurableCallback) {
        let i = self.inner();
        if let Err(e) = i.check_open() {
            return done(Err(e));
        }
        if i.sync.lock().synced >= ticket {
            return done(Ok(()));
        }
        i.sync_queue.push(ticket, done);
    }

    /// Makes every write up to `ticket` durable on the calling thread — unless another
    /// thread's fsync is under way, in which case it returns `None` at once rather than
    /// wait for it. For a caller that usually hands durability to
    /// [`sync_wal_then`](Self::sync_wal_then) but knows nothing else would run on its
    /// thread meanwhile: then the hand-off to the sync thread and back is pure latency.
    pub fn try_sync_wal(&self, ticket: u64) -> Option<Result<()>> {
        let i = self.inner();
        if let Err(e) = i.check_open() {
            return Some(Err(e));
        }
        i.try_sync_upto(ticket)
    }

    /// Whether background work is queued or running: a memtable awaiting its flush or a
    /// level over its bound. [`stats`](Self::stats) says the same and much more; this is
    /// the cheap question a monitor polls.
    pub fn background_work_pending(&self) -> bool {
        let i = self.inner();
        !i.sv.read().imms.is_empty() || i.compaction_due()
    }

    /// Why the engine is read-only, or `None` while it takes writes. An engine becomes
    /// read-only when a durable write (WAL append or fsync, memtable switch, flush,
    /// compaction, manifest) fails; reads keep working, and only closing it and opening
    /// the directory again (WAL replay) makes it writable. A cheap load, safe to poll.
    pub fn read_only(&self) -> Option<crate::error::Poison> {
        self.inner().poison_state()
    }

    /// Free bytes a reopen of this engine needs in its file system, roughly: the
    /// memtables' data (replayed from the WAL into one L0 table), the new WAL segment's
    /// reservation and a margin for the manifest. A supervisor waits for this much free
    /// space after [`Cause::NoSpace`](crate::Cause::NoSpace) before reopening.
    pub fn reopen_space_needed(&self) -> u64 {
        let i = self.inner();
        let sv = i.sv.read().clone();
        let mem = sv.mem.bytes() + sv.imms.iter().map(|m| m.bytes()).sum::<usize>();
        mem as u64 + wal_reserve(i.memtable_bytes) + (1 << 20)
    }

    /// Current statistics.
    pub fn stats(&self) -> Stats {
        self.inner().stats()
    }

    /// Stops background work, syncs the WAL and releases the directory lock.
    pub fn close(self) -> Result<()> {
        self.inner().shutdown()
    }
}

impl Inner {
    fn open(dir: &Path, root: RootKey, opts: Options) -> Result<Inner> {
        let fs = opts.fs.clone();
        fs.create_dir_all(dir)?;
        // A flock is shared with any child forked (and not yet exec'd) while the
        // previous holder had the file open; that window is short, so a held lock is
        // retried for a moment before it counts as another process's.
        let lock_path = dir.join("LOCK");
        let deadline = std::time::Instant::now() + Duration::from_millis(500);
        let guard = loop {
            match fs.lock(&lock_path) {
                Ok(guard) => break guard,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(libc::EWOULDBLOCK) =>
                {
                    if std::time::Instant::now() >= deadline {
                        return Err(Error::Locked(dir.display().to_string()));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(Error::Io(e)),
            }
        };
        #[cfg(feature = "bench-null-cipher")]
        let suite = opts.cipher;
        #[cfg(not(feature = "bench-null-cipher"))]
        let suite = CipherSuite::Aes256Gcm;
        let root = Arc::new(DataKey {
            id: KeyId::ROOT,
            created_unix: 0,
            bytes: zeroize::Zeroizing::new(*root.bytes()),
        });
        let names = fs.list(dir)?;
        if names.iter().any(|n| n == RESTORE_MARKER) {
            return Err(Error::corruption(
                RESTORE_MARKER,
                None,
                "an interrupted restore left this directory; delete it and restore again",
            ));
        }
        let max_id = names
            .iter()
            .filter_map(|n| parse_id(n))
            .map(|(id, _)| id)
            .max()
            .unwrap_or(0);
        let mut manifests: Vec<u64> = names
            .iter()
            .filter_map(|n| parse_id(n))
            .filter(|(_, k)| *k == "manifest")
            .map(|(id, _)| id)
            .collect();
        manifests.sort_unstable();
        let has_current = names.iter().any(|n| n == CURRENT);

        let mut next_id = max_id + 1;
        let (old_manifest, mut state) = if has_current || !manifests.is_empty() {
            let r = if has_current {
                manifest::recover(&*fs, dir, &root, None)
            } else {
                // CURRENT lost (crash during creation, or deleted): fall back to the newest
                // manifest that authenticates rather than starting an empty database.
                let newest = manifests.last().copied().unwrap_or(0);
                tracing::warn!(
                    manifest = newest,
                    "CURRENT missing; recovering from newest manifest"
                );
                manifest::recover(&*fs, dir, &root, Some(newest))
            };
            let (id, st, _) = r?;
            (Some(id), st)
        } else {
            if names.iter().any(|n| n.ends_with(".sst")) {
                return Err(Error::corruption(
                    CURRENT,
                    None,
                    "missing, but table files exist",
                ));
            }
            // Fresh database: first data key and registry.
            let reg_id = next_id;
            next_id += 1;
            let ring = KeyRing {
                keys: vec![Arc::new(DataKey::generate(KeyId(1), now_unix())?)],
            };
            write_registry(&*fs, dir, reg_id, &root, &ring)?;
            let st = ManifestState {
                registry: Some(reg_id),
                ..ManifestState::default()
            };
            (None, st)
        };
        next_id = next_id.max(state.next_file_id);
        let reg_id = state
            .registry
            .ok_or_else(|| Error::corruption(CURRENT, None, "manifest names no key registry"))?;
        let ring = Arc::new(read_registry(&*fs, dir, reg_id, &root)?);
        let newest = ring
            .newest()
            .ok_or_else(|| Error::corruption(registry_name(reg_id), Some(0), "no data key"))?;
        let resolve = {
            let ring = ring.clone();
            move |k: KeyId| ring.get(k)
        };
        let cache = Arc::new(BlockCache::new(opts.block_cache_bytes));

        // Files no manifest references (outputs of a flush or compaction that failed or
        // was cut short, spill files, a spare segment) go before this open writes
        // anything: on a full disk they hold the space the reopen needs. Step 7 below
        // removes the same files; it just comes after the commit point.
        for n in &names {
            let dead = match parse_id(n) {
                Some((id, "sst")) => !state.tables.contains_key(&id),
                Some((_, "tmp" | "walspare")) => true,
                _ => false,
            };
            if dead {
                tracing::debug!(file = %n, "removing unreferenced file before recovery");
                if let Err(e) = fs.remove(&dir.join(n)) {
                    tracing::warn!(file = %n, error = %e, "could not remove unreferenced file");
                }
            }
        }

        // Tables named by the manifest.
        let mut add = Vec::new();
        for (&id, &(level, size)) in &state.tables {
            if level as usize >= crate::version::NUM_LEVELS {
                return Err(Error::corruption(
                    manifest_name(old_manifest.unwrap_or(0)),
                    None,
                    "table level out of range",
                ));
            }
            let t = Table::open(fs.clone(), dir, id, Some(size), &resolve, cache.clone())?;
            add.push((level as usize, Arc::new(t)));
        }
        let mut version = Version::default().apply(&add, &HashSet::new());

        // Replay the WAL segments into one recovery memtable. It is flushed, never read, so
        // its filter gets the smallest size.
        let recovered = MemTable::new(0, 0, 0);
        let mut last_seq = state.last_seq;
        let mut max_wal_seq = 0u64;
        let mut last_commit = state.last_commit_micros;
        // Segments with a torn tail: archive mode cuts them to their authentic prefix first.
        let mut torn: BTreeMap<u64, u64> = BTreeMap::new();
        for &wid in &state.wals {
            let name = wal_name(wid);
            let log = read_log(&*fs, dir, &name, FileKind::Wal, wid, &resolve)?;
            if log.torn {
                tracing::warn!(file = %name, dropped = log.file_len - log.valid_len, "dropping torn WAL tail");
                torn.insert(wid, log.valid_len);
            }
            for (i, rec) in log.records.iter().enumerate() {
                let DecodedBatch {
                    base_seq: base,
                    commit_micros,
                    ops,
                } = decode_batch(rec, &name, i as u64)?;
                last_commit = last_commit.max(commit_micros);
                recovered.note_commit(commit_micros);
                if base <= max_wal_seq {
                    return Err(Error::corruption(
                        &name,
                        Some(i as u64),
                        "sequence numbers go backwards",
                    ));
                }
                let n = ops.len() as u64;
                for (j, op) in ops.into_iter().enumerate() {
                    match op {
                        Op::Put(k, v) => recovered.insert(k, base + j as u64, Some(v)),
                        Op::Delete(k) => recovered.insert(k, base + j as u64, None),
                    }
                }
                max_wal_seq = base + n.saturating_sub(1);
            }
        }
        last_seq = last_seq.max(max_wal_seq);

        let mut edit = VersionEdit {
            remove_wals: state.wals.iter().copied().collect(),
            last_seq: Some(last_seq),
            last_commit_micros: Some(recovered.max_commit()),
            ..VersionEdit::default()
        };
        let block_size = opts.block_size;
        // Tiny memtables are for tests; below 1 KiB every write would switch segments.
        let memtable_bytes = opts.memtable_bytes.max(1024);
        let table_id = (!recovered.is_empty()).then(|| {
            next_id += 1;
            next_id - 1
        });
        let wal_id = next_id;
        let manifest_id = next_id + 1;
        next_id += 2;
        let reserved = next_id + ID_RESERVATION;
        let committed = (|| -> Result<(LogWriter, ManifestWriter)> {
            if let Some(id) = table_id {
                let b = TableBuilder::create(&*fs, dir, id, &newest, suite, block_size)?;
                let size = build_table(&*fs, dir, b.warming(cache.clone()), &recovered)?;
                fs.sync_dir(dir)?;
                let t = Table::open(fs.clone(), dir, id, Some(size), &resolve, cache.clone())?;
                edit.add_tables.push((0, id, size));
                version = version.apply(&[(0, Arc::new(t))], &HashSet::new());
            }
            let wal = LogWriter::create(
                &*fs,
                dir,
                &wal_name(wal_id),
                FileKind::Wal,
                wal_id,
                &newest,
                suite,
                Reserve::Allocate(wal_reserve(memtable_bytes)),
            )?;
            edit.add_wals.push(wal_id);
            edit.next_file_id = Some(reserved);
            state.apply(&edit);
            // Commit point: the new manifest (and CURRENT pointing at it).
            let mw = ManifestWriter::create(&*fs, dir, manifest_id, &root, state.clone())?;
            Ok((wal, mw))
        })();
        let (wal, mw) = match committed {
            Ok(done) => done,
            Err(e) => {
                // A failed recovery (a disk still full) must leave the directory as it
                // found it, or every retry would leave more behind. What it wrote is
                // garbage unless CURRENT already names the new manifest.
                let current = fs.read_all(&dir.join(CURRENT)).unwrap_or_default();
                if current.trim_ascii_end() != manifest_name(manifest_id).as_bytes() {
                    let mut ours = vec![wal_name(wal_id), manifest_name(manifest_id)];
                    ours.extend(table_id.map(table_name));
                    for n in ours {
                        let _ = fs.remove(&dir.join(n));
                    }
                }
                return Err(e);
            }
        };

        // Remove everything the new manifest does not reference. In archive mode a WAL
        // segment is archived instead: it may be one a flush retired just before a crash
        // (manifest edit durable, rename not yet done), and its records must reach the
        // archive.
        let live_tables: HashSet<u64> = state.tables.keys().copied().collect();
        let archive = dir.join(ARCHIVE_DIR);
        if opts.archive_wal {
            fs.create_dir_all(&archive)?;
            fs.sync_dir(dir)?;
        }
        for n in fs.list(dir)? {
            let Some((id, kind)) = parse_id(&n) else {
                if n == "CURRENT.tmp" {
                    let _ = fs.remove(&dir.join(&n));
                }
                continue;
            };
            let dead = match kind {
                "sst" => !live_tables.contains(&id),
                "wal" => id != wal_id,
                "tmp" | "walspare" => true,
                "manifest" => id != manifest_id,
                "keys" => id != reg_id,
                _ => false,
            };
            if dead && kind == "wal" && opts.archive_wal {
                if let Some(&valid) = torn.get(&id) {
                    fs.truncate(&dir.join(&n), valid)?;
                }
                fs.rename(&dir.join(&n), &archive.join(&n))?;
                fs.sync_dir(&archive)?;
                tracing::debug!(file = %n, "archived WAL segment at open");
                continue;
            }
            if dead {
                tracing::debug!(file = %n, "removing unreferenced file");
                if let Err(e) = fs.remove(&dir.join(&n)) {
                    tracing::warn!(file = %n, error = %e, "could not remove unreferenced file");
                }
            }
        }
        fs.sync_dir(dir)?;
        let archived_keys = Mutex::new(scan_archive_keys(&*fs, &archive));

        let wal_file = wal.file();
        let levels = crate::version::NUM_LEVELS;
        Ok(Inner {
            dir: dir.to_path_buf(),
            fs,
            memtable_bytes,
            block_size,
            rotation: opts.data_key_rotation,
            background_compaction: opts.background_compaction,
            compaction_nice: opts.compaction_nice,
            archive_wal: opts.archive_wal,
            archived_keys,
            suite,
            root,
            keys: RwLock::new(ring),
            sv: RwLock::new(Arc::new(SuperVersion {
                mem: Arc::new(MemTable::new(wal_id, last_seq, memtable_bytes)),
                imms: Vec::new(),
                version: Arc::new(version),
            })),
            writer: Mutex::new(Writer {
                wal,
                frame: Vec::new(),
                last_commit,
                floor: last_commit,
            }),
            wal_file: Mutex::new(wal_file),
            appended: AtomicU64::new(0),
            sync: Mutex::new(SyncState::default()),
            sync_cv: Condvar::new(),
            sync_queue: SyncQueue::default(),
            spare_wal: SpareWal::default(),
            last_seq: AtomicU64::new(last_seq),
            manifest: Mutex::new(mw),
            ids: Mutex::new(IdAlloc {
                next: next_id,
                reserved,
            }),
            cache,
            snapshots: Mutex::new(BTreeMap::new()),
            bg: Mutex::new(Bg::default()),
            bg_cv: Condvar::new(),
            stall_cv: Condvar::new(),
            flush_lock: Mutex::new(()),
            compaction_lock: Mutex::new(()),
            keys_lock: Mutex::new(()),
            poisoned: Mutex::new(None),
            is_poisoned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            lock_guard: Mutex::new(Some(guard)),
            bg_threads: Mutex::new(Vec::new()),
            compact_cursor: Mutex::new(vec![Vec::new(); levels]),
        })
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if let Some(why) = self.poison_state() {
            return Err(Error::Poisoned(why));
        }
        Ok(())
    }

    /// Why the engine is read-only, if it is.
    pub(crate) fn poison_state(&self) -> Option<Poison> {
        if !self.is_poisoned.load(Ordering::Acquire) {
            return None;
        }
        self.poisoned.lock().clone()
    }

    /// Makes the engine read-only. The first failure is the one kept: later ones are
    /// usually its consequences.
    fn poison(&self, why: Poison) {
        tracing::error!(cause = why.cause.as_str(), operation = why.operation, reason = %why, "engine is read-only until reopened");
        let mut p = self.poisoned.lock();
        if p.is_none() {
            *p = Some(why);
        }
        self.is_poisoned.store(true, Ordering::Release);
        self.stall_cv.notify_all();
        self.sync_cv.notify_all();
    }

    /// Runs `f`; an error poisons the engine (the on-disk state of a failed durable write is
    /// unknown, so accepting more writes could acknowledge data that is not there).
    pub(crate) fn durable<T>(
        &self,
        what: &'static str,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        f().inspect_err(|e| self.poison(Poison::from_error(what, e)))
    }

    pub(crate) fn newest_key(&self) -> Result<Arc<DataKey>> {
        self.keys
            .read()
            .newest()
            .ok_or_else(|| Error::corruption("KEYS", None, "no data key"))
    }

    pub(crate) fn resolver(&self) -> impl Fn(KeyId) -> Option<Arc<DataKey>> + use<> {
        let ring = self.keys.read().clone();
        move |k| ring.get(k)
    }

    /// Allocates a never-reused file id, extending the reservation in the manifest when
    /// needed. Must not be called with the manifest lock held.
    pub(crate) fn alloc_id(&self) -> Result<u64> {
        let mut ids = self.ids.lock();
        if ids.next >= ids.reserved {
            let reserved = ids.next + ID_RESERVATION;
            let edit = VersionEdit {
                next_file_id: Some(reserved),
                ..VersionEdit::default()
            };
            self.durable("manifest write", || self.manifest.lock().log_edit(&edit))?;
            ids.reserved = reserved;
        }
        let id = ids.next;
        ids.next += 1;
        Ok(id)
    }

    pub(crate) fn get_at(
        &self,
        sv: &SuperVersion,
        key: &[u8],
        snap: u64,
    ) -> Result<Option<Vec<u8>>> {
        let hash = bloom::hash(key);
        if let Some(v) = sv.mem.get(key, hash, snap) {
            return Ok(v);
        }
        for m in &sv.imms {
            if let Some(v) = m.get(key, hash, snap) {
                return Ok(v);
            }
        }
        Ok(sv.version.get(key, hash, snap)?.flatten())
    }

    fn write_ops(&self, ops: Vec<Op>, d: Durability) -> Result<()> {
        self.check_writable()?;
        for op in &ops {
            if op.key().len() > MAX_KEY_LEN {
                return Err(Error::InvalidArgument(format!(
                    "key of {} bytes exceeds {MAX_KEY_LEN}",
                    op.key().len()
                )));
            }
            if let Op::Put(_, v) = op
                && v.len() > MAX_VALUE_LEN
            {
                return Err(Error::InvalidArgument(format!(
                    "value of {} bytes exceeds {MAX_VALUE_LEN}",
                    v.len()
                )));
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        let ticket = {
            let mut w = self.writer.lock();
            self.check_writable()?;
            let mut sv = self.sv.read().clone();
            let must_switch = sv.mem.bytes() >= self.memtable_bytes;
            if d == Durability::NoWait && (must_switch || self.must_stall(&sv)) {
                return Err(Error::WouldBlock);
            }
            if must_switch {
                self.switch_memtable(&mut w)?;
                sv = self.sv.read().clone();
            }
            if self.must_stall(&sv) {
                self.stall()?;
                sv = self.sv.read().clone();
            }
            let base = self.last_seq.load(Ordering::Acquire) + 1;
            let commit = w.stamp();
            let Writer { wal, frame, .. } = &mut *w;
            frame.clear();
            self.durable("WAL append", || {
                wal.encode_with(frame, |out| encode_batch(base, commit, &ops, out))?;
                wal.write(frame)
            })?;
            if frame.capacity() > (1 << 20) {
                *frame = Vec::new();
            }
            let mem = &sv.mem;
            mem.note_commit(commit);
            let n = ops.len() as u64;
            for (j, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Put(k, v) => mem.insert(k, base + j as u64, Some(v)),
                    Op::Delete(k) => mem.insert(k, base + j as u64, None),
                }
            }
            self.last_seq.store(base + n - 1, Ordering::Release);
            self.appended.fetch_add(1, Ordering::AcqRel) + 1
        };
        if d == Durability::Sync {
            self.sync_upto(ticket)?;
        }
        Ok(())
    }

    /// Group commit: the first waiter becomes leader and fsyncs everything appended so far;
    /// the others wait and are covered by that fsync.
    pub(crate) fn sync_upto(&self, ticket: u64) -> Result<()> {
        let mut s = self.sync.lock();
        loop {
            if s.synced >= ticket {
                return Ok(());
            }
            if let Some(why) = self.poison_state() {
                return Err(Error::Poisoned(why));
            }
            if s.leader {
                self.sync_cv.wait(&mut s);
                continue;
            }
            self.lead_sync(&mut s)?;
        }
    }

    /// `sync_upto` for a caller that must not wait on another thread's fsync: `None`
    /// when one is running (the caller then queues on the sync thread instead).
    pub(crate) fn try_sync_upto(&self, ticket: u64) -> Option<Result<()>> {
        let mut s = self.sync.lock();
        if s.synced >= ticket {
            return Some(Ok(()));
        }
        if let Some(why) = self.poison_state() {
            return Some(Err(Error::Poisoned(why)));
        }
        if s.leader {
            return None;
        }
        Some(self.lead_sync(&mut s))
    }

    /// One group-commit fsync by the caller, which becomes the leader: covers everything
    /// appended when it starts; followers wait on `sync_cv`.
    fn lead_sync(&self, s: &mut MutexGuard<'_, SyncState>) -> Result<()> {
        s.leader = true;
        let target = self.appended.load(Ordering::Acquire);
        let file = self.wal_file.lock().clone();
        let r = MutexGuard::unlocked(s, || file.sync());
        s.leader = false;
        let r = match r {
            Ok(()) => {
                s.synced = s.synced.max(target);
                Ok(())
            }
            Err(e) => {
                // Never retried: after a failed fsync the kernel may have dropped the
                // dirty pages (fsyncgate), so only a reopen that replays the WAL from
                // disk knows what is durable.
                self.poison(Poison {
                    cause: Cause::of_io(&e),
                    operation: "WAL fsync",
                    message: e.to_string(),
                });
                Err(Error::Io(e))
            }
        };
        self.sync_cv.notify_all();
        r
    }

    pub(crate) fn sync_queue(&self) -> &SyncQueue {
        &self.sync_queue
    }

    fn must_stall(&self, sv: &SuperVersion) -> bool {
        sv.imms.len() >= MAX_IMMUTABLE
            || (self.background_compaction && sv.version.levels[0].len() >= L0_STALL)
    }

    /// Waits while too many memtables await flush or L0 is too deep. Called with the
    /// writer lock held (so writes queue behind the stall in order).
    fn stall(&self) -> Result<()> {
        loop {
            if !self.must_stall(&self.sv.read().clone()) {
                return Ok(());
            }
            self.check_writable()?;
            let mut bg = self.bg.lock();
            bg.flush = true;
            bg.compact = true;
            self.bg_cv.notify_all();
            self.stall_cv.wait_for(&mut bg, Duration::from_millis(50));
        }
    }

    /// Seals the active memtable and starts a new WAL segment under the newest key.
    fn switch_memtable(&self, w: &mut Writer) -> Result<()> {
        let key = self.newest_key()?;
        let spare = self
            .spare_wal
            .take(&*self.fs, &self.dir, w.wal.id(), key.id);
        self.wake_spare();
        let id = match &spare {
            Some(s) => s.id(),
            None => self.alloc_id()?,
        };
        self.durable("WAL switch", || {
            // The old segment becomes durable first, so a crash can never keep a later
            // segment while losing an earlier one.
            w.wal.file().sync()?;
            let new = match spare {
                Some(s) => {
                    self.fs
                        .rename(&self.dir.join(spare_name(id)), &self.dir.join(wal_name(id)))?;
                    self.fs.sync_dir(&self.dir)?;
                    s
                }
                None => LogWriter::create(
                    &*self.fs,
                    &self.dir,
                    &wal_name(id),
                    FileKind::Wal,
                    id,
                    &key,
                    self.suite,
                    Reserve::Allocate(wal_reserve(self.memtable_bytes)),
                )?,
            };
            let edit = VersionEdit {
                add_wals: vec![id],
                ..VersionEdit::default()
            };
            self.manifest.lock().log_edit(&edit)?;
            {
                let mut s = self.sync.lock();
                s.synced = s.synced.max(self.appended.load(Ordering::Acquire));
            }
            *self.wal_file.lock() = new.file();
            w.wal = new;
            Ok(())
        })?;
        {
            let mut sv = self.sv.write();
            let mut imms = Vec::with_capacity(sv.imms.len() + 1);
            imms.push(sv.mem.clone());
            imms.extend(sv.imms.iter().cloned());
            *sv = Arc::new(SuperVersion {
                mem: Arc::new(MemTable::new(
                    id,
                    self.last_seq.load(Ordering::Acquire),
                    self.memtable_bytes,
                )),
                imms,
                version: sv.version.clone(),
            });
        }
        self.wake_bg();
        Ok(())
    }

    /// Switches the memtable if it holds data (or always, when `roll_wal`).
    fn force_switch(&self, roll_wal: bool) -> Result<()> {
        let mut w = self.writer.lock();
        self.check_writable()?;
        let empty = self.sv.read().mem.is_empty();
        if !empty || roll_wal {
            self.switch_memtable(&mut w)?;
        }
        Ok(())
    }

    fn wake_bg(&self) {
        let mut bg = self.bg.lock();
        bg.flush = true;
        self.bg_cv.notify_all();
    }

    fn wake_spare(&self) {
        let mut bg = self.bg.lock();
        bg.spare = true;
        self.bg_cv.notify_all();
    }

    fn wake_compaction(&self) {
        let mut bg = self.bg.lock();
        bg.compact = true;
        self.bg_cv.notify_all();
    }

    /// Flushes every immutable memtable, oldest first.
    pub(crate) fn flush_imms(&self) -> Result<()> {
        let _f = self.flush_lock.lock();
        loop {
            self.check_writable()?;
            let Some(imm) = self.sv.read().imms.last().cloned() else {
                return Ok(());
            };
            let table = if imm.is_empty() {
                None
            } else {
                let id = self.alloc_id()?;
                let key = self.newest_key()?;
                let t = self.durable("flush", || {
                    let b = TableBuilder::create(
                        &*self.fs,
                        &self.dir,
                        id,
                        &key,
                        self.suite,
                        self.block_size,
                    )?;
                    let size =
                        build_table(&*self.fs, &self.dir, b.warming(self.cache.clone()), &imm)?;
                    let resolve = self.resolver();
                    self.fs
                        .sync_dir(&self.dir)
                        .map_err(Error::from)
                        .and_then(|()| {
                            Table::open(
                                self.fs.clone(),
                                &self.dir,
                                id,
                                Some(size),
                                &resolve,
                                self.cache.clone(),
                            )
                        })
                        .inspect_err(|_| {
                            // The memtable (and its WAL segment) still hold every entry:
                            // the half-made table only takes space a full disk needs.
                            let _ = self.fs.remove(&self.dir.join(table_name(id)));
                        })
                })?;
                Some(Arc::new(t))
            };
            let edit = VersionEdit {
                add_tables: table.iter().map(|t| (0u8, t.id, t.size)).collect(),
                remove_wals: vec![imm.wal_id],
                last_seq: Some(self.last_seq.load(Ordering::Acquire)),
                last_commit_micros: Some(imm.max_commit()),
                ..VersionEdit::default()
            };
            {
                let mut m = self.manifest.lock();
                self.durable("manifest write", || m.log_edit(&edit))?;
                // Retire the segment while still holding the manifest lock, so anyone reading
                // (manifest, super-version) under it sees the segment either among the
                // immutable memtables' segments or in the archive, never in neither.
                self.retire_wal(imm.wal_id)?;
                let mut sv = self.sv.write();
                let add: Vec<(usize, Arc<Table>)> =
                    table.iter().map(|t| (0usize, t.clone())).collect();
                let version = Arc::new(sv.version.apply(&add, &HashSet::new()));
                let imms = sv
                    .imms
                    .iter()
                    .filter(|m| !Arc::ptr_eq(m, &imm))
                    .cloned()
                    .collect();
                *sv = Arc::new(SuperVersion {
                    mem: sv.mem.clone(),
                    imms,
                    version,
                });
            }
            self.maybe_rollover_manifest()?;
            let _bg = self.bg.lock();
            self.stall_cv.notify_all();
        }
    }

    pub(crate) fn maybe_rollover_manifest(&self) -> Result<()> {
        if !self.manifest.lock().wants_rollover() {
            return Ok(());
        }
        let id = self.alloc_id()?;
        let mut m = self.manifest.lock();
        self.durable("manifest rollover", || {
            m.rollover(&*self.fs, &self.dir, id, &self.root)
        })
    }

    /// Installs a compaction / rewrite result: one manifest record, one new version.
    pub(crate) fn install(
        &self,
        add: Vec<(usize, Arc<Table>)>,
        remove: Vec<Arc<Table>>,
    ) -> Result<()> {
        let edit = VersionEdit {
            add_tables: add.iter().map(|(l, t)| (*l as u8, t.id, t.size)).collect(),
            remove_tables: remove.iter().map(|t| t.id).collect(),
            ..VersionEdit::default()
        };
        {
            let mut m = self.manifest.lock();
            self.durable("manifest write", || m.log_edit(&edit))?;
            let mut sv = self.sv.write();
            let ids: HashSet<u64> = remove.iter().map(|t| t.id).collect();
            let version = Arc::new(sv.version.apply(&add, &ids));
            *sv = Arc::new(SuperVersion {
                mem: sv.mem.clone(),
                imms: sv.imms.clone(),
                version,
            });
        }
        // Files go away when the last version/snapshot/iterator holding them drops.
        for t in &remove {
            t.mark_obsolete();
        }
        self.maybe_rollover_manifest()?;
        let _bg = self.bg.lock();
        self.stall_cv.notify_all();
        Ok(())
    }

    /// Moves tables to another level without rewriting them.
    pub(crate) fn install_move(&self, level: usize, tables: Vec<Arc<Table>>) -> Result<()> {
        let edit = VersionEdit {
            remove_tables: tables.iter().map(|t| t.id).collect(),
            add_tables: tables.iter().map(|t| (level as u8, t.id, t.size)).collect(),
            ..VersionEdit::default()
        };
        let mut m = self.manifest.lock();
        self.durable("manifest write", || m.log_edit(&edit))?;
        let mut sv = self.sv.write();
        let ids: HashSet<u64> = tables.iter().map(|t| t.id).collect();
        let add: Vec<(usize, Arc<Table>)> = tables.into_iter().map(|t| (level, t)).collect();
        let version = Arc::new(sv.version.apply(&add, &ids));
        *sv = Arc::new(SuperVersion {
            mem: sv.mem.clone(),
            imms: sv.imms.clone(),
            version,
        });
        Ok(())
    }

    /// Oldest sequence number a live snapshot can read at.
    pub(crate) fn oldest_snapshot(&self) -> u64 {
        let snaps = self.snapshots.lock();
        snaps
            .keys()
            .next()
            .copied()
            .unwrap_or_else(|| self.last_seq.load(Ordering::Acquire))
    }

    fn rotate(&self) -> Result<KeyId> {
        let _k = self.keys_lock.lock();
        let ring = self.keys.read().clone();
        let new_id = KeyId(ring.keys.iter().map(|k| k.id.0).max().unwrap_or(0) + 1);
        let mut keys = ring.keys.clone();
        keys.push(Arc::new(DataKey::generate(new_id, now_unix())?));
        let new_ring = KeyRing { keys };
        self.commit_registry(new_ring)?;
        tracing::info!(key = %new_id, "rotated data key");
        Ok(new_id)
    }

    /// Writes a new registry file, then a manifest record pointing at it, then swaps it in.
    fn commit_registry(&self, ring: KeyRing) -> Result<()> {
        let reg_id = self.alloc_id()?;
        write_registry(&*self.fs, &self.dir, reg_id, &self.root, &ring)?;
        let old = {
            let mut m = self.manifest.lock();
            let old = m.state.registry;
            let edit = VersionEdit {
                registry: Some(reg_id),
                ..VersionEdit::default()
            };
            self.durable("manifest write", || m.log_edit(&edit))?;
            *self.keys.write() = Arc::new(ring);
            old
        };
        if let Some(old) = old
            && let Err(e) = self.fs.remove(&self.dir.join(registry_name(old)))
        {
            tracing::warn!(error = %e, "could not remove old key registry");
        }
        Ok(())
    }

    pub(crate) fn maybe_rotate(&self) -> Result<()> {
        let Some(period) = self.rotation else {
            return Ok(());
        };
        let newest = self.newest_key()?;
        if now_unix().saturating_sub(newest.created_unix) >= period.as_secs() {
            self.rotate()?;
        }
        Ok(())
    }

    fn reencrypt(&self, progress: &dyn Fn(Progress)) -> Result<()> {
        // New WAL segment under the newest key, old segments flushed into tables.
        self.force_switch(true)?;
        self.flush_imms()?;
        let newest = self.newest_key()?;
        let _c = self.compaction_lock.lock();
        let todo: Vec<(usize, Arc<Table>)> = {
            let sv = self.sv.read();
            sv.version
                .tables()
                .filter(|(_, t)| t.key_id() != newest.id)
                .map(|(l, t)| (l, t.clone()))
                .collect()
        };
        let total = todo.len();
        let mut bytes = 0u64;
        for (done, (level, t)) in todo.into_iter().enumerate() {
            let out = self.rewrite_table(&t, &newest)?;
            bytes += out.size;
            self.install(vec![(level, Arc::new(out))], vec![t])?;
            progress(Progress {
                done: done + 1,
                total,
                bytes,
            });
        }
        // Forget every key no live file uses.
        let _k = self.keys_lock.lock();
        let in_use = self.key_ids_in_use();
        let ring = self.keys.read().clone();
        let keep: Vec<Arc<DataKey>> = ring
            .keys
            .iter()
            .filter(|k| k.id == newest.id || in_use.contains(&k.id))
            .cloned()
            .collect();
        if keep.len() != ring.keys.len() {
            self.commit_registry(KeyRing { keys: keep })?;
        }
        if total == 0 {
            progress(Progress {
                done: 0,
                total: 0,
                bytes: 0,
            });
        }
        Ok(())
    }

    /// Keys some live file still needs: live tables, the live WAL segment, and archived
    /// segments not yet released (so a backup can still read them).
    fn key_ids_in_use(&self) -> BTreeSet<KeyId> {
        let sv = self.sv.read().clone();
        let mut set: BTreeSet<KeyId> = sv.version.tables().map(|(_, t)| t.key_id()).collect();
        set.insert(self.writer.lock().wal.key_id());
        set.extend(self.archived_keys.lock().values().copied());
        set
    }

    fn stats(&self) -> Stats {
        let sv = self.sv.read().clone();
        let levels: Vec<LevelStats> = sv
            .version
            .levels
            .iter()
            .map(|l| LevelStats {
                files: l.len(),
                bytes: l.iter().map(|t| t.size).sum(),
                entries: l.iter().map(|t| t.entries).sum(),
            })
            .collect();
        let ring = self.keys.read().clone();
        Stats {
            files: levels.iter().map(|l| l.files).sum(),
            table_bytes: levels.iter().map(|l| l.bytes).sum(),
            levels,
            wal_files: sv.imms.len() + 1,
            key_ids_in_use: self.key_ids_in_use().into_iter().collect(),
            key_ids_known: ring.ids(),
            newest_key: ring.newest().map(|k| k.id).unwrap_or(KeyId::ROOT),
            memtable_bytes: sv.mem.bytes() + sv.imms.iter().map(|m| m.bytes()).sum::<usize>(),
            immutable_memtables: sv.imms.len(),
            last_sequence: self.last_seq.load(Ordering::Acquire),
            snapshots: self.snapshots.lock().values().sum(),
            compaction_due: self.compaction_due(),
        }
    }

    /// Waits until `pick` finds work (clearing it) or shutdown; false on shutdown.
    fn wait_for_work(&self, pick: impl Fn(&mut Bg) -> bool, timeout: Duration) -> bool {
        let mut bg = self.bg.lock();
        if !pick(&mut bg) && !bg.shutdown {
            self.bg_cv.wait_for(&mut bg, timeout);
            pick(&mut bg);
        }
        !bg.shutdown
    }

    fn flush_loop(self: Arc<Self>) {
        let mut last_rotation_check = std::time::Instant::now();
        while self.wait_for_work(|b| std::mem::take(&mut b.flush), Duration::from_secs(10)) {
            if self.is_poisoned.load(Ordering::Acquire) {
                continue;
            }
            match self.flush_imms() {
                Ok(()) => self.wake_compaction(),
                // `close` won the race and flushed (or will): nothing was lost.
                Err(Error::Closed) => {}
                Err(e) => tracing::error!(error = %e, "background flush failed"),
            }
            if last_rotation_check.elapsed() > Duration::from_secs(60) {
                last_rotation_check = std::time::Instant::now();
                if let Err(e) = self.maybe_rotate() {
                    tracing::error!(error = %e, "data key rotation failed");
                }
            }
        }
    }

    /// Writes the next WAL segment whenever a switch asks for one (see `wal_spare`).
    fn spare_loop(self: Arc<Self>) {
        while self.wait_for_work(|b| std::mem::take(&mut b.spare), Duration::from_secs(10)) {
            if !self.spare_wal.wanted() || self.is_poisoned.load(Ordering::Acquire) {
                continue;
            }
            match self.write_spare() {
                Ok(spare) => self.spare_wal.put(&*self.fs, &self.dir, spare),
                // Only a speed-up: the next switch creates its segment itself.
                Err(e) => tracing::warn!(error = %e, "could not write a spare WAL segment"),
            }
        }
    }

    fn write_spare(&self) -> Result<LogWriter> {
        let id = self.alloc_id()?;
        let key = self.newest_key()?;
        LogWriter::create(
            &*self.fs,
            &self.dir,
            &spare_name(id),
            FileKind::Wal,
            id,
            &key,
            self.suite,
            Reserve::Fill(wal_reserve(self.memtable_bytes)),
        )
    }

    fn compaction_loop(self: Arc<Self>) {
        crate::thread_priority::lower_for_compaction(self.compaction_nice);
        while self.wait_for_work(|b| std::mem::take(&mut b.compact), Duration::from_secs(10)) {
            if !self.background_compaction || self.is_poisoned.load(Ordering::Acquire) {
                continue;
            }
            if let Err(e) = self.compact_step() {
                tracing::error!(error = %e, "background compaction failed");
                self.poison(Poison::from_error("compaction", &e));
            }
        }
    }

    /// Runs compactions until no level needs one (or shutdown).
    fn compact_step(&self) -> Result<()> {
        loop {
            if self.bg.lock().shutdown || self.closed.load(Ordering::Acquire) {
                return Ok(());
            }
            let _c = self.compaction_lock.lock();
            let Some(task) = self.pick_compaction() else {
                return Ok(());
            };
            self.run_compaction(task)?;
        }
    }

    fn shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        {
            let mut bg = self.bg.lock();
            bg.shutdown = true;
            self.bg_cv.notify_all();
            self.stall_cv.notify_all();
        }
        // Callbacks already queued are answered after a last group fsync; later ones get
        // `Closed`.
        self.sync_queue.shut_down();
        let threads = std::mem::take(&mut *self.bg_threads.lock());
        for t in threads {
            if t.join().is_err() {
                tracing::error!("background thread panicked");
            }
        }
        self.spare_wal.clear(&*self.fs, &self.dir);
        let r = if self.poisoned.lock().is_none() {
            let w = self.writer.lock();
            w.wal.file().sync().map_err(Error::from)
        } else {
            Ok(())
        };
        self.lock_guard.lock().take();
        r
    }
}

/// Bytes a new WAL segment reserves: about what a full memtable's records take, so that
/// a group commit's fdatasync writes the records alone, not also the file's new size.
fn wal_reserve(memtable_bytes: usize) -> u64 {
    let m = memtable_bytes as u64;
    m + m / 4
}

/// Writes all of `mem` through `b` into its table in `dir`. Returns its size.
pub(crate) fn build_table(
    fs: &dyn Fs,
    dir: &Path,
    mut b: TableBuilder,
    mem: &MemTable,
) -> Result<u64> {
    let id = b.id;
    let r = mem
        .for_each(|k, seq, v| b.add(k, seq, v))
        .and_then(|()| b.finish());
    if r.is_err() {
        let _ = fs.remove(&dir.join(table_name(id)));
    }
    r
}

/// Used by Snapshot/TempWriter for their bounds conversion.
pub(crate) fn to_bounds(range: &impl RangeBounds<Vec<u8>>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Engine>();
    let _ = temp_name;
}
