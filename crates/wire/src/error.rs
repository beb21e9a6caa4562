//! Errors of the wire layer: protocol (bad bytes from a client), server (start-up,
//! sockets, TLS) and command (what goes back to a client as `{ok: 0, ...}`, which is
//! docdb's MongoDB error: one type and one code table for both crates).

use bson::Document;

/// A message that cannot be decoded. The connection answers it with an error reply when
/// the frame boundaries are still trustworthy, and closes otherwise.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("truncated message: {0}")]
    Truncated(&'static str),
    #[error("invalid length {0}")]
    BadLength(i32),
    #[error("message of {0} bytes exceeds the maximum of 48000000")]
    TooLarge(usize),
    #[error("unsupported opcode {0}")]
    UnknownOpcode(i32),
    #[error("unknown required OP_MSG flag bits {0:#x}")]
    UnknownRequiredFlags(u32),
    #[error("unknown OP_MSG section kind {0}")]
    UnknownSectionKind(u8),
    #[error("OP_MSG checksum mismatch")]
    ChecksumMismatch,
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    #[error("invalid BSON: {0}")]
    InvalidBson(String),
    #[error("BSON document of {0} bytes is too large")]
    DocumentTooLarge(usize),
    #[error("BSON document nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("unsupported compressor id {0}")]
    UnsupportedCompressor(u8),
    #[error("compression: {0}")]
    Compression(String),
    #[error("compressor {0} was not negotiated in hello")]
    NotNegotiated(&'static str),
    #[error("compressed message declares {size} bytes; at most {max} are allowed here")]
    DecompressedTooLarge { size: usize, max: usize },
    #[error(
        "compressed message of {compressed} bytes declares {size} bytes uncompressed, more than the allowed ratio"
    )]
    CompressionRatio { size: usize, compressed: usize },
    #[error("Write batch sizes must be between 1 and {0}: a document sequence has more")]
    TooManyDocuments(usize),
}

/// Failures starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error(
        "refusing to listen without TLS: set `insecure_plaintext: true` to allow plaintext connections"
    )]
    TlsRequired,
    #[error("creating the initial admin user: {0}")]
    AdminUser(String),
    #[error("resetting the administrator's password: {0}")]
    AdminPassword(String),
}

/// A command's failure, answered as `{ok: 0, errmsg, code, codeName, ...}`: docdb's
/// MongoDB error, so a docdb failure reaches the client unchanged and both layers draw
/// their codes from one table ([`code`]).
pub use docdb::Error as CommandError;
/// The one table of MongoDB codes (docdb's).
pub use docdb::error::code;

impl From<ProtocolError> for CommandError {
    fn from(e: ProtocolError) -> CommandError {
        let code = match e {
            ProtocolError::DocumentTooLarge(_) => code::BSON_OBJECT_TOO_LARGE,
            ProtocolError::TooDeep(_) => code::OVERFLOW,
            ProtocolError::ChecksumMismatch => code::PROTOCOL_ERROR,
            // MongoDB answers decompressed-size problems with BadValue, and oversized
            // write batches with InvalidLength.
            ProtocolError::DecompressedTooLarge { .. } | ProtocolError::CompressionRatio { .. } => {
                code::BAD_VALUE
            }
            ProtocolError::TooManyDocuments(_) => code::INVALID_LENGTH,
            _ => code::PROTOCOL_ERROR,
        };
        CommandError::new(code, e.to_string())
    }
}

/// Result of a command.
pub type CmdResult<T = Document> = Result<T, CommandError>;
