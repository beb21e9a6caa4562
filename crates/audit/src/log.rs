//! The writer: one `AuditLog` per directory (guarded by a lock file), appends that are
//! durable before they return, and group commit so concurrent appenders share an fsync.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use zeroize::Zeroizing;

use crate::error::{Error, Result, io};
use crate::event::AuditEvent;
use crate::format::{
    FRAME_PREFIX_LEN, Header, MAX_EVENT_LEN, SegmentKey, TAG_LEN, Tag, encode_header,
    segment_file_name,
};
use crate::read::Anchor;
use crate::scan::{Chain, walk};

/// Segments roll once they would grow past this size.
pub const DEFAULT_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// Name of the writer lock file inside the log directory.
const LOCK_FILE: &str = "LOCK";

/// Tuning for [`AuditLog::open_with`].
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Roll to a new segment once the current one would exceed this many bytes. A segment
    /// always holds at least one record, whatever this says.
    pub segment_bytes: u64,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// The append side of an audit log directory. Thread-safe: share it behind an `Arc`.
pub struct AuditLog {
    dir: PathBuf,
    master: Zeroizing<[u8; 32]>,
    segment_bytes: u64,
    writer: Mutex<Writer>,
    /// Serialises fsyncs; whoever holds it syncs for everyone who wrote before it.
    sync: Mutex<()>,
    /// Last record known to be on disk, its tag, and the newest segment (durable: a
    /// segment's header and name are synced before it takes records).
    durable: Mutex<(u64, Tag, u64)>,
    /// fdatasyncs issued for appends (not counting rolls); appends / syncs is the group
    /// commit factor.
    syncs: AtomicU64,
    /// Held for the log's lifetime; the OS drops the lock when the process dies.
    _lock: File,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .field("segment_bytes", &self.segment_bytes)
            .finish_non_exhaustive()
    }
}

/// The current segment and the chain's tip.
struct Writer {
    file: Arc<File>,
    segment: u64,
    key: SegmentKey,
    /// Index of the next record within the segment (its nonce).
    index: u64,
    size: u64,
    next_seq: u64,
    prev_tag: Tag,
    /// Set when a write or fsync failed: the tail on disk is then unknown.
    poisoned: bool,
}

impl AuditLog {
    /// Opens (creating if needed) the log in `dir` with [`AuditOptions::default`].
    ///
    /// Every segment is authenticated first. A torn last record is cut away (it was never
    /// acknowledged); any other damage returns [`Error::Corrupt`] and nothing is appended,
    /// so a damaged chain is never silently forked. A key other than the log's returns
    /// [`Error::WrongKey`].
    pub fn open(dir: &Path, key: Zeroizing<[u8; 32]>) -> Result<AuditLog> {
        Self::open_with(dir, key, AuditOptions::default())
    }

    /// [`AuditLog::open`] with explicit options.
    pub fn open_with(dir: &Path, key: Zeroizing<[u8; 32]>, opts: AuditOptions) -> Result<AuditLog> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }

        let walked = walk(dir, &key, &mut |_, _, _| Ok(()))?;
        let chain = walked.chain;
        // Every open starts a new segment (fresh salt, so a fresh key) and never appends to
        // one a previous process wrote: after a torn tail, the record index of the cut
        // record would otherwise be used again as a nonce under the same key for different
        // plaintext, and a copy of the torn bytes (a backup, a disk snapshot) would then
        // give away the XOR of two events.
        let next = match walked.last {
            None => 1,
            Some(last) => match last.key {
                // The newest segment's header was torn while rolling: start it again.
                None => {
                    tracing::warn!(
                        segment = last.number,
                        "audit log: discarding torn segment header"
                    );
                    std::fs::remove_file(&last.path).map_err(io(&last.path))?;
                    sync_dir(dir)?;
                    last.number
                }
                Some(_) => {
                    if last.torn_bytes > 0 {
                        // Only the newest segment may end with something other than whole
                        // records, so the cut must happen before a segment follows it.
                        tracing::warn!(
                            segment = last.number,
                            bytes = last.torn_bytes,
                            "audit log: truncating torn, unacknowledged tail record"
                        );
                        let f = OpenOptions::new()
                            .write(true)
                            .open(&last.path)
                            .map_err(io(&last.path))?;
                        f.set_len(last.valid_len).map_err(io(&last.path))?;
                        f.sync_all().map_err(io(&last.path))?;
                    }
                    last.number + 1
                }
            },
        };
        let writer = create_segment(dir, &key, next, &chain)?;
        let durable = (writer.next_seq - 1, writer.prev_tag, writer.segment);
        Ok(AuditLog {
            dir: dir.to_path_buf(),
            master: key,
            segment_bytes: opts.segment_bytes,
            writer: Mutex::new(writer),
            sync: Mutex::new(()),
            durable: Mutex::new(durable),
            syncs: AtomicU64::new(0),
            _lock: lock,
        })
    }

    /// The directory this log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one event and returns its sequence number once it is on disk (written and
    /// fdatasynced). Concurrent callers share fsyncs: whoever syncs covers every record
    /// written before it.
    pub fn append(&self, event: &AuditEvent) -> Result<u64> {
        let plaintext = Zeroizing::new(serde_json::to_vec(event)?);
        if plaintext.len() > MAX_EVENT_LEN {
            return Err(Error::EventTooLarge {
                len: plaintext.len(),
                limit: MAX_EVENT_LEN,
            });
        }
        let seq = self.write_record(&plaintext)?;
        self.make_durable(seq)?;
        Ok(seq)
    }

    /// The last durable record (its seq and tag) and the newest segment. Keep it outside the
    /// log directory (the control plane keeps it in its sealed state) and pass it to
    /// `verify`/`read` to detect records or segments cut off the tail, which the chain alone
    /// cannot show.
    pub fn head(&self) -> Anchor {
        let (seq, tag, segment) = *self.durable.lock();
        Anchor {
            seq,
            tag: hex::encode(tag),
            segment,
        }
    }

    /// How many fdatasyncs appends have issued since open. Fewer than appends when
    /// concurrent appenders shared a sync.
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Encrypts and writes one record under the writer lock; rolls the segment first if it
    /// is full. Returns the record's seq; the record is not yet durable.
    fn write_record(&self, plaintext: &[u8]) -> Result<u64> {
        let frame_len = (FRAME_PREFIX_LEN + plaintext.len() + TAG_LEN) as u64;
        let mut w = self.writer.lock();
        if w.poisoned {
            return Err(Error::Poisoned);
        }
        if w.index > 0 && w.size + frame_len > self.segment_bytes {
            self.roll(&mut w)?;
        }
        let seq = w.next_seq;
        let (frame, tag) = w.key.seal_record(w.index, seq, &w.prev_tag, plaintext)?;
        let path = self.segment_path(w.segment);
        if let Err(e) = (&*w.file).write_all(&frame) {
            w.poisoned = true;
            return Err(io(path)(e));
        }
        w.index += 1;
        w.size += frame.len() as u64;
        w.next_seq += 1;
        w.prev_tag = tag;
        Ok(seq)
    }

    /// Syncs the current segment (previous ones were synced when rolled) unless another
    /// caller's sync already covered `seq`.
    fn make_durable(&self, seq: u64) -> Result<()> {
        let _turn = self.sync.lock();
        if self.durable.lock().0 >= seq {
            return Ok(());
        }
        let (file, segment, upto, tag) = {
            let w = self.writer.lock();
            if w.poisoned {
                return Err(Error::Poisoned);
            }
            (Arc::clone(&w.file), w.segment, w.next_seq - 1, w.prev_tag)
        };
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages: what is on
            // disk is unknown, so stop; reopening re-establishes the tail from the file.
            self.writer.lock().poisoned = true;
            return Err(io(self.segment_path(segment))(e));
        }
        *self.durable.lock() = (upto, tag, segment);
        Ok(())
    }

    /// Makes the full segment durable, then starts the next one chained to its last tag.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        if let Err(e) = w.file.sync_data() {
            w.poisoned = true;
            return Err(io(self.segment_path(w.segment))(e));
        }
        let chain = Chain {
            next_seq: w.next_seq,
            prev_tag: w.prev_tag,
        };
        match create_segment(&self.dir, &self.master, w.segment + 1, &chain) {
            Ok(next) => {
                *w = next;
                Ok(())
            }
            Err(e) => {
                w.poisoned = true;
                Err(e)
            }
        }
    }

    fn segment_path(&self, n: u64) -> PathBuf {
        self.dir.join(segment_file_name(n))
    }
}

/// Creates segment `number` (0600, never existing before), writes and syncs its header,
/// and syncs the directory so the new name survives a crash.
fn create_segment(dir: &Path, master: &[u8; 32], number: u64, chain: &Chain) -> Result<Writer> {
    let mut salt = [0u8; 32];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| Error::Crypto("random salt"))?;
    let header = Header {
        segment: number,
        first_seq: chain.next_seq,
        prev_tag: chain.prev_tag,
        salt,
    };
    let (bytes, key) = encode_header(master, &header)?;
    let path = dir.join(segment_file_name(number));
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io(&path))?;
    file.write_all(&bytes).map_err(io(&path))?;
    file.sync_all().map_err(io(&path))?;
    sync_dir(dir)?;
    Ok(Writer {
        file: Arc::new(file),
        segment: number,
        key,
        index: 0,
        size: bytes.len() as u64,
        next_seq: chain.next_seq,
        prev_tag: chain.prev_tag,
        poisoned: false,
    })
}

/// fsyncs a directory so created or removed names are durable.
fn sync_dir(dir: &Path) -> Result<()> {
    sealed::sync_dir(dir).map_err(io(dir))
}
