//! The control plane's durable record of every cluster, sealed under its master key.
//!
//! It holds what must survive a restart: each cluster's resource shape, its encryption
//! mode (fixed), the identities attached to it, its port, and the per-resource secret the
//! cluster presents to the managed-identity endpoint. The wrapped root DEK is NOT here:
//! it lives in the cluster's own directory (`envelope::WrappedKeyStore`), so deleting a
//! cluster's directory shreds it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::model::{KeyStatus, RestoreParameters};
use crate::validate::EncryptionMode;

const MAGIC: &[u8] = b"SRCTL1";

/// An identity attached to a cluster, as the identity service described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachedIdentity {
    pub principal_id: String,
    pub client_id: String,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRecord {
    pub name: String,
    pub resource_id: String,
    pub location: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub mode: EncryptionMode,
    /// For SMK clusters: the service key (version-less) that wraps this cluster's DEK.
    #[serde(default)]
    pub service_key_url: Option<String>,
    #[serde(default)]
    pub identities: BTreeMap<String, AttachedIdentity>,
    pub admin_user: Option<String>,
    pub create_mode: String,
    #[serde(default)]
    pub restore_parameters: Option<RestoreParameters>,
    pub port: u16,
    pub created_at: String,
    /// Presented to the managed-identity endpoint to get this cluster's identity tokens.
    pub resource_secret: Option<Zeroizing<String>>,
    /// The last known key status (shown by GET; refreshed by every revalidation).
    pub key_status: KeyStatus,
    /// The cluster's folder under the backup root (unique per creation, so a cluster
    /// re-created under the same name never mixes with the old one's backups).
    #[serde(default)]
    pub backup_id: Option<String>,
    /// The newest backup catalog generation reported: an older catalog is a rollback.
    #[serde(default)]
    pub backup_generation: u64,
}

impl std::fmt::Debug for ClusterRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRecord")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

#[derive(Default, Serialize, Deserialize)]
pub struct State {
    pub clusters: BTreeMap<String, ClusterRecord>,
}

/// The sealed state file.
pub struct Registry {
    file: sealed::SealedJson<State>,
}

impl Registry {
    pub fn open(dir: &Path, master: &sealed::MasterKey) -> Registry {
        Registry {
            file: sealed::SealedJson::new(dir.join("clusters.sealed"), master, MAGIC),
        }
    }

    pub fn load(&self) -> Result<State, sealed::Error> {
        Ok(self.file.load()?.unwrap_or_default())
    }

    pub fn store(&self, state: &State) -> Result<(), sealed::Error> {
        self.file.store(state)
    }
}
