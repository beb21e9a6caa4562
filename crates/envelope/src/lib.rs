//! Envelope encryption for a Strongroom cluster.
//!
//! ```text
//! KEK  (RSA key in a key vault: the customer's for CMK, the service's own for SMK)
//!  └─ wraps the root DEK (AES-256, one per cluster, stored only wrapped, next to the
//!     exact versioned key id that wrapped it)
//!      └─ the storage engine derives everything else from it (crates/storage)
//! ```
//!
//! This crate owns the three roles of that top layer, kept apart as TiKV keeps its
//! master-key backends apart from the data-key manager:
//! - [`RootDek`]: the plaintext root key, only ever in memory, zeroized on drop;
//! - [`WrappedKeyStore`]: the durable, crash-safe record of the wrapped root DEK;
//! - [`KekProvider`]: something that can describe, wrap and unwrap with a KEK — the
//!   Azure Key Vault REST client ([`AzureKeyVault`]) is the one implementation, used for
//!   CMK with the customer's identity and for SMK with the service's identity.
//!
//! Bearer tokens (`platform::token`) and the HTTPS client (`platform::https_client`)
//! come from the `platform` crate every service shares.
//!
//! [`Envelope`] ties them together into the two operations the control plane needs:
//! `create` (validate the key, wrap a fresh DEK) and `revalidate` (check the key's state
//! as the service sees it, unwrap, and re-wrap onto a newer version when the key URL is
//! version-less).

mod dek;
mod envelope;
mod error;
pub mod kek;
mod wrapped;

pub use dek::RootDek;
pub use envelope::{Envelope, KeyRequirements, Revalidation};
pub use error::{KekError, Reason};
pub use kek::{AzureKeyVault, KekProvider, KeyState, KeyUrl};
pub use wrapped::{WrappedDek, WrappedKeyStore};
