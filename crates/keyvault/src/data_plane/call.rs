//! [`Call`]: the extractor every keys-API handler takes, so that a handler holds only its
//! operation. Extracting it runs the stages between routing and the operation, in the
//! service's order: key name → `api-version` → authentication → network rules →
//! authorization → body. Each stage's refusal is the answer; none reads the body before
//! the caller is authenticated and authorized.

use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use http::Method;

use super::envelope::{Audit, LiveVault};
use super::{DataState, Operation, authenticate, authorize, network};
use crate::api_error::ApiError;
use crate::http_util::{RawSegments, parse_query, query_get, read_body};
use crate::server::Ctx;
use crate::state::VaultEntry;

/// Per-request facts the operations share, known once the pipeline has let a call through.
pub(crate) struct Call {
    pub ctx: Arc<Ctx>,
    pub vault: Arc<VaultEntry>,
    /// `https://{data_host}:{port}`, the prefix of every id the call answers with.
    pub base: String,
    pub api_version: String,
    /// The vault clock's now.
    pub now: i64,
    /// The key named by the path (`""` for the collection operations).
    pub name: String,
    /// The version segment, when the path has a non-empty one (`/keys/n//wrapkey` and
    /// `/keys/n/` mean "latest").
    pub version: Option<String>,
    pub query: Vec<(String, String)>,
    /// The request body (read for POST, PUT and PATCH only).
    pub body: Bytes,
    audit: Audit,
}

impl Call {
    /// Records the versioned key id a crypto operation used.
    pub(crate) fn audit_key_id(&self, kid: &str) {
        self.audit.set(|ev| ev.key_id = Some(kid.to_string()));
    }

    /// Runs `f` on a blocking thread (key generation, persistence, RSA private operations).
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce() -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|_| ApiError::internal())?
    }
}

/// Key names: 1-127 letters, digits and dashes.
fn valid_key_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 127 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl FromRequest<DataState> for Call {
    type Rejection = ApiError;

    async fn from_request(req: Request, s: &DataState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let ext = &parts.extensions;
        let (Some(op), Some(segs), Some(audit), Some(LiveVault(vault)), Some(peer)) = (
            ext.get::<Operation>().copied(),
            ext.get::<RawSegments>(),
            ext.get::<Audit>().cloned(),
            ext.get::<LiveVault>().cloned(),
            ext.get::<platform::Peer>().copied(),
        ) else {
            return Err(ApiError::internal());
        };
        // --- the key name ---
        let name = if op.names_key() {
            let n = segs.get(1);
            if !valid_key_name(n) {
                return Err(ApiError::bad_parameter(format!(
                    "The key name '{n}' is invalid. Key names may only contain alphanumeric characters and dashes (1-127 characters)."
                )));
            }
            n.to_string()
        } else {
            String::new()
        };
        let version = Some(segs.get(2))
            .filter(|v| segs.len() > 2 && !v.is_empty())
            .map(str::to_string);
        audit.set(|ev| ev.operation_name = op.audit_name().into());
        // --- api-version ---
        let query = parse_query(parts.uri.query());
        let api_version = match query_get(&query, "api-version") {
            None => return Err(ApiError::missing_api_version()),
            Some(v) if super::API_VERSIONS.contains(&v) => v.to_string(),
            Some(v) => return Err(ApiError::unsupported_api_version(v)),
        };
        let ctx = &s.ctx;
        let (rec_name, location, port) = {
            let r = vault.record.read();
            (r.name.clone(), r.location.clone(), r.port)
        };
        // --- authentication (before touching the body) ---
        let claims = authenticate::caller(ctx, &vault, &parts.headers, op, &audit).await?;
        let caller = crate::api_error::caller_desc(claims.app_id(), &claims.oid, &claims.iss);
        // Trust comes only from the mutual-TLS client certificate (verified by rustls
        // against the service CA). A token claim is not a credential for the network
        // layer: any principal that can get a token could assert it.
        let trusted = peer.trusted_service;
        audit.set(|ev| ev.trusted_service = trusted);
        // --- network rules ---
        network::check(&vault, &peer, trusted, &caller)?;
        // --- authorization ---
        let key = op.names_key().then_some(name.as_str());
        authorize::check(
            &vault,
            &claims.oid,
            op.perm(),
            key,
            &caller,
            &rec_name,
            &location,
        )?;
        // --- body ---
        let body = match parts.method {
            Method::POST | Method::PUT | Method::PATCH => read_body(body).await?,
            _ => Bytes::new(),
        };
        let base = format!("https://{}:{}", ctx.cfg.data_host, port);
        if op.names_key() {
            audit.set(|ev| ev.key_id = Some(format!("{base}/keys/{name}")));
        }
        Ok(Call {
            ctx: ctx.clone(),
            now: ctx.state.clock.now(&rec_name),
            vault,
            base,
            api_version,
            name,
            version,
            query,
            body,
            audit,
        })
    }
}
