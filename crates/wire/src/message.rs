//! The MongoDB wire messages this server reads and writes.
//!
//! Every message starts with a 16-byte little-endian header (`messageLength`,
//! `requestID`, `responseTo`, `opCode`). Modern drivers talk `OP_MSG` (2013) for every
//! command; the very first handshake of most drivers still arrives as a legacy
//! `OP_QUERY` (2004) against `admin.$cmd`, answered with an `OP_REPLY` (1). Either may be
//! wrapped in `OP_COMPRESSED` (2012) once compression was negotiated in `hello`.
//!
//! Decoding is strict and bounded: lengths are checked against the bytes actually
//! present, every BSON document is validated (including a nesting-depth limit, checked
//! iteratively so a hostile client cannot overflow the stack) before it is materialised,
//! and an `OP_MSG` checksum (CRC-32C, flag bit 0) is verified when present.

use bson::{Document, RawDocument};

use crate::compression::Compressor;
use crate::error::ProtocolError;

/// Largest message (header included) a client may send and the server will send.
pub const MAX_MESSAGE_SIZE: usize = 48_000_000;
/// Largest BSON document a user may store (`maxBsonObjectSize`).
pub const MAX_BSON_OBJECT_SIZE: usize = 16 * 1024 * 1024;
/// Command bodies may exceed a user document by this much (as in MongoDB), so that a
/// maximum-size document still fits in an `update` or `insert` command.
pub const COMMAND_OVERHEAD: usize = 16 * 1024;
/// Deepest nesting of documents/arrays accepted in any incoming document. MongoDB stores
/// documents up to 100 levels and allows some headroom for commands wrapping them.
pub const MAX_NESTING_DEPTH: usize = 150;
/// Length of the standard message header.
pub const HEADER_LEN: usize = 16;
/// Largest message a connection may send before it has authenticated. Every driver's
/// handshake (`hello` with client metadata, which the handshake spec caps at 512 bytes,
/// `compression`, `speculativeAuthenticate`) and SCRAM exchange fits in well under 4 KiB;
/// 16 KiB leaves room for long user names and generous metadata while keeping what an
/// anonymous peer can make the server buffer small.
pub const MAX_PRE_AUTH_MESSAGE_SIZE: usize = 16 * 1024;
/// Most documents one `OP_MSG` document sequence may carry: MongoDB's `maxWriteBatchSize`
/// (no write command accepts more). Counted while decoding, so a sequence of millions of
/// 5-byte documents is refused before it is materialised.
pub const MAX_SEQUENCE_DOCUMENTS: usize = 100_000;
/// How much larger than its compressed payload an `OP_COMPRESSED` message may declare
/// itself. Deflate cannot exceed 1032:1 and snappy about 21:1; zstd can go further, but
/// only on degenerate data (megabytes of one repeated byte). Checked before anything is
/// allocated, so a 30-byte frame cannot make the server reserve 48 MB.
pub const MAX_COMPRESSION_RATIO: usize = 1_100;
/// Declared sizes up to this are allowed whatever the ratio (tiny payloads).
const COMPRESSION_RATIO_FLOOR: usize = 64 * 1024;

/// What a connection may send at this point of its life: the server narrows both before
/// authentication ([`MAX_PRE_AUTH_MESSAGE_SIZE`]) and to the compressors negotiated in
/// `hello`.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a> {
    /// Largest message, header included, after decompression.
    pub max_message: usize,
    /// `OP_COMPRESSED` is accepted only with one of these.
    pub compressors: &'a [Compressor],
}

impl Limits<'static> {
    /// Everything the protocol allows: 48 MB messages, every compressor.
    pub const PROTOCOL: Limits<'static> = Limits {
        max_message: MAX_MESSAGE_SIZE,
        compressors: &Compressor::ALL,
    };
}

/// Operation codes this server understands.
pub mod opcode {
    pub const OP_REPLY: i32 = 1;
    pub const OP_QUERY: i32 = 2004;
    pub const OP_COMPRESSED: i32 = 2012;
    pub const OP_MSG: i32 = 2013;
}

/// `OP_MSG` flag bits.
pub mod msg_flags {
    /// A CRC-32C of the whole message follows the last section.
    pub const CHECKSUM_PRESENT: u32 = 1;
    /// The sender will send another message without waiting for a reply; no reply is due.
    pub const MORE_TO_COME: u32 = 1 << 1;
    /// The client accepts exhaust replies (we never send them; the bit is just allowed).
    pub const EXHAUST_ALLOWED: u32 = 1 << 16;
    /// Bits 0-15 are "required": a receiver must reject a message with one it does not know.
    pub const REQUIRED_MASK: u32 = 0xFFFF;
    pub const KNOWN: u32 = CHECKSUM_PRESENT | MORE_TO_COME | EXHAUST_ALLOWED;
}

/// The fixed message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub length: i32,
    pub request_id: i32,
    pub response_to: i32,
    pub op_code: i32,
}

impl Header {
    /// Parses the first 16 bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Header, ProtocolError> {
        if buf.len() < HEADER_LEN {
            return Err(ProtocolError::Truncated("message header"));
        }
        Ok(Header {
            length: le_i32(&buf[0..4]),
            request_id: le_i32(&buf[4..8]),
            response_to: le_i32(&buf[8..12]),
            op_code: le_i32(&buf[12..16]),
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.request_id.to_le_bytes());
        out.extend_from_slice(&self.response_to.to_le_bytes());
        out.extend_from_slice(&self.op_code.to_le_bytes());
    }
}

/// A command carried by `OP_MSG`: the body with every document sequence (kind 1
/// section) folded into it as an array field named by the sequence identifier, which is
/// exactly how MongoDB itself presents `insert`'s `documents` or `update`'s `updates`.
#[derive(Debug, Clone, PartialEq)]
pub struct OpMsg {
    pub flags: u32,
    pub body: Document,
}

impl OpMsg {
    /// True when the client asked for no reply (`moreToCome`, e.g. `w:0` writes).
    pub fn more_to_come(&self) -> bool {
        self.flags & msg_flags::MORE_TO_COME != 0
    }
}

/// A legacy `OP_QUERY`. Only commands (`<db>.$cmd`) are served; drivers use it for the
/// first `hello`/`isMaster` of a connection.
#[derive(Debug, Clone, PartialEq)]
pub struct OpQuery {
    pub flags: i32,
    pub full_collection_name: String,
    pub number_to_skip: i32,
    pub number_to_return: i32,
    pub query: Document,
}

/// A decoded client request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Msg(OpMsg),
    Query(OpQuery),
}

/// A decoded request with the header it came with and the compressor it arrived under
/// (replies to a compressed request are compressed the same way).
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub header: Header,
    pub request: Request,
    pub compressor: Option<Compressor>,
}

/// Decodes one complete message: `frame` holds exactly `header.length` bytes.
pub fn decode(frame: &[u8]) -> Result<Incoming, ProtocolError> {
    decode_within(frame, &Limits::PROTOCOL)
}

/// [`decode`] under a connection's [`Limits`].
pub fn decode_within(frame: &[u8], limits: &Limits<'_>) -> Result<Incoming, ProtocolError> {
    let header = Header::parse(frame)?;
    if header.length as usize != frame.len() {
        return Err(ProtocolError::BadLength(header.length));
    }
    let body = &frame[HEADER_LEN..];
    match header.op_code {
        opcode::OP_MSG => Ok(Incoming {
            header,
            request: Request::Msg(decode_op_msg(frame, body)?),
            compressor: None,
        }),
        opcode::OP_QUERY => Ok(Incoming {
            header,
            request: Request::Query(decode_op_query(body)?),
            compressor: None,
        }),
        opcode::OP_COMPRESSED => decode_compressed(header, body, limits),
        other => Err(ProtocolError::UnknownOpcode(other)),
    }
}

fn decode_compressed(
    header: Header,
    body: &[u8],
    limits: &Limits<'_>,
) -> Result<Incoming, ProtocolError> {
    if body.len() < 9 {
        return Err(ProtocolError::Truncated("OP_COMPRESSED header"));
    }
    let original_opcode = le_i32(&body[0..4]);
    let uncompressed_size = le_i32(&body[4..8]);
    let compressor = Compressor::from_id(body[8])?;
    if !limits.compressors.contains(&compressor) {
        return Err(ProtocolError::NotNegotiated(compressor.name()));
    }
    if uncompressed_size < 0 {
        return Err(ProtocolError::BadLength(uncompressed_size));
    }
    let uncompressed_size = uncompressed_size as usize;
    if uncompressed_size > limits.max_message.min(MAX_MESSAGE_SIZE) - HEADER_LEN {
        return Err(ProtocolError::DecompressedTooLarge {
            size: uncompressed_size,
            max: limits.max_message.min(MAX_MESSAGE_SIZE) - HEADER_LEN,
        });
    }
    let payload = &body[9..];
    let ratio_cap = payload
        .len()
        .saturating_mul(MAX_COMPRESSION_RATIO)
        .max(COMPRESSION_RATIO_FLOOR);
    if uncompressed_size > ratio_cap {
        return Err(ProtocolError::CompressionRatio {
            size: uncompressed_size,
            compressed: payload.len(),
        });
    }
    let inner = compressor.decompress(payload, uncompressed_size)?;
    // Rebuild an uncompressed frame so the OP_MSG checksum (computed by the sender over
    // the uncompressed message) can be verified by the same code path.
    let mut frame = Vec::with_capacity(HEADER_LEN + inner.len());
    Header {
        length: (HEADER_LEN + inner.len()) as i32,
        request_id: header.request_id,
        response_to: header.response_to,
        op_code: original_opcode,
    }
    .write(&mut frame);
    frame.extend_from_slice(&inner);
    let request = match original_opcode {
        opcode::OP_MSG => Request::Msg(decode_op_msg(&frame, &frame[HEADER_LEN..])?),
        opcode::OP_QUERY => Request::Query(decode_op_query(&frame[HEADER_LEN..])?),
        other => return Err(ProtocolError::UnknownOpcode(other)),
    };
    Ok(Incoming {
        header,
        request,
        compressor: Some(compressor),
    })
}

fn decode_op_msg(frame: &[u8], body: &[u8]) -> Result<OpMsg, ProtocolError> {
    if body.len() < 4 {
        return Err(ProtocolError::Truncated("OP_MSG flags"));
    }
    let flags = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
    let unknown_required = flags & msg_flags::REQUIRED_MASK & !msg_flags::KNOWN;
    if unknown_required != 0 {
        return Err(ProtocolError::UnknownRequiredFlags(unknown_required));
    }
    let mut sections_end = body.len();
    if flags & msg_flags::CHECKSUM_PRESENT != 0 {
        if body.len() < 8 {
            return Err(ProtocolError::Truncated("OP_MSG checksum"));
        }
        sections_end -= 4;
        let expected = u32::from_le_bytes([
            body[sections_end],
            body[sections_end + 1],
            body[sections_end + 2],
            body[sections_end + 3],
        ]);
        let actual = crc32c::crc32c(&frame[..frame.len() - 4]);
        if expected != actual {
            return Err(ProtocolError::ChecksumMismatch);
        }
    }
    let mut pos = 4;
    let mut body_doc: Option<Document> = None;
    let mut sequences: Vec<(String, Vec<Document>)> = Vec::new();
    while pos < sections_end {
        let kind = body[pos];
        pos += 1;
        match kind {
            0 => {
                let (doc, used) = read_document(
                    &body[pos..sections_end],
                    MAX_BSON_OBJECT_SIZE + COMMAND_OVERHEAD,
                )?;
                pos += used;
                if body_doc.replace(doc).is_some() {
                    return Err(ProtocolError::Malformed(
                        "OP_MSG has more than one body section",
                    ));
                }
            }
            1 => {
                let rest = &body[pos..sections_end];
                if rest.len() < 4 {
                    return Err(ProtocolError::Truncated("document sequence size"));
                }
                let size = le_i32(&rest[0..4]);
                if size < 5 || size as usize > rest.len() {
                    return Err(ProtocolError::BadLength(size));
                }
                let section = &rest[4..size as usize];
                let nul = section
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(ProtocolError::Malformed(
                        "document sequence identifier is not terminated",
                    ))?;
                let identifier = std::str::from_utf8(&section[..nul])
                    .map_err(|_| {
                        ProtocolError::Malformed("document sequence identifier is not UTF-8")
                    })?
                    .to_string();
                let mut docs = Vec::new();
                let mut at = nul + 1;
                while at < section.len() {
                    if docs.len() == MAX_SEQUENCE_DOCUMENTS {
                        return Err(ProtocolError::TooManyDocuments(MAX_SEQUENCE_DOCUMENTS));
                    }
                    let (doc, used) =
                        read_document(&section[at..], MAX_BSON_OBJECT_SIZE + COMMAND_OVERHEAD)?;
                    docs.push(doc);
                    at += used;
                }
                pos += size as usize;
                sequences.push((identifier, docs));
            }
            other => return Err(ProtocolError::UnknownSectionKind(other)),
        }
    }
    let mut body_doc = body_doc.ok_or(ProtocolError::Malformed("OP_MSG has no body section"))?;
    for (identifier, docs) in sequences {
        if body_doc.contains_key(&identifier) {
            return Err(ProtocolError::Malformed(
                "document sequence duplicates a field of the command body",
            ));
        }
        body_doc.insert(
            identifier,
            bson::Bson::Array(docs.into_iter().map(bson::Bson::Document).collect()),
        );
    }
    Ok(OpMsg {
        flags,
        body: body_doc,
    })
}

fn decode_op_query(body: &[u8]) -> Result<OpQuery, ProtocolError> {
    if body.len() < 4 {
        return Err(ProtocolError::Truncated("OP_QUERY flags"));
    }
    let flags = le_i32(&body[0..4]);
    let rest = &body[4..];
    let nul = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(ProtocolError::Malformed(
            "OP_QUERY collection name is not terminated",
        ))?;
    let full_collection_name = std::str::from_utf8(&rest[..nul])
        .map_err(|_| ProtocolError::Malformed("OP_QUERY collection name is not UTF-8"))?
        .to_string();
    let rest = &rest[nul + 1..];
    if rest.len() < 8 {
        return Err(ProtocolError::Truncated("OP_QUERY skip/return"));
    }
    let number_to_skip = le_i32(&rest[0..4]);
    let number_to_return = le_i32(&rest[4..8]);
    let (query, used) = read_document(&rest[8..], MAX_BSON_OBJECT_SIZE + COMMAND_OVERHEAD)?;
    let rest = &rest[8 + used..];
    if !rest.is_empty() {
        // Optional returnFieldsSelector: validated, then ignored (commands have no projection).
        let (_, used) = read_document(rest, MAX_BSON_OBJECT_SIZE)?;
        if used != rest.len() {
            return Err(ProtocolError::Malformed("trailing bytes after OP_QUERY"));
        }
    }
    Ok(OpQuery {
        flags,
        full_collection_name,
        number_to_skip,
        number_to_return,
        query,
    })
}

/// Reads one BSON document from the front of `buf`, returning it and its length.
fn read_document(buf: &[u8], max: usize) -> Result<(Document, usize), ProtocolError> {
    if buf.len() < 5 {
        return Err(ProtocolError::Truncated("BSON document"));
    }
    let len = le_i32(&buf[0..4]);
    if len < 5 || len as usize > buf.len() {
        return Err(ProtocolError::InvalidBson(format!(
            "document length {len} does not fit the {} bytes left",
            buf.len()
        )));
    }
    if len as usize > max {
        return Err(ProtocolError::DocumentTooLarge(len as usize));
    }
    let bytes = &buf[..len as usize];
    let raw =
        RawDocument::from_bytes(bytes).map_err(|e| ProtocolError::InvalidBson(e.to_string()))?;
    // The depth is checked on the raw bytes, iteratively, before the (recursive)
    // conversion; documents too short to be that deep skip the walk.
    let doc = docdb::rawdoc::to_document_within(raw, MAX_NESTING_DEPTH).map_err(|e| match e {
        docdb::rawdoc::Error::TooDeep(max) => ProtocolError::TooDeep(max),
        other => ProtocolError::InvalidBson(other.to_string()),
    })?;
    Ok((doc, len as usize))
}

/// Encodes an `OP_MSG` reply carrying `body`, compressed with `compressor` if given.
pub fn encode_msg(
    request_id: i32,
    response_to: i32,
    body: &Document,
    compressor: Option<Compressor>,
) -> Result<Vec<u8>, ProtocolError> {
    let doc = body
        .to_vec()
        .map_err(|e| ProtocolError::InvalidBson(e.to_string()))?;
    encode_msg_bytes(request_id, response_to, &doc, compressor)
}

/// [`encode_msg`] for a body that is already BSON (query replies assembled from stored
/// documents without decoding them).
pub fn encode_msg_raw(
    request_id: i32,
    response_to: i32,
    body: &RawDocument,
    compressor: Option<Compressor>,
) -> Result<Vec<u8>, ProtocolError> {
    encode_msg_bytes(request_id, response_to, body.as_bytes(), compressor)
}

fn encode_msg_bytes(
    request_id: i32,
    response_to: i32,
    doc: &[u8],
    compressor: Option<Compressor>,
) -> Result<Vec<u8>, ProtocolError> {
    if compressor.is_none() {
        // Uncompressed (the common case): header, flags, section kind and body written
        // straight into the frame, without an intermediate payload buffer.
        let length = HEADER_LEN + 5 + doc.len();
        if length > MAX_MESSAGE_SIZE {
            return Err(ProtocolError::TooLarge(length));
        }
        let mut out = Vec::with_capacity(length);
        Header {
            length: length as i32,
            request_id,
            response_to,
            op_code: opcode::OP_MSG,
        }
        .write(&mut out);
        out.extend_from_slice(&0u32.to_le_bytes());
        out.push(0);
        out.extend_from_slice(doc);
        return Ok(out);
    }
    let mut payload = Vec::with_capacity(5 + doc.len());
    payload.extend_from_slice(&0u32.to_le_bytes());
    payload.push(0);
    payload.extend_from_slice(doc);
    frame(request_id, response_to, opcode::OP_MSG, payload, compressor)
}

/// Encodes an `OP_REPLY` with one document: the answer to a legacy `OP_QUERY` command.
pub fn encode_reply(
    request_id: i32,
    response_to: i32,
    body: &Document,
    compressor: Option<Compressor>,
) -> Result<Vec<u8>, ProtocolError> {
    let doc = body
        .to_vec()
        .map_err(|e| ProtocolError::InvalidBson(e.to_string()))?;
    let mut payload = Vec::with_capacity(20 + doc.len());
    payload.extend_from_slice(&8i32.to_le_bytes()); // responseFlags: AwaitCapable
    payload.extend_from_slice(&0i64.to_le_bytes()); // cursorID
    payload.extend_from_slice(&0i32.to_le_bytes()); // startingFrom
    payload.extend_from_slice(&1i32.to_le_bytes()); // numberReturned
    payload.extend_from_slice(&doc);
    frame(
        request_id,
        response_to,
        opcode::OP_REPLY,
        payload,
        compressor,
    )
}

fn frame(
    request_id: i32,
    response_to: i32,
    op_code: i32,
    payload: Vec<u8>,
    compressor: Option<Compressor>,
) -> Result<Vec<u8>, ProtocolError> {
    let (op_code, payload) = match compressor {
        None => (op_code, payload),
        Some(c) => {
            let compressed = c.compress(&payload)?;
            let mut wrapped = Vec::with_capacity(9 + compressed.len());
            wrapped.extend_from_slice(&op_code.to_le_bytes());
            wrapped.extend_from_slice(&(payload.len() as i32).to_le_bytes());
            wrapped.push(c.id());
            wrapped.extend_from_slice(&compressed);
            (opcode::OP_COMPRESSED, wrapped)
        }
    };
    let length = HEADER_LEN + payload.len();
    if length > MAX_MESSAGE_SIZE {
        return Err(ProtocolError::TooLarge(length));
    }
    let mut out = Vec::with_capacity(length);
    Header {
        length: length as i32,
        request_id,
        response_to,
        op_code,
    }
    .write(&mut out);
    out.extend_from_slice(&payload);
    Ok(out)
}

fn le_i32(b: &[u8]) -> i32 {
    i32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Builders for client-side messages: used by tests and by tools that speak to a server.
pub mod client {
    use super::*;

    /// An `OP_MSG` with `body` and optional document sequences and checksum.
    pub fn op_msg(
        request_id: i32,
        body: &Document,
        sequences: &[(&str, &[Document])],
        checksum: bool,
    ) -> Vec<u8> {
        let mut payload = Vec::new();
        let flags: u32 = if checksum {
            msg_flags::CHECKSUM_PRESENT
        } else {
            0
        };
        payload.extend_from_slice(&flags.to_le_bytes());
        payload.push(0);
        payload.extend_from_slice(&body.to_vec().unwrap_or_default());
        for (id, docs) in sequences {
            let mut section = Vec::new();
            section.extend_from_slice(id.as_bytes());
            section.push(0);
            for d in docs.iter() {
                section.extend_from_slice(&d.to_vec().unwrap_or_default());
            }
            payload.push(1);
            payload.extend_from_slice(&((section.len() + 4) as i32).to_le_bytes());
            payload.extend_from_slice(&section);
        }
        let mut out = Vec::new();
        let extra = if checksum { 4 } else { 0 };
        Header {
            length: (HEADER_LEN + payload.len() + extra) as i32,
            request_id,
            response_to: 0,
            op_code: opcode::OP_MSG,
        }
        .write(&mut out);
        out.extend_from_slice(&payload);
        if checksum {
            let crc = crc32c::crc32c(&out);
            out.extend_from_slice(&crc.to_le_bytes());
        }
        out
    }

    /// A legacy `OP_QUERY` command against `<db>.$cmd`.
    pub fn op_query(request_id: i32, db: &str, query: &Document) -> Vec<u8> {
        let mut payload = Vec::new();
        payload.extend_from_slice(&0i32.to_le_bytes());
        payload.extend_from_slice(format!("{db}.$cmd").as_bytes());
        payload.push(0);
        payload.extend_from_slice(&0i32.to_le_bytes());
        payload.extend_from_slice(&(-1i32).to_le_bytes());
        payload.extend_from_slice(&query.to_vec().unwrap_or_default());
        let mut out = Vec::new();
        Header {
            length: (HEADER_LEN + payload.len()) as i32,
            request_id,
            response_to: 0,
            op_code: opcode::OP_QUERY,
        }
        .write(&mut out);
        out.extend_from_slice(&payload);
        out
    }

    /// Wraps an uncompressed message in `OP_COMPRESSED`.
    pub fn compress(message: &[u8], compressor: Compressor) -> Result<Vec<u8>, ProtocolError> {
        let header = Header::parse(message)?;
        super::frame(
            header.request_id,
            header.response_to,
            header.op_code,
            message[HEADER_LEN..].to_vec(),
            Some(compressor),
        )
    }

    /// Decodes a server reply (`OP_MSG` or `OP_REPLY`, possibly compressed) to its document.
    pub fn decode_reply(frame: &[u8]) -> Result<(Header, Document), ProtocolError> {
        let header = Header::parse(frame)?;
        let (op, body): (i32, Vec<u8>) = if header.op_code == opcode::OP_COMPRESSED {
            let b = &frame[HEADER_LEN..];
            if b.len() < 9 {
                return Err(ProtocolError::Truncated("OP_COMPRESSED header"));
            }
            let c = Compressor::from_id(b[8])?;
            (
                le_i32(&b[0..4]),
                c.decompress(&b[9..], le_i32(&b[4..8]).max(0) as usize)?,
            )
        } else {
            (header.op_code, frame[HEADER_LEN..].to_vec())
        };
        let doc_bytes = match op {
            opcode::OP_MSG => body.get(5..).ok_or(ProtocolError::Truncated("OP_MSG"))?,
            opcode::OP_REPLY => body.get(20..).ok_or(ProtocolError::Truncated("OP_REPLY"))?,
            other => return Err(ProtocolError::UnknownOpcode(other)),
        };
        let (doc, _) = read_document(doc_bytes, MAX_MESSAGE_SIZE)?;
        Ok((header, doc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CommandError;
    use bson::doc;

    #[test]
    fn op_msg_with_sequences_and_checksum_round_trips() {
        let docs = vec![doc! {"_id": 1}, doc! {"_id": 2}];
        let bytes = client::op_msg(
            7,
            &doc! {"insert": "c", "$db": "d"},
            &[("documents", &docs)],
            true,
        );
        let inc = decode(&bytes).expect("decode");
        assert_eq!(inc.header.request_id, 7);
        let Request::Msg(msg) = inc.request else {
            panic!("not OP_MSG")
        };
        assert_eq!(msg.body.get_array("documents").expect("docs").len(), 2);
    }

    #[test]
    fn bad_checksum_is_rejected() {
        let mut bytes = client::op_msg(1, &doc! {"ping": 1, "$db": "admin"}, &[], true);
        let n = bytes.len();
        bytes[n - 1] ^= 0xFF;
        assert!(matches!(
            decode(&bytes),
            Err(ProtocolError::ChecksumMismatch)
        ));
    }

    #[test]
    fn unknown_required_flag_is_rejected() {
        let mut bytes = client::op_msg(1, &doc! {"ping": 1}, &[], false);
        bytes[16] |= 1 << 3;
        assert!(matches!(
            decode(&bytes),
            Err(ProtocolError::UnknownRequiredFlags(_))
        ));
    }

    /// `{a: {a: ... {}}}` nested `depth` levels, built in linear time.
    fn nested(depth: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + 8 * depth);
        for i in 0..depth {
            out.extend_from_slice(&((5 + 8 * (depth - i)) as i32).to_le_bytes());
            out.push(3);
            out.extend_from_slice(b"a\0");
        }
        out.extend_from_slice(&[5, 0, 0, 0, 0]);
        out.resize(out.len() + depth, 0);
        out
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        // The root counts as one level: MAX-1 nested documents are accepted...
        let (doc, _) =
            read_document(&nested(MAX_NESTING_DEPTH - 1), usize::MAX).expect("at the limit");
        assert!(doc.contains_key("a"));
        // ...one more is not, and neither is a stack-overflow attempt.
        for depth in [MAX_NESTING_DEPTH, 100_000] {
            assert!(matches!(
                read_document(&nested(depth), usize::MAX),
                Err(ProtocolError::TooDeep(_))
            ));
        }
    }

    /// `{"": {"": ... {}}}`: the fewest bytes a nesting depth can take.
    fn nested_minimal(depth: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + 7 * depth);
        for i in 0..depth {
            out.extend_from_slice(&((5 + 7 * (depth - i)) as i32).to_le_bytes());
            out.push(3);
            out.push(0);
        }
        out.extend_from_slice(&[5, 0, 0, 0, 0]);
        out.resize(out.len() + depth, 0);
        out
    }

    #[test]
    fn the_smallest_too_deep_document_is_still_walked() {
        // The size shortcut must never let a too-deep document through: the most compact
        // encoding of the first refused depth is exactly at the walk's size threshold.
        let at_limit = nested_minimal(MAX_NESTING_DEPTH - 1);
        assert!(at_limit.len() < docdb::rawdoc::MIN_BYTES_PER_LEVEL * MAX_NESTING_DEPTH);
        read_document(&at_limit, usize::MAX).expect("at the limit");
        let over = nested_minimal(MAX_NESTING_DEPTH);
        assert!(over.len() >= docdb::rawdoc::MIN_BYTES_PER_LEVEL * MAX_NESTING_DEPTH);
        assert!(matches!(
            read_document(&over, usize::MAX),
            Err(ProtocolError::TooDeep(_))
        ));
    }

    #[test]
    fn op_query_and_reply_round_trip() {
        let q = client::op_query(3, "admin", &doc! {"isMaster": 1});
        let inc = decode(&q).expect("decode");
        let Request::Query(query) = inc.request else {
            panic!("not OP_QUERY")
        };
        assert_eq!(query.full_collection_name, "admin.$cmd");
        let reply = encode_reply(9, 3, &doc! {"ok": 1.0}, None).expect("encode");
        let (h, d) = client::decode_reply(&reply).expect("decode reply");
        assert_eq!(h.response_to, 3);
        assert_eq!(d.get_f64("ok").ok(), Some(1.0));
    }

    #[test]
    fn compression_is_limited_to_the_negotiated_and_to_plausible_sizes() {
        let ping = client::op_msg(5, &doc! {"ping": 1}, &[], false);
        let zstd = client::compress(&ping, Compressor::Zstd).expect("compress");
        let only_zlib = Limits {
            max_message: MAX_MESSAGE_SIZE,
            compressors: &[Compressor::Zlib],
        };
        assert!(matches!(
            decode_within(&zstd, &only_zlib),
            Err(ProtocolError::NotNegotiated("zstd"))
        ));
        // Before login, nothing may inflate past the pre-auth size.
        let pre_auth = Limits {
            max_message: MAX_PRE_AUTH_MESSAGE_SIZE,
            compressors: &Compressor::ALL,
        };
        let pad = "x".repeat(2 * MAX_PRE_AUTH_MESSAGE_SIZE);
        let big = client::op_msg(6, &doc! {"ping": 1, "pad": pad}, &[], false);
        let big = client::compress(&big, Compressor::Zlib).expect("compress");
        assert!(big.len() < MAX_PRE_AUTH_MESSAGE_SIZE);
        assert!(matches!(
            decode_within(&big, &pre_auth),
            Err(ProtocolError::DecompressedTooLarge { .. })
        ));
        decode(&big).expect("after login");
        // A size no payload this small can honestly expand to.
        let mut lie = zstd.clone();
        lie[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&40_000_000i32.to_le_bytes());
        assert!(matches!(
            decode(&lie),
            Err(ProtocolError::CompressionRatio { .. })
        ));
    }

    #[test]
    fn a_document_sequence_holds_at_most_max_write_batch_size() {
        let docs = vec![Document::new(); MAX_SEQUENCE_DOCUMENTS];
        let at = client::op_msg(1, &doc! {"insert": "c"}, &[("documents", &docs)], false);
        decode(&at).expect("at the limit");
        let docs = vec![Document::new(); MAX_SEQUENCE_DOCUMENTS + 1];
        let over = client::op_msg(1, &doc! {"insert": "c"}, &[("documents", &docs)], false);
        let err = decode(&over).expect_err("over the limit");
        assert_eq!(CommandError::from(err).code, 16);
    }

    #[test]
    fn compressed_messages_round_trip_with_every_compressor() {
        for c in Compressor::ALL {
            let msg = client::op_msg(5, &doc! {"ping": 1, "pad": "x".repeat(1000)}, &[], true);
            let wrapped = client::compress(&msg, c).expect("compress");
            assert!(wrapped.len() < msg.len());
            let inc = decode(&wrapped).expect("decode");
            assert_eq!(inc.compressor, Some(c));
            let reply = encode_msg(1, 5, &doc! {"ok": 1.0}, Some(c)).expect("encode");
            let (_, d) = client::decode_reply(&reply).expect("reply");
            assert_eq!(d.get_f64("ok").ok(), Some(1.0));
        }
    }

    #[test]
    fn truncated_and_lying_lengths_are_rejected() {
        let bytes = client::op_msg(1, &doc! {"ping": 1}, &[], false);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        let mut bad = bytes.clone();
        // Body document claims to be longer than the message.
        bad[21] = 0x7F;
        assert!(decode(&bad).is_err());
        assert!(matches!(
            decode(&{
                let mut b = bytes.clone();
                b[12..16].copy_from_slice(&99i32.to_le_bytes());
                b
            }),
            Err(ProtocolError::UnknownOpcode(99))
        ));
    }
}
