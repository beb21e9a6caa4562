//! Sort specifications (`{a: 1, "b.c": -1}`) and the comparator they define.
//!
//! The key of a document for one field is the set of values reachable through the path
//! (arrays expanded one level); an ascending sort uses the smallest of them and a
//! descending sort the largest, missing counts as `null`, and an empty array sorts below
//! `null` (MongoDB's documented array sort semantics).

use std::cmp::Ordering;

use bson::{Bson, Document};

use crate::error::{Error, Result};
use crate::numeric;
use crate::order;
use crate::path;

#[derive(Debug, Clone, PartialEq)]
pub struct SortSpec {
    pub fields: Vec<(String, bool)>,
    paths: Vec<Vec<String>>,
}

impl SortSpec {
    pub fn parse(spec: &Document) -> Result<SortSpec> {
        let mut fields = Vec::with_capacity(spec.len());
        for (k, v) in spec {
            if k.is_empty() || k.split('.').any(str::is_empty) {
                return Err(Error::bad_value(format!(
                    "FieldPath field names may not be empty strings: '{k}'"
                )));
            }
            let dir = match v {
                v if numeric::is_number(v) => numeric::to_f64(v).unwrap_or(0.0),
                Bson::Document(d) if d.contains_key("$meta") => {
                    return Err(Error::bad_value("$meta sort is not supported"));
                }
                _ => 0.0,
            };
            let asc = if dir == 1.0 {
                true
            } else if dir == -1.0 {
                false
            } else {
                return Err(Error::location(
                    15975,
                    "$sort key ordering must be 1 (for ascending) or -1 (for descending)",
                ));
            };
            fields.push((k.clone(), asc));
        }
        let paths = fields
            .iter()
            .map(|(f, _)| path::split(f))
            .collect::<Result<_>>()?;
        Ok(SortSpec { fields, paths })
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The sort key of a document.
    pub fn key(&self, doc: &Document) -> Vec<Bson> {
        self.paths
            .iter()
            .zip(self.fields.iter())
            .map(|(p, (_, asc))| {
                let vals = path::key_values(doc, p);
                pick(vals, *asc)
            })
            .collect()
    }

    pub fn compare_keys(&self, a: &[Bson], b: &[Bson]) -> Ordering {
        for ((x, y), (_, asc)) in a.iter().zip(b.iter()).zip(self.fields.iter()) {
            let o = order::cmp(x, y);
            let o = if *asc { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    pub fn compare_docs(&self, a: &Document, b: &Document) -> Ordering {
        self.compare_keys(&self.key(a), &self.key(b))
    }
}

fn pick(vals: Vec<Bson>, asc: bool) -> Bson {
    let mut it = vals.into_iter();
    let Some(mut best) = it.next() else {
        return Bson::Null;
    };
    for v in it {
        let o = order::cmp(&v, &best);
        if (asc && o == Ordering::Less) || (!asc && o == Ordering::Greater) {
            best = v;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn array_semantics() {
        let s = SortSpec::parse(&doc! {"a": 1}).unwrap();
        let mut docs = vec![
            doc! {"a": [5, 0]},
            doc! {"a": 1},
            doc! {},
            doc! {"a": []},
            doc! {"a": "s"},
        ];
        docs.sort_by(|x, y| s.compare_docs(x, y));
        assert_eq!(
            docs,
            vec![
                doc! {"a": []},
                doc! {},
                doc! {"a": [5, 0]},
                doc! {"a": 1},
                doc! {"a": "s"}
            ]
        );
        let s = SortSpec::parse(&doc! {"a": -1}).unwrap();
        let mut docs = [doc! {"a": [5, 0]}, doc! {"a": 3}];
        docs.sort_by(|x, y| s.compare_docs(x, y));
        assert_eq!(docs[0], doc! {"a": [5, 0]});
    }

    #[test]
    fn compound_and_errors() {
        let s = SortSpec::parse(&doc! {"a": 1, "b": -1}).unwrap();
        assert_eq!(
            s.compare_docs(&doc! {"a": 1, "b": 2}, &doc! {"a": 1, "b": 1}),
            Ordering::Less
        );
        assert_eq!(SortSpec::parse(&doc! {"a": 2}).unwrap_err().code, 15975);
    }
}
