//! `tarn score`: batch and streaming scoring. Reads a table (or the rows of a query), scores
//! them with a registered model version, alias or stage over Arrow batches on every core, and
//! appends to, overwrites or merges into a predictions table, the model's name and version on
//! each row. `--incremental` scores only what the table gained since the last run, and
//! `--follow` keeps doing so as new versions land: the source version scored up to is recorded
//! in the same Delta commit as the predictions, so each source row is scored into the output
//! exactly once across stops and restarts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tarn_core::store::MetaStore;
use tarn_lake::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use tarn_lake::arrow::datatypes::{Field, Schema};
use tarn_lake::catalog::ManagedTable;
use tarn_lake::{At, Lake, MergeSpec, SqlScope, WriteMode};
use tarn_models::Model;

use crate::local::{cli_actor, cli_caller};

#[derive(Clone, Copy, ValueEnum)]
pub enum Mode {
    Append,
    Overwrite,
    Merge,
}

#[derive(Args)]
pub struct ScoreArgs {
    /// The model: models:/NAME/VERSION, models:/NAME@ALIAS or models:/NAME/STAGE.
    #[arg(long)]
    pub model: String,
    /// The table to score, CATALOG.SCHEMA.TABLE.
    #[arg(long, conflicts_with = "query", required_unless_present = "query")]
    pub table: Option<String>,
    /// Or a query whose rows to score.
    #[arg(long)]
    pub query: Option<String>,
    /// The predictions table, CATALOG.SCHEMA.TABLE; created when missing.
    #[arg(long)]
    pub output: String,
    #[arg(long, value_enum, default_value = "append")]
    pub mode: Mode,
    /// Columns identifying a row, for --mode merge.
    #[arg(long, value_delimiter = ',')]
    pub merge_on: Vec<String>,
    /// Input columns copied to the predictions (default: every input column).
    #[arg(long, value_delimiter = ',')]
    pub keep: Option<Vec<String>>,
    #[arg(long, default_value = "dev")]
    pub workspace: String,
    /// Rows per scoring call.
    #[arg(long, default_value_t = 8192)]
    pub chunk_rows: usize,
    /// Scoring threads; default one per core.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Score only the rows the table gained since the last incremental run (its change data
    /// feed; the first run scores the whole table), recording progress in the output table.
    #[arg(long, requires = "table", conflicts_with_all = ["query", "mode"])]
    pub incremental: bool,
    /// Keep scoring new versions of the table as they land, until Ctrl-C (implies --incremental).
    #[arg(long, requires = "table", conflicts_with_all = ["query", "mode"])]
    pub follow: bool,
    /// How often --follow looks for new versions, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub poll_seconds: f64,
}

pub async fn run(
    store: &dyn MetaStore,
    lake: &Lake,
    artifacts: &tarn_artifacts::ArtifactStore,
    args: ScoreArgs,
) -> Result<()> {
    let mut scorer = Scorer::load(store, artifacts, &args, None)
        .await?
        .context("a model")?;
    if args.incremental || args.follow {
        return stream(store, lake, artifacts, &args, &mut scorer).await;
    }
    let caller = cli_caller(args.workspace.clone());
    let (schema, batches) = match (&args.table, &args.query) {
        (Some(table), _) => {
            let info = table_info(store, table).await?;
            lake.read(
                &tarn_lake::catalog::location_of(&info)?,
                &info.full_name,
                At::Latest,
            )
            .await?
        }
        (None, Some(query)) => {
            let scope = SqlScope {
                catalog: Some(args.workspace.clone()),
                schema: None,
                ..SqlScope::default()
            };
            let output = lake.sql(store, &caller, query, &scope).await?;
            (output.schema, output.batches)
        }
        (None, None) => bail!("give --table or --query"),
    };
    let scored = score_all(&scorer, &args, &schema, &batches)?;
    let written = write(store, lake, &args, scored, None).await?;
    eprintln!("predictions written to {} (version {written})", args.output);
    Ok(())
}

/// The model being scored with, as its reference (alias, stage) resolved last.
struct Scorer {
    name: String,
    version: i64,
    model: Arc<Model>,
}

impl Scorer {
    /// Resolves the model reference and loads the version, unless `current` is that version.
    async fn load(
        store: &dyn MetaStore,
        artifacts: &tarn_artifacts::ArtifactStore,
        args: &ScoreArgs,
        current: Option<&Scorer>,
    ) -> Result<Option<Scorer>> {
        let (name, reference) = tarn_core::serving::parse_model_uri(&args.model)?;
        let version = tarn_serving::resolve_ref(store, &args.workspace, &name, reference).await?;
        if current.is_some_and(|c| c.version == version.version) {
            return Ok(None);
        }
        let model = Arc::new(tarn_serving::load_model(artifacts, &args.workspace, &version).await?);
        eprintln!("scoring with {name} version {}", version.version);
        Ok(Some(Scorer {
            name,
            version: version.version,
            model,
        }))
    }
}

/// Scores every row of `batches` in chunks on every core, with a progress bar.
fn score_all(
    scorer: &Scorer,
    args: &ScoreArgs,
    schema: &Schema,
    batches: &[RecordBatch],
) -> Result<Vec<RecordBatch>> {
    let keep: Vec<String> = match &args.keep {
        Some(columns) => columns.clone(),
        None => schema.fields().iter().map(|f| f.name().clone()).collect(),
    };
    for column in &keep {
        if schema.field_with_name(column).is_err() {
            bail!("the input has no column {column}");
        }
    }
    let chunks: Vec<RecordBatch> = batches
        .iter()
        .flat_map(|batch| {
            (0..batch.num_rows())
                .step_by(args.chunk_rows.max(1))
                .map(move |start| batch.slice(start, args.chunk_rows.min(batch.num_rows() - start)))
        })
        .collect();
    let total: usize = chunks.iter().map(RecordBatch::num_rows).sum();
    let progress = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{bar:40} {human_pos}/{human_len} rows  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let started = std::time::Instant::now();
    let scored = score_chunks(
        &scorer.model,
        &chunks,
        &keep,
        &scorer.name,
        scorer.version,
        threads,
        &progress,
    )?;
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "scored {total} rows in {seconds:.2} s ({:.0} rows/s)",
        total as f64 / seconds.max(1e-9)
    );
    Ok(scored)
}

/// Incremental and continuous scoring of a table's new versions, exactly once into the output.
async fn stream(
    store: &dyn MetaStore,
    lake: &Lake,
    artifacts: &tarn_artifacts::ArtifactStore,
    args: &ScoreArgs,
    scorer: &mut Scorer,
) -> Result<()> {
    let source_name = args.table.as_deref().unwrap_or_default();
    let app_id = format!("tarn score {source_name}");
    let shutdown = crate::server::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        if let Some(newer) = Scorer::load(store, artifacts, args, Some(scorer)).await? {
            *scorer = newer;
        }
        let source = table_info(store, source_name).await?;
        let location = tarn_lake::catalog::location_of(&source)?;
        let latest = lake.latest_version(&location, &source.full_name, 0).await?;
        let done = match output_info(store, &args.output).await? {
            Some(output) => {
                let output_location = tarn_lake::catalog::location_of(&output)?;
                lake.recorded_version(&output_location, &output.full_name, &app_id)
                    .await?
            }
            None => None,
        };
        let pending = match done {
            Some(done) if done >= latest as i64 => None,
            Some(done) => {
                let (_, changes) = lake
                    .changes(&location, &source.full_name, done as u64 + 1, Some(latest))
                    .await?;
                Some(new_rows(changes)?)
            }
            None => Some(
                lake.read(&location, &source.full_name, At::Version(latest))
                    .await?
                    .1,
            ),
        };
        match pending {
            Some(batches) if batches.iter().any(|b| b.num_rows() > 0) => {
                let schema = batches[0].schema();
                let scored = score_all(scorer, args, &schema, &batches)?;
                let written =
                    write(store, lake, args, scored, Some((&app_id, latest as i64))).await?;
                eprintln!(
                    "{source_name} up to version {latest} scored into {} (version {written})",
                    args.output
                );
            }
            Some(_) => eprintln!("{source_name} up to version {latest}: no new rows"),
            None if !args.follow => {
                eprintln!("{source_name} has nothing new since version {latest}")
            }
            None => {}
        }
        if !args.follow {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs_f64(args.poll_seconds.max(0.1))) => {}
            _ = &mut shutdown => return Ok(()),
        }
    }
}

/// The rows a change feed inserted or updated to, without the feed's own columns.
fn new_rows(changes: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    use tarn_lake::arrow::array::{Array, BooleanArray};
    changes
        .into_iter()
        .map(|batch| {
            let kinds = batch
                .column_by_name("_change_type")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
                .context("the change feed has no _change_type")?;
            let keep: BooleanArray = (0..kinds.len())
                .map(|i| {
                    Some(
                        kinds.is_valid(i)
                            && matches!(kinds.value(i), "insert" | "update_postimage"),
                    )
                })
                .collect();
            let rows = tarn_lake::arrow::compute::filter_record_batch(&batch, &keep)?;
            let feed = ["_change_type", "_commit_version", "_commit_timestamp"];
            let columns: Vec<usize> = (0..rows.num_columns())
                .filter(|i| !feed.contains(&rows.schema().field(*i).name().as_str()))
                .collect();
            Ok(rows.project(&columns)?)
        })
        .collect()
}

async fn output_info(
    store: &dyn MetaStore,
    full_name: &str,
) -> Result<Option<tarn_core::catalog::TableInfo>> {
    match table_info(store, full_name).await {
        Ok(info) => Ok(Some(info)),
        Err(e)
            if e.downcast_ref::<tarn_core::Error>()
                .is_some_and(|e| e.code == tarn_core::ErrorCode::ResourceDoesNotExist) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

async fn table_info(
    store: &dyn MetaStore,
    full_name: &str,
) -> Result<tarn_core::catalog::TableInfo> {
    let parts: Vec<&str> = full_name.split('.').collect();
    let [catalog, schema, table] = parts.as_slice() else {
        bail!("{full_name} is not CATALOG.SCHEMA.TABLE");
    };
    Ok(store.get_table(catalog, schema, table).await?)
}

/// Scores the chunks on `threads` threads, in order; each output batch holds the kept input
/// columns, the model's outputs and the model's name and version.
fn score_chunks(
    model: &Model,
    chunks: &[RecordBatch],
    keep: &[String],
    model_name: &str,
    model_version: i64,
    threads: usize,
    progress: &ProgressBar,
) -> Result<Vec<RecordBatch>> {
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, Result<RecordBatch>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let at = next.fetch_add(1, Ordering::Relaxed);
                        let Some(chunk) = chunks.get(at) else { break };
                        done.push((
                            at,
                            score_chunk(model, chunk, keep, model_name, model_version),
                        ));
                        progress.inc(chunk.num_rows() as u64);
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap_or_default())
            .collect()
    });
    if results.len() != chunks.len() {
        bail!("a scoring thread stopped");
    }
    results.sort_by_key(|(at, _)| *at);
    results.into_iter().map(|(_, batch)| batch).collect()
}

fn score_chunk(
    model: &Model,
    chunk: &RecordBatch,
    keep: &[String],
    model_name: &str,
    model_version: i64,
) -> Result<RecordBatch> {
    let outputs = model.score_batch(chunk)?;
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for name in keep {
        let at = chunk.schema().index_of(name)?;
        fields.push(chunk.schema().field(at).clone());
        columns.push(chunk.column(at).clone());
    }
    for (name, column) in outputs {
        fields.push(Field::new(&name, column.data_type().clone(), true));
        columns.push(column);
    }
    let rows = chunk.num_rows();
    fields.push(Field::new(
        "model_name",
        tarn_lake::arrow::datatypes::DataType::Utf8,
        false,
    ));
    columns.push(Arc::new(StringArray::from(vec![model_name; rows])));
    fields.push(Field::new(
        "model_version",
        tarn_lake::arrow::datatypes::DataType::Int64,
        false,
    ));
    columns.push(Arc::new(Int64Array::from(vec![model_version; rows])));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Writes the predictions in one commit (recording `(app id, source version)` with them when
/// given); returns the table version written.
async fn write(
    store: &dyn MetaStore,
    lake: &Lake,
    args: &ScoreArgs,
    batches: Vec<RecordBatch>,
    record: Option<(&str, i64)>,
) -> Result<u64> {
    let parts: Vec<&str> = args.output.split('.').collect();
    let [catalog, schema, name] = parts.as_slice() else {
        bail!("{} is not CATALOG.SCHEMA.TABLE", args.output);
    };
    let Some(first) = batches.first() else {
        bail!("there were no rows to score");
    };
    let info = match store.get_table(catalog, schema, name).await {
        Ok(info) => info,
        Err(e) if e.code == tarn_core::ErrorCode::ResourceDoesNotExist => {
            let table = ManagedTable {
                catalog: catalog.to_string(),
                schema: schema.to_string(),
                name: name.to_string(),
                columns: tarn_lake::columns_of_arrow(&first.schema())?,
                comment: format!("predictions of {}", args.model),
                ..ManagedTable::default()
            };
            lake.create_managed(store, &cli_actor(), table)
                .await
                .context("creating the predictions table")?
        }
        Err(e) => return Err(e.into()),
    };
    let location = tarn_lake::catalog::location_of(&info)?;
    if let Some((app_id, source_version)) = record {
        let written = lake
            .append_recording(
                &location,
                &info.full_name,
                batches,
                (app_id, source_version),
                false,
            )
            .await?;
        return Ok(written.version);
    }
    let version = match args.mode {
        Mode::Append => {
            lake.write(
                &location,
                &info.full_name,
                batches,
                WriteMode::Append,
                false,
            )
            .await?
            .version
        }
        Mode::Overwrite => {
            lake.write(
                &location,
                &info.full_name,
                batches,
                WriteMode::Overwrite,
                false,
            )
            .await?
            .version
        }
        Mode::Merge => {
            if args.merge_on.is_empty() {
                bail!("--mode merge needs --merge-on COLUMNS");
            }
            let spec = MergeSpec {
                keys: args.merge_on.clone(),
                delete_unmatched: false,
            };
            lake.merge(&location, &info.full_name, batches, &spec)
                .await?
                .version
        }
    };
    Ok(version)
}
