//! SQL statements in the shape of the Databricks SQL statement execution API: a statement is
//! submitted, runs in the background, is waited on for a while, polled, cancelled, and its
//! result is fetched in chunks. Each statement runs within bounds: its operators' memory
//! (spilling to disk past it), its running time, and its result's size (25 MiB inline, as
//! Databricks caps it; the rows past it are not read and the manifest says `truncated`).
//! A statement runs on the server it was submitted to; its state is in the store and its
//! result's chunks are files under the lake root, so any server on the store answers a poll,
//! serves a chunk or passes on a cancel. Statements are kept for an hour; each chunk of a
//! result is dropped once fetched.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::arrow::array::Array;
use crate::arrow::datatypes::{Schema, SchemaRef};
use crate::arrow::record_batch::RecordBatch;
use crate::arrow::util::display::{ArrayFormatter, FormatOptions};
use crate::shelf::Shelf;
use crate::{ResultRows, SqlLimits, SqlOutput, SqlScope, ipc};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tarn_core::caller::Caller;
use tarn_core::signed_urls::UrlSigner;
use tarn_core::store::{MetaStore, StatementRecord};
use tarn_core::{Error, Result};
use tokio::sync::watch;

/// Rows per result chunk.
pub const CHUNK_ROWS: usize = 10_000;
/// The most bytes of rows an inline result holds, Databricks' cap for `INLINE`.
pub const INLINE_RESULT_BYTES: usize = 25 * 1024 * 1024;
/// How long a statement and its result stay.
const KEEP_FOR: Duration = Duration::from_secs(3600);
/// How often a server says in the store that its statements still run, and stops those whose
/// cancel was asked through another server.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// A running statement whose server has not said so for this long is reported failed: the
/// server stopped.
const SILENT_FOR: Duration = Duration::from_secs(15);
/// How often statements past [`KEEP_FOR`] are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The bounds every statement runs within.
#[derive(Debug, Clone, Copy)]
pub struct StatementLimits {
    /// Memory one statement's operators may hold; sorts, joins and aggregations spill to disk
    /// past it.
    pub memory: usize,
    /// How long a statement may run before it is cancelled.
    pub max_duration: Duration,
}

impl Default for StatementLimits {
    fn default() -> Self {
        Self {
            memory: 2 * 1024 * 1024 * 1024,
            max_duration: Duration::from_secs(3600),
        }
    }
}

/// Where a statement is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl State {
    fn parse(text: &str) -> Self {
        match text {
            "SUCCEEDED" => Self::Succeeded,
            "FAILED" => Self::Failed,
            "CANCELED" => Self::Canceled,
            _ => Self::Running,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Canceled => "CANCELED",
        }
    }
}

/// Where results are returned: in the answers (`INLINE`, at most 25 MiB), or as files written
/// while the statement runs and downloaded through signed links (`EXTERNAL_LINKS`, any size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Inline,
    ExternalLinks,
}

impl Disposition {
    pub fn parse(value: Option<&str>) -> Result<Self> {
        match value.map(str::to_ascii_uppercase).as_deref() {
            None | Some("INLINE") => Ok(Self::Inline),
            Some("EXTERNAL_LINKS") => Ok(Self::ExternalLinks),
            Some(other) => Err(Error::invalid(format!(
                "Invalid disposition '{other}': expected INLINE or EXTERNAL_LINKS"
            ))),
        }
    }
}

/// How long a result file's link works.
const LINK_LIFETIME: Duration = Duration::from_secs(900);

/// How results are returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
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

/// How a statement ended, as every server reads it from the store.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Rows(Shape),
    Error { error_code: String, message: String },
}

impl Outcome {
    fn failed(err: &Error) -> Self {
        Self::Error {
            error_code: err.code.as_str().to_string(),
            message: err.message.clone(),
        }
    }

    fn canceled() -> Self {
        Self::failed(&Error::invalid("The statement was canceled"))
    }
}

/// A succeeded statement's result: what the manifest says, and how its chunks are handed out.
#[derive(Debug, Serialize, Deserialize)]
struct Shape {
    format: Format,
    /// Chunks are files downloaded through links (`EXTERNAL_LINKS`), not parts of answers.
    linked: bool,
    columns: Vec<Value>,
    chunks: Vec<ChunkSize>,
    truncated: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChunkSize {
    rows: usize,
    bytes: u64,
}

impl Shape {
    fn row_offset(&self, index: usize) -> usize {
        self.chunks.iter().take(index).map(|c| c.rows).sum()
    }
}

/// What submitting takes.
pub struct Submission {
    pub statement: String,
    pub scope: SqlScope,
    pub format: Format,
    pub disposition: Disposition,
    pub row_limit: Option<usize>,
    /// Databricks' `byte_limit`: at most this many bytes of rows (and never past the inline cap).
    pub byte_limit: Option<usize>,
    pub wait: Duration,
    /// Cancel instead of continuing in the background when the wait runs out.
    pub cancel_on_timeout: bool,
}

/// A statement running on this server.
struct Running {
    /// Turns true (or closes) when it ended.
    ended: watch::Receiver<bool>,
    task: tokio::task::AbortHandle,
}

/// The statements of every server on the store, as this one serves them: it runs those
/// submitted to it; any statement's state, chunks and cancel are reached through any server.
pub struct Statements {
    store: Arc<dyn MetaStore>,
    shelf: Arc<Shelf>,
    running: Arc<Mutex<HashMap<String, Running>>>,
    limits: StatementLimits,
    /// Signs the links to result files, with the key every server on the store shares.
    links: UrlSigner,
    /// This server, in the statements it runs.
    server: String,
    /// When statements past [`KEEP_FOR`] were last forgotten.
    last_sweep: AtomicI64,
}

/// Where links to result files point: the address the client reached this server at, when
/// the request said.
pub struct LinkBase(pub Option<String>);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Statements {
    /// Statements running within `limits`, their results kept under `lake`'s root (a lake in
    /// an object store has them written in `staging` first). Staged files older than any
    /// result lives (left by a process that stopped) are removed.
    pub fn new(
        store: Arc<dyn MetaStore>,
        lake: &crate::Lake,
        limits: StatementLimits,
        staging: PathBuf,
        links: UrlSigner,
    ) -> Result<Self> {
        if let Ok(entries) = std::fs::read_dir(&staging) {
            for entry in entries.flatten() {
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|modified| modified.elapsed().ok())
                    .is_some_and(|age| age > KEEP_FOR);
                if stale && let Err(err) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(error = %err, folder = %entry.path().display(), "cannot remove old result files");
                }
            }
        }
        Ok(Self {
            store,
            shelf: Arc::new(Shelf::open(lake.root(), staging)?),
            running: Arc::default(),
            limits,
            links,
            server: tarn_core::ids::hex32(rand::random()),
            last_sweep: AtomicI64::new(0),
        })
    }

    /// Starts a statement, waits up to `submission.wait` for it and answers with where it is.
    pub async fn submit(
        &self,
        lake: Arc<crate::Lake>,
        caller: Caller,
        submission: Submission,
        base: &LinkBase,
    ) -> Result<Value> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = tarn_core::ids::now_millis();
        self.store
            .create_statement(&StatementRecord {
                id: id.clone(),
                workspace: caller.workspace.clone(),
                owner_id: caller.principal.id,
                server: self.server.clone(),
                state: State::Running.as_str().to_string(),
                outcome: None,
                cancel_requested: false,
                submitted_at: now,
                seen_at: now,
            })
            .await?;
        let linked = submission.disposition == Disposition::ExternalLinks;
        let limits = self.limits;
        let mut scope = submission.scope;
        scope.limits = SqlLimits {
            memory: Some(limits.memory),
            result_bytes: (!linked).then(|| {
                submission
                    .byte_limit
                    .map_or(INLINE_RESULT_BYTES, |n| n.min(INLINE_RESULT_BYTES))
            }),
        };
        if linked {
            scope.rows = ResultRows::Files(self.shelf.writing_folder(&id));
        }
        let (sender, ended) = watch::channel(false);
        let store = self.store.clone();
        let shelf = self.shelf.clone();
        let running = self.running.clone();
        let format = submission.format;
        let row_limit = submission.row_limit;
        let statement_id = id.clone();
        let work = async move {
            let started = Instant::now();
            let ran = tokio::time::timeout(
                limits.max_duration,
                lake.sql(store.as_ref(), &caller, &submission.statement, &scope),
            )
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(
                    tarn_core::ErrorCode::DeadlineExceeded,
                    format!(
                        "The statement was cancelled after running for {} s, the server's limit",
                        limits.max_duration.as_secs()
                    ),
                ))
            });
            let shelved = match ran {
                Ok(output) => shelve(&shelf, &statement_id, output, format, row_limit).await,
                Err(err) => Err(err),
            };
            let (state, outcome) = match shelved {
                Ok(shape) => (State::Succeeded, Outcome::Rows(shape)),
                Err(err) => (State::Failed, Outcome::failed(&err)),
            };
            tracing::info!(
                statement_id = %statement_id,
                state = state.as_str(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "sql statement finished"
            );
            if !record_end(store.as_ref(), &statement_id, state, &outcome).await {
                // Canceled meanwhile: no one will fetch the result.
                shelf.remove(&statement_id).await;
            }
            lock(&running).remove(&statement_id);
            let _ = sender.send(true);
        };
        {
            // Held while spawning, so the statement is known as running before it can end.
            let mut running = lock(&self.running);
            let task = tokio::spawn(work);
            running.insert(
                id.clone(),
                Running {
                    ended: ended.clone(),
                    task: task.abort_handle(),
                },
            );
        }
        let mut ended = ended;
        let finished = tokio::time::timeout(submission.wait, ended.wait_for(|done| *done))
            .await
            .is_ok();
        if !finished && submission.cancel_on_timeout {
            self.stop_here(&id).await?;
        }
        let record = self
            .store
            .get_statement(&id)
            .await?
            .ok_or_else(|| Error::not_found(format!("Statement not found: {id}")))?;
        Ok(self.describe(&record, true, base).await)
    }

    /// The statement `id` if `caller` may see it: its submitter, or an admin when `admins` (a
    /// statement's rows stay its submitter's).
    async fn find(&self, caller: &Caller, id: &str, admins: bool) -> Result<StatementRecord> {
        let not_found = || Error::not_found(format!("Statement not found: {id}"));
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(not_found());
        }
        self.store
            .get_statement(id)
            .await?
            .filter(|s| {
                (s.owner_id == caller.principal.id || (admins && caller.principal.is_admin))
                    && s.workspace == caller.workspace
            })
            .ok_or_else(not_found)
    }

    /// Where a statement is, with the first chunk of its result once it succeeded.
    pub async fn get(&self, caller: &Caller, id: &str, base: &LinkBase) -> Result<Value> {
        let record = self.find(caller, id, true).await?;
        let owner = record.owner_id == caller.principal.id;
        Ok(self.describe(&record, owner, base).await)
    }

    /// One chunk of a succeeded statement's result; its rows are dropped once fetched.
    pub async fn chunk(
        &self,
        caller: &Caller,
        id: &str,
        index: usize,
        base: &LinkBase,
    ) -> Result<Value> {
        let record = self.find(caller, id, false).await?;
        let (state, outcome) = self.ended(&record);
        let shape = match outcome {
            Some(Outcome::Rows(shape)) if state == State::Succeeded => shape,
            _ => {
                return Err(Error::invalid(format!(
                    "Statement {id} has no result: it is {}",
                    state.as_str()
                )));
            }
        };
        if index >= shape.chunks.len().max(1) {
            return Err(Error::invalid(format!(
                "Statement {id} has no chunk {index}: it has {}",
                shape.chunks.len()
            )));
        }
        if shape.linked {
            let link = self.external_link(id, &shape, index, base).await?;
            return Ok(json!({ "external_links": [link] }));
        }
        self.take_chunk(id, &shape, index).await
    }

    /// The bytes of result file `index` of statement `id`, for a link signed by a server on
    /// this store that has not expired; the file is removed once downloaded.
    pub async fn download(
        &self,
        id: &str,
        index: usize,
        expires: i64,
        signature: &str,
    ) -> Result<Vec<u8>> {
        let fields = [id, &index.to_string()];
        if !self
            .links
            .is_valid(&fields, expires, signature, tarn_core::ids::now_millis())?
        {
            return Err(Error::permission_denied(
                "This result link is invalid or has expired",
            ));
        }
        self.shelf.take(id, index).await?.ok_or_else(|| {
            Error::not_found(format!(
                "Chunk {index} of statement {id} is gone: a result file is removed once downloaded"
            ))
        })
    }

    /// Stops a running statement (its submitter's, or any an admin names) on whichever server
    /// runs it; a finished one stays as it is.
    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<()> {
        let record = self.find(caller, id, true).await?;
        if record.state == State::Running.as_str() && !self.stop_here(id).await? {
            self.store.request_statement_cancel(id).await?;
        }
        Ok(())
    }

    /// Stops statement `id` if this server runs it; whether it did.
    async fn stop_here(&self, id: &str) -> Result<bool> {
        let Some(running) = lock(&self.running).remove(id) else {
            return Ok(false);
        };
        running.task.abort();
        let outcome = serde_json::to_value(Outcome::canceled())
            .map_err(|e| Error::internal_from("cannot describe a canceled statement", e))?;
        let now = tarn_core::ids::now_millis();
        if self
            .store
            .end_statement(id, State::Canceled.as_str(), &outcome, now)
            .await?
        {
            self.shelf.remove(id).await;
        }
        drop(running.ended);
        Ok(true)
    }

    /// Says in the store that this server's statements still run, stops those whose cancel
    /// was asked through another server, and now and then forgets statements past
    /// [`KEEP_FOR`] with their results. Run every [`HEARTBEAT_EVERY`].
    pub async fn keep_up(&self) {
        let now = tarn_core::ids::now_millis();
        if !lock(&self.running).is_empty() {
            match self.store.touch_statements(&self.server, now).await {
                Ok(to_cancel) => {
                    for id in to_cancel {
                        if let Err(err) = self.stop_here(&id).await {
                            tracing::warn!(error = %err, statement_id = %id, "cannot cancel a statement");
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err, "cannot mark running statements alive"),
            }
        }
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now - last < SWEEP_EVERY.as_millis() as i64 {
            return;
        }
        self.last_sweep.store(now, Ordering::Relaxed);
        match self
            .store
            .delete_statements_before(now - KEEP_FOR.as_millis() as i64)
            .await
        {
            Ok(expired) => {
                for id in expired {
                    self.shelf.remove(&id).await;
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot forget expired statements"),
        }
    }

    /// The state a statement is in, and how it ended: a statement whose server stopped
    /// saying it runs it is failed.
    fn ended(&self, record: &StatementRecord) -> (State, Option<Outcome>) {
        let state = State::parse(&record.state);
        let outcome = record
            .outcome
            .clone()
            .and_then(|o| serde_json::from_value(o).ok());
        let silent = tarn_core::ids::now_millis() - record.seen_at > SILENT_FOR.as_millis() as i64;
        if state == State::Running && silent && !lock(&self.running).contains_key(&record.id) {
            let stopped = Error::internal(
                "The server running this statement stopped before it ended; run it again",
            );
            return (State::Failed, Some(Outcome::failed(&stopped)));
        }
        (state, outcome)
    }

    /// The statement as Databricks describes it: status, manifest and, for its submitter, the
    /// first chunk (or its link).
    async fn describe(&self, record: &StatementRecord, owner: bool, base: &LinkBase) -> Value {
        let (state, outcome) = self.ended(record);
        let mut body = json!({
            "statement_id": record.id,
            "status": { "state": state.as_str() },
        });
        match outcome {
            Some(Outcome::Error {
                error_code,
                message,
            }) => {
                body["status"]["error"] = json!({ "error_code": error_code, "message": message });
            }
            Some(Outcome::Rows(shape)) if state == State::Succeeded => {
                let mut offset = 0;
                let chunk_list: Vec<Value> = shape
                    .chunks
                    .iter()
                    .enumerate()
                    .map(|(index, chunk)| {
                        let entry = json!({
                            "chunk_index": index,
                            "row_offset": offset,
                            "row_count": chunk.rows,
                        });
                        offset += chunk.rows;
                        entry
                    })
                    .collect();
                body["manifest"] = json!({
                    "format": shape.format.as_str(),
                    "schema": {
                        "column_count": shape.columns.len(),
                        "columns": shape.columns,
                    },
                    "total_chunk_count": shape.chunks.len(),
                    "chunks": chunk_list,
                    "total_row_count": offset,
                    "truncated": shape.truncated,
                });
                if owner {
                    // The first chunk comes with the answer until it has been fetched once.
                    let first = if shape.linked {
                        self.external_link(&record.id, &shape, 0, base)
                            .await
                            .map(|link| json!({ "external_links": [link] }))
                    } else {
                        self.take_chunk(&record.id, &shape, 0).await
                    };
                    if let Ok(first) = first {
                        body["result"] = first;
                    }
                }
            }
            _ => {}
        }
        body
    }

    /// Databricks' `ExternalLink` for result file `index`: where to download it (a link signed
    /// for this file alone, working without credentials until `expiration`, as a presigned URL
    /// does).
    async fn external_link(
        &self,
        id: &str,
        shape: &Shape,
        index: usize,
        base: &LinkBase,
    ) -> Result<Value> {
        let gone = || {
            Error::invalid(format!(
                "Chunk {index} of statement {id} is gone: a result file is removed once downloaded"
            ))
        };
        let file = shape.chunks.get(index).ok_or_else(gone)?;
        if !self.shelf.holds(id, index).await? {
            return Err(gone());
        }
        let base = base.0.as_deref().ok_or_else(|| {
            Error::invalid("The request has no Host header to link result files to")
        })?;
        let expires = tarn_core::ids::now_millis() + LINK_LIFETIME.as_millis() as i64;
        let signature = self.links.sign(&[id, &index.to_string()], expires)?;
        let mut link = json!({
            "chunk_index": index,
            "row_offset": shape.row_offset(index),
            "row_count": file.rows,
            "byte_count": file.bytes,
            "external_link": format!(
                "{base}/api/2.0/sql/statements/{id}/result/chunks/{index}/file?expires={expires}&signature={signature}"
            ),
            "expiration": tarn_core::webhooks::iso_timestamp(expires),
        });
        if index + 1 < shape.chunks.len() {
            link["next_chunk_index"] = json!(index + 1);
            link["next_chunk_internal_link"] = json!(format!(
                "/api/2.0/sql/statements/{id}/result/chunks/{}",
                index + 1
            ));
        }
        Ok(link)
    }

    /// Chunk `index` in the statement's format, with the link to the next; its rows are
    /// dropped from the server afterwards.
    async fn take_chunk(&self, id: &str, shape: &Shape, index: usize) -> Result<Value> {
        let mut data = json!({ "chunk_index": index, "row_offset": shape.row_offset(index) });
        let Some(size) = shape.chunks.get(index) else {
            // An empty result: one empty chunk.
            data["row_count"] = json!(0);
            if shape.format == Format::JsonArray {
                data["data_array"] = json!([]);
            }
            return Ok(data);
        };
        let bytes = self.shelf.take(id, index).await?.ok_or_else(|| {
            Error::invalid(format!(
                "Chunk {index} of statement {id} is gone: a result's rows are dropped once fetched; run the statement again to read them again"
            ))
        })?;
        data["row_count"] = json!(size.rows);
        match shape.format {
            Format::JsonArray => {
                let (_, batches) = ipc::decode(&bytes)?;
                let mut rows = Vec::with_capacity(size.rows);
                for batch in &batches {
                    rows.extend(json_rows(batch)?);
                }
                data["data_array"] = json!(rows);
            }
            Format::ArrowStream => {
                data["byte_count"] = json!(bytes.len());
                data["attachment"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
            }
        }
        if index + 1 < shape.chunks.len() {
            data["next_chunk_index"] = json!(index + 1);
            data["next_chunk_internal_link"] = json!(format!(
                "/api/2.0/sql/statements/{id}/result/chunks/{}",
                index + 1
            ));
        }
        Ok(data)
    }
}

/// Records how a statement ended; false when it had ended already (canceled meanwhile).
async fn record_end(store: &dyn MetaStore, id: &str, state: State, outcome: &Outcome) -> bool {
    let described = match serde_json::to_value(outcome) {
        Ok(described) => described,
        Err(err) => {
            tracing::error!(error = %err, statement_id = id, "cannot describe how a statement ended");
            return true;
        }
    };
    match store
        .end_statement(id, state.as_str(), &described, tarn_core::ids::now_millis())
        .await
    {
        Ok(ended) => ended,
        Err(err) => {
            // Its server stops saying it runs, so readers see it failed.
            tracing::error!(error = %err, statement_id = id, "cannot record how a statement ended");
            true
        }
    }
}

/// Puts a statement's rows on the shelf: cut into chunks of `CHUNK_ROWS` (at most `row_limit`
/// rows), or the files it wrote.
async fn shelve(
    shelf: &Shelf,
    id: &str,
    output: SqlOutput,
    format: Format,
    row_limit: Option<usize>,
) -> Result<Shape> {
    let columns = manifest_columns(&output.schema);
    if !output.files.is_empty() {
        shelf.publish(id, &output.files).await?;
        return Ok(Shape {
            format,
            linked: true,
            columns,
            chunks: output
                .files
                .iter()
                .map(|f| ChunkSize {
                    rows: f.rows,
                    bytes: f.bytes,
                })
                .collect(),
            truncated: false,
        });
    }
    let schema = output.schema.clone();
    let (chunks, truncated) = chunked(output, row_limit)?;
    let mut sizes = Vec::with_capacity(chunks.len());
    for (index, chunk) in chunks.iter().enumerate() {
        let bytes = ipc::encode(&schema, std::slice::from_ref(chunk))?;
        sizes.push(ChunkSize {
            rows: chunk.num_rows(),
            bytes: bytes.len() as u64,
        });
        shelf.put(id, index, bytes).await?;
    }
    Ok(Shape {
        format,
        linked: false,
        columns,
        chunks: sizes,
        truncated,
    })
}

// Cuts the rows into chunks of `CHUNK_ROWS`, keeping at most `row_limit` rows.
fn chunked(output: SqlOutput, row_limit: Option<usize>) -> Result<(Vec<RecordBatch>, bool)> {
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
    Ok((chunks, keep < available || output.truncated))
}

fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    crate::arrow::compute::concat_batches(schema, batches)
        .map_err(|e| Error::internal_from("cannot assemble a result chunk", e))
}

/// Columns with Unity Catalog's type names where Delta has the type, Arrow's otherwise.
fn manifest_columns(schema: &Schema) -> Vec<Value> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(position, field)| {
            let single = Schema::new(vec![field.as_ref().clone()]);
            let (type_name, type_text) = match crate::columns_of_arrow(&single) {
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

/// Rows of strings, nulls as JSON null: Databricks' `JSON_ARRAY`.
fn json_rows(batch: &RecordBatch) -> Result<Vec<Vec<Value>>> {
    let options = FormatOptions::default();
    let formatters = batch
        .columns()
        .iter()
        .map(|column| ArrayFormatter::try_new(column.as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::internal_from("cannot format a result", e))?;
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
