//! Vaults: list (per subscription or resource group), create / update / recover (PUT),
//! partial update (PATCH), get, delete (soft: the listener closes before the answer), and
//! the ARM properties a vault accepts.

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::access_policies::{access_policy_json, parse_access_policies};
use super::network_acls::parse_network_acls;
use super::{Mgmt, arm_error, bad_request, not_found_vault};
use crate::api_error::ApiError;
use crate::auth::Claims;
use crate::http_util::{Body, json_response};
use crate::model::{DeletedInfo, NetworkAcls, VaultRecord};

/// `GET .../vaults` of a subscription or of a resource group.
pub(super) async fn list(m: Mgmt) -> Result<Response<Body>, ApiError> {
    let sub = m.segs.get(1);
    let rg = (m.segs.len() == 7).then(|| m.segs.get(3));
    m.list_vaults(&m.claims, sub, rg).await
}

/// PUT / PATCH / GET / DELETE of `.../vaults/{name}`.
pub(super) async fn put(m: Mgmt) -> Result<Response<Body>, ApiError> {
    let (sub, rg, name) = m.vault_path();
    let body = m.json_body()?;
    m.put_vault(&m.claims, sub, rg, name, body, false).await
}

pub(super) async fn patch(m: Mgmt) -> Result<Response<Body>, ApiError> {
    let (sub, rg, name) = m.vault_path();
    let body = m.json_body()?;
    m.put_vault(&m.claims, sub, rg, name, body, true).await
}

pub(super) async fn get(m: Mgmt) -> Result<Response<Body>, ApiError> {
    let (sub, rg, name) = m.vault_path();
    let v = m.vault_in(sub, rg, name)?;
    let rec = v.record.read().clone();
    m.authorize_vault(&m.claims, &rec, "Microsoft.KeyVault/vaults/read")
        .await?;
    Ok(json_response(StatusCode::OK, &m.vault_json(&rec)))
}

pub(super) async fn delete(m: Mgmt) -> Result<Response<Body>, ApiError> {
    let (sub, rg, name) = m.vault_path();
    m.delete_vault(&m.claims, sub, rg, name).await
}

/// Vault names: 3-24 characters, letters/digits/hyphens, start with a letter, end with a
/// letter or digit, no consecutive hyphens.
pub(super) fn valid_vault_name(n: &str) -> bool {
    let b = n.as_bytes();
    (3..=24).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && !n.contains("--")
}

pub(super) fn ts_rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl Mgmt {
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
}
