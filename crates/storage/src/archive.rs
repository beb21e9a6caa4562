//! WAL archiving: in archive mode ([`Options::archive_wal`](crate::Options::archive_wal)) a
//! WAL segment the engine retires — after its memtable is flushed, or at open once its
//! records are in an L0 table — is renamed into `<dir>/archive/NNNNNN.wal` (same file
//! system; the archive directory, then the database directory, are fsynced) instead of being
//! deleted. The segment keeps its sealed bytes, so a backup agent can ship it verbatim and a
//! restore can read it with [`WalReader`](crate::offline::WalReader).
//!
//! The engine never deletes an archived segment on its own: the backup agent calls
//! [`Engine::release_archived_wal`](crate::Engine::release_archived_wal) once it has a
//! copy. Until then the segment's data key stays in the key registry (see
//! `Inner::key_ids_in_use`).
//!
//! Crash safety: the manifest edit that retires a segment is durable before the rename. A
//! crash in between leaves a `.wal` file the manifest no longer references; `open` moves
//! every such file into the archive rather than deleting it (archive mode only), so no
//! acknowledged record is ever missing from the archive.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::crypto::KeyId;
use crate::crypto::header::HEADER_LEN;
use crate::engine::{ARCHIVE_DIR, Inner, wal_name};
use crate::error::{Error, Result};
use crate::fs::Fs;

/// One archived WAL segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedWal {
    /// Segment (file) id; ids increase with time.
    pub id: u64,
    /// Where the segment lies (`<dir>/archive/NNNNNN.wal`).
    pub path: PathBuf,
    /// Its length in bytes.
    pub len: u64,
}

fn parse_wal_name(name: &str) -> Option<u64> {
    name.strip_suffix(".wal")?.parse().ok()
}

/// Reads the data-key id from the header of every archived segment. The header is not
/// authenticated here: the id only decides which keys to keep, and keeping one too many is
/// harmless. Unreadable files are skipped with a warning.
pub(crate) fn scan_archive_keys(fs: &dyn Fs, archive: &Path) -> BTreeMap<u64, KeyId> {
    let mut out = BTreeMap::new();
    let Ok(names) = fs.list(archive) else {
        return out;
    };
    for n in names {
        let Some(id) = parse_wal_name(&n) else {
            continue;
        };
        match read_key_id(fs, &archive.join(&n)) {
            Ok(k) => {
                out.insert(id, k);
            }
            Err(e) => tracing::warn!(file = %n, error = %e, "cannot read archived WAL header"),
        }
    }
    out
}

fn read_key_id(fs: &dyn Fs, path: &Path) -> std::io::Result<KeyId> {
    let f = fs.open(path)?;
    let mut h = [0u8; HEADER_LEN];
    f.read_at(&mut h, 0)?;
    Ok(KeyId(u32::from_le_bytes([h[16], h[17], h[18], h[19]])))
}

impl Inner {
    pub(crate) fn archive_dir(&self) -> PathBuf {
        self.dir.join(ARCHIVE_DIR)
    }

    /// Retires WAL segment `id` after the manifest stopped referencing it: archives it in
    /// archive mode, deletes it otherwise. A failed archive rename poisons the engine —
    /// continuing would leave a gap in the archive that a backup could not see; the
    /// segment is archived at the next open.
    pub(crate) fn retire_wal(&self, id: u64) -> Result<()> {
        let name = wal_name(id);
        let from = self.dir.join(&name);
        if !self.archive_wal {
            if let Err(e) = self.fs.remove(&from) {
                tracing::warn!(error = %e, "could not delete flushed WAL segment");
            }
            return Ok(());
        }
        let archive = self.archive_dir();
        let key = read_key_id(&*self.fs, &from).ok();
        self.durable("archive WAL segment", || {
            self.fs.rename(&from, &archive.join(&name))?;
            self.fs.sync_dir(&archive)?;
            self.fs.sync_dir(&self.dir)?;
            Ok(())
        })?;
        if let Some(k) = key {
            self.archived_keys.lock().insert(id, k);
        }
        tracing::debug!(file = %name, "archived WAL segment");
        Ok(())
    }

    pub(crate) fn archived_wal(&self) -> Result<Vec<ArchivedWal>> {
        let archive = self.archive_dir();
        let names = match self.fs.list(&archive) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for n in names {
            let Some(id) = parse_wal_name(&n) else {
                continue;
            };
            let path = archive.join(&n);
            let len = match self.fs.open(&path) {
                Ok(f) => f.len()?,
                // Released concurrently.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            out.push(ArchivedWal { id, path, len });
        }
        out.sort_by_key(|a| a.id);
        Ok(out)
    }

    pub(crate) fn release_archived_wal(&self, id: u64) -> Result<()> {
        let archive = self.archive_dir();
        let path = archive.join(wal_name(id));
        self.fs.remove(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::InvalidArgument(format!("no archived WAL segment {id}"))
            } else {
                Error::Io(e)
            }
        })?;
        self.fs.sync_dir(&archive)?;
        self.archived_keys.lock().remove(&id);
        Ok(())
    }
}
