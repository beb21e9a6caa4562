//! Document commands: `find`, `aggregate`, `count`, `distinct`, `insert`, `update`,
//! `delete`, `findAndModify`, `explain`.
//!
//! Each handler checks the command's shape the way MongoDB does (types, batch sizes),
//! hands the work to docdb through [`crate::backend`] on a blocking thread, and shapes
//! the reply: cursor documents for queries, `{n, nModified, upserted, writeErrors}` for
//! writes. Write concern, read concern, sessions and API version fields are accepted;
//! every acknowledged write is already durable when docdb returns.

use std::sync::atomic::Ordering;

use bson::raw::cstr;
use bson::{Bson, Document, RawDocumentBuf, doc};

use super::cursors::{RawStream, Stream, batch_size, cursor_reply, first_batch};
use super::hello::MAX_WRITE_BATCH_SIZE;
use super::{Ctx, Reply, opt_bool, opt_doc, opt_i64};
use crate::backend::{self, Db, WriteOutcome};
use crate::cursor::CursorSource;
use crate::error::{CmdResult, CommandError};
use docdb::{AggregateOptions, DeleteOp, FindOptions, PointRead, UpdateDoc, UpdateOp};

pub(super) async fn find(ctx: &mut Ctx<'_>) -> CmdResult<Reply> {
    let coll = ctx.collection()?;
    ctx.shared.counters.query.fetch_add(1, Ordering::Relaxed);
    let (mut spec, limit_raw) = find_spec(&ctx.body)?;
    spec.interrupt = ctx.interrupt.clone();
    reject_tailable(&ctx.body)?;
    let mut batch = batch_size(opt_i64(&ctx.body, "batchSize")?)?;
    let mut single_batch = opt_bool(&ctx.body, "singleBatch")?.unwrap_or(false);
    // A negative limit is the legacy "one batch of at most |limit|" request.
    if let Some(l) = limit_raw
        && l < 0
    {
        single_batch = true;
        batch = Some(l.unsigned_abs() as usize);
    }
    if spec.limit > 0 {
        let limit = spec.limit as usize;
        batch = Some(batch.map_or(limit, |b| b.min(limit)));
    }
    let ns = format!("{}.{coll}", ctx.db);
    if let Some(reply) = find_by_id(ctx, &coll, &ns, &spec, batch)? {
        return Ok(Reply::Raw(reply));
    }
    let db = ctx.db.clone();
    let open = move |h: &Db| -> CmdResult<Box<dyn CursorSource>> {
        // Stored BSON straight into the reply when the query allows it.
        if let Some(raw) = h.find_raw(&db, &coll, &spec)? {
            return Ok(Box::new(RawStream(raw)));
        }
        Ok(Box::new(Stream(h.find(&db, &coll, spec)?)))
    };
    first_batch(ctx, ns, open, batch, single_batch)
        .await
        .map(Reply::Raw)
}

/// `find({_id: <value>})`: the point-lookup fast path (see `docdb::point`). Runs inline
/// on the connection's task — a single engine `get`, no planner, no cursor, no
/// hand-off to a blocking thread — and passes the stored BSON straight into the reply.
/// Returns `None` (general path) for anything it does not answer identically: other
/// filters, a sort, skip or hint, `batchSize: 0` (which leaves a cursor open), and any
/// `collation` (so whatever the general path does with one applies unchanged).
fn find_by_id(
    ctx: &Ctx<'_>,
    coll: &str,
    ns: &str,
    spec: &FindOptions,
    batch: Option<usize>,
) -> CmdResult<Option<RawDocumentBuf>> {
    let plain = spec.sort.as_ref().is_none_or(Document::is_empty)
        && spec.skip == 0
        && spec.hint.is_none()
        && batch != Some(0)
        && !ctx.body.contains_key("collation")
        && docdb::id_equality(&spec.filter).is_some();
    if !plain {
        return Ok(None);
    }
    let found = ctx
        .handle
        .find_by_id(&ctx.db, coll, &spec.filter, spec.projection.as_ref())?;
    let docs = match found {
        PointRead::NotPoint => return Ok(None),
        PointRead::Missing => Vec::new(),
        PointRead::Found(d) => vec![d],
    };
    Ok(Some(cursor_reply(cstr!("firstBatch"), docs, 0, ns)))
}

fn reject_tailable(body: &Document) -> CmdResult<()> {
    if opt_bool(body, "tailable")?.unwrap_or(false) || opt_bool(body, "awaitData")?.unwrap_or(false)
    {
        return Err(CommandError::bad_value(
            "tailable cursors are only supported on capped collections, which this server does not have",
        ));
    }
    Ok(())
}

/// The query part of `find`, and the raw `limit` (negative means "single batch").
fn find_spec(body: &Document) -> CmdResult<(FindOptions, Option<i64>)> {
    let skip = opt_i64(body, "skip")?.unwrap_or(0);
    if skip < 0 {
        return Err(CommandError::bad_value(format!(
            "BSON field 'skip' value must be >= 0, actual value '{skip}'"
        )));
    }
    let limit_raw = opt_i64(body, "limit")?;
    let spec = FindOptions {
        filter: opt_doc(body, "filter")?.unwrap_or_default(),
        sort: opt_doc(body, "sort")?,
        projection: opt_doc(body, "projection")?,
        skip: skip as u64,
        limit: limit_raw.map_or(0, i64::unsigned_abs),
        hint: body.get("hint").cloned(),
        allow_disk_use: opt_bool(body, "allowDiskUse")?,
        interrupt: docdb::Interrupt::none(),
    };
    Ok((spec, limit_raw))
}

pub(super) async fn aggregate(ctx: &mut Ctx<'_>) -> CmdResult<Reply> {
    let coll = match ctx.body.get("aggregate") {
        Some(Bson::String(s)) if !s.is_empty() => s.clone(),
        Some(Bson::Int32(1)) | Some(Bson::Int64(1)) | Some(Bson::Double(1.0)) => {
            return Err(CommandError::new(
                crate::error::code::NOT_IMPLEMENTED,
                "collection-less aggregation ({aggregate: 1}) is not supported",
            ));
        }
        _ => {
            return Err(CommandError::failed_to_parse(
                "Invalid {aggregate: ...} value: must be a collection name or 1",
            ));
        }
    };
    let pipeline: Vec<Document> = match ctx.body.get("pipeline") {
        Some(Bson::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_document().cloned().ok_or_else(|| {
                    CommandError::type_mismatch(
                        "Each element of the 'pipeline' array must be an object",
                    )
                })
            })
            .collect::<CmdResult<_>>()?,
        _ => {
            return Err(CommandError::type_mismatch(
                "'pipeline' option must be specified as an array",
            ));
        }
    };
    if opt_bool(&ctx.body, "explain")?.unwrap_or(false) {
        let db = ctx.db.clone();
        let body = ctx.body.clone();
        return ctx
            .blocking(move |h| backend::explain(h, &db, &body, "queryPlanner"))
            .await
            .map(Reply::Doc);
    }
    let Some(cursor_opts) = opt_doc(&ctx.body, "cursor")? else {
        return Err(CommandError::failed_to_parse(
            "The 'cursor' option is required, except for aggregate with the explain argument",
        ));
    };
    let batch = batch_size(opt_i64(&cursor_opts, "batchSize")?)?;
    let opts = AggregateOptions {
        allow_disk_use: opt_bool(&ctx.body, "allowDiskUse")?,
        hint: ctx.body.get("hint").cloned(),
        interrupt: ctx.interrupt.clone(),
    };
    let db = ctx.db.clone();
    let ns = format!("{}.{coll}", ctx.db);
    let open = move |h: &Db| -> CmdResult<Box<dyn CursorSource>> {
        Ok(Box::new(Stream(h.aggregate(&db, &coll, &pipeline, opts)?)))
    };
    first_batch(ctx, ns, open, batch, false)
        .await
        .map(Reply::Raw)
}

pub(super) async fn count(ctx: &mut Ctx<'_>) -> CmdResult {
    let coll = ctx.collection()?;
    ctx.shared.counters.query.fetch_add(1, Ordering::Relaxed);
    let filter = opt_doc(&ctx.body, "query")?.unwrap_or_default();
    let skip = opt_i64(&ctx.body, "skip")?.unwrap_or(0);
    if skip < 0 {
        return Err(CommandError::bad_value(
            "skip value is negative in count query",
        ));
    }
    let limit = opt_i64(&ctx.body, "limit")?.map_or(0, i64::unsigned_abs);
    let db = ctx.db.clone();
    let interrupt = ctx.interrupt.clone();
    let n = ctx
        .blocking(move |h| Ok(h.count_with(&db, &coll, &filter, skip as u64, limit, &interrupt)?))
        .await?;
    Ok(doc! {"n": n as i64})
}

pub(super) async fn distinct(ctx: &mut Ctx<'_>) -> CmdResult {
    let coll = ctx.collection()?;
    ctx.shared.counters.query.fetch_add(1, Ordering::Relaxed);
    let key = match ctx.body.get("key") {
        Some(Bson::String(k)) => k.clone(),
        _ => return Err(CommandError::type_mismatch("'key' must be a string")),
    };
    let filter = opt_doc(&ctx.body, "query")?.unwrap_or_default();
    let db = ctx.db.clone();
    let interrupt = ctx.interrupt.clone();
    let values = ctx
        .blocking(move |h| Ok(h.distinct_with(&db, &coll, &key, &filter, &interrupt)?))
        .await?;
    Ok(doc! {"values": values})
}

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
            (16, "InvalidLength"),
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
                .map(|(index, e)| {
                    let mut d = doc! {"index": index as i32, "code": e.code, "codeName": e.code_name, "errmsg": e.errmsg};
                    if let Some(extra) = e.extra {
                        for (k, v) in *extra {
                            d.insert(k, v);
                        }
                    }
                    Bson::Document(d)
                })
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

pub(super) async fn find_and_modify(ctx: &mut Ctx<'_>) -> CmdResult {
    let coll = ctx.collection()?;
    let remove = opt_bool(&ctx.body, "remove")?.unwrap_or(false);
    let has_update = ctx
        .body
        .get("update")
        .is_some_and(|u| !matches!(u, Bson::Null));
    if remove && has_update {
        return Err(CommandError::failed_to_parse(
            "Cannot specify both an update and remove=true",
        ));
    }
    if !remove && !has_update {
        return Err(CommandError::failed_to_parse(
            "Either an update or remove=true must be specified",
        ));
    }
    if remove && opt_bool(&ctx.body, "upsert")?.unwrap_or(false) {
        return Err(CommandError::failed_to_parse(
            "Cannot specify both upsert=true and remove=true",
        ));
    }
    if remove {
        ctx.shared.counters.delete.fetch_add(1, Ordering::Relaxed);
    } else {
        ctx.shared.counters.update.fetch_add(1, Ordering::Relaxed);
    }
    let db = ctx.db.clone();
    let body = ctx.body.clone();
    let interrupt = ctx.interrupt.clone();
    ctx.blocking(move |h| backend::find_and_modify(h, &db, &coll, &body, &interrupt))
        .await
}

/// `{explain: {<find|aggregate|count|distinct|update|delete|findAndModify>: ...}, verbosity}`.
pub(super) async fn explain(ctx: &mut Ctx<'_>) -> CmdResult {
    let Some(inner) = opt_doc(&ctx.body, "explain")? else {
        return Err(CommandError::failed_to_parse(
            "explain command requires a nested object",
        ));
    };
    let verbosity = ctx
        .body
        .get_str("verbosity")
        .unwrap_or("allPlansExecution")
        .to_string();
    if !matches!(
        verbosity.as_str(),
        "queryPlanner" | "executionStats" | "allPlansExecution"
    ) {
        return Err(CommandError::bad_value(format!(
            "verbosity string must be one of {{'queryPlanner', 'executionStats', 'allPlansExecution'}}, not {verbosity}"
        )));
    }
    let name = inner.keys().next().cloned().unwrap_or_default();
    if !matches!(
        name.as_str(),
        "find"
            | "aggregate"
            | "count"
            | "distinct"
            | "update"
            | "delete"
            | "findAndModify"
            | "findandmodify"
    ) {
        return Err(CommandError::new(
            crate::error::code::COMMAND_NOT_FOUND,
            format!(
                "Explain failed due to unknown command: {}",
                crate::server::truncate(&name, 64)
            ),
        ));
    }
    let db = ctx.db.clone();
    ctx.blocking(move |h| backend::explain(h, &db, &inner, &verbosity))
        .await
}
