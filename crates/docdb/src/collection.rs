//! Document writes on [`Db`]: insert, update (operator, replacement, pipeline, upsert),
//! delete, findAndModify and TTL expiry. Documents live at `[0x01][collection id]
//! [keycodec(_id)]`; each document and its index entries are written in one batch.

use std::cell::OnceCell;
use std::sync::Arc;

use bson::{Bson, Document, doc, oid::ObjectId};

use crate::aggregate::Pipeline;
use crate::catalog::{Catalog, CollectionMeta, index_prefix};
use crate::cursor::ExecStats;
use crate::db::*;
use crate::depth;
use crate::error::{Error, Result, code};
use crate::interrupt::Interrupt;
use crate::keycodec;
use crate::kv::{Batch, DurableFn, KvSnapshot};
use crate::matcher::Matcher;
use crate::order;
use crate::projection::Projection;
use crate::sort::SortSpec;
use crate::spill::{DocIter, ExternalSorter};
use crate::update::{self, ApplyContext, Update};

fn encode_doc(d: &Document) -> Result<Vec<u8>> {
    d.to_vec()
        .map_err(|e| Error::bad_value(format!("cannot encode document: {e}")))
}

fn validate_id(id: &Bson) -> Result<()> {
    match id {
        Bson::Array(_) => Err(Error::new(
            code::INVALID_ID_FIELD,
            "The '_id' value cannot be of type array",
        )),
        Bson::RegularExpression(_) => Err(Error::new(
            code::INVALID_ID_FIELD,
            "can't use a regex for _id",
        )),
        Bson::Undefined => Err(Error::new(
            code::INVALID_ID_FIELD,
            "can't use a undefined for _id",
        )),
        Bson::Document(d) => {
            for k in d.keys() {
                if k.starts_with('$') {
                    return Err(Error::new(
                        code::DOLLAR_PREFIXED_FIELD_NAME,
                        format!(
                            "_id fields may not contain '$'-prefixed fields: {k} is not valid for storage."
                        ),
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Put `_id` first (generating an ObjectId when absent) and validate names and size.
pub fn prepare_for_storage(mut d: Document) -> Result<Document> {
    // Drivers put `_id` first; only a document that does not is rebuilt (removing a key
    // from the front of a `Document` shifts and rehashes every other key).
    if d.keys().next().map(String::as_str) != Some("_id") {
        let id = d
            .remove("_id")
            .unwrap_or_else(|| Bson::ObjectId(ObjectId::new()));
        let mut out = Document::new();
        out.insert("_id", id);
        out.extend(d);
        d = out;
    }
    if let Some(id) = d.get("_id") {
        validate_id(id)?;
    }
    for k in d.keys() {
        if k.starts_with('$') {
            return Err(Error::new(
                code::DOLLAR_PREFIXED_FIELD_NAME,
                format!("Document can't have $ prefixed field names: {k}"),
            ));
        }
    }
    Ok(d)
}

fn check_size(bytes: &[u8]) -> Result<()> {
    if bytes.len() > MAX_DOC_SIZE {
        return Err(Error::new(
            code::BSON_OBJECT_TOO_LARGE,
            format!(
                "object to insert too large. size in bytes: {}, max size: {MAX_DOC_SIZE}",
                bytes.len()
            ),
        ));
    }
    Ok(())
}

/// Compiled partial filters of a collection's indexes.
struct IndexCtx {
    partials: Vec<Option<Matcher>>,
    /// The command runs on a thread that must not block (`Db::try_update_now`): a write
    /// that would wait fails with `WriteConflict`, writing nothing, and the caller retries
    /// the command on the blocking path.
    no_wait: bool,
}

/// Runs `stmt` on each statement of a write command in order and returns the failures,
/// each under its statement's index; an ordered command stops at its first failure
/// (MongoDB's `ordered`), an unordered one runs every statement.
fn each_statement<T>(
    ops: &[T],
    ordered: bool,
    mut stmt: impl FnMut(usize, &T) -> Result<()>,
) -> Vec<WriteError> {
    let mut errors = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        if let Err(error) = stmt(index, op) {
            errors.push(WriteError { index, error });
            if ordered {
                break;
            }
        }
    }
    errors
}

impl IndexCtx {
    fn new(meta: &CollectionMeta) -> Result<IndexCtx> {
        let partials = meta
            .indexes
            .iter()
            .map(|i| i.partial.as_ref().map(Matcher::new).transpose())
            .collect::<Result<_>>()?;
        Ok(IndexCtx {
            partials,
            no_wait: false,
        })
    }
}

/// Plaintext bytes of staged insert batches written to the engine at once: one WAL
/// record and one pass of the writer lock per ~1 MiB of documents instead of per
/// document.
const INSERT_BATCH_BYTES: usize = 1 << 20;

/// Unique keys (document keys, unique index prefixes) staged but not yet written.
type Claims = std::collections::HashSet<Vec<u8>>;

/// One document change, checked and ready to write.
struct Staged {
    batch: Batch,
    /// The collection's metadata with a newly set multikey flag, written with the batch.
    new_meta: Option<CollectionMeta>,
}

/// The documents an insert command has checked and not yet written. Their unique keys
/// are claimed, so a later document of the same command that repeats one is a duplicate
/// although the engine has not seen the first yet.
#[derive(Default)]
struct PendingInsert {
    batch: Batch,
    bytes: usize,
    claimed: Claims,
    /// Index of the first staged document, and how many the result counted before it.
    first: Option<(usize, u64)>,
}

impl PendingInsert {
    fn stage(&mut self, index: usize, n_before: u64, batch: Batch) {
        self.first.get_or_insert((index, n_before));
        self.bytes += batch
            .ops
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum::<usize>();
        self.batch.ops.extend(batch.ops);
    }
}

impl Db {
    // ----- writes -----

    /// Runs a write (which takes and releases the collection lock itself), then makes
    /// everything it appended durable before the caller answers — also when it failed
    /// part-way, since earlier documents of the same command may have been applied.
    fn with_commit<T>(&self, write: impl FnOnce() -> Result<T>) -> Result<T> {
        let out = write();
        if self.sync() {
            self.kv().sync()?;
        }
        out
    }

    /// Write one document change (insert: old None; delete: new None) with its index
    /// entries, unique checks and multikey flags, as one atomic batch.
    fn write_doc(
        &self,
        meta: &mut Arc<CollectionMeta>,
        ictx: &IndexCtx,
        old: Option<&Document>,
        new: Option<&Document>,
    ) -> Result<()> {
        let staged = self.stage_doc(meta, ictx, old, new, None)?;
        self.commit_doc(meta, ictx, staged)
    }

    /// The batch that writes one document change, after its unique checks. `claimed`
    /// holds the unique keys (document keys and unique index prefixes) that an insert
    /// command staged for earlier documents but has not written yet.
    fn stage_doc(
        &self,
        meta: &Arc<CollectionMeta>,
        ictx: &IndexCtx,
        old: Option<&Document>,
        new: Option<&Document>,
        mut claimed: Option<&mut Claims>,
    ) -> Result<Staged> {
        if let (Some(_), Some(n)) = (old, new) {
            // Before anything walks the new document recursively. Inserts were checked
            // (and upserts built) by their callers.
            depth::check_update(n)?;
        }
        let id = new
            .or(old)
            .and_then(|d| d.get("_id"))
            .cloned()
            .ok_or_else(|| Error::internal("document without _id"))?;
        let id_bytes = keycodec::encode(&id);
        let dkey = [meta.data_prefix().as_slice(), &id_bytes].concat();
        let mut batch = Batch::default();
        // Taken only for unique-key checks: an update that leaves its unique keys alone —
        // the common update by `_id` — and an insert into a collection without other
        // unique indexes read nothing more.
        let snap_cell: OnceCell<Arc<dyn KvSnapshot>> = OnceCell::new();
        let snap = || -> Result<&Arc<dyn KvSnapshot>> {
            if let Some(s) = snap_cell.get() {
                return Ok(s);
            }
            let s = self.kv().snapshot()?;
            Ok(snap_cell.get_or_init(|| s))
        };
        let mut claims = Vec::new();
        match new {
            Some(n) => {
                let bytes = encode_doc(n)?;
                check_size(&bytes)?;
                if old.is_none() {
                    // The collection lock keeps other writers out, so the latest state
                    // answers without the cost of registering a snapshot.
                    if claimed.as_ref().is_some_and(|c| c.contains(&dkey))
                        || self.kv().get(&dkey)?.is_some()
                    {
                        return Err(Self::dup_id_error(meta, &id));
                    }
                    claims.push(dkey.clone());
                }
                batch.put(dkey, bytes);
            }
            None => batch.delete(dkey),
        }
        let mut new_meta: Option<CollectionMeta> = None;
        for (i, ix) in meta.indexes.iter().enumerate() {
            let partial = ictx.partials.get(i).and_then(Option::as_ref);
            let (old_keys, _) = match old {
                Some(o) => ix.keys_for(o, partial)?,
                None => (Vec::new(), false),
            };
            let (new_keys, multi) = match new {
                Some(n) => ix.keys_for(n, partial)?,
                None => (Vec::new(), false),
            };
            let ipfx = index_prefix(ix.id);
            for k in old_keys
                .iter()
                .filter(|k| new_keys.binary_search(k).is_err())
            {
                batch.delete([ipfx.as_slice(), k, &id_bytes].concat());
            }
            for k in new_keys
                .iter()
                .filter(|k| old_keys.binary_search(k).is_err())
            {
                if ix.unique {
                    let p = [ipfx.as_slice(), k].concat();
                    let end = keycodec::prefix_end(&p);
                    let mut dup = claimed.as_ref().is_some_and(|c| c.contains(&p));
                    if !dup {
                        snap()?.scan(
                            std::ops::Bound::Included(&p),
                            end.as_deref()
                                .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
                            false,
                            &mut |ek, _| {
                                if &ek[p.len()..] != id_bytes.as_slice() {
                                    dup = true;
                                    return Ok(false);
                                }
                                Ok(true)
                            },
                        )?;
                    }
                    if dup {
                        let src = new.unwrap_or(&Document::new()).clone();
                        return Err(self.dup_error(meta, ix, &src, k));
                    }
                    claims.push(p);
                }
                batch.put([ipfx.as_slice(), k, &id_bytes].concat(), Vec::new());
            }
            if multi && !ix.multikey {
                let nm = new_meta.get_or_insert_with(|| (**meta).clone());
                nm.indexes[i].multikey = true;
            }
        }
        if let Some(c) = claimed.as_mut() {
            c.extend(claims);
        }
        Ok(Staged { batch, new_meta })
    }

    /// Writes a staged change.
    fn commit_doc(
        &self,
        meta: &mut Arc<CollectionMeta>,
        ictx: &IndexCtx,
        staged: Staged,
    ) -> Result<()> {
        let Staged {
            mut batch,
            new_meta,
        } = staged;
        match new_meta {
            None if ictx.no_wait => match self.kv().write_now(batch)? {
                true => Ok(()),
                false => Err(Self::would_block()),
            },
            // Recording a new multikey flag syncs the catalog: not on a no-wait thread.
            Some(_) if ictx.no_wait => Err(Self::would_block()),
            // Appended without an fsync under the collection lock; the public write
            // methods make it durable after releasing the lock (`with_commit`), so
            // concurrent writers share one group-commit fsync and a multi-document
            // insert costs one fsync, not one per document.
            None => self.kv().write(batch, false),
            Some(nm) => {
                let _g = self.inner.catalog_lock.lock();
                Catalog::stage_put(&nm, &mut batch)?;
                self.kv().write(batch, true)?;
                *meta = self.inner.catalog.write().cache(nm);
                Ok(())
            }
        }
    }

    /// `insert`: documents get an ObjectId `_id` when missing. Ordered inserts stop at the
    /// first error; unordered ones continue and report every error.
    pub fn insert(
        &self,
        db: &str,
        coll: &str,
        docs: Vec<Document>,
        ordered: bool,
    ) -> Result<InsertResult> {
        self.with_commit(|| self.insert_locked(db, coll, docs, ordered))
    }

    fn insert_locked(
        &self,
        db: &str,
        coll: &str,
        docs: Vec<Document>,
        ordered: bool,
    ) -> Result<InsertResult> {
        let (meta, _) = self.get_or_create(db, coll)?;
        let lock = self.coll_lock(meta.id);
        let _l = lock.lock();
        let mut meta = self.relock_meta(db, coll, meta.id)?;
        let ictx = IndexCtx::new(&meta)?;
        let mut res = InsertResult::default();
        let mut pending = PendingInsert::default();
        for (i, d) in docs.into_iter().enumerate() {
            // First, before anything walks the document recursively; a refused one is
            // taken apart without recursion too.
            let staged = match depth::check_insert(&d) {
                Err(e) => {
                    depth::dismantle(Bson::Document(d));
                    Err(e)
                }
                Ok(()) => Ok(d),
            };
            let staged = staged.and_then(prepare_for_storage).and_then(|d| {
                let id = d.get("_id").cloned().unwrap_or(Bson::Null);
                let staged =
                    self.stage_doc(&meta, &ictx, None, Some(&d), Some(&mut pending.claimed))?;
                Ok((staged, id))
            });
            let (staged, id) = match staged {
                Ok(s) => s,
                Err(error) => {
                    res.write_errors.push(WriteError { index: i, error });
                    if ordered {
                        break;
                    }
                    continue;
                }
            };
            if staged.new_meta.is_some() {
                // A new multikey flag is written with the catalog, after what was staged
                // before it.
                if !self.flush_pending(&mut pending, &mut res) {
                    break;
                }
                if let Err(error) = self.commit_doc(&mut meta, &ictx, staged) {
                    res.write_errors.push(WriteError { index: i, error });
                    if ordered {
                        break;
                    }
                    continue;
                }
            } else {
                pending.stage(i, res.n, staged.batch);
            }
            res.n += 1;
            res.inserted_ids.push(id);
            if pending.bytes >= INSERT_BATCH_BYTES && !self.flush_pending(&mut pending, &mut res) {
                break;
            }
        }
        self.flush_pending(&mut pending, &mut res);
        res.write_errors.sort_by_key(|e| e.index);
        Ok(res)
    }

    /// Writes what an insert staged. When the engine refuses it, none of those documents
    /// was inserted: the result drops them and reports the error at the first of them
    /// (the documents after it are not attempted). Returns whether the write succeeded.
    fn flush_pending(&self, pending: &mut PendingInsert, res: &mut InsertResult) -> bool {
        let Some((first, n_before)) = pending.first.take() else {
            return true;
        };
        pending.bytes = 0;
        pending.claimed.clear();
        match self.kv().write(std::mem::take(&mut pending.batch), false) {
            Ok(()) => true,
            Err(error) => {
                res.n = n_before;
                res.inserted_ids.truncate(n_before as usize);
                res.write_errors.push(WriteError {
                    index: first,
                    error,
                });
                false
            }
        }
    }

    /// Matching documents (a snapshot read) for a write, honouring a sort.
    fn matching(
        &self,
        meta: &CollectionMeta,
        filter: &Document,
        sort: Option<&SortSpec>,
        hint: Option<&Bson>,
        limit: Option<usize>,
        interrupt: &Interrupt,
    ) -> Result<Vec<Document>> {
        let m = Matcher::new(filter)?;
        let stats = Arc::new(ExecStats::default());
        let (src, sorted) = self.source(meta, filter, sort, hint, stats, interrupt)?;
        let mut it: DocIter = Box::new(src.filter(move |r| match r {
            Ok(d) => m.matches(d).unwrap_or(false),
            Err(_) => true,
        }));
        if let (Some(s), false) = (sort, sorted) {
            let mut sorter = ExternalSorter::new(s.clone(), self.spill_config(None, interrupt));
            if let Some(k) = limit {
                sorter = sorter.with_limit(k);
            }
            for d in it {
                sorter.push(d?)?;
            }
            it = sorter.finish()?;
        }
        match limit {
            Some(k) => it.take(k).collect(),
            None => it.collect(),
        }
    }

    fn apply_update_doc(
        &self,
        u: &UpdateDoc,
        parsed: &Option<Update>,
        doc: &Document,
        is_insert: bool,
        q: &Document,
    ) -> Result<Document> {
        match (u, parsed) {
            (UpdateDoc::Doc(_), Some(up)) => up.apply(
                doc,
                &ApplyContext {
                    is_insert,
                    query: Some(q),
                },
            ),
            (UpdateDoc::Pipeline(stages), _) => {
                let p = Pipeline::parse(stages)?;
                for s in &p.stages {
                    if !matches!(
                        s,
                        crate::aggregate::Stage::AddFields(_)
                            | crate::aggregate::Stage::Project(_)
                            | crate::aggregate::Stage::ReplaceRoot(_)
                    ) {
                        return Err(Error::invalid_pipeline_update());
                    }
                }
                let mut out = p.run(
                    Box::new(std::iter::once(Ok(doc.clone()))),
                    &self.spill_config(None, &Interrupt::none()),
                );
                let nd = out
                    .next()
                    .ok_or_else(|| Error::internal("pipeline update produced no document"))??;
                if let (Some(a), false) = (doc.get("_id"), is_insert)
                    && nd.get("_id") != Some(a)
                {
                    return Err(Error::new(
                        code::IMMUTABLE_FIELD,
                        "Performing an update on the path '_id' would modify the immutable field '_id'",
                    ));
                }
                Ok(nd)
            }
            _ => Err(Error::internal("update not parsed")),
        }
    }

    fn parse_update(u: &UpdateDoc, array_filters: &[Document]) -> Result<Option<Update>> {
        match u {
            UpdateDoc::Doc(d) => Ok(Some(Update::parse(d, array_filters)?)),
            UpdateDoc::Pipeline(_) => Ok(None),
        }
    }

    fn upsert_doc(
        &self,
        op_q: &Document,
        u: &UpdateDoc,
        parsed: &Option<Update>,
    ) -> Result<Document> {
        let seed = update::upsert_seed(op_q)?;
        let mut d = match (u, parsed) {
            (UpdateDoc::Doc(_), Some(up)) if up.is_replacement() => {
                let mut base = Document::new();
                if let Some(id) = seed.get("_id") {
                    base.insert("_id", id.clone());
                }
                up.apply(
                    &base,
                    &ApplyContext {
                        is_insert: true,
                        query: Some(op_q),
                    },
                )?
            }
            _ => self.apply_update_doc(u, parsed, &seed, true, op_q)?,
        };
        if let (Some(a), Some(b)) = (seed.get("_id"), d.get("_id"))
            && !order::eq(a, b)
        {
            return Err(Error::new(
                code::IMMUTABLE_FIELD,
                "Performing an update on the path '_id' would modify the immutable field '_id'",
            ));
        }
        d = prepare_for_storage(d)?;
        depth::check_update(&d)?;
        Ok(d)
    }

    fn update_one_stmt(
        &self,
        meta: &mut Arc<CollectionMeta>,
        ictx: &IndexCtx,
        op: &UpdateOp,
        res: &mut UpdateResult,
        idx: usize,
        interrupt: &Interrupt,
    ) -> Result<()> {
        let parsed = Self::parse_update(&op.u, &op.array_filters)?;
        if let Some(up) = &parsed
            && up.is_replacement()
            && op.multi
        {
            return Err(Error::failed_to_parse(
                "multi update is not supported for replacement-style update",
            ));
        }
        let docs = self.matching(
            meta,
            &op.q,
            None,
            op.hint.as_ref(),
            if op.multi { None } else { Some(1) },
            interrupt,
        )?;
        if docs.is_empty() {
            if op.upsert {
                let d = self.upsert_doc(&op.q, &op.u, &parsed)?;
                let id = d.get("_id").cloned().unwrap_or(Bson::Null);
                self.write_doc(meta, ictx, None, Some(&d))?;
                res.n += 1;
                res.upserted.push((idx, id));
            }
            return Ok(());
        }
        let mut ticker = interrupt.ticker();
        for old in docs {
            ticker.tick()?;
            let mut new = self.apply_update_doc(&op.u, &parsed, &old, false, &op.q)?;
            if new.keys().next().map(String::as_str) != Some("_id") {
                new = prepare_for_storage(new)?;
            }
            res.n += 1;
            if new != old {
                self.write_doc(meta, ictx, Some(&old), Some(&new))?;
                res.n_modified += 1;
            }
        }
        Ok(())
    }

    /// `update`: each statement may be multi, upsert, use arrayFilters; replacement or
    /// operator or pipeline updates.
    pub fn update(
        &self,
        db: &str,
        coll: &str,
        ops: Vec<UpdateOp>,
        ordered: bool,
    ) -> Result<UpdateResult> {
        self.update_with(db, coll, ops, ordered, &Interrupt::none())
    }

    /// [`Db::update`] whose statements' scans stop when `interrupt` fires (`maxTimeMS`):
    /// the statement running then fails with its error, as in MongoDB.
    pub fn update_with(
        &self,
        db: &str,
        coll: &str,
        ops: Vec<UpdateOp>,
        ordered: bool,
        interrupt: &Interrupt,
    ) -> Result<UpdateResult> {
        self.with_commit(|| self.update_locked(db, coll, ops, ordered, interrupt))
    }

    fn update_locked(
        &self,
        db: &str,
        coll: &str,
        ops: Vec<UpdateOp>,
        ordered: bool,
        interrupt: &Interrupt,
    ) -> Result<UpdateResult> {
        let needs_create = ops.iter().any(|o| o.upsert);
        let meta = if needs_create {
            Some(self.get_or_create(db, coll)?.0)
        } else {
            self.meta(db, coll)
        };
        let mut res = UpdateResult::default();
        let Some(meta) = meta else {
            // Still validate statements so parse errors surface.
            res.write_errors = each_statement(&ops, ordered, |_, op| {
                Matcher::new(&op.q)?;
                Self::parse_update(&op.u, &op.array_filters).map(drop)
            });
            return Ok(res);
        };
        let lock = self.coll_lock(meta.id);
        let _l = lock.lock();
        let mut meta = self.relock_meta(db, coll, meta.id)?;
        let ictx = IndexCtx::new(&meta)?;
        res.write_errors = each_statement(&ops, ordered, |i, op| {
            self.update_one_stmt(&mut meta, &ictx, op, &mut res, i, interrupt)
        });
        Ok(res)
    }

    /// `update` of one statement on the caller's thread, for callers that must not block
    /// (the wire server's connection tasks). `None`, with nothing done, when it could wait:
    /// the statement may touch several documents (not `{_id: <scalar>}`, or `multi`), the
    /// collection does not exist yet or its write lock is held, or the engine would make
    /// the write wait (memtable switch, stall). Otherwise the outcome and the [`Commit`]
    /// to wait for, with [`Db::when_durable`], before acknowledging it.
    pub fn try_update_now(
        &self,
        db: &str,
        coll: &str,
        op: &UpdateOp,
    ) -> Option<Result<(UpdateResult, Commit)>> {
        if op.multi || crate::point::id_equality(&op.q).is_none() {
            return None;
        }
        let meta = self.meta(db, coll)?;
        let lock = self.coll_lock(meta.id);
        let _l = lock.try_lock()?;
        let outcome = self.relock_meta(db, coll, meta.id).and_then(|mut meta| {
            let mut ictx = IndexCtx::new(&meta)?;
            ictx.no_wait = true;
            let mut res = UpdateResult::default();
            match self.update_one_stmt(&mut meta, &ictx, op, &mut res, 0, &Interrupt::none()) {
                Ok(()) => Ok(Some(res)),
                // The write would have waited; nothing was written.
                Err(e) if e.code == code::WRITE_CONFLICT.code => Ok(None),
                Err(e) => {
                    res.write_errors.push(WriteError { index: 0, error: e });
                    Ok(Some(res))
                }
            }
        });
        match outcome {
            Ok(Some(res)) => Some(Ok((res, Commit(self.kv().ticket())))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }

    fn would_block() -> Error {
        Error::new(
            code::WRITE_CONFLICT,
            "the write would wait on a no-wait thread",
        )
    }

    /// Calls `done` once the writes covered by `commit` are durable: from the engine's
    /// sync thread after a group-commit fsync, or at once when writes are not synced.
    pub fn when_durable(&self, commit: Commit, done: DurableFn) {
        if !self.sync() {
            return done(Ok(()));
        }
        self.kv().when_durable(commit.0, done)
    }

    /// Makes the writes covered by `commit` durable on the calling thread, when that
    /// needs no wait for another thread's fsync; `None` when it would (then use
    /// [`when_durable`](Self::when_durable)).
    pub fn try_durable_now(&self, commit: Commit) -> Option<Result<()>> {
        if !self.sync() {
            return Some(Ok(()));
        }
        self.kv().try_sync(commit.0)
    }

    /// Whether the storage engine still has background work (flushes, compactions) to
    /// do, e.g. after a bulk load; `serverStatus` reports it.
    pub fn maintenance_pending(&self) -> bool {
        self.kv().maintenance_pending()
    }

    /// The error writes get while the storage engine is read-only (its `code` and
    /// `errmsg` name the cause); `None` while it takes writes. `serverStatus` reports it.
    pub fn read_only(&self) -> Option<Error> {
        self.kv().read_only()
    }

    /// `delete`.
    pub fn delete(
        &self,
        db: &str,
        coll: &str,
        ops: Vec<DeleteOp>,
        ordered: bool,
    ) -> Result<DeleteResult> {
        self.delete_with(db, coll, ops, ordered, &Interrupt::none())
    }

    /// [`Db::delete`] whose statements' scans stop when `interrupt` fires (`maxTimeMS`).
    pub fn delete_with(
        &self,
        db: &str,
        coll: &str,
        ops: Vec<DeleteOp>,
        ordered: bool,
        interrupt: &Interrupt,
    ) -> Result<DeleteResult> {
        self.with_commit(|| self.delete_locked(db, coll, ops, ordered, interrupt))
    }

    fn delete_locked(
        &self,
        db: &str,
        coll: &str,
        ops: Vec<DeleteOp>,
        ordered: bool,
        interrupt: &Interrupt,
    ) -> Result<DeleteResult> {
        let mut res = DeleteResult::default();
        let Some(meta) = self.meta(db, coll) else {
            res.write_errors = each_statement(&ops, ordered, |_, op| Matcher::new(&op.q).map(drop));
            return Ok(res);
        };
        let lock = self.coll_lock(meta.id);
        let _l = lock.lock();
        let mut meta = self.relock_meta(db, coll, meta.id)?;
        let ictx = IndexCtx::new(&meta)?;
        res.write_errors = each_statement(&ops, ordered, |_, op| {
            if op.limit > 1 {
                return Err(Error::failed_to_parse(format!(
                    "The limit field in delete objects must be 0 or 1. Got {}",
                    op.limit
                )));
            }
            let docs = self.matching(
                &meta,
                &op.q,
                None,
                op.hint.as_ref(),
                if op.limit == 1 { Some(1) } else { None },
                interrupt,
            )?;
            let mut ticker = interrupt.ticker();
            for d in docs {
                ticker.tick()?;
                self.write_doc(&mut meta, &ictx, Some(&d), None)?;
                res.n += 1;
            }
            Ok(())
        });
        Ok(res)
    }

    /// `findAndModify`.
    pub fn find_and_modify(
        &self,
        db: &str,
        coll: &str,
        opts: FindAndModifyOptions,
    ) -> Result<FindAndModifyResult> {
        self.with_commit(|| self.find_and_modify_locked(db, coll, opts))
    }

    fn find_and_modify_locked(
        &self,
        db: &str,
        coll: &str,
        opts: FindAndModifyOptions,
    ) -> Result<FindAndModifyResult> {
        if opts.remove && (opts.update.is_some() || opts.upsert || opts.new) {
            return Err(Error::failed_to_parse(
                "Cannot specify both an update and remove=true (or upsert/new with remove)",
            ));
        }
        if !opts.remove && opts.update.is_none() {
            return Err(Error::failed_to_parse(
                "Either an update or remove=true must be specified",
            ));
        }
        let proj = opts
            .fields
            .as_ref()
            .filter(|f| !f.is_empty())
            .map(|f| Projection::new(f).map(|p| p.with_query(&opts.query)))
            .transpose()?;
        let sort = opts
            .sort
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(SortSpec::parse)
            .transpose()?;
        let parsed = match &opts.update {
            Some(u) => Self::parse_update(u, &opts.array_filters)?,
            None => None,
        };
        let meta = if opts.upsert {
            Some(self.get_or_create(db, coll)?.0)
        } else {
            self.meta(db, coll)
        };
        let Some(meta) = meta else {
            Matcher::new(&opts.query)?;
            return Ok(FindAndModifyResult::default());
        };
        let lock = self.coll_lock(meta.id);
        let _l = lock.lock();
        let mut meta = self.relock_meta(db, coll, meta.id)?;
        let ictx = IndexCtx::new(&meta)?;
        let found = self
            .matching(
                &meta,
                &opts.query,
                sort.as_ref(),
                None,
                Some(1),
                &opts.interrupt,
            )?
            .into_iter()
            .next();
        let project = |d: Document| -> Result<Document> {
            match &proj {
                Some(p) => p.apply(&d),
                None => Ok(d),
            }
        };
        match found {
            Some(old) if opts.remove => {
                self.write_doc(&mut meta, &ictx, Some(&old), None)?;
                Ok(FindAndModifyResult {
                    value: Some(project(old)?),
                    n: 1,
                    updated_existing: false,
                    upserted: None,
                })
            }
            Some(old) => {
                let u = opts
                    .update
                    .as_ref()
                    .ok_or_else(|| Error::internal("missing update"))?;
                let mut new = self.apply_update_doc(u, &parsed, &old, false, &opts.query)?;
                if new.keys().next().map(String::as_str) != Some("_id") {
                    new = prepare_for_storage(new)?;
                }
                if new != old {
                    self.write_doc(&mut meta, &ictx, Some(&old), Some(&new))?;
                }
                let v = if opts.new { new } else { old };
                Ok(FindAndModifyResult {
                    value: Some(project(v)?),
                    n: 1,
                    updated_existing: true,
                    upserted: None,
                })
            }
            None if opts.upsert => {
                let u = opts
                    .update
                    .as_ref()
                    .ok_or_else(|| Error::internal("missing update"))?;
                let d = self.upsert_doc(&opts.query, u, &parsed)?;
                self.write_doc(&mut meta, &ictx, None, Some(&d))?;
                let id = d.get("_id").cloned();
                let v = if opts.new { Some(project(d)?) } else { None };
                Ok(FindAndModifyResult {
                    value: v,
                    n: 1,
                    updated_existing: false,
                    upserted: id,
                })
            }
            None => Ok(FindAndModifyResult::default()),
        }
    }

    /// Delete documents whose TTL-indexed date (earliest, for arrays) is older than
    /// `now - expireAfterSeconds`. The server calls this periodically; returns how many
    /// documents were removed.
    pub fn expire_ttl(&self, now: bson::DateTime) -> Result<u64> {
        let metas: Vec<Arc<CollectionMeta>> = self
            .inner
            .catalog
            .read()
            .colls
            .values()
            .filter(|c| c.indexes.iter().any(|i| i.expire_after.is_some()))
            .cloned()
            .collect();
        let mut removed = 0;
        for meta in metas {
            for ix in meta.indexes.iter().filter(|i| i.expire_after.is_some()) {
                let secs = ix.expire_after.unwrap_or(0);
                let cutoff = bson::DateTime::from_millis(
                    now.timestamp_millis()
                        .saturating_sub(secs.saturating_mul(1000)),
                );
                let filter = doc! {ix.fields[0].0.clone(): {"$lt": cutoff}};
                let res = self.delete(
                    &meta.db,
                    &meta.name,
                    vec![DeleteOp {
                        q: filter,
                        limit: 0,
                        hint: Some(Bson::String(ix.name.clone())),
                    }],
                    false,
                )?;
                if let Some(e) = res.write_errors.first() {
                    return Err(e.error.clone());
                }
                removed += res.n;
            }
        }
        Ok(removed)
    }
}

impl Error {
    fn invalid_pipeline_update() -> Error {
        Error::new(
            code::location(40324),
            "Only $addFields/$set, $project/$unset and $replaceRoot/$replaceWith stages are allowed in a pipeline update",
        )
    }
}

#[cfg(test)]
mod tests {
    use bson::{Bson, doc};

    use super::prepare_for_storage;

    fn keys(d: &bson::Document) -> Vec<&str> {
        d.keys().map(String::as_str).collect()
    }

    #[test]
    fn id_goes_first_and_the_other_fields_keep_their_order() {
        let kept = prepare_for_storage(doc! {"_id": 1, "b": 2, "a": 3}).unwrap();
        assert_eq!(kept, doc! {"_id": 1, "b": 2, "a": 3});
        let moved = prepare_for_storage(doc! {"b": 2, "_id": 1, "a": 3}).unwrap();
        assert_eq!(keys(&moved), ["_id", "b", "a"]);
        let generated = prepare_for_storage(doc! {"b": 2, "a": 3}).unwrap();
        assert_eq!(keys(&generated), ["_id", "b", "a"]);
        assert!(matches!(generated.get("_id"), Some(Bson::ObjectId(_))));
    }

    #[test]
    fn bad_ids_and_dollar_names_are_refused_wherever_id_stands() {
        for d in [doc! {"_id": [1], "a": 1}, doc! {"a": 1, "_id": [1]}] {
            let e = prepare_for_storage(d).unwrap_err();
            assert_eq!(e.code, crate::error::code::INVALID_ID_FIELD.code, "{e:?}");
        }
        for d in [doc! {"_id": 1, "$a": 1}, doc! {"$a": 1, "_id": 1}] {
            let e = prepare_for_storage(d).unwrap_err();
            assert_eq!(
                e.code,
                crate::error::code::DOLLAR_PREFIXED_FIELD_NAME.code,
                "{e:?}"
            );
        }
    }
}
