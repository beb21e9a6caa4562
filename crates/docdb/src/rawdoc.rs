//! Borrowed BSON to owned documents, without the `bson` crate's detour.
//!
//! `Document::try_from(&RawDocument)` converts each element through an owned `RawBson`,
//! which copies an embedded document's or array's bytes into a buffer of their own before
//! converting *that* — so a value nested d levels deep is copied d times — and
//! `Document::from_reader` first copies the whole document. Every command the server
//! receives and every stored document an update or a projection reads is converted this
//! way (a tenth of the server's CPU on a point read); this walks the borrowed elements
//! directly. The result is the same `Document`: same order, and a repeated key keeps its
//! first position with its last value, as `Document`'s own `FromIterator` does.
//!
//! The conversion recurses once per level of nesting and counts the levels, refusing more
//! than its limit. [`check_depth`], a walk over the raw bytes with an explicit stack, is
//! the wire layer's check of every document a client sends, before it is converted.

use bson::raw::{RawArray, RawBsonRef, RawDocument};
use bson::{Bson, Document};

/// Why bytes could not be converted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Malformed BSON (the `bson` crate's own error).
    #[error(transparent)]
    Bson(#[from] bson::error::Error),
    /// Nested deeper than the limit the conversion was given.
    #[error("BSONObj exceeds maximum nested object depth of {0}")]
    TooDeep(usize),
}

/// Deepest document [`to_document`] and [`decode`] convert: MongoDB's largest allowed BSON
/// depth (`BSONDepth::getMaxAllowableDepth()`). Stored documents are at most
/// [`crate::depth::MAX_STORED_DEPTH`] deep and commands are bounded tighter by the wire
/// layer, so this only refuses bytes that never came through those checks.
pub const MAX_DEPTH: usize = 200;

/// The fewest bytes one level of nesting adds: an embedded document or array element is
/// a type byte, a key of at least its NUL terminator, and an (empty) document of 5 bytes.
/// A document shorter than this many times a limit cannot exceed it.
pub const MIN_BYTES_PER_LEVEL: usize = 7;

/// `raw` as an owned [`Document`], refusing nesting deeper than [`MAX_DEPTH`]. The
/// conversion counts levels as it descends, so it needs no separate walk (stored
/// documents, read on every query, are converted here).
pub fn to_document(raw: &RawDocument) -> Result<Document, Error> {
    convert(raw, 1, MAX_DEPTH)
}

/// `raw` as an owned [`Document`], refusing nesting deeper than `max_depth` levels (the
/// document itself is level 1) with an iterative walk over the bytes *before* converting:
/// the wire layer's check of what a client sends. Documents too short to be that deep skip
/// the walk (the conversion validates every element and counts levels either way).
pub fn to_document_within(raw: &RawDocument, max_depth: usize) -> Result<Document, Error> {
    if raw.as_bytes().len() >= MIN_BYTES_PER_LEVEL * max_depth {
        check_depth(raw, max_depth)?;
    }
    convert(raw, 1, max_depth)
}

/// Walks a raw document with an explicit stack (no recursion), validating every element
/// and refusing documents nested deeper than `max_depth` levels.
pub fn check_depth(root: &RawDocument, max_depth: usize) -> Result<(), Error> {
    let mut stack = vec![root.iter()];
    while let Some(top) = stack.last_mut() {
        match top.next() {
            None => {
                stack.pop();
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok((_, value))) => {
                let child = match value {
                    RawBsonRef::Document(d) => Some(d),
                    // An array is laid out as a document keyed "0", "1", ...
                    RawBsonRef::Array(a) => Some(RawDocument::from_bytes(a.as_bytes())?),
                    RawBsonRef::JavaScriptCodeWithScope(c) => Some(c.scope),
                    _ => None,
                };
                if let Some(child) = child {
                    if stack.len() >= max_depth {
                        return Err(Error::TooDeep(max_depth));
                    }
                    stack.push(child.iter());
                }
            }
        }
    }
    Ok(())
}

/// `raw`, at nesting `level`, converted; deeper than `max` levels is refused.
fn convert(raw: &RawDocument, level: usize, max: usize) -> Result<Document, Error> {
    if level > max {
        return Err(Error::TooDeep(max));
    }
    let mut doc = Document::new();
    for element in raw {
        let (key, value) = element?;
        doc.insert(key.as_str(), to_bson(value, level, max)?);
    }
    Ok(doc)
}

/// `bytes` (one whole BSON document) as an owned [`Document`].
pub fn decode(bytes: &[u8]) -> Result<Document, Error> {
    to_document(RawDocument::from_bytes(bytes)?)
}

fn to_array(raw: &RawArray, level: usize, max: usize) -> Result<Vec<Bson>, Error> {
    if level > max {
        return Err(Error::TooDeep(max));
    }
    raw.into_iter().map(|v| to_bson(v?, level, max)).collect()
}

/// One value of a container at `level`. Recursion follows the nesting, at most `max`
/// levels.
fn to_bson(value: RawBsonRef<'_>, level: usize, max: usize) -> Result<Bson, Error> {
    Ok(match value {
        RawBsonRef::Document(d) => Bson::Document(convert(d, level + 1, max)?),
        RawBsonRef::Array(a) => Bson::Array(to_array(a, level + 1, max)?),
        // The scope is converted here too, so its nesting counts against the limit.
        RawBsonRef::JavaScriptCodeWithScope(c) => {
            Bson::JavaScriptCodeWithScope(bson::JavaScriptCodeWithScope {
                code: c.code.to_string(),
                scope: convert(c.scope, level + 1, max)?,
            })
        }
        // Nothing nested.
        other => Bson::try_from(other)?,
    })
}

#[cfg(test)]
mod tests {
    use bson::{doc, oid::ObjectId, spec::BinarySubtype};

    use super::*;

    #[test]
    fn matches_the_crates_own_conversion() {
        let d = doc! {
            "find": "usertable",
            "filter": {"_id": "user1", "a.b": {"$in": [1_i32, 2_i64, 3.5, {"x": [[], {}]}]}},
            "lsid": {"id": bson::Binary { subtype: BinarySubtype::Uuid, bytes: vec![7; 16] }},
            "oid": ObjectId::new(),
            "when": bson::DateTime::from_millis(1_700_000_000_000),
            "re": bson::Regex { pattern: "^a".try_into().unwrap(), options: "i".try_into().unwrap() },
            "code": bson::JavaScriptCodeWithScope { code: "f()".into(), scope: doc! {"v": 1} },
            "dec": "1.5".parse::<bson::Decimal128>().unwrap(),
            "ts": bson::Timestamp { time: 5, increment: 6 },
            "n": null, "t": true, "min": Bson::MinKey, "max": Bson::MaxKey,
            "deep": {"a": {"b": {"c": {"d": [{"e": "f"}]}}}},
        };
        let bytes = d.to_vec().unwrap();
        let ours = decode(&bytes).unwrap();
        let theirs = Document::try_from(RawDocument::from_bytes(&bytes).unwrap()).unwrap();
        // Byte equality: `Document`'s `==` ignores the order of keys, BSON does not.
        assert_eq!(ours.to_vec().unwrap(), theirs.to_vec().unwrap());
        assert_eq!(ours.to_vec().unwrap(), bytes);
    }

    #[test]
    fn a_repeated_key_keeps_its_place_and_its_last_value() {
        // {a: 1, b: 2, a: 3} written by hand: `doc!` cannot repeat a key.
        let mut bytes = vec![0u8; 4];
        for (k, v) in [("a", 1_i32), ("b", 2), ("a", 3)] {
            bytes.push(0x10);
            bytes.extend_from_slice(k.as_bytes());
            bytes.push(0);
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.push(0);
        let len = bytes.len() as i32;
        bytes[..4].copy_from_slice(&len.to_le_bytes());
        let ours = decode(&bytes).unwrap();
        let theirs = Document::try_from(RawDocument::from_bytes(&bytes).unwrap()).unwrap();
        assert_eq!(ours.to_vec().unwrap(), theirs.to_vec().unwrap());
        assert_eq!(
            ours.to_vec().unwrap(),
            doc! {"a": 3, "b": 2}.to_vec().unwrap()
        );
    }

    /// `{"": {"": ... {}}}`, `levels` levels counting the outer document.
    fn nested(levels: usize) -> Vec<u8> {
        let inner = levels - 1;
        let mut out = Vec::with_capacity(5 + 7 * inner);
        for i in 0..inner {
            out.extend_from_slice(&((5 + 7 * (inner - i)) as i32).to_le_bytes());
            out.extend_from_slice(&[3, 0]);
        }
        out.extend_from_slice(&[5, 0, 0, 0, 0]);
        out.resize(out.len() + inner, 0);
        out
    }

    #[test]
    fn nesting_is_counted_with_and_without_the_walk() {
        let run = || {
            let at_limit = nested(MAX_DEPTH);
            assert!(decode(&at_limit).is_ok());
            let raw = RawDocument::from_bytes(&at_limit).unwrap();
            assert!(to_document_within(raw, MAX_DEPTH).is_ok());
            assert!(matches!(
                to_document_within(raw, MAX_DEPTH - 1),
                Err(Error::TooDeep(_))
            ));
            for levels in [MAX_DEPTH + 1, 1_000_000] {
                let bytes = nested(levels);
                assert!(matches!(decode(&bytes), Err(Error::TooDeep(MAX_DEPTH))));
                let raw = RawDocument::from_bytes(&bytes).unwrap();
                assert!(matches!(
                    check_depth(raw, MAX_DEPTH),
                    Err(Error::TooDeep(_))
                ));
            }
        };
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn malformed_bson_is_an_error_not_a_panic() {
        let good = doc! {"s": "text", "d": {"x": 1}}.to_vec().unwrap();
        // Every truncation and every single-byte corruption of the length prefixes and
        // type bytes either decodes or fails cleanly.
        for cut in 0..good.len() {
            let _ = decode(&good[..cut]);
        }
        for i in 0..good.len() {
            for b in [0x00, 0x02, 0x03, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[i] = b;
                let _ = decode(&bad);
            }
        }
        // Invalid UTF-8 in a string value.
        let mut bad = good.clone();
        let at = bad.windows(4).position(|w| w == b"text").unwrap();
        bad[at] = 0xff;
        assert!(decode(&bad).is_err());
        assert!(decode(&good[..good.len() - 1]).is_err());
    }
}
