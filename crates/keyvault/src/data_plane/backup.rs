//! Backup and restore: a key's whole record (every version) sealed under a key derived
//! from the root key for the vault's tenant, so a blob restores into any vault of the same
//! tenant and nowhere else.

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::bundle::{key_bundle_response, live_record};
use super::call::Call;
use super::params::parse_json;
use crate::api_error::ApiError;
use crate::http_util::{Body, json_response};
use crate::jwk::{b64u, b64u_decode};
use crate::model::KeyRecord;
use crate::root_key::RootKeyExt;

const BACKUP_MAGIC: &[u8] = b"StrongroomKeyVaultKeyBackupV1";

/// `POST /keys/{name}/backup`.
pub(super) async fn backup(call: Call) -> Result<Response<Body>, ApiError> {
    let call = &call;
    let name = call.name.as_str();
    let rec = {
        let keys = call.vault.keys.read();
        let e = keys.get(&name.to_ascii_lowercase());
        live_record(e.map(|e| &e.record), name)?.clone()
    };
    let tenant = call.vault.record.read().tenant_id.to_ascii_lowercase();
    let sealer = call
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

/// `POST /keys/restore` (409 when the name exists or is soft-deleted).
pub(super) async fn restore(call: Call) -> Result<Response<Body>, ApiError> {
    let call = &call;
    let body = &call.body[..];
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
    let sealer = call
        .ctx
        .root
        .sealer(format!("backup:{tenant}").as_bytes())?;
    let plain = sealer.open(BACKUP_MAGIC, sealed).map_err(|_| bad())?;
    let mut rec: KeyRecord = serde_json::from_slice(&plain).map_err(|_| bad())?;
    rec.deleted = None;
    let ctx = call.ctx.clone();
    let vault = call.vault.clone();
    let rec = call
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
    call.ctx.kick_scheduler();
    key_bundle_response(call, &rec, None)
}
