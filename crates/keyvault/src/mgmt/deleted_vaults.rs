//! Soft-deleted vaults: get, and purge (refused under purge protection).

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::vaults::ts_rfc3339;
use super::{Mgmt, arm_error};
use crate::api_error::ApiError;
use crate::http_util::{Body, json_response};
use crate::model::{DeletedInfo, VaultRecord};
use crate::state::VaultEntry;

/// `GET .../locations/{loc}/deletedVaults/{name}`.
pub(super) async fn get(m: Mgmt) -> Result<Response<Body>, ApiError> {
    let (sub, loc, name) = (m.segs.get(1), m.segs.get(5), m.segs.get(7));
    m.set_vault(name);
    let (_, rec) = m.deleted_vault(sub, loc, name)?;
    m.authorize_vault(
        &m.claims,
        &rec,
        "Microsoft.KeyVault/locations/deletedVaults/read",
    )
    .await?;
    Ok(json_response(StatusCode::OK, &deleted_vault_json(&rec)))
}

/// `POST .../locations/{loc}/deletedVaults/{name}/purge`.
pub(super) async fn purge(m: Mgmt) -> Result<Response<Body>, ApiError> {
    let (sub, loc, name) = (m.segs.get(1), m.segs.get(5), m.segs.get(7));
    m.set_vault(name);
    let (v, rec) = m.deleted_vault(sub, loc, name)?;
    m.authorize_vault(
        &m.claims,
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
    m.ctx.state.purge_vault(&v)?;
    Ok(json_response(StatusCode::OK, &json!({})))
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

impl Mgmt {
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
}
