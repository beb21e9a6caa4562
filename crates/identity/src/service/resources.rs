//! Resources (e.g. clusters) that identities are attached to, and their MSI secrets.

use std::collections::BTreeSet;

use zeroize::Zeroizing;

use crate::Error;
use crate::crypto::secret::{self, SecretHash};
use crate::model::{AttachedResource, State};

use super::{Service, non_empty};

impl Service {
    // ---- resources (entitlement for the MSI endpoint) ----

    /// Attaches an identity to a resource (creating the resource record if needed).
    pub fn attach(
        &self,
        tenant_id: &str,
        resource: &str,
        identity_id: &str,
    ) -> Result<AttachedResource, Error> {
        non_empty("resource", resource)?;
        self.mutate(|state| {
            let mi = state
                .identities
                .get(&identity_id.to_ascii_lowercase())
                .filter(|mi| mi.tenant_id == tenant_id)
                .ok_or_else(|| Error::NotFound {
                    kind: "managed identity",
                    id: identity_id.into(),
                })?;
            let principal = mi.principal_id.clone();
            let res = resource_entry(state, tenant_id, resource)?;
            res.identities.insert(principal);
            Ok(res.clone())
        })
    }

    /// Detaches an identity from a resource; returns whether it was attached.
    pub fn detach(
        &self,
        tenant_id: &str,
        resource: &str,
        identity_id: &str,
    ) -> Result<bool, Error> {
        self.mutate(|state| {
            let Some(principal) = state
                .identities
                .get(&identity_id.to_ascii_lowercase())
                .map(|mi| mi.principal_id.clone())
            else {
                return Ok(false);
            };
            match state.resources.get_mut(&resource.to_ascii_lowercase()) {
                Some(res) if res.tenant_id == tenant_id => Ok(res.identities.remove(&principal)),
                Some(_) => Err(Error::Forbidden(format!(
                    "resource '{resource}' belongs to another tenant"
                ))),
                None => Ok(false),
            }
        })
    }

    /// Issues a new secret for a resource, replacing any previous one; returned once.
    pub fn issue_resource_secret(
        &self,
        tenant_id: &str,
        resource: &str,
    ) -> Result<Zeroizing<String>, Error> {
        non_empty("resource", resource)?;
        self.mutate(|state| {
            let res = resource_entry(state, tenant_id, resource)?;
            let secret = secret::generate()?;
            res.secret = Some(SecretHash::new(&secret)?);
            Ok(secret)
        })
    }

    pub fn get_resource(&self, tenant_id: &str, resource: &str) -> Option<AttachedResource> {
        self.state
            .read()
            .resources
            .get(&resource.to_ascii_lowercase())
            .filter(|r| r.tenant_id == tenant_id)
            .cloned()
    }

    /// Deletes a resource record (its secret stops working); returns whether it existed.
    pub fn delete_resource(&self, tenant_id: &str, resource: &str) -> Result<bool, Error> {
        let key = resource.to_ascii_lowercase();
        self.mutate(|state| match state.resources.get(&key) {
            Some(r) if r.tenant_id == tenant_id => {
                state.resources.remove(&key);
                Ok(true)
            }
            Some(_) => Err(Error::Forbidden(format!(
                "resource '{resource}' belongs to another tenant"
            ))),
            None => Ok(false),
        })
    }
}

fn resource_entry<'s>(
    state: &'s mut State,
    tenant_id: &str,
    resource: &str,
) -> Result<&'s mut AttachedResource, Error> {
    let res = state
        .resources
        .entry(resource.to_ascii_lowercase())
        .or_insert_with(|| AttachedResource {
            resource_id: resource.to_string(),
            tenant_id: tenant_id.to_string(),
            identities: BTreeSet::new(),
            secret: None,
        });
    if res.tenant_id != tenant_id {
        return Err(Error::Forbidden(format!(
            "resource '{resource}' belongs to another tenant"
        )));
    }
    Ok(res)
}
