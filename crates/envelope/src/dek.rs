//! The root data-encryption key.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::KekError;

/// The cluster's root DEK: 32 random bytes that exist in plaintext only in this type.
///
/// It zeroizes on drop, is never printed (its `Debug` is redacted), and has no `Clone`
/// that could leave stray copies: callers that need the bytes borrow them.
pub struct RootDek(Zeroizing<[u8; 32]>);

impl RootDek {
    /// Draws a fresh key from the operating system's CSPRNG (through aws-lc-rs).
    pub fn generate() -> Result<RootDek, KekError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| KekError::Crypto("the system random generator failed".into()))?;
        Ok(RootDek(bytes))
    }

    /// Takes ownership of unwrapped key bytes; anything but 32 bytes is refused.
    pub fn from_slice(bytes: &[u8]) -> Result<RootDek, KekError> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| {
            KekError::Crypto(format!(
                "unwrapped root key has {} bytes, expected 32",
                bytes.len()
            ))
        })?;
        Ok(RootDek(Zeroizing::new(array)))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for RootDek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootDek(<redacted>)")
    }
}

impl PartialEq for RootDek {
    /// Constant-time: equality of secrets must not leak where they differ.
    fn eq(&self, other: &Self) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(self.0.as_ref(), other.0.as_ref()).is_ok()
    }
}
