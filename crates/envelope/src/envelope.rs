//! Creation and revalidation of a cluster's wrapped root DEK.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{KekError, KekProvider, KeyState, RootDek, WrappedDek, WrappedKeyStore};

/// What a key must be to protect a root DEK (the product's CMK requirements).
#[derive(Debug, Clone)]
pub struct KeyRequirements {
    pub key_types: Vec<&'static str>,
    pub key_sizes: Vec<u32>,
    pub key_ops: Vec<&'static str>,
}

impl Default for KeyRequirements {
    fn default() -> Self {
        KeyRequirements {
            key_types: vec!["RSA", "RSA-HSM"],
            key_sizes: vec![2048, 3072, 4096],
            key_ops: vec!["wrapKey", "unwrapKey"],
        }
    }
}

impl KeyRequirements {
    /// Judges a key as the service must: the vault still unwraps with an expired or
    /// not-yet-active key, so the window is checked here, on the vault's clock.
    pub fn check(&self, state: &KeyState) -> Result<(), KekError> {
        let key = state.kid.clone();
        if !self.key_types.contains(&state.kty.as_str()) {
            return Err(KekError::KeyInvalid {
                key,
                why: format!("key type {} is not one of {:?}", state.kty, self.key_types),
            });
        }
        match state.key_size {
            Some(bits) if self.key_sizes.contains(&bits) => {}
            other => {
                return Err(KekError::KeyInvalid {
                    key,
                    why: format!(
                        "key size {} is not one of {:?}",
                        other.map_or("unknown".to_string(), |b| b.to_string()),
                        self.key_sizes
                    ),
                });
            }
        }
        // An empty key_ops list means "all operations" in Key Vault.
        if !state.key_ops.is_empty() {
            for op in &self.key_ops {
                if !state.key_ops.iter().any(|o| o == op) {
                    return Err(KekError::KeyInvalid {
                        key,
                        why: format!("key_ops does not allow {op}"),
                    });
                }
            }
        }
        if !state.enabled {
            return Err(KekError::KeyDisabled { key });
        }
        let now = state.vault_time.unwrap_or_else(unix_now);
        if let Some(nbf) = state.nbf
            && now < nbf
        {
            return Err(KekError::KeyNotYetActive { key, nbf });
        }
        if let Some(exp) = state.exp
            && now >= exp
        {
            return Err(KekError::KeyExpired { key, exp });
        }
        Ok(())
    }
}

/// The outcome of a successful creation or revalidation.
#[derive(Debug)]
pub struct Revalidation {
    /// The unwrapped root DEK, to hand to the storage engine.
    pub dek: RootDek,
    /// The versioned key id that now wraps it.
    pub active_kid: String,
    /// Set when this pass re-wrapped the DEK onto a newer key version.
    pub rewrapped_from: Option<String>,
}

/// A cluster's root DEK under one KEK.
pub struct Envelope {
    kek: Arc<dyn KekProvider>,
    store: WrappedKeyStore,
    requirements: KeyRequirements,
}

impl Envelope {
    pub fn new(kek: Arc<dyn KekProvider>, store: WrappedKeyStore) -> Self {
        Envelope {
            kek,
            store,
            requirements: KeyRequirements::default(),
        }
    }

    pub fn kek(&self) -> &Arc<dyn KekProvider> {
        &self.kek
    }

    pub fn store(&self) -> &WrappedKeyStore {
        &self.store
    }

    /// Validates the key and the identity's access to it, then generates, wraps and
    /// stores a fresh root DEK. Nothing is written unless every check passed and the
    /// wrapped DEK unwraps again (which proves get, wrapKey and unwrapKey access).
    pub async fn create(&self) -> Result<Revalidation, KekError> {
        let state = self.kek.key_state().await?;
        self.requirements.check(&state)?;
        let dek = RootDek::generate()?;
        let wrapped = self.kek.wrap(&state.kid, &dek).await?;
        let check = self.kek.unwrap(&wrapped).await?;
        if check != dek {
            return Err(KekError::Crypto(
                "the vault unwrapped the new root key to different bytes".into(),
            ));
        }
        self.store.store(&wrapped, &[])?;
        Ok(Revalidation {
            dek,
            active_kid: wrapped.kid,
            rewrapped_from: None,
        })
    }

    /// One revalidation pass: read the key's state with the cluster's identity, judge
    /// it, unwrap the stored DEK with exactly the version that wrapped it, and — for a
    /// version-less key URL whose current version changed — re-wrap onto that version.
    pub async fn revalidate(&self) -> Result<Revalidation, KekError> {
        let state = self.kek.key_state().await?;
        self.requirements.check(&state)?;
        let (current, previous) = self.store.load()?.ok_or_else(|| KekError::Store {
            path: self.store.path().display().to_string(),
            detail: "no wrapped root key: the cluster was deleted or never created".into(),
        })?;
        let (dek, current) = match self.kek.unwrap(&current).await {
            Ok(dek) => (dek, current),
            // A crash between the two writes of a re-wrap leaves the previous wrapping
            // next to the current one; if the current one is refused, the previous one
            // is as good a witness of the same DEK.
            Err(first) => match self.unwrap_any(&previous).await {
                Some((dek, witness)) => (dek, witness),
                None => return Err(first),
            },
        };
        if !previous.is_empty() {
            self.store.store(&current, &[])?;
        }
        if self.kek.key_url().is_versionless() && state.kid != current.kid {
            let wrapped = self.rewrap(&state.kid, &dek, &current).await?;
            return Ok(Revalidation {
                dek,
                active_kid: wrapped.kid,
                rewrapped_from: Some(current.kid),
            });
        }
        Ok(Revalidation {
            dek,
            active_kid: current.kid,
            rewrapped_from: None,
        })
    }

    /// Moves the DEK to another KEK (a key or identity update), validating the new key
    /// as strictly as at creation. The old wrapping is kept until the new one is durable
    /// and proven to unwrap.
    pub async fn rekey(&self, target: &Envelope, dek: &RootDek) -> Result<String, KekError> {
        let state = target.kek.key_state().await?;
        target.requirements.check(&state)?;
        let old = self.store.load()?;
        let wrapped = target.kek.wrap(&state.kid, dek).await?;
        if target.kek.unwrap(&wrapped).await? != *dek {
            return Err(KekError::Crypto(
                "the new key unwrapped the root key to different bytes".into(),
            ));
        }
        let keep: Vec<WrappedDek> = old.into_iter().map(|(current, _)| current).collect();
        target.store.store(&wrapped, &keep)?;
        target.store.store(&wrapped, &[])?;
        Ok(wrapped.kid)
    }

    async fn rewrap(
        &self,
        kid: &str,
        dek: &RootDek,
        old: &WrappedDek,
    ) -> Result<WrappedDek, KekError> {
        let wrapped = self.kek.wrap(kid, dek).await?;
        self.store.store(&wrapped, std::slice::from_ref(old))?;
        if self.kek.unwrap(&wrapped).await? != *dek {
            return Err(KekError::Crypto(
                "the new key version unwrapped the root key to different bytes".into(),
            ));
        }
        self.store.store(&wrapped, &[])?;
        tracing::info!(from = %old.kid, to = %wrapped.kid, "re-wrapped the root key onto the current key version");
        Ok(wrapped)
    }

    async fn unwrap_any(&self, candidates: &[WrappedDek]) -> Option<(RootDek, WrappedDek)> {
        for wrapped in candidates {
            if let Ok(dek) = self.kek.unwrap(wrapped).await {
                return Some((dek, wrapped.clone()));
            }
        }
        None
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> KeyState {
        KeyState {
            kid: "https://v/keys/k/1".into(),
            kty: "RSA".into(),
            key_size: Some(3072),
            enabled: true,
            nbf: None,
            exp: None,
            key_ops: vec![],
            vault_time: Some(1_000_000),
        }
    }

    fn reason(s: KeyState) -> Option<crate::Reason> {
        KeyRequirements::default()
            .check(&s)
            .err()
            .map(|e| e.reason())
    }

    #[test]
    fn the_product_requirements_are_enforced() {
        use crate::Reason::*;
        assert_eq!(reason(state()), None);
        assert_eq!(
            reason(KeyState {
                enabled: false,
                ..state()
            }),
            Some(KeyDisabled)
        );
        assert_eq!(
            reason(KeyState {
                exp: Some(1_000_000),
                ..state()
            }),
            Some(KeyExpired)
        );
        assert_eq!(
            reason(KeyState {
                exp: Some(1_000_001),
                ..state()
            }),
            None
        );
        assert_eq!(
            reason(KeyState {
                nbf: Some(1_000_001),
                ..state()
            }),
            Some(KeyNotYetActive)
        );
        assert_eq!(
            reason(KeyState {
                nbf: Some(1_000_000),
                ..state()
            }),
            None
        );
        assert_eq!(
            reason(KeyState {
                kty: "EC".into(),
                ..state()
            }),
            Some(KeyInvalid)
        );
        assert_eq!(
            reason(KeyState {
                key_size: Some(1024),
                ..state()
            }),
            Some(KeyInvalid)
        );
        assert_eq!(
            reason(KeyState {
                kty: "RSA-HSM".into(),
                key_size: Some(4096),
                ..state()
            }),
            None
        );
        let no_unwrap = KeyState {
            key_ops: vec!["wrapKey".into(), "encrypt".into()],
            ..state()
        };
        assert_eq!(reason(no_unwrap), Some(KeyInvalid));
    }

    #[test]
    fn validity_is_judged_on_the_vault_clock() {
        // The vault says it is later than the key's expiry, whatever our clock says.
        let s = KeyState {
            exp: Some(unix_now() + 3600),
            vault_time: Some(unix_now() + 7200),
            ..state()
        };
        assert_eq!(reason(s), Some(crate::Reason::KeyExpired));
    }
}
