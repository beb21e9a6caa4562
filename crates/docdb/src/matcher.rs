//! Query filters (`{a: {$gt: 1}}`) compiled into predicates.
//!
//! Semantics follow the MongoDB manual: a field predicate holds when *any* leaf reached
//! through the path (see [`path::leaves`]) satisfies it, where a leaf that is an array is
//! also tested element by element (one level); comparison operators only match values of
//! the same canonical type bracket; `null` equality matches missing fields; `$ne`/`$nin`
//! are the negation of `$eq`/`$in` over the whole document.

use bson::{Bson, Document, Regex as BsonRegex};

use crate::depth;
use crate::error::{Error, Result};
use crate::expr::{self, Expr};
use crate::numeric;
use crate::order;
use crate::path;

/// A compiled filter.
#[derive(Debug, Clone)]
pub struct Matcher {
    root: Node,
}

#[derive(Debug, Clone)]
enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Nor(Vec<Node>),
    Field { path: Vec<String>, pred: Pred },
    Expr(Expr),
    Const(bool),
}

/// A predicate on the values at one path.
#[derive(Debug, Clone)]
pub enum Pred {
    Eq(Bson),
    Ne(Bson),
    Cmp(CmpOp, Bson),
    In(Vec<InItem>),
    Nin(Vec<InItem>),
    Exists(bool),
    Type(Vec<TypeSel>),
    Regex(Box<Re>),
    Size(usize),
    All(Vec<AllItem>),
    ElemMatchDoc(Box<Matcher>),
    ElemMatchValue(Vec<Pred>),
    Mod(i64, i64),
    Not(Box<Pred>),
    And(Vec<Pred>),
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone)]
pub enum InItem {
    Value(Bson),
    Regex(Box<Re>),
}

#[derive(Debug, Clone)]
pub enum AllItem {
    Value(Bson),
    ElemMatch(Box<Pred>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeSel {
    Code(i32),
    Number,
}

/// A compiled regular expression plus the source (regex values equal to it match too).
#[derive(Debug, Clone)]
pub struct Re {
    pub re: regex::Regex,
    pub pattern: String,
    pub options: String,
}

impl Re {
    pub fn new(pattern: &str, options: &str) -> Result<Re> {
        let mut flags = String::new();
        for c in options.chars() {
            match c {
                'i' | 'm' | 's' | 'x' => flags.push(c),
                'u' => {}
                other => {
                    return Err(Error::location(
                        51108,
                        format!("invalid flag in regex options: {other}"),
                    ));
                }
            }
        }
        let src = if flags.is_empty() {
            pattern.to_string()
        } else {
            format!("(?{flags}){pattern}")
        };
        let re = regex::Regex::new(&src)
            .map_err(|e| Error::location(51091, format!("Regular expression is invalid: {e}")))?;
        Ok(Re {
            re,
            pattern: pattern.into(),
            options: options.into(),
        })
    }

    fn from_bson(r: &BsonRegex) -> Result<Re> {
        Re::new(r.pattern.as_str(), r.options.as_str())
    }

    fn matches(&self, v: &Bson) -> bool {
        match v {
            Bson::String(s) | Bson::Symbol(s) => self.re.is_match(s),
            Bson::RegularExpression(r) => {
                r.pattern.as_str() == self.pattern && r.options.as_str() == self.options
            }
            _ => false,
        }
    }
}

/// BSON type number for a value (`$type`).
pub fn type_code(v: &Bson) -> i32 {
    match v {
        Bson::Double(_) => 1,
        Bson::String(_) => 2,
        Bson::Document(_) => 3,
        Bson::Array(_) => 4,
        Bson::Binary(_) => 5,
        Bson::Undefined => 6,
        Bson::ObjectId(_) => 7,
        Bson::Boolean(_) => 8,
        Bson::DateTime(_) => 9,
        Bson::Null => 10,
        Bson::RegularExpression(_) => 11,
        Bson::DbPointer(_) => 12,
        Bson::JavaScriptCode(_) => 13,
        Bson::Symbol(_) => 14,
        Bson::JavaScriptCodeWithScope(_) => 15,
        Bson::Int32(_) => 16,
        Bson::Timestamp(_) => 17,
        Bson::Int64(_) => 18,
        Bson::Decimal128(_) => 19,
        Bson::MinKey => -1,
        Bson::MaxKey => 127,
    }
}

fn type_alias(name: &str) -> Option<TypeSel> {
    Some(TypeSel::Code(match name {
        "double" => 1,
        "string" => 2,
        "object" => 3,
        "array" => 4,
        "binData" => 5,
        "undefined" => 6,
        "objectId" => 7,
        "bool" => 8,
        "date" => 9,
        "null" => 10,
        "regex" => 11,
        "dbPointer" => 12,
        "javascript" => 13,
        "symbol" => 14,
        "javascriptWithScope" => 15,
        "int" => 16,
        "timestamp" => 17,
        "long" => 18,
        "decimal" => 19,
        "minKey" => -1,
        "maxKey" => 127,
        "number" => return Some(TypeSel::Number),
        _ => return None,
    }))
}

fn parse_type_sel(v: &Bson) -> Result<TypeSel> {
    match v {
        Bson::String(s) => {
            type_alias(s).ok_or_else(|| Error::bad_value(format!("Unknown type name alias: {s}")))
        }
        v if numeric::is_number(v) => {
            let f = numeric::to_f64(v).unwrap_or(f64::NAN);
            let code = f as i32;
            let valid = f.fract() == 0.0 && ((1..=19).contains(&code) || code == -1 || code == 127);
            if valid {
                Ok(TypeSel::Code(code))
            } else {
                Err(Error::bad_value(format!(
                    "Invalid numerical type code: {}",
                    crate::error::render(v)
                )))
            }
        }
        _ => Err(Error::type_mismatch(
            "type must be represented as a number or a string",
        )),
    }
}

impl TypeSel {
    fn matches(self, v: &Bson) -> bool {
        match self {
            TypeSel::Number => numeric::is_number(v),
            TypeSel::Code(c) => type_code(v) == c,
        }
    }
}

impl Matcher {
    /// Compile a filter document.
    pub fn new(filter: &Document) -> Result<Matcher> {
        Ok(Matcher {
            root: parse_doc(filter, 0)?,
        })
    }

    /// A matcher accepting everything.
    pub fn all() -> Matcher {
        Matcher {
            root: Node::Const(true),
        }
    }

    pub fn matches(&self, doc: &Document) -> Result<bool> {
        eval_node(&self.root, doc)
    }

    /// The top-level fields this filter reads, or `None` when it may read the whole
    /// document (`$expr`). A document restricted to these fields matches exactly when
    /// the whole document does, which lets scans decode only them.
    pub fn root_fields(&self) -> Option<Vec<String>> {
        fn walk(n: &Node, out: &mut Vec<String>) -> bool {
            match n {
                Node::And(ns) | Node::Or(ns) | Node::Nor(ns) => ns.iter().all(|x| walk(x, out)),
                Node::Field { path, .. } => {
                    let first = path.first().cloned().unwrap_or_default();
                    if !out.contains(&first) {
                        out.push(first);
                    }
                    true
                }
                Node::Expr(_) => false,
                Node::Const(_) => true,
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out).then_some(out)
    }
}

/// Refuses operator trees nested deeper than MongoDB's parser accepts (`BadValue`, as
/// its "exceeded maximum query tree depth"); `level` is 0 at the filter's top. The
/// parsers below recurse once per level, and so do the matching and dropping of what they
/// build, so this bounds all three.
fn check_level(level: usize) -> Result<()> {
    if level > depth::MAX_QUERY_TREE_DEPTH {
        return Err(Error::bad_value(format!(
            "exceeded maximum query tree depth of {}",
            depth::MAX_QUERY_TREE_DEPTH
        )));
    }
    Ok(())
}

fn parse_doc(filter: &Document, level: usize) -> Result<Node> {
    check_level(level)?;
    let mut nodes = Vec::with_capacity(filter.len());
    for (k, v) in filter {
        nodes.push(parse_top(k, v, level)?);
    }
    Ok(if nodes.len() == 1 {
        nodes.remove(0)
    } else {
        Node::And(nodes)
    })
}

fn parse_list(op: &str, v: &Bson, level: usize) -> Result<Vec<Node>> {
    let Bson::Array(items) = v else {
        return Err(Error::bad_value(format!("{op} must be an array")));
    };
    if items.is_empty() {
        return Err(Error::bad_value("$and/$or/$nor must be a nonempty array"));
    }
    items
        .iter()
        .map(|i| match i {
            Bson::Document(d) => parse_doc(d, level + 1),
            _ => Err(Error::bad_value(
                "$or/$and/$nor entries need to be full objects",
            )),
        })
        .collect()
}

fn parse_top(k: &str, v: &Bson, level: usize) -> Result<Node> {
    match k {
        "$and" => Ok(Node::And(parse_list(k, v, level)?)),
        "$or" => Ok(Node::Or(parse_list(k, v, level)?)),
        "$nor" => Ok(Node::Nor(parse_list(k, v, level)?)),
        "$expr" => Ok(Node::Expr(Expr::parse(v)?)),
        "$comment" => Ok(Node::Const(true)),
        "$alwaysTrue" => Ok(Node::Const(true)),
        "$alwaysFalse" => Ok(Node::Const(false)),
        _ if k.starts_with('$') => Err(Error::bad_value(format!(
            "unknown top level operator: {k}. If you have a field name that starts with a '$' symbol, consider using $getField or $setField."
        ))),
        _ => Ok(Node::Field {
            path: path::split(k)?,
            pred: parse_value(v, level)?,
        }),
    }
}

fn is_operator_doc(d: &Document) -> bool {
    d.keys().next().is_some_and(|k| k.starts_with('$'))
}

/// Parse the value of `{field: value}`.
pub fn parse_field_value(v: &Bson) -> Result<Pred> {
    parse_value(v, 0)
}

fn parse_value(v: &Bson, level: usize) -> Result<Pred> {
    match v {
        Bson::Document(d) if is_operator_doc(d) => parse_ops(d, level),
        Bson::RegularExpression(r) => Ok(Pred::Regex(Box::new(Re::from_bson(r)?))),
        other => Ok(Pred::Eq(other.clone())),
    }
}

fn parse_in_items(op: &str, v: &Bson) -> Result<Vec<InItem>> {
    let Bson::Array(items) = v else {
        return Err(Error::bad_value(format!("{op} needs an array")));
    };
    items
        .iter()
        .map(|i| match i {
            Bson::RegularExpression(r) => Ok(InItem::Regex(Box::new(Re::from_bson(r)?))),
            Bson::Document(d) if is_operator_doc(d) && op == "$in" => {
                Err(Error::bad_value("cannot nest $ under $in"))
            }
            other => Ok(InItem::Value(other.clone())),
        })
        .collect()
}

fn parse_ops(d: &Document, level: usize) -> Result<Pred> {
    check_level(level)?;
    let mut preds = Vec::new();
    let regex_opts = d.get("$options");
    for (op, arg) in d {
        let p = match op.as_str() {
            "$eq" => Pred::Eq(arg.clone()),
            "$ne" => {
                if matches!(arg, Bson::RegularExpression(_)) {
                    return Err(Error::bad_value("Can't have regex as arg to $ne."));
                }
                Pred::Ne(arg.clone())
            }
            "$gt" => Pred::Cmp(CmpOp::Gt, arg.clone()),
            "$gte" => Pred::Cmp(CmpOp::Gte, arg.clone()),
            "$lt" => Pred::Cmp(CmpOp::Lt, arg.clone()),
            "$lte" => Pred::Cmp(CmpOp::Lte, arg.clone()),
            "$in" => Pred::In(parse_in_items(op, arg)?),
            "$nin" => Pred::Nin(parse_in_items(op, arg)?),
            "$exists" => Pred::Exists(expr::truthy(&Some(arg.clone()))),
            "$type" => match arg {
                Bson::Array(items) => {
                    Pred::Type(items.iter().map(parse_type_sel).collect::<Result<_>>()?)
                }
                other => Pred::Type(vec![parse_type_sel(other)?]),
            },
            "$regex" => {
                let opts = match regex_opts {
                    None => None,
                    Some(Bson::String(s)) => Some(s.as_str()),
                    Some(_) => return Err(Error::bad_value("$options has to be a string")),
                };
                match arg {
                    Bson::String(p) => Pred::Regex(Box::new(Re::new(p, opts.unwrap_or(""))?)),
                    Bson::RegularExpression(r) => {
                        if opts.is_some() && !r.options.as_str().is_empty() {
                            return Err(Error::bad_value(
                                "options set in both $regex and $options",
                            ));
                        }
                        Pred::Regex(Box::new(Re::new(
                            r.pattern.as_str(),
                            opts.unwrap_or(r.options.as_str()),
                        )?))
                    }
                    _ => return Err(Error::bad_value("$regex has to be a string")),
                }
            }
            "$options" => {
                if !d.contains_key("$regex") {
                    return Err(Error::bad_value("$options needs a $regex"));
                }
                continue;
            }
            "$size" => {
                let n = match arg {
                    Bson::Int32(i) => *i as f64,
                    Bson::Int64(i) => *i as f64,
                    Bson::Double(f) => *f,
                    Bson::Decimal128(_) => numeric::to_f64(arg).unwrap_or(f64::NAN),
                    _ => return Err(Error::bad_value("$size needs a number")),
                };
                if n.fract() != 0.0 {
                    return Err(Error::bad_value("$size must be a whole number".to_string()));
                }
                if n < 0.0 {
                    return Err(Error::bad_value("$size may not be negative"));
                }
                Pred::Size(n as usize)
            }
            "$all" => {
                let Bson::Array(items) = arg else {
                    return Err(Error::bad_value("$all needs an array"));
                };
                let mut all = Vec::new();
                for i in items {
                    match i {
                        Bson::Document(e) if e.keys().next().is_some_and(|k| k == "$elemMatch") => {
                            let inner = e.get("$elemMatch").unwrap_or(&Bson::Null);
                            all.push(AllItem::ElemMatch(Box::new(parse_elem_match(
                                inner,
                                level + 1,
                            )?)));
                        }
                        Bson::Document(e) if is_operator_doc(e) => {
                            return Err(Error::bad_value("no $ expressions in $all"));
                        }
                        other => all.push(AllItem::Value(other.clone())),
                    }
                }
                Pred::All(all)
            }
            "$elemMatch" => parse_elem_match(arg, level + 1)?,
            "$mod" => {
                let Bson::Array(items) = arg else {
                    return Err(Error::bad_value("malformed mod, needs to be an array"));
                };
                if items.len() < 2 {
                    return Err(Error::bad_value("malformed mod, not enough elements"));
                }
                if items.len() > 2 {
                    return Err(Error::bad_value("malformed mod, too many elements"));
                }
                let (Some(dv), Some(rv)) = (numeric::to_i64(&items[0]), numeric::to_i64(&items[1]))
                else {
                    return Err(Error::bad_value(
                        "malformed mod, divisor and remainder not numbers",
                    ));
                };
                if dv == 0 {
                    return Err(Error::bad_value("divisor cannot be 0"));
                }
                Pred::Mod(dv, rv)
            }
            "$not" => match arg {
                Bson::RegularExpression(r) => {
                    Pred::Not(Box::new(Pred::Regex(Box::new(Re::from_bson(r)?))))
                }
                Bson::Document(inner) => {
                    if inner.is_empty() {
                        return Err(Error::bad_value("$not cannot be empty"));
                    }
                    if !is_operator_doc(inner) {
                        return Err(Error::bad_value("$not needs a regex or a document"));
                    }
                    Pred::Not(Box::new(parse_ops(inner, level + 1)?))
                }
                _ => return Err(Error::bad_value("$not needs a regex or a document")),
            },
            "$comment" => continue,
            other => return Err(Error::bad_value(format!("unknown operator: {other}"))),
        };
        preds.push(p);
    }
    Ok(if preds.len() == 1 {
        preds.remove(0)
    } else {
        Pred::And(preds)
    })
}

fn parse_elem_match(arg: &Bson, level: usize) -> Result<Pred> {
    let Bson::Document(d) = arg else {
        return Err(Error::bad_value("$elemMatch needs an Object"));
    };
    let value_form = !d.is_empty()
        && d.keys().all(|k| {
            k.starts_with('$')
                && !matches!(k.as_str(), "$and" | "$or" | "$nor" | "$expr" | "$where")
        });
    if value_form {
        match parse_ops(d, level)? {
            Pred::And(ps) => Ok(Pred::ElemMatchValue(ps)),
            p => Ok(Pred::ElemMatchValue(vec![p])),
        }
    } else {
        Ok(Pred::ElemMatchDoc(Box::new(Matcher {
            root: parse_doc(d, level)?,
        })))
    }
}

fn eval_node(n: &Node, doc: &Document) -> Result<bool> {
    Ok(match n {
        Node::Const(b) => *b,
        Node::And(ns) => {
            for x in ns {
                if !eval_node(x, doc)? {
                    return Ok(false);
                }
            }
            true
        }
        Node::Or(ns) => {
            for x in ns {
                if eval_node(x, doc)? {
                    return Ok(true);
                }
            }
            false
        }
        Node::Nor(ns) => {
            for x in ns {
                if eval_node(x, doc)? {
                    return Ok(false);
                }
            }
            true
        }
        Node::Field { path, pred } => pred_matches_doc(pred, doc, path)?,
        Node::Expr(e) => expr::truthy(&e.eval_root(doc)?),
    })
}

/// Does `pred` hold for `doc` at `path`?
pub fn pred_matches_doc(pred: &Pred, doc: &Document, path: &[String]) -> Result<bool> {
    let leaves = path::leaves(doc, path);
    pred_matches_leaves(pred, &leaves)
}

fn pred_matches_leaves(pred: &Pred, leaves: &[Option<&Bson>]) -> Result<bool> {
    Ok(match pred {
        Pred::Ne(v) => !pred_matches_leaves(&Pred::Eq(v.clone()), leaves)?,
        Pred::Nin(items) => !pred_matches_leaves(&Pred::In(items.clone()), leaves)?,
        Pred::Not(p) => !pred_matches_leaves(p, leaves)?,
        Pred::And(ps) => {
            for p in ps {
                if !pred_matches_leaves(p, leaves)? {
                    return Ok(false);
                }
            }
            true
        }
        Pred::Exists(want) => leaves.iter().any(Option::is_some) == *want,
        Pred::All(items) => {
            if items.is_empty() {
                return Ok(false);
            }
            for item in items {
                let ok = match item {
                    AllItem::Value(v) => pred_matches_leaves(&Pred::Eq(v.clone()), leaves)?,
                    AllItem::ElemMatch(p) => pred_matches_leaves(p, leaves)?,
                };
                if !ok {
                    return Ok(false);
                }
            }
            true
        }
        _ => {
            for leaf in leaves {
                if leaf_matches(pred, *leaf)? {
                    return Ok(true);
                }
            }
            false
        }
    })
}

/// Test one leaf (and, when it is an array, its elements).
fn leaf_matches(pred: &Pred, leaf: Option<&Bson>) -> Result<bool> {
    let Some(v) = leaf else {
        return Ok(match pred {
            Pred::Eq(Bson::Null) => true,
            Pred::Cmp(CmpOp::Gte | CmpOp::Lte, Bson::Null) => true,
            Pred::In(items) => items.iter().any(|i| matches!(i, InItem::Value(Bson::Null))),
            Pred::Type(_) => false,
            _ => false,
        });
    };
    match pred {
        Pred::Size(n) => return Ok(matches!(v, Bson::Array(a) if a.len() == *n)),
        Pred::ElemMatchDoc(m) => {
            if let Bson::Array(a) = v {
                for e in a {
                    if let Bson::Document(d) = e
                        && m.matches(d)?
                    {
                        return Ok(true);
                    }
                }
            }
            return Ok(false);
        }
        Pred::ElemMatchValue(ps) => {
            if let Bson::Array(a) = v {
                'elems: for e in a {
                    for p in ps {
                        if !pred_matches_leaves(p, &[Some(e)])? {
                            continue 'elems;
                        }
                    }
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        _ => {}
    }
    if scalar_matches(pred, v)? {
        return Ok(true);
    }
    if let Bson::Array(a) = v {
        for e in a {
            if scalar_matches(pred, e)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn scalar_matches(pred: &Pred, v: &Bson) -> Result<bool> {
    Ok(match pred {
        Pred::Eq(x) => order::eq(v, x),
        Pred::Cmp(op, x) => {
            if order::bracket(v) != order::bracket(x) {
                // MinKey/MaxKey operands compare against every type.
                matches!(
                    (op, x),
                    (CmpOp::Gt | CmpOp::Gte, Bson::MinKey) | (CmpOp::Lt | CmpOp::Lte, Bson::MaxKey)
                )
            } else {
                let o = order::cmp(v, x);
                match op {
                    CmpOp::Gt => o.is_gt(),
                    CmpOp::Gte => o.is_ge(),
                    CmpOp::Lt => o.is_lt(),
                    CmpOp::Lte => o.is_le(),
                }
            }
        }
        Pred::In(items) => items.iter().any(|i| match i {
            InItem::Value(x) => order::eq(v, x),
            InItem::Regex(r) => r.matches(v),
        }),
        Pred::Type(sels) => sels.iter().any(|s| s.matches(v)),
        Pred::Regex(r) => r.matches(v),
        Pred::Mod(d, r) => match v {
            Bson::Double(f) if !f.is_finite() => false,
            _ => numeric::to_i64(v).is_some_and(|x| x.wrapping_rem(*d) == *r),
        },
        Pred::Never => false,
        // Handled at the leaf-set level.
        Pred::Ne(_)
        | Pred::Nin(_)
        | Pred::Not(_)
        | Pred::And(_)
        | Pred::Exists(_)
        | Pred::All(_)
        | Pred::Size(_)
        | Pred::ElemMatchDoc(_)
        | Pred::ElemMatchValue(_) => pred_matches_leaves(pred, &[Some(v)])?,
    })
}

/// Top-level conjuncts of a filter as `(path, predicate)` pairs, for the planner and for
/// building upsert seed documents. Returns only plain field predicates directly under the
/// root or a root `$and`.
pub fn top_level_fields(filter: &Document) -> Result<Vec<(String, Pred)>> {
    let mut out = Vec::new();
    collect_fields(filter, &mut out, 0)?;
    Ok(out)
}

fn collect_fields(filter: &Document, out: &mut Vec<(String, Pred)>, level: usize) -> Result<()> {
    check_level(level)?;
    for (k, v) in filter {
        if k == "$and" {
            if let Bson::Array(items) = v {
                for i in items {
                    if let Bson::Document(d) = i {
                        collect_fields(d, out, level + 1)?;
                    }
                }
            }
        } else if !k.starts_with('$') {
            match parse_value(v, level)? {
                Pred::And(ps) => out.extend(ps.into_iter().map(|p| (k.clone(), p))),
                p => out.push((k.clone(), p)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn m(filter: Document, d: Document) -> bool {
        Matcher::new(&filter).unwrap().matches(&d).unwrap()
    }

    fn err(filter: Document) -> i32 {
        Matcher::new(&filter).unwrap_err().code
    }

    #[test]
    fn root_fields_cover_every_branch_and_expr_needs_the_whole_document() {
        let f = |d: Document| Matcher::new(&d).unwrap().root_fields();
        assert_eq!(f(doc! {}), Some(vec![]));
        assert_eq!(
            f(doc! {"a.b": 1, "$or": [{"c": 1}, {"a": {"$gt": 2}}], "$nor": [{"d.0": 1}]}),
            Some(vec!["a".to_string(), "c".to_string(), "d".to_string()])
        );
        assert_eq!(
            f(doc! {"x": {"$elemMatch": {"y": 1}}, "$comment": "c"}),
            Some(vec!["x".to_string()])
        );
        assert_eq!(f(doc! {"a": 1, "$expr": {"$eq": ["$a", "$b"]}}), None);
        assert_eq!(f(doc! {"$and": [{"$expr": true}]}), None);
    }

    #[test]
    fn equality_and_arrays() {
        assert!(m(doc! {"a": 5}, doc! {"a": [1, 5]}));
        assert!(m(doc! {"a": [1, 2]}, doc! {"a": [1, 2]}));
        assert!(m(doc! {"a": [1, 2]}, doc! {"a": [[1, 2], 3]}));
        assert!(!m(doc! {"a": [1, 2]}, doc! {"a": [2, 1]}));
        assert!(m(doc! {"a": 1}, doc! {"a": 1.0}));
        assert!(m(doc! {"a": null}, doc! {"b": 1}));
        assert!(m(doc! {"a": null}, doc! {"a": null}));
        assert!(!m(doc! {"a": null}, doc! {"a": 0}));
        assert!(m(doc! {"a.b": 2}, doc! {"a": [{"b": 1}, {"b": 2}]}));
        assert!(m(doc! {"a.1": 5}, doc! {"a": [1, 5]}));
        assert!(m(doc! {"a.b.c": 1}, doc! {"a": {"b": {"c": 1}}}));
        assert!(!m(doc! {"a": 1}, doc! {"a": [[1]]}));
        assert!(m(doc! {"a": {"b": 1}}, doc! {"a": {"b": 1}}));
        assert!(!m(doc! {"a": {"b": 1}}, doc! {"a": {"b": 1, "c": 2}}));
    }

    #[test]
    fn ne_nin_over_arrays() {
        assert!(!m(doc! {"a": {"$ne": 5}}, doc! {"a": [1, 5]}));
        assert!(m(doc! {"a": {"$ne": 5}}, doc! {"a": [1, 2]}));
        assert!(m(doc! {"a": {"$ne": 5}}, doc! {"b": 1}));
        assert!(!m(doc! {"a": {"$ne": null}}, doc! {"b": 1}));
        assert!(!m(doc! {"a": {"$nin": [1, 9]}}, doc! {"a": [1, 5]}));
        assert!(m(doc! {"a": {"$nin": [7, 9]}}, doc! {"a": [1, 5]}));
        assert!(m(doc! {"a": {"$in": [null]}}, doc! {}));
    }

    #[test]
    fn comparisons_are_type_bracketed() {
        assert!(m(doc! {"a": {"$gt": 1}}, doc! {"a": 2.5}));
        assert!(!m(doc! {"a": {"$gt": 1}}, doc! {"a": "zzz"}));
        assert!(m(doc! {"a": {"$lt": "b"}}, doc! {"a": "a"}));
        assert!(m(doc! {"a": {"$gt": 1, "$lt": 5}}, doc! {"a": [0, 10]}));
        assert!(!m(
            doc! {"a": {"$elemMatch": {"$gt": 1, "$lt": 5}}},
            doc! {"a": [0, 10]}
        ));
        assert!(m(
            doc! {"a": {"$elemMatch": {"$gt": 1, "$lt": 5}}},
            doc! {"a": [0, 3]}
        ));
        assert!(m(doc! {"a": {"$gte": null}}, doc! {}));
        assert!(!m(doc! {"a": {"$gt": null}}, doc! {}));
        assert!(m(doc! {"a": {"$gt": bson::Bson::MinKey}}, doc! {"a": "x"}));
    }

    #[test]
    fn logical_and_misc() {
        let d =
            doc! {"a": 1, "b": "Hello", "c": [1, 2, 3], "e": [{"x": 1, "y": 2}, {"x": 3, "y": 4}]};
        assert!(m(doc! {"$or": [{"a": 2}, {"b": "Hello"}]}, d.clone()));
        assert!(!m(doc! {"$nor": [{"a": 2}, {"b": "Hello"}]}, d.clone()));
        assert!(m(doc! {"$and": [{"a": 1}, {"c": 2}]}, d.clone()));
        assert!(m(
            doc! {"b": {"$regex": "^hel", "$options": "i"}},
            d.clone()
        ));
        assert!(m(
            doc! {"b": bson::Regex { pattern: "llo$".try_into().unwrap(), options: "".try_into().unwrap() }},
            d.clone()
        ));
        assert!(m(doc! {"b": {"$not": {"$regex": "^x"}}}, d.clone()));
        assert!(m(doc! {"c": {"$size": 3}}, d.clone()));
        assert!(!m(doc! {"c": {"$size": 2}}, d.clone()));
        assert!(m(doc! {"c": {"$all": [3, 1]}}, d.clone()));
        assert!(!m(doc! {"c": {"$all": [3, 4]}}, d.clone()));
        assert!(!m(doc! {"c": {"$all": []}}, d.clone()));
        assert!(m(doc! {"e": {"$elemMatch": {"x": 3, "y": 4}}}, d.clone()));
        assert!(!m(doc! {"e": {"$elemMatch": {"x": 1, "y": 4}}}, d.clone()));
        assert!(m(doc! {"e.x": 1, "e.y": 4}, d.clone()));
        assert!(m(doc! {"a": {"$mod": [2, 1]}}, d.clone()));
        assert!(m(doc! {"a": {"$type": "number"}}, d.clone()));
        assert!(m(doc! {"c": {"$type": "array"}}, d.clone()));
        assert!(m(doc! {"c": {"$type": 16}}, d.clone()));
        assert!(m(doc! {"b": {"$type": ["int", "string"]}}, d.clone()));
        assert!(m(doc! {"z": {"$exists": false}}, d.clone()));
        assert!(m(doc! {"e.x": {"$exists": true}}, d.clone()));
        assert!(m(
            doc! {"$expr": {"$gt": [{"$size": "$c"}, "$a"]}},
            d.clone()
        ));
        assert!(m(doc! {"a": {"$not": {"$gt": 5}}}, d.clone()));
        assert!(m(doc! {"zz": {"$not": {"$gt": 5}}}, d.clone()));
        assert!(m(
            doc! {"e": {"$all": [{"$elemMatch": {"x": 3}}]}},
            d.clone()
        ));
    }

    #[test]
    fn manual_edge_cases() {
        assert!(
            !m(doc! {"a.b": 1}, doc! {"a": [[{"b": 1}]]}),
            "nested arrays are not traversed by name"
        );
        assert!(m(doc! {"a.0.b": 1}, doc! {"a": [{"b": 1}]}));
        assert!(m(doc! {"a": {"$all": [[1, 2]]}}, doc! {"a": [[1, 2], 3]}));
        assert!(m(doc! {"a": {"$type": "array"}}, doc! {"a": [1]}));
        assert!(m(doc! {"a": {"$type": "array"}}, doc! {"a": [[1]]}));
        assert!(!m(doc! {"a": {"$type": "array"}}, doc! {"a": 1}));
        assert!(m(doc! {"a.b": {"$size": 1}}, doc! {"a": [{"b": [1]}]}));
        assert!(m(doc! {"a": {"$regex": "^x"}}, doc! {"a": ["y", "xz"]}));
        assert!(m(doc! {"a": {"$exists": true}}, doc! {"a": null}));
        assert!(!m(
            doc! {"a": {"$gt": 1}},
            doc! {"a": bson::DateTime::from_millis(5)}
        ));
        assert!(m(doc! {"a": {"$eq": [1, 2]}}, doc! {"a": [1, 2]}));
        assert!(m(doc! {"a": {"$mod": [4, -1]}}, doc! {"a": -5}));
        assert!(m(doc! {"a": {"$mod": [4, 1]}}, doc! {"a": 5.9}));
        assert!(m(doc! {"a.b": {"$exists": false}}, doc! {"a": [1, 2]}));
        assert!(m(
            doc! {"a": {"$in": [bson::Regex { pattern: "^b".try_into().unwrap(), options: "".try_into().unwrap() }]}},
            doc! {"a": "bar"}
        ));
        assert!(m(doc! {"a": {"$lt": bson::Bson::MaxKey}}, doc! {"a": "s"}));
        assert!(m(
            doc! {"a": {"$elemMatch": {"$elemMatch": {"$gt": 1}}}},
            doc! {"a": [[0, 2]]}
        ));
        assert!(m(doc! {"a": {"$not": {"$size": 1}}}, doc! {"a": [1, 2]}));
        assert!(m(
            doc! {"n": 9007199254740993i64},
            doc! {"n": 9007199254740993i64}
        ));
        assert!(!m(
            doc! {"n": 9007199254740993i64},
            doc! {"n": 9007199254740992i64}
        ));
    }

    #[test]
    fn null_semantics_match_mongodb_8() {
        let null_q = doc! {"a.b": {"$eq": null}};
        for (d, want) in [
            (doc! {"a": {}}, true),
            (doc! {"a": null}, true),
            (doc! {"a": 4}, true),
            (doc! {}, true),
            (doc! {"a": {"b": null}}, true),
            (doc! {"a": {"b": bson::Bson::Undefined}}, false),
            (doc! {"a": [{"b": 3}, {}]}, true),
            (doc! {"a": [{"b": null}, {"b": 3}]}, true),
            (doc! {"a": [{"b": 1}, {"b": "s"}]}, false),
            (doc! {"a": [1, "string", 4]}, false),
            (doc! {"a": [null, null]}, false),
            (doc! {"a": []}, false),
            (doc! {"a": [[]]}, false),
        ] {
            assert_eq!(m(null_q.clone(), d.clone()), want, "{d:?}");
            assert_eq!(
                m(doc! {"a.b": {"$ne": null}}, d.clone()),
                !want,
                "$ne {d:?}"
            );
        }
        assert!(!m(doc! {"a": null}, doc! {"a": bson::Bson::Undefined}));
        assert!(m(doc! {"a": null}, doc! {"a": [1, null]}));
        assert!(!m(doc! {"a": null}, doc! {"a": []}));
        assert!(m(doc! {"a": {"$ne": null}}, doc! {"a": []}));
        assert!(m(
            doc! {"a": {"$elemMatch": {"$eq": null}}},
            doc! {"a": [1, null]}
        ));
    }

    #[test]
    fn parse_errors() {
        assert_eq!(err(doc! {"$and": []}), 2);
        assert_eq!(err(doc! {"a": {"$in": 5}}), 2);
        assert_eq!(err(doc! {"a": {"$foo": 5}}), 2);
        assert_eq!(err(doc! {"$foo": 5}), 2);
        assert_eq!(err(doc! {"a": {"$type": "nope"}}), 2);
        assert_eq!(err(doc! {"a": {"$mod": [0, 1]}}), 2);
        assert_eq!(err(doc! {"a": {"$size": -1}}), 2);
        assert_eq!(err(doc! {"a": {"$options": "i"}}), 2);
        assert_eq!(err(doc! {"a": {"$not": 5}}), 2);
        assert_eq!(err(doc! {"a": {"$elemMatch": 5}}), 2);
    }
}
