//! Token minting: the client-credentials and managed-identity grants.

use base64::Engine;

use crate::Error;
use crate::model::{AttachedResource, ManagedIdentity};
use crate::new_guid;
use crate::token::{self, Claims};

use super::Service;

/// A minted access token.
#[derive(Debug, Clone)]
pub struct Grant {
    pub access_token: String,
    pub claims: Claims,
}

pub use platform::IdentitySelector;

impl Service {
    // ---- tokens ----

    fn mint(&self, mut claims: Claims) -> Result<Grant, Error> {
        let now = token::unix_now();
        claims.iat = now;
        claims.nbf = now;
        claims.exp = now + self.token_lifetime.as_secs() as i64;
        let access_token = token::sign(&self.signing, &claims)?;
        Ok(Grant {
            access_token,
            claims,
        })
    }

    fn base_claims(&self, tenant_id: &str, oid: &str, appid: &str, audience: &str) -> Claims {
        Claims {
            aud: audience.to_string(),
            iss: format!("{}/{}/v2.0", self.issuer_base, tenant_id),
            tid: tenant_id.to_string(),
            oid: oid.to_string(),
            appid: appid.to_string(),
            azp: appid.to_string(),
            sub: oid.to_string(),
            idtyp: "app".into(),
            iat: 0,
            nbf: 0,
            exp: 0,
            xms_mirid: None,
            ver: "2.0".into(),
            uti: new_uti(),
            xms_trusted_svc: false,
        }
    }

    /// Client-credentials grant. Errors are [`TokenRequestError`]s in Entra's vocabulary.
    pub fn client_credentials(
        &self,
        tenant_id: &str,
        client_id: &str,
        client_secret: &str,
        audience: &str,
    ) -> Result<Grant, TokenRequestError> {
        let sp = {
            let state = self.state.read();
            if !state.tenants.contains_key(&tenant_id.to_ascii_lowercase()) {
                return Err(TokenRequestError::tenant_not_found(tenant_id));
            }
            state
                .service_principals
                .get(&client_id.to_ascii_lowercase())
                .filter(|sp| sp.tenant_id.eq_ignore_ascii_case(tenant_id))
                .cloned()
        };
        let Some(sp) = sp else {
            return Err(TokenRequestError::unauthorized_client(client_id, tenant_id));
        };
        // Check every stored secret without early exit.
        let ok = sp
            .secrets
            .iter()
            .fold(false, |acc, h| h.matches(client_secret) | acc);
        if !ok {
            return Err(TokenRequestError::invalid_secret(client_id));
        }
        let mut claims = self.base_claims(&sp.tenant_id, &sp.object_id, &sp.app_id, audience);
        claims.xms_trusted_svc = sp.trusted_service;
        self.mint(claims).map_err(TokenRequestError::server)
    }

    /// Managed-identity grant for the resource identified by `resource_secret`.
    pub fn msi_token(
        &self,
        resource_secret: &str,
        selector: &IdentitySelector,
        audience: &str,
    ) -> Result<(Grant, ManagedIdentity), MsiError> {
        let state = self.state.read();
        // Compare against every resource's secret (constant time each, no early exit).
        let mut found: Option<&AttachedResource> = None;
        for res in state.resources.values() {
            if let Some(h) = &res.secret
                && h.matches(resource_secret)
            {
                found = Some(res);
            }
        }
        let Some(res) = found else {
            return Err(MsiError::BadSecret);
        };
        let attached: Vec<&ManagedIdentity> = state
            .identities
            .values()
            .filter(|mi| res.identities.contains(&mi.principal_id))
            .collect();
        let chosen = match selector {
            IdentitySelector::ClientId(id) => attached
                .iter()
                .find(|mi| mi.client_id.eq_ignore_ascii_case(id)),
            IdentitySelector::ObjectId(id) => attached
                .iter()
                .find(|mi| mi.principal_id.eq_ignore_ascii_case(id)),
            IdentitySelector::ResourceId(id) => {
                attached.iter().find(|mi| mi.id.eq_ignore_ascii_case(id))
            }
            IdentitySelector::Only if attached.len() == 1 => attached.first(),
            IdentitySelector::Only if attached.len() > 1 => return Err(MsiError::Ambiguous),
            IdentitySelector::Only => None,
        };
        let Some(mi) = chosen.map(|mi| (*mi).clone()) else {
            return Err(MsiError::IdentityNotFound);
        };
        drop(state);
        let mut claims = self.base_claims(&mi.tenant_id, &mi.principal_id, &mi.client_id, audience);
        claims.xms_mirid = Some(mi.id.clone());
        let grant = self
            .mint(claims)
            .map_err(|e| MsiError::Server(e.to_string()))?;
        Ok((grant, mi))
    }
}

fn new_uti() -> String {
    let mut raw = [0u8; 16];
    // A failing RNG here would also fail signing right after; fall back to a v4 GUID.
    if crate::crypto::random_bytes(&mut raw).is_err() {
        return new_guid();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// A refused token request, in Entra's error vocabulary (`error` + `AADSTS` description).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequestError {
    pub status: u16,
    pub error: &'static str,
    pub code: u32,
    pub description: String,
}

impl TokenRequestError {
    pub fn new(
        status: u16,
        error: &'static str,
        code: u32,
        description: impl Into<String>,
    ) -> Self {
        TokenRequestError {
            status,
            error,
            code,
            description: description.into(),
        }
    }
    fn tenant_not_found(tenant: &str) -> Self {
        Self::new(
            400,
            "invalid_request",
            90002,
            format!("AADSTS90002: Tenant '{tenant}' not found."),
        )
    }
    fn unauthorized_client(client_id: &str, tenant: &str) -> Self {
        Self::new(
            400,
            "unauthorized_client",
            700016,
            format!(
                "AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        )
    }
    fn invalid_secret(client_id: &str) -> Self {
        Self::new(
            401,
            "invalid_client",
            7000215,
            format!(
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        )
    }
    fn server(e: Error) -> Self {
        Self::new(500, "server_error", 90033, format!("AADSTS90033: {e}"))
    }
}

/// A refused managed-identity token request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsiError {
    #[error("the identity header is missing")]
    MissingSecret,
    #[error("the identity header does not match any resource")]
    BadSecret,
    #[error("no attached managed identity matches the request")]
    IdentityNotFound,
    #[error("several identities are attached; specify client_id, object_id or mi_res_id")]
    Ambiguous,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Server(String),
}
