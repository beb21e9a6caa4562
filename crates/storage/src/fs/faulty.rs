//! A fault-injecting file system for crash tests.
//!
//! Writes go straight to a real directory, but `FaultyFs` remembers, per file, how much has
//! been fsynced and whether its directory entry was made durable. [`FaultyFs::crash`] then
//! rewrites the directory into a state a power cut could leave behind: files whose entry
//! was never synced disappear, unsynced bytes are dropped (or the last write is torn), and
//! every later operation through this instance fails until [`FaultyFs::revive`], so the
//! crashed engine cannot write anything more. [`FaultyFs::fail_syncs`] makes the next n
//! fsyncs fail with EIO without making the data durable. [`FaultyFs::fail_appends`] makes
//! appends to some files fail with an errno (ENOSPC: a full disk) until
//! [`FaultyFs::clear_append_faults`], each failing append writing half its bytes first, as
//! a `write(2)` cut short by a full disk does.
//!
//! Simplifications (documented so tests do not over-claim): renames and removals are
//! treated as immediately durable; a crash keeps the synced prefix of every file intact.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Fs, LockGuard, ReadableFile, RealFs, WritableFile};

/// How [`FaultyFs::crash`] treats data written after the last fsync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced byte is lost.
    DropUnsynced,
    /// Unsynced writes before the last one survive; the last write keeps only a prefix
    /// (half of it) followed by garbage bytes of the same length as the lost half.
    TearLastWrite,
}

#[derive(Debug, Default, Clone)]
struct FileState {
    /// Where the file is now: a rename moves the file, not the handles open on it.
    path: PathBuf,
    len: u64,
    synced_len: u64,
    last_write: Option<(u64, u64)>,
    entry_durable: bool,
}

#[derive(Debug, Default)]
struct State {
    dead: bool,
    fail_syncs: usize,
    fail_renames: usize,
    /// Appends to files whose name ends with `.0` fail with errno `.1`.
    fail_appends: Vec<(String, i32)>,
    /// Every file written through this instance, by the handle id of its writer.
    files: HashMap<u64, FileState>,
    next_handle: u64,
}

impl State {
    fn at_path(&mut self, path: &Path) -> Option<u64> {
        self.files
            .iter()
            .find_map(|(&h, f)| (f.path == path).then_some(h))
    }
}

/// Fault-injecting [`Fs`]; clone it freely (clones share state).
#[derive(Debug, Clone, Default)]
pub struct FaultyFs {
    inner: RealFs,
    state: Arc<Mutex<State>>,
}

fn dead_err() -> io::Error {
    io::Error::other("FaultyFs: simulated crash (file system is down)")
}

impl FaultyFs {
    /// A new instance over the real file system.
    pub fn new() -> FaultyFs {
        FaultyFs::default()
    }

    /// Makes the next `n` fsyncs (file or directory) fail with an I/O error.
    pub fn fail_syncs(&self, n: usize) {
        self.state.lock().fail_syncs = n;
    }

    /// Makes every append to a file whose name ends with `suffix` (`.wal`, `.sst`, ...)
    /// write the first half of its bytes and then fail with `errno` (`libc::ENOSPC` for a
    /// full disk), until [`clear_append_faults`](Self::clear_append_faults). Reservations
    /// are no-ops under `FaultyFs`, so WAL appends hit the fault as they would past a
    /// reservation on a real file system.
    pub fn fail_appends(&self, suffix: &str, errno: i32) {
        self.state
            .lock()
            .fail_appends
            .push((suffix.to_string(), errno));
    }

    /// Removes every fault [`fail_appends`](Self::fail_appends) set: space is back.
    pub fn clear_append_faults(&self) {
        self.state.lock().fail_appends.clear();
    }

    /// Makes the next `n` renames fail with an I/O error (nothing is renamed).
    pub fn fail_renames(&self, n: usize) {
        self.state.lock().fail_renames = n;
    }

    /// Simulates a power cut: applies `mode` to every file written through this instance
    /// and makes all further operations fail until [`revive`](Self::revive).
    pub fn crash(&self, mode: CrashMode) -> io::Result<()> {
        let mut st = self.state.lock();
        st.dead = true;
        for f in st.files.values() {
            let path = &f.path;
            if !path.exists() {
                continue;
            }
            if !f.entry_durable {
                std::fs::remove_file(path)?;
                continue;
            }
            let keep = match (mode, f.last_write) {
                (CrashMode::TearLastWrite, Some((off, len))) if off + len > f.synced_len => {
                    let start = off.max(f.synced_len);
                    let torn = (off + len - start) / 2;
                    Some((start + torn, off + len))
                }
                _ => None,
            };
            let file = std::fs::OpenOptions::new().write(true).open(path)?;
            match keep {
                Some((cut, end)) => {
                    file.set_len(cut)?;
                    // Garbage where the lost half of the torn write was.
                    let garbage: Vec<u8> = (0..(end - cut))
                        .map(|i| (i as u8).wrapping_mul(31) ^ 0xA5)
                        .collect();
                    std::os::unix::fs::FileExt::write_all_at(&file, &garbage, cut)?;
                }
                None => file.set_len(f.synced_len)?,
            }
            file.sync_all()?;
        }
        st.files.clear();
        Ok(())
    }

    /// Brings the file system back after a crash; everything on disk now counts as durable.
    pub fn revive(&self) {
        let mut st = self.state.lock();
        st.dead = false;
        st.fail_syncs = 0;
        st.fail_renames = 0;
        st.fail_appends.clear();
        st.files.clear();
    }

    fn check(&self) -> io::Result<()> {
        if self.state.lock().dead {
            Err(dead_err())
        } else {
            Ok(())
        }
    }
}

struct FaultyWritable {
    handle: u64,
    inner: Arc<dyn WritableFile>,
    state: Arc<Mutex<State>>,
}

impl WritableFile for FaultyWritable {
    fn append(&self, data: &[u8]) -> io::Result<()> {
        let mut st = self.state.lock();
        if st.dead {
            return Err(dead_err());
        }
        let fault = st.files.get(&self.handle).and_then(|f| {
            let name = f.path.file_name()?.to_str()?;
            st.fail_appends
                .iter()
                .find(|(suffix, _)| name.ends_with(suffix.as_str()))
                .map(|&(_, errno)| errno)
        });
        let (data, fault) = match fault {
            Some(errno) => (&data[..data.len() / 2], Some(errno)),
            None => (data, None),
        };
        self.inner.append(data)?;
        // A file removed while open is not tracked: nothing of it can survive a crash.
        if let Some(f) = st.files.get_mut(&self.handle) {
            f.last_write = Some((f.len, data.len() as u64));
            f.len += data.len() as u64;
        }
        match fault {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }
    fn sync(&self) -> io::Result<()> {
        let len = {
            let mut st = self.state.lock();
            if st.dead {
                return Err(dead_err());
            }
            if st.fail_syncs > 0 {
                st.fail_syncs -= 1;
                // What a failed writeback reports.
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            st.files.get(&self.handle).map(|f| f.len)
        };
        self.inner.sync()?;
        let mut st = self.state.lock();
        if let (Some(len), Some(f)) = (len, st.files.get_mut(&self.handle)) {
            f.synced_len = f.synced_len.max(len);
        }
        Ok(())
    }
}

struct FaultyReadable {
    inner: Arc<dyn ReadableFile>,
    state: Arc<Mutex<State>>,
}

impl ReadableFile for FaultyReadable {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if self.state.lock().dead {
            return Err(dead_err());
        }
        self.inner.read_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}

impl Fs for FaultyFs {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>> {
        let mut st = self.state.lock();
        if st.dead {
            return Err(dead_err());
        }
        let inner = self.inner.create(path)?;
        // `create` truncates: a file already at `path` now starts over under the new handle.
        if let Some(old) = st.at_path(path) {
            st.files.remove(&old);
        }
        let handle = st.next_handle;
        st.next_handle += 1;
        st.files.insert(
            handle,
            FileState {
                path: path.to_path_buf(),
                ..FileState::default()
            },
        );
        Ok(Arc::new(FaultyWritable {
            handle,
            inner,
            state: self.state.clone(),
        }))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
        self.check()?;
        Ok(Arc::new(FaultyReadable {
            inner: self.inner.open(path)?,
            state: self.state.clone(),
        }))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if st.dead {
            return Err(dead_err());
        }
        if let Some(h) = st.at_path(path) {
            st.files.remove(&h);
        }
        self.inner.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if st.dead {
            return Err(dead_err());
        }
        if st.fail_renames > 0 {
            st.fail_renames -= 1;
            return Err(io::Error::other("FaultyFs: injected rename failure"));
        }
        self.inner.rename(from, to)?;
        if let Some(replaced) = st.at_path(to) {
            st.files.remove(&replaced);
        }
        if let Some(h) = st.at_path(from)
            && let Some(f) = st.files.get_mut(&h)
        {
            f.path = to.to_path_buf();
            f.entry_durable = true;
        }
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.check()?;
        self.inner.list(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.check()?;
        self.inner.create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if st.dead {
            return Err(dead_err());
        }
        if st.fail_syncs > 0 {
            st.fail_syncs -= 1;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.sync_dir(dir)?;
        for f in st.files.values_mut() {
            if f.path.parent() == Some(dir) {
                f.entry_durable = true;
            }
        }
        Ok(())
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut st = self.state.lock();
        if st.dead {
            return Err(dead_err());
        }
        self.inner.truncate(path, len)?;
        if let Some(f) = st.at_path(path).and_then(|h| st.files.get_mut(&h)) {
            f.len = len;
            f.synced_len = len;
            f.last_write = None;
        }
        Ok(())
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        self.check()?;
        self.inner.lock(path)
    }
}
