//! The on-disk format: segment header layout, record framing, and the per-segment
//! AES-256-GCM key. Everything here is pure (no I/O) so the reader and the writer share one
//! definition of every byte. The layout is documented in `docs/audit.md`.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// First bytes of every segment file.
pub const MAGIC: [u8; 8] = *b"SRAUDIT\0";
/// Format version written in every header.
pub const VERSION: u16 = 1;
/// Size of the fixed segment header in bytes.
pub const HEADER_LEN: usize = 108;
/// Size of the length prefix in front of every record.
pub const FRAME_PREFIX_LEN: usize = 4;
/// AES-GCM tag size; also the size of a chain link.
pub const TAG_LEN: usize = 16;
/// Largest serialised event accepted. Bounds what a reader allocates for one frame, and
/// lets a reader call an oversized length prefix corruption rather than a torn tail.
pub const MAX_EVENT_LEN: usize = 64 * 1024;

/// HKDF info prefix for segment keys; the segment number (u64 big-endian) follows.
const SEGMENT_INFO: &[u8] = b"strongroom audit v1";
/// HKDF salt for the key check value.
const KCV_SALT: &[u8] = b"strongroom audit v1 key check";
/// Nonce reserved for the header tag: record nonces have their first four bytes zero.
const HEADER_NONCE: [u8; 12] = [0xFF; 12];

// Header field offsets.
const OFF_VERSION: usize = 8;
const OFF_SEGMENT: usize = 12;
const OFF_FIRST_SEQ: usize = 20;
const OFF_PREV_TAG: usize = 28;
const OFF_SALT: usize = 44;
const OFF_KCV: usize = 76;
const OFF_TAG: usize = 92;

/// A chain link: the GCM tag of a record.
pub type Tag = [u8; TAG_LEN];
/// What the first record of the log chains to.
pub const GENESIS_TAG: Tag = [0; TAG_LEN];

/// File name of segment `n`.
pub fn segment_file_name(n: u64) -> String {
    format!("audit-{n:06}.log")
}

/// Segment number of a file name, if it names a segment.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("audit-")?.strip_suffix(".log")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The decoded fields of a segment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub segment: u64,
    /// Global sequence number of the segment's first record.
    pub first_seq: u64,
    /// Tag of the last record of the previous segment ([`GENESIS_TAG`] for segment 1).
    pub prev_tag: Tag,
    pub salt: [u8; 32],
}

/// Why a header was rejected; the caller turns this into a positioned [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFault {
    BadMagic,
    BadVersion,
    WrongKey,
    BadTag,
}

/// A key check value: lets a reader tell "wrong key" from "tampered" without decrypting
/// anything. It is a PRF output of the key, as revealing as a key id.
pub fn key_check(master: &[u8; 32]) -> [u8; 16] {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, KCV_SALT).extract(master);
    let mut out = [0u8; 16];
    // 16 bytes is far below HKDF-SHA256's output limit; on the impossible failure the value
    // stays zero and every header is reported as written with another key.
    if let Ok(okm) = prk.expand(&[b"kcv"], Len16) {
        let _ = okm.fill(&mut out);
    }
    out
}

struct Len16;
impl hkdf::KeyType for Len16 {
    fn len(&self) -> usize {
        16
    }
}

/// The AES-256-GCM key of one segment:
/// `HKDF-SHA256(ikm = master, salt = segment salt, info = "strongroom audit v1" ‖ segment)`.
pub struct SegmentKey {
    key: LessSafeKey,
    segment: u64,
}

impl std::fmt::Debug for SegmentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentKey")
            .field("segment", &self.segment)
            .finish_non_exhaustive()
    }
}

impl SegmentKey {
    pub fn derive(master: &[u8; 32], salt: &[u8; 32], segment: u64) -> Result<Self> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(master);
        let seg = segment.to_be_bytes();
        let info = [SEGMENT_INFO, &seg[..]];
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .map_err(|_| Error::Crypto("hkdf expand"))?;
        let mut bytes = Zeroizing::new([0u8; 32]);
        okm.fill(bytes.as_mut())
            .map_err(|_| Error::Crypto("hkdf fill"))?;
        let unbound = UnboundKey::new(&AES_256_GCM, bytes.as_ref())
            .map_err(|_| Error::Crypto("aes-256-gcm key"))?;
        Ok(SegmentKey {
            key: LessSafeKey::new(unbound),
            segment,
        })
    }

    /// Seals one record and returns the whole frame (length prefix, ciphertext, tag) and
    /// its tag, the next chain link. `index` is the record's position in this segment.
    pub fn seal_record(
        &self,
        index: u64,
        seq: u64,
        prev_tag: &Tag,
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, Tag)> {
        let body_len = plaintext.len() + TAG_LEN;
        let len = u32::try_from(body_len).map_err(|_| Error::EventTooLarge {
            len: plaintext.len(),
            limit: MAX_EVENT_LEN,
        })?;
        let mut frame = Vec::with_capacity(FRAME_PREFIX_LEN + body_len);
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(plaintext);
        let aad = record_aad(self.segment, seq, prev_tag);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                record_nonce(index),
                Aad::from(&aad),
                &mut frame[FRAME_PREFIX_LEN..],
            )
            .map_err(|_| Error::Crypto("aes-256-gcm seal"))?;
        let mut link = [0u8; TAG_LEN];
        link.copy_from_slice(tag.as_ref());
        frame.extend_from_slice(&link);
        Ok((frame, link))
    }

    /// Opens one record body (ciphertext ‖ tag) in place; returns the plaintext and the tag,
    /// or `None` if it does not authenticate at this position of the chain.
    pub fn open_record<'a>(
        &self,
        index: u64,
        seq: u64,
        prev_tag: &Tag,
        body: &'a mut [u8],
    ) -> Option<(&'a [u8], Tag)> {
        if body.len() < TAG_LEN {
            return None;
        }
        let mut link = [0u8; TAG_LEN];
        link.copy_from_slice(&body[body.len() - TAG_LEN..]);
        let aad = record_aad(self.segment, seq, prev_tag);
        let plain = self
            .key
            .open_in_place(record_nonce(index), Aad::from(&aad), body)
            .ok()?;
        Some((plain, link))
    }

    fn header_tag(&self, fields: &[u8]) -> Result<Tag> {
        let mut empty = [0u8; 0];
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(HEADER_NONCE),
                Aad::from(fields),
                &mut empty,
            )
            .map_err(|_| Error::Crypto("aes-256-gcm seal"))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }
}

/// Nonce of record `index` within its segment: 4 zero bytes, then the index big-endian.
/// Unique per segment key because indexes only grow and every segment has its own key.
fn record_nonce(index: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// AAD of a record: segment ‖ global seq ‖ previous record's tag. This is the hash chain.
fn record_aad(segment: u64, seq: u64, prev_tag: &Tag) -> [u8; 32] {
    let mut aad = [0u8; 32];
    aad[..8].copy_from_slice(&segment.to_le_bytes());
    aad[8..16].copy_from_slice(&seq.to_le_bytes());
    aad[16..].copy_from_slice(prev_tag);
    aad
}

/// Encodes an authenticated header and returns it with the segment's key.
pub fn encode_header(master: &[u8; 32], header: &Header) -> Result<([u8; HEADER_LEN], SegmentKey)> {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[OFF_VERSION..OFF_VERSION + 2].copy_from_slice(&VERSION.to_le_bytes());
    h[OFF_SEGMENT..OFF_FIRST_SEQ].copy_from_slice(&header.segment.to_le_bytes());
    h[OFF_FIRST_SEQ..OFF_PREV_TAG].copy_from_slice(&header.first_seq.to_le_bytes());
    h[OFF_PREV_TAG..OFF_SALT].copy_from_slice(&header.prev_tag);
    h[OFF_SALT..OFF_KCV].copy_from_slice(&header.salt);
    h[OFF_KCV..OFF_TAG].copy_from_slice(&key_check(master));
    let key = SegmentKey::derive(master, &header.salt, header.segment)?;
    let tag = key.header_tag(&h[..OFF_TAG])?;
    h[OFF_TAG..].copy_from_slice(&tag);
    Ok((h, key))
}

/// Decodes and authenticates a header.
pub fn decode_header(
    master: &[u8; 32],
    h: &[u8; HEADER_LEN],
) -> Result<Result<(Header, SegmentKey), HeaderFault>> {
    if h[..8] != MAGIC {
        return Ok(Err(HeaderFault::BadMagic));
    }
    if h[OFF_VERSION..OFF_VERSION + 4] != [VERSION as u8, 0, 0, 0] {
        return Ok(Err(HeaderFault::BadVersion));
    }
    if h[OFF_KCV..OFF_TAG] != key_check(master) {
        return Ok(Err(HeaderFault::WrongKey));
    }
    let header = Header {
        segment: u64::from_le_bytes(array(&h[OFF_SEGMENT..OFF_FIRST_SEQ])),
        first_seq: u64::from_le_bytes(array(&h[OFF_FIRST_SEQ..OFF_PREV_TAG])),
        prev_tag: array(&h[OFF_PREV_TAG..OFF_SALT]),
        salt: array(&h[OFF_SALT..OFF_KCV]),
    };
    let key = SegmentKey::derive(master, &header.salt, header.segment)?;
    let expected = key.header_tag(&h[..OFF_TAG])?;
    // Tags are public values (they are stored next to the data); no secret is compared here.
    if expected[..] != h[OFF_TAG..] {
        return Ok(Err(HeaderFault::BadTag));
    }
    Ok(Ok((header, key)))
}

/// Copies a slice of known length into an array.
fn array<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_adds_up() {
        assert_eq!(OFF_TAG + TAG_LEN, HEADER_LEN);
    }

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_file_name(7), "audit-000007.log");
        assert_eq!(parse_segment_file_name("audit-000007.log"), Some(7));
        assert_eq!(
            parse_segment_file_name("audit-1234567.log"),
            Some(1_234_567)
        );
        assert_eq!(parse_segment_file_name("audit-07.log"), None);
        assert_eq!(parse_segment_file_name("audit-000007.log.tmp"), None);
        assert_eq!(parse_segment_file_name("LOCK"), None);
    }

    #[test]
    fn record_opens_only_at_its_own_position() {
        let master = [7u8; 32];
        let key = SegmentKey::derive(&master, &[1u8; 32], 3).unwrap();
        let (frame, tag) = key.seal_record(5, 100, &[9u8; 16], b"hello").unwrap();
        let body = || frame[FRAME_PREFIX_LEN..].to_vec();
        let mut b = body();
        let (plain, t) = key.open_record(5, 100, &[9u8; 16], &mut b).unwrap();
        assert_eq!(plain, b"hello");
        assert_eq!(t, tag);
        assert!(key.open_record(6, 100, &[9u8; 16], &mut body()).is_none());
        assert!(key.open_record(5, 101, &[9u8; 16], &mut body()).is_none());
        assert!(key.open_record(5, 100, &[8u8; 16], &mut body()).is_none());
        let other = SegmentKey::derive(&master, &[1u8; 32], 4).unwrap();
        assert!(other.open_record(5, 100, &[9u8; 16], &mut body()).is_none());
    }

    #[test]
    fn header_detects_wrong_key_and_tampering() {
        let master = [7u8; 32];
        let header = Header {
            segment: 2,
            first_seq: 10,
            prev_tag: [3u8; 16],
            salt: [4u8; 32],
        };
        let (h, _) = encode_header(&master, &header).unwrap();
        let (back, _) = decode_header(&master, &h).unwrap().unwrap();
        assert_eq!(back, header);
        assert_eq!(
            decode_header(&[8u8; 32], &h).unwrap().unwrap_err(),
            HeaderFault::WrongKey
        );
        for i in OFF_SEGMENT..OFF_KCV {
            let mut bad = h;
            bad[i] ^= 1;
            assert_eq!(
                decode_header(&master, &bad).unwrap().unwrap_err(),
                HeaderFault::BadTag,
                "byte {i}"
            );
        }
    }
}
