//! Random bearer secrets (client secrets, resource secrets) and their salted hashes.
//!
//! Secrets are 32 random bytes (base64url, 43 chars): high entropy, so a salted SHA-256
//! is enough — a slow password hash would only slow every token request. Only hashes are
//! persisted; comparison is constant-time.

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::Error;

const DOMAIN: &[u8] = b"strongroom-identity secret-hash v1\0";

/// A freshly generated secret; shown to its owner once, then only its hash is kept.
pub fn generate() -> Result<Zeroizing<String>, Error> {
    let mut raw = Zeroizing::new([0u8; 32]);
    super::random_bytes(&mut raw[..])?;
    Ok(Zeroizing::new(URL_SAFE_NO_PAD.encode(&raw[..])))
}

/// `hex(salt)` and `hex(SHA-256(domain || salt || secret))`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecretHash {
    pub salt: String,
    pub sha256: String,
}

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

fn compute(salt: &[u8], secret: &[u8]) -> [u8; 32] {
    let mut input = Zeroizing::new(Vec::with_capacity(DOMAIN.len() + salt.len() + secret.len()));
    input.extend_from_slice(DOMAIN);
    input.extend_from_slice(salt);
    input.extend_from_slice(secret);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, &input).as_ref());
    out
}

impl SecretHash {
    /// Hashes `secret` under a new random salt.
    pub fn new(secret: &str) -> Result<SecretHash, Error> {
        let mut salt = [0u8; 16];
        super::random_bytes(&mut salt)?;
        Ok(SecretHash {
            salt: hex::encode(salt),
            sha256: hex::encode(compute(&salt, secret.as_bytes())),
        })
    }

    /// Constant-time check of `candidate` against this hash. A malformed stored hash
    /// never matches.
    pub fn matches(&self, candidate: &str) -> bool {
        let (Ok(salt), Ok(expected)) = (hex::decode(&self.salt), hex::decode(&self.sha256)) else {
            return false;
        };
        let actual = compute(&salt, candidate.as_bytes());
        expected.len() == actual.len() && bool::from(actual.ct_eq(&expected[..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_only_its_secret_and_is_salted() {
        let secret = generate().unwrap();
        assert_eq!(secret.len(), 43);
        let a = SecretHash::new(&secret).unwrap();
        let b = SecretHash::new(&secret).unwrap();
        assert!(a.matches(&secret));
        assert!(!a.matches("wrong"));
        assert!(!a.matches(""));
        assert_ne!(a.sha256, b.sha256, "salt must differ per hash");
        assert!(!a.sha256.contains(secret.as_str()));
    }
}
