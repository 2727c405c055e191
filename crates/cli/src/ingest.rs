//! `tarn ingest`: CSV, JSON lines and Parquet files or folders into a Delta table, each file
//! once, bad rows to `<table>_quarantine`; with a progress bar over the bytes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tarn_core::catalog::{self, ColumnInfo};
use tarn_core::store::MetaStore;
use tarn_lake::Lake;
use tarn_lake::ingest::{IngestSpec, Progress, SourceFormat};

use crate::local::cli_caller;

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

/// `name type, name type, ...` as catalog columns.
pub(crate) fn parse_columns(text: &str) -> Result<Vec<ColumnInfo>> {
    text.split(',')
        .enumerate()
        .map(|(position, column)| {
            let mut parts = column.split_whitespace();
            let (Some(name), Some(type_text)) = (parts.next(), parts.next()) else {
                anyhow::bail!("Invalid column '{}': expected 'name type'", column.trim());
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

pub async fn run(store: &dyn MetaStore, lake: &Lake, args: IngestArgs) -> Result<()> {
    let (catalog, _, _) = catalog::parse_table_name(&args.table)?;
    let caller = cli_caller(catalog);
    let spec = IngestSpec {
        table: args.table.clone(),
        sources: args.sources,
        format: args
            .format
            .as_deref()
            .map(SourceFormat::parse)
            .transpose()?,
        columns: args.schema.as_deref().map(parse_columns).transpose()?,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .context("progress bar template")?,
    );
    let progress = |event: Progress| match event {
        Progress::Planned { files, bytes } => {
            bar.set_length(bytes);
            bar.set_message(format!("{files} files"));
        }
        Progress::FileDone { source, bytes } => {
            bar.inc(bytes);
            bar.set_message(source);
        }
    };
    let report = lake.ingest(store, &caller, &spec, &progress).await;
    bar.finish_and_clear();
    let report = report?;
    if report.created {
        println!("created table {}", report.table);
    }
    println!(
        "{:<60} {:>12} {:>12} {:>8}",
        "FILE", "ROWS", "QUARANTINED", "VERSION"
    );
    for file in &report.files {
        println!(
            "{:<60} {:>12} {:>12} {:>8}",
            file.source, file.rows_written, file.rows_quarantined, file.version
        );
    }
    let rows: u64 = report.files.iter().map(|f| f.rows_written).sum();
    let bad: u64 = report.files.iter().map(|f| f.rows_quarantined).sum();
    println!(
        "{} files, {rows} rows into {}; {} files ingested before were skipped",
        report.files.len(),
        report.table,
        report.skipped.len()
    );
    if let Some(quarantine) = &report.quarantine_table {
        println!("{bad} bad rows are in {quarantine}, each with its reason");
    }
    Ok(())
}
