//! The identity service's core: state, signing key and every operation, independent of
//! HTTP. The server's handlers are thin adapters over [`Service`].
//!
//! Every mutation is applied to a copy of the state, persisted, and only then published,
//! so memory never runs ahead of disk. Operations are grouped by what they act on:
//! [`directory`] (bootstrap, tenants, service principals), [`identities`] (user-assigned
//! managed identities), [`resources`] (MSI entitlement), [`grants`] (token minting).

mod credentials;
mod directory;
mod grants;
mod identities;
mod resources;
#[cfg(test)]
mod tests;

pub use credentials::Credentials;
pub use grants::{Grant, IdentitySelector, MsiError, TokenRequestError};
pub use identities::identity_resource_id;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::Error;
use crate::crypto::signing::{Jwks, SigningKey, jwk_public_point};
use crate::crypto::{KEY_DOMAIN, MASTER_KEY_FILE};
use crate::model::{STATE_VERSION, SealedKey, State};
use crate::store::StateStore;
use crate::token::{self, Claims, Expectations, TokenError};

/// Audiences accepted on the admin API.
pub const ADMIN_AUDIENCES: &[&str] = &["https://management.azure.com", "api://strongroom-identity"];

const SEAL_INFO: &[u8] = b"strongroom-identity/signing-key-seal/v1";

/// Result of [`Service::bootstrap`]: credentials on the first call only.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub tenant_id: String,
    /// The tenant administrator. `None` when bootstrap already ran.
    pub admin: Option<Credentials>,
    /// The control plane's trusted-service principal. `None` when bootstrap already ran.
    pub control_plane: Option<Credentials>,
}

/// Public facts about a principal, for liveness checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalInfo {
    pub object_id: String,
    pub tenant_id: String,
    /// `ManagedIdentity` or `ServicePrincipal`.
    pub kind: String,
    pub display_name: String,
    pub app_id: String,
}

/// The running identity service.
pub struct Service {
    store: StateStore,
    state: RwLock<State>,
    /// Serializes writers so read-modify-persist-publish cycles never interleave.
    write: Mutex<()>,
    signing: SigningKey,
    public_keys: HashMap<String, Vec<u8>>,
    issuer_base: String,
    token_lifetime: Duration,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("issuer_base", &self.issuer_base)
            .field("kid", &self.signing.kid())
            .finish_non_exhaustive()
    }
}

/// The master key's failures as the identity service has always reported them.
fn master_key_error(path: &Path, e: sealed::Error) -> Error {
    match e {
        sealed::Error::Io { source, .. } => Error::io(path, source),
        sealed::Error::KeyFileTooOpen { mode, .. } => Error::MasterKey {
            path: path.to_path_buf(),
            reason: format!("permissions {mode:o} are too open; expected 0600"),
        },
        sealed::Error::MissingKey { .. } => Error::MasterKey {
            path: path.to_path_buf(),
            reason: "missing while the state file exists; sealed keys cannot be opened".into(),
        },
        sealed::Error::BadKeyFile { len, .. } => Error::MasterKey {
            path: path.to_path_buf(),
            reason: format!("expected 32 bytes, found {len}"),
        },
        other => Error::MasterKey {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

fn seal_aad(kid: &str) -> Vec<u8> {
    format!("strongroom-identity signing-key {kid}").into_bytes()
}

impl Service {
    /// Opens (or initializes) the data dir. A fresh dir gets a master key and a new signing
    /// key; an existing one must have both and they must open.
    pub fn open(
        data_dir: &Path,
        issuer_base: &str,
        token_lifetime: Duration,
    ) -> Result<Service, Error> {
        let store = StateStore::open(data_dir)?;
        let existing = store.load()?;
        let key_path = data_dir.join(MASTER_KEY_FILE);
        let master = if existing.is_none() {
            sealed::MasterKey::load_or_create(&key_path)
        } else {
            sealed::MasterKey::load(&key_path)
        }
        .map_err(|e| master_key_error(&key_path, e))?;
        let seal_key = master.derive_in(KEY_DOMAIN, SEAL_INFO);
        let (state, signing) = match existing {
            Some(state) => {
                let sealed = STANDARD.decode(&state.signing_key.sealed).map_err(|_| {
                    Error::CorruptState {
                        path: store.path(),
                        reason: "signing key is not base64".into(),
                    }
                })?;
                let pkcs8 = sealed::open(&seal_key, &seal_aad(&state.signing_key.kid), &sealed)
                    .ok_or(Error::Crypto(
                        "aead open (wrong master key or tampered state)",
                    ))?;
                let signing = SigningKey::from_pkcs8(pkcs8)?;
                if signing.kid() != state.signing_key.kid {
                    return Err(Error::CorruptState {
                        path: store.path(),
                        reason: "signing key does not match its kid".into(),
                    });
                }
                (state, signing)
            }
            None => {
                let signing = SigningKey::generate()?;
                let sealed = sealed::seal(&seal_key, &seal_aad(signing.kid()), signing.pkcs8())
                    .map_err(|_| Error::Crypto("aead seal"))?;
                let state = State {
                    version: STATE_VERSION,
                    signing_key: SealedKey {
                        kid: signing.kid().to_string(),
                        sealed: STANDARD.encode(sealed),
                    },
                    bootstrap: None,
                    tenants: BTreeMap::new(),
                    identities: BTreeMap::new(),
                    service_principals: BTreeMap::new(),
                    resources: BTreeMap::new(),
                };
                store.save(&state)?;
                tracing::info!(kid = signing.kid(), "initialized identity data dir");
                (state, signing)
            }
        };
        let mut public_keys = HashMap::new();
        if let Some(point) = jwk_public_point(signing.jwk()) {
            public_keys.insert(signing.kid().to_string(), point);
        }
        Ok(Service {
            store,
            state: RwLock::new(state),
            write: Mutex::new(()),
            signing,
            public_keys,
            issuer_base: issuer_base.trim_end_matches('/').to_string(),
            token_lifetime,
        })
    }

    /// The base URL tokens are issued under (`iss` = `{issuer_base}/{tid}/v2.0`).
    pub fn issuer_base(&self) -> &str {
        &self.issuer_base
    }

    /// Applies `f` to a copy of the state, persists it, then publishes it.
    fn mutate<T>(&self, f: impl FnOnce(&mut State) -> Result<T, Error>) -> Result<T, Error> {
        let _writer = self.write.lock();
        let mut next = self.state.read().clone();
        let out = f(&mut next)?;
        self.store.save(&next)?;
        *self.state.write() = next;
        Ok(out)
    }

    /// Snapshot of the current state (tests and diagnostics).
    pub fn snapshot(&self) -> State {
        self.state.read().clone()
    }

    /// JWKS with the service's signing key(s).
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: vec![self.signing.jwk().clone()],
        }
    }

    pub fn tenant_exists(&self, tenant_id: &str) -> bool {
        self.state
            .read()
            .tenants
            .contains_key(&tenant_id.to_ascii_lowercase())
    }

    /// Liveness and kind of a principal (managed identity or service principal).
    pub fn principal(&self, object_id: &str) -> Option<PrincipalInfo> {
        let state = self.state.read();
        if let Some(mi) = state
            .identities
            .values()
            .find(|mi| mi.principal_id.eq_ignore_ascii_case(object_id))
        {
            return Some(PrincipalInfo {
                object_id: mi.principal_id.clone(),
                tenant_id: mi.tenant_id.clone(),
                kind: "ManagedIdentity".into(),
                display_name: mi.name.clone(),
                app_id: mi.client_id.clone(),
            });
        }
        state
            .service_principals
            .values()
            .find(|sp| sp.object_id.eq_ignore_ascii_case(object_id))
            .map(|sp| PrincipalInfo {
                object_id: sp.object_id.clone(),
                tenant_id: sp.tenant_id.clone(),
                kind: "ServicePrincipal".into(),
                display_name: sp.display_name.clone(),
                app_id: sp.app_id.clone(),
            })
    }

    /// Validates a bearer token in-process with the same checks as the HTTP verifier
    /// (signature, exp/nbf, issuer, audience, principal liveness).
    pub fn verify(&self, bearer: &str, audiences: &[String]) -> Result<Claims, TokenError> {
        let expect = Expectations {
            issuer_base: &self.issuer_base,
            audiences,
            now: token::unix_now(),
        };
        let claims = token::validate(bearer, &self.public_keys, &expect)?;
        match self.principal(&claims.oid) {
            Some(p)
                if p.tenant_id == claims.tid && p.app_id.eq_ignore_ascii_case(&claims.appid) =>
            {
                Ok(claims)
            }
            _ => Err(TokenError::PrincipalGone(claims.oid)),
        }
    }

    /// Authenticates an admin API caller: a valid token for an admin audience whose
    /// principal is an `admin` service principal. Returns the claims (the tenant is `tid`).
    pub fn authorize_admin(&self, bearer: &str) -> Result<Claims, Error> {
        let audiences: Vec<String> = ADMIN_AUDIENCES.iter().map(|s| s.to_string()).collect();
        let claims = self
            .verify(bearer, &audiences)
            .map_err(|e| Error::Unauthorized(e.to_string()))?;
        let is_admin = self
            .state
            .read()
            .service_principals
            .get(&claims.appid.to_ascii_lowercase())
            .is_some_and(|sp| sp.admin && sp.object_id == claims.oid);
        if !is_admin {
            return Err(Error::Forbidden(format!(
                "principal '{}' is not a tenant administrator",
                claims.oid
            )));
        }
        Ok(claims)
    }
}

fn non_empty(what: &str, v: &str) -> Result<(), Error> {
    if v.trim().is_empty() {
        return Err(Error::InvalidInput(format!("{what} must not be empty")));
    }
    Ok(())
}
