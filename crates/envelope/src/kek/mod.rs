//! Key-encryption-key providers.

mod azure;

use async_trait::async_trait;

pub use azure::AzureKeyVault;

use crate::{KekError, RootDek, WrappedDek};

/// The state of a KEK as the vault reports it. The service, not the vault, decides what
/// it means: the vault still unwraps with an expired key, so expiry is checked here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    /// The versioned key id (`https://vault/keys/name/version`).
    pub kid: String,
    pub kty: String,
    /// Modulus size in bits, for RSA keys.
    pub key_size: Option<u32>,
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub key_ops: Vec<String>,
    /// The vault's clock when it answered (its `Date` header), unix seconds. Validity
    /// windows are judged on the vault's clock, as the vault judges them itself.
    pub vault_time: Option<i64>,
}

/// A parsed key URL: `https://host[:port]/keys/{name}[/{version}]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUrl {
    /// `https://host[:port]`, no trailing slash.
    pub vault: String,
    pub name: String,
    pub version: Option<String>,
}

impl KeyUrl {
    pub fn parse(input: &str) -> Result<KeyUrl, KekError> {
        let invalid = |why: &str| KekError::KeyInvalid {
            key: input.to_string(),
            why: format!(
                "not a key vault key URL ({why}); expected https://<vault>/keys/<name>[/<version>]"
            ),
        };
        let url = url::Url::parse(input).map_err(|_| invalid("unparseable"))?;
        if url.scheme() != "https" {
            return Err(invalid("the scheme must be https"));
        }
        let host = url.host_str().ok_or_else(|| invalid("no host"))?;
        let vault = match url.port() {
            Some(port) => format!("https://{host}:{port}"),
            None => format!("https://{host}"),
        };
        let segments: Vec<&str> = url
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).collect())
            .unwrap_or_default();
        match segments.as_slice() {
            ["keys", name] => Ok(KeyUrl {
                vault,
                name: name.to_string(),
                version: None,
            }),
            ["keys", name, version] => Ok(KeyUrl {
                vault,
                name: name.to_string(),
                version: Some(version.to_string()),
            }),
            _ => Err(invalid("the path must be /keys/<name>[/<version>]")),
        }
    }

    pub fn is_versionless(&self) -> bool {
        self.version.is_none()
    }

    /// The URL of one version of this key.
    pub fn versioned(&self, version: &str) -> String {
        format!("{}/keys/{}/{}", self.vault, self.name, version)
    }

    /// The version named by a versioned key id of this key, if it is one.
    pub fn version_of(&self, kid: &str) -> Option<String> {
        let parsed = KeyUrl::parse(kid).ok()?;
        (parsed.vault == self.vault && parsed.name == self.name)
            .then_some(parsed.version)
            .flatten()
    }
}

impl std::fmt::Display for KeyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{}/keys/{}/{}", self.vault, self.name, v),
            None => write!(f, "{}/keys/{}", self.vault, self.name),
        }
    }
}

/// Something that holds a KEK: it can describe the key and wrap and unwrap with it.
#[async_trait]
pub trait KekProvider: Send + Sync {
    /// The key the provider is configured with (as the user gave it).
    fn key_url(&self) -> &KeyUrl;
    /// Reads the key's attributes: the pinned version, or the current one if version-less.
    async fn key_state(&self) -> Result<KeyState, KekError>;
    /// Wraps `dek` with exactly the key version `kid`.
    async fn wrap(&self, kid: &str, dek: &RootDek) -> Result<WrappedDek, KekError>;
    /// Unwraps with exactly the version recorded in `wrapped`.
    async fn unwrap(&self, wrapped: &WrappedDek) -> Result<RootDek, KekError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_urls_parse_with_and_without_version() {
        let v = KeyUrl::parse("https://127.0.0.1:8443/keys/cmk/0123abcd").unwrap();
        assert_eq!(v.vault, "https://127.0.0.1:8443");
        assert_eq!(v.name, "cmk");
        assert_eq!(v.version.as_deref(), Some("0123abcd"));
        let l = KeyUrl::parse("https://myvault.vault.azure.net/keys/cmk/").unwrap();
        assert!(l.is_versionless());
        assert_eq!(l.to_string(), "https://myvault.vault.azure.net/keys/cmk");
        assert_eq!(
            l.version_of("https://myvault.vault.azure.net/keys/cmk/v2")
                .as_deref(),
            Some("v2")
        );
        assert_eq!(
            l.version_of("https://other.vault.azure.net/keys/cmk/v2"),
            None
        );
        for bad in [
            "http://v/keys/k",
            "https://v/secrets/k",
            "https://v/keys",
            "https://v/keys/k/v/x",
            "not a url",
        ] {
            assert!(KeyUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
