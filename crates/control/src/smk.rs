//! Service-managed keys: the same envelope machinery as CMK, with the service as the
//! owner of the vault, the identity and the key.
//!
//! At start the control plane makes sure its service vault exists (RBAC, soft delete,
//! purge protection), that its service identity is attached to the control plane and
//! holds *Key Vault Crypto Service Encryption User* on that vault, and that the control
//! plane's administrator principal can create keys there. Each SMK cluster then gets its
//! own RSA key with a rotation policy; the cluster follows it through a version-less key
//! URL, so service rotations re-wrap the cluster's root DEK exactly as a customer's
//! rotation would. Users never see any of it.
//!
//! Everything here speaks the public REST contracts (ARM-shaped management, Key Vault
//! keys API 7.4) with plain HTTP calls, as it would against the real services.

use serde_json::{Value, json};

use crate::PlaneError;

/// Built-in role "Key Vault Crypto Service Encryption User".
pub const CRYPTO_SERVICE_ENCRYPTION_USER: &str = "e147488a-f6f5-4113-8e2d-b22465e65bf6";
/// Built-in role "Key Vault Crypto Officer".
pub const CRYPTO_OFFICER: &str = "14b46e9e-c2b7-41b4-b07b-48a6ebf60603";

pub const SERVICE_RESOURCE_GROUP: &str = "strongroom-service";
pub const SERVICE_VAULT: &str = "strongroom-smk";
pub const SERVICE_IDENTITY: &str = "strongroom-smk";

/// Where the service keys live.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceVault {
    pub vault_uri: String,
    pub identity_resource_id: String,
}

/// A thin REST client for the service vault, acting as the control plane's admin principal.
pub struct ServiceKeys {
    pub http: reqwest::Client,
    pub mgmt_url: String,
    pub subscription: String,
    pub location: String,
    pub tenant_id: String,
}

fn rest_error(what: &str, status: u16, body: &str) -> PlaneError {
    PlaneError::Internal(format!(
        "{what}: HTTP {status}: {}",
        body.chars().take(400).collect::<String>()
    ))
}

impl ServiceKeys {
    fn vault_resource_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{SERVICE_RESOURCE_GROUP}/providers/Microsoft.KeyVault/vaults/{SERVICE_VAULT}",
            self.subscription
        )
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<Value, PlaneError> {
        let resp = req
            .send()
            .await
            .map_err(|e| PlaneError::Internal(format!("{what}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(rest_error(what, status, &text));
        }
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| PlaneError::Internal(format!("{what}: {e}")))?
        })
    }

    /// Creates the service vault if needed and grants `service_principal` (the service
    /// identity) wrap/unwrap and `admin_principal` key management on it.
    pub async fn ensure_vault(
        &self,
        mgmt_token: &str,
        service_principal: &str,
        admin_principal: &str,
    ) -> Result<String, PlaneError> {
        let vault_id = self.vault_resource_id();
        let url = format!("{}{vault_id}?api-version=2023-07-01", self.mgmt_url);
        let existing = self
            .http
            .get(&url)
            .bearer_auth(mgmt_token)
            .send()
            .await
            .map_err(|e| PlaneError::Internal(format!("service vault: {e}")))?;
        let vault = if existing.status().is_success() {
            existing
                .json::<Value>()
                .await
                .map_err(|e| PlaneError::Internal(format!("service vault: {e}")))?
        } else {
            let body = json!({
                "location": self.location,
                "properties": {
                    "tenantId": self.tenant_id,
                    "sku": {"family": "A", "name": "premium"},
                    "enableRbacAuthorization": true,
                    "enableSoftDelete": true,
                    "softDeleteRetentionInDays": 90,
                    "enablePurgeProtection": true,
                }
            });
            self.send(
                self.http.put(&url).bearer_auth(mgmt_token).json(&body),
                "create the service vault",
            )
            .await?
        };
        let vault_uri = vault
            .pointer("/properties/vaultUri")
            .and_then(Value::as_str)
            .ok_or_else(|| PlaneError::Internal("the service vault has no vaultUri".into()))?
            .trim_end_matches('/')
            .to_string();
        for (role, principal) in [
            (CRYPTO_SERVICE_ENCRYPTION_USER, service_principal),
            (CRYPTO_OFFICER, admin_principal),
        ] {
            // Deterministic assignment names make this idempotent across restarts.
            let name = uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!("{role}/{principal}").as_bytes(),
            );
            let url = format!(
                "{}{vault_id}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version=2022-04-01",
                self.mgmt_url
            );
            let body = json!({"properties": {
                "roleDefinitionId": format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{role}", self.subscription),
                "principalId": principal,
            }});
            self.send(
                self.http.put(&url).bearer_auth(mgmt_token).json(&body),
                "grant a role on the service vault",
            )
            .await?;
        }
        Ok(vault_uri)
    }

    /// Creates (or finds) the key of one SMK cluster and sets its rotation policy;
    /// returns its version-less URL.
    pub async fn ensure_cluster_key(
        &self,
        vault_uri: &str,
        vault_token: &str,
        cluster: &str,
        rotate_after: &str,
    ) -> Result<String, PlaneError> {
        let name = format!("smk-{cluster}");
        let key_url = format!("{vault_uri}/keys/{name}");
        let create = format!("{key_url}/create?api-version=7.4");
        let body = json!({"kty": "RSA-HSM", "key_size": 3072, "key_ops": ["wrapKey", "unwrapKey"], "attributes": {"enabled": true}});
        self.send(
            self.http.post(&create).bearer_auth(vault_token).json(&body),
            "create the service key",
        )
        .await?;
        let policy = json!({
            "lifetimeActions": [{"trigger": {"timeAfterCreate": rotate_after}, "action": {"type": "Rotate"}}],
            "attributes": {"expiryTime": "P2Y"}
        });
        let url = format!("{key_url}/rotationpolicy?api-version=7.4");
        self.send(
            self.http.put(&url).bearer_auth(vault_token).json(&policy),
            "set the service key's rotation policy",
        )
        .await?;
        Ok(key_url)
    }

    /// Deletes a cluster's service key (soft delete; the vault purges it after retention).
    pub async fn delete_cluster_key(
        &self,
        key_url: &str,
        vault_token: &str,
    ) -> Result<(), PlaneError> {
        let url = format!("{key_url}?api-version=7.4");
        let resp = self
            .http
            .delete(&url)
            .bearer_auth(vault_token)
            .send()
            .await
            .map_err(|e| PlaneError::Internal(format!("delete the service key: {e}")))?;
        match resp.status().as_u16() {
            200 | 204 | 404 => Ok(()),
            status => Err(rest_error(
                "delete the service key",
                status,
                &resp.text().await.unwrap_or_default(),
            )),
        }
    }
}
