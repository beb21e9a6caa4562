//! Bootstrap, tenants and service principals.

use crate::Error;
use crate::crypto::secret::{self, SecretHash};
use crate::model::{BootstrapRecord, ServicePrincipal, State, Tenant};
use crate::new_guid;
use crate::token;

use super::{Bootstrap, Credentials, Service, non_empty};

impl Service {
    // ---- bootstrap, tenants, service principals ----

    /// Idempotent: creates the default tenant, an admin principal and a trusted-service
    /// principal for the control plane on the first call and returns their credentials;
    /// later calls return only the tenant id.
    pub fn bootstrap(&self) -> Result<Bootstrap, Error> {
        if let Some(done) = &self.state.read().bootstrap {
            return Ok(Bootstrap {
                tenant_id: done.tenant_id.clone(),
                admin: None,
                control_plane: None,
            });
        }
        self.mutate(|state| {
            if let Some(done) = &state.bootstrap {
                return Ok(Bootstrap {
                    tenant_id: done.tenant_id.clone(),
                    admin: None,
                    control_plane: None,
                });
            }
            let tenant = insert_tenant(state, "Strongroom");
            let admin = insert_principal(state, &tenant.id, "strongroom-admin", true, false)?;
            let control =
                insert_principal(state, &tenant.id, "strongroom-control-plane", false, true)?;
            state.bootstrap = Some(BootstrapRecord {
                tenant_id: tenant.id.clone(),
                admin_app_id: admin.client_id.clone(),
                control_plane_app_id: control.client_id.clone(),
            });
            Ok(Bootstrap {
                tenant_id: tenant.id,
                admin: Some(admin),
                control_plane: Some(control),
            })
        })
    }

    /// Creates a tenant with its own administrator principal.
    pub fn create_tenant(&self, display_name: &str) -> Result<(Tenant, Credentials), Error> {
        non_empty("displayName", display_name)?;
        self.mutate(|state| {
            let tenant = insert_tenant(state, display_name);
            let admin = insert_principal(
                state,
                &tenant.id,
                &format!("{display_name} admin"),
                true,
                false,
            )?;
            Ok((tenant, admin))
        })
    }

    pub fn list_tenants(&self) -> Vec<Tenant> {
        self.state.read().tenants.values().cloned().collect()
    }

    /// Creates a service principal in `tenant_id`; the secret is returned once.
    pub fn create_service_principal(
        &self,
        tenant_id: &str,
        display_name: &str,
        admin: bool,
        trusted_service: bool,
    ) -> Result<Credentials, Error> {
        non_empty("displayName", display_name)?;
        self.mutate(|state| {
            if !state.tenants.contains_key(tenant_id) {
                return Err(Error::NotFound {
                    kind: "tenant",
                    id: tenant_id.into(),
                });
            }
            insert_principal(state, tenant_id, display_name, admin, trusted_service)
        })
    }

    /// Adds another client secret to a principal (rotation); returns it once.
    pub fn add_secret(&self, tenant_id: &str, app_id: &str) -> Result<Credentials, Error> {
        self.mutate(|state| {
            let sp = state
                .service_principals
                .get_mut(&app_id.to_ascii_lowercase())
                .filter(|sp| sp.tenant_id == tenant_id)
                .ok_or_else(|| Error::NotFound {
                    kind: "service principal",
                    id: app_id.into(),
                })?;
            let secret = secret::generate()?;
            sp.secrets.push(SecretHash::new(&secret)?);
            Ok(Credentials {
                tenant_id: sp.tenant_id.clone(),
                client_id: sp.app_id.clone(),
                object_id: sp.object_id.clone(),
                client_secret: secret,
            })
        })
    }

    pub fn list_service_principals(&self, tenant_id: &str) -> Vec<ServicePrincipal> {
        self.state
            .read()
            .service_principals
            .values()
            .filter(|sp| sp.tenant_id == tenant_id)
            .cloned()
            .collect()
    }

    pub fn get_service_principal(&self, tenant_id: &str, app_id: &str) -> Option<ServicePrincipal> {
        self.state
            .read()
            .service_principals
            .get(&app_id.to_ascii_lowercase())
            .filter(|sp| sp.tenant_id == tenant_id)
            .cloned()
    }

    /// Deletes a service principal; returns whether it existed.
    pub fn delete_service_principal(&self, tenant_id: &str, app_id: &str) -> Result<bool, Error> {
        let key = app_id.to_ascii_lowercase();
        self.mutate(|state| {
            let found = state
                .service_principals
                .get(&key)
                .is_some_and(|sp| sp.tenant_id == tenant_id);
            if found {
                state.service_principals.remove(&key);
            }
            Ok(found)
        })
    }
}

fn insert_tenant(state: &mut State, display_name: &str) -> Tenant {
    let tenant = Tenant {
        id: new_guid(),
        display_name: display_name.to_string(),
        created_at: token::unix_now(),
    };
    state.tenants.insert(tenant.id.clone(), tenant.clone());
    tenant
}

fn insert_principal(
    state: &mut State,
    tenant_id: &str,
    display_name: &str,
    admin: bool,
    trusted_service: bool,
) -> Result<Credentials, Error> {
    let secret = secret::generate()?;
    let sp = ServicePrincipal {
        app_id: new_guid(),
        object_id: new_guid(),
        tenant_id: tenant_id.to_string(),
        display_name: display_name.to_string(),
        admin,
        trusted_service,
        secrets: vec![SecretHash::new(&secret)?],
        created_at: token::unix_now(),
    };
    let creds = Credentials {
        tenant_id: tenant_id.to_string(),
        client_id: sp.app_id.clone(),
        object_id: sp.object_id.clone(),
        client_secret: secret,
    };
    state.service_principals.insert(sp.app_id.clone(), sp);
    Ok(creds)
}
