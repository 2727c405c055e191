//! What goes wrong in the metadata store, by kind, and its one mapping to the wire table.

use tarn_core::Error;

/// A failure of the metadata store. Handlers never see it: it becomes the wire error in one
/// place (`From<StoreError> for Error`), which keeps it as the source for the logs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached, or gave no connection in time: the client may retry.
    #[error("the metadata database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A stored value that does not decode (a damaged row, or one a newer tarn wrote): an
    /// error naming the column, never read as a default.
    #[error("a stored value cannot be read: {0}")]
    Undecodable(#[source] sqlx::Error),
    /// Any other failure the database reported.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => Self::Unavailable(err),
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::TypeNotFound { .. } => Self::Undecodable(err),
            _ => Self::Database(err),
        }
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        let message = err.to_string();
        match err {
            StoreError::Unavailable(_) => Error::unavailable(message),
            StoreError::Undecodable(_) | StoreError::Database(_) => Error::internal(message),
        }
        .with_source(err)
    }
}

/// A database error as the caller sees it, logged where it happened.
pub(crate) fn db_error(err: sqlx::Error) -> Error {
    let err = StoreError::from(err);
    tracing::error!(error = %err, "metadata store error");
    err.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tarn_core::ErrorCode;

    #[test]
    fn each_kind_of_database_failure_has_its_wire_code() {
        let unreachable = db_error(sqlx::Error::PoolTimedOut);
        assert_eq!(unreachable.code, ErrorCode::TemporarilyUnavailable);
        assert!(
            unreachable.message.contains("unavailable"),
            "{}",
            unreachable.message
        );

        let undecodable = db_error(sqlx::Error::ColumnDecode {
            index: "status".into(),
            source: "unknown stored value \"SOMETIMES\"".into(),
        });
        assert_eq!(undecodable.code, ErrorCode::InternalError);
        assert!(
            undecodable.message.contains("status"),
            "{}",
            undecodable.message
        );
        assert!(
            undecodable.report().contains("SOMETIMES"),
            "the cause reaches the log: {}",
            undecodable.report()
        );

        let other = db_error(sqlx::Error::RowNotFound);
        assert_eq!(other.code, ErrorCode::InternalError, "never a 404");
        assert!(
            other.message.starts_with("database error"),
            "{}",
            other.message
        );
    }
}
