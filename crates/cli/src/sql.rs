//! `tarn sql "..."`: one SQL statement over the lakehouse, run by the server through the
//! Databricks statement execution API (`/api/2.0/sql/statements`) as the token's principal,
//! printed as a table or written as CSV, JSON lines or Parquet.
//!
//! The statement asks for `EXTERNAL_LINKS` in `ARROW_STREAM`: a query's rows come as Arrow
//! files of any total size, downloaded through the signed links the answer holds; a write's
//! counts come inline. Ctrl-C cancels the statement on the server.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use tarn_lake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use tarn_lake::arrow::record_batch::RecordBatch;
use tarn_lake::arrow::util::pretty::pretty_format_batches;
use tarn_lake::ipc;

use crate::client::Client;

const STATEMENTS: &str = "/api/2.0/sql/statements";
/// The first pause between polls of a running statement, doubled up to [`LONGEST_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(20);
const LONGEST_POLL: Duration = Duration::from_secs(2);

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
    /// Unqualified names resolve in the workspace's catalog (`--workspace`).
    pub statement: String,
    /// The schema unqualified table names resolve in.
    #[arg(long, default_value = tarn_lake::DEFAULT_SCHEMA)]
    pub schema: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Write the result here instead of standard output (needed for Parquet).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// What a statement gave: its columns and rows.
pub(crate) struct Output {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Output {
    fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

pub async fn run(client: &Client, args: SqlArgs) -> Result<()> {
    if matches!(args.format, OutputFormat::Parquet) && args.output.is_none() {
        bail!("Parquet is binary: give --output FILE");
    }
    let (output, truncated) = statement(client, &args.statement, &args.schema).await?;
    if truncated {
        eprintln!("the result was truncated at the server's limit");
    }
    let bytes = render(&output, args.format)?;
    match args.output {
        Some(path) => {
            std::fs::write(&path, bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("{} rows written to {}", output.num_rows(), path.display());
        }
        None => std::io::stdout().write_all(&bytes)?,
    }
    Ok(())
}

/// Runs one statement on the server, unqualified names in the client's workspace's catalog
/// and `schema`, and fetches every row; whether the server truncated the result. Ctrl-C
/// cancels the statement.
pub(crate) async fn statement(client: &Client, text: &str, schema: &str) -> Result<(Output, bool)> {
    let body = json!({
        "statement": text,
        "catalog": client.workspace(),
        "schema": schema,
        "format": "ARROW_STREAM",
        "disposition": "EXTERNAL_LINKS",
        // Answered at once, so that Ctrl-C can cancel it from its start on.
        "wait_timeout": "0s",
    });
    let submitted = client.post(STATEMENTS, &body).await?;
    let id = submitted["statement_id"]
        .as_str()
        .context("the server's answer has no statement_id")?
        .to_string();
    let finished = tokio::select! {
        finished = finish(client, &id, submitted) => finished?,
        _ = tokio::signal::ctrl_c() => {
            client.post(&format!("{STATEMENTS}/{id}/cancel"), &json!({})).await?;
            bail!("canceled statement {id}");
        }
    };
    let output = fetch(client, &id, &finished).await?;
    let truncated = finished["manifest"]["truncated"].as_bool() == Some(true);
    Ok((output, truncated))
}

/// Polls the statement until it ends; its final description, or its error.
async fn finish(client: &Client, id: &str, mut statement: Value) -> Result<Value> {
    let mut pause = FIRST_POLL;
    loop {
        let status = &statement["status"];
        match status["state"].as_str().unwrap_or_default() {
            "PENDING" | "RUNNING" => {}
            "SUCCEEDED" => return Ok(statement),
            "FAILED" => bail!(
                "{} ({})",
                status["error"]["message"]
                    .as_str()
                    .unwrap_or("the statement failed"),
                status["error"]["error_code"].as_str().unwrap_or("FAILED")
            ),
            other => bail!("statement {id} ended {other}"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LONGEST_POLL);
        statement = client.get(&format!("{STATEMENTS}/{id}"), &[]).await?;
    }
}

/// Every chunk of a succeeded statement's result: the first came with its description, the
/// others are asked for one by one.
async fn fetch(client: &Client, id: &str, statement: &Value) -> Result<Output> {
    let manifest = &statement["manifest"];
    let chunks = manifest["total_chunk_count"].as_u64().unwrap_or(0);
    let mut schema: Option<SchemaRef> = None;
    let mut batches = Vec::new();
    let mut chunk = statement["result"].clone();
    for index in 0..chunks {
        if index > 0 {
            chunk = client
                .get(&format!("{STATEMENTS}/{id}/result/chunks/{index}"), &[])
                .await?;
        }
        let bytes = chunk_bytes(&chunk).await?;
        let (chunk_schema, chunk_batches) =
            ipc::decode(&bytes).with_context(|| format!("chunk {index} is not Arrow IPC"))?;
        schema.get_or_insert(chunk_schema);
        batches.extend(chunk_batches);
    }
    let schema = match schema {
        Some(schema) => schema,
        None => manifest_schema(manifest),
    };
    Ok(Output { schema, batches })
}

/// The Arrow IPC bytes of one chunk: inline (`attachment`) or behind its signed link.
async fn chunk_bytes(chunk: &Value) -> Result<Vec<u8>> {
    if let Some(attachment) = chunk["attachment"].as_str() {
        return base64::engine::general_purpose::STANDARD
            .decode(attachment)
            .context("a result chunk is not base64");
    }
    let link = chunk["external_links"][0]["external_link"]
        .as_str()
        .context("a result chunk has neither rows nor a link to them")?;
    // The link is signed and works alone, like a presigned URL: the token stays with us.
    let response = reqwest::get(link)
        .await
        .context("cannot download a result file")?;
    let status = response.status();
    if !status.is_success() {
        let message = response.text().await.unwrap_or_default();
        bail!("cannot download a result file ({status}): {message}");
    }
    Ok(response
        .bytes()
        .await
        .context("a result file broke off")?
        .to_vec())
}

/// The columns of a result without rows, from the manifest: no chunk carries an Arrow schema
/// then. Types Arrow has a plain counterpart for keep it; others read as text.
fn manifest_schema(manifest: &Value) -> SchemaRef {
    let fields: Vec<Field> = manifest["schema"]["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|column| {
            let data_type = match column["type_name"].as_str().unwrap_or_default() {
                "LONG" => DataType::Int64,
                "INT" => DataType::Int32,
                "SHORT" => DataType::Int16,
                "BYTE" => DataType::Int8,
                "DOUBLE" => DataType::Float64,
                "FLOAT" => DataType::Float32,
                "BOOLEAN" => DataType::Boolean,
                "DATE" => DataType::Date32,
                "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                "TIMESTAMP_NTZ" => DataType::Timestamp(TimeUnit::Microsecond, None),
                "BINARY" => DataType::Binary,
                _ => DataType::Utf8,
            };
            Field::new(column["name"].as_str().unwrap_or_default(), data_type, true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn render(output: &Output, format: OutputFormat) -> Result<Vec<u8>> {
    Ok(match format {
        OutputFormat::Table => {
            if output.schema.fields().is_empty() {
                b"OK\n".to_vec()
            } else {
                let shown = if output.batches.is_empty() {
                    vec![RecordBatch::new_empty(output.schema.clone())]
                } else {
                    output.batches.clone()
                };
                format!(
                    "{}\n({} rows)\n",
                    pretty_format_batches(&shown)?,
                    output.num_rows()
                )
                .into_bytes()
            }
        }
        OutputFormat::Csv => {
            let mut writer = tarn_lake::arrow::csv::Writer::new(Vec::new());
            if output.batches.is_empty() {
                writer.write(&RecordBatch::new_empty(output.schema.clone()))?;
            }
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
