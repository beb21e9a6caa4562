//! `POST /{tenant}/oauth2/v2.0/token` (and the v1 `/oauth2/token`): the client-credentials
//! grant with a client secret, in the body (`client_secret_post`, what MSAL sends) or in
//! HTTP Basic (`client_secret_basic`). Accepts v2 `scope=<resource>/.default` and v1
//! `resource=<resource>`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use zeroize::{Zeroize, Zeroizing};

use crate::service::{Service, TokenRequestError};

use super::reply;

/// Scopes MSAL may add that are not resources.
const RESERVED_SCOPES: &[&str] = &["openid", "profile", "offline_access"];

pub async fn token(
    State(svc): State<Arc<Service>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match grant(&svc, &tenant, &headers, &body) {
        Ok(resp) => resp,
        Err(e) => reply::entra(&e),
    }
}

fn missing(param: &str) -> TokenRequestError {
    TokenRequestError::new(
        400,
        "invalid_request",
        900144,
        format!("AADSTS900144: The request body must contain the following parameter: '{param}'."),
    )
}

/// The audience a request asks for: `resource` (v1), or the single `/.default` scope (v2)
/// with the suffix removed.
pub(crate) fn audience(form: &HashMap<String, String>) -> Result<String, TokenRequestError> {
    if let Some(resource) = form.get("resource").filter(|r| !r.is_empty()) {
        return Ok(resource.clone());
    }
    let scope = form.get("scope").ok_or_else(|| missing("scope"))?;
    let scopes: Vec<&str> = scope
        .split_whitespace()
        .filter(|s| !RESERVED_SCOPES.contains(s))
        .collect();
    match scopes.as_slice() {
        [one] if one.ends_with("/.default") && one.len() > "/.default".len() => {
            Ok(one.trim_end_matches("/.default").to_string())
        }
        _ => Err(TokenRequestError::new(
            400,
            "invalid_scope",
            1002012,
            format!(
                "AADSTS1002012: The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        )),
    }
}

fn grant(
    svc: &Service,
    tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, TokenRequestError> {
    let mut form: HashMap<String, String> =
        url::form_urlencoded::parse(body).into_owned().collect();
    let result = grant_form(svc, tenant, headers, &form);
    // The form holds the client secret; wipe it before the allocation is freed.
    form.values_mut().for_each(|v| v.zeroize());
    result
}

fn grant_form(
    svc: &Service,
    tenant: &str,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Response, TokenRequestError> {
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(other) => {
            return Err(TokenRequestError::new(
                400,
                "unsupported_grant_type",
                70003,
                format!("AADSTS70003: The app requested an unsupported grant type '{other}'."),
            ));
        }
        None => return Err(missing("grant_type")),
    }
    let (client_id, secret) = client_auth(headers, form)?;
    let aud = audience(form)?;
    let grant = svc.client_credentials(tenant, &client_id, &secret, &aud)?;
    let expires_in = grant.claims.exp - grant.claims.iat;
    tracing::debug!(client_id = %client_id, aud = %aud, "issued client-credentials token");
    Ok(Json(json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": grant.access_token,
    }))
    .into_response())
}

/// `client_id`/`client_secret` from the body, or from HTTP Basic.
fn client_auth(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(String, Zeroizing<String>), TokenRequestError> {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = STANDARD
            .decode(basic.trim())
            .map_err(|_| missing("client_id"))?;
        let decoded = Zeroizing::new(String::from_utf8(decoded).map_err(|_| missing("client_id"))?);
        let (id, secret) = decoded
            .split_once(':')
            .ok_or_else(|| missing("client_secret"))?;
        // RFC 6749 2.3.1: both parts are form-urlencoded.
        let id: String = url::form_urlencoded::parse(format!("a={id}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let secret = Zeroizing::new(
            url::form_urlencoded::parse(format!("a={secret}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default(),
        );
        return Ok((id, secret));
    }
    let id = form
        .get("client_id")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing("client_id"))?
        .clone();
    let secret = form.get("client_secret").filter(|s| !s.is_empty()).ok_or_else(|| {
        TokenRequestError::new(
            401,
            "invalid_client",
            7000218,
            "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
    })?;
    Ok((id, Zeroizing::new(secret.clone())))
}
