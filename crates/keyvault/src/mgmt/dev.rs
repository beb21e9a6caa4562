//! The `/dev/...` test controls (dev mode, tenant administrators only): shift the global
//! or a vault's clock, run the scheduler now, make a vault unreachable, deny its firewall.

use std::sync::atomic::Ordering;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::{Mgmt, arm_error, bad_request, not_found_vault};
use crate::api_error::ApiError;
use crate::audit::AuditEvent;
use crate::http_util::{Body, json_response};

/// Every `/dev` path, any method: dev mode and an administrator first, then the body.
pub(super) async fn control(m: Mgmt) -> Result<Response<Body>, ApiError> {
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
    let lower: Vec<String> = m.segs.0[1..]
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let orig: Vec<&str> = m.segs.0[1..].iter().map(String::as_str).collect();
    let mut ev = m.audit.lock().clone();
    let r = m.dev(&lower, &orig, body, &mut ev).await;
    *m.audit.lock() = ev;
    r
}

impl Mgmt {
    /// `/dev/clock`, `/dev/scheduler/run`, `/dev/vaults/{name}/{clock|unreachable|firewall}`.
    async fn dev(
        &self,
        lower: &[&str],
        orig: &[&str],
        body: Value,
        ev: &mut AuditEvent,
    ) -> Result<Response<Body>, ApiError> {
        let seconds = || -> Result<i64, ApiError> {
            let s = body
                .get("seconds")
                .and_then(|x| x.as_i64())
                .ok_or_else(|| bad_request("seconds is required."))?;
            if s < 0 {
                return Err(bad_request("The clock only moves forward."));
            }
            Ok(s)
        };
        let flag = |k: &str| -> Result<bool, ApiError> {
            body.get(k)
                .and_then(|x| x.as_bool())
                .ok_or_else(|| bad_request(format!("{k} (bool) is required.")))
        };
        match lower {
            ["clock"] => {
                ev.operation_name = "DevClockShift".into();
                self.ctx.state.clock.shift_global(seconds()?);
                self.run_scheduler().await;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"now": self.ctx.state.clock.now_global()}),
                ))
            }
            ["scheduler", "run"] => {
                ev.operation_name = "DevSchedulerRun".into();
                self.run_scheduler().await;
                Ok(json_response(StatusCode::OK, &json!({})))
            }
            ["vaults", _, what] => {
                let name = orig[1];
                ev.vault = Some(name.to_string());
                let v = self
                    .ctx
                    .state
                    .vault(name)
                    .ok_or_else(|| not_found_vault(name))?;
                match *what {
                    "clock" => {
                        ev.operation_name = "DevVaultClockShift".into();
                        self.ctx.state.clock.shift_vault(&v.name(), seconds()?);
                        self.run_scheduler().await;
                        Ok(json_response(
                            StatusCode::OK,
                            &json!({"now": self.ctx.state.clock.now(&v.name())}),
                        ))
                    }
                    "unreachable" => {
                        ev.operation_name = "DevVaultUnreachable".into();
                        let on = flag("enabled")?;
                        v.unreachable.store(on, Ordering::SeqCst);
                        if on {
                            self.ctx.stop_vault_listener(&v).await;
                        } else if !v.is_deleted() {
                            let port = v.record.read().port;
                            self.ctx
                                .start_vault_listener(&v, port)
                                .await
                                .map_err(ApiError::from)?;
                        }
                        Ok(json_response(StatusCode::OK, &json!({"unreachable": on})))
                    }
                    "firewall" => {
                        ev.operation_name = "DevVaultFirewall".into();
                        let on = flag("deny")?;
                        v.firewall_deny.store(on, Ordering::SeqCst);
                        Ok(json_response(StatusCode::OK, &json!({"deny": on})))
                    }
                    _ => Err(ApiError::not_found_route()),
                }
            }
            _ => Err(ApiError::not_found_route()),
        }
    }

    async fn run_scheduler(&self) {
        let ctx = self.ctx.clone();
        let _ = tokio::task::spawn_blocking(move || crate::rotation::tick(&ctx)).await;
    }
}
