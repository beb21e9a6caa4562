//! Update documents: operator updates (`$set`, `$inc`, `$push`, ...), replacements, and
//! upsert seed construction.
//!
//! Paths may contain the positional `$` (first array element matched by the query),
//! `$[]` (every element) and `$[<id>]` (elements matching `arrayFilters`). Errors carry
//! MongoDB's codes: 40 for conflicting paths, 66 for `_id` changes, 14 for type mismatches
//! such as `$inc` on a string, 28 when a path cannot be created, 9 for unknown modifiers.

use std::cmp::Ordering;

use bson::{Bson, Document, Timestamp};

use crate::error::{Error, Result, code, render, render_doc, type_name};
use crate::matcher::{self, Matcher, Pred};
use crate::numeric;
use crate::order;
use crate::path;
use crate::sort::SortSpec;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Comp {
    Field(String),
    Positional,
    All,
    Filtered(String),
}

#[derive(Debug, Clone)]
enum OpKind {
    Set(Bson),
    SetOnInsert(Bson),
    Unset,
    Inc(Bson),
    Mul(Bson),
    Min(Bson),
    Max(Bson),
    CurrentDate(bool),
    Rename(Vec<String>, String),
    Push(PushSpec),
    AddToSet(Vec<Bson>),
    Pop(bool),
    Pull(PullCond),
    PullAll(Vec<Bson>),
}

#[derive(Debug, Clone)]
struct PushSpec {
    each: Vec<Bson>,
    slice: Option<i64>,
    sort: Option<PushSort>,
    position: Option<i64>,
}

#[derive(Debug, Clone)]
enum PushSort {
    Value(bool),
    Fields(SortSpec),
}

#[derive(Debug, Clone)]
enum PullCond {
    Value(Bson),
    Pred(Pred),
    Doc(Box<Matcher>),
}

#[derive(Debug, Clone)]
pub struct OpEntry {
    name: &'static str,
    raw: String,
    comps: Vec<Comp>,
    kind: OpKind,
}

/// A parsed update.
#[derive(Debug, Clone)]
pub enum Update {
    Replacement(Document),
    Ops {
        ops: Vec<OpEntry>,
        array_filters: Vec<(String, Matcher)>,
    },
}

/// What applying an update needs to know about its context.
pub struct ApplyContext<'a> {
    /// True when the document is being inserted by an upsert (`$setOnInsert` applies).
    pub is_insert: bool,
    /// The query filter, to resolve the positional `$` operator.
    pub query: Option<&'a Document>,
}

fn parse_path(raw: &str) -> Result<Vec<Comp>> {
    if raw.is_empty() {
        return Err(Error::new(
            code::EMPTY_FIELD_NAME,
            "An empty update path is not valid.",
        ));
    }
    path::check(raw)?;
    raw.split('.')
        .map(|c| {
            if c.is_empty() {
                Err(Error::new(code::EMPTY_FIELD_NAME, format!("The update path '{raw}' contains an empty field name, which is not allowed.")))
            } else if c == "$" {
                Ok(Comp::Positional)
            } else if c == "$[]" {
                Ok(Comp::All)
            } else if let Some(id) = c.strip_prefix("$[").and_then(|r| r.strip_suffix(']')) {
                Ok(Comp::Filtered(id.to_string()))
            } else {
                Ok(Comp::Field(c.to_string()))
            }
        })
        .collect()
}

fn parse_push(name: &str, arg: &Bson) -> Result<PushSpec> {
    let Bson::Document(d) = arg else {
        return Ok(PushSpec {
            each: vec![arg.clone()],
            slice: None,
            sort: None,
            position: None,
        });
    };
    if !d.contains_key("$each") {
        return Ok(PushSpec {
            each: vec![arg.clone()],
            slice: None,
            sort: None,
            position: None,
        });
    }
    let mut spec = PushSpec {
        each: Vec::new(),
        slice: None,
        sort: None,
        position: None,
    };
    for (k, v) in d {
        match k.as_str() {
            "$each" => match v {
                Bson::Array(a) => spec.each = a.clone(),
                other => {
                    return Err(Error::bad_value(format!(
                        "The argument to $each in {name} must be an array but it was of type: {}",
                        type_name(other)
                    )));
                }
            },
            "$slice" if name == "$push" => spec.slice = Some(
                numeric::to_i64(v)
                    .filter(|_| numeric::is_number(v))
                    .ok_or_else(|| {
                        Error::bad_value(format!(
                            "The value for $slice must be an integer value but was given type: {}",
                            type_name(v)
                        ))
                    })?,
            ),
            "$position" if name == "$push" => {
                spec.position = Some(
                    numeric::to_i64(v)
                        .filter(|_| numeric::is_number(v))
                        .ok_or_else(|| {
                            Error::bad_value(format!(
                                "The value for $position must be an integer value, not of type: {}",
                                type_name(v)
                            ))
                        })?,
                )
            }
            "$sort" if name == "$push" => {
                spec.sort = Some(match v {
                    Bson::Document(sd) => {
                        if sd.is_empty() {
                            return Err(Error::bad_value(
                                "The $sort pattern is empty when it should be a set of fields.",
                            ));
                        }
                        PushSort::Fields(
                            SortSpec::parse(sd).map_err(|e| Error::bad_value(e.errmsg))?,
                        )
                    }
                    v if numeric::to_f64(v) == Some(1.0) => PushSort::Value(true),
                    v if numeric::to_f64(v) == Some(-1.0) => PushSort::Value(false),
                    _ => {
                        return Err(Error::bad_value(
                            "The $sort is invalid: use 1/-1 to sort the whole element, or {field:1/-1} to sort embedded fields",
                        ));
                    }
                })
            }
            other => {
                return Err(Error::bad_value(format!(
                    "Unrecognized clause in {name}: {other}"
                )));
            }
        }
    }
    Ok(spec)
}

impl Update {
    /// Parse an update document (`{$set: ...}` or a replacement) plus `arrayFilters`.
    pub fn parse(update: &Document, array_filters: &[Document]) -> Result<Update> {
        let is_ops = update.keys().next().is_some_and(|k| k.starts_with('$'));
        if !is_ops {
            for k in update.keys() {
                if k.starts_with('$') {
                    return Err(Error::new(
                        code::DOLLAR_PREFIXED_FIELD_NAME,
                        format!(
                            "The dollar ($) prefixed field '{k}' in '{k}' is not allowed in the context of an update's replacement document. Consider using an aggregation pipeline with $replaceWith."
                        ),
                    ));
                }
            }
            if !array_filters.is_empty() {
                return Err(Error::failed_to_parse(
                    "arrayFilters may not be specified for replacement updates",
                ));
            }
            return Ok(Update::Replacement(update.clone()));
        }
        let mut ops = Vec::new();
        for (op, arg) in update {
            let name: &'static str = match op.as_str() {
                "$set" => "$set",
                "$unset" => "$unset",
                "$inc" => "$inc",
                "$mul" => "$mul",
                "$min" => "$min",
                "$max" => "$max",
                "$rename" => "$rename",
                "$setOnInsert" => "$setOnInsert",
                "$currentDate" => "$currentDate",
                "$push" => "$push",
                "$addToSet" => "$addToSet",
                "$pop" => "$pop",
                "$pull" => "$pull",
                "$pullAll" => "$pullAll",
                other => {
                    return Err(Error::failed_to_parse(format!(
                        "Unknown modifier: {other}. Expected a valid update modifier or pipeline-style update specified as an array"
                    )));
                }
            };
            let Bson::Document(fields) = arg else {
                return Err(Error::failed_to_parse(format!(
                    "Modifiers operate on fields but we found type {} instead. For example: {{$mod: {{<field>: ...}}}} not {{{op}: {}}}",
                    type_name(arg),
                    render(arg)
                )));
            };
            for (field, v) in fields {
                let comps = parse_path(field)?;
                let kind = match name {
                    "$set" => OpKind::Set(v.clone()),
                    "$setOnInsert" => OpKind::SetOnInsert(v.clone()),
                    "$unset" => OpKind::Unset,
                    "$inc" | "$mul" => {
                        if !numeric::is_number(v) {
                            let verb = if name == "$inc" {
                                "increment"
                            } else {
                                "multiply"
                            };
                            return Err(Error::type_mismatch(format!(
                                "Cannot {verb} with non-numeric argument: {{{field}: {}}}",
                                render(v)
                            )));
                        }
                        if name == "$inc" {
                            OpKind::Inc(v.clone())
                        } else {
                            OpKind::Mul(v.clone())
                        }
                    }
                    "$min" => OpKind::Min(v.clone()),
                    "$max" => OpKind::Max(v.clone()),
                    "$currentDate" => match v {
                        Bson::Boolean(_) => OpKind::CurrentDate(false),
                        Bson::Document(d) => match d.get("$type") {
                            Some(Bson::String(t)) if t == "date" => OpKind::CurrentDate(false),
                            Some(Bson::String(t)) if t == "timestamp" => OpKind::CurrentDate(true),
                            _ => {
                                return Err(Error::bad_value(
                                    "The '$type' string field is required to be 'date' or 'timestamp': {$currentDate: {field : {$type: 'date'}}}",
                                ));
                            }
                        },
                        other => {
                            return Err(Error::bad_value(format!(
                                "{} is not valid type for $currentDate. Please use a boolean ('true') or a $type expression ({{$type: 'timestamp/date'}}).",
                                type_name(other)
                            )));
                        }
                    },
                    "$rename" => {
                        let Bson::String(to) = v else {
                            return Err(Error::bad_value(format!(
                                "The 'to' field for $rename must be a string: {field}: {}",
                                render(v)
                            )));
                        };
                        if to == field {
                            return Err(Error::bad_value(format!(
                                "The source and target field for $rename must differ: {field}: \"{to}\""
                            )));
                        }
                        let to_comps = parse_path(to)?;
                        if comps
                            .iter()
                            .chain(to_comps.iter())
                            .any(|c| !matches!(c, Comp::Field(_)))
                        {
                            return Err(Error::bad_value(
                                "The source field for $rename may not be dynamic",
                            ));
                        }
                        OpKind::Rename(path::split(to)?, to.clone())
                    }
                    "$push" => OpKind::Push(parse_push(name, v)?),
                    "$addToSet" => OpKind::AddToSet(parse_push(name, v)?.each),
                    "$pop" => {
                        let n = numeric::to_f64(v).filter(|_| numeric::is_number(v));
                        match n {
                            Some(x) if x > 0.0 && x.fract() == 0.0 && x as i64 == 1 => {
                                OpKind::Pop(true)
                            }
                            Some(x) if x < 0.0 && x.fract() == 0.0 && x as i64 == -1 => {
                                OpKind::Pop(false)
                            }
                            _ => {
                                return Err(Error::failed_to_parse(format!(
                                    "$pop expects 1 or -1, found: {}",
                                    render(v)
                                )));
                            }
                        }
                    }
                    "$pull" => OpKind::Pull(match v {
                        Bson::Document(d)
                            if d.keys().next().is_some_and(|k| {
                                k.starts_with('$')
                                    && !matches!(k.as_str(), "$and" | "$or" | "$nor" | "$expr")
                            }) =>
                        {
                            PullCond::Pred(matcher::parse_field_value(v)?)
                        }
                        Bson::Document(d) => PullCond::Doc(Box::new(Matcher::new(d)?)),
                        Bson::RegularExpression(_) => {
                            PullCond::Pred(matcher::parse_field_value(v)?)
                        }
                        other => PullCond::Value(other.clone()),
                    }),
                    "$pullAll" => match v {
                        Bson::Array(a) => OpKind::PullAll(a.clone()),
                        other => {
                            return Err(Error::bad_value(format!(
                                "$pullAll requires an array argument but was given a {}",
                                type_name(other)
                            )));
                        }
                    },
                    _ => return Err(Error::internal(format!("unhandled update operator {name}"))),
                };
                ops.push(OpEntry {
                    name,
                    raw: field.clone(),
                    comps,
                    kind,
                });
            }
        }
        check_conflicts(&ops)?;
        // MongoDB 5.0+ applies update paths in lexicographic order (numeric components in
        // numeric order), which decides where new fields land in the document.
        ops.sort_by(|a, b| cmp_paths(&a.comps, &b.comps));
        let mut filters = Vec::new();
        for f in array_filters {
            let Some(first) = f.keys().next() else {
                return Err(Error::failed_to_parse(
                    "Cannot use an expression without a top-level field name in arrayFilters",
                ));
            };
            let id = first.split('.').next().unwrap_or("").to_string();
            for k in f.keys() {
                if k.split('.').next() != Some(id.as_str()) {
                    return Err(Error::failed_to_parse(format!(
                        "Error parsing array filter :: caused by :: Expected a single top-level field name, found '{id}' and '{}'",
                        k.split('.').next().unwrap_or("")
                    )));
                }
            }
            if filters.iter().any(|(i, _): &(String, Matcher)| *i == id) {
                return Err(Error::failed_to_parse(format!(
                    "Found multiple array filters with the same top-level field name {id}"
                )));
            }
            filters.push((id, Matcher::new(f)?));
        }
        let used: Vec<&String> = ops
            .iter()
            .flat_map(|o| o.comps.iter())
            .filter_map(|c| {
                if let Comp::Filtered(id) = c {
                    Some(id)
                } else {
                    None
                }
            })
            .collect();
        for o in &ops {
            for c in &o.comps {
                if let Comp::Filtered(id) = c
                    && !filters.iter().any(|(i, _)| i == id)
                {
                    return Err(Error::bad_value(format!(
                        "No array filter found for identifier '{id}' in path '{}'",
                        o.raw
                    )));
                }
            }
        }
        for (id, _) in &filters {
            if !used.contains(&id) {
                return Err(Error::failed_to_parse(format!(
                    "The array filter for identifier '{id}' was not used in the update {}",
                    render_doc(update)
                )));
            }
        }
        Ok(Update::Ops {
            ops,
            array_filters: filters,
        })
    }

    pub fn is_replacement(&self) -> bool {
        matches!(self, Update::Replacement(_))
    }

    /// Apply to `doc`, returning the new document. `_id` may not change.
    pub fn apply(&self, doc: &Document, ctx: &ApplyContext) -> Result<Document> {
        let out = match self {
            Update::Replacement(r) => {
                let mut out = Document::new();
                match (doc.get("_id"), r.get("_id")) {
                    (Some(old), Some(new)) if !ctx.is_insert && !bitwise_same(old, new) => {
                        return Err(Error::new(
                            code::IMMUTABLE_FIELD,
                            format!(
                                "After applying the update, the (immutable) field '_id' was found to have been altered to _id: {}",
                                render(new)
                            ),
                        ));
                    }
                    (Some(old), _) => {
                        out.insert("_id", old.clone());
                    }
                    (None, Some(new)) => {
                        out.insert("_id", new.clone());
                    }
                    (None, None) => {}
                }
                for (k, v) in r {
                    if k != "_id" {
                        out.insert(k.clone(), v.clone());
                    }
                }
                out
            }
            Update::Ops { ops, array_filters } => {
                let mut root = Bson::Document(doc.clone());
                for op in ops {
                    if matches!(op.kind, OpKind::SetOnInsert(_)) && !ctx.is_insert {
                        continue;
                    }
                    let comps = resolve_positional(&op.comps, doc, ctx.query, &op.raw)?;
                    apply_op(&mut root, op, &comps, array_filters, doc)?;
                }
                let Bson::Document(out) = root else {
                    return Err(Error::internal("update root is not a document"));
                };
                if !ctx.is_insert
                    && let Some(old) = doc.get("_id")
                    && out.get("_id").is_none_or(|n| !bitwise_same(n, old))
                {
                    return Err(Error::new(
                        code::IMMUTABLE_FIELD,
                        "Performing an update on the path '_id' would modify the immutable field '_id'",
                    ));
                }
                out
            }
        };
        Ok(out)
    }
}

/// `_id` must be preserved exactly (same type and value).
fn bitwise_same(a: &Bson, b: &Bson) -> bool {
    a == b || (order::eq(a, b) && std::mem::discriminant(a) == std::mem::discriminant(b))
}

fn comp_str(c: &Comp) -> String {
    match c {
        Comp::Field(f) => f.clone(),
        Comp::Positional => "$".into(),
        Comp::All => "$[]".into(),
        Comp::Filtered(i) => format!("$[{i}]"),
    }
}

fn cmp_paths(a: &[Comp], b: &[Comp]) -> Ordering {
    for (x, y) in a.iter().zip(b.iter()) {
        let (x, y) = (comp_str(x), comp_str(y));
        let o = match (path::as_index(&x), path::as_index(&y)) {
            (Some(i), Some(j)) => i.cmp(&j),
            _ => x.cmp(&y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

fn check_conflicts(ops: &[OpEntry]) -> Result<()> {
    let mut targets: Vec<String> = Vec::new();
    for o in ops {
        targets.push(o.comps.iter().map(comp_str).collect::<Vec<_>>().join("."));
        if let OpKind::Rename(_, to) = &o.kind {
            targets.push(to.clone());
        }
    }
    for (i, a) in targets.iter().enumerate() {
        for b in &targets[..i] {
            let conflict =
                a == b || a.starts_with(&format!("{b}.")) || b.starts_with(&format!("{a}."));
            if conflict {
                let (longer, shorter) = if a.len() >= b.len() { (a, b) } else { (b, a) };
                return Err(Error::new(
                    code::CONFLICTING_UPDATE_OPERATORS,
                    format!("Updating the path '{longer}' would create a conflict at '{shorter}'"),
                ));
            }
        }
    }
    Ok(())
}

/// Replace the positional `$` with the index of the first array element matched by the
/// query conditions on that array's path.
fn resolve_positional(
    comps: &[Comp],
    doc: &Document,
    query: Option<&Document>,
    raw: &str,
) -> Result<Vec<Comp>> {
    let Some(pos) = comps.iter().position(|c| *c == Comp::Positional) else {
        return Ok(comps.to_vec());
    };
    let not_found = || {
        Error::bad_value("The positional operator did not find the match needed from the query.")
    };
    let prefix: Vec<String> = comps[..pos]
        .iter()
        .map(|c| {
            if let Comp::Field(f) = c {
                Ok(f.clone())
            } else {
                Err(Error::bad_value(format!(
                    "Too many positional (i.e. '$') elements found in path '{raw}'"
                )))
            }
        })
        .collect::<Result<_>>()?;
    let Some(query) = query else {
        return Err(not_found());
    };
    match first_matching_index(doc, &prefix, query)? {
        Some(i) => {
            let mut out = comps.to_vec();
            out[pos] = Comp::Field(i.to_string());
            Ok(out)
        }
        None => Err(not_found()),
    }
}

/// Index of the first element of the array at `prefix` that satisfies the query's
/// conditions on that array (what the positional `$` refers to, in updates and
/// projections). None when the path is not an array or the query has no condition on it.
pub fn first_matching_index(
    doc: &Document,
    prefix: &[String],
    query: &Document,
) -> Result<Option<usize>> {
    let Some(Bson::Array(arr)) = path::get(doc, prefix) else {
        return Ok(None);
    };
    let prefix_str = prefix.join(".");
    let conds: Vec<(Vec<String>, Pred)> = matcher::top_level_fields(query)?
        .into_iter()
        .filter(|(p, _)| *p == prefix_str || p.starts_with(&format!("{prefix_str}.")))
        .map(|(p, pred)| Ok((path::split(&p)?, pred)))
        .collect::<Result<_>>()?;
    if conds.is_empty() {
        return Ok(None);
    }
    for (i, e) in arr.iter().enumerate() {
        // Evaluate each condition against a copy whose array holds just this element.
        let mut probe = Document::new();
        set_plain(&mut probe, prefix, Bson::Array(vec![e.clone()]));
        let mut all = true;
        for (p, pred) in &conds {
            if !matcher::pred_matches_doc(pred, &probe, p)? {
                all = false;
                break;
            }
        }
        if all {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

fn set_plain(doc: &mut Document, p: &[String], v: Bson) {
    if p.len() == 1 {
        doc.insert(p[0].clone(), v);
        return;
    }
    let entry = doc
        .entry(p[0].clone())
        .or_insert_with(|| Bson::Document(Document::new()));
    if !matches!(entry, Bson::Document(_)) {
        *entry = Bson::Document(Document::new());
    }
    if let Bson::Document(d) = entry {
        set_plain(d, &p[1..], v);
    }
}

enum Leaf {
    Set(Bson),
    Unset,
    Keep,
}

/// Whether an operator creates missing path components.
fn creates(kind: &OpKind) -> bool {
    !matches!(
        kind,
        OpKind::Unset | OpKind::Pop(_) | OpKind::Pull(_) | OpKind::PullAll(_)
    )
}

fn apply_op(
    root: &mut Bson,
    op: &OpEntry,
    comps: &[Comp],
    filters: &[(String, Matcher)],
    orig: &Document,
) -> Result<()> {
    if let OpKind::Rename(to, _) = &op.kind {
        let from: Vec<String> = comps.iter().map(comp_str).collect();
        let Bson::Document(d) = root else {
            return Ok(());
        };
        let Some(v) = take_plain(d, &from)? else {
            return Ok(());
        };
        let to_comps: Vec<Comp> = to.iter().cloned().map(Comp::Field).collect();
        let mut f = |_: Option<&Bson>| -> Result<Leaf> { Ok(Leaf::Set(v.clone())) };
        return walk(root, &to_comps, true, filters, &mut f, &op.raw);
    }
    let id = orig.get("_id").cloned();
    let field = op.raw.clone();
    let name = op.name;
    let mut f = |cur: Option<&Bson>| -> Result<Leaf> {
        leaf_action(&op.kind, name, &field, cur, id.as_ref())
    };
    walk(root, comps, creates(&op.kind), filters, &mut f, &op.raw)
}

/// Remove and return the value at a plain path (for `$rename`); arrays are not traversed.
fn take_plain(doc: &mut Document, p: &[String]) -> Result<Option<Bson>> {
    if p.len() == 1 {
        return Ok(doc.remove(&p[0]));
    }
    match doc.get_mut(&p[0]) {
        Some(Bson::Document(d)) => take_plain(d, &p[1..]),
        Some(Bson::Array(_)) => Err(Error::bad_value(format!(
            "The source field cannot be an array element, '{}' in doc with {} set to an array",
            p.join("."),
            p[0]
        ))),
        _ => Ok(None),
    }
}

fn id_str(id: Option<&Bson>) -> String {
    id.map(|i| format!("{{_id: {}}}", render(i)))
        .unwrap_or_else(|| "{}".into())
}

fn leaf_action(
    kind: &OpKind,
    name: &str,
    field: &str,
    cur: Option<&Bson>,
    id: Option<&Bson>,
) -> Result<Leaf> {
    Ok(match kind {
        OpKind::Set(v) | OpKind::SetOnInsert(v) => Leaf::Set(v.clone()),
        OpKind::Unset => Leaf::Unset,
        OpKind::Inc(n) | OpKind::Mul(n) => {
            let is_inc = matches!(kind, OpKind::Inc(_));
            match cur {
                None => Leaf::Set(if is_inc {
                    n.clone()
                } else {
                    numeric::zero_like(n)
                }),
                Some(c) if numeric::is_number(c) => {
                    let r = if is_inc {
                        numeric::add(c, n)
                    } else {
                        numeric::mul(c, n)
                    };
                    Leaf::Set(r.ok_or_else(|| Error::internal("numeric operation failed"))?)
                }
                Some(c) => {
                    let verb = if is_inc { "$inc" } else { "$mul" };
                    return Err(Error::type_mismatch(format!(
                        "Cannot apply {verb} to a value of non-numeric type. {} has the field '{}' of non-numeric type {}",
                        id_str(id),
                        field.rsplit('.').next().unwrap_or(field),
                        type_name(c)
                    )));
                }
            }
        }
        OpKind::Min(v) | OpKind::Max(v) => match cur {
            None => Leaf::Set(v.clone()),
            Some(c) => {
                let o = order::cmp(v, c);
                let replace = if matches!(kind, OpKind::Min(_)) {
                    o == Ordering::Less
                } else {
                    o == Ordering::Greater
                };
                if replace {
                    Leaf::Set(v.clone())
                } else {
                    Leaf::Keep
                }
            }
        },
        OpKind::CurrentDate(ts) => {
            let now = bson::DateTime::now();
            Leaf::Set(if *ts {
                Bson::Timestamp(Timestamp {
                    time: (now.timestamp_millis() / 1000) as u32,
                    increment: 1,
                })
            } else {
                Bson::DateTime(now)
            })
        }
        OpKind::Rename(..) => Leaf::Keep,
        OpKind::Push(spec) => {
            let mut arr = match cur {
                None => Vec::new(),
                Some(Bson::Array(a)) => a.clone(),
                Some(other) => {
                    return Err(Error::bad_value(format!(
                        "The field '{field}' must be an array but is of type {} in document {}",
                        type_name(other),
                        id_str(id)
                    )));
                }
            };
            let len = arr.len() as i64;
            let at = match spec.position {
                None => len,
                Some(p) if p < 0 => (len + p).max(0),
                Some(p) => p.min(len),
            } as usize;
            let tail = arr.split_off(at);
            arr.extend(spec.each.iter().cloned());
            arr.extend(tail);
            match &spec.sort {
                Some(PushSort::Value(asc)) => arr.sort_by(|a, b| {
                    if *asc {
                        order::cmp(a, b)
                    } else {
                        order::cmp(b, a)
                    }
                }),
                Some(PushSort::Fields(s)) => arr.sort_by(|a, b| {
                    let empty = Document::new();
                    let da = if let Bson::Document(d) = a { d } else { &empty };
                    let db = if let Bson::Document(d) = b { d } else { &empty };
                    s.compare_docs(da, db)
                }),
                None => {}
            }
            if let Some(s) = spec.slice {
                if s >= 0 {
                    arr.truncate(s as usize);
                } else {
                    let keep = s.unsigned_abs() as usize;
                    if arr.len() > keep {
                        arr.drain(..arr.len() - keep);
                    }
                }
            }
            Leaf::Set(Bson::Array(arr))
        }
        OpKind::AddToSet(each) => {
            let mut arr = match cur {
                None => Vec::new(),
                Some(Bson::Array(a)) => a.clone(),
                Some(other) => {
                    return Err(Error::bad_value(format!(
                        "Cannot apply $addToSet to non-array field. Field named '{}' has non-array type {}",
                        field.rsplit('.').next().unwrap_or(field),
                        type_name(other)
                    )));
                }
            };
            let before = arr.len();
            for v in each {
                if !arr.iter().any(|x| order::eq(x, v) && same_shape(x, v)) {
                    arr.push(v.clone());
                }
            }
            if cur.is_some() && arr.len() == before {
                Leaf::Keep
            } else {
                Leaf::Set(Bson::Array(arr))
            }
        }
        OpKind::Pop(last) => match cur {
            None => Leaf::Keep,
            Some(Bson::Array(a)) => {
                let mut a = a.clone();
                if a.is_empty() {
                    return Ok(Leaf::Keep);
                }
                if *last {
                    a.pop();
                } else {
                    a.remove(0);
                }
                Leaf::Set(Bson::Array(a))
            }
            Some(other) => {
                return Err(Error::type_mismatch(format!(
                    "Path '{field}' contains an element of non-array type '{}'",
                    type_name(other)
                )));
            }
        },
        OpKind::Pull(_) | OpKind::PullAll(_) => match cur {
            None => Leaf::Keep,
            Some(Bson::Array(a)) => {
                let mut out = Vec::with_capacity(a.len());
                for e in a {
                    let remove = match kind {
                        OpKind::PullAll(vals) => vals.iter().any(|v| order::eq(v, e)),
                        OpKind::Pull(PullCond::Value(v)) => order::eq(v, e),
                        OpKind::Pull(PullCond::Pred(p)) => {
                            let mut probe = Document::new();
                            probe.insert("x", e.clone());
                            matcher::pred_matches_doc(p, &probe, &["x".to_string()])?
                        }
                        OpKind::Pull(PullCond::Doc(m)) => match e {
                            Bson::Document(d) => m.matches(d)?,
                            _ => false,
                        },
                        _ => false,
                    };
                    if !remove {
                        out.push(e.clone());
                    }
                }
                if out.len() == a.len() {
                    Leaf::Keep
                } else {
                    Leaf::Set(Bson::Array(out))
                }
            }
            Some(_) => {
                let which = if matches!(kind, OpKind::PullAll(_)) {
                    "$pullAll"
                } else {
                    "$pull"
                };
                let _ = name;
                return Err(Error::bad_value(format!(
                    "Cannot apply {which} to a non-array value"
                )));
            }
        },
    })
}

/// `$addToSet` treats `{a:1,b:2}` and `{b:2,a:1}` as different, and 1 and 1.0 as equal.
fn same_shape(a: &Bson, b: &Bson) -> bool {
    match (a, b) {
        (Bson::Document(x), Bson::Document(y)) => x.keys().eq(y.keys()),
        _ => true,
    }
}

/// Padding an array with nulls past this many elements could only produce a document
/// over the 16 MiB limit (each null element takes at least 3 bytes).
const MAX_PAD: usize = 16 * 1024 * 1024 / 3;

type LeafFn<'a> = dyn FnMut(Option<&Bson>) -> Result<Leaf> + 'a;

fn walk(
    cur: &mut Bson,
    comps: &[Comp],
    create: bool,
    filters: &[(String, Matcher)],
    f: &mut LeafFn,
    raw: &str,
) -> Result<()> {
    let Some((c, rest)) = comps.split_first() else {
        return Ok(());
    };
    match cur {
        Bson::Document(d) => {
            let Comp::Field(name) = c else {
                return Err(Error::bad_value(format!(
                    "Cannot apply array updates to non-array element {}",
                    render(&Bson::Document(d.clone()))
                )));
            };
            if name.starts_with('$') && create {
                return Err(Error::new(
                    code::DOLLAR_PREFIXED_FIELD_NAME,
                    format!(
                        "The dollar ($) prefixed field '{name}' in '{raw}' is not valid for storage."
                    ),
                ));
            }
            if rest.is_empty() {
                match f(d.get(name))? {
                    Leaf::Set(v) => {
                        d.insert(name.clone(), v);
                    }
                    Leaf::Unset => {
                        d.remove(name);
                    }
                    Leaf::Keep => {}
                }
                return Ok(());
            }
            match d.get_mut(name) {
                Some(child @ (Bson::Document(_) | Bson::Array(_))) => {
                    walk(child, rest, create, filters, f, raw)
                }
                Some(other) => {
                    if create {
                        Err(Error::new(
                            code::PATH_NOT_VIABLE,
                            format!(
                                "Cannot create field '{}' in element {{{name}: {}}}",
                                comp_str(&rest[0]),
                                render(other)
                            ),
                        ))
                    } else {
                        Ok(())
                    }
                }
                None => {
                    if !create {
                        return Ok(());
                    }
                    if !matches!(rest[0], Comp::Field(_)) {
                        return Err(Error::bad_value(format!(
                            "The path '{raw}' must exist in the document in order to apply array updates."
                        )));
                    }
                    let mut child = Bson::Document(Document::new());
                    walk(&mut child, rest, create, filters, f, raw)?;
                    d.insert(name.clone(), child);
                    Ok(())
                }
            }
        }
        Bson::Array(arr) => {
            let indexes: Vec<usize> = match c {
                Comp::Field(name) => match path::as_index(name) {
                    Some(i) => vec![i],
                    None => {
                        if create {
                            return Err(Error::new(
                                code::PATH_NOT_VIABLE,
                                format!(
                                    "Cannot create field '{name}' in element {{{}}}",
                                    render(&Bson::Array(arr.clone()))
                                ),
                            ));
                        }
                        return Ok(());
                    }
                },
                Comp::All => (0..arr.len()).collect(),
                Comp::Filtered(id) => {
                    let m = filters
                        .iter()
                        .find(|(i, _)| i == id)
                        .map(|(_, m)| m)
                        .ok_or_else(|| {
                            Error::bad_value(format!(
                                "No array filter found for identifier '{id}' in path '{raw}'"
                            ))
                        })?;
                    let mut idx = Vec::new();
                    for (i, e) in arr.iter().enumerate() {
                        let mut probe = Document::new();
                        probe.insert(id.clone(), e.clone());
                        if m.matches(&probe)? {
                            idx.push(i);
                        }
                    }
                    idx
                }
                Comp::Positional => {
                    return Err(Error::bad_value(
                        "The positional operator did not find the match needed from the query.",
                    ));
                }
            };
            for i in indexes {
                if i > arr.len() && i - arr.len() > MAX_PAD {
                    return Err(Error::new(
                        code::BSON_OBJECT_TOO_LARGE,
                        format!(
                            "Cannot pad array '{raw}' to index {i}: the document would exceed the maximum BSON size"
                        ),
                    ));
                }
                if rest.is_empty() {
                    match f(arr.get(i))? {
                        Leaf::Set(v) => {
                            if i < arr.len() {
                                arr[i] = v;
                            } else {
                                while arr.len() < i {
                                    arr.push(Bson::Null);
                                }
                                arr.push(v);
                            }
                        }
                        Leaf::Unset => {
                            if i < arr.len() {
                                arr[i] = Bson::Null;
                            }
                        }
                        Leaf::Keep => {}
                    }
                    continue;
                }
                if i < arr.len() {
                    match &mut arr[i] {
                        child @ (Bson::Document(_) | Bson::Array(_)) => {
                            walk(child, rest, create, filters, f, raw)?
                        }
                        other => {
                            if create {
                                return Err(Error::new(
                                    code::PATH_NOT_VIABLE,
                                    format!(
                                        "Cannot create field '{}' in element {{{i}: {}}}",
                                        comp_str(&rest[0]),
                                        render(other)
                                    ),
                                ));
                            }
                        }
                    }
                } else if create {
                    while arr.len() < i {
                        arr.push(Bson::Null);
                    }
                    let mut child = Bson::Document(Document::new());
                    walk(&mut child, rest, create, filters, f, raw)?;
                    arr.push(child);
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The document an upsert starts from: equality conditions of the query (top level or
/// under `$and`), with dotted paths expanded into nested documents.
pub fn upsert_seed(filter: &Document) -> Result<Document> {
    let mut seed = Document::new();
    for (p, pred) in matcher::top_level_fields(filter)? {
        let v = match pred {
            Pred::Eq(v) => v,
            Pred::In(items) if items.len() == 1 => match &items[0] {
                matcher::InItem::Value(v) => v.clone(),
                _ => continue,
            },
            _ => continue,
        };
        if let Bson::Document(d) = &v
            && d.keys().next().is_some_and(|k| k.starts_with('$'))
        {
            continue;
        }
        let comps = path::split(&p)?;
        if path::get(&seed, &comps).is_some() {
            return Err(Error::new(
                code::NOT_SINGLE_VALUE_FIELD,
                format!("cannot infer query fields to set, path '{p}' is matched twice"),
            ));
        }
        let mut root = Bson::Document(seed);
        let cs: Vec<Comp> = comps.into_iter().map(Comp::Field).collect();
        let mut f = |_: Option<&Bson>| -> Result<Leaf> { Ok(Leaf::Set(v.clone())) };
        walk(&mut root, &cs, true, &[], &mut f, &p)?;
        seed = match root {
            Bson::Document(d) => d,
            _ => Document::new(),
        };
    }
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn up(d: Document, u: Document) -> Result<Document> {
        Update::parse(&u, &[])?.apply(
            &d,
            &ApplyContext {
                is_insert: false,
                query: None,
            },
        )
    }

    fn upq(d: Document, u: Document, q: Document) -> Result<Document> {
        Update::parse(&u, &[])?.apply(
            &d,
            &ApplyContext {
                is_insert: false,
                query: Some(&q),
            },
        )
    }

    #[test]
    fn set_unset_inc() {
        let d = doc! {"_id": 1, "a": 1, "b": {"c": 2}};
        assert_eq!(
            up(d.clone(), doc! {"$set": {"b.d": 3, "x.y": 1}}).unwrap(),
            doc! {"_id": 1, "a": 1, "b": {"c": 2, "d": 3}, "x": {"y": 1}}
        );
        assert_eq!(
            up(d.clone(), doc! {"$unset": {"b.c": "", "zz": 1}}).unwrap(),
            doc! {"_id": 1, "a": 1, "b": {}}
        );
        assert_eq!(
            up(d.clone(), doc! {"$inc": {"a": 2, "n": 5}}).unwrap(),
            doc! {"_id": 1, "a": 3, "b": {"c": 2}, "n": 5}
        );
        assert_eq!(
            up(d.clone(), doc! {"$mul": {"a": 2.5, "m": 2}}).unwrap(),
            doc! {"_id": 1, "a": 2.5, "b": {"c": 2}, "m": 0}
        );
        assert_eq!(
            up(d.clone(), doc! {"$min": {"a": 0}, "$max": {"q": 3}}).unwrap(),
            doc! {"_id": 1, "a": 0, "b": {"c": 2}, "q": 3}
        );
        assert_eq!(
            up(d.clone(), doc! {"$rename": {"a": "z"}}).unwrap(),
            doc! {"_id": 1, "b": {"c": 2}, "z": 1}
        );
        assert_eq!(
            up(doc! {"_id": 1, "a": [1, 2]}, doc! {"$set": {"a.4": 9}}).unwrap(),
            doc! {"_id": 1, "a": [1, 2, null, null, 9]}
        );
        assert_eq!(
            up(doc! {"_id": 1, "a": [1, 2]}, doc! {"$unset": {"a.0": 1}}).unwrap(),
            doc! {"_id": 1, "a": [null, 2]}
        );
    }

    #[test]
    fn error_codes() {
        let d = doc! {"_id": 1, "s": "x", "a": 1};
        assert_eq!(up(d.clone(), doc! {"$inc": {"s": 1}}).unwrap_err().code, 14);
        assert_eq!(
            up(d.clone(), doc! {"$inc": {"a": "x"}}).unwrap_err().code,
            14
        );
        assert_eq!(
            up(d.clone(), doc! {"$set": {"_id": 2}}).unwrap_err().code,
            66
        );
        assert!(up(d.clone(), doc! {"$set": {"_id": 1}}).is_ok());
        assert_eq!(
            up(d.clone(), doc! {"$set": {"a": 1}, "$inc": {"a": 1}})
                .unwrap_err()
                .code,
            40
        );
        assert_eq!(
            up(d.clone(), doc! {"$set": {"a.b": 1, "a": 1}})
                .unwrap_err()
                .code,
            40
        );
        assert_eq!(
            up(d.clone(), doc! {"$set": {"a.b": 1}}).unwrap_err().code,
            28
        );
        assert_eq!(up(d.clone(), doc! {"$foo": {"a": 1}}).unwrap_err().code, 9);
        assert_eq!(up(d.clone(), doc! {"$set": 5}).unwrap_err().code, 9);
        assert_eq!(up(d.clone(), doc! {"$push": {"a": 1}}).unwrap_err().code, 2);
        assert_eq!(
            up(d.clone(), doc! {"$set": {"a..b": 1}}).unwrap_err().code,
            56
        );
        assert_eq!(up(d.clone(), doc! {"_id": 2, "x": 1}).unwrap_err().code, 66);
        let e = up(d.clone(), doc! {"$inc": {"s": 1}}).unwrap_err();
        assert!(
            e.errmsg
                .contains("Cannot apply $inc to a value of non-numeric type"),
            "{}",
            e.errmsg
        );
    }

    #[test]
    fn manual_edge_cases() {
        let d = doc! {"_id": 1, "n": i32::MAX, "r": [{"s": 8, "i": "B", "ans": [{"q": 2, "a": 9}]}, {"s": 9, "i": "C", "ans": []}]};
        assert_eq!(
            up(d.clone(), doc! {"$inc": {"n": 1}}).unwrap().get("n"),
            Some(&Bson::Int64(i32::MAX as i64 + 1))
        );
        assert_eq!(
            up(d.clone(), doc! {"$pull": {"r": {"s": 8, "i": "B"}}})
                .unwrap()
                .get_array("r")
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            up(
                d.clone(),
                doc! {"$pull": {"r": {"ans": {"$elemMatch": {"q": 2, "a": {"$gte": 8}}}}}}
            )
            .unwrap()
            .get_array("r")
            .unwrap()
            .len(),
            1
        );
        assert_eq!(
            up(d.clone(), doc! {"$push": {"x.y": 1}})
                .unwrap()
                .get_document("x")
                .unwrap(),
            &doc! {"y": [1]}
        );
        assert_eq!(
            up(d.clone(), doc! {"$addToSet": {"z": {"$each": [1, 1, 2]}}})
                .unwrap()
                .get_array("z")
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            up(d.clone(), doc! {"$set": {"_id": 1.0}}).unwrap_err().code,
            66
        );
        assert_eq!(
            up(d.clone(), doc! {"$set": {"q": 1}, "$setOnInsert": {"q": 2}})
                .unwrap_err()
                .code,
            40
        );
        assert_eq!(
            up(d.clone(), doc! {"$set": {"r.$[].s": 0}})
                .unwrap()
                .get_array("r")
                .unwrap()[1]
                .as_document()
                .unwrap()
                .get_i32("s")
                .unwrap(),
            0
        );
        assert_eq!(
            up(d.clone(), doc! {"$min": {"n": "str"}})
                .unwrap()
                .get_i32("n")
                .unwrap(),
            i32::MAX,
            "numbers sort below strings"
        );
        let t = up(
            d.clone(),
            doc! {"$currentDate": {"when": true, "ts": {"$type": "timestamp"}}},
        )
        .unwrap();
        assert!(matches!(t.get("when"), Some(Bson::DateTime(_))));
        assert!(matches!(t.get("ts"), Some(Bson::Timestamp(_))));
        assert_eq!(up(doc! {"_id": 1}, doc! {}).unwrap(), doc! {"_id": 1});
    }

    #[test]
    fn hostile_arguments_do_not_panic_or_blow_up() {
        let d = doc! {"_id": 1, "a": [1, 2, 3]};
        assert_eq!(
            up(d.clone(), doc! {"$set": {"a.999999999": 1}})
                .unwrap_err()
                .code,
            10334
        );
        assert_eq!(
            up(
                d.clone(),
                doc! {"$push": {"a": {"$each": [4], "$slice": i64::MIN}}}
            )
            .unwrap()
            .get_array("a")
            .unwrap()
            .len(),
            4
        );
        assert!(
            up(
                d.clone(),
                doc! {"$push": {"a": {"$each": [4], "$position": i64::MIN}}}
            )
            .is_ok()
        );
    }

    #[test]
    fn new_fields_are_added_in_lexicographic_order() {
        let r = up(
            doc! {"_id": 1},
            doc! {"$set": {"z": 1, "b": 1}, "$inc": {"a": 1}},
        )
        .unwrap();
        assert_eq!(
            r.keys().cloned().collect::<Vec<_>>(),
            vec!["_id", "a", "b", "z"]
        );
        let r = up(doc! {"_id": 1}, doc! {"$set": {"x.10": 1, "x.9": 2}}).unwrap();
        assert_eq!(
            r.get_document("x")
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>(),
            vec!["9", "10"]
        );
    }

    #[test]
    fn replacement_keeps_id() {
        let d = doc! {"_id": 1, "a": 1};
        assert_eq!(
            up(d.clone(), doc! {"b": 2}).unwrap(),
            doc! {"_id": 1, "b": 2}
        );
        assert_eq!(
            up(d.clone(), doc! {"b": 2, "_id": 1}).unwrap(),
            doc! {"_id": 1, "b": 2}
        );
    }

    #[test]
    fn arrays() {
        let d = doc! {"_id": 1, "a": [3, 1, 2], "s": [{"x": 1}, {"x": 5}]};
        assert_eq!(
            up(d.clone(), doc! {"$push": {"a": 4}})
                .unwrap()
                .get_array("a")
                .unwrap()
                .len(),
            4
        );
        assert_eq!(
            up(
                d.clone(),
                doc! {"$push": {"a": {"$each": [5, 0], "$sort": 1, "$slice": 3}}}
            )
            .unwrap(),
            doc! {"_id": 1, "a": [0, 1, 2], "s": [{"x": 1}, {"x": 5}]}
        );
        assert_eq!(
            up(
                d.clone(),
                doc! {"$push": {"a": {"$each": [9], "$position": 0}}}
            )
            .unwrap()
            .get_array("a")
            .unwrap()[0],
            Bson::Int32(9)
        );
        assert_eq!(
            up(
                d.clone(),
                doc! {"$push": {"s": {"$each": [{"x": 3}], "$sort": {"x": -1}}}}
            )
            .unwrap()
            .get_array("s")
            .unwrap()[0],
            Bson::Document(doc! {"x": 5})
        );
        assert_eq!(
            up(d.clone(), doc! {"$addToSet": {"a": {"$each": [1, 7, 7]}}})
                .unwrap()
                .get_array("a")
                .unwrap()
                .len(),
            4
        );
        assert_eq!(
            up(d.clone(), doc! {"$pop": {"a": 1}})
                .unwrap()
                .get_array("a")
                .unwrap()
                .clone(),
            vec![Bson::Int32(3), Bson::Int32(1)]
        );
        assert_eq!(
            up(d.clone(), doc! {"$pop": {"a": -1}})
                .unwrap()
                .get_array("a")
                .unwrap()
                .clone(),
            vec![Bson::Int32(1), Bson::Int32(2)]
        );
        assert_eq!(
            up(d.clone(), doc! {"$pull": {"a": {"$gte": 2}}})
                .unwrap()
                .get_array("a")
                .unwrap()
                .clone(),
            vec![Bson::Int32(1)]
        );
        assert_eq!(
            up(d.clone(), doc! {"$pull": {"s": {"x": 5}}})
                .unwrap()
                .get_array("s")
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            up(d.clone(), doc! {"$pullAll": {"a": [1, 3]}})
                .unwrap()
                .get_array("a")
                .unwrap()
                .clone(),
            vec![Bson::Int32(2)]
        );
        assert_eq!(
            up(d.clone(), doc! {"$inc": {"s.$[].x": 1}})
                .unwrap()
                .get_array("s")
                .unwrap()
                .clone(),
            vec![Bson::Document(doc! {"x": 2}), Bson::Document(doc! {"x": 6})]
        );
        assert_eq!(
            upq(d.clone(), doc! {"$set": {"s.$.x": 0}}, doc! {"s.x": 5})
                .unwrap()
                .get_array("s")
                .unwrap()
                .clone(),
            vec![Bson::Document(doc! {"x": 1}), Bson::Document(doc! {"x": 0})]
        );
        assert_eq!(
            upq(d.clone(), doc! {"$set": {"a.$": 0}}, doc! {"a": 1})
                .unwrap()
                .get_array("a")
                .unwrap()
                .clone(),
            vec![Bson::Int32(3), Bson::Int32(0), Bson::Int32(2)]
        );
        let u =
            Update::parse(&doc! {"$set": {"s.$[e].x": 0}}, &[doc! {"e.x": {"$gt": 2}}]).unwrap();
        let r = u
            .apply(
                &d,
                &ApplyContext {
                    is_insert: false,
                    query: None,
                },
            )
            .unwrap();
        assert_eq!(
            r.get_array("s").unwrap().clone(),
            vec![Bson::Document(doc! {"x": 1}), Bson::Document(doc! {"x": 0})]
        );
        assert_eq!(
            Update::parse(&doc! {"$set": {"s.$[e].x": 0}}, &[])
                .unwrap_err()
                .code,
            2
        );
        assert_eq!(
            Update::parse(&doc! {"$set": {"a": 0}}, &[doc! {"e": 1}])
                .unwrap_err()
                .code,
            9
        );
    }

    #[test]
    fn upsert_seed_from_query() {
        let s =
            upsert_seed(&doc! {"a": 1, "b.c": "x", "d": {"$gt": 5}, "$and": [{"e": 2}]}).unwrap();
        assert_eq!(s, doc! {"a": 1, "b": {"c": "x"}, "e": 2});
        let u = Update::parse(&doc! {"$setOnInsert": {"n": 1}, "$set": {"m": 2}}, &[]).unwrap();
        let r = u
            .apply(
                &s,
                &ApplyContext {
                    is_insert: true,
                    query: None,
                },
            )
            .unwrap();
        assert_eq!(r.get_i32("n").unwrap(), 1);
        let r = u
            .apply(
                &s,
                &ApplyContext {
                    is_insert: false,
                    query: None,
                },
            )
            .unwrap();
        assert!(r.get("n").is_none());
    }
}
