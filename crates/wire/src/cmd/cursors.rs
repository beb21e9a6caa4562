//! Cursor replies (`firstBatch`/`nextBatch`), `getMore` and `killCursors`.

use std::io::Write as _;
use std::sync::atomic::Ordering;

use bson::raw::{CStr, cstr};
use bson::{Bson, Document, RawDocumentBuf, doc};

use super::{Ctx, opt_i64};
use crate::backend::Db;
use crate::cursor::{Cursor, CursorSource, DEFAULT_FIRST_BATCH, Owner};
use crate::error::{CmdResult, CommandError};

/// The owner of cursors opened by this command: the authenticated user and `lsid.id`.
pub(crate) fn owner(ctx: &Ctx<'_>) -> Owner {
    Owner {
        user: ctx.client.identity(),
        lsid: ctx
            .body
            .get_document("lsid")
            .ok()
            .and_then(|l| l.get("id"))
            .cloned(),
    }
}

/// Reads `batchSize` (from `body` or `body.cursor`); negative values are an error.
pub(crate) fn batch_size(v: Option<i64>) -> CmdResult<Option<usize>> {
    match v {
        None => Ok(None),
        Some(n) if n < 0 => Err(CommandError::bad_value(format!(
            "BatchSize value must be non-negative, but received: {n}"
        ))),
        Some(n) => Ok(Some(n as usize)),
    }
}

/// Opens a query with `open` and takes its first batch in the same blocking hand-off
/// (one thread switch per command, not two), then, unless the results are exhausted
/// (or `single_batch`), registers a cursor for the rest. Returns the
/// `{cursor: {firstBatch, id, ns}, ok: 1}` reply as BSON.
pub(crate) async fn first_batch<F>(
    ctx: &Ctx<'_>,
    ns: String,
    open: F,
    batch: Option<usize>,
    single_batch: bool,
) -> CmdResult<RawDocumentBuf>
where
    F: FnOnce(&Db) -> CmdResult<Box<dyn CursorSource>> + Send + 'static,
{
    let owner = owner(ctx);
    let limit = batch.unwrap_or(DEFAULT_FIRST_BATCH);
    let cursor_ns = ns.clone();
    let interrupt = ctx.interrupt.clone();
    let (cursor, batch) = ctx
        .blocking(move |h| {
            let mut cursor = Cursor::new(cursor_ns, owner, open(h)?).with_interrupt(interrupt);
            let b = cursor.next_batch(Some(limit))?;
            Ok((cursor, b))
        })
        .await?;
    let id = if batch.exhausted || single_batch {
        0i64
    } else {
        match ctx
            .shared
            .cursors
            .insert(cursor, ctx.epoch, ctx.shared.epoch())?
        {
            // The gate closed while this query ran: answering id 0 would pass a partial
            // result off as complete, so answer the gate's error instead.
            0 => {
                return Err(ctx.shared.db().err().unwrap_or_else(|| {
                    CommandError::internal("the database was reopened during the query")
                }));
            }
            id => id,
        }
    };
    Ok(cursor_reply(FIRST_BATCH, batch.docs, id, &ns))
}

const FIRST_BATCH: &CStr = cstr!("firstBatch");
const NEXT_BATCH: &CStr = cstr!("nextBatch");

/// `{cursor: {<firstBatch|nextBatch>: docs, id, ns}, ok: 1.0}`, written as BSON in one
/// pass into a buffer of its exact size. Building it from `RawArrayBuf` and
/// `RawDocumentBuf::append` copied each batch three more times (into the growing array,
/// the array into `cursor`, `cursor` into the reply): on 100-document range queries
/// those copies were a tenth of the server's CPU.
pub(crate) fn cursor_reply(
    batch_key: &CStr,
    docs: Vec<RawDocumentBuf>,
    id: i64,
    ns: &str,
) -> RawDocumentBuf {
    const DOC: u8 = 0x03;
    const ARRAY: u8 = 0x04;
    const STRING: u8 = 0x02;
    const INT64: u8 = 0x12;
    const DOUBLE: u8 = 0x01;
    let key = batch_key.as_str().as_bytes();
    // Element overhead per document: type byte, decimal index, NUL.
    let docs_len: usize = docs
        .iter()
        .enumerate()
        .map(|(i, d)| 2 + decimal_len(i) + d.as_bytes().len())
        .sum();
    let array_len = 4 + docs_len + 1;
    let cursor_len = 4 + (2 + key.len() + array_len) + (1 + 3 + 8) + (1 + 3 + 4 + ns.len() + 1) + 1;
    let total = 4 + (1 + 7 + cursor_len) + (1 + 3 + 8) + 1;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as i32).to_le_bytes());
    out.push(DOC);
    out.extend_from_slice(b"cursor\0");
    out.extend_from_slice(&(cursor_len as i32).to_le_bytes());
    out.push(ARRAY);
    out.extend_from_slice(key);
    out.push(0);
    out.extend_from_slice(&(array_len as i32).to_le_bytes());
    for (i, d) in docs.iter().enumerate() {
        out.push(DOC);
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{i}");
        out.push(0);
        out.extend_from_slice(d.as_bytes());
    }
    out.push(0);
    out.push(INT64);
    out.extend_from_slice(b"id\0");
    out.extend_from_slice(&id.to_le_bytes());
    out.push(STRING);
    out.extend_from_slice(b"ns\0");
    out.extend_from_slice(&((ns.len() + 1) as i32).to_le_bytes());
    out.extend_from_slice(ns.as_bytes());
    out.push(0);
    out.push(0);
    out.push(DOUBLE);
    out.extend_from_slice(b"ok\0");
    out.extend_from_slice(&1.0f64.to_le_bytes());
    out.push(0);
    debug_assert_eq!(out.len(), total);
    RawDocumentBuf::from_bytes(out).expect("the reply's lengths were computed from its parts")
}

/// Digits in the decimal form of `i`.
fn decimal_len(i: usize) -> usize {
    i.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// A raw reply as a `Document`, for the commands whose handlers return documents
/// (`listCollections`, `listIndexes`: rare, small).
pub(crate) fn reply_document(raw: RawDocumentBuf) -> CmdResult<Document> {
    docdb::rawdoc::to_document(&raw)
        .map_err(|e| CommandError::internal(format!("reply could not be decoded: {e}")))
}

pub(super) async fn get_more(ctx: &mut Ctx<'_>) -> CmdResult<RawDocumentBuf> {
    let id = match ctx.body.get("getMore") {
        Some(Bson::Int64(i)) => *i,
        Some(Bson::Int32(i)) => *i as i64,
        _ => {
            return Err(CommandError::type_mismatch(
                "BSON field 'getMore.getMore' is the wrong type, expected type 'long'",
            ));
        }
    };
    let coll = match ctx.body.get("collection") {
        Some(Bson::String(s)) => s.clone(),
        _ => {
            return Err(CommandError::type_mismatch(
                "BSON field 'getMore.collection' is missing or not a string",
            ));
        }
    };
    let batch = batch_size(opt_i64(&ctx.body, "batchSize")?)?.filter(|n| *n > 0);
    // getMore's own maxTimeMS is the await timeout of tailable awaitData cursors, which
    // this server does not have (no capped collections); a find's limit covers its
    // getMores through the cursor.
    if ctx.body.contains_key("maxTimeMS") {
        return Err(CommandError::bad_value(
            "cannot set maxTimeMS on getMore command for a non-awaitData cursor",
        ));
    }
    let ns = format!("{}.{}", ctx.db, coll);
    ctx.shared.counters.getmore.fetch_add(1, Ordering::Relaxed);
    let mut cursor = ctx.shared.cursors.check_out(id, &ns, &owner(ctx))?;
    let (cursor, result) = tokio::task::spawn_blocking(move || {
        let b = cursor.next_batch(batch);
        (cursor, b)
    })
    .await
    .map_err(|e| CommandError::internal(format!("cursor task failed: {e}")))?;
    // An error kills the cursor, as in MongoDB.
    let batch = result?;
    let reply_id = if batch.exhausted {
        0
    } else {
        ctx.shared
            .cursors
            .put_back(id, cursor, ctx.epoch, ctx.shared.epoch());
        id
    };
    Ok(cursor_reply(NEXT_BATCH, batch.docs, reply_id, &ns))
}

pub(super) fn kill_cursors(ctx: &mut Ctx<'_>) -> CmdResult {
    let coll = ctx.collection()?;
    let ns = format!("{}.{}", ctx.db, coll);
    let Ok(ids) = ctx.body.get_array("cursors") else {
        return Err(CommandError::type_mismatch(
            "killCursors needs a 'cursors' array",
        ));
    };
    let owner = owner(ctx);
    let (mut killed, mut not_found): (Vec<Bson>, Vec<Bson>) = (Vec::new(), Vec::new());
    for v in ids {
        let id = match v {
            Bson::Int64(i) => *i,
            Bson::Int32(i) => *i as i64,
            _ => return Err(CommandError::type_mismatch("cursor ids must be longs")),
        };
        if ctx.shared.cursors.kill(id, &ns, &owner)? {
            killed.push(Bson::Int64(id));
        } else {
            not_found.push(Bson::Int64(id));
        }
    }
    Ok(doc! {
        "cursorsKilled": killed,
        "cursorsNotFound": not_found,
        "cursorsAlive": [],
        "cursorsUnknown": [],
    })
}

/// Adapts the engine's lazy document stream to a cursor source.
pub(crate) struct Stream<I>(pub I);

impl<I> CursorSource for Stream<I>
where
    I: Iterator<Item = Result<Document, docdb::Error>> + Send,
{
    fn next_doc(&mut self) -> CmdResult<Option<Document>> {
        match self.0.next() {
            None => Ok(None),
            Some(Ok(d)) => Ok(Some(d)),
            Some(Err(e)) => Err(e),
        }
    }
}

/// Adapts docdb's stream of stored BSON to a cursor source: documents go into replies
/// without being decoded and re-encoded.
pub(crate) struct RawStream(pub docdb::RawCursor);

impl CursorSource for RawStream {
    fn next_doc(&mut self) -> CmdResult<Option<Document>> {
        match self.next_raw()? {
            None => Ok(None),
            Some(raw) => docdb::rawdoc::to_document(&raw).map(Some).map_err(|e| {
                CommandError::internal(format!("stored document could not be decoded: {e}"))
            }),
        }
    }

    fn next_raw(&mut self) -> CmdResult<Option<RawDocumentBuf>> {
        match self.0.next() {
            None => Ok(None),
            Some(Ok(d)) => Ok(Some(d)),
            Some(Err(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reply as the `bson` crate builds it from documents.
    fn expected(key: &str, docs: &[Document], id: i64, ns: &str) -> Vec<u8> {
        let batch: Vec<Bson> = docs.iter().cloned().map(Bson::Document).collect();
        let mut cursor = Document::new();
        cursor.insert(key, batch);
        cursor.insert("id", id);
        cursor.insert("ns", ns);
        doc! {"cursor": cursor, "ok": 1.0}.to_vec().unwrap()
    }

    #[test]
    fn the_one_pass_reply_is_the_bson_the_crate_would_build() {
        // 0, 1 and 12 documents (two-digit array indexes), ids of every sign, and an
        // empty and a non-ASCII namespace.
        for n in [0usize, 1, 12] {
            let docs: Vec<Document> = (0..n)
                .map(|i| doc! {"_id": i as i64, "s": "x".repeat(i * 37), "a": [1, {"b": null}]})
                .collect();
            let raw: Vec<RawDocumentBuf> = docs
                .iter()
                .map(|d| RawDocumentBuf::try_from(d).unwrap())
                .collect();
            for (id, ns) in [(0i64, "db.c"), (-7, ""), (i64::MAX, "dé.çollection")] {
                let got = cursor_reply(NEXT_BATCH, raw.clone(), id, ns);
                assert_eq!(
                    got.as_bytes(),
                    expected("nextBatch", &docs, id, ns).as_slice(),
                    "{n} documents, id {id}, ns {ns:?}"
                );
            }
        }
    }

    #[test]
    fn decimal_lengths() {
        for (i, want) in [(0, 1), (9, 1), (10, 2), (99, 2), (100, 3), (101_000, 6)] {
            assert_eq!(decimal_len(i), want, "{i}");
        }
    }
}
