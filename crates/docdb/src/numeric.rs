//! Arithmetic over BSON numbers with MongoDB's type promotion
//! (int32 → int64 on overflow, int64 → double on overflow; any double makes a double;
//! any decimal makes a decimal, computed through f64 — documented limitation).

use std::str::FromStr;

use bson::{Bson, Decimal128};

use crate::order::decimal_to_f64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Int32,
    Int64,
    Double,
    Decimal,
}

fn kind(v: &Bson) -> Option<Kind> {
    Some(match v {
        Bson::Int32(_) => Kind::Int32,
        Bson::Int64(_) => Kind::Int64,
        Bson::Double(_) => Kind::Double,
        Bson::Decimal128(_) => Kind::Decimal,
        _ => return None,
    })
}

pub fn is_number(v: &Bson) -> bool {
    kind(v).is_some()
}

pub fn to_f64(v: &Bson) -> Option<f64> {
    match v {
        Bson::Int32(i) => Some(*i as f64),
        Bson::Int64(i) => Some(*i as f64),
        Bson::Double(f) => Some(*f),
        Bson::Decimal128(d) => Some(decimal_to_f64(d)),
        _ => None,
    }
}

pub fn to_i64(v: &Bson) -> Option<i64> {
    match v {
        Bson::Int32(i) => Some(*i as i64),
        Bson::Int64(i) => Some(*i),
        Bson::Double(f) if f.is_finite() => Some(*f as i64),
        Bson::Decimal128(d) => {
            let f = decimal_to_f64(d);
            f.is_finite().then_some(f as i64)
        }
        _ => None,
    }
}

/// An f64 as a Decimal128 (via its shortest round-trip string).
pub fn decimal_from_f64(f: f64) -> Bson {
    let s = if f.is_nan() {
        "NaN".to_string()
    } else if f.is_infinite() {
        if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        format!("{f:e}")
    };
    Decimal128::from_str(&s)
        .map(Bson::Decimal128)
        .unwrap_or(Bson::Double(f))
}

fn from_f64(k: Kind, f: f64) -> Bson {
    if k == Kind::Decimal {
        decimal_from_f64(f)
    } else {
        Bson::Double(f)
    }
}

enum Op {
    Add,
    Sub,
    Mul,
}

fn int_op(op: &Op, a: i64, b: i64) -> Option<i64> {
    match op {
        Op::Add => a.checked_add(b),
        Op::Sub => a.checked_sub(b),
        Op::Mul => a.checked_mul(b),
    }
}

fn float_op(op: &Op, a: f64, b: f64) -> f64 {
    match op {
        Op::Add => a + b,
        Op::Sub => a - b,
        Op::Mul => a * b,
    }
}

fn binop(op: Op, a: &Bson, b: &Bson) -> Option<Bson> {
    let k = kind(a)?.max(kind(b)?);
    match k {
        Kind::Int32 | Kind::Int64 => {
            let (x, y) = (to_i64(a)?, to_i64(b)?);
            match int_op(&op, x, y) {
                Some(r) if k == Kind::Int32 && i32::try_from(r).is_ok() => {
                    Some(Bson::Int32(r as i32))
                }
                Some(r) => Some(Bson::Int64(r)),
                None => Some(Bson::Double(float_op(&op, x as f64, y as f64))),
            }
        }
        _ => Some(from_f64(k, float_op(&op, to_f64(a)?, to_f64(b)?))),
    }
}

pub fn add(a: &Bson, b: &Bson) -> Option<Bson> {
    binop(Op::Add, a, b)
}

pub fn sub(a: &Bson, b: &Bson) -> Option<Bson> {
    binop(Op::Sub, a, b)
}

pub fn mul(a: &Bson, b: &Bson) -> Option<Bson> {
    binop(Op::Mul, a, b)
}

/// Division always yields a double (decimal if either side is decimal); None on non-numbers.
pub fn div(a: &Bson, b: &Bson) -> Option<Bson> {
    let k = kind(a)?.max(kind(b)?);
    let r = to_f64(a)? / to_f64(b)?;
    Some(if k == Kind::Decimal {
        decimal_from_f64(r)
    } else {
        Bson::Double(r)
    })
}

/// Remainder with the dividend's sign; result type follows promotion.
pub fn rem(a: &Bson, b: &Bson) -> Option<Bson> {
    let k = kind(a)?.max(kind(b)?);
    match k {
        Kind::Int32 | Kind::Int64 => {
            let (x, y) = (to_i64(a)?, to_i64(b)?);
            let r = x.checked_rem(y)?;
            Some(if k == Kind::Int32 {
                Bson::Int32(r as i32)
            } else {
                Bson::Int64(r)
            })
        }
        _ => Some(from_f64(k, to_f64(a)? % to_f64(b)?)),
    }
}

/// Zero of the same numeric type as `v`.
pub fn zero_like(v: &Bson) -> Bson {
    match v {
        Bson::Int64(_) => Bson::Int64(0),
        Bson::Double(_) => Bson::Double(0.0),
        Bson::Decimal128(_) => decimal_from_f64(0.0),
        _ => Bson::Int32(0),
    }
}

/// Apply a float function preserving integer types when the result is integral.
pub fn map_float(v: &Bson, f: impl Fn(f64) -> f64) -> Option<Bson> {
    match v {
        Bson::Int32(_) | Bson::Int64(_) => Some(v.clone()),
        Bson::Double(x) => Some(Bson::Double(f(*x))),
        Bson::Decimal128(d) => Some(decimal_from_f64(f(decimal_to_f64(d)))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion() {
        assert_eq!(add(&Bson::Int32(1), &Bson::Int32(2)), Some(Bson::Int32(3)));
        assert_eq!(
            add(&Bson::Int32(i32::MAX), &Bson::Int32(1)),
            Some(Bson::Int64(i32::MAX as i64 + 1))
        );
        assert_eq!(
            add(&Bson::Int64(i64::MAX), &Bson::Int32(1)),
            Some(Bson::Double(i64::MAX as f64 + 1.0))
        );
        assert_eq!(
            mul(&Bson::Int32(2), &Bson::Double(1.5)),
            Some(Bson::Double(3.0))
        );
        assert_eq!(add(&Bson::Int32(1), &Bson::String("x".into())), None);
        assert_eq!(
            rem(&Bson::Int32(-7), &Bson::Int32(3)),
            Some(Bson::Int32(-1))
        );
        let d = add(&decimal_from_f64(1.5), &Bson::Int32(1)).unwrap();
        assert!(matches!(d, Bson::Decimal128(_)));
        assert_eq!(to_f64(&d), Some(2.5));
    }
}
