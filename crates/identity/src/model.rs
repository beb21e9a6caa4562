//! The persisted objects of the identity service. Serialized as one JSON document (see
//! [`crate::store`]); only salted hashes of secrets and the sealed signing key are stored.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::crypto::secret::SecretHash;

/// Current state-file format version.
pub const STATE_VERSION: u32 = 1;

/// A directory (Entra tenant).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub id: String,
    pub display_name: String,
    pub created_at: i64,
}

/// A user-assigned managed identity (`Microsoft.ManagedIdentity/userAssignedIdentities`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedIdentity {
    /// ARM resource id, with the casing it was created with.
    pub id: String,
    pub name: String,
    pub location: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub tenant_id: String,
    /// Fresh on every creation: recreating the same name never reuses it.
    pub client_id: String,
    /// Fresh on every creation: recreating the same name never reuses it.
    pub principal_id: String,
    pub created_at: i64,
}

/// An application / service principal authenticating with client secrets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipal {
    pub app_id: String,
    pub object_id: String,
    pub tenant_id: String,
    pub display_name: String,
    /// Tenant administrator: may manage identities, principals, vaults and clusters.
    pub admin: bool,
    /// First-party service: its tokens carry `xms_trusted_svc: true`.
    pub trusted_service: bool,
    pub secrets: Vec<SecretHash>,
    pub created_at: i64,
}

/// A compute resource (e.g. a cluster) that managed identities are attached to. Its
/// secret is what callers present as `X-IDENTITY-HEADER` on the MSI endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AttachedResource {
    /// The resource's id as first given (e.g. an ARM id of a cluster).
    pub resource_id: String,
    pub tenant_id: String,
    /// Principal ids of attached identities. Deleting an identity removes it here, so a
    /// recreated identity of the same name must be attached again.
    pub identities: BTreeSet<String>,
    #[serde(default)]
    pub secret: Option<SecretHash>,
}

/// The token-signing key sealed under the master key (AES-256-GCM).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SealedKey {
    pub kid: String,
    /// base64(nonce || ciphertext || tag) of the PKCS#8 DER private key.
    pub sealed: String,
}

/// What bootstrap created, so a second call knows it already ran.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapRecord {
    pub tenant_id: String,
    pub admin_app_id: String,
    pub control_plane_app_id: String,
}

/// Everything the service persists.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub version: u32,
    pub signing_key: SealedKey,
    #[serde(default)]
    pub bootstrap: Option<BootstrapRecord>,
    /// Keyed by tenant id.
    #[serde(default)]
    pub tenants: BTreeMap<String, Tenant>,
    /// Keyed by lower-cased ARM resource id (ARM ids are case-insensitive).
    #[serde(default)]
    pub identities: BTreeMap<String, ManagedIdentity>,
    /// Keyed by appId.
    #[serde(default)]
    pub service_principals: BTreeMap<String, ServicePrincipal>,
    /// Keyed by lower-cased resource id.
    #[serde(default)]
    pub resources: BTreeMap<String, AttachedResource>,
}
