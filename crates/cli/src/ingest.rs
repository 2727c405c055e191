//! `tarn ingest`: CSV, JSON lines and Parquet files or folders into a Delta table through the
//! server (`/api/2.0/tarn/tables/{name}/ingest`), each file once, bad rows to
//! `<table>_quarantine`; with a progress bar over the bytes sent.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use tarn_lake::ingest::{FileReport, SourceFormat, files_of};
use tokio::io::AsyncReadExt;

use crate::client::{Client, error_code};
use crate::tables::{DATA, table_client};

#[derive(Args)]
pub struct IngestArgs {
    /// Files or folders (their files, not recursively).
    #[arg(required = true)]
    pub sources: Vec<PathBuf>,
    /// The target table, `catalog.schema.table`; created when missing.
    #[arg(long)]
    pub table: String,
    /// csv, json (lines) or parquet; by file extension when not given.
    #[arg(long)]
    pub format: Option<String>,
    /// Columns of a new table, e.g. "id bigint, amount double, paid_at timestamp"; inferred
    /// from the first file when not given.
    #[arg(long)]
    pub schema: Option<String>,
}

/// What the server answers for one file.
#[derive(Deserialize)]
struct Ingested {
    created: bool,
    file: Option<FileReport>,
    quarantine_table: Option<String>,
}

/// Bytes of a file sent per chunk.
const CHUNK: usize = 1 << 20;

pub async fn run(client: &Client, args: IngestArgs) -> Result<()> {
    let (table, client) = table_client(client, &args.table)?;
    let format = args
        .format
        .as_deref()
        .map(SourceFormat::parse)
        .transpose()?;
    if let Some(schema) = &args.schema {
        tarn_lake::ingest::parse_columns(schema)?;
    }
    let files = files_of(&args.sources, format)?;
    if files.is_empty() {
        anyhow::bail!("No files to ingest in the given sources");
    }
    let done = ingested_sources(&client, &table).await?;
    let (todo, skipped): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|(path, _, _)| !done.contains(&path.display().to_string()));

    let bar = ProgressBar::new(todo.iter().map(|(_, _, size)| size).sum());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .context("progress bar template")?,
    );
    let mut reports = Vec::new();
    let mut created = false;
    let mut quarantine = None;
    let mut skipped: Vec<String> = skipped
        .into_iter()
        .map(|(path, _, _)| path.display().to_string())
        .collect();
    for (path, format, _) in todo {
        let source = path.display().to_string();
        bar.set_message(source.clone());
        let file = tokio::fs::File::open(&path)
            .await
            .with_context(|| format!("cannot read {source}"))?;
        let sent = bar.clone();
        let body = futures::stream::try_unfold(file, |mut file| async move {
            let mut chunk = vec![0; CHUNK];
            let read = file.read(&mut chunk).await?;
            chunk.truncate(read);
            Ok::<_, std::io::Error>((read > 0).then(|| (bytes::Bytes::from(chunk), file)))
        })
        .inspect_ok(move |chunk| sent.inc(chunk.len() as u64));
        let mut query = vec![
            ("source", source.clone()),
            ("format", format.as_str().into()),
        ];
        query.extend(args.schema.clone().map(|columns| ("columns", columns)));
        let request = client
            .request(Method::POST, &format!("{DATA}/{table}/ingest"))
            .query(&query)
            .body(reqwest::Body::wrap_stream(body));
        let answer = client.send(request).await;
        let answer: Ingested = match answer {
            Ok(response) => response
                .json()
                .await
                .context("the server's answer is not an ingestion report")?,
            Err(err) => {
                bar.abandon();
                return Err(err.context(format!("ingesting {source}")));
            }
        };
        created |= answer.created;
        quarantine = quarantine.or(answer.quarantine_table);
        match answer.file {
            Some(report) => reports.push(report),
            // Ingested meanwhile, by another client.
            None => skipped.push(source),
        }
    }
    bar.finish_and_clear();

    if created {
        println!("created table {table}");
    }
    println!(
        "{:<60} {:>12} {:>12} {:>8}",
        "FILE", "ROWS", "QUARANTINED", "VERSION"
    );
    for file in &reports {
        println!(
            "{:<60} {:>12} {:>12} {:>8}",
            file.source, file.rows_written, file.rows_quarantined, file.version
        );
    }
    let rows: u64 = reports.iter().map(|f| f.rows_written).sum();
    let bad: u64 = reports.iter().map(|f| f.rows_quarantined).sum();
    println!(
        "{} files, {rows} rows into {table}; {} files ingested before were skipped",
        reports.len(),
        skipped.len()
    );
    if let Some(quarantine) = quarantine {
        println!("{bad} bad rows are in {quarantine}, each with its reason");
    }
    Ok(())
}

/// The sources ingested into `table` before; none when the table does not exist yet.
async fn ingested_sources(client: &Client, table: &str) -> Result<HashSet<String>> {
    let answer = match client
        .get(&format!("{DATA}/{table}/ingested-files"), &[])
        .await
    {
        Ok(answer) => answer,
        Err(err) if error_code(&err) == Some("RESOURCE_DOES_NOT_EXIST") => {
            return Ok(HashSet::new());
        }
        Err(err) => return Err(err),
    };
    Ok(answer
        .get("files")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|file| file.get("source").and_then(Value::as_str))
        .map(str::to_string)
        .collect())
}
