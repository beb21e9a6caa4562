//! Encrypted temporary (spill) files.
//!
//! ```text
//! header(84, kind Temp)  frame*
//! frame := len:u32 last:u8 sealed[len]     sealed = AES-GCM(chunk) || tag,
//!          nonce/AAD index = frame number, AAD is_last = last
//! ```
//! The reader verifies every frame as it streams; the file must end with exactly one frame
//! flagged last, so truncation or an appended frame is reported as corruption. The file is
//! deleted when the reader (or an unfinished writer) is dropped.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::crypto::header::{FileCipher, HEADER_LEN, TAG_LEN};
use crate::crypto::keys::DataKey;
use crate::crypto::{CipherSuite, FileKind};
use crate::error::{Error, Result};
use crate::fs::{Fs, ReadableFile, WritableFile};

const CHUNK: usize = 64 << 10;

pub(crate) fn temp_name(id: u64) -> String {
    format!("{id:06}.tmp")
}

/// Writes an encrypted spill file. Implements [`std::io::Write`].
pub struct TempWriter {
    fs: Arc<dyn Fs>,
    path: PathBuf,
    file: Option<Arc<dyn WritableFile>>,
    cipher: Option<FileCipher>,
    id: u64,
    buf: Vec<u8>,
    idx: u64,
    len: u64,
}

impl std::fmt::Debug for TempWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TempWriter {
    pub(crate) fn create(
        fs: Arc<dyn Fs>,
        dir: &Path,
        id: u64,
        key: &DataKey,
        suite: CipherSuite,
    ) -> Result<TempWriter> {
        let name = temp_name(id);
        let path = dir.join(&name);
        let (header, cipher) = FileCipher::create(FileKind::Temp, id, key, suite, name)?;
        let file = fs.create(&path)?;
        file.append(&header)?;
        Ok(TempWriter {
            fs,
            path,
            file: Some(file),
            cipher: Some(cipher),
            id,
            buf: Vec::with_capacity(CHUNK + TAG_LEN + 5),
            idx: 0,
            len: 0,
        })
    }

    fn seal_chunk(&mut self, last: bool) -> Result<()> {
        let (Some(file), Some(cipher)) = (&self.file, &self.cipher) else {
            return Err(Error::Closed);
        };
        let mut frame = Vec::with_capacity(self.buf.len() + TAG_LEN + 5);
        frame.extend_from_slice(&[0u8; 5]);
        frame.extend_from_slice(&self.buf);
        cipher.seal(self.idx, last, &mut frame, 5)?;
        let len = (frame.len() - 5) as u32;
        frame[..4].copy_from_slice(&len.to_le_bytes());
        frame[4] = last as u8;
        file.append(&frame)?;
        self.idx += 1;
        self.buf.clear();
        Ok(())
    }

    /// Plaintext bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Seals the final chunk and returns a reader that streams the data back.
    pub fn finish(mut self) -> Result<TempReader> {
        self.seal_chunk(true)?;
        let name = temp_name(self.id);
        let file = self.fs.open(&self.path)?;
        let size = file.len()?;
        let cipher = self.cipher.take().ok_or(Error::Closed)?;
        self.file = None;
        Ok(TempReader {
            fs: self.fs.clone(),
            path: std::mem::take(&mut self.path),
            name,
            file,
            cipher,
            pos: HEADER_LEN as u64,
            size,
            idx: 0,
            chunk: Vec::new(),
            chunk_pos: 0,
            ended: false,
        })
    }
}

impl Write for TempWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let n = (CHUNK - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.buf.len() == CHUNK {
                self.seal_chunk(false).map_err(io::Error::other)?;
            }
        }
        self.len += data.len() as u64;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TempWriter {
    fn drop(&mut self) {
        if self.file.is_some() || self.cipher.is_some() {
            let _ = self.fs.remove(&self.path);
        }
    }
}

/// Streams a finished temp file back, authenticating every chunk. Implements
/// [`std::io::Read`]; corruption surfaces as an `InvalidData` I/O error wrapping
/// [`Error::Corruption`]. Deletes the file on drop.
pub struct TempReader {
    fs: Arc<dyn Fs>,
    path: PathBuf,
    name: String,
    file: Arc<dyn ReadableFile>,
    cipher: FileCipher,
    pos: u64,
    size: u64,
    idx: u64,
    chunk: Vec<u8>,
    chunk_pos: usize,
    ended: bool,
}

impl std::fmt::Debug for TempReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempReader")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TempReader {
    /// Path of the underlying file (for tests and diagnostics).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn next_chunk(&mut self) -> Result<()> {
        let bad = |d: &str, idx: u64| Error::corruption(&self.name, Some(idx), d.to_string());
        if self.pos + 5 > self.size {
            return Err(bad("file ends before its last chunk (truncated)", self.idx));
        }
        let truncated = |e: io::Error, idx: u64| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::corruption(
                    &self.name,
                    Some(idx),
                    "file is shorter than written (truncated)",
                )
            } else {
                Error::Io(e)
            }
        };
        let mut h = [0u8; 5];
        self.file
            .read_at(&mut h, self.pos)
            .map_err(|e| truncated(e, self.idx))?;
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let last = h[4] == 1;
        if h[4] > 1
            || !(TAG_LEN..=CHUNK + TAG_LEN).contains(&len)
            || self.pos + 5 + len as u64 > self.size
        {
            return Err(bad("chunk length out of range", self.idx));
        }
        let mut buf = vec![0u8; len];
        self.file
            .read_at(&mut buf, self.pos + 5)
            .map_err(|e| truncated(e, self.idx))?;
        let n = self.cipher.open_block(self.idx, last, &mut buf)?;
        buf.truncate(n);
        self.pos += 5 + len as u64;
        self.idx += 1;
        if last {
            if self.pos != self.size {
                return Err(bad("data after the last chunk", self.idx));
            }
            self.ended = true;
        }
        self.chunk = buf;
        self.chunk_pos = 0;
        Ok(())
    }
}

impl Read for TempReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.chunk_pos < self.chunk.len() {
                let n = (self.chunk.len() - self.chunk_pos).min(out.len());
                out[..n].copy_from_slice(&self.chunk[self.chunk_pos..self.chunk_pos + n]);
                self.chunk_pos += n;
                return Ok(n);
            }
            if self.ended || out.is_empty() {
                return Ok(0);
            }
            self.next_chunk().map_err(|e| match e {
                Error::Io(io) => io,
                other => io::Error::new(io::ErrorKind::InvalidData, other),
            })?;
        }
    }
}

impl Drop for TempReader {
    fn drop(&mut self) {
        if let Err(e) = self.fs.remove(&self.path) {
            tracing::warn!(file = %self.name, error = %e, "could not delete temp file");
        }
    }
}
