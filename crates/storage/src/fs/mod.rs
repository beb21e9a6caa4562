//! The file-system seam. The engine does every file operation through [`Fs`] so that crash
//! tests can swap in [`FaultyFs`], which drops unsynced data, tears the last write or fails
//! fsync, while the engine code stays the same.

mod faulty;
mod real;

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

pub use faulty::{CrashMode, FaultyFs};
pub use real::{RealFs, available_bytes};

/// An append-only file being written. Methods take `&self` so one writer can append while
/// another thread fsyncs (group commit).
pub trait WritableFile: Send + Sync {
    /// Appends all of `data` at the end of the file.
    fn append(&self, data: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// Reserves the file's first `len` bytes without moving where appends go: the file's
    /// length becomes `len` and the reserved bytes read as zeros until written over. After
    /// the next [`sync`](Self::sync), appends inside the reservation no longer change the
    /// file's size. Cheap (no data is written), but on ext4 the reserved blocks are
    /// *unwritten* extents, and the first write to each converts one: a metadata change
    /// that an fdatasync then writes too (see [`fill_zeros`](Self::fill_zeros)). Readers
    /// of a reserved file must take a run of zeros at its end for its end. The default
    /// reserves nothing.
    fn preallocate(&self, len: u64) -> io::Result<()> {
        let _ = len;
        Ok(())
    }
    /// Reserves like [`preallocate`](Self::preallocate), by writing the zeros: appends
    /// inside the reservation then overwrite blocks that already exist, so each later
    /// fdatasync writes the data alone, not also the inode. PostgreSQL fills its WAL
    /// segments with zeros for the same reason (`wal_init_zero`). Costs a write of `len`
    /// bytes, so it belongs off the write path. The default preallocates.
    fn fill_zeros(&self, len: u64) -> io::Result<()> {
        self.preallocate(len)
    }
    /// Asks the OS to start writing what was appended so far to the device, without
    /// waiting for it and without making it durable (that takes [`sync`](Self::sync)). A
    /// table written in one go would otherwise sit in the page cache until its final
    /// fsync and then reach the device as one burst, which WAL fsyncs queue behind;
    /// PostgreSQL (`checkpoint_flush_after`, `backend_flush_after`) and RocksDB
    /// (`bytes_per_sync`) trickle their bulk writes out the same way. The default does
    /// nothing.
    fn start_writeback(&self) -> io::Result<()> {
        Ok(())
    }
}

/// A file opened for positional reads.
pub trait ReadableFile: Send + Sync {
    /// Fills `buf` from `offset`; a short file is an `UnexpectedEof` error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Current length of the file.
    fn len(&self) -> io::Result<u64>;
    /// True when the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// Held while the directory lock is taken; dropping it releases the lock.
pub trait LockGuard: Send + Sync {}

/// File-system operations the engine needs.
pub trait Fs: Send + Sync + Debug {
    /// Creates (or truncates) a file for appending.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>>;
    /// Opens a file for positional reads.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames a file (replacing `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Names of the entries of a directory.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes directory entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Truncates a file to `len` bytes and syncs it (used to cut a torn log tail).
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// True if the path exists.
    fn exists(&self, path: &Path) -> bool;
    /// Takes an exclusive, non-blocking lock on `path` (created if missing).
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;

    /// Reads a whole file.
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let f = self.open(path)?;
        let len = usize::try_from(f.len()?).map_err(|_| io::Error::other("file too large"))?;
        let mut buf = vec![0u8; len];
        f.read_at(&mut buf, 0)?;
        Ok(buf)
    }
}
