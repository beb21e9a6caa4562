//! Aggregation expressions (the subset used by `$expr`, `$project`, `$addFields`,
//! `$group` and find projections).
//!
//! An expression is parsed once into an [`Expr`] tree and evaluated against a document;
//! evaluation returns `None` for *missing* (distinct from `null`), which matters for
//! `$ifNull`, `$project` (missing fields are not emitted) and `$type` ("missing").

use std::cmp::Ordering;

use bson::{Bson, Document};

use crate::depth;
use crate::error::{Error, Result, code, type_name};
use crate::numeric;
use crate::order;
use crate::path;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Bson),
    /// `"$a.b"`: a path from `$$CURRENT`.
    Field(Vec<String>),
    /// `"$$name.a.b"`.
    Var(String, Vec<String>),
    Object(Vec<(String, Expr)>),
    Array(Vec<Expr>),
    Op(Op, Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    Cmp,
    Add,
    Subtract,
    Multiply,
    Divide,
    Mod,
    Abs,
    Ceil,
    Floor,
    Round,
    And,
    Or,
    Not,
    Cond,
    IfNull,
    Concat,
    ToLower,
    ToUpper,
    Size,
    ArrayElemAt,
    In,
    Type,
    Min,
    Max,
    Sum,
    Avg,
}

fn op_from_name(name: &str) -> Option<Op> {
    Some(match name {
        "$eq" => Op::Eq,
        "$ne" => Op::Ne,
        "$gt" => Op::Gt,
        "$gte" => Op::Gte,
        "$lt" => Op::Lt,
        "$lte" => Op::Lte,
        "$cmp" => Op::Cmp,
        "$add" => Op::Add,
        "$subtract" => Op::Subtract,
        "$multiply" => Op::Multiply,
        "$divide" => Op::Divide,
        "$mod" => Op::Mod,
        "$abs" => Op::Abs,
        "$ceil" => Op::Ceil,
        "$floor" => Op::Floor,
        "$round" => Op::Round,
        "$and" => Op::And,
        "$or" => Op::Or,
        "$not" => Op::Not,
        "$cond" => Op::Cond,
        "$ifNull" => Op::IfNull,
        "$concat" => Op::Concat,
        "$toLower" => Op::ToLower,
        "$toUpper" => Op::ToUpper,
        "$size" => Op::Size,
        "$arrayElemAt" => Op::ArrayElemAt,
        "$in" => Op::In,
        "$type" => Op::Type,
        "$min" => Op::Min,
        "$max" => Op::Max,
        "$sum" => Op::Sum,
        "$avg" => Op::Avg,
        _ => return None,
    })
}

/// Evaluation context: `$$ROOT` and user variables (e.g. `$$this`).
pub struct Vars<'a> {
    pub root: &'a Document,
    pub extra: Vec<(String, Bson)>,
}

fn arity(op: Op, name: &str, n: usize) -> Result<()> {
    let ok = match op {
        Op::Eq
        | Op::Ne
        | Op::Gt
        | Op::Gte
        | Op::Lt
        | Op::Lte
        | Op::Cmp
        | Op::Subtract
        | Op::Divide
        | Op::Mod
        | Op::ArrayElemAt
        | Op::In => n == 2,
        Op::Abs
        | Op::Ceil
        | Op::Floor
        | Op::Not
        | Op::ToLower
        | Op::ToUpper
        | Op::Size
        | Op::Type => n == 1,
        Op::Round => n == 1 || n == 2,
        Op::Cond => n == 3,
        Op::IfNull => n >= 2,
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::location(
            16020,
            format!(
                "Expression {name} takes exactly {} arguments. {n} were passed in.",
                match op {
                    Op::Cond => 3,
                    Op::Abs
                    | Op::Ceil
                    | Op::Floor
                    | Op::Not
                    | Op::ToLower
                    | Op::ToUpper
                    | Op::Size
                    | Op::Type
                    | Op::Round => 1,
                    _ => 2,
                }
            ),
        ))
    }
}

impl Expr {
    /// Parse an expression value.
    pub fn parse(v: &Bson) -> Result<Expr> {
        Self::parse_at(v, 1)
    }

    /// Parse at nesting `level` (1 at the top). Parsing, evaluating and dropping an
    /// [`Expr`] recurse once per level, so nesting past [`depth::MAX_EXPR_DEPTH`] is
    /// refused, with MongoDB's code for BSON nested too deeply (`Overflow`).
    fn parse_at(v: &Bson, level: usize) -> Result<Expr> {
        if level > depth::MAX_EXPR_DEPTH {
            return Err(Error::new(
                code::OVERFLOW,
                format!(
                    "expression nested deeper than {} levels",
                    depth::MAX_EXPR_DEPTH
                ),
            ));
        }
        let parse = |v: &Bson| Self::parse_at(v, level + 1);
        match v {
            Bson::String(s) if s.starts_with("$$") => {
                let mut parts = path::split(&s[2..])?;
                if parts.is_empty() || parts[0].is_empty() {
                    return Err(Error::failed_to_parse("empty variable name"));
                }
                let name = parts.remove(0);
                Ok(Expr::Var(name, parts))
            }
            Bson::String(s) if s.starts_with('$') => {
                if s.len() == 1 {
                    return Err(Error::location(
                        16872,
                        "'$' by itself is not a valid FieldPath",
                    ));
                }
                Ok(Expr::Field(path::split(&s[1..])?))
            }
            Bson::Document(d) => {
                let first = d.keys().next();
                match first {
                    Some(k) if k.starts_with('$') => {
                        if d.len() != 1 {
                            return Err(Error::location(
                                15983,
                                format!(
                                    "an expression specification must contain exactly one field, the name of the expression. Found {} fields",
                                    d.len()
                                ),
                            ));
                        }
                        // Borrowed: cloning the argument at every level would copy a
                        // nested expression once per level it is nested in.
                        let arg = d.get(k).unwrap_or(&Bson::Null);
                        if k == "$literal" {
                            return Ok(Expr::Literal(arg.clone()));
                        }
                        let op = op_from_name(k).ok_or_else(|| {
                            Error::new(
                                crate::error::ErrorCode {
                                    code: 168,
                                    name: "InvalidPipelineOperator",
                                },
                                format!("Unrecognized expression '{k}'"),
                            )
                        })?;
                        let args = match (op, arg) {
                            (Op::Cond, Bson::Document(c)) => {
                                let get = |f: &str| {
                                    c.get(f).ok_or_else(|| {
                                        Error::location(
                                            17080,
                                            format!("Missing '{f}' parameter to $cond"),
                                        )
                                    })
                                };
                                vec![
                                    parse(get("if")?)?,
                                    parse(get("then")?)?,
                                    parse(get("else")?)?,
                                ]
                            }
                            (Op::Round, Bson::Array(a)) | (_, Bson::Array(a)) => {
                                a.iter().map(parse).collect::<Result<Vec<_>>>()?
                            }
                            _ => vec![parse(arg)?],
                        };
                        arity(op, k, args.len())?;
                        Ok(Expr::Op(op, args))
                    }
                    _ => {
                        let mut fields = Vec::with_capacity(d.len());
                        for (k, v) in d {
                            fields.push((k.clone(), parse(v)?));
                        }
                        Ok(Expr::Object(fields))
                    }
                }
            }
            Bson::Array(a) => Ok(Expr::Array(a.iter().map(parse).collect::<Result<_>>()?)),
            other => Ok(Expr::Literal(other.clone())),
        }
    }

    /// Evaluate against `current` (usually the root document).
    pub fn eval(&self, current: &Document, vars: &Vars) -> Result<Option<Bson>> {
        match self {
            Expr::Literal(v) => Ok(Some(v.clone())),
            Expr::Field(p) => Ok(field(current, p)),
            Expr::Var(name, p) => {
                let base = match name.as_str() {
                    "ROOT" => Bson::Document(vars.root.clone()),
                    "CURRENT" => Bson::Document(current.clone()),
                    "REMOVE" => return Ok(None),
                    other => match vars.extra.iter().rev().find(|(n, _)| n == other) {
                        Some((_, v)) => v.clone(),
                        None => {
                            return Err(Error::location(
                                17276,
                                format!("Use of undefined variable: {other}"),
                            ));
                        }
                    },
                };
                Ok(if p.is_empty() {
                    Some(base)
                } else {
                    path::expr_get(&base, p)
                })
            }
            Expr::Object(fields) => {
                let mut d = Document::new();
                for (k, e) in fields {
                    if let Some(v) = e.eval(current, vars)? {
                        d.insert(k.clone(), v);
                    }
                }
                Ok(Some(Bson::Document(d)))
            }
            Expr::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for e in items {
                    out.push(e.eval(current, vars)?.unwrap_or(Bson::Null));
                }
                Ok(Some(Bson::Array(out)))
            }
            Expr::Op(op, args) => eval_op(*op, args, current, vars),
        }
    }

    /// Evaluate with `$$ROOT` == `doc`.
    pub fn eval_root(&self, doc: &Document) -> Result<Option<Bson>> {
        self.eval(
            doc,
            &Vars {
                root: doc,
                extra: Vec::new(),
            },
        )
    }
}

fn field(current: &Document, p: &[String]) -> Option<Bson> {
    let (first, rest) = p.split_first()?;
    let v = current.get(first)?;
    path::expr_get(v, rest)
}

/// MongoDB truthiness: false, null, missing, undefined and numeric zero are false.
pub fn truthy(v: &Option<Bson>) -> bool {
    match v {
        None | Some(Bson::Null) | Some(Bson::Undefined) | Some(Bson::Boolean(false)) => false,
        Some(Bson::Int32(0)) | Some(Bson::Int64(0)) => false,
        Some(Bson::Double(f)) => *f != 0.0,
        Some(Bson::Decimal128(d)) => order::decimal_to_f64(d) != 0.0,
        _ => true,
    }
}

fn is_nullish(v: &Option<Bson>) -> bool {
    matches!(v, None | Some(Bson::Null) | Some(Bson::Undefined))
}

fn eval_op(op: Op, args: &[Expr], cur: &Document, vars: &Vars) -> Result<Option<Bson>> {
    let ev = |i: usize| -> Result<Option<Bson>> { args[i].eval(cur, vars) };
    let cmp2 = || -> Result<Ordering> {
        let a = ev(0)?.unwrap_or(Bson::Undefined);
        let b = ev(1)?.unwrap_or(Bson::Undefined);
        // Missing compares like undefined in aggregation comparisons (below null).
        Ok(order::cmp(&a, &b))
    };
    Ok(match op {
        Op::Eq => Some(Bson::Boolean(cmp2()? == Ordering::Equal)),
        Op::Ne => Some(Bson::Boolean(cmp2()? != Ordering::Equal)),
        Op::Gt => Some(Bson::Boolean(cmp2()? == Ordering::Greater)),
        Op::Gte => Some(Bson::Boolean(cmp2()? != Ordering::Less)),
        Op::Lt => Some(Bson::Boolean(cmp2()? == Ordering::Less)),
        Op::Lte => Some(Bson::Boolean(cmp2()? != Ordering::Greater)),
        Op::Cmp => Some(Bson::Int32(match cmp2()? {
            Ordering::Less => -1,
            Ordering::Equal => 0,
            Ordering::Greater => 1,
        })),
        Op::Add => {
            let mut acc = Bson::Int32(0);
            let mut date: Option<i64> = None;
            for a in args {
                let v = a.eval(cur, vars)?;
                match v {
                    None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(Some(Bson::Null)),
                    Some(Bson::DateTime(d)) => {
                        if date.is_some() {
                            return Err(Error::location(
                                16612,
                                "only one date allowed in an $add expression",
                            ));
                        }
                        date = Some(d.timestamp_millis());
                    }
                    Some(v) => {
                        acc = numeric::add(&acc, &v).ok_or_else(|| {
                            Error::location(
                                16554,
                                format!(
                                    "$add only supports numeric or date types, not {}",
                                    type_name(&v)
                                ),
                            )
                        })?;
                    }
                }
            }
            match date {
                Some(ms) => {
                    let delta = numeric::to_f64(&acc).unwrap_or(0.0).round() as i64;
                    Some(Bson::DateTime(bson::DateTime::from_millis(
                        ms.saturating_add(delta),
                    )))
                }
                None => Some(acc),
            }
        }
        Op::Subtract => {
            let (a, b) = (ev(0)?, ev(1)?);
            if is_nullish(&a) || is_nullish(&b) {
                return Ok(Some(Bson::Null));
            }
            let (a, b) = (a.unwrap_or(Bson::Null), b.unwrap_or(Bson::Null));
            match (&a, &b) {
                (Bson::DateTime(x), Bson::DateTime(y)) => Some(Bson::Int64(
                    x.timestamp_millis().saturating_sub(y.timestamp_millis()),
                )),
                (Bson::DateTime(x), n) if numeric::is_number(n) => {
                    let delta = numeric::to_f64(n).unwrap_or(0.0).round() as i64;
                    Some(Bson::DateTime(bson::DateTime::from_millis(
                        x.timestamp_millis().saturating_sub(delta),
                    )))
                }
                _ => Some(numeric::sub(&a, &b).ok_or_else(|| {
                    Error::location(
                        16556,
                        format!(
                            "cant $subtract a {} from a {}",
                            type_name(&b),
                            type_name(&a)
                        ),
                    )
                })?),
            }
        }
        Op::Multiply => {
            let mut acc = Bson::Int32(1);
            for a in args {
                match a.eval(cur, vars)? {
                    None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(Some(Bson::Null)),
                    Some(v) => {
                        acc = numeric::mul(&acc, &v).ok_or_else(|| {
                            Error::location(
                                16555,
                                format!(
                                    "$multiply only supports numeric types, not {}",
                                    type_name(&v)
                                ),
                            )
                        })?
                    }
                }
            }
            Some(acc)
        }
        Op::Divide | Op::Mod => {
            let (a, b) = (ev(0)?, ev(1)?);
            if is_nullish(&a) || is_nullish(&b) {
                return Ok(Some(Bson::Null));
            }
            let (a, b) = (a.unwrap_or(Bson::Null), b.unwrap_or(Bson::Null));
            let name = if op == Op::Divide { "$divide" } else { "$mod" };
            if !numeric::is_number(&a) || !numeric::is_number(&b) {
                return Err(Error::location(
                    if op == Op::Divide { 16609 } else { 16611 },
                    format!(
                        "{name} only supports numeric types, not {} and {}",
                        type_name(&a),
                        type_name(&b)
                    ),
                ));
            }
            if numeric::to_f64(&b) == Some(0.0) {
                return Err(if op == Op::Divide {
                    Error::bad_value("can't $divide by zero")
                } else {
                    Error::location(16610, "can't $mod by zero")
                });
            }
            if op == Op::Divide {
                numeric::div(&a, &b)
            } else {
                numeric::rem(&a, &b)
            }
        }
        Op::Abs | Op::Ceil | Op::Floor | Op::Round => {
            let a = ev(0)?;
            if is_nullish(&a) {
                return Ok(Some(Bson::Null));
            }
            let a = a.unwrap_or(Bson::Null);
            let places = if op == Op::Round && args.len() == 2 {
                numeric::to_i64(&ev(1)?.unwrap_or(Bson::Int32(0))).unwrap_or(0)
            } else {
                0
            };
            let r = match (op, &a) {
                (Op::Abs, Bson::Int32(i)) => Some(match i.checked_abs() {
                    Some(v) => Bson::Int32(v),
                    None => Bson::Int64((*i as i64).abs()),
                }),
                (Op::Abs, Bson::Int64(i)) => Some(match i.checked_abs() {
                    Some(v) => Bson::Int64(v),
                    None => Bson::Double((*i as f64).abs()),
                }),
                (Op::Abs, _) => numeric::map_float(&a, f64::abs),
                (Op::Ceil, _) => numeric::map_float(&a, f64::ceil),
                (Op::Floor, _) => numeric::map_float(&a, f64::floor),
                _ => {
                    let m = 10f64.powi(places as i32);
                    // Round half to even, as MongoDB does.
                    numeric::map_float(&a, |x| {
                        let y = x * m;
                        let r = y.round();
                        let r = if (y - y.trunc()).abs() == 0.5 {
                            2.0 * (y / 2.0).round()
                        } else {
                            r
                        };
                        r / m
                    })
                }
            };
            Some(r.ok_or_else(|| {
                Error::location(
                    28765,
                    format!(
                        "$abs/$ceil/$floor/$round only supports numeric types, not {}",
                        type_name(&a)
                    ),
                )
            })?)
        }
        Op::And => {
            for a in args {
                if !truthy(&a.eval(cur, vars)?) {
                    return Ok(Some(Bson::Boolean(false)));
                }
            }
            Some(Bson::Boolean(true))
        }
        Op::Or => {
            for a in args {
                if truthy(&a.eval(cur, vars)?) {
                    return Ok(Some(Bson::Boolean(true)));
                }
            }
            Some(Bson::Boolean(false))
        }
        Op::Not => Some(Bson::Boolean(!truthy(&ev(0)?))),
        Op::Cond => {
            if truthy(&ev(0)?) {
                ev(1)?
            } else {
                ev(2)?
            }
        }
        Op::IfNull => {
            for a in &args[..args.len() - 1] {
                let v = a.eval(cur, vars)?;
                if !is_nullish(&v) {
                    return Ok(v);
                }
            }
            args[args.len() - 1].eval(cur, vars)?
        }
        Op::Concat => {
            let mut s = String::new();
            for a in args {
                match a.eval(cur, vars)? {
                    None | Some(Bson::Null) | Some(Bson::Undefined) => return Ok(Some(Bson::Null)),
                    Some(Bson::String(x)) => s.push_str(&x),
                    Some(other) => {
                        return Err(Error::location(
                            16702,
                            format!("$concat only supports strings, not {}", type_name(&other)),
                        ));
                    }
                }
            }
            Some(Bson::String(s))
        }
        Op::ToLower | Op::ToUpper => {
            let s = match ev(0)? {
                None | Some(Bson::Null) | Some(Bson::Undefined) => String::new(),
                Some(Bson::String(s)) | Some(Bson::Symbol(s)) => s,
                Some(Bson::Int32(i)) => i.to_string(),
                Some(Bson::Int64(i)) => i.to_string(),
                Some(Bson::Double(f)) => f.to_string(),
                Some(other) => {
                    return Err(Error::location(
                        16007,
                        format!(
                            "can't convert from BSON type {} to String",
                            type_name(&other)
                        ),
                    ));
                }
            };
            Some(Bson::String(if op == Op::ToLower {
                s.to_lowercase()
            } else {
                s.to_uppercase()
            }))
        }
        Op::Size => match ev(0)? {
            Some(Bson::Array(a)) => Some(Bson::Int32(a.len() as i32)),
            other => {
                let t = other.as_ref().map(type_name).unwrap_or("missing");
                return Err(Error::location(
                    17124,
                    format!("The argument to $size must be an array. Type of argument was: {t}"),
                ));
            }
        },
        Op::ArrayElemAt => {
            let (a, i) = (ev(0)?, ev(1)?);
            if is_nullish(&a) || is_nullish(&i) {
                return Ok(Some(Bson::Null));
            }
            let Some(Bson::Array(arr)) = a else {
                return Err(Error::location(
                    28689,
                    "$arrayElemAt's first argument must be an array",
                ));
            };
            let idx = i.as_ref().and_then(numeric::to_i64).ok_or_else(|| {
                Error::location(
                    28690,
                    "$arrayElemAt's second argument must be a numeric value",
                )
            })?;
            let len = arr.len() as i64;
            let pos = if idx < 0 { len + idx } else { idx };
            if pos < 0 || pos >= len {
                None
            } else {
                Some(arr[pos as usize].clone())
            }
        }
        Op::In => {
            let needle = ev(0)?.unwrap_or(Bson::Undefined);
            match ev(1)? {
                Some(Bson::Array(arr)) => {
                    Some(Bson::Boolean(arr.iter().any(|x| order::eq(x, &needle))))
                }
                other => {
                    let t = other.as_ref().map(type_name).unwrap_or("missing");
                    return Err(Error::location(
                        40081,
                        format!("$in requires an array as a second argument, found: {t}"),
                    ));
                }
            }
        }
        Op::Type => Some(Bson::String(match ev(0)? {
            None => "missing".into(),
            Some(v) => type_name(&v).into(),
        })),
        Op::Min | Op::Max | Op::Sum | Op::Avg => {
            // Expression forms: one array argument or several operands; nulls ignored.
            let mut vals = Vec::new();
            if args.len() == 1 {
                match ev(0)? {
                    Some(Bson::Array(a)) => vals.extend(a),
                    Some(v) => vals.push(v),
                    None => {}
                }
            } else {
                for a in args {
                    if let Some(v) = a.eval(cur, vars)? {
                        vals.push(v);
                    }
                }
            }
            match op {
                Op::Min | Op::Max => {
                    let mut best: Option<Bson> = None;
                    for v in vals
                        .into_iter()
                        .filter(|v| !matches!(v, Bson::Null | Bson::Undefined))
                    {
                        let better = match &best {
                            None => true,
                            Some(b) => {
                                let o = order::cmp(&v, b);
                                if op == Op::Min {
                                    o == Ordering::Less
                                } else {
                                    o == Ordering::Greater
                                }
                            }
                        };
                        if better {
                            best = Some(v);
                        }
                    }
                    Some(best.unwrap_or(Bson::Null))
                }
                _ => {
                    let nums: Vec<Bson> = vals.into_iter().filter(numeric::is_number).collect();
                    let mut acc = Bson::Int32(0);
                    for n in &nums {
                        acc = numeric::add(&acc, n).unwrap_or(acc);
                    }
                    if op == Op::Sum {
                        Some(acc)
                    } else if nums.is_empty() {
                        Some(Bson::Null)
                    } else {
                        numeric::div(&acc, &Bson::Int64(nums.len() as i64))
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{bson, doc};

    fn run(e: Bson, d: Document) -> Result<Option<Bson>> {
        Expr::parse(&e)?.eval_root(&d)
    }

    #[test]
    fn basics() {
        let d = doc! {"a": 5, "b": {"c": "Hi"}, "arr": [1, 2, 3], "n": null};
        assert_eq!(run(bson!("$a"), d.clone()).unwrap(), Some(Bson::Int32(5)));
        assert_eq!(
            run(bson!("$b.c"), d.clone()).unwrap(),
            Some(Bson::String("Hi".into()))
        );
        assert_eq!(
            run(bson!({"$add": ["$a", 1.5]}), d.clone()).unwrap(),
            Some(Bson::Double(6.5))
        );
        assert_eq!(
            run(bson!({"$gt": ["$a", 3]}), d.clone()).unwrap(),
            Some(Bson::Boolean(true))
        );
        assert_eq!(
            run(
                bson!({"$cond": [{"$eq": ["$a", 5]}, "yes", "no"]}),
                d.clone()
            )
            .unwrap(),
            Some(bson!("yes"))
        );
        assert_eq!(
            run(
                bson!({"$cond": {"if": false, "then": 1, "else": 2}}),
                d.clone()
            )
            .unwrap(),
            Some(bson!(2))
        );
        assert_eq!(
            run(bson!({"$ifNull": ["$n", "$missing", "dflt"]}), d.clone()).unwrap(),
            Some(bson!("dflt"))
        );
        assert_eq!(
            run(bson!({"$concat": ["$b.c", "!"]}), d.clone()).unwrap(),
            Some(bson!("Hi!"))
        );
        assert_eq!(
            run(bson!({"$toUpper": "$b.c"}), d.clone()).unwrap(),
            Some(bson!("HI"))
        );
        assert_eq!(
            run(bson!({"$size": "$arr"}), d.clone()).unwrap(),
            Some(bson!(3))
        );
        assert_eq!(
            run(bson!({"$arrayElemAt": ["$arr", -1]}), d.clone()).unwrap(),
            Some(bson!(3))
        );
        assert_eq!(
            run(bson!({"$in": [2, "$arr"]}), d.clone()).unwrap(),
            Some(bson!(true))
        );
        assert_eq!(
            run(bson!({"$type": "$zzz"}), d.clone()).unwrap(),
            Some(bson!("missing"))
        );
        assert_eq!(
            run(bson!({"$literal": "$a"}), d.clone()).unwrap(),
            Some(bson!("$a"))
        );
        assert_eq!(
            run(bson!({"$mod": [7, 3]}), d.clone()).unwrap(),
            Some(bson!(1))
        );
        assert_eq!(
            run(bson!({"$round": [2.5]}), d.clone()).unwrap(),
            Some(bson!(2.0))
        );
        assert_eq!(run(bson!("$$ROOT.a"), d.clone()).unwrap(), Some(bson!(5)));
        assert_eq!(
            run(bson!({"$add": ["$a", null]}), d.clone()).unwrap(),
            Some(Bson::Null)
        );
    }

    #[test]
    fn errors_have_codes() {
        let d = doc! {"s": "x"};
        assert_eq!(
            run(bson!({"$add": ["$s", 1]}), d.clone()).unwrap_err().code,
            16554
        );
        assert_eq!(
            run(bson!({"$divide": [1, 0]}), d.clone()).unwrap_err().code,
            2
        );
        assert_eq!(run(bson!({"$bogus": 1}), d.clone()).unwrap_err().code, 168);
        assert_eq!(
            run(bson!({"$size": "$s"}), d.clone()).unwrap_err().code,
            17124
        );
    }
}
