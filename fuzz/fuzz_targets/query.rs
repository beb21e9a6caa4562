//! The query language against a small collection: the input is one BSON document whose
//! `filter`, `projection`, `sort`, `pipeline`, `update`, `arrayFilters` and `distinct`
//! fields are handed to the engine as a client would send them. Every outcome must be a
//! result or a typed error, and after any update the collection must still read back
//! whole (every stored document decodes, and a scan of the secondary index finds
//! as many documents as the collection holds).
#![no_main]

use bson::{Bson, Document};
use docdb::{AggregateOptions, FindOptions, UpdateDoc, UpdateOp};
use libfuzzer_sys::fuzz_target;

/// Cursors are drained at most this far: a pipeline may legitimately produce many.
const DRAIN: usize = 200;

fn doc_field(d: &Document, key: &str) -> Option<Document> {
    d.get_document(key).ok().cloned()
}

fn drain(cursor: docdb::Result<docdb::Cursor>) {
    if let Ok(cursor) = cursor {
        for item in cursor.take(DRAIN) {
            if item.is_err() {
                break;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = strongroom_fuzz::document(data) else {
        return;
    };
    let db = strongroom_fuzz::sample_db();
    let filter = doc_field(&input, "filter").unwrap_or_default();

    drain(db.find(
        "db",
        "c",
        FindOptions {
            filter: filter.clone(),
            sort: doc_field(&input, "sort"),
            projection: doc_field(&input, "projection"),
            limit: input.get_i64("limit").unwrap_or(0).clamp(0, 1000) as u64,
            ..Default::default()
        },
    ));

    if let Ok(stages) = input.get_array("pipeline") {
        let pipeline: Option<Vec<Document>> = stages
            .iter()
            .map(|s| s.as_document().cloned())
            .collect();
        if let Some(pipeline) = pipeline {
            drain(db.aggregate("db", "c", &pipeline, AggregateOptions::default()));
        }
    }

    if let Ok(key) = input.get_str("distinct") {
        let _ = db.distinct("db", "c", key, &filter);
    }

    if let Some(update) = input.get("update") {
        if let Ok(u) = UpdateDoc::from_bson(update) {
            let array_filters = input
                .get_array("arrayFilters")
                .map(|a| a.iter().filter_map(Bson::as_document).cloned().collect())
                .unwrap_or_default();
            let op = UpdateOp {
                q: filter,
                u,
                multi: input.get_bool("multi").unwrap_or(true),
                upsert: input.get_bool("upsert").unwrap_or(false),
                array_filters,
                hint: None,
            };
            let _ = db.update("db", "c", vec![op], true);
            // Whatever the update did, what is stored reads back.
            let all: Vec<Document> = db
                .find("db", "c", FindOptions::default())
                .expect("find after update")
                .map(|d| d.expect("a stored document decodes"))
                .collect();
            // The secondary index (not sparse) still lists every document.
            let by_index = db
                .find(
                    "db",
                    "c",
                    FindOptions {
                        hint: Some(Bson::String("a_1".into())),
                        ..Default::default()
                    },
                )
                .expect("find through the index after update")
                .map(|d| d.expect("an indexed document decodes"))
                .count() as u64;
            assert_eq!(all.len() as u64, by_index);
        }
    }
});
