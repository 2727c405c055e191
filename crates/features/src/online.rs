//! Online stores: the latest feature values of every key of a published feature table, for
//! lookups at serving time. One record per key holding all its features (Feast writes one row
//! per key and feature, which is where its materialisation time goes), the feature row's time
//! beside it so a lookup can refuse a value older than the lookback window (Feast serves those
//! as present). Publishing follows the Delta change feed: only keys changed since the last
//! published version are rewritten.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tarn_core::catalog::Privilege;
use tarn_core::features::{FeatureTable, parse_duration_micros};
use tarn_core::ids::now_millis;
use tarn_core::store::MetaStore;
use tarn_core::{Error, Result};
use tarn_lake::access::Caller;
use tarn_lake::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use tarn_lake::arrow::compute::{concat_batches, take};
use tarn_lake::arrow::json::WriterBuilder;
use tarn_lake::arrow::json::writer::LineDelimited;
use tarn_lake::arrow::util::display::array_value_to_string;
use tarn_lake::catalog::location_of;
use tarn_lake::{At, Lake};

use crate::pit::{FeatureIndex, micros};
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
}

/// Where published features live.
#[async_trait]
pub trait OnlineStore: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Writes rows, replacing the keys' earlier values, and removes `gone` keys, with the
    /// publication's new state, at once.
    async fn apply(
        &self,
        publication: &Publication,
        rows: &[OnlineRow],
        gone: &[String],
        replace_all: bool,
    ) -> Result<()>;
    /// The values of each key, in order: `(feature time, JSON object)` or none.
    async fn get(&self, table: &str, keys: &[String])
    -> Result<Vec<Option<(Option<i64>, String)>>>;
    async fn publication(&self, table: &str) -> Result<Option<Publication>>;
}

/// The SQLite online store, in a file of its own beside the metadata store.
pub struct SqliteOnlineStore {
    pool: sqlx::SqlitePool,
}

impl SqliteOnlineStore {
    pub async fn open(path: &std::path::Path) -> Result<Self> {
        use sqlx::sqlite::{
            SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
        };
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| Error::invalid(format!("bad online store path {}: {e}", path.display())))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| Error::internal(format!("cannot open the online store: {e}")))?;
        for statement in [
            "CREATE TABLE IF NOT EXISTS online_features (table_name TEXT NOT NULL, \
             entity_key TEXT NOT NULL, feature_ts INTEGER, feature_values TEXT NOT NULL, \
             PRIMARY KEY (table_name, entity_key)) WITHOUT ROWID",
            "CREATE TABLE IF NOT EXISTS online_publications (table_name TEXT PRIMARY KEY, \
             version INTEGER NOT NULL, published_at INTEGER NOT NULL, keys INTEGER NOT NULL, \
             ttl_micros INTEGER)",
        ] {
            sqlx::query(statement)
                .execute(&pool)
                .await
                .map_err(online_error)?;
        }
        Ok(Self { pool })
    }
}

fn online_error(err: sqlx::Error) -> Error {
    Error::internal(format!("online store: {err}"))
}

/// Rows per INSERT statement (4 parameters each, well under SQLite's limit).
const ROWS_PER_INSERT: usize = 1000;

#[async_trait]
impl OnlineStore for SqliteOnlineStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn apply(
        &self,
        publication: &Publication,
        rows: &[OnlineRow],
        gone: &[String],
        replace_all: bool,
    ) -> Result<()> {
        let table = &publication.table_name;
        let mut tx = self.pool.begin().await.map_err(online_error)?;
        if replace_all {
            sqlx::query("DELETE FROM online_features WHERE table_name = $1")
                .bind(table)
                .execute(&mut *tx)
                .await
                .map_err(online_error)?;
        }
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO online_features (table_name, entity_key, feature_ts, feature_values) ",
            );
            insert.push_values(chunk, |mut row, r| {
                row.push_bind(table)
                    .push_bind(&r.key)
                    .push_bind(r.feature_ts)
                    .push_bind(&r.values);
            });
            insert.push(
                " ON CONFLICT (table_name, entity_key) DO UPDATE SET \
                 feature_ts = excluded.feature_ts, feature_values = excluded.feature_values",
            );
            insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(online_error)?;
        }
        for key in gone {
            sqlx::query("DELETE FROM online_features WHERE table_name = $1 AND entity_key = $2")
                .bind(table)
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(online_error)?;
        }
        sqlx::query(
            "INSERT INTO online_publications (table_name, version, published_at, keys, ttl_micros) \
             VALUES ($1, $2, $3, (SELECT COUNT(*) FROM online_features WHERE table_name = $1), $4) \
             ON CONFLICT (table_name) DO UPDATE SET version = excluded.version, \
             published_at = excluded.published_at, keys = excluded.keys, ttl_micros = excluded.ttl_micros",
        )
        .bind(table)
        .bind(publication.version as i64)
        .bind(publication.published_at)
        .bind(publication.ttl_micros)
        .execute(&mut *tx)
        .await
        .map_err(online_error)?;
        tx.commit().await.map_err(online_error)
    }

    async fn get(
        &self,
        table: &str,
        keys: &[String],
    ) -> Result<Vec<Option<(Option<i64>, String)>>> {
        let mut found: HashMap<String, (Option<i64>, String)> = HashMap::new();
        for chunk in keys.chunks(ROWS_PER_INSERT) {
            let mut select = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "SELECT entity_key, feature_ts, feature_values FROM online_features WHERE table_name = ",
            );
            select.push_bind(table);
            select.push(" AND entity_key IN (");
            let mut list = select.separated(", ");
            for key in chunk {
                list.push_bind(key);
            }
            select.push(")");
            let rows: Vec<(String, Option<i64>, String)> = select
                .build_query_as()
                .fetch_all(&self.pool)
                .await
                .map_err(online_error)?;
            found.extend(rows.into_iter().map(|(k, ts, v)| (k, (ts, v))));
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn publication(&self, table: &str) -> Result<Option<Publication>> {
        let row: Option<(i64, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT version, published_at, keys, ttl_micros FROM online_publications WHERE table_name = $1",
        )
        .bind(table)
        .fetch_optional(&self.pool)
        .await
        .map_err(online_error)?;
        Ok(
            row.map(|(version, published_at, keys, ttl_micros)| Publication {
                table_name: table.to_string(),
                version: version as u64,
                published_at,
                keys: keys as u64,
                ttl_micros,
            }),
        )
    }
}

/// The table's key columns in `batch` (its rows or its changes).
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

/// The text form of row `row`'s key.
fn key_text(keys: &[ArrayRef], row: usize) -> String {
    let mut text = String::new();
    for (i, array) in keys.iter().enumerate() {
        if i > 0 {
            text.push(KEY_SEPARATOR);
        }
        text.push_str(&array_value_to_string(array.as_ref(), row).unwrap_or_default());
    }
    text
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

/// The latest row of each key among `batch`'s rows, as online rows; `only` narrows to keys
/// whose text is in it.
fn latest_rows(
    meta: &FeatureTable,
    batch: &RecordBatch,
    only: Option<&HashSet<String>>,
) -> Result<Vec<OnlineRow>> {
    let keys = key_columns(meta, batch)?;
    let times = match &meta.timestamp_key {
        Some(ts) => Some(micros(
            batch
                .column_by_name(ts)
                .ok_or_else(|| Error::internal(format!("{} lacks '{ts}'", meta.full_name)))?
                .as_ref(),
            ts,
        )?),
        None => None,
    };
    let index = FeatureIndex::build(&meta.full_name, &meta.primary_keys, &keys, times.as_ref())?;
    let mut latest: Vec<u32> = index.latest_rows();
    if let Some(only) = only {
        latest.retain(|row| only.contains(&key_text(&keys, *row as usize)));
    }
    let indices = UInt32Array::from(latest.clone());
    let is_key = |name: &str| {
        meta.primary_keys.iter().any(|k| k == name) || meta.timestamp_key.as_deref() == Some(name)
    };
    let feature_columns: Vec<usize> = (0..batch.num_columns())
        .filter(|i| !is_key(batch.schema().field(*i).name()))
        .collect();
    let features = batch
        .project(&feature_columns)
        .map_err(|e| Error::internal(format!("cannot select features: {e}")))?;
    let taken: Vec<ArrayRef> = features
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::internal(format!("cannot gather features: {e}")))?;
    let taken = RecordBatch::try_new(features.schema(), taken)
        .map_err(|e| Error::internal(format!("cannot gather features: {e}")))?;
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, LineDelimited>(Vec::new());
    writer
        .write(&taken)
        .and_then(|_| writer.finish())
        .map_err(|e| Error::internal(format!("cannot encode features: {e}")))?;
    let json = writer.into_inner();
    let lines = json.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let key_columns: Vec<ArrayRef> = keys
        .iter()
        .map(|k| take(k.as_ref(), &indices, None))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::internal(format!("cannot gather keys: {e}")))?;
    Ok(lines
        .enumerate()
        .map(|(row, line)| OnlineRow {
            key: key_text(&key_columns, row),
            feature_ts: times.as_ref().map(|t| t.value(latest[row] as usize)),
            values: String::from_utf8_lossy(line).into_owned(),
        })
        .collect())
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Published {
    pub table_name: String,
    /// `full` the first time (or when asked), `incremental` after.
    pub mode: &'static str,
    pub from_version: Option<u64>,
    pub version: u64,
    pub keys_written: usize,
    pub keys_removed: usize,
    pub online_store: &'static str,
}

/// Publishes the latest value of each key of a feature table to the online store: every key
/// the first time, then only keys the change feed shows changed since the last published
/// version. `ttl` sets how old a value may be when looked up.
pub async fn publish(
    lake: &Lake,
    store: &dyn MetaStore,
    online: &dyn OnlineStore,
    caller: &Caller,
    full_name: &str,
    ttl: Option<&str>,
    full: bool,
) -> Result<Published> {
    let (meta, table) = feature_table_for(store, caller, full_name, Privilege::Select).await?;
    let ttl_micros = ttl.map(parse_duration_micros).transpose()?;
    let previous = online.publication(&meta.full_name).await?;
    let location = location_of(&table)?;
    let (schema, batches, version) = lake
        .read_columns(&location, &meta.full_name, At::Latest, None)
        .await?;
    let since = previous.as_ref().filter(|_| !full).map(|p| p.version);
    let changed: Option<HashSet<String>> = match since {
        Some(last) if last >= version => Some(HashSet::new()),
        Some(last) => Some(changed_keys(lake, &meta, &location, last + 1, version).await?),
        None => None,
    };
    let batch = concat_batches(&schema, &batches)
        .map_err(|e| Error::internal(format!("cannot gather {}: {e}", meta.full_name)))?;
    let (rows, changed) = {
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || {
            latest_rows(&meta, &batch, changed.as_ref()).map(|rows| (rows, changed))
        })
        .await
        .map_err(|e| Error::internal(format!("publishing failed: {e}")))??
    };
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
    let publication = Publication {
        table_name: meta.full_name.clone(),
        version,
        published_at: now_millis(),
        keys: 0,
        ttl_micros: ttl_micros.or(previous.as_ref().and_then(|p| p.ttl_micros)),
    };
    online
        .apply(&publication, &rows, &gone, changed.is_none())
        .await?;
    Ok(Published {
        table_name: meta.full_name,
        mode: if changed.is_none() {
            "full"
        } else {
            "incremental"
        },
        from_version: since,
        version,
        keys_written: rows.len(),
        keys_removed: gone.len(),
        online_store: online.kind(),
    })
}

/// The keys of rows the change feed shows inserted, updated or deleted in `from..=to`.
async fn changed_keys(
    lake: &Lake,
    meta: &FeatureTable,
    location: &url::Url,
    from: u64,
    to: u64,
) -> Result<HashSet<String>> {
    let (_, batches) = lake
        .changes(location, &meta.full_name, from, Some(to))
        .await?;
    let mut keys = HashSet::new();
    for batch in &batches {
        let columns = key_columns(meta, batch)?;
        for row in 0..batch.num_rows() {
            keys.insert(key_text(&columns, row));
        }
    }
    Ok(keys)
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lookup {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature_timestamp: Option<i64>,
    pub values: serde_json::Value,
}

/// Looks keys up (each a JSON object of the table's primary keys) at `now` (milliseconds),
/// refusing values older than `ttl` (or the publication's).
pub async fn lookup(
    store: &dyn MetaStore,
    online: &dyn OnlineStore,
    caller: &Caller,
    full_name: &str,
    keys: &[serde_json::Map<String, serde_json::Value>],
    ttl: Option<&str>,
    now: i64,
) -> Result<Vec<Lookup>> {
    let (meta, _) = feature_table_for(store, caller, full_name, Privilege::Select).await?;
    let publication = online.publication(&meta.full_name).await?.ok_or_else(|| {
        Error::invalid(format!(
            "{} is not published: publish it to the online store first",
            meta.full_name
        ))
    })?;
    let ttl_micros = match ttl {
        Some(text) => Some(parse_duration_micros(text)?),
        None => publication.ttl_micros,
    };
    let mut texts = Vec::with_capacity(keys.len());
    for key in keys {
        let parts = meta
            .primary_keys
            .iter()
            .map(|k| {
                key.get(k).ok_or_else(|| {
                    Error::invalid(format!(
                        "A lookup key lacks '{k}': {} is keyed by {}",
                        meta.full_name,
                        meta.primary_keys.join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        texts.push(key_of_json(&parts));
    }
    let wanted: Vec<String> = texts.iter().flatten().cloned().collect();
    let mut found = online.get(&meta.full_name, &wanted).await?.into_iter();
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
                    values: serde_json::Value::Null,
                },
                Some((ts, _))
                    if ttl_micros
                        .zip(ts)
                        .is_some_and(|(ttl, ts)| now_micros.saturating_sub(ts) > ttl) =>
                {
                    Lookup {
                        status: Status::OutsideMaxAge,
                        feature_timestamp: ts,
                        values: serde_json::Value::Null,
                    }
                }
                Some((ts, values)) => Lookup {
                    status: Status::Present,
                    feature_timestamp: ts,
                    values: serde_json::from_str(&values).unwrap_or(serde_json::Value::Null),
                },
            }
        })
        .collect())
}

/// The Redis online store: per published table a hash from key to `<time>\n<values JSON>`
/// and a hash holding the publication. Every key is under `<namespace>:`.
pub struct RedisOnlineStore {
    connection: redis::aio::ConnectionManager,
    namespace: String,
}

fn redis_error(err: redis::RedisError) -> Error {
    Error::internal(format!("online store (Redis): {err}"))
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
        let connection = redis::aio::ConnectionManager::new(client)
            .await
            .map_err(redis_error)?;
        Ok(Self {
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
}

#[async_trait]
impl OnlineStore for RedisOnlineStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn apply(
        &self,
        publication: &Publication,
        rows: &[OnlineRow],
        gone: &[String],
        replace_all: bool,
    ) -> Result<()> {
        let key = self.features_key(&publication.table_name);
        let mut pipe = redis::pipe();
        pipe.atomic();
        if replace_all {
            pipe.del(&key).ignore();
        }
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let fields: Vec<(&str, String)> = chunk
                .iter()
                .map(|r| {
                    let ts = r.feature_ts.map(|t| t.to_string()).unwrap_or_default();
                    (r.key.as_str(), format!("{ts}\n{}", r.values))
                })
                .collect();
            pipe.hset_multiple(&key, &fields).ignore();
        }
        for chunk in gone.chunks(ROWS_PER_INSERT) {
            pipe.hdel(&key, chunk).ignore();
        }
        let mut fields = vec![
            ("version", publication.version.to_string()),
            ("published_at", publication.published_at.to_string()),
        ];
        if let Some(ttl) = publication.ttl_micros {
            fields.push(("ttl_micros", ttl.to_string()));
        }
        let publication_key = self.publication_key(&publication.table_name);
        pipe.del(&publication_key).ignore();
        pipe.hset_multiple(&publication_key, &fields).ignore();
        let mut connection = self.connection.clone();
        pipe.query_async::<()>(&mut connection)
            .await
            .map_err(redis_error)
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
        }))
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
