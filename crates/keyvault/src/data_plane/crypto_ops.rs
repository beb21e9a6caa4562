//! The six key operations: encrypt / decrypt, wrapKey / unwrapKey, sign / verify (over a
//! client-supplied digest). The version must be enabled, allow the operation in its
//! `key_ops`, and — for encrypt, wrapKey and sign — be inside its nbf/exp window.
//! Private-key operations run on a blocking thread.

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::bundle::{live_record, version_index};
use super::call::Call;
use super::params::parse_json;
use super::{CryptoOp, Operation};
use crate::api_error::ApiError;
use crate::crypto::{self, EncAlg, SigAlg};
use crate::http_util::{Body, json_response};
use crate::jwk::{b64u, b64u_decode};

/// `POST /keys/{name}/{version}/{op}`; the operation is the route's.
pub(super) async fn run(
    axum::Extension(operation): axum::Extension<Operation>,
    call: Call,
) -> Result<Response<Body>, ApiError> {
    let Operation::Crypto(op) = operation else {
        return Err(ApiError::internal());
    };
    let (kid, resp) = crypto_op(&call, &call.name, call.version.as_deref(), op, &call.body).await?;
    call.audit_key_id(&kid);
    Ok(resp)
}

/// encrypt/decrypt/wrapKey/unwrapKey/sign/verify. Returns (versioned kid, response).
async fn crypto_op(
    call: &Call,
    name: &str,
    version: Option<&str>,
    op: CryptoOp,
    body: &[u8],
) -> Result<(String, Response<Body>), ApiError> {
    #[derive(Deserialize)]
    struct OpParams {
        alg: Option<String>,
        value: Option<String>,
        digest: Option<String>,
    }
    let (kid, loaded) = {
        let keys = call.vault.keys.read();
        let e = keys.get(&name.to_ascii_lowercase());
        let rec = live_record(e.map(|e| &e.record), name)?;
        let idx = version_index(rec, name, version)?;
        let kv = &rec.versions[idx];
        if !kv.enabled {
            return Err(ApiError::key_disabled(op.key_op()));
        }
        if !kv.key_ops.iter().any(|o| o == op.key_op()) {
            return Err(ApiError::key_op_not_permitted(op.key_op()));
        }
        if op.time_bound() {
            if let Some(nbf) = kv.nbf
                && call.now < nbf
            {
                return Err(ApiError::key_not_yet_valid(op.key_op()));
            }
            if let Some(exp) = kv.exp
                && call.now >= exp
            {
                return Err(ApiError::key_expired(op.key_op()));
            }
        }
        let loaded = e
            .and_then(|e| e.loaded.get(&kv.version).cloned())
            .ok_or_else(ApiError::internal)?;
        (
            format!("{}/keys/{}/{}", call.base, rec.name, kv.version),
            loaded,
        )
    };
    let p: OpParams = parse_json(body)?;
    let alg = p
        .alg
        .ok_or_else(|| ApiError::bad_parameter("The parameter alg is required."))?;
    let value = p.value.as_deref().and_then(b64u_decode).ok_or_else(|| {
        ApiError::bad_parameter("The parameter value is missing or not base64url.")
    })?;
    let bad_alg = |e: crypto::CryptoError| ApiError::bad_parameter(format!("{e}"));
    let out = match op {
        CryptoOp::Encrypt | CryptoOp::Wrap => {
            let a = EncAlg::parse(&alg).map_err(bad_alg)?;
            let ct = loaded.encrypt(a, &value).map_err(bad_alg)?;
            json!({"kid": kid, "value": b64u(&ct)})
        }
        CryptoOp::Decrypt | CryptoOp::Unwrap => {
            let a = EncAlg::parse(&alg).map_err(bad_alg)?;
            let pt = tokio::task::spawn_blocking(move || loaded.decrypt(a, &value))
                .await
                .map_err(|_| ApiError::internal())?
                .map_err(|e| match e {
                    crypto::CryptoError::Failed => ApiError::bad_parameter(
                        "The ciphertext could not be decrypted with this key and algorithm.",
                    ),
                    other => bad_alg(other),
                })?;
            let text = Zeroizing::new(b64u(&pt));
            json!({"kid": kid, "value": text.as_str()})
        }
        CryptoOp::Sign => {
            let a = SigAlg::parse(&alg).map_err(bad_alg)?;
            let sig = tokio::task::spawn_blocking(move || loaded.sign(a, &value))
                .await
                .map_err(|_| ApiError::internal())?
                .map_err(bad_alg)?;
            json!({"kid": kid, "value": b64u(&sig)})
        }
        CryptoOp::Verify => {
            let a = SigAlg::parse(&alg).map_err(bad_alg)?;
            let digest = p.digest.as_deref().and_then(b64u_decode).ok_or_else(|| {
                ApiError::bad_parameter("The parameter digest is missing or not base64url.")
            })?;
            let ok = loaded.verify(a, &digest, &value).map_err(bad_alg)?;
            json!({"value": ok})
        }
    };
    Ok((kid, json_response(StatusCode::OK, &out)))
}
