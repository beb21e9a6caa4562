//! What of a command may be logged. The slow-op log shows a command's *shape*: MongoDB's
//! own vocabulary (command parameter names, query/update/aggregation operators) stays
//! readable, and everything the client wrote — values, collection field names, unknown
//! `$`-names — is replaced, so no user data reaches a log.
//!
//! A new command's parameters join [`COMMAND_PARAMETERS`] here; until they do they show
//! as `#n`, which is safe, only less helpful.

use bson::{Bson, Document};

/// A command's shape for logs, with no user data left in it: every value becomes
/// `"###"`, and every field name that is not an operator (`$gt`) or one of MongoDB's own
/// command parameter names (`filter`, `sort`, `updates`, …) becomes `#1`, `#2`, … — a
/// collection's field names are user data too (MongoDB's `redactClientLogData` keeps
/// them; Strongroom does not).
pub fn redacted_shape(d: &Document) -> Document {
    fn key(k: &str, i: usize) -> String {
        if COMMAND_PARAMETERS.contains(&k) || OPERATORS.contains(&k) {
            k.to_string()
        } else if k.starts_with('$') {
            format!("$#{}", i + 1)
        } else {
            format!("#{}", i + 1)
        }
    }
    fn redact(v: &Bson, depth: usize) -> Bson {
        match v {
            Bson::Document(d) if depth < 8 => Bson::Document(
                d.iter()
                    .enumerate()
                    .map(|(i, (k, v))| (key(k, i), redact(v, depth + 1)))
                    .collect(),
            ),
            Bson::Array(a) if depth < 8 => {
                Bson::Array(a.iter().take(4).map(|v| redact(v, depth + 1)).collect())
            }
            _ => Bson::String("###".into()),
        }
    }
    d.iter()
        .enumerate()
        .map(|(i, (k, v))| (key(k, i), redact(v, 0)))
        .collect()
}

/// Operators and stage names (query, update, aggregation, and the driver's own `$db`
/// and friends): safe to show. Anything else starting with `$` is the client's text.
const OPERATORS: &[&str] = &[
    "$db",
    "$readPreference",
    "$clusterTime",
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$in",
    "$nin",
    "$and",
    "$or",
    "$nor",
    "$not",
    "$exists",
    "$type",
    "$regex",
    "$options",
    "$size",
    "$all",
    "$elemMatch",
    "$mod",
    "$expr",
    "$text",
    "$where",
    "$comment",
    "$set",
    "$unset",
    "$inc",
    "$mul",
    "$min",
    "$max",
    "$rename",
    "$setOnInsert",
    "$currentDate",
    "$push",
    "$each",
    "$slice",
    "$sort",
    "$position",
    "$addToSet",
    "$pull",
    "$pullAll",
    "$pop",
    "$match",
    "$project",
    "$addFields",
    "$group",
    "$limit",
    "$skip",
    "$count",
    "$unwind",
    "$sum",
    "$avg",
    "$first",
    "$last",
    "$lookup",
    "$facet",
    "$replaceRoot",
    "$sample",
    "$out",
    "$merge",
    "$add",
    "$subtract",
    "$multiply",
    "$divide",
    "$cond",
    "$ifNull",
    "$concat",
    "$toString",
    "$literal",
    "$meta",
    "$natural",
];

/// Parameter names of the commands this server implements: safe to show in logs.
const COMMAND_PARAMETERS: &[&str] = &[
    "find",
    "filter",
    "sort",
    "projection",
    "limit",
    "skip",
    "batchSize",
    "singleBatch",
    "hint",
    "comment",
    "maxTimeMS",
    "readConcern",
    "writeConcern",
    "lsid",
    "txnNumber",
    "aggregate",
    "pipeline",
    "cursor",
    "insert",
    "documents",
    "ordered",
    "update",
    "updates",
    "delete",
    "deletes",
    "findAndModify",
    "findandmodify",
    "query",
    "new",
    "upsert",
    "remove",
    "fields",
    "arrayFilters",
    "count",
    "distinct",
    "key",
    "createIndexes",
    "indexes",
    "getMore",
    "collection",
    "collation",
    "let",
    "bypassDocumentValidation",
    "q",
    "u",
    "multi",
    "allowDiskUse",
    "explain",
    "verbosity",
    "listCollections",
    "listIndexes",
    "drop",
    "dropIndexes",
    "dropDatabase",
    "nameOnly",
    "authorizedCollections",
    "create",
    "renameCollection",
    "to",
    "dropTarget",
    "killCursors",
    "cursors",
    "name",
    "unique",
    "sparse",
    "partialFilterExpression",
    "expireAfterSeconds",
    "hello",
    "isMaster",
    "ismaster",
    "ping",
    "buildInfo",
    "saslStart",
    "saslContinue",
    "mechanism",
    "payload",
    "conversationId",
    "createUser",
    "updateUser",
    "dropUser",
    "usersInfo",
    "roles",
    "pwd",
    "endSessions",
    "listDatabases",
    "serverStatus",
    "connectionStatus",
    "whatsmyuri",
    "getParameter",
    "returnKey",
    "showRecordId",
    "tailable",
    "noCursorTimeout",
];

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn redaction_keeps_shape_and_drops_every_value() {
        let body = doc! {"find": "secret_coll", "filter": {"ssn": "123-45-6789", "age": {"$gt": 40}}, "docs": [1, 2, 3, 4, 5, 6]};
        let shape = redacted_shape(&body);
        let text = shape.to_string();
        assert!(
            !text.contains("123-45-6789") && !text.contains("secret_coll") && !text.contains("40")
        );
        assert_eq!(
            shape,
            doc! {"find": "###", "filter": {"#1": "###", "#2": {"$gt": "###"}}, "#3": ["###", "###", "###", "###"]}
        );
        assert!(!text.contains("ssn"), "field names are user data: {text}");
    }
}
