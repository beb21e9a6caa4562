//! Authentication on the data plane: the bearer token, verified, for this vault's audience
//! and tenant. Every refusal is a 401 carrying the vault tenant's challenge, built only
//! when needed (an authorised call never formats it). A token whose principal was deleted
//! authenticates nobody: it is refused as the authorization stage would refuse it.

use http::HeaderMap;

use super::envelope::Audit;
use super::{Operation, VAULT_RESOURCE};
use crate::api_error::ApiError;
use crate::auth::{AuthError, Claims};
use crate::http_util::bearer;
use crate::server::Ctx;
use crate::state::VaultEntry;

/// The verified caller of `op` on `vault`, recorded in the audit line.
pub(super) async fn caller(
    ctx: &Ctx,
    vault: &VaultEntry,
    headers: &HeaderMap,
    op: Operation,
    audit: &Audit,
) -> Result<Claims, ApiError> {
    let tenant = vault.record.read().tenant_id.clone();
    let challenge = || {
        format!(
            "Bearer authorization=\"{}/{}\", resource=\"{}\"",
            ctx.cfg.identity_url.trim_end_matches('/'),
            tenant,
            VAULT_RESOURCE
        )
    };
    let Some(token) = bearer(headers) else {
        audit.set(|ev| ev.operation_name = "Authentication".into());
        return Err(ApiError::unauthorized(
            "AKV10000: Request is missing a Bearer or PoP token.",
            challenge(),
        ));
    };
    let claims = match ctx.verifier.verify(token).await {
        Ok(c) => c,
        Err(AuthError::PrincipalDeleted(_)) => {
            // The principal was deleted: its assignments no longer apply.
            let perm = op.perm();
            let caller = "oid=(deleted principal)";
            let v = vault.record.read();
            return Err(if v.rbac {
                ApiError::forbidden_by_rbac(
                    caller,
                    perm.data_action(),
                    &v.resource_id(),
                    &v.name,
                    &v.location,
                )
            } else {
                ApiError::forbidden_by_policy(caller, perm.policy_name(), &v.name, &v.location)
            });
        }
        Err(e) => return Err(refusal(&e, challenge())),
    };
    audit.set(|ev| {
        ev.caller_oid = Some(claims.oid.clone());
        ev.caller_app_id = Some(claims.app_id().to_string());
        ev.caller_tid = Some(claims.tid.clone());
    });
    if !claims.has_audience(VAULT_RESOURCE) {
        return Err(ApiError::unauthorized(
            format!(
                "AKV10022: Invalid audience. Expected {VAULT_RESOURCE}, found: {}.",
                claims.aud.join(",")
            ),
            challenge(),
        ));
    }
    if !claims.tid.eq_ignore_ascii_case(&tenant) {
        return Err(ApiError::unauthorized(
            format!(
                "AKV10032: Invalid issuer. Expected one of {}/{}/v2.0, found {}.",
                ctx.cfg.identity_url.trim_end_matches('/'),
                tenant,
                claims.iss
            ),
            challenge(),
        ));
    }
    Ok(claims)
}

/// The 401 for a token that did not verify.
fn refusal(e: &AuthError, challenge: String) -> ApiError {
    let msg = match e {
        AuthError::Expired => "AKV10017: The token has expired.".to_string(),
        AuthError::NotYetValid => "AKV10016: The token is not yet valid.".to_string(),
        AuthError::Issuer(found) => format!("AKV10032: Invalid issuer. found {found}."),
        AuthError::Audience(found) => {
            format!("AKV10022: Invalid audience. Expected {VAULT_RESOURCE}, found: {found}.")
        }
        AuthError::BadSignature => "AKV10013: Token signature validation failed.".to_string(),
        AuthError::KeysUnavailable(_) => {
            "AKV10013: Token signing keys could not be retrieved.".to_string()
        }
        AuthError::Malformed | AuthError::PrincipalDeleted(_) => {
            "AKV10005: The token is malformed.".to_string()
        }
    };
    ApiError::unauthorized(msg, challenge)
}
