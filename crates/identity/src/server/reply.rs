//! Error bodies in the shapes Azure clients expect: Entra token errors
//! (`error`/`error_description`/`error_codes`), ARM errors (`{"error":{code,message}}`,
//! built by [`platform::arm`]), and managed-identity endpoint errors (both vocabularies
//! at once).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use platform::arm::{self, ArmError};
use serde_json::json;

use crate::Error;
use crate::service::TokenRequestError;

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn timestamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An Entra (AAD) OAuth error response.
pub fn entra(err: &TokenRequestError) -> Response {
    let trace = crate::new_guid();
    let body = json!({
        "error": err.error,
        "error_description": format!("{} Trace ID: {trace} Correlation ID: {trace} Timestamp: {}", err.description, timestamp()),
        "error_codes": [err.code],
        "timestamp": timestamp(),
        "trace_id": trace,
        "correlation_id": trace,
    });
    (status(err.status), Json(body)).into_response()
}

/// Maps a service error to an ARM-style response; internal details are logged, not sent.
pub fn from_error(e: &Error) -> Response {
    match e {
        Error::NotFound { .. } => {
            arm::response(StatusCode::NOT_FOUND, "ResourceNotFound", e.to_string())
        }
        Error::InvalidInput(_) => arm::response(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            e.to_string(),
        ),
        Error::Forbidden(_) => {
            arm::response(StatusCode::FORBIDDEN, "AuthorizationFailed", e.to_string())
        }
        Error::Unauthorized(_) => ArmError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            e.to_string(),
        )
        .with_challenge("Bearer error=\"invalid_token\"")
        .into_response(),
        _ => {
            tracing::error!(error = %e, "identity request failed");
            arm::response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "internal error",
            )
        }
    }
}

/// A managed-identity endpoint error: App Service (`statusCode`/`message`) and IMDS
/// (`error`/`error_description`) fields together.
pub fn msi(code: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({
        "statusCode": code.as_u16(),
        "message": description,
        "correlationId": crate::new_guid(),
        "error": error,
        "error_description": description,
    });
    (code, Json(body)).into_response()
}

pub async fn not_found() -> Response {
    arm::response(StatusCode::NOT_FOUND, "NotFound", "no such endpoint")
}
