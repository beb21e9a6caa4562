//! In-memory model of every vault and key, backed by the sealed [`Store`].
//!
//! Readers (the crypto hot path) take short read locks and clone an `Arc<LoadedKey>`.
//! Writers are serialized per vault by a mutation mutex; they compute the new record,
//! persist it (fsync) WITHOUT holding the read-visible lock, then swap it in — so a slow
//! fsync never stalls concurrent unwraps.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::api_error::ApiError;
use crate::clock::Clock;
use crate::crypto::LoadedKey;
use crate::error::Error;
use crate::model::{KeyRecord, VaultRecord};
use crate::store::Store;

/// One key plus its parsed versions.
pub struct KeyEntry {
    pub record: KeyRecord,
    pub loaded: HashMap<String, Arc<LoadedKey>>,
}

/// One vault with its keys and runtime switches.
pub struct VaultEntry {
    pub record: RwLock<VaultRecord>,
    pub keys: RwLock<HashMap<String, KeyEntry>>,
    mutate: Mutex<()>,
    /// Dev control: data listener closed.
    pub unreachable: AtomicBool,
    /// Dev control: every data-plane request gets 403 ForbiddenByFirewall.
    pub firewall_deny: AtomicBool,
    /// The running data listener, if any.
    pub listener: Mutex<Option<platform::Server>>,
}

impl VaultEntry {
    fn new(record: VaultRecord, keys: HashMap<String, KeyEntry>) -> Self {
        VaultEntry {
            record: RwLock::new(record),
            keys: RwLock::new(keys),
            mutate: Mutex::new(()),
            unreachable: AtomicBool::new(false),
            firewall_deny: AtomicBool::new(false),
            listener: Mutex::new(None),
        }
    }

    pub fn name(&self) -> String {
        self.record.read().name.clone()
    }

    pub fn is_deleted(&self) -> bool {
        self.record.read().deleted.is_some()
    }

    pub fn is_unreachable(&self) -> bool {
        self.unreachable.load(Ordering::Relaxed)
    }
}

/// All vaults.
pub struct State {
    store: Mutex<Store>,
    vaults: RwLock<HashMap<String, Arc<VaultEntry>>>,
    pub clock: Clock,
}

fn vault_id(name: &str) -> String {
    format!("v/{}", name.to_ascii_lowercase())
}

fn key_id(vault: &str, key: &str) -> String {
    format!(
        "k/{}/{}",
        vault.to_ascii_lowercase(),
        key.to_ascii_lowercase()
    )
}

fn load_entry(record: KeyRecord) -> Result<KeyEntry, Error> {
    let mut loaded = HashMap::new();
    for v in &record.versions {
        let k = LoadedKey::from_pkcs8(&v.pkcs8)
            .map_err(|e| Error::Corrupt(format!("key version does not parse: {e}")))?;
        loaded.insert(v.version.clone(), Arc::new(k));
    }
    Ok(KeyEntry { record, loaded })
}

impl State {
    /// Loads every vault and key from the store.
    pub fn load(store: Store) -> Result<Self, Error> {
        let mut vaults = HashMap::new();
        for (_, rec) in store.scan::<VaultRecord>("v/")? {
            let mut keys = HashMap::new();
            let prefix = format!("k/{}/", rec.name.to_ascii_lowercase());
            for (_, krec) in store.scan::<KeyRecord>(&prefix)? {
                keys.insert(krec.name.to_ascii_lowercase(), load_entry(krec)?);
            }
            vaults.insert(
                rec.name.to_ascii_lowercase(),
                Arc::new(VaultEntry::new(rec, keys)),
            );
        }
        Ok(State {
            store: Mutex::new(store),
            vaults: RwLock::new(vaults),
            clock: Clock::default(),
        })
    }

    pub fn vault(&self, name: &str) -> Option<Arc<VaultEntry>> {
        self.vaults.read().get(&name.to_ascii_lowercase()).cloned()
    }

    pub fn vaults(&self) -> Vec<Arc<VaultEntry>> {
        let mut v: Vec<_> = self.vaults.read().values().cloned().collect();
        v.sort_by_key(|e| e.name().to_ascii_lowercase());
        v
    }

    /// Creates a new vault; fails with `Err(existing)` when the name is taken (live or deleted).
    pub fn create_vault(&self, rec: VaultRecord) -> Result<Arc<VaultEntry>, Error> {
        let lname = rec.name.to_ascii_lowercase();
        self.store.lock().put(&vault_id(&rec.name), &rec)?;
        let entry = Arc::new(VaultEntry::new(rec, HashMap::new()));
        self.vaults.write().insert(lname, entry.clone());
        Ok(entry)
    }

    /// Applies `f` to a copy of the vault record and persists the result.
    pub fn update_vault<F>(&self, v: &VaultEntry, f: F) -> Result<VaultRecord, ApiError>
    where
        F: FnOnce(&mut VaultRecord) -> Result<(), ApiError>,
    {
        let _g = v.mutate.lock();
        let mut rec = v.record.read().clone();
        f(&mut rec)?;
        self.store.lock().put(&vault_id(&rec.name), &rec)?;
        *v.record.write() = rec.clone();
        Ok(rec)
    }

    /// Removes a vault and all its keys for good.
    pub fn purge_vault(&self, v: &VaultEntry) -> Result<(), Error> {
        let _g = v.mutate.lock();
        let name = v.name();
        let key_names: Vec<String> = v.keys.read().keys().cloned().collect();
        {
            let mut store = self.store.lock();
            for k in &key_names {
                store.delete(&key_id(&name, k))?;
            }
            store.delete(&vault_id(&name))?;
        }
        v.keys.write().clear();
        self.vaults.write().remove(&name.to_ascii_lowercase());
        Ok(())
    }

    /// Read-modify-write of one key record. `f` gets the current record (if any) and returns
    /// the new one (`None` removes the key). Returns what `f` returned.
    pub fn mutate_key<F>(
        &self,
        v: &VaultEntry,
        name: &str,
        f: F,
    ) -> Result<Option<KeyRecord>, ApiError>
    where
        F: FnOnce(Option<&KeyRecord>) -> Result<Option<KeyRecord>, ApiError>,
    {
        let _g = v.mutate.lock();
        let lname = name.to_ascii_lowercase();
        let current = v.keys.read().get(&lname).map(|e| e.record.clone());
        let next = f(current.as_ref())?;
        let vault_name = v.name();
        match &next {
            Some(rec) => {
                // Parse new versions before persisting so a bad key never lands on disk.
                let mut loaded: HashMap<String, Arc<LoadedKey>> = v
                    .keys
                    .read()
                    .get(&lname)
                    .map(|e| e.loaded.clone())
                    .unwrap_or_default();
                for ver in &rec.versions {
                    if !loaded.contains_key(&ver.version) {
                        let k = LoadedKey::from_pkcs8(&ver.pkcs8)
                            .map_err(|_| ApiError::bad_parameter("The key material is invalid."))?;
                        loaded.insert(ver.version.clone(), Arc::new(k));
                    }
                }
                loaded.retain(|k, _| rec.versions.iter().any(|v| &v.version == k));
                self.store.lock().put(&key_id(&vault_name, name), rec)?;
                v.keys.write().insert(
                    lname,
                    KeyEntry {
                        record: rec.clone(),
                        loaded,
                    },
                );
            }
            None => {
                self.store.lock().delete(&key_id(&vault_name, name))?;
                v.keys.write().remove(&lname);
            }
        }
        Ok(next)
    }

    /// Compacts the store (used by tests and at shutdown).
    pub fn compact(&self) -> Result<(), Error> {
        self.store.lock().compact()
    }
}
