//! Ingestion of CSV, JSON lines and Parquet files into (bronze) Delta tables: the table's
//! schema or one inferred from the first file, each file once, and every row that does not
//! fit written to a quarantine table with the reason, never dropped.
//!
//! Rows are read as text and converted column by column with Arrow's casts, which turn what
//! they cannot read into nulls: a value that was there and is null after the cast marks its
//! row as bad. So the common case runs vectorised and a bad row costs nothing extra.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use deltalake::arrow::compute::{CastOptions, cast_with_options, filter_record_batch, not};
use deltalake::arrow::datatypes::{DataType, Schema, SchemaRef};
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use tarn_core::catalog::{self, ColumnInfo, IngestedFile, Privilege, TableInfo};
use tarn_core::lineage::{NewLineage, Node, SourceRead};
use tarn_core::store::MetaStore;
use tarn_core::{Error, ErrorCode, Result};
use url::Url;

use crate::access::{Securable, authorize, authorize_create_table, reach_catalog, table_for};
use crate::catalog::{ManagedTable, location_of};

use crate::tables::{At, Lake, WriteMode, open, parse_timestamp};
use tarn_core::caller::Caller;

/// Rows converted and written per batch.
const BATCH_ROWS: usize = 65_536;
/// Rows of the first file looked at to infer column types.
const INFER_ROWS: usize = 10_000;
/// The suffix of the table that receives a table's bad rows.
pub const QUARANTINE_SUFFIX: &str = "_quarantine";

/// What files hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Csv,
    JsonLines,
    Parquet,
}

impl SourceFormat {
    pub fn parse(value: &str) -> Result<Self> {
        match value.to_ascii_lowercase().as_str() {
            "csv" => Ok(Self::Csv),
            "json" | "jsonl" | "ndjson" => Ok(Self::JsonLines),
            "parquet" => Ok(Self::Parquet),
            other => Err(Error::invalid(format!(
                "Invalid format '{other}': expected csv, json or parquet"
            ))),
        }
    }

    /// The name [`SourceFormat::parse`] reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::JsonLines => "json",
            Self::Parquet => "parquet",
        }
    }

    /// By a file's extension.
    pub fn of(path: &Path) -> Option<Self> {
        path.extension()
            .and_then(|e| e.to_str())
            .and_then(|e| Self::parse(e).ok())
    }
}

/// What to ingest where.
#[derive(Debug, Clone)]
pub struct IngestSpec {
    /// `catalog.schema.table`; created (managed) when missing.
    pub table: String,
    /// Files or folders (their files, not recursively).
    pub sources: Vec<PathBuf>,
    /// The format of every file; by extension when none.
    pub format: Option<SourceFormat>,
    /// The columns of a table to create; inferred from the first file when none.
    pub columns: Option<Vec<ColumnInfo>>,
}

/// One file a client sends to be ingested.
#[derive(Debug, Clone)]
pub struct Upload {
    /// `catalog.schema.table`; created (managed) when missing.
    pub table: String,
    /// The name the file is recorded under, once per table: its absolute path on the
    /// client's machine.
    pub source: String,
    /// By the source's extension when none.
    pub format: Option<SourceFormat>,
    /// The columns of a table to create; inferred from the file when none.
    pub columns: Option<Vec<ColumnInfo>>,
}

/// What ingesting one sent file did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadReport {
    pub table: String,
    pub created: bool,
    /// The source was ingested before: nothing was read.
    pub skipped: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_table: Option<String>,
}

/// A file to ingest: where it is read, and the name it is recorded under.
struct IngestFile {
    source: String,
    path: PathBuf,
    format: SourceFormat,
    size: u64,
}

/// The table files go into.
enum IngestTarget {
    Existing(Box<TableInfo>),
    Missing {
        catalog: String,
        schema: String,
        name: String,
    },
}

/// A sent file on this machine's disk while it is ingested; removed when dropped.
struct Staged {
    path: PathBuf,
    size: u64,
}

impl Staged {
    async fn receive<S>(mut body: S) -> Result<Self>
    where
        S: futures::Stream<Item = std::result::Result<bytes::Bytes, std::io::Error>> + Unpin,
    {
        use futures::TryStreamExt;
        use tokio::io::AsyncWriteExt;
        let folder = std::env::temp_dir().join("tarn-ingest");
        tokio::fs::create_dir_all(&folder)
            .await
            .map_err(|e| Error::internal_from("cannot stage an ingested file", e))?;
        let mut staged = Self {
            path: folder.join(uuid::Uuid::new_v4().simple().to_string()),
            size: 0,
        };
        let file = tokio::fs::File::create(&staged.path)
            .await
            .map_err(|e| Error::internal_from("cannot stage an ingested file", e))?;
        let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, file);
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| Error::invalid(format!("The file's upload failed: {e}")))?
        {
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| Error::internal_from("cannot stage an ingested file", e))?;
            staged.size += chunk.len() as u64;
        }
        writer
            .flush()
            .await
            .map_err(|e| Error::internal_from("cannot stage an ingested file", e))?;
        Ok(staged)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Where ingestion is, for progress bars.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The files to ingest and their total size.
    Planned { files: usize, bytes: u64 },
    /// A file is done.
    FileDone { source: String, bytes: u64 },
}

/// What one file gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReport {
    pub source: String,
    pub rows_written: u64,
    pub rows_quarantined: u64,
    pub version: u64,
}

/// What an ingestion did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    pub table: String,
    pub created: bool,
    pub files: Vec<FileReport>,
    /// Files ingested before, left alone.
    pub skipped: Vec<String>,
    pub quarantine_table: Option<String>,
}

/// A bad row, as the quarantine table holds it.
struct Rejected {
    line: i64,
    reason: String,
    record: String,
}

/// Rows read as text, one builder per target column.
struct TextRows {
    columns: Vec<StringBuilder>,
    lines: Vec<i64>,
    /// Rows rejected while reading (wrong field count, malformed JSON, ...).
    rejected: Vec<Rejected>,
}

impl TextRows {
    fn new(width: usize) -> Self {
        Self {
            columns: (0..width).map(|_| StringBuilder::new()).collect(),
            lines: Vec::new(),
            rejected: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.lines.len()
    }
}

/// Files under the sources (absolute), in order, with their formats and sizes.
pub fn files_of(
    sources: &[PathBuf],
    given: Option<SourceFormat>,
) -> Result<Vec<(PathBuf, SourceFormat, u64)>> {
    let mut files = Vec::new();
    for source in sources {
        let metadata = std::fs::metadata(source)
            .map_err(|e| Error::invalid(format!("Cannot read {}: {e}", source.display())))?;
        let mut found: Vec<PathBuf> = if metadata.is_dir() {
            std::fs::read_dir(source)
                .map_err(|e| Error::invalid(format!("Cannot list {}: {e}", source.display())))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| {
                    path.is_file()
                        && !path
                            .file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with('.') || n.starts_with('_'))
                })
                .collect()
        } else {
            vec![source.clone()]
        };
        found.sort();
        for path in found {
            let format = match given.or_else(|| SourceFormat::of(&path)) {
                Some(format) => format,
                None if metadata.is_dir() => continue,
                None => {
                    return Err(Error::invalid(format!(
                        "Cannot tell the format of {}: give --format csv, json or parquet",
                        path.display()
                    )));
                }
            };
            if given.is_some() && metadata.is_dir() && SourceFormat::of(&path) != given {
                continue;
            }
            let path = std::path::absolute(&path)
                .map_err(|e| Error::invalid(format!("Invalid path {}: {e}", path.display())))?;
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            files.push((path, format, size));
        }
    }
    Ok(files)
}

/// `name type, name type, ...` as catalog columns (`id bigint, paid_at timestamp`).
pub fn parse_columns(text: &str) -> Result<Vec<ColumnInfo>> {
    text.split(',')
        .enumerate()
        .map(|(position, column)| {
            let mut parts = column.split_whitespace();
            let (Some(name), Some(type_text)) = (parts.next(), parts.next()) else {
                return Err(Error::invalid(format!(
                    "Invalid column '{}': expected 'name type'",
                    column.trim()
                )));
            };
            let type_text = std::iter::once(type_text)
                .chain(parts)
                .collect::<Vec<_>>()
                .join(" ");
            Ok(ColumnInfo {
                position: position as i64,
                ..ColumnInfo::new(catalog::normalize_name("column", name)?, type_text)
            })
        })
        .collect()
}

/// The table's current schema in Arrow's terms: what read rows are converted to.
async fn arrow_schema_of(location: &Url, full_name: &str) -> Result<SchemaRef> {
    Ok(open(location, full_name, At::Latest)
        .await?
        .snapshot()
        .map_err(|e| crate::error::table_error(full_name, e))?
        .snapshot()
        .arrow_schema())
}

/// The rows of files (or folders of files) in the `target` schema (`full_name`'s, named in
/// errors), for a write or merge that must take every row: a row that does not fit refuses the
/// whole load, naming it. A client reads its files so before sending the rows to a server.
pub async fn read_files(
    sources: &[PathBuf],
    format: Option<SourceFormat>,
    target: SchemaRef,
    full_name: &str,
) -> Result<Vec<RecordBatch>> {
    let files = files_of(sources, format)?;
    if files.is_empty() {
        return Err(Error::invalid("No files to read in the given sources"));
    }
    let mut all = Vec::new();
    for (path, format, _) in files {
        let target = target.clone();
        let read_path = path.clone();
        let (batches, rejected) = tokio::task::spawn_blocking(move || {
            read_file(
                &read_path,
                &read_path.display().to_string(),
                format,
                &target,
            )
        })
        .await
        .map_err(|e| Error::internal_from("reading failed", e))??;
        if let Some(first) = rejected.first() {
            return Err(Error::invalid(format!(
                "{} row(s) of {} do not fit {full_name}; the first, line {}: {}",
                rejected.len(),
                path.display(),
                first.line,
                first.reason
            )));
        }
        all.extend(batches);
    }
    Ok(all)
}

impl Lake {
    /// The rows of files (or folders of files) in the table's schema, as [`read_files`] reads
    /// them.
    pub async fn read_rows(
        &self,
        location: &Url,
        full_name: &str,
        sources: &[PathBuf],
        format: Option<SourceFormat>,
    ) -> Result<Vec<RecordBatch>> {
        let target = arrow_schema_of(location, full_name).await?;
        read_files(sources, format, target, full_name).await
    }

    /// Ingests the spec's files into its table, each file once.
    pub async fn ingest(
        &self,
        store: &dyn MetaStore,
        caller: &Caller,
        spec: &IngestSpec,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<IngestReport> {
        let target = self.ingest_target(store, caller, &spec.table).await?;
        let files: Vec<IngestFile> = files_of(&spec.sources, spec.format)?
            .into_iter()
            .map(|(path, format, size)| IngestFile {
                source: path.display().to_string(),
                path,
                format,
                size,
            })
            .collect();
        let Some(first) = files.first() else {
            return Err(Error::invalid("No files to ingest in the given sources"));
        };
        let (table, created) = self
            .create_if_missing(store, caller, target, spec.columns.clone(), first)
            .await?;
        let done = self.ingested_sources(store, &table).await?;
        let (todo, skipped): (Vec<_>, Vec<_>) = files
            .into_iter()
            .partition(|file| !done.contains(&file.source));
        progress(Progress::Planned {
            files: todo.len(),
            bytes: todo.iter().map(|file| file.size).sum(),
        });
        let mut report = IngestReport {
            table: table.full_name.clone(),
            created,
            files: Vec::new(),
            skipped: skipped.into_iter().map(|file| file.source).collect(),
            quarantine_table: None,
        };
        let target = arrow_schema_of(&location_of(&table)?, &table.full_name).await?;
        let mut quarantine: Option<TableInfo> = None;
        for file in todo {
            report.files.push(
                self.ingest_file(store, caller, (&table, &target), &file, &mut quarantine)
                    .await?,
            );
            progress(Progress::FileDone {
                source: file.source,
                bytes: file.size,
            });
        }
        report.quarantine_table = quarantine.map(|table| table.full_name);
        Ok(report)
    }

    /// Ingests one file a client sends as `body` into `table`, unless a file of the same
    /// source was ingested before (then the body is not read). The caller's right to write (or
    /// create) the table is checked before anything is read.
    pub async fn ingest_upload<S>(
        &self,
        store: &dyn MetaStore,
        caller: &Caller,
        upload: &Upload,
        body: S,
    ) -> Result<UploadReport>
    where
        S: futures::Stream<Item = std::result::Result<bytes::Bytes, std::io::Error>> + Unpin,
    {
        if upload.source.is_empty() || upload.source.contains('\0') {
            return Err(Error::invalid(
                "An ingested file needs a source: the name it is recorded under",
            ));
        }
        let format = match upload.format {
            Some(format) => format,
            None => SourceFormat::of(Path::new(&upload.source)).ok_or_else(|| {
                Error::invalid(format!(
                    "Cannot tell the format of {}: give format csv, json or parquet",
                    upload.source
                ))
            })?,
        };
        let target = self.ingest_target(store, caller, &upload.table).await?;
        if let IngestTarget::Existing(table) = &target
            && self
                .ingested_sources(store, table)
                .await?
                .contains(&upload.source)
        {
            return Ok(UploadReport {
                table: table.full_name.clone(),
                created: false,
                skipped: true,
                file: None,
                quarantine_table: None,
            });
        }
        let staged = Staged::receive(body).await?;
        let file = IngestFile {
            source: upload.source.clone(),
            path: staged.path.clone(),
            format,
            size: staged.size,
        };
        let (table, created) = self
            .create_if_missing(store, caller, target, upload.columns.clone(), &file)
            .await?;
        let target = arrow_schema_of(&location_of(&table)?, &table.full_name).await?;
        let mut quarantine = None;
        let report = self
            .ingest_file(store, caller, (&table, &target), &file, &mut quarantine)
            .await?;
        Ok(UploadReport {
            table: table.full_name,
            created,
            skipped: false,
            file: Some(report),
            quarantine_table: quarantine.map(|table| table.full_name),
        })
    }

    /// The files ingested into the table `full_name`, oldest first; for readers of the table.
    pub async fn ingested_files(
        &self,
        store: &dyn MetaStore,
        caller: &Caller,
        full_name: &str,
    ) -> Result<Vec<IngestedFile>> {
        let table = table_for(store, caller, full_name, Privilege::Select).await?;
        store.ingested_files(&table.table_id).await
    }

    /// Where files for `full_name` go, checked for the caller: the table to modify, or the
    /// name of one to create.
    async fn ingest_target(
        &self,
        store: &dyn MetaStore,
        caller: &Caller,
        full_name: &str,
    ) -> Result<IngestTarget> {
        let (catalog_name, schema_name, table_name) = catalog::parse_table_name(full_name)?;
        reach_catalog(store, caller, &catalog_name, true).await?;
        match store
            .get_table(&catalog_name, &schema_name, &table_name)
            .await
        {
            Ok(table) => {
                authorize(store, caller, &Securable::table(&table), Privilege::Modify).await?;
                Ok(IngestTarget::Existing(Box::new(table)))
            }
            Err(err) if err.code == ErrorCode::ResourceDoesNotExist => {
                authorize_create_table(store, caller, &catalog_name, &schema_name).await?;
                Ok(IngestTarget::Missing {
                    catalog: catalog_name,
                    schema: schema_name,
                    name: table_name,
                })
            }
            Err(err) => Err(err),
        }
    }

    /// The target's table, made from `columns` (or those of `first`) when missing; whether
    /// it was made.
    async fn create_if_missing(
        &self,
        store: &dyn MetaStore,
        caller: &Caller,
        target: IngestTarget,
        columns: Option<Vec<ColumnInfo>>,
        first: &IngestFile,
    ) -> Result<(TableInfo, bool)> {
        let (catalog, schema, name) = match target {
            IngestTarget::Existing(table) => return Ok((*table, false)),
            IngestTarget::Missing {
                catalog,
                schema,
                name,
            } => (catalog, schema, name),
        };
        let columns = match columns {
            Some(columns) => columns,
            None => {
                let (path, shown, format) =
                    (first.path.clone(), first.source.clone(), first.format);
                tokio::task::spawn_blocking(move || infer_columns(&path, &shown, format))
                    .await
                    .map_err(|e| Error::internal_from("ingestion failed", e))??
            }
        };
        let table = self
            .create_managed(
                store,
                &caller.actor(),
                ManagedTable {
                    catalog,
                    schema,
                    name,
                    columns,
                    comment: "ingested".into(),
                    properties: BTreeMap::new(),
                },
            )
            .await?;
        Ok((table, true))
    }

    async fn ingested_sources(
        &self,
        store: &dyn MetaStore,
        table: &TableInfo,
    ) -> Result<HashSet<String>> {
        Ok(store
            .ingested_files(&table.table_id)
            .await?
            .into_iter()
            .map(|file| file.source)
            .collect())
    }

    /// Appends one file's rows to `table` (read into `target`, its schema) and its bad rows to
    /// the quarantine table (made on first need and kept in `quarantine`), and records the file
    /// as ingested.
    async fn ingest_file(
        &self,
        store: &dyn MetaStore,
        caller: &Caller,
        (table, target): (&TableInfo, &SchemaRef),
        file: &IngestFile,
        quarantine: &mut Option<TableInfo>,
    ) -> Result<FileReport> {
        let location = location_of(table)?;
        let target = target.clone();
        let source = file.source.clone();
        let (read_path, shown, format) = (file.path.clone(), source.clone(), file.format);
        let (batches, rejected) =
            tokio::task::spawn_blocking(move || read_file(&read_path, &shown, format, &target))
                .await
                .map_err(|e| Error::internal_from("ingestion failed", e))??;
        let rows_written: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let from_file = || {
            vec![SourceRead {
                node: Node::file(source.clone()),
                version: None,
            }]
        };
        let version = if rows_written > 0 {
            let version = self
                .write(
                    &location,
                    &table.full_name,
                    batches,
                    WriteMode::Append,
                    false,
                )
                .await?
                .version;
            let write = NewLineage::new(
                Node::table(table.full_name.clone()),
                Some(version as i64),
                "INGEST",
                caller.principal.name.clone(),
            );
            store
                .record_committed_write(&write.reading(from_file()))
                .await;
            version
        } else {
            open(&location, &table.full_name, At::Latest)
                .await?
                .version()
                .unwrap_or_default()
        };
        if !rejected.is_empty() {
            let quarantined = match quarantine.as_ref() {
                Some(table) => table.clone(),
                None => self.quarantine_table(store, caller, table).await?,
            };
            let written = self
                .write(
                    &location_of(&quarantined)?,
                    &quarantined.full_name,
                    vec![quarantine_batch(&source, &rejected)?],
                    WriteMode::Append,
                    false,
                )
                .await?;
            let write = NewLineage::new(
                Node::table(quarantined.full_name.clone()),
                Some(written.version as i64),
                "INGEST (quarantine)",
                caller.principal.name.clone(),
            );
            store
                .record_committed_write(&write.reading(from_file()))
                .await;
            *quarantine = Some(quarantined);
        }
        store
            .record_ingested_file(&IngestedFile {
                table_id: table.table_id.clone(),
                source: source.clone(),
                size: file.size as i64,
                rows_written: rows_written as i64,
                rows_quarantined: rejected.len() as i64,
                table_version: version as i64,
                ingested_at: now_millis(),
                ingested_by: caller.principal.name.clone(),
            })
            .await?;
        tracing::info!(
            table = %table.full_name,
            %source,
            rows = rows_written,
            quarantined = rejected.len(),
            "ingested"
        );
        Ok(FileReport {
            source,
            rows_written: rows_written as u64,
            rows_quarantined: rejected.len() as u64,
            version,
        })
    }

    /// The table that receives `table`'s bad rows, created next to it on first need.
    async fn quarantine_table(
        &self,
        store: &dyn MetaStore,
        caller: &Caller,
        table: &TableInfo,
    ) -> Result<TableInfo> {
        let name = format!("{}{QUARANTINE_SUFFIX}", table.name);
        match store
            .get_table(&table.catalog_name, &table.schema_name, &name)
            .await
        {
            Ok(existing) => {
                authorize(
                    store,
                    caller,
                    &Securable::table(&existing),
                    Privilege::Modify,
                )
                .await?;
                Ok(existing)
            }
            Err(err) if err.code == ErrorCode::ResourceDoesNotExist => {
                let column = |name: &str, sql: &str, comment: &str| ColumnInfo {
                    comment: comment.into(),
                    ..ColumnInfo::new(name, sql)
                };
                self.create_managed(
                    store,
                    &caller.actor(),
                    ManagedTable {
                        catalog: table.catalog_name.clone(),
                        schema: table.schema_name.clone(),
                        name,
                        columns: vec![
                            column("source", "string", "the file the row came from"),
                            column(
                                "line",
                                "bigint",
                                "its line (CSV, JSON) or row (Parquet), from 1",
                            ),
                            column("reason", "string", "why it was not ingested"),
                            column("record", "string", "the row's values, as JSON"),
                            column("ingested_at", "timestamp", ""),
                        ],
                        comment: format!("rows of {} that could not be ingested", table.full_name),
                        properties: BTreeMap::new(),
                    },
                )
                .await
            }
            Err(err) => Err(err),
        }
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn quarantine_batch(source: &str, rejected: &[Rejected]) -> Result<RecordBatch> {
    let now = now_millis() * 1000;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![source; rejected.len()])),
        Arc::new(Int64Array::from_iter_values(
            rejected.iter().map(|r| r.line),
        )),
        Arc::new(StringArray::from_iter_values(
            rejected.iter().map(|r| r.reason.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rejected.iter().map(|r| r.record.as_str()),
        )),
        Arc::new(TimestampMicrosecondArray::from(vec![now; rejected.len()]).with_timezone("UTC")),
    ];
    let schema = Arc::new(Schema::new(vec![
        deltalake::arrow::datatypes::Field::new("source", DataType::Utf8, true),
        deltalake::arrow::datatypes::Field::new("line", DataType::Int64, true),
        deltalake::arrow::datatypes::Field::new("reason", DataType::Utf8, true),
        deltalake::arrow::datatypes::Field::new("record", DataType::Utf8, true),
        deltalake::arrow::datatypes::Field::new(
            "ingested_at",
            DataType::Timestamp(
                deltalake::arrow::datatypes::TimeUnit::Microsecond,
                Some("UTC".into()),
            ),
            true,
        ),
    ]));
    RecordBatch::try_new(schema, columns)
        .map_err(|e| Error::internal_from("cannot build quarantine rows", e))
}

/// Reads one file into batches of the target schema and the rows that did not fit; `shown`
/// names it in errors (a staged upload's path is the server's own).
fn read_file(
    path: &Path,
    shown: &str,
    format: SourceFormat,
    target: &SchemaRef,
) -> Result<(Vec<RecordBatch>, Vec<Rejected>)> {
    let display = shown;
    let file = std::fs::File::open(path)
        .map_err(|e| Error::invalid(format!("Cannot open {display}: {e}")))?;
    let mut batches = Vec::new();
    let mut rejected = Vec::new();
    match format {
        SourceFormat::Csv | SourceFormat::JsonLines => {
            let mut reader: Box<dyn TextReader> = match format {
                SourceFormat::Csv => Box::new(CsvRows::new(file, target, shown)?),
                _ => Box::new(JsonRows::new(file, target)),
            };
            loop {
                let mut rows = TextRows::new(target.fields().len());
                let more = reader.fill(&mut rows, BATCH_ROWS)?;
                rejected.append(&mut rows.rejected);
                if rows.len() > 0 {
                    let columns: Vec<ArrayRef> = rows
                        .columns
                        .iter_mut()
                        .map(|b| Arc::new(b.finish()) as ArrayRef)
                        .collect();
                    let (good, bad) = convert(target, &columns, &rows.lines)?;
                    batches.extend(good);
                    rejected.extend(bad);
                }
                if !more {
                    break;
                }
            }
        }
        SourceFormat::Parquet => {
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.with_batch_size(BATCH_ROWS).build())
                .map_err(|e| Error::invalid(format!("{display} is not valid Parquet: {e}")))?;
            let mut row = 0i64;
            for batch in reader {
                let batch =
                    batch.map_err(|e| Error::invalid(format!("Cannot read {display}: {e}")))?;
                let extra: Vec<&str> = batch
                    .schema_ref()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .filter(|name| target.field_with_name(name).is_err())
                    .collect();
                if !extra.is_empty() {
                    return Err(Error::invalid(format!(
                        "{display} has columns the table lacks: {}",
                        extra.join(", ")
                    )));
                }
                let columns: Vec<ArrayRef> = target
                    .fields()
                    .iter()
                    .map(|field| {
                        batch
                            .column_by_name(field.name())
                            .cloned()
                            .unwrap_or_else(|| {
                                deltalake::arrow::array::new_null_array(
                                    &DataType::Utf8,
                                    batch.num_rows(),
                                )
                            })
                    })
                    .collect();
                let lines: Vec<i64> = (row + 1..=row + batch.num_rows() as i64).collect();
                row += batch.num_rows() as i64;
                let (good, bad) = convert(target, &columns, &lines)?;
                batches.extend(good);
                rejected.extend(bad);
            }
        }
    }
    Ok((batches, rejected))
}

/// Casts source columns to the target's types; rows with a value the cast could not read,
/// or a null in a required column, go to the quarantine with the reason.
fn convert(
    target: &SchemaRef,
    columns: &[ArrayRef],
    lines: &[i64],
) -> Result<(Option<RecordBatch>, Vec<Rejected>)> {
    let rows = lines.len();
    let options = CastOptions {
        safe: true,
        ..CastOptions::default()
    };
    let mut cast = Vec::with_capacity(columns.len());
    let mut bad = vec![false; rows];
    let mut reasons: Vec<Option<String>> = vec![None; rows];
    for (field, column) in target.fields().iter().zip(columns) {
        // The type as the catalog spells it (double, timestamp), for the reason.
        let spelled = crate::columns::columns_of_arrow(&Schema::new(vec![field.as_ref().clone()]))
            .ok()
            .and_then(|c| c.into_iter().next())
            .map_or_else(|| field.data_type().to_string(), |c| c.type_text);
        let converted = cast_with_options(column, field.data_type(), &options).map_err(|e| {
            Error::invalid(format!(
                "Column '{}' cannot be read as {}: {e}",
                field.name(),
                field.data_type()
            ))
        })?;
        if converted.null_count() > column.null_count() || !field.is_nullable() {
            for row in 0..rows {
                let lost = converted.is_null(row) && !column.is_null(row);
                let missing = !field.is_nullable() && column.is_null(row);
                if (lost || missing) && !bad[row] {
                    bad[row] = true;
                    reasons[row] = Some(if lost {
                        format!(
                            "column '{}': cannot read {} as {spelled}",
                            field.name(),
                            value_text(column, row),
                        )
                    } else {
                        format!("column '{}' is required", field.name())
                    });
                }
            }
        }
        cast.push(converted);
    }
    let batch = RecordBatch::try_new(target.clone(), cast)
        .map_err(|e| Error::internal_from("cannot assemble ingested rows", e))?;
    if !bad.iter().any(|b| *b) {
        return Ok((Some(batch).filter(|b| b.num_rows() > 0), Vec::new()));
    }
    let mask = BooleanArray::from(bad.clone());
    let good = filter_record_batch(
        &batch,
        &not(&mask).map_err(|e| Error::internal_from("cannot filter rows", e))?,
    )
    .map_err(|e| Error::internal_from("cannot filter rows", e))?;
    let rejected = (0..rows)
        .filter(|row| bad[*row])
        .map(|row| Rejected {
            line: lines[row],
            reason: reasons[row].take().unwrap_or_default(),
            record: record_json(target, columns, row),
        })
        .collect();
    Ok((Some(good).filter(|b| b.num_rows() > 0), rejected))
}

fn value_text(column: &ArrayRef, row: usize) -> String {
    ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())
        .map(|f| format!("'{}'", f.value(row)))
        .unwrap_or_else(|_| "the value".into())
}

/// A row's source values as a JSON object, for the quarantine.
fn record_json(target: &SchemaRef, columns: &[ArrayRef], row: usize) -> String {
    let mut object = serde_json::Map::new();
    for (field, column) in target.fields().iter().zip(columns) {
        let value = if column.is_null(row) {
            serde_json::Value::Null
        } else {
            ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())
                .map(|f| serde_json::Value::String(f.value(row).to_string()))
                .unwrap_or(serde_json::Value::Null)
        };
        object.insert(field.name().clone(), value);
    }
    serde_json::Value::Object(object).to_string()
}

/// A source of rows as text.
trait TextReader {
    /// Adds up to `limit` rows; false once the source is exhausted.
    fn fill(&mut self, rows: &mut TextRows, limit: usize) -> Result<bool>;
}

struct CsvRows {
    reader: csv::Reader<std::io::BufReader<std::fs::File>>,
    /// For each file column, the target column it goes to.
    positions: Vec<usize>,
    record: csv::ByteRecord,
}

impl CsvRows {
    fn new(file: std::fs::File, target: &SchemaRef, shown: &str) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(std::io::BufReader::with_capacity(1 << 20, file));
        let header = reader
            .headers()
            .map_err(|e| Error::invalid(format!("Cannot read the header of {}: {e}", shown)))?
            .clone();
        let mut positions = Vec::new();
        let mut extra = Vec::new();
        for name in header.iter() {
            match target.index_of(name.trim()) {
                Ok(index) => positions.push(index),
                Err(_) => extra.push(name.to_string()),
            }
        }
        if !extra.is_empty() {
            return Err(Error::invalid(format!(
                "{} has columns the table lacks: {}",
                shown,
                extra.join(", ")
            )));
        }
        Ok(Self {
            reader,
            positions,
            record: csv::ByteRecord::new(),
        })
    }
}

impl TextReader for CsvRows {
    fn fill(&mut self, rows: &mut TextRows, limit: usize) -> Result<bool> {
        // For each target column, the record field it comes from.
        let mut sources: Vec<Option<usize>> = vec![None; rows.columns.len()];
        for (field, position) in self.positions.iter().enumerate() {
            sources[*position] = Some(field);
        }
        while rows.len() < limit {
            match self.reader.read_byte_record(&mut self.record) {
                Ok(false) => return Ok(false),
                Ok(true) => {}
                Err(err) => {
                    let line = err.position().map(|p| p.line() as i64).unwrap_or(0);
                    rows.rejected.push(Rejected {
                        line,
                        reason: format!("unreadable CSV: {err}"),
                        record: String::new(),
                    });
                    continue;
                }
            }
            let line = self.record.position().map(|p| p.line() as i64).unwrap_or(0);
            if self.record.len() != self.positions.len() {
                rows.rejected.push(Rejected {
                    line,
                    reason: format!(
                        "expected {} fields, found {}",
                        self.positions.len(),
                        self.record.len()
                    ),
                    record: raw_record(&self.record),
                });
                continue;
            }
            if std::str::from_utf8(self.record.as_slice()).is_err() {
                rows.rejected.push(Rejected {
                    line,
                    reason: "the row is not valid UTF-8".into(),
                    record: raw_record(&self.record),
                });
                continue;
            }
            for (builder, source) in rows.columns.iter_mut().zip(&sources) {
                let value = source
                    .and_then(|field| self.record.get(field))
                    .filter(|bytes| !bytes.is_empty())
                    .and_then(|bytes| std::str::from_utf8(bytes).ok());
                builder.append_option(value);
            }
            rows.lines.push(line);
        }
        Ok(true)
    }
}

fn raw_record(record: &csv::ByteRecord) -> String {
    serde_json::Value::Array(
        record
            .iter()
            .map(|f| serde_json::Value::String(String::from_utf8_lossy(f).into_owned()))
            .collect(),
    )
    .to_string()
}

struct JsonRows {
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
    names: Vec<String>,
    line: i64,
}

impl JsonRows {
    fn new(file: std::fs::File, target: &SchemaRef) -> Self {
        use std::io::BufRead;
        Self {
            lines: std::io::BufReader::with_capacity(1 << 20, file).lines(),
            names: target.fields().iter().map(|f| f.name().clone()).collect(),
            line: 0,
        }
    }
}

/// A JSON value as the text a cast reads; objects and arrays stay JSON.
fn json_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

impl TextReader for JsonRows {
    fn fill(&mut self, rows: &mut TextRows, limit: usize) -> Result<bool> {
        while rows.len() < limit {
            let Some(line) = self.lines.next() else {
                return Ok(false);
            };
            self.line += 1;
            let line = match line {
                Ok(line) => line,
                Err(err) => {
                    rows.rejected.push(Rejected {
                        line: self.line,
                        reason: format!("unreadable line: {err}"),
                        record: String::new(),
                    });
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            let object = match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(serde_json::Value::Object(object)) => object,
                Ok(_) => {
                    rows.rejected.push(Rejected {
                        line: self.line,
                        reason: "not a JSON object".into(),
                        record: line,
                    });
                    continue;
                }
                Err(err) => {
                    rows.rejected.push(Rejected {
                        line: self.line,
                        reason: format!("malformed JSON: {err}"),
                        record: line,
                    });
                    continue;
                }
            };
            if let Some(unknown) = object.keys().find(|k| !self.names.contains(k)) {
                rows.rejected.push(Rejected {
                    line: self.line,
                    reason: format!("field '{unknown}' is not a column of the table"),
                    record: line,
                });
                continue;
            }
            for (builder, name) in rows.columns.iter_mut().zip(&self.names) {
                builder.append_option(object.get(name).and_then(json_text));
            }
            rows.lines.push(self.line);
        }
        Ok(true)
    }
}

/// Column types from the first rows of a file (named `shown` in errors): the narrowest of
/// bigint, double, boolean, date, timestamp and string that reads every value.
pub fn infer_columns(path: &Path, shown: &str, format: SourceFormat) -> Result<Vec<ColumnInfo>> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::invalid(format!("Cannot open {}: {e}", shown)))?;
    if format == SourceFormat::Parquet {
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| Error::invalid(format!("{} is not valid Parquet: {e}", shown)))?;
        return crate::columns::columns_of_arrow(builder.schema());
    }
    let mut names: Vec<String> = Vec::new();
    let mut samples: Vec<Vec<String>> = Vec::new();
    match format {
        SourceFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(true)
                .flexible(true)
                .from_reader(file);
            names = reader
                .headers()
                .map_err(|e| Error::invalid(format!("Cannot read the header of {}: {e}", shown)))?
                .iter()
                .map(|n| n.trim().to_string())
                .collect();
            samples.resize(names.len(), Vec::new());
            for record in reader.records().take(INFER_ROWS).flatten() {
                if record.len() != names.len() {
                    continue;
                }
                for (sample, value) in samples.iter_mut().zip(record.iter()) {
                    if !value.is_empty() {
                        sample.push(value.to_string());
                    }
                }
            }
        }
        _ => {
            use std::io::BufRead;
            for line in std::io::BufReader::new(file).lines().take(INFER_ROWS) {
                let Ok(line) = line else { continue };
                let Ok(serde_json::Value::Object(object)) = serde_json::from_str(&line) else {
                    continue;
                };
                for (key, value) in &object {
                    let index = match names.iter().position(|n| n == key) {
                        Some(index) => index,
                        None => {
                            names.push(key.clone());
                            samples.push(Vec::new());
                            names.len() - 1
                        }
                    };
                    if let Some(text) = json_text(value) {
                        samples[index].push(text);
                    }
                }
            }
        }
    }
    if names.is_empty() {
        return Err(Error::invalid(format!(
            "Cannot infer columns from {}: it holds no header or objects",
            shown
        )));
    }
    for name in &names {
        catalog::normalize_name("column", name).map_err(|_| {
            Error::invalid(format!(
                "Column '{name}' of {}: use letters, digits and underscores, or give the columns",
                shown
            ))
        })?;
    }
    Ok(names
        .iter()
        .zip(&samples)
        .map(|(name, values)| ColumnInfo::new(name, infer_type(values)))
        .collect())
}

fn infer_type(values: &[String]) -> &'static str {
    let all = |check: &dyn Fn(&str) -> bool| !values.is_empty() && values.iter().all(|v| check(v));
    if all(&|v| v.trim().parse::<i64>().is_ok()) {
        "bigint"
    } else if all(&|v| v.trim().parse::<f64>().is_ok()) {
        "double"
    } else if all(&|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "false")) {
        "boolean"
    } else if all(&|v| chrono::NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d").is_ok()) {
        "date"
    } else if all(&|v| v.trim().len() > 10 && parse_timestamp(v).is_ok()) {
        "timestamp"
    } else {
        "string"
    }
}
