//! The self-describing file header every file starts with, and the per-file sealing
//! context ([`FileCipher`]) derived from it.
//!
//! Layout (84 bytes, little-endian):
//! ```text
//! 0   magic        4   "STRM"
//! 4   version      2   FORMAT_VERSION
//! 6   kind         1   FileKind
//! 7   suite        1   CipherSuite id
//! 8   file id      8   never reused within a database
//! 16  key id       4   data key (0 = root key)
//! 20  salt        32   random per file
//! 52  key check   16   HMAC-SHA256(key, "strongroom kcv v1")[..16]; tells a wrong key
//!                      apart from a damaged header (it does not depend on the salt, so a
//!                      flipped salt byte is reported as corruption, not as a wrong key)
//! 68  header tag  16   AES-GCM tag over bytes 0..68 (as AAD, empty plaintext) under the
//!                      per-file subkey, nonce = FF FF FF FF || 0^8 (never a block nonce)
//! ```

use std::sync::Arc;

use aws_lc_rs::{aead, constant_time, hkdf, hmac};

use super::keys::{DataKey, KeyId};
use super::suite::CipherSuite;
use crate::error::{Error, Result};

/// File magic.
pub const MAGIC: &[u8; 4] = b"STRM";
/// On-disk format version; part of every block's AAD.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the header on disk.
pub const HEADER_LEN: usize = 84;
/// GCM tag size.
pub const TAG_LEN: usize = 16;

const HEADER_AUTH_LEN: usize = 68;
const SUBKEY_INFO: &[u8] = b"strongroom file v1";
const KCV_LABEL: &[u8] = b"strongroom kcv v1";

/// What a file holds. Part of the subkey derivation and of every block's AAD, so a block
/// from one kind of file never authenticates as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// Write-ahead log segment.
    Wal = 1,
    /// Sorted string table.
    Sst = 2,
    /// Manifest (version-edit log).
    Manifest = 3,
    /// Data-key registry.
    KeyRegistry = 4,
    /// Temporary spill file.
    Temp = 5,
}

impl FileKind {
    fn from_u8(v: u8) -> Option<FileKind> {
        Some(match v {
            1 => FileKind::Wal,
            2 => FileKind::Sst,
            3 => FileKind::Manifest,
            4 => FileKind::KeyRegistry,
            5 => FileKind::Temp,
            _ => return None,
        })
    }
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// Per-file sealing context: the subkey plus the identity that goes into every AAD.
pub struct FileCipher {
    key: Option<aead::LessSafeKey>,
    file_id: u64,
    kind: FileKind,
    name: String,
    key_id: KeyId,
}

impl std::fmt::Debug for FileCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCipher")
            .field("file", &self.name)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn derive(
    key: &DataKey,
    salt: &[u8; 32],
    kind: FileKind,
    file_id: u64,
    suite: CipherSuite,
) -> Result<Option<aead::LessSafeKey>> {
    match suite {
        CipherSuite::Aes256Gcm => {
            let mut info = Vec::with_capacity(SUBKEY_INFO.len() + 9);
            info.extend_from_slice(SUBKEY_INFO);
            info.push(kind as u8);
            info.extend_from_slice(&file_id.to_le_bytes());
            let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&key.bytes[..]);
            let mut sub = zeroize::Zeroizing::new([0u8; 32]);
            prk.expand(&[&info], Len(32))
                .and_then(|okm| okm.fill(&mut sub[..]))
                .map_err(|_| Error::Io(std::io::Error::other("HKDF expansion failed")))?;
            let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, &sub[..])
                .map_err(|_| Error::Io(std::io::Error::other("AES key setup failed")))?;
            Ok(Some(aead::LessSafeKey::new(unbound)))
        }
        #[cfg(feature = "bench-null-cipher")]
        CipherSuite::Null => Ok(None),
    }
}

fn kcv(key: &DataKey) -> [u8; 16] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, &key.bytes[..]);
    let tag = hmac::sign(&k, KCV_LABEL);
    let mut out = [0u8; 16];
    out.copy_from_slice(&tag.as_ref()[..16]);
    out
}

fn header_nonce() -> aead::Nonce {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&[0xFF; 4]);
    aead::Nonce::assume_unique_for_key(n)
}

fn block_nonce(idx: u64) -> aead::Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&idx.to_be_bytes());
    aead::Nonce::assume_unique_for_key(n)
}

impl FileCipher {
    /// Creates a new file identity: draws a salt, derives the subkey, returns the header
    /// bytes to write first and the cipher for the blocks that follow.
    pub fn create(
        kind: FileKind,
        file_id: u64,
        key: &DataKey,
        suite: CipherSuite,
        name: String,
    ) -> Result<(Vec<u8>, FileCipher)> {
        let mut salt = [0u8; 32];
        aws_lc_rs::rand::fill(&mut salt)
            .map_err(|_| Error::Io(std::io::Error::other("system random generator failed")))?;
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        h.push(kind as u8);
        h.push(suite.id());
        h.extend_from_slice(&file_id.to_le_bytes());
        h.extend_from_slice(&key.id.0.to_le_bytes());
        h.extend_from_slice(&salt);
        h.extend_from_slice(&kcv(key));
        let cipher = FileCipher {
            key: derive(key, &salt, kind, file_id, suite)?,
            file_id,
            kind,
            name,
            key_id: key.id,
        };
        let tag = cipher.tag_header(&h)?;
        h.extend_from_slice(&tag);
        Ok((h, cipher))
    }

    fn tag_header(&self, auth: &[u8]) -> Result<[u8; TAG_LEN]> {
        match &self.key {
            Some(k) => {
                let tag = k
                    .seal_in_place_separate_tag(header_nonce(), aead::Aad::from(auth), &mut [])
                    .map_err(|_| Error::Io(std::io::Error::other("AES-GCM seal failed")))?;
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(tag.as_ref());
                Ok(out)
            }
            None => Ok([0u8; TAG_LEN]),
        }
    }

    /// Parses and authenticates a header. `expect` is the kind and id the caller expects
    /// (from the file name / manifest); a mismatch is corruption (a file copied over
    /// another). `resolve` maps the key id to key material.
    pub fn open(
        buf: &[u8],
        expect_kind: FileKind,
        expect_id: u64,
        name: &str,
        resolve: &dyn Fn(KeyId) -> Option<Arc<DataKey>>,
    ) -> Result<FileCipher> {
        let corrupt = |d: &str| Error::corruption(name, None, format!("header: {d}"));
        if buf.len() < HEADER_LEN {
            return Err(corrupt("file shorter than header"));
        }
        if &buf[0..4] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let version = u16::from_le_bytes([buf[4], buf[5]]);
        if version != FORMAT_VERSION {
            return Err(corrupt(&format!("unsupported format version {version}")));
        }
        let kind = FileKind::from_u8(buf[6]).ok_or_else(|| corrupt("unknown file kind"))?;
        let suite = CipherSuite::from_id(buf[7]).ok_or_else(|| corrupt("unknown cipher suite"))?;
        let mut id8 = [0u8; 8];
        id8.copy_from_slice(&buf[8..16]);
        let file_id = u64::from_le_bytes(id8);
        let key_id = KeyId(u32::from_le_bytes([buf[16], buf[17], buf[18], buf[19]]));
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&buf[20..52]);
        if kind != expect_kind {
            return Err(corrupt(&format!(
                "file kind {kind:?}, expected {expect_kind:?}"
            )));
        }
        if file_id != expect_id {
            return Err(corrupt(&format!("file id {file_id}, expected {expect_id}")));
        }
        let key = resolve(key_id).ok_or_else(|| {
            if key_id == KeyId::ROOT {
                Error::WrongKey
            } else {
                corrupt(&format!("data key {key_id} is not in the key registry"))
            }
        })?;
        let want = kcv(&key);
        #[cfg(feature = "bench-null-cipher")]
        let skip_kcv = suite == CipherSuite::Null;
        #[cfg(not(feature = "bench-null-cipher"))]
        let skip_kcv = false;
        if !skip_kcv && constant_time::verify_slices_are_equal(&want, &buf[52..68]).is_err() {
            return Err(if key_id == KeyId::ROOT {
                Error::WrongKey
            } else {
                corrupt(&format!("key check value does not match data key {key_id}"))
            });
        }
        let cipher = FileCipher {
            key: derive(&key, &salt, kind, file_id, suite)?,
            file_id,
            kind,
            name: name.to_string(),
            key_id,
        };
        if let Some(k) = &cipher.key {
            let mut tag = [0u8; TAG_LEN];
            tag.copy_from_slice(&buf[HEADER_AUTH_LEN..HEADER_LEN]);
            k.open_in_place(
                header_nonce(),
                aead::Aad::from(&buf[..HEADER_AUTH_LEN]),
                &mut tag,
            )
            .map_err(|_| corrupt("header authentication failed"))?;
        }
        Ok(cipher)
    }

    fn aad(&self, idx: u64, is_last: bool) -> [u8; 20] {
        let mut a = [0u8; 20];
        a[..8].copy_from_slice(&self.file_id.to_le_bytes());
        a[8] = self.kind as u8;
        a[9..17].copy_from_slice(&idx.to_le_bytes());
        a[17..19].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        a[19] = is_last as u8;
        a
    }

    /// Encrypts `buf[start..]` in place as block `idx` and appends the tag.
    pub fn seal(&self, idx: u64, is_last: bool, buf: &mut Vec<u8>, start: usize) -> Result<()> {
        match &self.key {
            Some(k) => {
                let tag = k
                    .seal_in_place_separate_tag(
                        block_nonce(idx),
                        aead::Aad::from(self.aad(idx, is_last)),
                        &mut buf[start..],
                    )
                    .map_err(|_| Error::Io(std::io::Error::other("AES-GCM seal failed")))?;
                buf.extend_from_slice(tag.as_ref());
            }
            None => buf.extend_from_slice(&[0u8; TAG_LEN]),
        }
        Ok(())
    }

    /// Encrypts `buf[..len - TAG_LEN]` in place as block `idx` and writes the tag into the
    /// last `TAG_LEN` bytes — the sealed block has exactly the length of `buf`, which is
    /// what lets a restore re-seal a table without moving any block.
    pub fn seal_in_place(&self, idx: u64, is_last: bool, buf: &mut [u8]) -> Result<()> {
        let Some(pt_len) = buf.len().checked_sub(TAG_LEN) else {
            return Err(Error::InvalidArgument(
                "sealed block shorter than its tag".into(),
            ));
        };
        let (pt, tag_out) = buf.split_at_mut(pt_len);
        match &self.key {
            Some(k) => {
                let tag = k
                    .seal_in_place_separate_tag(
                        block_nonce(idx),
                        aead::Aad::from(self.aad(idx, is_last)),
                        pt,
                    )
                    .map_err(|_| Error::Io(std::io::Error::other("AES-GCM seal failed")))?;
                tag_out.copy_from_slice(tag.as_ref());
            }
            None => tag_out.fill(0),
        }
        Ok(())
    }

    /// Authenticates and decrypts block `idx` (ciphertext || tag) in place, returning the
    /// plaintext length. Failure is corruption naming this file and block.
    pub fn open_block(&self, idx: u64, is_last: bool, buf: &mut [u8]) -> Result<usize> {
        if buf.len() < TAG_LEN {
            return Err(Error::corruption(
                &self.name,
                Some(idx),
                "block shorter than its tag",
            ));
        }
        match &self.key {
            Some(k) => {
                let pt = k
                    .open_in_place(
                        block_nonce(idx),
                        aead::Aad::from(self.aad(idx, is_last)),
                        buf,
                    )
                    .map_err(|_| {
                        Error::corruption(&self.name, Some(idx), "block authentication failed")
                    })?;
                Ok(pt.len())
            }
            None => Ok(buf.len() - TAG_LEN),
        }
    }

    /// Key this file is sealed under.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
}
