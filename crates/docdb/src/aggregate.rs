//! Aggregation pipelines as a chain of document iterators.
//!
//! Streaming stages (`$match`, `$project`, `$addFields`/`$set`, `$unset`, `$limit`,
//! `$skip`, `$unwind`, `$replaceRoot`) wrap the upstream iterator; blocking stages (`$sort`,
//! `$group`, `$count`) consume it lazily on the first `next()`. `$sort` spills to encrypted
//! temp files past the memory budget (see [`crate::spill`]).

use std::collections::HashMap;

use bson::{Bson, Document};

use crate::depth;
use crate::error::{Error, Result, code, type_name};
use crate::expr::{Expr, Vars};
use crate::keycodec;
use crate::matcher::Matcher;
use crate::numeric;
use crate::order;
use crate::path;
use crate::projection::Projection;
use crate::rawdoc;
use crate::sort::SortSpec;
use crate::spill::{DocIter, ExternalSorter, SpillConfig};

#[derive(Debug, Clone)]
enum Acc {
    Sum(Expr),
    Avg(Expr),
    Min(Expr),
    Max(Expr),
    First(Expr),
    Last(Expr),
    Push(Expr),
    AddToSet(Expr),
    Count,
}

#[derive(Debug, Clone)]
pub struct GroupSpec {
    id: Expr,
    accs: Vec<(String, Acc)>,
}

#[derive(Debug, Clone)]
pub struct UnwindSpec {
    path: Vec<String>,
    include_index: Option<String>,
    preserve: bool,
}

/// One parsed stage.
#[derive(Debug, Clone)]
pub enum Stage {
    Match(Box<Matcher>),
    Project(Box<Projection>),
    AddFields(Vec<(Vec<String>, Expr)>),
    Sort(SortSpec),
    Limit(usize),
    Skip(usize),
    Group(Box<GroupSpec>),
    Count(String),
    Unwind(UnwindSpec),
    ReplaceRoot(Expr),
}

/// A parsed pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub stages: Vec<Stage>,
}

fn positive_int(v: &Bson, code: i32, what: &str) -> Result<i64> {
    let f = numeric::to_f64(v).filter(|_| numeric::is_number(v));
    match f {
        Some(x) if x.fract() == 0.0 => Ok(x as i64),
        _ => Err(Error::location(
            code,
            format!(
                "invalid argument to {what} stage: Expected a number, got {}",
                type_name(v)
            ),
        )),
    }
}

fn parse_group(d: &Document) -> Result<GroupSpec> {
    let id = d
        .get("_id")
        .ok_or_else(|| Error::location(15955, "a group specification must include an _id"))?;
    let id = Expr::parse(id)?;
    let mut accs = Vec::new();
    for (k, v) in d {
        if k == "_id" {
            continue;
        }
        if k.contains('.') {
            return Err(Error::location(
                40235,
                format!("The field name '{k}' cannot contain '.'"),
            ));
        }
        let Bson::Document(a) = v else {
            return Err(Error::location(
                40234,
                format!("The field '{k}' must be an accumulator object"),
            ));
        };
        if a.len() != 1 {
            return Err(Error::location(
                40238,
                format!("The field '{k}' must specify one accumulator"),
            ));
        }
        let (op, arg) = a
            .iter()
            .next()
            .ok_or_else(|| Error::internal("empty accumulator"))?;
        let e = || Expr::parse(arg);
        let acc = match op.as_str() {
            "$sum" => Acc::Sum(e()?),
            "$avg" => Acc::Avg(e()?),
            "$min" => Acc::Min(e()?),
            "$max" => Acc::Max(e()?),
            "$first" => Acc::First(e()?),
            "$last" => Acc::Last(e()?),
            "$push" => Acc::Push(e()?),
            "$addToSet" => Acc::AddToSet(e()?),
            "$count" => Acc::Count,
            other => {
                return Err(Error::location(
                    15952,
                    format!("unknown group operator '{other}'"),
                ));
            }
        };
        accs.push((k.clone(), acc));
    }
    Ok(GroupSpec { id, accs })
}

/// Most stages a pipeline may have (MongoDB's `internalPipelineLengthLimit`). Each stage
/// wraps the iterator of the one before it, so pulling a document recurses once per stage.
pub const MAX_STAGES: usize = 1000;

/// Refuses a document a stage built nested deeper than MongoDB's largest BSON depth
/// (`Overflow`). Each stage can deepen documents by at most its expressions' depth, so
/// checking after every such stage keeps the documents later walkers recurse over bounded.
fn check_built(d: Document) -> Result<Document> {
    if depth::exceeds(&d, rawdoc::MAX_DEPTH) {
        depth::dismantle(Bson::Document(d));
        return Err(Error::new(
            code::OVERFLOW,
            format!(
                "cannot convert document to BSON because it exceeds the limit of {} levels of nesting",
                rawdoc::MAX_DEPTH
            ),
        ));
    }
    Ok(d)
}

impl Pipeline {
    pub fn parse(stages: &[Document]) -> Result<Pipeline> {
        if stages.len() > MAX_STAGES {
            return Err(Error::location(
                7749501,
                format!("Pipeline length must be no longer than {MAX_STAGES} stages."),
            ));
        }
        let mut out = Vec::with_capacity(stages.len());
        for s in stages {
            if s.len() != 1 {
                return Err(Error::location(
                    40323,
                    "A pipeline stage specification object must contain exactly one field.",
                ));
            }
            let (name, arg) = s
                .iter()
                .next()
                .ok_or_else(|| Error::internal("empty stage"))?;
            let need_doc = |what: &str| -> Result<&Document> {
                match arg {
                    Bson::Document(d) => Ok(d),
                    _ => Err(Error::location(
                        15959,
                        format!("the {what} specification must be an object"),
                    )),
                }
            };
            let stage = match name.as_str() {
                "$match" => Stage::Match(Box::new(Matcher::new(need_doc("match")?)?)),
                "$project" => {
                    let d = need_doc("projection")?;
                    if d.is_empty() {
                        return Err(Error::location(
                            51272,
                            "Invalid $project :: caused by :: projection specification must have at least one field",
                        ));
                    }
                    Stage::Project(Box::new(Projection::new(d)?))
                }
                "$addFields" | "$set" => {
                    let d = need_doc(name)?;
                    let mut fields = Vec::new();
                    for (k, v) in d {
                        fields.push((path::split(k)?, Expr::parse(v)?));
                    }
                    Stage::AddFields(fields)
                }
                "$unset" => {
                    let names: Vec<String> = match arg {
                        Bson::String(s) => vec![s.clone()],
                        Bson::Array(a) => a
                            .iter()
                            .map(|x| match x {
                                Bson::String(s) => Ok(s.clone()),
                                _ => Err(Error::location(31120, "$unset specification must be a string or an array containing only string values")),
                            })
                            .collect::<Result<_>>()?,
                        _ => return Err(Error::location(31002, "$unset specification must be a string or an array")),
                    };
                    let mut spec = Document::new();
                    for n in names {
                        spec.insert(n, 0);
                    }
                    Stage::Project(Box::new(Projection::new(&spec)?))
                }
                "$sort" => {
                    let d = need_doc("$sort key")?;
                    if d.is_empty() {
                        return Err(Error::location(
                            15976,
                            "$sort stage must have at least one sort key",
                        ));
                    }
                    Stage::Sort(SortSpec::parse(d)?)
                }
                "$limit" => {
                    let n = positive_int(arg, 15957, "$limit")?;
                    if n <= 0 {
                        return Err(Error::location(15958, "the limit must be positive"));
                    }
                    Stage::Limit(n as usize)
                }
                "$skip" => {
                    let n = positive_int(arg, 15972, "$skip")?;
                    if n < 0 {
                        return Err(Error::location(
                            15956,
                            "invalid argument to $skip stage: Expected a non-negative number",
                        ));
                    }
                    Stage::Skip(n as usize)
                }
                "$group" => Stage::Group(Box::new(parse_group(need_doc("group")?)?)),
                "$count" => match arg {
                    Bson::String(s) if !s.is_empty() && !s.starts_with('$') && !s.contains('.') => {
                        Stage::Count(s.clone())
                    }
                    _ => {
                        return Err(Error::location(
                            40156,
                            "the count field must be a non-empty string",
                        ));
                    }
                },
                "$unwind" => {
                    let (p, idx, preserve) = match arg {
                        Bson::String(s) => (s.clone(), None, false),
                        Bson::Document(d) => {
                            let p = match d.get("path") {
                                Some(Bson::String(s)) => s.clone(),
                                _ => {
                                    return Err(Error::location(
                                        28812,
                                        "no path specified to $unwind stage",
                                    ));
                                }
                            };
                            let idx = match d.get("includeArrayIndex") {
                                None => None,
                                Some(Bson::String(s)) if !s.starts_with('$') => Some(s.clone()),
                                Some(_) => {
                                    return Err(Error::location(
                                        28810,
                                        "expected a non-empty string for the includeArrayIndex option to $unwind stage",
                                    ));
                                }
                            };
                            let preserve = match d.get("preserveNullAndEmptyArrays") {
                                None => false,
                                Some(Bson::Boolean(b)) => *b,
                                Some(_) => {
                                    return Err(Error::location(
                                        28809,
                                        "expected a boolean for the preserveNullAndEmptyArrays option to $unwind stage",
                                    ));
                                }
                            };
                            (p, idx, preserve)
                        }
                        _ => {
                            return Err(Error::location(
                                15981,
                                "expected either a string or an object as specification for $unwind stage",
                            ));
                        }
                    };
                    let Some(stripped) = p.strip_prefix('$') else {
                        return Err(Error::location(
                            28818,
                            format!(
                                "path option to $unwind stage should be prefixed with a '$': {p}"
                            ),
                        ));
                    };
                    Stage::Unwind(UnwindSpec {
                        path: path::split(stripped)?,
                        include_index: idx,
                        preserve,
                    })
                }
                "$replaceRoot" | "$replaceWith" => {
                    let e = if name == "$replaceRoot" {
                        need_doc(name)?
                            .get("newRoot")
                            .ok_or_else(|| {
                                Error::location(
                                    40231,
                                    "no newRoot specified for the $replaceRoot stage",
                                )
                            })?
                            .clone()
                    } else {
                        arg.clone()
                    };
                    Stage::ReplaceRoot(Expr::parse(&e)?)
                }
                other => {
                    return Err(Error::location(
                        40324,
                        format!("Unrecognized pipeline stage name: '{other}'"),
                    ));
                }
            };
            out.push(stage);
        }
        Ok(Pipeline { stages: out })
    }

    /// Chain the stages over `input`.
    pub fn run(&self, mut input: DocIter, cfg: &SpillConfig) -> DocIter {
        for (i, st) in self.stages.iter().enumerate() {
            let next_limit = match self.stages.get(i + 1) {
                Some(Stage::Limit(n)) => Some(*n),
                _ => None,
            };
            input = apply_stage(st.clone(), input, cfg.clone(), next_limit);
        }
        input
    }
}

fn set_path(doc: &mut Document, p: &[String], v: Bson) {
    if p.len() == 1 {
        doc.insert(p[0].clone(), v);
        return;
    }
    let e = doc
        .entry(p[0].clone())
        .or_insert_with(|| Bson::Document(Document::new()));
    match e {
        Bson::Document(d) => set_path(d, &p[1..], v),
        Bson::Array(a) => {
            for x in a.iter_mut() {
                if let Bson::Document(d) = x {
                    set_path(d, &p[1..], v.clone());
                }
            }
        }
        other => {
            let mut d = Document::new();
            set_path(&mut d, &p[1..], v);
            *other = Bson::Document(d);
        }
    }
}

/// A blocking stage: computes its output on the first `next()`.
struct Lazy {
    init: Option<Box<dyn FnOnce() -> Result<DocIter> + Send>>,
    inner: Option<DocIter>,
}

impl Iterator for Lazy {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(f) = self.init.take() {
            match f() {
                Ok(it) => self.inner = Some(it),
                Err(e) => return Some(Err(e)),
            }
        }
        self.inner.as_mut()?.next()
    }
}

fn lazy(f: impl FnOnce() -> Result<DocIter> + Send + 'static) -> DocIter {
    Box::new(Lazy {
        init: Some(Box::new(f)),
        inner: None,
    })
}

fn apply_stage(st: Stage, input: DocIter, cfg: SpillConfig, next_limit: Option<usize>) -> DocIter {
    match st {
        Stage::Match(m) => Box::new(input.filter_map(move |r| match r {
            Ok(d) => match m.matches(&d) {
                Ok(true) => Some(Ok(d)),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            },
            Err(e) => Some(Err(e)),
        })),
        Stage::Project(p) => Box::new(input.map(move |r| r.and_then(|d| p.apply(&d)).and_then(check_built))),
        Stage::AddFields(fields) => Box::new(input.map(move |r| {
            let mut d = r?;
            let root = d.clone();
            let vars = Vars { root: &root, extra: Vec::new() };
            for (p, e) in &fields {
                match e.eval(&root, &vars)? {
                    Some(v) => set_path(&mut d, p, v),
                    None => {
                        if p.len() == 1 {
                            d.remove(&p[0]);
                        }
                    }
                }
            }
            check_built(d)
        })),
        Stage::ReplaceRoot(e) => Box::new(input.map(move |r| {
            let d = r?;
            match e.eval_root(&d)? {
                Some(Bson::Document(nd)) => check_built(nd),
                other => Err(Error::location(40228, format!("'newRoot' expression must evaluate to an object, but resulting value was: {}. Type of resulting value: '{}'.", other.as_ref().map(crate::error::render).unwrap_or_else(|| "MISSING".into()), other.as_ref().map(type_name).unwrap_or("missing")))),
            }
        })),
        Stage::Limit(n) => Box::new(input.take(n)),
        Stage::Skip(n) => Box::new(input.skip(n)),
        Stage::Sort(spec) => lazy(move || {
            let mut s = ExternalSorter::new(spec, cfg);
            if let Some(k) = next_limit {
                s = s.with_limit(k);
            }
            for d in input {
                s.push(d?)?;
            }
            s.finish()
        }),
        Stage::Count(name) => lazy(move || {
            let mut n: i64 = 0;
            for d in input {
                d?;
                n += 1;
            }
            let out: Vec<Result<Document>> = if n == 0 {
                Vec::new()
            } else {
                let mut d = Document::new();
                d.insert(name, if n <= i32::MAX as i64 { Bson::Int32(n as i32) } else { Bson::Int64(n) });
                vec![Ok(d)]
            };
            Ok(Box::new(out.into_iter()))
        }),
        Stage::Group(g) => lazy(move || {
            let out = run_group(*g, input, cfg)?;
            Ok(Box::new(out.map(|r| r.and_then(check_built))) as DocIter)
        }),
        Stage::Unwind(u) => Box::new(input.flat_map(move |r| -> Vec<Result<Document>> {
            match r {
                Err(e) => vec![Err(e)],
                Ok(d) => unwind(&u, d),
            }
        })),
    }
}

fn unwind(u: &UnwindSpec, d: Document) -> Vec<Result<Document>> {
    let v = path::get(&d, &u.path).cloned();
    let with_index = |mut doc: Document, idx: Bson| {
        if let Some(name) = &u.include_index {
            doc.insert(name.clone(), idx);
        }
        doc
    };
    match v {
        Some(Bson::Array(a)) if !a.is_empty() => a
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let mut nd = d.clone();
                set_path(&mut nd, &u.path, e);
                Ok(with_index(nd, Bson::Int64(i as i64)))
            })
            .collect(),
        Some(Bson::Array(_)) | None | Some(Bson::Null) => {
            if u.preserve {
                let mut nd = d.clone();
                if matches!(v, Some(Bson::Array(_))) {
                    remove_path(&mut nd, &u.path);
                }
                vec![Ok(with_index(nd, Bson::Null))]
            } else {
                Vec::new()
            }
        }
        Some(_) => vec![Ok(with_index(d, Bson::Null))],
    }
}

fn remove_path(doc: &mut Document, p: &[String]) {
    if p.len() == 1 {
        doc.remove(&p[0]);
    } else if let Some(Bson::Document(d)) = doc.get_mut(&p[0]) {
        remove_path(d, &p[1..]);
    }
}

struct GroupState {
    id: Bson,
    vals: Vec<AccState>,
}

enum AccState {
    Sum(Bson),
    Avg(Bson, i64),
    Best(Option<Bson>),
    First(Option<Bson>),
    Last(Option<Bson>),
    Push(Vec<Bson>),
    Set(Vec<Bson>, std::collections::HashSet<Vec<u8>>),
    Count(i64),
}

/// Rough in-memory size of a value, for the `$group` memory budget.
fn approx_size(v: &Bson) -> usize {
    match v {
        Bson::String(s) | Bson::Symbol(s) | Bson::JavaScriptCode(s) => 32 + s.len(),
        Bson::Document(d) => {
            64 + d
                .iter()
                .map(|(k, v)| 32 + k.len() + approx_size(v))
                .sum::<usize>()
        }
        Bson::Array(a) => 32 + a.iter().map(approx_size).sum::<usize>(),
        Bson::Binary(b) => 32 + b.bytes.len(),
        _ => 24,
    }
}

fn new_states(g: &GroupSpec) -> Vec<AccState> {
    g.accs
        .iter()
        .map(|(_, a)| match a {
            Acc::Sum(_) => AccState::Sum(Bson::Int32(0)),
            Acc::Avg(_) => AccState::Avg(Bson::Int32(0), 0),
            Acc::Min(_) | Acc::Max(_) => AccState::Best(None),
            Acc::First(_) => AccState::First(None),
            Acc::Last(_) => AccState::Last(None),
            Acc::Push(_) => AccState::Push(Vec::new()),
            Acc::AddToSet(_) => AccState::Set(Vec::new(), Default::default()),
            Acc::Count => AccState::Count(0),
        })
        .collect()
}

fn better(is_min: bool, v: &Bson, cur: &Option<Bson>) -> bool {
    match cur {
        None => true,
        Some(c) => {
            let o = order::cmp(v, c);
            if is_min { o.is_lt() } else { o.is_gt() }
        }
    }
}

/// Fold one document into a group's states; returns the bytes added.
fn accumulate(g: &GroupSpec, st: &mut GroupState, d: &Document, vars: &Vars) -> Result<usize> {
    let mut added = 0;
    for ((_, acc), state) in g.accs.iter().zip(st.vals.iter_mut()) {
        match (acc, state) {
            (Acc::Sum(e), AccState::Sum(s)) => {
                if let Some(v) = e.eval(d, vars)?
                    && numeric::is_number(&v)
                {
                    *s = numeric::add(s, &v).unwrap_or_else(|| s.clone());
                }
            }
            (Acc::Avg(e), AccState::Avg(s, n)) => {
                if let Some(v) = e.eval(d, vars)?
                    && numeric::is_number(&v)
                {
                    *s = numeric::add(s, &v).unwrap_or_else(|| s.clone());
                    *n += 1;
                }
            }
            (Acc::Min(e) | Acc::Max(e), AccState::Best(b)) => {
                if let Some(v) = e.eval(d, vars)?
                    && !matches!(v, Bson::Null | Bson::Undefined)
                    && better(matches!(acc, Acc::Min(_)), &v, b)
                {
                    added += approx_size(&v);
                    *b = Some(v);
                }
            }
            (Acc::First(e), AccState::First(f)) => {
                if f.is_none() {
                    let v = e.eval(d, vars)?.unwrap_or(Bson::Null);
                    added += approx_size(&v);
                    *f = Some(v);
                }
            }
            (Acc::Last(e), AccState::Last(l)) => {
                let v = e.eval(d, vars)?.unwrap_or(Bson::Null);
                added += approx_size(&v);
                *l = Some(v);
            }
            (Acc::Push(e), AccState::Push(v)) => {
                if let Some(x) = e.eval(d, vars)? {
                    added += approx_size(&x);
                    v.push(x);
                }
            }
            (Acc::AddToSet(e), AccState::Set(v, seen)) => {
                if let Some(x) = e.eval(d, vars)?
                    && seen.insert(keycodec::encode(&x))
                {
                    added += 2 * approx_size(&x);
                    v.push(x);
                }
            }
            (Acc::Count, AccState::Count(n)) => *n += 1,
            _ => return Err(Error::internal("accumulator state mismatch")),
        }
    }
    Ok(added)
}

fn opt_to_bson(o: Option<Bson>) -> Bson {
    Bson::Array(o.into_iter().collect())
}

fn opt_from_bson(b: Bson) -> Option<Bson> {
    match b {
        Bson::Array(mut a) if !a.is_empty() => Some(a.swap_remove(0)),
        _ => None,
    }
}

/// Partial state as BSON (for spill runs).
fn state_to_bson(s: AccState) -> Bson {
    match s {
        AccState::Sum(v) => v,
        AccState::Avg(v, n) => Bson::Array(vec![v, Bson::Int64(n)]),
        AccState::Best(o) | AccState::First(o) | AccState::Last(o) => opt_to_bson(o),
        AccState::Push(v) | AccState::Set(v, _) => Bson::Array(v),
        AccState::Count(n) => Bson::Int64(n),
    }
}

fn state_from_bson(acc: &Acc, b: Bson) -> AccState {
    match acc {
        Acc::Sum(_) => AccState::Sum(b),
        Acc::Avg(_) => match b {
            Bson::Array(mut a) if a.len() == 2 => {
                let n = numeric::to_i64(&a[1]).unwrap_or(0);
                AccState::Avg(a.swap_remove(0), n)
            }
            _ => AccState::Avg(Bson::Int32(0), 0),
        },
        Acc::Min(_) | Acc::Max(_) => AccState::Best(opt_from_bson(b)),
        Acc::First(_) => AccState::First(opt_from_bson(b)),
        Acc::Last(_) => AccState::Last(opt_from_bson(b)),
        Acc::Push(_) => AccState::Push(match b {
            Bson::Array(a) => a,
            _ => Vec::new(),
        }),
        Acc::AddToSet(_) => {
            let v = match b {
                Bson::Array(a) => a,
                _ => Vec::new(),
            };
            let seen = v.iter().map(keycodec::encode).collect();
            AccState::Set(v, seen)
        }
        Acc::Count => AccState::Count(numeric::to_i64(&b).unwrap_or(0)),
    }
}

/// Combine an earlier partial state with a later one.
fn combine(acc: &Acc, a: AccState, b: AccState) -> AccState {
    match (a, b) {
        (AccState::Sum(x), AccState::Sum(y)) => AccState::Sum(numeric::add(&x, &y).unwrap_or(x)),
        (AccState::Avg(x, n), AccState::Avg(y, m)) => {
            AccState::Avg(numeric::add(&x, &y).unwrap_or(x), n + m)
        }
        (AccState::Best(x), AccState::Best(y)) => match y {
            Some(v) if better(matches!(acc, Acc::Min(_)), &v, &x) => AccState::Best(Some(v)),
            _ => AccState::Best(x),
        },
        (AccState::First(x), AccState::First(y)) => AccState::First(x.or(y)),
        (AccState::Last(x), AccState::Last(y)) => AccState::Last(y.or(x)),
        (AccState::Push(mut x), AccState::Push(y)) => {
            x.extend(y);
            AccState::Push(x)
        }
        (AccState::Set(mut x, mut seen), AccState::Set(y, _)) => {
            for v in y {
                if seen.insert(keycodec::encode(&v)) {
                    x.push(v);
                }
            }
            AccState::Set(x, seen)
        }
        (AccState::Count(x), AccState::Count(y)) => AccState::Count(x + y),
        (a, _) => a,
    }
}

fn finalize(names: &[String], gs: GroupState) -> Document {
    let mut d = Document::new();
    d.insert("_id", gs.id);
    for (name, st) in names.iter().zip(gs.vals) {
        let v = match st {
            AccState::Sum(s) => s,
            AccState::Avg(s, n) => {
                if n == 0 {
                    Bson::Null
                } else {
                    numeric::div(&s, &Bson::Int64(n)).unwrap_or(Bson::Null)
                }
            }
            AccState::Best(b) => b.unwrap_or(Bson::Null),
            AccState::First(f) | AccState::Last(f) => f.unwrap_or(Bson::Null),
            AccState::Push(v) | AccState::Set(v, _) => Bson::Array(v),
            AccState::Count(n) => {
                if n <= i32::MAX as i64 {
                    Bson::Int32(n as i32)
                } else {
                    Bson::Int64(n)
                }
            }
        };
        d.insert(name.clone(), v);
    }
    d
}

/// `$group` by hashing; when the groups outgrow the memory budget they are spilled as
/// key-sorted runs of partial states to encrypted temp files and merged at the end.
fn run_group(g: GroupSpec, input: DocIter, cfg: SpillConfig) -> Result<DocIter> {
    let mut groups: Vec<GroupState> = Vec::new();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut mem = 0usize;
    let mut runs: Vec<Box<dyn std::io::Read + Send>> = Vec::new();
    let mut ticker = cfg.interrupt.ticker();
    for d in input {
        let d = d?;
        ticker.tick()?;
        let vars = Vars {
            root: &d,
            extra: Vec::new(),
        };
        let id = g.id.eval(&d, &vars)?.unwrap_or(Bson::Null);
        let key = keycodec::encode(&id);
        let gi = match index.get(&key) {
            Some(i) => *i,
            None => {
                mem += 128 + 2 * key.len() + approx_size(&id);
                groups.push(GroupState {
                    id,
                    vals: new_states(&g),
                });
                keys.push(key.clone());
                index.insert(key, groups.len() - 1);
                groups.len() - 1
            }
        };
        mem += accumulate(&g, &mut groups[gi], &d, &vars)?;
        if mem > cfg.memory_limit {
            if !cfg.allow_disk_use {
                return Err(Error::new(
                    crate::error::code::QUERY_EXCEEDED_MEMORY_LIMIT,
                    format!(
                        "Exceeded memory limit for $group ({} bytes), but didn't allow external sort. Pass allowDiskUse:true to opt in.",
                        cfg.memory_limit
                    ),
                ));
            }
            runs.push(spill_groups(
                &cfg,
                std::mem::take(&mut keys),
                std::mem::take(&mut groups),
            )?);
            index.clear();
            mem = 0;
        }
    }
    let names: Vec<String> = g.accs.iter().map(|(n, _)| n.clone()).collect();
    if runs.is_empty() {
        let out: Vec<Result<Document>> = groups
            .into_iter()
            .map(|gs| Ok(finalize(&names, gs)))
            .collect();
        return Ok(Box::new(out.into_iter()));
    }
    if !groups.is_empty() {
        runs.push(spill_groups(&cfg, keys, groups)?);
    }
    let mut heads = Vec::with_capacity(runs.len());
    for mut r in runs {
        let h = crate::spill::read_doc(&mut r)?;
        heads.push((r, h));
    }
    Ok(Box::new(GroupMerge {
        ticker: cfg.interrupt.ticker(),
        g,
        names,
        heads,
        failed: false,
    }))
}

fn spill_groups(
    cfg: &SpillConfig,
    keys: Vec<Vec<u8>>,
    groups: Vec<GroupState>,
) -> Result<Box<dyn std::io::Read + Send>> {
    let temp = cfg.temp.clone().ok_or_else(|| {
        Error::new(
            crate::error::code::QUERY_EXCEEDED_MEMORY_LIMIT,
            "$group exceeded its memory limit and no temporary storage is available",
        )
    })?;
    let mut pairs: Vec<(Vec<u8>, GroupState)> = keys.into_iter().zip(groups).collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut w = temp.temp_file()?;
    for (k, gs) in pairs {
        let states: Vec<Bson> = gs.vals.into_iter().map(state_to_bson).collect();
        let rec = bson::doc! {
            "k": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: k },
            "id": gs.id,
            "s": states,
        };
        crate::spill::write_doc(&mut w, &rec)?;
    }
    tracing::debug!("$group spilled a run");
    w.finish()
}

type RunHead = (Box<dyn std::io::Read + Send>, Option<Document>);

struct GroupMerge {
    ticker: crate::interrupt::Ticker,
    g: GroupSpec,
    names: Vec<String>,
    heads: Vec<RunHead>,
    failed: bool,
}

fn rec_key(d: &Document) -> &[u8] {
    match d.get("k") {
        Some(Bson::Binary(b)) => &b.bytes,
        _ => &[],
    }
}

impl GroupMerge {
    fn step(&mut self) -> Result<Option<Document>> {
        self.ticker.tick()?;
        let mut min: Option<Vec<u8>> = None;
        for (_, h) in &self.heads {
            if let Some(d) = h {
                let k = rec_key(d);
                if min.as_deref().is_none_or(|m| k < m) {
                    min = Some(k.to_vec());
                }
            }
        }
        let Some(min) = min else { return Ok(None) };
        let mut acc: Option<GroupState> = None;
        // Runs are in input order, so combining in run order keeps $first/$last/$push exact.
        for (r, h) in self.heads.iter_mut() {
            if h.as_ref().is_some_and(|d| rec_key(d) == min.as_slice()) {
                let Some(mut d) = h.take() else { continue };
                *h = crate::spill::read_doc(r)?;
                let id = d.remove("id").unwrap_or(Bson::Null);
                let states = match d.remove("s") {
                    Some(Bson::Array(a)) => a,
                    _ => return Err(Error::internal("corrupt $group spill record")),
                };
                let vals: Vec<AccState> = self
                    .g
                    .accs
                    .iter()
                    .zip(states)
                    .map(|((_, a), b)| state_from_bson(a, b))
                    .collect();
                acc = Some(match acc {
                    None => GroupState { id, vals },
                    Some(prev) => GroupState {
                        id: prev.id,
                        vals: self
                            .g
                            .accs
                            .iter()
                            .zip(prev.vals.into_iter().zip(vals))
                            .map(|((_, a), (x, y))| combine(a, x, y))
                            .collect(),
                    },
                });
            }
        }
        Ok(acc.map(|gs| finalize(&self.names, gs)))
    }
}

impl Iterator for GroupMerge {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(d) => d.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn run(docs: Vec<Document>, stages: Vec<Document>) -> Result<Vec<Document>> {
        let p = Pipeline::parse(&stages)?;
        let input: DocIter = Box::new(docs.into_iter().map(Ok));
        p.run(input, &SpillConfig::default()).collect()
    }

    fn sample() -> Vec<Document> {
        vec![
            doc! {"_id": 1, "k": "a", "v": 1, "tags": ["x", "y"]},
            doc! {"_id": 2, "k": "b", "v": 2.5, "tags": []},
            doc! {"_id": 3, "k": "a", "v": 3, "tags": ["x"]},
            doc! {"_id": 4, "k": "b"},
        ]
    }

    #[test]
    fn group_accumulators() {
        let out = run(sample(), vec![
            doc! {"$group": {"_id": "$k", "s": {"$sum": "$v"}, "avg": {"$avg": "$v"}, "mn": {"$min": "$v"}, "mx": {"$max": "$v"},
                "f": {"$first": "$_id"}, "l": {"$last": "$_id"}, "p": {"$push": "$v"}, "c": {"$count": {}}, "n": {"$sum": 1}}},
            doc! {"$sort": {"_id": 1}},
        ]).unwrap();
        assert_eq!(
            out[0],
            doc! {"_id": "a", "s": 4, "avg": 2.0, "mn": 1, "mx": 3, "f": 1, "l": 3, "p": [1, 3], "c": 2, "n": 2}
        );
        assert_eq!(
            out[1],
            doc! {"_id": "b", "s": 2.5, "avg": 2.5, "mn": 2.5, "mx": 2.5, "f": 2, "l": 4, "p": [2.5], "c": 2, "n": 2}
        );
        let out = run(
            sample(),
            vec![doc! {"$group": {"_id": null, "ks": {"$addToSet": "$k"}}}],
        )
        .unwrap();
        assert_eq!(out, vec![doc! {"_id": null, "ks": ["a", "b"]}]);
    }

    #[test]
    fn group_spills_and_merges_partial_states() {
        let docs: Vec<Document> = (0..3000)
            .map(|i| doc! {"_id": i, "g": i % 97, "v": i, "s": format!("s{}", i % 5)})
            .collect();
        let stages = vec![
            doc! {"$group": {"_id": "$g", "n": {"$sum": 1}, "t": {"$sum": "$v"}, "a": {"$avg": "$v"}, "mn": {"$min": "$v"}, "mx": {"$max": "$v"},
            "f": {"$first": "$v"}, "l": {"$last": "$v"}, "p": {"$push": "$v"}, "set": {"$addToSet": "$s"}, "c": {"$count": {}}}},
            doc! {"$sort": {"_id": 1}},
        ];
        let p = Pipeline::parse(&stages).unwrap();
        let expected: Vec<Document> = p
            .run(
                Box::new(docs.clone().into_iter().map(Ok)),
                &SpillConfig::default(),
            )
            .collect::<Result<_>>()
            .unwrap();
        struct Counting(std::sync::atomic::AtomicUsize, crate::memkv::MemKv);
        impl crate::kv::TempStore for Counting {
            fn temp_file(&self) -> Result<Box<dyn crate::kv::TempWrite>> {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.1.temp_file()
            }
        }
        let counting =
            std::sync::Arc::new(Counting(Default::default(), crate::memkv::MemKv::new()));
        let temp: std::sync::Arc<dyn crate::kv::TempStore> = counting.clone();
        let small = SpillConfig {
            memory_limit: 8 * 1024,
            allow_disk_use: true,
            temp: Some(temp),
            ..SpillConfig::default()
        };
        let got: Vec<Document> = p
            .run(Box::new(docs.clone().into_iter().map(Ok)), &small)
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(got.len(), 97);
        assert!(
            counting.0.load(std::sync::atomic::Ordering::Relaxed) > 1,
            "groups spilled"
        );
        for (mut e, mut g) in expected.into_iter().zip(got) {
            // $addToSet order is unspecified; compare as sets.
            let norm = |d: &mut Document| {
                if let Some(Bson::Array(a)) = d.get_mut("set") {
                    a.sort_by(crate::order::cmp);
                }
            };
            norm(&mut e);
            norm(&mut g);
            assert_eq!(e, g);
        }
        let no_disk = SpillConfig {
            memory_limit: 8 * 1024,
            allow_disk_use: false,
            temp: None,
            ..SpillConfig::default()
        };
        let err = p
            .run(Box::new(docs.into_iter().map(Ok)), &no_disk)
            .next()
            .unwrap()
            .unwrap_err();
        assert_eq!(err.code, 292);
    }

    #[test]
    fn unwind_variants() {
        let out = run(sample(), vec![doc! {"$unwind": "$tags"}]).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[1], doc! {"_id": 1, "k": "a", "v": 1, "tags": "y"});
        let out = run(sample(), vec![doc! {"$unwind": {"path": "$tags", "includeArrayIndex": "i", "preserveNullAndEmptyArrays": true}}]).unwrap();
        assert_eq!(out.len(), 5);
        assert_eq!(out[2], doc! {"_id": 2, "k": "b", "v": 2.5, "i": null});
        assert_eq!(out[1].get_i64("i").unwrap(), 1);
    }

    #[test]
    fn streaming_stages() {
        let out = run(
            sample(),
            vec![
                doc! {"$match": {"v": {"$gte": 1}}},
                doc! {"$addFields": {"w": {"$multiply": ["$v", 2]}, "sub.x": 1}},
                doc! {"$sort": {"w": -1}},
                doc! {"$skip": 1},
                doc! {"$limit": 1},
                doc! {"$project": {"w": 1, "sub": 1}},
            ],
        )
        .unwrap();
        assert_eq!(out, vec![doc! {"_id": 2, "w": 5.0, "sub": {"x": 1}}]);
        let out = run(sample(), vec![doc! {"$count": "n"}]).unwrap();
        assert_eq!(out, vec![doc! {"n": 4}]);
        let out = run(
            sample(),
            vec![doc! {"$unset": ["tags", "v"]}, doc! {"$limit": 1}],
        )
        .unwrap();
        assert_eq!(out, vec![doc! {"_id": 1, "k": "a"}]);
        let out = run(
            sample(),
            vec![
                doc! {"$replaceRoot": {"newRoot": {"kk": "$k"}}},
                doc! {"$limit": 1},
            ],
        )
        .unwrap();
        assert_eq!(out, vec![doc! {"kk": "a"}]);
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            Pipeline::parse(&[doc! {"$bogus": {}}]).unwrap_err().code,
            40324
        );
        assert_eq!(
            Pipeline::parse(&[doc! {"$limit": 0}]).unwrap_err().code,
            15958
        );
        assert_eq!(
            Pipeline::parse(&[doc! {"$match": {}, "$limit": 1}])
                .unwrap_err()
                .code,
            40323
        );
        assert_eq!(
            Pipeline::parse(&[doc! {"$unwind": "tags"}])
                .unwrap_err()
                .code,
            28818
        );
        assert_eq!(
            Pipeline::parse(&[doc! {"$group": {"x": {"$sum": 1}}}])
                .unwrap_err()
                .code,
            15955
        );
    }
}
