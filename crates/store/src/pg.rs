//! The PostgreSQL side of the store's SQL access: sqlx, under the names `lite` gives
//! SQLite's.
pub use sqlx::{Row, query, query_as, query_scalar};

use crate::error::db_error;
pub type Pool = sqlx::PgPool;
pub type Transaction<'c> = sqlx::Transaction<'c, sqlx::Postgres>;
pub type QueryBuilder = sqlx::QueryBuilder<sqlx::Postgres>;
pub type Separated<'b> = sqlx::query_builder::Separated<'b, sqlx::Postgres, &'static str>;
pub type DbRow = sqlx::postgres::PgRow;

/// PostgreSQL's writer: each write in a transaction of its own, many committing side by side
/// (SQLite's is group commit, `crate::lite::Writer`).
#[derive(Debug, Clone)]
pub struct Writer {
    pool: Pool,
}

impl Writer {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Runs `write` in a transaction and returns its value once committed.
    pub async fn write<T, F>(&self, write: F) -> tarn_core::Result<T>
    where
        F: for<'t> FnOnce(&'t mut Transaction<'static>) -> crate::common::WriteFuture<'t, T>,
    {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let value = write(&mut tx).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(value)
    }
}

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
