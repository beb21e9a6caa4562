//! AES-256-GCM sealing of small secrets at rest. Layout: `nonce (12) || ciphertext || tag
//! (16)`. The associated data binds a sealed blob to its purpose and identifier, so a blob
//! cannot be swapped for another one in the state file without failing to open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::Error;

/// Encrypts `plaintext` under `key` with a fresh random nonce.
pub fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key).map_err(|_| Error::Crypto("aead key"))?,
    );
    let mut nonce = [0u8; NONCE_LEN];
    super::random_bytes(&mut nonce)?;
    let mut buf = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buf,
    )
    .map_err(|_| Error::Crypto("aead seal"))?;
    let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&buf);
    Ok(out)
}

/// Decrypts a blob produced by [`seal`]; fails on any tampering or wrong key/AAD.
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(Error::Crypto("sealed blob too short"));
    }
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key).map_err(|_| Error::Crypto("aead key"))?,
    );
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::Crypto("nonce"))?;
    let mut buf = Zeroizing::new(body.to_vec());
    let len = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| Error::Crypto("aead open (wrong master key or tampered state)"))?
        .len();
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let key = [7u8; 32];
        let sealed = seal(&key, b"ctx", b"secret bytes").unwrap();
        assert_eq!(&open(&key, b"ctx", &sealed).unwrap()[..], b"secret bytes");
        assert!(open(&key, b"other", &sealed).is_err());
        assert!(open(&[8u8; 32], b"ctx", &sealed).is_err());
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(open(&key, b"ctx", &flipped).is_err());
        assert!(open(&key, b"ctx", &sealed[..10]).is_err());
    }
}
