//! Bearer-token verification against the identity service.
//!
//! [`TokenVerifier`] is the seam; [`IdentityVerifier`] is the production implementation on
//! top of `identity::verify::Verifier`. Verified tokens are cached by SHA-256 of the token
//! until they expire, so the hot path (unwrapKey) costs a hash and a map lookup instead of an
//! ES256 verification. Audience and tenant are checked by each plane because the expected
//! values differ between planes and vaults.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Deserialize;

use crate::clock::Clock;

/// Validated claims the service relies on.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    #[serde(deserialize_with = "de_aud")]
    pub aud: Vec<String>,
    pub iss: String,
    pub tid: String,
    pub oid: String,
    #[serde(default)]
    pub appid: Option<String>,
    #[serde(default)]
    pub azp: Option<String>,
    #[serde(default)]
    pub iat: i64,
    #[serde(default)]
    pub nbf: i64,
    pub exp: i64,
}

impl Claims {
    pub fn app_id(&self) -> &str {
        self.appid.as_deref().or(self.azp.as_deref()).unwrap_or("")
    }

    /// True when one of the audiences equals `expected`, ignoring one trailing slash.
    pub fn has_audience(&self, expected: &str) -> bool {
        let e = expected.trim_end_matches('/');
        self.aud.iter().any(|a| a.trim_end_matches('/') == e)
    }
}

fn de_aud<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Aud::deserialize(d)? {
        Aud::One(s) => vec![s],
        Aud::Many(v) => v,
    })
}

/// Why a token was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("malformed token")]
    Malformed,
    #[error("token signature validation failed")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not yet valid")]
    NotYetValid,
    #[error("invalid issuer {0}")]
    Issuer(String),
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
    #[error("invalid audience {0}")]
    Audience(String),
    #[error("principal {0} no longer exists")]
    PrincipalDeleted(String),
}

/// Verifies bearer tokens.
#[async_trait::async_trait]
pub trait TokenVerifier: Send + Sync {
    async fn verify(&self, bearer: &str) -> Result<Claims, AuthError>;
}

/// Verifier for tokens of the Strongroom identity service: full validation is delegated to
/// [`identity::verify::Verifier`] (JWKS, ES256 signature, lifetime, issuer, audience in
/// {vault, management}, principal liveness); verified tokens are then cached by SHA-256 until
/// `exp`, and cache hits still re-check principal liveness (cached for at most one second),
/// so a deleted identity loses access within a second either way.
pub struct IdentityVerifier {
    inner: identity::verify::Verifier,
    identity_url: String,
    http: reqwest::Client,
    tokens: Mutex<HashMap<[u8; 32], Claims>>,
    principals: Mutex<HashMap<String, (Instant, bool)>>,
    max_cached_tokens: usize,
}

impl std::fmt::Debug for IdentityVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityVerifier")
            .field("identity_url", &self.identity_url)
            .finish_non_exhaustive()
    }
}

const LEEWAY_SECS: i64 = 60;
const PRINCIPAL_TTL: Duration = Duration::from_secs(1);

/// Audiences accepted by the service (each plane then insists on its own).
pub const ACCEPTED_AUDIENCES: &[&str] =
    &["https://vault.azure.net", "https://management.azure.com/"];

impl IdentityVerifier {
    pub fn new(identity_url: &str, ca_pem: &str) -> Result<Self, crate::Error> {
        let audiences = ACCEPTED_AUDIENCES.iter().map(|s| s.to_string()).collect();
        let inner = identity::verify::Verifier::new(identity_url, ca_pem, audiences)
            .map_err(|e| crate::Error::Config(format!("identity verifier: {e}")))?;
        Ok(IdentityVerifier {
            inner,
            identity_url: identity_url.trim_end_matches('/').to_string(),
            http: platform::https_client(ca_pem, None, Default::default())
                .map_err(|e| crate::Error::Config(format!("http client: {e}")))?,
            tokens: Mutex::new(HashMap::new()),
            principals: Mutex::new(HashMap::new()),
            max_cached_tokens: 10_000,
        })
    }

    /// Liveness for cache hits: `Ok(true)` alive, `Ok(false)` deleted.
    async fn alive(&self, oid: &str) -> Result<bool, AuthError> {
        if let Some((at, alive)) = self.principals.lock().get(oid)
            && at.elapsed() < PRINCIPAL_TTL
        {
            return Ok(*alive);
        }
        let url = format!("{}/principals/{}", self.identity_url, oid);
        let alive = match self.http.get(&url).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => false,
            Ok(r) if r.status().is_success() => true,
            Ok(r) => {
                return Err(AuthError::KeysUnavailable(format!(
                    "{url} answered {}",
                    r.status()
                )));
            }
            Err(e) => return Err(AuthError::KeysUnavailable(e.to_string())),
        };
        let mut map = self.principals.lock();
        if map.len() > 4096 {
            map.clear();
        }
        map.insert(oid.to_string(), (Instant::now(), alive));
        Ok(alive)
    }

    fn cache_get(&self, hash: &[u8; 32], now: i64) -> Option<Claims> {
        let map = self.tokens.lock();
        let c = map.get(hash)?;
        if c.exp.saturating_add(LEEWAY_SECS) <= now {
            return None;
        }
        Some(c.clone())
    }

    fn cache_put(&self, hash: [u8; 32], claims: &Claims, now: i64) {
        let mut map = self.tokens.lock();
        if map.len() >= self.max_cached_tokens {
            map.retain(|_, c| c.exp.saturating_add(LEEWAY_SECS) > now);
            if map.len() >= self.max_cached_tokens {
                map.clear();
            }
        }
        map.insert(hash, claims.clone());
    }
}

fn convert(c: identity::Claims) -> Claims {
    Claims {
        aud: vec![c.aud],
        iss: c.iss,
        tid: c.tid,
        oid: c.oid,
        appid: Some(c.appid),
        azp: Some(c.azp),
        iat: c.iat,
        nbf: c.nbf,
        exp: c.exp,
    }
}

fn map_err(e: identity::TokenError) -> AuthError {
    use identity::TokenError as T;
    match e {
        T::Malformed(_) | T::Algorithm(_) => AuthError::Malformed,
        T::UnknownKey(_) | T::Signature => AuthError::BadSignature,
        T::Expired => AuthError::Expired,
        T::NotYetValid => AuthError::NotYetValid,
        T::Issuer(i) => AuthError::Issuer(i),
        T::Audience(a) => AuthError::Audience(a),
        T::PrincipalGone(oid) => AuthError::PrincipalDeleted(oid),
        T::Unavailable(m) => AuthError::KeysUnavailable(m),
    }
}

#[async_trait::async_trait]
impl TokenVerifier for IdentityVerifier {
    async fn verify(&self, bearer: &str) -> Result<Claims, AuthError> {
        let now = Clock::wall();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bearer.as_bytes());
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest.as_ref());
        if let Some(c) = self.cache_get(&hash, now) {
            if !self.alive(&c.oid).await? {
                return Err(AuthError::PrincipalDeleted(c.oid));
            }
            return Ok(c);
        }
        let claims = convert(self.inner.verify(bearer).await.map_err(map_err)?);
        self.principals
            .lock()
            .insert(claims.oid.clone(), (Instant::now(), true));
        self.cache_put(hash, &claims, now);
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_matching() {
        let c: Claims = serde_json::from_value(serde_json::json!({
            "aud": "https://vault.azure.net/", "iss": "x", "tid": "t", "oid": "o", "exp": 1
        }))
        .unwrap();
        assert!(c.has_audience("https://vault.azure.net"));
        assert!(!c.has_audience("https://management.azure.com/"));
    }
}
