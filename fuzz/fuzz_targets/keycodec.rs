//! Index-key encoding against the comparator: for every pair of values in the input
//! document, comparing their encodings byte-wise (ascending and descending) gives the
//! same answer as `order::cmp`, and `encoded_len` walks exactly one encoded value.
#![no_main]

use docdb::keycodec::{encode, encode_desc, encoded_len};
use docdb::order::cmp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(doc) = strongroom_fuzz::document(data) else {
        return;
    };
    let values: Vec<_> = doc.values().take(8).collect();
    for a in &values {
        let ea = encode(a);
        assert_eq!(encoded_len(&ea, false).expect("own encoding"), ea.len());
        let mut da = Vec::new();
        encode_desc(a, &mut da);
        assert_eq!(encoded_len(&da, true).expect("own encoding"), da.len());
        for b in &values {
            let eb = encode(b);
            assert_eq!(ea.cmp(&eb), cmp(a, b), "{a:?} vs {b:?}");
            let mut db = Vec::new();
            encode_desc(b, &mut db);
            assert_eq!(da.cmp(&db), cmp(a, b).reverse(), "{a:?} vs {b:?} (desc)");
        }
    }
});
