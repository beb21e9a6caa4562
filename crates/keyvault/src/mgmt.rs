//! Management plane (ARM-shaped): vaults, deleted vaults, role assignments, access policies,
//! and the `/dev/...` test controls.
//!
//! Authentication: bearer token from the identity service with audience
//! `https://management.azure.com/` (trailing slash optional). Authorization: a tenant
//! administrator (marked by the identity service, or listed in `Config::admin_object_ids`)
//! may manage every vault of its tenant; any other principal may create vaults in its own
//! tenant and manage the vaults it created. Dev controls require an administrator.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::audit::{AuditEvent, now_rfc3339};
use crate::auth::Claims;
use crate::authz::{POLICY_KEY_PERMISSIONS, role_data_actions};
use crate::data_plane::cidr_contains;
use platform::Peer;

use crate::http_util::{Body, Handler, ReqBody, bearer, error_response, json_response, read_body};
use crate::model::{AccessPolicy, DeletedInfo, NetworkAcls, RoleAssignment, VaultRecord};
use crate::server::Ctx;
use crate::state::VaultEntry;

pub const MANAGEMENT_RESOURCE: &str = "https://management.azure.com/";

/// Handler of the management listener.
pub struct MgmtHandler {
    pub ctx: Arc<Ctx>,
}

impl Handler for MgmtHandler {
    fn handle(
        self: Arc<Self>,
        req: Request<ReqBody>,
        peer: Peer,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
        Box::pin(async move {
            let started = Instant::now();
            let mut ev = AuditEvent {
                time: now_rfc3339(),
                client_address: peer.addr.ip().to_string(),
                operation_name: "Unknown".into(),
                correlation_id: req
                    .headers()
                    .get("x-ms-client-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                ..Default::default()
            };
            let mut resp = match self.process(req, &mut ev).await {
                Ok(r) => r,
                Err(e) => error_response(&e),
            };
            if let Ok(v) = HeaderValue::from_str(&ev.correlation_id) {
                resp.headers_mut().insert("x-ms-correlation-request-id", v);
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
        })
    }
}

fn arm_error(status: StatusCode, code: &str, msg: impl Into<String>) -> ApiError {
    ApiError::new(status, code, msg)
}

fn not_found_vault(name: &str) -> ApiError {
    arm_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!(
            "The Resource 'Microsoft.KeyVault/vaults/{name}' under resource group was not found."
        ),
    )
}

/// Vault names: 3-24 characters, letters/digits/hyphens, start with a letter, end with a
/// letter or digit, no consecutive hyphens.
pub fn valid_vault_name(n: &str) -> bool {
    let b = n.as_bytes();
    (3..=24).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && !n.contains("--")
}

fn guid_like(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

impl MgmtHandler {
    async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Claims, ApiError> {
        let challenge = format!(
            "Bearer authorization_uri=\"{}\", error=\"invalid_token\"",
            self.ctx.cfg.identity_url.trim_end_matches('/')
        );
        let Some(token) = bearer(headers) else {
            let mut e = arm_error(
                StatusCode::UNAUTHORIZED,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            );
            e.challenge = Some(challenge);
            return Err(e);
        };
        let claims = self.ctx.verifier.verify(token).await.map_err(|e| {
            let mut err = arm_error(
                StatusCode::UNAUTHORIZED,
                match e {
                    crate::auth::AuthError::Expired => "ExpiredAuthenticationToken",
                    _ => "InvalidAuthenticationToken",
                },
                format!("The access token is invalid: {e}."),
            );
            err.challenge = Some(challenge.clone());
            err
        })?;
        if !claims.has_audience(MANAGEMENT_RESOURCE) {
            let mut err = arm_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationTokenAudience",
                format!(
                    "The access token has been obtained for wrong audience or resource '{}'. It should exactly match with one of the allowed audiences '{}'.",
                    claims.aud.join(","),
                    MANAGEMENT_RESOURCE
                ),
            );
            err.challenge = Some(challenge);
            return Err(err);
        }
        Ok(claims)
    }

    async fn is_admin(&self, claims: &Claims) -> bool {
        self.ctx
            .cfg
            .admin_object_ids
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&claims.oid))
    }

    /// Admin of the vault's tenant, or the vault's creator.
    async fn authorize_vault(
        &self,
        claims: &Claims,
        rec: &VaultRecord,
        action: &str,
    ) -> Result<(), ApiError> {
        let same_tenant = claims.tid.eq_ignore_ascii_case(&rec.tenant_id);
        if same_tenant
            && (rec.created_by.eq_ignore_ascii_case(&claims.oid) || self.is_admin(claims).await)
        {
            return Ok(());
        }
        Err(arm_error(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            format!(
                "The client '{}' with object id '{}' does not have authorization to perform action '{}' over scope '{}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
                claims.oid,
                claims.oid,
                action,
                rec.resource_id()
            ),
        ))
    }

    async fn process(
        &self,
        req: Request<ReqBody>,
        ev: &mut AuditEvent,
    ) -> Result<Response<Body>, ApiError> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
        let l: Vec<&str> = lower.iter().map(String::as_str).collect();
        let claims = self.authenticate(&parts.headers).await?;
        ev.caller_oid = Some(claims.oid.clone());
        ev.caller_app_id = Some(claims.app_id().to_string());
        ev.caller_tid = Some(claims.tid.clone());
        let m = parts.method.clone();
        let body = match m {
            Method::POST | Method::PUT | Method::PATCH => read_body(body).await?,
            _ => bytes::Bytes::new(),
        };
        let json_body = || -> Result<Value, ApiError> {
            if body.is_empty() {
                return Ok(json!({}));
            }
            serde_json::from_slice(&body).map_err(|e| {
                arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContent",
                    format!("The request content was invalid: {e}"),
                )
            })
        };
        match l.as_slice() {
            ["dev", rest @ ..] => {
                ev.operation_name = "DevControl".into();
                if !self.ctx.cfg.dev_mode {
                    return Err(ApiError::not_found_route());
                }
                if !self.is_admin(&claims).await {
                    return Err(arm_error(
                        StatusCode::FORBIDDEN,
                        "AuthorizationFailed",
                        "Dev controls require a tenant administrator.",
                    ));
                }
                self.dev(rest, &segs[1..], json_body()?, ev).await
            }
            [
                "subscriptions",
                _,
                "providers",
                "microsoft.keyvault",
                "locations",
                _,
                "deletedvaults",
                _,
            ] if m == Method::GET => {
                ev.operation_name = "DeletedVaultGet".into();
                ev.vault = Some(segs[7].to_string());
                let (_, rec) = self.deleted_vault(segs[1], segs[5], segs[7])?;
                self.authorize_vault(
                    &claims,
                    &rec,
                    "Microsoft.KeyVault/locations/deletedVaults/read",
                )
                .await?;
                Ok(json_response(StatusCode::OK, &deleted_vault_json(&rec)))
            }
            [
                "subscriptions",
                _,
                "providers",
                "microsoft.keyvault",
                "locations",
                _,
                "deletedvaults",
                _,
                "purge",
            ] if m == Method::POST => {
                ev.operation_name = "DeletedVaultPurge".into();
                ev.vault = Some(segs[7].to_string());
                let (v, rec) = self.deleted_vault(segs[1], segs[5], segs[7])?;
                self.authorize_vault(
                    &claims,
                    &rec,
                    "Microsoft.KeyVault/locations/deletedVaults/purge/action",
                )
                .await?;
                if rec.purge_protection {
                    return Err(arm_error(
                        StatusCode::CONFLICT,
                        "Conflict",
                        format!(
                            "Operation \"purge\" is not allowed because purge protection is enabled for this vault. Key Vault service will automatically purge it after the retention period has passed. Vault: {};location={}",
                            rec.name, rec.location
                        ),
                    ));
                }
                self.ctx.state.purge_vault(&v)?;
                Ok(json_response(StatusCode::OK, &json!({})))
            }
            [
                "subscriptions",
                _,
                "providers",
                "microsoft.keyvault",
                "vaults",
            ] if m == Method::GET => {
                ev.operation_name = "VaultList".into();
                self.list_vaults(&claims, segs[1], None).await
            }
            [
                "subscriptions",
                _,
                "resourcegroups",
                _,
                "providers",
                "microsoft.keyvault",
                "vaults",
            ] if m == Method::GET => {
                ev.operation_name = "VaultList".into();
                self.list_vaults(&claims, segs[1], Some(segs[3])).await
            }
            [
                "subscriptions",
                _,
                "resourcegroups",
                _,
                "providers",
                "microsoft.keyvault",
                "vaults",
                _,
            ] => {
                let (sub, rg, name) = (segs[1], segs[3], segs[7]);
                ev.vault = Some(name.to_string());
                match m {
                    Method::PUT => {
                        ev.operation_name = "VaultPut".into();
                        self.put_vault(&claims, sub, rg, name, json_body()?, false)
                            .await
                    }
                    Method::PATCH => {
                        ev.operation_name = "VaultPatch".into();
                        self.put_vault(&claims, sub, rg, name, json_body()?, true)
                            .await
                    }
                    Method::GET => {
                        ev.operation_name = "VaultGet".into();
                        let v = self.vault_in(sub, rg, name)?;
                        let rec = v.record.read().clone();
                        self.authorize_vault(&claims, &rec, "Microsoft.KeyVault/vaults/read")
                            .await?;
                        Ok(json_response(StatusCode::OK, &self.vault_json(&rec)))
                    }
                    Method::DELETE => {
                        ev.operation_name = "VaultDelete".into();
                        self.delete_vault(&claims, sub, rg, name).await
                    }
                    _ => Err(ApiError::method_not_allowed()),
                }
            }
            [
                "subscriptions",
                _,
                "resourcegroups",
                _,
                "providers",
                "microsoft.keyvault",
                "vaults",
                _,
                "accesspolicies",
                op,
            ] if m == Method::PUT => {
                ev.operation_name = "VaultAccessPolicy".into();
                ev.vault = Some(segs[7].to_string());
                self.access_policies(&claims, segs[1], segs[3], segs[7], op, json_body()?)
                    .await
            }
            [
                "subscriptions",
                _,
                "resourcegroups",
                _,
                "providers",
                "microsoft.keyvault",
                "vaults",
                _,
                rest @ ..,
            ] => {
                ev.vault = Some(segs[7].to_string());
                let (key_scope, ra) = match rest {
                    [
                        "providers",
                        "microsoft.authorization",
                        "roleassignments",
                        tail @ ..,
                    ] => (None, tail),
                    [
                        "keys",
                        _,
                        "providers",
                        "microsoft.authorization",
                        "roleassignments",
                        tail @ ..,
                    ] => (Some(segs[9]), tail),
                    _ => return Err(ApiError::not_found_route()),
                };
                let v = self.vault_in(segs[1], segs[3], segs[7])?;
                match ra {
                    [] if m == Method::GET => {
                        ev.operation_name = "RoleAssignmentList".into();
                        let rec = v.record.read().clone();
                        self.authorize_vault(
                            &claims,
                            &rec,
                            "Microsoft.Authorization/roleAssignments/read",
                        )
                        .await?;
                        let list: Vec<Value> = rec
                            .role_assignments
                            .iter()
                            .map(|r| role_json(&rec, r))
                            .collect();
                        Ok(json_response(StatusCode::OK, &json!({"value": list})))
                    }
                    [_] => {
                        let guid = segs[segs.len() - 1];
                        match m {
                            Method::PUT => {
                                ev.operation_name = "RoleAssignmentPut".into();
                                self.put_role(&claims, &v, key_scope, guid, json_body()?)
                                    .await
                            }
                            Method::GET => {
                                ev.operation_name = "RoleAssignmentGet".into();
                                let rec = v.record.read().clone();
                                self.authorize_vault(
                                    &claims,
                                    &rec,
                                    "Microsoft.Authorization/roleAssignments/read",
                                )
                                .await?;
                                rec.role_assignments
                                    .iter()
                                    .find(|r| r.name.eq_ignore_ascii_case(guid))
                                    .map(|r| json_response(StatusCode::OK, &role_json(&rec, r)))
                                    .ok_or_else(|| role_not_found(guid))
                            }
                            Method::DELETE => {
                                ev.operation_name = "RoleAssignmentDelete".into();
                                self.delete_role(&claims, &v, guid).await
                            }
                            _ => Err(ApiError::method_not_allowed()),
                        }
                    }
                    _ => Err(ApiError::not_found_route()),
                }
            }
            _ => Err(ApiError::not_found_route()),
        }
    }
}

fn role_not_found(guid: &str) -> ApiError {
    arm_error(
        StatusCode::NOT_FOUND,
        "RoleAssignmentNotFound",
        format!("The role assignment '{guid}' is not found."),
    )
}

fn role_json(rec: &VaultRecord, r: &RoleAssignment) -> Value {
    json!({
        "id": format!("{}/providers/Microsoft.Authorization/roleAssignments/{}", r.scope, r.name),
        "name": r.name,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": format!(
                "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{}",
                rec.subscription, r.role_definition_id
            ),
            "principalId": r.principal_id,
            "scope": r.scope,
        }
    })
}

fn ts_rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn deleted_vault_json(rec: &VaultRecord) -> Value {
    let d = rec.deleted.unwrap_or(DeletedInfo {
        deleted_date: 0,
        scheduled_purge_date: 0,
    });
    json!({
        "id": format!(
            "/subscriptions/{}/providers/Microsoft.KeyVault/locations/{}/deletedVaults/{}",
            rec.subscription, rec.location, rec.name
        ),
        "name": rec.name,
        "type": "Microsoft.KeyVault/deletedVaults",
        "properties": {
            "vaultId": rec.resource_id(),
            "location": rec.location,
            "deletionDate": ts_rfc3339(d.deleted_date),
            "scheduledPurgeDate": ts_rfc3339(d.scheduled_purge_date),
            "tags": rec.tags,
            "purgeProtectionEnabled": rec.purge_protection,
        }
    })
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    arm_error(StatusCode::BAD_REQUEST, "BadRequest", msg)
}

/// Parses `accessPolicies` (ARM shape) for a vault of `tenant`.
fn parse_access_policies(v: &Value, tenant: &str) -> Result<Vec<AccessPolicy>, ApiError> {
    let Some(list) = v.as_array() else {
        return Err(bad_request("accessPolicies must be an array."));
    };
    if list.len() > 1024 {
        return Err(bad_request(
            "A vault can have at most 1024 access policies.",
        ));
    }
    let mut out: Vec<AccessPolicy> = Vec::new();
    for ap in list {
        let object_id = ap
            .get("objectId")
            .and_then(|x| x.as_str())
            .ok_or_else(|| bad_request("accessPolicies[].objectId is required."))?
            .to_string();
        let tid = ap
            .get("tenantId")
            .and_then(|x| x.as_str())
            .unwrap_or(tenant);
        if !tid.eq_ignore_ascii_case(tenant) {
            return Err(bad_request(
                "Access policies must use the same tenant id as the vault.",
            ));
        }
        let list_of = |k: &str| -> Vec<String> {
            ap.pointer(&format!("/permissions/{k}"))
                .and_then(|x| x.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut keys = Vec::new();
        for k in list_of("keys") {
            let canon = POLICY_KEY_PERMISSIONS
                .iter()
                .find(|p| p.eq_ignore_ascii_case(&k))
                .ok_or_else(|| bad_request(format!("Invalid key permission '{k}'.")))?;
            keys.push(canon.to_string());
        }
        out.push(AccessPolicy {
            tenant_id: tenant.to_string(),
            object_id,
            application_id: ap
                .get("applicationId")
                .and_then(|x| x.as_str())
                .map(str::to_string),
            keys,
            secrets: list_of("secrets"),
            certificates: list_of("certificates"),
        });
    }
    Ok(out)
}

fn access_policy_json(ap: &AccessPolicy) -> Value {
    let mut v = json!({
        "tenantId": ap.tenant_id,
        "objectId": ap.object_id,
        "permissions": {"keys": ap.keys, "secrets": ap.secrets, "certificates": ap.certificates},
    });
    if let Some(a) = &ap.application_id {
        v["applicationId"] = json!(a);
    }
    v
}

fn parse_network_acls(v: &Value) -> Result<NetworkAcls, ApiError> {
    let mut acls = NetworkAcls::default();
    if let Some(d) = v.get("defaultAction").and_then(|x| x.as_str()) {
        acls.default_action = match d.to_ascii_lowercase().as_str() {
            "allow" => "Allow".into(),
            "deny" => "Deny".into(),
            _ => {
                return Err(bad_request(format!(
                    "Invalid networkAcls.defaultAction '{d}'."
                )));
            }
        };
    }
    if let Some(b) = v.get("bypass").and_then(|x| x.as_str()) {
        acls.bypass = match b.to_ascii_lowercase().as_str() {
            "azureservices" => "AzureServices".into(),
            "none" => "None".into(),
            _ => return Err(bad_request(format!("Invalid networkAcls.bypass '{b}'."))),
        };
    }
    if let Some(rules) = v.get("ipRules").and_then(|x| x.as_array()) {
        for r in rules {
            let val = r
                .get("value")
                .and_then(|x| x.as_str())
                .ok_or_else(|| bad_request("networkAcls.ipRules[].value is required."))?;
            let normalized = if val.contains('/') {
                val.to_string()
            } else if val.contains(':') {
                format!("{val}/128")
            } else {
                format!("{val}/32")
            };
            let (ip, len) = normalized.split_once('/').unwrap_or((val, "32"));
            let ip_ok = ip.parse::<std::net::IpAddr>().is_ok();
            let len_ok = len
                .parse::<u8>()
                .is_ok_and(|l| l <= if ip.contains(':') { 128 } else { 32 });
            if !ip_ok || !len_ok {
                return Err(bad_request(format!("Invalid IP rule '{val}'.")));
            }
            // Sanity: the network contains its own address.
            if let Ok(a) = ip.parse() {
                debug_assert!(cidr_contains(&normalized, a));
            }
            acls.ip_rules.push(normalized);
        }
    }
    Ok(acls)
}

impl MgmtHandler {
    fn vault_in(&self, sub: &str, rg: &str, name: &str) -> Result<Arc<VaultEntry>, ApiError> {
        let v = self
            .ctx
            .state
            .vault(name)
            .ok_or_else(|| not_found_vault(name))?;
        {
            let r = v.record.read();
            if r.deleted.is_some()
                || !r.subscription.eq_ignore_ascii_case(sub)
                || !r.resource_group.eq_ignore_ascii_case(rg)
            {
                return Err(not_found_vault(name));
            }
        }
        Ok(v)
    }

    fn deleted_vault(
        &self,
        sub: &str,
        loc: &str,
        name: &str,
    ) -> Result<(Arc<VaultEntry>, VaultRecord), ApiError> {
        let nf = || {
            arm_error(
                StatusCode::NOT_FOUND,
                "DeletedVaultNotFound",
                format!("The specified deleted vault '{name}' does not exist."),
            )
        };
        let v = self.ctx.state.vault(name).ok_or_else(nf)?;
        let rec = v.record.read().clone();
        if rec.deleted.is_none()
            || !rec.subscription.eq_ignore_ascii_case(sub)
            || !rec.location.eq_ignore_ascii_case(loc)
        {
            return Err(nf());
        }
        Ok((v, rec))
    }

    fn vault_json(&self, rec: &VaultRecord) -> Value {
        json!({
            "id": rec.resource_id(),
            "name": rec.name,
            "type": "Microsoft.KeyVault/vaults",
            "location": rec.location,
            "tags": rec.tags,
            "systemData": {
                "createdBy": rec.created_by,
                "createdByType": "Application",
                "createdAt": ts_rfc3339(rec.created_at),
                "lastModifiedAt": ts_rfc3339(rec.updated_at),
            },
            "properties": {
                "tenantId": rec.tenant_id,
                "sku": {"family": rec.sku_family, "name": rec.sku_name},
                "accessPolicies": rec.access_policies.iter().map(access_policy_json).collect::<Vec<_>>(),
                "enabledForDeployment": false,
                "enabledForDiskEncryption": false,
                "enabledForTemplateDeployment": false,
                "enableSoftDelete": true,
                "softDeleteRetentionInDays": rec.soft_delete_retention_days,
                "enableRbacAuthorization": rec.rbac,
                "enablePurgeProtection": rec.purge_protection,
                "vaultUri": format!("{}/", self.ctx.vault_base(rec.port)),
                "provisioningState": "Succeeded",
                "networkAcls": {
                    "bypass": rec.network_acls.bypass,
                    "defaultAction": rec.network_acls.default_action,
                    "ipRules": rec.network_acls.ip_rules.iter().map(|r| json!({"value": r})).collect::<Vec<_>>(),
                    "virtualNetworkRules": [],
                },
                "publicNetworkAccess": rec.public_network_access,
            }
        })
    }

    async fn list_vaults(
        &self,
        claims: &Claims,
        sub: &str,
        rg: Option<&str>,
    ) -> Result<Response<Body>, ApiError> {
        let admin = self.is_admin(claims).await;
        let list: Vec<Value> = self
            .ctx
            .state
            .vaults()
            .iter()
            .map(|v| v.record.read().clone())
            .filter(|r| {
                r.deleted.is_none()
                    && r.subscription.eq_ignore_ascii_case(sub)
                    && rg.is_none_or(|g| r.resource_group.eq_ignore_ascii_case(g))
                    && r.tenant_id.eq_ignore_ascii_case(&claims.tid)
                    && (admin || r.created_by.eq_ignore_ascii_case(&claims.oid))
            })
            .map(|r| self.vault_json(&r))
            .collect();
        Ok(json_response(StatusCode::OK, &json!({"value": list})))
    }

    /// PUT (create / full update / recover) and PATCH (partial update).
    async fn put_vault(
        &self,
        claims: &Claims,
        sub: &str,
        rg: &str,
        name: &str,
        body: Value,
        patch: bool,
    ) -> Result<Response<Body>, ApiError> {
        if !valid_vault_name(name) {
            return Err(arm_error(
                StatusCode::BAD_REQUEST,
                "VaultNameNotValid",
                format!(
                    "The vault name '{name}' is invalid. A vault's name must be between 3-24 alphanumeric characters. The name must begin with a letter, end with a letter or digit, and not contain consecutive hyphens."
                ),
            ));
        }
        let props = body.get("properties").cloned().unwrap_or(json!({}));
        let create_mode = props
            .get("createMode")
            .and_then(|x| x.as_str())
            .unwrap_or("default");
        let existing = self.ctx.state.vault(name);
        let now = self.ctx.state.clock.now_global();

        // Recover a soft-deleted vault.
        if create_mode.eq_ignore_ascii_case("recover") {
            let v = existing.ok_or_else(|| {
                arm_error(
                    StatusCode::NOT_FOUND,
                    "DeletedVaultNotFound",
                    format!("The specified deleted vault '{name}' does not exist."),
                )
            })?;
            let rec = v.record.read().clone();
            if rec.deleted.is_none() {
                return Err(bad_request(format!(
                    "The vault '{name}' is not in a deleted state."
                )));
            }
            if !rec.subscription.eq_ignore_ascii_case(sub)
                || !rec.resource_group.eq_ignore_ascii_case(rg)
            {
                return Err(bad_request(
                    "The deleted vault belongs to a different resource group.",
                ));
            }
            self.authorize_vault(claims, &rec, "Microsoft.KeyVault/vaults/write")
                .await?;
            let rec = self.ctx.state.update_vault(&v, |r| {
                r.deleted = None;
                r.updated_at = now;
                Ok(())
            })?;
            self.ctx
                .start_vault_listener(&v, rec.port)
                .await
                .map_err(ApiError::from)?;
            return Ok(json_response(StatusCode::OK, &self.vault_json(&rec)));
        }

        match existing {
            Some(v) => {
                let current = v.record.read().clone();
                if current.deleted.is_some() {
                    return Err(arm_error(
                        StatusCode::CONFLICT,
                        "ConflictError",
                        format!(
                            "A vault with the same name already exists in deleted state. You need to either recover or purge existing key vault. Vault: {name}"
                        ),
                    ));
                }
                if !current.subscription.eq_ignore_ascii_case(sub)
                    || !current.resource_group.eq_ignore_ascii_case(rg)
                {
                    return Err(arm_error(
                        StatusCode::CONFLICT,
                        "VaultAlreadyExists",
                        format!(
                            "The vault name '{name}' is already in use. Vault names are globally unique so it is possible that the name is already taken."
                        ),
                    ));
                }
                self.authorize_vault(claims, &current, "Microsoft.KeyVault/vaults/write")
                    .await?;
                let mut next = current.clone();
                apply_props(&mut next, &props, patch, false)?;
                if let Some(t) = body.get("tags").and_then(|t| t.as_object()) {
                    next.tags = t
                        .iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                        .collect();
                }
                next.updated_at = now;
                let rec = self.ctx.state.update_vault(&v, move |r| {
                    *r = next;
                    Ok(())
                })?;
                Ok(json_response(StatusCode::OK, &self.vault_json(&rec)))
            }
            None => {
                if patch {
                    return Err(not_found_vault(name));
                }
                let tenant = props
                    .get("tenantId")
                    .and_then(|x| x.as_str())
                    .ok_or_else(|| bad_request("properties.tenantId is required."))?
                    .to_string();
                if !tenant.eq_ignore_ascii_case(&claims.tid) {
                    return Err(arm_error(
                        StatusCode::FORBIDDEN,
                        "AuthorizationFailed",
                        "The vault's tenantId must be the caller's tenant.",
                    ));
                }
                if props.get("sku").is_none() {
                    return Err(bad_request("properties.sku is required."));
                }
                let location = body
                    .get("location")
                    .and_then(|x| x.as_str())
                    .unwrap_or("local")
                    .to_string();
                let mut rec = VaultRecord {
                    name: name.to_string(),
                    subscription: sub.to_string(),
                    resource_group: rg.to_string(),
                    location,
                    tenant_id: tenant,
                    sku_family: "A".into(),
                    sku_name: "standard".into(),
                    soft_delete_retention_days: 90,
                    purge_protection: false,
                    rbac: false,
                    access_policies: Vec::new(),
                    network_acls: NetworkAcls::default(),
                    public_network_access: "Enabled".into(),
                    port: 0,
                    created_by: claims.oid.clone(),
                    created_at: now,
                    updated_at: now,
                    tags: body
                        .get("tags")
                        .and_then(|t| t.as_object())
                        .map(|t| {
                            t.iter()
                                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                                .collect()
                        })
                        .unwrap_or_default(),
                    role_assignments: Vec::new(),
                    deleted: None,
                };
                apply_props(&mut rec, &props, false, true)?;
                // Persist, bind a fresh port, then record the port (re-bound at restart).
                let v = self
                    .ctx
                    .state
                    .create_vault(rec.clone())
                    .map_err(ApiError::from)?;
                let port = match self.ctx.start_vault_listener(&v, 0).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = self.ctx.state.purge_vault(&v);
                        return Err(ApiError::from(e));
                    }
                };
                let rec = self.ctx.state.update_vault(&v, |r| {
                    r.port = port;
                    Ok(())
                })?;
                Ok(json_response(StatusCode::CREATED, &self.vault_json(&rec)))
            }
        }
    }

    async fn delete_vault(
        &self,
        claims: &Claims,
        sub: &str,
        rg: &str,
        name: &str,
    ) -> Result<Response<Body>, ApiError> {
        let v = match self.vault_in(sub, rg, name) {
            Ok(v) => v,
            Err(_) => return Ok(crate::http_util::empty_response(StatusCode::NO_CONTENT)),
        };
        let rec = v.record.read().clone();
        self.authorize_vault(claims, &rec, "Microsoft.KeyVault/vaults/delete")
            .await?;
        let now = self.ctx.state.clock.now_global();
        self.ctx.state.update_vault(&v, |r| {
            r.deleted = Some(DeletedInfo {
                deleted_date: now,
                scheduled_purge_date: now + r.soft_delete_retention_days as i64 * 86_400,
            });
            Ok(())
        })?;
        self.ctx.stop_vault_listener(&v).await;
        Ok(json_response(StatusCode::OK, &json!({})))
    }

    async fn access_policies(
        &self,
        claims: &Claims,
        sub: &str,
        rg: &str,
        name: &str,
        op: &str,
        body: Value,
    ) -> Result<Response<Body>, ApiError> {
        let v = self.vault_in(sub, rg, name)?;
        let rec = v.record.read().clone();
        self.authorize_vault(
            claims,
            &rec,
            "Microsoft.KeyVault/vaults/accessPolicies/write",
        )
        .await?;
        let given = parse_access_policies(
            body.pointer("/properties/accessPolicies")
                .unwrap_or(&json!([])),
            &rec.tenant_id,
        )?;
        let op = op.to_ascii_lowercase();
        let rec = self.ctx.state.update_vault(&v, |r| {
            match op.as_str() {
                "replace" => r.access_policies = given.clone(),
                "add" => {
                    for g in &given {
                        match r
                            .access_policies
                            .iter_mut()
                            .find(|p| p.object_id.eq_ignore_ascii_case(&g.object_id))
                        {
                            Some(p) => {
                                for k in &g.keys {
                                    if !p.keys.contains(k) {
                                        p.keys.push(k.clone());
                                    }
                                }
                            }
                            None => r.access_policies.push(g.clone()),
                        }
                    }
                }
                "remove" => {
                    for g in &given {
                        if let Some(p) = r
                            .access_policies
                            .iter_mut()
                            .find(|p| p.object_id.eq_ignore_ascii_case(&g.object_id))
                        {
                            p.keys.retain(|k| !g.keys.contains(k));
                        }
                    }
                    r.access_policies.retain(|p| {
                        !(p.keys.is_empty() && p.secrets.is_empty() && p.certificates.is_empty())
                    });
                }
                _ => {
                    return Err(bad_request(format!(
                        "Unknown access policy operation '{op}'."
                    )));
                }
            }
            Ok(())
        })?;
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "id": format!("{}/accessPolicies/{}", rec.resource_id(), op),
                "type": "Microsoft.KeyVault/vaults/accessPolicies",
                "properties": {"accessPolicies": rec.access_policies.iter().map(access_policy_json).collect::<Vec<_>>()},
            }),
        ))
    }

    async fn put_role(
        &self,
        claims: &Claims,
        v: &Arc<VaultEntry>,
        key_scope: Option<&str>,
        guid: &str,
        body: Value,
    ) -> Result<Response<Body>, ApiError> {
        let rec = v.record.read().clone();
        self.authorize_vault(
            claims,
            &rec,
            "Microsoft.Authorization/roleAssignments/write",
        )
        .await?;
        if !guid_like(guid) {
            return Err(bad_request(format!(
                "The role assignment name '{guid}' is not a valid GUID."
            )));
        }
        let role_def = body
            .pointer("/properties/roleDefinitionId")
            .and_then(|x| x.as_str())
            .ok_or_else(|| bad_request("properties.roleDefinitionId is required."))?;
        let role_guid = role_def
            .rsplit('/')
            .next()
            .unwrap_or(role_def)
            .to_ascii_lowercase();
        if role_data_actions(&role_guid).is_none() {
            return Err(arm_error(
                StatusCode::BAD_REQUEST,
                "RoleDefinitionDoesNotExist",
                format!("The specified role definition with ID '{role_guid}' does not exist."),
            ));
        }
        let principal = body
            .pointer("/properties/principalId")
            .and_then(|x| x.as_str())
            .ok_or_else(|| bad_request("properties.principalId is required."))?
            .to_string();
        let scope = match key_scope {
            Some(k) => format!("{}/keys/{}", rec.resource_id(), k),
            None => rec.resource_id(),
        };
        let ra = RoleAssignment {
            name: guid.to_ascii_lowercase(),
            role_definition_id: role_guid,
            principal_id: principal,
            scope,
        };
        let mut created = true;
        let rec = self.ctx.state.update_vault(v, |r| {
            if let Some(existing) = r.role_assignments.iter().find(|x| x.name == ra.name) {
                if *existing == ra {
                    created = false;
                    return Ok(());
                }
                return Err(arm_error(
                    StatusCode::CONFLICT,
                    "RoleAssignmentUpdateNotPermitted",
                    "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
                ));
            }
            if r.role_assignments.iter().any(|x| {
                x.role_definition_id == ra.role_definition_id
                    && x.principal_id.eq_ignore_ascii_case(&ra.principal_id)
                    && x.scope.eq_ignore_ascii_case(&ra.scope)
            }) {
                return Err(arm_error(StatusCode::CONFLICT, "RoleAssignmentExists", "The role assignment already exists."));
            }
            r.role_assignments.push(ra.clone());
            Ok(())
        })?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(json_response(status, &role_json(&rec, &ra)))
    }

    async fn delete_role(
        &self,
        claims: &Claims,
        v: &Arc<VaultEntry>,
        guid: &str,
    ) -> Result<Response<Body>, ApiError> {
        let rec = v.record.read().clone();
        self.authorize_vault(
            claims,
            &rec,
            "Microsoft.Authorization/roleAssignments/delete",
        )
        .await?;
        let Some(existing) = rec
            .role_assignments
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(guid))
            .cloned()
        else {
            return Ok(crate::http_util::empty_response(StatusCode::NO_CONTENT));
        };
        self.ctx.state.update_vault(v, |r| {
            r.role_assignments
                .retain(|x| !x.name.eq_ignore_ascii_case(guid));
            Ok(())
        })?;
        Ok(json_response(StatusCode::OK, &role_json(&rec, &existing)))
    }

    /// `/dev/clock`, `/dev/scheduler/run`, `/dev/vaults/{name}/{clock|unreachable|firewall}`.
    async fn dev(
        &self,
        lower: &[&str],
        orig: &[&str],
        body: Value,
        ev: &mut AuditEvent,
    ) -> Result<Response<Body>, ApiError> {
        let seconds = || -> Result<i64, ApiError> {
            let s = body
                .get("seconds")
                .and_then(|x| x.as_i64())
                .ok_or_else(|| bad_request("seconds is required."))?;
            if s < 0 {
                return Err(bad_request("The clock only moves forward."));
            }
            Ok(s)
        };
        let flag = |k: &str| -> Result<bool, ApiError> {
            body.get(k)
                .and_then(|x| x.as_bool())
                .ok_or_else(|| bad_request(format!("{k} (bool) is required.")))
        };
        match lower {
            ["clock"] => {
                ev.operation_name = "DevClockShift".into();
                self.ctx.state.clock.shift_global(seconds()?);
                self.run_scheduler().await;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"now": self.ctx.state.clock.now_global()}),
                ))
            }
            ["scheduler", "run"] => {
                ev.operation_name = "DevSchedulerRun".into();
                self.run_scheduler().await;
                Ok(json_response(StatusCode::OK, &json!({})))
            }
            ["vaults", _, what] => {
                let name = orig[1];
                ev.vault = Some(name.to_string());
                let v = self
                    .ctx
                    .state
                    .vault(name)
                    .ok_or_else(|| not_found_vault(name))?;
                match *what {
                    "clock" => {
                        ev.operation_name = "DevVaultClockShift".into();
                        self.ctx.state.clock.shift_vault(&v.name(), seconds()?);
                        self.run_scheduler().await;
                        Ok(json_response(
                            StatusCode::OK,
                            &json!({"now": self.ctx.state.clock.now(&v.name())}),
                        ))
                    }
                    "unreachable" => {
                        ev.operation_name = "DevVaultUnreachable".into();
                        let on = flag("enabled")?;
                        v.unreachable.store(on, Ordering::SeqCst);
                        if on {
                            self.ctx.stop_vault_listener(&v).await;
                        } else if !v.is_deleted() {
                            let port = v.record.read().port;
                            self.ctx
                                .start_vault_listener(&v, port)
                                .await
                                .map_err(ApiError::from)?;
                        }
                        Ok(json_response(StatusCode::OK, &json!({"unreachable": on})))
                    }
                    "firewall" => {
                        ev.operation_name = "DevVaultFirewall".into();
                        let on = flag("deny")?;
                        v.firewall_deny.store(on, Ordering::SeqCst);
                        Ok(json_response(StatusCode::OK, &json!({"deny": on})))
                    }
                    _ => Err(ApiError::not_found_route()),
                }
            }
            _ => Err(ApiError::not_found_route()),
        }
    }

    async fn run_scheduler(&self) {
        let ctx = self.ctx.clone();
        let _ = tokio::task::spawn_blocking(move || crate::rotation::tick(&ctx)).await;
    }
}

/// Applies ARM `properties` to a vault record. `patch`: absent fields keep their values.
fn apply_props(
    rec: &mut VaultRecord,
    props: &Value,
    patch: bool,
    creating: bool,
) -> Result<(), ApiError> {
    let _ = patch;
    if let Some(sku) = props.get("sku") {
        if let Some(n) = sku.get("name").and_then(|x| x.as_str()) {
            rec.sku_name = match n.to_ascii_lowercase().as_str() {
                "standard" => "standard".into(),
                "premium" => "premium".into(),
                _ => return Err(bad_request(format!("Invalid sku name '{n}'."))),
            };
        }
        if let Some(f) = sku.get("family").and_then(|x| x.as_str()) {
            if f != "A" {
                return Err(bad_request(format!("Invalid sku family '{f}'.")));
            }
            rec.sku_family = f.into();
        }
    }
    if let Some(t) = props.get("tenantId").and_then(|x| x.as_str())
        && !creating
        && !t.eq_ignore_ascii_case(&rec.tenant_id)
    {
        return Err(bad_request("The tenant of a vault cannot be changed."));
    }
    if props.get("enableSoftDelete").and_then(|x| x.as_bool()) == Some(false) {
        return Err(bad_request(
            "The property \"enableSoftDelete\" cannot be set to false. Soft delete is always enabled.",
        ));
    }
    if let Some(d) = props
        .get("softDeleteRetentionInDays")
        .filter(|x| !x.is_null())
    {
        let d = d
            .as_u64()
            .ok_or_else(|| bad_request("softDeleteRetentionInDays must be an integer."))?;
        if !(7..=90).contains(&d) {
            return Err(bad_request(
                "softDeleteRetentionInDays accepts values from 7 to 90.",
            ));
        }
        if creating {
            rec.soft_delete_retention_days = d as u32;
        } else if d as u32 != rec.soft_delete_retention_days {
            return Err(bad_request(
                "softDeleteRetentionInDays can only be set when the vault is created.",
            ));
        }
    }
    if let Some(p) = props.get("enablePurgeProtection").filter(|x| !x.is_null()) {
        let p = p
            .as_bool()
            .ok_or_else(|| bad_request("enablePurgeProtection must be a boolean."))?;
        if !p && rec.purge_protection {
            return Err(bad_request(
                "The property \"enablePurgeProtection\" cannot be set to false. Enabling the purge protection for a vault is an irreversible action.",
            ));
        }
        rec.purge_protection = p;
    }
    if let Some(r) = props
        .get("enableRbacAuthorization")
        .and_then(|x| x.as_bool())
    {
        rec.rbac = r;
    }
    if let Some(ap) = props.get("accessPolicies").filter(|x| !x.is_null()) {
        rec.access_policies = parse_access_policies(ap, &rec.tenant_id)?;
    }
    if let Some(n) = props.get("networkAcls").filter(|x| !x.is_null()) {
        rec.network_acls = parse_network_acls(n)?;
    }
    if let Some(p) = props.get("publicNetworkAccess").and_then(|x| x.as_str()) {
        rec.public_network_access = match p.to_ascii_lowercase().as_str() {
            "enabled" => "Enabled".into(),
            "disabled" => "Disabled".into(),
            _ => return Err(bad_request(format!("Invalid publicNetworkAccess '{p}'."))),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_names() {
        assert!(valid_vault_name("my-vault1"));
        assert!(!valid_vault_name("ab"));
        assert!(!valid_vault_name("1vault"));
        assert!(!valid_vault_name("my--vault"));
        assert!(!valid_vault_name("vault-"));
        assert!(!valid_vault_name("a_b_c"));
    }

    #[test]
    fn network_acl_normalization() {
        let a = parse_network_acls(&json!({"defaultAction":"deny","bypass":"None","ipRules":[{"value":"10.0.0.1"},{"value":"10.1.0.0/16"}]})).unwrap();
        assert_eq!(a.default_action, "Deny");
        assert_eq!(a.bypass, "None");
        assert_eq!(
            a.ip_rules,
            vec!["10.0.0.1/32".to_string(), "10.1.0.0/16".to_string()]
        );
        assert!(parse_network_acls(&json!({"ipRules":[{"value":"nope"}]})).is_err());
    }
}
