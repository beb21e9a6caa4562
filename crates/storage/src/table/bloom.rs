//! Bloom filter over user keys, ~10 bits per key, 7 probes (about 1% false positives), so
//! point reads for absent keys skip decrypting data blocks.
//!
//! Layout: `k:u8 bits[..]`. The hash is fixed here (FNV-1a 64 + a finalizer) so filters stay
//! valid across Rust versions.

use crate::codec::{DResult, DecodeError};

pub(crate) const BITS_PER_KEY: usize = 10;
const PROBES: u8 = 7;

pub(crate) fn hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // murmur3 fmix64
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

pub(crate) struct Bloom {
    k: u8,
    bits: Vec<u8>,
}

impl Bloom {
    /// Builds a filter from key hashes.
    pub(crate) fn build(hashes: &[u64]) -> Vec<u8> {
        let nbits = (hashes.len() * BITS_PER_KEY).max(64);
        let nbytes = nbits.div_ceil(8);
        let nbits = nbytes * 8;
        let mut out = vec![0u8; nbytes + 1];
        out[0] = PROBES;
        for &h in hashes {
            let delta = h.rotate_left(31) | 1;
            let mut x = h;
            for _ in 0..PROBES {
                let bit = (x % nbits as u64) as usize;
                out[1 + bit / 8] |= 1 << (bit % 8);
                x = x.wrapping_add(delta);
            }
        }
        out
    }

    pub(crate) fn decode(buf: Vec<u8>) -> DResult<Bloom> {
        if buf.len() < 2 || buf[0] == 0 || buf[0] > 30 {
            return Err(DecodeError("malformed bloom filter"));
        }
        Ok(Bloom {
            k: buf[0],
            bits: buf[1..].to_vec(),
        })
    }

    pub(crate) fn may_contain(&self, h: u64) -> bool {
        let nbits = (self.bits.len() * 8) as u64;
        let delta = h.rotate_left(31) | 1;
        let mut x = h;
        for _ in 0..self.k {
            let bit = (x % nbits) as usize;
            if self.bits[bit / 8] & (1 << (bit % 8)) == 0 {
                return false;
            }
            x = x.wrapping_add(delta);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bloom_has_no_false_negatives_and_few_false_positives() {
        let keys: Vec<Vec<u8>> = (0..10_000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let hashes: Vec<u64> = keys.iter().map(|k| hash(k)).collect();
        let b = Bloom::decode(Bloom::build(&hashes)).expect("decode");
        assert!(hashes.iter().all(|&h| b.may_contain(h)));
        let fp = (10_000..110_000u32)
            .filter(|i| b.may_contain(hash(&i.to_be_bytes())))
            .count();
        assert!(fp < 2_500, "false positive rate too high: {fp}/100000");
    }
}
