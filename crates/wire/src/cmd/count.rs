//! `count` and `distinct`: a query answered with one number or one list, no cursor.

use std::sync::atomic::Ordering;

use bson::{Bson, doc};

use super::{Ctx, opt_doc, opt_i64};
use crate::error::{CmdResult, CommandError};

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
        .blocking(move |h| h.count_with(&db, &coll, &filter, skip as u64, limit, &interrupt))
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
        .blocking(move |h| h.distinct_with(&db, &coll, &key, &filter, &interrupt))
        .await?;
    Ok(doc! {"values": values})
}
