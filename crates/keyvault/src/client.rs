//! Typed Rust client for both planes, used by tests and by the control plane's CMK provider.
//!
//! Errors are classified so a caller can tell apart exactly what the CMK revalidation logic
//! needs: [`ClientError::KeyDisabled`], [`ClientError::KeyNotFound`] (deleted/purged),
//! [`ClientError::Forbidden`] with [`ForbiddenKind::Rbac`]/[`ForbiddenKind::Policy`]/
//! [`ForbiddenKind::Firewall`]/[`ForbiddenKind::Connection`], [`ClientError::Unreachable`]
//! (connect error or timeout) and [`ClientError::Unauthorized`] (401).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::jwk::{b64u, b64u_decode};

/// Provides bearer tokens for a resource (`https://vault.azure.net` or
/// `https://management.azure.com/`).
#[async_trait::async_trait]
pub trait TokenProvider: Send + Sync {
    async fn token(&self, resource: &str) -> Result<String, ClientError>;
}

/// A fixed token (tests, or callers that manage refresh themselves).
pub struct StaticToken(pub String);

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticToken(..)")
    }
}

#[async_trait::async_trait]
impl TokenProvider for StaticToken {
    async fn token(&self, _resource: &str) -> Result<String, ClientError> {
        Ok(self.0.clone())
    }
}

/// Which rule refused a request with 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForbiddenKind {
    Rbac,
    Policy,
    Firewall,
    /// Public network access disabled.
    Connection,
    KeyOperation,
    KeyExpired,
    KeyNotYetValid,
    PurgeProtection,
    Other,
}

/// Client-side errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("unauthorized (401): {message}")]
    Unauthorized { message: String },
    #[error("key is disabled: {message}")]
    KeyDisabled { message: String },
    #[error("key not found: {message}")]
    KeyNotFound { message: String },
    #[error("forbidden ({kind:?}): {message}")]
    Forbidden {
        kind: ForbiddenKind,
        message: String,
    },
    #[error("not found ({code}): {message}")]
    NotFound { code: String, message: String },
    #[error("conflict ({code}): {message}")]
    Conflict { code: String, message: String },
    #[error("bad request ({code}): {message}")]
    BadRequest { code: String, message: String },
    #[error("vault unreachable: {0}")]
    Unreachable(String),
    #[error("service error {status} ({code}): {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("token acquisition failed: {0}")]
    Token(String),
    #[error("invalid response or argument: {0}")]
    Protocol(String),
}

impl ClientError {
    /// 403 by the vault firewall or because public network access is disabled.
    pub fn is_firewall(&self) -> bool {
        matches!(
            self,
            ClientError::Forbidden {
                kind: ForbiddenKind::Firewall | ForbiddenKind::Connection,
                ..
            }
        )
    }

    /// 403 because the caller lacks a role assignment or access policy.
    pub fn is_access_denied(&self) -> bool {
        matches!(
            self,
            ClientError::Forbidden {
                kind: ForbiddenKind::Rbac | ForbiddenKind::Policy,
                ..
            }
        )
    }

    fn from_response(status: u16, body: &[u8]) -> ClientError {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let code = v
            .pointer("/error/code")
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string();
        let inner = v
            .pointer("/error/innererror/code")
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string();
        let message = v
            .pointer("/error/message")
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .to_string();
        match status {
            401 => ClientError::Unauthorized { message },
            403 => {
                let kind = match inner.as_str() {
                    "KeyDisabled" => return ClientError::KeyDisabled { message },
                    "ForbiddenByRbac" => ForbiddenKind::Rbac,
                    "ForbiddenByPolicy" | "AccessDenied" => ForbiddenKind::Policy,
                    "ForbiddenByFirewall" => ForbiddenKind::Firewall,
                    "ForbiddenByConnection" => ForbiddenKind::Connection,
                    "KeyOperationForbidden" => ForbiddenKind::KeyOperation,
                    "KeyExpired" => ForbiddenKind::KeyExpired,
                    "KeyNotYetValid" => ForbiddenKind::KeyNotYetValid,
                    _ if message.contains("purge protection") => ForbiddenKind::PurgeProtection,
                    _ => ForbiddenKind::Other,
                };
                ClientError::Forbidden { kind, message }
            }
            404 if code == "KeyNotFound" => ClientError::KeyNotFound { message },
            404 => ClientError::NotFound { code, message },
            409 => ClientError::Conflict {
                code: if inner.is_empty() { code } else { inner },
                message,
            },
            400 => ClientError::BadRequest { code, message },
            s => ClientError::Api {
                status: s,
                code,
                message,
            },
        }
    }
}

fn transport(e: reqwest::Error) -> ClientError {
    if e.is_connect() || e.is_timeout() || e.is_request() {
        ClientError::Unreachable(e.to_string())
    } else {
        ClientError::Protocol(e.to_string())
    }
}

/// Public view of a key version.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyBundle {
    /// Versioned key id.
    pub kid: String,
    pub name: String,
    pub version: String,
    pub kty: String,
    pub key_ops: Vec<String>,
    pub n: Vec<u8>,
    pub e: Vec<u8>,
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
    pub recovery_level: String,
    pub tags: BTreeMap<String, String>,
}

impl KeyBundle {
    fn from_json(v: &Value) -> Result<Self, ClientError> {
        let kid = v
            .pointer("/key/kid")
            .and_then(|x| x.as_str())
            .ok_or_else(|| ClientError::Protocol("missing key.kid".into()))?
            .to_string();
        let id = KeyId::parse(&kid)?;
        let b64 = |p: &str| {
            v.pointer(p)
                .and_then(|x| x.as_str())
                .and_then(b64u_decode)
                .unwrap_or_default()
        };
        let attr = |k: &str| {
            v.pointer(&format!("/attributes/{k}"))
                .and_then(|x| x.as_i64())
        };
        Ok(KeyBundle {
            name: id.name,
            version: id.version.unwrap_or_default(),
            kid,
            kty: v
                .pointer("/key/kty")
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_string(),
            key_ops: v
                .pointer("/key/key_ops")
                .and_then(|x| x.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            n: b64("/key/n"),
            e: b64("/key/e"),
            enabled: v
                .pointer("/attributes/enabled")
                .and_then(|x| x.as_bool())
                .unwrap_or(true),
            nbf: attr("nbf"),
            exp: attr("exp"),
            created: attr("created").unwrap_or(0),
            updated: attr("updated").unwrap_or(0),
            recovery_level: v
                .pointer("/attributes/recoveryLevel")
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_string(),
            tags: v
                .get("tags")
                .and_then(|t| t.as_object())
                .map(|t| {
                    t.iter()
                        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// Modulus size in bits.
    pub fn key_size(&self) -> usize {
        self.n.len() * 8
    }
}

/// A parsed key identifier `https://host[:port]/keys/{name}[/{version}]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyId {
    /// `https://host[:port]`
    pub vault: String,
    pub name: String,
    pub version: Option<String>,
}

impl KeyId {
    pub fn parse(url: &str) -> Result<KeyId, ClientError> {
        let u = url::Url::parse(url)
            .map_err(|e| ClientError::Protocol(format!("bad key id {url}: {e}")))?;
        let host = u
            .host_str()
            .ok_or_else(|| ClientError::Protocol(format!("bad key id {url}")))?;
        let vault = match u.port() {
            Some(p) => format!("{}://{}:{}", u.scheme(), host, p),
            None => format!("{}://{}", u.scheme(), host),
        };
        let segs: Vec<&str> = u.path().trim_matches('/').split('/').collect();
        match segs.as_slice() {
            ["keys", name] => Ok(KeyId {
                vault,
                name: name.to_string(),
                version: None,
            }),
            ["keys", name, ver] => Ok(KeyId {
                vault,
                name: name.to_string(),
                version: if ver.is_empty() {
                    None
                } else {
                    Some(ver.to_string())
                },
            }),
            _ => Err(ClientError::Protocol(format!(
                "{url} is not a key identifier"
            ))),
        }
    }

    fn url(&self, suffix: &str) -> String {
        format!(
            "{}/keys/{}/{}{}",
            self.vault,
            self.name,
            self.version.as_deref().unwrap_or(""),
            suffix
        )
    }
}

/// Options for `create_key`.
#[derive(Debug, Clone)]
pub struct CreateKeyOptions {
    pub kty: String,
    pub key_size: u32,
    pub key_ops: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub tags: BTreeMap<String, String>,
}

impl Default for CreateKeyOptions {
    fn default() -> Self {
        CreateKeyOptions {
            kty: "RSA".into(),
            key_size: 2048,
            key_ops: None,
            enabled: None,
            nbf: None,
            exp: None,
            tags: BTreeMap::new(),
        }
    }
}

/// Options for `update_key` (only set fields change).
#[derive(Debug, Clone, Default)]
pub struct UpdateKeyOptions {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub key_ops: Option<Vec<String>>,
    pub tags: Option<BTreeMap<String, String>>,
}

/// Vault creation parameters (management plane).
#[derive(Debug, Clone)]
pub struct VaultSpec {
    pub location: String,
    pub tenant_id: String,
    pub sku: String,
    pub soft_delete_retention_days: u32,
    pub purge_protection: bool,
    pub rbac: bool,
    /// (objectId, key permissions)
    pub access_policies: Vec<(String, Vec<String>)>,
    pub network: NetworkRules,
}

/// Firewall settings.
#[derive(Debug, Clone)]
pub struct NetworkRules {
    pub default_action: String,
    pub bypass: String,
    pub ip_rules: Vec<String>,
    pub public_network_access: String,
}

impl Default for NetworkRules {
    fn default() -> Self {
        NetworkRules {
            default_action: "Allow".into(),
            bypass: "AzureServices".into(),
            ip_rules: Vec::new(),
            public_network_access: "Enabled".into(),
        }
    }
}

impl NetworkRules {
    fn to_json(&self) -> (Value, Value) {
        (
            json!({
                "defaultAction": self.default_action,
                "bypass": self.bypass,
                "ipRules": self.ip_rules.iter().map(|r| json!({"value": r})).collect::<Vec<_>>(),
            }),
            json!(self.public_network_access),
        )
    }
}

impl VaultSpec {
    pub fn new(tenant_id: &str) -> Self {
        VaultSpec {
            location: "local".into(),
            tenant_id: tenant_id.to_string(),
            sku: "standard".into(),
            soft_delete_retention_days: 90,
            purge_protection: false,
            rbac: true,
            access_policies: Vec::new(),
            network: NetworkRules::default(),
        }
    }

    fn to_json(&self) -> Value {
        let (acls, pna) = self.network.to_json();
        json!({
            "location": self.location,
            "properties": {
                "tenantId": self.tenant_id,
                "sku": {"family": "A", "name": self.sku},
                "enableSoftDelete": true,
                "softDeleteRetentionInDays": self.soft_delete_retention_days,
                "enablePurgeProtection": self.purge_protection,
                "enableRbacAuthorization": self.rbac,
                "accessPolicies": self.access_policies.iter().map(|(oid, keys)| json!({
                    "tenantId": self.tenant_id, "objectId": oid, "permissions": {"keys": keys}
                })).collect::<Vec<_>>(),
                "networkAcls": acls,
                "publicNetworkAccess": pna,
            }
        })
    }
}

/// One access-policy change: key permissions for a principal of the vault's tenant.
#[derive(Debug, Clone)]
pub struct AccessPolicyEntry {
    pub tenant_id: String,
    pub object_id: String,
    /// Access-policy key permission names (`get`, `wrapKey`, `unwrapKey`, ...).
    pub keys: Vec<String>,
}

/// A vault as returned by the management plane.
#[derive(Debug, Clone)]
pub struct Vault {
    pub id: String,
    pub name: String,
    /// `https://127.0.0.1:{port}/`
    pub vault_uri: String,
    pub raw: Value,
}

impl Vault {
    fn from_json(v: Value) -> Result<Vault, ClientError> {
        let s = |p: &str| v.pointer(p).and_then(|x| x.as_str()).map(str::to_string);
        Ok(Vault {
            id: s("/id").ok_or_else(|| ClientError::Protocol("vault without id".into()))?,
            name: s("/name").unwrap_or_default(),
            vault_uri: s("/properties/vaultUri").unwrap_or_default(),
            raw: v,
        })
    }

    /// `https://127.0.0.1:{port}` (no trailing slash).
    pub fn base(&self) -> &str {
        self.vault_uri.trim_end_matches('/')
    }
}

const DATA_API_VERSION: &str = "7.5";
const MGMT_API_VERSION: &str = "2025-05-01";
const VAULT_RESOURCE: &str = "https://vault.azure.net";
const MGMT_RESOURCE: &str = "https://management.azure.com/";

fn config_error(e: platform::ClientError) -> crate::Error {
    crate::Error::Config(format!("http client: {e}"))
}

/// A plain HTTPS client (aws-lc-rs rustls, keep-alive) trusting `ca_pem`, for callers that
/// speak the REST API directly (benchmarks, tools).
pub fn http_client(ca_pem: &str) -> Result<reqwest::Client, crate::Error> {
    platform::https_client(ca_pem, None, Default::default()).map_err(config_error)
}

/// Client for one caller identity.
#[derive(Clone)]
pub struct KeyVaultClient {
    http: reqwest::Client,
    tokens: Arc<dyn TokenProvider>,
}

impl std::fmt::Debug for KeyVaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyVaultClient")
    }
}

impl KeyVaultClient {
    /// A client trusting `ca_pem`.
    pub fn new(ca_pem: &str, tokens: Arc<dyn TokenProvider>) -> Result<Self, crate::Error> {
        Ok(KeyVaultClient {
            http: platform::https_client(ca_pem, None, Default::default()).map_err(config_error)?,
            tokens,
        })
    }

    /// A client presenting a TLS client certificate (e.g. the trusted-service certificate).
    pub fn with_client_cert(
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
        tokens: Arc<dyn TokenProvider>,
    ) -> Result<Self, crate::Error> {
        Ok(KeyVaultClient {
            http: platform::https_client(
                ca_pem,
                Some(&pki::CertifiedKey {
                    cert_pem: cert_pem.to_string(),
                    key_pem: zeroize::Zeroizing::new(key_pem.to_string()),
                }),
                Default::default(),
            )
            .map_err(config_error)?,
            tokens,
        })
    }

    /// A client on a caller-built reqwest client.
    pub fn with_http(http: reqwest::Client, tokens: Arc<dyn TokenProvider>) -> Self {
        KeyVaultClient { http, tokens }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        api_version: &str,
        resource: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let token = self.tokens.token(resource).await?;
        let sep = if url.contains('?') { '&' } else { '?' };
        let mut rb = self
            .http
            .request(method, format!("{url}{sep}api-version={api_version}"))
            .bearer_auth(token)
            .header("accept", "application/json");
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(transport)?;
        Ok((status, bytes.to_vec()))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        api_version: &str,
        resource: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let (status, bytes) = self.send(method, url, api_version, resource, body).await?;
        if !(200..300).contains(&status) {
            return Err(ClientError::from_response(status, &bytes));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    async fn data(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        self.call(method, url, DATA_API_VERSION, VAULT_RESOURCE, body)
            .await
    }

    async fn mgmt(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        self.call(method, url, MGMT_API_VERSION, MGMT_RESOURCE, body)
            .await
    }

    // ---------------- data plane ----------------

    /// Creates a key (or a new version of it) in the vault at `vault` (`https://host:port`).
    pub async fn create_key(
        &self,
        vault: &str,
        name: &str,
        opts: &CreateKeyOptions,
    ) -> Result<KeyBundle, ClientError> {
        let mut attrs = json!({});
        if let Some(e) = opts.enabled {
            attrs["enabled"] = json!(e);
        }
        if let Some(n) = opts.nbf {
            attrs["nbf"] = json!(n);
        }
        if let Some(x) = opts.exp {
            attrs["exp"] = json!(x);
        }
        let mut body = json!({"kty": opts.kty, "key_size": opts.key_size, "attributes": attrs, "tags": opts.tags});
        if let Some(ops) = &opts.key_ops {
            body["key_ops"] = json!(ops);
        }
        let url = format!("{}/keys/{}/create", vault.trim_end_matches('/'), name);
        KeyBundle::from_json(&self.data(reqwest::Method::POST, &url, Some(&body)).await?)
    }

    /// GET a key by id (versionless = latest).
    pub async fn get_key(&self, key_id: &str) -> Result<KeyBundle, ClientError> {
        let id = KeyId::parse(key_id)?;
        KeyBundle::from_json(&self.data(reqwest::Method::GET, &id.url(""), None).await?)
    }

    /// PATCH a key version's attributes/ops/tags.
    pub async fn update_key(
        &self,
        key_id: &str,
        opts: &UpdateKeyOptions,
    ) -> Result<KeyBundle, ClientError> {
        let id = KeyId::parse(key_id)?;
        let mut attrs = json!({});
        if let Some(e) = opts.enabled {
            attrs["enabled"] = json!(e);
        }
        if let Some(n) = opts.nbf {
            attrs["nbf"] = json!(n);
        }
        if let Some(x) = opts.exp {
            attrs["exp"] = json!(x);
        }
        let mut body = json!({"attributes": attrs});
        if let Some(ops) = &opts.key_ops {
            body["key_ops"] = json!(ops);
        }
        if let Some(t) = &opts.tags {
            body["tags"] = json!(t);
        }
        KeyBundle::from_json(
            &self
                .data(reqwest::Method::PATCH, &id.url(""), Some(&body))
                .await?,
        )
    }

    /// Soft-deletes a key; returns the DeletedKeyBundle JSON.
    pub async fn delete_key(&self, vault: &str, name: &str) -> Result<Value, ClientError> {
        let url = format!("{}/keys/{}", vault.trim_end_matches('/'), name);
        self.data(reqwest::Method::DELETE, &url, None).await
    }

    pub async fn get_deleted_key(&self, vault: &str, name: &str) -> Result<Value, ClientError> {
        let url = format!("{}/deletedkeys/{}", vault.trim_end_matches('/'), name);
        self.data(reqwest::Method::GET, &url, None).await
    }

    pub async fn recover_deleted_key(
        &self,
        vault: &str,
        name: &str,
    ) -> Result<KeyBundle, ClientError> {
        let url = format!(
            "{}/deletedkeys/{}/recover",
            vault.trim_end_matches('/'),
            name
        );
        KeyBundle::from_json(
            &self
                .data(reqwest::Method::POST, &url, Some(&json!({})))
                .await?,
        )
    }

    pub async fn purge_deleted_key(&self, vault: &str, name: &str) -> Result<(), ClientError> {
        let url = format!("{}/deletedkeys/{}", vault.trim_end_matches('/'), name);
        self.data(reqwest::Method::DELETE, &url, None)
            .await
            .map(|_| ())
    }

    /// Lists key ids (versionless), following `nextLink`.
    pub async fn list_keys(&self, vault: &str) -> Result<Vec<String>, ClientError> {
        let mut out = Vec::new();
        let mut url = format!("{}/keys?maxresults=25", vault.trim_end_matches('/'));
        loop {
            let token = self.tokens.token(VAULT_RESOURCE).await?;
            let full = if url.contains("api-version=") {
                url.clone()
            } else {
                format!("{url}&api-version={DATA_API_VERSION}")
            };
            let resp = self
                .http
                .get(&full)
                .bearer_auth(token)
                .send()
                .await
                .map_err(transport)?;
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.map_err(transport)?;
            if status != 200 {
                return Err(ClientError::from_response(status, &bytes));
            }
            let v: Value =
                serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))?;
            for item in v
                .get("value")
                .and_then(|x| x.as_array())
                .into_iter()
                .flatten()
            {
                if let Some(k) = item.get("kid").and_then(|x| x.as_str()) {
                    out.push(k.to_string());
                }
            }
            match v.get("nextLink").and_then(|x| x.as_str()) {
                Some(n) => url = n.to_string(),
                None => return Ok(out),
            }
        }
    }

    /// wrapKey; returns (versioned kid, wrapped bytes).
    pub async fn wrap_key(
        &self,
        key_id: &str,
        alg: &str,
        cek: &[u8],
    ) -> Result<(String, Vec<u8>), ClientError> {
        let id = KeyId::parse(key_id)?;
        let v = self
            .data(
                reqwest::Method::POST,
                &id.url("/wrapkey"),
                Some(&json!({"alg": alg, "value": b64u(cek)})),
            )
            .await?;
        op_result(&v)
    }

    /// unwrapKey; returns (versioned kid, plaintext key).
    pub async fn unwrap_key(
        &self,
        key_id: &str,
        alg: &str,
        wrapped: &[u8],
    ) -> Result<(String, Zeroizing<Vec<u8>>), ClientError> {
        let id = KeyId::parse(key_id)?;
        let v = self
            .data(
                reqwest::Method::POST,
                &id.url("/unwrapkey"),
                Some(&json!({"alg": alg, "value": b64u(wrapped)})),
            )
            .await?;
        let (kid, value) = op_result(&v)?;
        Ok((kid, Zeroizing::new(value)))
    }

    /// encrypt / decrypt / sign with the same shapes as wrap.
    pub async fn key_operation(
        &self,
        key_id: &str,
        op: &str,
        body: &Value,
    ) -> Result<Value, ClientError> {
        let id = KeyId::parse(key_id)?;
        self.data(
            reqwest::Method::POST,
            &id.url(&format!("/{op}")),
            Some(body),
        )
        .await
    }

    pub async fn rotate_key(&self, vault: &str, name: &str) -> Result<KeyBundle, ClientError> {
        let url = format!("{}/keys/{}/rotate", vault.trim_end_matches('/'), name);
        KeyBundle::from_json(
            &self
                .data(reqwest::Method::POST, &url, Some(&json!({})))
                .await?,
        )
    }

    pub async fn get_rotation_policy(&self, vault: &str, name: &str) -> Result<Value, ClientError> {
        let url = format!(
            "{}/keys/{}/rotationpolicy",
            vault.trim_end_matches('/'),
            name
        );
        self.data(reqwest::Method::GET, &url, None).await
    }

    /// PUT a rotation policy (`{"lifetimeActions":[...],"attributes":{"expiryTime":...}}`).
    pub async fn set_rotation_policy(
        &self,
        vault: &str,
        name: &str,
        policy: &Value,
    ) -> Result<Value, ClientError> {
        let url = format!(
            "{}/keys/{}/rotationpolicy",
            vault.trim_end_matches('/'),
            name
        );
        self.data(reqwest::Method::PUT, &url, Some(policy)).await
    }

    pub async fn backup_key(&self, vault: &str, name: &str) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}/keys/{}/backup", vault.trim_end_matches('/'), name);
        let v = self
            .data(reqwest::Method::POST, &url, Some(&json!({})))
            .await?;
        v.get("value")
            .and_then(|x| x.as_str())
            .and_then(b64u_decode)
            .ok_or_else(|| ClientError::Protocol("backup without value".into()))
    }

    pub async fn restore_key(&self, vault: &str, blob: &[u8]) -> Result<KeyBundle, ClientError> {
        let url = format!("{}/keys/restore", vault.trim_end_matches('/'));
        KeyBundle::from_json(
            &self
                .data(
                    reqwest::Method::POST,
                    &url,
                    Some(&json!({"value": b64u(blob)})),
                )
                .await?,
        )
    }

    // ---------------- management plane ----------------

    fn vault_url(mgmt: &str, sub: &str, rg: &str, name: &str) -> String {
        format!(
            "{}/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}",
            mgmt.trim_end_matches('/')
        )
    }

    pub async fn create_vault(
        &self,
        mgmt: &str,
        sub: &str,
        rg: &str,
        name: &str,
        spec: &VaultSpec,
    ) -> Result<Vault, ClientError> {
        let v = self
            .mgmt(
                reqwest::Method::PUT,
                &Self::vault_url(mgmt, sub, rg, name),
                Some(&spec.to_json()),
            )
            .await?;
        Vault::from_json(v)
    }

    /// PATCH with raw ARM `properties`.
    pub async fn update_vault(
        &self,
        mgmt: &str,
        sub: &str,
        rg: &str,
        name: &str,
        properties: &Value,
    ) -> Result<Vault, ClientError> {
        let v = self
            .mgmt(
                reqwest::Method::PATCH,
                &Self::vault_url(mgmt, sub, rg, name),
                Some(&json!({"properties": properties})),
            )
            .await?;
        Vault::from_json(v)
    }

    pub async fn set_network_rules(
        &self,
        mgmt: &str,
        sub: &str,
        rg: &str,
        name: &str,
        rules: &NetworkRules,
    ) -> Result<Vault, ClientError> {
        let (acls, pna) = rules.to_json();
        self.update_vault(
            mgmt,
            sub,
            rg,
            name,
            &json!({"networkAcls": acls, "publicNetworkAccess": pna}),
        )
        .await
    }

    pub async fn get_vault(
        &self,
        mgmt: &str,
        sub: &str,
        rg: &str,
        name: &str,
    ) -> Result<Vault, ClientError> {
        Vault::from_json(
            self.mgmt(
                reqwest::Method::GET,
                &Self::vault_url(mgmt, sub, rg, name),
                None,
            )
            .await?,
        )
    }

    pub async fn delete_vault(
        &self,
        mgmt: &str,
        sub: &str,
        rg: &str,
        name: &str,
    ) -> Result<(), ClientError> {
        self.mgmt(
            reqwest::Method::DELETE,
            &Self::vault_url(mgmt, sub, rg, name),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Recovers a soft-deleted vault (`PUT` with `createMode: recover`).
    pub async fn recover_vault(
        &self,
        mgmt: &str,
        sub: &str,
        rg: &str,
        name: &str,
        location: &str,
    ) -> Result<Vault, ClientError> {
        let body = json!({"location": location, "properties": {"createMode": "recover"}});
        Vault::from_json(
            self.mgmt(
                reqwest::Method::PUT,
                &Self::vault_url(mgmt, sub, rg, name),
                Some(&body),
            )
            .await?,
        )
    }

    pub async fn get_deleted_vault(
        &self,
        mgmt: &str,
        sub: &str,
        location: &str,
        name: &str,
    ) -> Result<Value, ClientError> {
        let url = format!(
            "{}/subscriptions/{sub}/providers/Microsoft.KeyVault/locations/{location}/deletedVaults/{name}",
            mgmt.trim_end_matches('/')
        );
        self.mgmt(reqwest::Method::GET, &url, None).await
    }

    pub async fn purge_deleted_vault(
        &self,
        mgmt: &str,
        sub: &str,
        location: &str,
        name: &str,
    ) -> Result<(), ClientError> {
        let url = format!(
            "{}/subscriptions/{sub}/providers/Microsoft.KeyVault/locations/{location}/deletedVaults/{name}/purge",
            mgmt.trim_end_matches('/')
        );
        self.mgmt(reqwest::Method::POST, &url, Some(&json!({})))
            .await
            .map(|_| ())
    }

    /// Assigns a built-in role (by role definition GUID) at vault scope; returns the
    /// assignment name (a new GUID).
    pub async fn assign_role(
        &self,
        mgmt: &str,
        vault_id: &str,
        role_definition: &str,
        principal_id: &str,
    ) -> Result<String, ClientError> {
        let name = uuid::Uuid::new_v4().to_string();
        let url = format!(
            "{}{}/providers/Microsoft.Authorization/roleAssignments/{}",
            mgmt.trim_end_matches('/'),
            vault_id,
            name
        );
        let body = json!({"properties": {"roleDefinitionId": role_definition, "principalId": principal_id}});
        self.mgmt(reqwest::Method::PUT, &url, Some(&body)).await?;
        Ok(name)
    }

    pub async fn delete_role_assignment(
        &self,
        mgmt: &str,
        vault_id: &str,
        name: &str,
    ) -> Result<(), ClientError> {
        let url = format!(
            "{}{}/providers/Microsoft.Authorization/roleAssignments/{}",
            mgmt.trim_end_matches('/'),
            vault_id,
            name
        );
        self.mgmt(reqwest::Method::DELETE, &url, None)
            .await
            .map(|_| ())
    }

    /// Adds (merges) `entry`'s key permissions to the vault's access policies.
    pub async fn add_access_policy(
        &self,
        mgmt: &str,
        sub: &str,
        rg: &str,
        vault: &str,
        entry: &AccessPolicyEntry,
    ) -> Result<(), ClientError> {
        self.access_policy_op(mgmt, sub, rg, vault, entry, "add")
            .await
    }

    /// Removes `entry`'s key permissions from the vault's access policies.
    pub async fn remove_access_policy(
        &self,
        mgmt: &str,
        sub: &str,
        rg: &str,
        vault: &str,
        entry: &AccessPolicyEntry,
    ) -> Result<(), ClientError> {
        self.access_policy_op(mgmt, sub, rg, vault, entry, "remove")
            .await
    }

    async fn access_policy_op(
        &self,
        mgmt: &str,
        sub: &str,
        rg: &str,
        vault: &str,
        entry: &AccessPolicyEntry,
        op: &str,
    ) -> Result<(), ClientError> {
        let url = format!(
            "{}/accessPolicies/{op}",
            Self::vault_url(mgmt, sub, rg, vault)
        );
        let body = json!({"properties": {"accessPolicies": [{
            "tenantId": entry.tenant_id,
            "objectId": entry.object_id,
            "permissions": {"keys": entry.keys},
        }]}});
        self.mgmt(reqwest::Method::PUT, &url, Some(&body))
            .await
            .map(|_| ())
    }

    /// Dev control: moves the clock of one vault (or all, with `None`) forward.
    pub async fn dev_shift_clock(
        &self,
        mgmt: &str,
        vault: Option<&str>,
        seconds: i64,
    ) -> Result<(), ClientError> {
        let url = match vault {
            Some(v) => format!("{}/dev/vaults/{v}/clock", mgmt.trim_end_matches('/')),
            None => format!("{}/dev/clock", mgmt.trim_end_matches('/')),
        };
        self.mgmt(
            reqwest::Method::POST,
            &url,
            Some(&json!({"seconds": seconds})),
        )
        .await
        .map(|_| ())
    }

    /// Dev control: closes (or reopens) a vault's data listener.
    pub async fn dev_set_unreachable(
        &self,
        mgmt: &str,
        vault: &str,
        on: bool,
    ) -> Result<(), ClientError> {
        let url = format!(
            "{}/dev/vaults/{vault}/unreachable",
            mgmt.trim_end_matches('/')
        );
        self.mgmt(reqwest::Method::POST, &url, Some(&json!({"enabled": on})))
            .await
            .map(|_| ())
    }

    /// Dev control: forces (or lifts) 403 ForbiddenByFirewall on a vault.
    pub async fn dev_set_firewall_deny(
        &self,
        mgmt: &str,
        vault: &str,
        on: bool,
    ) -> Result<(), ClientError> {
        let url = format!("{}/dev/vaults/{vault}/firewall", mgmt.trim_end_matches('/'));
        self.mgmt(reqwest::Method::POST, &url, Some(&json!({"deny": on})))
            .await
            .map(|_| ())
    }

    /// Dev control: runs the rotation/purge scheduler once, synchronously.
    pub async fn dev_run_scheduler(&self, mgmt: &str) -> Result<(), ClientError> {
        let url = format!("{}/dev/scheduler/run", mgmt.trim_end_matches('/'));
        self.mgmt(reqwest::Method::POST, &url, Some(&json!({})))
            .await
            .map(|_| ())
    }
}

fn op_result(v: &Value) -> Result<(String, Vec<u8>), ClientError> {
    let kid = v
        .get("kid")
        .and_then(|x| x.as_str())
        .unwrap_or("")
        .to_string();
    let value = v
        .get("value")
        .and_then(|x| x.as_str())
        .and_then(b64u_decode)
        .ok_or_else(|| ClientError::Protocol("operation result without value".into()))?;
    Ok((kid, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids() {
        let k = KeyId::parse("https://127.0.0.1:8443/keys/k1/abc").unwrap();
        assert_eq!(k.vault, "https://127.0.0.1:8443");
        assert_eq!(k.version.as_deref(), Some("abc"));
        assert_eq!(
            k.url("/wrapkey"),
            "https://127.0.0.1:8443/keys/k1/abc/wrapkey"
        );
        let k = KeyId::parse("https://127.0.0.1:8443/keys/k1").unwrap();
        assert_eq!(k.url("/wrapkey"), "https://127.0.0.1:8443/keys/k1//wrapkey");
        assert!(KeyId::parse("https://h/secrets/x").is_err());
    }

    #[test]
    fn error_classification() {
        let e = ClientError::from_response(
            403,
            br#"{"error":{"code":"Forbidden","message":"m","innererror":{"code":"KeyDisabled"}}}"#,
        );
        assert!(matches!(e, ClientError::KeyDisabled { .. }));
        let e = ClientError::from_response(403, br#"{"error":{"code":"Forbidden","message":"m","innererror":{"code":"ForbiddenByFirewall"}}}"#);
        assert!(e.is_firewall());
        let e = ClientError::from_response(403, br#"{"error":{"code":"Forbidden","message":"m","innererror":{"code":"ForbiddenByRbac"}}}"#);
        assert!(e.is_access_denied());
        let e =
            ClientError::from_response(404, br#"{"error":{"code":"KeyNotFound","message":"m"}}"#);
        assert!(matches!(e, ClientError::KeyNotFound { .. }));
        assert!(matches!(
            ClientError::from_response(401, b""),
            ClientError::Unauthorized { .. }
        ));
    }
}
