//! Access policies (the classic permission model): parsing the ARM shape, rendering it,
//! and `PUT .../accessPolicies/{add|replace|remove}`.

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::{Mgmt, bad_request};
use crate::api_error::ApiError;
use crate::auth::Claims;
use crate::authz::POLICY_KEY_PERMISSIONS;
use crate::http_util::{Body, json_response};
use crate::model::AccessPolicy;

/// `PUT .../vaults/{name}/accessPolicies/{op}`.
pub(super) async fn put(m: Mgmt) -> Result<Response<Body>, ApiError> {
    let (sub, rg, name) = m.vault_path();
    let op = m.segs.get(9);
    let body = m.json_body()?;
    m.access_policies(&m.claims, sub, rg, name, op, body).await
}

/// Parses `accessPolicies` (ARM shape) for a vault of `tenant`.
pub(super) fn parse_access_policies(
    v: &Value,
    tenant: &str,
) -> Result<Vec<AccessPolicy>, ApiError> {
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

pub(super) fn access_policy_json(ap: &AccessPolicy) -> Value {
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

impl Mgmt {
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
}
