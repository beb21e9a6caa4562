//! Key material: the root key handed in by the caller and the data keys it protects.
//! Both live only in zeroizing buffers and print as redacted.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Identifier of a data key. `KeyId(0)` is reserved for the root key itself (it seals the
/// manifest and the key registry); data keys start at 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub u32);

impl KeyId {
    /// The id used in headers of files sealed directly under the root key.
    pub const ROOT: KeyId = KeyId(0);
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "k{}", self.0)
    }
}

/// The 256-bit root key (the cluster's root DEK). The engine never learns where it came
/// from; it only uses it to seal the manifest and the data-key registry.
#[derive(Clone)]
pub struct RootKey(Zeroizing<[u8; 32]>);

impl RootKey {
    /// Wraps 32 raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> RootKey {
        RootKey(Zeroizing::new(bytes))
    }

    /// Copies a 32-byte slice; any other length is rejected.
    pub fn from_slice(bytes: &[u8]) -> Result<RootKey> {
        if bytes.len() != 32 {
            return Err(Error::InvalidArgument(format!(
                "root key must be 32 bytes, got {}",
                bytes.len()
            )));
        }
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(bytes);
        Ok(RootKey(k))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey(<redacted>)")
    }
}

/// A data key: 32 random bytes with an id and a creation time (seconds since the epoch).
pub(crate) struct DataKey {
    pub(crate) id: KeyId,
    pub(crate) created_unix: u64,
    pub(crate) bytes: Zeroizing<[u8; 32]>,
}

impl DataKey {
    /// Draws a fresh random key.
    pub(crate) fn generate(id: KeyId, created_unix: u64) -> Result<DataKey> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(&mut bytes[..])
            .map_err(|_| Error::Io(std::io::Error::other("system random generator failed")))?;
        Ok(DataKey {
            id,
            created_unix,
            bytes,
        })
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .field("created_unix", &self.created_unix)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

/// The set of data keys currently known, newest last. Shared read-only; replaced whole on
/// rotation.
#[derive(Debug, Default)]
pub(crate) struct KeyRing {
    pub(crate) keys: Vec<Arc<DataKey>>,
}

impl KeyRing {
    pub(crate) fn get(&self, id: KeyId) -> Option<Arc<DataKey>> {
        self.keys.iter().find(|k| k.id == id).cloned()
    }
    pub(crate) fn newest(&self) -> Option<Arc<DataKey>> {
        self.keys.iter().max_by_key(|k| k.id).cloned()
    }
    pub(crate) fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(|k| k.id).collect()
    }
}

/// Current wall-clock time in seconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
