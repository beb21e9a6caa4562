//! Bearer tokens: what one is ([`AccessToken`]), how a managed identity is named
//! ([`IdentitySelector`]), and the two sources the services fetch them from — managed
//! identity (what clusters use, [`ManagedIdentityTokens`]) and client secret (what
//! administrators and tools use, [`ClientSecretTokens`]). Both cache a token until
//! shortly before it expires, as the Azure SDKs do. The identity service mints these
//! tokens and parses these selectors; the vault clients spend them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::Deserialize;
use zeroize::Zeroizing;

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The endpoint knows the caller but cannot issue for the identity named: it was
    /// deleted (or detached).
    #[error("the managed identity {identity} does not exist: {message}")]
    IdentityDeleted { identity: String, message: String },
    /// Anything else: unreachable endpoint, refused credentials, malformed answer.
    #[error("token endpoint: {0}")]
    Endpoint(String),
}

/// A bearer token and when it stops being valid (unix seconds).
#[derive(Clone)]
pub struct AccessToken {
    pub token: Zeroizing<String>,
    pub expires_on: i64,
    /// Managed-identity responses: the identity's client id.
    pub client_id: Option<String>,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("expires_on", &self.expires_on)
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// Something that hands out tokens for a resource such as `https://vault.azure.net`.
#[async_trait]
pub trait TokenSource: Send + Sync {
    async fn token(&self, resource: &str) -> Result<AccessToken, TokenError>;
    /// Forgets cached tokens, so that the next call asks the identity service again
    /// (used after a vault answered 401: the identity may have been deleted).
    fn invalidate(&self);
    /// Names the identity in error messages (never a secret).
    fn describe(&self) -> String;
}

/// Refresh a cached token once less than this much of its life is left.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Cache(Mutex<Option<(String, AccessToken)>>);

impl Cache {
    fn get(&self, resource: &str) -> Option<AccessToken> {
        let guard = self.0.lock();
        let (cached_for, token) = guard.as_ref()?;
        let fresh = token.expires_on - now_unix() > REFRESH_MARGIN.as_secs() as i64;
        (cached_for == resource && fresh).then(|| token.clone())
    }

    fn put(&self, resource: &str, token: &AccessToken) {
        *self.0.lock() = Some((resource.to_string(), token.clone()));
    }

    fn clear(&self) {
        *self.0.lock() = None;
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `expires_on` arrives as a number from some endpoints and as a string from others.
#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(i64),
    Str(String),
}

impl IntOrString {
    fn value(&self) -> Option<i64> {
        match self {
            IntOrString::Int(v) => Some(*v),
            IntOrString::Str(s) => s.parse().ok(),
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_on: Option<IntOrString>,
    expires_in: Option<IntOrString>,
    #[serde(default)]
    client_id: Option<String>,
}

impl TokenResponse {
    fn into_token(self) -> Result<AccessToken, TokenError> {
        let expires_on = match (&self.expires_on, &self.expires_in) {
            (Some(on), _) => on.value(),
            (None, Some(inn)) => inn.value().map(|s| now_unix() + s),
            (None, None) => None,
        }
        .ok_or_else(|| TokenError::Endpoint("token response without a valid expiry".into()))?;
        Ok(AccessToken {
            token: Zeroizing::new(self.access_token),
            expires_on,
            client_id: self.client_id,
        })
    }
}

#[derive(Deserialize, Default)]
struct EntraError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

async fn read_error(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    let parsed: EntraError = serde_json::from_str(&body).unwrap_or_default();
    let message = if parsed.error.is_empty() {
        body.chars().take(300).collect()
    } else {
        format!("{}: {}", parsed.error, parsed.error_description)
    };
    (status, message)
}

/// How a managed identity is named in a token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySelector {
    ClientId(String),
    ObjectId(String),
    ResourceId(String),
    /// No selector: allowed only when exactly one identity is attached.
    Only,
}

impl IdentitySelector {
    /// The query parameter that names the identity (none for [`IdentitySelector::Only`]).
    pub fn query_pair(&self) -> Option<(&'static str, &str)> {
        match self {
            IdentitySelector::ClientId(v) => Some(("client_id", v)),
            IdentitySelector::ObjectId(v) => Some(("object_id", v)),
            IdentitySelector::ResourceId(v) => Some(("mi_res_id", v)),
            IdentitySelector::Only => None,
        }
    }
}

/// Tokens of a user-assigned managed identity, from the App Service–style endpoint
/// (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`): the caller proves which resource it is with
/// the per-resource secret header and names the identity it wants.
pub struct ManagedIdentityTokens {
    http: reqwest::Client,
    endpoint: String,
    secret: Zeroizing<String>,
    identity: IdentitySelector,
    cache: Cache,
}

impl ManagedIdentityTokens {
    pub fn new(
        http: reqwest::Client,
        endpoint: impl Into<String>,
        secret: Zeroizing<String>,
        identity: IdentitySelector,
    ) -> Self {
        ManagedIdentityTokens {
            http,
            endpoint: endpoint.into(),
            secret,
            identity,
            cache: Cache::default(),
        }
    }
}

#[async_trait]
impl TokenSource for ManagedIdentityTokens {
    async fn token(&self, resource: &str) -> Result<AccessToken, TokenError> {
        if let Some(token) = self.cache.get(resource) {
            return Ok(token);
        }
        let mut query = vec![("api-version", "2019-08-01"), ("resource", resource)];
        query.extend(self.identity.query_pair());
        let resp = self
            .http
            .get(&self.endpoint)
            .query(&query)
            .header("X-IDENTITY-HEADER", self.secret.as_str())
            .send()
            .await
            .map_err(|e| TokenError::Endpoint(format!("{}: {e}", self.endpoint)))?;
        if resp.status().is_success() {
            let token = resp
                .json::<TokenResponse>()
                .await
                .map_err(|e| TokenError::Endpoint(format!("malformed token response: {e}")))?
                .into_token()?;
            self.cache.put(resource, &token);
            return Ok(token);
        }
        let (status, message) = read_error(resp).await;
        if (400..500).contains(&status) && status != 401 && status != 403 {
            // The endpoint knows the resource but cannot issue for this identity: it was
            // deleted (or detached). That is the "identity deleted" cause, not a bug.
            return Err(TokenError::IdentityDeleted {
                identity: self.describe(),
                message,
            });
        }
        Err(TokenError::Endpoint(format!(
            "managed identity endpoint answered HTTP {status}: {message}"
        )))
    }

    fn invalidate(&self) {
        self.cache.clear();
    }

    fn describe(&self) -> String {
        match &self.identity {
            IdentitySelector::ClientId(v) => format!("clientId {v}"),
            IdentitySelector::ObjectId(v) => format!("principalId {v}"),
            IdentitySelector::ResourceId(v) => v.clone(),
            IdentitySelector::Only => "the only attached identity".to_string(),
        }
    }
}

/// Tokens of a service principal by the OAuth2 client-credentials grant.
pub struct ClientSecretTokens {
    http: reqwest::Client,
    authority: String,
    tenant: String,
    client_id: String,
    secret: Zeroizing<String>,
    cache: Cache,
}

impl ClientSecretTokens {
    pub fn new(
        http: reqwest::Client,
        authority: impl Into<String>,
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        secret: Zeroizing<String>,
    ) -> Self {
        ClientSecretTokens {
            http,
            authority: authority.into().trim_end_matches('/').to_string(),
            tenant: tenant.into(),
            client_id: client_id.into(),
            secret,
            cache: Cache::default(),
        }
    }
}

#[async_trait]
impl TokenSource for ClientSecretTokens {
    async fn token(&self, resource: &str) -> Result<AccessToken, TokenError> {
        if let Some(token) = self.cache.get(resource) {
            return Ok(token);
        }
        let url = format!("{}/{}/oauth2/v2.0/token", self.authority, self.tenant);
        let scope = format!("{}/.default", resource.trim_end_matches('/'));
        let resp = self
            .http
            .post(&url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.secret.as_str()),
                ("scope", scope.as_str()),
            ])
            .send()
            .await
            .map_err(|e| TokenError::Endpoint(format!("{url}: {e}")))?;
        if !resp.status().is_success() {
            let (status, message) = read_error(resp).await;
            return Err(TokenError::Endpoint(format!(
                "{url} answered HTTP {status}: {message}"
            )));
        }
        let token = resp
            .json::<TokenResponse>()
            .await
            .map_err(|e| TokenError::Endpoint(format!("malformed token response: {e}")))?
            .into_token()?;
        self.cache.put(resource, &token);
        Ok(token)
    }

    fn invalidate(&self) {
        self.cache.clear();
    }

    fn describe(&self) -> String {
        format!("service principal {}", self.client_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_in: i64) -> AccessToken {
        AccessToken {
            token: Zeroizing::new("t".into()),
            expires_on: now_unix() + expires_in,
            client_id: None,
        }
    }

    #[test]
    fn cached_token_is_reused_until_the_refresh_margin() {
        let cache = Cache::default();
        cache.put("https://vault.azure.net", &token(3600));
        assert!(cache.get("https://vault.azure.net").is_some());
        // Another resource is never answered from this entry.
        assert!(cache.get("https://management.azure.com").is_none());
    }

    #[test]
    fn token_is_refreshed_before_it_expires() {
        let cache = Cache::default();
        let margin = REFRESH_MARGIN.as_secs() as i64;
        // Still valid for a while, but inside the margin: the caller must fetch anew.
        cache.put("r", &token(margin - 10));
        assert!(cache.get("r").is_none());
        cache.put("r", &token(-1));
        assert!(cache.get("r").is_none());
        cache.put("r", &token(margin + 60));
        assert!(cache.get("r").is_some());
    }

    #[test]
    fn invalidate_forgets_the_token() {
        let cache = Cache::default();
        cache.put("r", &token(3600));
        cache.clear();
        assert!(cache.get("r").is_none());
    }
}
