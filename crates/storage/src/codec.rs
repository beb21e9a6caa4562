//! Little-endian encoding helpers. Every length read from disk goes through [`Reader`],
//! which bounds-checks it, so a malformed (but authentic-looking) structure can only produce
//! an error, never a panic or an out-of-bounds slice.

/// Appends little-endian integers and length-prefixed byte strings to a buffer.
pub(crate) trait PutExt {
    fn put_u8(&mut self, v: u8);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    /// u32 length prefix followed by the bytes.
    fn put_bytes(&mut self, b: &[u8]);
}

impl PutExt for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_bytes(&mut self, b: &[u8]) {
        // Callers validate lengths (keys <= 64 KiB, values <= 32 MiB) before encoding.
        self.put_u32(b.len() as u32);
        self.extend_from_slice(b);
    }
}

/// A bounds-checked cursor over a byte slice. Errors carry a static description; the
/// caller turns them into `Error::Corruption` with the file and block it knows.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A decoding failure: what could not be read.
#[derive(Debug)]
pub(crate) struct DecodeError(pub &'static str);

pub(crate) type DResult<T> = std::result::Result<T, DecodeError>;

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }
    pub(crate) fn take(&mut self, n: usize) -> DResult<&'a [u8]> {
        if n > self.remaining() {
            return Err(DecodeError("length exceeds buffer"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub(crate) fn u8(&mut self) -> DResult<u8> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> DResult<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> DResult<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    /// A u32-length-prefixed byte string.
    pub(crate) fn bytes(&mut self) -> DResult<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}
