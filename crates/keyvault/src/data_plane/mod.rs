//! Data plane: the Azure Key Vault keys REST API for one vault, served on the vault's own
//! listener (so key ids are `https://127.0.0.1:{port}/keys/{name}/{version}`).
//!
//! Request pipeline (order matters, see the reference §6.1), each stage in one place:
//! 1. [`envelope`] — before routing: the vault must be live (503), the path is made
//!    canonical for routing, and every answer gets the service headers and one audit line.
//! 2. [`router`] — declared routes; each handler is tagged with its [`Operation`]. Paths
//!    or methods the service does not know answer exactly what the hand-written router
//!    answered before (`tests/routing.golden` pins it): 404 `NotFound` or 405
//!    `MethodNotAllowed` in the Azure error shape, never axum's defaults.
//! 3. [`call::Call`] — the extractor every handler takes: key name → `api-version` →
//!    authentication ([`authenticate`], the 401 challenge before the body is read) →
//!    network rules ([`network`]) → authorization ([`authorize`]) → body.
//! 4. The handler: only its operation — keys CRUD ([`keys`]), soft delete ([`deleted`]),
//!    listings ([`listing`]), crypto ([`crypto_ops`]), backup/restore ([`backup`]),
//!    rotation and its policy ([`rotate`], parsing in [`policy`]), BYOK import ([`byok`]).

mod authenticate;
mod authorize;
mod backup;
mod bundle;
mod byok;
mod call;
mod crypto_ops;
mod deleted;
mod envelope;
mod keys;
mod listing;
mod network;
mod params;
mod policy;
mod rotate;

use std::sync::Arc;

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodRouter, any};

use crate::api_error::ApiError;
use crate::authz::KeyPerm;
use crate::server::Ctx;

pub use network::cidr_contains;
pub use rotate::rotate_now;

/// api-versions accepted on the data plane (same wire format for keys).
pub const API_VERSIONS: &[&str] = &[
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "2025-07-01",
];
/// Audience of data-plane tokens.
pub const VAULT_RESOURCE: &str = "https://vault.azure.net";

/// What one vault listener serves: the service context and the vault's name.
#[derive(Clone)]
pub struct DataState {
    pub ctx: Arc<Ctx>,
    pub vault: String,
}

/// The vault listener's router: [`envelope`] around the declared routes.
pub fn service(ctx: Arc<Ctx>, vault: String) -> Router {
    let state = DataState { ctx, vault };
    let routes = routes().with_state(state.clone());
    envelope::wrap(state, routes)
}

/// The keys API. Literal segments are matched lower-cased (the envelope canonicalizes);
/// a literal in the version position (`/keys/n/create`) is still a version for the
/// methods its literal route does not claim, as the service treats it.
fn routes() -> Router<DataState> {
    use Operation as O;
    let crypto = |c: CryptoOp| not_found().post(op(O::Crypto(c), crypto_ops::run));
    let mut r = Router::new()
        .route("/keys", not_found().get(op(O::ListKeys, listing::keys)))
        .route("/keys/", key_methods().get(op(O::ListKeys, listing::keys)))
        .route(
            "/keys/restore",
            key_methods()
                .get(op(O::Get, keys::get))
                .post(op(O::Restore, backup::restore)),
        )
        .route("/keys/{name}", key_methods().get(op(O::Get, keys::get)))
        .route(
            "/keys/{name}/",
            version_methods()
                .put(op(O::Import, keys::import))
                .delete(op(O::Delete, deleted::delete)),
        )
        .route("/keys/{name}/{version}", version_methods())
        .route(
            "/keys/{name}/create",
            version_methods().post(op(O::Create, keys::create)),
        )
        .route(
            "/keys/{name}/rotate",
            version_methods().post(op(O::Rotate, rotate::rotate)),
        )
        .route(
            "/keys/{name}/backup",
            version_methods().post(op(O::Backup, backup::backup)),
        )
        .route(
            "/keys/{name}/versions",
            not_found()
                .get(op(O::ListVersions, listing::versions))
                .patch(op(O::Update, keys::update)),
        )
        .route(
            "/keys/{name}/rotationpolicy",
            not_found()
                .get(op(O::GetPolicy, rotate::get_policy))
                .put(op(O::SetPolicy, rotate::set_policy))
                .patch(op(O::Update, keys::update)),
        )
        .route(
            "/deletedkeys",
            not_found().get(op(O::ListDeleted, listing::deleted)),
        )
        .route(
            "/deletedkeys/",
            method_not_allowed()
                .get(op(O::ListDeleted, listing::deleted))
                .delete(op(O::Purge, deleted::purge)),
        )
        .route(
            "/deletedkeys/{name}",
            method_not_allowed()
                .get(op(O::GetDeleted, deleted::get))
                .delete(op(O::Purge, deleted::purge)),
        )
        .route(
            "/deletedkeys/{name}/recover",
            not_found().post(op(O::Recover, deleted::recover)),
        );
    for c in CryptoOp::ALL {
        r = r.route(
            &format!("/keys/{{name}}/{{version}}/{}", c.path()),
            crypto(c),
        );
    }
    r.fallback(any(route_not_found))
}

/// `PUT`/`DELETE`/`GET`/`PATCH` on `/keys/{name}`; any other method is 405.
fn key_methods() -> MethodRouter<DataState> {
    method_not_allowed()
        .put(op(Operation::Import, keys::import))
        .delete(op(Operation::Delete, deleted::delete))
        .patch(op(Operation::Update, keys::update))
}

/// `GET` / `PATCH` of a version (`/keys/{name}/{version}`); any other method is 404.
fn version_methods() -> MethodRouter<DataState> {
    not_found()
        .get(op(Operation::Get, keys::get))
        .patch(op(Operation::Update, keys::update))
}

/// A method router whose unclaimed methods (HEAD included: axum would answer it with the
/// GET handler) are 404.
fn not_found() -> MethodRouter<DataState> {
    MethodRouter::new()
        .head(route_not_found)
        .fallback(route_not_found)
}

/// A method router whose unclaimed methods (HEAD included) are 405.
fn method_not_allowed() -> MethodRouter<DataState> {
    MethodRouter::new()
        .head(wrong_method)
        .fallback(wrong_method)
}

async fn route_not_found() -> ApiError {
    ApiError::not_found_route()
}

async fn wrong_method() -> ApiError {
    ApiError::method_not_allowed()
}

/// Tags a handler with the operation it performs (read by [`call::Call`]).
fn op<H, T>(operation: Operation, handler: H) -> impl Handler<T, DataState>
where
    H: Handler<T, DataState>,
    T: 'static,
{
    handler.layer(axum::Extension(operation))
}

/// The operations of the keys API: their permission and audit name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    ListKeys,
    Restore,
    Import,
    Delete,
    Get,
    Update,
    Create,
    Rotate,
    Backup,
    ListVersions,
    GetPolicy,
    SetPolicy,
    Crypto(CryptoOp),
    ListDeleted,
    GetDeleted,
    Purge,
    Recover,
}

impl Operation {
    pub(crate) fn perm(self) -> KeyPerm {
        use Operation as O;
        match self {
            O::ListKeys | O::ListVersions | O::ListDeleted => KeyPerm::List,
            O::Restore => KeyPerm::Restore,
            O::Import => KeyPerm::Import,
            O::Delete => KeyPerm::Delete,
            O::Get | O::GetDeleted => KeyPerm::Get,
            O::Update => KeyPerm::Update,
            O::Create => KeyPerm::Create,
            O::Rotate => KeyPerm::Rotate,
            O::Backup => KeyPerm::Backup,
            O::GetPolicy => KeyPerm::GetRotationPolicy,
            O::SetPolicy => KeyPerm::SetRotationPolicy,
            O::Crypto(op) => op.perm(),
            O::Purge => KeyPerm::Purge,
            O::Recover => KeyPerm::Recover,
        }
    }

    pub(crate) fn audit_name(self) -> &'static str {
        use Operation as O;
        match self {
            O::ListKeys => "KeyList",
            O::Restore => "KeyRestore",
            O::Import => "KeyImport",
            O::Delete => "KeyDelete",
            O::Get => "KeyGet",
            O::Update => "KeyUpdate",
            O::Create => "KeyCreate",
            O::Rotate => "KeyRotate",
            O::Backup => "KeyBackup",
            O::ListVersions => "KeyListVersions",
            O::GetPolicy => "KeyRotationPolicyGet",
            O::SetPolicy => "KeyRotationPolicyUpdate",
            O::Crypto(op) => op.audit_name(),
            O::ListDeleted => "KeyListDeleted",
            O::GetDeleted => "KeyGetDeleted",
            O::Purge => "KeyPurge",
            O::Recover => "KeyRecover",
        }
    }

    /// Whether the path names a key (everything but the three collection operations).
    pub(crate) fn names_key(self) -> bool {
        !matches!(
            self,
            Operation::ListKeys | Operation::Restore | Operation::ListDeleted
        )
    }
}

/// The six key operations of `POST /keys/{name}/{version}/{op}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CryptoOp {
    Encrypt,
    Decrypt,
    Sign,
    Verify,
    Wrap,
    Unwrap,
}

impl CryptoOp {
    const ALL: [CryptoOp; 6] = [
        CryptoOp::Encrypt,
        CryptoOp::Decrypt,
        CryptoOp::Sign,
        CryptoOp::Verify,
        CryptoOp::Wrap,
        CryptoOp::Unwrap,
    ];

    /// The route segment (lower-cased: the envelope canonicalizes `wrapKey` and friends).
    fn path(self) -> &'static str {
        match self {
            CryptoOp::Wrap => "wrapkey",
            CryptoOp::Unwrap => "unwrapkey",
            other => other.key_op(),
        }
    }

    /// Name in `key_ops` and in error messages.
    pub(crate) fn key_op(self) -> &'static str {
        match self {
            CryptoOp::Encrypt => "encrypt",
            CryptoOp::Decrypt => "decrypt",
            CryptoOp::Sign => "sign",
            CryptoOp::Verify => "verify",
            CryptoOp::Wrap => "wrapKey",
            CryptoOp::Unwrap => "unwrapKey",
        }
    }

    fn perm(self) -> KeyPerm {
        match self {
            CryptoOp::Encrypt => KeyPerm::Encrypt,
            CryptoOp::Decrypt => KeyPerm::Decrypt,
            CryptoOp::Sign => KeyPerm::Sign,
            CryptoOp::Verify => KeyPerm::Verify,
            CryptoOp::Wrap => KeyPerm::WrapKey,
            CryptoOp::Unwrap => KeyPerm::UnwrapKey,
        }
    }

    fn audit_name(self) -> &'static str {
        match self {
            CryptoOp::Encrypt => "KeyEncrypt",
            CryptoOp::Decrypt => "KeyDecrypt",
            CryptoOp::Sign => "KeySign",
            CryptoOp::Verify => "KeyVerify",
            CryptoOp::Wrap => "KeyWrap",
            CryptoOp::Unwrap => "KeyUnwrap",
        }
    }

    /// Operations refused outside the nbf/exp window (decrypt/unwrap/verify stay allowed).
    pub(crate) fn time_bound(self) -> bool {
        matches!(self, CryptoOp::Encrypt | CryptoOp::Sign | CryptoOp::Wrap)
    }
}
