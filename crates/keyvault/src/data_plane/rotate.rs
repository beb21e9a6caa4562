//! Rotation: `POST /rotate` and the scheduler's rotations ([`rotate_now`]), and the key's
//! rotation policy (read, and written after [`super::policy::parse`] validated it).

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::bundle::{key_bundle_response, live_record};
use super::call::Call;
use super::keys::{add_version, new_version};
use super::params::{AttrsIn, parse_json};
use super::policy;
use crate::api_error::ApiError;
use crate::crypto;
use crate::duration::{checked_after, parse_iso8601};
use crate::http_util::{Body, json_response};
use crate::model::KeyRecord;
use crate::server::Ctx;
use crate::state::VaultEntry;

/// `POST /keys/{name}/rotate`.
pub(super) async fn rotate(call: Call) -> Result<Response<Body>, ApiError> {
    let call = &call;
    let name = call.name.as_str();
    let ctx = call.ctx.clone();
    let vault = call.vault.clone();
    let name_s = name.to_string();
    let now = call.now;
    let rec = call
        .blocking(move || rotate_now(&ctx, &vault, &name_s, now))
        .await?;
    key_bundle_response(call, &rec, None)
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

/// `GET /keys/{name}/rotationpolicy` (the default policy when none was set).
pub(super) async fn get_policy(call: Call) -> Result<Response<Body>, ApiError> {
    let (call, name) = (&call, call.name.as_str());
    let keys = call.vault.keys.read();
    let e = keys.get(&name.to_ascii_lowercase());
    let rec = live_record(e.map(|e| &e.record), name)?;
    Ok(json_response(StatusCode::OK, &policy_json(call, rec)))
}

/// `PUT /keys/{name}/rotationpolicy`.
pub(super) async fn set_policy(call: Call) -> Result<Response<Body>, ApiError> {
    let call = &call;
    let name = call.name.as_str();
    let body = &call.body[..];
    let v: Value = parse_json(body)?;
    let policy = policy::parse(&v, call.now)?;
    let ctx = call.ctx.clone();
    let vault = call.vault.clone();
    let name_s = name.to_string();
    let rec = call
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
    call.ctx.kick_scheduler();
    Ok(json_response(StatusCode::OK, &policy_json(call, &rec)))
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
