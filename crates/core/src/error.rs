//! The one error-code table: every error tarn returns over HTTP is one of these codes, with the
//! status MLflow uses for it, so the stock client reads our errors like its own server's.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidParameterValue,
    ResourceAlreadyExists,
    BadRequest,
    Unauthenticated,
    PermissionDenied,
    ResourceDoesNotExist,
    EndpointNotFound,
    ResourceConflict,
    RequestLimitExceeded,
    InternalError,
    InvalidState,
    NotImplemented,
    TemporarilyUnavailable,
    /// A write lost a race with another that cannot be merged with it; trying again may work.
    Aborted,
    /// The work ran past its time limit.
    DeadlineExceeded,
}

impl ErrorCode {
    /// The name MLflow puts in `error_code`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            Self::ResourceAlreadyExists => "RESOURCE_ALREADY_EXISTS",
            Self::BadRequest => "BAD_REQUEST",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::ResourceDoesNotExist => "RESOURCE_DOES_NOT_EXIST",
            Self::EndpointNotFound => "ENDPOINT_NOT_FOUND",
            Self::ResourceConflict => "RESOURCE_CONFLICT",
            Self::RequestLimitExceeded => "REQUEST_LIMIT_EXCEEDED",
            Self::InternalError => "INTERNAL_ERROR",
            Self::InvalidState => "INVALID_STATE",
            Self::NotImplemented => "NOT_IMPLEMENTED",
            Self::TemporarilyUnavailable => "TEMPORARILY_UNAVAILABLE",
            Self::Aborted => "ABORTED",
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
        }
    }

    /// The HTTP status of MLflow's `ERROR_CODE_TO_HTTP_STATUS` (note: RESOURCE_ALREADY_EXISTS is 400).
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidParameterValue | Self::ResourceAlreadyExists | Self::BadRequest => 400,
            Self::Unauthenticated => 401,
            Self::PermissionDenied => 403,
            Self::ResourceDoesNotExist | Self::EndpointNotFound => 404,
            Self::ResourceConflict | Self::Aborted => 409,
            Self::RequestLimitExceeded => 429,
            Self::InternalError | Self::InvalidState => 500,
            Self::NotImplemented => 501,
            Self::TemporarilyUnavailable => 503,
            Self::DeadlineExceeded => 504,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What lies under an error: the failure of a library or the system that caused it.
pub type Source = Arc<dyn StdError + Send + Sync + 'static>;

/// An error with its wire code, a message meant for the user, and (for failures of storage,
/// the lake or the network) the error underneath, kept for the logs rather than flattened
/// into the message.
#[derive(Debug, Clone)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    source: Option<Source>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

/// Two errors are the same answer when their code and message are: the source is for the logs.
impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code && self.message == other.message
    }
}

impl Eq for Error {}

impl Error {
    /// Whether the error says only that the caller cannot see the object (refused, or not
    /// there): a listing leaves such an object out, where any other error (a storage
    /// failure) must reach the caller rather than shorten the list.
    pub fn hides_object(&self) -> bool {
        matches!(
            self.code,
            ErrorCode::PermissionDenied | ErrorCode::ResourceDoesNotExist
        )
    }

    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            source: None,
        }
    }
    /// Keeps `source` as the cause of this error.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }
    /// A failure of the server's own machinery while doing `context`, the cause kept.
    pub fn internal_from(
        context: impl fmt::Display,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self::internal(format!("{context}: {source}")).with_source(source)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameterValue, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ResourceDoesNotExist, message)
    }
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ResourceAlreadyExists, message)
    }
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalError, message)
    }
    /// A service tarn depends on (the database, Redis) cannot answer now; trying later may work.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TemporarilyUnavailable, message)
    }

    /// The message and every cause under it, for the server's log: what a client sees is the
    /// message alone.
    pub fn report(&self) -> String {
        let mut report = self.message.clone();
        let mut cause = StdError::source(self);
        while let Some(err) = cause {
            let text = err.to_string();
            // Causes often repeat their own cause in their message; say each thing once.
            if !report.contains(&text) {
                report.push_str(" <- ");
                report.push_str(&text);
            }
            cause = err.source();
        }
        report
    }
}

impl From<crate::search::SearchError> for Error {
    fn from(err: crate::search::SearchError) -> Self {
        Self::invalid(err.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_kept_for_the_log_and_left_out_of_the_answer() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "disk says no");
        let err = Error::internal_from("cannot write table main.s.t", io);
        assert_eq!(err.code, ErrorCode::InternalError);
        assert_eq!(err.message, "cannot write table main.s.t: disk says no");
        let source = StdError::source(&err).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("disk says no"));
        // The cause already in the message is not said twice.
        assert_eq!(err.report(), "cannot write table main.s.t: disk says no");

        let wrapped = Error::unavailable("the database cannot be reached")
            .with_source(std::io::Error::other("connection refused"));
        assert_eq!(
            wrapped.report(),
            "the database cannot be reached <- connection refused"
        );
        assert_eq!(
            wrapped,
            Error::unavailable("the database cannot be reached"),
            "equal answers compare equal whatever lies under them"
        );
    }
}
