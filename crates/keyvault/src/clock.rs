//! The vault clock: wall time plus a global shift plus a per-vault shift (dev controls),
//! so tests can age keys (nbf/exp), deletion/purge dates and rotation policies.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;

/// Shifts are in seconds and only ever move forward.
#[derive(Debug, Default)]
pub struct Clock {
    global: RwLock<i64>,
    per_vault: RwLock<HashMap<String, i64>>,
}

impl Clock {
    /// Real Unix time in seconds.
    pub fn wall() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    /// Current time as seen by `vault` (Unix seconds).
    pub fn now(&self, vault: &str) -> i64 {
        Self::wall() + *self.global.read() + self.per_vault.read().get(vault).copied().unwrap_or(0)
    }

    /// Current time with only the global shift (management-plane timestamps).
    pub fn now_global(&self) -> i64 {
        Self::wall() + *self.global.read()
    }

    pub fn shift_global(&self, secs: i64) {
        *self.global.write() += secs;
    }

    pub fn shift_vault(&self, vault: &str, secs: i64) {
        *self.per_vault.write().entry(vault.to_string()).or_insert(0) += secs;
    }
}
