//! ISO-8601 durations as used by rotation policies (`P90D`, `P1Y10D`, `PT48H`, `P2M`).
//! Months count as 30 days and years as 365 days (the service's own approximation).

/// Parses an ISO-8601 duration into seconds.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let rest = s.strip_prefix('P').or_else(|| s.strip_prefix('p'))?;
    if rest.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut in_time = false;
    let mut num = String::new();
    let mut any = false;
    for c in rest.chars() {
        match c {
            '0'..='9' => num.push(c),
            'T' | 't' => {
                if !num.is_empty() || in_time {
                    return None;
                }
                in_time = true;
            }
            _ => {
                let n: i64 = num.parse().ok()?;
                num.clear();
                let unit = match (in_time, c.to_ascii_uppercase()) {
                    (false, 'Y') => 365 * 86_400,
                    (false, 'M') => 30 * 86_400,
                    (false, 'W') => 7 * 86_400,
                    (false, 'D') => 86_400,
                    (true, 'H') => 3_600,
                    (true, 'M') => 60,
                    (true, 'S') => 1,
                    _ => return None,
                };
                total = total.checked_add(n.checked_mul(unit)?)?;
                any = true;
            }
        }
    }
    if !num.is_empty() || !any {
        return None;
    }
    Some(total)
}

/// Whether `t` (Unix seconds) is an instant the service can show as a date (years 1..=9999,
/// as the REST API and the SDKs render them). Times outside that range are refused at the API.
pub fn representable(t: i64) -> bool {
    const MIN: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    (MIN..=MAX).contains(&t)
}

/// `t + d` when the sum is a [`representable`] instant; `None` on overflow or past year 9999.
pub fn checked_after(t: i64, d: i64) -> Option<i64> {
    t.checked_add(d).filter(|&r| representable(r))
}

/// `t - d` when the difference is a [`representable`] instant; `None` otherwise.
pub fn checked_before(t: i64, d: i64) -> Option<i64> {
    t.checked_sub(d).filter(|&r| representable(r))
}

#[cfg(test)]
mod tests {
    use super::{checked_after, checked_before, parse_iso8601, representable};

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_iso8601("P90D"), Some(90 * 86_400));
        assert_eq!(parse_iso8601("P2M"), Some(60 * 86_400));
        assert_eq!(parse_iso8601("P1Y10D"), Some(375 * 86_400));
        assert_eq!(parse_iso8601("PT48H"), Some(48 * 3_600));
        assert_eq!(parse_iso8601("P1DT2H3M4S"), Some(86_400 + 7_384));
        assert_eq!(parse_iso8601("P2W"), Some(14 * 86_400));
        for bad in ["", "P", "90D", "PT", "P1H", "PxD", "P1D2"] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
        // Too large for i64 seconds: refused, never wrapped.
        assert_eq!(parse_iso8601("P99999999999999999Y"), None);
        assert_eq!(parse_iso8601("P9223372036854775807D"), None);
    }

    #[test]
    fn instant_arithmetic_is_checked() {
        let now = 1_800_000_000;
        let huge = parse_iso8601("P9999999Y").unwrap();
        assert_eq!(checked_after(now, huge), None);
        assert_eq!(checked_after(i64::MAX, 1), None);
        assert_eq!(checked_before(i64::MIN, 1), None);
        assert_eq!(checked_before(now, huge), None);
        assert_eq!(checked_after(now, 86_400), Some(now + 86_400));
        assert!(representable(253_402_300_799));
        assert!(!representable(253_402_300_800));
    }
}
