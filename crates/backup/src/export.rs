//! Export of a cluster (as of a restore point) to a MongoDB-compatible dump:
//! `mongodump`'s layout, `<db>/<collection>.bson` (concatenated BSON documents) and
//! `<db>/<collection>.metadata.json` (options and indexes).
//!
//! An export is encrypted unless the operator asks for plaintext: each file is then
//! `<name>.sealed`, streamed in 1 MiB chunks of AES-256-GCM under a per-file key derived
//! from a random export key (HKDF, the file's relative path in the info), with the chunk
//! index as nonce and a last-chunk flag in the AAD, so chunks can be neither reordered,
//! moved between files, nor dropped from the end. The export key itself is wrapped by
//! the cluster's KEK (the caller keeps that in `export.json`), so an export is no easier
//! to read than the cluster it came from. `decrypt_export` turns it back into a plain
//! dump for `mongorestore`.
//!
//! Database and collection names stay visible as directory and file names (that is the
//! dump layout); documents, field names and index definitions do not.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use zeroize::Zeroizing;

use crate::error::{Error, Result, io_error};

const MAGIC: &[u8; 8] = b"SRDUMP1\n";
const CHUNK: usize = 1 << 20;
const TAG: usize = 16;
pub const SEALED_SUFFIX: &str = ".sealed";

/// The random key an encrypted export is sealed under.
pub struct ExportKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for ExportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportKey(<redacted>)")
    }
}

impl ExportKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> ExportKey {
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(bytes);
        ExportKey(k)
    }

    fn file_key(&self, salt: &[u8; 32], path: &str) -> LessSafeKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(self.0.as_ref());
        let info = [b"strongroom export v1".as_slice(), path.as_bytes()];
        let mut key = Zeroizing::new([0u8; 32]);
        if let Ok(okm) = prk.expand(&info, hkdf::HKDF_SHA256) {
            let _ = okm.fill(key.as_mut());
        }
        // AES_256_GCM takes exactly 32 bytes, which the array guarantees.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.as_ref()).expect("32-byte key"))
    }
}

fn nonce(index: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aad(index: u64, last: bool) -> [u8; 9] {
    let mut a = [0u8; 9];
    a[..8].copy_from_slice(&index.to_le_bytes());
    a[8] = u8::from(last);
    a
}

/// A file of the export, plain or sealed.
struct Sink {
    out: BufWriter<File>,
    path: PathBuf,
    seal: Option<(LessSafeKey, u64)>,
    buf: Zeroizing<Vec<u8>>,
    bytes: u64,
}

impl Sink {
    fn create(root: &Path, rel: &str, key: Option<&ExportKey>) -> Result<Sink> {
        let name = match key {
            Some(_) => format!("{rel}{SEALED_SUFFIX}"),
            None => rel.to_string(),
        };
        let path = root.join(&name);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_error(&path))?;
        let mut out = BufWriter::new(file);
        let seal = match key {
            Some(k) => {
                let mut salt = [0u8; 32];
                aws_lc_rs::rand::fill(&mut salt)
                    .map_err(|_| Error::Format("the system random generator failed".into()))?;
                out.write_all(MAGIC).map_err(io_error(&path))?;
                out.write_all(&salt).map_err(io_error(&path))?;
                Some((k.file_key(&salt, rel), 0))
            }
            None => None,
        };
        Ok(Sink {
            out,
            path,
            seal,
            buf: Zeroizing::new(Vec::with_capacity(CHUNK)),
            bytes: 0,
        })
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.bytes += data.len() as u64;
        if self.seal.is_none() {
            return self.out.write_all(data).map_err(io_error(&self.path));
        }
        self.buf.extend_from_slice(data);
        while self.buf.len() > CHUNK {
            let rest = self.buf.split_off(CHUNK);
            self.flush_chunk(false)?;
            self.buf.extend_from_slice(&rest);
        }
        Ok(())
    }

    fn flush_chunk(&mut self, last: bool) -> Result<()> {
        let Some((key, index)) = self.seal.as_mut() else {
            return Ok(());
        };
        let len = self.buf.len();
        key.seal_in_place_append_tag(nonce(*index), Aad::from(aad(*index, last)), &mut *self.buf)
            .map_err(|_| Error::Format("sealing an export chunk failed".into()))?;
        self.out
            .write_all(&(len as u32).to_le_bytes())
            .and_then(|()| self.out.write_all(&[u8::from(last)]))
            .and_then(|()| self.out.write_all(&self.buf))
            .map_err(io_error(&self.path))?;
        *index += 1;
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<u64> {
        self.flush_chunk(true)?;
        self.out.flush().map_err(io_error(&self.path))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(io_error(&self.path))?;
        Ok(self.bytes)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportSummary {
    pub collections: usize,
    pub documents: u64,
    pub bytes: u64,
    pub encrypted: bool,
}

fn docdb_error(e: docdb::Error) -> Error {
    Error::Format(format!("reading the restored database: {e}"))
}

/// Writes every user collection of `engine` into `out` (which must be empty or absent).
/// The `admin` database (users and their credentials) is not exported.
pub fn export(
    engine: storage::Engine,
    out: &Path,
    key: Option<&ExportKey>,
    progress: &mut dyn FnMut(u64),
) -> Result<ExportSummary> {
    if out.exists() && fs::read_dir(out).map_err(io_error(out))?.next().is_some() {
        return Err(Error::Format(format!(
            "{} is not empty; an export needs an empty directory",
            out.display()
        )));
    }
    fs::create_dir_all(out).map_err(io_error(out))?;
    let db = docdb::Db::open(engine).map_err(docdb_error)?;
    let mut summary = ExportSummary {
        encrypted: key.is_some(),
        ..ExportSummary::default()
    };
    for info in db.list_databases().map_err(docdb_error)? {
        if info.name == "admin" || info.name == "local" || info.name == "config" {
            continue;
        }
        for coll in db.list_collections(&info.name, None).map_err(docdb_error)? {
            let Ok(name) = coll.get_str("name") else {
                continue;
            };
            if name.starts_with("system.") || name.contains('/') || info.name.contains('/') {
                continue;
            }
            let rel = format!("{}/{name}", info.name);
            let mut data = Sink::create(out, &format!("{rel}.bson"), key)?;
            let cursor = db
                .find(&info.name, name, docdb::FindOptions::default())
                .map_err(docdb_error)?;
            for doc in cursor {
                let doc = doc.map_err(docdb_error)?;
                let bytes = Zeroizing::new(doc.to_vec().map_err(|e| Error::Format(e.to_string()))?);
                data.write(&bytes)?;
                summary.documents += 1;
                if summary.documents.is_multiple_of(10_000) {
                    progress(summary.documents);
                }
            }
            summary.bytes += data.finish()?;
            let indexes = db.list_indexes(&info.name, name).map_err(docdb_error)?;
            let metadata = bson::doc! {
                "options": coll.get_document("options").cloned().unwrap_or_default(),
                "indexes": indexes,
                "collectionName": name,
                "type": "collection",
            };
            let json = Zeroizing::new(
                serde_json::to_vec(&json_of(&bson::Bson::Document(metadata)))
                    .map_err(|e| Error::Format(e.to_string()))?,
            );
            let mut meta = Sink::create(out, &format!("{rel}.metadata.json"), key)?;
            meta.write(&json)?;
            summary.bytes += meta.finish()?;
            summary.collections += 1;
        }
    }
    progress(summary.documents);
    Ok(summary)
}

/// Relaxed extended JSON for what metadata holds (options and index specifications).
fn json_of(v: &bson::Bson) -> serde_json::Value {
    use bson::Bson;
    use serde_json::Value;
    match v {
        Bson::Document(d) => {
            Value::Object(d.iter().map(|(k, v)| (k.clone(), json_of(v))).collect())
        }
        Bson::Array(a) => Value::Array(a.iter().map(json_of).collect()),
        Bson::String(s) => Value::String(s.clone()),
        Bson::Int32(i) => Value::from(*i),
        Bson::Int64(i) => Value::from(*i),
        Bson::Double(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string())),
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::Null => Value::Null,
        other => serde_json::json!({ "$value": other.to_string() }),
    }
}

/// Decrypts an encrypted export in `dir` into a plain dump in `out`.
pub fn decrypt_export(dir: &Path, key: &ExportKey, out: &Path) -> Result<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(io_error(&d))? {
            let path = entry.map_err(io_error(&d))?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Some(rel) = path
                .strip_prefix(dir)
                .ok()
                .and_then(|p| p.to_str())
                .and_then(|p| p.strip_suffix(SEALED_SUFFIX))
            else {
                continue;
            };
            total += open_sealed(&path, rel, key, &out.join(rel))?;
        }
    }
    Ok(total)
}

fn open_sealed(path: &Path, rel: &str, key: &ExportKey, dest: &Path) -> Result<u64> {
    let damaged = |detail: &str| Error::Tampered {
        file: path.display().to_string(),
        detail: detail.to_string(),
    };
    let mut input = std::io::BufReader::new(File::open(path).map_err(io_error(path))?);
    let mut head = [0u8; 40];
    input
        .read_exact(&mut head)
        .map_err(|_| damaged("too short"))?;
    if &head[..8] != MAGIC {
        return Err(damaged("not a Strongroom export file"));
    }
    let mut salt = [0u8; 32];
    salt.copy_from_slice(&head[8..]);
    let file_key = key.file_key(&salt, rel);
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    let mut out = BufWriter::new(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)
            .map_err(io_error(dest))?,
    );
    let mut index = 0u64;
    let mut total = 0u64;
    loop {
        let mut frame = [0u8; 5];
        input
            .read_exact(&mut frame)
            .map_err(|_| damaged("ends before its last chunk (truncated)"))?;
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        let last = frame[4] == 1;
        if len > CHUNK {
            return Err(damaged("chunk length out of range"));
        }
        let mut chunk = Zeroizing::new(vec![0u8; len + TAG]);
        input
            .read_exact(&mut chunk)
            .map_err(|_| damaged("ends inside a chunk (truncated)"))?;
        let plain = file_key
            .open_in_place(nonce(index), Aad::from(aad(index, last)), &mut chunk)
            .map_err(|_| damaged(&format!("chunk {index} fails authentication")))?;
        out.write_all(plain).map_err(io_error(dest))?;
        total += plain.len() as u64;
        index += 1;
        if last {
            let mut extra = [0u8; 1];
            if input.read(&mut extra).map_err(io_error(path))? != 0 {
                return Err(damaged("bytes after the last chunk"));
            }
            break;
        }
    }
    out.flush().map_err(io_error(dest))?;
    Ok(total)
}
