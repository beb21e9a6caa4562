//! Persisted records (serialized as JSON inside sealed store frames).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A vault (management-plane resource).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VaultRecord {
    pub name: String,
    pub subscription: String,
    pub resource_group: String,
    pub location: String,
    pub tenant_id: String,
    pub sku_family: String,
    pub sku_name: String,
    pub soft_delete_retention_days: u32,
    pub purge_protection: bool,
    pub rbac: bool,
    pub access_policies: Vec<AccessPolicy>,
    pub network_acls: NetworkAcls,
    pub public_network_access: String,
    /// Loopback port of this vault's data-plane listener (re-bound at restart).
    pub port: u16,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub tags: BTreeMap<String, String>,
    pub role_assignments: Vec<RoleAssignment>,
    pub deleted: Option<DeletedInfo>,
}

impl VaultRecord {
    /// ARM resource id of the vault.
    pub fn resource_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.KeyVault/vaults/{}",
            self.subscription, self.resource_group, self.name
        )
    }

    /// The `recoveryLevel` reported in key attributes.
    pub fn recovery_level(&self) -> &'static str {
        match (self.purge_protection, self.soft_delete_retention_days >= 90) {
            (false, true) => "Recoverable+Purgeable",
            (false, false) => "CustomizedRecoverable+Purgeable",
            (true, true) => "Recoverable",
            (true, false) => "CustomizedRecoverable",
        }
    }
}

/// One access-policy entry (only key permissions are enforced; others are kept verbatim).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessPolicy {
    pub tenant_id: String,
    pub object_id: String,
    pub application_id: Option<String>,
    pub keys: Vec<String>,
    pub secrets: Vec<String>,
    pub certificates: Vec<String>,
}

/// Vault firewall.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkAcls {
    pub default_action: String,
    pub bypass: String,
    /// CIDR strings, normalized (`a.b.c.d/32` for a bare address).
    pub ip_rules: Vec<String>,
}

impl Default for NetworkAcls {
    fn default() -> Self {
        NetworkAcls {
            default_action: "Allow".into(),
            bypass: "AzureServices".into(),
            ip_rules: Vec::new(),
        }
    }
}

/// A role assignment scoped to the vault (or to one key under it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoleAssignment {
    pub name: String,
    pub role_definition_id: String,
    pub principal_id: String,
    /// Either the vault resource id or `{vault id}/keys/{name}`.
    pub scope: String,
}

/// Soft-delete bookkeeping.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeletedInfo {
    pub deleted_date: i64,
    pub scheduled_purge_date: i64,
}

/// A key with all its versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    pub name: String,
    /// In creation order; the last one is the current version.
    pub versions: Vec<KeyVersion>,
    pub deleted: Option<DeletedInfo>,
    pub rotation_policy: Option<RotationPolicy>,
}

impl KeyRecord {
    pub fn latest(&self) -> Option<&KeyVersion> {
        self.versions.last()
    }

    pub fn version(&self, v: &str) -> Option<&KeyVersion> {
        self.versions
            .iter()
            .find(|k| k.version.eq_ignore_ascii_case(v))
    }
}

/// One key version.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyVersion {
    pub version: String,
    pub kty: String,
    pub key_size: u32,
    pub key_ops: Vec<String>,
    /// PKCS#8 private key; only ever stored inside sealed frames or sealed backups.
    #[serde(with = "secret_b64")]
    pub pkcs8: Zeroizing<Vec<u8>>,
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub exportable: bool,
}

impl std::fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVersion")
            .field("version", &self.version)
            .field("kty", &self.kty)
            .field("key_size", &self.key_size)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// Key rotation policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RotationPolicy {
    pub lifetime_actions: Vec<LifetimeAction>,
    pub expiry_time: Option<String>,
    pub created: i64,
    pub updated: i64,
}

/// One lifetime action: `Rotate` or `Notify` with its trigger.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LifetimeAction {
    pub action: String,
    pub time_after_create: Option<String>,
    pub time_before_expiry: Option<String>,
}

mod secret_b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub fn serialize<S: Serializer>(v: &Zeroizing<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        let text = Zeroizing::new(STANDARD.encode(v.as_slice()));
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<Vec<u8>>, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        STANDARD
            .decode(text.as_bytes())
            .map(Zeroizing::new)
            .map_err(serde::de::Error::custom)
    }
}
