//! The `/dev/...` test controls (dev mode, tenant administrators only): shift the global
//! or a vault's clock, run the scheduler now, make a vault unreachable, deny its firewall.
//!
//! Every `/dev` path, whatever the method, first passes [`Dev`]: dev mode (404 otherwise),
//! an administrator (403), a JSON body (400); only then is an unknown control 404.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::FromRequestParts;
use http::request::Parts;
use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::{Mgmt, arm_error, bad_request, not_found_vault};
use crate::api_error::ApiError;
use crate::http_util::{Body, json_response};
use crate::server::Ctx;
use crate::state::VaultEntry;

/// A dev control request that passed the checks, with its JSON body.
pub(super) struct Dev {
    m: Mgmt,
    body: Value,
}

impl FromRequestParts<Arc<Ctx>> for Dev {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<Ctx>) -> Result<Self, ApiError> {
        let m = Mgmt::from_request_parts(parts, ctx).await?;
        m.set_operation("DevControl");
        if !m.ctx.cfg.dev_mode {
            return Err(ApiError::not_found_route());
        }
        if !m.is_admin(&m.claims).await {
            return Err(arm_error(
                StatusCode::FORBIDDEN,
                "AuthorizationFailed",
                "Dev controls require a tenant administrator.",
            ));
        }
        let body = m.json_body()?;
        Ok(Dev { m, body })
    }
}

impl Dev {
    /// `seconds` of a clock shift (forward only).
    fn seconds(&self) -> Result<i64, ApiError> {
        let s = self
            .body
            .get("seconds")
            .and_then(|x| x.as_i64())
            .ok_or_else(|| bad_request("seconds is required."))?;
        if s < 0 {
            return Err(bad_request("The clock only moves forward."));
        }
        Ok(s)
    }

    fn flag(&self, k: &str) -> Result<bool, ApiError> {
        self.body
            .get(k)
            .and_then(|x| x.as_bool())
            .ok_or_else(|| bad_request(format!("{k} (bool) is required.")))
    }

    /// The vault of `/dev/vaults/{name}/...`, named in the audit line first.
    fn vault(&self) -> Result<Arc<VaultEntry>, ApiError> {
        let name = self.m.segs.get(2);
        self.m.set_vault(name);
        self.m
            .ctx
            .state
            .vault(name)
            .ok_or_else(|| not_found_vault(name))
    }

    async fn run_scheduler(&self) {
        let ctx = self.m.ctx.clone();
        let _ = tokio::task::spawn_blocking(move || crate::rotation::tick(&ctx)).await;
    }
}

/// `/dev/clock`: shifts the global clock, then runs the scheduler.
pub(super) async fn clock(d: Dev) -> Result<Response<Body>, ApiError> {
    d.m.set_operation("DevClockShift");
    d.m.ctx.state.clock.shift_global(d.seconds()?);
    d.run_scheduler().await;
    Ok(json_response(
        StatusCode::OK,
        &json!({"now": d.m.ctx.state.clock.now_global()}),
    ))
}

/// `/dev/scheduler/run`.
pub(super) async fn scheduler_run(d: Dev) -> Result<Response<Body>, ApiError> {
    d.m.set_operation("DevSchedulerRun");
    d.run_scheduler().await;
    Ok(json_response(StatusCode::OK, &json!({})))
}

/// `/dev/vaults/{name}/clock`: shifts one vault's clock, then runs the scheduler.
pub(super) async fn vault_clock(d: Dev) -> Result<Response<Body>, ApiError> {
    let v = d.vault()?;
    d.m.set_operation("DevVaultClockShift");
    d.m.ctx.state.clock.shift_vault(&v.name(), d.seconds()?);
    d.run_scheduler().await;
    Ok(json_response(
        StatusCode::OK,
        &json!({"now": d.m.ctx.state.clock.now(&v.name())}),
    ))
}

/// `/dev/vaults/{name}/unreachable`: closes (or re-binds) the vault's listener.
pub(super) async fn vault_unreachable(d: Dev) -> Result<Response<Body>, ApiError> {
    let v = d.vault()?;
    d.m.set_operation("DevVaultUnreachable");
    let on = d.flag("enabled")?;
    v.unreachable.store(on, Ordering::SeqCst);
    if on {
        d.m.ctx.stop_vault_listener(&v).await;
    } else if !v.is_deleted() {
        let port = v.record.read().port;
        d.m.ctx
            .start_vault_listener(&v, port)
            .await
            .map_err(ApiError::from)?;
    }
    Ok(json_response(StatusCode::OK, &json!({"unreachable": on})))
}

/// `/dev/vaults/{name}/firewall`: denies (or allows) every client of the vault.
pub(super) async fn vault_firewall(d: Dev) -> Result<Response<Body>, ApiError> {
    let v = d.vault()?;
    d.m.set_operation("DevVaultFirewall");
    let on = d.flag("deny")?;
    v.firewall_deny.store(on, Ordering::SeqCst);
    Ok(json_response(StatusCode::OK, &json!({"deny": on})))
}

/// `/dev/vaults/{name}/{other}`: the vault is looked up, then 404.
pub(super) async fn vault_unknown(d: Dev) -> Result<Response<Body>, ApiError> {
    d.vault()?;
    Err(ApiError::not_found_route())
}

/// Any other `/dev` path: 404, after the checks.
pub(super) async fn unknown(_: Dev) -> Result<Response<Body>, ApiError> {
    Err(ApiError::not_found_route())
}
