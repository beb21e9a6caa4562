//! The real file system (std::fs + flock).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use super::{Fs, LockGuard, ReadableFile, WritableFile};

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

struct RealWritable(File);

impl WritableFile for RealWritable {
    fn append(&self, data: &[u8]) -> io::Result<()> {
        (&self.0).write_all(data)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn preallocate(&self, len: u64) -> io::Result<()> {
        let len = libc::off_t::try_from(len).map_err(|_| io::Error::other("length too large"))?;
        // SAFETY: fallocate on a valid, open descriptor owned by `self.0`; mode 0 only
        // allocates blocks (reading as zeros) and extends the size, touching no memory.
        // The descriptor's offset, where `append` writes, does not move.
        let rc = unsafe { libc::fallocate(self.0.as_raw_fd(), 0, 0, len) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    fn fill_zeros(&self, len: u64) -> io::Result<()> {
        const CHUNK: usize = 1 << 20;
        let zeros = vec![0u8; CHUNK];
        let mut at = self.0.metadata()?.len();
        while at < len {
            let n = usize::try_from(len - at).map_or(CHUNK, |n| n.min(CHUNK));
            // Positional writes: where `append` writes next does not move.
            self.0.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }
    fn start_writeback(&self) -> io::Result<()> {
        // SAFETY: sync_file_range on a valid, open descriptor owned by `self.0`; offset 0
        // and length 0 cover the whole file, and SYNC_FILE_RANGE_WRITE only queues the
        // dirty pages not already under write-out. No memory is shared.
        let rc =
            unsafe { libc::sync_file_range(self.0.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Bytes an unprivileged writer may still allocate in the file system holding `path`
/// (`statvfs`: available blocks × fragment size). A node polls it after a full disk made
/// its engine read-only, to know when a reopen can work.
pub fn available_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable memory of the
    // right type, which statvfs fills on success and which is only read after it.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised the whole struct.
    let st = unsafe { st.assume_init() };
    // Both are u64 on 64-bit Linux but narrower on some targets.
    #[allow(clippy::useless_conversion)]
    let (blocks, size) = (u64::from(st.f_bavail), u64::from(st.f_frsize));
    Ok(blocks.saturating_mul(size))
}

struct RealReadable(File);

impl ReadableFile for RealReadable {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

struct FlockGuard(#[allow(dead_code)] File);
impl LockGuard for FlockGuard {}

impl Fs for RealFs {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        Ok(Arc::new(RealWritable(f)))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        Ok(Arc::new(RealReadable(File::open(path)?)))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if let Some(n) = e.file_name().to_str() {
                out.push(n.to_string());
            }
        }
        Ok(out)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(len)?;
        f.sync_all()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        // SAFETY: flock on a valid, open descriptor owned by `f`; no memory is shared.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Box::new(FlockGuard(f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_bytes_reports_a_file_system_and_refuses_a_missing_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(available_bytes(dir.path()).expect("statvfs") > 0);
        let missing = available_bytes(&dir.path().join("missing")).expect_err("missing");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn writeback_can_be_started_mid_file_and_leaves_its_contents_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t");
        let f = RealFs.create(&path).expect("create");
        let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
        for _ in 0..3 {
            f.append(&chunk).expect("append");
            f.start_writeback().expect("sync_file_range accepted");
        }
        f.sync().expect("sync");
        let back = RealFs.read_all(&path).expect("read");
        assert_eq!(back.len(), 3 << 20);
        assert!(back.chunks(1 << 20).all(|c| c == chunk.as_slice()));
    }
}
