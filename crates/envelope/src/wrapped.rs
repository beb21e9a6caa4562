//! The durable record of the wrapped root DEK.
//!
//! One small JSON file per cluster, `wrapped-dek.json`, replaced atomically (write a
//! temporary file, fsync, rename, fsync the directory). It holds the current wrapping
//! and, during a re-wrap onto a new key version, the previous one: the old wrapping is
//! dropped only in a later write, after the new one is durable, so a crash at any point
//! leaves at least one wrapping that unwraps. The wrapped bytes are RSA-OAEP ciphertext
//! and need no further protection; tampering makes the vault refuse the unwrap.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::KekError;

const FILE_NAME: &str = "wrapped-dek.json";
const FORMAT: u32 = 1;

/// The root DEK wrapped by one exact key version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedDek {
    /// The versioned key id that wrapped it; unwrap always uses exactly this.
    pub kid: String,
    pub alg: String,
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
    /// Unix seconds.
    pub wrapped_at: i64,
}

impl WrappedDek {
    pub fn new(kid: impl Into<String>, alg: impl Into<String>, ciphertext: Vec<u8>) -> Self {
        WrappedDek {
            kid: kid.into(),
            alg: alg.into(),
            ciphertext,
            wrapped_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        }
    }
}

mod b64 {
    use super::*;
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    format: u32,
    current: WrappedDek,
    #[serde(default)]
    previous: Vec<WrappedDek>,
}

/// The wrapped-key file of one cluster.
#[derive(Debug, Clone)]
pub struct WrappedKeyStore {
    dir: PathBuf,
}

impl WrappedKeyStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WrappedKeyStore { dir: dir.into() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    fn error(&self, detail: impl std::fmt::Display) -> KekError {
        KekError::Store {
            path: self.path().display().to_string(),
            detail: detail.to_string(),
        }
    }

    /// The current wrapping, and the previous ones still kept; `None` if there is none.
    pub fn load(&self) -> Result<Option<(WrappedDek, Vec<WrappedDek>)>, KekError> {
        let bytes = match fs::read(self.path()) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error(e)),
        };
        let record: Record = serde_json::from_slice(&bytes).map_err(|e| self.error(e))?;
        if record.format != FORMAT {
            return Err(self.error(format!("unknown format {}", record.format)));
        }
        Ok(Some((record.current, record.previous)))
    }

    /// Makes `current` the wrapping in use, keeping `previous` alongside it.
    pub fn store(&self, current: &WrappedDek, previous: &[WrappedDek]) -> Result<(), KekError> {
        let record = Record {
            format: FORMAT,
            current: current.clone(),
            previous: previous.to_vec(),
        };
        let bytes = serde_json::to_vec_pretty(&record).map_err(|e| self.error(e))?;
        sealed::write_atomic_io(&self.path(), &bytes, 0o600).map_err(|e| self.error(e))
    }

    /// Crypto-shredding: overwrites and removes the only durable copy of the root DEK.
    /// Without it nothing the cluster wrote (data, WAL, backups) can be decrypted again.
    pub fn destroy(&self) -> Result<(), KekError> {
        let path = self.path();
        let len = match fs::metadata(&path) {
            Ok(m) => m.len() as usize,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.error(e)),
        };
        let overwrite = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new().write(true).open(&path)?;
            f.write_all(&vec![0u8; len])?;
            f.sync_all()?;
            fs::remove_file(&path)?;
            sealed::sync_dir(&self.dir)
        };
        overwrite().map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_load_and_destroy() {
        let dir = tempfile::tempdir().unwrap();
        let store = WrappedKeyStore::new(dir.path());
        assert!(store.load().unwrap().is_none());
        let a = WrappedDek::new("https://v/keys/k/1", "RSA-OAEP-256", vec![1, 2, 3]);
        let b = WrappedDek::new("https://v/keys/k/2", "RSA-OAEP-256", vec![4, 5, 6]);
        store.store(&b, std::slice::from_ref(&a)).unwrap();
        let (current, previous) = store.load().unwrap().unwrap();
        assert_eq!(current, b);
        assert_eq!(previous, vec![a]);
        store.destroy().unwrap();
        assert!(store.load().unwrap().is_none());
        assert!(!store.path().exists());
    }

    #[test]
    fn a_stale_temporary_file_does_not_replace_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = WrappedKeyStore::new(dir.path());
        let a = WrappedDek::new("https://v/keys/k/1", "RSA-OAEP-256", vec![1]);
        store.store(&a, &[]).unwrap();
        // A crash between writing the temporary file and the rename leaves this behind.
        fs::write(dir.path().join(".wrapped-dek.json.99999.0.tmp"), b"{torn").unwrap();
        assert_eq!(store.load().unwrap().unwrap().0, a);
        let b = WrappedDek::new("https://v/keys/k/2", "RSA-OAEP-256", vec![2]);
        store.store(&b, &[]).unwrap();
        assert_eq!(store.load().unwrap().unwrap().0, b);
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = WrappedKeyStore::new(dir.path());
        fs::write(store.path(), b"{\"format\":1,\"current\":").unwrap();
        assert!(matches!(store.load(), Err(KekError::Store { .. })));
    }
}
