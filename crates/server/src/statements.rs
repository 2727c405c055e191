//! SQL statements in the shape of the Databricks SQL statement execution API: a statement is
//! submitted, runs in the background, is waited on for a while, polled, cancelled, and its
//! result is fetched in chunks. Statements and their results live in memory for an hour.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tarn_core::{Error, Result};
use tarn_lake::access::Caller;
use tarn_lake::arrow::array::Array;
use tarn_lake::arrow::datatypes::{Schema, SchemaRef};
use tarn_lake::arrow::record_batch::RecordBatch;
use tarn_lake::arrow::util::display::{ArrayFormatter, FormatOptions};
use tarn_lake::{SqlOutput, SqlScope, ipc};
use tokio::sync::watch;

/// Rows per result chunk.
pub const CHUNK_ROWS: usize = 10_000;
/// How long a finished statement's result stays fetchable.
const KEEP_FOR: Duration = Duration::from_secs(3600);
/// Statements kept at most; the oldest finished ones go first.
const MAX_KEPT: usize = 1000;

/// Where a statement is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Canceled => "CANCELED",
        }
    }
}

/// How results are returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Rows of strings (or nulls), as Databricks' `JSON_ARRAY`.
    JsonArray,
    /// Each chunk an Arrow IPC stream, base64 in `attachment`.
    ArrowStream,
}

impl Format {
    pub fn parse(value: Option<&str>) -> Result<Self> {
        match value.map(str::to_ascii_uppercase).as_deref() {
            None | Some("JSON_ARRAY") => Ok(Self::JsonArray),
            Some("ARROW_STREAM") => Ok(Self::ArrowStream),
            Some(other) => Err(Error::invalid(format!(
                "Invalid format '{other}': expected JSON_ARRAY or ARROW_STREAM"
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::JsonArray => "JSON_ARRAY",
            Self::ArrowStream => "ARROW_STREAM",
        }
    }
}

/// What finished: the rows cut into chunks, or the error.
enum Outcome {
    Rows {
        schema: SchemaRef,
        chunks: Vec<RecordBatch>,
        total_rows: usize,
        truncated: bool,
    },
    Failed(Error),
}

struct Statement {
    id: String,
    /// Only the principal who submitted a statement sees it.
    owner_id: i64,
    workspace: String,
    format: Format,
    submitted: Instant,
    state: watch::Receiver<State>,
    outcome: Mutex<Option<Outcome>>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

/// What submitting takes.
pub struct Submission {
    pub statement: String,
    pub scope: SqlScope,
    pub format: Format,
    pub row_limit: Option<usize>,
    pub wait: Duration,
    /// Cancel instead of continuing in the background when the wait runs out.
    pub cancel_on_timeout: bool,
}

/// The statements of this server.
#[derive(Default)]
pub struct Statements {
    by_id: Mutex<HashMap<String, Arc<Statement>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Statements {
    /// Starts a statement, waits up to `submission.wait` for it and answers with where it is.
    pub async fn submit(
        &self,
        store: Arc<dyn tarn_core::store::MetaStore>,
        lake: Arc<tarn_lake::Lake>,
        caller: Caller,
        submission: Submission,
    ) -> Value {
        let (sender, receiver) = watch::channel(State::Running);
        let statement = Arc::new(Statement {
            id: uuid::Uuid::new_v4().to_string(),
            owner_id: caller.id,
            workspace: caller.workspace.clone(),
            format: submission.format,
            submitted: Instant::now(),
            state: receiver,
            outcome: Mutex::new(None),
            task: Mutex::new(None),
        });
        self.keep(statement.clone());
        let running = statement.clone();
        let row_limit = submission.row_limit;
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let result = lake
                .sql(
                    store.as_ref(),
                    &caller,
                    &submission.statement,
                    &submission.scope,
                )
                .await;
            let (state, outcome) = match result.and_then(|output| chunked(output, row_limit)) {
                Ok(rows) => (State::Succeeded, rows),
                Err(err) => (State::Failed, Outcome::Failed(err)),
            };
            tracing::info!(
                statement_id = %running.id,
                state = state.as_str(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "sql statement finished"
            );
            *lock(&running.outcome) = Some(outcome);
            let _ = sender.send(state);
        });
        *lock(&statement.task) = Some(task.abort_handle());
        let mut state = statement.state.clone();
        let finished =
            tokio::time::timeout(submission.wait, state.wait_for(|s| *s != State::Running))
                .await
                .is_ok();
        if !finished && submission.cancel_on_timeout {
            self.cancel_statement(&statement);
        }
        describe(&statement)
    }

    fn keep(&self, statement: Arc<Statement>) {
        let mut by_id = lock(&self.by_id);
        by_id.retain(|_, s| s.submitted.elapsed() < KEEP_FOR);
        if by_id.len() >= MAX_KEPT {
            let oldest = by_id
                .values()
                .filter(|s| *s.state.borrow() != State::Running)
                .min_by_key(|s| s.submitted)
                .map(|s| s.id.clone());
            if let Some(oldest) = oldest {
                by_id.remove(&oldest);
            }
        }
        by_id.insert(statement.id.clone(), statement);
    }

    fn find(&self, caller: &Caller, id: &str) -> Result<Arc<Statement>> {
        lock(&self.by_id)
            .get(id)
            .filter(|s| s.owner_id == caller.id && s.workspace == caller.workspace)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("Statement not found: {id}")))
    }

    /// Where a statement is, with the first chunk of its result once it succeeded.
    pub fn get(&self, caller: &Caller, id: &str) -> Result<Value> {
        Ok(describe(self.find(caller, id)?.as_ref()))
    }

    /// One chunk of a succeeded statement's result.
    pub fn chunk(&self, caller: &Caller, id: &str, index: usize) -> Result<Value> {
        let statement = self.find(caller, id)?;
        let outcome = lock(&statement.outcome);
        match outcome.as_ref() {
            Some(Outcome::Rows { chunks, .. }) => {
                if index >= chunks.len().max(1) {
                    return Err(Error::invalid(format!(
                        "Statement {id} has no chunk {index}: it has {}",
                        chunks.len()
                    )));
                }
                result_data(&statement, chunks, index)
            }
            _ => Err(Error::invalid(format!(
                "Statement {id} has no result: it is {}",
                statement.state.borrow().as_str()
            ))),
        }
    }

    /// Stops a running statement; a finished one stays as it is.
    pub fn cancel(&self, caller: &Caller, id: &str) -> Result<()> {
        let statement = self.find(caller, id)?;
        self.cancel_statement(&statement);
        Ok(())
    }

    fn cancel_statement(&self, statement: &Statement) {
        if *statement.state.borrow() != State::Running {
            return;
        }
        if let Some(task) = lock(&statement.task).take() {
            task.abort();
        }
        let mut outcome = lock(&statement.outcome);
        if outcome.is_none() {
            *outcome = Some(Outcome::Failed(Error::invalid(
                "The statement was canceled",
            )));
        }
    }
}

/// Cuts the rows into chunks of `CHUNK_ROWS`, keeping at most `row_limit` rows.
fn chunked(output: SqlOutput, row_limit: Option<usize>) -> Result<Outcome> {
    let available = output.num_rows();
    let keep = row_limit.unwrap_or(usize::MAX).min(available);
    let mut chunks = Vec::new();
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0;
    let mut left = keep;
    for batch in output.batches {
        let mut offset = 0;
        while offset < batch.num_rows() && left > 0 {
            let take = (batch.num_rows() - offset)
                .min(CHUNK_ROWS - pending_rows)
                .min(left);
            pending.push(batch.slice(offset, take));
            pending_rows += take;
            offset += take;
            left -= take;
            if pending_rows == CHUNK_ROWS {
                chunks.push(concat(&output.schema, &pending)?);
                pending.clear();
                pending_rows = 0;
            }
        }
    }
    if pending_rows > 0 {
        chunks.push(concat(&output.schema, &pending)?);
    }
    Ok(Outcome::Rows {
        schema: output.schema,
        chunks,
        total_rows: keep,
        truncated: keep < available,
    })
}

fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    tarn_lake::arrow::compute::concat_batches(schema, batches)
        .map_err(|e| Error::internal(format!("cannot assemble a result chunk: {e}")))
}

/// The statement as Databricks describes it: status, manifest and first chunk.
fn describe(statement: &Statement) -> Value {
    let state = *statement.state.borrow();
    let outcome = lock(&statement.outcome);
    let state = match (state, outcome.as_ref()) {
        (State::Running, Some(Outcome::Failed(_))) => State::Canceled,
        (state, _) => state,
    };
    let mut body = json!({
        "statement_id": statement.id,
        "status": { "state": state.as_str() },
    });
    match outcome.as_ref() {
        Some(Outcome::Failed(err)) => {
            body["status"]["error"] = json!({
                "error_code": err.code.as_str(),
                "message": err.message,
            });
        }
        Some(Outcome::Rows {
            schema,
            chunks,
            total_rows,
            truncated,
        }) if state == State::Succeeded => {
            let mut offset = 0;
            let chunk_list: Vec<Value> = chunks
                .iter()
                .enumerate()
                .map(|(index, chunk)| {
                    let entry = json!({
                        "chunk_index": index,
                        "row_offset": offset,
                        "row_count": chunk.num_rows(),
                    });
                    offset += chunk.num_rows();
                    entry
                })
                .collect();
            body["manifest"] = json!({
                "format": statement.format.as_str(),
                "schema": {
                    "column_count": schema.fields().len(),
                    "columns": manifest_columns(schema),
                },
                "total_chunk_count": chunks.len(),
                "chunks": chunk_list,
                "total_row_count": total_rows,
                "truncated": truncated,
            });
            if let Ok(first) = result_data(statement, chunks, 0) {
                body["result"] = first;
            }
        }
        _ => {}
    }
    body
}

/// Columns with Unity Catalog's type names where Delta has the type, Arrow's otherwise.
fn manifest_columns(schema: &Schema) -> Vec<Value> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(position, field)| {
            let single = Schema::new(vec![field.as_ref().clone()]);
            let (type_name, type_text) = match tarn_lake::columns_of_arrow(&single) {
                Ok(columns) if !columns.is_empty() => {
                    (columns[0].type_name.clone(), columns[0].type_text.clone())
                }
                _ => {
                    let text = field.data_type().to_string().to_ascii_uppercase();
                    (text.clone(), text)
                }
            };
            json!({
                "name": field.name(),
                "position": position,
                "type_name": type_name,
                "type_text": type_text,
            })
        })
        .collect()
}

/// One chunk in the statement's format, with the link to the next.
fn result_data(statement: &Statement, chunks: &[RecordBatch], index: usize) -> Result<Value> {
    let row_offset: usize = chunks.iter().take(index).map(RecordBatch::num_rows).sum();
    let mut data = json!({ "chunk_index": index, "row_offset": row_offset });
    let Some(chunk) = chunks.get(index) else {
        data["row_count"] = json!(0);
        if statement.format == Format::JsonArray {
            data["data_array"] = json!([]);
        }
        return Ok(data);
    };
    data["row_count"] = json!(chunk.num_rows());
    match statement.format {
        Format::JsonArray => data["data_array"] = json!(json_rows(chunk)?),
        Format::ArrowStream => {
            let bytes = ipc::encode(&chunk.schema(), std::slice::from_ref(chunk))?;
            data["byte_count"] = json!(bytes.len());
            data["attachment"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
    }
    if index + 1 < chunks.len() {
        data["next_chunk_index"] = json!(index + 1);
        data["next_chunk_internal_link"] = json!(format!(
            "/api/2.0/sql/statements/{}/result/chunks/{}",
            statement.id,
            index + 1
        ));
    }
    Ok(data)
}

/// Rows of strings, nulls as JSON null: Databricks' `JSON_ARRAY`.
fn json_rows(batch: &RecordBatch) -> Result<Vec<Vec<Value>>> {
    let options = FormatOptions::default();
    let formatters = batch
        .columns()
        .iter()
        .map(|column| ArrayFormatter::try_new(column.as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::internal(format!("cannot format a result: {e}")))?;
    Ok((0..batch.num_rows())
        .map(|row| {
            batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(column, formatter)| {
                    if column.is_null(row) {
                        Value::Null
                    } else {
                        Value::String(formatter.value(row).to_string())
                    }
                })
                .collect()
        })
        .collect())
}
