//! Authorization on the data plane: [`crate::authz`] decides (RBAC role assignments or
//! access policies, per the vault's setting); this stage turns a denial into the
//! service's 403 (`ForbiddenByRbac` / `ForbiddenByPolicy`) naming the caller.

use crate::api_error::ApiError;
use crate::authz::{self, Denied, KeyPerm};
use crate::state::VaultEntry;

/// Refuses `oid` the permission `perm` (on `key`, when the operation names one).
pub(super) fn check(
    vault: &VaultEntry,
    oid: &str,
    perm: KeyPerm,
    key: Option<&str>,
    caller: &str,
    vault_name: &str,
    location: &str,
) -> Result<(), ApiError> {
    let v = vault.record.read();
    authz::check(&v, oid, perm, key).map_err(|d| match d {
        Denied::Policy(p) => ApiError::forbidden_by_policy(caller, p, vault_name, location),
        Denied::Rbac { action, resource } => {
            ApiError::forbidden_by_rbac(caller, action, &resource, vault_name, location)
        }
    })
}
