//! `find`: a query whose first batch comes back with a cursor for the rest.
//!
//! The point lookup by `_id` runs inline on the connection's task; everything else opens
//! a docdb cursor on a blocking thread, streaming stored BSON straight into the reply
//! when the query allows it.

use std::sync::atomic::Ordering;

use bson::raw::cstr;
use bson::{Document, RawDocumentBuf};
use docdb::{FindOptions, PointRead};

use super::cursors::{RawStream, Stream, batch_size, cursor_reply, first_batch};
use super::{Ctx, Reply, opt_bool, opt_doc, opt_i64};
use crate::backend::Db;
use crate::cursor::CursorSource;
use crate::error::{CmdResult, CommandError};

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
