//! The metadata store. One body of SQL logic (`backend.rs` for tracking and identity,
//! `registry.rs` for the registry and event log, `webhooks.rs` for webhooks and their delivery
//! queue, and the catalog, lineage, features and serving files) is compiled once per backend,
//! with the dialect's differences in `Dialect` and its SQL access as `db`: sqlx for PostgreSQL
//! (`pg`), rusqlite on the calling thread for SQLite (`lite`, which says why). Each backend has
//! its own migrations. The conformance suite in `tests/it` runs against both.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tarn_core::store::MetaStore;
use tarn_core::{Error, Result};

pub mod lite;
mod migrate;

pub mod pg {
    //! The PostgreSQL side of the store's SQL access: sqlx, under the names `lite` gives
    //! SQLite's.
    pub use sqlx::{Row, query, query_as, query_scalar};
    pub type Pool = sqlx::PgPool;
    pub type Transaction<'c> = sqlx::Transaction<'c, sqlx::Postgres>;
    pub type QueryBuilder = sqlx::QueryBuilder<sqlx::Postgres>;
    pub type Separated<'b> = sqlx::query_builder::Separated<'b, sqlx::Postgres, &'static str>;
    pub type DbRow = sqlx::postgres::PgRow;

    /// A value that can be bound to a statement.
    pub trait Bind<'a>:
        'a + sqlx::Encode<'a, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send
    {
    }
    impl<'a, T> Bind<'a> for T where
        T: 'a + sqlx::Encode<'a, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send
    {
    }

    /// Where a statement runs.
    pub trait Executor<'e>: sqlx::Executor<'e, Database = sqlx::Postgres> {}
    impl<'e, T: sqlx::Executor<'e, Database = sqlx::Postgres>> Executor<'e> for T {}

    /// A query built by a `QueryBuilder`.
    pub type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

    /// Runs a read that may be long (a search) on a connection of its own, and cancels it on
    /// the server when the caller stops waiting (the request was dropped): PostgreSQL would
    /// otherwise run it on to the statement timeout.
    pub async fn fetch_all_cancelling(
        pool: &Pool,
        query: Query<'_>,
    ) -> Result<Vec<DbRow>, sqlx::Error> {
        let mut connection = pool.acquire().await?;
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *connection)
            .await?;
        let mut guard = CancelOnDrop {
            pool: pool.clone(),
            connection: Some(connection),
            backend,
        };
        let Some(connection) = guard.connection.as_mut() else {
            return Err(sqlx::Error::PoolClosed);
        };
        let rows = query.fetch_all(&mut **connection).await;
        // Done: the connection goes back to the pool as usual.
        drop(guard.connection.take());
        rows
    }

    /// Holds the connection of a read in flight; dropped before the read ended, it takes the
    /// connection out of the pool (so no other query can be on it when the cancel arrives),
    /// cancels the read and closes the connection.
    struct CancelOnDrop {
        pool: Pool,
        connection: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
        backend: i32,
    }

    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            let Some(connection) = self.connection.take() else {
                return;
            };
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let connection = connection.detach();
            let pool = self.pool.clone();
            let backend = self.backend;
            runtime.spawn(async move {
                let cancelled = sqlx::query("SELECT pg_cancel_backend($1)")
                    .bind(backend)
                    .execute(&pool)
                    .await;
                if let Err(err) = cancelled {
                    tracing::warn!(error = %err, backend, "could not cancel an abandoned query");
                }
                let _ = sqlx::Connection::close_hard(connection).await;
            });
        }
    }
}

/// What differs between the SQL dialects, kept small on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

pub mod sqlite {
    //! SQLite backend: WAL, synchronous=FULL (a commit is durable before it is acknowledged),
    //! one writer connection so writers queue in-process instead of failing with SQLITE_BUSY.
    use crate::lite as db;
    const DIALECT: crate::Dialect = crate::Dialect::Sqlite;
    include!("backend.rs");
    include!("registry.rs");
    include!("webhooks.rs");
    include!("catalog.rs");
    include!("lineage.rs");
    include!("features.rs");
    include!("serving.rs");
}

pub mod postgres {
    //! PostgreSQL backend: one pool for reads and writes.
    use crate::pg as db;
    const DIALECT: crate::Dialect = crate::Dialect::Postgres;
    include!("backend.rs");
    include!("registry.rs");
    include!("webhooks.rs");
    include!("catalog.rs");
    include!("lineage.rs");
    include!("features.rs");
    include!("serving.rs");
}

pub use postgres::Store as PostgresStore;
pub use sqlite::Store as SqliteStore;

/// The longest any one statement may run on PostgreSQL.
pub const POSTGRES_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens the store a URL names (`sqlite://path`, `postgres://...`) and applies migrations.
pub async fn open(url: &str) -> Result<Arc<dyn MetaStore>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|e| Error::invalid(format!("invalid PostgreSQL URL: {e}")))?
            // No statement of tarn's runs for long; one that does (a pathological search) is
            // cancelled by the server rather than holding a connection and a core.
            .options([(
                "statement_timeout",
                format!("{}ms", POSTGRES_STATEMENT_TIMEOUT.as_millis()),
            )]);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|e| Error::internal(format!("cannot connect to PostgreSQL: {e}")))?;
        migrate::postgres(&pool).await?;
        Ok(Arc::new(PostgresStore::new(pool.clone(), pool)))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        open_sqlite(path).await
    } else {
        Err(Error::invalid(format!(
            "unsupported database URL '{url}': use sqlite://PATH or postgres://..."
        )))
    }
}

async fn open_sqlite(path: &str) -> Result<Arc<dyn MetaStore>> {
    let options = lite::Options {
        path: std::path::PathBuf::from(path),
        read_only: false,
        // Checkpoints copy the WAL back into the database and fsync it; done by the committing
        // connection they stall every writer, so a background thread does them instead.
        wal_autocheckpoint: Some(16384),
    };
    let cannot_open =
        |e: sqlx::Error| Error::internal(format!("cannot open SQLite database '{path}': {e}"));
    let write = lite::Pool::open(options.clone(), 1).map_err(cannot_open)?;
    migrate::sqlite(&write).await?;
    write
        .checkpoint_in_background(Duration::from_millis(200))
        .map_err(cannot_open)?;
    // Statements run on the threads that await them: as many readers as worker threads are
    // busy at once, and a few more for transactions that read.
    let read = lite::Pool::open(
        lite::Options {
            read_only: true,
            wal_autocheckpoint: None,
            ..options
        },
        4,
    )
    .map_err(cannot_open)?;
    Ok(Arc::new(SqliteStore::new(read, write)))
}

pub(crate) fn db_error(err: sqlx::Error) -> Error {
    tracing::error!(error = %err, "database error");
    Error::internal(format!("database error: {err}"))
}
