//! The vault's root key — the service master key, `sealed::MasterKey`, kept in
//! `root.key` — and the sealing keys derived from it for the state log
//! (`b"state-log"`) and for key backups (`b"backup:" + tenant`).
//!
//! Sealing itself is `sealed`'s; this module holds what is the vault's own: the file name,
//! the derivation domain its existing files were sealed in, and errors in the vault's
//! [`Error`] type.

use zeroize::Zeroizing;

use crate::error::Error;

/// The root key's file in the vault's data dir (32 bytes, mode 0600).
pub const ROOT_KEY_FILE: &str = "root.key";

/// The HKDF salt the vault has derived its sealing keys with since its first release
/// ([`sealed::MasterKey::derive_in`]): existing state logs and backups keep opening.
pub const KEY_DOMAIN: &[u8] = b"strongroom-keyvault-v1";

/// Sealing keys of the vault's root key.
pub trait RootKeyExt {
    /// The sealing key for `purpose`.
    fn sealer(&self, purpose: &[u8]) -> Result<Sealer, Error>;
}

impl RootKeyExt for sealed::MasterKey {
    fn sealer(&self, purpose: &[u8]) -> Result<Sealer, Error> {
        Ok(Sealer(sealed::Sealer::new(
            &self.derive_in(KEY_DOMAIN, purpose),
        )))
    }
}

/// [`sealed::Sealer`] with the vault's errors.
#[derive(Debug)]
pub struct Sealer(sealed::Sealer);

impl Sealer {
    /// Seals `plaintext`, binding `aad`: `nonce ‖ ciphertext ‖ tag`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(self.0.seal(aad, plaintext)?)
    }

    /// Opens a blob produced by [`Sealer::seal`]. The plaintext is zeroized on drop.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        self.0
            .open(aad, sealed)
            .ok_or(Error::Crypto("authentication failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_roundtrip_and_tamper() {
        let root = sealed::MasterKey::from_bytes([7u8; 32]);
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

    /// A blob sealed the way the vault's own `seal.rs` sealed it before it used `sealed`
    /// (HKDF expanded straight into an AES-256-GCM key) opens with today's key: state
    /// logs and backups written by earlier versions still open.
    #[test]
    fn blobs_sealed_by_the_old_vault_code_still_open() {
        use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
        use aws_lc_rs::hkdf;
        let raw = [5u8; 32];
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"strongroom-keyvault-v1");
        let prk = salt.extract(&raw);
        let info = [&b"state-log"[..]];
        let old = LessSafeKey::new(UnboundKey::from(prk.expand(&info, &AES_256_GCM).unwrap()));
        let nonce = [9u8; NONCE_LEN];
        let mut body = b"old record".to_vec();
        old.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&b"aad"[..]),
            &mut body,
        )
        .unwrap();
        let blob = [&nonce[..], &body].concat();
        let root = sealed::MasterKey::from_bytes(raw);
        let plain = root
            .sealer(b"state-log")
            .unwrap()
            .open(b"aad", &blob)
            .unwrap();
        assert_eq!(&plain[..], b"old record");
    }

    #[test]
    fn root_key_persists_with_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ROOT_KEY_FILE);
        let a = sealed::MasterKey::load_or_create(&path).unwrap();
        let b = sealed::MasterKey::load_or_create(&path).unwrap();
        assert_eq!(a.derive("x"), b.derive("x"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
