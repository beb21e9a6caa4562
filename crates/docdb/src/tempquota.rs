//! The temp-disk quota: a limit on the bytes held in spill files at once, across every
//! operation of a [`crate::Db`] (one per database process, i.e. per cluster node).
//!
//! Blocking sorts and groups that outgrow their memory budget spill sorted runs to
//! encrypted temp files; without a limit one user's `$sort` over a large collection
//! could fill the disk the data lives on. [`TempQuota`] wraps the engine's temp files:
//! every byte written is reserved against the quota before it reaches the file, and a
//! file's reservation is released when the file goes away (its reader, or an unfinished
//! writer, is dropped — which is also when storage deletes it).
//!
//! Exceeding the quota fails the operation with `OutOfDiskSpace` (14031), MongoDB's code
//! for "no room left for this spill": the operation's temp files are dropped with it, so
//! the quota it held is free for the next one.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result, code};
use crate::kv::{TempStore, TempWrite};

/// Default quota: 4 GiB of spill files at once.
pub const DEFAULT_TEMP_DISK_QUOTA: u64 = 4 << 30;

/// Current spill bytes and the limit (for `serverStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TempUsage {
    pub used: u64,
    pub limit: u64,
}

/// The error a quota-limited writer returns inside `std::io::Error`.
#[derive(Debug, thiserror::Error)]
#[error("spilling {wanted} more bytes would exceed the temporary disk quota of {limit} bytes")]
pub struct QuotaExceeded {
    wanted: usize,
    limit: u64,
}

/// Maps a spill I/O error to docdb's error: quota refusals become `OutOfDiskSpace`.
pub(crate) fn from_io(e: io::Error, what: &str) -> Error {
    if let Some(q) = e.get_ref().and_then(|i| i.downcast_ref::<QuotaExceeded>()) {
        return Error::new(
            code::OUT_OF_DISK_SPACE,
            format!(
                "{what}: {q}; the operation's temporary files were removed (raise --temp-disk-quota or use less memory-hungry stages)"
            ),
        );
    }
    Error::internal(format!("{what}: {e}"))
}

/// Bytes reserved against the quota, given back on drop.
struct Reservation {
    used: Arc<AtomicU64>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Temp files limited by a shared byte quota.
pub struct TempQuota {
    inner: Arc<dyn TempStore>,
    used: Arc<AtomicU64>,
    limit: u64,
}

impl TempQuota {
    pub fn new(inner: Arc<dyn TempStore>, limit: u64) -> TempQuota {
        TempQuota {
            inner,
            used: Arc::new(AtomicU64::new(0)),
            limit,
        }
    }

    pub fn usage(&self) -> TempUsage {
        TempUsage {
            used: self.used.load(Ordering::Relaxed),
            limit: self.limit,
        }
    }
}

impl TempStore for TempQuota {
    fn temp_file(&self) -> Result<Box<dyn TempWrite>> {
        Ok(Box::new(QuotaWriter {
            inner: self.inner.temp_file()?,
            held: Reservation {
                used: self.used.clone(),
                bytes: 0,
            },
            limit: self.limit,
        }))
    }
}

struct QuotaWriter {
    inner: Box<dyn TempWrite>,
    held: Reservation,
    limit: u64,
}

impl Write for QuotaWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len() as u64;
        let used = &self.held.used;
        let mut cur = used.load(Ordering::Relaxed);
        loop {
            let next = cur.saturating_add(n);
            if next > self.limit {
                return Err(io::Error::other(QuotaExceeded {
                    wanted: buf.len(),
                    limit: self.limit,
                }));
            }
            match used.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        self.held.bytes += n;
        self.inner.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl TempWrite for QuotaWriter {
    fn finish(self: Box<Self>) -> Result<Box<dyn Read + Send>> {
        let QuotaWriter { inner, held, .. } = *self;
        Ok(Box::new(QuotaReader {
            inner: inner.finish()?,
            _held: held,
        }))
    }
}

/// A finished spill file; its bytes count against the quota until it is dropped.
struct QuotaReader {
    inner: Box<dyn Read + Send>,
    _held: Reservation,
}

impl Read for QuotaReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem;
    struct MemWrite(Vec<u8>);
    impl Write for MemWrite {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl TempWrite for MemWrite {
        fn finish(self: Box<Self>) -> Result<Box<dyn Read + Send>> {
            Ok(Box::new(io::Cursor::new(self.0)))
        }
    }
    impl TempStore for Mem {
        fn temp_file(&self) -> Result<Box<dyn TempWrite>> {
            Ok(Box::new(MemWrite(Vec::new())))
        }
    }

    #[test]
    fn bytes_are_held_until_the_file_is_dropped() {
        let q = TempQuota::new(Arc::new(Mem), 100);
        let mut w = q.temp_file().unwrap();
        w.write_all(&[0; 60]).unwrap();
        assert_eq!(q.usage().used, 60);
        let r = w.finish().unwrap();
        assert_eq!(q.usage().used, 60);
        let mut w2 = q.temp_file().unwrap();
        let e = w2.write_all(&[0; 50]).unwrap_err();
        let err = from_io(e, "spill write");
        assert_eq!(err.code, 14031);
        assert_eq!(err.code_name, "OutOfDiskSpace");
        drop(w2);
        drop(r);
        assert_eq!(q.usage().used, 0);
        let mut w3 = q.temp_file().unwrap();
        w3.write_all(&[0; 100]).unwrap();
        drop(w3);
        assert_eq!(q.usage().used, 0);
    }
}
