//! SQL statements in the shape of the Databricks SQL statement execution API: a statement is
//! submitted, runs in the background, is waited on for a while, polled, cancelled, and its
//! result is fetched in chunks. Each statement runs within bounds: its operators' memory
//! (spilling to disk past it), its running time, and its result's size (25 MiB inline, as
//! Databricks caps it; the rows past it are not read and the manifest says `truncated`).
//! Statements are kept for an hour; each chunk of a result is dropped once fetched, and the
//! oldest results go first when the results kept together pass a bound.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::arrow::array::Array;
use crate::arrow::datatypes::{Schema, SchemaRef};
use crate::arrow::record_batch::RecordBatch;
use crate::arrow::util::display::{ArrayFormatter, FormatOptions};
use crate::{ResultFile, ResultRows, SqlLimits, SqlOutput, SqlScope, ipc};
use base64::Engine;
use serde_json::{Value, json};
use tarn_core::caller::Caller;
use tarn_core::{Error, Result};
use tokio::sync::watch;

use tarn_core::signed_urls::UrlSigner;

/// Rows per result chunk.
pub const CHUNK_ROWS: usize = 10_000;
/// The most bytes of rows an inline result holds, Databricks' cap for `INLINE`.
pub const INLINE_RESULT_BYTES: usize = 25 * 1024 * 1024;
/// How long a finished statement's result stays fetchable.
const KEEP_FOR: Duration = Duration::from_secs(3600);
/// Statements kept at most; the oldest finished ones go first.
const MAX_KEPT: usize = 1000;
/// Bytes of results all kept statements may hold together; past it the oldest results are
/// dropped (their statements stay, saying so).
const MAX_RESULT_BYTES_KEPT: usize = 512 * 1024 * 1024;

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
    Rows(Rows),
    Failed(Error),
}

/// A result, chunk by chunk; a chunk's rows go once it has been fetched.
struct Rows {
    schema: SchemaRef,
    /// Each chunk's row count, which the manifest keeps saying after the rows are gone.
    chunk_rows: Vec<usize>,
    /// The chunks not fetched yet (`INLINE`).
    chunks: Vec<Option<RecordBatch>>,
    /// The files not downloaded yet (`EXTERNAL_LINKS`).
    files: Vec<Option<ResultFile>>,
    total_rows: usize,
    truncated: bool,
    /// Why the rows not fetched yet were dropped early, if they were.
    dropped: Option<&'static str>,
}

impl Rows {
    fn bytes_held(&self) -> usize {
        self.chunks
            .iter()
            .flatten()
            .map(RecordBatch::get_array_memory_size)
            .sum()
    }
}

struct Statement {
    id: String,
    /// Only the principal who submitted a statement sees it.
    owner_id: i64,
    workspace: String,
    format: Format,
    disposition: Disposition,
    /// Where its result files go (`EXTERNAL_LINKS`); removed with the statement.
    folder: Option<PathBuf>,
    submitted: Instant,
    state: watch::Receiver<State>,
    outcome: Mutex<Option<Outcome>>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Statement {
    fn drop(&mut self) {
        if let Some(folder) = &self.folder
            && let Err(err) = std::fs::remove_dir_all(folder)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %err, folder = %folder.display(), "cannot remove a statement's result files");
        }
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

/// The statements of this server.
pub struct Statements {
    by_id: Arc<Mutex<HashMap<String, Arc<Statement>>>>,
    limits: StatementLimits,
    /// Where `EXTERNAL_LINKS` results are written, a folder per statement.
    folder: PathBuf,
    /// Signs the links to result files (per process: links die with it, as the files do).
    links: UrlSigner,
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
    /// Statements running within `limits`, writing `EXTERNAL_LINKS` results in a folder of
    /// this process's own under `parent`. Folders there older than any result lives (left by
    /// a process that stopped: its links died with it) are removed; other processes sharing the
    /// data directory keep theirs.
    pub fn new(limits: StatementLimits, parent: PathBuf, links: UrlSigner) -> Self {
        if let Ok(entries) = std::fs::read_dir(&parent) {
            for entry in entries.flatten() {
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|modified| modified.elapsed().ok())
                    .is_some_and(|age| age > KEEP_FOR + LINK_LIFETIME);
                if stale && let Err(err) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(error = %err, folder = %entry.path().display(), "cannot remove old result files");
                }
            }
        }
        Self {
            by_id: Arc::default(),
            limits,
            folder: parent.join(tarn_core::ids::hex32(rand::random())),
            links,
        }
    }

    /// Starts a statement, waits up to `submission.wait` for it and answers with where it is.
    pub async fn submit(
        &self,
        store: Arc<dyn tarn_core::store::MetaStore>,
        lake: Arc<crate::Lake>,
        caller: Caller,
        submission: Submission,
        base: &LinkBase,
    ) -> Value {
        let (sender, receiver) = watch::channel(State::Running);
        let id = uuid::Uuid::new_v4().to_string();
        let folder =
            (submission.disposition == Disposition::ExternalLinks).then(|| self.folder.join(&id));
        let statement = Arc::new(Statement {
            id,
            owner_id: caller.principal.id,
            workspace: caller.workspace.clone(),
            format: submission.format,
            disposition: submission.disposition,
            folder: folder.clone(),
            submitted: Instant::now(),
            state: receiver,
            outcome: Mutex::new(None),
            task: Mutex::new(None),
        });
        self.keep(statement.clone());
        let running = statement.clone();
        let row_limit = submission.row_limit;
        let kept = self.by_id.clone();
        let limits = self.limits;
        let mut scope = submission.scope;
        scope.limits = SqlLimits {
            memory: Some(limits.memory),
            result_bytes: match &folder {
                Some(_) => None,
                None => Some(
                    submission
                        .byte_limit
                        .map_or(INLINE_RESULT_BYTES, |n| n.min(INLINE_RESULT_BYTES)),
                ),
            },
        };
        if let Some(folder) = folder {
            scope.rows = ResultRows::Files(folder);
        }
        let task = tokio::spawn(async move {
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
            let rows = ran.and_then(|output| {
                if output.files.is_empty() {
                    chunked(output, row_limit)
                } else {
                    Ok(in_files(output.schema, output.files))
                }
            });
            let (state, outcome) = match rows {
                Ok(rows) => (State::Succeeded, Outcome::Rows(rows)),
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
            drop_oldest_results(&kept);
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
        describe(&statement, true, &self.linker(base))
    }

    fn linker<'a>(&'a self, base: &'a LinkBase) -> Linker<'a> {
        Linker {
            base: base.0.as_deref(),
            signer: &self.links,
        }
    }

    fn keep(&self, statement: Arc<Statement>) {
        let mut by_id = lock(&self.by_id);
        forget_expired(&mut by_id);
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

    /// The statement `id` if `caller` may see it: its submitter, or an admin when `admins` (a
    /// statement's rows stay its submitter's).
    fn find(&self, caller: &Caller, id: &str, admins: bool) -> Result<Arc<Statement>> {
        let mut by_id = lock(&self.by_id);
        forget_expired(&mut by_id);
        by_id
            .get(id)
            .filter(|s| {
                (s.owner_id == caller.principal.id || (admins && caller.principal.is_admin))
                    && s.workspace == caller.workspace
            })
            .cloned()
            .ok_or_else(|| Error::not_found(format!("Statement not found: {id}")))
    }

    /// Where a statement is, with the first chunk of its result once it succeeded.
    pub fn get(&self, caller: &Caller, id: &str, base: &LinkBase) -> Result<Value> {
        let statement = self.find(caller, id, true)?;
        let owner = statement.owner_id == caller.principal.id;
        Ok(describe(statement.as_ref(), owner, &self.linker(base)))
    }

    /// One chunk of a succeeded statement's result; its rows are dropped once fetched.
    pub fn chunk(&self, caller: &Caller, id: &str, index: usize, base: &LinkBase) -> Result<Value> {
        let statement = self.find(caller, id, false)?;
        let mut outcome = lock(&statement.outcome);
        match outcome.as_mut() {
            Some(Outcome::Rows(rows)) => {
                if index >= rows.chunk_rows.len().max(1) {
                    return Err(Error::invalid(format!(
                        "Statement {id} has no chunk {index}: it has {}",
                        rows.chunk_rows.len()
                    )));
                }
                if linked(&statement, rows) {
                    let link = external_link(&statement, rows, index, &self.linker(base))?;
                    return Ok(json!({ "external_links": [link] }));
                }
                take_chunk(&statement, rows, index)
            }
            _ => Err(Error::invalid(format!(
                "Statement {id} has no result: it is {}",
                statement.state.borrow().as_str()
            ))),
        }
    }

    /// The bytes of result file `index` of statement `id`, for a link signed by this server
    /// that has not expired; the file is removed once downloaded.
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
        let statement = lock(&self.by_id)
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("Statement not found: {id}")))?;
        let file = {
            let mut outcome = lock(&statement.outcome);
            let Some(Outcome::Rows(rows)) = outcome.as_mut() else {
                return Err(Error::not_found(format!("Statement {id} has no result")));
            };
            rows.files
                .get_mut(index)
                .and_then(Option::take)
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "Chunk {index} of statement {id} is gone: a result file is removed once downloaded"
                    ))
                })?
        };
        let bytes = tokio::fs::read(&file.path).await.map_err(|e| {
            tracing::error!(error = %e, path = %file.path.display(), "cannot read a result file");
            Error::internal("Cannot read the result file (the server's log has the cause)")
        })?;
        if let Err(err) = tokio::fs::remove_file(&file.path).await {
            tracing::warn!(error = %err, path = %file.path.display(), "cannot remove a downloaded result file");
        }
        Ok(bytes)
    }

    /// Stops a running statement (its submitter's, or any an admin names); a finished one
    /// stays as it is.
    pub fn cancel(&self, caller: &Caller, id: &str) -> Result<()> {
        let statement = self.find(caller, id, true)?;
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

/// Forgets statements older than [`KEEP_FOR`].
fn forget_expired(by_id: &mut HashMap<String, Arc<Statement>>) {
    by_id.retain(|_, s| s.submitted.elapsed() < KEEP_FOR);
}

/// Drops the rows of the oldest results until those kept fit [`MAX_RESULT_BYTES_KEPT`].
fn drop_oldest_results(kept: &Mutex<HashMap<String, Arc<Statement>>>) {
    let mut statements: Vec<Arc<Statement>> = lock(kept).values().cloned().collect();
    statements.sort_by_key(|s| std::cmp::Reverse(s.submitted));
    let mut held = 0usize;
    for statement in statements {
        let mut outcome = lock(&statement.outcome);
        let Some(Outcome::Rows(rows)) = outcome.as_mut() else {
            continue;
        };
        held += rows.bytes_held();
        if held > MAX_RESULT_BYTES_KEPT && rows.dropped.is_none() {
            held -= rows.bytes_held();
            rows.chunks.iter_mut().for_each(|chunk| *chunk = None);
            rows.dropped = Some("newer results needed the server's memory");
        }
    }
}

/// Cuts the rows into chunks of `CHUNK_ROWS`, keeping at most `row_limit` rows.
fn chunked(output: SqlOutput, row_limit: Option<usize>) -> Result<Rows> {
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
    Ok(Rows {
        schema: output.schema,
        chunk_rows: chunks.iter().map(RecordBatch::num_rows).collect(),
        chunks: chunks.into_iter().map(Some).collect(),
        files: Vec::new(),
        total_rows: keep,
        truncated: keep < available || output.truncated,
        dropped: None,
    })
}

/// A result written to files: one chunk per file.
fn in_files(schema: SchemaRef, files: Vec<ResultFile>) -> Rows {
    Rows {
        schema,
        chunk_rows: files.iter().map(|f| f.rows).collect(),
        chunks: Vec::new(),
        total_rows: files.iter().map(|f| f.rows).sum(),
        files: files.into_iter().map(Some).collect(),
        truncated: false,
        dropped: None,
    }
}

/// What result links are made of.
struct Linker<'a> {
    base: Option<&'a str>,
    signer: &'a UrlSigner,
}

/// Whether a result is handed out as links: asked for, and written to files (a write's counts
/// stay inline).
fn linked(statement: &Statement, rows: &Rows) -> bool {
    statement.disposition == Disposition::ExternalLinks && rows.chunks.is_empty()
}

/// Databricks' `ExternalLink` for result file `index`: where to download it (a link signed for
/// this file alone, working without credentials until `expiration`, as a presigned URL does).
fn external_link(
    statement: &Statement,
    rows: &Rows,
    index: usize,
    linker: &Linker,
) -> Result<Value> {
    let Some(Some(file)) = rows.files.get(index) else {
        return Err(Error::invalid(format!(
            "Chunk {index} of statement {} is gone: a result file is removed once downloaded",
            statement.id
        )));
    };
    let base = linker
        .base
        .ok_or_else(|| Error::invalid("The request has no Host header to link result files to"))?;
    let expires = tarn_core::ids::now_millis() + LINK_LIFETIME.as_millis() as i64;
    let signature = linker
        .signer
        .sign(&[&statement.id, &index.to_string()], expires)?;
    let mut link = json!({
        "chunk_index": index,
        "row_offset": rows.chunk_rows.iter().take(index).sum::<usize>(),
        "row_count": file.rows,
        "byte_count": file.bytes,
        "external_link": format!(
            "{}/api/2.0/sql/statements/{}/result/chunks/{index}/file?expires={expires}&signature={signature}",
            base, statement.id
        ),
        "expiration": tarn_core::webhooks::iso_timestamp(expires),
    });
    if index + 1 < rows.chunk_rows.len() {
        link["next_chunk_index"] = json!(index + 1);
        link["next_chunk_internal_link"] = json!(format!(
            "/api/2.0/sql/statements/{}/result/chunks/{}",
            statement.id,
            index + 1
        ));
    }
    Ok(link)
}

fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    crate::arrow::compute::concat_batches(schema, batches)
        .map_err(|e| Error::internal_from("cannot assemble a result chunk", e))
}

/// The statement as Databricks describes it: status, manifest and, for its submitter, the
/// first chunk (or its link).
fn describe(statement: &Statement, owner: bool, linker: &Linker) -> Value {
    let state = *statement.state.borrow();
    let mut outcome = lock(&statement.outcome);
    let state = match (state, outcome.as_ref()) {
        (State::Running, Some(Outcome::Failed(_))) => State::Canceled,
        (state, _) => state,
    };
    let mut body = json!({
        "statement_id": statement.id,
        "status": { "state": state.as_str() },
    });
    match outcome.as_mut() {
        Some(Outcome::Failed(err)) => {
            body["status"]["error"] = json!({
                "error_code": err.code.as_str(),
                "message": err.message,
            });
        }
        Some(Outcome::Rows(rows)) if state == State::Succeeded => {
            let mut offset = 0;
            let chunk_list: Vec<Value> = rows
                .chunk_rows
                .iter()
                .enumerate()
                .map(|(index, count)| {
                    let entry = json!({
                        "chunk_index": index,
                        "row_offset": offset,
                        "row_count": count,
                    });
                    offset += count;
                    entry
                })
                .collect();
            body["manifest"] = json!({
                "format": statement.format.as_str(),
                "schema": {
                    "column_count": rows.schema.fields().len(),
                    "columns": manifest_columns(&rows.schema),
                },
                "total_chunk_count": rows.chunk_rows.len(),
                "chunks": chunk_list,
                "total_row_count": rows.total_rows,
                "truncated": rows.truncated,
            });
            if linked(statement, rows) {
                if owner && let Ok(first) = external_link(statement, rows, 0, linker) {
                    body["result"] = json!({ "external_links": [first] });
                }
            } else {
                // The first chunk comes with the answer until it has been fetched once.
                let first_waiting = rows.chunks.first().is_none_or(Option::is_some);
                if owner
                    && first_waiting
                    && let Ok(first) = take_chunk(statement, rows, 0)
                {
                    body["result"] = first;
                }
            }
        }
        _ => {}
    }
    body
}

/// Chunk `index` in the statement's format, its rows dropped from the server afterwards.
fn take_chunk(statement: &Statement, rows: &mut Rows, index: usize) -> Result<Value> {
    let data = result_data(statement, rows, index)?;
    if let Some(chunk) = rows.chunks.get_mut(index) {
        *chunk = None;
    }
    Ok(data)
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

/// One chunk in the statement's format, with the link to the next.
fn result_data(statement: &Statement, rows: &Rows, index: usize) -> Result<Value> {
    let row_offset: usize = rows.chunk_rows.iter().take(index).sum();
    let mut data = json!({ "chunk_index": index, "row_offset": row_offset });
    let chunk = match rows.chunks.get(index) {
        Some(Some(chunk)) => chunk,
        Some(None) => {
            return Err(Error::invalid(format!(
                "Chunk {index} of statement {} is gone: {}",
                statement.id,
                rows.dropped
                    .unwrap_or("a result's rows are dropped once fetched; run the statement again to read them again")
            )));
        }
        None => {
            data["row_count"] = json!(0);
            if statement.format == Format::JsonArray {
                data["data_array"] = json!([]);
            }
            return Ok(data);
        }
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
    if index + 1 < rows.chunk_rows.len() {
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
