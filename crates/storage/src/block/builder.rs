//! Builds the plaintext of one data block.

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
        out.extend_from_slice(&self.data);
        for o in &self.offsets {
            out.put_u32(*o);
        }
        out.put_u32(self.offsets.len() as u32);
        self.data.clear();
        self.offsets.clear();
    }
}
