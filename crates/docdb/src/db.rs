//! The public facade the wire layer calls: [`Db`].
//!
//! Concurrency: each collection has a write lock held for the whole of a write command
//! (so unique-index checks and multikey flags are race-free); catalog changes take the
//! catalog lock. Reads take an engine snapshot and never block writers.
//! Atomicity: each document write (document + all its index entries, plus any catalog
//! change such as setting a multikey flag) is one engine batch.

use std::collections::HashMap;
use std::sync::Arc;

use bson::{Bson, Document, doc};
use parking_lot::{Mutex, RwLock};

use crate::catalog::{self, Catalog, CollectionMeta, garbage_key, index_prefix};
use crate::error::{Error, Result, code};
use crate::index::ID_INDEX_NAME;
use crate::interrupt::Interrupt;
use crate::keycodec;
use crate::kv::{Batch, Kv, TempStore};
use crate::matcher::Matcher;
use crate::spill::{DEFAULT_MEMORY_LIMIT, SpillConfig};
use crate::tempquota::{DEFAULT_TEMP_DISK_QUOTA, TempQuota, TempUsage};

pub use crate::collection::prepare_for_storage;

/// Maximum BSON document size (16 MiB).
pub const MAX_DOC_SIZE: usize = 16 * 1024 * 1024;

/// Tunables.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Memory budget of a blocking sort before it spills to encrypted temp files.
    pub sort_memory_limit: usize,
    /// Sync the engine on every acknowledged write (default true).
    pub sync_writes: bool,
    /// Most bytes held in spill files at once, over all operations
    /// ([`crate::tempquota`]).
    pub temp_disk_quota: u64,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            sort_memory_limit: DEFAULT_MEMORY_LIMIT,
            sync_writes: true,
            temp_disk_quota: DEFAULT_TEMP_DISK_QUOTA,
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
    /// `maxTimeMS` (and later `killOp`): polled by the scans and blocking stages.
    pub interrupt: Interrupt,
}

/// `aggregate` options.
#[derive(Debug, Clone, Default)]
pub struct AggregateOptions {
    pub allow_disk_use: Option<bool>,
    pub hint: Option<Bson>,
    /// `maxTimeMS` (and later `killOp`): polled by the scans and blocking stages.
    pub interrupt: Interrupt,
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

/// Writes applied but not yet durable: see [`Db::try_update_now`] and [`Db::when_durable`].
#[derive(Debug, Clone, Copy)]
#[must_use = "a write is acknowledged only once its commit is durable"]
pub struct Commit(pub(crate) u64);

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
    /// `maxTimeMS`: bounds the search for the document to modify.
    pub interrupt: Interrupt,
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

pub(crate) struct Inner {
    pub(crate) kv: Arc<dyn Kv>,
    pub(crate) temp: Arc<TempQuota>,
    pub(crate) catalog: RwLock<Catalog>,
    pub(crate) catalog_lock: Mutex<()>,
    pub(crate) coll_locks: Mutex<HashMap<u64, Arc<Mutex<()>>>>,
    pub(crate) cfg: DbConfig,
}

/// The document database.
#[derive(Clone)]
pub struct Db {
    pub(crate) inner: Arc<Inner>,
}

/// Adapter so a shared `Kv` can serve as the spill `TempStore`.
struct KvTemp(Arc<dyn Kv>);

impl TempStore for KvTemp {
    fn temp_file(&self) -> Result<Box<dyn crate::kv::TempWrite>> {
        self.0.temp_file()
    }
}

pub(crate) fn ns(db: &str, coll: &str) -> String {
    format!("{db}.{coll}")
}

impl Db {
    /// Open on a `Kv` implementation (the real engine via [`Db::open`]).
    pub fn open_kv(kv: Arc<dyn Kv>, cfg: DbConfig) -> Result<Db> {
        let (catalog, garbage) = Catalog::load(kv.as_ref())?;
        let db = Db {
            inner: Arc::new(Inner {
                temp: Arc::new(TempQuota::new(
                    Arc::new(KvTemp(kv.clone())),
                    cfg.temp_disk_quota,
                )),
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

    /// Bytes now held in spill files, and the quota (`serverStatus`).
    pub fn temp_usage(&self) -> TempUsage {
        self.inner.temp.usage()
    }

    pub(crate) fn kv(&self) -> &dyn Kv {
        self.inner.kv.as_ref()
    }

    pub(crate) fn sync(&self) -> bool {
        self.inner.cfg.sync_writes
    }

    pub(crate) fn spill_config(
        &self,
        allow_disk_use: Option<bool>,
        interrupt: &Interrupt,
    ) -> SpillConfig {
        SpillConfig {
            interrupt: interrupt.clone(),
            memory_limit: self.inner.cfg.sort_memory_limit,
            allow_disk_use: allow_disk_use.unwrap_or(true),
            temp: Some(self.inner.temp.clone()),
        }
    }

    pub(crate) fn coll_lock(&self, id: u64) -> Arc<Mutex<()>> {
        self.inner
            .coll_locks
            .lock()
            .entry(id)
            .or_insert_with(|| Arc::new(Mutex::new(())))
            .clone()
    }

    /// The collection's metadata after taking its write lock, which must still belong to
    /// the same collection incarnation (`id`); a concurrent drop/recreate is reported.
    pub(crate) fn relock_meta(&self, db: &str, coll: &str, id: u64) -> Result<Arc<CollectionMeta>> {
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

    pub(crate) fn meta(&self, db: &str, coll: &str) -> Option<Arc<CollectionMeta>> {
        self.inner.catalog.read().get(db, coll)
    }

    /// Delete every key under `prefix`, then its garbage marker.
    pub(crate) fn purge(&self, prefix: &[u8]) -> Result<()> {
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

    pub(crate) fn create_collection_inner(
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

    pub(crate) fn get_or_create(
        &self,
        db: &str,
        coll: &str,
    ) -> Result<(Arc<CollectionMeta>, bool)> {
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
