//! Builds the plaintext of one data block.

use super::Block;
use crate::codec::PutExt;

#[derive(Default)]
pub(crate) struct BlockBuilder {
    data: Vec<u8>,
    offsets: Vec<u32>,
}

impl BlockBuilder {
    pub(crate) fn add(&mut self, key: &[u8], seq: u64, value: Option<&[u8]>) {
        self.offsets.push(self.data.len() as u32);
        self.data.put_bytes(key);
        self.data.put_u64(seq);
        match value {
            Some(v) => {
                self.data.put_u8(1);
                self.data.put_bytes(v);
            }
            None => {
                self.data.put_u8(0);
                self.data.put_u32(0);
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Plaintext size if finished now.
    pub(crate) fn size(&self) -> usize {
        self.data.len() + self.offsets.len() * 4 + 4
    }

    /// Finishes into `out` (appended) and resets.
    pub(crate) fn finish_into(&mut self, out: &mut Vec<u8>) {
        self.append_plaintext(out);
        self.data.clear();
        self.offsets.clear();
    }

    /// Finishes into `out` like [`finish_into`](Self::finish_into) and also returns the
    /// block, decoded already: its buffers move into it rather than being copied and
    /// parsed again, and the builder starts over with fresh ones of the same capacity.
    pub(crate) fn finish_owned(&mut self, out: &mut Vec<u8>) -> Block {
        self.append_plaintext(out);
        let (data_cap, offsets_cap) = (self.data.capacity(), self.offsets.capacity());
        let data = std::mem::replace(&mut self.data, Vec::with_capacity(data_cap));
        let offsets = std::mem::replace(&mut self.offsets, Vec::with_capacity(offsets_cap));
        Block::built(data, offsets)
    }

    fn append_plaintext(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.data);
        for o in &self.offsets {
            out.put_u32(*o);
        }
        out.put_u32(self.offsets.len() as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owned_block_matches_its_plaintext_decoded_and_the_builder_starts_over() {
        let mut b = BlockBuilder::default();
        for round in 0..2u8 {
            for i in 0..50u8 {
                let value = (i % 3 != 0).then(|| vec![round ^ i; usize::from(i) * 7]);
                b.add(&[round, i], u64::from(i) + 1, value.as_deref());
            }
            let mut out = vec![0xAA; 3];
            let owned = b.finish_owned(&mut out);
            assert_eq!(out[..3], [0xAA; 3], "appends after what `out` held");
            let decoded = Block::decode(out[3..].to_vec()).expect("valid plaintext");
            assert!(b.is_empty());
            assert_eq!(owned.len(), decoded.len());
            assert_eq!(owned.mem_size(), decoded.mem_size());
            for i in 0..owned.len() {
                let (x, y) = (owned.entry(i), decoded.entry(i));
                assert_eq!((x.key, x.seq, x.value), (y.key, y.seq, y.value));
            }
        }
    }
}
