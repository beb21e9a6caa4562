//! User-assigned managed identities (`Microsoft.ManagedIdentity/userAssignedIdentities`).

use std::collections::BTreeMap;

use crate::Error;
use crate::model::ManagedIdentity;
use crate::new_guid;
use crate::token;

use super::Service;

impl Service {
    // ---- managed identities ----

    /// Creates or updates a user-assigned identity. Returns the identity and whether it was
    /// created. Updating keeps clientId/principalId; only location and tags change.
    pub fn put_identity(
        &self,
        tenant_id: &str,
        subscription: &str,
        resource_group: &str,
        name: &str,
        location: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<(ManagedIdentity, bool), Error> {
        validate_arm_names(subscription, resource_group, name)?;
        let id = identity_resource_id(subscription, resource_group, name);
        let key = id.to_ascii_lowercase();
        self.mutate(|state| {
            if let Some(existing) = state.identities.get_mut(&key) {
                if existing.tenant_id != tenant_id {
                    return Err(Error::Forbidden(format!("identity '{id}' belongs to another tenant")));
                }
                existing.location = location.to_string();
                existing.tags = tags;
                return Ok((existing.clone(), false));
            }
            let mi = ManagedIdentity {
                id: id.clone(),
                name: name.to_string(),
                location: location.to_string(),
                tags,
                tenant_id: tenant_id.to_string(),
                client_id: new_guid(),
                principal_id: new_guid(),
                created_at: token::unix_now(),
            };
            state.identities.insert(key, mi.clone());
            tracing::info!(id = %mi.id, principal_id = %mi.principal_id, "created managed identity");
            Ok((mi, true))
        })
    }

    pub fn get_identity(&self, resource_id: &str) -> Option<ManagedIdentity> {
        self.state
            .read()
            .identities
            .get(&resource_id.to_ascii_lowercase())
            .cloned()
    }

    /// Identities under a subscription and resource group.
    pub fn list_identities(
        &self,
        tenant_id: &str,
        subscription: &str,
        resource_group: &str,
    ) -> Vec<ManagedIdentity> {
        let prefix = format!(
            "/subscriptions/{subscription}/resourcegroups/{resource_group}/providers/microsoft.managedidentity/userassignedidentities/"
        )
        .to_ascii_lowercase();
        self.state
            .read()
            .identities
            .iter()
            .filter(|(k, mi)| k.starts_with(&prefix) && mi.tenant_id == tenant_id)
            .map(|(_, mi)| mi.clone())
            .collect()
    }

    /// Deletes an identity and detaches it everywhere; returns whether it existed.
    pub fn delete_identity(&self, tenant_id: &str, resource_id: &str) -> Result<bool, Error> {
        let key = resource_id.to_ascii_lowercase();
        self.mutate(|state| {
            let Some(mi) = state.identities.get(&key) else {
                return Ok(false);
            };
            if mi.tenant_id != tenant_id {
                return Err(Error::Forbidden(format!(
                    "identity '{resource_id}' belongs to another tenant"
                )));
            }
            let principal = mi.principal_id.clone();
            state.identities.remove(&key);
            for res in state.resources.values_mut() {
                res.identities.remove(&principal);
            }
            tracing::info!(id = %resource_id, %principal, "deleted managed identity");
            Ok(true)
        })
    }
}

/// The ARM resource id of a user-assigned identity.
pub fn identity_resource_id(subscription: &str, resource_group: &str, name: &str) -> String {
    format!(
        "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )
}

/// ARM naming rules: identity names 3-128 chars of `[A-Za-z0-9_-]` starting with a letter
/// or digit; resource groups 1-90 chars of `[A-Za-z0-9_.()-]` not ending in `.`;
/// subscriptions non-empty without `/`.
fn validate_arm_names(subscription: &str, resource_group: &str, name: &str) -> Result<(), Error> {
    let bad = |what: &str, rule: &str| Err(Error::InvalidInput(format!("{what} {rule}")));
    if subscription.is_empty() || subscription.contains('/') || subscription.len() > 128 {
        return bad("subscription", "must be 1-128 characters without '/'");
    }
    let rg_ok = (1..=90).contains(&resource_group.len())
        && !resource_group.ends_with('.')
        && resource_group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.()-".contains(c));
    if !rg_ok {
        return bad(
            "resourceGroup",
            "must be 1-90 characters of letters, digits, '_', '.', '(', ')', '-' and not end in '.'",
        );
    }
    let name_ok = (3..=128).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return bad(
            "name",
            "must be 3-128 characters of letters, digits, '-' and '_', starting with a letter or digit",
        );
    }
    Ok(())
}
