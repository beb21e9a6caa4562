//! HTTP plumbing shared by both planes: the handler each listener serves through
//! [`platform`] and body/JSON helpers. (The HTTPS client is `platform::https_client`.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use platform::Peer;

use crate::api_error::ApiError;

/// Largest request body accepted (JSON requests are tiny; backups are the largest).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

pub type Body = Full<Bytes>;
/// A request body as the accept loop ([`platform`]) hands it over.
pub type ReqBody = axum::body::Body;

/// A request handler for one listener.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        req: Request<ReqBody>,
        peer: Peer,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
}

/// Hands every request on a listener to `handler`, which routes it itself.
pub fn router<H: Handler>(handler: Arc<H>) -> axum::Router {
    axum::Router::new().fallback(
        move |axum::Extension(peer): axum::Extension<Peer>, req: Request<ReqBody>| {
            handler.clone().handle(req, peer)
        },
    )
}

/// Reads the whole body, bounded by [`MAX_BODY`].
pub async fn read_body(body: ReqBody) -> Result<Bytes, ApiError> {
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
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
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
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// Renders an [`ApiError`] (with its `WWW-Authenticate` challenge, if any).
pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut resp = json_response(e.status, &e.body());
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
