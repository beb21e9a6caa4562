//! The manifest: a sealed log of version edits (`MANIFEST-<id>`, sealed under the root key),
//! plus the `CURRENT` pointer naming the live manifest.
//!
//! Edit payload: a sequence of tagged fields
//! ```text
//! 1 AddTable    level:u8 file_id:u64 size:u64
//! 2 RemoveTable file_id:u64
//! 3 AddWal      file_id:u64
//! 4 RemoveWal   file_id:u64
//! 5 Registry    file_id:u64          -- the key registry now in force
//! 6 NextFileId  u64                  -- ids below this may have been used
//! 7 LastSeq     u64
//! 8 LastCommit  u64                  -- largest WAL commit time (Unix µs) in the tables
//! ```
//! A record is applied all-or-nothing (it is one sealed record). When the manifest grows
//! past a threshold it is rewritten as one snapshot edit into a new file, and `CURRENT` is
//! replaced by write-temp + fsync + rename + fsync(dir).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use crate::codec::{PutExt, Reader};
use crate::crypto::header::FileKind;
use crate::crypto::keys::{DataKey, KeyId};
use crate::crypto::suite::CipherSuite;
use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::logfile::{LogWriter, Reserve, read_log};

/// Name of the pointer file.
pub(crate) const CURRENT: &str = "CURRENT";

pub(crate) fn manifest_name(id: u64) -> String {
    format!("MANIFEST-{id:06}")
}

/// One atomic change to the database's file set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct VersionEdit {
    pub(crate) add_tables: Vec<(u8, u64, u64)>,
    pub(crate) remove_tables: Vec<u64>,
    pub(crate) add_wals: Vec<u64>,
    pub(crate) remove_wals: Vec<u64>,
    pub(crate) registry: Option<u64>,
    pub(crate) next_file_id: Option<u64>,
    pub(crate) last_seq: Option<u64>,
    pub(crate) last_commit_micros: Option<u64>,
}

impl VersionEdit {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for &(l, id, size) in &self.add_tables {
            b.put_u8(1);
            b.put_u8(l);
            b.put_u64(id);
            b.put_u64(size);
        }
        for &id in &self.remove_tables {
            b.put_u8(2);
            b.put_u64(id);
        }
        for &id in &self.add_wals {
            b.put_u8(3);
            b.put_u64(id);
        }
        for &id in &self.remove_wals {
            b.put_u8(4);
            b.put_u64(id);
        }
        if let Some(id) = self.registry {
            b.put_u8(5);
            b.put_u64(id);
        }
        if let Some(id) = self.next_file_id {
            b.put_u8(6);
            b.put_u64(id);
        }
        if let Some(s) = self.last_seq {
            b.put_u8(7);
            b.put_u64(s);
        }
        if let Some(c) = self.last_commit_micros {
            b.put_u8(8);
            b.put_u64(c);
        }
        b
    }

    pub(crate) fn decode(buf: &[u8], file: &str, record: u64) -> Result<VersionEdit> {
        let bad = |d: &'static str| Error::corruption(file, Some(record), d);
        let mut r = Reader::new(buf);
        let mut e = VersionEdit::default();
        while !r.is_empty() {
            match r.u8().map_err(|e| bad(e.0))? {
                1 => {
                    let l = r.u8().map_err(|e| bad(e.0))?;
                    let id = r.u64().map_err(|e| bad(e.0))?;
                    let size = r.u64().map_err(|e| bad(e.0))?;
                    e.add_tables.push((l, id, size));
                }
                2 => e.remove_tables.push(r.u64().map_err(|e| bad(e.0))?),
                3 => e.add_wals.push(r.u64().map_err(|e| bad(e.0))?),
                4 => e.remove_wals.push(r.u64().map_err(|e| bad(e.0))?),
                5 => e.registry = Some(r.u64().map_err(|e| bad(e.0))?),
                6 => e.next_file_id = Some(r.u64().map_err(|e| bad(e.0))?),
                7 => e.last_seq = Some(r.u64().map_err(|e| bad(e.0))?),
                8 => e.last_commit_micros = Some(r.u64().map_err(|e| bad(e.0))?),
                _ => return Err(bad("unknown manifest field")),
            }
        }
        Ok(e)
    }
}

/// The state a manifest describes, built by replaying its edits.
#[derive(Clone, Debug, Default)]
pub(crate) struct ManifestState {
    /// file id -> (level, size)
    pub(crate) tables: BTreeMap<u64, (u8, u64)>,
    pub(crate) wals: BTreeSet<u64>,
    pub(crate) registry: Option<u64>,
    pub(crate) next_file_id: u64,
    pub(crate) last_seq: u64,
    /// Largest commit time of any record in the tables (see [`VersionEdit`] field 8).
    pub(crate) last_commit_micros: u64,
}

impl ManifestState {
    pub(crate) fn apply(&mut self, e: &VersionEdit) {
        for id in &e.remove_tables {
            self.tables.remove(id);
        }
        for &(l, id, size) in &e.add_tables {
            self.tables.insert(id, (l, size));
        }
        for id in &e.remove_wals {
            self.wals.remove(id);
        }
        for id in &e.add_wals {
            self.wals.insert(*id);
        }
        if let Some(r) = e.registry {
            self.registry = Some(r);
        }
        if let Some(n) = e.next_file_id {
            self.next_file_id = self.next_file_id.max(n);
        }
        if let Some(s) = e.last_seq {
            self.last_seq = self.last_seq.max(s);
        }
        if let Some(c) = e.last_commit_micros {
            self.last_commit_micros = self.last_commit_micros.max(c);
        }
    }

    pub(crate) fn snapshot_edit(&self) -> VersionEdit {
        VersionEdit {
            add_tables: self
                .tables
                .iter()
                .map(|(&id, &(l, s))| (l, id, s))
                .collect(),
            add_wals: self.wals.iter().copied().collect(),
            registry: self.registry,
            next_file_id: Some(self.next_file_id),
            last_seq: Some(self.last_seq),
            last_commit_micros: Some(self.last_commit_micros),
            ..VersionEdit::default()
        }
    }
}

/// Appends edits to the live manifest and rolls it over when it grows.
pub(crate) struct ManifestWriter {
    log: LogWriter,
    pub(crate) state: ManifestState,
}

/// Rewrite the manifest as a snapshot once it is this large.
const ROLLOVER_BYTES: u64 = 4 << 20;

impl ManifestWriter {
    /// Writes a new manifest `id` holding `state` as one snapshot edit and points CURRENT
    /// at it. The caller deletes the previous manifest afterwards.
    pub(crate) fn create(
        fs: &dyn Fs,
        dir: &Path,
        id: u64,
        root: &DataKey,
        state: ManifestState,
    ) -> Result<ManifestWriter> {
        let name = manifest_name(id);
        let mut log = LogWriter::create(
            fs,
            dir,
            &name,
            FileKind::Manifest,
            id,
            root,
            CipherSuite::Aes256Gcm,
            Reserve::None,
        )?;
        log.append_sync(&state.snapshot_edit().encode())?;
        set_current(fs, dir, &name)?;
        Ok(ManifestWriter { log, state })
    }

    /// Durably appends `edit` and applies it to the in-memory state.
    pub(crate) fn log_edit(&mut self, edit: &VersionEdit) -> Result<()> {
        self.log.append_sync(&edit.encode())?;
        self.state.apply(edit);
        Ok(())
    }

    /// True when the log should be rewritten as a snapshot.
    pub(crate) fn wants_rollover(&self) -> bool {
        self.log.bytes() > ROLLOVER_BYTES
    }

    /// Replaces this manifest with a fresh snapshot in file `new_id`.
    pub(crate) fn rollover(
        &mut self,
        fs: &dyn Fs,
        dir: &Path,
        new_id: u64,
        root: &DataKey,
    ) -> Result<()> {
        let old = self.log.id();
        let mut state = self.state.clone();
        state.next_file_id = state.next_file_id.max(new_id + 1);
        *self = ManifestWriter::create(fs, dir, new_id, root, state)?;
        if let Err(e) = fs.remove(&dir.join(manifest_name(old))) {
            tracing::warn!(error = %e, "could not remove old manifest");
        }
        Ok(())
    }
}

/// Atomically points CURRENT at `name`.
fn set_current(fs: &dyn Fs, dir: &Path, name: &str) -> Result<()> {
    let tmp = dir.join("CURRENT.tmp");
    let f = fs.create(&tmp)?;
    f.append(format!("{name}\n").as_bytes())?;
    f.sync()?;
    fs.rename(&tmp, &dir.join(CURRENT))?;
    fs.sync_dir(dir)?;
    Ok(())
}

/// Reads CURRENT and replays the manifest it names. Returns the manifest id and state.
pub(crate) fn recover(
    fs: &dyn Fs,
    dir: &Path,
    root: &Arc<DataKey>,
    fallback: Option<u64>,
) -> Result<(u64, ManifestState, u64)> {
    let name = match fallback {
        Some(id) => manifest_name(id),
        None => {
            let cur = fs.read_all(&dir.join(CURRENT))?;
            let cur = String::from_utf8(cur)
                .map_err(|_| Error::corruption(CURRENT, None, "not UTF-8"))?;
            cur.trim_end_matches('\n').to_string()
        }
    };
    let name = name.as_str();
    let id: u64 = name
        .strip_prefix("MANIFEST-")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::corruption(CURRENT, None, "does not name a manifest"))?;
    let root2 = root.clone();
    let resolve = move |k: KeyId| {
        if k == KeyId::ROOT {
            Some(root2.clone())
        } else {
            None
        }
    };
    let log = read_log(fs, dir, name, FileKind::Manifest, id, &resolve)?;
    if log.records.is_empty() {
        return Err(Error::corruption(
            name,
            Some(0),
            "manifest has no snapshot record",
        ));
    }
    let mut state = ManifestState::default();
    for (i, rec) in log.records.iter().enumerate() {
        state.apply(&VersionEdit::decode(rec, name, i as u64)?);
    }
    Ok((id, state, log.valid_len))
}
