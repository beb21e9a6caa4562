//! A whole Strongroom deployment for end-to-end tests: `strongroom up` as a child
//! process on ephemeral loopback ports in a temporary directory, plus typed clients for
//! the identity service, the key vault, the control plane and the clusters.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyvault::client::{ClientError, KeyVaultClient, TokenProvider};
use serde_json::{Value, json};

pub const SUB: &str = "00000000-0000-0000-0000-000000000001";
pub const RG: &str = "e2e";
/// Built-in role "Key Vault Crypto Service Encryption User".
pub const CSEU: &str = "e147488a-f6f5-4113-8e2d-b22465e65bf6";
pub const ADMIN_PASSWORD: &str = "E2e!Passw0rd";

/// Client-credentials tokens of one service principal, per resource.
pub struct SpTokens {
    pub http: reqwest::Client,
    pub identity_url: String,
    pub creds: identity::Credentials,
}

#[async_trait::async_trait]
impl TokenProvider for SpTokens {
    async fn token(&self, resource: &str) -> Result<String, ClientError> {
        let scope = format!("{}/.default", resource.trim_end_matches('/'));
        identity::client::client_credentials_token(
            &self.http,
            &self.identity_url,
            &self.creds.tenant_id,
            &self.creds.client_id,
            &self.creds.client_secret,
            &scope,
        )
        .await
        .map(|t| t.token.to_string())
        .map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

pub struct Deployment {
    child: Child,
    /// `up`'s arguments after `--data-dir <dir>` and its extra environment, for `restart`.
    up_args: Vec<String>,
    up_env: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
    pub endpoints: Value,
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub admin: identity::Credentials,
    pub http: reqwest::Client,
    pub vault: KeyVaultClient,
    pub identity: identity::client::AdminClient,
    pub tokens: Arc<SpTokens>,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(10));
    }
}

fn spawn_up(dir: &Path, args: &[String], env: &[(String, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .arg("up")
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start strongroom up")
}

/// Waits for `up` to write `endpoints.json` (it does so once every service is serving).
async fn wait_for_endpoints(dir: &Path) -> Value {
    let endpoints_path = dir.join("endpoints.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(bytes) = std::fs::read(&endpoints_path)
            && let Ok(v) = serde_json::from_slice(&bytes)
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "strongroom up did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Deployment {
    /// Starts `strongroom up --dev` with the given revalidation interval and waits for
    /// its endpoints file.
    pub async fn start(interval: &str, extra: &[&str]) -> Deployment {
        Self::start_env(interval, extra, &[]).await
    }

    /// Same, with extra environment variables for `up` and its nodes (e.g. `RUST_LOG`).
    pub async fn start_env(interval: &str, extra: &[&str], env: &[(&str, &str)]) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let mut up_args = vec![
            "--dev".to_string(),
            "--revalidation-interval".to_string(),
            interval.to_string(),
        ];
        up_args.extend(extra.iter().map(|s| s.to_string()));
        let up_env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let child = spawn_up(dir.path(), &up_args, &up_env);
        let endpoints = wait_for_endpoints(dir.path()).await;
        let ca_path = PathBuf::from(endpoints["caPath"].as_str().unwrap());
        let ca_pem = std::fs::read_to_string(&ca_path).unwrap();
        let admin = identity::Credentials::load(Path::new(
            endpoints["adminCredentialsPath"].as_str().unwrap(),
        ))
        .unwrap();
        let http =
            platform::https_client(&ca_pem, None, platform::ClientOptions::default()).unwrap();
        let identity_url = endpoints["identityUrl"].as_str().unwrap().to_string();
        let tokens = Arc::new(SpTokens {
            http: http.clone(),
            identity_url: identity_url.clone(),
            creds: admin.clone(),
        });
        let vault = KeyVaultClient::new(&ca_pem, tokens.clone()).unwrap();
        let identity = identity::client::AdminClient::new(&identity_url, &ca_pem, &admin).unwrap();
        Deployment {
            child,
            up_args,
            up_env,
            dir,
            endpoints,
            ca_pem,
            ca_path,
            admin,
            http,
            vault,
            identity,
            tokens,
        }
    }

    /// Stops `up` (SIGTERM, then waits for it to exit) and leaves the data directory.
    pub fn stop(&mut self) {
        self.terminate(Duration::from_secs(20));
    }

    /// SIGTERM lets `up` stop its nodes; SIGKILL if it has not exited within `grace`.
    fn terminate(&mut self, grace: Duration) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts `up` again on the same data directory (after [`Deployment::stop`]) and waits
    /// for it to write its endpoints again. The services may come back on other ports.
    pub async fn restart(&mut self) {
        let _ = std::fs::remove_file(self.dir.path().join("endpoints.json"));
        self.child = spawn_up(self.dir.path(), &self.up_args, &self.up_env);
        self.endpoints = wait_for_endpoints(self.dir.path()).await;
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn mgmt_url(&self) -> &str {
        self.endpoints["keyvaultManagementUrl"].as_str().unwrap()
    }

    pub fn control_url(&self) -> &str {
        self.endpoints["controlUrl"].as_str().unwrap()
    }

    pub fn tenant(&self) -> &str {
        &self.admin.tenant_id
    }

    async fn mgmt_token(&self) -> String {
        self.tokens
            .token("https://management.azure.com/")
            .await
            .unwrap()
    }

    pub fn cluster_url(&self, name: &str) -> String {
        format!(
            "{}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/mongoClusters/{name}?api-version=2025-07-01-preview",
            self.control_url()
        )
    }

    /// Sends a management request; returns (status, body).
    pub async fn control(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(self.mgmt_token().await);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap()
            },
        )
    }

    pub async fn put_cluster(&self, name: &str, body: Value) -> (u16, Value) {
        self.control(reqwest::Method::PUT, &self.cluster_url(name), Some(body))
            .await
    }

    pub async fn get_cluster_in(&self, rg: &str, name: &str) -> Value {
        let url = self.cluster_url(name).replace(
            &format!("/resourceGroups/{RG}/"),
            &format!("/resourceGroups/{rg}/"),
        );
        let (status, body) = self.control(reqwest::Method::GET, &url, None).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn get_cluster(&self, name: &str) -> Value {
        let (status, body) = self
            .control(reqwest::Method::GET, &self.cluster_url(name), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Polls until the cluster's status is `status`; returns the view and how long it took.
    pub async fn wait_status(
        &self,
        name: &str,
        status: &str,
        timeout: Duration,
    ) -> (Value, Duration) {
        let start = Instant::now();
        loop {
            let view = self.get_cluster(name).await;
            if view["properties"]["clusterStatus"] == status {
                return (view, start.elapsed());
            }
            assert!(
                start.elapsed() < timeout,
                "cluster {name} not {status} after {timeout:?}: {view:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until the cluster's backup can restore to `at` (its `latestRestoreTime` has
    /// reached it); returns the view. Fails after `timeout` with the last view.
    pub async fn wait_restorable(
        &self,
        name: &str,
        at: time::OffsetDateTime,
        timeout: Duration,
    ) -> Value {
        let start = Instant::now();
        loop {
            let view = self.get_cluster(name).await;
            let latest = view["properties"]["backup"]["latestRestoreTime"]
                .as_str()
                .and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                });
            if latest.is_some_and(|t| t >= at) {
                return view;
            }
            assert!(
                start.elapsed() < timeout,
                "cluster {name} not restorable to {at} after {timeout:?}: {view:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A MongoDB client for a cluster (TLS with the dev CA, SCRAM-SHA-256).
    pub async fn mongo(&self, cluster: &Value, user: &str, password: &str) -> mongodb::Client {
        self.mongo_with_timeout(cluster, user, password, Duration::from_secs(3))
            .await
    }

    /// Same, giving up server selection after `timeout` (a refused cluster fails fast).
    pub async fn mongo_with_timeout(
        &self,
        cluster: &Value,
        user: &str,
        password: &str,
        timeout: Duration,
    ) -> mongodb::Client {
        let cs = cluster["properties"]["connectionString"]
            .as_str()
            .unwrap()
            .replace("<password>", password)
            .replace(&format!("{}:", "clusteradmin"), &format!("{user}:"));
        let mut options = mongodb::options::ClientOptions::parse(&cs).await.unwrap();
        options.server_selection_timeout = Some(timeout);
        options.connect_timeout = Some(timeout);
        mongodb::Client::with_options(options).unwrap()
    }

    /// A vault with RBAC and purge protection, created by the administrator.
    pub async fn create_vault(&self, name: &str) -> keyvault::client::Vault {
        let mut spec = keyvault::client::VaultSpec::new(self.tenant());
        spec.purge_protection = true;
        spec.soft_delete_retention_days = 7;
        self.vault
            .create_vault(self.mgmt_url(), SUB, RG, name, &spec)
            .await
            .unwrap()
    }

    pub async fn create_identity(&self, name: &str) -> identity::client::ManagedIdentityInfo {
        self.identity
            .create_managed_identity(SUB, RG, name, "local")
            .await
            .unwrap()
    }

    /// Grants the administrator key management on a vault (keys are created as it).
    pub async fn grant_admin(&self, vault: &keyvault::client::Vault) {
        self.vault
            .assign_role(
                self.mgmt_url(),
                &vault.id,
                "00482a5a-887f-4fb3-b363-3b7fe8e74483",
                &self.admin.object_id,
            )
            .await
            .unwrap();
    }
}

/// Runs the `strongroom` CLI against a deployment; returns (success, stdout + stderr).
pub fn cli(d: &Deployment, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(args)
        .arg("--data-dir")
        .arg(d.dir.path())
        .arg("-g")
        .arg(RG)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Children of a process (the cluster nodes of `strongroom up`).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// The request body of a CMK cluster.
pub fn cmk_cluster(key_url: &str, identity_id: &str) -> Value {
    json!({
        "location": "local",
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {identity_id: {}}},
        "properties": {
            "administrator": {"userName": "clusteradmin", "password": ADMIN_PASSWORD},
            "encryption": {"customerManagedKeyEncryption": {
                "keyEncryptionKeyIdentity": {"identityType": "UserAssignedIdentity", "userAssignedIdentityResourceId": identity_id},
                "keyEncryptionKeyUrl": key_url
            }}
        }
    })
}

pub fn smk_cluster() -> Value {
    json!({"location": "local", "properties": {"administrator": {"userName": "clusteradmin", "password": ADMIN_PASSWORD}}})
}
