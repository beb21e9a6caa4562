//! Service configuration, filled in by the `strongroom` binary or by tests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

/// Everything the vault service needs to start.
#[derive(Clone)]
pub struct Config {
    /// Durable, sealed vault state (`root.key` + `state.log`).
    pub data_dir: PathBuf,
    /// Audit log directory (kept apart from the data, like diagnostic settings shipping logs).
    pub audit_dir: PathBuf,
    /// Management-plane listener (ARM-shaped API and `/dev/...` controls).
    pub mgmt_listen: SocketAddr,
    /// Address each vault's data-plane listener binds to (port chosen per vault).
    pub data_bind_ip: IpAddr,
    /// Host name put in `vaultUri` / key ids (must be covered by the server certificate).
    pub data_host: String,
    /// TLS configuration shared by every listener. Build it with client-certificate
    /// verification against the service CA (optional auth) to recognise trusted services.
    pub tls: Arc<rustls::ServerConfig>,
    /// Base URL of the identity service (token issuer), e.g. `https://127.0.0.1:8443`.
    pub identity_url: String,
    /// PEM of the CA that signed the identity service's certificate (and ours).
    pub ca_pem: String,
    /// Enables the `/dev/...` test controls on the management listener.
    pub dev_mode: bool,
    /// Object ids allowed to manage every vault of their tenant (in addition to principals
    /// the identity service marks as tenant admins).
    pub admin_object_ids: Vec<String>,
    /// How often the background task checks rotation policies and purge dates.
    pub scheduler_interval: std::time::Duration,
}

impl Config {
    /// A configuration with defaults for everything but the paths, TLS and identity.
    pub fn new(
        data_dir: PathBuf,
        audit_dir: PathBuf,
        tls: Arc<rustls::ServerConfig>,
        identity_url: String,
        ca_pem: String,
    ) -> Self {
        Config {
            data_dir,
            audit_dir,
            mgmt_listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            data_bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            data_host: "127.0.0.1".to_string(),
            tls,
            identity_url,
            ca_pem,
            dev_mode: false,
            admin_object_ids: Vec::new(),
            scheduler_interval: std::time::Duration::from_secs(1),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("audit_dir", &self.audit_dir)
            .field("mgmt_listen", &self.mgmt_listen)
            .field("data_bind_ip", &self.data_bind_ip)
            .field("data_host", &self.data_host)
            .field("identity_url", &self.identity_url)
            .field("dev_mode", &self.dev_mode)
            .finish_non_exhaustive()
    }
}
