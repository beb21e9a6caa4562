//! Role assignments (Azure RBAC) on a vault or on one of its keys: list, put (idempotent
//! for the same assignment, 409 for a changed one), get, delete. The vault is looked up
//! before the method or the tail of the path is judged, as ARM does.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::{Mgmt, arm_error, bad_request};
use crate::api_error::ApiError;
use crate::auth::Claims;
use crate::authz::role_data_actions;
use crate::http_util::{Body, json_response};
use crate::model::{RoleAssignment, VaultRecord};
use crate::state::VaultEntry;

/// Segment index of the key in a key-scoped assignment path
/// (`.../vaults/{v}/keys/{k}/providers/...`).
const KEY_SEGMENT: usize = 9;

/// Where an assignment path points: the vault, the key scope, and the assignment name.
struct Target {
    vault: Arc<VaultEntry>,
    key_scope: Option<String>,
}

impl Mgmt {
    /// The vault of a role-assignment path (404 when it isn't there), and the key when the
    /// path is key-scoped.
    fn target(&self) -> Result<Target, ApiError> {
        let (sub, rg, name) = self.vault_path();
        let vault = self.vault_in(sub, rg, name)?;
        let key_scope = self
            .segs
            .get(KEY_SEGMENT - 1)
            .eq_ignore_ascii_case("keys")
            .then(|| self.segs.get(KEY_SEGMENT).to_string());
        Ok(Target { vault, key_scope })
    }
}

pub(super) async fn list(m: Mgmt) -> Result<Response<Body>, ApiError> {
    let t = m.target()?;
    m.set_operation("RoleAssignmentList");
    let rec = t.vault.record.read().clone();
    m.authorize_vault(
        &m.claims,
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

pub(super) async fn put(m: Mgmt) -> Result<Response<Body>, ApiError> {
    let t = m.target()?;
    m.set_operation("RoleAssignmentPut");
    let guid = m.segs.last();
    let body = m.json_body()?;
    m.put_role(&m.claims, &t.vault, t.key_scope.as_deref(), guid, body)
        .await
}

pub(super) async fn get(m: Mgmt) -> Result<Response<Body>, ApiError> {
    let t = m.target()?;
    m.set_operation("RoleAssignmentGet");
    let guid = m.segs.last();
    let rec = t.vault.record.read().clone();
    m.authorize_vault(
        &m.claims,
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

pub(super) async fn delete(m: Mgmt) -> Result<Response<Body>, ApiError> {
    let t = m.target()?;
    m.set_operation("RoleAssignmentDelete");
    let guid = m.segs.last();
    m.delete_role(&m.claims, &t.vault, guid).await
}

/// Any other method on an assignment: the vault is looked up first, then 405.
pub(super) async fn wrong_method(m: Mgmt) -> Result<Response<Body>, ApiError> {
    m.target()?;
    Err(ApiError::method_not_allowed())
}

/// Anything else under an assignment path: the vault is looked up first, then 404.
pub(super) async fn not_found(m: Mgmt) -> Result<Response<Body>, ApiError> {
    m.target()?;
    Err(ApiError::not_found_route())
}

fn guid_like(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
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

impl Mgmt {
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
}
