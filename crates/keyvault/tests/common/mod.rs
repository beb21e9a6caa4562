//! Shared harness: a dev CA, a real identity server and a real key vault server on ephemeral
//! loopback ports, temp dirs, and token providers backed by real client-credentials grants.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use identity::Credentials;
use identity::client::AdminClient;
use keyvault::client::{ClientError, KeyVaultClient, TokenProvider, Vault, VaultSpec};
use parking_lot::Mutex;
use tempfile::TempDir;

pub const SUB: &str = "00000000-0000-0000-0000-0000000000aa";
pub const RG: &str = "rg-kv";
pub const LOCATION: &str = "local";

/// Client-credentials tokens from the identity service, cached per resource.
pub struct SpTokens {
    http: reqwest::Client,
    base: String,
    creds: Credentials,
    cache: Mutex<HashMap<String, (String, i64)>>,
}

#[async_trait::async_trait]
impl TokenProvider for SpTokens {
    async fn token(&self, resource: &str) -> Result<String, ClientError> {
        let now = keyvault::clock::Clock::wall();
        if let Some((t, exp)) = self.cache.lock().get(resource)
            && *exp - now > 300
        {
            return Ok(t.clone());
        }
        let scope = format!("{}/.default", resource.trim_end_matches('/'));
        let t = identity::client::client_credentials_token(
            &self.http,
            &self.base,
            &self.creds.tenant_id,
            &self.creds.client_id,
            &self.creds.client_secret,
            &scope,
        )
        .await
        .map_err(|e| ClientError::Token(e.to_string()))?;
        self.cache
            .lock()
            .insert(resource.to_string(), (t.token.to_string(), t.expires_on));
        Ok(t.token.to_string())
    }
}

pub struct Env {
    pub root: TempDir,
    pub ca: pki::DevCa,
    pub ca_pem: String,
    pub identity: Option<identity::Server>,
    pub id_base: String,
    pub tenant: String,
    pub admin_creds: Credentials,
    /// Bootstrap's first-party principal (its tokens carry `xms_trusted_svc`, which the
    /// vault's firewall ignores: trust comes from the client certificate only).
    pub control_creds: Credentials,
    pub admin: AdminClient,
    pub kv: Option<keyvault::Server>,
    pub kv_cfg: keyvault::Config,
    pub http: reqwest::Client,
}

impl Env {
    pub async fn start() -> Env {
        let root = tempfile::tempdir().unwrap();
        let ca = pki::DevCa::load_or_create(&root.path().join("ca")).unwrap();
        let ca_pem = ca.ca_pem().to_string();
        let server_ck = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
        let id_tls = pki::server_config(&server_ck, None).unwrap();
        let identity = identity::Server::start(identity::Config {
            data_dir: root.path().join("identity"),
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: id_tls,
            public_url: None,
            token_lifetime: Duration::from_secs(3600),
        })
        .await
        .unwrap();
        let boot = identity.bootstrap().unwrap();
        let admin_creds = boot.admin.clone().unwrap();
        let control_creds = boot.control_plane.clone().unwrap();
        let id_base = identity.base_url();
        let admin = AdminClient::new(&id_base, &ca_pem, &admin_creds).unwrap();
        let kv_tls = pki::server_config(&server_ck, Some(&ca_pem)).unwrap();
        let mut kv_cfg = keyvault::Config::new(
            root.path().join("kv-data"),
            root.path().join("kv-audit"),
            kv_tls,
            id_base.clone(),
            ca_pem.clone(),
        );
        kv_cfg.dev_mode = true;
        kv_cfg.admin_object_ids = vec![admin_creds.object_id.clone()];
        kv_cfg.scheduler_interval = Duration::from_millis(200);
        let kv = keyvault::Server::start(kv_cfg.clone()).await.unwrap();
        let http =
            platform::https_client(&ca_pem, None, platform::ClientOptions::default()).unwrap();
        Env {
            tenant: boot.tenant_id.clone(),
            root,
            ca,
            ca_pem,
            identity: Some(identity),
            id_base,
            admin_creds,
            control_creds,
            admin,
            kv: Some(kv),
            kv_cfg,
            http,
        }
    }

    pub fn kv(&self) -> &keyvault::Server {
        self.kv.as_ref().unwrap()
    }

    pub fn mgmt(&self) -> String {
        self.kv().mgmt_url()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.kv_cfg.data_dir.clone()
    }

    pub fn audit_dir(&self) -> PathBuf {
        self.kv_cfg.audit_dir.clone()
    }

    pub fn tokens(&self, creds: &Credentials) -> Arc<SpTokens> {
        Arc::new(SpTokens {
            http: self.http.clone(),
            base: self.id_base.clone(),
            creds: creds.clone(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn client(&self, creds: &Credentials) -> KeyVaultClient {
        KeyVaultClient::new(&self.ca_pem, self.tokens(creds)).unwrap()
    }

    pub fn admin_kv(&self) -> KeyVaultClient {
        self.client(&self.admin_creds)
    }

    /// A new (non-admin) service principal in the tenant.
    pub async fn principal(&self, name: &str) -> Credentials {
        self.admin
            .create_service_principal(name, false, false)
            .await
            .unwrap()
    }

    /// A raw bearer token for `creds` and `resource`.
    pub async fn token(&self, creds: &Credentials, resource: &str) -> String {
        self.tokens(creds).token(resource).await.unwrap()
    }

    pub async fn create_vault(&self, name: &str, spec: &VaultSpec) -> Vault {
        self.admin_kv()
            .create_vault(&self.mgmt(), SUB, RG, name, spec)
            .await
            .unwrap()
    }

    pub fn spec(&self) -> VaultSpec {
        let mut s = VaultSpec::new(&self.tenant);
        s.location = LOCATION.into();
        s
    }

    pub async fn assign(&self, vault: &Vault, role: &str, principal: &str) {
        self.admin_kv()
            .assign_role(&self.mgmt(), &vault.id, role, principal)
            .await
            .unwrap();
    }

    /// Stops and restarts the key vault service on the same directories.
    pub async fn restart_kv(&mut self) {
        let kv = self.kv.take().unwrap();
        let mgmt = kv.mgmt_addr();
        kv.shutdown().await;
        let mut cfg = self.kv_cfg.clone();
        cfg.mgmt_listen = mgmt;
        self.kv = Some(start_with_retry(cfg).await);
    }

    pub async fn stop_kv(&mut self) -> SocketAddr {
        let kv = self.kv.take().unwrap();
        let mgmt = kv.mgmt_addr();
        kv.shutdown().await;
        mgmt
    }

    pub async fn shutdown(mut self) {
        if let Some(kv) = self.kv.take() {
            kv.shutdown().await;
        }
        if let Some(id) = self.identity.take() {
            id.shutdown().await;
        }
    }
}

/// Restart binds the same ports; a closing listener may need a moment to release them.
pub async fn start_with_retry(cfg: keyvault::Config) -> keyvault::Server {
    let mut last = None;
    for _ in 0..50 {
        match keyvault::Server::start(cfg.clone()).await {
            Ok(s) => return s,
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("key vault did not restart: {last:?}");
}

/// Polls `f` until it returns true (or panics after `secs`).
pub async fn wait_until<F, Fut>(secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not met within {secs}s");
}
