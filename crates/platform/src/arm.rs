//! Azure Resource Manager errors: the body every management API (and the Key Vault data
//! plane) answers a failed request with,
//! `{"error":{"code":"…","innererror":{"code":"…"},"message":"…"}}` (`innererror` only
//! where the service names a finer cause), plus, on a 401, the `WWW-Authenticate`
//! challenge. Clients classify on the codes, so services build them here and nowhere
//! else; [`ErrorResponse`] is the same shape for clients that read one.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// A failed request as an ARM service answers it.
#[derive(Debug, Clone)]
pub struct ArmError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// `innererror.code`: the finer cause SDKs classify on (Key Vault's
    /// `ForbiddenByFirewall`, `KeyDisabled`, …).
    pub inner: Option<String>,
    /// The `WWW-Authenticate` value of a 401 answer.
    pub challenge: Option<String>,
}

impl ArmError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ArmError {
        ArmError {
            status,
            code: code.to_string(),
            message: message.into(),
            inner: None,
            challenge: None,
        }
    }

    /// The same error with a finer cause in `innererror.code`.
    pub fn with_inner(mut self, inner: &str) -> ArmError {
        self.inner = Some(inner.to_string());
        self
    }

    /// The same error with a `WWW-Authenticate` challenge.
    pub fn with_challenge(mut self, challenge: impl Into<String>) -> ArmError {
        self.challenge = Some(challenge.into());
        self
    }

    /// The innermost code (what SDKs and our clients classify on).
    pub fn effective_code(&self) -> &str {
        self.inner.as_deref().unwrap_or(&self.code)
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorResponse {
        ErrorResponse {
            error: ErrorDetail {
                code: self.code.clone(),
                innererror: self
                    .inner
                    .as_ref()
                    .map(|code| InnerError { code: code.clone() }),
                message: self.message.clone(),
            },
        }
    }
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(value) = self
            .challenge
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// `ArmError::new(status, code, message)` answered at once.
pub fn response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    ArmError::new(status, code, message).into_response()
}

/// An ARM error body: `{"error": {…}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

/// The fields in the order ARM services send them (alphabetical, as serde_json's
/// default map writes them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorDetail {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub innererror: Option<InnerError>,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InnerError {
    pub code: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_shape_clients_parse() {
        let e = ArmError::new(StatusCode::NOT_FOUND, "ResourceNotFound", "gone");
        assert_eq!(
            serde_json::to_string(&e.body()).unwrap(),
            r#"{"error":{"code":"ResourceNotFound","message":"gone"}}"#
        );
        let e = ArmError::new(StatusCode::FORBIDDEN, "Forbidden", "no").with_inner("KeyDisabled");
        assert_eq!(e.effective_code(), "KeyDisabled");
        // Byte for byte what `json!` (a sorted map) wrote before this type existed.
        let sorted = serde_json::json!({"error": {"code": "Forbidden", "message": "no",
            "innererror": {"code": "KeyDisabled"}}});
        assert_eq!(
            serde_json::to_string(&e.body()).unwrap(),
            serde_json::to_string(&sorted).unwrap()
        );
    }

    #[test]
    fn a_challenge_becomes_the_www_authenticate_header() {
        let r = ArmError::new(StatusCode::UNAUTHORIZED, "Unauthorized", "no token")
            .with_challenge("Bearer error=\"invalid_token\"")
            .into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
    }
}
