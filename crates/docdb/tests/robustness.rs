//! Random filters, updates, projections and pipelines never panic.
//! `DOCDB_FUZZ_CASES=20000 cargo test -p docdb --test robustness` for a longer run.

use bson::{Bson, Document};
use docdb::aggregate::Pipeline;
use docdb::matcher::Matcher;
use docdb::projection::Projection;
use docdb::spill::SpillConfig;
use docdb::update::{ApplyContext, Update};
use proptest::prelude::*;

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("a.b".to_string()),
        Just("a.0".to_string()),
        Just("_id".to_string()),
        Just("$eq".to_string()),
        Just("$gt".to_string()),
        Just("$in".to_string()),
        Just("$and".to_string()),
        Just("$or".to_string()),
        Just("$not".to_string()),
        Just("$elemMatch".to_string()),
        Just("$size".to_string()),
        Just("$exists".to_string()),
        Just("$type".to_string()),
        Just("$set".to_string()),
        Just("$inc".to_string()),
        Just("$push".to_string()),
        Just("$each".to_string()),
        Just("$slice".to_string()),
        Just("$pull".to_string()),
        Just("$unset".to_string()),
        Just("$rename".to_string()),
        Just("a.$[]".to_string()),
        Just("a.$".to_string()),
        Just("$sum".to_string()),
        Just("$add".to_string()),
        Just("$match".to_string()),
        Just("$group".to_string()),
        Just("$project".to_string()),
        Just("$unwind".to_string()),
        Just("$sort".to_string()),
        Just("$regex".to_string()),
        Just("$mod".to_string()),
    ]
}

fn value() -> impl Strategy<Value = Bson> {
    let leaf = prop_oneof![
        Just(Bson::Null),
        any::<i32>().prop_map(Bson::Int32),
        (-3i32..3).prop_map(Bson::Int32),
        any::<i64>().prop_map(Bson::Int64),
        any::<f64>().prop_map(Bson::Double),
        any::<bool>().prop_map(Bson::Boolean),
        "[a-c$.]{0,3}".prop_map(Bson::String),
        Just(Bson::String("$a".into())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Bson::Array),
            prop::collection::vec((key(), inner), 0..4)
                .prop_map(|kv| Bson::Document(kv.into_iter().collect())),
        ]
    })
}

fn doc() -> impl Strategy<Value = Document> {
    prop::collection::vec((key(), value()), 0..4).prop_map(|kv| kv.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("DOCDB_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(600)))]
    #[test]
    fn no_panics(filter in doc(), update in doc(), target in doc(), proj in doc(), stage in doc()) {
        if let Ok(m) = Matcher::new(&filter) {
            let _ = m.matches(&target);
        }
        if let Ok(u) = Update::parse(&update, &[]) {
            let _ = u.apply(&target, &ApplyContext { is_insert: false, query: Some(&filter) });
            let _ = u.apply(&target, &ApplyContext { is_insert: true, query: None });
        }
        if let Ok(p) = Projection::new(&proj) {
            let _ = p.with_query(&filter).apply(&target);
        }
        if let Ok(p) = Pipeline::parse(&[stage]) {
            let input: docdb::spill::DocIter = Box::new(vec![Ok(target.clone()), Ok(filter.clone())].into_iter());
            let _ = p.run(input, &SpillConfig::default()).take(10).collect::<Vec<_>>();
        }
        let _ = docdb::update::upsert_seed(&filter);
    }
}
