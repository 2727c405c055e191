//! The SQLite side of the store's SQL access: the handful of sqlx shapes the store's SQL logic
//! uses (`query`, `query_scalar`, `query_as`, `QueryBuilder`, pools, transactions, rows,
//! `sqlx::Error`), over rusqlite, run on the calling thread.
//!
//! Why not sqlx's own SQLite driver: it hands every statement to a worker thread per
//! connection and wakes the caller with the answer, two cross-thread wake-ups per statement.
//! Measured under load on this project's 2-core machines that hand-off was most of a request's
//! CPU (two thirds of it in the kernel), while the statements themselves read memory-mapped
//! pages in microseconds. Here a statement runs where it is awaited, `COMMIT` and its fsync
//! included (once per group of writes). What can wait long runs on the blocking pool instead:
//! a `BEGIN IMMEDIATE` that finds another process's writer holding the lock, and a write
//! outside a transaction (it may wait for that lock too).
//!
//! PostgreSQL keeps sqlx (`crate::pg`); the store's SQL logic is written once against either.

use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::types::{Value, ValueRef};
use sqlx::error::{DatabaseError, ErrorKind};

mod group_commit;

/// SQLite's writer: group commit on the pool's one writing connection.
pub use group_commit::GroupCommit as Writer;

type SqlResult<T> = std::result::Result<T, sqlx::Error>;

/// A row as the store's decoders read it.
pub type DbRow = LiteRow;

/// Prepared statements each connection keeps (the store has about two hundred distinct ones;
/// search statements vary with their filters).
const STATEMENT_CACHE: usize = 256;

/// How long a statement waits for another process's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// How every connection to the metadata database is set up.
#[derive(Debug, Clone)]
pub struct Options {
    pub path: PathBuf,
    pub read_only: bool,
    /// Pages in the WAL before the committing connection checkpoints; none: SQLite's default.
    pub wal_autocheckpoint: Option<u32>,
}

impl Options {
    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        let flags = if self.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = rusqlite::Connection::open_with_flags(&self.path, flags)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mut pragmas = vec![
            ("journal_mode", "WAL".to_string()),
            // A commit is durable before it is acknowledged.
            ("synchronous", "FULL".to_string()),
            ("foreign_keys", "ON".to_string()),
            // MLflow's LIKE is case-sensitive (ILIKE is not); SQLite's is not by default.
            ("case_sensitive_like", "ON".to_string()),
            // Page cache and memory-mapped reads: the default 2 MB cache turns every search
            // over a few thousand runs into reads from the OS.
            ("cache_size", "-16384".to_string()),
            ("mmap_size", "268435456".to_string()),
            ("temp_store", "MEMORY".to_string()),
            ("journal_size_limit", "67108864".to_string()),
        ];
        if self.read_only {
            // The journal mode is the database's; a reader cannot set it.
            pragmas.retain(|(name, _)| *name != "journal_mode");
        }
        if let Some(pages) = self.wal_autocheckpoint {
            pragmas.push(("wal_autocheckpoint", pages.to_string()));
        }
        for (name, value) in pragmas {
            set_pragma(&connection, name, &value)?;
        }
        Ok(connection)
    }
}

/// Sets a pragma, waiting out another process that holds the lock it needs: switching a new
/// database to WAL answers "locked" at once, without the busy handler, while a second process
/// opening it at the same moment reads it (two replicas started together).
pub fn set_pragma(
    connection: &rusqlite::Connection,
    name: &str,
    value: &str,
) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match connection.pragma_update(None, name, value) {
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if matches!(
                    failure.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// A fixed set of connections to one database file, opened up front.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    options: Options,
    slots: Vec<Arc<tokio::sync::Mutex<Connection>>>,
    /// One per slot: whoever holds a permit finds a free slot.
    permits: Arc<tokio::sync::Semaphore>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("path", &self.inner.options.path)
            .field("read_only", &self.inner.options.read_only)
            .field("connections", &self.inner.slots.len())
            .finish()
    }
}

impl Pool {
    pub fn open(options: Options, connections: usize) -> SqlResult<Self> {
        let slots = (0..connections.max(1))
            .map(|_| {
                let raw = options.open().map_err(lite_error)?;
                Ok(Arc::new(tokio::sync::Mutex::new(Connection { raw })))
            })
            .collect::<SqlResult<Vec<_>>>()?;
        Ok(Self {
            inner: Arc::new(PoolInner {
                permits: Arc::new(tokio::sync::Semaphore::new(slots.len())),
                slots,
                options,
            }),
        })
    }

    /// A connection of its own, waiting while all are out.
    pub async fn acquire(&self) -> SqlResult<PoolConnection> {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let free = self
            .inner
            .slots
            .iter()
            .find_map(|slot| slot.clone().try_lock_owned().ok());
        let guard = match free {
            Some(guard) => guard,
            // Not reached while permits and slots are as many; waiting is still right.
            None => self.inner.slots[0].clone().lock_owned().await,
        };
        Ok(PoolConnection {
            guard,
            pool: self.inner.clone(),
            _permit: permit,
        })
    }

    /// Checkpoints the WAL every `every` on a thread of its own until the pool is gone.
    /// PASSIVE never blocks readers or the writer.
    pub fn checkpoint_in_background(&self, every: Duration) -> SqlResult<()> {
        let connection = Options {
            wal_autocheckpoint: None,
            ..self.inner.options.clone()
        }
        .open()
        .map_err(lite_error)?;
        let pool = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("tarn-wal-checkpoint".into())
            .spawn(move || {
                while pool.strong_count() > 0 {
                    if let Err(err) = connection.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                        tracing::warn!(error = %err, "WAL checkpoint failed");
                    }
                    std::thread::sleep(every);
                }
            })
            .map_err(sqlx::Error::Io)?;
        Ok(())
    }

    /// A deferred transaction.
    pub async fn begin(&self) -> SqlResult<Transaction<'static>> {
        self.begin_with("BEGIN").await
    }

    /// A transaction started by `statement` (`BEGIN IMMEDIATE` takes the write lock at once),
    /// on the blocking pool: it may wait for another process's writer.
    pub async fn begin_with(&self, statement: &'static str) -> SqlResult<Transaction<'static>> {
        let pooled = self.acquire().await?;
        // In this process the pool is the only writer, so only another process can hold the
        // lock: try without waiting, and wait for it on the blocking pool.
        let pooled = match pooled.execute_without_waiting(statement) {
            Err(err) if err.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                blocking(move || {
                    pooled.execute_batch(statement)?;
                    Ok(pooled)
                })
                .await?
            }
            Err(err) => return Err(lite_error(err)),
            Ok(()) => pooled,
        };
        Ok(Transaction {
            pooled,
            _lifetime: PhantomData,
        })
    }
}

/// Runs `work` on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> SqlResult<T> + Send + 'static,
) -> SqlResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| sqlx::Error::Protocol(format!("SQLite task failed: {e}")))?
}

/// One open connection.
pub struct Connection {
    raw: rusqlite::Connection,
}

impl Connection {
    /// Runs statements without arguments, as one text (migrations).
    pub fn execute_batch(&self, sql: &str) -> SqlResult<()> {
        self.raw.execute_batch(sql).map_err(lite_error)
    }

    /// Runs `sql` failing with SQLITE_BUSY at once instead of waiting for a lock.
    fn execute_without_waiting(&self, sql: &str) -> rusqlite::Result<()> {
        self.raw.busy_timeout(Duration::ZERO)?;
        let outcome = self.raw.execute_batch(sql);
        self.raw.busy_timeout(BUSY_TIMEOUT)?;
        outcome
    }
}

/// A connection taken from a pool, given back when dropped: rolled back first if a
/// transaction is still open on it (one that cannot be is replaced by a new connection).
pub struct PoolConnection {
    guard: tokio::sync::OwnedMutexGuard<Connection>,
    pool: Arc<PoolInner>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl std::ops::Deref for PoolConnection {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.guard
    }
}

impl std::ops::DerefMut for PoolConnection {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.guard
    }
}

impl Drop for PoolConnection {
    fn drop(&mut self) {
        if self.guard.raw.is_autocommit() || self.guard.execute_batch("ROLLBACK").is_ok() {
            return;
        }
        match self.pool.options.open() {
            Ok(raw) => self.guard.raw = raw,
            Err(err) => tracing::error!(error = %err, "cannot reopen a SQLite connection"),
        }
    }
}

/// A transaction: committed by `commit`, rolled back otherwise (when dropped).
pub struct Transaction<'c> {
    pooled: PoolConnection,
    _lifetime: PhantomData<&'c ()>,
}

impl Transaction<'_> {
    /// Commits here, fsync included: one per group of writes, and on this project's machines
    /// (~70 µs) cheaper than handing it to another thread and being woken after.
    pub async fn commit(self) -> SqlResult<()> {
        self.pooled.execute_batch("COMMIT")
    }

    pub async fn rollback(self) -> SqlResult<()> {
        self.pooled.execute_batch("ROLLBACK")
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.pooled
    }
}

impl std::ops::DerefMut for Transaction<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.pooled
    }
}

/// Where a statement runs: a pool (a connection is taken for it), a transaction or a
/// connection.
pub trait Executor<'e>: Send {
    fn lease(self) -> Lease<'e>;
}

/// The connection a statement runs on, or the pool to take one from.
pub enum Lease<'e> {
    Connection(&'e mut rusqlite::Connection),
    Pool(&'e Pool),
}

impl Lease<'_> {
    /// Runs `work` here; a statement of its own on the writer (an autocommit write, which
    /// ends in an fsync) runs on the blocking pool.
    async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce(&rusqlite::Connection) -> SqlResult<T> + Send + 'static,
    ) -> SqlResult<T> {
        match self {
            Lease::Connection(connection) => work(connection),
            Lease::Pool(pool) => {
                let pooled = pool.acquire().await?;
                if pool.inner.options.read_only {
                    work(&pooled.raw)
                } else {
                    blocking(move || work(&pooled.raw)).await
                }
            }
        }
    }
}

impl<'e> Executor<'e> for &'e Pool {
    fn lease(self) -> Lease<'e> {
        Lease::Pool(self)
    }
}

impl<'e> Executor<'e> for &'e mut Connection {
    fn lease(self) -> Lease<'e> {
        Lease::Connection(&mut self.raw)
    }
}

impl<'e> Executor<'e> for &'e mut Transaction<'_> {
    fn lease(self) -> Lease<'e> {
        Lease::Connection(&mut self.pooled.raw)
    }
}

impl<'e> Executor<'e> for &'e mut PoolConnection {
    fn lease(self) -> Lease<'e> {
        Lease::Connection(&mut self.raw)
    }
}

/// A value that can be bound to a statement.
pub trait Bind<'a>: rusqlite::ToSql {}
impl<T: rusqlite::ToSql> Bind<'_> for T {}

/// SQL text and its arguments.
#[derive(Debug, Default)]
struct Statement {
    sql: String,
    args: Vec<Value>,
    /// A value that could not be bound, reported when the statement runs.
    bind_error: Option<String>,
    /// Built by `QueryBuilder`, whose `?N` are the arguments' positions: no need to ask
    /// SQLite each parameter's name (which walks a list: quadratic in a long `VALUES`).
    positional: bool,
}

impl Statement {
    fn new(sql: impl sqlx::SqlSafeStr) -> Self {
        Self {
            sql: sql.into_sql_str().as_str().to_string(),
            ..Self::default()
        }
    }

    fn bind(&mut self, value: impl rusqlite::ToSql) {
        use rusqlite::types::ToSqlOutput;
        let value = match value.to_sql() {
            Ok(ToSqlOutput::Borrowed(value)) => Value::try_from(value).map_err(|e| e.to_string()),
            Ok(ToSqlOutput::Owned(value)) => Ok(value),
            Ok(_) => Err("a value of an unsupported kind".to_string()),
            Err(err) => Err(err.to_string()),
        };
        match value {
            Ok(value) => self.args.push(value),
            Err(err) => {
                self.bind_error.get_or_insert(err);
                self.args.push(Value::Null);
            }
        }
    }

    /// Runs the statement, handing each row to `row` until it returns false; then the
    /// number of rows it changed.
    fn run(
        &self,
        connection: &rusqlite::Connection,
        mut row: impl FnMut(&rusqlite::Row<'_>, &Arc<[String]>) -> SqlResult<bool>,
    ) -> SqlResult<u64> {
        if let Some(err) = &self.bind_error {
            return Err(sqlx::Error::Encode(err.clone().into()));
        }
        let mut statement = connection.prepare_cached(&self.sql).map_err(lite_error)?;
        for index in 1..=statement.parameter_count() {
            // `$N` names its argument: SQLite numbers names by first use, not by N.
            let position = if self.positional {
                index
            } else {
                statement
                    .parameter_name(index)
                    .and_then(|name| name.get(1..))
                    .and_then(|number| number.parse::<usize>().ok())
                    .unwrap_or(index)
            };
            let value = self.args.get(position.wrapping_sub(1)).ok_or_else(|| {
                sqlx::Error::Protocol(format!(
                    "statement expects argument {position}, {} given",
                    self.args.len()
                ))
            })?;
            statement
                .raw_bind_parameter(index, value)
                .map_err(lite_error)?;
        }
        let read_only = statement.readonly();
        let columns: Arc<[String]> = statement
            .column_names()
            .into_iter()
            .map(str::to_string)
            .collect();
        let mut rows = statement.raw_query();
        let mut wanted = true;
        while let Some(next) = rows.next().map_err(lite_error)? {
            // A statement that writes is stepped to its end even when one row is wanted.
            if wanted {
                wanted = row(next, &columns)?;
                if !wanted && read_only {
                    break;
                }
            }
        }
        drop(rows);
        Ok(if read_only { 0 } else { connection.changes() })
    }

    /// Runs the statement and reads up to `limit` rows with `read`.
    fn read<T>(
        &self,
        connection: &rusqlite::Connection,
        limit: usize,
        read: impl Fn(&rusqlite::Row<'_>, &Arc<[String]>) -> SqlResult<T>,
    ) -> SqlResult<Vec<T>> {
        let mut found = Vec::new();
        self.run(connection, |row, columns| {
            found.push(read(row, columns)?);
            Ok(found.len() < limit)
        })?;
        Ok(found)
    }
}

/// What a statement changed.
#[derive(Debug, Clone, Copy)]
pub struct QueryResult {
    rows_affected: u64,
}

impl QueryResult {
    pub fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// How a fetched row is read: whole (`query`), its first column (`query_scalar`) or its
/// columns as a tuple (`query_as`).
pub trait ReadRow: Send + 'static {
    type Output: Send + 'static;
    fn read(row: &rusqlite::Row<'_>, columns: &Arc<[String]>) -> SqlResult<Self::Output>;
}

/// Rows as `LiteRow`.
#[derive(Debug)]
pub struct WholeRow;

impl ReadRow for WholeRow {
    type Output = LiteRow;
    fn read(row: &rusqlite::Row<'_>, columns: &Arc<[String]>) -> SqlResult<LiteRow> {
        LiteRow::read(row, columns)
    }
}

/// The first column of each row.
#[derive(Debug)]
pub struct FirstColumn<T>(PhantomData<fn() -> T>);

impl<T: Decode + Send + 'static> ReadRow for FirstColumn<T> {
    type Output = T;
    fn read(row: &rusqlite::Row<'_>, _: &Arc<[String]>) -> SqlResult<T> {
        decode_column(row, 0)
    }
}

/// Each row as a tuple of its columns.
#[derive(Debug)]
pub struct Columns<T>(PhantomData<fn() -> T>);

impl<T: FromRow + Send + 'static> ReadRow for Columns<T> {
    type Output = T;
    fn read(row: &rusqlite::Row<'_>, _: &Arc<[String]>) -> SqlResult<T> {
        T::from_row(row)
    }
}

/// A statement with its arguments, fetching rows read by `R`.
#[derive(Debug)]
pub struct Fetch<R> {
    statement: Statement,
    _read: PhantomData<fn() -> R>,
}

/// `sqlx::query`.
pub type Query = Fetch<WholeRow>;
/// `sqlx::query_scalar`.
pub type QueryScalar<T> = Fetch<FirstColumn<T>>;
/// `sqlx::query_as` for tuples.
pub type QueryAs<T> = Fetch<Columns<T>>;

impl<R> Fetch<R> {
    fn new(statement: Statement) -> Self {
        Self {
            statement,
            _read: PhantomData,
        }
    }
}

/// `pg::fetch_all_cancelling`'s counterpart: a SQLite statement runs on the awaiting thread
/// and cannot be left running behind a dropped request.
pub async fn fetch_all_cancelling(pool: &Pool, query: Query) -> SqlResult<Vec<DbRow>> {
    query.fetch_all(pool).await
}

pub fn query(sql: impl sqlx::SqlSafeStr) -> Query {
    Fetch::new(Statement::new(sql))
}

pub fn query_scalar<T: Decode>(sql: impl sqlx::SqlSafeStr) -> QueryScalar<T> {
    Fetch::new(Statement::new(sql))
}

pub fn query_as<T: FromRow>(sql: impl sqlx::SqlSafeStr) -> QueryAs<T> {
    Fetch::new(Statement::new(sql))
}

impl<R: ReadRow> Fetch<R> {
    pub fn bind<V: rusqlite::ToSql>(mut self, value: V) -> Self {
        self.statement.bind(value);
        self
    }

    pub async fn fetch_all<'e>(self, executor: impl Executor<'e>) -> SqlResult<Vec<R::Output>> {
        let statement = self.statement;
        executor
            .lease()
            .run(move |c| statement.read(c, usize::MAX, R::read))
            .await
    }

    pub async fn fetch_optional<'e>(
        self,
        executor: impl Executor<'e>,
    ) -> SqlResult<Option<R::Output>> {
        let statement = self.statement;
        executor
            .lease()
            .run(move |c| Ok(statement.read(c, 1, R::read)?.into_iter().next()))
            .await
    }

    pub async fn fetch_one<'e>(self, executor: impl Executor<'e>) -> SqlResult<R::Output> {
        self.fetch_optional(executor)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
}

impl Query {
    pub async fn execute<'e>(self, executor: impl Executor<'e>) -> SqlResult<QueryResult> {
        let statement = self.statement;
        executor
            .lease()
            .run(move |c| {
                let rows_affected = statement.run(c, |_, _| Ok(true))?;
                Ok(QueryResult { rows_affected })
            })
            .await
    }
}

/// A row read as a tuple of its columns.
pub trait FromRow: Sized {
    fn from_row(row: &rusqlite::Row<'_>) -> SqlResult<Self>;
}

impl<A: Decode, B: Decode> FromRow for (A, B) {
    fn from_row(row: &rusqlite::Row<'_>) -> SqlResult<Self> {
        Ok((decode_column(row, 0)?, decode_column(row, 1)?))
    }
}

impl<A: Decode, B: Decode, C: Decode> FromRow for (A, B, C) {
    fn from_row(row: &rusqlite::Row<'_>) -> SqlResult<Self> {
        Ok((
            decode_column(row, 0)?,
            decode_column(row, 1)?,
            decode_column(row, 2)?,
        ))
    }
}

fn decode_column<T: Decode>(row: &rusqlite::Row<'_>, index: usize) -> SqlResult<T> {
    let value = row.get_ref(index).map_err(lite_error)?;
    T::decode(value).map_err(|message| sqlx::Error::ColumnDecode {
        index: index.to_string(),
        source: message.into(),
    })
}

/// `sqlx::QueryBuilder`: SQL text with arguments pushed in order (as `?N`).
#[derive(Debug)]
pub struct QueryBuilder {
    statement: Statement,
}

impl QueryBuilder {
    pub fn new(init: impl Into<String>) -> Self {
        Self {
            statement: Statement {
                sql: init.into(),
                positional: true,
                ..Statement::default()
            },
        }
    }

    pub fn push(&mut self, sql: impl fmt::Display) -> &mut Self {
        use fmt::Write;
        let _ = write!(self.statement.sql, "{sql}");
        self
    }

    pub fn push_bind<T: rusqlite::ToSql>(&mut self, value: T) -> &mut Self {
        self.statement.bind(value);
        let position = self.statement.args.len();
        self.push(format_args!("?{position}"))
    }

    pub fn separated(&mut self, separator: &'static str) -> Separated<'_> {
        Separated {
            builder: self,
            separator,
            first: true,
        }
    }

    /// `VALUES (..), (..)`, each tuple's parts pushed by `push_tuple`.
    pub fn push_values<I, F>(&mut self, tuples: I, mut push_tuple: F) -> &mut Self
    where
        I: IntoIterator,
        F: FnMut(Separated<'_>, I::Item),
    {
        self.push("VALUES ");
        for (i, tuple) in tuples.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push("(");
            push_tuple(self.separated(", "), tuple);
            self.push(")");
        }
        self
    }

    /// The statement built so far; the builder is left empty.
    pub fn build(&mut self) -> Query {
        Fetch::new(self.take())
    }

    fn take(&mut self) -> Statement {
        std::mem::replace(&mut self.statement, Self::new("").statement)
    }

    pub fn build_query_scalar<T: Decode>(&mut self) -> QueryScalar<T> {
        Fetch::new(self.take())
    }

    pub fn sql(&self) -> &str {
        &self.statement.sql
    }
}

/// Parts of a list pushed with a separator between them.
pub struct Separated<'b> {
    builder: &'b mut QueryBuilder,
    separator: &'static str,
    first: bool,
}

impl Separated<'_> {
    fn separate(&mut self) {
        if !self.first {
            self.builder.push(self.separator);
        }
        self.first = false;
    }

    pub fn push(&mut self, sql: impl fmt::Display) -> &mut Self {
        self.separate();
        self.builder.push(sql);
        self
    }

    pub fn push_bind<T: rusqlite::ToSql>(&mut self, value: T) -> &mut Self {
        self.separate();
        self.builder.push_bind(value);
        self
    }

    pub fn push_unseparated(&mut self, sql: impl fmt::Display) -> &mut Self {
        self.builder.push(sql);
        self
    }

    pub fn push_bind_unseparated<T: rusqlite::ToSql>(&mut self, value: T) -> &mut Self {
        self.builder.push_bind(value);
        self
    }
}

/// A row read out of its statement.
#[derive(Debug, Clone)]
pub struct LiteRow {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl LiteRow {
    fn read(row: &rusqlite::Row<'_>, columns: &Arc<[String]>) -> SqlResult<Self> {
        let values = (0..columns.len())
            .map(|i| {
                let value = row.get_ref(i).map_err(lite_error)?;
                Value::try_from(value).map_err(|e| sqlx::Error::ColumnDecode {
                    index: i.to_string(),
                    source: e.into(),
                })
            })
            .collect::<SqlResult<Vec<_>>>()?;
        Ok(Self {
            columns: columns.clone(),
            values,
        })
    }
}

/// Reading a row's columns, as `sqlx::Row` does.
pub trait Row {
    fn try_get<T: Decode, I: ColumnIndex>(&self, index: I) -> SqlResult<T>;
}

impl Row for LiteRow {
    fn try_get<T: Decode, I: ColumnIndex>(&self, index: I) -> SqlResult<T> {
        let position = index.position(&self.columns)?;
        let value = self
            .values
            .get(position)
            .ok_or(sqlx::Error::ColumnIndexOutOfBounds {
                index: position,
                len: self.values.len(),
            })?;
        T::decode(ValueRef::from(value)).map_err(|message| sqlx::Error::ColumnDecode {
            index: index.describe(),
            source: message.into(),
        })
    }
}

/// A column by name or position.
pub trait ColumnIndex: Copy {
    fn position(self, columns: &[String]) -> SqlResult<usize>;
    fn describe(self) -> String;
}

impl ColumnIndex for &str {
    fn position(self, columns: &[String]) -> SqlResult<usize> {
        columns
            .iter()
            .position(|c| c == self)
            .ok_or_else(|| sqlx::Error::ColumnNotFound(self.to_string()))
    }

    fn describe(self) -> String {
        format!("{self:?}")
    }
}

impl ColumnIndex for usize {
    fn position(self, _: &[String]) -> SqlResult<usize> {
        Ok(self)
    }

    fn describe(self) -> String {
        self.to_string()
    }
}

/// A Rust value read from a column, converting as SQLite's own accessors do (a number read
/// as text, an integer as a float).
pub trait Decode: Sized {
    fn decode(value: ValueRef<'_>) -> std::result::Result<Self, String>;
}

fn unexpected(value: ValueRef<'_>, wanted: &str) -> String {
    format!("expected {wanted}, found {}", value.data_type())
}

impl Decode for i64 {
    fn decode(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        match value {
            ValueRef::Integer(i) => Ok(i),
            ValueRef::Real(f) => Ok(f as i64),
            other => Err(unexpected(other, "an integer")),
        }
    }
}

macro_rules! decode_narrow_integer {
    ($($t:ty),*) => {$(
        impl Decode for $t {
            fn decode(value: ValueRef<'_>) -> std::result::Result<Self, String> {
                let wide = i64::decode(value)?;
                <$t>::try_from(wide).map_err(|_| format!("{wide} is out of range for {}", stringify!($t)))
            }
        }
    )*};
}
decode_narrow_integer!(i32, u32, u64);

impl Decode for f64 {
    fn decode(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        match value {
            ValueRef::Real(f) => Ok(f),
            ValueRef::Integer(i) => Ok(i as f64),
            other => Err(unexpected(other, "a number")),
        }
    }
}

impl Decode for bool {
    fn decode(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        Ok(i64::decode(value)? != 0)
    }
}

impl Decode for String {
    fn decode(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        match value {
            ValueRef::Text(bytes) => {
                String::from_utf8(bytes.to_vec()).map_err(|e| format!("text is not UTF-8: {e}"))
            }
            ValueRef::Integer(i) => Ok(i.to_string()),
            ValueRef::Real(f) => Ok(f.to_string()),
            other => Err(unexpected(other, "text")),
        }
    }
}

impl Decode for Vec<u8> {
    fn decode(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        match value {
            ValueRef::Blob(bytes) | ValueRef::Text(bytes) => Ok(bytes.to_vec()),
            other => Err(unexpected(other, "a blob")),
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    fn decode(value: ValueRef<'_>) -> std::result::Result<Self, String> {
        match value {
            ValueRef::Null => Ok(None),
            other => T::decode(other).map(Some),
        }
    }
}

/// An error SQLite reported, as sqlx shows database errors (so callers can ask
/// `is_unique_violation` and the like of either backend alike).
#[derive(Debug)]
struct LiteDbError {
    message: String,
    extended_code: i32,
}

impl fmt::Display for LiteDbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LiteDbError {}

impl DatabaseError for LiteDbError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.extended_code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        use rusqlite::ffi;
        match self.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

fn lite_error(err: rusqlite::Error) -> sqlx::Error {
    match err {
        rusqlite::Error::SqliteFailure(failure, message) => {
            sqlx::Error::Database(Box::new(LiteDbError {
                message: message.unwrap_or_else(|| failure.to_string()),
                extended_code: failure.extended_code,
            }))
        }
        rusqlite::Error::SqlInputError { error, msg, .. } => {
            sqlx::Error::Database(Box::new(LiteDbError {
                message: msg,
                extended_code: error.extended_code,
            }))
        }
        rusqlite::Error::QueryReturnedNoRows => sqlx::Error::RowNotFound,
        other => sqlx::Error::Protocol(format!("SQLite: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(dir: &tempfile::TempDir) -> Pool {
        let options = Options {
            path: dir.path().join("lite.db"),
            read_only: false,
            wal_autocheckpoint: None,
        };
        Pool::open(options, 1).expect("open")
    }

    #[tokio::test]
    async fn numbered_arguments_bind_by_number_and_builders_by_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = pool(&dir);
        let row = query("SELECT $2 AS second, $1 AS first, $2 || '!' AS again")
            .bind("a")
            .bind("b")
            .fetch_one(&pool)
            .await
            .expect("select");
        assert_eq!(row.try_get::<String, _>("second").expect("second"), "b");
        assert_eq!(row.try_get::<String, _>("first").expect("first"), "a");
        assert_eq!(row.try_get::<String, _>(2).expect("again"), "b!");

        let mut builder = QueryBuilder::new("SELECT ");
        let mut list = builder.separated(" + ");
        for n in [1_i64, 2, 39] {
            list.push_bind(n);
        }
        let sum: i64 = builder
            .build_query_scalar()
            .fetch_one(&pool)
            .await
            .expect("sum");
        assert_eq!(sum, 42);

        let missing = query("SELECT $3").bind(1_i64).fetch_one(&pool).await;
        assert!(
            matches!(&missing, Err(sqlx::Error::Protocol(m)) if m.contains("argument 3")),
            "{missing:?}"
        );
    }

    #[tokio::test]
    async fn transactions_commit_or_roll_back_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = pool(&dir);
        query("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
            .execute(&pool)
            .await
            .expect("create");
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.expect("begin");
        let written = query("INSERT INTO t VALUES ($1, $2), ($3, $4)")
            .bind("a")
            .bind(1_i64)
            .bind("b")
            .bind(2_i64)
            .execute(&mut tx)
            .await
            .expect("insert");
        assert_eq!(written.rows_affected(), 2);
        tx.commit().await.expect("commit");

        {
            let mut tx = pool.begin().await.expect("begin");
            query("DELETE FROM t")
                .execute(&mut *tx)
                .await
                .expect("delete");
            // Dropped without a commit: rolled back, and the connection is usable again.
        }
        let count: i64 = query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(count, 2);

        // A write with RETURNING changes every row even when one row is read.
        let first: Option<i64> = query_scalar("UPDATE t SET v = v * 10 RETURNING v")
            .fetch_optional(&pool)
            .await
            .expect("update");
        assert!(first.is_some());
        let total: i64 = query_scalar("SELECT SUM(v) FROM t")
            .fetch_one(&pool)
            .await
            .expect("sum");
        assert_eq!(total, 30);

        let duplicate = query("INSERT INTO t VALUES ($1, $2)")
            .bind("a")
            .bind(5_i64)
            .execute(&pool)
            .await;
        assert!(
            matches!(&duplicate, Err(sqlx::Error::Database(db)) if db.is_unique_violation()),
            "{duplicate:?}"
        );
    }

    #[tokio::test]
    async fn a_writer_in_another_connection_is_waited_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, second) = (pool(&dir), pool(&dir));
        query("CREATE TABLE t (v INTEGER)")
            .execute(&first)
            .await
            .expect("create");
        let mut holding = first.begin_with("BEGIN IMMEDIATE").await.expect("begin");
        let waiting = tokio::spawn(async move {
            let mut tx = second.begin_with("BEGIN IMMEDIATE").await?;
            query("INSERT INTO t VALUES (2)").execute(&mut tx).await?;
            tx.commit().await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "the second writer did not wait");
        query("INSERT INTO t VALUES (1)")
            .execute(&mut holding)
            .await
            .expect("insert");
        holding.commit().await.expect("commit");
        waiting.await.expect("task").expect("second writer");
        let values: Vec<i64> = query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(&first)
            .await
            .expect("read");
        assert_eq!(values, vec![1, 2]);
    }

    #[tokio::test]
    async fn columns_decode_as_sqlite_converts_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = pool(&dir);
        let row = query("SELECT 7 AS n, 2.5 AS x, NULL AS missing, 'text' AS t")
            .fetch_one(&pool)
            .await
            .expect("select");
        assert_eq!(row.try_get::<f64, _>("n").expect("int as float"), 7.0);
        assert_eq!(row.try_get::<String, _>("n").expect("int as text"), "7");
        assert!(row.try_get::<bool, _>("n").expect("int as bool"));
        assert_eq!(
            row.try_get::<Option<i64>, _>("missing").expect("null"),
            None
        );
        let null_as_number = row.try_get::<i64, _>("missing");
        assert!(
            matches!(&null_as_number, Err(sqlx::Error::ColumnDecode { .. })),
            "{null_as_number:?}"
        );
        assert!(matches!(
            row.try_get::<String, _>("absent"),
            Err(sqlx::Error::ColumnNotFound(_))
        ));
        let big = query_scalar::<u32>("SELECT 5000000000")
            .fetch_one(&pool)
            .await;
        assert!(
            matches!(big, Err(sqlx::Error::ColumnDecode { .. })),
            "{big:?}"
        );
    }
}
