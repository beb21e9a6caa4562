//! Where `strongroom up` keeps things inside its data directory, and the endpoints file
//! that tools (the CLI, tests) read to find the services.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The data directory's layout.
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }
    pub fn ca(&self) -> PathBuf {
        self.root.join("ca")
    }
    pub fn identity(&self) -> PathBuf {
        self.root.join("identity")
    }
    pub fn keyvault(&self) -> PathBuf {
        self.root.join("keyvault")
    }
    pub fn audit(&self) -> PathBuf {
        self.root.join("audit")
    }
    /// The control plane's encrypted security audit log (the vault's own audit log is
    /// `audit/`).
    pub fn security_audit(&self) -> PathBuf {
        self.root.join("security-audit")
    }
    pub fn control(&self) -> PathBuf {
        self.root.join("control")
    }
    pub fn endpoints(&self) -> PathBuf {
        self.root.join("endpoints.json")
    }
    /// The administrator service principal's credentials (mode 0600).
    pub fn admin_credentials(&self) -> PathBuf {
        self.root.join("admin-credentials.json")
    }
    /// The default cluster's administrator password (mode 0600).
    pub fn cluster_password(&self) -> PathBuf {
        self.root.join("default-cluster-password")
    }
}

/// Everything a client needs to reach the services `up` started.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    pub identity_url: String,
    pub keyvault_management_url: String,
    pub control_url: String,
    pub ca_path: PathBuf,
    pub tenant_id: String,
    pub subscription_id: String,
    pub admin_credentials_path: PathBuf,
    pub default_cluster: Option<String>,
    pub connection_string: Option<String>,
}

impl Endpoints {
    pub fn load(path: &Path) -> anyhow::Result<Endpoints> {
        let bytes = std::fs::read(path).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e} (is `strongroom up` running with this --data-dir?)",
                path.display()
            )
        })?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}
