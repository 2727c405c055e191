//! `tarn tables ...`: the lakehouse catalog from the command line, through the server's Unity
//! Catalog API (`/api/2.1/unity-catalog/...`) and table data API (`/api/2.0/tarn/tables/...`),
//! as the token's principal. A name's catalog is a workspace: changes go to the workspace the
//! name names; reads too, or to the connection's workspace when the caller reads the catalog
//! through a read-only binding there.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};
use tarn_core::catalog::{self, SchemaInfo, SecurableType, TableInfo};
use tarn_lake::arrow::record_batch::RecordBatch;
use tarn_lake::arrow::util::pretty::pretty_format_batches;
use tarn_lake::ingest::SourceFormat;
use tarn_lake::ipc;

use crate::client::{ApiError, Client, error_code};

/// Unity Catalog's REST API.
const UC: &str = "/api/2.1/unity-catalog";
/// tarn's table data API.
pub(crate) const DATA: &str = "/api/2.0/tarn/tables";
/// How many commits `show` lists.
const SHOWN_COMMITS: usize = 10;

#[derive(Subcommand)]
pub enum TablesCommand {
    /// List the schemas of a catalog (a workspace's catalog has the workspace's name).
    Schemas {
        /// Default: the workspace's own catalog.
        #[arg(long)]
        catalog: Option<String>,
    },
    /// Create a schema.
    CreateSchema {
        /// `catalog.schema`
        full_name: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// List the tables of a schema.
    List {
        /// `catalog.schema`
        schema: String,
    },
    /// Show a table: columns, location, owner and its latest commits.
    Show {
        /// `catalog.schema.table`
        full_name: String,
    },
    /// Create a managed table with the given columns.
    Create {
        /// `catalog.schema.table`
        full_name: String,
        /// e.g. `"id bigint, amount double, country string"`
        #[arg(long)]
        columns: String,
        /// Columns to partition the files by.
        #[arg(long, value_delimiter = ',')]
        partition_by: Vec<String>,
        #[arg(long, default_value = "")]
        comment: String,
        /// Table properties, `key=value`; `delta.*` ones configure the Delta table.
        #[arg(long = "property")]
        properties: Vec<String>,
    },
    /// Append or overwrite rows from CSV, JSON lines or Parquet files; every row must fit.
    Write {
        /// `catalog.schema.table`
        full_name: String,
        /// Files or folders of files.
        #[arg(required = true)]
        sources: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "append")]
        mode: Mode,
        /// csv, json or parquet; by extension when not given.
        #[arg(long)]
        format: Option<String>,
    },
    /// Upsert rows from files on key columns: matching rows are updated, others inserted.
    Merge {
        /// `catalog.schema.table`
        full_name: String,
        #[arg(required = true)]
        sources: Vec<PathBuf>,
        #[arg(long, value_delimiter = ',', required = true)]
        keys: Vec<String>,
        /// Delete the table's rows no source row matches (a full sync).
        #[arg(long)]
        delete_unmatched: bool,
        #[arg(long)]
        format: Option<String>,
    },
    /// Set or unset tags on a catalog, schema or table (`key=value` pairs).
    Tag {
        /// `catalog`, `catalog.schema` or `catalog.schema.table`
        full_name: String,
        /// Tags to set, as `key=value`.
        set: Vec<String>,
        /// Tag keys to remove.
        #[arg(long, value_delimiter = ',')]
        unset: Vec<String>,
    },
    /// Print the first rows of a table, at its latest version or an earlier one.
    Head {
        /// `catalog.schema.table`
        full_name: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, conflicts_with = "timestamp")]
        version: Option<i64>,
        /// The version current at this moment (RFC 3339 or milliseconds since the epoch).
        #[arg(long)]
        timestamp: Option<String>,
    },
    /// Delete the rows matching a SQL predicate.
    Delete {
        /// `catalog.schema.table`
        full_name: String,
        /// e.g. `"event_date < '2026-01-01'"`
        #[arg(long = "where")]
        predicate: String,
    },
    /// Print the change data feed (tables with delta.enableChangeDataFeed=true).
    Changes {
        /// `catalog.schema.table`
        full_name: String,
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long)]
        to: Option<u64>,
    },
    /// Compact small files; `--zorder-by` clusters rows by columns that filters use.
    Optimize {
        /// `catalog.schema.table`
        full_name: String,
        #[arg(long, value_delimiter = ',')]
        zorder_by: Vec<String>,
        /// Target file size in bytes.
        #[arg(long)]
        target_size: Option<u64>,
    },
    /// Delete files older versions no longer need, keeping the retention period.
    Vacuum {
        /// `catalog.schema.table`
        full_name: String,
        /// Hours of history to keep (the table's retention, 7 days by default, when none).
        #[arg(long)]
        retention_hours: Option<u64>,
        #[arg(long)]
        dry_run: bool,
        /// Allow a retention shorter than the table's (breaks time travel to older versions).
        #[arg(long)]
        skip_retention_check: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Mode {
    Append,
    Overwrite,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Overwrite => "overwrite",
        }
    }
}

/// `key=value` pairs as a map.
fn pairs(given: &[String]) -> Result<BTreeMap<String, String>> {
    given
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .with_context(|| format!("'{pair}' is not key=value"))
        })
        .collect()
}

/// A table's normalized full name, and the client of the workspace its catalog is: where it
/// is changed.
pub(crate) fn table_client(client: &Client, full_name: &str) -> Result<(String, Client)> {
    let (catalog, schema, name) = catalog::parse_table_name(full_name)?;
    let client = client.in_workspace(&catalog);
    Ok((format!("{catalog}.{schema}.{name}"), client))
}

/// Where to read in `catalog`, with the answer to the first read (`GET path`): the catalog's
/// own workspace, else, when that refuses (the caller need not be its member), the
/// connection's workspace, which may read it through a read-only binding; when both refuse,
/// the latter's refusal says why.
pub(crate) async fn reading(
    client: &Client,
    catalog: &str,
    path: &str,
    query: &[(&str, String)],
) -> Result<(Client, Value)> {
    let own = client.in_workspace(catalog);
    match own.get(path, query).await {
        Err(err) if catalog != client.workspace() && refused(&err) => {
            Ok((client.clone(), client.get(path, query).await?))
        }
        answer => Ok((own, answer?)),
    }
}

fn refused(err: &anyhow::Error) -> bool {
    error_code(err) == Some("PERMISSION_DENIED")
}

/// A table's normalized full name, its description, and the client to read it with.
async fn table_to_read(client: &Client, full_name: &str) -> Result<(String, TableInfo, Client)> {
    let (catalog, schema, name) = catalog::parse_table_name(full_name)?;
    let full_name = format!("{catalog}.{schema}.{name}");
    let (client, answer) =
        reading(client, &catalog, &format!("{UC}/tables/{full_name}"), &[]).await?;
    let table =
        serde_json::from_value(answer).context("the server's table description is not one")?;
    Ok((full_name, table, client))
}

/// Every item of a paged Unity Catalog list (`key` plus `next_page_token`).
async fn all_pages(
    client: &Client,
    path: &str,
    key: &str,
    query: &[(&str, String)],
) -> Result<Vec<Value>> {
    let mut found = Vec::new();
    let mut page_token: Option<String> = None;
    loop {
        let mut page_query = query.to_vec();
        page_query.extend(page_token.map(|t| ("page_token", t)));
        let mut answer = client.get(path, &page_query).await?;
        if let Some(Value::Array(items)) = answer.get_mut(key).map(Value::take) {
            found.extend(items);
        }
        page_token = answer
            .get("next_page_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if page_token.is_none() {
            return Ok(found);
        }
    }
}

/// Prints at most `limit` rows as a table.
fn print_rows(batches: Vec<RecordBatch>, limit: usize) -> Result<()> {
    let mut shown = Vec::new();
    let mut left = limit;
    for batch in batches {
        if left == 0 {
            break;
        }
        let take = left.min(batch.num_rows());
        shown.push(batch.slice(0, take));
        left -= take;
    }
    println!("{}", pretty_format_batches(&shown)?);
    Ok(())
}

/// Rows the server answered with, as an Arrow IPC stream.
pub(crate) async fn arrow_rows(
    client: &Client,
    path: &str,
    query: &[(&str, String)],
) -> Result<Vec<RecordBatch>> {
    let response = client
        .send(client.request(Method::GET, path).query(query))
        .await?;
    let bytes = response
        .bytes()
        .await
        .context("the server's answer broke off")?;
    let (_, batches) = ipc::decode(&bytes).context("the server's answer is not Arrow IPC")?;
    Ok(batches)
}

/// The rows of the user's files (or folders of files) as an Arrow IPC stream in the table's
/// schema, read the way the server's ingestion reads them: by column name, every value cast to
/// its column's type, and a row that does not fit refusing the whole load, naming its line.
async fn read_sources(
    table: &TableInfo,
    sources: &[PathBuf],
    format: Option<&str>,
) -> Result<Vec<u8>> {
    let format = format.map(SourceFormat::parse).transpose()?;
    let target = tarn_lake::arrow_schema_of_columns(&table.columns)?;
    let batches =
        tarn_lake::ingest::read_files(sources, format, target.clone(), &table.full_name).await?;
    Ok(ipc::encode(&target, &batches)?)
}

/// Sends rows (an Arrow IPC stream) to a table data route (`data`, `merge`).
pub(crate) async fn send_rows(
    client: &Client,
    path: &str,
    query: &[(&str, String)],
    body: Vec<u8>,
) -> Result<Value> {
    let request = client
        .request(Method::POST, path)
        .query(query)
        .header(reqwest::header::CONTENT_TYPE, ipc::ARROW_STREAM)
        .body(body);
    let response = client.send(request).await?;
    response
        .json()
        .await
        .context("the server's answer is not JSON")
}

fn number(value: &Value, key: &str) -> i64 {
    value.get(key).and_then(Value::as_i64).unwrap_or_default()
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Tags as `k=v, k=v`, or `no tags`.
fn shown_tags(tags: &Value) -> String {
    let shown: Vec<String> = tags
        .as_object()
        .map(|tags| {
            tags.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if shown.is_empty() {
        "no tags".to_string()
    } else {
        shown.join(", ")
    }
}

pub async fn run(client: &Client, command: TablesCommand) -> Result<()> {
    match command {
        TablesCommand::Schemas { catalog } => {
            let catalog = match catalog {
                Some(name) => catalog::normalize_name("catalog", &name)?,
                None => client.workspace().to_string(),
            };
            let (client, _) =
                reading(client, &catalog, &format!("{UC}/catalogs/{catalog}"), &[]).await?;
            let schemas = all_pages(
                &client,
                &format!("{UC}/schemas"),
                "schemas",
                &[("catalog_name", catalog.clone())],
            )
            .await?;
            println!("{:<32} {:<20} COMMENT", "SCHEMA", "OWNER");
            for schema in schemas {
                let schema: SchemaInfo = serde_json::from_value(schema)?;
                println!(
                    "{:<32} {:<20} {}",
                    schema.full_name, schema.owner, schema.comment
                );
            }
        }
        TablesCommand::CreateSchema { full_name, comment } => {
            let (catalog, name) = catalog::parse_schema_name(&full_name)?;
            let body = json!({ "name": name, "catalog_name": catalog, "comment": comment });
            let schema = client
                .in_workspace(&catalog)
                .post(&format!("{UC}/schemas"), &body)
                .await?;
            println!("created schema {}", text(&schema, "full_name"));
        }
        TablesCommand::List { schema } => {
            let (catalog, name) = catalog::parse_schema_name(&schema)?;
            let schema_path = format!("{UC}/schemas/{catalog}.{name}");
            let (client, _) = reading(client, &catalog, &schema_path, &[]).await?;
            let tables = all_pages(
                &client,
                &format!("{UC}/tables"),
                "tables",
                &[("catalog_name", catalog.clone()), ("schema_name", name)],
            )
            .await?;
            println!(
                "{:<40} {:<9} {:<8} {:<20} COMMENT",
                "TABLE", "TYPE", "COLUMNS", "OWNER"
            );
            for table in tables {
                let table: TableInfo = serde_json::from_value(table)?;
                println!(
                    "{:<40} {:<9} {:<8} {:<20} {}",
                    table.full_name,
                    table.table_type.as_str(),
                    table.columns.len(),
                    table.owner,
                    table.comment
                );
            }
        }
        TablesCommand::Create {
            full_name,
            columns,
            partition_by,
            comment,
            properties,
        } => {
            let (catalog, schema, name) = catalog::parse_table_name(&full_name)?;
            let mut columns = tarn_lake::ingest::parse_columns(&columns)?;
            for (index, partition) in partition_by.iter().enumerate() {
                let column = columns
                    .iter_mut()
                    .find(|c| &c.name == partition)
                    .with_context(|| format!("partition column '{partition}' is not a column"))?;
                column.partition_index = Some(index as i64);
            }
            let body = json!({
                "name": name,
                "catalog_name": catalog,
                "schema_name": schema,
                "table_type": "MANAGED",
                "data_source_format": "DELTA",
                "columns": columns,
                "comment": comment,
                "properties": pairs(&properties)?,
            });
            let table = client
                .in_workspace(&catalog)
                .post(&format!("{UC}/tables"), &body)
                .await?;
            println!(
                "created table {} at {}",
                text(&table, "full_name"),
                text(&table, "storage_location")
            );
        }
        TablesCommand::Write {
            full_name,
            sources,
            mode,
            format,
        } => {
            let (full_name, client) = table_client(client, &full_name)?;
            let (_, table, _) = table_to_read(&client, &full_name).await?;
            let rows = read_sources(&table, &sources, format.as_deref()).await?;
            let written = send_rows(
                &client,
                &format!("{DATA}/{full_name}/data"),
                &[("mode", mode.as_str().to_string())],
                rows,
            )
            .await?;
            println!(
                "wrote {} rows: version {}",
                number(&written, "num_rows"),
                number(&written, "version")
            );
        }
        TablesCommand::Merge {
            full_name,
            sources,
            keys,
            delete_unmatched,
            format,
        } => {
            let (full_name, client) = table_client(client, &full_name)?;
            let (_, table, _) = table_to_read(&client, &full_name).await?;
            let rows = read_sources(&table, &sources, format.as_deref()).await?;
            let merged = send_rows(
                &client,
                &format!("{DATA}/{full_name}/merge"),
                &[
                    ("keys", keys.join(",")),
                    ("delete_unmatched", delete_unmatched.to_string()),
                ],
                rows,
            )
            .await?;
            println!(
                "merged {} rows: {} inserted, {} updated, {} deleted; version {}",
                number(&merged, "num_source_rows"),
                number(&merged, "num_inserted_rows"),
                number(&merged, "num_updated_rows"),
                number(&merged, "num_deleted_rows"),
                number(&merged, "version")
            );
        }
        TablesCommand::Tag {
            full_name,
            set,
            unset,
        } => {
            let kind = match full_name.split('.').count() {
                1 => SecurableType::Catalog,
                2 => SecurableType::Schema,
                _ => SecurableType::Table,
            };
            let full_name = kind.normalize(&full_name)?;
            let catalog = full_name.split('.').next().unwrap_or_default();
            let body = json!({ "set": pairs(&set)?, "unset": unset });
            let tagged = client
                .in_workspace(catalog)
                .patch(&format!("{UC}/tags/{}/{full_name}", kind.as_str()), &body)
                .await?;
            println!("{full_name}: {}", shown_tags(&tagged["tags"]));
        }
        TablesCommand::Show { full_name } => {
            let (full_name, table, client) = table_to_read(client, &full_name).await?;
            show(&client, &full_name, &table).await?;
        }
        TablesCommand::Head {
            full_name,
            limit,
            version,
            timestamp,
        } => {
            let (full_name, _, client) = table_to_read(client, &full_name).await?;
            let mut query = Vec::new();
            query.extend(version.map(|v| ("version", v.to_string())));
            query.extend(timestamp.map(|t| ("timestamp", t)));
            let batches = arrow_rows(&client, &format!("{DATA}/{full_name}/data"), &query).await?;
            print_rows(batches, limit)?;
        }
        TablesCommand::Delete {
            full_name,
            predicate,
        } => {
            let (full_name, client) = table_client(client, &full_name)?;
            let deleted = client
                .post(
                    &format!("{DATA}/{full_name}/delete"),
                    &json!({ "predicate": predicate }),
                )
                .await?;
            let version = number(&deleted, "version");
            match deleted.get("num_deleted_rows").and_then(Value::as_i64) {
                Some(rows) => println!("deleted {rows} rows: version {version}"),
                None => println!("deleted whole files: version {version}"),
            }
        }
        TablesCommand::Changes {
            full_name,
            from,
            to,
        } => {
            let (full_name, _, client) = table_to_read(client, &full_name).await?;
            let mut query = vec![("starting_version", from.to_string())];
            query.extend(to.map(|v| ("ending_version", v.to_string())));
            let batches =
                arrow_rows(&client, &format!("{DATA}/{full_name}/changes"), &query).await?;
            print_rows(batches, usize::MAX)?;
        }
        TablesCommand::Optimize {
            full_name,
            zorder_by,
            target_size,
        } => {
            let (full_name, client) = table_client(client, &full_name)?;
            let optimized = client
                .post(
                    &format!("{DATA}/{full_name}/optimize"),
                    &json!({ "zorder_by": zorder_by, "target_size": target_size }),
                )
                .await?;
            println!(
                "compacted {} files into {} ({} partitions): version {}",
                number(&optimized, "num_files_removed"),
                number(&optimized, "num_files_added"),
                number(&optimized, "partitions_optimized"),
                number(&optimized, "version")
            );
        }
        TablesCommand::Vacuum {
            full_name,
            retention_hours,
            dry_run,
            skip_retention_check,
        } => {
            let (full_name, client) = table_client(client, &full_name)?;
            let body = json!({
                "retention_hours": retention_hours,
                "dry_run": dry_run,
                "skip_retention_check": skip_retention_check,
            });
            let vacuumed = client
                .post(&format!("{DATA}/{full_name}/vacuum"), &body)
                .await?;
            let files: Vec<&str> = vacuumed["files_deleted"]
                .as_array()
                .map(|files| files.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for file in &files {
                println!("{file}");
            }
            let verb = if dry_run { "would delete" } else { "deleted" };
            println!("{verb} {} files", files.len());
        }
    }
    Ok(())
}

/// `tarn tables show`: what the catalog says of a table, its tags, and its latest commits
/// when the caller may read it (the catalog entry takes USE_SCHEMA, the history SELECT).
async fn show(client: &Client, full_name: &str, table: &TableInfo) -> Result<()> {
    println!(
        "{} ({}, owner {})",
        table.full_name,
        table.table_type.as_str(),
        table.owner
    );
    if table.view_definition.is_empty() {
        println!("location: {}", table.storage_location);
    } else {
        println!("query:    {}", table.view_definition);
    }
    if !table.comment.is_empty() {
        println!("comment:  {}", table.comment);
    }
    let tags = client
        .get(&format!("{UC}/tags/table/{full_name}"), &[])
        .await?;
    if tags["tags"].as_object().is_some_and(|t| !t.is_empty()) {
        println!("tags:     {}", shown_tags(&tags["tags"]));
    }
    println!(
        "\n{:<24} {:<20} {:<9} {:<10} COMMENT",
        "COLUMN", "TYPE", "NULLABLE", "PARTITION"
    );
    for column in &table.columns {
        println!(
            "{:<24} {:<20} {:<9} {:<10} {}",
            column.name,
            column.type_text,
            column.nullable,
            column
                .partition_index
                .map(|i| i.to_string())
                .unwrap_or_default(),
            column.comment
        );
    }
    if !table.view_definition.is_empty() {
        return Ok(());
    }
    let history = client
        .get(
            &format!("{DATA}/{full_name}/history"),
            &[("max_results", SHOWN_COMMITS.to_string())],
        )
        .await;
    let history = match history {
        Ok(history) => history,
        Err(err) => match err.downcast_ref::<ApiError>() {
            Some(refused) if refused.error_code == "PERMISSION_DENIED" => {
                println!("\nhistory not shown: {}", refused.message);
                return Ok(());
            }
            _ => return Err(err),
        },
    };
    println!("\n{:<8} {:<20} {:<24} BY", "VERSION", "TIME", "OPERATION");
    for commit in history["history"].as_array().into_iter().flatten() {
        println!(
            "{:<8} {:<20} {:<24} {}",
            number(commit, "version"),
            commit
                .get("timestamp")
                .and_then(Value::as_i64)
                .map(crate::models::time)
                .unwrap_or_default(),
            text(commit, "operation"),
            text(commit, "userName")
        );
    }
    Ok(())
}
