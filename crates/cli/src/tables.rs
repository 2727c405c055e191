//! `tarn tables ...`: the lakehouse catalog from the command line, on the metadata store and
//! the lake directly (like `tarn models`); changes are recorded as `cli:<user>`.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use clap::Subcommand;
use tarn_core::catalog::{self, NewSchema, SecurableType, TableInfo};
use tarn_core::lineage::{Node, SourceRead};
use tarn_core::store::MetaStore;
use tarn_lake::arrow::record_batch::RecordBatch;
use tarn_lake::arrow::util::pretty::pretty_format_batches;
use tarn_lake::catalog::ManagedTable;
use tarn_lake::ingest::SourceFormat;
use tarn_lake::writes;
use tarn_lake::{At, Lake, MergeSpec, VacuumSpec, WriteMode};

use crate::local::{cli_actor, cli_caller};

#[derive(Subcommand)]
pub enum TablesCommand {
    /// List the schemas of a catalog (a workspace's catalog has the workspace's name).
    Schemas {
        #[arg(long, default_value = "dev")]
        catalog: String,
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
        sources: Vec<std::path::PathBuf>,
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
        sources: Vec<std::path::PathBuf>,
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

/// The files a command read, as lineage sources.
fn files_read(sources: &[std::path::PathBuf]) -> Vec<SourceRead> {
    sources
        .iter()
        .filter_map(|path| std::path::absolute(path).ok())
        .map(|path| SourceRead {
            node: Node::file(path.display().to_string()),
            version: None,
        })
        .collect()
}

/// Local table writes act as an admin working in the table's catalog.
fn writer_of(table: &TableInfo) -> tarn_core::caller::Caller {
    cli_caller(table.catalog_name.clone())
}

/// A table of the catalog and where its data is.
async fn located(store: &dyn MetaStore, full_name: &str) -> Result<(TableInfo, url::Url)> {
    let (catalog, schema, name) = catalog::parse_table_name(full_name)?;
    let table = store.get_table(&catalog, &schema, &name).await?;
    let location = url::Url::parse(&table.storage_location)
        .with_context(|| format!("table {full_name} has an invalid location"))?;
    Ok((table, location))
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

pub async fn run(store: &dyn MetaStore, lake: &Lake, command: TablesCommand) -> Result<()> {
    match command {
        TablesCommand::Schemas { catalog } => {
            let catalog = catalog::normalize_name("catalog", &catalog)?;
            let schemas = store.list_schemas(&catalog, 1000, 0).await?.items;
            println!("{:<32} {:<20} COMMENT", "SCHEMA", "OWNER");
            for schema in schemas {
                println!(
                    "{:<32} {:<20} {}",
                    schema.full_name, schema.owner, schema.comment
                );
            }
        }
        TablesCommand::CreateSchema { full_name, comment } => {
            let (catalog, name) = catalog::parse_schema_name(&full_name)?;
            catalog::validate_comment(&comment)?;
            let schema = store
                .create_schema(
                    &NewSchema {
                        catalog,
                        name,
                        comment,
                        properties: BTreeMap::new(),
                    },
                    &cli_actor(),
                )
                .await?;
            println!("created schema {}", schema.full_name);
        }
        TablesCommand::List { schema } => {
            let (catalog, name) = catalog::parse_schema_name(&schema)?;
            let tables = store.list_tables(&catalog, &name, 1000, 0).await?.items;
            println!(
                "{:<40} {:<9} {:<8} {:<20} COMMENT",
                "TABLE", "TYPE", "COLUMNS", "OWNER"
            );
            for table in tables {
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
            catalog::validate_comment(&comment)?;
            let mut columns = crate::ingest::parse_columns(&columns)?;
            for (index, partition) in partition_by.iter().enumerate() {
                let column = columns
                    .iter_mut()
                    .find(|c| &c.name == partition)
                    .with_context(|| format!("partition column '{partition}' is not a column"))?;
                column.partition_index = Some(index as i64);
            }
            let table = lake
                .create_managed(
                    store,
                    &cli_actor(),
                    ManagedTable {
                        catalog,
                        schema,
                        name,
                        columns,
                        comment,
                        properties: pairs(&properties)?,
                    },
                )
                .await?;
            println!(
                "created table {} at {}",
                table.full_name, table.storage_location
            );
        }
        TablesCommand::Write {
            full_name,
            sources,
            mode,
            format,
        } => {
            let (table, location) = located(store, &full_name).await?;
            let format = format.as_deref().map(SourceFormat::parse).transpose()?;
            let batches = lake
                .read_rows(&location, &table.full_name, &sources, format)
                .await?;
            let mode = match mode {
                Mode::Append => WriteMode::Append,
                Mode::Overwrite => WriteMode::Overwrite,
            };
            let rows = writes::Rows {
                batches,
                read_from: files_read(&sources),
            };
            let written = writes::write_rows(
                lake,
                store,
                &writer_of(&table),
                &table.full_name,
                rows,
                mode,
                false,
            )
            .await?;
            println!("wrote {} rows: version {}", written.rows, written.version);
        }
        TablesCommand::Merge {
            full_name,
            sources,
            keys,
            delete_unmatched,
            format,
        } => {
            let (table, location) = located(store, &full_name).await?;
            let format = format.as_deref().map(SourceFormat::parse).transpose()?;
            let batches = lake
                .read_rows(&location, &table.full_name, &sources, format)
                .await?;
            let spec = MergeSpec {
                keys,
                delete_unmatched,
            };
            let rows = writes::Rows {
                batches,
                read_from: files_read(&sources),
            };
            let merged = writes::merge_rows(
                lake,
                store,
                &writer_of(&table),
                &table.full_name,
                rows,
                &spec,
            )
            .await?;
            println!(
                "merged {} rows: {} inserted, {} updated, {} deleted; version {}",
                merged.num_source_rows,
                merged.num_inserted_rows,
                merged.num_updated_rows,
                merged.num_deleted_rows,
                merged.version
            );
        }
        TablesCommand::Tag {
            full_name,
            set,
            unset,
        } => {
            let parts = full_name.split('.').count();
            let kind = match parts {
                1 => SecurableType::Catalog,
                2 => SecurableType::Schema,
                _ => SecurableType::Table,
            };
            let full_name = kind.normalize(&full_name)?;
            let set = pairs(&set)?;
            catalog::validate_tags(&set, &unset)?;
            let catalog_name = full_name.split('.').next().unwrap_or_default().to_string();
            match kind {
                SecurableType::Table => {
                    located(store, &full_name).await?;
                }
                SecurableType::Schema => {
                    let (catalog, schema) = catalog::parse_schema_name(&full_name)?;
                    store.get_schema(&catalog, &schema).await?;
                }
                SecurableType::Catalog => {
                    if !store.workspace_exists(&catalog_name).await? {
                        anyhow::bail!("Catalog not found: {catalog_name}");
                    }
                }
            }
            let tags = store
                .update_catalog_tags(&catalog_name, kind, &full_name, &set, &unset, &cli_actor())
                .await?;
            let shown: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "{full_name}: {}",
                if shown.is_empty() {
                    "no tags".to_string()
                } else {
                    shown.join(", ")
                }
            );
        }
        TablesCommand::Show { full_name } => {
            let (table, location) = located(store, &full_name).await?;
            println!(
                "{} ({}, owner {})",
                table.full_name,
                table.table_type.as_str(),
                table.owner
            );
            println!("location: {}", table.storage_location);
            if !table.comment.is_empty() {
                println!("comment:  {}", table.comment);
            }
            let tags = store.catalog_tags(&table.full_name).await?;
            if !tags.is_empty() {
                let shown: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("tags:     {}", shown.join(", "));
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
            println!("\n{:<8} {:<20} {:<24} BY", "VERSION", "TIME", "OPERATION");
            for commit in lake.history(&location, &table.full_name, 10).await? {
                println!(
                    "{:<8} {:<20} {:<24} {}",
                    commit.version,
                    commit
                        .info
                        .timestamp
                        .map(crate::models::time)
                        .unwrap_or_default(),
                    commit.info.operation.unwrap_or_default(),
                    commit.info.user_name.unwrap_or_default()
                );
            }
        }
        TablesCommand::Head {
            full_name,
            limit,
            version,
            timestamp,
        } => {
            let (table, location) = located(store, &full_name).await?;
            let at = At::parse(version, timestamp.as_deref())?;
            let (_, batches) = lake.read(&location, &table.full_name, at).await?;
            print_rows(batches, limit)?;
        }
        TablesCommand::Delete {
            full_name,
            predicate,
        } => {
            let (table, _) = located(store, &full_name).await?;
            let deleted = writes::delete_rows(
                lake,
                store,
                &writer_of(&table),
                &table.full_name,
                &predicate,
            )
            .await?;
            match deleted.num_deleted_rows {
                Some(rows) => println!("deleted {rows} rows: version {}", deleted.version),
                None => println!("deleted whole files: version {}", deleted.version),
            }
        }
        TablesCommand::Changes {
            full_name,
            from,
            to,
        } => {
            let (table, location) = located(store, &full_name).await?;
            let (_, batches) = lake.changes(&location, &table.full_name, from, to).await?;
            print_rows(batches, usize::MAX)?;
        }
        TablesCommand::Optimize {
            full_name,
            zorder_by,
            target_size,
        } => {
            let (table, location) = located(store, &full_name).await?;
            let optimized = lake
                .optimize(&location, &table.full_name, target_size, zorder_by)
                .await?;
            println!(
                "compacted {} files into {} ({} partitions): version {}",
                optimized.num_files_removed,
                optimized.num_files_added,
                optimized.partitions_optimized,
                optimized.version
            );
        }
        TablesCommand::Vacuum {
            full_name,
            retention_hours,
            dry_run,
            skip_retention_check,
        } => {
            let (table, location) = located(store, &full_name).await?;
            let spec = VacuumSpec {
                retention_hours,
                dry_run,
                skip_retention_check,
            };
            let vacuumed = lake.vacuum(&location, &table.full_name, &spec).await?;
            for file in &vacuumed.files_deleted {
                println!("{file}");
            }
            let verb = if dry_run { "would delete" } else { "deleted" };
            println!("{verb} {} files", vacuumed.files_deleted.len());
        }
    }
    Ok(())
}
