//! Errors of the wire layer: protocol (bad bytes from a client), server (start-up,
//! sockets, TLS) and command (what goes back to a client as `{ok: 0, ...}`).

use bson::{Document, doc};

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

/// A MongoDB command error: `{ok: 0, errmsg, code, codeName, ...extra}`.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandError {
    pub code: i32,
    pub code_name: String,
    pub errmsg: String,
    /// Extra reply fields (`keyPattern`, `keyValue`, ...); boxed to keep results small.
    pub extra: Option<Box<Document>>,
}

/// The error codes the wire layer itself produces (names from MongoDB's error_codes.yml).
pub mod code {
    pub const BAD_VALUE: (i32, &str) = (2, "BadValue");
    pub const FAILED_TO_PARSE: (i32, &str) = (9, "FailedToParse");
    pub const UNAUTHORIZED: (i32, &str) = (13, "Unauthorized");
    pub const TYPE_MISMATCH: (i32, &str) = (14, "TypeMismatch");
    pub const AUTHENTICATION_FAILED: (i32, &str) = (18, "AuthenticationFailed");
    pub const ILLEGAL_OPERATION: (i32, &str) = (20, "IllegalOperation");
    pub const NO_SUCH_KEY: (i32, &str) = (4, "NoSuchKey");
    pub const INVALID_LENGTH: (i32, &str) = (16, "InvalidLength");
    pub const COMMAND_NOT_FOUND: (i32, &str) = (59, "CommandNotFound");
    pub const INVALID_NAMESPACE: (i32, &str) = (73, "InvalidNamespace");
    pub const PROTOCOL_ERROR: (i32, &str) = (17, "ProtocolError");
    pub const CURSOR_NOT_FOUND: (i32, &str) = (43, "CursorNotFound");
    pub const USER_NOT_FOUND: (i32, &str) = (11, "UserNotFound");
    pub const MECHANISM_UNAVAILABLE: (i32, &str) = (334, "MechanismUnavailable");
    pub const ROLE_NOT_FOUND: (i32, &str) = (31, "RoleNotFound");
    pub const NOT_IMPLEMENTED: (i32, &str) = (238, "NotImplemented");
    pub const INTERNAL_ERROR: (i32, &str) = (1, "InternalError");
    pub const OPERATION_NOT_SUPPORTED_IN_TRANSACTION: (i32, &str) =
        (263, "OperationNotSupportedInTransaction");
    /// Not a MongoDB code: the cluster's keys are unusable (CMK revoked, disabled, ...).
    /// Chosen outside MongoDB's ranges so no driver mistakes it for a retryable or
    /// topology-changing error; the message carries the reason.
    pub const CLUSTER_INACCESSIBLE: (i32, &str) = (50_000, "ClusterInaccessible");
    /// Retryable: the storage engine is being reopened under the command.
    pub const INTERRUPTED_AT_SHUTDOWN: (i32, &str) = (11_600, "InterruptedAtShutdown");
}

impl CommandError {
    pub fn new(code: (i32, &str), errmsg: impl Into<String>) -> CommandError {
        CommandError {
            code: code.0,
            code_name: code.1.to_string(),
            errmsg: errmsg.into(),
            extra: None,
        }
    }

    pub fn bad_value(msg: impl Into<String>) -> CommandError {
        CommandError::new(code::BAD_VALUE, msg)
    }

    pub fn failed_to_parse(msg: impl Into<String>) -> CommandError {
        CommandError::new(code::FAILED_TO_PARSE, msg)
    }

    pub fn type_mismatch(msg: impl Into<String>) -> CommandError {
        CommandError::new(code::TYPE_MISMATCH, msg)
    }

    pub fn internal(msg: impl Into<String>) -> CommandError {
        CommandError::new(code::INTERNAL_ERROR, msg)
    }

    pub fn unauthorized(msg: impl Into<String>) -> CommandError {
        CommandError::new(code::UNAUTHORIZED, msg)
    }

    pub fn auth_failed() -> CommandError {
        CommandError::new(code::AUTHENTICATION_FAILED, "Authentication failed.")
    }

    /// The reply document.
    pub fn to_document(&self) -> Document {
        let mut d = doc! {
            "ok": 0.0,
            "errmsg": self.errmsg.clone(),
            "code": self.code,
            "codeName": self.code_name.clone(),
        };
        if let Some(extra) = &self.extra {
            for (k, v) in extra.iter() {
                d.insert(k.clone(), v.clone());
            }
        }
        d
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} {})", self.errmsg, self.code, self.code_name)
    }
}

impl std::error::Error for CommandError {}

impl From<docdb::Error> for CommandError {
    fn from(e: docdb::Error) -> CommandError {
        CommandError {
            code: e.code,
            code_name: e.code_name,
            errmsg: e.errmsg,
            extra: e.info.map(|d| Box::new(Document::clone(&d))),
        }
    }
}

impl From<ProtocolError> for CommandError {
    fn from(e: ProtocolError) -> CommandError {
        let code = match e {
            ProtocolError::DocumentTooLarge(_) => (10334, "BSONObjectTooLarge"),
            ProtocolError::TooDeep(_) => (15, "Overflow"),
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
