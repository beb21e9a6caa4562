//! Soft delete and what follows it: delete (a `DeletedKeyBundle` with its recovery id and
//! scheduled purge date), get a deleted key, recover, purge (refused under purge
//! protection).

use http::{Response, StatusCode};

use super::bundle::{deleted_bundle, key_bundle_response, live_record};
use super::call::Call;
use crate::api_error::ApiError;
use crate::http_util::{Body, empty_response, json_response};
use crate::model::DeletedInfo;

/// `DELETE /keys/{name}`: soft delete.
pub(super) async fn delete(call: Call) -> Result<Response<Body>, ApiError> {
    let call = &call;
    let name = call.name.as_str();
    let ctx = call.ctx.clone();
    let vault = call.vault.clone();
    let name_s = name.to_string();
    let now = call.now;
    let days = call.vault.record.read().soft_delete_retention_days as i64;
    let rec = call
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

/// `GET /deletedkeys/{name}`.
pub(super) async fn get(call: Call) -> Result<Response<Body>, ApiError> {
    let (call, name) = (&call, call.name.as_str());
    let rec = {
        let keys = call.vault.keys.read();
        match keys.get(&name.to_ascii_lowercase()) {
            Some(e) if e.record.deleted.is_some() => e.record.clone(),
            _ => return Err(ApiError::deleted_key_not_found(name)),
        }
    };
    Ok(json_response(StatusCode::OK, &deleted_bundle(call, &rec)?))
}

/// `POST /deletedkeys/{name}/recover`.
pub(super) async fn recover(call: Call) -> Result<Response<Body>, ApiError> {
    let call = &call;
    let name = call.name.as_str();
    let ctx = call.ctx.clone();
    let vault = call.vault.clone();
    let name_s = name.to_string();
    let rec = call
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

/// `DELETE /deletedkeys/{name}` (204; 403 under purge protection).
pub(super) async fn purge(call: Call) -> Result<Response<Body>, ApiError> {
    let call = &call;
    let name = call.name.as_str();
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
    let ctx = call.ctx.clone();
    let vault = call.vault.clone();
    let name_s = name.to_string();
    call.blocking(move || {
        ctx.state.mutate_key(&vault, &name_s, |cur| match cur {
            Some(r) if r.deleted.is_some() => Ok(None),
            _ => Err(ApiError::deleted_key_not_found(&name_s)),
        })
    })
    .await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}
