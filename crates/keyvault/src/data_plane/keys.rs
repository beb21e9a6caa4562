//! Keys CRUD: create (RSA generation), import (JWK components, or a BYOK transfer blob
//! resolved by [`super::byok`]), get and update of a version. New versions are built and
//! appended here; rotation reuses [`new_version`] and [`add_version`].

use std::collections::BTreeMap;

use http::{Response, StatusCode};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::bundle::{bundle_json, key_bundle_response, live_record, version_index};
use super::byok;
use super::call::Call;
use super::params::{AttrsIn, parse_json, validate_key_ops, validate_tags};
use crate::api_error::ApiError;
use crate::crypto::{self, LoadedKey};
use crate::http_util::{Body, json_response};
use crate::jwk::{JsonWebKey, b64u_decode};
use crate::model::{KeyRecord, KeyVersion};
use crate::server::Ctx;
use crate::state::VaultEntry;

/// `POST /keys/{name}/create`: a new RSA key, or a new version of it.
pub(super) async fn create(call: Call) -> Result<Response<Body>, ApiError> {
    let call = &call;
    let name = call.name.as_str();
    let body = &call.body[..];
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
    let ctx = call.ctx.clone();
    let vault = call.vault.clone();
    let name_s = name.to_string();
    let now = call.now;
    let rec = call
        .blocking(move || {
            let pkcs8 = crypto::generate_rsa(bits).map_err(|_| ApiError::internal())?;
            let version = new_version(&kty, bits, key_ops, pkcs8, &p.attributes, tags, now);
            add_version(&ctx, &vault, &name_s, version)
        })
        .await?;
    call.ctx.kick_scheduler();
    key_bundle_response(call, &rec, None)
}

/// `PUT /keys/{name}`: import a JWK (components, or a BYOK blob in `key_hsm`).
pub(super) async fn import(call: Call) -> Result<Response<Body>, ApiError> {
    let call = &call;
    let name = call.name.as_str();
    let body = &call.body[..];
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
        byok::target(call, blob)?
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
    let ctx = call.ctx.clone();
    let vault = call.vault.clone();
    let name_s = name.to_string();
    let rec = call
        .blocking(move || add_version(&ctx, &vault, &name_s, version))
        .await?;
    key_bundle_response(call, &rec, None)
}

/// `GET /keys/{name}[/{version}]` (a disabled version is 403).
pub(super) async fn get(call: Call) -> Result<Response<Body>, ApiError> {
    let (call, name, version) = (&call, call.name.as_str(), call.version.as_deref());
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

/// `PATCH /keys/{name}[/{version}]`: attributes, `key_ops`, tags (works on a disabled version, so it can be re-enabled).
pub(super) async fn update(call: Call) -> Result<Response<Body>, ApiError> {
    let call = &call;
    let name = call.name.as_str();
    let version = call.version.as_deref();
    let body = &call.body[..];
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
    let ctx = call.ctx.clone();
    let vault = call.vault.clone();
    let name_s = name.to_string();
    let ver = version.map(str::to_string);
    let now = call.now;
    let (rec, target) = call
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

pub(super) fn new_version(
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
pub(super) fn ensure_creatable(v: &VaultEntry, name: &str) -> Result<(), ApiError> {
    if let Some(e) = v.keys.read().get(&name.to_ascii_lowercase())
        && e.record.deleted.is_some()
    {
        return Err(ApiError::deleted_but_recoverable(&e.record.name));
    }
    Ok(())
}

/// Appends a version (creating the key when new).
pub(super) fn add_version(
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
