//! The seam between commands and docdb: small adapters that turn parsed command
//! arguments into `docdb::Db` calls and docdb results into what the replies need.
//! Everything here runs on a blocking thread (see `cmd::Ctx::blocking`).

use bson::{Bson, Document};

pub use docdb::Db;
use docdb::{DeleteOp, FindOptions, UpdateDoc, UpdateOp};

use crate::error::{CmdResult, CommandError};

/// A write command's outcome in wire terms.
#[derive(Default)]
pub struct WriteOutcome {
    pub n: u64,
    pub n_modified: u64,
    pub upserted: Vec<(usize, Bson)>,
    pub errors: Vec<(usize, CommandError)>,
}

fn errors(list: Vec<docdb::WriteError>) -> Vec<(usize, CommandError)> {
    list.into_iter().map(|w| (w.index, w.error)).collect()
}

/// The first document matching `filter`.
pub fn find_one(db: &Db, d: &str, c: &str, filter: Document) -> CmdResult<Option<Document>> {
    let opts = FindOptions {
        filter,
        limit: 1,
        ..Default::default()
    };
    match db.find(d, c, opts)?.next() {
        None => Ok(None),
        Some(r) => Ok(Some(r?)),
    }
}

/// Every document matching `filter`.
pub fn find_all(db: &Db, d: &str, c: &str, filter: Document) -> CmdResult<Vec<Document>> {
    let opts = FindOptions {
        filter,
        ..Default::default()
    };
    db.find(d, c, opts)?.collect()
}

/// Inserts one document; its write error (e.g. duplicate key) becomes the error.
pub fn insert_one(db: &Db, d: &str, c: &str, document: Document) -> CmdResult<()> {
    let r = db.insert(d, c, vec![document], true)?;
    match r.write_errors.into_iter().next() {
        Some(w) => Err(w.error),
        None => Ok(()),
    }
}

/// Replaces the document matching `filter`; returns how many matched (0 or 1).
pub fn replace_one(
    db: &Db,
    d: &str,
    c: &str,
    filter: Document,
    document: Document,
) -> CmdResult<u64> {
    let op = UpdateOp {
        q: filter,
        u: UpdateDoc::Doc(document),
        multi: false,
        upsert: false,
        array_filters: Vec::new(),
        hint: None,
    };
    let r = db.update(d, c, vec![op], true)?;
    match r.write_errors.into_iter().next() {
        Some(w) => Err(w.error),
        None => Ok(r.n),
    }
}

/// Deletes the first document matching `filter`; returns how many were deleted.
pub fn delete_one(db: &Db, d: &str, c: &str, filter: Document) -> CmdResult<u64> {
    let op = DeleteOp {
        q: filter,
        limit: 1,
        hint: None,
    };
    let r = db.delete(d, c, vec![op], true)?;
    match r.write_errors.into_iter().next() {
        Some(w) => Err(w.error),
        None => Ok(r.n),
    }
}

pub fn insert(
    db: &Db,
    d: &str,
    c: &str,
    docs: Vec<Document>,
    ordered: bool,
) -> CmdResult<WriteOutcome> {
    let r = db.insert(d, c, docs, ordered)?;
    Ok(WriteOutcome {
        n: r.n,
        errors: errors(r.write_errors),
        ..Default::default()
    })
}

pub fn update(
    db: &Db,
    d: &str,
    c: &str,
    ops: Vec<UpdateOp>,
    ordered: bool,
    interrupt: &docdb::Interrupt,
) -> CmdResult<WriteOutcome> {
    Ok(update_outcome(
        db.update_with(d, c, ops, ordered, interrupt)?,
    ))
}

/// An update's counts and per-statement errors, as the reply reports them.
pub fn update_outcome(r: docdb::UpdateResult) -> WriteOutcome {
    WriteOutcome {
        n: r.n,
        n_modified: r.n_modified,
        upserted: r.upserted,
        errors: errors(r.write_errors),
    }
}

/// A single-statement update by `_id` done on the connection task when it cannot block
/// ([`Db::try_update_now`]). The reply waits for durability in one of two ways:
/// - `alone` (the connection has the server to itself: no other request in flight, and
///   the previous request was its own): the task fsyncs itself, as a PostgreSQL backend
///   does at commit. Nothing else would use the thread meanwhile, so handing the fsync
///   to the engine's sync thread and being woken after it would only add two thread
///   switches to the write's latency. Requests of other clients may sit unread in their
///   sockets while nothing is in flight, which is why "in flight" alone is not enough:
///   an inline fsync would then delay them and, worse, each of their updates would find
///   the server idle and fsync alone too, and group commit would never form.
/// - otherwise, without holding a thread: the engine's sync thread group-commits it with
///   whatever else is pending and wakes the task. Also when `alone` finds another fsync
///   already running, rather than wait for it here.
///
/// `None` when the statement must take the blocking path.
pub async fn update_now(
    db: &Db,
    d: &str,
    c: &str,
    op: &UpdateOp,
    alone: bool,
) -> Option<CmdResult<WriteOutcome>> {
    let (r, commit) = match db.try_update_now(d, c, op)? {
        Ok(done) => done,
        Err(e) => return Some(Err(e)),
    };
    if alone && let Some(durable) = db.try_durable_now(commit) {
        return Some(match durable {
            Ok(()) => Ok(update_outcome(r)),
            Err(e) => Err(e),
        });
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    db.when_durable(
        commit,
        Box::new(move |durable| {
            let _ = tx.send(durable);
        }),
    );
    Some(match rx.await {
        Ok(Ok(())) => Ok(update_outcome(r)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(CommandError::internal(
            "the engine dropped a durability wait",
        )),
    })
}

pub fn delete(
    db: &Db,
    d: &str,
    c: &str,
    ops: Vec<DeleteOp>,
    ordered: bool,
    interrupt: &docdb::Interrupt,
) -> CmdResult<WriteOutcome> {
    let r = db.delete_with(d, c, ops, ordered, interrupt)?;
    Ok(WriteOutcome {
        n: r.n,
        errors: errors(r.write_errors),
        ..Default::default()
    })
}

/// Drops a collection; `Some(number of indexes it had)` or `None` if it did not exist.
pub fn drop_collection(db: &Db, d: &str, c: &str) -> CmdResult<Option<usize>> {
    let n = db.collection_info(d, c).map(|m| m.indexes.len() + 1);
    if db.drop_collection(d, c)? {
        Ok(Some(n.unwrap_or(1)))
    } else {
        Ok(None)
    }
}

/// Does `document` match `filter`?
pub fn matches(filter: &Document, document: &Document) -> CmdResult<bool> {
    docdb::matcher::Matcher::new(filter)?.matches(document)
}
