//! Inference tables: every request an endpoint answers, and its response, becomes a row of a
//! Delta table in the endpoint's workspace (`<workspace>.inference.<endpoint>_payload` by
//! default). Rows go through a bounded buffer to a writer task that appends them every second
//! or every 1000 rows. When the buffer is full the row is dropped and counted
//! (`tarn_inference_rows_dropped_total`), never the request delayed; on graceful shutdown the
//! writer drains the buffer before the server exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tarn_core::catalog::{ColumnInfo, NewSchema, TableInfo};
use tarn_core::registry::Actor;
use tarn_core::store::MetaStore;
use tarn_core::{Error, ErrorCode, Result};
use tarn_lake::arrow::array::{
    ArrayRef, Date32Builder, Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
};
use tarn_lake::arrow::datatypes::{DataType, Field, Schema};
use tarn_lake::catalog::ManagedTable;
use tarn_lake::{Lake, WriteMode};
use tokio::sync::mpsc;
use url::Url;

/// Rows buffered per endpoint before new ones are dropped.
pub const BUFFER_ROWS: usize = 100_000;
const FLUSH_ROWS: usize = 1000;
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const MILLIS_PER_DAY: i64 = 86_400_000;

/// One logged request.
#[derive(Debug, Clone)]
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
    pub dropped_full: AtomicU64,
    pub dropped_failed: AtomicU64,
}

/// The sending side of one endpoint's inference table.
#[derive(Debug, Clone)]
pub struct InferenceLog {
    sender: mpsc::Sender<InferenceRow>,
    pub table: String,
    pub counters: Arc<LogCounters>,
}

impl InferenceLog {
    /// Starts the writer of `table`; it stops once every clone of the log is dropped and the
    /// buffer is written.
    pub fn start(
        lake: Arc<Lake>,
        table: &TableInfo,
    ) -> Result<(InferenceLog, tokio::task::JoinHandle<()>)> {
        let location = tarn_lake::catalog::location_of(table)?;
        let (sender, receiver) = mpsc::channel(BUFFER_ROWS);
        let counters = Arc::new(LogCounters::default());
        let writer = tokio::spawn(write_rows(
            lake,
            location,
            table.full_name.clone(),
            receiver,
            counters.clone(),
        ));
        Ok((
            InferenceLog {
                sender,
                table: table.full_name.clone(),
                counters,
            },
            writer,
        ))
    }

    /// Queues a row; drops it (counted) when the buffer is full.
    pub fn record(&self, row: InferenceRow) {
        if self.sender.try_send(row).is_err() {
            self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn write_rows(
    lake: Arc<Lake>,
    location: Url,
    full_name: String,
    mut receiver: mpsc::Receiver<InferenceRow>,
    counters: Arc<LogCounters>,
) {
    let mut pending: Vec<InferenceRow> = Vec::with_capacity(FLUSH_ROWS);
    // A lone row waits at most FLUSH_EVERY before it is written.
    let mut deadline = tokio::time::Instant::now() + FLUSH_EVERY;
    loop {
        let open = tokio::select! {
            received = receiver.recv() => match received {
                Some(row) => {
                    pending.push(row);
                    true
                }
                None => false,
            },
            _ = tokio::time::sleep_until(deadline) => true,
        };
        while pending.len() < FLUSH_ROWS {
            match receiver.try_recv() {
                Ok(row) => pending.push(row),
                Err(_) => break,
            }
        }
        if pending.len() >= FLUSH_ROWS || !open || tokio::time::Instant::now() >= deadline {
            if !pending.is_empty() {
                flush(&lake, &location, &full_name, &mut pending, &counters).await;
            }
            deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        }
        if !open {
            return;
        }
    }
}

async fn flush(
    lake: &Lake,
    location: &Url,
    full_name: &str,
    pending: &mut Vec<InferenceRow>,
    counters: &LogCounters,
) {
    let rows = std::mem::take(pending);
    let count = rows.len() as u64;
    let written = match to_batch(&rows) {
        Ok(batch) => lake
            .write(location, full_name, vec![batch], WriteMode::Append, false)
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    match written {
        Ok(()) => {
            counters.written.fetch_add(count, Ordering::Relaxed);
        }
        Err(error) => {
            counters.dropped_failed.fetch_add(count, Ordering::Relaxed);
            tracing::error!(table = full_name, rows = count, error = %error.message, "cannot write inference rows");
        }
    }
}
