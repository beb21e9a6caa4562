//! Durable state: one JSON file, `state.json`, replaced atomically.
//!
//! Commit protocol: [`sealed::write_atomic_io`] (a temporary file created 0600, fsync,
//! rename over `state.json`, directory fsync). A crash leaves either the old or the new file
//! complete; a stale temporary file from a crash is ignored and removed on load. A `state.json` that fails to parse
//! is an error, never a reason to start fresh (that would replace the signing key).

use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::Error;
use crate::model::{STATE_VERSION, State};

pub const FILE_NAME: &str = "state.json";

pub const LOCK_NAME: &str = "lock";

/// Reads and writes the state file of one data dir. Holds an exclusive advisory lock on
/// `dir/lock` for its lifetime, so two services never write the same state (last writer
/// would silently win). The kernel releases the lock when the process dies.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    _lock: std::fs::File,
}

impl StateStore {
    /// Creates the data dir (mode 0700 for directories it creates) if needed.
    pub fn open(dir: &Path) -> Result<StateStore, Error> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(dir, e))?;
        let lock_path = dir.join(LOCK_NAME);
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: dir.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        Ok(StateStore {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The persisted state, or `None` for a fresh data dir.
    pub fn load(&self) -> Result<Option<State>, Error> {
        let path = self.path();
        match sealed::remove_stale_temps(&path) {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                path = %path.display(),
                removed = n,
                "removed incomplete state writes left by a crash"
            ),
            Err(e) => return Err(Error::io(&self.dir, e)),
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let state: State = serde_json::from_slice(&bytes).map_err(|e| Error::CorruptState {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if state.version != STATE_VERSION {
            return Err(Error::CorruptState {
                path,
                reason: format!("unsupported version {}", state.version),
            });
        }
        Ok(Some(state))
    }

    /// Atomically replaces the state file with `state`.
    pub fn save(&self, state: &State) -> Result<(), Error> {
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| Error::CorruptState {
            path: self.path(),
            reason: format!("serialize: {e}"),
        })?;
        sealed::write_atomic_io(&self.path(), &bytes, 0o600).map_err(|e| Error::io(self.path(), e))
    }
}
