//! Secondary indexes: specs, validation, and the keys a document produces.
//!
//! Entry layout: `[0x02][index id u64 BE][keycodec(key fields, per-field direction)]
//! [keycodec(_id)]` → empty value. An array on the indexed path yields one entry per
//! distinct element (multikey; an empty array indexes as `undefined`, a missing field as
//! `null`); at most one field of a compound key may be an array in a given document.
//! The `_id` index is implicit: documents themselves are keyed by `keycodec(_id)`.

use bson::{Bson, Document, doc};

use crate::error::{Error, Result, code, render_doc};
use crate::keycodec;
use crate::matcher::Matcher;
use crate::numeric;
use crate::path;

pub const ID_INDEX_NAME: &str = "_id_";

/// A secondary index's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexMeta {
    pub id: u64,
    pub name: String,
    /// The key pattern as given (`{a: 1, b: -1}`).
    pub key: Document,
    pub fields: Vec<(String, bool)>,
    pub unique: bool,
    pub sparse: bool,
    pub partial: Option<Document>,
    pub expire_after: Option<i64>,
    pub multikey: bool,
}

fn direction(v: &Bson) -> Result<bool> {
    match v {
        v if numeric::is_number(v) => {
            let f = numeric::to_f64(v).unwrap_or(0.0);
            if f > 0.0 {
                Ok(true)
            } else if f < 0.0 {
                Ok(false)
            } else {
                Err(Error::new(
                    code::CANNOT_CREATE_INDEX,
                    "Values in the index key pattern can't be all zeros",
                ))
            }
        }
        Bson::String(s) => Err(Error::new(
            code::CANNOT_CREATE_INDEX,
            format!("Index type '{s}' is not supported"),
        )),
        other => Err(Error::new(
            code::CANNOT_CREATE_INDEX,
            format!(
                "Values in index key pattern must be numbers, found {}",
                crate::error::type_name(other)
            ),
        )),
    }
}

/// Default index name: `a_1_b_-1`.
pub fn default_name(key: &Document) -> String {
    key.iter()
        .map(|(k, v)| {
            let d = match v {
                Bson::Int32(i) => i.to_string(),
                Bson::Int64(i) => i.to_string(),
                Bson::Double(f) if f.fract() == 0.0 => format!("{}", *f as i64),
                Bson::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("{k}_{d}")
        })
        .collect::<Vec<_>>()
        .join("_")
}

impl IndexMeta {
    /// Parse a `createIndexes` spec (`{key, name, unique, sparse, partialFilterExpression,
    /// expireAfterSeconds}`); `id` is assigned by the catalog.
    pub fn parse_spec(spec: &Document) -> Result<IndexMeta> {
        let key = match spec.get("key") {
            Some(Bson::Document(k)) if !k.is_empty() => k.clone(),
            Some(Bson::Document(_)) => {
                return Err(Error::new(
                    code::CANNOT_CREATE_INDEX,
                    "Index keys cannot be an empty field",
                ));
            }
            _ => {
                return Err(Error::failed_to_parse(
                    "The 'key' field is a required property of an index specification",
                ));
            }
        };
        let mut fields = Vec::with_capacity(key.len());
        for (k, v) in &key {
            path::check(k)?;
            if k.is_empty()
                || k.split('.').any(str::is_empty)
                || k.split('.').any(|c| c.starts_with('$'))
            {
                return Err(Error::new(
                    code::CANNOT_CREATE_INDEX,
                    format!("Index key contains an illegal field name: '{k}'"),
                ));
            }
            fields.push((k.clone(), direction(v)?));
        }
        let name = match spec.get("name") {
            Some(Bson::String(n)) if !n.is_empty() => n.clone(),
            Some(_) => {
                return Err(Error::type_mismatch(
                    "The field 'name' must be a non-empty string",
                ));
            }
            None => {
                return Err(Error::failed_to_parse(
                    "The 'name' field is a required property of an index specification",
                ));
            }
        };
        let flag = |f: &str| -> Result<bool> {
            match spec.get(f) {
                None => Ok(false),
                Some(Bson::Boolean(b)) => Ok(*b),
                Some(v) if numeric::is_number(v) => Ok(numeric::to_f64(v) != Some(0.0)),
                Some(_) => Err(Error::type_mismatch(format!(
                    "The field '{f}' must be a boolean"
                ))),
            }
        };
        let unique = flag("unique")?;
        let sparse = flag("sparse")?;
        let partial = match spec.get("partialFilterExpression") {
            None => None,
            Some(Bson::Document(p)) => {
                Matcher::new(p)?;
                Some(p.clone())
            }
            Some(_) => {
                return Err(Error::type_mismatch(
                    "The field 'partialFilterExpression' must be an object",
                ));
            }
        };
        if partial.is_some() && sparse {
            return Err(Error::new(
                code::CANNOT_CREATE_INDEX,
                "cannot mix \"partialFilterExpression\" and \"sparse\" options",
            ));
        }
        let expire_after = match spec.get("expireAfterSeconds") {
            None => None,
            Some(v) if numeric::is_number(v) => {
                let s = numeric::to_i64(v).unwrap_or(-1);
                if s < 0 {
                    return Err(Error::new(
                        code::CANNOT_CREATE_INDEX,
                        "TTL index 'expireAfterSeconds' option must be within an acceptable range",
                    ));
                }
                if fields.len() != 1 {
                    return Err(Error::new(
                        code::CANNOT_CREATE_INDEX,
                        "TTL indexes are single-field indexes, compound indexes do not support TTL",
                    ));
                }
                Some(s)
            }
            Some(_) => {
                return Err(Error::new(
                    code::CANNOT_CREATE_INDEX,
                    "TTL index 'expireAfterSeconds' option must be numeric",
                ));
            }
        };
        for k in spec.keys() {
            if !matches!(
                k.as_str(),
                "key"
                    | "name"
                    | "unique"
                    | "sparse"
                    | "partialFilterExpression"
                    | "expireAfterSeconds"
                    | "v"
                    | "background"
                    | "ns"
                    | "collation"
                    | "hidden"
            ) {
                return Err(Error::new(
                    code::INVALID_OPTIONS,
                    format!(
                        "The field '{k}' is not valid for an index specification. Specification: {}",
                        render_doc(spec)
                    ),
                ));
            }
        }
        if name == ID_INDEX_NAME || fields == [("_id".to_string(), true)] {
            return Err(Error::bad_value("_id index is implicit"));
        }
        Ok(IndexMeta {
            id: 0,
            name,
            key,
            fields,
            unique,
            sparse,
            partial,
            expire_after,
            multikey: false,
        })
    }

    /// Same key pattern and options (idempotent createIndexes).
    pub fn same_definition(&self, other: &IndexMeta) -> bool {
        self.fields == other.fields
            && self.unique == other.unique
            && self.sparse == other.sparse
            && self.partial == other.partial
            && self.expire_after == other.expire_after
    }

    /// Persisted form.
    pub fn to_doc(&self) -> Document {
        let mut d = self.list_doc();
        d.insert("id", self.id as i64);
        d.insert("multikey", self.multikey);
        d
    }

    pub fn from_doc(d: &Document) -> Result<IndexMeta> {
        let mut spec = d.clone();
        spec.remove("id");
        spec.remove("multikey");
        let mut m = IndexMeta::parse_spec(&spec)?;
        m.id = d
            .get_i64("id")
            .map_err(|_| Error::internal("corrupt index entry"))? as u64;
        m.multikey = d.get_bool("multikey").unwrap_or(false);
        Ok(m)
    }

    /// `listIndexes` form.
    pub fn list_doc(&self) -> Document {
        let mut d = doc! {"v": 2, "key": self.key.clone(), "name": &self.name};
        if self.unique {
            d.insert("unique", true);
        }
        if self.sparse {
            d.insert("sparse", true);
        }
        if let Some(p) = &self.partial {
            d.insert("partialFilterExpression", p.clone());
        }
        if let Some(s) = self.expire_after {
            d.insert("expireAfterSeconds", s);
        }
        d
    }

    pub fn ascending(&self) -> Vec<bool> {
        self.fields.iter().map(|(_, a)| *a).collect()
    }

    /// The encoded keys (without `_id`) that `doc` contributes, and whether the document
    /// makes the index multikey. Sparse/partial indexes may yield no keys.
    pub fn keys_for(
        &self,
        doc: &Document,
        partial: Option<&Matcher>,
    ) -> Result<(Vec<Vec<u8>>, bool)> {
        if let Some(m) = partial
            && !m.matches(doc)?
        {
            return Ok((Vec::new(), false));
        }
        let mut per_field: Vec<Vec<Bson>> = Vec::with_capacity(self.fields.len());
        let mut any_present = false;
        let mut multikey = false;
        let mut array_field: Option<&str> = None;
        for (f, _) in &self.fields {
            let p = path::split(f)?;
            let (vals, present, is_multi) = index_values(doc, &p);
            any_present |= present;
            if is_multi {
                if let Some(other) = array_field {
                    return Err(Error::new(
                        crate::error::ErrorCode {
                            code: 171,
                            name: "CannotIndexParallelArrays",
                        },
                        format!("cannot index parallel arrays [{f}] [{other}]"),
                    ));
                }
                array_field = Some(f);
                multikey = true;
            }
            per_field.push(vals);
        }
        if self.sparse && !any_present {
            return Ok((Vec::new(), false));
        }
        let asc = self.ascending();
        let mut keys: Vec<Vec<u8>> = vec![Vec::new()];
        for (vals, a) in per_field.iter().zip(asc.iter()) {
            let mut next = Vec::with_capacity(keys.len() * vals.len());
            for k in &keys {
                for v in vals {
                    let mut nk = k.clone();
                    if *a {
                        keycodec::encode_value(v, &mut nk);
                    } else {
                        keycodec::encode_desc(v, &mut nk);
                    }
                    next.push(nk);
                }
            }
            keys = next;
        }
        keys.sort();
        keys.dedup();
        Ok((keys, multikey))
    }

    /// Split an index entry key (after the 9-byte index prefix) into the key part and the
    /// encoded `_id`.
    pub fn split_entry<'a>(&self, rest: &'a [u8]) -> Result<(&'a [u8], &'a [u8])> {
        let mut pos = 0;
        for (_, asc) in &self.fields {
            pos += keycodec::encoded_len(&rest[pos..], !asc)?;
        }
        Ok(rest.split_at(pos))
    }

    /// The key values of `doc` for this index rendered as `{a: 1}` (duplicate-key info).
    pub fn key_value_doc(&self, doc: &Document, key_bytes: &[u8]) -> Document {
        // Find the field values that produced `key_bytes` by re-encoding candidates.
        let mut out = Document::new();
        let mut pos = 0;
        for (f, asc) in &self.fields {
            // Index fields were checked when the index was created.
            let Ok(p) = path::split(f) else { continue };
            let (vals, _, _) = index_values(doc, &p);
            let mut chosen = Bson::Null;
            for v in vals {
                let mut enc = Vec::new();
                if *asc {
                    keycodec::encode_value(&v, &mut enc);
                } else {
                    keycodec::encode_desc(&v, &mut enc);
                }
                if key_bytes.get(pos..pos + enc.len()) == Some(enc.as_slice()) {
                    pos += enc.len();
                    chosen = v;
                    break;
                }
            }
            out.insert(f.clone(), chosen);
        }
        out
    }
}

/// Values to index at a path: (values, any present, traversed or hit an array).
pub fn index_values(doc: &Document, p: &[String]) -> (Vec<Bson>, bool, bool) {
    let leaves = path::leaves(doc, p);
    let present = leaves.iter().any(Option::is_some);
    let mut multi = leaves.len() > 1;
    for i in 1..p.len() {
        if path::leaves(doc, &p[..i])
            .iter()
            .any(|l| matches!(l, Some(Bson::Array(_))))
        {
            multi = true;
        }
    }
    let mut vals: Vec<Bson> = Vec::new();
    if leaves.is_empty() {
        // e.g. "a.b" over `a: [1, 2]`: indexed like a missing field.
        vals.push(Bson::Null);
    }
    for leaf in leaves {
        match leaf {
            None => vals.push(Bson::Null),
            Some(Bson::Array(a)) => {
                multi = true;
                if a.is_empty() {
                    vals.push(Bson::Undefined);
                } else {
                    vals.extend(a.iter().cloned());
                }
            }
            Some(v) => vals.push(v.clone()),
        }
    }
    (vals, present, multi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(spec: Document) -> IndexMeta {
        IndexMeta::parse_spec(&spec).unwrap()
    }

    #[test]
    fn multikey_and_sparse() {
        let i = idx(doc! {"key": {"a": 1}, "name": "a_1"});
        let (k, m) = i.keys_for(&doc! {"a": [1, 2, 2]}, None).unwrap();
        assert_eq!(k.len(), 2);
        assert!(m);
        let (k, m) = i.keys_for(&doc! {"b": 1}, None).unwrap();
        assert_eq!(k, vec![keycodec::encode(&Bson::Null)]);
        assert!(!m);
        let s = idx(doc! {"key": {"a": 1}, "name": "a_1", "sparse": true});
        assert!(s.keys_for(&doc! {"b": 1}, None).unwrap().0.is_empty());
        let c = idx(doc! {"key": {"a": 1, "b": 1}, "name": "ab"});
        assert_eq!(
            c.keys_for(&doc! {"a": [1, 2], "b": [3]}, None)
                .unwrap_err()
                .code,
            171
        );
        let (k, _) = c.keys_for(&doc! {"a": [1, 2], "b": 3}, None).unwrap();
        assert_eq!(k.len(), 2);
        let (first, id) = c
            .split_entry(&[k[0].clone(), keycodec::encode(&Bson::Int32(7))].concat())
            .map(|(a, b)| (a.to_vec(), b.to_vec()))
            .unwrap();
        assert_eq!(first, k[0]);
        assert_eq!(id, keycodec::encode(&Bson::Int32(7)));
        assert_eq!(
            c.key_value_doc(&doc! {"a": [1, 2], "b": 3}, &k[1]),
            doc! {"a": 2, "b": 3}
        );
    }

    #[test]
    fn spec_validation() {
        assert_eq!(default_name(&doc! {"a": 1, "b": -1}), "a_1_b_-1");
        assert_eq!(
            IndexMeta::parse_spec(&doc! {"key": {"a": "text"}, "name": "t"})
                .unwrap_err()
                .code,
            67
        );
        assert_eq!(
            IndexMeta::parse_spec(&doc! {"key": {"a": 1}, "name": "x", "bogus": 1})
                .unwrap_err()
                .code,
            72
        );
        assert_eq!(
            IndexMeta::parse_spec(
                &doc! {"key": {"a": 1, "b": 1}, "name": "x", "expireAfterSeconds": 5}
            )
            .unwrap_err()
            .code,
            67
        );
        let i = idx(doc! {"key": {"a": 1}, "name": "a_1", "unique": true});
        assert_eq!(IndexMeta::from_doc(&i.to_doc()).unwrap(), i);
    }
}
