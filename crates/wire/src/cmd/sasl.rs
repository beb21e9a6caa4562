//! `saslStart`, `saslContinue` (SCRAM-SHA-256 only), speculative authentication in
//! `hello`, and `logout`.
//!
//! Unknown users get a decoy exchange that fails at the proof, and every failure is the
//! same `AuthenticationFailed`, so the replies never tell whether a user exists.

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, doc};

use super::Ctx;
use crate::auth::scram::{self, Conversation, Credentials};
use crate::auth::users;
use crate::client::{AuthUser, SaslState};
use crate::error::{CmdResult, CommandError, code};

pub const MECHANISM: &str = "SCRAM-SHA-256";

fn payload_bytes(body: &Document) -> CmdResult<Vec<u8>> {
    match body.get("payload") {
        Some(Bson::Binary(b)) => Ok(b.bytes.clone()),
        Some(Bson::String(s)) => Ok(s.as_bytes().to_vec()),
        _ => Err(CommandError::new(
            code::BAD_VALUE,
            "saslStart/saslContinue needs a binary 'payload'",
        )),
    }
}

fn binary(bytes: Vec<u8>) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    })
}

/// Runs `saslStart` for `auth_db` with `body`; returns the reply fields.
async fn start(ctx: &mut Ctx<'_>, auth_db: String, body: &Document) -> CmdResult {
    let mechanism = body.get_str("mechanism").unwrap_or("");
    if mechanism != MECHANISM {
        return Err(CommandError::new(
            code::MECHANISM_UNAVAILABLE,
            format!(
                "Received authentication for mechanism {} which is unknown or not enabled",
                crate::server::truncate(mechanism, 32)
            ),
        ));
    }
    let payload = payload_bytes(body)?;
    let first = scram::parse_client_first(&payload).map_err(|e| {
        tracing::info!(conn = ctx.client.connection_id, error = %e, "SCRAM client-first rejected");
        CommandError::auth_failed()
    })?;
    let skip_empty_exchange = body
        .get_document("options")
        .ok()
        .and_then(|o| o.get_bool("skipEmptyExchange").ok())
        .unwrap_or(false);
    let user_name = first.user.clone();
    let lookup_db = auth_db.clone();
    // Read before the record: a change stored after this moves the generation past it.
    let users_generation = ctx.shared.users.generation();
    let record = ctx
        .blocking(move |db| users::find_user(db, &lookup_db, &user_name))
        .await?;
    let credentials = match &record {
        Some(r) => r.credentials.clone(),
        None => Credentials::decoy(
            ctx.shared.scram_secret.as_ref(),
            &format!("{auth_db}.{}", first.user),
        ),
    };
    let (conversation, server_first) =
        Conversation::start(first, credentials, None).map_err(|_| CommandError::auth_failed())?;
    let conversation_id = ctx.client.next_conversation_id();
    ctx.client.sasl = Some(SaslState {
        conversation_id,
        db: auth_db,
        skip_empty_exchange,
        conversation,
        roles: record.map(|r| r.roles),
        applied: false,
        users_generation,
    });
    Ok(doc! {
        "conversationId": conversation_id,
        "done": false,
        "payload": binary(server_first),
    })
}

pub(super) async fn sasl_start(ctx: &mut Ctx<'_>) -> CmdResult {
    let body = ctx.body.clone();
    let db = ctx.db.clone();
    start(ctx, db, &body).await
}

pub(super) async fn sasl_continue(ctx: &mut Ctx<'_>) -> CmdResult {
    let conversation_id = match ctx.body.get("conversationId") {
        Some(Bson::Int32(i)) => *i,
        Some(Bson::Int64(i)) => *i as i32,
        Some(Bson::Double(f)) => *f as i32,
        _ => {
            return Err(CommandError::new(
                code::BAD_VALUE,
                "saslContinue needs a conversationId",
            ));
        }
    };
    let payload = payload_bytes(&ctx.body)?;
    let Some(mut state) = ctx.client.sasl.take() else {
        return Err(CommandError::new(
            code::PROTOCOL_ERROR,
            "No SASL session state found",
        ));
    };
    if state.conversation_id != conversation_id || state.db != ctx.db {
        return Err(CommandError::new(
            code::PROTOCOL_ERROR,
            "Requested conversation id does not match the one in progress",
        ));
    }
    let step = match state.conversation.step(&payload, state.skip_empty_exchange) {
        Ok(step) => step,
        Err(e) => {
            tracing::info!(
                conn = ctx.client.connection_id,
                user = %crate::server::truncate(state.conversation.user(), 64),
                db = %state.db,
                reason = %e,
                "authentication failed"
            );
            crate::audit::record(crate::audit::SecurityEvent {
                kind: crate::audit::SecurityEventKind::AuthFailed,
                principal: Some(crate::audit::name(state.conversation.user())),
                remote: Some(ctx.client.peer),
                success: false,
                detail: format!(
                    "SCRAM-SHA-256 authentication failed on {}",
                    crate::audit::name(&state.db)
                ),
            });
            return Err(CommandError::auth_failed());
        }
    };
    if state.conversation.is_authenticated() && !state.applied {
        // A decoy conversation cannot verify; this guard only matters if it somehow did.
        let Some(roles) = state.roles.clone() else {
            return Err(CommandError::auth_failed());
        };
        tracing::info!(
            conn = ctx.client.connection_id,
            user = %crate::server::truncate(state.conversation.user(), 64),
            db = %state.db,
            "authenticated"
        );
        crate::audit::record(crate::audit::SecurityEvent {
            kind: crate::audit::SecurityEventKind::AuthSucceeded,
            principal: Some(crate::audit::name(state.conversation.user())),
            remote: Some(ctx.client.peer),
            success: true,
            detail: format!("authenticated on {}", crate::audit::name(&state.db)),
        });
        ctx.client.user = Some(AuthUser {
            user: state.conversation.user().to_string(),
            db: state.db.clone(),
            roles,
        });
        ctx.client.users_generation = state.users_generation;
        state.applied = true;
    }
    let done = step.done;
    if !done {
        ctx.client.sasl = Some(state);
    }
    Ok(doc! {
        "conversationId": conversation_id,
        "done": done,
        "payload": binary(step.payload),
    })
}

/// Answers `hello`'s `speculativeAuthenticate` (a `saslStart` with a `db` field).
/// `None` makes the driver fall back to a normal `saslStart`.
pub(super) async fn speculative(ctx: &mut Ctx<'_>, spec: &Document) -> Option<Document> {
    let db = spec.get_str("db").ok()?.to_string();
    if !spec.contains_key("saslStart") {
        return None;
    }
    match start(ctx, db, spec).await {
        Ok(reply) => Some(reply),
        Err(e) => {
            tracing::debug!(
                conn = ctx.client.connection_id,
                code = e.code,
                "speculative authentication declined"
            );
            None
        }
    }
}

pub(super) fn logout(ctx: &mut Ctx<'_>) -> CmdResult {
    ctx.client.user = None;
    ctx.client.sasl = None;
    Ok(Document::new())
}
