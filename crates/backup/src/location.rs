//! Where backups live. A directory today; the [`Store`] trait is the seam for an object
//! store (every operation is a whole-object put, an append at a known offset, a read, a
//! list or a delete — what S3/Azure Blob append blobs offer).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, io_error};

/// A backup location: named immutable objects plus append-only WAL objects.
pub trait Store: Send + Sync {
    /// Copies a local file into the store under `name`, returning its SHA-256 (computed
    /// while copying, so the file is read once). Atomic: the object appears whole or not
    /// at all.
    fn put_file(&self, name: &str, source: &Path) -> Result<(u64, [u8; 32])>;
    /// Writes a small object atomically.
    fn put(&self, name: &str, bytes: &[u8]) -> Result<()>;
    /// Appends `bytes` at `offset`; anything already past `offset` (a torn earlier append
    /// that the catalog never recorded) is cut first. Durable when it returns.
    fn append(&self, name: &str, offset: u64, bytes: &[u8]) -> Result<()>;
    fn read(&self, name: &str) -> Result<Vec<u8>>;
    /// A local path to read `name` from (the object itself for a directory; a downloaded
    /// copy for a remote store).
    fn local_path(&self, name: &str) -> Result<PathBuf>;
    fn size(&self, name: &str) -> Result<Option<u64>>;
    /// Object names under `prefix` (a folder such as `tables/`).
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    fn delete(&self, name: &str) -> Result<()>;
    /// A human-readable description (for messages).
    fn describe(&self) -> String;
}

/// A backup location on a local (or mounted) file system. Files are 0600 and every write
/// is fsynced together with its directory.
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<DirStore> {
        let root = root.into();
        for sub in ["tables", "keys", "wal", "catalog", "key"] {
            let d = root.join(sub);
            fs::create_dir_all(&d).map_err(io_error(&d))?;
        }
        Ok(DirStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

fn sync_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        sealed::sync_dir(dir).map_err(io_error(dir))?;
    }
    Ok(())
}

impl Store for DirStore {
    fn put_file(&self, name: &str, source: &Path) -> Result<(u64, [u8; 32])> {
        let dest = self.path(name);
        let tmp = dest.with_extension("partial");
        // The kernel copies (copy_file_range: no trip through user space) while another
        // thread hashes the same source pages: on two cores the backup runs at copy speed.
        let (copied, hashed) = std::thread::scope(|scope| {
            let hasher = scope.spawn(|| sha256_file(source));
            let copied = (|| -> Result<u64> {
                let n = fs::copy(source, &tmp).map_err(io_error(source))?;
                let f = OpenOptions::new()
                    .write(true)
                    .open(&tmp)
                    .map_err(io_error(&tmp))?;
                f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
                    .map_err(io_error(&tmp))?;
                f.sync_all().map_err(io_error(&tmp))?;
                Ok(n)
            })();
            let hashed = hasher.join().unwrap_or_else(|_| {
                Err(crate::Error::Format("the hashing thread panicked".into()))
            });
            (copied, hashed)
        });
        let copied = copied?;
        let (hashed_len, digest) = hashed?;
        if copied != hashed_len {
            let _ = fs::remove_file(&tmp);
            return Err(crate::Error::Tampered {
                file: source.display().to_string(),
                detail: format!("changed while being copied ({copied} vs {hashed_len} bytes)"),
            });
        }
        fs::rename(&tmp, &dest).map_err(io_error(&dest))?;
        sync_parent(&dest)?;
        Ok((copied, digest))
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let dest = self.path(name);
        sealed::write_atomic(&dest, bytes, 0o600)?;
        Ok(())
    }

    fn append(&self, name: &str, offset: u64, bytes: &[u8]) -> Result<()> {
        let path = self.path(name);
        let existed = path.exists();
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_error(&path))?;
        let len = f.metadata().map_err(io_error(&path))?.len();
        if len < offset {
            return Err(crate::Error::Tampered {
                file: name.to_string(),
                detail: format!("holds {len} bytes, but {offset} were archived before"),
            });
        }
        if len > offset {
            f.set_len(offset).map_err(io_error(&path))?;
        }
        f.seek(SeekFrom::Start(offset)).map_err(io_error(&path))?;
        f.write_all(bytes).map_err(io_error(&path))?;
        f.sync_data().map_err(io_error(&path))?;
        if !existed {
            sync_parent(&path)?;
        }
        Ok(())
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.path(name);
        fs::read(&path).map_err(io_error(&path))
    }

    fn local_path(&self, name: &str) -> Result<PathBuf> {
        Ok(self.path(name))
    }

    fn size(&self, name: &str) -> Result<Option<u64>> {
        let path = self.path(name);
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = self.path(prefix);
        let mut names = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(e) => return Err(io_error(&dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_error(&dir))?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(format!("{}/{name}", prefix.trim_end_matches('/')));
            }
        }
        names.sort();
        Ok(names)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

/// SHA-256 of a byte slice.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref());
    out
}

/// SHA-256 and length of a whole file, streamed.
pub(crate) fn sha256_file(path: &Path) -> Result<(u64, [u8; 32])> {
    let mut input = File::open(path).map_err(io_error(path))?;
    let mut hasher = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io_error(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(hasher.finish().as_ref());
    Ok((total, digest))
}

/// Reads `len` bytes at `offset` of a local file.
pub(crate) fn read_range(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    let mut f = File::open(path).map_err(io_error(path))?;
    f.seek(SeekFrom::Start(offset)).map_err(io_error(path))?;
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf).map_err(io_error(path))?;
    Ok(buf)
}
