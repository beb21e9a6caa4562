//! The request conventions Strongroom's services share, as axum extractors whose
//! rejections are ARM errors ([`crate::arm`]), so a handler states what it needs in its
//! signature and never formats a rejection itself.
//!
//! - [`ArmJson`]: a JSON body; one that does not parse is `400 InvalidRequestContent`
//!   (axum's own `Json` would answer in plain text, which ARM clients cannot read).
//! - [`ApiVersion`]: the `api-version` query parameter every ARM and Key Vault request
//!   carries; a request without one is `400 MissingApiVersionParameter`. Which versions a
//!   service accepts is the service's decision.

use axum::extract::rejection::JsonRejection;
use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};

use crate::arm::ArmError;

/// A JSON request body, rejected as an ARM error.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArmJson<T>(pub T);

impl<T, S> FromRequest<S> for ArmJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ArmError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(value)| ArmJson(value))
            .map_err(|e| invalid_content(&e))
    }
}

/// The ARM answer to a body that is not the JSON the operation takes.
pub fn invalid_content(e: &JsonRejection) -> ArmError {
    ArmError::new(
        StatusCode::BAD_REQUEST,
        "InvalidRequestContent",
        format!("The request content was invalid and could not be deserialized: {e}"),
    )
}

/// The request's `api-version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersion(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiVersion {
    type Rejection = ArmError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        api_version(&parts.uri).map(ApiVersion).ok_or_else(|| {
            ArmError::new(
                StatusCode::BAD_REQUEST,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        })
    }
}

/// The non-empty `api-version` of a request URI, percent-decoded.
pub fn api_version(uri: &Uri) -> Option<String> {
    let Query(query) = Query::<HashMap<String, String>>::try_from_uri(uri).ok()?;
    query.get("api-version").filter(|v| !v.is_empty()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(uri: &str) -> Option<String> {
        api_version(&uri.parse().unwrap())
    }

    #[test]
    fn api_version_is_read_from_the_query() {
        assert_eq!(version("/k?api-version=7.4").as_deref(), Some("7.4"));
        assert_eq!(
            version("/k?a=b&api-version=2023-07-01&c").as_deref(),
            Some("2023-07-01")
        );
        assert_eq!(version("/k?api-version="), None);
        assert_eq!(version("/k?x=1"), None);
        assert_eq!(version("/k"), None);
        assert_eq!(version("/k?api-version=7%2E4").as_deref(), Some("7.4"));
    }
}
