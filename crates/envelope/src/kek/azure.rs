//! The Azure Key Vault keys REST API as a KEK provider.
//!
//! It talks the public wire contract (api-version 7.4: `GET /keys/{name}/{version}`,
//! `POST …/wrapkey`, `POST …/unwrapkey`, RSA-OAEP-256), so the same code works against
//! Strongroom's own vault and, by design, against a real one. Errors are classified into
//! the causes the control plane reports; a 401 is retried once with a fresh token,
//! because a cached token of a deleted identity is the usual reason for one.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{KekProvider, KeyState, KeyUrl};
use platform::TokenSource;

use crate::{KekError, RootDek, WrappedDek};

const API_VERSION: &str = "7.4";
const VAULT_RESOURCE: &str = "https://vault.azure.net";
/// The wrapping algorithm for root DEKs: OAEP with SHA-256 (SHA-1 OAEP and PKCS#1 v1.5
/// are accepted by the vault for compatibility but not used here).
pub const WRAP_ALGORITHM: &str = "RSA-OAEP-256";

/// A KEK held in an Azure Key Vault–compatible service.
///
/// Revalidation calls it every interval for every cluster, so the per-call work is kept
/// small: the shared `reqwest::Client` keeps its TLS connections alive between calls (no
/// handshake per revalidation), tokens come from the [`TokenSource`]'s cache, and the
/// request URLs are parsed once and cloned afterwards (URL parsing was a visible share
/// of the control plane's revalidation CPU). Nothing about the result is cached: every
/// call is a request the vault authorises on its own.
pub struct AzureKeyVault {
    http: reqwest::Client,
    key: KeyUrl,
    tokens: Arc<dyn TokenSource>,
    /// `GET {vault}/keys/{name}/{version}?api-version=…`, parsed once.
    key_get: Option<url::Url>,
    /// The last crypto-operation URL built (`{kid}/{op}?api-version=…`): revalidation
    /// unwraps with the same `kid` every time.
    last_op: parking_lot::Mutex<Option<(String, &'static str, url::Url)>>,
}

/// The body of a wrapKey / unwrapKey request. The value is key material (unwrap: the
/// wrapped DEK; wrap: the plaintext DEK, base64url), borrowed, never copied.
#[derive(serde::Serialize)]
struct OperationRequest<'a> {
    alg: &'a str,
    value: &'a str,
}

/// `base?api-version=7.4` as a parsed URL (`None` if `base` does not parse).
fn with_api_version(base: &str) -> Option<url::Url> {
    let mut url = url::Url::parse(base).ok()?;
    url.query_pairs_mut()
        .append_pair("api-version", API_VERSION);
    Some(url)
}

#[derive(Deserialize)]
struct KeyBundle {
    key: JsonWebKey,
    #[serde(default)]
    attributes: Attributes,
}

#[derive(Deserialize)]
struct JsonWebKey {
    kid: String,
    kty: String,
    #[serde(default)]
    key_ops: Vec<String>,
    #[serde(default)]
    n: Option<String>,
}

#[derive(Deserialize, Default)]
struct Attributes {
    #[serde(default = "enabled_default")]
    enabled: bool,
    nbf: Option<i64>,
    exp: Option<i64>,
}

fn enabled_default() -> bool {
    true
}

#[derive(Deserialize)]
struct OperationResult {
    kid: String,
    value: String,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Deserialize, Default)]
struct ErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    innererror: Option<Box<ErrorDetail>>,
}

impl AzureKeyVault {
    pub fn new(http: reqwest::Client, key: KeyUrl, tokens: Arc<dyn TokenSource>) -> Self {
        let key_get = with_api_version(&format!(
            "{}/keys/{}/{}",
            key.vault,
            key.name,
            key.version.as_deref().unwrap_or("")
        ));
        AzureKeyVault {
            http,
            key,
            tokens,
            key_get,
            last_op: parking_lot::Mutex::new(None),
        }
    }

    /// `{kid}/{op}?api-version=…`, from the one-entry cache when `kid` and `op` repeat.
    fn op_url(&self, kid: &str, op: &'static str) -> Result<url::Url, KekError> {
        if let Some((k, o, url)) = self.last_op.lock().as_ref()
            && k == kid
            && *o == op
        {
            return Ok(url.clone());
        }
        let url =
            with_api_version(&format!("{}/{op}", kid.trim_end_matches('/'))).ok_or_else(|| {
                KekError::KeyInvalid {
                    key: kid.to_string(),
                    why: "the key id is not a URL".into(),
                }
            })?;
        *self.last_op.lock() = Some((kid.to_string(), op, url.clone()));
        Ok(url)
    }

    /// Sends one request with a bearer token; on 401 or 403 (access denied), once more
    /// with a fresh token.
    async fn send(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
        subject: &str,
    ) -> Result<reqwest::Response, KekError> {
        for attempt in 0..2 {
            let token = self.tokens.token(VAULT_RESOURCE).await?;
            let resp = build(token.token.as_str())
                .send()
                .await
                .map_err(|e| self.transport_error(e))?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                self.tokens.invalidate();
                continue;
            }
            if resp.status().is_success() {
                return Ok(resp);
            }
            let error = self.classify(resp, subject).await;
            if attempt == 0 && matches!(error, KekError::AccessDenied { .. }) {
                // A cached token outlives its identity: ask the identity service again,
                // so that a deleted identity is reported as such, not as a missing role.
                self.tokens.invalidate();
                continue;
            }
            return Err(error);
        }
        unreachable!("the loop returns on its second pass")
    }

    fn transport_error(&self, e: reqwest::Error) -> KekError {
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail = format!("{detail}: {s}");
            source = s.source();
        }
        KekError::VaultUnreachable {
            vault: self.key.vault.clone(),
            detail,
        }
    }

    async fn classify(&self, resp: reqwest::Response, subject: &str) -> KekError {
        let status = resp.status().as_u16();
        let body: ErrorBody = resp.json().await.unwrap_or_default();
        let code = body.error.code.clone();
        let inner = body
            .error
            .innererror
            .as_ref()
            .map(|i| i.code.clone())
            .unwrap_or_default();
        let message = body.error.message.replace("\r\n", " ");
        let key = subject.to_string();
        let vault = self.key.vault.clone();
        match (status, code.as_str(), inner.as_str()) {
            (401, ..) => KekError::Unauthenticated { vault, message },
            (403, _, "KeyDisabled") => KekError::KeyDisabled { key },
            (403, _, "ForbiddenByFirewall" | "ForbiddenByConnection") => {
                KekError::FirewallDenied { vault, message }
            }
            (403, ..) => KekError::AccessDenied { key, message },
            (404, "VaultNotFound", _) | (404, _, "VaultNotFound") => {
                KekError::VaultDeleted { vault }
            }
            (404, ..) => KekError::KeyNotFound { key, message },
            _ => KekError::Protocol {
                endpoint: key,
                status,
                message: if message.is_empty() { code } else { message },
            },
        }
    }
}

#[async_trait]
impl KekProvider for AzureKeyVault {
    fn key_url(&self) -> &KeyUrl {
        &self.key
    }

    async fn key_state(&self) -> Result<KeyState, KekError> {
        let url = self.key_get.clone().ok_or_else(|| KekError::KeyInvalid {
            key: self.key.to_string(),
            why: "the key URL does not parse".into(),
        })?;
        let resp = self
            .send(
                |token| self.http.get(url.clone()).bearer_auth(token),
                &self.key.to_string(),
            )
            .await?;
        let vault_time = resp
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        let bundle: KeyBundle = resp.json().await.map_err(|e| KekError::Protocol {
            endpoint: self.key.to_string(),
            status: 200,
            message: format!("malformed key bundle: {e}"),
        })?;
        let key_size = bundle
            .key
            .n
            .as_deref()
            .and_then(|n| URL_SAFE_NO_PAD.decode(n.trim_end_matches('=')).ok())
            .map(|n| {
                let significant = n.iter().skip_while(|b| **b == 0).count() as u32;
                significant * 8
            });
        Ok(KeyState {
            kid: bundle.key.kid,
            kty: bundle.key.kty,
            key_size,
            enabled: bundle.attributes.enabled,
            nbf: bundle.attributes.nbf,
            exp: bundle.attributes.exp,
            key_ops: bundle.key.key_ops,
            vault_time,
        })
    }

    async fn wrap(&self, kid: &str, dek: &RootDek) -> Result<WrappedDek, KekError> {
        let url = self.op_url(kid, "wrapkey")?;
        let value = Zeroizing::new(URL_SAFE_NO_PAD.encode(dek.as_bytes()));
        // The JSON body holds the plaintext DEK (base64url): our buffer is wiped on drop;
        // the copy reqwest sends from is not (as with any HTTP client body). Wrapping is
        // rare (create, rotation, rekey), never part of a routine revalidation.
        let body = Zeroizing::new(
            serde_json::to_vec(&OperationRequest {
                alg: WRAP_ALGORITHM,
                value: value.as_str(),
            })
            .map_err(|e| KekError::Crypto(format!("wrapKey body: {e}")))?,
        );
        let resp = self
            .send(
                |token| {
                    self.http
                        .post(url.clone())
                        .bearer_auth(token)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.to_vec())
                },
                kid,
            )
            .await?;
        let result: OperationResult = resp.json().await.map_err(|e| KekError::Protocol {
            endpoint: url.to_string(),
            status: 200,
            message: format!("malformed wrapKey result: {e}"),
        })?;
        let ciphertext = URL_SAFE_NO_PAD
            .decode(result.value.trim_end_matches('='))
            .map_err(|e| KekError::Protocol {
                endpoint: url.to_string(),
                status: 200,
                message: format!("wrapKey value is not base64url: {e}"),
            })?;
        Ok(WrappedDek::new(result.kid, WRAP_ALGORITHM, ciphertext))
    }

    async fn unwrap(&self, wrapped: &WrappedDek) -> Result<RootDek, KekError> {
        let url = self.op_url(&wrapped.kid, "unwrapkey")?;
        let value = URL_SAFE_NO_PAD.encode(&wrapped.ciphertext);
        let body = serde_json::to_vec(&OperationRequest {
            alg: &wrapped.alg,
            value: &value,
        })
        .map_err(|e| KekError::Crypto(format!("unwrapKey body: {e}")))?;
        let body = bytes::Bytes::from(body);
        let result = self
            .send(
                |token| {
                    self.http
                        .post(url.clone())
                        .bearer_auth(token)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                },
                &wrapped.kid,
            )
            .await;
        let resp = match result {
            Err(KekError::Protocol {
                status: 400,
                message,
                ..
            }) => {
                return Err(KekError::WrappedKeyRejected {
                    kid: wrapped.kid.clone(),
                    message,
                });
            }
            other => other?,
        };
        let mut result: OperationResult = resp.json().await.map_err(|e| KekError::Protocol {
            endpoint: url.to_string(),
            status: 200,
            message: format!("malformed unwrapKey result: {e}"),
        })?;
        let decoded = URL_SAFE_NO_PAD.decode(result.value.trim_end_matches('='));
        // The base64 text is the key too: wipe it before anything can fail.
        zeroize::Zeroize::zeroize(&mut result.value);
        let plain = Zeroizing::new(
            decoded.map_err(|_| KekError::Crypto("unwrapKey value is not base64url".into()))?,
        );
        RootDek::from_slice(&plain)
    }
}
