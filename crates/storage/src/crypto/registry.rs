//! The data-key registry file (`KEYS-<id>`), sealed under the root key.
//!
//! ```text
//! header(84, kind KeyRegistry, key id 0 = root)
//! len:u32  sealed block 0 (is_last = 1):
//!     count:u32 { key_id:u32 created_unix:u64 key:[u8;32] }*
//! ```
//! A wrong root key fails the header's key-check value and is reported as
//! [`Error::WrongKey`]. The registry is never edited in place: a change writes a new file,
//! fsyncs it, and only then does a manifest record point at it.

use std::path::Path;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::header::{FileCipher, FileKind, HEADER_LEN};
use super::keys::{DataKey, KeyId, KeyRing};
use super::suite::CipherSuite;
use crate::codec::Reader;
use crate::error::{Error, Result};
use crate::fs::Fs;

/// File name of registry `id`.
pub(crate) fn registry_name(id: u64) -> String {
    format!("KEYS-{id:06}")
}

/// Writes registry file `id` holding `ring`, fsyncs it and its directory.
pub(crate) fn write_registry(
    fs: &dyn Fs,
    dir: &Path,
    id: u64,
    root: &DataKey,
    ring: &KeyRing,
) -> Result<()> {
    let name = registry_name(id);
    let (header, cipher) = FileCipher::create(
        FileKind::KeyRegistry,
        id,
        root,
        CipherSuite::Aes256Gcm,
        name.clone(),
    )?;
    let mut buf = Zeroizing::new(Vec::with_capacity(
        HEADER_LEN + 8 + ring.keys.len() * 44 + 16,
    ));
    buf.extend_from_slice(&header);
    buf.extend_from_slice(&[0u8; 4]);
    let body = buf.len();
    buf.extend_from_slice(&(ring.keys.len() as u32).to_le_bytes());
    for k in &ring.keys {
        buf.extend_from_slice(&k.id.0.to_le_bytes());
        buf.extend_from_slice(&k.created_unix.to_le_bytes());
        buf.extend_from_slice(&k.bytes[..]);
    }
    cipher.seal(0, true, &mut buf, body)?;
    let sealed_len = (buf.len() - body) as u32;
    buf[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&sealed_len.to_le_bytes());
    let f = fs.create(&dir.join(&name))?;
    f.append(&buf)?;
    f.sync()?;
    fs.sync_dir(dir)?;
    Ok(())
}

/// Reads and authenticates registry file `id`.
pub(crate) fn read_registry(
    fs: &dyn Fs,
    dir: &Path,
    id: u64,
    root: &Arc<DataKey>,
) -> Result<KeyRing> {
    let name = registry_name(id);
    let buf = Zeroizing::new(fs.read_all(&dir.join(&name))?);
    parse_registry(&buf, id, &name, root)
}

/// Authenticates the sealed registry bytes `buf` of registry file `id` (named `name` in
/// errors) under `root` and returns its keys. A wrong root key is [`Error::WrongKey`].
pub(crate) fn parse_registry(
    buf: &[u8],
    id: u64,
    name: &str,
    root: &Arc<DataKey>,
) -> Result<KeyRing> {
    let root2 = root.clone();
    let resolve = move |k: KeyId| {
        if k == KeyId::ROOT {
            Some(root2.clone())
        } else {
            None
        }
    };
    let cipher = FileCipher::open(buf, FileKind::KeyRegistry, id, name, &resolve)?;
    let bad = |d: &str| Error::corruption(name, Some(0), d.to_string());
    let mut r = Reader::new(&buf[HEADER_LEN..]);
    let len = r.u32().map_err(|e| bad(e.0))? as usize;
    if len != r.remaining() {
        return Err(bad("registry length does not match file size"));
    }
    let mut sealed = Zeroizing::new(buf[HEADER_LEN + 4..].to_vec());
    let n = cipher.open_block(0, true, &mut sealed)?;
    let mut r = Reader::new(&sealed[..n]);
    let count = r.u32().map_err(|e| bad(e.0))? as usize;
    let mut keys = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let id = KeyId(r.u32().map_err(|e| bad(e.0))?);
        let created_unix = r.u64().map_err(|e| bad(e.0))?;
        let raw = r.take(32).map_err(|e| bad(e.0))?;
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(raw);
        keys.push(Arc::new(DataKey {
            id,
            created_unix,
            bytes,
        }));
    }
    if !r.is_empty() {
        return Err(bad("trailing bytes in registry"));
    }
    if keys.is_empty() {
        return Err(bad("registry holds no data key"));
    }
    Ok(KeyRing { keys })
}
