//! `maxTimeMS`: parsed once for every command, as MongoDB's command layer does, into the
//! [`docdb::Interrupt`] the handler passes to the engine.
//!
//! Validation follows mongod: a number (int, long, or a whole double or decimal) in
//! `[0, 2^31 - 1]`, where 0 means no limit; anything else is `BadValue` (2) with mongod's
//! wording. The clock starts here, when the command is admitted. The engine's scans and
//! blocking stages poll the interrupt and fail with `MaxTimeMSExpired` (50); a cursor
//! keeps what is left of the budget for its `getMore`s ([`crate::cursor::Cursor`]).

use bson::{Bson, Document};
use docdb::Interrupt;

use crate::error::{CmdResult, CommandError};

/// The command field.
pub(crate) const FIELD: &str = "maxTimeMS";

/// The limit `body` asks for, in milliseconds (0 = none), checked as mongod does.
pub(crate) fn parse_ms(body: &Document) -> CmdResult<u64> {
    let Some(v) = body.get(FIELD) else {
        return Ok(0);
    };
    let n: f64 = match v {
        Bson::Int32(i) => f64::from(*i),
        Bson::Int64(i) => *i as f64,
        Bson::Double(f) => *f,
        Bson::Decimal128(d) => d
            .to_string()
            .parse::<f64>()
            .map_err(|_| CommandError::bad_value("maxTimeMS must be a number"))?,
        _ => return Err(CommandError::bad_value("maxTimeMS must be a number")),
    };
    if !n.is_finite() || n.fract() != 0.0 {
        return Err(CommandError::bad_value("maxTimeMS has non-integral value"));
    }
    if n < 0.0 || n > f64::from(i32::MAX) {
        return Err(CommandError::bad_value(format!(
            "{} value for maxTimeMS is out of range",
            n as i64
        )));
    }
    Ok(n as u64)
}

/// The interrupt of a command: armed with its `maxTimeMS` when it has one.
pub(crate) fn interrupt(body: &Document) -> CmdResult<Interrupt> {
    Ok(Interrupt::from_max_time_ms(parse_ms(body)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn code_of(body: Document) -> Option<i32> {
        parse_ms(&body).err().map(|e| e.code)
    }

    #[test]
    fn accepted_values() {
        assert_eq!(parse_ms(&doc! {}).unwrap(), 0);
        assert_eq!(parse_ms(&doc! {"maxTimeMS": 0}).unwrap(), 0);
        assert_eq!(parse_ms(&doc! {"maxTimeMS": 50}).unwrap(), 50);
        assert_eq!(parse_ms(&doc! {"maxTimeMS": 50i64}).unwrap(), 50);
        assert_eq!(parse_ms(&doc! {"maxTimeMS": 50.0}).unwrap(), 50);
        assert_eq!(
            parse_ms(&doc! {"maxTimeMS": i32::MAX}).unwrap(),
            i32::MAX as u64
        );
    }

    #[test]
    fn refused_values_are_bad_value() {
        assert_eq!(code_of(doc! {"maxTimeMS": -1}), Some(2));
        assert_eq!(code_of(doc! {"maxTimeMS": "x"}), Some(2));
        assert_eq!(code_of(doc! {"maxTimeMS": 1i64 << 31}), Some(2));
        assert_eq!(code_of(doc! {"maxTimeMS": 1.5}), Some(2));
        assert_eq!(code_of(doc! {"maxTimeMS": Bson::Null}), Some(2));
        let e = parse_ms(&doc! {"maxTimeMS": -1}).unwrap_err();
        assert_eq!(e.errmsg, "-1 value for maxTimeMS is out of range");
    }
}
