//! Model test: random operation sequences (including reopen, flush, compaction, key
//! rotation and snapshots) run against the engine and a `BTreeMap`; they must agree.

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;

use common::*;
use proptest::prelude::*;
use storage::{Direction, Durability, Engine, Options, Snapshot, WriteBatch};

#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    Get(Vec<u8>),
    Scan(Option<Vec<u8>>, Option<Vec<u8>>, bool, bool),
    TakeSnapshot,
    CheckSnapshots,
    Flush,
    Compact,
    Rotate,
    Reopen,
}

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    // Small alphabet and short keys: many overwrites, shared prefixes, empty key.
    proptest::collection::vec(
        prop_oneof![Just(0u8), Just(1u8), Just(b'a'), Just(0xff)],
        0..4,
    )
}

fn value_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => proptest::collection::vec(any::<u8>(), 600..3000),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (key_strategy(), value_strategy()).prop_map(|(k, v)| Op::Put(k, v)),
        10 => key_strategy().prop_map(Op::Delete),
        6 => proptest::collection::vec((key_strategy(), proptest::option::of(value_strategy())), 0..6).prop_map(Op::Batch),
        15 => key_strategy().prop_map(Op::Get),
        6 => (proptest::option::of(key_strategy()), proptest::option::of(key_strategy()), any::<bool>(), any::<bool>())
            .prop_map(|(a, b, incl, rev)| Op::Scan(a, b, incl, rev)),
        2 => Just(Op::TakeSnapshot),
        3 => Just(Op::CheckSnapshots),
        3 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Rotate),
        3 => Just(Op::Reopen),
    ]
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn opts() -> Options {
    Options {
        memtable_bytes: 4 << 10,
        block_size: 256,
        block_cache_bytes: 64 << 10,
        ..Options::default()
    }
}

fn model_scan(
    m: &BTreeMap<Vec<u8>, Vec<u8>>,
    lo: &Bound<Vec<u8>>,
    hi: &Bound<Vec<u8>>,
    rev: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) =
        (lo, hi)
        && (a > b
            || (a == b && (matches!(lo, Bound::Excluded(_)) || matches!(hi, Bound::Excluded(_)))))
    {
        return Vec::new();
    }
    let mut v: Vec<_> = m
        .range((lo.clone(), hi.clone()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if rev {
        v.reverse();
    }
    v
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let d = tempfile::tempdir().unwrap();
    let mut db = Engine::open(d.path(), root(), opts()).unwrap();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut snaps: Vec<(Snapshot, Model)> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Put(k, v) => {
                db.put(&k, &v, Durability::Buffered).unwrap();
                model.insert(k, v);
            }
            Op::Delete(k) => {
                db.delete(&k, Durability::Sync).unwrap();
                model.remove(&k);
            }
            Op::Batch(items) => {
                let mut b = WriteBatch::new();
                for (k, v) in &items {
                    match v {
                        Some(v) => {
                            b.put(k, v);
                            model.insert(k.clone(), v.clone());
                        }
                        None => {
                            b.delete(k);
                            model.remove(k);
                        }
                    }
                }
                db.write(b, Durability::Buffered).unwrap();
            }
            Op::Get(k) => {
                prop_assert_eq!(
                    db.get(&k).unwrap(),
                    model.get(&k).cloned(),
                    "step {} get {:?}",
                    step,
                    k
                );
            }
            Op::Scan(a, b, incl, rev) => {
                let lo = a.map_or(Bound::Unbounded, Bound::Included);
                let hi = b.map_or(Bound::Unbounded, |b| {
                    if incl {
                        Bound::Included(b)
                    } else {
                        Bound::Excluded(b)
                    }
                });
                let expect = model_scan(&model, &lo, &hi, rev);
                let dir = if rev {
                    Direction::Reverse
                } else {
                    Direction::Forward
                };
                let got: Vec<_> = db
                    .iter((lo.clone(), hi.clone()), dir)
                    .unwrap()
                    .map(|r| r.unwrap())
                    .collect();
                prop_assert_eq!(
                    got,
                    expect,
                    "step {} scan {:?}..{:?} rev={}",
                    step,
                    lo,
                    hi,
                    rev
                );
            }
            Op::TakeSnapshot => {
                if snaps.len() >= 3 {
                    snaps.remove(0);
                }
                snaps.push((db.snapshot(), model.clone()));
            }
            Op::CheckSnapshots => {
                for (s, m) in &snaps {
                    let got: Vec<_> = s
                        .iter(.., Direction::Forward)
                        .unwrap()
                        .map(|r| r.unwrap())
                        .collect();
                    let expect: Vec<_> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    prop_assert_eq!(got, expect, "step {} snapshot scan", step);
                    for k in m.keys().take(5) {
                        prop_assert_eq!(s.get(k).unwrap(), m.get(k).cloned());
                    }
                }
            }
            Op::Flush => db.flush().unwrap(),
            Op::Compact => db.compact().unwrap(),
            Op::Rotate => {
                db.rotate_data_key().unwrap();
            }
            Op::Reopen => {
                snaps.clear();
                db.close().unwrap();
                db = Engine::open(d.path(), root(), opts()).unwrap();
            }
        }
    }
    // Final full comparison, then once more after a reopen.
    let expect: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    prop_assert_eq!(collect(&db, Direction::Forward), expect.clone());
    snaps.clear();
    db.close().unwrap();
    let db = Engine::open(d.path(), root(), opts()).unwrap();
    prop_assert_eq!(collect(&db, Direction::Forward), expect.clone());
    let mut rev = expect;
    rev.reverse();
    prop_assert_eq!(collect(&db, Direction::Reverse), rev);
    Ok(())
}

fn cases() -> u32 {
    std::env::var("STORAGE_MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_btreemap_model(ops in proptest::collection::vec(op_strategy(), 1..250)) {
        run(ops)?;
    }
}
