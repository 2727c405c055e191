//! What goes wrong in the lake, by kind, and its one mapping to the wire table.

use deltalake::DeltaTableError;
use deltalake::datafusion::common::DataFusionError;
use deltalake::kernel::transaction::TransactionError;
use tarn_core::{Error, ErrorCode};

/// A failure of a Delta table or of a SQL statement. It becomes the wire error in one place
/// (`From<LakeError> for Error`): the kind decides the code, the table names the message, and
/// the library's error stays underneath as the source for the logs.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// A table that cannot be opened, read or committed to.
    #[error("table {table}: {source}")]
    Table {
        table: String,
        source: DeltaTableError,
    },
    /// A write to a table: data that does not fit it is the caller's mistake.
    #[error("writing table {table}: {source}")]
    Write {
        table: String,
        source: DeltaTableError,
    },
    /// A SQL statement that failed to plan or to run.
    #[error(transparent)]
    Sql(#[from] DataFusionError),
}

impl LakeError {
    pub fn table(table: &str, source: DeltaTableError) -> Self {
        Self::Table {
            table: table.to_string(),
            source,
        }
    }
    pub fn write(table: &str, source: DeltaTableError) -> Self {
        Self::Write {
            table: table.to_string(),
            source,
        }
    }
}

impl From<LakeError> for Error {
    fn from(err: LakeError) -> Self {
        match err {
            LakeError::Table { table, source } => table_failure(&table, source),
            LakeError::Write { table, source } => write_failure(&table, source),
            LakeError::Sql(source) => sql_failure(source),
        }
    }
}

/// A table that cannot be opened is named in the error, never a panic or a bare I/O message;
/// a write that lost to a conflicting one is the retryable `ABORTED`.
fn table_failure(table: &str, source: DeltaTableError) -> Error {
    match &source {
        DeltaTableError::NotATable(_) => Error::invalid(format!(
            "No Delta table for {table}: its location holds no Delta log"
        )),
        DeltaTableError::Transaction {
            source:
                conflict @ (TransactionError::CommitConflict(_)
                | TransactionError::MaxCommitAttempts(_)
                | TransactionError::VersionAlreadyExists(_)),
        } => Error::new(
            ErrorCode::Aborted,
            format!(
                "Table {table} was changed by another write at the same time ({conflict}); try again"
            ),
        ),
        other => Error::internal(format!("Table {table} cannot be read: {other}")),
    }
    .with_source(source)
}

/// Data that does not fit the table is the caller's mistake (400), not the server's.
fn write_failure(table: &str, source: DeltaTableError) -> Error {
    match source {
        DeltaTableError::SchemaMismatch { .. }
        | DeltaTableError::Arrow { .. }
        | DeltaTableError::InvalidData { .. }
        | DeltaTableError::Generic(_) => {
            Error::invalid(format!("The data does not fit table {table}: {source}"))
                .with_source(source)
        }
        other => table_failure(table, other),
    }
}

/// A SQL error is the caller's unless DataFusion failed at run time on its own.
fn sql_failure(source: DataFusionError) -> Error {
    let err = match &source {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_) => Error::invalid(format!("Invalid SQL: {source}")),
        DataFusionError::ResourcesExhausted(_) => Error::new(
            ErrorCode::RequestLimitExceeded,
            format!(
                "The statement needs more memory than one statement may hold (the server's \
                 --sql-memory-limit-mib) and could not spill the rest to disk: {source}"
            ),
        ),
        DataFusionError::ArrowError(err, _) => {
            Error::invalid(format!("SQL execution failed: {err}"))
        }
        DataFusionError::Execution(message) => {
            Error::invalid(format!("SQL execution failed: {message}"))
        }
        DataFusionError::Context(..) | DataFusionError::External(_) => {
            return unwrapped_sql_failure(source);
        }
        // Several planning errors at once (`SELECT x, x` with no `x`): the first one says it.
        DataFusionError::Collection(errors) if !errors.is_empty() => {
            return unwrapped_sql_failure(source);
        }
        // A planning error with a diagnostic attached is still the caller's.
        DataFusionError::Diagnostic(..)
            if matches!(
                source.find_root(),
                DataFusionError::SQL(..)
                    | DataFusionError::Plan(_)
                    | DataFusionError::SchemaError(..)
                    | DataFusionError::NotImplemented(_)
            ) =>
        {
            Error::invalid(format!("Invalid SQL: {}", source.find_root()))
        }
        _ => Error::internal(format!("SQL execution failed: {source}")),
    };
    err.with_source(source)
}

/// A failure DataFusion wraps: its context goes before the inner error's message; one of
/// tarn's own errors raised inside a plan comes back as it was.
fn unwrapped_sql_failure(source: DataFusionError) -> Error {
    match source {
        DataFusionError::Context(context, inner) => {
            let mut err = sql_failure(*inner);
            err.message = format!("{context}: {}", err.message);
            err
        }
        DataFusionError::Collection(mut errors) if !errors.is_empty() => {
            sql_failure(errors.swap_remove(0))
        }
        DataFusionError::External(inner) => match inner.downcast::<Error>() {
            Ok(ours) => *ours,
            Err(other) => Error::internal(format!("SQL execution failed: {other}"))
                .with_source(DataFusionError::External(other)),
        },
        other => sql_failure(other),
    }
}

/// The wire error of a table failure; see [`LakeError::Table`].
pub(crate) fn table_error(table: &str, source: DeltaTableError) -> Error {
    LakeError::table(table, source).into()
}

/// The wire error of a failed write; see [`LakeError::Write`].
pub(crate) fn write_error(table: &str, source: DeltaTableError) -> Error {
    LakeError::write(table, source).into()
}

/// The wire error of a failed statement; see [`LakeError::Sql`].
pub(crate) fn sql_error(source: DataFusionError) -> Error {
    LakeError::Sql(source).into()
}
