//! Crash-safe durable store: a sealed append-only log of `put`/`delete` records.
//!
//! File `state.log` in the data dir. Each frame is
//! `len: u32 LE | crc32(sealed): u32 LE | sealed`, where `sealed` is AES-256-GCM (key derived
//! from the root key for purpose `state-log`) over the JSON record `{id, value?}`. Object ids
//! and values (vault names, key names, private keys) only ever appear inside sealed frames.
//!
//! Recovery reads frames in order and stops at the first incomplete or unauthenticated frame
//! — a torn tail from a crash mid-append — truncating the file there. When the log holds many
//! superseded records it is compacted: all live records are written to `state.log.tmp`,
//! fsync'd, and atomically renamed over `state.log`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::seal::{RootKey, Sealer, sync_dir};

const LOG_FILE: &str = "state.log";
const TMP_FILE: &str = "state.log.tmp";
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
    pub fn open(dir: &Path, root: &RootKey) -> Result<(Self, RecoveryReport), Error> {
        std::fs::create_dir_all(dir)?;
        let sealer = root.sealer(b"state-log")?;
        let _ = std::fs::remove_file(dir.join(TMP_FILE));
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let data = Zeroizing::new(data);
        let mut live = BTreeMap::new();
        let mut pos = 0usize;
        let mut records = 0usize;
        while pos < data.len() {
            match decode_frame(&sealer, &data[pos..]) {
                Frame::Ok(rec, used) => {
                    apply(&mut live, rec)?;
                    records += 1;
                    pos += used;
                }
                Frame::Torn => break,
                Frame::BadChecksum(used) if pos + used < data.len() => {
                    // A damaged record followed by more records is not a torn append.
                    return Err(Error::Corrupt(format!(
                        "state log record at offset {pos} has a bad checksum and is not the last record"
                    )));
                }
                Frame::BadChecksum(_) => break,
                Frame::Unauthentic => {
                    // A complete frame with a valid checksum that does not open is not a torn
                    // write: wrong root key or tampering. Refuse rather than truncate.
                    return Err(Error::Corrupt(format!(
                        "state log record at offset {pos} failed authentication (wrong root key?)"
                    )));
                }
            }
        }
        let truncated = (data.len() - pos) as u64;
        if truncated > 0 {
            tracing::warn!(
                truncated_bytes = truncated,
                "state log has a torn or corrupt tail; truncating to the last complete record"
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
        let tmp = self.dir.join(TMP_FILE);
        {
            let mut out = File::create(&tmp)?;
            for (id, text) in &self.live {
                let frame = encode_frame(
                    &self.sealer,
                    &Record {
                        id: id.clone(),
                        value: Some(text.clone()),
                    },
                )?;
                out.write_all(&frame)?;
            }
            out.sync_all()?;
        }
        std::fs::rename(&tmp, self.dir.join(LOG_FILE))?;
        sync_dir(&self.dir)?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(self.dir.join(LOG_FILE))?;
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

enum Frame {
    Ok(Record, usize),
    /// Incomplete: the tail of an interrupted append.
    Torn,
    /// Complete frame (of this many bytes) whose checksum does not match.
    BadChecksum(usize),
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
        return Frame::BadChecksum(8 + len);
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

    fn root() -> RootKey {
        RootKey::from_bytes([3u8; 32])
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
                Err(Error::Corrupt(_))
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
        assert!(Store::open(dir.path(), &RootKey::from_bytes([9u8; 32])).is_err());
        let (s, _) = Store::open(dir.path(), &root()).unwrap();
        assert_eq!(s.scan::<serde_json::Value>("k/").unwrap().len(), 1);
    }
}
