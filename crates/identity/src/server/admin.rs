//! The admin API. Every route requires `Authorization: Bearer <token>` of an `admin`
//! service principal with audience `https://management.azure.com/` or
//! `api://strongroom-identity`; objects are scoped to the caller's tenant (`tid`).
//!
//! * ARM-shaped user-assigned identities under
//!   `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities[/{name}]`
//! * `/admin/tenants`, `/admin/servicePrincipals[/{appId}[/secrets]]`
//! * `/admin/resources[/attach|/detach|/secret]` (resource ids contain `/`, so they
//!   travel in JSON bodies or the `resource` query parameter).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{AttachedResource, ManagedIdentity, ServicePrincipal};
use crate::service::{Credentials, Service};
use crate::{Claims, Error};

use super::reply;

const MI_TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";

pub fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
            get(get_identity).put(put_identity).delete(delete_identity),
        )
        .route(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities",
            get(list_identities),
        )
        .route("/admin/tenants", get(list_tenants).post(create_tenant))
        .route("/admin/servicePrincipals", get(list_principals).post(create_principal))
        .route("/admin/servicePrincipals/{app_id}", get(get_principal).delete(delete_principal))
        .route("/admin/servicePrincipals/{app_id}/secrets", post(add_secret))
        .route("/admin/resources", get(get_resource).delete(delete_resource))
        .route("/admin/resources/attach", post(attach))
        .route("/admin/resources/detach", post(detach))
        .route("/admin/resources/secret", post(issue_secret))
}

/// An authenticated tenant administrator.
pub struct Admin(pub Claims);

impl FromRequestParts<Arc<Service>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        svc: &Arc<Service>,
    ) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(bearer) = bearer else {
            return Err(reply::from_error(&Error::Unauthorized(
                "the request has no bearer token".into(),
            )));
        };
        svc.authorize_admin(bearer)
            .map(Admin)
            .map_err(|e| reply::from_error(&e))
    }
}

/// Runs a (possibly fsyncing) service call off the async workers.
async fn blocking<T: Send + 'static>(
    svc: &Arc<Service>,
    f: impl FnOnce(&Service) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let svc = svc.clone();
    tokio::task::spawn_blocking(move || f(&svc))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
}

fn respond<T>(r: Result<T, Error>, ok: impl FnOnce(T) -> Response) -> Response {
    match r {
        Ok(v) => ok(v),
        Err(e) => reply::from_error(&e),
    }
}

// ---- managed identities (ARM shape) ----

fn arm_identity(mi: &ManagedIdentity) -> Value {
    json!({
        "id": mi.id,
        "name": mi.name,
        "type": MI_TYPE,
        "location": mi.location,
        "tags": mi.tags,
        "properties": {
            "tenantId": mi.tenant_id,
            "principalId": mi.principal_id,
            "clientId": mi.client_id,
        },
    })
}

#[derive(Deserialize, Default)]
struct PutIdentityBody {
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

async fn put_identity(
    State(svc): State<Arc<Service>>,
    Admin(caller): Admin,
    Path((sub, rg, name)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let body: PutIdentityBody = if body.is_empty() {
        PutIdentityBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return reply::from_error(&Error::InvalidInput(format!("body: {e}"))),
        }
    };
    let location = body.location.unwrap_or_else(|| "local".into());
    let r = blocking(&svc, move |s| {
        s.put_identity(&caller.tid, &sub, &rg, &name, &location, body.tags)
    })
    .await;
    respond(r, |(mi, created)| {
        let code = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        (code, Json(arm_identity(&mi))).into_response()
    })
}

async fn get_identity(
    State(svc): State<Arc<Service>>,
    Admin(caller): Admin,
    Path((sub, rg, name)): Path<(String, String, String)>,
) -> Response {
    let id = crate::service::identity_resource_id(&sub, &rg, &name);
    match svc
        .get_identity(&id)
        .filter(|mi| mi.tenant_id == caller.tid)
    {
        Some(mi) => Json(arm_identity(&mi)).into_response(),
        None => platform::arm::response(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!("The Resource '{MI_TYPE}/{name}' under resource group '{rg}' was not found."),
        ),
    }
}

async fn list_identities(
    State(svc): State<Arc<Service>>,
    Admin(caller): Admin,
    Path((sub, rg)): Path<(String, String)>,
) -> Response {
    let value: Vec<Value> = svc
        .list_identities(&caller.tid, &sub, &rg)
        .iter()
        .map(arm_identity)
        .collect();
    Json(json!({ "value": value })).into_response()
}

async fn delete_identity(
    State(svc): State<Arc<Service>>,
    Admin(caller): Admin,
    Path((sub, rg, name)): Path<(String, String, String)>,
) -> Response {
    let id = crate::service::identity_resource_id(&sub, &rg, &name);
    let r = blocking(&svc, move |s| s.delete_identity(&caller.tid, &id)).await;
    respond(r, |existed| {
        if existed {
            StatusCode::OK
        } else {
            StatusCode::NO_CONTENT
        }
        .into_response()
    })
}

// ---- tenants ----

async fn list_tenants(State(svc): State<Arc<Service>>, Admin(caller): Admin) -> Response {
    let value: Vec<Value> = svc
        .list_tenants()
        .into_iter()
        .filter(|t| t.id == caller.tid)
        .map(|t| json!({"tenantId": t.id, "displayName": t.display_name}))
        .collect();
    Json(json!({ "value": value })).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateTenantBody {
    display_name: String,
}

async fn create_tenant(
    State(svc): State<Arc<Service>>,
    Admin(_caller): Admin,
    Json(body): Json<CreateTenantBody>,
) -> Response {
    let r = blocking(&svc, move |s| s.create_tenant(&body.display_name)).await;
    respond(r, |(tenant, admin)| {
        (
            StatusCode::CREATED,
            Json(
                json!({"tenantId": tenant.id, "displayName": tenant.display_name, "admin": admin}),
            ),
        )
            .into_response()
    })
}

// ---- service principals ----

fn principal_view(sp: &ServicePrincipal) -> Value {
    json!({
        "appId": sp.app_id,
        "objectId": sp.object_id,
        "tenantId": sp.tenant_id,
        "displayName": sp.display_name,
        "admin": sp.admin,
        "trustedService": sp.trusted_service,
        "secretCount": sp.secrets.len(),
    })
}

fn credentials_view(c: &Credentials, display_name: &str, admin: bool, trusted: bool) -> Value {
    json!({
        "appId": c.client_id,
        "objectId": c.object_id,
        "tenantId": c.tenant_id,
        "displayName": display_name,
        "admin": admin,
        "trustedService": trusted,
        "clientSecret": c.client_secret.as_str(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatePrincipalBody {
    display_name: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    trusted_service: bool,
}

async fn create_principal(
    State(svc): State<Arc<Service>>,
    Admin(caller): Admin,
    Json(body): Json<CreatePrincipalBody>,
) -> Response {
    let name = body.display_name.clone();
    let r = blocking(&svc, move |s| {
        s.create_service_principal(
            &caller.tid,
            &body.display_name,
            body.admin,
            body.trusted_service,
        )
    })
    .await;
    respond(r, |c| {
        (
            StatusCode::CREATED,
            Json(credentials_view(
                &c,
                &name,
                body.admin,
                body.trusted_service,
            )),
        )
            .into_response()
    })
}

async fn list_principals(State(svc): State<Arc<Service>>, Admin(caller): Admin) -> Response {
    let value: Vec<Value> = svc
        .list_service_principals(&caller.tid)
        .iter()
        .map(principal_view)
        .collect();
    Json(json!({ "value": value })).into_response()
}

async fn get_principal(
    State(svc): State<Arc<Service>>,
    Admin(caller): Admin,
    Path(app_id): Path<String>,
) -> Response {
    match svc.get_service_principal(&caller.tid, &app_id) {
        Some(sp) => Json(principal_view(&sp)).into_response(),
        None => reply::from_error(&Error::NotFound {
            kind: "service principal",
            id: app_id,
        }),
    }
}

async fn delete_principal(
    State(svc): State<Arc<Service>>,
    Admin(caller): Admin,
    Path(app_id): Path<String>,
) -> Response {
    let r = blocking(&svc, move |s| {
        s.delete_service_principal(&caller.tid, &app_id)
    })
    .await;
    respond(r, |existed| {
        if existed {
            StatusCode::OK
        } else {
            StatusCode::NO_CONTENT
        }
        .into_response()
    })
}

async fn add_secret(
    State(svc): State<Arc<Service>>,
    Admin(caller): Admin,
    Path(app_id): Path<String>,
) -> Response {
    let r = blocking(&svc, move |s| {
        let c = s.add_secret(&caller.tid, &app_id)?;
        let sp = s
            .get_service_principal(&caller.tid, &app_id)
            .ok_or_else(|| Error::NotFound {
                kind: "service principal",
                id: app_id.clone(),
            })?;
        Ok((c, sp))
    })
    .await;
    respond(r, |(c, sp)| {
        (
            StatusCode::CREATED,
            Json(credentials_view(
                &c,
                &sp.display_name,
                sp.admin,
                sp.trusted_service,
            )),
        )
            .into_response()
    })
}

// ---- resources ----

fn resource_view(r: &AttachedResource) -> Value {
    json!({
        "resource": r.resource_id,
        "tenantId": r.tenant_id,
        "identities": r.identities,
        "hasSecret": r.secret.is_some(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttachBody {
    resource: String,
    identity_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceBody {
    resource: String,
}

async fn attach(
    State(svc): State<Arc<Service>>,
    Admin(caller): Admin,
    Json(b): Json<AttachBody>,
) -> Response {
    let r = blocking(&svc, move |s| {
        s.attach(&caller.tid, &b.resource, &b.identity_id)
    })
    .await;
    respond(r, |res| Json(resource_view(&res)).into_response())
}

async fn detach(
    State(svc): State<Arc<Service>>,
    Admin(caller): Admin,
    Json(b): Json<AttachBody>,
) -> Response {
    let r = blocking(&svc, move |s| {
        s.detach(&caller.tid, &b.resource, &b.identity_id)
    })
    .await;
    respond(r, |detached| {
        Json(json!({ "detached": detached })).into_response()
    })
}

async fn issue_secret(
    State(svc): State<Arc<Service>>,
    Admin(caller): Admin,
    Json(b): Json<ResourceBody>,
) -> Response {
    let resource = b.resource.clone();
    let r = blocking(&svc, move |s| {
        s.issue_resource_secret(&caller.tid, &b.resource)
    })
    .await;
    respond(r, |secret| {
        (
            StatusCode::CREATED,
            Json(json!({ "resource": resource, "secret": secret.as_str(), "header": "X-IDENTITY-HEADER" })),
        )
            .into_response()
    })
}

async fn get_resource(
    State(svc): State<Arc<Service>>,
    Admin(caller): Admin,
    Query(b): Query<ResourceBody>,
) -> Response {
    match svc.get_resource(&caller.tid, &b.resource) {
        Some(r) => Json(resource_view(&r)).into_response(),
        None => reply::from_error(&Error::NotFound {
            kind: "resource",
            id: b.resource,
        }),
    }
}

async fn delete_resource(
    State(svc): State<Arc<Service>>,
    Admin(caller): Admin,
    Query(b): Query<ResourceBody>,
) -> Response {
    let r = blocking(&svc, move |s| s.delete_resource(&caller.tid, &b.resource)).await;
    respond(r, |existed| {
        if existed {
            StatusCode::OK
        } else {
            StatusCode::NO_CONTENT
        }
        .into_response()
    })
}
