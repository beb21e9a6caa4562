//! Request parameters shared by create, import, update and rotation: the JSON body, the
//! key attributes (`enabled`, `nbf`, `exp`; `exportable` is refused without a release
//! policy), `key_ops` and tags, validated with the service's messages.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::api_error::ApiError;
use crate::duration::representable;

const DEFAULT_KEY_OPS: &[&str] = &[
    "encrypt",
    "decrypt",
    "sign",
    "verify",
    "wrapKey",
    "unwrapKey",
];
const VALID_KEY_OPS: &[&str] = &[
    "encrypt",
    "decrypt",
    "sign",
    "verify",
    "wrapKey",
    "unwrapKey",
    "import",
    "export",
];

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return serde_json::from_slice(b"{}")
            .map_err(|_| ApiError::bad_parameter("The request body is required."));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_parameter(format!("Property has invalid value: {e}")))
}

/// Attributes accepted on create/import/update.
#[derive(Debug, Default, Deserialize)]
pub(super) struct AttrsIn {
    pub(super) enabled: Option<bool>,
    pub(super) nbf: Option<i64>,
    pub(super) exp: Option<i64>,
    #[serde(default)]
    pub(super) exportable: Option<bool>,
}

impl AttrsIn {
    pub(super) fn validate(&self) -> Result<(), ApiError> {
        for (name, t) in [("nbf", self.nbf), ("exp", self.exp)] {
            if t.is_some_and(|t| !representable(t)) {
                return Err(ApiError::bad_parameter(format!(
                    "The key's {name} attribute is outside the supported date range (years 1 to 9999)."
                )));
            }
        }
        if let (Some(n), Some(e)) = (self.nbf, self.exp)
            && n > e
        {
            return Err(ApiError::bad_parameter(
                "The key's not-before time must be earlier than its expiry.",
            ));
        }
        if self.exportable == Some(true) {
            return Err(ApiError::bad_parameter(
                "AKV.SKR.1004: Exportable keys must have release policy.",
            ));
        }
        Ok(())
    }
}

pub(super) fn validate_key_ops(ops: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    match ops {
        None => Ok(DEFAULT_KEY_OPS.iter().map(|s| s.to_string()).collect()),
        Some(ops) => {
            let mut out = Vec::new();
            for op in ops {
                let canon = VALID_KEY_OPS
                    .iter()
                    .find(|v| v.eq_ignore_ascii_case(&op))
                    .ok_or_else(|| {
                        ApiError::bad_parameter(format!("Invalid key operation: {op}."))
                    })?;
                if !out.iter().any(|o: &String| o == canon) {
                    out.push(canon.to_string());
                }
            }
            Ok(out)
        }
    }
}

pub(super) fn validate_tags(
    tags: Option<BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let tags = tags.unwrap_or_default();
    if tags.len() > 15 {
        return Err(ApiError::bad_parameter("A key can have at most 15 tags."));
    }
    if tags
        .iter()
        .any(|(k, v)| k.chars().count() > 256 || v.chars().count() > 256)
    {
        return Err(ApiError::bad_parameter(
            "Tag names and values are limited to 256 characters.",
        ));
    }
    Ok(tags)
}
