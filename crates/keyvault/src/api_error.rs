//! Key Vault's errors: the codes, statuses and message templates of the real service (see
//! shared/reference/keyvault-api.md §2) built as [`platform::arm::ArmError`]s, the ARM
//! error shape `{"error":{"code","message","innererror":{"code"}}}` every service answers
//! with. The codes are the vault's, so they live here; the shape is the platform's.
//! Rendering ([`crate::http_util::error_response`]) keeps the vault's own headers
//! (`application/json; charset=utf-8`, `Cache-Control: no-cache`), which the SDKs see.

use http::StatusCode;
use platform::arm::ArmError;

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError(pub ArmError);

impl std::ops::Deref for ApiError {
    type Target = ArmError;

    fn deref(&self) -> &ArmError {
        &self.0
    }
}

/// Caller description as Key Vault prints it in 403 messages.
pub fn caller_desc(appid: &str, oid: &str, iss: &str) -> String {
    format!("appid={appid};oid={oid};iss={iss}")
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError(ArmError::new(status, code, message))
    }

    pub fn with_inner(self, inner: &str) -> Self {
        ApiError(self.0.with_inner(inner))
    }

    pub fn with_challenge(self, challenge: impl Into<String>) -> Self {
        ApiError(self.0.with_challenge(challenge))
    }

    pub fn bad_parameter(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadParameter", msg)
    }

    pub fn unsupported_api_version(given: &str) -> Self {
        Self::bad_parameter(format!(
            "The specified version ({given}) is not recognized. Consider using the latest supported version (7.6)."
        ))
    }

    pub fn missing_api_version() -> Self {
        Self::bad_parameter("The api-version query parameter is missing.")
    }

    pub fn unauthorized(message: impl Into<String>, challenge: String) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message).with_challenge(challenge)
    }

    pub fn key_not_found(name_or_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "KeyNotFound",
            format!(
                "A key with (name/id) {name_or_id} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
            ),
        )
    }

    pub fn deleted_key_not_found(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "KeyNotFound",
            format!("Deleted Key not found: {name}"),
        )
    }

    pub fn forbidden_by_policy(caller: &str, perm: &str, vault: &str, location: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "The user, group or application '{caller}' does not have keys {perm} permission on key vault '{vault};location={location}'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287"
            ),
        )
        .with_inner("ForbiddenByPolicy")
    }

    pub fn forbidden_by_rbac(
        caller: &str,
        action: &str,
        resource: &str,
        vault: &str,
        location: &str,
    ) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: {caller}\r\nAction: '{action}'\r\nResource: '{}'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\nVault: {vault};location={location}\r\n",
                resource.to_ascii_lowercase()
            ),
        )
        .with_inner("ForbiddenByRbac")
    }

    pub fn forbidden_by_firewall(addr: &str, caller: &str, vault: &str, location: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "Client address is not authorized and caller is not a trusted service.\r\nClient address: {addr}\r\nCaller: {caller}\r\nVault: {vault};location={location}"
            ),
        )
        .with_inner("ForbiddenByFirewall")
    }

    pub fn forbidden_by_connection(caller: &str, vault: &str, location: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "Public network access is disabled and request is not from a trusted service nor via an approved private link.\r\nCaller: {caller}\r\nVault: {vault};location={location}"
            ),
        )
        .with_inner("ForbiddenByConnection")
    }

    pub fn key_disabled(op: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("Operation {op} is not allowed on a disabled key."),
        )
        .with_inner("KeyDisabled")
    }

    pub fn key_not_yet_valid(op: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("Operation {op} is not allowed on a key that is not yet valid."),
        )
        .with_inner("KeyNotYetValid")
    }

    pub fn key_expired(op: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("Operation {op} is not allowed on an expired key."),
        )
        .with_inner("KeyExpired")
    }

    pub fn key_op_not_permitted(op: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("Operation {op} is not permitted on this key."),
        )
        .with_inner("KeyOperationForbidden")
    }

    pub fn purge_protected(vault: &str, location: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "Operation \"purge\" is not allowed because purge protection is enabled for this vault. Key Vault service will automatically purge it after the retention period has passed. Vault: {vault};location={location}"
            ),
        )
    }

    pub fn deleted_but_recoverable(name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Key {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged."
            ),
        )
        .with_inner("ObjectIsDeletedButRecoverable")
    }

    pub fn key_already_exists(name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("There is another object with the same name as key {name}."),
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "The service encountered an internal error.",
        )
    }

    pub fn not_found_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The requested resource or operation was not found.",
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The requested HTTP method is not allowed on this resource.",
        )
    }
}

impl From<crate::error::Error> for ApiError {
    fn from(e: crate::error::Error) -> Self {
        tracing::error!(error = %e, "internal error");
        ApiError::internal()
    }
}

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        crate::http_util::error_response(&self)
    }
}
