//! Data plane: the Azure Key Vault keys REST API for one vault (served on the vault's own
//! listener, so key ids are `https://127.0.0.1:{port}/keys/{name}/{version}`).
//!
//! Request pipeline (order matters, see the reference §6.1): route → api-version →
//! authentication (401 challenge BEFORE the body is read) → network rules → authorization
//! (RBAC or access policy) → body → object lookup / key state → operation.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::api_error::{ApiError, caller_desc};
use crate::audit::{AuditEvent, now_rfc3339};
use crate::auth::AuthError;
use crate::authz::{self, Denied, KeyPerm};
use crate::crypto::{self, EncAlg, LoadedKey, SigAlg};
use crate::duration::{checked_after, checked_before, parse_iso8601, representable};
use platform::Peer;

use crate::http_util::{
    Body, Handler, ReqBody, bearer, empty_response, error_response, json_response, parse_query,
    query_get, read_body,
};
use crate::jwk::{JsonWebKey, KeyTransferBlob, b64u, b64u_decode};
use crate::model::{
    DeletedInfo, KeyRecord, KeyVersion, LifetimeAction, RotationPolicy, VaultRecord,
};
use crate::root_key::RootKeyExt;
use crate::server::Ctx;
use crate::state::VaultEntry;

/// api-versions accepted on the data plane (same wire format for keys).
pub const API_VERSIONS: &[&str] = &[
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "2025-07-01",
];
/// Audience of data-plane tokens.
pub const VAULT_RESOURCE: &str = "https://vault.azure.net";
const DEFAULT_KEY_OPS: &[&str] = &[
    "encrypt",
    "decrypt",
    "sign",
    "verify",
    "wrapKey",
    "unwrapKey",
];
const VALID_KEY_OPS: &[&str] = &[
    "encrypt",
    "decrypt",
    "sign",
    "verify",
    "wrapKey",
    "unwrapKey",
    "import",
    "export",
];
const BACKUP_MAGIC: &[u8] = b"StrongroomKeyVaultKeyBackupV1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CryptoOp {
    Encrypt,
    Decrypt,
    Sign,
    Verify,
    Wrap,
    Unwrap,
}

impl CryptoOp {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "encrypt" => Some(CryptoOp::Encrypt),
            "decrypt" => Some(CryptoOp::Decrypt),
            "sign" => Some(CryptoOp::Sign),
            "verify" => Some(CryptoOp::Verify),
            "wrapkey" => Some(CryptoOp::Wrap),
            "unwrapkey" => Some(CryptoOp::Unwrap),
            _ => None,
        }
    }

    /// Name in `key_ops` and in error messages.
    fn key_op(self) -> &'static str {
        match self {
            CryptoOp::Encrypt => "encrypt",
            CryptoOp::Decrypt => "decrypt",
            CryptoOp::Sign => "sign",
            CryptoOp::Verify => "verify",
            CryptoOp::Wrap => "wrapKey",
            CryptoOp::Unwrap => "unwrapKey",
        }
    }

    fn perm(self) -> KeyPerm {
        match self {
            CryptoOp::Encrypt => KeyPerm::Encrypt,
            CryptoOp::Decrypt => KeyPerm::Decrypt,
            CryptoOp::Sign => KeyPerm::Sign,
            CryptoOp::Verify => KeyPerm::Verify,
            CryptoOp::Wrap => KeyPerm::WrapKey,
            CryptoOp::Unwrap => KeyPerm::UnwrapKey,
        }
    }

    fn audit_name(self) -> &'static str {
        match self {
            CryptoOp::Encrypt => "KeyEncrypt",
            CryptoOp::Decrypt => "KeyDecrypt",
            CryptoOp::Sign => "KeySign",
            CryptoOp::Verify => "KeyVerify",
            CryptoOp::Wrap => "KeyWrap",
            CryptoOp::Unwrap => "KeyUnwrap",
        }
    }

    /// Operations refused outside the nbf/exp window (decrypt/unwrap/verify stay allowed).
    fn time_bound(self) -> bool {
        matches!(self, CryptoOp::Encrypt | CryptoOp::Sign | CryptoOp::Wrap)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    ListKeys,
    Restore,
    Import(String),
    Delete(String),
    Get(String, Option<String>),
    Update(String, Option<String>),
    Create(String),
    Rotate(String),
    Backup(String),
    ListVersions(String),
    GetPolicy(String),
    SetPolicy(String),
    Crypto(String, Option<String>, CryptoOp),
    ListDeleted,
    GetDeleted(String),
    Purge(String),
    Recover(String),
}

impl Route {
    fn perm(&self) -> KeyPerm {
        match self {
            Route::ListKeys | Route::ListVersions(_) | Route::ListDeleted => KeyPerm::List,
            Route::Restore => KeyPerm::Restore,
            Route::Import(_) => KeyPerm::Import,
            Route::Delete(_) => KeyPerm::Delete,
            Route::Get(..) | Route::GetDeleted(_) => KeyPerm::Get,
            Route::Update(..) => KeyPerm::Update,
            Route::Create(_) => KeyPerm::Create,
            Route::Rotate(_) => KeyPerm::Rotate,
            Route::Backup(_) => KeyPerm::Backup,
            Route::GetPolicy(_) => KeyPerm::GetRotationPolicy,
            Route::SetPolicy(_) => KeyPerm::SetRotationPolicy,
            Route::Crypto(_, _, op) => op.perm(),
            Route::Purge(_) => KeyPerm::Purge,
            Route::Recover(_) => KeyPerm::Recover,
        }
    }

    fn audit_name(&self) -> &'static str {
        match self {
            Route::ListKeys => "KeyList",
            Route::Restore => "KeyRestore",
            Route::Import(_) => "KeyImport",
            Route::Delete(_) => "KeyDelete",
            Route::Get(..) => "KeyGet",
            Route::Update(..) => "KeyUpdate",
            Route::Create(_) => "KeyCreate",
            Route::Rotate(_) => "KeyRotate",
            Route::Backup(_) => "KeyBackup",
            Route::ListVersions(_) => "KeyListVersions",
            Route::GetPolicy(_) => "KeyRotationPolicyGet",
            Route::SetPolicy(_) => "KeyRotationPolicyUpdate",
            Route::Crypto(_, _, op) => op.audit_name(),
            Route::ListDeleted => "KeyListDeleted",
            Route::GetDeleted(_) => "KeyGetDeleted",
            Route::Purge(_) => "KeyPurge",
            Route::Recover(_) => "KeyRecover",
        }
    }

    fn key_name(&self) -> Option<&str> {
        match self {
            Route::ListKeys | Route::Restore | Route::ListDeleted => None,
            Route::Import(n)
            | Route::Delete(n)
            | Route::Get(n, _)
            | Route::Update(n, _)
            | Route::Create(n)
            | Route::Rotate(n)
            | Route::Backup(n)
            | Route::ListVersions(n)
            | Route::GetPolicy(n)
            | Route::SetPolicy(n)
            | Route::Crypto(n, _, _)
            | Route::GetDeleted(n)
            | Route::Purge(n)
            | Route::Recover(n) => Some(n),
        }
    }
}

fn valid_key_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 127 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn version_opt(v: &str) -> Option<String> {
    if v.is_empty() {
        None
    } else {
        Some(v.to_string())
    }
}

/// Maps method + path to a route. Empty version segments (`/keys/n/`, `/keys/n//wrapkey`)
/// mean "latest", as the SDKs send them.
fn route(method: &Method, path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let name_ok = |n: &str| -> Result<String, ApiError> {
        if valid_key_name(n) {
            Ok(n.to_string())
        } else {
            Err(ApiError::bad_parameter(format!(
                "The key name '{n}' is invalid. Key names may only contain alphanumeric characters and dashes (1-127 characters)."
            )))
        }
    };
    let m = method.clone();
    let r = match (
        segs.first().map(|s| s.to_ascii_lowercase()).as_deref(),
        &segs[1..],
    ) {
        (Some("keys"), []) | (Some("keys"), [""]) if m == Method::GET => Route::ListKeys,
        (Some("keys"), ["restore"]) if m == Method::POST => Route::Restore,
        (Some("keys"), [n]) => match m {
            Method::PUT => Route::Import(name_ok(n)?),
            Method::DELETE => Route::Delete(name_ok(n)?),
            Method::GET => Route::Get(name_ok(n)?, None),
            Method::PATCH => Route::Update(name_ok(n)?, None),
            _ => return Err(ApiError::method_not_allowed()),
        },
        (Some("keys"), [n, second]) => {
            let lower = second.to_ascii_lowercase();
            match (m, lower.as_str()) {
                (Method::POST, "create") => Route::Create(name_ok(n)?),
                (Method::POST, "rotate") => Route::Rotate(name_ok(n)?),
                (Method::POST, "backup") => Route::Backup(name_ok(n)?),
                (Method::GET, "versions") => Route::ListVersions(name_ok(n)?),
                (Method::GET, "rotationpolicy") => Route::GetPolicy(name_ok(n)?),
                (Method::PUT, "rotationpolicy") => Route::SetPolicy(name_ok(n)?),
                (Method::GET, _) => Route::Get(name_ok(n)?, version_opt(second)),
                (Method::PATCH, _) => Route::Update(name_ok(n)?, version_opt(second)),
                (Method::DELETE, "") => Route::Delete(name_ok(n)?),
                (Method::PUT, "") => Route::Import(name_ok(n)?),
                _ => return Err(ApiError::not_found_route()),
            }
        }
        (Some("keys"), [n, ver, op]) if m == Method::POST => match CryptoOp::parse(op) {
            Some(op) => Route::Crypto(name_ok(n)?, version_opt(ver), op),
            None => return Err(ApiError::not_found_route()),
        },
        (Some("deletedkeys"), []) | (Some("deletedkeys"), [""]) if m == Method::GET => {
            Route::ListDeleted
        }
        (Some("deletedkeys"), [n]) => match m {
            Method::GET => Route::GetDeleted(name_ok(n)?),
            Method::DELETE => Route::Purge(name_ok(n)?),
            _ => return Err(ApiError::method_not_allowed()),
        },
        (Some("deletedkeys"), [n, rec])
            if m == Method::POST && rec.eq_ignore_ascii_case("recover") =>
        {
            Route::Recover(name_ok(n)?)
        }
        _ => return Err(ApiError::not_found_route()),
    };
    Ok(r)
}

/// Handler bound to one vault's listener.
pub struct DataHandler {
    pub ctx: Arc<Ctx>,
    pub vault: String,
}

impl Handler for DataHandler {
    fn handle(
        self: Arc<Self>,
        req: Request<ReqBody>,
        peer: Peer,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
        Box::pin(async move { self.handle_req(req, peer).await })
    }
}

/// Per-request facts shared by the operation functions.
struct Call {
    vault: Arc<VaultEntry>,
    base: String,
    api_version: String,
    now: i64,
}

impl DataHandler {
    async fn handle_req(&self, req: Request<ReqBody>, peer: Peer) -> Response<Body> {
        let started = Instant::now();
        let correlation = req
            .headers()
            .get("x-ms-client-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut ev = AuditEvent {
            time: now_rfc3339(),
            client_address: peer.addr.ip().to_string(),
            vault: Some(self.vault.clone()),
            correlation_id: correlation.clone(),
            operation_name: "Unknown".into(),
            ..Default::default()
        };
        let resp = match self.process(req, &peer, &mut ev).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        };
        let mut resp = resp;
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&correlation) {
            h.insert("x-ms-client-request-id", v.clone());
        }
        if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            h.insert("x-ms-request-id", v);
        }
        h.insert(
            "x-ms-keyvault-service-version",
            HeaderValue::from_static("1.9.0.0-strongroom"),
        );
        // The vault's own clock (test controls may shift it): clients that judge key
        // validity windows, like the control plane, judge them on the vault's time.
        let vault_now = self.ctx.state.clock.now(&self.vault);
        let vault_time =
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(vault_now.max(0) as u64);
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(vault_time)) {
            h.insert(http::header::DATE, v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!(
            "conn_type={};addr={};act_addr_fam=InterNetwork;",
            if peer.addr.is_ipv4() { "Ipv4" } else { "Ipv6" },
            peer.addr.ip()
        )) {
            h.insert("x-ms-keyvault-network-info", v);
        }
        ev.http_status = resp.status().as_u16();
        ev.result = if resp.status().is_success() {
            "Success".into()
        } else {
            format!("Failure:{}", resp.status().as_u16())
        };
        ev.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        self.ctx.audit.record(&ev);
        resp
    }

    async fn process(
        &self,
        req: Request<ReqBody>,
        peer: &Peer,
        ev: &mut AuditEvent,
    ) -> Result<Response<Body>, ApiError> {
        let ctx = &self.ctx;
        let vault = match ctx.state.vault(&self.vault) {
            Some(v) if !v.is_deleted() && !v.is_unreachable() => v,
            _ => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "The vault is not available.",
                ));
            }
        };
        let (parts, body) = req.into_parts();
        let route = route(&parts.method, parts.uri.path())?;
        ev.operation_name = route.audit_name().into();
        let query = parse_query(parts.uri.query());
        let api_version = match query_get(&query, "api-version") {
            None => return Err(ApiError::missing_api_version()),
            Some(v) if API_VERSIONS.contains(&v) => v.to_string(),
            Some(v) => return Err(ApiError::unsupported_api_version(v)),
        };
        let (tenant, location, rec_name, port) = {
            let r = vault.record.read();
            (
                r.tenant_id.clone(),
                r.location.clone(),
                r.name.clone(),
                r.port,
            )
        };
        // Built only for a 401: the hot path (an authorised call) never needs it.
        let challenge = || {
            format!(
                "Bearer authorization=\"{}/{}\", resource=\"{}\"",
                ctx.cfg.identity_url.trim_end_matches('/'),
                tenant,
                VAULT_RESOURCE
            )
        };
        // --- authentication (before touching the body) ---
        let Some(token) = bearer(&parts.headers) else {
            ev.operation_name = "Authentication".into();
            return Err(ApiError::unauthorized(
                "AKV10000: Request is missing a Bearer or PoP token.",
                challenge(),
            ));
        };
        let claims = match ctx.verifier.verify(token).await {
            Ok(c) => Some(c),
            Err(AuthError::PrincipalDeleted(_)) => None,
            Err(e) => return Err(auth_error_to_api(&e, challenge())),
        };
        let claims = match claims {
            Some(c) => c,
            None => {
                // The principal was deleted: its assignments no longer apply.
                let perm = route.perm();
                let caller = "oid=(deleted principal)";
                let v = vault.record.read();
                return Err(if v.rbac {
                    ApiError::forbidden_by_rbac(
                        caller,
                        perm.data_action(),
                        &v.resource_id(),
                        &v.name,
                        &v.location,
                    )
                } else {
                    ApiError::forbidden_by_policy(caller, perm.policy_name(), &v.name, &v.location)
                });
            }
        };
        ev.caller_oid = Some(claims.oid.clone());
        ev.caller_app_id = Some(claims.app_id().to_string());
        ev.caller_tid = Some(claims.tid.clone());
        if !claims.has_audience(VAULT_RESOURCE) {
            return Err(ApiError::unauthorized(
                format!(
                    "AKV10022: Invalid audience. Expected {VAULT_RESOURCE}, found: {}.",
                    claims.aud.join(",")
                ),
                challenge(),
            ));
        }
        if !claims.tid.eq_ignore_ascii_case(&tenant) {
            return Err(ApiError::unauthorized(
                format!(
                    "AKV10032: Invalid issuer. Expected one of {}/{}/v2.0, found {}.",
                    ctx.cfg.identity_url.trim_end_matches('/'),
                    tenant,
                    claims.iss
                ),
                challenge(),
            ));
        }
        let caller = caller_desc(claims.app_id(), &claims.oid, &claims.iss);
        // Trust comes only from the mutual-TLS client certificate (verified by rustls against
        // the service CA). A token claim is not a credential for the network layer: any
        // principal that can get a token could assert it.
        let trusted = peer.trusted_service;
        ev.trusted_service = trusted;
        // --- network rules ---
        {
            let v = vault.record.read();
            network_check(&v, &vault, peer, trusted, &caller)?;
        }
        // --- authorization ---
        {
            let v = vault.record.read();
            if let Err(d) = authz::check(&v, &claims.oid, route.perm(), route.key_name()) {
                return Err(match d {
                    Denied::Policy(p) => {
                        ApiError::forbidden_by_policy(&caller, p, &rec_name, &location)
                    }
                    Denied::Rbac { action, resource } => ApiError::forbidden_by_rbac(
                        &caller, action, &resource, &rec_name, &location,
                    ),
                });
            }
        }
        let body = match parts.method {
            Method::POST | Method::PUT | Method::PATCH => read_body(body).await?,
            _ => bytes::Bytes::new(),
        };
        let call = Call {
            now: ctx.state.clock.now(&rec_name),
            vault,
            base: format!("https://{}:{}", ctx.cfg.data_host, port),
            api_version,
        };
        if let Some(n) = route.key_name() {
            ev.key_id = Some(format!("{}/keys/{}", call.base, n));
        }
        self.dispatch(route, &call, &body, &query, ev).await
    }

    async fn dispatch(
        &self,
        route: Route,
        call: &Call,
        body: &[u8],
        query: &[(String, String)],
        ev: &mut AuditEvent,
    ) -> Result<Response<Body>, ApiError> {
        match route {
            Route::Create(n) => self.create_key(call, &n, body).await,
            Route::Import(n) => self.import_key(call, &n, body).await,
            Route::Get(n, v) => get_key(call, &n, v.as_deref()),
            Route::Update(n, v) => self.update_key(call, &n, v.as_deref(), body).await,
            Route::Delete(n) => self.delete_key(call, &n).await,
            Route::ListKeys => list_keys(call, query),
            Route::ListVersions(n) => list_versions(call, &n, query),
            Route::ListDeleted => list_deleted(call, query),
            Route::GetDeleted(n) => get_deleted(call, &n),
            Route::Recover(n) => self.recover_key(call, &n).await,
            Route::Purge(n) => self.purge_key(call, &n).await,
            Route::Backup(n) => self.backup_key(call, &n),
            Route::Restore => self.restore_key(call, body).await,
            Route::Rotate(n) => self.rotate_key(call, &n).await,
            Route::GetPolicy(n) => get_policy(call, &n),
            Route::SetPolicy(n) => self.set_policy(call, &n, body).await,
            Route::Crypto(n, v, op) => {
                let r = crypto_op(call, &n, v.as_deref(), op, body).await;
                if let Ok((kid, _)) = &r {
                    ev.key_id = Some(kid.clone());
                }
                r.map(|(_, resp)| resp)
            }
        }
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce() -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|_| ApiError::internal())?
    }

    async fn create_key(
        &self,
        call: &Call,
        name: &str,
        body: &[u8],
    ) -> Result<Response<Body>, ApiError> {
        #[derive(Deserialize)]
        struct CreateParams {
            kty: Option<String>,
            key_size: Option<u32>,
            public_exponent: Option<u64>,
            key_ops: Option<Vec<String>>,
            #[serde(default)]
            attributes: AttrsIn,
            tags: Option<BTreeMap<String, String>>,
        }
        let p: CreateParams = parse_json(body)?;
        let kty = p.kty.as_deref().unwrap_or("");
        let kty = match kty {
            "RSA" | "RSA-HSM" => kty.to_string(),
            "" => return Err(ApiError::bad_parameter("The parameter kty is required.")),
            "EC" | "EC-HSM" | "oct" | "oct-HSM" => {
                return Err(ApiError::bad_parameter(format!(
                    "Key type {kty} is not supported by this vault; use RSA or RSA-HSM."
                )));
            }
            other => {
                return Err(ApiError::bad_parameter(format!(
                    "Invalid key type: {other}."
                )));
            }
        };
        let bits = p.key_size.unwrap_or(2048);
        if ![2048, 3072, 4096].contains(&bits) {
            return Err(ApiError::bad_parameter(format!(
                "Invalid key size {bits}. RSA keys must be 2048, 3072 or 4096 bits."
            )));
        }
        if let Some(pe) = p.public_exponent
            && pe != 65537
        {
            return Err(ApiError::bad_parameter(
                "Only the public exponent 65537 is supported.",
            ));
        }
        let key_ops = validate_key_ops(p.key_ops)?;
        let tags = validate_tags(p.tags)?;
        p.attributes.validate()?;
        ensure_creatable(&call.vault, name)?;
        let ctx = self.ctx.clone();
        let vault = call.vault.clone();
        let name_s = name.to_string();
        let now = call.now;
        let rec = self
            .blocking(move || {
                let pkcs8 = crypto::generate_rsa(bits).map_err(|_| ApiError::internal())?;
                let version = new_version(&kty, bits, key_ops, pkcs8, &p.attributes, tags, now);
                add_version(&ctx, &vault, &name_s, version)
            })
            .await?;
        self.ctx.kick_scheduler();
        key_bundle_response(call, &rec, None)
    }

    async fn import_key(
        &self,
        call: &Call,
        name: &str,
        body: &[u8],
    ) -> Result<Response<Body>, ApiError> {
        #[derive(Deserialize)]
        struct ImportParams {
            key: Option<JsonWebKey>,
            #[serde(rename = "Hsm", default)]
            hsm: Option<bool>,
            #[serde(default)]
            attributes: AttrsIn,
            tags: Option<BTreeMap<String, String>>,
        }
        let p: ImportParams = parse_json(body)?;
        let jwk = p
            .key
            .ok_or_else(|| ApiError::bad_parameter("The parameter key is required."))?;
        let kty_in = jwk.kty.clone().unwrap_or_default();
        if kty_in != "RSA" && kty_in != "RSA-HSM" {
            return Err(ApiError::bad_parameter(format!(
                "Key type {kty_in} is not supported for import; use RSA or RSA-HSM."
            )));
        }
        let hsm = p.hsm.unwrap_or(false) || kty_in == "RSA-HSM";
        let key_ops = validate_key_ops(jwk.key_ops.clone())?;
        let tags = validate_tags(p.tags)?;
        p.attributes.validate()?;
        ensure_creatable(&call.vault, name)?;
        let pkcs8: Zeroizing<Vec<u8>> = if let Some(blob) = &jwk.key_hsm {
            byok_target(call, blob)?
        } else {
            let field = |f: &Option<String>, n: &str| -> Result<Zeroizing<Vec<u8>>, ApiError> {
                f.as_deref()
                    .and_then(b64u_decode)
                    .map(Zeroizing::new)
                    .ok_or_else(|| {
                        ApiError::bad_parameter(format!(
                            "The RSA key parameter {n} is missing or invalid."
                        ))
                    })
            };
            let (n, e, d) = (
                field(&jwk.n, "n")?,
                field(&jwk.e, "e")?,
                field(&jwk.d, "d")?,
            );
            let (pp, q) = (field(&jwk.p, "p")?, field(&jwk.q, "q")?);
            let (dp, dq, qi) = (
                field(&jwk.dp, "dp")?,
                field(&jwk.dq, "dq")?,
                field(&jwk.qi, "qi")?,
            );
            crypto::pkcs8_from_components(&n, &e, &d, &pp, &q, &dp, &dq, &qi)
                .map_err(|_| ApiError::bad_parameter("The RSA key parameters are invalid."))?
        };
        let loaded = LoadedKey::from_pkcs8(&pkcs8).map_err(|_| {
            ApiError::bad_parameter("The imported key is not a supported RSA key (2048-4096 bits).")
        })?;
        let bits = loaded.bits();
        let kty = if hsm { "RSA-HSM" } else { "RSA" }.to_string();
        let version = new_version(&kty, bits, key_ops, pkcs8, &p.attributes, tags, call.now);
        let ctx = self.ctx.clone();
        let vault = call.vault.clone();
        let name_s = name.to_string();
        let rec = self
            .blocking(move || add_version(&ctx, &vault, &name_s, version))
            .await?;
        key_bundle_response(call, &rec, None)
    }

    async fn update_key(
        &self,
        call: &Call,
        name: &str,
        version: Option<&str>,
        body: &[u8],
    ) -> Result<Response<Body>, ApiError> {
        #[derive(Deserialize)]
        struct UpdateParams {
            key_ops: Option<Vec<String>>,
            attributes: Option<AttrsIn>,
            tags: Option<BTreeMap<String, String>>,
        }
        let p: UpdateParams = parse_json(body)?;
        let key_ops = match p.key_ops {
            Some(ops) => Some(validate_key_ops(Some(ops))?),
            None => None,
        };
        let tags = match p.tags {
            Some(t) => Some(validate_tags(Some(t))?),
            None => None,
        };
        if let Some(a) = &p.attributes {
            a.validate()?;
        }
        let ctx = self.ctx.clone();
        let vault = call.vault.clone();
        let name_s = name.to_string();
        let ver = version.map(str::to_string);
        let now = call.now;
        let (rec, target) = self
            .blocking(move || {
                let mut target = String::new();
                let rec = ctx.state.mutate_key(&vault, &name_s, |cur| {
                    let cur = live_record(cur, &name_s)?;
                    let mut rec = cur.clone();
                    let idx = version_index(&rec, &name_s, ver.as_deref())?;
                    let kv = &mut rec.versions[idx];
                    if let Some(ops) = key_ops {
                        kv.key_ops = ops;
                    }
                    if let Some(a) = p.attributes {
                        if let Some(e) = a.enabled {
                            kv.enabled = e;
                        }
                        if a.nbf.is_some() {
                            kv.nbf = a.nbf;
                        }
                        if a.exp.is_some() {
                            kv.exp = a.exp;
                        }
                    }
                    if let Some(t) = tags {
                        kv.tags = t;
                    }
                    kv.updated = now;
                    target = kv.version.clone();
                    Ok(Some(rec))
                })?;
                Ok((rec.ok_or_else(ApiError::internal)?, target))
            })
            .await?;
        key_bundle_response(call, &rec, Some(&target))
    }

    async fn delete_key(&self, call: &Call, name: &str) -> Result<Response<Body>, ApiError> {
        let ctx = self.ctx.clone();
        let vault = call.vault.clone();
        let name_s = name.to_string();
        let now = call.now;
        let days = call.vault.record.read().soft_delete_retention_days as i64;
        let rec = self
            .blocking(move || {
                ctx.state.mutate_key(&vault, &name_s, |cur| {
                    let mut rec = live_record(cur, &name_s)?.clone();
                    rec.deleted = Some(DeletedInfo {
                        deleted_date: now,
                        scheduled_purge_date: now + days * 86_400,
                    });
                    Ok(Some(rec))
                })
            })
            .await?
            .ok_or_else(ApiError::internal)?;
        Ok(json_response(StatusCode::OK, &deleted_bundle(call, &rec)?))
    }

    async fn recover_key(&self, call: &Call, name: &str) -> Result<Response<Body>, ApiError> {
        let ctx = self.ctx.clone();
        let vault = call.vault.clone();
        let name_s = name.to_string();
        let rec = self
            .blocking(move || {
                ctx.state.mutate_key(&vault, &name_s, |cur| match cur {
                    Some(r) if r.deleted.is_some() => {
                        let mut r = r.clone();
                        r.deleted = None;
                        Ok(Some(r))
                    }
                    _ => Err(ApiError::deleted_key_not_found(&name_s)),
                })
            })
            .await?
            .ok_or_else(ApiError::internal)?;
        key_bundle_response(call, &rec, None)
    }

    async fn purge_key(&self, call: &Call, name: &str) -> Result<Response<Body>, ApiError> {
        {
            let v = call.vault.record.read();
            let keys = call.vault.keys.read();
            match keys.get(&name.to_ascii_lowercase()) {
                Some(e) if e.record.deleted.is_some() => {}
                _ => return Err(ApiError::deleted_key_not_found(name)),
            }
            if v.purge_protection {
                return Err(ApiError::purge_protected(&v.name, &v.location));
            }
        }
        let ctx = self.ctx.clone();
        let vault = call.vault.clone();
        let name_s = name.to_string();
        self.blocking(move || {
            ctx.state.mutate_key(&vault, &name_s, |cur| match cur {
                Some(r) if r.deleted.is_some() => Ok(None),
                _ => Err(ApiError::deleted_key_not_found(&name_s)),
            })
        })
        .await?;
        Ok(empty_response(StatusCode::NO_CONTENT))
    }

    fn backup_key(&self, call: &Call, name: &str) -> Result<Response<Body>, ApiError> {
        let rec = {
            let keys = call.vault.keys.read();
            let e = keys.get(&name.to_ascii_lowercase());
            live_record(e.map(|e| &e.record), name)?.clone()
        };
        let tenant = call.vault.record.read().tenant_id.to_ascii_lowercase();
        let sealer = self
            .ctx
            .root
            .sealer(format!("backup:{tenant}").as_bytes())?;
        let plain = Zeroizing::new(serde_json::to_vec(&rec).map_err(|_| ApiError::internal())?);
        let sealed = sealer.seal(BACKUP_MAGIC, &plain)?;
        let mut blob = BACKUP_MAGIC.to_vec();
        blob.extend_from_slice(&sealed);
        Ok(json_response(
            StatusCode::OK,
            &json!({"value": b64u(&blob)}),
        ))
    }

    async fn restore_key(&self, call: &Call, body: &[u8]) -> Result<Response<Body>, ApiError> {
        #[derive(Deserialize)]
        struct RestoreParams {
            value: Option<String>,
        }
        let p: RestoreParams = parse_json(body)?;
        let bad = || {
            ApiError::bad_parameter(
                "The backup blob is invalid or was not produced by a vault of this tenant.",
            )
        };
        let blob = p.value.as_deref().and_then(b64u_decode).ok_or_else(bad)?;
        let sealed = blob.strip_prefix(BACKUP_MAGIC).ok_or_else(bad)?;
        let tenant = call.vault.record.read().tenant_id.to_ascii_lowercase();
        let sealer = self
            .ctx
            .root
            .sealer(format!("backup:{tenant}").as_bytes())?;
        let plain = sealer.open(BACKUP_MAGIC, sealed).map_err(|_| bad())?;
        let mut rec: KeyRecord = serde_json::from_slice(&plain).map_err(|_| bad())?;
        rec.deleted = None;
        let ctx = self.ctx.clone();
        let vault = call.vault.clone();
        let rec = self
            .blocking(move || {
                let name = rec.name.clone();
                ctx.state.mutate_key(&vault, &name, |cur| match cur {
                    Some(c) if c.deleted.is_some() => Err(ApiError::deleted_but_recoverable(&name)),
                    Some(_) => Err(ApiError::key_already_exists(&name)),
                    None => Ok(Some(rec)),
                })
            })
            .await?
            .ok_or_else(ApiError::internal)?;
        self.ctx.kick_scheduler();
        key_bundle_response(call, &rec, None)
    }

    async fn rotate_key(&self, call: &Call, name: &str) -> Result<Response<Body>, ApiError> {
        let ctx = self.ctx.clone();
        let vault = call.vault.clone();
        let name_s = name.to_string();
        let now = call.now;
        let rec = self
            .blocking(move || rotate_now(&ctx, &vault, &name_s, now))
            .await?;
        key_bundle_response(call, &rec, None)
    }

    async fn set_policy(
        &self,
        call: &Call,
        name: &str,
        body: &[u8],
    ) -> Result<Response<Body>, ApiError> {
        let v: Value = parse_json(body)?;
        let policy = parse_policy(&v, call.now)?;
        let ctx = self.ctx.clone();
        let vault = call.vault.clone();
        let name_s = name.to_string();
        let rec = self
            .blocking(move || {
                ctx.state.mutate_key(&vault, &name_s, |cur| {
                    let mut rec = live_record(cur, &name_s)?.clone();
                    let created = rec
                        .rotation_policy
                        .as_ref()
                        .map(|p| p.created)
                        .unwrap_or(policy.created);
                    let mut p = policy;
                    p.created = created;
                    rec.rotation_policy = Some(p);
                    Ok(Some(rec))
                })
            })
            .await?
            .ok_or_else(ApiError::internal)?;
        self.ctx.kick_scheduler();
        Ok(json_response(StatusCode::OK, &policy_json(call, &rec)))
    }
}

fn auth_error_to_api(e: &AuthError, challenge: String) -> ApiError {
    let msg = match e {
        AuthError::Expired => "AKV10017: The token has expired.".to_string(),
        AuthError::NotYetValid => "AKV10016: The token is not yet valid.".to_string(),
        AuthError::Issuer(found) => format!("AKV10032: Invalid issuer. found {found}."),
        AuthError::Audience(found) => {
            format!("AKV10022: Invalid audience. Expected {VAULT_RESOURCE}, found: {found}.")
        }
        AuthError::BadSignature => "AKV10013: Token signature validation failed.".to_string(),
        AuthError::KeysUnavailable(_) => {
            "AKV10013: Token signing keys could not be retrieved.".to_string()
        }
        AuthError::Malformed | AuthError::PrincipalDeleted(_) => {
            "AKV10005: The token is malformed.".to_string()
        }
    };
    ApiError::unauthorized(msg, challenge)
}

/// Firewall / public-network rules, with the trusted-service bypass (`trusted` is the peer's
/// trusted-service client certificate, nothing else).
fn network_check(
    v: &VaultRecord,
    entry: &VaultEntry,
    peer: &Peer,
    trusted: bool,
    caller: &str,
) -> Result<(), ApiError> {
    let addr = peer.addr.ip();
    if entry.firewall_deny.load(Ordering::Relaxed) {
        return Err(ApiError::forbidden_by_firewall(
            &addr.to_string(),
            caller,
            &v.name,
            &v.location,
        ));
    }
    let bypass = v.network_acls.bypass.eq_ignore_ascii_case("AzureServices") && trusted;
    if v.public_network_access.eq_ignore_ascii_case("Disabled") {
        if bypass {
            return Ok(());
        }
        return Err(ApiError::forbidden_by_connection(
            caller,
            &v.name,
            &v.location,
        ));
    }
    if v.network_acls.default_action.eq_ignore_ascii_case("Deny") {
        if v.network_acls
            .ip_rules
            .iter()
            .any(|r| cidr_contains(r, addr))
            || bypass
        {
            return Ok(());
        }
        return Err(ApiError::forbidden_by_firewall(
            &addr.to_string(),
            caller,
            &v.name,
            &v.location,
        ));
    }
    Ok(())
}

/// True when `addr` is inside `cidr` (`a.b.c.d/n`, IPv6 too; a bare address means /32 or /128).
pub fn cidr_contains(cidr: &str, addr: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    let (ip, len) = match cidr.split_once('/') {
        Some((ip, l)) => (ip, l.parse::<u32>().ok()),
        None => (cidr, None),
    };
    let Ok(net) = ip.trim().parse::<IpAddr>() else {
        return false;
    };
    let addr = match (net, addr) {
        (IpAddr::V4(_), IpAddr::V6(a6)) => match a6.to_ipv4_mapped() {
            Some(a4) => IpAddr::V4(a4),
            None => return false,
        },
        _ => addr,
    };
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let len = len.unwrap_or(32).min(32);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            (u32::from(n) & mask) == (u32::from(a) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let len = len.unwrap_or(128).min(128);
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            (u128::from(n) & mask) == (u128::from(a) & mask)
        }
        _ => false,
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return serde_json::from_slice(b"{}")
            .map_err(|_| ApiError::bad_parameter("The request body is required."));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_parameter(format!("Property has invalid value: {e}")))
}

/// Attributes accepted on create/import/update.
#[derive(Debug, Default, Deserialize)]
struct AttrsIn {
    enabled: Option<bool>,
    nbf: Option<i64>,
    exp: Option<i64>,
    #[serde(default)]
    exportable: Option<bool>,
}

impl AttrsIn {
    fn validate(&self) -> Result<(), ApiError> {
        for (name, t) in [("nbf", self.nbf), ("exp", self.exp)] {
            if t.is_some_and(|t| !representable(t)) {
                return Err(ApiError::bad_parameter(format!(
                    "The key's {name} attribute is outside the supported date range (years 1 to 9999)."
                )));
            }
        }
        if let (Some(n), Some(e)) = (self.nbf, self.exp)
            && n > e
        {
            return Err(ApiError::bad_parameter(
                "The key's not-before time must be earlier than its expiry.",
            ));
        }
        if self.exportable == Some(true) {
            return Err(ApiError::bad_parameter(
                "AKV.SKR.1004: Exportable keys must have release policy.",
            ));
        }
        Ok(())
    }
}

fn validate_key_ops(ops: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    match ops {
        None => Ok(DEFAULT_KEY_OPS.iter().map(|s| s.to_string()).collect()),
        Some(ops) => {
            let mut out = Vec::new();
            for op in ops {
                let canon = VALID_KEY_OPS
                    .iter()
                    .find(|v| v.eq_ignore_ascii_case(&op))
                    .ok_or_else(|| {
                        ApiError::bad_parameter(format!("Invalid key operation: {op}."))
                    })?;
                if !out.iter().any(|o: &String| o == canon) {
                    out.push(canon.to_string());
                }
            }
            Ok(out)
        }
    }
}

fn validate_tags(
    tags: Option<BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let tags = tags.unwrap_or_default();
    if tags.len() > 15 {
        return Err(ApiError::bad_parameter("A key can have at most 15 tags."));
    }
    if tags
        .iter()
        .any(|(k, v)| k.chars().count() > 256 || v.chars().count() > 256)
    {
        return Err(ApiError::bad_parameter(
            "Tag names and values are limited to 256 characters.",
        ));
    }
    Ok(tags)
}

fn new_version(
    kty: &str,
    bits: u32,
    key_ops: Vec<String>,
    pkcs8: Zeroizing<Vec<u8>>,
    attrs: &AttrsIn,
    tags: BTreeMap<String, String>,
    now: i64,
) -> KeyVersion {
    KeyVersion {
        version: uuid::Uuid::new_v4().simple().to_string(),
        kty: kty.to_string(),
        key_size: bits,
        key_ops,
        pkcs8,
        enabled: attrs.enabled.unwrap_or(true),
        nbf: attrs.nbf,
        exp: attrs.exp,
        created: now,
        updated: now,
        tags,
        exportable: false,
    }
}

/// 409 when the name is soft-deleted.
fn ensure_creatable(v: &VaultEntry, name: &str) -> Result<(), ApiError> {
    if let Some(e) = v.keys.read().get(&name.to_ascii_lowercase())
        && e.record.deleted.is_some()
    {
        return Err(ApiError::deleted_but_recoverable(&e.record.name));
    }
    Ok(())
}

/// Appends a version (creating the key when new).
fn add_version(
    ctx: &Ctx,
    vault: &VaultEntry,
    name: &str,
    version: KeyVersion,
) -> Result<KeyRecord, ApiError> {
    ctx.state
        .mutate_key(vault, name, |cur| match cur {
            Some(r) if r.deleted.is_some() => Err(ApiError::deleted_but_recoverable(&r.name)),
            Some(r) => {
                let mut r = r.clone();
                r.versions.push(version);
                Ok(Some(r))
            }
            None => Ok(Some(KeyRecord {
                name: name.to_string(),
                versions: vec![version],
                deleted: None,
                rotation_policy: None,
            })),
        })?
        .ok_or_else(ApiError::internal)
}

/// Creates a new version like the current one (same type, size, ops, tags); applies the
/// rotation policy's expiryTime. Used by `POST /rotate` and the scheduler.
pub fn rotate_now(
    ctx: &Ctx,
    vault: &VaultEntry,
    name: &str,
    now: i64,
) -> Result<KeyRecord, ApiError> {
    let (kty, bits, ops, tags, expiry) = {
        let keys = vault.keys.read();
        let e = keys.get(&name.to_ascii_lowercase());
        let rec = live_record(e.map(|e| &e.record), name)?;
        let latest = rec.latest().ok_or_else(|| ApiError::key_not_found(name))?;
        let expiry = rec
            .rotation_policy
            .as_ref()
            .and_then(|p| p.expiry_time.as_deref())
            .and_then(parse_iso8601);
        (
            latest.kty.clone(),
            latest.key_size,
            latest.key_ops.clone(),
            latest.tags.clone(),
            expiry,
        )
    };
    let exp = match expiry {
        None => None,
        Some(d) => Some(checked_after(now, d).ok_or_else(|| {
            ApiError::bad_parameter(
                "The rotation policy's expiryTime puts the new version's expiry outside the supported date range.",
            )
        })?),
    };
    let pkcs8 = crypto::generate_rsa(bits).map_err(|_| ApiError::internal())?;
    let attrs = AttrsIn {
        exp,
        ..Default::default()
    };
    let version = new_version(&kty, bits, ops, pkcs8, &attrs, tags, now);
    add_version(ctx, vault, name, version)
}

fn live_record<'a>(cur: Option<&'a KeyRecord>, name: &str) -> Result<&'a KeyRecord, ApiError> {
    match cur {
        Some(r) if r.deleted.is_none() && !r.versions.is_empty() => Ok(r),
        _ => Err(ApiError::key_not_found(name)),
    }
}

fn version_index(rec: &KeyRecord, name: &str, version: Option<&str>) -> Result<usize, ApiError> {
    match version {
        None => Ok(rec.versions.len() - 1),
        Some(v) => rec
            .versions
            .iter()
            .position(|k| k.version.eq_ignore_ascii_case(v))
            .ok_or_else(|| ApiError::key_not_found(&format!("{name}/{v}"))),
    }
}

fn attributes_json(call: &Call, kv: &KeyVersion) -> Value {
    let v = call.vault.record.read();
    let mut a = json!({
        "enabled": kv.enabled,
        "created": kv.created,
        "updated": kv.updated,
        "recoveryLevel": v.recovery_level(),
        "recoverableDays": v.soft_delete_retention_days,
        "exportable": kv.exportable,
    });
    if let Some(n) = kv.nbf {
        a["nbf"] = json!(n);
    }
    if let Some(e) = kv.exp {
        a["exp"] = json!(e);
    }
    a
}

fn bundle_json(call: &Call, rec: &KeyRecord, kv: &KeyVersion, loaded: &LoadedKey) -> Value {
    let mut b = json!({
        "key": {
            "kid": format!("{}/keys/{}/{}", call.base, rec.name, kv.version),
            "kty": kv.kty,
            "key_ops": kv.key_ops,
            "n": b64u(loaded.modulus()),
            "e": b64u(loaded.exponent()),
        },
        "attributes": attributes_json(call, kv),
    });
    if !kv.tags.is_empty() {
        b["tags"] = json!(kv.tags);
    }
    b
}

fn loaded_for(call: &Call, name: &str, version: &str) -> Result<Arc<LoadedKey>, ApiError> {
    call.vault
        .keys
        .read()
        .get(&name.to_ascii_lowercase())
        .and_then(|e| e.loaded.get(version).cloned())
        .ok_or_else(ApiError::internal)
}

fn key_bundle_response(
    call: &Call,
    rec: &KeyRecord,
    version: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let idx = version_index(rec, &rec.name, version)?;
    let kv = &rec.versions[idx];
    let loaded = loaded_for(call, &rec.name, &kv.version)?;
    Ok(json_response(
        StatusCode::OK,
        &bundle_json(call, rec, kv, &loaded),
    ))
}

fn deleted_bundle(call: &Call, rec: &KeyRecord) -> Result<Value, ApiError> {
    let kv = rec.latest().ok_or_else(ApiError::internal)?;
    let loaded = loaded_for(call, &rec.name, &kv.version)?;
    let mut b = bundle_json(call, rec, kv, &loaded);
    if let Some(d) = rec.deleted {
        b["recoveryId"] = json!(format!("{}/deletedkeys/{}", call.base, rec.name));
        b["deletedDate"] = json!(d.deleted_date);
        b["scheduledPurgeDate"] = json!(d.scheduled_purge_date);
    }
    Ok(b)
}

fn get_key(call: &Call, name: &str, version: Option<&str>) -> Result<Response<Body>, ApiError> {
    let keys = call.vault.keys.read();
    let e = keys.get(&name.to_ascii_lowercase());
    let rec = live_record(e.map(|e| &e.record), name)?;
    let idx = version_index(rec, name, version)?;
    let kv = &rec.versions[idx];
    if !kv.enabled {
        return Err(ApiError::key_disabled("get"));
    }
    let loaded = e
        .and_then(|e| e.loaded.get(&kv.version))
        .ok_or_else(ApiError::internal)?;
    Ok(json_response(
        StatusCode::OK,
        &bundle_json(call, rec, kv, loaded),
    ))
}

/// Resolves `maxresults` and `$skiptoken`.
fn paging(query: &[(String, String)]) -> Result<(usize, usize), ApiError> {
    let max = match query_get(query, "maxresults") {
        None => 25,
        Some(m) => match m.parse::<usize>() {
            Ok(n) if (1..=25).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_parameter(
                    "maxresults must be between 1 and 25.",
                ));
            }
        },
    };
    let skip = match query_get(query, "$skiptoken") {
        None => 0,
        Some(t) => b64u_decode(t)
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| ApiError::bad_parameter("The $skiptoken is invalid."))?,
    };
    Ok((max, skip))
}

fn page(call: &Call, path: &str, items: Vec<Value>, max: usize, skip: usize) -> Response<Body> {
    let total = items.len();
    let value: Vec<Value> = items.into_iter().skip(skip).take(max).collect();
    let mut out = json!({ "value": value });
    if skip + max < total {
        out["nextLink"] = json!(format!(
            "{}{}?api-version={}&$skiptoken={}&maxresults={}",
            call.base,
            path,
            call.api_version,
            b64u((skip + max).to_string().as_bytes()),
            max
        ));
    } else {
        out["nextLink"] = Value::Null;
    }
    json_response(StatusCode::OK, &out)
}

fn item_json(call: &Call, kid: String, kv: &KeyVersion) -> Value {
    let mut i = json!({ "kid": kid, "attributes": attributes_json(call, kv) });
    if !kv.tags.is_empty() {
        i["tags"] = json!(kv.tags);
    }
    i
}

fn list_keys(call: &Call, query: &[(String, String)]) -> Result<Response<Body>, ApiError> {
    let (max, skip) = paging(query)?;
    let keys = call.vault.keys.read();
    let mut recs: Vec<&KeyRecord> = keys
        .values()
        .map(|e| &e.record)
        .filter(|r| r.deleted.is_none())
        .collect();
    recs.sort_by_key(|r| r.name.to_ascii_lowercase());
    let items = recs
        .into_iter()
        .filter_map(|r| {
            r.latest()
                .map(|kv| item_json(call, format!("{}/keys/{}", call.base, r.name), kv))
        })
        .collect();
    Ok(page(call, "/keys", items, max, skip))
}

fn list_versions(
    call: &Call,
    name: &str,
    query: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let (max, skip) = paging(query)?;
    let keys = call.vault.keys.read();
    let e = keys.get(&name.to_ascii_lowercase());
    let rec = live_record(e.map(|e| &e.record), name)?;
    let items = rec
        .versions
        .iter()
        .map(|kv| {
            item_json(
                call,
                format!("{}/keys/{}/{}", call.base, rec.name, kv.version),
                kv,
            )
        })
        .collect();
    Ok(page(
        call,
        &format!("/keys/{}/versions", rec.name),
        items,
        max,
        skip,
    ))
}

fn list_deleted(call: &Call, query: &[(String, String)]) -> Result<Response<Body>, ApiError> {
    let (max, skip) = paging(query)?;
    let keys = call.vault.keys.read();
    let mut recs: Vec<&KeyRecord> = keys
        .values()
        .map(|e| &e.record)
        .filter(|r| r.deleted.is_some())
        .collect();
    recs.sort_by_key(|r| r.name.to_ascii_lowercase());
    let items = recs
        .into_iter()
        .filter_map(|r| {
            let kv = r.latest()?;
            let d = r.deleted?;
            let mut i = item_json(call, format!("{}/keys/{}", call.base, r.name), kv);
            i["recoveryId"] = json!(format!("{}/deletedkeys/{}", call.base, r.name));
            i["deletedDate"] = json!(d.deleted_date);
            i["scheduledPurgeDate"] = json!(d.scheduled_purge_date);
            Some(i)
        })
        .collect();
    Ok(page(call, "/deletedkeys", items, max, skip))
}

fn get_deleted(call: &Call, name: &str) -> Result<Response<Body>, ApiError> {
    let rec = {
        let keys = call.vault.keys.read();
        match keys.get(&name.to_ascii_lowercase()) {
            Some(e) if e.record.deleted.is_some() => e.record.clone(),
            _ => return Err(ApiError::deleted_key_not_found(name)),
        }
    };
    Ok(json_response(StatusCode::OK, &deleted_bundle(call, &rec)?))
}

fn policy_json(call: &Call, rec: &KeyRecord) -> Value {
    let id = format!("{}/keys/{}/rotationpolicy", call.base, rec.name);
    match &rec.rotation_policy {
        None => json!({
            "id": id,
            "lifetimeActions": [{"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}],
            "attributes": {},
        }),
        Some(p) => {
            let actions: Vec<Value> = p
                .lifetime_actions
                .iter()
                .map(|a| {
                    let mut trigger = json!({});
                    if let Some(t) = &a.time_after_create {
                        trigger["timeAfterCreate"] = json!(t);
                    }
                    if let Some(t) = &a.time_before_expiry {
                        trigger["timeBeforeExpiry"] = json!(t);
                    }
                    json!({"trigger": trigger, "action": {"type": a.action}})
                })
                .collect();
            let mut attrs = json!({"created": p.created, "updated": p.updated});
            if let Some(e) = &p.expiry_time {
                attrs["expiryTime"] = json!(e);
            }
            json!({"id": id, "lifetimeActions": actions, "attributes": attrs})
        }
    }
}

fn get_policy(call: &Call, name: &str) -> Result<Response<Body>, ApiError> {
    let keys = call.vault.keys.read();
    let e = keys.get(&name.to_ascii_lowercase());
    let rec = live_record(e.map(|e| &e.record), name)?;
    Ok(json_response(StatusCode::OK, &policy_json(call, rec)))
}

/// Validates and normalizes a rotation policy body.
fn parse_policy(v: &Value, now: i64) -> Result<RotationPolicy, ApiError> {
    const MIN_ROTATE: i64 = 7 * 86_400;
    const MIN_EXPIRY: i64 = 28 * 86_400;
    let expiry_time = match v.pointer("/attributes/expiryTime") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let d = parse_iso8601(s).ok_or_else(|| {
                ApiError::bad_parameter(format!("Invalid ISO-8601 duration for expiryTime: {s}."))
            })?;
            if d < MIN_EXPIRY {
                return Err(ApiError::bad_parameter(
                    "The expiryTime of a rotation policy must be at least 28 days.",
                ));
            }
            if checked_after(now, d).is_none() {
                return Err(ApiError::bad_parameter(format!(
                    "expiryTime {s} is too long: the expiry it sets would be past the year 9999."
                )));
            }
            Some((s.clone(), d))
        }
        Some(_) => {
            return Err(ApiError::bad_parameter(
                "expiryTime must be an ISO-8601 duration string.",
            ));
        }
    };
    let mut actions = Vec::new();
    let list = match v.get("lifetimeActions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(ApiError::bad_parameter("lifetimeActions must be an array.")),
    };
    if list.len() > 2 {
        return Err(ApiError::bad_parameter(
            "A rotation policy can have at most two lifetime actions.",
        ));
    }
    for a in &list {
        let ty = a
            .pointer("/action/type")
            .and_then(|t| t.as_str())
            .unwrap_or("");
        let action = match ty.to_ascii_lowercase().as_str() {
            "rotate" => "Rotate",
            "notify" => "Notify",
            _ => {
                return Err(ApiError::bad_parameter(format!(
                    "Invalid lifetime action type: {ty}."
                )));
            }
        };
        if actions.iter().any(|x: &LifetimeAction| x.action == action) {
            return Err(ApiError::bad_parameter(format!(
                "Only one {action} action is allowed."
            )));
        }
        let after = a
            .pointer("/trigger/timeAfterCreate")
            .and_then(|t| t.as_str())
            .map(str::to_string);
        let before = a
            .pointer("/trigger/timeBeforeExpiry")
            .and_then(|t| t.as_str())
            .map(str::to_string);
        match (&after, &before) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(ApiError::bad_parameter(
                    "Each lifetime action needs exactly one of timeAfterCreate or timeBeforeExpiry.",
                ));
            }
            _ => {}
        }
        for d in after.iter().chain(before.iter()) {
            let secs = parse_iso8601(d).ok_or_else(|| {
                ApiError::bad_parameter(format!("Invalid ISO-8601 duration: {d}."))
            })?;
            if action == "Rotate" && secs < MIN_ROTATE {
                return Err(ApiError::bad_parameter(
                    "The rotation time must be at least 7 days.",
                ));
            }
            // The scheduler computes created + timeAfterCreate and expiry - timeBeforeExpiry;
            // both must be instants, not overflows.
            if checked_after(now, secs).is_none() {
                return Err(ApiError::bad_parameter(format!(
                    "Lifetime action trigger {d} is too long: it would fall past the year 9999."
                )));
            }
        }
        if let (Some(b), Some((_, exp_secs))) = (&before, &expiry_time) {
            let secs = parse_iso8601(b).unwrap_or(i64::MAX);
            let fires = checked_after(now, *exp_secs).and_then(|e| checked_before(e, secs));
            if fires.is_none() {
                return Err(ApiError::bad_parameter(format!(
                    "timeBeforeExpiry {b} is out of range for expiryTime {}.",
                    expiry_time.as_ref().map(|(s, _)| s.as_str()).unwrap_or("")
                )));
            }
        }
        if after.is_some() && action == "Notify" {
            return Err(ApiError::bad_parameter(
                "timeAfterCreate only applies to the Rotate action.",
            ));
        }
        if before.is_some() && expiry_time.is_none() && action == "Rotate" {
            return Err(ApiError::bad_parameter(
                "timeBeforeExpiry requires attributes.expiryTime.",
            ));
        }
        actions.push(LifetimeAction {
            action: action.to_string(),
            time_after_create: after,
            time_before_expiry: before,
        });
    }
    if !actions.iter().any(|a| a.action == "Notify") {
        actions.push(LifetimeAction {
            action: "Notify".into(),
            time_after_create: None,
            time_before_expiry: Some("P30D".into()),
        });
    }
    Ok(RotationPolicy {
        lifetime_actions: actions,
        expiry_time: expiry_time.map(|(s, _)| s),
        created: now,
        updated: now,
    })
}

/// Resolves the BYOK transfer blob in `key_hsm` with the vault's key-exchange key.
fn byok_target(call: &Call, key_hsm: &str) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let bad = |m: &str| ApiError::bad_parameter(format!("Invalid key transfer blob: {m}."));
    let raw = b64u_decode(key_hsm).ok_or_else(|| bad("key_hsm is not base64url"))?;
    let blob: KeyTransferBlob =
        serde_json::from_slice(&raw).map_err(|_| bad("not a transfer blob"))?;
    if !blob.header.enc.eq_ignore_ascii_case("CKM_RSA_AES_KEY_WRAP")
        && !blob.header.enc.eq_ignore_ascii_case("RSA_AES_KEY_WRAP_256")
    {
        return Err(bad("unsupported enc"));
    }
    // header.kid = https://host/keys/{name}/{version}
    let path = blob
        .header
        .kid
        .split_once("/keys/")
        .map(|(_, p)| p)
        .ok_or_else(|| bad("kid does not name a key"))?;
    let mut parts = path.split('/');
    let kek_name = parts.next().unwrap_or("");
    let kek_version = parts.next().filter(|s| !s.is_empty());
    let (kv_ops, loaded, enabled) = {
        let keys = call.vault.keys.read();
        let e = keys
            .get(&kek_name.to_ascii_lowercase())
            .filter(|e| e.record.deleted.is_none())
            .ok_or_else(|| bad("key exchange key not found in this vault"))?;
        let idx = version_index(&e.record, kek_name, kek_version)?;
        let kv = &e.record.versions[idx];
        let loaded = e
            .loaded
            .get(&kv.version)
            .cloned()
            .ok_or_else(ApiError::internal)?;
        (kv.key_ops.clone(), loaded, kv.enabled)
    };
    if !enabled {
        return Err(ApiError::key_disabled("import"));
    }
    if !kv_ops.iter().any(|o| o == "import") {
        return Err(bad(
            "the key exchange key does not allow the import operation",
        ));
    }
    let ct = b64u_decode(&blob.ciphertext).ok_or_else(|| bad("ciphertext is not base64url"))?;
    crypto::byok_unwrap(&loaded, &ct).map_err(|_| bad("the target key could not be unwrapped"))
}

/// encrypt/decrypt/wrapKey/unwrapKey/sign/verify. Returns (versioned kid, response).
async fn crypto_op(
    call: &Call,
    name: &str,
    version: Option<&str>,
    op: CryptoOp,
    body: &[u8],
) -> Result<(String, Response<Body>), ApiError> {
    #[derive(Deserialize)]
    struct OpParams {
        alg: Option<String>,
        value: Option<String>,
        digest: Option<String>,
    }
    let (kid, loaded) = {
        let keys = call.vault.keys.read();
        let e = keys.get(&name.to_ascii_lowercase());
        let rec = live_record(e.map(|e| &e.record), name)?;
        let idx = version_index(rec, name, version)?;
        let kv = &rec.versions[idx];
        if !kv.enabled {
            return Err(ApiError::key_disabled(op.key_op()));
        }
        if !kv.key_ops.iter().any(|o| o == op.key_op()) {
            return Err(ApiError::key_op_not_permitted(op.key_op()));
        }
        if op.time_bound() {
            if let Some(nbf) = kv.nbf
                && call.now < nbf
            {
                return Err(ApiError::key_not_yet_valid(op.key_op()));
            }
            if let Some(exp) = kv.exp
                && call.now >= exp
            {
                return Err(ApiError::key_expired(op.key_op()));
            }
        }
        let loaded = e
            .and_then(|e| e.loaded.get(&kv.version).cloned())
            .ok_or_else(ApiError::internal)?;
        (
            format!("{}/keys/{}/{}", call.base, rec.name, kv.version),
            loaded,
        )
    };
    let p: OpParams = parse_json(body)?;
    let alg = p
        .alg
        .ok_or_else(|| ApiError::bad_parameter("The parameter alg is required."))?;
    let value = p.value.as_deref().and_then(b64u_decode).ok_or_else(|| {
        ApiError::bad_parameter("The parameter value is missing or not base64url.")
    })?;
    let bad_alg = |e: crypto::CryptoError| ApiError::bad_parameter(format!("{e}"));
    let out = match op {
        CryptoOp::Encrypt | CryptoOp::Wrap => {
            let a = EncAlg::parse(&alg).map_err(bad_alg)?;
            let ct = loaded.encrypt(a, &value).map_err(bad_alg)?;
            json!({"kid": kid, "value": b64u(&ct)})
        }
        CryptoOp::Decrypt | CryptoOp::Unwrap => {
            let a = EncAlg::parse(&alg).map_err(bad_alg)?;
            let pt = tokio::task::spawn_blocking(move || loaded.decrypt(a, &value))
                .await
                .map_err(|_| ApiError::internal())?
                .map_err(|e| match e {
                    crypto::CryptoError::Failed => ApiError::bad_parameter(
                        "The ciphertext could not be decrypted with this key and algorithm.",
                    ),
                    other => bad_alg(other),
                })?;
            let text = Zeroizing::new(b64u(&pt));
            json!({"kid": kid, "value": text.as_str()})
        }
        CryptoOp::Sign => {
            let a = SigAlg::parse(&alg).map_err(bad_alg)?;
            let sig = tokio::task::spawn_blocking(move || loaded.sign(a, &value))
                .await
                .map_err(|_| ApiError::internal())?
                .map_err(bad_alg)?;
            json!({"kid": kid, "value": b64u(&sig)})
        }
        CryptoOp::Verify => {
            let a = SigAlg::parse(&alg).map_err(bad_alg)?;
            let digest = p.digest.as_deref().and_then(b64u_decode).ok_or_else(|| {
                ApiError::bad_parameter("The parameter digest is missing or not base64url.")
            })?;
            let ok = loaded.verify(a, &digest, &value).map_err(bad_alg)?;
            json!({"value": ok})
        }
    };
    Ok((kid, json_response(StatusCode::OK, &out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let g = Method::GET;
        let p = Method::POST;
        assert_eq!(route(&g, "/keys").unwrap(), Route::ListKeys);
        assert_eq!(
            route(&g, "/keys/k1/").unwrap(),
            Route::Get("k1".into(), None)
        );
        assert_eq!(
            route(&g, "/keys/k1").unwrap(),
            Route::Get("k1".into(), None)
        );
        assert_eq!(
            route(&g, "/keys/k1/abcdef").unwrap(),
            Route::Get("k1".into(), Some("abcdef".into()))
        );
        assert_eq!(
            route(&p, "/keys/k1//wrapkey").unwrap(),
            Route::Crypto("k1".into(), None, CryptoOp::Wrap)
        );
        assert_eq!(
            route(&p, "/keys/k1/v1/unwrapKey").unwrap(),
            Route::Crypto("k1".into(), Some("v1".into()), CryptoOp::Unwrap)
        );
        assert_eq!(route(&p, "/keys/restore").unwrap(), Route::Restore);
        assert_eq!(
            route(&p, "/keys/k/create").unwrap(),
            Route::Create("k".into())
        );
        assert_eq!(
            route(&Method::PUT, "/keys/k/rotationpolicy").unwrap(),
            Route::SetPolicy("k".into())
        );
        assert_eq!(
            route(&Method::DELETE, "/deletedkeys/k").unwrap(),
            Route::Purge("k".into())
        );
        assert_eq!(
            route(&p, "/deletedkeys/k/recover").unwrap(),
            Route::Recover("k".into())
        );
        assert!(route(&g, "/keys/bad_name").is_err());
        assert!(route(&g, "/secrets/x").is_err());
    }

    #[test]
    fn cidr() {
        let a: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        assert!(cidr_contains("10.1.0.0/16", a));
        assert!(cidr_contains("10.1.2.3", a));
        assert!(cidr_contains("10.1.2.3/32", a));
        assert!(!cidr_contains("10.2.0.0/16", a));
        assert!(cidr_contains("0.0.0.0/0", a));
        assert!(!cidr_contains("garbage", a));
    }

    #[test]
    fn policy_validation() {
        let p = parse_policy(
            &json!({"lifetimeActions":[{"trigger":{"timeAfterCreate":"P90D"},"action":{"type":"rotate"}}],"attributes":{}}),
            100,
        )
        .unwrap();
        assert_eq!(p.lifetime_actions.len(), 2);
        assert_eq!(p.lifetime_actions[0].action, "Rotate");
        assert_eq!(
            p.lifetime_actions[1].time_before_expiry.as_deref(),
            Some("P30D")
        );
        assert!(parse_policy(&json!({"lifetimeActions":[{"trigger":{"timeAfterCreate":"P1D"},"action":{"type":"Rotate"}}]}), 0).is_err());
        assert!(parse_policy(&json!({"attributes":{"expiryTime":"P10D"}}), 0).is_err());
        assert!(parse_policy(&json!({"lifetimeActions":[{"trigger":{"timeBeforeExpiry":"P10D"},"action":{"type":"Rotate"}}]}), 0).is_err());
    }
}
