//! Data blocks: the unit that is sealed, cached and searched.
//!
//! Plaintext layout:
//! ```text
//! entry*  offsets:u32*  count:u32
//! entry := key:bytes seq:u64 kind:u8 (1 put / 0 delete) value:bytes
//! ```
//! Entries are sorted by (key asc, seq desc). Offsets make every entry addressable, so a
//! block can be binary-searched and walked in both directions.

pub(crate) mod builder;

use std::cmp::Ordering;

use crate::codec::{DResult, DecodeError, Reader};

pub(crate) use builder::BlockBuilder;

/// A decoded (plaintext) block.
#[derive(Debug)]
pub(crate) struct Block {
    data: Vec<u8>,
    offsets: Vec<u32>,
}

/// A borrowed entry of a block.
pub(crate) struct RawEntry<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) seq: u64,
    pub(crate) value: Option<&'a [u8]>,
}

impl Block {
    /// Validates the trailer and offsets of a decrypted block.
    pub(crate) fn decode(mut data: Vec<u8>) -> DResult<Block> {
        if data.len() < 4 {
            return Err(DecodeError("block too short"));
        }
        let n = data.len();
        let count =
            u32::from_le_bytes([data[n - 4], data[n - 3], data[n - 2], data[n - 1]]) as usize;
        let off_bytes = count.checked_mul(4).ok_or(DecodeError("bad entry count"))?;
        if off_bytes > n - 4 {
            return Err(DecodeError("entry count exceeds block"));
        }
        let body_len = n - 4 - off_bytes;
        let mut offsets = Vec::with_capacity(count);
        let mut prev = 0usize;
        for i in 0..count {
            let p = body_len + i * 4;
            let o = u32::from_le_bytes([data[p], data[p + 1], data[p + 2], data[p + 3]]);
            if (o as usize) >= body_len.max(1) || (i > 0 && (o as usize) <= prev) {
                return Err(DecodeError("entry offset out of order or out of range"));
            }
            prev = o as usize;
            offsets.push(o);
        }
        data.truncate(body_len);
        let b = Block { data, offsets };
        // Validate every entry once so later accesses cannot fail.
        for i in 0..count {
            b.try_entry(i)?;
        }
        Ok(b)
    }

    /// A block this process just built ([`BlockBuilder::finish_owned`]): its entries were
    /// encoded here, so unlike [`decode`](Self::decode) nothing needs checking.
    pub(crate) fn built(data: Vec<u8>, offsets: Vec<u32>) -> Block {
        Block { data, offsets }
    }

    pub(crate) fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Bytes held in memory (for cache accounting).
    pub(crate) fn mem_size(&self) -> usize {
        self.data.len() + self.offsets.len() * 4 + 64
    }

    fn try_entry(&self, i: usize) -> DResult<RawEntry<'_>> {
        let start = self.offsets[i] as usize;
        let end = self
            .offsets
            .get(i + 1)
            .map_or(self.data.len(), |&o| o as usize);
        let mut r = Reader::new(&self.data[start..end]);
        let key = r.bytes()?;
        let seq = r.u64()?;
        let kind = r.u8()?;
        let v = r.bytes()?;
        let value = match kind {
            1 => Some(v),
            0 => None,
            _ => return Err(DecodeError("unknown entry kind")),
        };
        if !r.is_empty() {
            return Err(DecodeError("trailing bytes in entry"));
        }
        Ok(RawEntry { key, seq, value })
    }

    /// Key of entry `i` (cheaper than [`entry`](Self::entry) for binary search).
    pub(crate) fn key_at(&self, i: usize) -> &[u8] {
        let start = self.offsets[i] as usize;
        let d = &self.data[start..];
        if d.len() < 4 {
            return &[];
        }
        let n = u32::from_le_bytes([d[0], d[1], d[2], d[3]]) as usize;
        d.get(4..4 + n).unwrap_or_default()
    }

    /// Entry `i`; validated by [`Block::decode`], so this cannot fail for i < len.
    pub(crate) fn entry(&self, i: usize) -> RawEntry<'_> {
        match self.try_entry(i) {
            Ok(e) => e,
            // decode() validated every entry; reaching this would be a logic error, and we
            // still return an empty, harmless entry rather than panic.
            Err(_) => RawEntry {
                key: &[],
                seq: 0,
                value: None,
            },
        }
    }

    /// Index of the first entry >= (key, seq) in internal order.
    pub(crate) fn seek(&self, key: &[u8], seq: u64) -> usize {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let k = self.key_at(mid);
            let ord = match k.cmp(key) {
                Ordering::Equal => seq.cmp(&self.entry(mid).seq),
                o => o,
            };
            if ord == Ordering::Less {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Index of the first entry whose user key is >= `key` (or > when `exclusive`).
    pub(crate) fn seek_key(&self, key: &[u8], exclusive: bool) -> usize {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let c = self.key_at(mid).cmp(key);
            let before = if exclusive {
                c != Ordering::Greater
            } else {
                c == Ordering::Less
            };
            if before {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}
