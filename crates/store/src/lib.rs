//! The metadata store. One body of SQL, a module per aggregate in `sql/` (experiments, runs,
//! logged models, identity, permissions, the registry and its event log, webhooks, catalog,
//! lineage, features, serving; `backend.rs` holds the store and the helpers they share), is
//! compiled once per backend (`sqlite.rs`, `postgres.rs`), with the dialect's differences in
//! `Dialect` and its SQL access as `db`: sqlx for PostgreSQL (`pg`), rusqlite on the calling
//! thread for SQLite (`lite`, which says why). Each backend has its own migrations. The
//! conformance suite in `tests/it` runs against both.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tarn_core::store::MetaStore;
use tarn_core::{Error, Result};

pub mod backup;
mod common;
mod error;
pub mod lite;
mod migrate;
pub mod pg;
pub mod postgres;
pub mod sqlite;

pub use common::Dialect;
pub use error::StoreError;
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
            .map_err(|e| Error::internal_from("cannot connect to PostgreSQL", e))?;
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
        |e: sqlx::Error| Error::internal_from(format!("cannot open SQLite database '{path}'"), e);
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
