//! `tarn sql "..."`: one SQL statement over the lakehouse, run on the metadata store and the
//! lake directly with admin rights (like the other local commands), printed as a table or
//! written as CSV, JSON lines or Parquet.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use tarn_core::store::MetaStore;
use tarn_lake::arrow::util::pretty::pretty_format_batches;
use tarn_lake::{Lake, SqlOutput, SqlScope, ipc};

use crate::local::cli_caller;

#[derive(Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
    Parquet,
}

#[derive(Args)]
pub struct SqlArgs {
    /// One statement: a query, CREATE TABLE ... AS SELECT, INSERT, DELETE, CREATE VIEW, DROP.
    pub statement: String,
    /// The workspace whose catalog unqualified names resolve in.
    #[arg(long, default_value = "dev")]
    pub workspace: String,
    /// The schema unqualified table names resolve in.
    #[arg(long, default_value = tarn_lake::DEFAULT_SCHEMA)]
    pub schema: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Write the result here instead of standard output (needed for Parquet).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

pub async fn run(store: &dyn MetaStore, lake: &Lake, args: SqlArgs) -> Result<()> {
    let caller = cli_caller(args.workspace.clone());
    let scope = SqlScope {
        catalog: Some(args.workspace),
        schema: Some(args.schema),
        ..SqlScope::default()
    };
    let output = lake.sql(store, &caller, &args.statement, &scope).await?;
    let bytes = render(&output, args.format)?;
    match args.output {
        Some(path) => {
            std::fs::write(&path, bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("{} rows written to {}", output.num_rows(), path.display());
        }
        None => {
            if matches!(args.format, OutputFormat::Parquet) {
                anyhow::bail!("Parquet is binary: give --output FILE");
            }
            std::io::stdout().write_all(&bytes)?;
        }
    }
    Ok(())
}

fn render(output: &SqlOutput, format: OutputFormat) -> Result<Vec<u8>> {
    Ok(match format {
        OutputFormat::Table => {
            if output.schema.fields().is_empty() {
                b"OK\n".to_vec()
            } else {
                format!(
                    "{}\n({} rows)\n",
                    pretty_format_batches(&output.batches)?,
                    output.num_rows()
                )
                .into_bytes()
            }
        }
        OutputFormat::Csv => {
            let mut writer = tarn_lake::arrow::csv::Writer::new(Vec::new());
            for batch in &output.batches {
                writer.write(batch)?;
            }
            writer.into_inner()
        }
        OutputFormat::Json => {
            let mut writer = tarn_lake::arrow::json::LineDelimitedWriter::new(Vec::new());
            for batch in &output.batches {
                writer.write(batch)?;
            }
            writer.finish()?;
            writer.into_inner()
        }
        OutputFormat::Parquet => ipc::encode_parquet(&output.schema, &output.batches)?,
    })
}
