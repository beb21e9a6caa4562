//! `hello` / `isMaster`: the handshake every driver opens a connection with, and the
//! heartbeat its monitor repeats.
//!
//! The reply describes a standalone server (no `setName`, no `msg: isdbgrid`) speaking
//! wire versions 0..=21 (MongoDB 7.0). Drivers need: pymongo 4.20 and the Node driver
//! 7.x accept servers from wire version 8, the Rust driver 3.x from 9; all three read
//! `maxBsonObjectSize`, `maxMessageSizeBytes`, `maxWriteBatchSize`,
//! `logicalSessionTimeoutMinutes` (sessions are used when present) and `connectionId`.
//! `topologyVersion` is deliberately absent, so drivers poll instead of using the
//! streaming (awaitable hello) protocol, which this server does not implement.

use bson::{Bson, Document};

use super::{Ctx, sasl};
use crate::compression::negotiate;
use crate::error::{CmdResult, CommandError};
use crate::message::{MAX_BSON_OBJECT_SIZE, MAX_MESSAGE_SIZE};

pub const MIN_WIRE_VERSION: i32 = 0;
pub const MAX_WIRE_VERSION: i32 = 21;
pub const MAX_WRITE_BATCH_SIZE: i32 = 100_000;
pub const LOGICAL_SESSION_TIMEOUT_MINUTES: i32 = 30;

pub(super) async fn hello(ctx: &mut Ctx<'_>) -> CmdResult {
    if let Some(Bson::Document(_)) = ctx.body.get("client") {
        if ctx.client.handshake_done {
            return Err(CommandError::new(
                crate::error::code::CLIENT_METADATA_CANNOT_BE_MUTATED,
                "The client metadata document may only be sent in the first hello",
            ));
        }
        ctx.client.handshake_done = true;
    }
    let mut reply = Document::new();
    if ctx.body.get_bool("helloOk").unwrap_or(false) {
        reply.insert("helloOk", true);
    }
    if ctx.name == "hello" {
        reply.insert("isWritablePrimary", true);
    } else {
        reply.insert("ismaster", true);
    }
    reply.insert("maxBsonObjectSize", MAX_BSON_OBJECT_SIZE as i32);
    reply.insert("maxMessageSizeBytes", MAX_MESSAGE_SIZE as i32);
    reply.insert("maxWriteBatchSize", MAX_WRITE_BATCH_SIZE);
    reply.insert("localTime", bson::DateTime::now());
    reply.insert(
        "logicalSessionTimeoutMinutes",
        LOGICAL_SESSION_TIMEOUT_MINUTES,
    );
    reply.insert("connectionId", ctx.client.connection_id);
    reply.insert("minWireVersion", MIN_WIRE_VERSION);
    reply.insert("maxWireVersion", MAX_WIRE_VERSION);
    reply.insert("readOnly", false);
    if let Ok(offered) = ctx.body.get_array("compression") {
        let names: Vec<String> = offered
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let agreed = negotiate(&names);
        reply.insert(
            "compression",
            agreed.iter().map(|c| c.name()).collect::<Vec<_>>(),
        );
        ctx.client.compressors = agreed;
    }
    if let Ok(who) = ctx.body.get_str("saslSupportedMechs") {
        // Always the one mechanism, whether or not the user exists: answering differently
        // for unknown users would let anyone enumerate them.
        if who.split_once('.').is_some() {
            reply.insert("saslSupportedMechs", vec!["SCRAM-SHA-256"]);
        }
    }
    if let Ok(spec) = ctx.body.get_document("speculativeAuthenticate") {
        let spec = spec.clone();
        if let Some(answer) = sasl::speculative(ctx, &spec).await {
            reply.insert("speculativeAuthenticate", answer);
        }
    }
    reply.insert("ok", 1.0);
    Ok(reply)
}
