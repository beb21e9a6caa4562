//! Order-preserving, prefix-free byte encoding of BSON values.
//!
//! `memcmp(encode(a), encode(b))` has the sign of [`order::cmp(a, b)`](crate::order::cmp),
//! so encoded values serve directly as storage keys (`_id` keys, index keys) and range
//! scans over the LSM follow MongoDB's order.
//!
//! Layout (ascending). Every value starts with its canonical type bracket as one tag byte
//! (never 0, which terminates composites):
//! - MinKey/Undefined/Null/MaxKey: the tag only.
//! - numbers (int32, int64, double, decimal128 — one bracket): 8 bytes of a *sortable
//!   double* (sign-flipped IEEE bits; NaN is all zeros, below -inf; -0 is folded into +0)
//!   followed by an *exactness tail* holding `value - double` exactly: `0x02` when zero,
//!   else `0x03` + magnitude (positive) or `0x01` + inverted magnitude (negative), where a
//!   magnitude `0.d1..dn × 10^adj` is `adj` (sign-flipped u32 BE), the digits as bytes
//!   1..=10, and `00`. Thus 1, 1.0, NumberLong(1) and NumberDecimal("1.0") encode
//!   identically, int64 values above 2^53 keep their exact order, and decimals order exactly
//!   against doubles (`NumberDecimal("0.1")` sorts just below the double 0.1).
//! - strings/symbols/code: bytes with 0x00 escaped as `00 FF`, terminated by `00 01`.
//! - objects: per element `tag, escaped name, body`, then `00`.
//! - arrays: per element `tag, body`, then `00`.
//! - binData: u32 BE length, subtype, bytes (MongoDB orders by length first).
//! - ObjectId: 12 bytes; bool: 1 byte; date: sign-flipped i64 BE; timestamp: u32 t, u32 i.
//! - regex: pattern string, options string.
//!
//! The encoding is prefix-free, so compound keys are plain concatenations. A descending
//! field is the bitwise inverse of its ascending encoding: inverting bytes reverses the
//! order of any two prefix-free encodings (they differ at a byte inside both).

use bson::Bson;

use crate::error::{Error, Result};
use crate::exactnum::{Exact, Mag};
use crate::order;

const STR_TERM: [u8; 2] = [0x00, 0x01];
const STR_ESC: [u8; 2] = [0x00, 0xFF];

/// Encode one value in ascending order, appending to `out`.
pub fn encode_value(v: &Bson, out: &mut Vec<u8>) {
    out.push(order::bracket(v));
    encode_body(v, out);
}

/// Encode one value (ascending) into a fresh buffer.
pub fn encode(v: &Bson) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    encode_value(v, &mut out);
    out
}

/// Encode one value for a descending key field (bitwise inverse of ascending).
pub fn encode_desc(v: &Bson, out: &mut Vec<u8>) {
    let start = out.len();
    encode_value(v, out);
    for b in &mut out[start..] {
        *b = !*b;
    }
}

/// Encode a compound key: `values[i]` with direction `ascending[i]`.
pub fn encode_compound(values: &[Bson], ascending: &[bool]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * values.len());
    for (v, asc) in values.iter().zip(ascending.iter()) {
        if *asc {
            encode_value(v, &mut out);
        } else {
            encode_desc(v, &mut out);
        }
    }
    out
}

fn push_str(s: &[u8], out: &mut Vec<u8>) {
    for &b in s {
        if b == 0 {
            out.extend_from_slice(&STR_ESC);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&STR_TERM);
}

/// Sortable bytes of a double: NaN lowest, -0 == +0.
pub fn sortable_double(f: f64) -> [u8; 8] {
    if f.is_nan() {
        return [0u8; 8];
    }
    let f = if f == 0.0 { 0.0 } else { f };
    let bits = f.to_bits();
    let s = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    s.to_be_bytes()
}

fn push_i64(i: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(&((i as u64) ^ (1 << 63)).to_be_bytes());
}

fn encode_mag(m: &Mag, out: &mut Vec<u8>) {
    out.extend_from_slice(&((m.adj as u32) ^ (1 << 31)).to_be_bytes());
    out.extend(m.digits.iter().map(|d| d + 1));
    out.push(0);
}

fn encode_number(v: &Bson, out: &mut Vec<u8>) {
    let (approx, tail) = order::num_view(v);
    out.extend_from_slice(&sortable_double(approx));
    match tail {
        Exact::Zero => out.push(0x02),
        Exact::Pos(m) => {
            out.push(0x03);
            encode_mag(&m, out);
        }
        Exact::Neg(m) => {
            out.push(0x01);
            let start = out.len();
            encode_mag(&m, out);
            for b in &mut out[start..] {
                *b = !*b;
            }
        }
    }
}

/// The rest of a container being encoded.
enum Open<'a> {
    Doc(bson::document::Iter<'a>),
    Array(std::slice::Iter<'a, Bson>),
}

/// Appends the body of `v` (everything after its type byte). Embedded documents and
/// arrays are walked with an explicit stack, not by recursion, so values of any depth
/// encode safely.
fn encode_body(v: &Bson, out: &mut Vec<u8>) {
    let mut open: Vec<Open<'_>> = Vec::new();
    let mut next = Some(v);
    loop {
        if let Some(v) = next.take() {
            match v {
                Bson::Document(d) => open.push(Open::Doc(d.iter())),
                Bson::Array(a) => open.push(Open::Array(a.iter())),
                Bson::JavaScriptCodeWithScope(c) => {
                    push_str(c.code.as_bytes(), out);
                    open.push(Open::Doc(c.scope.iter()));
                }
                scalar => encode_scalar(scalar, out),
            }
        }
        let Some(top) = open.last_mut() else {
            return;
        };
        let item = match top {
            Open::Doc(it) => it.next().map(|(k, val)| {
                out.push(order::bracket(val));
                push_str(k.as_bytes(), out);
                val
            }),
            Open::Array(it) => it.next().inspect(|val| out.push(order::bracket(val))),
        };
        match item {
            Some(val) => next = Some(val),
            None => {
                out.push(0);
                open.pop();
            }
        }
    }
}

/// The body of a value without nested values.
fn encode_scalar(v: &Bson, out: &mut Vec<u8>) {
    match v {
        Bson::MinKey | Bson::MaxKey | Bson::Null | Bson::Undefined => {}
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => {
            encode_number(v, out)
        }
        Bson::String(s) | Bson::Symbol(s) | Bson::JavaScriptCode(s) => push_str(s.as_bytes(), out),
        Bson::Binary(b) => {
            out.extend_from_slice(&(b.bytes.len() as u32).to_be_bytes());
            out.push(u8::from(b.subtype));
            out.extend_from_slice(&b.bytes);
        }
        Bson::ObjectId(o) => out.extend_from_slice(&o.bytes()),
        Bson::Boolean(b) => out.push(u8::from(*b)),
        Bson::DateTime(d) => push_i64(d.timestamp_millis(), out),
        Bson::Timestamp(t) => {
            out.extend_from_slice(&t.time.to_be_bytes());
            out.extend_from_slice(&t.increment.to_be_bytes());
        }
        Bson::RegularExpression(r) => {
            push_str(r.pattern.as_str().as_bytes(), out);
            push_str(r.options.as_str().as_bytes(), out);
        }
        Bson::DbPointer(p) => push_str(format!("{p:?}").as_bytes(), out),
        // Containers are walked by `encode_body`.
        Bson::Document(_) | Bson::Array(_) | Bson::JavaScriptCodeWithScope(_) => {}
    }
}

/// Reads bytes of an encoding, optionally inverted (descending fields).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    inv: bool,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| Error::internal("truncated key"))?;
        self.pos += 1;
        Ok(if self.inv { !b } else { b })
    }

    fn skip(&mut self, n: usize) -> Result<()> {
        if self.pos + n > self.buf.len() {
            return Err(Error::internal("truncated key"));
        }
        self.pos += n;
        Ok(())
    }

    fn read_fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        for b in &mut out {
            *b = self.byte()?;
        }
        Ok(out)
    }

    fn skip_str(&mut self) -> Result<()> {
        loop {
            if self.byte()? == 0 {
                match self.byte()? {
                    0x01 => return Ok(()),
                    0xFF => {}
                    _ => return Err(Error::internal("corrupt key string")),
                }
            }
        }
    }

    /// Skips the body of a value tagged `tag`. Nested documents and arrays are tracked
    /// on an explicit stack, not by recursion.
    fn skip_body(&mut self, tag: u8) -> Result<()> {
        // Open containers, innermost last: true for a document (its elements are named).
        let mut open: Vec<bool> = Vec::new();
        let mut next = Some(tag);
        loop {
            if let Some(t) = next.take() {
                match t {
                    20 => open.push(true),
                    25 => open.push(false),
                    65 => {
                        self.skip_str()?;
                        open.push(true);
                    }
                    t => self.skip_scalar(t)?,
                }
            }
            let Some(&is_doc) = open.last() else {
                return Ok(());
            };
            let t = self.byte()?;
            if t == 0 {
                open.pop();
                continue;
            }
            if is_doc {
                self.skip_str()?;
            }
            next = Some(t);
        }
    }

    fn skip_scalar(&mut self, tag: u8) -> Result<()> {
        match tag {
            1 | 2 | 3 | 100 => Ok(()),
            10 => {
                self.skip(8)?;
                let term = match self.byte()? {
                    0x02 => return Ok(()),
                    0x03 => 0x00,
                    // A negative tail is stored inverted: its terminator reads as 0xFF.
                    0x01 => 0xFF,
                    _ => return Err(Error::internal("corrupt key number")),
                };
                self.skip(4)?;
                while self.byte()? != term {}
                Ok(())
            }
            15 | 60 => self.skip_str(),
            30 => {
                let len = u32::from_be_bytes(self.read_fixed::<4>()?) as usize;
                self.skip(1 + len)
            }
            35 => self.skip(12),
            40 => self.skip(1),
            45 | 47 => self.skip(8),
            50 => {
                self.skip_str()?;
                self.skip_str()
            }
            55 => self.skip_str(),
            _ => Err(Error::internal("corrupt key tag")),
        }
    }
}

/// Length in bytes of the encoded value starting at `buf[0]` (`inverted` for a descending
/// field). Used to split `[key fields][_id]` index entries.
pub fn encoded_len(buf: &[u8], inverted: bool) -> Result<usize> {
    let mut r = Reader {
        buf,
        pos: 0,
        inv: inverted,
    };
    let tag = r.byte()?;
    r.skip_body(tag)?;
    Ok(r.pos)
}

/// Smallest byte string greater than every string that starts with `prefix`
/// (None when no such string exists, i.e. the prefix is all 0xFF).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut p = prefix.to_vec();
    while let Some(last) = p.pop() {
        if last != 0xFF {
            p.push(last + 1);
            return Some(p);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::cmp;
    use bson::{
        Binary, Decimal128, Document, Regex, Timestamp, oid::ObjectId, spec::BinarySubtype,
    };
    use proptest::prelude::*;
    use std::str::FromStr;

    fn arb_leaf() -> impl Strategy<Value = Bson> {
        prop_oneof![
            Just(Bson::MinKey),
            Just(Bson::MaxKey),
            Just(Bson::Null),
            Just(Bson::Undefined),
            any::<i32>().prop_map(Bson::Int32),
            any::<i64>().prop_map(Bson::Int64),
            (-3i64..3).prop_map(Bson::Int64),
            (-3i32..3).prop_map(Bson::Int32),
            prop_oneof![
                Just(0.0),
                Just(-0.0),
                Just(1.0),
                Just(-1.0),
                Just(2.5),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(9007199254740992.0),
                Just(9.223372036854776e18),
                any::<f64>()
            ]
            .prop_map(Bson::Double),
            prop_oneof![
                Just("1"),
                Just("-2.5"),
                Just("0"),
                Just("1E+2"),
                Just("0.1"),
                Just("-0.1"),
                Just("9007199254740993"),
                Just("1E+400"),
                Just("-1E-400"),
                Just("NaN"),
                Just("-Infinity"),
                Just("0.1000000000000000055511151231257827")
            ]
            .prop_map(|s| Bson::Decimal128(Decimal128::from_str(s).unwrap())),
            (any::<i64>(), -30i32..30).prop_map(|(c, e)| Bson::Decimal128(
                Decimal128::from_str(&format!("{c}E{e}")).unwrap()
            )),
            "[a-c\u{0}é]{0,4}".prop_map(Bson::String),
            "[ab]{0,2}".prop_map(Bson::Symbol),
            any::<bool>().prop_map(Bson::Boolean),
            any::<i64>().prop_map(|m| Bson::DateTime(bson::DateTime::from_millis(m))),
            (any::<u32>(), any::<u32>()).prop_map(|(t, i)| Bson::Timestamp(Timestamp {
                time: t,
                increment: i
            })),
            any::<[u8; 12]>().prop_map(|b| Bson::ObjectId(ObjectId::from_bytes(b))),
            (prop::collection::vec(any::<u8>(), 0..4), 0u8..3).prop_map(|(bytes, s)| Bson::Binary(
                Binary {
                    subtype: BinarySubtype::from(s),
                    bytes
                }
            )),
            ("[ab]{0,2}", "[im]{0,1}").prop_map(|(p, o)| Bson::RegularExpression(Regex {
                pattern: p.try_into().unwrap(),
                options: o.try_into().unwrap()
            })),
        ]
    }

    fn arb_bson() -> impl Strategy<Value = Bson> {
        arb_leaf().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Bson::Array),
                prop::collection::vec(("[ab]{0,2}", inner), 0..4).prop_map(|kv| {
                    let mut d = Document::new();
                    for (k, v) in kv {
                        d.insert(k, v);
                    }
                    Bson::Document(d)
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn memcmp_agrees_with_order(a in arb_bson(), b in arb_bson()) {
            let (ea, eb) = (encode(&a), encode(&b));
            prop_assert_eq!(ea.cmp(&eb), cmp(&a, &b), "{:?} vs {:?}", a, b);
            let mut da = Vec::new();
            encode_desc(&a, &mut da);
            let mut db = Vec::new();
            encode_desc(&b, &mut db);
            prop_assert_eq!(da.cmp(&db), cmp(&a, &b).reverse());
            prop_assert_eq!(encoded_len(&ea, false).unwrap(), ea.len());
            prop_assert_eq!(encoded_len(&da, true).unwrap(), da.len());
        }

        #[test]
        fn compound_keys_order(a1 in arb_leaf(), a2 in arb_leaf(), b1 in arb_leaf(), b2 in arb_leaf(), asc1: bool, asc2: bool) {
            let ka = encode_compound(&[a1.clone(), a2.clone()], &[asc1, asc2]);
            let kb = encode_compound(&[b1.clone(), b2.clone()], &[asc1, asc2]);
            let o1 = if asc1 { cmp(&a1, &b1) } else { cmp(&a1, &b1).reverse() };
            let o2 = if asc2 { cmp(&a2, &b2) } else { cmp(&a2, &b2).reverse() };
            prop_assert_eq!(ka.cmp(&kb), o1.then(o2));
        }
    }

    #[test]
    fn numeric_equivalence() {
        let one = encode(&Bson::Int32(1));
        assert_eq!(one, encode(&Bson::Double(1.0)));
        assert_eq!(one, encode(&Bson::Int64(1)));
        assert_eq!(
            one,
            encode(&Bson::Decimal128(Decimal128::from_str("1").unwrap()))
        );
        assert_eq!(encode(&Bson::Double(-0.0)), encode(&Bson::Int32(0)));
        let big = (1i64 << 53) + 1;
        assert!(encode(&Bson::Int64(big)) > encode(&Bson::Double((1u64 << 53) as f64)));
        assert!(encode(&Bson::Int64(big)) < encode(&Bson::Int64(big + 1)));
        assert!(encode(&Bson::Double(f64::NAN)) < encode(&Bson::Double(f64::NEG_INFINITY)));
        let d = |s: &str| Bson::Decimal128(Decimal128::from_str(s).unwrap());
        assert_eq!(encode(&d("1.000")), one);
        assert!(encode(&d("0.1")) < encode(&Bson::Double(0.1)));
        assert!(encode(&d("0.1")) > encode(&Bson::Double(0.09999999999999999)));
        assert_eq!(
            encode(&d("9007199254740993")),
            encode(&Bson::Int64((1 << 53) + 1))
        );
    }

    #[test]
    fn prefix_end_works() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF]), None);
    }
}
