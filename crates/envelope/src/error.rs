//! Why a KEK operation failed, classified the way the control plane reports it.

use std::fmt;

/// The reason a cluster cannot use its key, as shown in `clusterStatus` and in the
/// error a refused client receives. The names follow the causes in the product
/// documentation's "Inaccessible" table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Reason {
    KeyDisabled,
    KeyExpired,
    KeyNotYetActive,
    KeyDeleted,
    KeyInvalid,
    VaultDeleted,
    VaultUnreachable,
    FirewallDenied,
    IdentityDeleted,
    AccessDenied,
    Unauthenticated,
    WrappedKeyRejected,
    Internal,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::KeyDisabled => "KeyDisabled",
            Reason::KeyExpired => "KeyExpired",
            Reason::KeyNotYetActive => "KeyNotYetActive",
            Reason::KeyDeleted => "KeyDeleted",
            Reason::KeyInvalid => "KeyInvalid",
            Reason::VaultDeleted => "VaultDeleted",
            Reason::VaultUnreachable => "VaultUnreachable",
            Reason::FirewallDenied => "FirewallDenied",
            Reason::IdentityDeleted => "IdentityDeleted",
            Reason::AccessDenied => "AccessDenied",
            Reason::Unauthenticated => "Unauthenticated",
            Reason::WrappedKeyRejected => "WrappedKeyRejected",
            Reason::Internal => "Internal",
        }
    }

    /// Transient causes may be ridden out for a grace period; the others are decisions
    /// somebody made (disable, delete, revoke) and take effect at once.
    pub fn is_transient(self) -> bool {
        matches!(self, Reason::VaultUnreachable)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed KEK operation. Messages name keys and vaults by URL, never key material.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error("the key {key} is disabled")]
    KeyDisabled { key: String },
    #[error("the key {key} expired at {exp} (unix seconds)")]
    KeyExpired { key: String, exp: i64 },
    #[error("the key {key} is not active until {nbf} (unix seconds)")]
    KeyNotYetActive { key: String, nbf: i64 },
    #[error("the key {key} was not found (deleted, or never existed): {message}")]
    KeyNotFound { key: String, message: String },
    #[error("the key {key} cannot protect a root key: {why}")]
    KeyInvalid { key: String, why: String },
    #[error("the key vault {vault} has been deleted")]
    VaultDeleted { vault: String },
    #[error("the key vault {vault} is unreachable: {detail}")]
    VaultUnreachable { vault: String, detail: String },
    #[error("the key vault {vault} firewall denied the request: {message}")]
    FirewallDenied { vault: String, message: String },
    #[error("the managed identity {identity} does not exist: {message}")]
    IdentityDeleted { identity: String, message: String },
    #[error("access to the key {key} was denied: {message}")]
    AccessDenied { key: String, message: String },
    #[error("the key vault {vault} rejected the identity's token: {message}")]
    Unauthenticated { vault: String, message: String },
    #[error("the key vault refused to unwrap the stored root key with {kid}: {message}")]
    WrappedKeyRejected { kid: String, message: String },
    #[error("unexpected answer from {endpoint}: HTTP {status}: {message}")]
    Protocol {
        endpoint: String,
        status: u16,
        message: String,
    },
    #[error("token endpoint: {0}")]
    Token(String),
    #[error("the wrapped-key store at {path}: {detail}")]
    Store { path: String, detail: String },
    #[error("cryptographic failure: {0}")]
    Crypto(String),
}

impl KekError {
    pub fn reason(&self) -> Reason {
        match self {
            KekError::KeyDisabled { .. } => Reason::KeyDisabled,
            KekError::KeyExpired { .. } => Reason::KeyExpired,
            KekError::KeyNotYetActive { .. } => Reason::KeyNotYetActive,
            KekError::KeyNotFound { .. } => Reason::KeyDeleted,
            KekError::KeyInvalid { .. } => Reason::KeyInvalid,
            KekError::VaultDeleted { .. } => Reason::VaultDeleted,
            KekError::VaultUnreachable { .. } => Reason::VaultUnreachable,
            KekError::FirewallDenied { .. } => Reason::FirewallDenied,
            KekError::IdentityDeleted { .. } => Reason::IdentityDeleted,
            KekError::AccessDenied { .. } => Reason::AccessDenied,
            KekError::Unauthenticated { .. } => Reason::Unauthenticated,
            KekError::WrappedKeyRejected { .. } => Reason::WrappedKeyRejected,
            KekError::Protocol { .. }
            | KekError::Token(_)
            | KekError::Store { .. }
            | KekError::Crypto(_) => Reason::Internal,
        }
    }
}

impl From<platform::TokenError> for KekError {
    fn from(e: platform::TokenError) -> KekError {
        match e {
            platform::TokenError::IdentityDeleted { identity, message } => {
                KekError::IdentityDeleted { identity, message }
            }
            platform::TokenError::Endpoint(detail) => KekError::Token(detail),
        }
    }
}
