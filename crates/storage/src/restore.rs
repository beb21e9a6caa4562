//! Building a NEW database from backup copies of a checkpoint.
//!
//! A restore never reuses the source's keys or file identities: [`RestoreBuilder`] draws a
//! fresh data key (registered under the target's root key), and re-seals every table block
//! by block under it with a new file id and a new random salt, so restoring the same backup
//! twice never reuses a (key, nonce) pair. AES-GCM does not change a block's length, so
//! every block keeps its offset: the index and footer (which hold offsets) are carried over
//! inside their re-sealed blocks unchanged — no entry is decoded, re-sorted or re-encoded.
//! Every source block is authenticated on the way; a tampered copy fails the restore and
//! nothing of it is written.
//!
//! Crash safety (the target directory is new, so the only question is how a crash leaves
//! it): [`RestoreBuilder::new`] writes a `RESTORING` marker (fsynced) before anything else;
//! [`RestoreBuilder::finish`] writes the key registry, the manifest and `CURRENT` with the
//! engine's normal protocol, then removes the marker (fsync dir), then opens the engine.
//! `Engine::open` refuses a directory holding the marker (`Corruption { file: "RESTORING" }`),
//! so a crash at any point before the marker's removal leaves a directory that fails to
//! open clearly and can simply be deleted; after it, the directory is a complete database.
//!
//! After `finish` the caller replays archived/live WAL records with `seq > covered_seq`
//! (and, for point-in-time restore, `commit_micros <= T`) through
//! `Engine::write(batch, Durability::Buffered)`, then flushes. Sequence numbers continue
//! after `covered_seq`. Replayed records get new commit times (the restore's own).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::crypto::header::{FileCipher, HEADER_LEN};
use crate::crypto::keys::{DataKey, KeyId, KeyRing, now_unix};
use crate::crypto::registry::write_registry;
use crate::crypto::{CipherSuite, FileKind, RootKey};
use crate::engine::{Engine, RESTORE_MARKER};
use crate::error::{Error, Result};
use crate::fs::{Fs, LockGuard, WritableFile};
use crate::manifest::{ManifestState, ManifestWriter};
use crate::offline::{OfflineKeys, display_name, open_table, root_data_key};
use crate::options::Options;
use crate::table::table_name;
use crate::version::NUM_LEVELS;

/// Output is written in chunks of about this size (and progress reported per chunk).
const CHUNK: usize = 1 << 20;

/// Table fsyncs allowed to run in the background at once.
const MAX_PENDING_SYNCS: usize = 4;

fn join_sync(h: std::thread::JoinHandle<std::io::Result<()>>) -> Result<()> {
    h.join()
        .map_err(|_| Error::Io(std::io::Error::other("restore fsync thread panicked")))?
        .map_err(Error::Io)
}

/// Progress of a restore, cumulative over the builder's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreProgress {
    /// Tables completely re-sealed.
    pub tables_done: usize,
    /// Bytes written to the target so far (tables, including the one in progress).
    pub bytes_written: u64,
}

struct RestoredTable {
    level: u8,
    id: u64,
    size: u64,
    max_seq: u64,
    smallest: Vec<u8>,
    largest: Vec<u8>,
}

type ProgressFn = Box<dyn FnMut(RestoreProgress) + Send>;

/// Builds a new engine directory from copies of a checkpoint's tables.
pub struct RestoreBuilder {
    dir: PathBuf,
    fs: Arc<dyn Fs>,
    root: RootKey,
    opts: Options,
    suite: CipherSuite,
    key: Arc<DataKey>,
    next_id: u64,
    tables: Vec<RestoredTable>,
    progress: RestoreProgress,
    on_progress: Option<ProgressFn>,
    lock: Option<Box<dyn LockGuard>>,
    /// fsyncs of finished tables, running while the next table is re-sealed; all are
    /// joined (and their errors returned) before `finish` writes the manifest.
    syncs: Vec<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for RestoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreBuilder")
            .field("dir", &self.dir)
            .field("tables", &self.tables.len())
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl RestoreBuilder {
    /// Starts a restore into `target_dir`, which must be absent or empty, under
    /// `target_root` (use a root key different from the source's). `opts` are the options
    /// the restored engine is opened with (its `fs` is also used to write the files).
    pub fn new(target_dir: &Path, target_root: RootKey, opts: Options) -> Result<RestoreBuilder> {
        let fs = opts.fs.clone();
        if fs.exists(target_dir) {
            let names = fs.list(target_dir)?;
            if !names.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "restore target {} is not empty",
                    target_dir.display()
                )));
            }
        }
        fs.create_dir_all(target_dir)?;
        if let Some(parent) = target_dir.parent()
            && !parent.as_os_str().is_empty()
        {
            fs.sync_dir(parent)?;
        }
        // The marker goes first: from here on a crash leaves a directory `open` refuses.
        let marker = fs.create(&target_dir.join(RESTORE_MARKER))?;
        marker.append(b"restore in progress; delete this directory if no restore is running\n")?;
        marker.sync()?;
        fs.sync_dir(target_dir)?;
        let lock = fs.lock(&target_dir.join("LOCK")).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.raw_os_error() == Some(libc::EWOULDBLOCK)
            {
                Error::Locked(target_dir.display().to_string())
            } else {
                Error::Io(e)
            }
        })?;
        #[cfg(feature = "bench-null-cipher")]
        let suite = opts.cipher;
        #[cfg(not(feature = "bench-null-cipher"))]
        let suite = CipherSuite::Aes256Gcm;
        Ok(RestoreBuilder {
            dir: target_dir.to_path_buf(),
            fs,
            root: target_root,
            opts,
            suite,
            key: Arc::new(DataKey::generate(KeyId(1), now_unix())?),
            next_id: 1,
            tables: Vec::new(),
            progress: RestoreProgress::default(),
            on_progress: None,
            lock: Some(lock),
            syncs: Vec::new(),
        })
    }

    /// Calls `f` after every ~1 MiB written and after every table.
    pub fn on_progress(&mut self, f: impl FnMut(RestoreProgress) + Send + 'static) {
        self.on_progress = Some(Box::new(f));
    }

    /// Progress so far.
    pub fn progress(&self) -> RestoreProgress {
        self.progress
    }

    fn report(&mut self) {
        let p = self.progress;
        if let Some(f) = self.on_progress.as_mut() {
            f(p);
        }
    }

    /// Re-seals the copy at `source` of the table with file id `source_id` (sealed under a
    /// key in `keys`) into the target at `level`: every block is authenticated and decrypted
    /// with the source file's subkey and sealed again under the target's data key with a
    /// new file id and salt, at the same offset. Returns the bytes written (the table's
    /// size). On error nothing of the table remains in the target. The table's fsync runs
    /// in the background; [`finish`](Self::finish) waits for all of them (and reports
    /// their errors) before it writes the manifest.
    pub fn add_table(
        &mut self,
        level: u8,
        source: &Path,
        source_id: u64,
        keys: &OfflineKeys,
    ) -> Result<u64> {
        if level as usize >= NUM_LEVELS {
            return Err(Error::InvalidArgument(format!(
                "level {level} out of range"
            )));
        }
        let id = self.next_id;
        self.next_id += 1;
        let path = self.dir.join(table_name(id));
        let before = self.progress;
        match self.reseal(level, source, source_id, keys, id, &path) {
            Ok(t) => {
                let size = t.size;
                self.tables.push(t);
                self.progress.tables_done += 1;
                self.report();
                Ok(size)
            }
            Err(e) => {
                self.progress = before;
                if self.fs.exists(&path)
                    && let Err(rm) = self.fs.remove(&path)
                {
                    tracing::warn!(file = %path.display(), error = %rm, "could not remove partial table");
                }
                Err(e)
            }
        }
    }

    fn reseal(
        &mut self,
        level: u8,
        source: &Path,
        source_id: u64,
        keys: &OfflineKeys,
        id: u64,
        path: &Path,
    ) -> Result<RestoredTable> {
        let src = open_table(source, source_id, keys)?;
        let regions = src.sealed_regions()?;
        let src_name = display_name(source);
        let mut input = std::io::BufReader::with_capacity(CHUNK, std::fs::File::open(source)?);
        input.seek(SeekFrom::Start(HEADER_LEN as u64))?;
        // The file may have changed since it was opened: reading past its end is an error.
        let read_err = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corruption(&src_name, None, "file shorter than its blocks (truncated?)")
            } else {
                Error::Io(e)
            }
        };
        let (header, target) =
            FileCipher::create(FileKind::Sst, id, &self.key, self.suite, table_name(id))?;
        let out_file: Arc<dyn WritableFile> = self.fs.create(path)?;
        let mut out = Vec::with_capacity(CHUNK * 2);
        out.extend_from_slice(&header);
        let mut written = 0u64;
        for &(idx, is_last, _off, len) in &regions {
            let start = out.len();
            out.resize(start + len as usize, 0);
            input.read_exact(&mut out[start..]).map_err(read_err)?;
            // Decrypt in place (authenticates), then seal the same bytes in place under the
            // target's subkey: plaintext never leaves this buffer and is overwritten before
            // the buffer is written.
            let region = &mut out[start..];
            let n = src.cipher().open_block(idx, is_last, region)?;
            debug_assert_eq!(n + crate::crypto::header::TAG_LEN, region.len());
            target.seal_in_place(idx, is_last, region)?;
            if out.len() >= CHUNK {
                out_file.append(&out)?;
                written += out.len() as u64;
                self.progress.bytes_written += out.len() as u64;
                out.clear();
                self.report();
            }
        }
        let mut trailer = [0u8; 4];
        input.read_exact(&mut trailer).map_err(read_err)?;
        out.extend_from_slice(&trailer);
        let mut rest = [0u8; 1];
        if input.read(&mut rest)? != 0 {
            return Err(Error::corruption(
                &src_name,
                None,
                "file grew after it was opened",
            ));
        }
        out_file.append(&out)?;
        written += out.len() as u64;
        self.progress.bytes_written += out.len() as u64;
        if written != src.size {
            return Err(Error::corruption(
                &src_name,
                None,
                format!("re-sealed {written} bytes, source has {}", src.size),
            ));
        }
        // Overlap this table's fsync with the next table's re-sealing (a few at a time).
        if self.syncs.len() >= MAX_PENDING_SYNCS {
            let h = self.syncs.remove(0);
            join_sync(h)?;
        }
        let f = out_file.clone();
        self.syncs.push(
            std::thread::Builder::new()
                .name("restore-fsync".into())
                .spawn(move || f.sync())?,
        );
        Ok(RestoredTable {
            level,
            id,
            size: written,
            max_seq: src.max_seq,
            smallest: src.smallest.clone(),
            largest: src.largest.clone(),
        })
    }

    /// Writes the target's key registry, manifest (tables at their levels, `LastSeq =
    /// covered_seq`) and `CURRENT`, removes the in-progress marker and opens the engine.
    /// `covered_seq` must be at least the largest sequence number in the tables.
    pub fn finish(mut self, covered_seq: u64) -> Result<Engine> {
        let max_seq = self.tables.iter().map(|t| t.max_seq).max().unwrap_or(0);
        if covered_seq < max_seq {
            return Err(Error::InvalidArgument(format!(
                "covered_seq {covered_seq} is below the tables' largest sequence number {max_seq}"
            )));
        }
        for level in 1..NUM_LEVELS as u8 {
            let mut ts: Vec<&RestoredTable> =
                self.tables.iter().filter(|t| t.level == level).collect();
            ts.sort_by(|a, b| a.smallest.cmp(&b.smallest));
            if ts.windows(2).any(|w| w[0].largest >= w[1].smallest) {
                return Err(Error::InvalidArgument(format!(
                    "tables of level {level} overlap"
                )));
            }
        }
        for h in std::mem::take(&mut self.syncs) {
            join_sync(h)?;
        }
        self.fs.sync_dir(&self.dir)?;
        let root = root_data_key(&self.root);
        let reg_id = self.next_id;
        let manifest_id = self.next_id + 1;
        self.next_id += 2;
        let ring = KeyRing {
            keys: vec![self.key.clone()],
        };
        write_registry(&*self.fs, &self.dir, reg_id, &root, &ring)?;
        let state = ManifestState {
            tables: self
                .tables
                .iter()
                .map(|t| (t.id, (t.level, t.size)))
                .collect(),
            registry: Some(reg_id),
            next_file_id: self.next_id,
            last_seq: covered_seq,
            ..ManifestState::default()
        };
        // Writes MANIFEST, fsyncs it, then replaces CURRENT (tmp + fsync + rename + fsync dir).
        drop(ManifestWriter::create(
            &*self.fs,
            &self.dir,
            manifest_id,
            &root,
            state,
        )?);
        self.fs.remove(&self.dir.join(RESTORE_MARKER))?;
        self.fs.sync_dir(&self.dir)?;
        self.lock.take();
        tracing::info!(
            dir = %self.dir.display(),
            tables = self.tables.len(),
            bytes = self.progress.bytes_written,
            covered_seq,
            "restore written"
        );
        Engine::open(&self.dir, self.root.clone(), self.opts.clone())
    }
}
