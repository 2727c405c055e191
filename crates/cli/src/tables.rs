//! `tarn tables ...`: the lakehouse catalog from the command line, on the metadata store and
//! the lake directly (like `tarn models`); changes are recorded as `cli:<user>`.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use clap::Subcommand;
use tarn_core::catalog::{self, NewSchema, TableInfo};
use tarn_core::store::MetaStore;
use tarn_lake::arrow::record_batch::RecordBatch;
use tarn_lake::arrow::util::pretty::pretty_format_batches;
use tarn_lake::{At, Lake, VacuumSpec};

use crate::cli_actor;

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
            let (table, location) = located(store, &full_name).await?;
            let deleted = lake
                .delete_where(&location, &table.full_name, &predicate)
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
