//! Managed-identity token endpoints.
//!
//! * App Service shape (what azure-identity / MSAL use when `IDENTITY_ENDPOINT` and
//!   `IDENTITY_HEADER` are set): `GET /msi/token?api-version=2019-08-01&resource=...`
//!   `[&client_id=|&object_id=|&mi_res_id=]` with header `X-IDENTITY-HEADER: <secret>`.
//! * IMDS shape: `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=...`
//!   `[&client_id=|&object_id=|&msi_res_id=]` with `Metadata: true` **and** the same
//!   `X-IDENTITY-HEADER` (the real IMDS trusts the VM's network; we have no such boundary).
//!
//! The header's secret identifies the resource (e.g. a cluster); only identities attached
//! to that resource get tokens.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::service::{Grant, IdentitySelector, MsiError, Service};

use super::reply;

/// Header carrying the per-resource secret on both endpoint shapes.
pub const IDENTITY_HEADER: &str = "x-identity-header";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    AppService,
    Imds,
}

pub async fn app_service(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    handle(&svc, &headers, &q, Shape::AppService)
}

pub async fn imds(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return reply::msi(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required metadata header not specified",
        );
    }
    handle(&svc, &headers, &q, Shape::Imds)
}

fn selector(q: &HashMap<String, String>, shape: Shape) -> Result<IdentitySelector, MsiError> {
    let res_key = if shape == Shape::AppService {
        "mi_res_id"
    } else {
        "msi_res_id"
    };
    let given: Vec<IdentitySelector> = [
        q.get("client_id")
            .map(|v| IdentitySelector::ClientId(v.clone())),
        q.get("object_id")
            .or_else(|| q.get("principal_id"))
            .map(|v| IdentitySelector::ObjectId(v.clone())),
        q.get(res_key)
            .or_else(|| q.get("mi_res_id"))
            .or_else(|| q.get("msi_res_id"))
            .map(|v| IdentitySelector::ResourceId(v.clone())),
    ]
    .into_iter()
    .flatten()
    .collect();
    match given.len() {
        0 => Ok(IdentitySelector::Only),
        1 => Ok(given.into_iter().next().unwrap_or(IdentitySelector::Only)),
        _ => Err(MsiError::BadRequest(
            "Only one of client_id, object_id or the resource id may be specified".into(),
        )),
    }
}

fn handle(
    svc: &Service,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    shape: Shape,
) -> Response {
    match issue(svc, headers, q, shape) {
        Ok(resp) => resp,
        Err(e) => {
            let (status, code) = match &e {
                MsiError::MissingSecret => (StatusCode::UNAUTHORIZED, "unauthorized"),
                MsiError::BadSecret => (StatusCode::FORBIDDEN, "forbidden"),
                MsiError::IdentityNotFound | MsiError::Ambiguous => {
                    (StatusCode::BAD_REQUEST, "invalid_request")
                }
                MsiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
                MsiError::Server(_) => (StatusCode::INTERNAL_SERVER_ERROR, "unknown"),
            };
            tracing::debug!(error = %e, "refused managed identity token request");
            reply::msi(status, code, &e.to_string())
        }
    }
}

fn issue(
    svc: &Service,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    shape: Shape,
) -> Result<Response, MsiError> {
    if q.get("api-version").is_none_or(|v| v.is_empty()) {
        return Err(MsiError::BadRequest("api-version is required".into()));
    }
    let resource = q
        .get("resource")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| MsiError::BadRequest("resource is required".into()))?;
    let secret = headers
        .get(IDENTITY_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .ok_or(MsiError::MissingSecret)?;
    let selector = selector(q, shape)?;
    let resource = resource.strip_suffix("/.default").unwrap_or(resource);
    let (grant, mi) = svc.msi_token(secret, &selector, resource)?;
    Ok(match shape {
        Shape::AppService => app_service_body(&grant, &mi.client_id),
        Shape::Imds => imds_body(&grant, &mi),
    })
}

/// App Service 2019-08-01 response; numbers as strings, as the real endpoint sends them.
fn app_service_body(grant: &Grant, client_id: &str) -> Response {
    Json(json!({
        "access_token": grant.access_token,
        "expires_on": grant.claims.exp.to_string(),
        "resource": grant.claims.aud,
        "token_type": "Bearer",
        "client_id": client_id,
    }))
    .into_response()
}

/// IMDS 2018-02-01 response (string-typed numbers, empty refresh token).
fn imds_body(grant: &Grant, mi: &crate::model::ManagedIdentity) -> Response {
    let c = &grant.claims;
    Json(json!({
        "access_token": grant.access_token,
        "refresh_token": "",
        "expires_in": (c.exp - c.iat).to_string(),
        "expires_on": c.exp.to_string(),
        "ext_expires_in": (c.exp - c.iat).to_string(),
        "not_before": c.nbf.to_string(),
        "resource": c.aud,
        "token_type": "Bearer",
        "client_id": mi.client_id,
        "object_id": mi.principal_id,
        "msi_res_id": mi.id,
    }))
    .into_response()
}
