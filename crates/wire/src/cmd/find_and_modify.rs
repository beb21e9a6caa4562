//! `findAndModify`: updates, replaces or removes one document and answers
//! `{lastErrorObject, value}` with the document before or after the change.

use std::sync::atomic::Ordering;

use bson::{Bson, Document, doc};
use docdb::{FindAndModifyOptions, UpdateDoc};

use super::{Ctx, opt_bool, opt_doc};
use crate::error::{CmdResult, CommandError};

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
    // Parsed on the blocking thread, after its `maxTimeMS` check, as it always was.
    ctx.blocking(move |h| {
        let opts = options(&body, interrupt)?;
        let remove = opts.remove;
        Ok(render(h.find_and_modify(&db, &coll, opts)?, remove))
    })
    .await
}

/// The command's arguments as docdb takes them.
fn options(body: &Document, interrupt: docdb::Interrupt) -> CmdResult<FindAndModifyOptions> {
    let update = match body.get("update") {
        None | Some(Bson::Null) => None,
        Some(v) => Some(UpdateDoc::from_bson(v)?),
    };
    let get_bool = |k: &str| -> CmdResult<bool> { Ok(opt_bool(body, k)?.unwrap_or(false)) };
    let array_filters = match body.get("arrayFilters") {
        None | Some(Bson::Null) => Vec::new(),
        Some(Bson::Array(a)) => a
            .iter()
            .map(|f| {
                f.as_document().cloned().ok_or_else(|| {
                    CommandError::type_mismatch("arrayFilters entries must be objects")
                })
            })
            .collect::<CmdResult<_>>()?,
        Some(_) => return Err(CommandError::type_mismatch("arrayFilters must be an array")),
    };
    let remove = get_bool("remove")?;
    Ok(FindAndModifyOptions {
        query: opt_doc(body, "query")?.unwrap_or_default(),
        sort: opt_doc(body, "sort")?,
        remove,
        update,
        new: get_bool("new")?,
        upsert: get_bool("upsert")?,
        fields: opt_doc(body, "fields")?,
        array_filters,
        interrupt,
    })
}

/// `{lastErrorObject: {n, updatedExisting?, upserted?}, value}`.
fn render(r: docdb::FindAndModifyResult, remove: bool) -> Document {
    let mut last = doc! {"n": r.n as i32};
    if !remove {
        last.insert("updatedExisting", r.updated_existing);
    }
    if let Some(id) = r.upserted {
        last.insert("upserted", id);
    }
    doc! {
        "lastErrorObject": last,
        "value": r.value.map(Bson::Document).unwrap_or(Bson::Null),
    }
}
