//! OIDC discovery and JWKS: what MSAL / azure-identity fetch before asking for a token,
//! and what verifiers fetch to check signatures.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::service::{Service, TokenRequestError};

use super::reply;

/// `GET /{tenant}/v2.0/.well-known/openid-configuration` (and the v1 path).
pub async fn openid_configuration(
    State(svc): State<Arc<Service>>,
    Path(tenant): Path<String>,
) -> Response {
    if !svc.tenant_exists(&tenant) {
        return reply::entra(&TokenRequestError::new(
            400,
            "invalid_tenant",
            90002,
            format!("AADSTS90002: Tenant '{tenant}' not found."),
        ));
    }
    let tenant = tenant.to_ascii_lowercase();
    let base = svc.issuer_base();
    Json(json!({
        "issuer": format!("{base}/{tenant}/v2.0"),
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": ["token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "claims_supported": ["aud", "iss", "iat", "nbf", "exp", "tid", "oid", "sub", "appid", "azp", "idtyp", "ver", "uti", "xms_mirid", "xms_trusted_svc"],
        "tenant_region_scope": null,
        "cloud_instance_name": "strongroom",
        "cloud_graph_host_name": null,
        "msgraph_host": null,
        "request_uri_parameter_supported": false,
    }))
    .into_response()
}

/// `GET /.well-known/jwks.json` and `GET /{tenant}/discovery/v2.0/keys`: the service-wide
/// signing key(s).
pub async fn jwks(State(svc): State<Arc<Service>>) -> Response {
    Json(svc.jwks()).into_response()
}

/// `GET /common/discovery/instance?authorization_endpoint=...`: MSAL's instance discovery,
/// for clients that do not disable it but point their discovery endpoint here.
pub async fn instance_discovery(
    State(svc): State<Arc<Service>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let base = svc.issuer_base();
    let tenant = q
        .get("authorization_endpoint")
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| {
            u.path_segments()
                .and_then(|mut s| s.next().map(str::to_string))
        })
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "common".into());
    let host = url::Url::parse(base)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| {
                u.port()
                    .map_or_else(|| h.to_string(), |p| format!("{h}:{p}"))
            })
        })
        .unwrap_or_default();
    Json(json!({
        "tenant_discovery_endpoint": format!("{base}/{tenant}/v2.0/.well-known/openid-configuration"),
        "api-version": "1.1",
        "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
    }))
    .into_response()
}
