//! Encryption at rest: keys, cipher suites, the self-describing file header with its
//! per-file subkey, and the data-key registry sealed under the root key.

pub mod header;
pub mod keys;
pub mod registry;
pub mod suite;

pub use header::FileKind;
pub use keys::{KeyId, RootKey};
pub use suite::CipherSuite;
