//! The one MongoDB error: what every docdb operation returns and what the wire layer
//! answers a command with (`wire::CommandError` is this type), with the one table of
//! codes either produces.
//!
//! MongoDB clients branch on the numeric `code` (and sometimes on `codeName`), so each
//! error carries exactly what a reply renders as `{ok: 0, errmsg, code, codeName}` plus
//! optional extra fields (for example `keyPattern` / `keyValue` of a duplicate key).
//! Storage failures become codes in one place, `engine::map_err`.

use bson::{Bson, Document, doc};

/// A MongoDB error code with its canonical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    pub code: i32,
    pub name: &'static str,
}

macro_rules! codes {
    ($($ident:ident = $code:expr, $name:expr;)*) => {
        $(pub const $ident: ErrorCode = ErrorCode { code: $code, name: $name };)*
    };
}

/// Every code docdb and the wire layer produce. Names follow MongoDB's `error_codes.yml`.
pub mod code {
    use super::ErrorCode;
    codes! {
        INTERNAL_ERROR = 1, "InternalError";
        BAD_VALUE = 2, "BadValue";
        NO_SUCH_KEY = 4, "NoSuchKey";
        FAILED_TO_PARSE = 9, "FailedToParse";
        USER_NOT_FOUND = 11, "UserNotFound";
        UNAUTHORIZED = 13, "Unauthorized";
        TYPE_MISMATCH = 14, "TypeMismatch";
        OVERFLOW = 15, "Overflow";
        INVALID_LENGTH = 16, "InvalidLength";
        PROTOCOL_ERROR = 17, "ProtocolError";
        AUTHENTICATION_FAILED = 18, "AuthenticationFailed";
        ILLEGAL_OPERATION = 20, "IllegalOperation";
        NAMESPACE_NOT_FOUND = 26, "NamespaceNotFound";
        INDEX_NOT_FOUND = 27, "IndexNotFound";
        PATH_NOT_VIABLE = 28, "PathNotViable";
        ROLE_NOT_FOUND = 31, "RoleNotFound";
        CONFLICTING_UPDATE_OPERATORS = 40, "ConflictingUpdateOperators";
        CURSOR_NOT_FOUND = 43, "CursorNotFound";
        NAMESPACE_EXISTS = 48, "NamespaceExists";
        MAX_TIME_MS_EXPIRED = 50, "MaxTimeMSExpired";
        DOLLAR_PREFIXED_FIELD_NAME = 52, "DollarPrefixedFieldName";
        INVALID_ID_FIELD = 53, "InvalidIdField";
        NOT_SINGLE_VALUE_FIELD = 54, "NotSingleValueField";
        EMPTY_FIELD_NAME = 56, "EmptyFieldName";
        COMMAND_NOT_FOUND = 59, "CommandNotFound";
        IMMUTABLE_FIELD = 66, "ImmutableField";
        CANNOT_CREATE_INDEX = 67, "CannotCreateIndex";
        INVALID_OPTIONS = 72, "InvalidOptions";
        INVALID_NAMESPACE = 73, "InvalidNamespace";
        INDEX_OPTIONS_CONFLICT = 85, "IndexOptionsConflict";
        INDEX_KEY_SPECS_CONFLICT = 86, "IndexKeySpecsConflict";
        OPERATION_FAILED = 96, "OperationFailed";
        WRITE_CONFLICT = 112, "WriteConflict";
        CLIENT_METADATA_CANNOT_BE_MUTATED = 186, "ClientMetadataCannotBeMutated";
        NOT_IMPLEMENTED = 238, "NotImplemented";
        OPERATION_NOT_SUPPORTED_IN_TRANSACTION = 263, "OperationNotSupportedInTransaction";
        QUERY_EXCEEDED_MEMORY_LIMIT = 292, "QueryExceededMemoryLimitNoDiskUseAllowed";
        MECHANISM_UNAVAILABLE = 334, "MechanismUnavailable";
        UNSUPPORTED_OP_QUERY_COMMAND = 352, "UnsupportedOpQueryCommand";
        BSON_OBJECT_TOO_LARGE = 10334, "BSONObjectTooLarge";
        DUPLICATE_KEY = 11000, "DuplicateKey";
        INTERRUPTED_AT_SHUTDOWN = 11600, "InterruptedAtShutdown";
        INTERRUPTED = 11601, "Interrupted";
        OUT_OF_DISK_SPACE = 14031, "OutOfDiskSpace";
        // Not a MongoDB code: the cluster's keys are unusable (CMK revoked, disabled,
        // ...). Chosen outside MongoDB's ranges so no driver mistakes it for a retryable
        // or topology-changing error; the message carries the reason.
        CLUSTER_INACCESSIBLE = 50_000, "ClusterInaccessible";
    }

    /// Codes MongoDB reports without a symbolic name ("Location<code>").
    pub const fn location(code: i32) -> ErrorCode {
        ErrorCode {
            code,
            name: "Location",
        }
    }
}

/// A MongoDB-shaped error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{errmsg} (code {code}, {code_name})")]
pub struct Error {
    pub code: i32,
    pub code_name: String,
    pub errmsg: String,
    /// Extra fields rendered next to `errmsg` (e.g. `keyPattern`, `keyValue`).
    pub info: Option<Box<Document>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, errmsg: impl Into<String>) -> Self {
        let code_name = if code.name == "Location" {
            format!("Location{}", code.code)
        } else {
            code.name.to_string()
        };
        Error {
            code: code.code,
            code_name,
            errmsg: errmsg.into(),
            info: None,
        }
    }

    pub fn with_info(mut self, info: Document) -> Self {
        self.info = Some(Box::new(info));
        self
    }

    pub fn bad_value(msg: impl Into<String>) -> Self {
        Self::new(code::BAD_VALUE, msg)
    }

    pub fn failed_to_parse(msg: impl Into<String>) -> Self {
        Self::new(code::FAILED_TO_PARSE, msg)
    }

    pub fn type_mismatch(msg: impl Into<String>) -> Self {
        Self::new(code::TYPE_MISMATCH, msg)
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(code::INTERNAL_ERROR, msg)
    }

    pub fn unauthorized(msg: impl Into<String>) -> Self {
        Self::new(code::UNAUTHORIZED, msg)
    }

    /// SCRAM's one answer to every failed authentication, whatever failed.
    pub fn auth_failed() -> Self {
        Self::new(code::AUTHENTICATION_FAILED, "Authentication failed.")
    }

    pub fn location(code: i32, msg: impl Into<String>) -> Self {
        Self::new(code::location(code), msg)
    }

    /// True for `E11000` duplicate key errors.
    pub fn is_duplicate_key(&self) -> bool {
        self.code == code::DUPLICATE_KEY.code
    }

    /// `{ok: 0, errmsg, code, codeName, ...info}` as a command reply body.
    pub fn to_document(&self) -> Document {
        let mut d = doc! {
            "ok": 0.0,
            "errmsg": self.errmsg.clone(),
            "code": self.code,
            "codeName": self.code_name.clone(),
        };
        if let Some(info) = &self.info {
            for (k, v) in info.iter() {
                d.insert(k.clone(), v.clone());
            }
        }
        d
    }

    /// The `writeErrors[i]` element shape: `{index, code, codeName, errmsg, ...info}`.
    pub fn to_write_error(&self, index: usize) -> Document {
        let mut d = doc! {
            "index": index as i32,
            "code": self.code,
            "codeName": self.code_name.clone(),
            "errmsg": self.errmsg.clone(),
        };
        if let Some(info) = &self.info {
            for (k, v) in info.iter() {
                d.insert(k.clone(), v.clone());
            }
        }
        d
    }
}

/// Short human name of a BSON value's type, as MongoDB prints it in messages.
pub fn type_name(v: &Bson) -> &'static str {
    match v {
        Bson::Double(_) => "double",
        Bson::String(_) => "string",
        Bson::Document(_) => "object",
        Bson::Array(_) => "array",
        Bson::Binary(_) => "binData",
        Bson::Undefined => "undefined",
        Bson::ObjectId(_) => "objectId",
        Bson::Boolean(_) => "bool",
        Bson::DateTime(_) => "date",
        Bson::Null => "null",
        Bson::RegularExpression(_) => "regex",
        Bson::DbPointer(_) => "dbPointer",
        Bson::JavaScriptCode(_) => "javascript",
        Bson::Symbol(_) => "symbol",
        Bson::JavaScriptCodeWithScope(_) => "javascriptWithScope",
        Bson::Int32(_) => "int",
        Bson::Timestamp(_) => "timestamp",
        Bson::Int64(_) => "long",
        Bson::Decimal128(_) => "decimal",
        Bson::MinKey => "minKey",
        Bson::MaxKey => "maxKey",
    }
}

/// Levels of nesting an error message renders; deeper values print as `...`. Messages
/// stay short, and the recursion below stays bounded whatever the value's depth.
const RENDER_DEPTH: usize = 20;

/// Render a value in MongoDB's shell-like notation for error messages
/// (`{ a: 1 }`, `"x"`, `ObjectId('...')`).
pub fn render(v: &Bson) -> String {
    render_at(v, 0)
}

fn render_at(v: &Bson, level: usize) -> String {
    if level > RENDER_DEPTH && matches!(v, Bson::Document(_) | Bson::Array(_)) {
        return "...".into();
    }
    match v {
        Bson::String(s) => format!("\"{s}\""),
        Bson::Document(d) => render_doc_at(d, level),
        Bson::Array(a) => {
            let parts: Vec<String> = a.iter().map(|v| render_at(v, level + 1)).collect();
            if parts.is_empty() {
                "[]".into()
            } else {
                format!("[ {} ]", parts.join(", "))
            }
        }
        Bson::ObjectId(o) => format!("ObjectId('{o}')"),
        Bson::Int64(i) => i.to_string(),
        Bson::Int32(i) => i.to_string(),
        Bson::Double(f) => {
            if f.fract() == 0.0 && f.is_finite() && f.abs() < 1e15 {
                format!("{f:.1}")
            } else {
                f.to_string()
            }
        }
        Bson::Null => "null".into(),
        Bson::Boolean(b) => b.to_string(),
        other => other.to_string(),
    }
}

pub fn render_doc(d: &Document) -> String {
    render_doc_at(d, 0)
}

fn render_doc_at(d: &Document, level: usize) -> String {
    if d.is_empty() {
        return "{}".into();
    }
    let parts: Vec<String> = d
        .iter()
        .map(|(k, v)| format!("{k}: {}", render_at(v, level + 1)))
        .collect();
    format!("{{ {} }}", parts.join(", "))
}
