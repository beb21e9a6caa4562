//! The total order over BSON values, exactly as MongoDB compares them.
//!
//! Values first compare by *canonical type bracket*
//! (MinKey < Undefined < Null < numbers < strings/symbols < objects < arrays < binData <
//! ObjectId < bool < date < timestamp < regex < dbPointer < code < codeWithScope < MaxKey),
//! then within a bracket by value. Numbers of all four numeric types compare by numeric
//! value (NaN below every other number); strings compare by bytes (simple collation);
//! objects compare element by element (canonical type, then field name, then value), and a
//! prefix sorts first; arrays compare element-wise the same way.
//!
//! Decimal128 values compare exactly against every numeric type through the
//! `(nearest double, exact remainder)` view of [`crate::exactnum`].

use std::cmp::Ordering;

use bson::{Bson, Decimal128, Document};

use crate::exactnum::{self, Exact};

/// Canonical type bracket (MongoDB's `canonicalizeBSONType`).
pub fn bracket(v: &Bson) -> u8 {
    match v {
        Bson::MinKey => 1,
        Bson::Undefined => 2,
        Bson::Null => 3,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => 10,
        Bson::String(_) | Bson::Symbol(_) => 15,
        Bson::Document(_) => 20,
        Bson::Array(_) => 25,
        Bson::Binary(_) => 30,
        Bson::ObjectId(_) => 35,
        Bson::Boolean(_) => 40,
        Bson::DateTime(_) => 45,
        Bson::Timestamp(_) => 47,
        Bson::RegularExpression(_) => 50,
        Bson::DbPointer(_) => 55,
        Bson::JavaScriptCode(_) => 60,
        Bson::JavaScriptCodeWithScope(_) => 65,
        Bson::MaxKey => 100,
    }
}

/// Bracket of numbers, exposed for planners that build type-bracketed ranges.
pub const NUMBER_BRACKET: u8 = 10;

/// A numeric value normalised for comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i64),
    Double(f64),
}

/// Convert a Decimal128 to its nearest double.
pub fn decimal_to_f64(d: &Decimal128) -> f64 {
    let s = d.to_string();
    match s.as_str() {
        "NaN" | "-NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        _ => s.parse::<f64>().unwrap_or(f64::NAN),
    }
}

/// The numeric view of a value, or None when it is not a number.
pub fn as_num(v: &Bson) -> Option<Num> {
    match v {
        Bson::Int32(i) => Some(Num::Int(*i as i64)),
        Bson::Int64(i) => Some(Num::Int(*i)),
        Bson::Double(f) => Some(Num::Double(*f)),
        Bson::Decimal128(d) => Some(Num::Double(decimal_to_f64(d))),
        _ => None,
    }
}

impl Num {
    pub fn to_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Double(f) => f,
        }
    }
}

/// Compare an integer with a double exactly (NaN is smallest).
fn cmp_int_double(i: i64, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Greater;
    }
    let fi = i as f64;
    match fi.partial_cmp(&f) {
        Some(Ordering::Equal) => {
            // f is integral and |f| <= 2^63: compare exactly in i128.
            (i as i128).cmp(&(f as i128))
        }
        Some(o) => o,
        None => Ordering::Equal,
    }
}

fn cmp_double(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

pub fn cmp_num(a: Num, b: Num) -> Ordering {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Int(x), Num::Double(y)) => cmp_int_double(x, y),
        (Num::Double(x), Num::Int(y)) => cmp_int_double(y, x).reverse(),
        (Num::Double(x), Num::Double(y)) => cmp_double(x, y),
    }
}

/// `(nearest double, exact remainder)` of a number; see [`crate::exactnum`].
pub fn num_view(v: &Bson) -> (f64, Exact) {
    match v {
        Bson::Int32(i) => (*i as f64, Exact::Zero),
        Bson::Int64(i) => exactnum::int_view(*i),
        Bson::Double(f) => (if *f == 0.0 { 0.0 } else { *f }, Exact::Zero),
        Bson::Decimal128(d) => exactnum::decimal_view(d),
        _ => (f64::NAN, Exact::Zero),
    }
}

/// Compare two BSON values in MongoDB's total order.
///
/// Embedded documents and arrays are compared with an explicit stack of element
/// iterators rather than by recursion, so values of any depth compare safely.
pub fn cmp(a: &Bson, b: &Bson) -> Ordering {
    run(Vec::new(), Some((a, b)))
}

/// Objects compare element by element: canonical type, field name, value; shorter first.
pub fn cmp_doc(a: &Document, b: &Document) -> Ordering {
    run(vec![Pending::Docs(a.iter(), b.iter())], None)
}

/// Arrays compare element by element (canonical type, then value); shorter first.
pub fn cmp_array(a: &[Bson], b: &[Bson]) -> Ordering {
    run(vec![Pending::Arrays(a.iter(), b.iter())], None)
}

/// The rest of two containers being compared, element by element.
enum Pending<'a> {
    Docs(bson::document::Iter<'a>, bson::document::Iter<'a>),
    Arrays(std::slice::Iter<'a, Bson>, std::slice::Iter<'a, Bson>),
}

/// What comparing two values at one level decides.
enum Step<'a> {
    Decided(Ordering),
    /// Equal so far; their elements decide.
    Descend(Pending<'a>),
}

/// Compares `next` and then the pending containers, innermost first, until something
/// differs or everything is exhausted.
fn run<'a>(mut stack: Vec<Pending<'a>>, mut next: Option<(&'a Bson, &'a Bson)>) -> Ordering {
    loop {
        if let Some((a, b)) = next.take() {
            match cmp_one(a, b) {
                Step::Decided(Ordering::Equal) => {}
                Step::Decided(o) => return o,
                Step::Descend(p) => stack.push(p),
            }
        }
        let Some(top) = stack.last_mut() else {
            return Ordering::Equal;
        };
        let (x, y) = match top {
            Pending::Docs(ia, ib) => match (ia.next(), ib.next()) {
                (Some((ka, va)), Some((kb, vb))) => {
                    let o = bracket(va)
                        .cmp(&bracket(vb))
                        .then_with(|| ka.as_bytes().cmp(kb.as_bytes()));
                    if o != Ordering::Equal {
                        return o;
                    }
                    (va, vb)
                }
                (None, None) => {
                    stack.pop();
                    continue;
                }
                (None, Some(_)) => return Ordering::Less,
                (Some(_), None) => return Ordering::Greater,
            },
            Pending::Arrays(ia, ib) => match (ia.next(), ib.next()) {
                (Some(va), Some(vb)) => {
                    let o = bracket(va).cmp(&bracket(vb));
                    if o != Ordering::Equal {
                        return o;
                    }
                    (va, vb)
                }
                (None, None) => {
                    stack.pop();
                    continue;
                }
                (None, Some(_)) => return Ordering::Less,
                (Some(_), None) => return Ordering::Greater,
            },
        };
        next = Some((x, y));
    }
}

/// One level of [`cmp`]: scalars are decided here, containers descend.
fn cmp_one<'a>(a: &'a Bson, b: &'a Bson) -> Step<'a> {
    let (ba, bb) = (bracket(a), bracket(b));
    if ba != bb {
        return Step::Decided(ba.cmp(&bb));
    }
    Step::Decided(match (a, b) {
        _ if ba == NUMBER_BRACKET => {
            if matches!(a, Bson::Decimal128(_)) || matches!(b, Bson::Decimal128(_)) {
                let (x, y) = (num_view(a), num_view(b));
                cmp_double(x.0, y.0).then_with(|| x.1.cmp(&y.1))
            } else {
                match (as_num(a), as_num(b)) {
                    (Some(x), Some(y)) => cmp_num(x, y),
                    _ => Ordering::Equal,
                }
            }
        }
        (Bson::String(x) | Bson::Symbol(x), Bson::String(y) | Bson::Symbol(y)) => {
            x.as_bytes().cmp(y.as_bytes())
        }
        (Bson::Document(x), Bson::Document(y)) => {
            return Step::Descend(Pending::Docs(x.iter(), y.iter()));
        }
        (Bson::Array(x), Bson::Array(y)) => {
            return Step::Descend(Pending::Arrays(x.iter(), y.iter()));
        }
        (Bson::Binary(x), Bson::Binary(y)) => x
            .bytes
            .len()
            .cmp(&y.bytes.len())
            .then_with(|| u8::from(x.subtype).cmp(&u8::from(y.subtype)))
            .then_with(|| x.bytes.cmp(&y.bytes)),
        (Bson::ObjectId(x), Bson::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (Bson::Boolean(x), Bson::Boolean(y)) => x.cmp(y),
        (Bson::DateTime(x), Bson::DateTime(y)) => x.timestamp_millis().cmp(&y.timestamp_millis()),
        (Bson::Timestamp(x), Bson::Timestamp(y)) => x
            .time
            .cmp(&y.time)
            .then_with(|| x.increment.cmp(&y.increment)),
        (Bson::RegularExpression(x), Bson::RegularExpression(y)) => x
            .pattern
            .as_str()
            .as_bytes()
            .cmp(y.pattern.as_str().as_bytes())
            .then_with(|| {
                x.options
                    .as_str()
                    .as_bytes()
                    .cmp(y.options.as_str().as_bytes())
            }),
        (Bson::DbPointer(x), Bson::DbPointer(y)) => {
            // DbPointer internals are private in the bson crate; compare their
            // canonical extended-JSON rendering, which orders namespace then id.
            format!("{x:?}").cmp(&format!("{y:?}"))
        }
        (Bson::JavaScriptCode(x), Bson::JavaScriptCode(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Bson::JavaScriptCodeWithScope(x), Bson::JavaScriptCodeWithScope(y)) => {
            match x.code.as_bytes().cmp(y.code.as_bytes()) {
                Ordering::Equal => {
                    return Step::Descend(Pending::Docs(x.scope.iter(), y.scope.iter()));
                }
                o => o,
            }
        }
        _ => Ordering::Equal,
    })
}

/// Equality in MongoDB's sense (`1 == 1.0 == NumberLong(1)`).
pub fn eq(a: &Bson, b: &Bson) -> bool {
    cmp(a, b) == Ordering::Equal
}

/// The value a sort key uses for one field: for arrays, the minimum element when
/// ascending and the maximum when descending; an empty array sorts like `undefined`
/// (below null), per MongoDB's sort semantics.
pub fn sort_key_of_array(arr: &[Bson], ascending: bool) -> Bson {
    if arr.is_empty() {
        return Bson::Undefined;
    }
    let mut best = &arr[0];
    for v in &arr[1..] {
        let o = cmp(v, best);
        if (ascending && o == Ordering::Less) || (!ascending && o == Ordering::Greater) {
            best = v;
        }
    }
    best.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{Binary, Regex, Timestamp, doc, oid::ObjectId, spec::BinarySubtype};
    use std::str::FromStr;

    #[test]
    fn brackets_order() {
        let vals = vec![
            Bson::MinKey,
            Bson::Undefined,
            Bson::Null,
            Bson::Double(f64::NAN),
            Bson::Int32(-5),
            Bson::Double(1.5),
            Bson::Int64(2),
            Bson::String("".into()),
            Bson::String("a".into()),
            Bson::String("b".into()),
            Bson::Document(doc! {}),
            Bson::Document(doc! {"a": 1}),
            Bson::Array(vec![]),
            Bson::Array(vec![Bson::Int32(1)]),
            Bson::Binary(Binary {
                subtype: BinarySubtype::Generic,
                bytes: vec![1],
            }),
            Bson::ObjectId(ObjectId::from_bytes([0; 12])),
            Bson::Boolean(false),
            Bson::Boolean(true),
            Bson::DateTime(bson::DateTime::from_millis(-1)),
            Bson::DateTime(bson::DateTime::from_millis(5)),
            Bson::Timestamp(Timestamp {
                time: 1,
                increment: 1,
            }),
            Bson::RegularExpression(Regex {
                pattern: "a".try_into().unwrap(),
                options: "".try_into().unwrap(),
            }),
            Bson::MaxKey,
        ];
        for i in 0..vals.len() {
            for j in 0..vals.len() {
                assert_eq!(
                    cmp(&vals[i], &vals[j]),
                    i.cmp(&j),
                    "{:?} vs {:?}",
                    vals[i],
                    vals[j]
                );
            }
        }
    }

    #[test]
    fn numbers_across_types() {
        assert!(eq(&Bson::Int32(1), &Bson::Double(1.0)));
        assert!(eq(&Bson::Int64(1), &Bson::Double(1.0)));
        assert!(eq(
            &Bson::Decimal128(Decimal128::from_str("1.0").unwrap()),
            &Bson::Int32(1)
        ));
        assert_eq!(
            cmp(&Bson::Int64(i64::MAX), &Bson::Double(9.223372036854776e18)),
            Ordering::Less
        );
        assert_eq!(
            cmp(
                &Bson::Int64((1 << 53) + 1),
                &Bson::Double((1u64 << 53) as f64)
            ),
            Ordering::Greater
        );
        assert_eq!(
            cmp(&Bson::Double(f64::NAN), &Bson::Double(f64::NEG_INFINITY)),
            Ordering::Less
        );
        assert!(eq(&Bson::Double(-0.0), &Bson::Int32(0)));
        let d = |s: &str| Bson::Decimal128(Decimal128::from_str(s).unwrap());
        assert!(
            !eq(&d("0.1"), &Bson::Double(0.1)),
            "decimal 0.1 is not the double 0.1"
        );
        assert_eq!(cmp(&d("0.1"), &Bson::Double(0.1)), Ordering::Less);
        assert!(eq(&d("0.5"), &Bson::Double(0.5)));
        assert!(eq(&d("-0"), &Bson::Int32(0)));
        assert_eq!(
            cmp(&d("9007199254740993"), &Bson::Int64(9007199254740993)),
            Ordering::Equal
        );
        assert_eq!(
            cmp(&d("9007199254740992.5"), &Bson::Int64(9007199254740993)),
            Ordering::Less
        );
        assert_eq!(
            cmp(&d("1E+400"), &Bson::Double(f64::INFINITY)),
            Ordering::Less
        );
        assert_eq!(cmp(&d("1E+400"), &d("2E+400")), Ordering::Less);
        assert_eq!(
            cmp(&d("NaN"), &Bson::Double(f64::NEG_INFINITY)),
            Ordering::Less
        );
        assert_eq!(
            cmp(&d("0.1000000000000000000000000000000001"), &d("0.1")),
            Ordering::Greater
        );
    }

    #[test]
    fn objects_compare_type_then_name_then_value() {
        // number bracket < string bracket, regardless of field name
        assert_eq!(
            cmp(
                &Bson::Document(doc! {"z": 1}),
                &Bson::Document(doc! {"a": "x"})
            ),
            Ordering::Less
        );
        assert_eq!(
            cmp(
                &Bson::Document(doc! {"a": 1}),
                &Bson::Document(doc! {"b": 1})
            ),
            Ordering::Less
        );
        assert_eq!(
            cmp(
                &Bson::Document(doc! {"a": 1}),
                &Bson::Document(doc! {"a": 1, "b": 0})
            ),
            Ordering::Less
        );
    }

    #[test]
    fn bindata_length_first() {
        let a = Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: vec![9, 9],
        });
        let b = Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: vec![0, 0, 0],
        });
        assert_eq!(cmp(&a, &b), Ordering::Less);
    }

    #[test]
    fn array_sort_keys() {
        let arr = vec![Bson::Int32(3), Bson::Int32(1), Bson::String("a".into())];
        assert_eq!(sort_key_of_array(&arr, true), Bson::Int32(1));
        assert_eq!(sort_key_of_array(&arr, false), Bson::String("a".into()));
    }
}
