//! `tarn score`: batch and streaming scoring through the server, as the token's principal.
//! Reads a table (or the rows of a query), scores them on this machine with a registered model
//! version, alias or stage (downloaded as `mlflow` downloads it) over Arrow batches on every
//! core, and appends to, overwrites or merges into a predictions table, the model's name and
//! version on each row. `--incremental` scores only what the table gained since the last run,
//! and `--follow` keeps doing so as new versions land: the source version scored up to is
//! recorded in the same Delta commit as the predictions (an idempotent append), so each source
//! row is scored into the output exactly once across stops and restarts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tarn_lake::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use tarn_lake::arrow::datatypes::{Field, Schema};
use tarn_lake::ipc;
use tarn_models::Model;

use crate::client::{Client, error_code};
use crate::models::{FetchedModel, fetch_model};
use crate::tables::{DATA, arrow_rows, send_rows, table_client};

/// Unity Catalog's REST API.
const UC: &str = "/api/2.1/unity-catalog";

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

pub async fn run(client: &Client, args: ScoreArgs) -> Result<()> {
    let mut scorer = fetch_model(client, &args.model, None)
        .await?
        .context("a model")?;
    announce(&scorer);
    if args.incremental || args.follow {
        return stream(client, &args, &mut scorer).await;
    }
    let (schema, batches) = match (&args.table, &args.query) {
        (Some(table), _) => {
            let (table, reader) = table_client(client, table)?;
            let batches = arrow_rows(&reader, &format!("{DATA}/{table}/data"), &[]).await?;
            let schema = match batches.first() {
                Some(batch) => batch.schema(),
                None => bail!("{table} has no rows to score"),
            };
            (schema, batches)
        }
        (None, Some(query)) => {
            let (output, truncated) =
                crate::sql::statement(client, query, tarn_lake::DEFAULT_SCHEMA).await?;
            if truncated {
                bail!("the query's result was truncated at the server's limit: score a table");
            }
            (output.schema, output.batches)
        }
        (None, None) => bail!("give --table or --query"),
    };
    let scored = score_all(&scorer, &args, &schema, &batches)?;
    let written = write(client, &args, scored, None).await?;
    eprintln!(
        "predictions written to {} (version {})",
        args.output,
        written.map_or_else(|| "none".into(), |v| v.to_string())
    );
    Ok(())
}

fn announce(scorer: &FetchedModel) {
    eprintln!("scoring with {} version {}", scorer.name, scorer.version);
}

/// Scores every row of `batches` in chunks on every core, with a progress bar.
fn score_all(
    scorer: &FetchedModel,
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
async fn stream(client: &Client, args: &ScoreArgs, scorer: &mut FetchedModel) -> Result<()> {
    let (source_name, source) = table_client(client, args.table.as_deref().unwrap_or_default())?;
    let (output_name, output) = table_client(client, &args.output)?;
    let app_id = format!("tarn score {source_name}");
    let shutdown = crate::server::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        if let Some(newer) = fetch_model(client, &args.model, Some(scorer.version)).await? {
            *scorer = newer;
            announce(scorer);
        }
        let history = source
            .get(
                &format!("{DATA}/{source_name}/history"),
                &[("max_results", "1".into())],
            )
            .await?;
        let latest = history["history"][0]["version"]
            .as_i64()
            .context("the source table has no history")?;
        let done = match output
            .get(
                &format!("{DATA}/{output_name}/transaction"),
                &[("app_id", app_id.clone())],
            )
            .await
        {
            Ok(answer) => answer["version"].as_i64(),
            Err(err) if not_found(&err) => None,
            Err(err) => return Err(err),
        };
        let pending = match done {
            Some(done) if done >= latest => None,
            Some(done) => {
                let query = [
                    ("starting_version", (done + 1).to_string()),
                    ("ending_version", latest.to_string()),
                ];
                let changes =
                    arrow_rows(&source, &format!("{DATA}/{source_name}/changes"), &query).await?;
                Some(new_rows(changes)?)
            }
            None => Some(
                arrow_rows(
                    &source,
                    &format!("{DATA}/{source_name}/data"),
                    &[("version", latest.to_string())],
                )
                .await?,
            ),
        };
        match pending {
            Some(batches) if batches.iter().any(|b| b.num_rows() > 0) => {
                let schema = batches[0].schema();
                let scored = score_all(scorer, args, &schema, &batches)?;
                match write(client, args, scored, Some((&app_id, latest))).await? {
                    Some(written) => eprintln!(
                        "{source_name} up to version {latest} scored into {output_name} (version {written})"
                    ),
                    None => eprintln!(
                        "{source_name} up to version {latest} was scored meanwhile by another run"
                    ),
                }
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

fn not_found(err: &anyhow::Error) -> bool {
    error_code(err) == Some("RESOURCE_DOES_NOT_EXIST")
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

/// Writes the predictions in one commit (an append made once for `(app id, source version)`
/// when given), creating the table on first need; the table version written, none when the
/// idempotent append had been made before.
async fn write(
    client: &Client,
    args: &ScoreArgs,
    batches: Vec<RecordBatch>,
    record: Option<(&str, i64)>,
) -> Result<Option<u64>> {
    let (full_name, writer) = table_client(client, &args.output)?;
    let Some(first) = batches.first() else {
        bail!("there were no rows to score");
    };
    let schema = first.schema();
    match writer.get(&format!("{UC}/tables/{full_name}"), &[]).await {
        Ok(_) => {}
        Err(err) if not_found(&err) => {
            let (catalog, schema_name, name) = tarn_core::catalog::parse_table_name(&full_name)?;
            let body = json!({
                "name": name,
                "catalog_name": catalog,
                "schema_name": schema_name,
                "table_type": "MANAGED",
                "data_source_format": "DELTA",
                "columns": tarn_lake::columns_of_arrow(&schema)?,
                "comment": format!("predictions of {}", args.model),
            });
            writer
                .post(&format!("{UC}/tables"), &body)
                .await
                .context("creating the predictions table")?;
        }
        Err(err) => return Err(err),
    }
    let body = ipc::encode(&schema, &batches)?;
    let (path, query) = match (record, args.mode) {
        (Some((app_id, source_version)), _) => (
            "data",
            vec![
                ("mode", "append".to_string()),
                ("txn_app_id", app_id.to_string()),
                ("txn_version", source_version.to_string()),
            ],
        ),
        (None, Mode::Append) => ("data", vec![("mode", "append".to_string())]),
        (None, Mode::Overwrite) => ("data", vec![("mode", "overwrite".to_string())]),
        (None, Mode::Merge) => {
            if args.merge_on.is_empty() {
                bail!("--mode merge needs --merge-on COLUMNS");
            }
            ("merge", vec![("keys", args.merge_on.join(","))])
        }
    };
    let answer: Value =
        send_rows(&writer, &format!("{DATA}/{full_name}/{path}"), &query, body).await?;
    Ok(answer["version"].as_u64())
}
