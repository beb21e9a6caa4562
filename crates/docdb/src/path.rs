//! Dotted field paths with MongoDB's array semantics.
//!
//! Query matching walks a path through documents and, when it meets an array, either
//! indexes it (numeric component) or fans out into each element that is a document
//! (implicit traversal). The result is the list of *leaves* a predicate is tested against;
//! a leaf is `None` where the path is missing, because `{a: null}` matches missing fields.

use bson::{Bson, Document};

use crate::error::{Error, Result, code};

/// Most components a dotted path may have: MongoDB's `BSONDepth::getMaxAllowableDepth()`
/// (200), the bound of its `FieldPath`. Every path docdb takes from a client (filters,
/// projections, sorts, updates, index keys, aggregation field paths) is split or checked
/// here, so each walker that follows a path — several recurse once per component — does
/// at most this many steps.
pub const MAX_PARTS: usize = 200;

/// Refuses a path of more than [`MAX_PARTS`] components with MongoDB's error
/// (`Overflow`, "FieldPath is too long"). Counts dots without allocating.
pub fn check(path: &str) -> Result<()> {
    if path.bytes().filter(|&b| b == b'.').count() >= MAX_PARTS {
        return Err(Error::new(code::OVERFLOW, "FieldPath is too long"));
    }
    Ok(())
}

/// Split `"a.b.0"` into components, refusing more than [`MAX_PARTS`] of them.
pub fn split(path: &str) -> Result<Vec<String>> {
    check(path)?;
    Ok(path.split('.').map(str::to_string).collect())
}

/// Parse a component as an array index (digits only, as MongoDB requires).
pub fn as_index(c: &str) -> Option<usize> {
    if c.is_empty() || !c.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    c.parse().ok()
}

/// Leaves reachable through `path` for query matching. Document elements of an array
/// that lack the field yield a missing leaf; scalar elements yield nothing.
pub fn leaves<'a>(doc: &'a Document, path: &[String]) -> Vec<Option<&'a Bson>> {
    let mut out = Vec::new();
    match path.split_first() {
        None => {}
        Some((first, rest)) => match doc.get(first) {
            Some(v) => walk(v, rest, &mut out),
            None => out.push(None),
        },
    }
    out
}

fn walk<'a>(v: &'a Bson, rest: &[String], out: &mut Vec<Option<&'a Bson>>) {
    let Some((first, tail)) = rest.split_first() else {
        out.push(Some(v));
        return;
    };
    match v {
        Bson::Document(d) => match d.get(first) {
            Some(x) => walk(x, tail, out),
            None => out.push(None),
        },
        Bson::Array(arr) => {
            let before = out.len();
            if let Some(i) = as_index(first)
                && let Some(e) = arr.get(i)
            {
                walk(e, tail, out);
            }
            for e in arr {
                if let Bson::Document(d) = e {
                    match d.get(first) {
                        Some(x) => walk(x, tail, out),
                        None => {
                            if as_index(first).is_none() {
                                out.push(None)
                            }
                        }
                    }
                }
            }
            // Scalars inside an array contribute no leaf (so `{"a.b": null}` does not
            // match `a: [1, 2]` or `a: []`, as in MongoDB 8.0).
            let _ = before;
        }
        _ => out.push(None),
    }
}

/// Value of a path as an aggregation expression sees it (`"$a.b"`): arrays along the
/// path map to arrays of the sub-values (missing ones dropped); numeric components do not
/// index arrays.
pub fn expr_get(v: &Bson, path: &[String]) -> Option<Bson> {
    let Some((first, rest)) = path.split_first() else {
        return Some(v.clone());
    };
    match v {
        Bson::Document(d) => d.get(first).and_then(|x| expr_get(x, rest)),
        Bson::Array(arr) => {
            let items: Vec<Bson> = arr
                .iter()
                .filter(|e| matches!(e, Bson::Document(_) | Bson::Array(_)))
                .filter_map(|e| expr_get(e, path))
                .collect();
            Some(Bson::Array(items))
        }
        _ => None,
    }
}

/// Plain lookup without array fan-out (numeric components index arrays).
pub fn get<'a>(doc: &'a Document, path: &[String]) -> Option<&'a Bson> {
    let (first, rest) = path.split_first()?;
    let mut cur = doc.get(first)?;
    for c in rest {
        cur = match cur {
            Bson::Document(d) => d.get(c)?,
            Bson::Array(a) => a.get(as_index(c)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Values used for sort keys and index keys on a path: every leaf, with arrays expanded
/// one level; a missing path yields `null`.
pub fn key_values(doc: &Document, path: &[String]) -> Vec<Bson> {
    let mut out = Vec::new();
    for leaf in leaves(doc, path) {
        match leaf {
            None => out.push(Bson::Null),
            Some(Bson::Array(a)) if a.is_empty() => out.push(Bson::Undefined),
            Some(Bson::Array(a)) => out.extend(a.iter().cloned()),
            Some(v) => out.push(v.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn p(s: &str) -> Vec<String> {
        split(s).unwrap()
    }

    #[test]
    fn paths_longer_than_the_limit_are_refused() {
        let at_limit = vec!["a"; MAX_PARTS].join(".");
        assert_eq!(split(&at_limit).unwrap().len(), MAX_PARTS);
        let over = vec!["a"; MAX_PARTS + 1].join(".");
        assert_eq!(split(&over).unwrap_err().code, code::OVERFLOW.code);
        assert_eq!(split(&over).unwrap_err().errmsg, "FieldPath is too long");
    }

    #[test]
    fn traversal() {
        let d = doc! {"a": [{"b": 1}, {"b": [2, 3]}, 5, {"c": 1}]};
        let l = leaves(&d, &p("a.b"));
        assert_eq!(
            l,
            vec![
                Some(&Bson::Int32(1)),
                Some(&Bson::Array(vec![2.into(), 3.into()])),
                None
            ]
        );
        let d = doc! {"a": [10, 20]};
        assert_eq!(leaves(&d, &p("a.1")), vec![Some(&Bson::Int32(20))]);
        assert_eq!(leaves(&d, &p("x.y")), vec![None]);
        assert_eq!(get(&d, &p("a.0")), Some(&Bson::Int32(10)));
    }

    #[test]
    fn expression_paths_map_arrays() {
        let d = Bson::Document(doc! {"a": [{"b": 1}, {"c": 2}, {"b": 3}]});
        assert_eq!(
            expr_get(&d, &p("a.b")),
            Some(Bson::Array(vec![1.into(), 3.into()]))
        );
    }
}
