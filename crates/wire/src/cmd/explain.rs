//! `explain` of a find/count/distinct/update/delete/findAndModify/aggregate: the plan of
//! its query part, as docdb's planner would run it (also `aggregate` with
//! `explain: true`).

use bson::{Bson, Document, doc};
use docdb::FindOptions;

use super::{Ctx, VERSION, opt_doc, opt_i64};
use crate::backend::Db;
use crate::error::{CmdResult, CommandError, code};
use crate::server::truncate;

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
            code::COMMAND_NOT_FOUND,
            format!(
                "Explain failed due to unknown command: {}",
                truncate(&name, 64)
            ),
        ));
    }
    let db = ctx.db.clone();
    ctx.blocking(move |h| plan(h, &db, &inner, &verbosity))
        .await
}

/// The plan of the explained command `inner`. With `queryPlanner` verbosity the
/// execution statistics are left out (the query is not run for them either way beyond
/// what docdb does to count). Runs on a blocking thread.
pub(super) fn plan(db: &Db, d: &str, inner: &Document, verbosity: &str) -> CmdResult {
    let (coll, opts) = explained_query(inner)?;
    let mut out = db.explain_find(d, &coll, opts)?;
    if verbosity == "queryPlanner" {
        out.remove("executionStats");
    }
    let mut command = inner.clone();
    command.insert("$db", d);
    out.insert("command", command);
    out.insert(
        "serverInfo",
        doc! {"host": "strongroom", "version": VERSION},
    );
    Ok(out)
}

/// The query part of an explained command, as docdb's `explain_find` takes it.
fn explained_query(inner: &Document) -> CmdResult<(String, FindOptions)> {
    let name = inner.keys().next().cloned().unwrap_or_default();
    let coll = match inner.get(&name) {
        Some(Bson::String(s)) => s.clone(),
        _ => return Err(CommandError::bad_value("explain needs a collection name")),
    };
    let d = |k: &str| opt_doc(inner, k);
    let first = |k: &str| -> CmdResult<Document> {
        inner
            .get_array(k)
            .ok()
            .and_then(|a| a.first())
            .and_then(Bson::as_document)
            .cloned()
            .ok_or_else(|| CommandError::bad_value(format!("explain of {name} needs '{k}'")))
    };
    let opts = match name.as_str() {
        "find" => FindOptions {
            filter: d("filter")?.unwrap_or_default(),
            sort: d("sort")?,
            projection: d("projection")?,
            skip: opt_i64(inner, "skip")?.unwrap_or(0).max(0) as u64,
            limit: opt_i64(inner, "limit")?.unwrap_or(0).unsigned_abs(),
            hint: inner.get("hint").cloned(),
            ..Default::default()
        },
        "count" | "distinct" => FindOptions {
            filter: d("query")?.unwrap_or_default(),
            hint: inner.get("hint").cloned(),
            ..Default::default()
        },
        "findAndModify" | "findandmodify" => FindOptions {
            filter: d("query")?.unwrap_or_default(),
            sort: d("sort")?,
            limit: 1,
            ..Default::default()
        },
        "update" => FindOptions {
            filter: opt_doc(&first("updates")?, "q")?.unwrap_or_default(),
            ..Default::default()
        },
        "delete" => FindOptions {
            filter: opt_doc(&first("deletes")?, "q")?.unwrap_or_default(),
            ..Default::default()
        },
        "aggregate" => {
            let filter = inner
                .get_array("pipeline")
                .ok()
                .and_then(|p| p.first())
                .and_then(Bson::as_document)
                .and_then(|s| s.get_document("$match").ok())
                .cloned()
                .unwrap_or_default();
            FindOptions {
                filter,
                hint: inner.get("hint").cloned(),
                ..Default::default()
            }
        }
        other => {
            return Err(CommandError::bad_value(format!(
                "explain is not supported for {other}"
            )));
        }
    };
    Ok((coll, opts))
}
