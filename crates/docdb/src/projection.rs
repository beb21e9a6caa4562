//! Find/`$project` projections: inclusion or exclusion of (dotted) paths, `_id` rules,
//! computed fields (expressions), `$slice` and `$elemMatch`.
//!
//! Mixing inclusion and exclusion is rejected with MongoDB's codes: 31254 ("Cannot do
//! exclusion on field x in inclusion projection") and 31253 ("Cannot do inclusion on field x
//! in exclusion projection"); `_id` may be excluded from an inclusion projection.

use bson::{Bson, Document};

use crate::error::{Error, Result};
use crate::expr::{self, Expr};
use crate::matcher::Matcher;
use crate::numeric;
use crate::path;

#[derive(Debug, Clone)]
enum Action {
    Include,
    Exclude,
    Computed(Expr),
    Slice(i64, Option<i64>),
    ElemMatch(Box<Matcher>),
    Sub(Tree),
}

#[derive(Debug, Clone, Default)]
struct Tree {
    fields: Vec<(String, Action)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Inclusion,
    Exclusion,
}

/// A compiled projection.
#[derive(Debug, Clone)]
pub struct Projection {
    tree: Tree,
    mode: Mode,
    /// `_id` is kept unless explicitly excluded.
    include_id: bool,
    /// `a.b.$`: the array path whose first query-matched element is kept.
    positional: Option<Vec<String>>,
    query: Option<Document>,
}

fn is_number_or_bool(v: &Bson) -> Option<bool> {
    match v {
        Bson::Boolean(b) => Some(*b),
        v if numeric::is_number(v) => Some(numeric::to_f64(v) != Some(0.0)),
        _ => None,
    }
}

impl Projection {
    /// Compile; `allow_special` enables find-only `$slice`/`$elemMatch`.
    pub fn new(spec: &Document) -> Result<Projection> {
        let mut mode: Option<Mode> = None;
        let mut include_id = true;
        let mut tree = Tree::default();
        let mut id_action: Option<Action> = None;
        let mut id_explicit = false;
        let mut positional: Option<Vec<String>> = None;
        for (k, v) in spec {
            if k.is_empty() {
                return Err(Error::bad_value(
                    "FieldPath cannot be constructed with empty string",
                ));
            }
            // Bounds the tree `insert_path` builds and the walks over it.
            path::check(k)?;
            if k.contains(".$.") || k.starts_with("$.") {
                return Err(Error::bad_value(format!(
                    "Positional projection '{k}' may only appear at the end of a path"
                )));
            }
            if let Some(base) = k.strip_suffix(".$") {
                if positional.is_some() {
                    return Err(Error::bad_value(
                        "Cannot specify more than one positional projection per query.",
                    ));
                }
                if !matches!(v, Bson::Boolean(true)) && is_number_or_bool(v) != Some(true) {
                    return Err(Error::bad_value(format!(
                        "Cannot exclude positional projection field {k}"
                    )));
                }
                positional = Some(path::split(base)?);
                if mode == Some(Mode::Exclusion) {
                    return Err(Error::location(
                        31253,
                        format!("Cannot do inclusion on field {k} in exclusion projection"),
                    ));
                }
                mode = Some(Mode::Inclusion);
                insert_path(&mut tree, base, Action::Include)?;
                continue;
            }
            if k.starts_with('$') {
                return Err(Error::location(
                    16410,
                    "FieldPath field names may not start with '$'. Consider using $getField or $setField.".to_string(),
                ));
            }
            let action = match v {
                Bson::Document(d) if d.len() == 1 && d.contains_key("$slice") => {
                    match d.get("$slice") {
                        Some(Bson::Array(a)) if a.len() == 2 => {
                            let skip = numeric::to_i64(&a[0]).ok_or_else(|| {
                                Error::location(28724, "First argument to $slice must be an array")
                            })?;
                            let n = numeric::to_i64(&a[1]).ok_or_else(|| {
                                Error::location(
                                    28725,
                                    "Second argument to $slice must be a numeric value",
                                )
                            })?;
                            if n <= 0 {
                                return Err(Error::location(
                                    28724,
                                    "Second argument to $slice must be positive",
                                ));
                            }
                            Action::Slice(skip, Some(n))
                        }
                        Some(n) if numeric::is_number(n) => {
                            Action::Slice(numeric::to_i64(n).unwrap_or(0), None)
                        }
                        _ => {
                            return Err(Error::location(
                                28724,
                                "$slice only supports numbers and [skip, limit] arrays",
                            ));
                        }
                    }
                }
                Bson::Document(d) if d.len() == 1 && d.contains_key("$elemMatch") => {
                    let Some(Bson::Document(q)) = d.get("$elemMatch") else {
                        return Err(Error::bad_value(
                            "elemMatch: Invalid argument, object required.",
                        ));
                    };
                    if k.contains('.') {
                        return Err(Error::bad_value(
                            "Cannot use $elemMatch projection on a nested field.",
                        ));
                    }
                    Action::ElemMatch(Box::new(Matcher::new(q)?))
                }
                other => match is_number_or_bool(other) {
                    Some(true) => Action::Include,
                    Some(false) => Action::Exclude,
                    None => Action::Computed(Expr::parse(other)?),
                },
            };
            if k == "_id" {
                match action {
                    Action::Exclude => include_id = false,
                    Action::Include => id_explicit = true,
                    other => id_action = Some(other),
                }
                continue;
            }
            let this_mode = match action {
                Action::Include | Action::Computed(_) | Action::ElemMatch(_) => {
                    Some(Mode::Inclusion)
                }
                Action::Exclude => Some(Mode::Exclusion),
                _ => None,
            };
            if let Some(tm) = this_mode {
                match mode {
                    None => mode = Some(tm),
                    Some(m) if m != tm => {
                        return Err(if m == Mode::Inclusion {
                            Error::location(
                                31254,
                                format!("Cannot do exclusion on field {k} in inclusion projection"),
                            )
                        } else {
                            Error::location(
                                31253,
                                format!("Cannot do inclusion on field {k} in exclusion projection"),
                            )
                        });
                    }
                    _ => {}
                }
            }
            insert_path(&mut tree, k, action)?;
        }
        if let Some(a) = id_action {
            if mode == Some(Mode::Exclusion)
                && let Action::Computed(_) = a
            {
                return Err(Error::location(
                    31253,
                    "Cannot do inclusion on field _id in exclusion projection",
                ));
            }
            if matches!(a, Action::Computed(_)) && mode.is_none() {
                mode = Some(Mode::Inclusion);
            }
            tree.fields.insert(0, ("_id".into(), a));
        }
        let mode = match mode {
            Some(m) => m,
            // `{_id: 1}` alone returns only `_id`.
            None if id_explicit => Mode::Inclusion,
            // Only `_id: 0` and/or $slice: everything else is kept.
            None => Mode::Exclusion,
        };
        Ok(Projection {
            tree,
            mode,
            include_id,
            positional,
            query: None,
        })
    }

    /// True when the projection uses the positional `$` and needs the query filter.
    pub fn needs_query(&self) -> bool {
        self.positional.is_some()
    }

    /// Attach the query filter (for the positional `$`).
    pub fn with_query(mut self, filter: &Document) -> Self {
        self.query = Some(filter.clone());
        self
    }

    /// Apply to a document.
    pub fn apply(&self, doc: &Document) -> Result<Document> {
        let positioned;
        let doc = match &self.positional {
            None => doc,
            Some(p) => {
                let q = self.query.clone().unwrap_or_default();
                let Some(i) = crate::update::first_matching_index(doc, p, &q)? else {
                    return Err(Error::location(
                        51246,
                        "Executor error during find command :: caused by :: positional operator '.$' couldn't find a matching element in the array",
                    ));
                };
                let mut d = doc.clone();
                narrow_array(&mut d, p, i);
                positioned = d;
                &positioned
            }
        };
        let vars = expr::Vars {
            root: doc,
            extra: Vec::new(),
        };
        let mut out = match self.mode {
            Mode::Inclusion => {
                let mut out = Document::new();
                if self.include_id
                    && let Some(id) = doc.get("_id")
                {
                    out.insert("_id", id.clone());
                }
                include_tree(&self.tree, doc, &mut out, &vars)?;
                out
            }
            Mode::Exclusion => {
                let mut out = doc.clone();
                if !self.include_id {
                    out.remove("_id");
                }
                exclude_tree(&self.tree, &mut out, &vars)?;
                out
            }
        };
        if !self.include_id {
            out.remove("_id");
        }
        Ok(out)
    }
}

/// Replace the array at `p` with just its element `i`.
fn narrow_array(doc: &mut Document, p: &[String], i: usize) {
    match p.split_first() {
        Some((first, [])) => {
            if let Some(Bson::Array(a)) = doc.get_mut(first) {
                let keep = a.get(i).cloned();
                *a = keep.into_iter().collect();
            }
        }
        Some((first, rest)) => {
            if let Some(Bson::Document(d)) = doc.get_mut(first) {
                narrow_array(d, rest, i);
            }
        }
        None => {}
    }
}

fn insert_path(tree: &mut Tree, path: &str, action: Action) -> Result<()> {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let existing = tree.fields.iter_mut().position(|(k, _)| k == head);
    match rest {
        None => {
            if existing.is_some() {
                return Err(Error::location(31250, format!("Path collision at {path}")));
            }
            tree.fields.push((head.to_string(), action));
        }
        Some(r) => match existing {
            Some(i) => match &mut tree.fields[i].1 {
                Action::Sub(t) => insert_path(t, r, action)?,
                _ => {
                    return Err(Error::location(
                        31249,
                        format!("Path collision at {path} remaining portion {r}"),
                    ));
                }
            },
            None => {
                let mut t = Tree::default();
                insert_path(&mut t, r, action)?;
                tree.fields.push((head.to_string(), Action::Sub(t)));
            }
        },
    }
    Ok(())
}

fn slice(arr: &[Bson], skip: i64, n: Option<i64>) -> Vec<Bson> {
    let len = arr.len() as i64;
    let (start, count) = match n {
        None if skip >= 0 => (0, skip),
        None => ((len + skip).max(0), len),
        Some(n) => {
            let start = if skip >= 0 {
                skip.min(len)
            } else {
                (len + skip).max(0)
            };
            (start, n)
        }
    };
    arr.iter()
        .skip(start as usize)
        .take(count.max(0) as usize)
        .cloned()
        .collect()
}

fn include_tree(tree: &Tree, src: &Document, out: &mut Document, vars: &expr::Vars) -> Result<()> {
    // Included fields appear in the source document's order; computed fields follow in
    // projection order.
    for (k, v) in src {
        let Some((_, action)) = tree.fields.iter().find(|(f, _)| f == k) else {
            continue;
        };
        match action {
            Action::Include => {
                out.insert(k.clone(), v.clone());
            }
            Action::Sub(sub) => {
                if let Some(pv) = include_value(sub, v, vars)? {
                    out.insert(k.clone(), pv);
                }
            }
            Action::Slice(s, n) => {
                let nv = match v {
                    Bson::Array(a) => Bson::Array(slice(a, *s, *n)),
                    other => other.clone(),
                };
                out.insert(k.clone(), nv);
            }
            Action::ElemMatch(m) => {
                if let Bson::Array(a) = v {
                    for e in a {
                        if let Bson::Document(d) = e
                            && m.matches(d)?
                        {
                            out.insert(k.clone(), Bson::Array(vec![e.clone()]));
                            break;
                        }
                    }
                }
            }
            Action::Exclude | Action::Computed(_) => {}
        }
    }
    for (k, action) in &tree.fields {
        match action {
            Action::Computed(e) => {
                if let Some(v) = e.eval(vars.root, vars)? {
                    out.insert(k.clone(), v);
                }
            }
            Action::Sub(sub) if has_computed(sub) && !src.contains_key(k) => {
                let mut d = Document::new();
                include_tree(sub, &Document::new(), &mut d, vars)?;
                out.insert(k.clone(), Bson::Document(d));
            }
            _ => {}
        }
    }
    Ok(())
}

fn has_computed(t: &Tree) -> bool {
    t.fields.iter().any(|(_, a)| match a {
        Action::Computed(_) => true,
        Action::Sub(s) => has_computed(s),
        _ => false,
    })
}

fn include_value(sub: &Tree, v: &Bson, vars: &expr::Vars) -> Result<Option<Bson>> {
    match v {
        Bson::Document(d) => {
            let mut o = Document::new();
            include_tree(sub, d, &mut o, vars)?;
            Ok(Some(Bson::Document(o)))
        }
        Bson::Array(a) => {
            let mut items = Vec::new();
            for e in a {
                if matches!(e, Bson::Document(_) | Bson::Array(_)) {
                    if let Some(x) = include_value(sub, e, vars)? {
                        items.push(x);
                    }
                } else if has_computed(sub) {
                    let mut o = Document::new();
                    include_tree(sub, &Document::new(), &mut o, vars)?;
                    items.push(Bson::Document(o));
                }
            }
            Ok(Some(Bson::Array(items)))
        }
        _ if has_computed(sub) => {
            let mut o = Document::new();
            include_tree(sub, &Document::new(), &mut o, vars)?;
            Ok(Some(Bson::Document(o)))
        }
        _ => Ok(None),
    }
}

fn exclude_tree(tree: &Tree, doc: &mut Document, vars: &expr::Vars) -> Result<()> {
    for (k, action) in &tree.fields {
        match action {
            Action::Exclude => {
                doc.remove(k);
            }
            Action::Sub(sub) => {
                if let Some(v) = doc.get_mut(k) {
                    exclude_value(sub, v, vars)?;
                }
            }
            Action::Slice(s, n) => {
                if let Some(Bson::Array(a)) = doc.get_mut(k) {
                    *a = slice(a, *s, *n);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn exclude_value(sub: &Tree, v: &mut Bson, vars: &expr::Vars) -> Result<()> {
    match v {
        Bson::Document(d) => exclude_tree(sub, d, vars),
        Bson::Array(a) => {
            for e in a {
                exclude_value(sub, e, vars)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn p(spec: Document, d: Document) -> Document {
        Projection::new(&spec).unwrap().apply(&d).unwrap()
    }

    #[test]
    fn inclusion_exclusion() {
        let d = doc! {"_id": 1, "a": 1, "b": {"c": 2, "d": 3}, "e": [{"f": 1, "g": 2}, 5]};
        assert_eq!(p(doc! {"a": 1}, d.clone()), doc! {"_id": 1, "a": 1});
        assert_eq!(p(doc! {"a": 1, "_id": 0}, d.clone()), doc! {"a": 1});
        assert_eq!(
            p(doc! {"b.c": 1}, d.clone()),
            doc! {"_id": 1, "b": {"c": 2}}
        );
        assert_eq!(
            p(doc! {"e.f": 1}, d.clone()),
            doc! {"_id": 1, "e": [{"f": 1}]}
        );
        assert_eq!(p(doc! {"b": 0, "e": 0}, d.clone()), doc! {"_id": 1, "a": 1});
        assert_eq!(
            p(doc! {"b.d": 0, "e.g": 0}, d.clone()),
            doc! {"_id": 1, "a": 1, "b": {"c": 2}, "e": [{"f": 1}, 5]}
        );
        assert_eq!(p(doc! {"_id": 0}, d.clone()).len(), 3);
        assert_eq!(p(doc! {"_id": 1}, d.clone()), doc! {"_id": 1});
        assert_eq!(p(doc! {"a": 0, "_id": 1}, d.clone()).len(), 3);
        assert_eq!(
            p(doc! {"x": "$a", "a": 1}, d.clone()),
            doc! {"_id": 1, "a": 1, "x": 1}
        );
        assert_eq!(
            p(doc! {"s": {"$add": ["$a", 1]}}, d.clone()),
            doc! {"_id": 1, "s": 2}
        );
    }

    #[test]
    fn positional_projection() {
        let d = doc! {"_id": 1, "grades": [80, 95, 99], "x": 1};
        let p = Projection::new(&doc! {"grades.$": 1})
            .unwrap()
            .with_query(&doc! {"grades": {"$gte": 90}});
        assert_eq!(p.apply(&d).unwrap(), doc! {"_id": 1, "grades": [95]});
        let d = doc! {"_id": 1, "s": [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}]};
        let p = Projection::new(&doc! {"s.$": 1})
            .unwrap()
            .with_query(&doc! {"s.k": 2});
        assert_eq!(
            p.apply(&d).unwrap(),
            doc! {"_id": 1, "s": [{"k": 2, "v": "b"}]}
        );
        assert_eq!(
            Projection::new(&doc! {"a.$": 1, "b.$": 1})
                .unwrap_err()
                .code,
            2
        );
        let p = Projection::new(&doc! {"s.$": 1})
            .unwrap()
            .with_query(&doc! {"s.k": 7});
        assert_eq!(p.apply(&d).unwrap_err().code, 51246);
    }

    #[test]
    fn mixed_mode_errors() {
        assert_eq!(
            Projection::new(&doc! {"a": 1, "b": 0}).unwrap_err().code,
            31254
        );
        assert_eq!(
            Projection::new(&doc! {"a": 0, "b": 1}).unwrap_err().code,
            31253
        );
        assert!(Projection::new(&doc! {"a": 1, "_id": 0}).is_ok());
        assert_eq!(
            Projection::new(&doc! {"a": 1, "a.b": 1}).unwrap_err().code,
            31249
        );
    }

    #[test]
    fn slice_and_elem_match() {
        let d = doc! {"_id": 1, "a": [1, 2, 3, 4, 5], "b": [{"x": 1}, {"x": 2}], "c": 1};
        assert_eq!(
            p(doc! {"a": {"$slice": 2}}, d.clone()),
            doc! {"_id": 1, "a": [1, 2], "b": [{"x": 1}, {"x": 2}], "c": 1}
        );
        assert_eq!(
            p(doc! {"a": {"$slice": -2}, "b": 0}, d.clone()),
            doc! {"_id": 1, "a": [4, 5], "c": 1}
        );
        assert_eq!(
            p(doc! {"a": {"$slice": [1, 2]}, "c": 1}, d.clone()),
            doc! {"_id": 1, "a": [2, 3], "c": 1}
        );
        assert_eq!(
            p(doc! {"a": {"$slice": [-2, 5]}, "c": 1}, d.clone()),
            doc! {"_id": 1, "a": [4, 5], "c": 1}
        );
        assert_eq!(
            p(doc! {"b": {"$elemMatch": {"x": 2}}}, d.clone()),
            doc! {"_id": 1, "b": [{"x": 2}]}
        );
    }
}
