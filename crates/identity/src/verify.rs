//! Token verification for other services (key vault, control plane).
//!
//! [`Verifier`] fetches the JWKS over HTTPS (trusting only the dev CA), caches keys and
//! refetches on an unknown `kid` (at most once per [`MIN_REFRESH_INTERVAL`], so garbage
//! `kid`s cannot turn it into a request amplifier), validates signature, `exp`/`nbf` (60 s
//! leeway), issuer and audience, then checks that the principal still exists via
//! `GET /principals/{oid}` with a cache of at most one second. A deleted managed identity's
//! tokens therefore stop working within a second, even though they are still unexpired.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::Error;
use crate::crypto::signing::{Jwks, jwk_public_point};
use crate::service::PrincipalInfo;
use crate::token::{self, Claims, Expectations, TokenError};

/// Minimum time between two JWKS fetches triggered by unknown `kid`s.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(2);
/// Upper bound (and default) for how long a liveness answer is reused.
pub const MAX_LIVENESS_TTL: Duration = Duration::from_secs(1);
const LIVENESS_CACHE_MAX: usize = 4096;

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, Vec<u8>>,
    fetched_at: Option<Instant>,
}

/// Verifies tokens issued by the identity service at `base_url`.
pub struct Verifier {
    http: reqwest::Client,
    base_url: String,
    audiences: Vec<String>,
    liveness_ttl: Duration,
    keys: Mutex<KeyCache>,
    /// Serializes JWKS fetches so concurrent unknown-kid requests share one fetch.
    refresh: tokio::sync::Mutex<()>,
    liveness: Mutex<HashMap<String, (Instant, Option<PrincipalInfo>)>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("base_url", &self.base_url)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier trusting the dev CA in `ca_pem`, accepting `audiences` (e.g.
    /// `https://vault.azure.net`; a trailing `/` is ignored when comparing).
    pub fn new(base_url: &str, ca_pem: &str, audiences: Vec<String>) -> Result<Verifier, Error> {
        let tls = pki::client_config(ca_pem).map_err(|e| Error::Tls(e.to_string()))?;
        Verifier::with_tls(base_url, tls, audiences)
    }

    /// Same as [`Verifier::new`] with a prepared rustls client configuration.
    pub fn with_tls(
        base_url: &str,
        tls: Arc<rustls::ClientConfig>,
        audiences: Vec<String>,
    ) -> Result<Verifier, Error> {
        Ok(Verifier {
            http: platform::https_client_with(tls, platform::ClientOptions::default())
                .map_err(|e| Error::Tls(e.to_string()))?,
            base_url: base_url.trim_end_matches('/').to_string(),
            audiences,
            liveness_ttl: MAX_LIVENESS_TTL,
            keys: Mutex::new(KeyCache::default()),
            refresh: tokio::sync::Mutex::new(()),
            liveness: Mutex::new(HashMap::new()),
        })
    }

    /// Shortens the liveness cache (capped at [`MAX_LIVENESS_TTL`]; zero disables it).
    pub fn with_liveness_ttl(mut self, ttl: Duration) -> Verifier {
        self.liveness_ttl = ttl.min(MAX_LIVENESS_TTL);
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Verifies `token` against the configured audiences.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_for(token, &self.audiences).await
    }

    /// Verifies `token` against explicit `audiences`.
    pub async fn verify_for(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<Claims, TokenError> {
        let kid = token::peek_kid(token)?;
        if !self.keys.lock().keys.contains_key(&kid) {
            self.refresh_keys(&kid).await?;
        }
        let claims = {
            let cache = self.keys.lock();
            let expect = Expectations {
                issuer_base: &self.base_url,
                audiences,
                now: token::unix_now(),
            };
            token::validate(token, &cache.keys, &expect)?
        };
        match self.principal(&claims.oid).await? {
            Some(p)
                if p.tenant_id == claims.tid && p.app_id.eq_ignore_ascii_case(&claims.appid) =>
            {
                Ok(claims)
            }
            _ => Err(TokenError::PrincipalGone(claims.oid)),
        }
    }

    async fn refresh_keys(&self, kid: &str) -> Result<(), TokenError> {
        let _one_fetch = self.refresh.lock().await;
        {
            let cache = self.keys.lock();
            if cache.keys.contains_key(kid) {
                return Ok(()); // another task fetched it meanwhile
            }
            if cache
                .fetched_at
                .is_some_and(|t| t.elapsed() < MIN_REFRESH_INTERVAL)
            {
                return Err(TokenError::UnknownKey(kid.to_string()));
            }
        }
        let url = format!("{}/.well-known/jwks.json", self.base_url);
        let jwks: Jwks = async {
            let resp = self.http.get(&url).send().await?.error_for_status()?;
            resp.json::<Jwks>().await
        }
        .await
        .map_err(|e| TokenError::Unavailable(format!("JWKS {url}: {e}")))?;
        let keys: HashMap<String, Vec<u8>> = jwks
            .keys
            .iter()
            .filter_map(|k| jwk_public_point(k).map(|p| (k.kid.clone(), p)))
            .collect();
        tracing::debug!(count = keys.len(), "fetched identity JWKS");
        let mut cache = self.keys.lock();
        cache.keys = keys;
        cache.fetched_at = Some(Instant::now());
        Ok(())
    }

    /// Liveness of `oid`, cached for at most the liveness TTL.
    async fn principal(&self, oid: &str) -> Result<Option<PrincipalInfo>, TokenError> {
        if let Some((at, info)) = self.liveness.lock().get(oid)
            && at.elapsed() < self.liveness_ttl
        {
            return Ok(info.clone());
        }
        let mut url = url::Url::parse(&self.base_url)
            .map_err(|e| TokenError::Unavailable(format!("base url: {e}")))?;
        url.path_segments_mut()
            .map_err(|_| TokenError::Unavailable("base url cannot be a base".into()))?
            .pop_if_empty()
            .push("principals")
            .push(oid);
        let resp = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| TokenError::Unavailable(format!("{url}: {e}")))?;
        let info = match resp.status() {
            reqwest::StatusCode::OK => Some(
                resp.json::<PrincipalInfo>()
                    .await
                    .map_err(|e| TokenError::Unavailable(format!("{url}: {e}")))?,
            ),
            reqwest::StatusCode::NOT_FOUND => None,
            other => return Err(TokenError::Unavailable(format!("{url} answered {other}"))),
        };
        let mut cache = self.liveness.lock();
        if cache.len() >= LIVENESS_CACHE_MAX {
            let ttl = self.liveness_ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        if cache.len() < LIVENESS_CACHE_MAX {
            cache.insert(oid.to_string(), (Instant::now(), info.clone()));
        }
        Ok(info)
    }
}
