//! Rust clients for the identity service: one-shot token requests (client credentials,
//! managed identity) that report the service's exact answer, and [`AdminClient`] for
//! the admin API. Used by tests, the CLI and the control plane. The HTTPS client and
//! the token types are [`platform`]'s; the cached token sources services call vaults
//! with are `platform::token`'s.

use parking_lot::Mutex;
use platform::AccessToken;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::Error;
use crate::service::{Credentials, IdentitySelector};

/// Audience the admin client requests for the admin API.
pub const ADMIN_AUDIENCE: &str = "api://strongroom-identity";

async fn read_json<T: DeserializeOwned>(url: &str, resp: reqwest::Response) -> Result<T, Error> {
    let status = resp.status();
    let body = resp.text().await.map_err(|e| http_err(url, e))?;
    if !status.is_success() {
        return Err(Error::Status {
            url: url.into(),
            status: status.as_u16(),
            body,
        });
    }
    serde_json::from_str(&body).map_err(|e| Error::Http {
        url: url.into(),
        reason: format!("bad JSON: {e}"),
    })
}

fn http_err(url: &str, e: reqwest::Error) -> Error {
    Error::Http {
        url: url.into(),
        reason: e.to_string(),
    }
}

/// Client-credentials grant: `scope` like `https://vault.azure.net/.default`.
pub async fn client_credentials_token(
    http: &reqwest::Client,
    base_url: &str,
    tenant_id: &str,
    client_id: &str,
    client_secret: &str,
    scope: &str,
) -> Result<AccessToken, Error> {
    #[derive(Deserialize)]
    struct Resp {
        access_token: String,
        expires_in: i64,
    }
    let url = format!(
        "{}/{tenant_id}/oauth2/v2.0/token",
        base_url.trim_end_matches('/')
    );
    let resp = http
        .post(&url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("scope", scope),
        ])
        .send()
        .await
        .map_err(|e| http_err(&url, e))?;
    let r: Resp = read_json(&url, resp).await?;
    Ok(AccessToken {
        token: Zeroizing::new(r.access_token),
        expires_on: crate::token::unix_now() + r.expires_in,
        client_id: None,
    })
}

/// App Service–style managed-identity token request (`GET /msi/token`).
pub async fn msi_token(
    http: &reqwest::Client,
    base_url: &str,
    resource_secret: &str,
    selector: &IdentitySelector,
    resource: &str,
) -> Result<AccessToken, Error> {
    #[derive(Deserialize)]
    struct Resp {
        access_token: String,
        expires_on: String,
        client_id: Option<String>,
    }
    let url = format!("{}/msi/token", base_url.trim_end_matches('/'));
    let mut query = vec![
        ("api-version", "2019-08-01".to_string()),
        ("resource", resource.to_string()),
    ];
    if let Some((name, value)) = selector.query_pair() {
        query.push((name, value.to_string()));
    }
    let resp = http
        .get(&url)
        .query(&query)
        .header("X-IDENTITY-HEADER", resource_secret)
        .send()
        .await
        .map_err(|e| http_err(&url, e))?;
    let r: Resp = read_json(&url, resp).await?;
    Ok(AccessToken {
        token: Zeroizing::new(r.access_token),
        expires_on: r.expires_on.parse().map_err(|_| Error::Http {
            url: url.clone(),
            reason: "expires_on is not an integer".into(),
        })?,
        client_id: r.client_id,
    })
}

/// A user-assigned managed identity as the admin API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedIdentityInfo {
    pub id: String,
    pub name: String,
    pub location: String,
    pub tenant_id: String,
    pub principal_id: String,
    pub client_id: String,
}

impl ManagedIdentityInfo {
    fn from_arm(v: &Value) -> Option<ManagedIdentityInfo> {
        let s = |v: &Value| v.as_str().map(str::to_string);
        let p = v.get("properties")?;
        Some(ManagedIdentityInfo {
            id: s(v.get("id")?)?,
            name: s(v.get("name")?)?,
            location: s(v.get("location")?)?,
            tenant_id: s(p.get("tenantId")?)?,
            principal_id: s(p.get("principalId")?)?,
            client_id: s(p.get("clientId")?)?,
        })
    }
}

/// Admin API client authenticating as an admin service principal. Caches its token and
/// renews it five minutes before expiry.
pub struct AdminClient {
    http: reqwest::Client,
    base_url: String,
    tenant_id: String,
    client_id: String,
    client_secret: Zeroizing<String>,
    token: Mutex<Option<AccessToken>>,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base_url", &self.base_url)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    pub fn new(base_url: &str, ca_pem: &str, creds: &Credentials) -> Result<AdminClient, Error> {
        Ok(AdminClient::with_http(
            platform::https_client(ca_pem, None, platform::ClientOptions::default())
                .map_err(|e| Error::Tls(e.to_string()))?,
            base_url,
            creds,
        ))
    }

    pub fn with_http(http: reqwest::Client, base_url: &str, creds: &Credentials) -> AdminClient {
        AdminClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            tenant_id: creds.tenant_id.clone(),
            client_id: creds.client_id.clone(),
            client_secret: creds.client_secret.clone(),
            token: Mutex::new(None),
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// A client-credentials token for this principal and `scope`.
    pub async fn token(&self, scope: &str) -> Result<AccessToken, Error> {
        client_credentials_token(
            &self.http,
            &self.base_url,
            &self.tenant_id,
            &self.client_id,
            &self.client_secret,
            scope,
        )
        .await
    }

    async fn bearer(&self) -> Result<Zeroizing<String>, Error> {
        if let Some(t) = self.token.lock().as_ref()
            && t.expires_on - crate::token::unix_now() > 300
        {
            return Ok(t.token.clone());
        }
        let t = self.token(&format!("{ADMIN_AUDIENCE}/.default")).await?;
        let bearer = t.token.clone();
        *self.token.lock() = Some(t);
        Ok(bearer)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), Error> {
        let url = format!("{}{path}", self.base_url);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(self.bearer().await?.as_str());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| http_err(&url, e))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| http_err(&url, e))?;
        if !(200..300).contains(&status) && status != 404 {
            return Err(Error::Status {
                url,
                status,
                body: text,
            });
        }
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| Error::Http {
                url,
                reason: format!("bad JSON: {e}"),
            })?
        };
        Ok((status, value))
    }

    fn mi_path(sub: &str, rg: &str, name: &str) -> String {
        format!(
            "{}?api-version=2023-01-31",
            crate::service::identity_resource_id(sub, rg, name)
        )
    }

    fn parse_mi(v: &Value) -> Result<ManagedIdentityInfo, Error> {
        ManagedIdentityInfo::from_arm(v).ok_or_else(|| Error::Http {
            url: "userAssignedIdentities".into(),
            reason: "unexpected identity shape".into(),
        })
    }

    /// Creates (or updates) a user-assigned identity.
    pub async fn create_managed_identity(
        &self,
        sub: &str,
        rg: &str,
        name: &str,
        location: &str,
    ) -> Result<ManagedIdentityInfo, Error> {
        let (status, v) = self
            .call(
                reqwest::Method::PUT,
                &Self::mi_path(sub, rg, name),
                Some(json!({ "location": location })),
            )
            .await?;
        if status == 404 {
            return Err(Error::Status {
                url: name.into(),
                status,
                body: v.to_string(),
            });
        }
        Self::parse_mi(&v)
    }

    pub async fn get_managed_identity(
        &self,
        sub: &str,
        rg: &str,
        name: &str,
    ) -> Result<Option<ManagedIdentityInfo>, Error> {
        let (status, v) = self
            .call(reqwest::Method::GET, &Self::mi_path(sub, rg, name), None)
            .await?;
        if status == 404 {
            return Ok(None);
        }
        Self::parse_mi(&v).map(Some)
    }

    /// Deletes an identity; returns whether it existed.
    pub async fn delete_managed_identity(
        &self,
        sub: &str,
        rg: &str,
        name: &str,
    ) -> Result<bool, Error> {
        let (status, _) = self
            .call(reqwest::Method::DELETE, &Self::mi_path(sub, rg, name), None)
            .await?;
        Ok(status == 200)
    }

    /// Creates a service principal in the caller's tenant; the secret is only here.
    pub async fn create_service_principal(
        &self,
        display_name: &str,
        admin: bool,
        trusted_service: bool,
    ) -> Result<Credentials, Error> {
        let (_, v) = self
            .call(
                reqwest::Method::POST,
                "/admin/servicePrincipals",
                Some(json!({"displayName": display_name, "admin": admin, "trustedService": trusted_service})),
            )
            .await?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        match (s("tenantId"), s("appId"), s("objectId"), s("clientSecret")) {
            (Some(tenant_id), Some(client_id), Some(object_id), Some(secret)) => Ok(Credentials {
                tenant_id,
                client_id,
                object_id,
                client_secret: Zeroizing::new(secret),
            }),
            _ => Err(Error::Http {
                url: "servicePrincipals".into(),
                reason: "unexpected response".into(),
            }),
        }
    }

    pub async fn delete_service_principal(&self, app_id: &str) -> Result<bool, Error> {
        let (status, _) = self
            .call(
                reqwest::Method::DELETE,
                &format!("/admin/servicePrincipals/{app_id}"),
                None,
            )
            .await?;
        Ok(status == 200)
    }

    /// Attaches identity `identity_id` (ARM id) to `resource`.
    pub async fn attach(&self, resource: &str, identity_id: &str) -> Result<(), Error> {
        let (status, v) = self
            .call(
                reqwest::Method::POST,
                "/admin/resources/attach",
                Some(json!({"resource": resource, "identityId": identity_id})),
            )
            .await?;
        if status == 404 {
            return Err(Error::Status {
                url: "/admin/resources/attach".into(),
                status,
                body: v.to_string(),
            });
        }
        Ok(())
    }

    /// Detaches; returns whether it was attached.
    pub async fn detach(&self, resource: &str, identity_id: &str) -> Result<bool, Error> {
        let (_, v) = self
            .call(
                reqwest::Method::POST,
                "/admin/resources/detach",
                Some(json!({"resource": resource, "identityId": identity_id})),
            )
            .await?;
        Ok(v.get("detached").and_then(Value::as_bool).unwrap_or(false))
    }

    /// Issues (replacing any previous) the resource's `X-IDENTITY-HEADER` secret.
    pub async fn issue_resource_secret(&self, resource: &str) -> Result<Zeroizing<String>, Error> {
        let (_, v) = self
            .call(
                reqwest::Method::POST,
                "/admin/resources/secret",
                Some(json!({"resource": resource})),
            )
            .await?;
        v.get("secret")
            .and_then(Value::as_str)
            .map(|s| Zeroizing::new(s.to_string()))
            .ok_or_else(|| Error::Http {
                url: "/admin/resources/secret".into(),
                reason: "no secret".into(),
            })
    }

    /// A managed-identity token as `resource` (holding `resource_secret`) would get it.
    pub async fn msi_token(
        &self,
        resource_secret: &str,
        selector: &IdentitySelector,
        audience: &str,
    ) -> Result<AccessToken, Error> {
        msi_token(
            &self.http,
            &self.base_url,
            resource_secret,
            selector,
            audience,
        )
        .await
    }
}
