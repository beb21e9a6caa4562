//! Crash-safe durable store: a sealed append-only log of `put`/`delete` records.
//!
//! File `state.log` in the data dir. Each frame is
//! `len: u32 LE | crc32(sealed): u32 LE | sealed`, where `sealed` is AES-256-GCM (key derived
//! from the root key for purpose `state-log`) over the JSON record `{id, value?}`. Object ids
//! and values (vault names, key names, private keys) only ever appear inside sealed frames.
//!
//! Recovery reads frames in order. Only a torn *final* frame — the tail of an interrupted
//! append, which was never acknowledged — may be cut. When a frame does not read (bad length,
//! incomplete, bad checksum), recovery searches every later byte offset for a frame that
//! authenticates under the key: if one exists the bad frame is not the last record, it is
//! corruption, and `open` refuses with [`Error::CorruptLog`] naming the file and the offset.
//! (Following the stored lengths alone is not enough: a flipped length can swallow the
//! records after it, or point past the end of the file, and make them look like a torn tail.)
//! A complete frame whose checksum matches but which fails authentication is never a torn
//! write: it is tampering or another root key, refused the same way wherever it is. When the
//! log holds many superseded records it is compacted: all live records are written as a new
//! file with [`sealed::write_atomic_io`] (mode 0600, fsync, rename, directory fsync).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::error::Error;
use sealed::MasterKey;

use crate::root_key::{RootKeyExt, Sealer};

const LOG_FILE: &str = "state.log";
const AAD: &[u8] = b"strongroom-kv-state-log-v1";
const MAX_FRAME: usize = 64 * 1024 * 1024;

/// One log record. Plaintext layout (before sealing):
/// `id_len: u32 LE | id (UTF-8) | flag: u8 (1 = put, 0 = delete) | value JSON`.
struct Record {
    id: String,
    value: Option<Zeroizing<String>>,
}

impl Record {
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let v = self.value.as_ref().map(|v| v.as_bytes()).unwrap_or(&[]);
        let mut out = Zeroizing::new(Vec::with_capacity(5 + self.id.len() + v.len()));
        out.extend_from_slice(&(self.id.len() as u32).to_le_bytes());
        out.extend_from_slice(self.id.as_bytes());
        out.push(u8::from(self.value.is_some()));
        out.extend_from_slice(v);
        out
    }

    fn decode(buf: &[u8]) -> Option<Record> {
        let id_len = u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?) as usize;
        let id = std::str::from_utf8(buf.get(4..4 + id_len)?)
            .ok()?
            .to_string();
        let flag = *buf.get(4 + id_len)?;
        let rest = buf.get(5 + id_len..)?;
        let value = match flag {
            1 => Some(Zeroizing::new(std::str::from_utf8(rest).ok()?.to_string())),
            0 => None,
            _ => return None,
        };
        Some(Record { id, value })
    }
}

/// The durable object store. Values are JSON documents keyed by an object id.
pub struct Store {
    dir: PathBuf,
    sealer: Sealer,
    file: File,
    live: BTreeMap<String, Zeroizing<String>>,
    records_in_log: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("objects", &self.live.len())
            .finish()
    }
}

/// What recovery found when opening the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryReport {
    pub records: usize,
    pub truncated_bytes: u64,
}

impl Store {
    /// Opens (or creates) the store in `dir`, replaying and repairing the log.
    pub fn open(dir: &Path, root: &MasterKey) -> Result<(Self, RecoveryReport), Error> {
        std::fs::create_dir_all(dir)?;
        let sealer = root.sealer(b"state-log")?;
        let path = dir.join(LOG_FILE);
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&path)?
        };
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let data = Zeroizing::new(data);
        let mut live = BTreeMap::new();
        let mut pos = 0usize;
        let mut records = 0usize;
        let corrupt = |offset: usize, reason: &'static str| Error::CorruptLog {
            path: path.clone(),
            offset: offset as u64,
            reason,
        };
        while pos < data.len() {
            match decode_frame(&sealer, &data[pos..]) {
                Frame::Ok(rec, used) => {
                    apply(&mut live, rec)?;
                    records += 1;
                    pos += used;
                }
                Frame::Unauthentic => {
                    // A complete frame with a valid checksum that does not open is not a torn
                    // write: another root key or tampering. Refuse rather than truncate.
                    return Err(corrupt(
                        pos,
                        "a complete record fails authentication (tampered with, or another root key)",
                    ));
                }
                Frame::Torn | Frame::BadChecksum => {
                    if let Some(next) = next_authentic_frame(&sealer, &data, pos + 1) {
                        tracing::error!(
                            offset = pos,
                            next_authentic = next,
                            "state log: a damaged record is followed by authentic records"
                        );
                        return Err(corrupt(
                            pos,
                            "a damaged record is followed by authentic records (not a torn final write)",
                        ));
                    }
                    break;
                }
            }
        }
        let truncated = (data.len() - pos) as u64;
        if truncated > 0 {
            tracing::warn!(
                truncated_bytes = truncated,
                "state log ends in a torn record (nothing authentic after it); truncating it"
            );
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        let store = Store {
            dir: dir.to_path_buf(),
            sealer,
            file,
            live,
            records_in_log: records,
        };
        Ok((
            store,
            RecoveryReport {
                records,
                truncated_bytes: truncated,
            },
        ))
    }

    /// All live objects whose id starts with `prefix`, decoded as `T`.
    pub fn scan<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<(String, T)>, Error> {
        self.live
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| Ok((k.clone(), serde_json::from_str(v.as_str())?)))
            .collect()
    }

    /// Durably stores `value` under `id` (appended and fsync'd before returning).
    pub fn put<T: Serialize>(&mut self, id: &str, value: &T) -> Result<(), Error> {
        let text = Zeroizing::new(serde_json::to_string(value)?);
        self.append(&Record {
            id: id.to_string(),
            value: Some(text.clone()),
        })?;
        self.live.insert(id.to_string(), text);
        self.maybe_compact()
    }

    /// Durably removes `id`.
    pub fn delete(&mut self, id: &str) -> Result<(), Error> {
        if self.live.remove(id).is_none() {
            return Ok(());
        }
        self.append(&Record {
            id: id.to_string(),
            value: None,
        })?;
        self.maybe_compact()
    }

    fn append(&mut self, rec: &Record) -> Result<(), Error> {
        let frame = encode_frame(&self.sealer, rec)?;
        self.file.write_all(&frame)?;
        self.file.sync_data()?;
        self.records_in_log += 1;
        Ok(())
    }

    fn maybe_compact(&mut self) -> Result<(), Error> {
        if self.records_in_log > 256 && self.records_in_log > 4 * self.live.len() {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the log with only the live records (atomic rename).
    pub fn compact(&mut self) -> Result<(), Error> {
        let mut out = Vec::new();
        for (id, text) in &self.live {
            let frame = encode_frame(
                &self.sealer,
                &Record {
                    id: id.clone(),
                    value: Some(text.clone()),
                },
            )?;
            out.extend_from_slice(&frame);
        }
        let path = self.dir.join(LOG_FILE);
        sealed::write_atomic_io(&path, &out, 0o600)?;
        self.file = OpenOptions::new().read(true).append(true).open(&path)?;
        self.records_in_log = self.live.len();
        Ok(())
    }
}

fn apply(live: &mut BTreeMap<String, Zeroizing<String>>, rec: Record) -> Result<(), Error> {
    match rec.value {
        Some(v) => {
            live.insert(rec.id, v);
        }
        None => {
            live.remove(&rec.id);
        }
    }
    Ok(())
}

fn encode_frame(sealer: &Sealer, rec: &Record) -> Result<Vec<u8>, Error> {
    let plain = rec.encode();
    let sealed = sealer.seal(AAD, &plain)?;
    let mut frame = Vec::with_capacity(8 + sealed.len());
    frame.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&sealed).to_le_bytes());
    frame.extend_from_slice(&sealed);
    Ok(frame)
}

/// The first offset at or after `from` where a whole frame authenticates under `sealer`'s
/// key, if any. Every offset is tried, not only those the stored lengths lead to, so a
/// flipped length cannot hide the records after it. Cheap in practice: most offsets carry a
/// length that overruns the file or a checksum that does not match, and only a checksum match
/// costs an AES-GCM open.
fn next_authentic_frame(sealer: &Sealer, data: &[u8], from: usize) -> Option<usize> {
    (from..data.len()).find(|&q| matches!(decode_frame(sealer, &data[q..]), Frame::Ok(..)))
}

enum Frame {
    Ok(Record, usize),
    /// Incomplete: the tail of an interrupted append.
    Torn,
    /// A complete frame whose checksum does not match.
    BadChecksum,
    Unauthentic,
}

fn decode_frame(sealer: &Sealer, buf: &[u8]) -> Frame {
    if buf.len() < 8 {
        return Frame::Torn;
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len > MAX_FRAME || buf.len() < 8 + len {
        return Frame::Torn;
    }
    let sealed = &buf[8..8 + len];
    if crc32fast::hash(sealed) != crc {
        return Frame::BadChecksum;
    }
    let Ok(plain) = sealer.open(AAD, sealed) else {
        return Frame::Unauthentic;
    };
    match Record::decode(&plain) {
        Some(rec) => Frame::Ok(rec, 8 + len),
        None => Frame::Unauthentic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn root() -> MasterKey {
        MasterKey::from_bytes([3u8; 32])
    }

    #[test]
    fn put_delete_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, rep) = Store::open(dir.path(), &root()).unwrap();
            assert_eq!(rep.records, 0);
            s.put("v/alpha", &json!({"a": 1})).unwrap();
            s.put("v/beta", &json!({"b": 2})).unwrap();
            s.put("v/alpha", &json!({"a": 3})).unwrap();
            s.delete("v/beta").unwrap();
        }
        let (s, rep) = Store::open(dir.path(), &root()).unwrap();
        assert_eq!(rep.truncated_bytes, 0);
        let all: Vec<(String, serde_json::Value)> = s.scan("v/").unwrap();
        assert_eq!(all, vec![("v/alpha".to_string(), json!({"a": 3}))]);
    }

    #[test]
    fn torn_tail_is_truncated_and_store_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Store::open(dir.path(), &root()).unwrap();
            s.put("k/one", &json!({"x": "first"})).unwrap();
            s.put("k/two", &json!({"x": "second"})).unwrap();
        }
        let path = dir.path().join(LOG_FILE);
        let full = std::fs::metadata(&path).unwrap().len();
        // Simulate a crash in the middle of appending the second record.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(full - 7).unwrap();
        drop(f);
        {
            let (mut s, rep) = Store::open(dir.path(), &root()).unwrap();
            assert_eq!(rep.records, 1);
            assert!(rep.truncated_bytes > 0);
            assert_eq!(s.scan::<serde_json::Value>("k/").unwrap().len(), 1);
            s.put("k/three", &json!({"x": "third"})).unwrap();
        }
        // A damaged record in the middle is refused (not silently truncated).
        {
            let mut data = std::fs::read(&path).unwrap();
            data[12] ^= 0xff;
            let saved = std::fs::read(&path).unwrap();
            std::fs::write(&path, &data).unwrap();
            assert!(matches!(
                Store::open(dir.path(), &root()),
                Err(Error::CorruptLog { offset: 0, .. })
            ));
            std::fs::write(&path, &saved).unwrap();
        }
        // Garbage appended (torn header) is also dropped.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[1, 2, 3]).unwrap();
        drop(f);
        let (s, rep) = Store::open(dir.path(), &root()).unwrap();
        assert_eq!(rep.truncated_bytes, 3);
        let ids: Vec<String> = s
            .scan::<serde_json::Value>("k/")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(ids, vec!["k/one".to_string(), "k/three".to_string()]);
    }

    /// Three records; returns the log path and each frame's start offset.
    fn three_records(dir: &Path) -> (PathBuf, Vec<usize>) {
        {
            let (mut s, _) = Store::open(dir, &root()).unwrap();
            for (id, x) in [
                ("k/one", "first"),
                ("k/two", "second"),
                ("k/three", "third"),
            ] {
                s.put(id, &json!({"x": x})).unwrap();
            }
        }
        let path = dir.join(LOG_FILE);
        let data = std::fs::read(&path).unwrap();
        let mut starts = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            starts.push(pos);
            let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
            pos += 8 + len;
        }
        assert_eq!(starts.len(), 3);
        (path, starts)
    }

    fn expect_corrupt_at(dir: &Path, path: &Path, expected: usize) {
        let before = std::fs::read(path).unwrap();
        match Store::open(dir, &root()) {
            Err(e @ Error::CorruptLog { .. }) => {
                let Error::CorruptLog {
                    path: named,
                    offset,
                    ..
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!(*offset, expected as u64, "{e}");
                assert_eq!(named, path);
                let msg = e.to_string();
                assert!(msg.contains(&format!("byte offset {expected}")), "{msg}");
                assert!(msg.contains("state.log"), "{msg}");
            }
            Err(e) => panic!("expected CorruptLog at {expected}, got {e}"),
            Ok((_, rep)) => panic!("expected CorruptLog at {expected}, opened: {rep:?}"),
        }
        // Refusing writes nothing: the evidence is untouched.
        assert_eq!(std::fs::read(path).unwrap(), before);
    }

    #[test]
    fn a_flipped_byte_in_the_middle_record_is_refused_with_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (path, starts) = three_records(dir.path());
        let mut data = std::fs::read(&path).unwrap();
        data[starts[1] + 30] ^= 0x01;
        std::fs::write(&path, &data).unwrap();
        expect_corrupt_at(dir.path(), &path, starts[1]);
    }

    #[test]
    fn a_flipped_length_cannot_make_later_records_look_like_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (path, starts) = three_records(dir.path());
        let good = std::fs::read(&path).unwrap();
        let rest = (good.len() - starts[1] - 8) as u32;
        // The middle record's length made to swallow exactly the rest of the file (the last
        // "frame" then fails its checksum with nothing after it), or to run past the end (an
        // incomplete "frame"), or to be absurd: each time the third record still
        // authenticates at its own offset, so this is corruption, not a torn write.
        for len in [rest, rest + 100, u32::MAX] {
            let mut data = good.clone();
            data[starts[1]..starts[1] + 4].copy_from_slice(&len.to_le_bytes());
            std::fs::write(&path, &data).unwrap();
            expect_corrupt_at(dir.path(), &path, starts[1]);
        }
    }

    #[test]
    fn only_a_torn_final_record_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (path, starts) = three_records(dir.path());
        let good = std::fs::read(&path).unwrap();
        // Cut in the middle of the last record: opens, the tail is cut, the rest is intact.
        std::fs::write(&path, &good[..starts[2] + 20]).unwrap();
        let (s, rep) = Store::open(dir.path(), &root()).unwrap();
        assert_eq!(rep.records, 2);
        assert_eq!(rep.truncated_bytes, 20);
        let ids: Vec<String> = s
            .scan::<serde_json::Value>("k/")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(ids, vec!["k/one".to_string(), "k/two".to_string()]);
        drop(s);
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, starts[2]);
        // A last record whose bytes never all reached the disk (checksum fails, nothing
        // after it) is a torn write too.
        let mut data = good.clone();
        let last = data.len() - 5;
        data[last] ^= 0x40;
        std::fs::write(&path, &data).unwrap();
        let (_, rep) = Store::open(dir.path(), &root()).unwrap();
        assert_eq!(rep.records, 2);
        // The same damage one record earlier is corruption.
        let mut data = good.clone();
        data[starts[2] - 5] ^= 0x40;
        std::fs::write(&path, &data).unwrap();
        expect_corrupt_at(dir.path(), &path, starts[1]);
    }

    #[test]
    fn the_log_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = three_records(dir.path());
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (mut s, _) = Store::open(dir.path(), &root()).unwrap();
        s.compact().unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn compaction_keeps_live_records_and_hides_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Store::open(dir.path(), &root()).unwrap();
            for i in 0..300 {
                s.put("k/secret-name", &json!({"i": i, "tag": "plaintext-marker"}))
                    .unwrap();
            }
            s.compact().unwrap();
        }
        let raw = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        let hay = String::from_utf8_lossy(&raw);
        assert!(!hay.contains("secret-name"));
        assert!(!hay.contains("plaintext-marker"));
        let (s, rep) = Store::open(dir.path(), &root()).unwrap();
        assert_eq!(rep.records, 1);
        assert_eq!(
            s.scan::<serde_json::Value>("k/").unwrap()[0].1,
            json!({"i": 299, "tag": "plaintext-marker"})
        );
        drop(s);
        // A different root key cannot read anything, and does not destroy the log either.
        assert!(matches!(
            Store::open(dir.path(), &MasterKey::from_bytes([9u8; 32])),
            Err(Error::CorruptLog { offset: 0, .. })
        ));
        let (s, _) = Store::open(dir.path(), &root()).unwrap();
        assert_eq!(s.scan::<serde_json::Value>("k/").unwrap().len(), 1);
    }
}
