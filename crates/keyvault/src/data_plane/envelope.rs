//! What wraps every data-plane request, known route or not: the vault must be live (503
//! otherwise, before anything else), the path is made canonical for routing, and every
//! answer carries the service's headers and is written to the audit log once.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use parking_lot::Mutex;

use super::DataState;
use crate::api_error::ApiError;
use crate::audit::AuditEvent;
use crate::http_util::reroute;
use crate::state::VaultEntry;

/// The request's audit line, filled in by the stages that learn its facts.
#[derive(Clone)]
pub(super) struct Audit(pub(super) Arc<Mutex<AuditEvent>>);

impl Audit {
    pub(super) fn set(&self, f: impl FnOnce(&mut AuditEvent)) {
        f(&mut self.0.lock());
    }
}

/// The live vault a request is for (checked here, before routing).
#[derive(Clone)]
pub(super) struct LiveVault(pub(super) Arc<VaultEntry>);

/// `routes` behind the envelope, as one router a listener serves.
pub(super) fn wrap(state: DataState, routes: Router) -> Router {
    // Middleware on a router's fallback runs before the inner router routes.
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn_with_state(state, envelope))
}

async fn envelope(State(s): State<DataState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let (peer, ev) = AuditEvent::start(&req);
    let correlation = ev.correlation_id.clone();
    let audit = Audit(Arc::new(Mutex::new(AuditEvent {
        vault: Some(s.vault.clone()),
        ..ev
    })));
    let mut resp = match s.ctx.state.vault(&s.vault) {
        Some(v) if !v.is_deleted() && !v.is_unreachable() => {
            canonicalize(&mut req);
            req.extensions_mut().insert(audit.clone());
            req.extensions_mut().insert(LiveVault(v));
            next.run(req).await
        }
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The vault is not available.",
        )
        .into_response(),
    };
    let h = resp.headers_mut();
    // axum names the allowed methods on a method router's fallback answers; the service's
    // 404/405 never did.
    h.remove(http::header::ALLOW);
    if let Ok(v) = HeaderValue::from_str(&correlation) {
        h.insert("x-ms-client-request-id", v.clone());
    }
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("x-ms-request-id", v);
    }
    h.insert(
        "x-ms-keyvault-service-version",
        HeaderValue::from_static("1.9.0.0-strongroom"),
    );
    // The vault's own clock (test controls may shift it): clients that judge key
    // validity windows, like the control plane, judge them on the vault's time.
    let vault_now = s.ctx.state.clock.now(&s.vault);
    let vault_time =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(vault_now.max(0) as u64);
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(vault_time)) {
        h.insert(http::header::DATE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "conn_type={};addr={};act_addr_fam=InterNetwork;",
        if peer.addr.is_ipv4() { "Ipv4" } else { "Ipv6" },
        peer.addr.ip()
    )) {
        h.insert("x-ms-keyvault-network-info", v);
    }
    let mut ev = audit.0.lock().clone();
    ev.finish(resp.status(), started);
    s.ctx.audit.record(&ev);
    resp
}

/// Routes on the path with its leading slashes dropped and every segment but the key
/// name (the second) lower-cased: the service matches `keys`, `deletedkeys`, the
/// sub-resources and the crypto operations case-insensitively, `restore` exactly.
fn canonicalize(req: &mut Request) {
    let path = req.uri().path().to_string();
    let trimmed = path.trim_start_matches('/');
    let canonical: Vec<String> = trimmed
        .split('/')
        .enumerate()
        .map(|(i, s)| {
            if i == 1 {
                s.to_string()
            } else {
                s.to_ascii_lowercase()
            }
        })
        .collect();
    reroute(req, trimmed, format!("/{}", canonical.join("/")));
}
