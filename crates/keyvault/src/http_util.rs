//! HTTP plumbing shared by both planes: bounded body reads, JSON/empty responses, error
//! rendering, query and bearer parsing, and the path canonicalization both routers route
//! on. (The HTTPS client is `platform::https_client`.)

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::api_error::ApiError;

/// Largest request body accepted (JSON requests are tiny; backups are the largest).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// A response body (axum's; the listeners are axum routers served by [`platform`]).
pub type Body = axum::body::Body;

/// Reads the whole body, bounded by [`MAX_BODY`].
pub async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(_) => Err(ApiError::bad_parameter(
            "The request body could not be read.",
        )),
    }
}

/// A compact JSON response.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    resp
}

/// An empty response with `status`.
pub fn empty_response(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

/// Renders an [`ApiError`] — the ARM error body of `platform::arm`, with the vault's
/// JSON headers and its `WWW-Authenticate` challenge, if any.
pub fn error_response(e: &ApiError) -> Response<Body> {
    let body = serde_json::to_value(e.body()).unwrap_or_default();
    let mut resp = json_response(e.status, &body);
    if let Some(ch) = &e.challenge
        && let Ok(v) = HeaderValue::from_str(ch)
    {
        resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// Decodes `a=b&c=d` (percent-decoding values).
pub fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    match q {
        None => Vec::new(),
        Some(q) => url::form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    }
}

pub fn query_get<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Extracts the bearer token from an `Authorization` header value.
pub fn bearer(req_headers: &http::HeaderMap) -> Option<&str> {
    let v = req_headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let t = token.trim();
    if t.is_empty() { None } else { Some(t) }
}

/// The request path's segments as the client sent them (not percent-decoded, case kept),
/// put in the request's extensions before routing. Both routers route on a canonical,
/// lower-cased copy of the path (Key Vault and ARM match their literal segments
/// case-insensitively), so handlers take names and ids from here, by position.
#[derive(Debug, Clone)]
pub struct RawSegments(pub Arc<[String]>);

impl RawSegments {
    /// Segment `i`, or `""` past the end.
    pub fn get(&self, i: usize) -> &str {
        self.0.get(i).map(String::as_str).unwrap_or("")
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn last(&self) -> &str {
        self.0.last().map(String::as_str).unwrap_or("")
    }
}

/// Replaces the request's path with `canonical` for routing (keeping the query), after
/// recording the client's own segments of `trimmed` as [`RawSegments`].
pub fn reroute<B>(req: &mut http::Request<B>, trimmed: &str, canonical: String) {
    let segs: Arc<[String]> = trimmed.split('/').map(str::to_string).collect();
    req.extensions_mut().insert(RawSegments(segs));
    let pq = match req.uri().query() {
        Some(q) => format!("{canonical}?{q}"),
        None => canonical,
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = http::uri::PathAndQuery::try_from(pq) {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}
