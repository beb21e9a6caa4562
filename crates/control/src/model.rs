//! The management API's resource shapes, mirroring `Microsoft.DocumentDB/mongoClusters`.
//!
//! Field names follow the ARM contract (camelCase, `properties`, `identity`), so requests
//! written for the managed service need only a different endpoint. Strongroom adds
//! read-only blocks: `properties.keyStatus` says which key version protects the cluster
//! and, when the cluster is Inaccessible, why; `properties.nodeHealth` says whether its
//! node process crashed and is being restarted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const RESOURCE_TYPE: &str = "Microsoft.DocumentDB/mongoClusters";
pub const IDENTITY_TYPE_USER_ASSIGNED: &str = "UserAssigned";
pub const KEK_IDENTITY_TYPE: &str = "UserAssignedIdentity";

/// A cluster as the API shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MongoCluster {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<ManagedServiceIdentity>,
    #[serde(default)]
    pub properties: Properties,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedServiceIdentity {
    #[serde(rename = "type")]
    pub identity_type: String,
    #[serde(default)]
    pub user_assigned_identities: BTreeMap<String, UserAssignedIdentity>,
}

/// The value of an entry in `userAssignedIdentities`: empty in requests, filled by the
/// service in responses.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserAssignedIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Properties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_parameters: Option<RestoreParameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub administrator: Option<Administrator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharding: Option<Sharding>,
    /// Read-only from here on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_string: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_status: Option<KeyStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupProperties>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_health: Option<NodeHealth>,
    /// Strongroom: why the cluster refuses writes after a storage failure (a full disk,
    /// an I/O error) until its node reopens the engine; absent while writes work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreParameters {
    #[serde(
        default,
        rename = "pointInTimeUTC",
        skip_serializing_if = "Option::is_none"
    )]
    pub point_in_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_resource_id: Option<String>,
}

#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Administrator {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// Write-only: accepted in requests, never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl std::fmt::Debug for Administrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Administrator")
            .field("user_name", &self.user_name)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Encryption {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_managed_key_encryption: Option<CustomerManagedKeyEncryption>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CustomerManagedKeyEncryption {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_encryption_key_identity: Option<KeyEncryptionKeyIdentity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_encryption_key_url: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeyEncryptionKeyIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_assigned_identity_resource_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Sharding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_count: Option<u32>,
}

/// Which key protects the cluster, and whether the service can use it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    /// "ServiceManaged" or "CustomerManaged".
    pub mode: String,
    /// "Valid" or "Revoked" (Inaccessible) or "Pending" (not yet validated).
    pub state: String,
    /// The versioned key id wrapping the root key (CMK only: SMK keys are the service's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_key_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_validated: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest_restore_time: Option<String>,
    /// Strongroom: the newest instant a restore can reach now (WAL archived up to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_restore_time: Option<String>,
    /// Strongroom: why the last backup cycle failed, while it keeps failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Strongroom: the cluster's node process — whether it runs as it should, and its crashes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeHealth {
    /// "Healthy", or "Restarting" from a crash until the new node serves (open, or
    /// refusing clients with the key's reason when the key is not usable).
    pub state: String,
    /// Crashes since the control plane started.
    pub crash_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_crash: Option<NodeCrash>,
    /// While a restart waits out its backoff: when it starts (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_restart_time: Option<String>,
}

/// One crash of a node process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeCrash {
    /// RFC 3339.
    pub time: String,
    /// The signal's name (`SIGKILL`, `SIGSEGV`, `SIGABRT`, …) when a signal ended the
    /// process, `ExitCode` when it exited on its own, `StartFailed` when a new process
    /// could not be started, `Unknown` otherwise.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub message: String,
}
