//! Exact decimal arithmetic just big enough to order Decimal128 values against doubles and
//! 64-bit integers without rounding.
//!
//! Every number is viewed as `(nearest double, exact tail)` where `tail = value - double`.
//! Ordering by the double first and then by the tail is the exact numeric order (rounding
//! to nearest is monotonic), and it is cheap for the common case (tail zero). The tail of
//! an int64 is a small integer; the tail of a decimal is an exact decimal difference. Both
//! [`crate::order`] and [`crate::keycodec`] use this view, so they agree by construction.

use std::cmp::Ordering;

use bson::Decimal128;

/// A positive magnitude `0.d1 d2 ... dn × 10^adj` with `d1 != 0` and `dn != 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mag {
    pub adj: i32,
    pub digits: Vec<u8>,
}

impl Ord for Mag {
    fn cmp(&self, other: &Self) -> Ordering {
        self.adj
            .cmp(&other.adj)
            .then_with(|| self.digits.cmp(&other.digits))
    }
}

impl PartialOrd for Mag {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// An exact finite value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exact {
    Neg(Mag),
    Zero,
    Pos(Mag),
}

impl Ord for Exact {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Exact::Neg(a), Exact::Neg(b)) => b.cmp(a),
            (Exact::Pos(a), Exact::Pos(b)) => a.cmp(b),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }
}

impl PartialOrd for Exact {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Exact {
    fn rank(&self) -> u8 {
        match self {
            Exact::Neg(_) => 0,
            Exact::Zero => 1,
            Exact::Pos(_) => 2,
        }
    }

    /// `±coeff × 10^exp` from decimal digit values (leading/trailing zeros allowed).
    pub fn from_coeff(neg: bool, coeff: &[u8], exp: i32) -> Exact {
        let start = coeff.iter().position(|d| *d != 0);
        let Some(start) = start else {
            return Exact::Zero;
        };
        let end = coeff
            .iter()
            .rposition(|d| *d != 0)
            .map_or(coeff.len(), |p| p + 1);
        let digits = coeff[start..end].to_vec();
        let trailing = (coeff.len() - end) as i32;
        let adj = exp + trailing + digits.len() as i32;
        let m = Mag { adj, digits };
        if neg { Exact::Neg(m) } else { Exact::Pos(m) }
    }

    pub fn from_i128(i: i128) -> Exact {
        let digits: Vec<u8> = i
            .unsigned_abs()
            .to_string()
            .bytes()
            .map(|b| b - b'0')
            .collect();
        Exact::from_coeff(i < 0, &digits, 0)
    }

    /// The exact value of a finite double (Rust's fixed-precision formatting is exact).
    pub fn from_f64(x: f64) -> Exact {
        if x == 0.0 || !x.is_finite() {
            return Exact::Zero;
        }
        let s = format!("{:.800e}", x.abs());
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let digits: Vec<u8> = mant
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| b - b'0')
            .collect();
        let frac = digits.len() as i32 - 1;
        Exact::from_coeff(x < 0.0, &digits, exp - frac)
    }

    /// The exact value of a finite Decimal128 (None for NaN and infinities).
    pub fn from_decimal(d: &Decimal128) -> Option<Exact> {
        let s = d.to_string();
        let (neg, body) = match s.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, s.as_str()),
        };
        if body.contains("Inf") || body.contains("NaN") {
            return None;
        }
        let (mant, exp) = match body.find(['E', 'e']) {
            Some(i) => (&body[..i], body[i + 1..].parse::<i32>().ok()?),
            None => (body, 0),
        };
        let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
        let digits: Vec<u8> = int
            .bytes()
            .chain(frac.bytes())
            .filter(u8::is_ascii_digit)
            .map(|b| b - b'0')
            .collect();
        Some(Exact::from_coeff(neg, &digits, exp - frac.len() as i32))
    }

    /// As `(negative, coefficient digits, exponent)`.
    fn parts(&self) -> Option<(bool, Vec<u8>, i32)> {
        match self {
            Exact::Zero => None,
            Exact::Pos(m) => Some((false, m.digits.clone(), m.adj - m.digits.len() as i32)),
            Exact::Neg(m) => Some((true, m.digits.clone(), m.adj - m.digits.len() as i32)),
        }
    }

    /// Exact `self - other`.
    pub fn sub(&self, other: &Exact) -> Exact {
        let Some((bn, bd, be)) = other.parts() else {
            return self.clone();
        };
        let Some((an, ad, ae)) = self.parts() else {
            return Exact::from_coeff(!bn, &bd, be);
        };
        let e = ae.min(be);
        let mut a = ad;
        a.extend(std::iter::repeat_n(0, (ae - e) as usize));
        let mut b = bd;
        b.extend(std::iter::repeat_n(0, (be - e) as usize));
        // a_signed - b_signed = a_signed + (-b_signed)
        let bneg = !bn;
        if an == bneg {
            Exact::from_coeff(an, &add_digits(&a, &b), e)
        } else {
            match cmp_digits(&a, &b) {
                Ordering::Equal => Exact::Zero,
                Ordering::Greater => Exact::from_coeff(an, &sub_digits(&a, &b), e),
                Ordering::Less => Exact::from_coeff(bneg, &sub_digits(&b, &a), e),
            }
        }
    }
}

fn strip(d: &[u8]) -> &[u8] {
    let s = d.iter().position(|x| *x != 0).unwrap_or(d.len());
    &d[s..]
}

fn cmp_digits(a: &[u8], b: &[u8]) -> Ordering {
    let (a, b) = (strip(a), strip(b));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn add_digits(a: &[u8], b: &[u8]) -> Vec<u8> {
    let n = a.len().max(b.len()) + 1;
    let mut out = vec![0u8; n];
    let mut carry = 0u8;
    for i in 0..n {
        let x = if i < a.len() { a[a.len() - 1 - i] } else { 0 };
        let y = if i < b.len() { b[b.len() - 1 - i] } else { 0 };
        let s = x + y + carry;
        out[n - 1 - i] = s % 10;
        carry = s / 10;
    }
    out
}

/// `a - b` for `a >= b`.
fn sub_digits(a: &[u8], b: &[u8]) -> Vec<u8> {
    let n = a.len();
    let mut out = vec![0u8; n];
    let mut borrow = 0i8;
    for i in 0..n {
        let x = a[n - 1 - i] as i8;
        let y = if i < b.len() {
            b[b.len() - 1 - i] as i8
        } else {
            0
        };
        let mut d = x - y - borrow;
        if d < 0 {
            d += 10;
            borrow = 1;
        } else {
            borrow = 0;
        }
        out[n - 1 - i] = d as u8;
    }
    out
}

/// The `(nearest double, exact tail)` view of a Decimal128. NaN and infinities have a zero
/// tail; finite decimals beyond the double range use ±f64::MAX as their anchor.
pub fn decimal_view(d: &Decimal128) -> (f64, Exact) {
    let approx = crate::order::decimal_to_f64(d);
    let Some(exact) = Exact::from_decimal(d) else {
        return (approx, Exact::Zero);
    };
    if exact == Exact::Zero {
        return (0.0, Exact::Zero);
    }
    let anchor = if approx.is_infinite() {
        f64::MAX.copysign(approx)
    } else {
        approx
    };
    let anchor = if anchor == 0.0 { 0.0 } else { anchor };
    (anchor, exact.sub(&Exact::from_f64(anchor)))
}

/// The `(nearest double, exact tail)` view of an int64.
pub fn int_view(i: i64) -> (f64, Exact) {
    let d = i as f64;
    let diff = i as i128 - d as i128;
    (
        d,
        if diff == 0 {
            Exact::Zero
        } else {
            Exact::from_i128(diff)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal128 {
        Decimal128::from_str(s).unwrap()
    }

    #[test]
    fn exact_values() {
        assert_eq!(Exact::from_decimal(&dec("1.0")), Some(Exact::from_i128(1)));
        assert_eq!(
            Exact::from_decimal(&dec("100")),
            Exact::from_decimal(&dec("1E+2"))
        );
        assert_eq!(
            Exact::from_f64(0.5),
            Exact::from_decimal(&dec("0.5")).unwrap()
        );
        assert!(Exact::from_f64(0.1) > Exact::from_decimal(&dec("0.1")).unwrap());
        assert_eq!(Exact::from_f64(0.1).sub(&Exact::from_f64(0.1)), Exact::Zero);
        assert_eq!(
            Exact::from_i128(5).sub(&Exact::from_i128(7)),
            Exact::from_i128(-2)
        );
        assert_eq!(
            Exact::from_decimal(&dec("0.25"))
                .unwrap()
                .sub(&Exact::from_f64(0.5)),
            Exact::from_decimal(&dec("-0.25")).unwrap()
        );
        let (a, t) = decimal_view(&dec("0.1"));
        assert_eq!(a, 0.1);
        assert!(t < Exact::Zero, "0.1 as a double is above the decimal 0.1");
        let (a, t) = decimal_view(&dec("1E+400"));
        assert_eq!(a, f64::MAX);
        assert!(t > Exact::Zero);
    }
}
