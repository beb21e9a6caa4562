//! The HTTPS management API: `Microsoft.DocumentDB/mongoClusters`-shaped routes over
//! [`Plane`], authenticated with bearer tokens from the identity service.
//!
//! | method | path (under `/subscriptions/{sub}`) | does |
//! |---|---|---|
//! | PUT | `/resourceGroups/{rg}/providers/Microsoft.DocumentDB/mongoClusters/{name}` | create, or update an existing cluster |
//! | PATCH | same | update |
//! | GET | same | show |
//! | DELETE | same | delete (crypto-shreds the root key) |
//! | GET | `/resourceGroups/{rg}/providers/Microsoft.DocumentDB/mongoClusters` | list in a group |
//! | GET | `/providers/Microsoft.DocumentDB/mongoClusters` | list all |
//! | POST | `…/mongoClusters/{name}/revalidate` | revalidate the key now |
//! | POST | `…/mongoClusters/{name}/listConnectionStrings` | connection strings |

use std::sync::Arc;

use axum::extract::{Extension, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use platform::ArmJson;
use platform::arm::{self, ArmError};

use crate::model::MongoCluster;
use crate::{Plane, PlaneError};

/// Audiences accepted on management tokens.
pub const MANAGEMENT_AUDIENCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.azure.com/",
];

#[derive(Clone)]
struct Api {
    plane: Arc<Plane>,
    verifier: Arc<identity::verify::Verifier>,
    admins: Arc<Vec<String>>,
    authority: String,
}

pub fn router(
    plane: Arc<Plane>,
    verifier: Arc<identity::verify::Verifier>,
    admins: Vec<String>,
    authority: String,
) -> Router {
    let api = Api {
        plane,
        verifier,
        admins: Arc::new(admins),
        authority,
    };
    const ONE: &str = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DocumentDB/mongoClusters/{name}";
    let protected = Router::new()
        .route(ONE, get(show).put(put).patch(patch).delete(remove))
        .route(&format!("{ONE}/revalidate"), post(revalidate))
        .route(&format!("{ONE}/backups"), get(backups))
        .route(&format!("{ONE}/backups/verify"), post(verify_backups))
        .route(&format!("{ONE}/backups/export"), post(export_backup))
        .route(
            &format!("{ONE}/backups/decryptExport"),
            post(decrypt_export),
        )
        .route(&format!("{ONE}/restoreStatus"), get(restore_status))
        .route(
            "/providers/Strongroom.Control/auditEvents",
            get(audit_events),
        )
        .route(
            &format!("{ONE}/listConnectionStrings"),
            post(connection_strings),
        )
        .route(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DocumentDB/mongoClusters",
            get(list_group),
        )
        .route(
            "/subscriptions/{sub}/providers/Microsoft.DocumentDB/mongoClusters",
            get(list_all),
        )
        .route_layer(middleware::from_fn_with_state(api.clone(), authenticate))
        .with_state(api);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(protected)
        .fallback(|| async {
            arm::response(
                StatusCode::NOT_FOUND,
                "NotFound",
                "No such resource or operation.",
            )
        })
}

impl IntoResponse for PlaneError {
    fn into_response(self) -> Response {
        match &self {
            PlaneError::BadRequest { code, message } => {
                arm::response(StatusCode::BAD_REQUEST, code, message)
            }
            PlaneError::NotFound(name) => arm::response(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                &format!("The mongoCluster '{name}' was not found."),
            ),
            PlaneError::Conflict(m) => arm::response(StatusCode::CONFLICT, "Conflict", m),
            PlaneError::Kek(e) => arm::response(
                StatusCode::BAD_REQUEST,
                "KeyEncryptionKeyError",
                &e.to_string(),
            ),
            PlaneError::Internal(_) | PlaneError::Sealed(_) => {
                tracing::error!(error = %self, "management operation failed");
                arm::response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerError",
                    &self.to_string(),
                )
            }
        }
    }
}

/// The authenticated management principal's object id (for the audit log).
#[derive(Clone)]
struct Caller(String);

/// Bearer token → verified claims → the caller must be a control-plane administrator.
async fn authenticate(State(api): State<Api>, mut req: Request, next: Next) -> Response {
    let challenge = || {
        ArmError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing or its bearer token is not valid.",
        )
        .with_challenge(format!(
            "Bearer authorization_uri=\"{}\", error=\"invalid_token\"",
            api.authority
        ))
        .into_response()
    };
    let Some(token) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return challenge();
    };
    let audiences: Vec<String> = MANAGEMENT_AUDIENCES.iter().map(|s| s.to_string()).collect();
    let claims = match api.verifier.verify_for(token, &audiences).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(error = %e, "management token rejected");
            return challenge();
        }
    };
    if !api
        .admins
        .iter()
        .any(|a| a.eq_ignore_ascii_case(&claims.oid))
    {
        return arm::response(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            &format!(
                "The client '{}' with object id '{}' does not have authorization to manage mongoClusters.",
                claims.appid, claims.oid
            ),
        );
    }
    req.extensions_mut().insert(Caller(claims.oid.clone()));
    next.run(req).await
}

type Segments = Path<(String, String, String)>;

async fn show(
    State(api): State<Api>,
    Path((_, _, name)): Segments,
) -> Result<Json<MongoCluster>, PlaneError> {
    Ok(Json(api.plane.get(&name).await?))
}

async fn put(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, name)): Segments,
    ArmJson(req): ArmJson<MongoCluster>,
) -> Result<Response, PlaneError> {
    if api.plane.runtime(&name).is_some() {
        return Ok(Json(api.plane.update(&name, req, Some(&caller.0)).await?).into_response());
    }
    let created = api.plane.create(&sub, &rg, &name, req).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn patch(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path((_, _, name)): Segments,
    ArmJson(req): ArmJson<MongoCluster>,
) -> Result<Json<MongoCluster>, PlaneError> {
    Ok(Json(api.plane.update(&name, req, Some(&caller.0)).await?))
}

async fn remove(
    State(api): State<Api>,
    Path((_, _, name)): Segments,
) -> Result<StatusCode, PlaneError> {
    match api.plane.delete(&name).await {
        Ok(()) => Ok(StatusCode::OK),
        Err(PlaneError::NotFound(_)) => Ok(StatusCode::NO_CONTENT),
        Err(e) => Err(e),
    }
}

async fn revalidate(
    State(api): State<Api>,
    Path((_, _, name)): Segments,
) -> Result<Json<MongoCluster>, PlaneError> {
    Ok(Json(api.plane.revalidate(&name).await?))
}

async fn backups(
    State(api): State<Api>,
    Path((_, _, name)): Segments,
) -> Result<Json<backup::BackupInfo>, PlaneError> {
    Ok(Json(api.plane.backup_info(&name).await?))
}

async fn verify_backups(
    State(api): State<Api>,
    Path((_, _, name)): Segments,
) -> Result<Json<backup::VerifyReport>, PlaneError> {
    Ok(Json(api.plane.verify_backup(&name).await?))
}

async fn export_backup(
    State(api): State<Api>,
    Path((_, _, name)): Segments,
    ArmJson(body): ArmJson<crate::backups::ExportRequest>,
) -> Result<Json<crate::backups::ExportManifest>, PlaneError> {
    Ok(Json(api.plane.export_backup(&name, body).await?))
}

async fn decrypt_export(
    State(api): State<Api>,
    Path((_, _, name)): Segments,
    ArmJson(body): ArmJson<crate::backups::DecryptExportRequest>,
) -> Result<Json<serde_json::Value>, PlaneError> {
    Ok(Json(api.plane.decrypt_export(&name, body).await?))
}

async fn restore_status(
    State(api): State<Api>,
    Path((_, _, name)): Segments,
) -> Result<Json<crate::RestoreStatus>, PlaneError> {
    api.plane
        .restore_status(&name)
        .map(Json)
        .ok_or(PlaneError::NotFound(name))
}

/// Query of `GET /providers/Strongroom.Control/auditEvents`.
#[derive(Debug, Default, serde::Deserialize)]
struct AuditQuery {
    cluster: Option<String>,
    kind: Option<String>,
    /// RFC 3339.
    since: Option<String>,
    until: Option<String>,
    tail: Option<usize>,
    limit: Option<usize>,
}

fn parse_time(field: &str, text: &str) -> Result<time::OffsetDateTime, PlaneError> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|e| {
        PlaneError::BadRequest {
            code: "InvalidQueryParameter".into(),
            message: format!("{field} '{text}' is not an RFC 3339 time: {e}"),
        }
    })
}

async fn audit_events(
    State(api): State<Api>,
    axum::extract::Query(q): axum::extract::Query<AuditQuery>,
) -> Result<Json<serde_json::Value>, PlaneError> {
    let kind = match &q.kind {
        Some(k) => Some(
            k.parse::<audit::EventKind>()
                .map_err(|e| PlaneError::BadRequest {
                    code: "InvalidQueryParameter".into(),
                    message: e.to_string(),
                })?,
        ),
        None => None,
    };
    let filter = audit::ReadFilter {
        since: q
            .since
            .as_deref()
            .map(|t| parse_time("since", t))
            .transpose()?,
        until: q
            .until
            .as_deref()
            .map(|t| parse_time("until", t))
            .transpose()?,
        kind,
        cluster: q.cluster.clone(),
        limit: q.limit,
        tail: q.tail,
        ..audit::ReadFilter::default()
    };
    let (records, tampering) = api.plane.audit_records(filter).await?;
    // The records the log still holds, and — when it no longer reaches the chain head the
    // control plane recorded — what is missing: the CLI reports that as tampering.
    Ok(Json(json!({ "value": records, "tampering": tampering })))
}

async fn connection_strings(
    State(api): State<Api>,
    Path((_, _, name)): Segments,
) -> Result<Json<serde_json::Value>, PlaneError> {
    let cluster = api.plane.get(&name).await?;
    Ok(Json(json!({
        "connectionStrings": [{
            "connectionString": cluster.properties.connection_string,
            "description": "default connection string (SCRAM-SHA-256, TLS)",
        }]
    })))
}

async fn list_group(
    State(api): State<Api>,
    Path((sub, rg)): Path<(String, String)>,
) -> Json<serde_json::Value> {
    list_under(&api, &format!("/subscriptions/{sub}/resourceGroups/{rg}/")).await
}

async fn list_all(State(api): State<Api>, Path(sub): Path<String>) -> Json<serde_json::Value> {
    list_under(&api, &format!("/subscriptions/{sub}/")).await
}

/// The clusters whose resource id starts with `scope` (ARM compares ids case-insensitively).
async fn list_under(api: &Api, scope: &str) -> Json<serde_json::Value> {
    let scope = scope.to_ascii_lowercase();
    let value: Vec<MongoCluster> = api
        .plane
        .list()
        .await
        .into_iter()
        .filter(|c| {
            c.id.as_deref()
                .is_some_and(|id| id.to_ascii_lowercase().starts_with(&scope))
        })
        .collect();
    Json(json!({ "value": value }))
}
