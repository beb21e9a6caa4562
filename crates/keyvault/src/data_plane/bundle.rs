//! Reading key records and rendering them: the live record and the version a path names,
//! and the JSON shapes (`KeyBundle`, `DeletedKeyBundle`, list items) with ids under the
//! vault's base URL.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::call::Call;
use crate::api_error::ApiError;
use crate::crypto::LoadedKey;
use crate::http_util::{Body, json_response};
use crate::jwk::b64u;
use crate::model::{KeyRecord, KeyVersion};

pub(super) fn live_record<'a>(
    cur: Option<&'a KeyRecord>,
    name: &str,
) -> Result<&'a KeyRecord, ApiError> {
    match cur {
        Some(r) if r.deleted.is_none() && !r.versions.is_empty() => Ok(r),
        _ => Err(ApiError::key_not_found(name)),
    }
}

pub(super) fn version_index(
    rec: &KeyRecord,
    name: &str,
    version: Option<&str>,
) -> Result<usize, ApiError> {
    match version {
        None => Ok(rec.versions.len() - 1),
        Some(v) => rec
            .versions
            .iter()
            .position(|k| k.version.eq_ignore_ascii_case(v))
            .ok_or_else(|| ApiError::key_not_found(&format!("{name}/{v}"))),
    }
}

pub(super) fn attributes_json(call: &Call, kv: &KeyVersion) -> Value {
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

pub(super) fn bundle_json(
    call: &Call,
    rec: &KeyRecord,
    kv: &KeyVersion,
    loaded: &LoadedKey,
) -> Value {
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

pub(super) fn loaded_for(
    call: &Call,
    name: &str,
    version: &str,
) -> Result<Arc<LoadedKey>, ApiError> {
    call.vault
        .keys
        .read()
        .get(&name.to_ascii_lowercase())
        .and_then(|e| e.loaded.get(version).cloned())
        .ok_or_else(ApiError::internal)
}

pub(super) fn key_bundle_response(
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

pub(super) fn deleted_bundle(call: &Call, rec: &KeyRecord) -> Result<Value, ApiError> {
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

pub(super) fn item_json(call: &Call, kid: String, kv: &KeyVersion) -> Value {
    let mut i = json!({ "kid": kid, "attributes": attributes_json(call, kv) });
    if !kv.tags.is_empty() {
        i["tags"] = json!(kv.tags);
    }
    i
}
