//! `tarn features ...`: feature tables, training sets and the online store through a server's
//! API (`/api/2.0/tarn/feature-tables`, `/training-sets`, `/online/lookup`), as the token's
//! principal. Rows the user gives are read here, in the table's schema, and sent as Arrow IPC.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tarn_core::catalog::ColumnInfo;
use tarn_core::features::{Pipeline, TrainingSet, TrainingSetSpec};
use tarn_lake::arrow::record_batch::RecordBatch;
use tarn_lake::arrow::util::pretty::pretty_format_batches;
use tarn_lake::ingest::SourceFormat;
use tarn_lake::{format_timestamp, ipc};

use crate::client::Client;

#[derive(Subcommand)]
pub enum FeaturesCommand {
    /// Create a feature table from columns or from a query's rows.
    Create {
        /// `catalog.schema.table`
        full_name: String,
        /// The columns that identify an entity.
        #[arg(long, value_delimiter = ',', required = true)]
        primary_keys: Vec<String>,
        /// The column holding the time a row's values became true (time-series tables).
        #[arg(long)]
        timestamp_key: Option<String>,
        /// e.g. `"customer_id bigint, ts timestamp, spend double"`
        #[arg(long, conflicts_with = "query", required_unless_present = "query")]
        columns: Option<String>,
        /// A query whose rows fill the table (its tables become the sources).
        #[arg(long)]
        query: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// Tables the feature pipeline reads.
        #[arg(long, value_delimiter = ',')]
        source_tables: Vec<String>,
        /// The job that writes the table.
        #[arg(long)]
        job: Option<String>,
        /// The commit of the pipeline's code.
        #[arg(long)]
        commit: Option<String>,
    },
    /// Upsert rows from CSV, JSON lines or Parquet files on the table's keys.
    Write {
        /// `catalog.schema.table`
        full_name: String,
        #[arg(required = true)]
        sources: Vec<PathBuf>,
        #[arg(long)]
        format: Option<String>,
    },
    /// List the feature tables the token's principal may see, or those whose name,
    /// description or columns hold TEXT.
    List {
        #[arg(long, default_value = "")]
        search: String,
    },
    /// Show a feature table: keys, features, provenance, online freshness.
    Show {
        /// `catalog.schema.table`
        full_name: String,
    },
    /// Build a point-in-time training set from a JSON spec (label, feature_lookups, ...).
    TrainingSet {
        /// The spec, as the training-sets API takes it.
        #[arg(long)]
        spec: PathBuf,
        /// Write the rows to this new table.
        #[arg(long, conflicts_with = "out")]
        output_table: Option<String>,
        /// Write the rows to this Parquet file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Publish the latest value of each key to the online store (only keys changed since the
    /// last publish, unless --full).
    Publish {
        /// `catalog.schema.table`
        full_name: String,
        /// How old a value may be when looked up (`3d`, `12h`, ...).
        #[arg(long)]
        ttl: Option<String>,
        #[arg(long)]
        full: bool,
        /// How the server keeps it published: `manual`, `continuous` (each new version of the
        /// table), or a schedule like `1h`.
        #[arg(long)]
        refresh: Option<String>,
    },
    /// Look keys up in the online store: `--key customer_id=42` (repeat for more keys).
    Lookup {
        /// `catalog.schema.table`
        full_name: String,
        /// `column=value[,column=value]` per key.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        #[arg(long)]
        ttl: Option<String>,
    },
}

/// The client in the workspace a three-part name's catalog names (catalogs are workspaces).
pub fn in_table_workspace(client: &Client, full_name: &str) -> Client {
    match full_name.split_once('.') {
        Some((catalog, _)) if !catalog.is_empty() => client.in_workspace(catalog),
        _ => client.clone(),
    }
}

/// `a=1,b=x` as a JSON object (numbers where they parse).
fn key_object(text: &str) -> Result<serde_json::Map<String, Value>> {
    text.split(',')
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .with_context(|| format!("'{pair}' is not column=value"))?;
            let value = value
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(value));
            Ok((name.trim().to_string(), value))
        })
        .collect()
}

/// The header the training-sets API names the training set of the rows it answers with in.
const TRAINING_SET_HEADER: &str = "x-tarn-training-set-id";

fn table_path(full_name: &str) -> String {
    format!("/api/2.0/tarn/feature-tables/{full_name}")
}

/// A feature table as the API shows it.
#[derive(Deserialize)]
struct FeatureTableInfo {
    name: String,
    primary_keys: Vec<String>,
    #[serde(default)]
    timestamp_keys: Vec<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    source_tables: Vec<String>,
    #[serde(default)]
    pipeline: Pipeline,
    #[serde(default)]
    features: Vec<ColumnInfo>,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    storage_location: String,
    online: Option<OnlineInfo>,
}

/// Where a feature table stands in the online store.
#[derive(Deserialize)]
struct OnlineInfo {
    online_store: String,
    published_version: u64,
    published_at: i64,
    keys: u64,
    refresh: String,
    published_by: String,
    refresh_error: Option<String>,
}

/// One key's answer from the online store, its fields in the API's order.
#[derive(Deserialize, Serialize)]
struct LookupResult {
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    feature_timestamp: Option<i64>,
    values: Value,
}

pub async fn run(client: &Client, command: FeaturesCommand) -> Result<()> {
    match command {
        FeaturesCommand::Publish {
            full_name,
            ttl,
            full,
            refresh,
        } => {
            let client = in_table_workspace(client, &full_name);
            let body = json!({
                "ttl": ttl,
                "mode": if full { "full" } else { "incremental" },
                "refresh": refresh,
            });
            let published = client
                .post(&format!("{}/publish", table_path(&full_name)), &body)
                .await?;
            let field = |key: &str| published.get(key).cloned().unwrap_or(Value::Null);
            let text = |key: &str| field(key).as_str().unwrap_or_default().to_string();
            println!(
                "published {} version {} to the {} online store ({}): {} keys written, {} removed",
                text("table_name"),
                field("version"),
                text("online_store"),
                text("mode"),
                field("keys_written"),
                field("keys_removed")
            );
            if let Some(refresh) = published.get("refresh").and_then(Value::as_str) {
                println!("a running server refreshes it: {refresh}");
            }
        }
        FeaturesCommand::Lookup {
            full_name,
            keys,
            ttl,
        } => {
            let client = in_table_workspace(client, &full_name);
            let keys = keys
                .iter()
                .map(|k| key_object(k))
                .collect::<Result<Vec<_>>>()?;
            let body = json!({ "table_name": full_name, "keys": keys, "ttl": ttl });
            let answer = client.post("/api/2.0/tarn/online/lookup", &body).await?;
            let results: Vec<LookupResult> =
                serde_json::from_value(answer.get("results").cloned().unwrap_or(json!([])))
                    .context("the server's lookup results are not lookups")?;
            for (key, result) in keys.into_iter().zip(results) {
                println!(
                    "{}  {}",
                    Value::Object(key),
                    serde_json::to_string(&result)?
                );
            }
        }
        FeaturesCommand::Create {
            full_name,
            primary_keys,
            timestamp_key,
            columns,
            query,
            description,
            source_tables,
            job,
            commit,
        } => {
            let mut body = json!({
                "name": full_name,
                "primary_keys": primary_keys,
                "timestamp_keys": timestamp_key.iter().collect::<Vec<_>>(),
                "description": description,
                "source_tables": source_tables,
                "pipeline": Pipeline { job, run_id: None, commit },
            });
            match (columns, query) {
                (Some(columns), _) => {
                    body["columns"] = json!(tarn_lake::ingest::parse_columns(&columns)?);
                }
                (None, Some(query)) => body["query"] = json!(query),
                (None, None) => anyhow::bail!("give --columns or --query"),
            }
            let client = in_table_workspace(client, &full_name);
            let created: FeatureTableInfo =
                serde_json::from_value(client.post("/api/2.0/tarn/feature-tables", &body).await?)
                    .context("the server's feature table is not a feature table")?;
            println!(
                "created feature table {} (keys {}{}) at {}",
                created.name,
                created.primary_keys.join(", "),
                created
                    .timestamp_keys
                    .first()
                    .map(|ts| format!(", timestamp {ts}"))
                    .unwrap_or_default(),
                created.storage_location
            );
        }
        FeaturesCommand::Write {
            full_name,
            sources,
            format,
        } => {
            let client = in_table_workspace(client, &full_name);
            let format = format.as_deref().map(SourceFormat::parse).transpose()?;
            let table = client
                .get(&format!("/api/2.1/unity-catalog/tables/{full_name}"), &[])
                .await?;
            let columns: Vec<ColumnInfo> =
                serde_json::from_value(table.get("columns").cloned().unwrap_or(json!([])))
                    .context("the server's table has columns tarn cannot read")?;
            let schema = tarn_lake::arrow_schema_of_columns(&columns)?;
            let batches =
                tarn_lake::ingest::read_files(&sources, format, schema.clone(), &full_name).await?;
            let body = ipc::encode(&schema, &batches)?;
            let request = client
                .request(Method::POST, &format!("{}/data", table_path(&full_name)))
                .header(CONTENT_TYPE, ipc::ARROW_STREAM)
                .body(body);
            let merged: Value = client.send(request).await?.json().await?;
            let count = |key: &str| merged.get(key).cloned().unwrap_or(Value::Null);
            println!(
                "merged {} rows: {} inserted, {} updated; version {}",
                count("num_source_rows"),
                count("num_inserted_rows"),
                count("num_updated_rows"),
                count("version")
            );
        }
        FeaturesCommand::List { search } => {
            let found = search_feature_tables(client, &search).await?;
            println!(
                "{:<44} {:<28} {:<9} DESCRIPTION",
                "FEATURE TABLE", "KEYS", "FEATURES"
            );
            for table in found {
                let keys = table
                    .primary_keys
                    .iter()
                    .chain(&table.timestamp_keys)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                println!(
                    "{:<44} {:<28} {:<9} {}",
                    table.name,
                    keys,
                    table.features.len(),
                    table.description
                );
            }
        }
        FeaturesCommand::Show { full_name } => {
            let client = in_table_workspace(client, &full_name);
            let table: FeatureTableInfo =
                serde_json::from_value(client.get(&table_path(&full_name), &[]).await?)
                    .context("the server's feature table is not a feature table")?;
            print_feature_table(&table);
        }
        FeaturesCommand::TrainingSet {
            spec,
            output_table,
            out,
        } => {
            let text = std::fs::read_to_string(&spec)
                .with_context(|| format!("cannot read {}", spec.display()))?;
            // Checked here so a broken spec is named before anything is sent; sent as written.
            let mut body: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", spec.display()))?;
            serde_json::from_value::<TrainingSetSpec>(body.clone())
                .with_context(|| format!("{} is not a training set spec", spec.display()))?;
            if let Some(output_table) = &output_table {
                body["output_table"] = json!(output_table);
            }
            training_set(client, &body, output_table.is_some(), out).await?;
        }
    }
    Ok(())
}

/// Every feature table the client may see that matches `search`, page by page.
async fn search_feature_tables(client: &Client, search: &str) -> Result<Vec<FeatureTableInfo>> {
    let mut found = Vec::new();
    let mut page_token = String::new();
    loop {
        let query = [
            ("search", search.to_string()),
            ("max_results", "1000".to_string()),
            ("page_token", page_token.clone()),
        ];
        let page = client.get("/api/2.0/tarn/feature-tables", &query).await?;
        let tables: Vec<FeatureTableInfo> =
            serde_json::from_value(page.get("feature_tables").cloned().unwrap_or(json!([])))
                .context("the server's feature tables are not feature tables")?;
        found.extend(tables);
        match page.get("next_page_token").and_then(Value::as_str) {
            Some(next) if !next.is_empty() => page_token = next.to_string(),
            _ => return Ok(found),
        }
    }
}

fn print_feature_table(table: &FeatureTableInfo) {
    println!("feature table  {}", table.name);
    println!("primary keys   {}", table.primary_keys.join(", "));
    if let Some(ts) = table.timestamp_keys.first() {
        println!("timestamp key  {ts}");
    }
    println!("description    {}", table.description);
    println!("owner          {}", table.owner);
    println!("sources        {}", table.source_tables.join(", "));
    if let Some(job) = &table.pipeline.job {
        println!("job            {job}");
    }
    if let Some(commit) = &table.pipeline.commit {
        println!("commit         {commit}");
    }
    println!("location       {}", table.storage_location);
    match &table.online {
        None => println!("online         not published"),
        Some(online) => {
            println!(
                "online         version {} ({} keys) in the {} store, published {} by {}",
                online.published_version,
                online.keys,
                online.online_store,
                format_timestamp(online.published_at),
                online.published_by
            );
            println!("refresh        {}", online.refresh);
            if let Some(error) = &online.refresh_error {
                println!("refresh error  {error}");
            }
        }
    }
    println!("\n{:<32} TYPE", "FEATURE");
    for feature in &table.features {
        println!("{:<32} {}", feature.name, feature.type_text);
    }
}

/// Builds a training set on the server and says what it read; its rows go to the output
/// table (`body` names it), to a Parquet file `out`, or their first ones to the terminal.
async fn training_set(
    client: &Client,
    body: &Value,
    to_table: bool,
    out: Option<PathBuf>,
) -> Result<()> {
    let request = client
        .request(Method::POST, "/api/2.0/tarn/training-sets")
        .json(body);
    let response = client.send(request).await?;
    let (set, rows) = if to_table {
        let answer: Value = response.json().await?;
        let set: TrainingSet =
            serde_json::from_value(answer.get("training_set").cloned().unwrap_or(Value::Null))
                .context("the server's training set is not a training set")?;
        (set, None)
    } else {
        let id = response
            .headers()
            .get(TRAINING_SET_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .context("the server's rows name no training set")?;
        let bytes = response
            .bytes()
            .await
            .context("the training set's rows broke off")?;
        let (schema, batches) = ipc::decode(&bytes)?;
        let answer = client
            .get(&format!("/api/2.0/tarn/training-sets/{id}"), &[])
            .await?;
        let set: TrainingSet =
            serde_json::from_value(answer.get("training_set").cloned().unwrap_or(Value::Null))
                .context("the server's training set is not a training set")?;
        (set, Some((schema, batches)))
    };
    let columns = match &rows {
        Some((schema, _)) => schema.fields().len(),
        None => output_columns(client, &set).await?,
    };
    println!(
        "training set {}: {} rows, {} columns",
        set.training_set_id, set.num_rows, columns
    );
    for table in &set.tables_read {
        println!("  read {} at version {}", table.name, table.version);
    }
    if let Some(output) = &set.output_table {
        println!("  wrote {} version {}", output.name, output.version);
    }
    let Some((schema, batches)) = rows else {
        return Ok(());
    };
    match out {
        Some(out) => {
            let bytes = ipc::encode_parquet(&schema, &batches)?;
            std::fs::write(&out, bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("  rows in {}", out.display());
        }
        None => println!("{}", pretty_format_batches(&first_rows(&batches, 10))?),
    }
    Ok(())
}

/// How many columns the training set's output table has.
async fn output_columns(client: &Client, set: &TrainingSet) -> Result<usize> {
    let Some(output) = &set.output_table else {
        return Ok(0);
    };
    let table = in_table_workspace(client, &output.name)
        .get(
            &format!("/api/2.1/unity-catalog/tables/{}", output.name),
            &[],
        )
        .await?;
    Ok(table
        .get("columns")
        .and_then(Value::as_array)
        .map_or(0, Vec::len))
}

/// The first `limit` rows of batches.
fn first_rows(batches: &[RecordBatch], limit: usize) -> Vec<RecordBatch> {
    let mut left = limit;
    let mut kept = Vec::new();
    for batch in batches {
        if left == 0 {
            break;
        }
        let taken = batch.num_rows().min(left);
        kept.push(batch.slice(0, taken));
        left -= taken;
    }
    kept
}
