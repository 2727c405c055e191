//! The metadata store. One body of SQL logic (`backend.rs` for tracking and identity,
//! `registry.rs` for the registry and event log, `webhooks.rs` for webhooks and their delivery
//! queue) is compiled once per backend, with the dialect's differences in `Dialect`; each
//! backend has its own migrations. The conformance suite in `tests/it` runs against both.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tarn_core::store::MetaStore;
use tarn_core::{Error, Result};

mod migrate;

/// What differs between the SQL dialects, kept small on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

pub mod sqlite {
    //! SQLite backend: WAL, synchronous=FULL (a commit is durable before it is acknowledged),
    //! one writer connection so writers queue in-process instead of failing with SQLITE_BUSY.
    type Db = sqlx::Sqlite;
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
    type Db = sqlx::Postgres;
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

/// Opens the store a URL names (`sqlite://path`, `postgres://...`) and applies migrations.
pub async fn open(url: &str) -> Result<Arc<dyn MetaStore>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
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
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
        .map_err(|e| Error::invalid(format!("bad SQLite path '{path}': {e}")))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(30))
        // MLflow's LIKE is case-sensitive (ILIKE is not); SQLite's is not by default.
        .pragma("case_sensitive_like", "ON")
        // Page cache and memory-mapped reads: the default 2 MB cache turns every search over a
        // few thousand runs into reads from the OS.
        .pragma("cache_size", "-16384")
        .pragma("mmap_size", "268435456")
        .pragma("temp_store", "MEMORY")
        .pragma("journal_size_limit", "67108864");
    // Checkpoints copy the WAL back into the database and fsync it; done by the committing
    // connection they stall every writer, so a background connection does them instead.
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone().pragma("wal_autocheckpoint", "16384"))
        .await
        .map_err(|e| Error::internal(format!("cannot open SQLite database '{path}': {e}")))?;
    migrate::sqlite(&write).await?;
    let checkpointer = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
        .map_err(|e| Error::internal(format!("cannot open SQLite database '{path}': {e}")))?;
    tokio::spawn(checkpoint_regularly(checkpointer));
    let read = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options.read_only(true))
        .await
        .map_err(|e| Error::internal(format!("cannot open SQLite database '{path}': {e}")))?;
    Ok(Arc::new(SqliteStore::new(read, write)))
}

/// Checkpoints the SQLite WAL in the background. PASSIVE never blocks readers or the writer.
async fn checkpoint_regularly(pool: sqlx::SqlitePool) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %err, "WAL checkpoint failed");
        }
    }
}

pub(crate) fn db_error(err: sqlx::Error) -> Error {
    tracing::error!(error = %err, "database error");
    Error::internal(format!("database error: {err}"))
}
