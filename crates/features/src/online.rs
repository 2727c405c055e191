//! Online stores: the latest feature values of every key of a published feature table, for
//! lookups at serving time. One record per key holding all its features (Feast writes one row
//! per key and feature, which is where its materialisation time goes), the feature row's time
//! beside it so a lookup can refuse a value older than the lookback window (Feast serves those
//! as present). Publishing follows the Delta change feed: only keys changed since the last
//! published version are rewritten.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::value::RawValue;
use tarn_core::caller::Caller;
use tarn_core::catalog::Privilege;
use tarn_core::events::Change;
use tarn_core::features::{FeatureTable, parse_duration_micros};
use tarn_core::ids::now_millis;
use tarn_core::store::MetaStore;
use tarn_core::{Error, ErrorCode, Result};
use tarn_lake::access::{Securable, require_owner};
use tarn_lake::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use tarn_lake::arrow::compute::{take, take_record_batch};
use tarn_lake::arrow::datatypes::{Field, Schema};
use tarn_lake::arrow::json::WriterBuilder;
use tarn_lake::arrow::json::writer::LineDelimited;
use tarn_lake::arrow::util::display::{ArrayFormatter, FormatOptions};
use tarn_lake::catalog::location_of;
use tarn_lake::datafusion::common::ScalarValue;
use tarn_lake::datafusion::prelude::{Expr, ident, in_list, lit};
use tarn_lake::{At, Lake};

use crate::pit::{FeatureIndex, Gather, joined_column, micros};
use crate::tables::feature_table_for;

/// Separates the parts of a composite key in its text form.
const KEY_SEPARATOR: char = '\u{1f}';

/// One key's latest features.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineRow {
    /// The key's values as text, joined by U+001F.
    pub key: String,
    /// When the values became true (microseconds), for time-series tables.
    pub feature_ts: Option<i64>,
    /// The features as a JSON object.
    pub values: String,
}

/// What was published of a table, and when: its freshness.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Publication {
    pub table_name: String,
    pub version: u64,
    pub published_at: i64,
    pub keys: u64,
    /// Values older than this (microseconds) are reported missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_micros: Option<i64>,
    /// How the server keeps it published: `continuous` or a schedule like `1h`; none when
    /// only asked to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
    /// Whose access the server's refreshes use, and in which workspace: who last published.
    pub published_by: String,
    pub workspace: String,
    /// Why the last refresh by the server failed, until one succeeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_error: Option<String>,
}

/// How a published table is kept fresh by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Only when someone publishes.
    Manual,
    /// As soon as the table has a new version (the server checks every few seconds).
    Continuous,
    /// When the last publish is this old (microseconds) and the table has changed since.
    Every(i64),
}

impl Refresh {
    /// `manual`, `continuous`, or a duration (`15m`, `1h`, `1d`).
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "manual" => Ok(Self::Manual),
            "continuous" => Ok(Self::Continuous),
            other => match parse_duration_micros(other) {
                Ok(micros) if micros >= 1_000_000 => Ok(Self::Every(micros)),
                _ => Err(Error::invalid(format!(
                    "Invalid refresh '{other}': expected manual, continuous or a schedule of at least a second like 15m or 1h"
                ))),
            },
        }
    }

    /// Whether a table published at `published_at` (milliseconds) is due a check at `now`.
    pub fn due(self, published_at: i64, now: i64) -> bool {
        match self {
            Self::Manual => false,
            Self::Continuous => true,
            Self::Every(micros) => now.saturating_sub(published_at) >= micros / 1000,
        }
    }
}

/// Where published features live.
#[async_trait]
pub trait OnlineStore: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Writes rows, replacing the keys' earlier values, and removes `gone` keys, with the
    /// publication's new state, at once; unless a publication of a later table version is
    /// stored already (several servers publish, and a slower one finishes last): then nothing
    /// changes and it answers false.
    async fn apply(
        &self,
        publication: Publication,
        rows: Vec<OnlineRow>,
        gone: Vec<String>,
        replace_all: bool,
    ) -> Result<bool>;
    /// The values of each key, in order: `(feature time, JSON object)` or none.
    async fn get(&self, table: &str, keys: &[String])
    -> Result<Vec<Option<(Option<i64>, String)>>>;
    async fn publication(&self, table: &str) -> Result<Option<Publication>>;
    /// Every publication, for the server's refreshes.
    async fn publications(&self) -> Result<Vec<Publication>>;
    /// Records why a refresh failed (none: it worked again).
    async fn set_refresh_error(&self, table: &str, error: Option<&str>) -> Result<()>;
}

/// The SQLite online store, in a file of its own beside the metadata store. It is used through
/// rusqlite on the calling thread rather than an async driver: a lookup is a few primary-key
/// reads of memory-mapped pages, cheaper than handing each statement to a driver's worker
/// thread and waiting to be woken with the answer. Publishing, which writes many rows, runs on
/// the blocking pool instead.
pub struct SqliteOnlineStore {
    connections: Arc<Connections>,
}

/// Open connections to the store's file, kept for reuse (each keeps its prepared statements).
struct Connections {
    path: std::path::PathBuf,
    idle: std::sync::Mutex<Vec<rusqlite::Connection>>,
}

/// Connections kept open when idle; more are opened while that many are busy.
const IDLE_CONNECTIONS_MAX: usize = 8;

impl Connections {
    fn connect(&self) -> Result<rusqlite::Connection> {
        let connection = rusqlite::Connection::open(&self.path).map_err(|e| {
            Error::internal_from(
                format!("cannot open the online store {}", self.path.display()),
                e,
            )
        })?;
        connection
            .busy_timeout(Duration::from_secs(30))
            .map_err(online_error)?;
        for (pragma, value) in [
            ("journal_mode", "WAL"),
            ("synchronous", "NORMAL"),
            // A full publish writes every key at once: keep its B-tree pages in memory; and
            // lookups read pages through a memory map rather than a read call each.
            ("cache_size", "-65536"),
            ("mmap_size", "1073741824"),
            // A full publish leaves tens of MB in the WAL: copying them back into the database
            // is done after the publish answers (`checkpoint_later`), not inside its commit.
            ("wal_autocheckpoint", "0"),
            ("journal_size_limit", "67108864"),
        ] {
            // Two servers opening a new store at once (replicas sharing a data dir).
            tarn_store::lite::set_pragma(&connection, pragma, value).map_err(online_error)?;
        }
        Ok(connection)
    }

    /// Runs `work` on an idle connection (or a new one), which is kept for reuse after.
    fn with<T>(
        &self,
        work: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut connection = match idle {
            Some(connection) => connection,
            None => self.connect()?,
        };
        let result = work(&mut connection).map_err(online_error);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_CONNECTIONS_MAX
        {
            idle.push(connection);
        }
        result
    }
}

impl SqliteOnlineStore {
    /// Copies the WAL back into the database on the blocking pool, without waiting for it.
    /// PASSIVE never blocks lookups; the next one catches up if this one could not finish.
    fn checkpoint_later(&self) {
        let connections = self.connections.clone();
        tokio::task::spawn_blocking(move || {
            let done = connections.with(|c| c.execute_batch("PRAGMA wal_checkpoint(PASSIVE)"));
            if let Err(err) = done {
                tracing::warn!(error = %err, "online store checkpoint failed");
            }
        });
    }

    pub async fn open(path: &std::path::Path) -> Result<Self> {
        let connections = Arc::new(Connections {
            path: path.to_path_buf(),
            idle: Default::default(),
        });
        let setup = connections.clone();
        tokio::task::spawn_blocking(move || setup.with(create_schema))
            .await
            .map_err(|e| Error::internal_from("cannot open the online store", e))??;
        Ok(Self { connections })
    }
}

fn create_schema(connection: &mut rusqlite::Connection) -> rusqlite::Result<()> {
    // One writer at a time: two servers opening a new store at once would both find a column
    // missing and both add it.
    let connection =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    connection.execute_batch(
        "CREATE TABLE IF NOT EXISTS online_features (table_name TEXT NOT NULL, \
         entity_key TEXT NOT NULL, feature_ts INTEGER, feature_values TEXT NOT NULL, \
         PRIMARY KEY (table_name, entity_key)) WITHOUT ROWID; \
         CREATE TABLE IF NOT EXISTS online_publications (table_name TEXT PRIMARY KEY, \
         version INTEGER NOT NULL, published_at INTEGER NOT NULL, keys INTEGER NOT NULL, \
         ttl_micros INTEGER)",
    )?;
    // Columns added after the first release of the online store.
    let existing = connection
        .prepare("SELECT name FROM pragma_table_info('online_publications')")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (column, definition) in [
        ("refresh", "TEXT"),
        ("published_by", "TEXT NOT NULL DEFAULT ''"),
        ("workspace", "TEXT NOT NULL DEFAULT ''"),
        ("refresh_error", "TEXT"),
    ] {
        if !existing.iter().any(|c| c == column) {
            // Both parts are the constants above.
            connection.execute(
                &format!("ALTER TABLE online_publications ADD COLUMN {column} {definition}"),
                [],
            )?;
        }
    }
    connection.commit()
}

/// A failure of an online store. It becomes the wire error in one place
/// (`From<OnlineError> for Error`), the store's own error kept underneath for the logs.
#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    #[error("online store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("online store (Redis): {0}")]
    Redis(#[from] redis::RedisError),
}

impl From<OnlineError> for Error {
    fn from(err: OnlineError) -> Self {
        let message = err.to_string();
        match &err {
            // Redis down or unreachable: lookups may work again shortly, so say so (503).
            OnlineError::Redis(redis)
                if redis.is_io_error()
                    || redis.is_connection_dropped()
                    || redis.is_connection_refusal()
                    || redis.is_timeout() =>
            {
                Error::unavailable(message)
            }
            OnlineError::Sqlite(_) | OnlineError::Redis(_) => Error::internal(message),
        }
        .with_source(err)
    }
}

fn online_error(err: rusqlite::Error) -> Error {
    OnlineError::from(err).into()
}

/// Writes a publication's rows and state in one transaction, unless a later version's is
/// stored (false).
fn write_publication(
    connection: &mut rusqlite::Connection,
    publication: &Publication,
    rows: &[OnlineRow],
    gone: &[String],
    replace_all: bool,
) -> rusqlite::Result<bool> {
    use rusqlite::OptionalExtension;
    let table = &publication.table_name;
    let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let stored: Option<i64> = tx
        .query_row(
            "SELECT version FROM online_publications WHERE table_name = ?1",
            [table],
            |row| row.get(0),
        )
        .optional()?;
    if stored.is_some_and(|stored| stored > publication.version as i64) {
        return Ok(false);
    }
    if replace_all {
        tx.execute("DELETE FROM online_features WHERE table_name = ?1", [table])?;
    }
    {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO online_features (table_name, entity_key, feature_ts, feature_values) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (table_name, entity_key) DO UPDATE SET \
             feature_ts = excluded.feature_ts, feature_values = excluded.feature_values",
        )?;
        for row in rows {
            upsert.execute(rusqlite::params![
                table,
                row.key,
                row.feature_ts,
                row.values
            ])?;
        }
        let mut remove = tx.prepare_cached(
            "DELETE FROM online_features WHERE table_name = ?1 AND entity_key = ?2",
        )?;
        for key in gone {
            remove.execute([table, key])?;
        }
    }
    tx.execute(
        "INSERT INTO online_publications (table_name, version, published_at, keys, ttl_micros, \
         refresh, published_by, workspace, refresh_error) \
         VALUES (?1, ?2, ?3, (SELECT COUNT(*) FROM online_features WHERE table_name = ?1), ?4, ?5, ?6, ?7, NULL) \
         ON CONFLICT (table_name) DO UPDATE SET version = excluded.version, \
         published_at = excluded.published_at, keys = excluded.keys, ttl_micros = excluded.ttl_micros, \
         refresh = excluded.refresh, published_by = excluded.published_by, \
         workspace = excluded.workspace, refresh_error = NULL",
        rusqlite::params![
            table,
            publication.version as i64,
            publication.published_at,
            publication.ttl_micros,
            publication.refresh,
            publication.published_by,
            publication.workspace,
        ],
    )?;
    tx.commit()?;
    Ok(true)
}

const PUBLICATION_COLUMNS: &str = "SELECT table_name, version, published_at, keys, ttl_micros, \
     refresh, published_by, workspace, refresh_error FROM online_publications";

fn row_publication(row: &rusqlite::Row<'_>) -> rusqlite::Result<Publication> {
    Ok(Publication {
        table_name: row.get("table_name")?,
        version: row.get::<_, i64>("version")? as u64,
        published_at: row.get("published_at")?,
        keys: row.get::<_, i64>("keys")? as u64,
        ttl_micros: row.get("ttl_micros")?,
        refresh: row.get("refresh")?,
        published_by: row.get("published_by")?,
        workspace: row.get("workspace")?,
        refresh_error: row.get("refresh_error")?,
    })
}

#[async_trait]
impl OnlineStore for SqliteOnlineStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn apply(
        &self,
        publication: Publication,
        rows: Vec<OnlineRow>,
        gone: Vec<String>,
        replace_all: bool,
    ) -> Result<bool> {
        let connections = self.connections.clone();
        let applied = tokio::task::spawn_blocking(move || {
            connections.with(|c| write_publication(c, &publication, &rows, &gone, replace_all))
        })
        .await
        .map_err(|e| Error::internal_from("online store", e))??;
        self.checkpoint_later();
        Ok(applied)
    }

    async fn get(
        &self,
        table: &str,
        keys: &[String],
    ) -> Result<Vec<Option<(Option<i64>, String)>>> {
        use rusqlite::OptionalExtension;
        let read = |c: &rusqlite::Connection| {
            let mut select = c.prepare_cached(
                "SELECT feature_ts, feature_values FROM online_features \
                 WHERE table_name = ?1 AND entity_key = ?2",
            )?;
            keys.iter()
                .map(|key| {
                    select
                        .query_row(rusqlite::params![table, key], |row| {
                            Ok((row.get(0)?, row.get(1)?))
                        })
                        .optional()
                })
                .collect()
        };
        self.connections.with(|c| {
            if keys.len() < 2 {
                return read(c);
            }
            // One read transaction for all the keys: a statement on its own takes and drops
            // the WAL read lock (fcntl calls), 40% of a 100-key lookup's CPU.
            let tx = c.transaction()?;
            let found = read(&tx)?;
            tx.commit()?;
            Ok(found)
        })
    }

    async fn publication(&self, table: &str) -> Result<Option<Publication>> {
        use rusqlite::OptionalExtension;
        self.connections.with(|c| {
            c.prepare_cached(&format!("{PUBLICATION_COLUMNS} WHERE table_name = ?1"))?
                .query_row([table], row_publication)
                .optional()
        })
    }

    async fn publications(&self) -> Result<Vec<Publication>> {
        self.connections.with(|c| {
            c.prepare_cached(&format!("{PUBLICATION_COLUMNS} ORDER BY table_name"))?
                .query_map([], row_publication)?
                .collect()
        })
    }

    async fn set_refresh_error(&self, table: &str, error: Option<&str>) -> Result<()> {
        self.connections.with(|c| {
            c.execute(
                "UPDATE online_publications SET refresh_error = ?2 WHERE table_name = ?1",
                rusqlite::params![table, error],
            )
            .map(drop)
        })?;
        self.checkpoint_later();
        Ok(())
    }
}

/// The table's key columns in `batch` (its changes).
fn key_columns(meta: &FeatureTable, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    meta.primary_keys
        .iter()
        .map(|k| {
            batch.column_by_name(k).cloned().ok_or_else(|| {
                Error::internal(format!(
                    "rows of {} lack its key column '{k}'",
                    meta.full_name
                ))
            })
        })
        .collect()
}

/// How key values are printed: as `array_value_to_string` prints them.
static KEY_FORMAT: std::sync::LazyLock<FormatOptions<'static>> =
    std::sync::LazyLock::new(|| FormatOptions::default().with_display_error(true));

/// The text form of keys: the key values' text joined by U+001F. Each column's formatter is
/// set up once, not per value.
struct KeyTexts<'a> {
    formatters: Vec<ArrayFormatter<'a>>,
}

impl<'a> KeyTexts<'a> {
    fn new(keys: &'a [ArrayRef]) -> Result<Self> {
        let formatters = keys
            .iter()
            .map(|k| ArrayFormatter::try_new(k.as_ref(), &KEY_FORMAT))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::internal_from("cannot print keys", e))?;
        Ok(Self { formatters })
    }

    fn text(&self, row: usize) -> String {
        use std::fmt::Write;
        let mut text = String::new();
        for (i, formatter) in self.formatters.iter().enumerate() {
            if i > 0 {
                text.push(KEY_SEPARATOR);
            }
            let _ = write!(text, "{}", formatter.value(row));
        }
        text
    }
}

/// The text form of a key given as JSON values (in primary key order); none when a part is
/// null or not a scalar.
pub fn key_of_json(values: &[&serde_json::Value]) -> Option<String> {
    let mut text = String::new();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            text.push(KEY_SEPARATOR);
        }
        match value {
            serde_json::Value::String(s) => text.push_str(s),
            serde_json::Value::Number(n) => text.push_str(&n.to_string()),
            serde_json::Value::Bool(b) => text.push_str(if *b { "true" } else { "false" }),
            _ => return None,
        }
    }
    Some(text)
}

/// Each key's rows at its newest time in `batch`: all a batch can add to the latest rows
/// (all its rows for a table without a timestamp key, where each key has one row).
fn newest_in_batch(meta: &FeatureTable, batch: RecordBatch) -> Result<RecordBatch> {
    let Some(ts) = &meta.timestamp_key else {
        return Ok(batch);
    };
    let keys = key_columns(meta, &batch)?;
    let times = batch.column_by_name(ts).ok_or_else(|| {
        Error::internal(format!(
            "rows of {} lack its timestamp key '{ts}'",
            meta.full_name
        ))
    })?;
    let rows = FeatureIndex::newest_rows(&meta.full_name, &keys, &micros(times.as_ref(), ts)?)?;
    if rows.len() == batch.num_rows() {
        return Ok(batch);
    }
    take_record_batch(&batch, &UInt32Array::from(rows))
        .map_err(|e| Error::internal_from("cannot keep the newest rows", e))
}

/// The latest row of each key among the table's rows (read in `batches`), as online rows;
/// `only` narrows to keys whose text is in it.
fn latest_rows(
    meta: &FeatureTable,
    batches: &[RecordBatch],
    only: Option<&HashSet<String>>,
) -> Result<Vec<OnlineRow>> {
    let table = &meta.full_name;
    let keys = meta
        .primary_keys
        .iter()
        .map(|k| joined_column(batches, k, table))
        .collect::<Result<Vec<_>>>()?;
    let times = match &meta.timestamp_key {
        Some(ts) => Some(micros(joined_column(batches, ts, table)?.as_ref(), ts)?),
        None => None,
    };
    let mut latest = FeatureIndex::latest_rows(table, &meta.primary_keys, &keys, times.as_ref())?;
    if let Some(only) = only {
        let texts = KeyTexts::new(&keys)?;
        latest.retain(|row| only.contains(&texts.text(*row as usize)));
    }
    let indices = UInt32Array::from(latest.clone());
    let is_key = |name: &str| {
        meta.primary_keys.iter().any(|k| k == name) || meta.timestamp_key.as_deref() == Some(name)
    };
    let schema = batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| Error::internal(format!("no rows of {table} were read")))?;
    let feature_fields: Vec<Field> = schema
        .fields()
        .iter()
        .filter(|f| !is_key(f.name()))
        .map(|f| f.as_ref().clone())
        .collect();
    let rows = Gather::new(batches, &indices);
    let taken = feature_fields
        .iter()
        .map(|f| rows.column(f.name(), table))
        .collect::<Result<Vec<_>>>()?;
    let taken = RecordBatch::try_new(Arc::new(Schema::new(feature_fields)), taken)
        .map_err(|e| Error::internal_from("cannot gather features", e))?;
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, LineDelimited>(Vec::new());
    writer
        .write(&taken)
        .and_then(|_| writer.finish())
        .map_err(|e| Error::internal_from("cannot encode features", e))?;
    let json = writer.into_inner();
    let lines = json.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let key_columns: Vec<ArrayRef> = keys
        .iter()
        .map(|k| take(k.as_ref(), &indices, None))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::internal_from("cannot gather keys", e))?;
    let texts = KeyTexts::new(&key_columns)?;
    Ok(lines
        .enumerate()
        .map(|(row, line)| OnlineRow {
            key: texts.text(row),
            feature_ts: times.as_ref().map(|t| t.value(latest[row] as usize)),
            values: String::from_utf8_lossy(line).into_owned(),
        })
        .collect())
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Published {
    pub table_name: String,
    /// `full` the first time (or when asked), `incremental` after; `superseded` when a
    /// publish of a later version was stored first, and this one wrote nothing.
    pub mode: &'static str,
    pub from_version: Option<u64>,
    pub version: u64,
    pub keys_written: usize,
    pub keys_removed: usize,
    pub online_store: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
}

/// What a publish is asked for beyond writing the keys changed since the last one.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// How old a value may be when looked up (`3d`); the last publish's when none.
    pub ttl: Option<String>,
    /// Rewrite every key.
    pub full: bool,
    /// How the server keeps the table published from now on (`manual`, `continuous`, `1h`);
    /// the last publish's when none.
    pub refresh: Option<String>,
}

/// Publishes the latest value of each key of a feature table to the online store: every key
/// the first time, then only keys the change feed shows changed since the last published
/// version.
pub async fn publish(
    lake: &Lake,
    store: &dyn MetaStore,
    online: &dyn OnlineStore,
    caller: &Caller,
    full_name: &str,
    options: &PublishOptions,
) -> Result<Published> {
    // Publishing writes the online copy and makes the publisher the principal refreshes run
    // as: it takes MODIFY. How long values live and how the table stays published are the
    // owner's to decide.
    let (meta, table) = feature_table_for(store, caller, full_name, Privilege::Modify).await?;
    let previous = online.publication(&meta.full_name).await?;
    if changes_settings(options, previous.as_ref())? {
        require_owner(store, caller, &Securable::table(&table)).await?;
    }
    let target = Target {
        location: location_of(&table)?,
        previous,
        meta,
    };
    let published = publish_to(lake, online, caller, target, options, None).await?;
    store
        .record_event(
            &caller.workspace,
            &caller.actor(),
            &Change::FeaturesPublished {
                table_name: published.table_name.clone(),
                mode: published.mode.to_string(),
                from_version: published.from_version,
                version: published.version,
                keys_written: published.keys_written as u64,
                keys_removed: published.keys_removed as u64,
                ttl: options.ttl.clone(),
                refresh: published.refresh.clone(),
            },
        )
        .await?;
    Ok(published)
}

/// Whether a publish asks for a ttl or a refresh other than the table's current ones.
fn changes_settings(options: &PublishOptions, previous: Option<&Publication>) -> Result<bool> {
    let ttl_changes = match options.ttl.as_deref() {
        Some(ttl) => Some(parse_duration_micros(ttl)?) != previous.and_then(|p| p.ttl_micros),
        None => false,
    };
    let refresh_changes = match options.refresh.as_deref() {
        Some(text) => {
            let current = previous
                .and_then(|p| p.refresh.as_deref())
                .map(Refresh::parse)
                .transpose()?
                .unwrap_or(Refresh::Manual);
            Refresh::parse(text)? != current
        }
        None => false,
    };
    Ok(ttl_changes || refresh_changes)
}

/// A feature table about to be published, its access checked.
struct Target {
    meta: FeatureTable,
    location: url::Url,
    /// Its last publication.
    previous: Option<Publication>,
}

/// Publishes `target`; `latest` is the table's latest version when the caller already read it.
async fn publish_to(
    lake: &Lake,
    online: &dyn OnlineStore,
    caller: &Caller,
    target: Target,
    options: &PublishOptions,
    latest: Option<u64>,
) -> Result<Published> {
    let Target {
        meta,
        location,
        previous,
    } = target;
    let ttl_micros = options
        .ttl
        .as_deref()
        .map(parse_duration_micros)
        .transpose()?;
    let refresh = match options.refresh.as_deref() {
        Some(text) => match Refresh::parse(text)? {
            Refresh::Manual => None,
            _ => Some(text.to_string()),
        },
        None => previous.as_ref().and_then(|p| p.refresh.clone()),
    };
    let since = previous
        .as_ref()
        .filter(|_| !options.full)
        .map(|p| p.version);
    let started = std::time::Instant::now();
    let latest = match (since, latest) {
        (Some(_), Some(known)) => Some(known),
        (Some(last), None) => Some(
            lake.latest_version(&location, &meta.full_name, last)
                .await?,
        ),
        (None, _) => None,
    };
    let (rows, gone, version) = match (since, latest) {
        // Nothing new: only the publication's settings and time change.
        (Some(last), Some(latest)) if latest <= last => (Vec::new(), Vec::new(), last),
        _ => changed_rows(lake, &meta, &location, since, latest).await?,
    };
    let read_ms = started.elapsed().as_millis();
    let publication = Publication {
        table_name: meta.full_name.clone(),
        version,
        published_at: now_millis(),
        keys: 0,
        ttl_micros: ttl_micros.or(previous.as_ref().and_then(|p| p.ttl_micros)),
        refresh: refresh.clone(),
        published_by: caller.principal.name.clone(),
        workspace: caller.workspace.clone(),
        refresh_error: None,
    };
    let (mut keys_written, mut keys_removed) = (rows.len(), gone.len());
    let applied = online
        .apply(publication, rows, gone, since.is_none())
        .await?;
    if !applied {
        (keys_written, keys_removed) = (0, 0);
    }
    tracing::info!(
        table = %meta.full_name,
        version,
        keys_written,
        read_ms,
        write_ms = started.elapsed().as_millis() - read_ms,
        "published features"
    );
    Ok(Published {
        table_name: meta.full_name,
        mode: match (applied, since) {
            (false, _) => "superseded",
            (true, None) => "full",
            (true, Some(_)) => "incremental",
        },
        from_version: since,
        version,
        keys_written,
        keys_removed,
        online_store: online.kind(),
        refresh,
    })
}

/// The rows to write (the latest of each key changed after version `since`, or of every key)
/// and the keys to remove, at version `latest` (the table's latest when none).
async fn changed_rows(
    lake: &Lake,
    meta: &FeatureTable,
    location: &url::Url,
    since: Option<u64>,
    latest: Option<u64>,
) -> Result<(Vec<OnlineRow>, Vec<String>, u64)> {
    let at = latest.map_or(At::Latest, At::Version);
    let (changed, filter) = match (since, latest) {
        (Some(last), Some(latest)) => {
            let (keys, filter) = changed_keys(lake, meta, location, last + 1, latest).await?;
            (Some(keys), filter)
        }
        _ => (None, None),
    };
    if let (Some(changed), Some(latest)) = (&changed, latest)
        && changed.is_empty()
    {
        // New versions that changed no rows (an OPTIMIZE, say).
        return Ok((Vec::new(), Vec::new(), latest));
    }
    let reducer = {
        let meta = meta.clone();
        Arc::new(move |batch| newest_in_batch(&meta, batch))
    };
    let (schema, mut batches, version) = lake
        .read_reduced(location, &meta.full_name, at, filter, reducer)
        .await?;
    batches.retain(|b| b.num_rows() > 0);
    if batches.is_empty() {
        batches.push(RecordBatch::new_empty(schema));
    }
    let meta = meta.clone();
    let (rows, changed) = tokio::task::spawn_blocking(move || {
        latest_rows(&meta, &batches, changed.as_ref()).map(|rows| (rows, changed))
    })
    .await
    .map_err(|e| Error::internal_from("publishing failed", e))??;
    // In key order, the store's B-tree fills page after page instead of all over.
    let mut rows = rows;
    rows.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    let gone: Vec<String> = match &changed {
        Some(changed) => {
            let written: HashSet<&str> = rows.iter().map(|r| r.key.as_str()).collect();
            changed
                .iter()
                .filter(|k| !written.contains(k.as_str()))
                .cloned()
                .collect()
        }
        None => Vec::new(),
    };
    Ok((rows, gone, version))
}

/// Refreshes, as their publishers, the publications due at `now` (milliseconds) whose table
/// has a new version: what the server runs every few seconds. A failure is recorded on its
/// publication (and cleared by the next success) without stopping the others.
pub async fn refresh_due(
    lake: &Lake,
    store: &dyn MetaStore,
    online: &dyn OnlineStore,
    now: i64,
) -> Result<Vec<Published>> {
    let mut refreshed = Vec::new();
    for publication in online.publications().await? {
        let Some(refresh) = publication.refresh.as_deref() else {
            continue;
        };
        let due = Refresh::parse(refresh).is_ok_and(|r| r.due(publication.published_at, now));
        if !due {
            continue;
        }
        let attempt = async {
            let caller = publisher(store, &publication).await?;
            let (meta, table) =
                feature_table_for(store, &caller, &publication.table_name, Privilege::Modify)
                    .await?;
            let location = location_of(&table)?;
            let latest = lake
                .latest_version(&location, &meta.full_name, publication.version)
                .await?;
            if latest <= publication.version {
                return Ok(None);
            }
            let target = Target {
                meta,
                location,
                previous: Some(publication.clone()),
            };
            let options = PublishOptions::default();
            publish_to(lake, online, &caller, target, &options, Some(latest))
                .await
                .map(Some)
        };
        match attempt.await {
            Ok(Some(published)) => refreshed.push(published),
            Ok(None) if publication.refresh_error.is_some() => {
                online
                    .set_refresh_error(&publication.table_name, None)
                    .await?;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(table = %publication.table_name, error = %err.report(), "refreshing online features failed");
                online
                    .set_refresh_error(&publication.table_name, Some(&err.message))
                    .await?;
            }
        }
    }
    Ok(refreshed)
}

/// Whom a refresh acts as: the principal who last published, with their groups, in the
/// workspace they published from. A local command (`cli:` and no such principal) acts as an
/// admin, as it did when run.
async fn publisher(store: &dyn MetaStore, publication: &Publication) -> Result<Caller> {
    let principal = match store.active_principal(&publication.published_by).await {
        Err(err)
            if err.code == ErrorCode::ResourceDoesNotExist
                && publication.published_by.starts_with("cli:") =>
        {
            let local = tarn_core::auth::Principal {
                id: 0,
                name: publication.published_by.clone(),
                kind: tarn_core::auth::PrincipalKind::User,
                is_admin: true,
                group_ids: Vec::new(),
                only_workspace: None,
            };
            return Ok(Caller::new(publication.workspace.clone(), local));
        }
        other => other?,
    };
    Ok(Caller::new(publication.workspace.clone(), principal))
}

/// Most changed keys read back through a filter; more and the whole table is read.
const MAX_FILTERED_KEYS: usize = 10_000;

/// The keys of rows the change feed shows inserted, updated or deleted in `from..=to`, and,
/// for a table with one primary key and not too many changes, a filter keeping only their rows.
async fn changed_keys(
    lake: &Lake,
    meta: &FeatureTable,
    location: &url::Url,
    from: u64,
    to: u64,
) -> Result<(HashSet<String>, Option<Expr>)> {
    let (_, batches) = lake
        .changes(location, &meta.full_name, from, Some(to))
        .await?;
    let mut keys = HashSet::new();
    let mut values = Vec::new();
    for batch in &batches {
        let columns = key_columns(meta, batch)?;
        let texts = KeyTexts::new(&columns)?;
        for row in 0..batch.num_rows() {
            if keys.insert(texts.text(row))
                && let [column] = columns.as_slice()
                && values.len() <= MAX_FILTERED_KEYS
            {
                let value = ScalarValue::try_from_array(column, row)
                    .map_err(|e| Error::internal_from("cannot read a changed key", e))?;
                values.push(lit(value));
            }
        }
    }
    let filter = match meta.primary_keys.as_slice() {
        [key] if values.len() <= MAX_FILTERED_KEYS && !values.is_empty() => {
            Some(in_list(ident(key), values, false))
        }
        _ => None,
    };
    Ok((keys, filter))
}

/// How a looked-up key fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Present,
    NotFound,
    /// A value exists but is older than the time to live: reported missing, not served.
    OutsideMaxAge,
}

/// One key's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Lookup {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature_timestamp: Option<i64>,
    /// The features as stored (a JSON object, or null): passed through to the answer as they
    /// are rather than parsed and printed again.
    pub values: Box<RawValue>,
}

impl Lookup {
    /// The features, parsed.
    pub fn values(&self) -> serde_json::Value {
        serde_json::from_str(self.values.get()).unwrap_or(serde_json::Value::Null)
    }
}

/// What a lookup asks: keys of a table (each a JSON object of its primary keys), at `now`
/// (milliseconds), refusing values older than `ttl` (the publication's when none).
#[derive(Debug, Clone, Copy)]
pub struct LookupRequest<'a> {
    pub table: &'a str,
    pub keys: &'a [serde_json::Map<String, serde_json::Value>],
    pub ttl: Option<&'a str>,
    pub now: i64,
}

/// What a lookup needs to know of a published table, once the caller's access is checked.
#[derive(Debug)]
struct Resolved {
    table: String,
    primary_keys: Vec<String>,
    ttl_micros: Option<i64>,
}

/// How long a lookup trusts what it resolved (the caller's access to the table, its keys, the
/// publication's ttl) without asking the stores again: the stores' round trips were most of
/// a lookup's time. Changes through this server clear it at once (`LookupCache::clear`);
/// changes made elsewhere are seen after this, as with the server's credential cache.
const LOOKUP_CACHE_TTL: Duration = Duration::from_secs(5);
const LOOKUP_CACHE_MAX_ENTRIES: usize = 10_000;

type LookupKey = (i64, String, String);

/// Tables recently resolved for lookups, per caller.
#[derive(Debug, Default)]
pub struct LookupCache {
    entries: std::sync::Mutex<HashMap<LookupKey, (Arc<Resolved>, std::time::Instant)>>,
}

impl LookupCache {
    fn key(caller: &Caller, table: &str) -> LookupKey {
        (
            caller.principal.id,
            caller.workspace.clone(),
            table.to_string(),
        )
    }

    fn get(&self, caller: &Caller, table: &str) -> Option<Arc<Resolved>> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(&Self::key(caller, table))
            .filter(|(_, at)| at.elapsed() < LOOKUP_CACHE_TTL)
            .map(|(resolved, _)| resolved.clone())
    }

    fn remember(&self, caller: &Caller, table: &str, resolved: Resolved) -> Arc<Resolved> {
        let resolved = Arc::new(resolved);
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= LOOKUP_CACHE_MAX_ENTRIES {
                entries.retain(|_, (_, at)| at.elapsed() < LOOKUP_CACHE_TTL);
            }
            entries.insert(
                Self::key(caller, table),
                (resolved.clone(), std::time::Instant::now()),
            );
        }
        resolved
    }

    /// Forgets everything: after grants, bindings, memberships, tables or publications change.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

/// Checks the caller may read the table and that it is published.
async fn resolve(
    store: &dyn MetaStore,
    online: &dyn OnlineStore,
    caller: &Caller,
    table: &str,
) -> Result<Resolved> {
    let (meta, _) = feature_table_for(store, caller, table, Privilege::Select).await?;
    let publication = online.publication(&meta.full_name).await?.ok_or_else(|| {
        Error::invalid(format!(
            "{} is not published: publish it to the online store first",
            meta.full_name
        ))
    })?;
    Ok(Resolved {
        table: meta.full_name,
        primary_keys: meta.primary_keys,
        ttl_micros: publication.ttl_micros,
    })
}

/// Looks keys up.
pub async fn lookup(
    store: &dyn MetaStore,
    online: &dyn OnlineStore,
    cache: &LookupCache,
    caller: &Caller,
    request: &LookupRequest<'_>,
) -> Result<Vec<Lookup>> {
    let meta = match cache.get(caller, request.table) {
        Some(known) => known,
        None => {
            let resolved = resolve(store, online, caller, request.table).await?;
            cache.remember(caller, request.table, resolved)
        }
    };
    let ttl_micros = match request.ttl {
        Some(text) => Some(parse_duration_micros(text)?),
        None => meta.ttl_micros,
    };
    let keys = request.keys;
    let now = request.now;
    let mut texts = Vec::with_capacity(keys.len());
    for key in keys {
        let parts = meta
            .primary_keys
            .iter()
            .map(|k| {
                key.get(k).ok_or_else(|| {
                    Error::invalid(format!(
                        "A lookup key lacks '{k}': {} is keyed by {}",
                        meta.table,
                        meta.primary_keys.join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        texts.push(key_of_json(&parts));
    }
    let wanted: Vec<String> = texts.iter().flatten().cloned().collect();
    let mut found = online.get(&meta.table, &wanted).await?.into_iter();
    let now_micros = now.saturating_mul(1000);
    Ok(texts
        .iter()
        .map(|text| {
            let hit = match text {
                Some(_) => found.next().flatten(),
                None => None,
            };
            match hit {
                None => Lookup {
                    status: Status::NotFound,
                    feature_timestamp: None,
                    values: RawValue::NULL.to_owned(),
                },
                Some((ts, _))
                    if ttl_micros
                        .zip(ts)
                        .is_some_and(|(ttl, ts)| now_micros.saturating_sub(ts) > ttl) =>
                {
                    Lookup {
                        status: Status::OutsideMaxAge,
                        feature_timestamp: ts,
                        values: RawValue::NULL.to_owned(),
                    }
                }
                Some((ts, values)) => Lookup {
                    status: Status::Present,
                    feature_timestamp: ts,
                    values: RawValue::from_string(values)
                        .unwrap_or_else(|_| RawValue::NULL.to_owned()),
                },
            }
        })
        .collect())
}

/// Fields per HSET or HDEL of a publish, so no command grows without bound.
const FIELDS_PER_COMMAND: usize = 1000;

/// The Redis online store: per published table a hash from key to `<time>\n<values JSON>`
/// and a hash holding the publication. Every key is under `<namespace>:`.
pub struct RedisOnlineStore {
    client: redis::Client,
    connection: redis::aio::ConnectionManager,
    namespace: String,
}

fn redis_error(err: redis::RedisError) -> Error {
    OnlineError::from(err).into()
}

impl RedisOnlineStore {
    /// Connects to `redis://host:port/db`; `?namespace=x` prefixes every key (default `tarn`).
    pub async fn open(url: &str) -> Result<Self> {
        let mut parsed = url::Url::parse(url)
            .map_err(|e| Error::invalid(format!("Invalid Redis URL '{url}': {e}")))?;
        let namespace = parsed
            .query_pairs()
            .find(|(k, _)| k == "namespace")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| "tarn".to_string());
        parsed.set_query(None);
        let client = redis::Client::open(parsed.as_str())
            .map_err(|e| Error::invalid(format!("Invalid Redis URL '{url}': {e}")))?;
        let connection = redis::aio::ConnectionManager::new(client.clone())
            .await
            .map_err(redis_error)?;
        Ok(Self {
            client,
            connection,
            namespace,
        })
    }

    fn features_key(&self, table: &str) -> String {
        format!("{}:online:{table}", self.namespace)
    }

    fn publication_key(&self, table: &str) -> String {
        format!("{}:publication:{table}", self.namespace)
    }

    /// The set of published tables' names.
    fn publications_key(&self) -> String {
        format!("{}:publications", self.namespace)
    }
}

#[async_trait]
impl OnlineStore for RedisOnlineStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn apply(
        &self,
        publication: Publication,
        rows: Vec<OnlineRow>,
        gone: Vec<String>,
        replace_all: bool,
    ) -> Result<bool> {
        let key = self.features_key(&publication.table_name);
        let mut pipe = redis::pipe();
        pipe.atomic();
        if replace_all {
            pipe.del(&key).ignore();
        }
        for chunk in rows.chunks(FIELDS_PER_COMMAND) {
            let fields: Vec<(&str, String)> = chunk
                .iter()
                .map(|r| {
                    let ts = r.feature_ts.map(|t| t.to_string()).unwrap_or_default();
                    (r.key.as_str(), format!("{ts}\n{}", r.values))
                })
                .collect();
            pipe.hset_multiple(&key, &fields).ignore();
        }
        for chunk in gone.chunks(FIELDS_PER_COMMAND) {
            pipe.hdel(&key, chunk).ignore();
        }
        let mut fields = vec![
            ("version", publication.version.to_string()),
            ("published_at", publication.published_at.to_string()),
            ("published_by", publication.published_by.clone()),
            ("workspace", publication.workspace.clone()),
        ];
        if let Some(ttl) = publication.ttl_micros {
            fields.push(("ttl_micros", ttl.to_string()));
        }
        if let Some(refresh) = &publication.refresh {
            fields.push(("refresh", refresh.clone()));
        }
        let publication_key = self.publication_key(&publication.table_name);
        pipe.del(&publication_key).ignore();
        pipe.hset_multiple(&publication_key, &fields).ignore();
        pipe.sadd(self.publications_key(), &publication.table_name)
            .ignore();
        // A connection of its own: a WATCH holds for its connection, and the shared one
        // carries every lookup's commands too.
        let mut connection = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(redis_error)?;
        loop {
            redis::cmd("WATCH")
                .arg(&publication_key)
                .exec_async(&mut connection)
                .await
                .map_err(redis_error)?;
            let stored: Option<u64> = redis::cmd("HGET")
                .arg(&publication_key)
                .arg("version")
                .query_async(&mut connection)
                .await
                .map_err(redis_error)?;
            if stored.is_some_and(|stored| stored > publication.version) {
                redis::cmd("UNWATCH")
                    .exec_async(&mut connection)
                    .await
                    .map_err(redis_error)?;
                return Ok(false);
            }
            // Nil: another publish changed the publication since the WATCH; look again.
            let done: redis::Value = pipe
                .query_async(&mut connection)
                .await
                .map_err(redis_error)?;
            if !matches!(done, redis::Value::Nil) {
                return Ok(true);
            }
        }
    }

    async fn get(
        &self,
        table: &str,
        keys: &[String],
    ) -> Result<Vec<Option<(Option<i64>, String)>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection.clone();
        let found: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.features_key(table))
            .arg(keys)
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        Ok(found
            .into_iter()
            .map(|hit| {
                let hit = hit?;
                let (ts, values) = hit.split_once('\n')?;
                Some((ts.parse().ok(), values.to_string()))
            })
            .collect())
    }

    async fn publication(&self, table: &str) -> Result<Option<Publication>> {
        let mut connection = self.connection.clone();
        let (fields, keys): (HashMap<String, String>, u64) = redis::pipe()
            .hgetall(self.publication_key(table))
            .hlen(self.features_key(table))
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        let number = |name: &str| fields.get(name).and_then(|v| v.parse::<i64>().ok());
        let text = |name: &str| fields.get(name).cloned();
        let (Some(version), Some(published_at)) = (number("version"), number("published_at"))
        else {
            return Ok(None);
        };
        Ok(Some(Publication {
            table_name: table.to_string(),
            version: version as u64,
            published_at,
            keys,
            ttl_micros: number("ttl_micros"),
            refresh: text("refresh"),
            published_by: text("published_by").unwrap_or_default(),
            workspace: text("workspace").unwrap_or_default(),
            refresh_error: text("refresh_error"),
        }))
    }

    async fn publications(&self) -> Result<Vec<Publication>> {
        let mut connection = self.connection.clone();
        let mut tables: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.publications_key())
            .query_async(&mut connection)
            .await
            .map_err(redis_error)?;
        tables.sort();
        let mut found = Vec::with_capacity(tables.len());
        for table in tables {
            if let Some(publication) = self.publication(&table).await? {
                found.push(publication);
            }
        }
        Ok(found)
    }

    async fn set_refresh_error(&self, table: &str, error: Option<&str>) -> Result<()> {
        let mut connection = self.connection.clone();
        let key = self.publication_key(table);
        let command = match error {
            Some(message) => {
                let mut c = redis::cmd("HSET");
                c.arg(&key).arg("refresh_error").arg(message);
                c
            }
            None => {
                let mut c = redis::cmd("HDEL");
                c.arg(&key).arg("refresh_error");
                c
            }
        };
        command
            .query_async::<()>(&mut connection)
            .await
            .map_err(redis_error)
    }
}

/// Opens the online store a URL names: `sqlite://PATH` (or a bare path), or
/// `redis://host:port/db[?namespace=x]`.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn OnlineStore>> {
    match url.split_once("://") {
        Some(("sqlite", path)) => Ok(std::sync::Arc::new(
            SqliteOnlineStore::open(std::path::Path::new(path)).await?,
        )),
        Some(("redis" | "rediss", _)) => {
            Ok(std::sync::Arc::new(RedisOnlineStore::open(url).await?))
        }
        Some((scheme, _)) => Err(Error::invalid(format!(
            "Unsupported online store '{scheme}://': use sqlite://PATH or redis://HOST:PORT"
        ))),
        None => Ok(std::sync::Arc::new(
            SqliteOnlineStore::open(std::path::Path::new(url)).await?,
        )),
    }
}
