//! Sealed record logs: the framing shared by the WAL and the manifest.
//!
//! ```text
//! file   := header(84) frame*
//! frame  := len:u32 index:u64 check:u32 sealed[len]
//! check  := crc32(len_le || index_le)    -- cheap resync marker, not security: the
//!                                           index is authenticated through the AAD
//! sealed := AES-256-GCM(payload) || tag(16), nonce = record index,
//!           AAD = (file id, kind, record index, format version, 0)
//! ```
//! Records are sealed one by one and are self-delimiting, so a log can be streamed to a
//! replica as ciphertext. A WAL segment is preallocated ([`WritableFile::preallocate`]):
//! where its records end, the rest of the file is zeros, and a reader takes an all-zero
//! remainder for the end of the log, not for a torn tail. On recovery a frame that fails (bad check, runs past the end,
//! fails authentication) ends the log *only if no valid later record exists*: a torn tail
//! is truncated, damage in the middle is reported as corruption.

use std::path::Path;
use std::sync::Arc;

use crate::crypto::header::{FileCipher, FileKind, HEADER_LEN, TAG_LEN};
use crate::crypto::keys::{DataKey, KeyId};
use crate::crypto::suite::CipherSuite;
use crate::error::{Error, Result};
use crate::fs::{Fs, WritableFile};

const FRAME_HEADER: usize = 16;

fn frame_check(len: u32, idx: u64) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&idx.to_le_bytes());
    h.finalize()
}

/// How a new log file reserves its space (see [`WritableFile::preallocate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reserve {
    /// Nothing: every append extends the file.
    None,
    /// The first `n` bytes, allocated without being written (fast; ext4 converts a block's
    /// extent on its first write, which each fdatasync then also writes).
    Allocate(u64),
    /// The first `n` bytes, written as zeros (slow to create; no metadata per fdatasync).
    Fill(u64),
}

/// Appends sealed records to a log file.
pub(crate) struct LogWriter {
    file: Arc<dyn WritableFile>,
    cipher: FileCipher,
    next_idx: u64,
    bytes: u64,
    id: u64,
}

impl LogWriter {
    /// Creates the file, writes its header, reserves space as `reserve` says, syncs it,
    /// and syncs the directory so the file's existence is durable before anything
    /// references it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create(
        fs: &dyn Fs,
        dir: &Path,
        name: &str,
        kind: FileKind,
        id: u64,
        key: &DataKey,
        suite: CipherSuite,
        reserve: Reserve,
    ) -> Result<LogWriter> {
        let (header, cipher) = FileCipher::create(kind, id, key, suite, name.to_string())?;
        let file = fs.create(&dir.join(name))?;
        file.append(&header)?;
        let reserved = match reserve {
            Reserve::Allocate(n) if n > HEADER_LEN as u64 => file.preallocate(n),
            Reserve::Fill(n) if n > HEADER_LEN as u64 => file.fill_zeros(n),
            _ => Ok(()),
        };
        if let Err(e) = reserved {
            // Only a speed-up: appends extend the file as they would without it.
            tracing::debug!(file = name, error = %e, "could not reserve space for the log");
        }
        file.sync()?;
        fs.sync_dir(dir)?;
        Ok(LogWriter {
            file,
            cipher,
            next_idx: 0,
            bytes: HEADER_LEN as u64,
            id,
        })
    }

    /// Seals `payload` as the next record and appends its frame to `out` (not yet written).
    pub(crate) fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.encode_with(out, |o| o.extend_from_slice(payload))
    }

    /// Like [`encode`](Self::encode), with the payload produced by `fill` directly into the
    /// frame buffer (no intermediate copy).
    pub(crate) fn encode_with(
        &mut self,
        out: &mut Vec<u8>,
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Result<()> {
        let start = out.len();
        out.extend_from_slice(&[0u8; FRAME_HEADER]);
        let body = out.len();
        fill(out);
        self.cipher.seal(self.next_idx, false, out, body)?;
        let len = u32::try_from(out.len() - body)
            .map_err(|_| Error::InvalidArgument("log record too large".into()))?;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 12].copy_from_slice(&self.next_idx.to_le_bytes());
        out[start + 12..start + 16].copy_from_slice(&frame_check(len, self.next_idx).to_le_bytes());
        self.next_idx += 1;
        Ok(())
    }

    /// Writes encoded frames to the file (no fsync).
    pub(crate) fn write(&mut self, frames: &[u8]) -> Result<()> {
        self.file.append(frames)?;
        self.bytes += frames.len() as u64;
        Ok(())
    }

    /// Encodes, writes and fsyncs one record.
    pub(crate) fn append_sync(&mut self, payload: &[u8]) -> Result<()> {
        let mut buf = Vec::with_capacity(payload.len() + 32);
        self.encode(payload, &mut buf)?;
        self.write(&buf)?;
        self.file.sync()?;
        Ok(())
    }

    pub(crate) fn file(&self) -> Arc<dyn WritableFile> {
        self.file.clone()
    }
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
    pub(crate) fn key_id(&self) -> KeyId {
        self.cipher.key_id()
    }
}

/// What recovery read from a log.
pub(crate) struct LogContents {
    /// Authenticated record payloads, in order.
    pub(crate) records: Vec<Vec<u8>>,
    /// Length of the valid prefix (header + whole records).
    pub(crate) valid_len: u64,
    /// Total file length (a preallocated log's zeros included).
    pub(crate) file_len: u64,
    /// The log ended at a torn (garbled or cut) record, not at its end or at the zeros
    /// of its preallocated remainder.
    pub(crate) torn: bool,
}

/// Parses and authenticates the frame at `pos` if its index satisfies `want`.
fn try_frame(
    cipher: &FileCipher,
    buf: &[u8],
    pos: usize,
    want: &dyn Fn(u64) -> bool,
) -> Option<(Vec<u8>, usize)> {
    if buf.len() - pos < FRAME_HEADER {
        return None;
    }
    let h = &buf[pos..pos + FRAME_HEADER];
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let mut i8 = [0u8; 8];
    i8.copy_from_slice(&h[4..12]);
    let idx = u64::from_le_bytes(i8);
    let check = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    if check != frame_check(len, idx) || !want(idx) {
        return None;
    }
    let len = len as usize;
    let body = pos + FRAME_HEADER;
    if len < TAG_LEN || buf.len() - body < len {
        return None;
    }
    let mut sealed = buf[body..body + len].to_vec();
    let n = cipher.open_block(idx, false, &mut sealed).ok()?;
    sealed.truncate(n);
    Some((sealed, body + len))
}

/// Position of a reader walking the frames of a log held in memory. Shared by recovery
/// ([`read_log`]) and the offline WAL reader, so both apply exactly the same torn-tail rule.
#[derive(Debug)]
pub(crate) struct LogCursor {
    pos: usize,
    idx: u64,
    torn: bool,
    done: bool,
}

impl LogCursor {
    /// A cursor at the first frame (just after the header).
    pub(crate) fn new() -> LogCursor {
        LogCursor {
            pos: HEADER_LEN,
            idx: 0,
            torn: false,
            done: false,
        }
    }

    /// The next authenticated record `(index, payload)`. `None` ends the log: either cleanly
    /// at its end or at a torn tail (see [`torn`](Self::torn)). A frame that fails while an
    /// authentic frame exists further on is damage in the middle: `Corruption` naming `name`
    /// and the record index, after which the cursor is finished.
    pub(crate) fn next(
        &mut self,
        cipher: &FileCipher,
        buf: &[u8],
        name: &str,
    ) -> Option<Result<(u64, Vec<u8>)>> {
        if self.done || self.pos >= buf.len() {
            self.done = true;
            return None;
        }
        let idx = self.idx;
        match try_frame(cipher, buf, self.pos, &|i| i == idx) {
            Some((payload, next)) => {
                self.pos = next;
                self.idx += 1;
                Some(Ok((idx, payload)))
            }
            None => {
                self.done = true;
                // The zeros of a preallocated file: the log ends here, intact.
                if buf[self.pos..].iter().all(|&b| b == 0) {
                    return None;
                }
                // Is there any authentic later record after the damaged one? Then this is
                // not a torn tail but damage (or reordering) in the middle of the log.
                // A torn write leaves garbage, never an authentic frame, so any authentic
                // frame from here on (even one out of order) means tampering.
                for q in self.pos..buf.len() {
                    if try_frame(cipher, buf, q, &|_| true).is_some() {
                        return Some(Err(Error::corruption(
                            name,
                            Some(idx),
                            "log record fails authentication but later records are valid",
                        )));
                    }
                }
                tracing::warn!(
                    file = name,
                    record = idx,
                    valid_len = self.pos,
                    "torn log tail ignored"
                );
                self.torn = true;
                None
            }
        }
    }

    /// Length of the authentic prefix read so far (header + whole records).
    pub(crate) fn valid_len(&self) -> u64 {
        self.pos as u64
    }

    /// True once the log ended at a torn (garbled or cut) tail rather than at its end.
    pub(crate) fn torn(&self) -> bool {
        self.torn
    }
}

/// Reads and authenticates a whole log. A referenced log must have an intact header.
pub(crate) fn read_log(
    fs: &dyn Fs,
    dir: &Path,
    name: &str,
    kind: FileKind,
    id: u64,
    resolve: &dyn Fn(KeyId) -> Option<Arc<DataKey>>,
) -> Result<LogContents> {
    let buf = fs.read_all(&dir.join(name))?;
    let cipher = FileCipher::open(&buf, kind, id, name, resolve)?;
    let mut records = Vec::new();
    let mut cur = LogCursor::new();
    while let Some(r) = cur.next(&cipher, &buf, name) {
        records.push(r?.1);
    }
    Ok(LogContents {
        records,
        valid_len: cur.valid_len(),
        file_len: buf.len() as u64,
        torn: cur.torn(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::crypto::keys::now_unix;
    use crate::fs::RealFs;

    const RESERVE: u64 = 64 << 10;

    /// A WAL reserved as `reserve` says, with three records written and synced; the key
    /// and the path.
    fn reserved_log(dir: &Path, reserve: Reserve) -> (Arc<DataKey>, std::path::PathBuf) {
        let key = Arc::new(DataKey::generate(KeyId(1), now_unix()).unwrap());
        let mut w = LogWriter::create(
            &RealFs,
            dir,
            "000007.wal",
            FileKind::Wal,
            7,
            &key,
            CipherSuite::Aes256Gcm,
            reserve,
        )
        .unwrap();
        for i in 0..3u8 {
            let mut buf = Vec::new();
            w.encode(&[i; 100], &mut buf).unwrap();
            w.write(&buf).unwrap();
        }
        w.file().sync().unwrap();
        (key, dir.join("000007.wal"))
    }

    fn read(dir: &Path, key: &Arc<DataKey>) -> Result<LogContents> {
        let k = key.clone();
        read_log(&RealFs, dir, "000007.wal", FileKind::Wal, 7, &move |_| {
            Some(k.clone())
        })
    }

    #[test]
    fn the_zeros_of_a_reserved_log_end_it_intact() {
        for reserve in [Reserve::Allocate(RESERVE), Reserve::Fill(RESERVE)] {
            let d = tempfile::tempdir().unwrap();
            let (key, path) = reserved_log(d.path(), reserve);
            let file_len = std::fs::metadata(&path).unwrap().len();
            assert_eq!(
                file_len, RESERVE,
                "{reserve:?}: the segment holds its reservation"
            );
            let log = read(d.path(), &key).unwrap();
            assert_eq!(
                log.records,
                vec![vec![0u8; 100], vec![1; 100], vec![2; 100]],
                "{reserve:?}"
            );
            assert!(log.valid_len < log.file_len);
            assert!(
                !log.torn,
                "{reserve:?}: zeros after the last record are not a torn tail"
            );
        }
    }

    #[test]
    fn a_torn_record_inside_the_reservation_is_a_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let (key, path) = reserved_log(d.path(), Reserve::Fill(RESERVE));
        let end = read(d.path(), &key).unwrap().valid_len;
        // Half a frame header reached the disk before the power cut.
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(end)).unwrap();
        f.write_all(&[0x55; 9]).unwrap();
        drop(f);
        let log = read(d.path(), &key).unwrap();
        assert_eq!(log.records.len(), 3);
        assert_eq!(log.valid_len, end);
        assert!(log.torn);
    }

    #[test]
    fn a_zeroed_record_before_authentic_ones_is_still_corruption() {
        let d = tempfile::tempdir().unwrap();
        let (key, path) = reserved_log(d.path(), Reserve::Fill(RESERVE));
        let mut bytes = std::fs::read(&path).unwrap();
        // Wipe the first record's frame: later authentic records make it damage, not an end.
        bytes[HEADER_LEN..HEADER_LEN + FRAME_HEADER].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            read(d.path(), &key),
            Err(Error::Corruption { .. })
        ));
    }
}
