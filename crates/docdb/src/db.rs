//! The public facade the wire layer calls: [`Db`].
//!
//! Concurrency: each collection has a write lock held for the whole of a write command
//! (so unique-index checks and multikey flags are race-free); catalog changes take the
//! catalog lock. Reads take an engine snapshot and never block writers.
//! Atomicity: each document write (document + all its index entries, plus any catalog
//! change such as setting a multikey flag) is one engine batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bson::{Bson, Document, doc, oid::ObjectId};
use parking_lot::{Mutex, RwLock};

use crate::aggregate::Pipeline;
use crate::catalog::{self, Catalog, CollectionMeta, garbage_key, index_prefix};
use crate::cursor::{self, Cursor, ExecStats, RangeScan};
use crate::error::{Error, Result, code, render_doc};
use crate::index::{ID_INDEX_NAME, IndexMeta};
use crate::keycodec;
use crate::kv::{Batch, Kv, TempStore};
use crate::matcher::Matcher;
use crate::order;
use crate::path;
use crate::planner::{self, Access};
use crate::projection::Projection;
use crate::sort::SortSpec;
use crate::spill::{DEFAULT_MEMORY_LIMIT, DocIter, ExternalSorter, SpillConfig};
use crate::update::{self, ApplyContext, Update};

/// Maximum BSON document size (16 MiB).
pub const MAX_DOC_SIZE: usize = 16 * 1024 * 1024;

/// Tunables.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Memory budget of a blocking sort before it spills to encrypted temp files.
    pub sort_memory_limit: usize,
    /// Sync the engine on every acknowledged write (default true).
    pub sync_writes: bool,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            sort_memory_limit: DEFAULT_MEMORY_LIMIT,
            sync_writes: true,
        }
    }
}

/// `find` options.
#[derive(Debug, Clone, Default)]
pub struct FindOptions {
    pub filter: Document,
    pub sort: Option<Document>,
    pub projection: Option<Document>,
    pub skip: u64,
    /// 0 = no limit.
    pub limit: u64,
    pub hint: Option<Bson>,
    /// None = allowed (MongoDB 6+ default).
    pub allow_disk_use: Option<bool>,
}

/// `aggregate` options.
#[derive(Debug, Clone, Default)]
pub struct AggregateOptions {
    pub allow_disk_use: Option<bool>,
    pub hint: Option<Bson>,
}

/// The `u` of an update statement.
#[derive(Debug, Clone)]
pub enum UpdateDoc {
    /// Operator update (`{$set: ...}`) or replacement document.
    Doc(Document),
    /// Aggregation-pipeline update (`[{$set: ...}, ...]`).
    Pipeline(Vec<Document>),
}

impl UpdateDoc {
    /// From the raw `u` value of an update command.
    pub fn from_bson(v: &Bson) -> Result<UpdateDoc> {
        match v {
            Bson::Document(d) => Ok(UpdateDoc::Doc(d.clone())),
            Bson::Array(a) => Ok(UpdateDoc::Pipeline(
                a.iter()
                    .map(|s| match s {
                        Bson::Document(d) => Ok(d.clone()),
                        _ => Err(Error::failed_to_parse(
                            "Each element of the 'pipeline' array must be an object",
                        )),
                    })
                    .collect::<Result<_>>()?,
            )),
            _ => Err(Error::failed_to_parse(
                "Update argument must be either an object or an array",
            )),
        }
    }
}

/// One update statement.
#[derive(Debug, Clone)]
pub struct UpdateOp {
    pub q: Document,
    pub u: UpdateDoc,
    pub multi: bool,
    pub upsert: bool,
    pub array_filters: Vec<Document>,
    pub hint: Option<Bson>,
}

/// One delete statement (`limit` 0 = all matches, 1 = first).
#[derive(Debug, Clone)]
pub struct DeleteOp {
    pub q: Document,
    pub limit: u32,
    pub hint: Option<Bson>,
}

/// A per-statement error of a write command.
#[derive(Debug, Clone)]
pub struct WriteError {
    pub index: usize,
    pub error: Error,
}

#[derive(Debug, Clone, Default)]
pub struct InsertResult {
    pub n: u64,
    pub inserted_ids: Vec<Bson>,
    pub write_errors: Vec<WriteError>,
}

#[derive(Debug, Clone, Default)]
pub struct UpdateResult {
    pub n: u64,
    pub n_modified: u64,
    /// `(statement index, _id)` of upserted documents.
    pub upserted: Vec<(usize, Bson)>,
    pub write_errors: Vec<WriteError>,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteResult {
    pub n: u64,
    pub write_errors: Vec<WriteError>,
}

/// `findAndModify` arguments.
#[derive(Debug, Clone, Default)]
pub struct FindAndModifyOptions {
    pub query: Document,
    pub sort: Option<Document>,
    pub remove: bool,
    pub update: Option<UpdateDoc>,
    /// Return the document after the update.
    pub new: bool,
    pub upsert: bool,
    pub fields: Option<Document>,
    pub array_filters: Vec<Document>,
}

#[derive(Debug, Clone, Default)]
pub struct FindAndModifyResult {
    pub value: Option<Document>,
    /// `lastErrorObject.n`
    pub n: u64,
    pub updated_existing: bool,
    pub upserted: Option<Bson>,
}

#[derive(Debug, Clone, Default)]
pub struct CreateIndexesResult {
    pub num_indexes_before: usize,
    pub num_indexes_after: usize,
    pub created_collection_automatically: bool,
    /// "all indexes already exist" when nothing was created.
    pub note: Option<String>,
}

/// `collStats`-style numbers (computed by a scan of the collection's documents).
#[derive(Debug, Clone, Default)]
pub struct CollectionStats {
    pub count: u64,
    /// Sum of the stored BSON document sizes.
    pub size: u64,
    pub avg_obj_size: u64,
    pub nindexes: usize,
    pub index_names: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DatabaseInfo {
    pub name: String,
    pub size_on_disk: u64,
    pub empty: bool,
}

struct Inner {
    kv: Arc<dyn Kv>,
    temp: Arc<dyn TempStore>,
    catalog: RwLock<Catalog>,
    catalog_lock: Mutex<()>,
    coll_locks: Mutex<HashMap<u64, Arc<Mutex<()>>>>,
    cfg: DbConfig,
}

/// The document database.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

/// Adapter so a shared `Kv` can serve as the spill `TempStore`.
struct KvTemp(Arc<dyn Kv>);

impl TempStore for KvTemp {
    fn temp_file(&self) -> Result<Box<dyn crate::kv::TempWrite>> {
        self.0.temp_file()
    }
}

fn ns(db: &str, coll: &str) -> String {
    format!("{db}.{coll}")
}

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
    let id = d
        .remove("_id")
        .unwrap_or_else(|| Bson::ObjectId(ObjectId::new()));
    validate_id(&id)?;
    for k in d.keys() {
        if k.starts_with('$') {
            return Err(Error::new(
                code::DOLLAR_PREFIXED_FIELD_NAME,
                format!("Document can't have $ prefixed field names: {k}"),
            ));
        }
    }
    let mut out = Document::new();
    out.insert("_id", id);
    out.extend(d);
    Ok(out)
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
}

impl IndexCtx {
    fn new(meta: &CollectionMeta) -> Result<IndexCtx> {
        let partials = meta
            .indexes
            .iter()
            .map(|i| i.partial.as_ref().map(Matcher::new).transpose())
            .collect::<Result<_>>()?;
        Ok(IndexCtx { partials })
    }
}

impl Db {
    /// Open on a `Kv` implementation (the real engine via [`Db::open`]).
    pub fn open_kv(kv: Arc<dyn Kv>, cfg: DbConfig) -> Result<Db> {
        let (catalog, garbage) = Catalog::load(kv.as_ref())?;
        let db = Db {
            inner: Arc::new(Inner {
                temp: Arc::new(KvTemp(kv.clone())),
                kv,
                catalog: RwLock::new(catalog),
                catalog_lock: Mutex::new(()),
                coll_locks: Mutex::new(HashMap::new()),
                cfg,
            }),
        };
        for prefix in garbage {
            tracing::info!(prefix = ?prefix, "finishing interrupted purge");
            db.purge(&prefix)?;
        }
        Ok(db)
    }

    fn kv(&self) -> &dyn Kv {
        self.inner.kv.as_ref()
    }

    fn sync(&self) -> bool {
        self.inner.cfg.sync_writes
    }

    fn spill_config(&self, allow_disk_use: Option<bool>) -> SpillConfig {
        SpillConfig {
            memory_limit: self.inner.cfg.sort_memory_limit,
            allow_disk_use: allow_disk_use.unwrap_or(true),
            temp: Some(self.inner.temp.clone()),
        }
    }

    fn coll_lock(&self, id: u64) -> Arc<Mutex<()>> {
        self.inner
            .coll_locks
            .lock()
            .entry(id)
            .or_insert_with(|| Arc::new(Mutex::new(())))
            .clone()
    }

    /// The collection's metadata after taking its write lock, which must still belong to
    /// the same collection incarnation (`id`); a concurrent drop/recreate is reported.
    fn relock_meta(&self, db: &str, coll: &str, id: u64) -> Result<Arc<CollectionMeta>> {
        match self.meta(db, coll) {
            Some(m) if m.id == id => Ok(m),
            _ => Err(Error::new(
                code::NAMESPACE_NOT_FOUND,
                format!(
                    "collection {} was dropped or recreated concurrently; retry the operation",
                    ns(db, coll)
                ),
            )),
        }
    }

    fn meta(&self, db: &str, coll: &str) -> Option<Arc<CollectionMeta>> {
        self.inner.catalog.read().get(db, coll)
    }

    /// Delete every key under `prefix`, then its garbage marker.
    fn purge(&self, prefix: &[u8]) -> Result<()> {
        let end = keycodec::prefix_end(prefix);
        loop {
            let snap = self.kv().snapshot()?;
            let mut batch = Batch::default();
            let mut n = 0;
            snap.scan(
                std::ops::Bound::Included(prefix),
                end.as_deref()
                    .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
                false,
                &mut |k, _| {
                    batch.delete(k.to_vec());
                    n += 1;
                    Ok(n < 1024)
                },
            )?;
            if batch.is_empty() {
                break;
            }
            self.kv().write(batch, false)?;
        }
        let mut b = Batch::default();
        b.delete(garbage_key(prefix));
        self.kv().write(b, self.sync())
    }

    fn create_collection_inner(
        &self,
        db: &str,
        coll: &str,
        options: Document,
    ) -> Result<Arc<CollectionMeta>> {
        catalog::validate_coll_name(db, coll)?;
        let _g = self.inner.catalog_lock.lock();
        if let Some(m) = self.meta(db, coll) {
            return Ok(m);
        }
        let mut batch = Batch::default();
        let id = self.inner.catalog.write().alloc_id(&mut batch);
        let meta = CollectionMeta {
            db: db.into(),
            name: coll.into(),
            id,
            uuid: uuid::Uuid::new_v4(),
            options,
            indexes: Vec::new(),
        };
        Catalog::stage_put(&meta, &mut batch)?;
        self.kv().write(batch, true)?;
        Ok(self.inner.catalog.write().cache(meta))
    }

    fn get_or_create(&self, db: &str, coll: &str) -> Result<(Arc<CollectionMeta>, bool)> {
        catalog::validate_coll_name(db, coll)?;
        if let Some(m) = self.meta(db, coll) {
            return Ok((m, false));
        }
        Ok((
            self.create_collection_inner(db, coll, Document::new())?,
            true,
        ))
    }

    // ----- collections -----

    /// `create`: NamespaceExists (48) when the collection already exists.
    pub fn create_collection(&self, db: &str, coll: &str, options: Document) -> Result<()> {
        catalog::validate_coll_name(db, coll)?;
        if self.meta(db, coll).is_some() {
            return Err(Error::new(
                code::NAMESPACE_EXISTS,
                format!("Collection {} already exists.", ns(db, coll)),
            ));
        }
        self.create_collection_inner(db, coll, options).map(|_| ())
    }

    /// `drop`: returns false when the collection did not exist.
    pub fn drop_collection(&self, db: &str, coll: &str) -> Result<bool> {
        let Some(meta) = self.meta(db, coll) else {
            return Ok(false);
        };
        let lock = self.coll_lock(meta.id);
        let _l = lock.lock();
        // Re-read under the lock: indexes may have changed, or the collection may be gone.
        let meta = match self.meta(db, coll) {
            Some(m) if m.id == meta.id => m,
            _ => return Ok(false),
        };
        let prefixes = {
            let _g = self.inner.catalog_lock.lock();
            let mut batch = Batch::default();
            batch.delete(catalog::entry_key(db, coll));
            let mut prefixes = vec![meta.data_prefix()];
            prefixes.extend(meta.indexes.iter().map(|i| index_prefix(i.id)));
            for p in &prefixes {
                batch.put(garbage_key(p), Vec::new());
            }
            self.kv().write(batch, true)?;
            self.inner.catalog.write().uncache(db, coll);
            prefixes
        };
        for p in prefixes {
            self.purge(&p)?;
        }
        Ok(true)
    }

    /// `renameCollection` (within or across databases; data keys do not move).
    pub fn rename_collection(
        &self,
        from_db: &str,
        from: &str,
        to_db: &str,
        to: &str,
        drop_target: bool,
    ) -> Result<()> {
        catalog::validate_coll_name(to_db, to)?;
        let Some(meta) = self.meta(from_db, from) else {
            return Err(Error::new(
                code::NAMESPACE_NOT_FOUND,
                "source namespace does not exist",
            ));
        };
        if from_db == to_db && from == to {
            return Err(Error::new(
                code::ILLEGAL_OPERATION,
                "Can't rename a collection to itself",
            ));
        }
        if self.meta(to_db, to).is_some() {
            if !drop_target {
                return Err(Error::new(
                    code::NAMESPACE_EXISTS,
                    "target namespace exists",
                ));
            }
            self.drop_collection(to_db, to)?;
        }
        let lock = self.coll_lock(meta.id);
        let _l = lock.lock();
        let _g = self.inner.catalog_lock.lock();
        let Some(meta) = self.meta(from_db, from) else {
            return Err(Error::new(
                code::NAMESPACE_NOT_FOUND,
                "source namespace does not exist",
            ));
        };
        let mut new_meta = (*meta).clone();
        new_meta.db = to_db.into();
        new_meta.name = to.into();
        let mut batch = Batch::default();
        batch.delete(catalog::entry_key(from_db, from));
        Catalog::stage_put(&new_meta, &mut batch)?;
        self.kv().write(batch, true)?;
        let mut cat = self.inner.catalog.write();
        cat.uncache(from_db, from);
        cat.cache(new_meta);
        Ok(())
    }

    /// `listCollections` documents (`{name, type, options, info, idIndex}`), filtered.
    pub fn list_collections(&self, db: &str, filter: Option<&Document>) -> Result<Vec<Document>> {
        let m = filter.map(Matcher::new).transpose()?;
        let metas: Vec<Arc<CollectionMeta>> = self
            .inner
            .catalog
            .read()
            .colls
            .values()
            .filter(|c| c.db == db)
            .cloned()
            .collect();
        let mut out = Vec::new();
        for c in metas {
            let d = doc! {
                "name": &c.name,
                "type": "collection",
                "options": c.options.clone(),
                "info": {"readOnly": false, "uuid": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: c.uuid.as_bytes().to_vec() }},
                "idIndex": {"v": 2, "key": {"_id": 1}, "name": ID_INDEX_NAME},
            };
            if m.as_ref().map_or(Ok(true), |m| m.matches(&d))? {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Databases that hold at least one collection, with their stored document bytes.
    pub fn list_databases(&self) -> Result<Vec<DatabaseInfo>> {
        let metas: Vec<Arc<CollectionMeta>> =
            self.inner.catalog.read().colls.values().cloned().collect();
        let snap = self.kv().snapshot()?;
        let mut out: Vec<DatabaseInfo> = Vec::new();
        for c in metas {
            let p = c.data_prefix();
            let end = keycodec::prefix_end(&p);
            let mut size = 0u64;
            snap.scan(
                std::ops::Bound::Included(&p),
                end.as_deref()
                    .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
                false,
                &mut |k, v| {
                    size += (k.len() + v.len()) as u64;
                    Ok(true)
                },
            )?;
            match out.iter_mut().find(|d| d.name == c.db) {
                Some(d) => {
                    d.size_on_disk += size;
                    d.empty &= size == 0;
                }
                None => out.push(DatabaseInfo {
                    name: c.db.clone(),
                    size_on_disk: size,
                    empty: size == 0,
                }),
            }
        }
        Ok(out)
    }

    /// Drop every collection of a database.
    pub fn drop_database(&self, db: &str) -> Result<()> {
        let names: Vec<String> = self
            .inner
            .catalog
            .read()
            .colls
            .values()
            .filter(|c| c.db == db)
            .map(|c| c.name.clone())
            .collect();
        for n in names {
            self.drop_collection(db, &n)?;
        }
        Ok(())
    }

    // ----- indexes -----

    /// `createIndexes` (idempotent for identical specs).
    pub fn create_indexes(
        &self,
        db: &str,
        coll: &str,
        specs: &[Document],
    ) -> Result<CreateIndexesResult> {
        if specs.is_empty() {
            return Err(Error::bad_value(
                "Must specify at least one index to create",
            ));
        }
        let mut parsed = Vec::new();
        for s in specs {
            if s.get("name").is_none() {
                return Err(Error::failed_to_parse(
                    "The 'name' field is a required property of an index specification",
                ));
            }
            let is_id = matches!(s.get("key"), Some(Bson::Document(k)) if *k == doc! {"_id": 1})
                || s.get_str("name").ok() == Some(ID_INDEX_NAME);
            if is_id {
                parsed.push(None);
                continue;
            }
            parsed.push(Some(IndexMeta::parse_spec(s)?));
        }
        let (meta, created) = self.get_or_create(db, coll)?;
        let lock = self.coll_lock(meta.id);
        let _l = lock.lock();
        let meta = self.relock_meta(db, coll, meta.id)?;
        let before = meta.indexes.len() + 1;
        let mut new_meta = (*meta).clone();
        let mut to_build: Vec<IndexMeta> = Vec::new();
        for p in parsed.into_iter().flatten() {
            if let Some(existing) = new_meta
                .indexes
                .iter()
                .chain(to_build.iter())
                .find(|i| i.name == p.name)
            {
                if existing.same_definition(&p) {
                    continue;
                }
                if existing.fields != p.fields {
                    return Err(Error::new(
                        code::INDEX_KEY_SPECS_CONFLICT,
                        format!(
                            "An existing index has the same name as the requested index. When index names are not specified, they are auto generated and can cause conflicts. Please refer to our documentation. Requested index: {}, existing index: {}",
                            render_doc(&p.list_doc()),
                            render_doc(&existing.list_doc())
                        ),
                    ));
                }
                return Err(Error::new(
                    code::INDEX_OPTIONS_CONFLICT,
                    format!(
                        "An existing index has the same name as the requested index. Requested index: {}, existing index: {}",
                        render_doc(&p.list_doc()),
                        render_doc(&existing.list_doc())
                    ),
                ));
            }
            if let Some(existing) = new_meta
                .indexes
                .iter()
                .chain(to_build.iter())
                .find(|i| i.fields == p.fields && i.partial == p.partial)
            {
                return Err(Error::new(
                    code::INDEX_OPTIONS_CONFLICT,
                    format!(
                        "Index already exists with a different name: {}",
                        existing.name
                    ),
                ));
            }
            to_build.push(p);
        }
        if to_build.is_empty() {
            return Ok(CreateIndexesResult {
                num_indexes_before: before,
                num_indexes_after: before,
                created_collection_automatically: created,
                note: Some("all indexes already exist".into()),
            });
        }
        for mut ix in to_build {
            {
                let mut b = Batch::default();
                ix.id = self.inner.catalog.write().alloc_id(&mut b);
                // Marker first: a crash mid-build leaves the entries to be purged on open.
                b.put(garbage_key(&index_prefix(ix.id)), Vec::new());
                self.kv().write(b, true)?;
            }
            match self.build_index(&new_meta, &mut ix) {
                Ok(()) => {}
                Err(e) => {
                    self.purge(&index_prefix(ix.id))?;
                    return Err(e);
                }
            }
            new_meta.indexes.push(ix.clone());
            let _g = self.inner.catalog_lock.lock();
            let mut b = Batch::default();
            Catalog::stage_put(&new_meta, &mut b)?;
            b.delete(garbage_key(&index_prefix(ix.id)));
            self.kv().write(b, true)?;
            self.inner.catalog.write().cache(new_meta.clone());
        }
        Ok(CreateIndexesResult {
            num_indexes_before: before,
            num_indexes_after: new_meta.indexes.len() + 1,
            created_collection_automatically: created,
            note: None,
        })
    }

    fn build_index(&self, meta: &CollectionMeta, ix: &mut IndexMeta) -> Result<()> {
        let partial = ix.partial.as_ref().map(Matcher::new).transpose()?;
        let snap = self.kv().snapshot()?;
        let p = meta.data_prefix();
        let scan = RangeScan::new(snap, vec![(p.clone(), keycodec::prefix_end(&p))], false);
        let ipfx = index_prefix(ix.id);
        let mut batch = Batch::default();
        let mut seen_keys: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        for r in scan {
            let (k, v) = r?;
            let d = cursor::decode_doc(&v)?;
            let id_bytes = &k[p.len()..];
            let (keys, multi) = ix.keys_for(&d, partial.as_ref())?;
            ix.multikey |= multi;
            for key in keys {
                if ix.unique {
                    if let Some(other) = seen_keys.get(&key)
                        && other.as_slice() != id_bytes
                    {
                        return Err(self.dup_error(meta, ix, &d, &key));
                    }
                    seen_keys.insert(key.clone(), id_bytes.to_vec());
                }
                batch.put([ipfx.as_slice(), &key, id_bytes].concat(), Vec::new());
            }
            if batch.ops.len() >= 1024 {
                self.kv().write(std::mem::take(&mut batch), false)?;
            }
        }
        if !batch.is_empty() {
            self.kv().write(batch, false)?;
        }
        Ok(())
    }

    fn dup_error(
        &self,
        meta: &CollectionMeta,
        ix: &IndexMeta,
        doc: &Document,
        key: &[u8],
    ) -> Error {
        let kv = ix.key_value_doc(doc, key);
        let rendered = render_doc(&kv);
        Error::new(
            code::DUPLICATE_KEY,
            format!(
                "E11000 duplicate key error collection: {} index: {} dup key: {}",
                meta.ns(),
                ix.name,
                rendered
            ),
        )
        .with_info(doc! {"keyPattern": ix.key.clone(), "keyValue": kv})
    }

    fn dup_id_error(meta: &CollectionMeta, id: &Bson) -> Error {
        let kv = doc! {"_id": id.clone()};
        Error::new(
            code::DUPLICATE_KEY,
            format!(
                "E11000 duplicate key error collection: {} index: _id_ dup key: {}",
                meta.ns(),
                render_doc(&kv)
            ),
        )
        .with_info(doc! {"keyPattern": {"_id": 1}, "keyValue": kv})
    }

    /// `listIndexes`.
    pub fn list_indexes(&self, db: &str, coll: &str) -> Result<Vec<Document>> {
        let Some(meta) = self.meta(db, coll) else {
            return Err(Error::new(
                code::NAMESPACE_NOT_FOUND,
                format!("ns does not exist: {}", ns(db, coll)),
            ));
        };
        let mut out = vec![doc! {"v": 2, "key": {"_id": 1}, "name": ID_INDEX_NAME}];
        out.extend(meta.indexes.iter().map(IndexMeta::list_doc));
        Ok(out)
    }

    /// `dropIndexes`: `index` is a name, `"*"`, a key pattern, or an array of names.
    /// Returns `nIndexesWas`.
    pub fn drop_indexes(&self, db: &str, coll: &str, index: &Bson) -> Result<usize> {
        let Some(meta) = self.meta(db, coll) else {
            return Err(Error::new(
                code::NAMESPACE_NOT_FOUND,
                format!("ns not found {}", ns(db, coll)),
            ));
        };
        let lock = self.coll_lock(meta.id);
        let _l = lock.lock();
        let meta = self.relock_meta(db, coll, meta.id)?;
        let was = meta.indexes.len() + 1;
        let names: Vec<String> = match index {
            Bson::String(s) if s == "*" => meta.indexes.iter().map(|i| i.name.clone()).collect(),
            Bson::String(s) => vec![s.clone()],
            Bson::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| Error::type_mismatch("dropIndexes names must be strings"))
                })
                .collect::<Result<_>>()?,
            Bson::Document(k) => {
                if *k == doc! {"_id": 1} {
                    return Err(Error::new(code::INVALID_OPTIONS, "cannot drop _id index"));
                }
                match meta.indexes.iter().find(|i| i.key == *k) {
                    Some(i) => vec![i.name.clone()],
                    None => {
                        return Err(Error::new(
                            code::INDEX_NOT_FOUND,
                            format!("can't find index with key: {}", render_doc(k)),
                        ));
                    }
                }
            }
            _ => {
                return Err(Error::type_mismatch(
                    "dropIndexes 'index' must be a string, object or array",
                ));
            }
        };
        let mut new_meta = (*meta).clone();
        let mut dropped = Vec::new();
        for n in &names {
            if n == ID_INDEX_NAME {
                return Err(Error::new(code::INVALID_OPTIONS, "cannot drop _id index"));
            }
            match new_meta.indexes.iter().position(|i| &i.name == n) {
                Some(p) => dropped.push(new_meta.indexes.remove(p)),
                None => {
                    return Err(Error::new(
                        code::INDEX_NOT_FOUND,
                        format!("index not found with name [{n}]"),
                    ));
                }
            }
        }
        {
            let _g = self.inner.catalog_lock.lock();
            let mut b = Batch::default();
            Catalog::stage_put(&new_meta, &mut b)?;
            for i in &dropped {
                b.put(garbage_key(&index_prefix(i.id)), Vec::new());
            }
            self.kv().write(b, true)?;
            self.inner.catalog.write().cache(new_meta);
        }
        for i in dropped {
            self.purge(&index_prefix(i.id))?;
        }
        Ok(was)
    }

    // ----- writes -----

    /// Write one document change (insert: old None; delete: new None) with its index
    /// entries, unique checks and multikey flags, as one atomic batch.
    fn write_doc(
        &self,
        meta: &mut Arc<CollectionMeta>,
        ictx: &IndexCtx,
        old: Option<&Document>,
        new: Option<&Document>,
    ) -> Result<()> {
        let id = new
            .or(old)
            .and_then(|d| d.get("_id"))
            .cloned()
            .ok_or_else(|| Error::internal("document without _id"))?;
        let id_bytes = keycodec::encode(&id);
        let dkey = [meta.data_prefix().as_slice(), &id_bytes].concat();
        let mut batch = Batch::default();
        let snap = self.kv().snapshot()?;
        match new {
            Some(n) => {
                let bytes = encode_doc(n)?;
                check_size(&bytes)?;
                if old.is_none() && snap.get(&dkey)?.is_some() {
                    return Err(Self::dup_id_error(meta, &id));
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
                    let mut dup = false;
                    snap.scan(
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
                    if dup {
                        let src = new.unwrap_or(&Document::new()).clone();
                        return Err(self.dup_error(meta, ix, &src, k));
                    }
                }
                batch.put([ipfx.as_slice(), k, &id_bytes].concat(), Vec::new());
            }
            if multi && !ix.multikey {
                let nm = new_meta.get_or_insert_with(|| (**meta).clone());
                nm.indexes[i].multikey = true;
            }
        }
        match new_meta {
            None => self.kv().write(batch, self.sync()),
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
        let (meta, _) = self.get_or_create(db, coll)?;
        let lock = self.coll_lock(meta.id);
        let _l = lock.lock();
        let mut meta = self.relock_meta(db, coll, meta.id)?;
        let ictx = IndexCtx::new(&meta)?;
        let mut res = InsertResult::default();
        for (i, d) in docs.into_iter().enumerate() {
            let r = prepare_for_storage(d).and_then(|d| {
                self.write_doc(&mut meta, &ictx, None, Some(&d))?;
                Ok(d.get("_id").cloned().unwrap_or(Bson::Null))
            });
            match r {
                Ok(id) => {
                    res.n += 1;
                    res.inserted_ids.push(id);
                }
                Err(e) => {
                    res.write_errors.push(WriteError { index: i, error: e });
                    if ordered {
                        break;
                    }
                }
            }
        }
        Ok(res)
    }

    /// Matching documents (a snapshot read) for a write, honouring a sort.
    fn matching(
        &self,
        meta: &CollectionMeta,
        filter: &Document,
        sort: Option<&SortSpec>,
        hint: Option<&Bson>,
        limit: Option<usize>,
    ) -> Result<Vec<Document>> {
        let m = Matcher::new(filter)?;
        let stats = Arc::new(ExecStats::default());
        let (src, sorted) = self.source(meta, filter, sort, hint, stats)?;
        let mut it: DocIter = Box::new(src.filter(move |r| match r {
            Ok(d) => m.matches(d).unwrap_or(false),
            Err(_) => true,
        }));
        if let (Some(s), false) = (sort, sorted) {
            let mut sorter = ExternalSorter::new(s.clone(), self.spill_config(None));
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
                    &self.spill_config(None),
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
        Ok(d)
    }

    fn update_one_stmt(
        &self,
        meta: &mut Arc<CollectionMeta>,
        ictx: &IndexCtx,
        op: &UpdateOp,
        res: &mut UpdateResult,
        idx: usize,
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
        for old in docs {
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
        let needs_create = ops.iter().any(|o| o.upsert);
        let meta = if needs_create {
            Some(self.get_or_create(db, coll)?.0)
        } else {
            self.meta(db, coll)
        };
        let mut res = UpdateResult::default();
        let Some(meta) = meta else {
            // Still validate statements so parse errors surface.
            for (i, op) in ops.iter().enumerate() {
                if let Err(e) =
                    Matcher::new(&op.q).and_then(|_| Self::parse_update(&op.u, &op.array_filters))
                {
                    res.write_errors.push(WriteError { index: i, error: e });
                    if ordered {
                        break;
                    }
                }
            }
            return Ok(res);
        };
        let lock = self.coll_lock(meta.id);
        let _l = lock.lock();
        let mut meta = self.relock_meta(db, coll, meta.id)?;
        let ictx = IndexCtx::new(&meta)?;
        for (i, op) in ops.iter().enumerate() {
            if let Err(e) = self.update_one_stmt(&mut meta, &ictx, op, &mut res, i) {
                res.write_errors.push(WriteError { index: i, error: e });
                if ordered {
                    break;
                }
            }
        }
        Ok(res)
    }

    /// `delete`.
    pub fn delete(
        &self,
        db: &str,
        coll: &str,
        ops: Vec<DeleteOp>,
        ordered: bool,
    ) -> Result<DeleteResult> {
        let mut res = DeleteResult::default();
        let Some(meta) = self.meta(db, coll) else {
            for (i, op) in ops.iter().enumerate() {
                if let Err(e) = Matcher::new(&op.q) {
                    res.write_errors.push(WriteError { index: i, error: e });
                    if ordered {
                        break;
                    }
                }
            }
            return Ok(res);
        };
        let lock = self.coll_lock(meta.id);
        let _l = lock.lock();
        let mut meta = self.relock_meta(db, coll, meta.id)?;
        let ictx = IndexCtx::new(&meta)?;
        for (i, op) in ops.iter().enumerate() {
            let r = (|| -> Result<u64> {
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
                )?;
                let mut n = 0;
                for d in docs {
                    self.write_doc(&mut meta, &ictx, Some(&d), None)?;
                    n += 1;
                }
                Ok(n)
            })();
            match r {
                Ok(n) => res.n += n,
                Err(e) => {
                    res.write_errors.push(WriteError { index: i, error: e });
                    if ordered {
                        break;
                    }
                }
            }
        }
        Ok(res)
    }

    /// `findAndModify`.
    pub fn find_and_modify(
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
            .matching(&meta, &opts.query, sort.as_ref(), None, Some(1))?
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

    // ----- reads -----

    fn scan_iter(
        &self,
        meta: &CollectionMeta,
        snap: Arc<dyn crate::kv::KvSnapshot>,
        s: planner::IndexScan,
        stats: Arc<ExecStats>,
    ) -> DocIter {
        match s.index {
            None => cursor::coll_scan(
                snap,
                meta.data_prefix(),
                Some(s.ranges),
                s.reverse,
                stats,
                true,
            ),
            Some(ix) => {
                let ip = index_prefix(ix.id);
                cursor::index_scan(snap, ix, ip, meta.data_prefix(), s.ranges, s.reverse, stats)
            }
        }
    }

    /// The document source for a filter: returns the iterator and whether it already
    /// yields documents in `sort` order.
    fn source(
        &self,
        meta: &CollectionMeta,
        filter: &Document,
        sort: Option<&SortSpec>,
        hint: Option<&Bson>,
        stats: Arc<ExecStats>,
    ) -> Result<(DocIter, bool)> {
        let access = planner::plan(meta, filter, sort, hint)?;
        let snap = self.kv().snapshot()?;
        Ok(match access {
            Access::Or(scans) => {
                let mut parts: Vec<DocIter> = Vec::with_capacity(scans.len());
                for s in scans {
                    parts.push(self.scan_iter(meta, snap.clone(), s, stats.clone()));
                }
                let mut seen: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
                let it = parts.into_iter().flatten().filter(move |r| match r {
                    Ok(d) => seen.insert(keycodec::encode(d.get("_id").unwrap_or(&Bson::Null))),
                    Err(_) => true,
                });
                (Box::new(it) as DocIter, false)
            }
            Access::CollScan { reverse } => (
                cursor::coll_scan(snap, meta.data_prefix(), None, reverse, stats, false),
                false,
            ),
            Access::Index(s) => {
                let sorted = s.provides_sort;
                match s.index {
                    None => (
                        cursor::coll_scan(
                            snap,
                            meta.data_prefix(),
                            Some(s.ranges),
                            s.reverse,
                            stats,
                            true,
                        ),
                        sorted,
                    ),
                    Some(ix) => {
                        let ip = index_prefix(ix.id);
                        (
                            cursor::index_scan(
                                snap,
                                ix,
                                ip,
                                meta.data_prefix(),
                                s.ranges,
                                s.reverse,
                                stats,
                            ),
                            sorted,
                        )
                    }
                }
            }
        })
    }

    fn find_iter(
        &self,
        meta: &CollectionMeta,
        opts: &FindOptions,
        stats: Arc<ExecStats>,
    ) -> Result<DocIter> {
        let m = Matcher::new(&opts.filter)?;
        let sort = opts
            .sort
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(SortSpec::parse)
            .transpose()?;
        let proj = opts
            .projection
            .as_ref()
            .filter(|p| !p.is_empty())
            .map(|p| Projection::new(p).map(|p| p.with_query(&opts.filter)))
            .transpose()?;
        let (src, sorted) = self.source(
            meta,
            &opts.filter,
            sort.as_ref(),
            opts.hint.as_ref(),
            stats.clone(),
        )?;
        let mut it: DocIter = Box::new(src.filter_map(move |r| match r {
            Ok(d) => match m.matches(&d) {
                Ok(true) => Some(Ok(d)),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            },
            Err(e) => Some(Err(e)),
        }));
        if let (Some(s), false) = (sort, sorted) {
            let cfg = self.spill_config(opts.allow_disk_use);
            let k = if opts.limit > 0 {
                Some((opts.limit + opts.skip) as usize)
            } else {
                None
            };
            let input = it;
            let st = stats.clone();
            it = Box::new(LazySort {
                state: Some((s, cfg, k, input, st)),
                out: None,
            });
        }
        if opts.skip > 0 {
            it = Box::new(it.skip(opts.skip as usize));
        }
        if opts.limit > 0 {
            it = Box::new(it.take(opts.limit as usize));
        }
        if let Some(p) = proj {
            it = Box::new(it.map(move |r| r.and_then(|d| p.apply(&d))));
        }
        Ok(it)
    }

    /// `find`: a lazy cursor over a snapshot.
    pub fn find(&self, db: &str, coll: &str, opts: FindOptions) -> Result<Cursor> {
        let Some(meta) = self.meta(db, coll) else {
            // Validate anyway so malformed queries error even on missing collections.
            Matcher::new(&opts.filter)?;
            if let Some(p) = opts.projection.as_ref().filter(|p| !p.is_empty()) {
                Projection::new(p)?;
            }
            return Ok(Cursor::empty(ns(db, coll)));
        };
        let stats = Arc::new(ExecStats::default());
        let it = self.find_iter(&meta, &opts, stats.clone())?;
        Ok(Cursor::new(ns(db, coll), it, stats))
    }

    /// `count` (with optional skip/limit; 0 = none).
    pub fn count(
        &self,
        db: &str,
        coll: &str,
        filter: &Document,
        skip: u64,
        limit: u64,
    ) -> Result<u64> {
        let opts = FindOptions {
            filter: filter.clone(),
            skip,
            limit,
            ..Default::default()
        };
        let mut n = 0;
        for d in self.find(db, coll, opts)? {
            d?;
            n += 1;
        }
        Ok(n)
    }

    /// `distinct`: distinct values at `key` (arrays contribute their elements), in
    /// MongoDB's value order.
    pub fn distinct(
        &self,
        db: &str,
        coll: &str,
        key: &str,
        filter: &Document,
    ) -> Result<Vec<Bson>> {
        if key.is_empty() {
            return Err(Error::bad_value(
                "FieldPath cannot be constructed with empty string",
            ));
        }
        let p = path::split(key);
        let mut seen: std::collections::BTreeMap<Vec<u8>, Bson> = std::collections::BTreeMap::new();
        let opts = FindOptions {
            filter: filter.clone(),
            ..Default::default()
        };
        for d in self.find(db, coll, opts)? {
            let d = d?;
            for leaf in path::leaves(&d, &p).into_iter().flatten() {
                let vals: Vec<&Bson> = match leaf {
                    Bson::Array(a) => a.iter().collect(),
                    v => vec![v],
                };
                for v in vals {
                    seen.entry(keycodec::encode(v)).or_insert_with(|| v.clone());
                }
            }
        }
        Ok(seen.into_values().collect())
    }

    /// `aggregate`: a leading `$match` (and `$sort`) is planned against indexes.
    pub fn aggregate(
        &self,
        db: &str,
        coll: &str,
        pipeline: &[Document],
        opts: AggregateOptions,
    ) -> Result<Cursor> {
        let p = Pipeline::parse(pipeline)?;
        let cfg = self.spill_config(opts.allow_disk_use);
        let Some(meta) = self.meta(db, coll) else {
            return Ok(Cursor::new(
                ns(db, coll),
                p.run(Box::new(std::iter::empty()), &cfg),
                Arc::new(ExecStats::default()),
            ));
        };
        let mut p = p;
        let filter = match pipeline.first().and_then(|s| s.get("$match")) {
            Some(Bson::Document(f)) => f.clone(),
            _ => Document::new(),
        };
        // A $sort right after the leading $match (or first) may be served by an index.
        let sort_pos = if filter.is_empty()
            && !matches!(p.stages.first(), Some(crate::aggregate::Stage::Match(_)))
        {
            0
        } else {
            1
        };
        let sort = match p.stages.get(sort_pos) {
            Some(crate::aggregate::Stage::Sort(s)) => Some(s.clone()),
            _ => None,
        };
        let stats = Arc::new(ExecStats::default());
        let (src, sorted) = self.source(
            &meta,
            &filter,
            sort.as_ref(),
            opts.hint.as_ref(),
            stats.clone(),
        )?;
        if sorted && sort.is_some() {
            p.stages.remove(sort_pos);
        }
        Ok(Cursor::new(ns(db, coll), p.run(src, &cfg), stats))
    }

    /// `explain` of an aggregation: the access path of the leading `$match` as a `$cursor`
    /// stage (with its `queryPlanner`/`executionStats`), followed by the remaining stages.
    pub fn explain_aggregate(
        &self,
        db: &str,
        coll: &str,
        pipeline: &[Document],
        opts: AggregateOptions,
    ) -> Result<Document> {
        Pipeline::parse(pipeline)?;
        let (filter, rest) = match pipeline.first().and_then(|s| s.get("$match")) {
            Some(Bson::Document(f)) => (f.clone(), &pipeline[1..]),
            _ => (Document::new(), pipeline),
        };
        let cursor = self.explain_find(
            db,
            coll,
            FindOptions {
                filter,
                hint: opts.hint,
                ..Default::default()
            },
        )?;
        let mut stages = vec![Bson::Document(doc! {"$cursor": cursor})];
        stages.extend(rest.iter().cloned().map(Bson::Document));
        Ok(doc! {"explainVersion": "1", "stages": stages})
    }

    /// `explain` of a find, with `queryPlanner` and `executionStats`.
    pub fn explain_find(&self, db: &str, coll: &str, opts: FindOptions) -> Result<Document> {
        let namespace = ns(db, coll);
        let Some(meta) = self.meta(db, coll) else {
            return Ok(doc! {
                "queryPlanner": {"namespace": namespace, "parsedQuery": opts.filter.clone(), "winningPlan": {"stage": "EOF"}, "rejectedPlans": []},
                "executionStats": {"executionSuccess": true, "nReturned": 0, "executionTimeMillis": 0, "totalKeysExamined": 0, "totalDocsExamined": 0},
            });
        };
        let sort = opts
            .sort
            .as_ref()
            .filter(|s| !s.is_empty())
            .map(SortSpec::parse)
            .transpose()?;
        let access = planner::plan(&meta, &opts.filter, sort.as_ref(), opts.hint.as_ref())?;
        let (mut stage, sorted) = match &access {
            Access::CollScan { reverse } => (
                doc! {"stage": "COLLSCAN", "filter": opts.filter.clone(), "direction": if *reverse { "backward" } else { "forward" }},
                false,
            ),
            Access::Or(scans) => {
                let inputs: Vec<Bson> = scans
                    .iter()
                    .map(|s| Bson::Document(ixscan_doc(s)))
                    .collect();
                (
                    doc! {"stage": "FETCH", "filter": opts.filter.clone(), "inputStage": {"stage": "OR", "inputStages": inputs}},
                    false,
                )
            }
            Access::Index(s) => {
                let ix = doc! {
                    "stage": "IXSCAN",
                    "keyPattern": s.key_pattern.clone(),
                    "indexName": &s.name,
                    "isMultiKey": s.multikey,
                    "isUnique": s.index.as_ref().is_none_or(|i| i.unique),
                    "isSparse": s.index.as_ref().is_some_and(|i| i.sparse),
                    "isPartial": s.index.as_ref().is_some_and(|i| i.partial.is_some()),
                    "direction": if s.reverse { "backward" } else { "forward" },
                    "indexBounds": s.bounds.clone(),
                };
                (
                    doc! {"stage": "FETCH", "filter": opts.filter.clone(), "inputStage": ix},
                    s.provides_sort,
                )
            }
        };
        if let (Some(s), false) = (&opts.sort, sorted)
            && !s.is_empty()
        {
            stage = doc! {"stage": "SORT", "sortPattern": s.clone(), "memLimit": self.inner.cfg.sort_memory_limit as i64, "type": "simple", "inputStage": stage};
        }
        if opts.skip > 0 {
            stage = doc! {"stage": "SKIP", "skipAmount": opts.skip as i64, "inputStage": stage};
        }
        if opts.limit > 0 {
            stage = doc! {"stage": "LIMIT", "limitAmount": opts.limit as i64, "inputStage": stage};
        }
        if opts.projection.as_ref().is_some_and(|p| !p.is_empty()) {
            stage = doc! {"stage": "PROJECTION_DEFAULT", "transformBy": opts.projection.clone().unwrap_or_default(), "inputStage": stage};
        }
        let started = Instant::now();
        let stats = Arc::new(ExecStats::default());
        let mut returned = 0i64;
        for d in self.find_iter(&meta, &opts, stats.clone())? {
            d?;
            returned += 1;
        }
        let (keys, docs, _) = stats.get();
        Ok(doc! {
            "queryPlanner": {
                "plannerVersion": 1,
                "namespace": namespace,
                "indexFilterSet": false,
                "parsedQuery": opts.filter.clone(),
                "winningPlan": stage.clone(),
                "rejectedPlans": [],
            },
            "executionStats": {
                "executionSuccess": true,
                "nReturned": returned,
                "executionTimeMillis": started.elapsed().as_millis() as i64,
                "totalKeysExamined": keys as i64,
                "totalDocsExamined": docs as i64,
                "executionStages": stage,
            },
        })
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

    /// Document count and sizes of a collection (NamespaceNotFound 26 when missing).
    pub fn collection_stats(&self, db: &str, coll: &str) -> Result<CollectionStats> {
        let Some(meta) = self.meta(db, coll) else {
            return Err(Error::new(
                code::NAMESPACE_NOT_FOUND,
                format!("Collection [{}] not found.", ns(db, coll)),
            ));
        };
        let snap = self.kv().snapshot()?;
        let p = meta.data_prefix();
        let end = keycodec::prefix_end(&p);
        let (mut count, mut size) = (0u64, 0u64);
        snap.scan(
            std::ops::Bound::Included(&p),
            end.as_deref()
                .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
            false,
            &mut |_, v| {
                count += 1;
                size += v.len() as u64;
                Ok(true)
            },
        )?;
        let mut index_names = vec![ID_INDEX_NAME.to_string()];
        index_names.extend(meta.indexes.iter().map(|i| i.name.clone()));
        Ok(CollectionStats {
            count,
            size,
            avg_obj_size: size.checked_div(count).unwrap_or(0),
            nindexes: index_names.len(),
            index_names,
        })
    }

    /// The collection's metadata (uuid, options, indexes), if it exists.
    pub fn collection_info(&self, db: &str, coll: &str) -> Option<Arc<CollectionMeta>> {
        self.meta(db, coll)
    }
}

fn ixscan_doc(s: &planner::IndexScan) -> Document {
    doc! {
        "stage": "IXSCAN",
        "keyPattern": s.key_pattern.clone(),
        "indexName": &s.name,
        "isMultiKey": s.multikey,
        "direction": if s.reverse { "backward" } else { "forward" },
        "indexBounds": s.bounds.clone(),
    }
}

/// A blocking sort started on first `next()`.
type SortJob = (
    SortSpec,
    SpillConfig,
    Option<usize>,
    DocIter,
    Arc<ExecStats>,
);

struct LazySort {
    state: Option<SortJob>,
    out: Option<DocIter>,
}

impl Iterator for LazySort {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some((spec, cfg, k, input, stats)) = self.state.take() {
            let r = (|| -> Result<DocIter> {
                let mut s = ExternalSorter::new(spec, cfg);
                if let Some(k) = k {
                    s = s.with_limit(k);
                }
                for d in input {
                    s.push(d?)?;
                }
                stats
                    .spills
                    .fetch_add(s.spills as u64, std::sync::atomic::Ordering::Relaxed);
                s.finish()
            })();
            match r {
                Ok(it) => self.out = Some(it),
                Err(e) => return Some(Err(e)),
            }
        }
        self.out.as_mut()?.next()
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
