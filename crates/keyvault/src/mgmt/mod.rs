//! Management plane (ARM-shaped): vaults, deleted vaults, role assignments, access
//! policies, and the `/dev/...` test controls.
//!
//! Authentication comes first, for every path (known or not): a bearer token from the
//! identity service with audience `https://management.azure.com/` (trailing slash
//! optional); then the body is read; then the request is routed, on its path lower-cased
//! with the slashes at both ends dropped (ARM matches paths case-insensitively; names and
//! ids are taken from the client's own segments). Authorization: a tenant administrator
//! (marked in `Config::admin_object_ids`) may manage every vault of its tenant; any other
//! principal may create vaults in its own tenant and manage the vaults it created. Dev
//! controls require an administrator.
//!
//! Unknown paths and methods answer what the hand-written router answered
//! (`tests/routing.golden`): 404 `NotFound` / 405 `MethodNotAllowed`, in some places only
//! after the vault the path names was found.

mod access_policies;
mod deleted_vaults;
mod dev;
mod network_acls;
mod role_assignments;
mod vaults;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::handler::Handler;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::audit::AuditEvent;
use crate::auth::Claims;
use crate::http_util::{Body, RawSegments, bearer, read_body, reroute};
use crate::model::VaultRecord;
use crate::server::Ctx;
use crate::state::VaultEntry;

pub const MANAGEMENT_RESOURCE: &str = "https://management.azure.com/";

const VAULT: &str =
    "/subscriptions/{sub}/resourcegroups/{rg}/providers/microsoft.keyvault/vaults/{name}";
const DELETED_VAULT: &str =
    "/subscriptions/{sub}/providers/microsoft.keyvault/locations/{loc}/deletedvaults/{name}";
const ROLES: &str = "providers/microsoft.authorization/roleassignments";

/// The management listener's router: authentication, body and canonical path first, then
/// the declared routes.
pub fn service(ctx: Arc<Ctx>) -> Router {
    let routes = routes().with_state(ctx.clone());
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn_with_state(ctx, envelope))
}

fn routes() -> Router<Arc<Ctx>> {
    let mut r = Router::new()
        .route(
            DELETED_VAULT,
            not_found().get(op("DeletedVaultGet", deleted_vaults::get)),
        )
        .route(
            &format!("{DELETED_VAULT}/purge"),
            not_found().post(op("DeletedVaultPurge", deleted_vaults::purge)),
        )
        .route(
            "/subscriptions/{sub}/providers/microsoft.keyvault/vaults",
            not_found().get(op("VaultList", vaults::list)),
        )
        .route(
            "/subscriptions/{sub}/resourcegroups/{rg}/providers/microsoft.keyvault/vaults",
            not_found().get(op("VaultList", vaults::list)),
        )
        .route(
            VAULT,
            MethodRouter::new()
                .head(vault_wrong_method)
                .fallback(vault_wrong_method)
                .put(op("VaultPut", vaults::put))
                .patch(op("VaultPatch", vaults::patch))
                .get(op("VaultGet", vaults::get))
                .delete(op("VaultDelete", vaults::delete)),
        )
        .route(
            &format!("{VAULT}/accesspolicies/{{op}}"),
            MethodRouter::new()
                .fallback(vault_not_found)
                .put(op("VaultAccessPolicy", access_policies::put)),
        )
        .route(&format!("{VAULT}/{{*rest}}"), any(vault_not_found))
        .route("/dev", any(dev::unknown))
        .route("/dev/{*rest}", any(dev::unknown))
        .route("/dev/clock", any(dev::clock))
        .route("/dev/scheduler/run", any(dev::scheduler_run))
        .route("/dev/vaults/{name}/clock", any(dev::vault_clock))
        .route(
            "/dev/vaults/{name}/unreachable",
            any(dev::vault_unreachable),
        )
        .route("/dev/vaults/{name}/firewall", any(dev::vault_firewall))
        .route("/dev/vaults/{name}/{other}", any(dev::vault_unknown));
    use role_assignments as ra;
    for scope in ["", "/keys/{key}"] {
        let base = format!("{VAULT}{scope}/{ROLES}");
        r = r
            .route(
                &base,
                MethodRouter::new()
                    .head(ra::not_found)
                    .fallback(ra::not_found)
                    .get(ra::list),
            )
            .route(
                &format!("{base}/{{guid}}"),
                MethodRouter::new()
                    .head(ra::wrong_method)
                    .fallback(ra::wrong_method)
                    .put(ra::put)
                    .get(ra::get)
                    .delete(ra::delete),
            )
            .route(&format!("{base}/{{guid}}/{{*rest}}"), any(ra::not_found));
    }
    r.fallback(any(route_not_found))
}

/// A method router whose unclaimed methods (HEAD included: axum would answer it with the
/// GET handler) are 404.
fn not_found() -> MethodRouter<Arc<Ctx>> {
    MethodRouter::new()
        .head(route_not_found)
        .fallback(route_not_found)
}

async fn route_not_found() -> ApiError {
    ApiError::not_found_route()
}

/// A vault path whose method the vault routes don't take: the vault is named in the
/// audit line, then 405.
async fn vault_wrong_method(m: Mgmt) -> ApiError {
    m.vault_path();
    ApiError::method_not_allowed()
}

/// Anything else under a vault path: the vault is named in the audit line, then 404.
async fn vault_not_found(m: Mgmt) -> ApiError {
    m.vault_path();
    ApiError::not_found_route()
}

/// The audit operation name a route's handler performs (read by [`Mgmt`]).
#[derive(Debug, Clone, Copy)]
struct Operation(&'static str);

/// Tags a handler with its audit operation name.
fn op<H, T>(name: &'static str, handler: H) -> impl Handler<T, Arc<Ctx>>
where
    H: Handler<T, Arc<Ctx>>,
    T: 'static,
{
    handler.layer(axum::Extension(Operation(name)))
}

/// A management request, authenticated, with its body read: what every handler takes.
pub(crate) struct Mgmt {
    ctx: Arc<Ctx>,
    claims: Claims,
    segs: RawSegments,
    body: Bytes,
    audit: Arc<Mutex<AuditEvent>>,
}

/// What the envelope learnt before routing, for the [`Mgmt`] extractor.
#[derive(Clone)]
struct Authenticated {
    claims: Claims,
    body: Bytes,
    audit: Arc<Mutex<AuditEvent>>,
}

impl FromRequestParts<Arc<Ctx>> for Mgmt {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<Ctx>) -> Result<Self, ApiError> {
        let (Some(a), Some(segs)) = (
            parts.extensions.get::<Authenticated>().cloned(),
            parts.extensions.get::<RawSegments>().cloned(),
        ) else {
            return Err(ApiError::internal());
        };
        let m = Mgmt {
            ctx: ctx.clone(),
            claims: a.claims,
            segs,
            body: a.body,
            audit: a.audit,
        };
        if let Some(Operation(name)) = parts.extensions.get::<Operation>().copied() {
            m.set_operation(name);
        }
        Ok(m)
    }
}

impl Mgmt {
    fn set_operation(&self, name: &str) {
        self.audit.lock().operation_name = name.into();
    }

    fn set_vault(&self, name: &str) {
        self.audit.lock().vault = Some(name.to_string());
    }

    /// (subscription, resource group, vault name) of a `.../vaults/{name}...` path; the
    /// vault is named in the audit line.
    fn vault_path(&self) -> (&str, &str, &str) {
        let name = self.segs.get(7);
        self.set_vault(name);
        (self.segs.get(1), self.segs.get(3), name)
    }

    /// The body as JSON (`{}` when empty).
    fn json_body(&self) -> Result<Value, ApiError> {
        if self.body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContent",
                format!("The request content was invalid: {e}"),
            )
        })
    }

    async fn authenticate(ctx: &Ctx, headers: &http::HeaderMap) -> Result<Claims, ApiError> {
        let challenge = format!(
            "Bearer authorization_uri=\"{}\", error=\"invalid_token\"",
            ctx.cfg.identity_url.trim_end_matches('/')
        );
        let Some(token) = bearer(headers) else {
            let e = arm_error(
                StatusCode::UNAUTHORIZED,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            );
            let e = e.with_challenge(challenge);
            return Err(e);
        };
        let claims = ctx.verifier.verify(token).await.map_err(|e| {
            let err = arm_error(
                StatusCode::UNAUTHORIZED,
                match e {
                    crate::auth::AuthError::Expired => "ExpiredAuthenticationToken",
                    _ => "InvalidAuthenticationToken",
                },
                format!("The access token is invalid: {e}."),
            );
            err.with_challenge(challenge.clone())
        })?;
        if !claims.has_audience(MANAGEMENT_RESOURCE) {
            let err = arm_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationTokenAudience",
                format!(
                    "The access token has been obtained for wrong audience or resource '{}'. It should exactly match with one of the allowed audiences '{}'.",
                    claims.aud.join(","),
                    MANAGEMENT_RESOURCE
                ),
            );
            let err = err.with_challenge(challenge);
            return Err(err);
        }
        Ok(claims)
    }

    async fn is_admin(&self, claims: &Claims) -> bool {
        self.ctx
            .cfg
            .admin_object_ids
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&claims.oid))
    }

    /// Admin of the vault's tenant, or the vault's creator.
    async fn authorize_vault(
        &self,
        claims: &Claims,
        rec: &VaultRecord,
        action: &str,
    ) -> Result<(), ApiError> {
        let same_tenant = claims.tid.eq_ignore_ascii_case(&rec.tenant_id);
        if same_tenant
            && (rec.created_by.eq_ignore_ascii_case(&claims.oid) || self.is_admin(claims).await)
        {
            return Ok(());
        }
        Err(arm_error(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            format!(
                "The client '{}' with object id '{}' does not have authorization to perform action '{}' over scope '{}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
                claims.oid,
                claims.oid,
                action,
                rec.resource_id()
            ),
        ))
    }

    fn vault_in(&self, sub: &str, rg: &str, name: &str) -> Result<Arc<VaultEntry>, ApiError> {
        let v = self
            .ctx
            .state
            .vault(name)
            .ok_or_else(|| not_found_vault(name))?;
        {
            let r = v.record.read();
            if r.deleted.is_some()
                || !r.subscription.eq_ignore_ascii_case(sub)
                || !r.resource_group.eq_ignore_ascii_case(rg)
            {
                return Err(not_found_vault(name));
            }
        }
        Ok(v)
    }
}

/// Before routing: the audit line, authentication, the body, the canonical path; after:
/// the correlation header and the audit record.
async fn envelope(State(ctx): State<Arc<Ctx>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let (_, ev) = AuditEvent::start(&req);
    let audit = Arc::new(Mutex::new(ev));
    let mut resp = match admit(&ctx, req, &audit).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    // axum names the allowed methods on a method router's fallback answers; the service's
    // 404/405 never did.
    resp.headers_mut().remove(http::header::ALLOW);
    let mut ev = audit.lock().clone();
    if let Ok(v) = HeaderValue::from_str(&ev.correlation_id) {
        resp.headers_mut().insert("x-ms-correlation-request-id", v);
    }
    ev.finish(resp.status(), started);
    ctx.audit.record(&ev);
    resp
}

/// Authenticates, reads the body and canonicalizes the path of a request about to be
/// routed.
async fn admit(
    ctx: &Ctx,
    req: Request,
    audit: &Arc<Mutex<AuditEvent>>,
) -> Result<Request, ApiError> {
    let (mut parts, body) = req.into_parts();
    let claims = Mgmt::authenticate(ctx, &parts.headers).await?;
    {
        let mut ev = audit.lock();
        ev.caller_oid = Some(claims.oid.clone());
        ev.caller_app_id = Some(claims.app_id().to_string());
        ev.caller_tid = Some(claims.tid.clone());
    }
    let body = match parts.method {
        Method::POST | Method::PUT | Method::PATCH => read_body(body).await?,
        _ => Bytes::new(),
    };
    parts.extensions.insert(Authenticated {
        claims,
        body,
        audit: audit.clone(),
    });
    let mut req = Request::from_parts(parts, Body::empty());
    let path = req.uri().path().to_string();
    let trimmed = path.trim_matches('/');
    reroute(
        &mut req,
        trimmed,
        format!("/{}", trimmed.to_ascii_lowercase()),
    );
    Ok(req)
}

fn arm_error(status: StatusCode, code: &str, msg: impl Into<String>) -> ApiError {
    ApiError::new(status, code, msg)
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    arm_error(StatusCode::BAD_REQUEST, "BadRequest", msg)
}

fn not_found_vault(name: &str) -> ApiError {
    arm_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!(
            "The Resource 'Microsoft.KeyVault/vaults/{name}' under resource group was not found."
        ),
    )
}
