//! The service root key (the HSM stand-in) and AES-256-GCM sealing under keys derived from it.
//!
//! `root.key` holds 32 random bytes, created with mode 0600. Every sealed blob uses a key
//! derived with HKDF-SHA256 from the root key and a purpose label, so the state log, backups
//! (per tenant) and anything else never share a key.

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::error::Error;

const ROOT_KEY_FILE: &str = "root.key";

/// The 32-byte root key. Never printed.
pub struct RootKey {
    bytes: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey(..)")
    }
}

impl RootKey {
    /// Loads `dir/root.key`, creating it when absent ([`sealed::write_atomic_io`]: 0600 from
    /// its first byte, durable).
    pub fn load_or_create(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(ROOT_KEY_FILE);
        match std::fs::read(&path) {
            Ok(data) => {
                let data = Zeroizing::new(data);
                if data.len() != 32 {
                    return Err(Error::Corrupt(format!(
                        "{} has {} bytes, expected 32",
                        path.display(),
                        data.len()
                    )));
                }
                let mut bytes = Zeroizing::new([0u8; 32]);
                bytes.copy_from_slice(&data);
                Ok(RootKey { bytes })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = Zeroizing::new([0u8; 32]);
                SystemRandom::new()
                    .fill(bytes.as_mut())
                    .map_err(|_| Error::Crypto("random generation failed"))?;
                sealed::write_atomic_io(&path, bytes.as_ref(), 0o600)?;
                Ok(RootKey { bytes })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Builds a root key from raw bytes (tests).
    pub fn from_bytes(raw: [u8; 32]) -> Self {
        RootKey {
            bytes: Zeroizing::new(raw),
        }
    }

    /// Derives a sealing key for `purpose` (e.g. `b"state-log"`, `b"backup:" + tenant`).
    pub fn sealer(&self, purpose: &[u8]) -> Result<Sealer, Error> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"strongroom-keyvault-v1");
        let prk = salt.extract(self.bytes.as_ref());
        let info = [purpose];
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .map_err(|_| Error::Crypto("hkdf expand failed"))?;
        let key = UnboundKey::from(okm);
        Ok(Sealer {
            key: LessSafeKey::new(key),
        })
    }
}

/// AES-256-GCM with random 96-bit nonces. Output: `nonce || ciphertext || tag`.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// Seals `plaintext`, binding `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Error::Crypto("random generation failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let mut body = out.split_off(NONCE_LEN);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .map_err(|_| Error::Crypto("seal failed"))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens a blob produced by [`Sealer::seal`]. The plaintext is zeroized on drop.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(Error::Crypto("sealed blob too short"));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::Crypto("bad nonce"))?;
        let mut buf = Zeroizing::new(body.to_vec());
        let len = self
            .key
            .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())
            .map_err(|_| Error::Crypto("authentication failed"))?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_roundtrip_and_tamper() {
        let root = RootKey::from_bytes([7u8; 32]);
        let s = root.sealer(b"test").unwrap();
        let sealed = s.seal(b"aad", b"hello world").unwrap();
        assert_eq!(&s.open(b"aad", &sealed).unwrap()[..], b"hello world");
        assert!(s.open(b"other", &sealed).is_err());
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(s.open(b"aad", &bad).is_err());
        // A different purpose derives a different key.
        let other = root.sealer(b"test2").unwrap();
        assert!(other.open(b"aad", &sealed).is_err());
    }

    #[test]
    fn root_key_persists_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = RootKey::load_or_create(dir.path()).unwrap();
        let b = RootKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.bytes.as_ref(), b.bytes.as_ref());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(ROOT_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
