//! `aggregate`: a pipeline whose first batch comes back with a cursor for the rest, or
//! its plan with `explain: true`.

use bson::{Bson, Document};
use docdb::AggregateOptions;

use super::cursors::{Stream, batch_size, first_batch};
use super::{Ctx, Reply, explain, opt_bool, opt_doc, opt_i64};
use crate::backend::Db;
use crate::cursor::CursorSource;
use crate::error::{CmdResult, CommandError, code};

pub(super) async fn aggregate(ctx: &mut Ctx<'_>) -> CmdResult<Reply> {
    let coll = match ctx.body.get("aggregate") {
        Some(Bson::String(s)) if !s.is_empty() => s.clone(),
        Some(Bson::Int32(1)) | Some(Bson::Int64(1)) | Some(Bson::Double(1.0)) => {
            return Err(CommandError::new(
                code::NOT_IMPLEMENTED,
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
            .blocking(move |h| explain::plan(h, &db, &body, "queryPlanner"))
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
