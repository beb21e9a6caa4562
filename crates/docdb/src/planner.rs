//! Query planning: pick an index (or a collection scan) for a filter and sort.
//!
//! Only top-level conjuncts are used for bounds: equality and `$in` on plain scalar or
//! document values become point intervals, `$gt/$gte/$lt/$lte` become ranges limited to the
//! operand's type bracket. A compound index takes points on its leading fields followed by
//! at most one range. Bounds are always a superset of the matching keys — the full filter
//! is re-applied to every fetched document — so planning can be conservative. On a
//! multikey index, two range predicates on one field are not intersected (different
//! elements may satisfy each). An index whose order matches the sort (after its equality
//! prefix) also removes the blocking SORT stage.

use bson::{Bson, Document, doc};

use crate::catalog::CollectionMeta;
use crate::error::{Error, Result, render};
use crate::index::{ID_INDEX_NAME, IndexMeta};
use crate::keycodec;
use crate::matcher::{self, CmpOp, InItem, Pred};
use crate::order;
use crate::sort::SortSpec;

/// A byte interval `[start, end)` within an index's key space (`end` None = unbounded).
pub type KeyRange = (Vec<u8>, Option<Vec<u8>>);

#[derive(Debug, Clone)]
pub struct IndexScan {
    /// None for the implicit `_id` index.
    pub index: Option<IndexMeta>,
    pub name: String,
    pub key_pattern: Document,
    pub ranges: Vec<KeyRange>,
    pub reverse: bool,
    pub provides_sort: bool,
    pub multikey: bool,
    pub bounds: Document,
}

#[derive(Debug, Clone)]
pub enum Access {
    CollScan {
        reverse: bool,
    },
    Index(Box<IndexScan>),
    /// A top-level `$or` whose every branch can use an index: the union of the branch
    /// scans, deduplicated by `_id`.
    Or(Vec<IndexScan>),
}

#[derive(Debug, Clone)]
struct Iv {
    lo: Option<(Vec<u8>, bool)>,
    hi: Option<(Vec<u8>, bool)>,
    point: bool,
    desc: String,
}

fn plannable(v: &Bson) -> bool {
    !matches!(
        v,
        Bson::Null
            | Bson::Undefined
            | Bson::Array(_)
            | Bson::RegularExpression(_)
            | Bson::MinKey
            | Bson::MaxKey
    )
}

fn point(v: &Bson) -> Iv {
    let e = keycodec::encode(v);
    Iv {
        lo: Some((e.clone(), true)),
        hi: Some((e, true)),
        point: true,
        desc: format!("[{0}, {0}]", render(v)),
    }
}

fn range(op: CmpOp, v: &Bson) -> Iv {
    let e = keycodec::encode(v);
    let b = vec![order::bracket(v)];
    let (lo, hi, desc) = match op {
        CmpOp::Gt => (
            Some((e, false)),
            Some((b, true)),
            format!("({}, MaxKey]", render(v)),
        ),
        CmpOp::Gte => (
            Some((e, true)),
            Some((b, true)),
            format!("[{}, MaxKey]", render(v)),
        ),
        CmpOp::Lt => (
            Some((b, true)),
            Some((e, false)),
            format!("[MinKey, {})", render(v)),
        ),
        CmpOp::Lte => (
            Some((b, true)),
            Some((e, true)),
            format!("[MinKey, {}]", render(v)),
        ),
    };
    Iv {
        lo,
        hi,
        point: false,
        desc,
    }
}

fn intervals_for(preds: &[&Pred], multikey: bool) -> Option<Vec<Iv>> {
    let mut ranges: Vec<Iv> = Vec::new();
    for p in preds {
        match p {
            Pred::Eq(v) if plannable(v) => return Some(vec![point(v)]),
            Pred::In(items) => {
                let vals: Option<Vec<&Bson>> = items
                    .iter()
                    .map(|i| match i {
                        InItem::Value(v) if plannable(v) => Some(v),
                        _ => None,
                    })
                    .collect();
                if let Some(mut vals) = vals {
                    vals.sort_by(|a, b| order::cmp(a, b));
                    vals.dedup_by(|a, b| order::eq(a, b));
                    return Some(vals.into_iter().map(point).collect());
                }
            }
            Pred::Cmp(op, v) if plannable(v) => ranges.push(range(*op, v)),
            _ => {}
        }
    }
    if ranges.is_empty() {
        for p in preds {
            if let Pred::Regex(re) = p
                && let Some(prefix) = literal_prefix(&re.pattern, &re.options)
            {
                // Strings starting with the prefix, plus the regex value itself (a regex
                // query also matches stored regexes with the same pattern).
                let mut lo = vec![order::bracket(&Bson::String(String::new()))];
                for b in prefix.bytes() {
                    if b == 0 {
                        lo.extend_from_slice(&[0x00, 0xFF]);
                    } else {
                        lo.push(b);
                    }
                }
                let strings = Iv {
                    lo: Some((lo.clone(), true)),
                    hi: Some((lo, true)),
                    point: false,
                    desc: format!("[\"{prefix}\", \"{prefix}~\")"),
                };
                let rv = Bson::RegularExpression(bson::Regex {
                    pattern: re.pattern.as_str().try_into().ok()?,
                    options: re.options.as_str().try_into().ok()?,
                });
                let mut self_point = point(&rv);
                self_point.point = false;
                return Some(vec![strings, self_point]);
            }
        }
    }
    if ranges.is_empty() {
        return None;
    }
    if multikey {
        return Some(vec![ranges.swap_remove(0)]);
    }
    let mut acc = ranges.remove(0);
    for r in ranges {
        let lo_new = match (&acc.lo, &r.lo) {
            (Some(a), Some(b)) => {
                if lo_eff(b) > lo_eff(a) {
                    Some(b.clone())
                } else {
                    Some(a.clone())
                }
            }
            (a, b) => a.clone().or(b.clone()),
        };
        let hi_new = match (&acc.hi, &r.hi) {
            (Some(a), Some(b)) => {
                if match (hi_eff(b), hi_eff(a)) {
                    (Some(x), Some(y)) => x < y,
                    (Some(_), None) => true,
                    _ => false,
                } {
                    Some(b.clone())
                } else {
                    Some(a.clone())
                }
            }
            (a, b) => a.clone().or(b.clone()),
        };
        acc = Iv {
            lo: lo_new,
            hi: hi_new,
            point: false,
            desc: format!("{} ∩ {}", acc.desc, r.desc),
        };
    }
    Some(vec![acc])
}

/// Effective inclusive start of a lower bound in ascending byte space.
fn lo_eff(b: &(Vec<u8>, bool)) -> Vec<u8> {
    if b.1 {
        b.0.clone()
    } else {
        keycodec::prefix_end(&b.0).unwrap_or_else(|| vec![0xFF; b.0.len() + 1])
    }
}

/// Effective exclusive end of an upper bound in ascending byte space (None = unbounded).
fn hi_eff(b: &(Vec<u8>, bool)) -> Option<Vec<u8>> {
    if b.1 {
        keycodec::prefix_end(&b.0)
    } else {
        Some(b.0.clone())
    }
}

/// The literal prefix every match of an anchored, case-sensitive regex starts with.
fn literal_prefix(pattern: &str, options: &str) -> Option<String> {
    if options.contains(['i', 'm', 'x']) {
        return None;
    }
    let rest = pattern
        .strip_prefix('^')
        .or_else(|| pattern.strip_prefix("\\A"))?;
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if ".^$*+?()[]{}|\\".contains(c) {
            // A quantifier makes the previous literal optional.
            if matches!(c, '*' | '?' | '{') {
                out.pop();
            }
            break;
        }
        if matches!(chars.peek(), Some('*' | '?' | '{')) {
            break;
        }
        out.push(c);
    }
    (!out.is_empty()).then_some(out)
}

fn invert(b: &[u8]) -> Vec<u8> {
    b.iter().map(|x| !x).collect()
}

/// Byte range of an interval for a field with the given direction.
fn to_bytes(iv: &Iv, asc: bool) -> (Vec<u8>, Option<Vec<u8>>) {
    if asc {
        let start = match &iv.lo {
            Some((b, true)) => b.clone(),
            Some((b, false)) => keycodec::prefix_end(b).unwrap_or_else(|| vec![0xFF; b.len() + 1]),
            None => Vec::new(),
        };
        let end = match &iv.hi {
            Some((b, true)) => keycodec::prefix_end(b),
            Some((b, false)) => Some(b.clone()),
            None => None,
        };
        (start, end)
    } else {
        let start = match &iv.hi {
            Some((b, true)) => invert(b),
            Some((b, false)) => {
                let i = invert(b);
                keycodec::prefix_end(&i).unwrap_or_else(|| vec![0xFF; i.len() + 1])
            }
            None => Vec::new(),
        };
        let end = match &iv.lo {
            Some((b, true)) => keycodec::prefix_end(&invert(b)),
            Some((b, false)) => Some(invert(b)),
            None => None,
        };
        (start, end)
    }
}

struct Candidate {
    scan: IndexScan,
    score: usize,
}

fn id_index_meta() -> IndexMeta {
    IndexMeta {
        id: 0,
        name: ID_INDEX_NAME.into(),
        key: doc! {"_id": 1},
        fields: vec![("_id".into(), true)],
        unique: true,
        sparse: false,
        partial: None,
        expire_after: None,
        multikey: false,
    }
}

fn partial_usable(partial: &Document, filter: &Document) -> bool {
    let mut conj: Vec<(String, Bson)> = Vec::new();
    flatten(filter, &mut conj, 0);
    let mut need: Vec<(String, Bson)> = Vec::new();
    flatten(partial, &mut need, 0);
    need.iter().all(|n| conj.contains(n))
}

/// The conjuncts of `d` through nested `$and`s. Nesting past the matcher's limit (which
/// refuses such filters anyway) is kept whole instead of followed.
fn flatten(d: &Document, out: &mut Vec<(String, Bson)>, level: usize) {
    for (k, v) in d {
        if k == "$and" && level < crate::depth::MAX_QUERY_TREE_DEPTH {
            if let Bson::Array(items) = v {
                for i in items {
                    if let Bson::Document(x) = i {
                        flatten(x, out, level + 1);
                    }
                }
            }
        } else {
            out.push((k.clone(), v.clone()));
        }
    }
}

fn build(
    ix: &IndexMeta,
    is_id: bool,
    preds: &[(String, Pred)],
    sort: Option<&SortSpec>,
) -> Candidate {
    let mut prefixes: Vec<Vec<u8>> = vec![Vec::new()];
    let mut ranges: Vec<KeyRange> = Vec::new();
    let mut bounds = Document::new();
    let mut score = 0;
    let mut single_points = 0;
    let mut done = false;
    let mut first_constrained = false;
    for (fi, (field, asc)) in ix.fields.iter().enumerate() {
        if done {
            bounds.insert(field.clone(), vec![Bson::String("[MinKey, MaxKey]".into())]);
            continue;
        }
        let fp: Vec<&Pred> = preds
            .iter()
            .filter(|(p, _)| p == field)
            .map(|(_, p)| p)
            .collect();
        match intervals_for(&fp, ix.multikey) {
            Some(ivs) if ivs.iter().all(|i| i.point) && prefixes.len() * ivs.len() <= 512 => {
                if fi == 0 {
                    first_constrained = true;
                }
                bounds.insert(
                    field.clone(),
                    ivs.iter()
                        .map(|i| Bson::String(i.desc.clone()))
                        .collect::<Vec<_>>(),
                );
                if ivs.len() == 1 && single_points == fi {
                    single_points += 1;
                }
                let mut next = Vec::new();
                for p in &prefixes {
                    for iv in &ivs {
                        let mut np = p.clone();
                        np.extend_from_slice(&to_bytes(iv, *asc).0);
                        next.push(np);
                    }
                }
                next.sort();
                prefixes = next;
                score += 2;
            }
            Some(ivs) if !ivs.iter().all(|i| i.point) => {
                if fi == 0 {
                    first_constrained = true;
                }
                bounds.insert(
                    field.clone(),
                    ivs.iter()
                        .map(|i| Bson::String(i.desc.clone()))
                        .collect::<Vec<_>>(),
                );
                for iv in &ivs {
                    let (s, e) = to_bytes(iv, *asc);
                    for p in &prefixes {
                        let start = [p.as_slice(), &s].concat();
                        let end = match &e {
                            Some(e) => Some([p.as_slice(), e].concat()),
                            None => keycodec::prefix_end(p),
                        };
                        ranges.push((start, end));
                    }
                }
                ranges.sort();
                score += 1;
                done = true;
            }
            _ => {
                bounds.insert(field.clone(), vec![Bson::String("[MinKey, MaxKey]".into())]);
                done = true;
            }
        }
    }
    if ranges.is_empty() {
        for p in &prefixes {
            let end = keycodec::prefix_end(p);
            ranges.push((p.clone(), end));
        }
    }
    // Drop empty ranges.
    ranges.retain(|(s, e)| e.as_ref().is_none_or(|e| s < e));
    let mut reverse = false;
    let mut provides_sort = false;
    if let Some(s) = sort
        && !s.is_empty()
        && !ix.multikey
    {
        let k = single_points;
        let tail = &ix.fields[k.min(ix.fields.len())..];
        if tail.len() >= s.fields.len()
            && tail
                .iter()
                .zip(s.fields.iter())
                .all(|((a, _), (b, _))| a == b)
        {
            let same = tail
                .iter()
                .zip(s.fields.iter())
                .all(|((_, x), (_, y))| x == y);
            let opposite = tail
                .iter()
                .zip(s.fields.iter())
                .all(|((_, x), (_, y))| x != y);
            if (same || opposite) && (prefixes.len() == 1 || k == ix.fields.len()) {
                provides_sort = true;
                reverse = opposite;
            }
        }
    }
    if (ix.sparse || ix.partial.is_some()) && !first_constrained {
        score = 0;
        provides_sort = false;
    }
    Candidate {
        scan: IndexScan {
            index: if is_id { None } else { Some(ix.clone()) },
            name: ix.name.clone(),
            key_pattern: ix.key.clone(),
            ranges,
            reverse,
            provides_sort,
            multikey: ix.multikey,
            bounds,
        },
        score,
    }
}

/// Choose an access path.
pub fn plan(
    meta: &CollectionMeta,
    filter: &Document,
    sort: Option<&SortSpec>,
    hint: Option<&Bson>,
) -> Result<Access> {
    let preds = matcher::top_level_fields(filter)?;
    let id_ix = id_index_meta();
    let mut all: Vec<(&IndexMeta, bool)> = vec![(&id_ix, true)];
    for ix in &meta.indexes {
        all.push((ix, false));
    }
    if let Some(h) = hint {
        let chosen = match h {
            Bson::String(name) => all.iter().find(|(ix, _)| ix.name == *name),
            Bson::Document(d) if d.contains_key("$natural") => {
                let rev = d
                    .get("$natural")
                    .and_then(crate::numeric::to_f64)
                    .is_some_and(|f| f < 0.0);
                return Ok(Access::CollScan { reverse: rev });
            }
            Bson::Document(d) => all.iter().find(|(ix, _)| ix.key == *d),
            _ => None,
        };
        let Some((ix, is_id)) = chosen else {
            return Err(Error::bad_value(
                "hint provided does not correspond to an existing index",
            ));
        };
        let mut c = build(ix, *is_id, &preds, sort);
        if c.scan.ranges.is_empty() && c.score == 0 {
            c.scan.ranges = vec![(Vec::new(), None)];
        }
        return Ok(Access::Index(Box::new(c.scan)));
    }
    let mut best: Option<Candidate> = None;
    for (ix, is_id) in all {
        if let Some(p) = &ix.partial
            && !partial_usable(p, filter)
        {
            continue;
        }
        let c = build(ix, is_id, &preds, sort);
        if c.score == 0 && !c.scan.provides_sort {
            continue;
        }
        let better = match &best {
            None => true,
            Some(b) => {
                (c.score, c.scan.provides_sort, ix.unique)
                    > (
                        b.score,
                        b.scan.provides_sort,
                        b.scan.index.as_ref().is_none_or(|i| i.unique),
                    )
            }
        };
        if better {
            best = Some(c);
        }
    }
    Ok(match best {
        Some(c) => Access::Index(Box::new(c.scan)),
        None => plan_or(meta, filter)?.unwrap_or(Access::CollScan { reverse: false }),
    })
}

/// Plan `{$or: [b1, b2, ...], rest...}` as a union of index scans, one per branch (each
/// branch planned together with the other top-level conditions). None when some branch
/// would need a collection scan.
fn plan_or(meta: &CollectionMeta, filter: &Document) -> Result<Option<Access>> {
    let Some(Bson::Array(branches)) = filter.get("$or") else {
        return Ok(None);
    };
    let mut scans = Vec::with_capacity(branches.len());
    for b in branches {
        let Bson::Document(bd) = b else {
            return Ok(None);
        };
        let mut combined = bd.clone();
        for (k, v) in filter {
            if k != "$or" && !combined.contains_key(k) {
                combined.insert(k.clone(), v.clone());
            }
        }
        match plan(meta, &combined, None, None)? {
            Access::Index(s) => scans.push(*s),
            _ => return Ok(None),
        }
    }
    Ok(if scans.is_empty() {
        None
    } else {
        Some(Access::Or(scans))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(indexes: Vec<Document>) -> CollectionMeta {
        CollectionMeta {
            db: "d".into(),
            name: "c".into(),
            id: 1,
            uuid: uuid::Uuid::nil(),
            options: Document::new(),
            indexes: indexes
                .into_iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut m = IndexMeta::parse_spec(&s).unwrap();
                    m.id = i as u64 + 10;
                    m
                })
                .collect(),
        }
    }

    fn chosen(m: &CollectionMeta, f: Document, s: Option<Document>) -> Option<String> {
        let sort = s.map(|s| SortSpec::parse(&s).unwrap());
        match plan(m, &f, sort.as_ref(), None).unwrap() {
            Access::CollScan { .. } => None,
            Access::Index(i) => Some(i.name),
            Access::Or(_) => Some("OR".into()),
        }
    }

    #[test]
    fn picks_indexes() {
        let m = meta(vec![
            doc! {"key": {"a": 1}, "name": "a_1"},
            doc! {"key": {"a": 1, "b": -1}, "name": "a_1_b_-1"},
            doc! {"key": {"s": 1}, "name": "s_1", "sparse": true},
        ]);
        assert_eq!(chosen(&m, doc! {"a": 5}, None).as_deref(), Some("a_1"));
        assert_eq!(
            chosen(&m, doc! {"a": 5, "b": {"$gt": 1}}, None).as_deref(),
            Some("a_1_b_-1")
        );
        assert_eq!(chosen(&m, doc! {"_id": 5}, None).as_deref(), Some("_id_"));
        assert_eq!(chosen(&m, doc! {"z": 5}, None), None);
        assert_eq!(chosen(&m, doc! {"a": null}, None), None);
        assert_eq!(
            chosen(&m, doc! {}, Some(doc! {"a": -1})).as_deref(),
            Some("a_1")
        );
        assert_eq!(chosen(&m, doc! {}, Some(doc! {"s": 1})), None);
        assert_eq!(
            chosen(&m, doc! {"s": {"$gt": 1}}, None).as_deref(),
            Some("s_1")
        );
        assert_eq!(
            chosen(&m, doc! {"a": {"$in": [1, 2]}}, None).as_deref(),
            Some("a_1")
        );
    }

    #[test]
    fn bounds_are_type_bracketed() {
        let m = meta(vec![doc! {"key": {"a": -1}, "name": "a_-1"}]);
        let Access::Index(s) = plan(&m, &doc! {"a": {"$gt": 5, "$lte": 10}}, None, None).unwrap()
        else {
            panic!()
        };
        assert_eq!(s.ranges.len(), 1);
        let (start, end) = &s.ranges[0];
        let key = |v: Bson| {
            let mut k = Vec::new();
            keycodec::encode_desc(&v, &mut k);
            k
        };
        let inside = |k: &Vec<u8>| k >= start && end.as_ref().is_none_or(|e| k < e);
        assert!(inside(&key(Bson::Int32(10))));
        assert!(inside(&key(Bson::Double(5.5))));
        assert!(!inside(&key(Bson::Int32(5))));
        assert!(!inside(&key(Bson::Int32(11))));
        assert!(!inside(&key(Bson::String("x".into()))));
    }
}
