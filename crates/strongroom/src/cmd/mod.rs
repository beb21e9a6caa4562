//! One module per subcommand.

pub mod audit;
pub mod backup;
pub mod cluster;
pub mod node;
pub mod up;

/// Parses durations written like `500ms`, `1s`, `5m`, `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration_or_zero(text)?;
    if d.is_zero() {
        return Err("a duration must be positive".into());
    }
    Ok(d)
}

/// Like [`parse_duration`], but zero (`0`, `0s`, `0ms`, ...) is allowed; each option that
/// takes one says what zero means.
pub fn parse_duration_or_zero(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 1s, 5m or 500ms"))?;
    Ok(match unit {
        "us" | "µs" => std::time::Duration::from_micros(n),
        "ms" => std::time::Duration::from_millis(n),
        "" | "s" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n * 60),
        "h" => std::time::Duration::from_secs(n * 3600),
        _ => {
            return Err(format!(
                "'{text}' has an unknown unit (use us, ms, s, m or h)"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn durations_parse() {
        assert_eq!(super::parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(
            super::parse_duration("500ms"),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(super::parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(super::parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(super::parse_duration("0s").is_err());
        assert!(super::parse_duration("1d").is_err());
        assert!(super::parse_duration("s").is_err());
        assert_eq!(
            super::parse_duration("150us"),
            Ok(Duration::from_micros(150))
        );
        for zero in ["0", "0s", "0ms", "0us", "0µs"] {
            assert_eq!(
                super::parse_duration_or_zero(zero),
                Ok(Duration::ZERO),
                "{zero}"
            );
        }
        assert_eq!(
            super::parse_duration_or_zero("150us"),
            Ok(Duration::from_micros(150))
        );
        assert!(super::parse_duration_or_zero("0d").is_err());
    }
}
