//! Nesting limits of documents, and the iterative walks that enforce them.
//!
//! Walkers that follow a value's nesting (comparison, key encoding, conversion from BSON,
//! `Clone` and `Drop` of `bson::Bson` itself) recurse once per level, so the depth of
//! every value docdb handles must be bounded before such a walk sees it. Commands arrive
//! bounded by the wire layer (150 levels, checked on the raw bytes); stored documents are
//! bounded here at [`MAX_STORED_DEPTH`], as MongoDB bounds them. The limits that input
//! *structure* drives — dotted paths, query operator trees, nested expressions — live next
//! to their parsers ([`crate::path::MAX_PARTS`], [`MAX_QUERY_TREE_DEPTH`],
//! [`MAX_EXPR_DEPTH`]). Everything here is iterative, so it is safe on any input.

use bson::{Bson, Document};

use crate::error::{Error, code};

/// Deepest document MongoDB stores (`BSONDepth::getMaxDepthForUserStorage()`): the
/// top-level document is level 1, each embedded document or array one more.
pub const MAX_STORED_DEPTH: usize = 100;

/// Deepest query operator tree (`$and`/`$or`/`$nor`/`$not`/`$elemMatch` nesting), as
/// MongoDB's `MatchExpressionParser::kMaximumTreeDepth`.
pub const MAX_QUERY_TREE_DEPTH: usize = 100;

/// Deepest aggregation expression (`{$add: [{$add: [...]}]}`). Each level is at least two
/// BSON levels, so MongoDB's own 200-level BSON limit implies this bound.
pub const MAX_EXPR_DEPTH: usize = 100;

/// True when `doc` is nested more than `max` levels (the document itself is level 1).
/// Walks with an explicit stack of containers, never recursion.
pub fn exceeds(doc: &Document, max: usize) -> bool {
    let mut stack: Vec<(&Bson, usize)> = Vec::new();
    push_containers(doc.values(), 2, &mut stack);
    while let Some((v, level)) = stack.pop() {
        if level > max {
            return true;
        }
        match v {
            Bson::Document(d) => push_containers(d.values(), level + 1, &mut stack),
            Bson::Array(a) => push_containers(a.iter(), level + 1, &mut stack),
            Bson::JavaScriptCodeWithScope(c) => {
                push_containers(c.scope.values(), level + 1, &mut stack)
            }
            _ => {}
        }
    }
    false
}

fn push_containers<'a>(
    values: impl Iterator<Item = &'a Bson>,
    level: usize,
    stack: &mut Vec<(&'a Bson, usize)>,
) {
    stack.extend(
        values
            .filter(|v| {
                matches!(
                    v,
                    Bson::Document(_) | Bson::Array(_) | Bson::JavaScriptCodeWithScope(_)
                )
            })
            .map(|v| (v, level)),
    );
}

/// Refuses a document to be inserted that is nested deeper than MongoDB stores, with
/// MongoDB's error (`Overflow`).
pub fn check_insert(doc: &Document) -> Result<(), Error> {
    if exceeds(doc, MAX_STORED_DEPTH) {
        return Err(Error::new(
            code::OVERFLOW,
            format!(
                "cannot insert document because it exceeds {MAX_STORED_DEPTH} levels of nesting"
            ),
        ));
    }
    Ok(())
}

/// Refuses the result of an update (or a replacement) nested deeper than MongoDB stores,
/// with MongoDB's error (`Overflow`).
pub fn check_update(doc: &Document) -> Result<(), Error> {
    if exceeds(doc, MAX_STORED_DEPTH) {
        return Err(Error::new(
            code::OVERFLOW,
            format!("Document exceeds maximum nesting depth of {MAX_STORED_DEPTH}"),
        ));
    }
    Ok(())
}

/// Drops a value of any depth without recursion: `Bson`'s own `Drop` recurses once per
/// level, so a document refused for its depth is taken apart here instead.
pub fn dismantle(v: Bson) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Bson::Document(d) => stack.extend(d.into_iter().map(|(_, v)| v)),
            Bson::Array(a) => stack.extend(a),
            Bson::JavaScriptCodeWithScope(c) => stack.push(Bson::Document(c.scope)),
            _ => {}
        }
    }
}

/// `{a: {a: ... {}}}` nested `levels` levels (the outer document counts), built without
/// recursion. For tests of the limits; drop the result with [`dismantle`].
pub fn nested(levels: usize) -> Document {
    let mut d = Document::new();
    for _ in 1..levels {
        let mut outer = Document::new();
        outer.insert("a", d);
        d = outer;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_the_document_itself() {
        assert!(!exceeds(&Document::new(), 1));
        let d = nested(MAX_STORED_DEPTH);
        assert!(!exceeds(&d, MAX_STORED_DEPTH));
        assert!(check_insert(&d).is_ok());
        let d = nested(MAX_STORED_DEPTH + 1);
        assert!(exceeds(&d, MAX_STORED_DEPTH));
        assert_eq!(check_insert(&d).unwrap_err().code, code::OVERFLOW.code);
        assert_eq!(check_update(&d).unwrap_err().code, code::OVERFLOW.code);
        // Arrays count as levels too.
        let arr = bson::doc! {"a": [[[]]]};
        assert!(exceeds(&arr, 3));
        assert!(!exceeds(&arr, 4));
    }

    #[test]
    fn very_deep_values_are_checked_and_dropped_without_recursion() {
        let run = || {
            let d = nested(1_000_000);
            assert!(exceeds(&d, MAX_STORED_DEPTH));
            dismantle(Bson::Document(d));
        };
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
    }
}
