//! The one error-code table: every error tarn returns over HTTP is one of these codes, with the
//! status MLflow uses for it, so the stock client reads our errors like its own server's.

use std::fmt;

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

/// An error with its wire code and a message meant for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

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
        }
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
}

impl From<crate::search::SearchError> for Error {
    fn from(err: crate::search::SearchError) -> Self {
        Self::invalid(err.0)
    }
}
