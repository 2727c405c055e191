//! Inference tables: every request an endpoint answers, and its response, becomes a row of a
//! Delta table in the endpoint's workspace (`<workspace>.inference.<endpoint>_payload` by
//! default). A row is appended to a spool file before the request is answered, then goes
//! through a bounded buffer to a writer task that appends rows to the table every second or
//! every 1000 rows; a server killed meanwhile leaves its rows in the spool for the next one to
//! write (`spool`). When the buffer is full the row is dropped and counted
//! (`tarn_inference_rows_dropped_total`), never the request delayed; on graceful shutdown the
//! writer drains the buffer before the server exits.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use tarn_core::catalog::{ColumnInfo, NewSchema, TableInfo};
use tarn_core::registry::Actor;
use tarn_core::store::MetaStore;
use tarn_core::{Error, ErrorCode, Result};
use tarn_lake::Lake;
use tarn_lake::arrow::array::{
    ArrayRef, Date32Builder, Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
};
use tarn_lake::arrow::datatypes::{DataType, Field, Schema};
use tarn_lake::catalog::ManagedTable;
use tokio::sync::mpsc;
use url::Url;

use crate::spool::{self, Leftover, SpoolFile};

/// Rows buffered per endpoint before new ones are dropped.
pub const BUFFER_ROWS: usize = 100_000;
const FLUSH_ROWS: usize = 1000;
/// A spool file whose lines are all written is replaced by a new one past this size.
const ROTATE_SPOOL_BYTES: u64 = 64 << 20;
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const MILLIS_PER_DAY: i64 = 86_400_000;

/// One logged request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InferenceRow {
    pub request_id: String,
    pub client_request_id: Option<String>,
    pub timestamp_ms: i64,
    pub status_code: u16,
    pub execution_time_ms: i64,
    pub served_entity_name: String,
    pub model_name: String,
    pub model_version: i64,
    pub request: String,
    pub response: String,
}

/// The columns of an inference table (Databricks' inference table columns, with the served
/// entity spelled out instead of a request_metadata map).
fn columns() -> Vec<ColumnInfo> {
    let column = |name: &str, type_text: &str, nullable: bool, comment: &str| ColumnInfo {
        nullable,
        comment: comment.into(),
        ..ColumnInfo::new(name, type_text)
    };
    let mut columns = vec![
        column("request_id", "string", false, "tarn's id of the request"),
        column(
            "client_request_id",
            "string",
            true,
            "the request's client_request_id",
        ),
        column("date", "date", false, "UTC day the request arrived"),
        column(
            "timestamp_ms",
            "bigint",
            false,
            "arrival time, epoch milliseconds",
        ),
        column("status_code", "int", false, "HTTP status answered"),
        column(
            "sampling_fraction",
            "double",
            false,
            "share of requests logged",
        ),
        column("execution_time_ms", "bigint", false, "time the model ran"),
        column("request", "string", false, "request body as sent"),
        column("response", "string", false, "response body as answered"),
        column(
            "served_entity_name",
            "string",
            false,
            "served entity that answered",
        ),
        column(
            "model_name",
            "string",
            false,
            "registered model that answered",
        ),
        column("model_version", "bigint", false, "its version"),
    ];
    for (position, column) in columns.iter_mut().enumerate() {
        column.position = position as i64;
    }
    columns
}

fn arrow_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("request_id", DataType::Utf8, false),
        Field::new("client_request_id", DataType::Utf8, true),
        Field::new("date", DataType::Date32, false),
        Field::new("timestamp_ms", DataType::Int64, false),
        Field::new("status_code", DataType::Int32, false),
        Field::new("sampling_fraction", DataType::Float64, false),
        Field::new("execution_time_ms", DataType::Int64, false),
        Field::new("request", DataType::Utf8, false),
        Field::new("response", DataType::Utf8, false),
        Field::new("served_entity_name", DataType::Utf8, false),
        Field::new("model_name", DataType::Utf8, false),
        Field::new("model_version", DataType::Int64, false),
    ]))
}

fn to_batch(rows: &[InferenceRow]) -> Result<RecordBatch> {
    let mut request_id = StringBuilder::new();
    let mut client_request_id = StringBuilder::new();
    let mut date = Date32Builder::new();
    let mut timestamp = Int64Builder::new();
    let mut status = Int32Builder::new();
    let mut sampling = Float64Builder::new();
    let mut execution = Int64Builder::new();
    let mut request = StringBuilder::new();
    let mut response = StringBuilder::new();
    let mut entity = StringBuilder::new();
    let mut model = StringBuilder::new();
    let mut version = Int64Builder::new();
    for row in rows {
        request_id.append_value(&row.request_id);
        client_request_id.append_option(row.client_request_id.as_deref());
        date.append_value(row.timestamp_ms.div_euclid(MILLIS_PER_DAY) as i32);
        timestamp.append_value(row.timestamp_ms);
        status.append_value(i32::from(row.status_code));
        sampling.append_value(1.0);
        execution.append_value(row.execution_time_ms);
        request.append_value(&row.request);
        response.append_value(&row.response);
        entity.append_value(&row.served_entity_name);
        model.append_value(&row.model_name);
        version.append_value(row.model_version);
    }
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(request_id.finish()),
        Arc::new(client_request_id.finish()),
        Arc::new(date.finish()),
        Arc::new(timestamp.finish()),
        Arc::new(status.finish()),
        Arc::new(sampling.finish()),
        Arc::new(execution.finish()),
        Arc::new(request.finish()),
        Arc::new(response.finish()),
        Arc::new(entity.finish()),
        Arc::new(model.finish()),
        Arc::new(version.finish()),
    ];
    RecordBatch::try_new(arrow_schema(), arrays)
        .map_err(|e| Error::internal_from("inference rows", e))
}

/// Finds the endpoint's inference table, creating its schema and the table when missing (owned
/// by `owner`).
pub async fn ensure_table(
    store: &dyn MetaStore,
    lake: &Lake,
    owner: &Actor,
    catalog: &str,
    schema: &str,
    name: &str,
) -> Result<TableInfo> {
    let full_name = format!("{catalog}.{schema}.{name}");
    match store.get_table(catalog, schema, name).await {
        Ok(table) => return Ok(table),
        Err(e) if e.code == ErrorCode::ResourceDoesNotExist => {}
        Err(e) => return Err(e),
    }
    if let Err(e) = store.get_schema(catalog, schema).await {
        if e.code != ErrorCode::ResourceDoesNotExist {
            return Err(e);
        }
        let created = store
            .create_schema(
                &NewSchema {
                    catalog: catalog.to_string(),
                    name: schema.to_string(),
                    comment: "inference tables of serving endpoints".into(),
                    properties: Default::default(),
                },
                owner,
            )
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::ResourceAlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    let table = ManagedTable {
        catalog: catalog.to_string(),
        schema: schema.to_string(),
        name: name.to_string(),
        columns: columns(),
        comment: "requests and responses of a serving endpoint".into(),
        // The unpacker reads only what is new through the change feed.
        properties: [("delta.enableChangeDataFeed".to_string(), "true".to_string())].into(),
    };
    match lake.create_managed(store, owner, table).await {
        Ok(table) => Ok(table),
        // Another replica created it meanwhile.
        Err(e) if e.code == ErrorCode::ResourceAlreadyExists => {
            store.get_table(catalog, schema, name).await
        }
        Err(e) => Err(Error::new(
            e.code,
            format!(
                "cannot create the inference table {full_name}: {}",
                e.message
            ),
        )),
    }
}

/// Counts of what happened to logged rows, for `/metrics`.
#[derive(Debug, Default)]
pub struct LogCounters {
    pub written: AtomicU64,
    /// Rows not logged because the buffer was full.
    pub dropped_full: AtomicU64,
    /// Rows not logged because the spool file could not take them.
    pub dropped_failed: AtomicU64,
}

/// A row on its way to the table, and where its line ends in the spool file.
#[derive(Debug)]
struct Queued {
    row: InferenceRow,
    spool_end: u64,
}

/// The spool file and the queue to the writer, under one lock so that rows reach the writer in
/// the order of their lines: a commit of the first n rows covers exactly the file's first n
/// lines.
#[derive(Debug)]
struct Spooler {
    file: SpoolFile,
    sender: mpsc::Sender<Queued>,
}

/// The sending side of one endpoint's inference table.
#[derive(Debug, Clone)]
pub struct InferenceLog {
    spooler: Arc<Mutex<Spooler>>,
    pub table: String,
    pub counters: Arc<LogCounters>,
}

impl InferenceLog {
    /// First writes what servers that are gone left in the table's spool folder (under
    /// `spool_root`), then starts the writer of `table`; it stops once every clone of the log
    /// is dropped and the buffer is written.
    pub async fn start(
        lake: Arc<Lake>,
        table: &TableInfo,
        spool_root: &Path,
    ) -> Result<(InferenceLog, tokio::task::JoinHandle<()>)> {
        let location = tarn_lake::catalog::location_of(table)?;
        let folder = spool_root.join(&table.table_id);
        recover(&lake, &location, &table.full_name, &folder).await;
        let file = SpoolFile::create(&folder)?;
        let spool = (file.id.clone(), file.path.clone());
        let (sender, receiver) = mpsc::channel(BUFFER_ROWS);
        let counters = Arc::new(LogCounters::default());
        let spooler = Arc::new(Mutex::new(Spooler { file, sender }));
        let writer = Writer {
            lake,
            location,
            full_name: table.full_name.clone(),
            spooler: Arc::downgrade(&spooler),
            counters: counters.clone(),
        };
        let writer = tokio::spawn(writer.run(receiver, spool));
        Ok((
            InferenceLog {
                spooler,
                table: table.full_name.clone(),
                counters,
            },
            writer,
        ))
    }

    /// Spools and queues a row; drops it (counted) when the buffer is full or the spool file
    /// cannot take it.
    pub fn record(&self, row: InferenceRow) {
        let line = match serde_json::to_vec(&row) {
            Ok(mut line) => {
                line.push(b'\n');
                line
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot encode an inference row");
                self.counters.dropped_failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let Ok(mut guard) = self.spooler.lock() else {
            self.counters.dropped_failed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let spooler = &mut *guard;
        let Ok(permit) = spooler.sender.try_reserve() else {
            self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Err(err) = spooler.file.append(&line) {
            tracing::error!(table = %self.table, error = %err.message, "cannot spool an inference row");
            self.counters.dropped_failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        permit.send(Queued {
            row,
            spool_end: spooler.file.len,
        });
    }
}

/// Writes the rows of spool files whose servers are gone, past what their last commits
/// recorded, and removes the files. A file that cannot be written stays for the next start.
async fn recover(lake: &Lake, location: &Url, full_name: &str, folder: &Path) {
    let leftovers = match spool::leftovers(folder) {
        Ok(leftovers) => leftovers,
        Err(err) => {
            tracing::warn!(table = full_name, error = %err.message, "cannot read the spool folder");
            return;
        }
    };
    for mut leftover in leftovers {
        match recover_file(lake, location, full_name, &mut leftover).await {
            Ok(rows) => {
                if rows > 0 {
                    tracing::info!(table = full_name, rows, spool = %leftover.id, "wrote the inference rows a stopped server had spooled");
                }
                leftover.remove();
            }
            Err(err) => {
                tracing::warn!(table = full_name, spool = %leftover.path.display(), error = %err.message, "cannot write a spool file's rows; kept for the next start")
            }
        }
    }
}

async fn recover_file(
    lake: &Lake,
    location: &Url,
    full_name: &str,
    leftover: &mut Leftover,
) -> Result<usize> {
    let written = lake
        .recorded_version(location, full_name, &leftover.id)
        .await?
        .unwrap_or(0);
    let (lines, end) = leftover.lines_from(u64::try_from(written).unwrap_or(0))?;
    if lines.is_empty() {
        return Ok(0);
    }
    let rows = lines
        .iter()
        .map(|line| {
            serde_json::from_slice::<InferenceRow>(line)
                .map_err(|e| Error::internal_from("a spooled inference row", e))
        })
        .collect::<Result<Vec<_>>>()?;
    lake.append_recording(
        location,
        full_name,
        vec![to_batch(&rows)?],
        (&leftover.id, end as i64),
        false,
    )
    .await?;
    Ok(rows.len())
}

/// Writes queued rows to the table every second or every 1000 rows, each commit recording how
/// far into the spool file it wrote. A commit that fails is tried again a second later with the
/// same rows (while new rows wait in the buffer).
struct Writer {
    lake: Arc<Lake>,
    location: Url,
    full_name: String,
    /// Weak, so that the queue closes when the last log is dropped.
    spooler: Weak<Mutex<Spooler>>,
    counters: Arc<LogCounters>,
}

impl Writer {
    /// Writes what `receiver` brings, spooled in the file `(spool_id, spool_path)` to begin
    /// with.
    async fn run(self, mut receiver: mpsc::Receiver<Queued>, spool: (String, PathBuf)) {
        let (mut spool_id, mut spool_path) = spool;
        let mut pending: Vec<Queued> = Vec::with_capacity(FLUSH_ROWS);
        // A lone row waits at most FLUSH_EVERY before it is written.
        let mut deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        loop {
            let open = if pending.len() >= FLUSH_ROWS {
                // Failing commits hold a full batch: wait for the next try, take nothing new.
                tokio::time::sleep_until(deadline).await;
                true
            } else {
                tokio::select! {
                    received = receiver.recv() => match received {
                        Some(row) => {
                            pending.push(row);
                            true
                        }
                        None => false,
                    },
                    _ = tokio::time::sleep_until(deadline) => true,
                }
            };
            while pending.len() < FLUSH_ROWS {
                match receiver.try_recv() {
                    Ok(row) => pending.push(row),
                    Err(_) => break,
                }
            }
            if pending.len() >= FLUSH_ROWS || !open || tokio::time::Instant::now() >= deadline {
                if !pending.is_empty() && self.flush(&spool_id, &pending).await {
                    pending.clear();
                }
                if pending.is_empty()
                    && open
                    && let Some((id, path)) = self.rotate_when_written()
                {
                    (spool_id, spool_path) = (id, path);
                }
                deadline = tokio::time::Instant::now() + FLUSH_EVERY;
            }
            if !open {
                if pending.is_empty() {
                    // Everything spooled is in the table.
                    if let Err(err) = std::fs::remove_file(&spool_path) {
                        tracing::warn!(path = %spool_path.display(), error = %err, "cannot remove a spool file");
                    }
                }
                return;
            }
        }
    }

    /// Commits `pending` with the spool offset its last row ends at; false when it failed.
    async fn flush(&self, spool_id: &str, pending: &[Queued]) -> bool {
        let rows: Vec<InferenceRow> = pending.iter().map(|q| q.row.clone()).collect();
        let end = pending.last().map_or(0, |q| q.spool_end);
        let written = match to_batch(&rows) {
            Ok(batch) => self
                .lake
                .append_recording(
                    &self.location,
                    &self.full_name,
                    vec![batch],
                    (spool_id, end as i64),
                    false,
                )
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        match written {
            Ok(()) => {
                self.counters
                    .written
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                true
            }
            Err(error) => {
                tracing::error!(table = %self.full_name, rows = rows.len(), error = %error.message, "cannot write inference rows; trying again");
                false
            }
        }
    }

    /// Starts a new spool file once the current one is large and every line of it is in the
    /// table (nothing pending here, nothing queued: the lock keeps new rows out meanwhile), and
    /// removes the old one. The new file's id and path.
    fn rotate_when_written(&self) -> Option<(String, PathBuf)> {
        let spooler = self.spooler.upgrade()?;
        let mut spooler = spooler.lock().ok()?;
        if spooler.file.len < ROTATE_SPOOL_BYTES
            || spooler.sender.capacity() != spooler.sender.max_capacity()
        {
            return None;
        }
        let folder = spooler.file.path.parent()?.to_path_buf();
        let fresh = match SpoolFile::create(&folder) {
            Ok(fresh) => fresh,
            Err(err) => {
                tracing::warn!(error = %err.message, "cannot start a new spool file");
                return None;
            }
        };
        let next = (fresh.id.clone(), fresh.path.clone());
        std::mem::replace(&mut spooler.file, fresh).remove();
        Some(next)
    }
}
