//! The write commands `insert`, `update` and `delete`: each parses its batch of
//! statements, hands it to docdb through [`crate::backend`] and answers
//! `{n, nModified?, upserted?, writeErrors?}`. Write concern, read concern, sessions and
//! API version fields are accepted; every acknowledged write is already durable when
//! docdb returns.

use std::sync::atomic::Ordering;

use bson::{Bson, Document, doc};
use docdb::{DeleteOp, UpdateDoc, UpdateOp};

use super::hello::MAX_WRITE_BATCH_SIZE;
use super::{Ctx, opt_bool, opt_doc, opt_i64};
use crate::backend::{self, WriteOutcome};
use crate::error::{CmdResult, CommandError, code};

/// The statements of a write command (`documents`, `updates`, `deletes`), moved out of
/// the body rather than copied: an insert's batch is up to 100,000 documents, and cloning
/// each one was a deep copy of every field. The slow-op log's shape of a write command
/// then shows an empty batch.
fn batch_of(body: &mut Document, field: &str) -> CmdResult<Vec<Document>> {
    let Some(Bson::Array(items)) = body.get_mut(field) else {
        return Err(CommandError::type_mismatch(format!(
            "BSON field '{field}' is missing or is not an array"
        )));
    };
    if items.is_empty() || items.len() > MAX_WRITE_BATCH_SIZE as usize {
        return Err(CommandError::new(
            code::INVALID_LENGTH,
            format!(
                "Write batch sizes must be between 1 and {MAX_WRITE_BATCH_SIZE}. Got {} operations.",
                items.len()
            ),
        ));
    }
    std::mem::take(items)
        .into_iter()
        .map(|v| match v {
            Bson::Document(d) => Ok(d),
            _ => Err(CommandError::type_mismatch(format!(
                "every element of '{field}' must be an object"
            ))),
        })
        .collect()
}

/// `{n, nModified?, upserted?, writeErrors?}`.
fn write_reply(outcome: WriteOutcome, with_modified: bool) -> Document {
    let mut reply = doc! {"n": outcome.n as i32};
    if with_modified {
        reply.insert("nModified", outcome.n_modified as i32);
        if !outcome.upserted.is_empty() {
            reply.insert(
                "upserted",
                outcome
                    .upserted
                    .into_iter()
                    .map(|(index, id)| Bson::Document(doc! {"index": index as i32, "_id": id}))
                    .collect::<Vec<_>>(),
            );
        }
    }
    if !outcome.errors.is_empty() {
        reply.insert(
            "writeErrors",
            outcome
                .errors
                .into_iter()
                .map(|(index, e)| Bson::Document(e.to_write_error(index)))
                .collect::<Vec<_>>(),
        );
    }
    reply
}

pub(super) async fn insert(ctx: &mut Ctx<'_>) -> CmdResult {
    let coll = ctx.collection()?;
    let docs = batch_of(&mut ctx.body, "documents")?;
    let ordered = opt_bool(&ctx.body, "ordered")?.unwrap_or(true);
    ctx.shared
        .counters
        .insert
        .fetch_add(docs.len() as u64, Ordering::Relaxed);
    let db = ctx.db.clone();
    let outcome = ctx
        .blocking(move |h| backend::insert(h, &db, &coll, docs, ordered))
        .await?;
    Ok(write_reply(outcome, false))
}

pub(super) async fn update(ctx: &mut Ctx<'_>) -> CmdResult {
    let coll = ctx.collection()?;
    let raw = batch_of(&mut ctx.body, "updates")?;
    let ordered = opt_bool(&ctx.body, "ordered")?.unwrap_or(true);
    let mut ops = Vec::with_capacity(raw.len());
    for u in raw {
        let filter = opt_doc(&u, "q")?.ok_or_else(|| {
            CommandError::failed_to_parse(
                "BSON field 'update.updates.q' is missing but a required field",
            )
        })?;
        let update = match u.get("u") {
            Some(v @ (Bson::Document(_) | Bson::Array(_))) => UpdateDoc::from_bson(v)?,
            _ => {
                return Err(CommandError::failed_to_parse(
                    "BSON field 'update.updates.u' is missing but a required field",
                ));
            }
        };
        let array_filters = match u.get("arrayFilters") {
            None | Some(Bson::Null) => Vec::new(),
            Some(Bson::Array(a)) => a.iter().filter_map(|f| f.as_document().cloned()).collect(),
            Some(_) => return Err(CommandError::type_mismatch("arrayFilters must be an array")),
        };
        ops.push(UpdateOp {
            q: filter,
            u: update,
            upsert: opt_bool(&u, "upsert")?.unwrap_or(false),
            multi: opt_bool(&u, "multi")?.unwrap_or(false),
            array_filters,
            hint: u.get("hint").cloned(),
        });
    }
    ctx.shared
        .counters
        .update
        .fetch_add(ops.len() as u64, Ordering::Relaxed);
    let db = ctx.db.clone();
    // Sampled again: another request may have arrived while this one was parsed.
    let alone = ctx.client.alone && ctx.shared.counters.in_flight.load(Ordering::Acquire) == 1;
    if let [op] = &ops[..]
        && let Some(outcome) = backend::update_now(&ctx.handle, &db, &coll, op, alone).await
    {
        return Ok(write_reply(outcome?, true));
    }
    let interrupt = ctx.interrupt.clone();
    let outcome = ctx
        .blocking(move |h| backend::update(h, &db, &coll, ops, ordered, &interrupt))
        .await?;
    Ok(write_reply(outcome, true))
}

pub(super) async fn delete(ctx: &mut Ctx<'_>) -> CmdResult {
    let coll = ctx.collection()?;
    let raw = batch_of(&mut ctx.body, "deletes")?;
    let ordered = opt_bool(&ctx.body, "ordered")?.unwrap_or(true);
    let mut ops = Vec::with_capacity(raw.len());
    for d in raw {
        let filter = opt_doc(&d, "q")?.ok_or_else(|| {
            CommandError::failed_to_parse(
                "BSON field 'delete.deletes.q' is missing but a required field",
            )
        })?;
        let limit = opt_i64(&d, "limit")?.ok_or_else(|| {
            CommandError::failed_to_parse(
                "BSON field 'delete.deletes.limit' is missing but a required field",
            )
        })?;
        if limit != 0 && limit != 1 {
            return Err(CommandError::failed_to_parse(format!(
                "The limit field in delete objects must be 0 or 1. Got {limit}"
            )));
        }
        ops.push(DeleteOp {
            q: filter,
            limit: limit as u32,
            hint: d.get("hint").cloned(),
        });
    }
    ctx.shared
        .counters
        .delete
        .fetch_add(ops.len() as u64, Ordering::Relaxed);
    let db = ctx.db.clone();
    let interrupt = ctx.interrupt.clone();
    let outcome = ctx
        .blocking(move |h| backend::delete(h, &db, &coll, ops, ordered, &interrupt))
        .await?;
    Ok(write_reply(outcome, false))
}
