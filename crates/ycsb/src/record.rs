//! Records: YCSB keys and ~1 KiB documents.
//!
//! Record `i` has key `user<fnv1a64(i)>` (YCSB's hashed insert order, so consecutive
//! records land far apart in the `_id` / primary-key order), `field_count` string fields
//! `field0..` of `field_len` random printable ASCII characters (YCSB fills fields with
//! random bytes mapped to printable ASCII), and an integer `rank = i`, the secondary
//! key of the range query. Since `rank` follows insert order and `_id` does not, a rank
//! range touches documents scattered over the primary key space, as a secondary-index
//! range does in practice.

use rand::Rng;

use crate::zipf::fnv1a64;

/// The shape of the documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub field_count: usize,
    pub field_len: usize,
}

impl Shape {
    /// YCSB's default: 10 fields of 100 bytes (≈1 KiB of values).
    pub const DEFAULT: Shape = Shape {
        field_count: 10,
        field_len: 100,
    };

    /// Ten fields whose values add up to about `value_size` bytes.
    pub fn for_value_size(value_size: usize) -> Shape {
        Shape {
            field_count: 10,
            field_len: (value_size / 10).max(1),
        }
    }
}

/// The key of record number `n`.
pub fn key(n: u64) -> String {
    format!("user{}", fnv1a64(n))
}

/// The name of field number `i` (`field0`, `field1`, ...).
pub fn field_name(i: usize) -> String {
    format!("field{i}")
}

/// `len` random printable ASCII characters (`' '..='~'`).
pub fn random_value<R: Rng + ?Sized>(rng: &mut R, len: usize) -> String {
    (0..len)
        .map(|_| char::from(rng.random_range(b' '..=b'~')))
        .collect()
}

/// One record, independent of how a target stores it.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: String,
    pub rank: i64,
    pub fields: Vec<String>,
}

impl Record {
    /// Record number `n` with fresh random field values.
    pub fn generate<R: Rng + ?Sized>(n: u64, shape: Shape, rng: &mut R) -> Record {
        Record {
            key: key(n),
            rank: n as i64,
            fields: (0..shape.field_count)
                .map(|_| random_value(rng, shape.field_len))
                .collect(),
        }
    }

    /// The MongoDB document: `{_id, rank, field0.., fieldN}`.
    pub fn to_bson(&self) -> bson::Document {
        let mut d = bson::Document::new();
        d.insert("_id", self.key.clone());
        d.insert("rank", self.rank);
        for (i, v) in self.fields.iter().enumerate() {
            d.insert(field_name(i), v.clone());
        }
        d
    }

    /// The PostgreSQL JSONB document: the same fields, `_id` in the `id` column only.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::with_capacity(self.fields.len() + 1);
        m.insert("rank".into(), serde_json::Value::from(self.rank));
        for (i, v) in self.fields.iter().enumerate() {
            m.insert(field_name(i), serde_json::Value::from(v.clone()));
        }
        serde_json::Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn default_record_is_about_one_kib_in_bson_and_json() {
        let mut rng = SmallRng::seed_from_u64(5);
        let r = Record::generate(42, Shape::for_value_size(1024), &mut rng);
        assert_eq!(r.key, key(42));
        assert_eq!(r.rank, 42);
        let bson_len = r.to_bson().to_vec().expect("encode").len();
        assert!((1024..1300).contains(&bson_len), "bson {bson_len} bytes");
        let json_len = serde_json::to_vec(&r.to_json()).expect("encode").len();
        assert!((1024..1300).contains(&json_len), "json {json_len} bytes");
    }

    #[test]
    fn values_are_printable_ascii_and_keys_are_distinct() {
        let mut rng = SmallRng::seed_from_u64(9);
        let v = random_value(&mut rng, 1000);
        assert_eq!(v.len(), 1000);
        assert!(v.bytes().all(|b| (b' '..=b'~').contains(&b)));
        let keys: std::collections::HashSet<String> = (0..10_000).map(key).collect();
        assert_eq!(keys.len(), 10_000);
    }
}
