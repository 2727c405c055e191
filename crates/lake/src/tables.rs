//! Delta tables under the lake root (managed) or at a location of the user's (external). The
//! catalog's metadata lives in the metadata store; everything about data goes through here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::runtime_env::RuntimeEnv;
use deltalake::datafusion::logical_expr::LogicalPlan;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{CommitInfo, StructField, Transaction};
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use futures::{StreamExt, TryStreamExt};
use tarn_core::catalog::ColumnInfo;
use tarn_core::{Error, Result};
use url::Url;

use crate::columns::columns_of;
use crate::error::{table_error, write_error};
use crate::scan::PlainParquetSnapshot;

/// What a reducing scan does with each batch it decodes: the rows it keeps.
pub type BatchReducer = Arc<dyn Fn(RecordBatch) -> Result<RecordBatch> + Send + Sync>;

/// The lake: where managed tables live.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Url,
    /// One DataFusion runtime for every read, so the Parquet footers a statement read are
    /// still cached for the next one (Delta never changes a data file in place).
    runtime: Arc<RuntimeEnv>,
    /// The latest snapshot read of each table: the next read of its latest version replays
    /// only the commits made since, instead of the whole log.
    snapshots: Arc<Mutex<HashMap<Url, DeltaTable>>>,
}

/// How many tables' snapshots the lake keeps; past it, the cache starts over.
const MAX_CACHED_SNAPSHOTS: usize = 256;

/// How a write treats the rows already in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Append,
    Overwrite,
}

/// How a SQL statement writes a plan's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlanWrite {
    /// A new table (`CREATE TABLE ... AS SELECT`).
    Create,
    /// `INSERT INTO`.
    Append,
    /// `INSERT OVERWRITE`: the rows replace the table's, its schema stays.
    Overwrite,
    /// `CREATE OR REPLACE TABLE ... AS SELECT`: rows and schema replaced, history kept.
    Replace,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub version: u64,
    pub rows: usize,
    /// The table's columns after the write (a write may add columns).
    pub columns: Vec<ColumnInfo>,
}

/// Which version of a table to read: the latest, a version number, or the version that was
/// current at a moment (Delta's `VERSION AS OF` and `TIMESTAMP AS OF`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum At {
    #[default]
    Latest,
    Version(u64),
    Timestamp(DateTime<Utc>),
}

impl At {
    /// From API arguments: a version number, or a timestamp as RFC 3339 or milliseconds
    /// since the epoch; at most one of them.
    pub fn parse(version: Option<i64>, timestamp: Option<&str>) -> Result<Self> {
        match (version, timestamp) {
            (Some(_), Some(_)) => Err(Error::invalid(
                "Give a version or a timestamp to travel to, not both",
            )),
            (Some(v), None) if v < 0 => Err(Error::invalid(format!(
                "Invalid version {v}: versions start at 0"
            ))),
            (Some(v), None) => Ok(Self::Version(v as u64)),
            (None, Some(text)) => Ok(Self::Timestamp(parse_timestamp(text)?)),
            (None, None) => Ok(Self::Latest),
        }
    }
}

/// RFC 3339 (`2026-11-25T08:00:00Z`), a date and time without zone (taken as UTC), or
/// milliseconds since the epoch.
pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(millis) = text.parse::<i64>() {
        return DateTime::from_timestamp_millis(millis)
            .ok_or_else(|| Error::invalid(format!("Invalid timestamp {millis}: out of range")));
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(at) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(at.and_utc());
        }
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(Error::invalid(format!(
        "Invalid timestamp '{text}': expected RFC 3339 (2026-11-25T08:00:00Z) or milliseconds since the epoch"
    )))
}

/// Milliseconds since the epoch as RFC 3339 in UTC (`2026-11-25T08:00:00.000Z`).
pub fn format_timestamp(millis: i64) -> String {
    DateTime::from_timestamp_millis(millis)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// One commit of a table's history, newest first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Commit {
    pub version: u64,
    #[serde(flatten)]
    pub info: CommitInfo,
}

impl Lake {
    /// Opens the lake at a local path or `file://` URL (creating the folder), or at an
    /// `s3://bucket/prefix` URL (credentials and endpoint from the usual `AWS_*` variables).
    pub fn open(root: &str) -> Result<Self> {
        let url = if root.contains("://") {
            Url::parse(root)
                .map_err(|e| Error::invalid(format!("Invalid lake root '{root}': {e}")))?
        } else {
            let path = std::path::absolute(root)
                .map_err(|e| Error::invalid(format!("Invalid lake root '{root}': {e}")))?;
            Url::from_directory_path(&path)
                .map_err(|()| Error::invalid(format!("Invalid lake root '{root}'")))?
        };
        match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| Error::invalid(format!("Invalid lake root '{root}'")))?;
                std::fs::create_dir_all(&path).map_err(|e| {
                    Error::internal_from(
                        format!("cannot create the lake root {}", path.display()),
                        e,
                    )
                })?;
            }
            "s3" if url.host_str().is_some_and(|bucket| !bucket.is_empty()) => {
                crate::storage::register_s3();
            }
            _ => {
                return Err(Error::invalid(format!(
                    "Lake root '{root}': expected a path, file:// or s3://bucket/prefix"
                )));
            }
        }
        Ok(Self {
            root: as_folder(url),
            runtime: Arc::new(RuntimeEnv::default()),
            snapshots: Arc::default(),
        })
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The runtime every session reading the lake shares.
    pub(crate) fn runtime(&self) -> Arc<RuntimeEnv> {
        self.runtime.clone()
    }

    /// Opens a table like [`open`], its latest version from the cached snapshot brought up
    /// to date.
    pub(crate) async fn open_cached(
        &self,
        location: &Url,
        full_name: &str,
        at: At,
    ) -> Result<DeltaTable> {
        if at != At::Latest {
            return open(location, full_name, at).await;
        }
        let cached = self.snapshots_lock().get(location).cloned();
        let table = match cached {
            // A log deleted under the cache is a broken table, reported as `open` does.
            Some(mut table) if location_exists(&log_folder(location)).await => {
                match table.update_incremental(None).await {
                    Ok(()) => table,
                    // Whatever the log became (cleaned up, replaced), read it afresh.
                    Err(_) => open(location, full_name, At::Latest).await?,
                }
            }
            _ => open(location, full_name, At::Latest).await?,
        };
        let mut snapshots = self.snapshots_lock();
        if snapshots.len() >= MAX_CACHED_SNAPSHOTS {
            snapshots.clear();
        }
        let newer = snapshots
            .get(location)
            .is_none_or(|known| known.version() <= table.version());
        if newer {
            snapshots.insert(location.clone(), table.clone());
        }
        Ok(table)
    }

    fn snapshots_lock(&self) -> std::sync::MutexGuard<'_, HashMap<Url, DeltaTable>> {
        // A panic while holding the lock leaves only a cache behind: keep using it.
        self.snapshots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where a managed table's files go: a folder of its own under the lake root, named
    /// after the table and its id so a dropped and re-created name never meets old files.
    pub fn managed_location(
        &self,
        catalog: &str,
        schema: &str,
        name: &str,
        table_id: &str,
    ) -> Result<Url> {
        self.root
            .join(&format!("{catalog}/{schema}/{name}-{table_id}/"))
            .map_err(|e| Error::internal_from(format!("cannot place table {name}"), e))
    }

    /// Whether tables at `location` can be opened: local ones always, S3 ones when the lake
    /// itself is on S3 (so the object store is configured).
    pub fn reaches(&self, location: &Url) -> bool {
        match location.scheme() {
            "file" => true,
            "s3" => self.root.scheme() == "s3" && location.host_str().is_some(),
            _ => false,
        }
    }

    /// Whether a location lies under the lake root (external tables may not).
    pub fn contains(&self, location: &Url) -> bool {
        location.as_str().starts_with(self.root.as_str())
    }

    /// Creates an empty Delta table and returns its columns.
    pub async fn create_table(
        &self,
        location: &Url,
        full_name: &str,
        fields: Vec<StructField>,
        partition_columns: &[String],
        comment: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<Vec<ColumnInfo>> {
        if fields.is_empty() {
            return Err(Error::invalid(format!(
                "Table {full_name} needs at least one column"
            )));
        }
        for partition in partition_columns {
            if !fields.iter().any(|f| f.name() == partition) {
                return Err(Error::invalid(format!(
                    "Partition column '{partition}' is not a column of {full_name}"
                )));
            }
        }
        if let Ok(path) = location.to_file_path() {
            tokio::fs::create_dir_all(&path).await.map_err(|e| {
                Error::internal_from(
                    format!("cannot create {} for {full_name}", path.display()),
                    e,
                )
            })?;
        }
        let table = unloaded(location).map_err(|e| table_error(full_name, e))?;
        let exists = table
            .log_store()
            .is_delta_table_location()
            .await
            .map_err(|e| table_error(full_name, e))?;
        if exists {
            return Err(Error::already_exists(format!(
                "A Delta table already exists at {location}"
            )));
        }
        let table = table
            .create()
            .with_table_name(full_name)
            .with_comment(comment)
            .with_columns(fields)
            .with_partition_columns(partition_columns.to_vec())
            .with_save_mode(SaveMode::ErrorIfExists)
            .with_commit_properties(commit_properties())
            // `delta.*` properties configure the Delta table itself (the change data feed,
            // retention, ...); the others live in the catalog only.
            .with_configuration(
                properties
                    .iter()
                    .filter(|(key, _)| key.starts_with("delta."))
                    .map(|(key, value)| (key.clone(), Some(value.clone()))),
            )
            .await
            .map_err(|e| match e {
                DeltaTableError::Generic(message) => {
                    Error::invalid(format!("Cannot create {full_name}: {message}"))
                }
                other => table_error(full_name, other),
            })?;
        describe_state(&table, full_name)
    }

    /// The columns of an existing Delta table, to register it.
    pub async fn describe(&self, location: &Url, full_name: &str) -> Result<Vec<ColumnInfo>> {
        let table = open(location, full_name, At::Latest).await?;
        describe_state(&table, full_name)
    }

    /// Appends or overwrites rows; with `merge_schema`, new columns in the data are added.
    pub async fn write(
        &self,
        location: &Url,
        full_name: &str,
        batches: Vec<RecordBatch>,
        mode: WriteMode,
        merge_schema: bool,
    ) -> Result<Written> {
        self.write_recording(location, full_name, batches, mode, merge_schema, None)
            .await
    }

    /// The version an application last recorded in the table's log with its write
    /// (`append_recording`); None when it never wrote.
    pub async fn recorded_version(
        &self,
        location: &Url,
        full_name: &str,
        app_id: &str,
    ) -> Result<Option<i64>> {
        let versions = self
            .recorded_versions(location, full_name, &[app_id])
            .await?;
        Ok(versions.into_iter().next().flatten())
    }

    /// The versions several applications last recorded, from one read of the table's log.
    pub async fn recorded_versions(
        &self,
        location: &Url,
        full_name: &str,
        app_ids: &[&str],
    ) -> Result<Vec<Option<i64>>> {
        let table = open(location, full_name, At::Latest).await?;
        let state = table.snapshot().map_err(|e| table_error(full_name, e))?;
        let mut versions = Vec::with_capacity(app_ids.len());
        for app_id in app_ids {
            versions.push(
                state
                    .transaction_version(table.log_store().as_ref(), app_id)
                    .await
                    .map_err(|e| table_error(full_name, e))?,
            );
        }
        Ok(versions)
    }

    /// Appends rows and records `(app_id, version)` in the same commit (a Delta application
    /// transaction): a job that reads the record back on restart knows exactly what it wrote.
    /// With `merge_schema`, new columns in the data are added.
    pub async fn append_recording(
        &self,
        location: &Url,
        full_name: &str,
        batches: Vec<RecordBatch>,
        (app_id, version): (&str, i64),
        merge_schema: bool,
    ) -> Result<Written> {
        let record = Transaction::new(app_id, version);
        self.write_recording(
            location,
            full_name,
            batches,
            WriteMode::Append,
            merge_schema,
            Some(record),
        )
        .await
    }

    async fn write_recording(
        &self,
        location: &Url,
        full_name: &str,
        batches: Vec<RecordBatch>,
        mode: WriteMode,
        merge_schema: bool,
        record: Option<Transaction>,
    ) -> Result<Written> {
        if batches.is_empty() {
            return Err(Error::invalid(format!(
                "No rows to write to {full_name}: send at least one record batch"
            )));
        }
        let table = open(location, full_name, At::Latest).await?;
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        // Schema-level metadata (pandas writes its own into every Arrow table) is no part of a
        // table's columns; delta-rs would refuse the data for it.
        let batches = batches
            .into_iter()
            .map(|batch| {
                if batch.schema().metadata().is_empty() {
                    return Ok(batch);
                }
                let schema = batch
                    .schema()
                    .as_ref()
                    .clone()
                    .with_metadata(Default::default());
                RecordBatch::try_new(std::sync::Arc::new(schema), batch.columns().to_vec()).map_err(
                    |e| Error::invalid(format!("The data does not fit table {full_name}: {e}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let mut write = table.write(batches).with_save_mode(match mode {
            WriteMode::Append => SaveMode::Append,
            WriteMode::Overwrite => SaveMode::Overwrite,
        });
        if merge_schema {
            write = write.with_schema_mode(SchemaMode::Merge);
        }
        let mut commit = commit_properties();
        if let Some(record) = record {
            commit = commit.with_application_transaction(record);
        }
        let table = write
            .with_commit_properties(commit)
            .await
            .map_err(|e| write_error(full_name, e))?;
        Ok(Written {
            version: table.version().unwrap_or_default(),
            rows,
            columns: describe_state(&table, full_name)?,
        })
    }

    /// Writes the rows a DataFusion plan produces, streaming (`INSERT ... SELECT`, CTAS);
    /// creates the table from the plan's schema when `location` holds none yet.
    pub(crate) async fn write_plan(
        &self,
        location: &Url,
        full_name: &str,
        plan: LogicalPlan,
        session: Arc<dyn Session>,
        mode: PlanWrite,
    ) -> Result<Written> {
        let table = match mode {
            PlanWrite::Create => {
                if let Ok(path) = location.to_file_path() {
                    tokio::fs::create_dir_all(&path).await.map_err(|e| {
                        Error::internal_from(
                            format!("cannot create {} for {full_name}", path.display()),
                            e,
                        )
                    })?;
                }
                unloaded(location).map_err(|e| table_error(full_name, e))?
            }
            _ => open(location, full_name, At::Latest).await?,
        };
        let write = table
            .write(Vec::new())
            .with_input_plan(plan)
            .with_session_state(session)
            .with_commit_properties(commit_properties());
        let write = match mode {
            PlanWrite::Create => write
                .with_save_mode(SaveMode::ErrorIfExists)
                .with_table_name(full_name),
            PlanWrite::Append => write.with_save_mode(SaveMode::Append),
            PlanWrite::Overwrite => write.with_save_mode(SaveMode::Overwrite),
            PlanWrite::Replace => write
                .with_save_mode(SaveMode::Overwrite)
                .with_schema_mode(SchemaMode::Overwrite),
        };
        let table = write.await.map_err(|e| write_error(full_name, e))?;
        let last: Vec<CommitInfo> = table
            .history(Some(1))
            .try_collect()
            .await
            .map_err(|e| table_error(full_name, e))?;
        let rows = last
            .first()
            .and_then(|c| c.info.get("operationMetrics"))
            .and_then(|m| m.get("num_added_rows"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or_default();
        Ok(Written {
            version: table.version().unwrap_or_default(),
            rows: rows as usize,
            columns: describe_state(&table, full_name)?,
        })
    }

    /// The table at `at` as a DataFusion table, for SQL, and the version it holds.
    pub(crate) async fn provider(
        &self,
        location: &Url,
        full_name: &str,
        at: At,
        session: &dyn Session,
    ) -> Result<(Arc<dyn TableProvider>, u64)> {
        let table = self.open_cached(location, full_name, at).await?;
        let version = table.version().unwrap_or_default();
        if let Some(plain) = PlainParquetSnapshot::try_new(&table, session) {
            return Ok((Arc::new(plain), version));
        }
        table
            .update_datafusion_session(session)
            .map_err(|e| table_error(full_name, e))?;
        let provider = table
            .table_provider()
            .await
            .map_err(|e| Error::internal_from(format!("Table {full_name} cannot be read"), e))?;
        Ok((provider, version))
    }

    /// Every row of the table as it was at `at`.
    pub async fn read(
        &self,
        location: &Url,
        full_name: &str,
        at: At,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let table = open(location, full_name, at).await?;
        let (_, stream) = table
            .scan_table()
            .await
            .map_err(|e| table_error(full_name, e))?;
        let schema = stream.schema();
        let batches = stream
            .try_collect()
            .await
            .map_err(|e| Error::internal_from(format!("cannot read table {full_name}"), e))?;
        Ok((schema, batches))
    }

    /// Every row as the table was at `at`, only `columns` of them when given (only those are
    /// decoded), read in parallel; and the version read.
    pub async fn read_columns(
        &self,
        location: &Url,
        full_name: &str,
        at: At,
        columns: Option<&[String]>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>, u64)> {
        self.scan(location, full_name, at, columns, None, None)
            .await
    }

    /// Every row at `at` (those `filter` keeps, when given: it is evaluated in the Parquet
    /// scan, so a few rows cost little of a large table), each batch put through `reduce`
    /// as it is decoded, on the scan's own tasks (one per partition): work that keeps a few
    /// rows of many runs beside the decoding, and only what it keeps is held in memory.
    /// Batches come back in no particular order.
    pub async fn read_reduced(
        &self,
        location: &Url,
        full_name: &str,
        at: At,
        filter: Option<deltalake::datafusion::prelude::Expr>,
        reduce: BatchReducer,
    ) -> Result<(SchemaRef, Vec<RecordBatch>, u64)> {
        self.scan(location, full_name, at, None, filter, Some(reduce))
            .await
    }

    async fn scan(
        &self,
        location: &Url,
        full_name: &str,
        at: At,
        columns: Option<&[String]>,
        filter: Option<deltalake::datafusion::prelude::Expr>,
        reduce: Option<BatchReducer>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>, u64)> {
        let mut config = deltalake::datafusion::prelude::SessionConfig::new();
        if filter.is_some() {
            config.options_mut().execution.parquet.pushdown_filters = true;
        }
        let context = deltalake::datafusion::prelude::SessionContext::new_with_config_rt(
            config,
            self.runtime(),
        );
        let (provider, version) = self
            .provider(location, full_name, at, &context.state())
            .await?;
        let mut frame = context
            .read_table(provider)
            .map_err(|e| Error::invalid(format!("cannot read {full_name}: {e}")))?;
        if let Some(filter) = filter {
            frame = frame
                .filter(filter)
                .map_err(|e| Error::invalid(format!("cannot read {full_name}: {e}")))?;
        }
        if let Some(columns) = columns {
            let names: Vec<&str> = columns.iter().map(String::as_str).collect();
            frame = frame
                .select_columns(&names)
                .map_err(|e| Error::invalid(format!("cannot read {full_name}: {e}")))?;
        }
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let read_error = |name: &str, e: DataFusionError| {
            Error::internal_from(format!("cannot read table {name}"), e)
        };
        let batches = match reduce {
            None => frame
                .collect()
                .await
                .map_err(|e| read_error(full_name, e))?,
            Some(reduce) => {
                let partitions = frame
                    .execute_stream_partitioned()
                    .await
                    .map_err(|e| read_error(full_name, e))?;
                let tasks = partitions.into_iter().map(|mut stream| {
                    let (reduce, name) = (reduce.clone(), full_name.to_string());
                    tokio::spawn(async move {
                        let mut kept = Vec::new();
                        while let Some(batch) = stream.next().await {
                            let batch = batch.map_err(|e| read_error(&name, e))?;
                            if batch.num_rows() > 0 {
                                kept.push(reduce(batch)?);
                            }
                        }
                        Ok::<_, Error>(kept)
                    })
                });
                let mut batches = Vec::new();
                for task in futures::future::join_all(tasks).await {
                    batches.extend(task.map_err(|e| {
                        Error::internal_from(format!("reading table {full_name} failed"), e)
                    })??);
                }
                batches
            }
        };
        Ok((schema, batches, version))
    }

    /// The table's latest version from a listing of its log, without reading a snapshot: a
    /// cheap check for something new since `known`, a version the table had.
    pub async fn latest_version(&self, location: &Url, full_name: &str, known: u64) -> Result<u64> {
        let table = unloaded(location).map_err(|e| table_error(full_name, e))?;
        match table.log_store().get_latest_version(known).await {
            Ok(version) => Ok(version),
            // The log was cleaned up past `known`: read the snapshot instead.
            Err(_) => Ok(open(location, full_name, At::Latest)
                .await?
                .version()
                .unwrap_or_default()),
        }
    }

    /// The latest `limit` commits, newest first.
    pub async fn history(
        &self,
        location: &Url,
        full_name: &str,
        limit: usize,
    ) -> Result<Vec<Commit>> {
        let table = open(location, full_name, At::Latest).await?;
        let latest = table.version().unwrap_or_default();
        let infos: Vec<CommitInfo> = table
            .history(Some(limit))
            .try_collect()
            .await
            .map_err(|e| table_error(full_name, e))?;
        Ok(infos
            .into_iter()
            .enumerate()
            .map(|(age, info)| Commit {
                version: latest.saturating_sub(age as u64),
                info,
            })
            .collect())
    }

    /// Deletes a managed table's files.
    pub async fn remove_managed(&self, location: &Url) -> Result<()> {
        if !self.contains(location) {
            return Err(Error::internal(format!(
                "refusing to delete {location}: it is not under the lake root"
            )));
        }
        let Ok(path) = location.to_file_path() else {
            return crate::storage::remove_prefix(location).await;
        };
        match tokio::fs::remove_dir_all(&path).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(Error::internal_from(
                format!("cannot delete {}", path.display()),
                err,
            )),
        }
    }
}

/// A table at a fresh location, to create: not loaded, since there is no log to read yet
/// (loading would only fail, and the Delta kernel logs that failure as an error).
fn unloaded(location: &Url) -> std::result::Result<DeltaTable, DeltaTableError> {
    deltalake::DeltaTableBuilder::from_url(location.clone())?.build()
}

/// Opens a table at a version or moment; errors name the table.
pub(crate) async fn open(location: &Url, full_name: &str, at: At) -> Result<DeltaTable> {
    if !location_exists(location).await {
        return Err(Error::invalid(format!(
            "No Delta table for {full_name}: {location} does not exist"
        )));
    }
    match at {
        At::Latest => deltalake::open_table(location.clone())
            .await
            .map_err(|e| table_error(full_name, e)),
        At::Version(version) => {
            match deltalake::open_table_with_version(location.clone(), version).await {
                Ok(table) => Ok(table),
                Err(err) => {
                    // A version past the latest is the caller's mistake; say which exist.
                    let latest = deltalake::open_table(location.clone())
                        .await
                        .map_err(|e| table_error(full_name, e))?
                        .version()
                        .unwrap_or_default();
                    if version > latest {
                        Err(Error::invalid(format!(
                            "Table {full_name} has no version {version}: its latest is {latest}"
                        )))
                    } else {
                        Err(table_error(full_name, err))
                    }
                }
            }
        }
        At::Timestamp(moment) => {
            // The version current at a moment is the newest committed at or before it, by
            // the commit times the history shows (delta-rs would use file times instead).
            let latest = Box::pin(open(location, full_name, At::Latest)).await?;
            let commits: Vec<CommitInfo> = latest
                .history(None)
                .try_collect()
                .await
                .map_err(|e| table_error(full_name, e))?;
            let newest = latest.version().unwrap_or_default();
            let wanted = moment.timestamp_millis();
            let found = commits
                .iter()
                .enumerate()
                .find(|(_, commit)| commit.timestamp.is_some_and(|t| t <= wanted))
                .map(|(age, _)| newest.saturating_sub(age as u64));
            match found {
                Some(version) if version == newest => Ok(latest),
                Some(version) => Box::pin(open(location, full_name, At::Version(version))).await,
                None => {
                    let earliest = commits
                        .last()
                        .and_then(|c| c.timestamp)
                        .and_then(DateTime::from_timestamp_millis)
                        .unwrap_or_default();
                    Err(Error::invalid(format!(
                        "Table {full_name} did not exist yet at {moment}: its earliest available version was committed at {earliest}"
                    )))
                }
            }
        }
    }
}

/// `url` as a folder, ending in `/`, so joins go inside it.
fn as_folder(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    url
}

/// The folder of a table's Delta log.
fn log_folder(location: &Url) -> Url {
    let folder = as_folder(location.clone());
    folder.join("_delta_log/").unwrap_or(folder)
}

/// Whether a local location is there; remote ones are taken to be (their log says).
async fn location_exists(location: &Url) -> bool {
    match location.to_file_path() {
        Ok(path) => tokio::fs::try_exists(&path).await.unwrap_or(false),
        Err(()) => true,
    }
}

pub(crate) fn describe_state(table: &DeltaTable, full_name: &str) -> Result<Vec<ColumnInfo>> {
    let state = table.snapshot().map_err(|e| table_error(full_name, e))?;
    columns_of(
        state.schema().as_ref(),
        state.metadata().partition_columns(),
    )
}

/// How often a commit that finds another writer's commit at its version tries the next one.
/// Appends never conflict with each other in Delta, but with many writers at once one can lose
/// the race for the next version many times in a row (8 writers: 1 in 8 wins each round).
const COMMIT_RETRIES: usize = 200;

/// The commit settings of tarn's writes; the mark in their commit info tells the commit
/// watcher that tarn made them.
pub(crate) fn commit_properties() -> CommitProperties {
    CommitProperties::default()
        .with_max_retries(COMMIT_RETRIES)
        .with_metadata([(
            crate::commits::TARN_COMMIT_MARK.to_string(),
            serde_json::Value::String(format!("tarn {}", env!("CARGO_PKG_VERSION"))),
        )])
}
