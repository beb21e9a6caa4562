//! Readers for a command's optional arguments, with MongoDB's type rules and messages:
//! any numeric type where an integer is expected, numbers as booleans.

use bson::{Bson, Document};

use crate::error::{CmdResult, CommandError};

/// Reads an optional non-negative integer argument (any numeric BSON type).
pub(crate) fn opt_i64(body: &Document, key: &str) -> CmdResult<Option<i64>> {
    match body.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::Int32(i)) => Ok(Some(*i as i64)),
        Some(Bson::Int64(i)) => Ok(Some(*i)),
        Some(Bson::Double(f)) if f.fract() == 0.0 => Ok(Some(*f as i64)),
        Some(other) => Err(CommandError::type_mismatch(format!(
            "Field '{key}' should be an integer, but found: {}",
            docdb::error::type_name(other)
        ))),
    }
}

/// Reads an optional document argument.
pub(crate) fn opt_doc(body: &Document, key: &str) -> CmdResult<Option<Document>> {
    match body.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::Document(d)) => Ok(Some(d.clone())),
        Some(other) => Err(CommandError::type_mismatch(format!(
            "BSON field '{key}' is the wrong type '{}', expected type 'object'",
            docdb::error::type_name(other)
        ))),
    }
}

/// Reads an optional boolean argument (numbers count as booleans, as in MongoDB).
pub(crate) fn opt_bool(body: &Document, key: &str) -> CmdResult<Option<bool>> {
    match body.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::Boolean(b)) => Ok(Some(*b)),
        Some(Bson::Int32(i)) => Ok(Some(*i != 0)),
        Some(Bson::Int64(i)) => Ok(Some(*i != 0)),
        Some(Bson::Double(f)) => Ok(Some(*f != 0.0)),
        Some(other) => Err(CommandError::type_mismatch(format!(
            "BSON field '{key}' is the wrong type '{}', expected type 'bool'",
            docdb::error::type_name(other)
        ))),
    }
}
