//! Index DDL on [`Db`]: `createIndexes` (with builds over existing documents),
//! `listIndexes`, `dropIndexes`.

use std::collections::HashMap;

use bson::{Bson, Document, doc};

use crate::catalog::{Catalog, CollectionMeta, garbage_key, index_prefix};
use crate::cursor::{self, RangeScan};
use crate::db::*;
use crate::error::{Error, Result, code, render_doc};
use crate::index::{ID_INDEX_NAME, IndexMeta};
use crate::keycodec;
use crate::kv::Batch;
use crate::matcher::Matcher;

impl Db {
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

    pub(crate) fn build_index(&self, meta: &CollectionMeta, ix: &mut IndexMeta) -> Result<()> {
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

    pub(crate) fn dup_error(
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

    pub(crate) fn dup_id_error(meta: &CollectionMeta, id: &Bson) -> Error {
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
}
