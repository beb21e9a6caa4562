//! The catalog: which collections exist, their ids, options and indexes.
//!
//! Persisted in the engine under the reserved prefix `0x00`:
//! - `00 'c' <db> 00 <coll>` → BSON [`CollectionMeta`]
//! - `00 'n'` → next id (u64 BE) for collections and indexes
//! - `00 'g' <prefix>` → a *garbage marker*: a key range being deleted (dropped
//!   collection, index, or an index build in progress). Markers are written in the same
//!   batch that makes the range unreachable (or before a build starts) and removed when the
//!   purge finishes; [`Catalog::load`] returns the markers left by a crash so the
//!   database can finish the purge on open.
//!
//! The whole catalog is cached in memory; every change is written durably (`Sync`).

use std::collections::BTreeMap;
use std::sync::Arc;

use bson::{Bson, Document, doc};

use crate::error::{Error, Result, code};
use crate::index::IndexMeta;
use crate::kv::{Batch, Kv};

pub const CATALOG_PREFIX: u8 = 0x00;
pub const DATA_PREFIX: u8 = 0x01;
pub const INDEX_PREFIX: u8 = 0x02;

/// One collection's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionMeta {
    pub db: String,
    pub name: String,
    pub id: u64,
    pub uuid: uuid::Uuid,
    pub options: Document,
    pub indexes: Vec<IndexMeta>,
}

impl CollectionMeta {
    pub fn ns(&self) -> String {
        format!("{}.{}", self.db, self.name)
    }

    /// `[0x01][id]` — prefix of this collection's documents.
    pub fn data_prefix(&self) -> Vec<u8> {
        data_prefix(self.id)
    }

    pub fn to_doc(&self) -> Document {
        doc! {
            "db": &self.db,
            "name": &self.name,
            "id": self.id as i64,
            "uuid": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: self.uuid.as_bytes().to_vec() },
            "options": self.options.clone(),
            "indexes": self.indexes.iter().map(|i| Bson::Document(i.to_doc())).collect::<Vec<_>>(),
        }
    }

    pub fn from_doc(d: &Document) -> Result<CollectionMeta> {
        let bad = |what: &str| Error::internal(format!("corrupt catalog entry: {what}"));
        let uuid = match d.get("uuid") {
            Some(Bson::Binary(b)) => uuid::Uuid::from_slice(&b.bytes).map_err(|_| bad("uuid"))?,
            _ => return Err(bad("uuid")),
        };
        let mut indexes = Vec::new();
        if let Ok(arr) = d.get_array("indexes") {
            for i in arr {
                if let Bson::Document(idoc) = i {
                    indexes.push(IndexMeta::from_doc(idoc)?);
                }
            }
        }
        Ok(CollectionMeta {
            db: d.get_str("db").map_err(|_| bad("db"))?.to_string(),
            name: d.get_str("name").map_err(|_| bad("name"))?.to_string(),
            id: d.get_i64("id").map_err(|_| bad("id"))? as u64,
            uuid,
            options: d.get_document("options").cloned().unwrap_or_default(),
            indexes,
        })
    }

    pub fn index(&self, name: &str) -> Option<&IndexMeta> {
        self.indexes.iter().find(|i| i.name == name)
    }
}

pub fn data_prefix(id: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(9);
    p.push(DATA_PREFIX);
    p.extend_from_slice(&id.to_be_bytes());
    p
}

pub fn index_prefix(id: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(9);
    p.push(INDEX_PREFIX);
    p.extend_from_slice(&id.to_be_bytes());
    p
}

pub fn entry_key(db: &str, coll: &str) -> Vec<u8> {
    let mut k = vec![CATALOG_PREFIX, b'c'];
    k.extend_from_slice(db.as_bytes());
    k.push(0);
    k.extend_from_slice(coll.as_bytes());
    k
}

pub fn garbage_key(prefix: &[u8]) -> Vec<u8> {
    let mut k = vec![CATALOG_PREFIX, b'g'];
    k.extend_from_slice(prefix);
    k
}

const NEXT_ID_KEY: [u8; 2] = [CATALOG_PREFIX, b'n'];

/// Validate a database name (MongoDB's rules for names).
pub fn validate_db_name(db: &str) -> Result<()> {
    if db.is_empty()
        || db.len() >= 64
        || db
            .chars()
            .any(|c| matches!(c, '/' | '\\' | '.' | ' ' | '"' | '$' | '\0'))
    {
        return Err(Error::new(
            code::INVALID_NAMESPACE,
            format!("Invalid database name: '{db}'"),
        ));
    }
    Ok(())
}

/// Validate a collection name.
pub fn validate_coll_name(db: &str, coll: &str) -> Result<()> {
    validate_db_name(db)?;
    if coll.is_empty() || coll.contains('\0') || coll.starts_with('.') || coll.contains('$') {
        return Err(Error::new(
            code::INVALID_NAMESPACE,
            format!("Invalid collection name: {coll}"),
        ));
    }
    if db.len() + 1 + coll.len() > 255 {
        return Err(Error::new(
            code::INVALID_NAMESPACE,
            format!("Fully qualified namespace is too long. Namespace: {db}.{coll}"),
        ));
    }
    Ok(())
}

/// In-memory catalog image.
pub struct Catalog {
    pub colls: BTreeMap<(String, String), Arc<CollectionMeta>>,
    pub next_id: u64,
}

impl Catalog {
    /// Load the catalog and any leftover garbage markers.
    pub fn load(kv: &dyn Kv) -> Result<(Catalog, Vec<Vec<u8>>)> {
        let snap = kv.snapshot()?;
        let mut colls = BTreeMap::new();
        let mut garbage = Vec::new();
        let start = [CATALOG_PREFIX];
        let end = [CATALOG_PREFIX + 1];
        snap.scan(
            std::ops::Bound::Included(&start),
            std::ops::Bound::Excluded(&end),
            false,
            &mut |k, v| {
                match k.get(1) {
                    Some(b'c') => {
                        let d = crate::rawdoc::decode(v)
                            .map_err(|e| Error::internal(format!("corrupt catalog entry: {e}")))?;
                        let m = CollectionMeta::from_doc(&d)?;
                        colls.insert((m.db.clone(), m.name.clone()), Arc::new(m));
                    }
                    Some(b'g') => garbage.push(k[2..].to_vec()),
                    _ => {}
                }
                Ok(true)
            },
        )?;
        let next_id = match snap.get(&NEXT_ID_KEY)? {
            Some(v) if v.len() == 8 => u64::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| Error::internal("bad id counter"))?,
            ),
            _ => 1,
        };
        Ok((Catalog { colls, next_id }, garbage))
    }

    /// Reserve a fresh id, adding the counter update to `batch`.
    pub fn alloc_id(&mut self, batch: &mut Batch) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        batch.put(NEXT_ID_KEY.to_vec(), self.next_id.to_be_bytes().to_vec());
        id
    }

    pub fn get(&self, db: &str, coll: &str) -> Option<Arc<CollectionMeta>> {
        self.colls.get(&(db.to_string(), coll.to_string())).cloned()
    }

    /// Stage the catalog entry write in `batch`; call [`Catalog::cache`] after commit.
    pub fn stage_put(meta: &CollectionMeta, batch: &mut Batch) -> Result<()> {
        let bytes = meta
            .to_doc()
            .to_vec()
            .map_err(|e| Error::internal(format!("catalog encode: {e}")))?;
        batch.put(entry_key(&meta.db, &meta.name), bytes);
        Ok(())
    }

    /// Record a committed entry in the cache.
    pub fn cache(&mut self, meta: CollectionMeta) -> Arc<CollectionMeta> {
        let m = Arc::new(meta);
        self.colls.insert((m.db.clone(), m.name.clone()), m.clone());
        m
    }

    /// Forget a committed removal.
    pub fn uncache(&mut self, db: &str, coll: &str) -> Option<Arc<CollectionMeta>> {
        self.colls.remove(&(db.to_string(), coll.to_string()))
    }
}
