//! `GET /principals/{objectId}`: unauthenticated liveness of a principal. Reveals only
//! existence, kind, tenant and names, which the token itself already carries.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::service::Service;

pub async fn get(State(svc): State<Arc<Service>>, Path(object_id): Path<String>) -> Response {
    match svc.principal(&object_id) {
        Some(p) => Json(p).into_response(),
        None => platform::arm::response(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{object_id}' does not exist or one of its queried reference-property objects are not present."
            ),
        ),
    }
}
