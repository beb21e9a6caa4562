//! Point lookups by `_id`: the fast path for `find({_id: <value>})`.
//!
//! A filter that is nothing but an equality on `_id` with a scalar value can match at
//! most one document, and that document lives at exactly one key:
//! `[data prefix][keycodec(value)]` (the encoding is canonical — `1`, `1.0` and
//! `NumberLong(1)` encode identically — so equal values always land on the same key).
//! Such a query needs no planner, no range scan over the LSM (which would copy every
//! version of a hot key out of the memtable), no cursor and no matcher over a stream:
//! one engine `get` answers it. [`crate::Db::source`] uses this for every read and write
//! that plans a filter, and [`Db::find_by_id`] serves the wire's `find` without decoding
//! the stored document at all when there is no projection.

use bson::{Bson, Document, RawDocumentBuf};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::keycodec;
use crate::matcher::Matcher;
use crate::order;
use crate::projection::Projection;

/// The `_id` value of a filter of the form `{_id: v}` or `{_id: {$eq: v}}` where `v` is a
/// scalar whose equality is byte equality of its key encoding. `None` for any other
/// filter (operators, several fields, documents, arrays, regexes, null, NaN, ...), which
/// then goes through the planner as before.
pub fn id_equality(filter: &Document) -> Option<&Bson> {
    if filter.len() != 1 {
        return None;
    }
    let v = match filter.get("_id")? {
        Bson::Document(d) if d.len() == 1 => d.get("$eq")?,
        v => v,
    };
    match v {
        Bson::String(_)
        | Bson::ObjectId(_)
        | Bson::Int32(_)
        | Bson::Int64(_)
        | Bson::Boolean(_)
        | Bson::DateTime(_)
        | Bson::Timestamp(_)
        | Bson::Binary(_) => Some(v),
        Bson::Double(f) if !f.is_nan() => Some(v),
        _ => None,
    }
}

/// The answer of [`Db::find_by_id`].
#[derive(Debug, Clone, PartialEq)]
pub enum PointRead {
    /// The filter is not an `_id` equality; run the general `find`.
    NotPoint,
    /// No document has this `_id` (or the collection does not exist).
    Missing,
    /// The document (projected if a projection was given), as BSON bytes.
    Found(RawDocumentBuf),
}

impl Db {
    /// The stored bytes of the document with `_id` equal to `id` in the collection whose
    /// data prefix is `data_prefix`: one engine `get` of the latest committed version.
    pub(crate) fn get_by_id(&self, data_prefix: &[u8], id: &Bson) -> Result<Option<Vec<u8>>> {
        let mut key = Vec::with_capacity(data_prefix.len() + 32);
        key.extend_from_slice(data_prefix);
        keycodec::encode_value(id, &mut key);
        self.kv().get(&key)
    }

    /// `find` with `filter` and `projection`, served by a single engine `get` when the
    /// filter is an `_id` equality ([`id_equality`]); [`PointRead::NotPoint`] otherwise.
    ///
    /// Returns exactly what `find(filter, projection)` would return as its (at most one)
    /// document, and fails exactly where it would: an invalid projection is an error also
    /// when the collection or the document does not exist. Without a projection the
    /// stored BSON is returned as is, never decoded.
    pub fn find_by_id(
        &self,
        db: &str,
        coll: &str,
        filter: &Document,
        projection: Option<&Document>,
    ) -> Result<PointRead> {
        let Some(id) = id_equality(filter) else {
            return Ok(PointRead::NotPoint);
        };
        let projection = projection
            .filter(|p| !p.is_empty())
            .map(|p| Projection::new(p).map(|p| p.with_query(filter)))
            .transpose()?;
        let Some(meta) = self.meta(db, coll) else {
            return Ok(PointRead::Missing);
        };
        let Some(bytes) = self.get_by_id(&meta.data_prefix(), id)? else {
            return Ok(PointRead::Missing);
        };
        let raw = RawDocumentBuf::from_bytes(bytes)
            .map_err(|e| Error::internal(format!("corrupt stored document: {e}")))?;
        match projection {
            None => {
                // The key encodes `_id` canonically, so the stored `_id` equals `id`; this
                // check costs one element lookup and keeps the path honest if it ever
                // did not.
                let stored = raw
                    .get("_id")
                    .map_err(|e| Error::internal(format!("corrupt stored document: {e}")))?
                    .map(Bson::try_from)
                    .transpose()
                    .map_err(|e| Error::internal(format!("corrupt stored document: {e}")))?;
                match stored {
                    Some(s) if order::eq(&s, id) => Ok(PointRead::Found(raw)),
                    _ => Ok(PointRead::Missing),
                }
            }
            Some(p) => {
                let doc = crate::cursor::decode_doc(raw.as_bytes())?;
                if !Matcher::new(filter)?.matches(&doc)? {
                    return Ok(PointRead::Missing);
                }
                let projected = p.apply(&doc)?;
                let bytes = projected
                    .to_vec()
                    .map_err(|e| Error::internal(format!("cannot encode document: {e}")))?;
                let raw = RawDocumentBuf::from_bytes(bytes)
                    .map_err(|e| Error::internal(format!("cannot encode document: {e}")))?;
                Ok(PointRead::Found(raw))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, oid::ObjectId};

    #[test]
    fn only_scalar_id_equalities_are_points() {
        let oid = ObjectId::new();
        assert_eq!(
            id_equality(&doc! {"_id": "k"}),
            Some(&Bson::String("k".into()))
        );
        assert_eq!(id_equality(&doc! {"_id": oid}), Some(&Bson::ObjectId(oid)));
        assert_eq!(
            id_equality(&doc! {"_id": {"$eq": 5}}),
            Some(&Bson::Int32(5))
        );
        assert_eq!(id_equality(&doc! {"_id": 2.5}), Some(&Bson::Double(2.5)));
        for f in [
            doc! {},
            doc! {"_id": "k", "a": 1},
            doc! {"a": "k"},
            doc! {"_id": {"$gt": 5}},
            doc! {"_id": {"$eq": 5, "$ne": 6}},
            doc! {"_id": {"a": 1}},
            doc! {"_id": {"$eq": {"a": 1}}},
            doc! {"_id": [1, 2]},
            doc! {"_id": Bson::Null},
            doc! {"_id": f64::NAN},
            doc! {"_id": {"$in": ["a"]}},
            doc! {"_id": bson::Regex { pattern: "^a".try_into().expect("cstr"), options: "".try_into().expect("cstr") }},
        ] {
            assert_eq!(id_equality(&f), None, "{f}");
        }
    }
}
