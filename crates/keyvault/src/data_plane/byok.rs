//! BYOK (bring your own key): resolving the transfer blob an import carries in `key_hsm`.
//! The blob names a key-exchange key of this vault (`key_ops: ["import"]`); its ciphertext
//! is RSA-OAEP of an AES key followed by the target key wrapped under it
//! (CKM_RSA_AES_KEY_WRAP), unwrapped by [`crate::crypto::byok_unwrap`].

use zeroize::Zeroizing;

use super::bundle::version_index;
use super::call::Call;
use crate::api_error::ApiError;
use crate::crypto;
use crate::jwk::{KeyTransferBlob, b64u_decode};

/// Resolves the BYOK transfer blob in `key_hsm` with the vault's key-exchange key.
pub(super) fn target(call: &Call, key_hsm: &str) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let bad = |m: &str| ApiError::bad_parameter(format!("Invalid key transfer blob: {m}."));
    let raw = b64u_decode(key_hsm).ok_or_else(|| bad("key_hsm is not base64url"))?;
    let blob: KeyTransferBlob =
        serde_json::from_slice(&raw).map_err(|_| bad("not a transfer blob"))?;
    if !blob.header.enc.eq_ignore_ascii_case("CKM_RSA_AES_KEY_WRAP")
        && !blob.header.enc.eq_ignore_ascii_case("RSA_AES_KEY_WRAP_256")
    {
        return Err(bad("unsupported enc"));
    }
    // header.kid = https://host/keys/{name}/{version}
    let path = blob
        .header
        .kid
        .split_once("/keys/")
        .map(|(_, p)| p)
        .ok_or_else(|| bad("kid does not name a key"))?;
    let mut parts = path.split('/');
    let kek_name = parts.next().unwrap_or("");
    let kek_version = parts.next().filter(|s| !s.is_empty());
    let (kv_ops, loaded, enabled) = {
        let keys = call.vault.keys.read();
        let e = keys
            .get(&kek_name.to_ascii_lowercase())
            .filter(|e| e.record.deleted.is_none())
            .ok_or_else(|| bad("key exchange key not found in this vault"))?;
        let idx = version_index(&e.record, kek_name, kek_version)?;
        let kv = &e.record.versions[idx];
        let loaded = e
            .loaded
            .get(&kv.version)
            .cloned()
            .ok_or_else(ApiError::internal)?;
        (kv.key_ops.clone(), loaded, kv.enabled)
    };
    if !enabled {
        return Err(ApiError::key_disabled("import"));
    }
    if !kv_ops.iter().any(|o| o == "import") {
        return Err(bad(
            "the key exchange key does not allow the import operation",
        ));
    }
    let ct = b64u_decode(&blob.ciphertext).ok_or_else(|| bad("ciphertext is not base64url"))?;
    crypto::byok_unwrap(&loaded, &ct).map_err(|_| bad("the target key could not be unwrapped"))
}
