//! `tarn features ...`: feature tables and training sets from the command line, on the metadata
//! store and the lake directly, acting as an admin of the workspace (like `tarn tables`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use tarn_core::catalog::Privilege;
use tarn_core::features::TrainingSetSpec;
use tarn_core::store::MetaStore;
use tarn_features::tables::{self, FeatureRows, NewFeatureTable};
use tarn_features::{online, training};
use tarn_lake::arrow::util::pretty::pretty_format_batches;
use tarn_lake::catalog::location_of;
use tarn_lake::ingest::SourceFormat;
use tarn_lake::{Lake, ipc};

use crate::local::cli_caller;

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
    /// List feature tables, or those whose name, description or columns hold TEXT.
    List {
        #[arg(long, default_value = "")]
        search: String,
        #[arg(long, default_value = "dev")]
        workspace: String,
    },
    /// Show a feature table: keys, features, provenance.
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
        #[arg(long, default_value = "dev")]
        workspace: String,
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
        /// How a running server keeps it published: `manual`, `continuous` (each new version
        /// of the table), or a schedule like `1h`.
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

/// `a=1,b=x` as a JSON object (numbers where they parse).
fn key_object(text: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
    text.split(',')
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .with_context(|| format!("'{pair}' is not column=value"))?;
            let value = value
                .parse::<i64>()
                .map(serde_json::Value::from)
                .unwrap_or_else(|_| serde_json::Value::from(value));
            Ok((name.trim().to_string(), value))
        })
        .collect()
}

fn workspace_of(full_name: &str) -> String {
    full_name.split('.').next().unwrap_or("dev").to_string()
}

pub async fn run(
    store: &dyn MetaStore,
    lake: &Lake,
    online_url: &str,
    command: FeaturesCommand,
) -> Result<()> {
    match command {
        FeaturesCommand::Publish {
            full_name,
            ttl,
            full,
            refresh,
        } => {
            let online = online::open(online_url).await?;
            let caller = cli_caller(workspace_of(&full_name));
            let published = online::publish(
                lake,
                store,
                online.as_ref(),
                &caller,
                &full_name,
                &online::PublishOptions { ttl, full, refresh },
            )
            .await?;
            println!(
                "published {} version {} to the {} online store ({}): {} keys written, {} removed",
                published.table_name,
                published.version,
                published.online_store,
                published.mode,
                published.keys_written,
                published.keys_removed
            );
            if let Some(refresh) = &published.refresh {
                println!("a running server refreshes it: {refresh}");
            }
        }
        FeaturesCommand::Lookup {
            full_name,
            keys,
            ttl,
        } => {
            let online = online::open(online_url).await?;
            let caller = cli_caller(workspace_of(&full_name));
            let keys = keys
                .iter()
                .map(|k| key_object(k))
                .collect::<Result<Vec<_>>>()?;
            let request = online::LookupRequest {
                table: &full_name,
                keys: &keys,
                ttl: ttl.as_deref(),
                now: tarn_core::ids::now_millis(),
            };
            let cache = online::LookupCache::default();
            let results = online::lookup(store, online.as_ref(), &cache, &caller, &request).await?;
            for (key, result) in keys.iter().zip(results) {
                println!(
                    "{}  {}",
                    serde_json::Value::Object(key.clone()),
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
            let rows = match (columns, query) {
                (Some(columns), _) => FeatureRows::Schema(crate::ingest::parse_columns(&columns)?),
                (None, Some(query)) => FeatureRows::Query(query),
                (None, None) => anyhow::bail!("give --columns or --query"),
            };
            let caller = cli_caller(workspace_of(&full_name));
            let (meta, table) = tables::create(
                lake,
                store,
                &caller,
                NewFeatureTable {
                    name: full_name,
                    primary_keys,
                    timestamp_key,
                    description,
                    source_tables,
                    pipeline: tarn_core::features::Pipeline {
                        job,
                        run_id: None,
                        commit,
                    },
                    partition_columns: Vec::new(),
                },
                rows,
            )
            .await?;
            println!(
                "created feature table {} (keys {}{}) at {}",
                meta.full_name,
                meta.primary_keys.join(", "),
                meta.timestamp_key
                    .map(|ts| format!(", timestamp {ts}"))
                    .unwrap_or_default(),
                table.storage_location
            );
        }
        FeaturesCommand::Write {
            full_name,
            sources,
            format,
        } => {
            let caller = cli_caller(workspace_of(&full_name));
            let (_, table) =
                tables::feature_table_for(store, &caller, &full_name, Privilege::Modify).await?;
            let format = format.as_deref().map(SourceFormat::parse).transpose()?;
            let batches = lake
                .read_rows(&location_of(&table)?, &table.full_name, &sources, format)
                .await?;
            let merged = tables::write(lake, store, &caller, &full_name, batches).await?;
            println!(
                "merged {} rows: {} inserted, {} updated; version {}",
                merged.num_source_rows,
                merged.num_inserted_rows,
                merged.num_updated_rows,
                merged.version
            );
        }
        FeaturesCommand::List { search, workspace } => {
            let caller = cli_caller(workspace);
            let (found, _) = tables::search(store, &caller, &search, 1000, 0).await?;
            println!(
                "{:<44} {:<28} {:<9} DESCRIPTION",
                "FEATURE TABLE", "KEYS", "FEATURES"
            );
            for (meta, table) in found {
                let keys = meta
                    .primary_keys
                    .iter()
                    .chain(&meta.timestamp_key)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                let features = table.columns.len()
                    - meta.primary_keys.len()
                    - usize::from(meta.timestamp_key.is_some());
                println!(
                    "{:<44} {:<28} {:<9} {}",
                    meta.full_name, keys, features, meta.description
                );
            }
        }
        FeaturesCommand::Show { full_name } => {
            let caller = cli_caller(workspace_of(&full_name));
            let (meta, table) =
                tables::feature_table_for(store, &caller, &full_name, Privilege::UseSchema).await?;
            println!("feature table  {}", meta.full_name);
            println!("primary keys   {}", meta.primary_keys.join(", "));
            if let Some(ts) = &meta.timestamp_key {
                println!("timestamp key  {ts}");
            }
            println!("description    {}", meta.description);
            println!("owner          {}", table.owner);
            println!("sources        {}", meta.source_tables.join(", "));
            if let Some(job) = &meta.pipeline.job {
                println!("job            {job}");
            }
            if let Some(commit) = &meta.pipeline.commit {
                println!("commit         {commit}");
            }
            println!("location       {}", table.storage_location);
            let online = online::open(online_url).await?;
            match online.publication(&meta.full_name).await? {
                None => println!("online         not published"),
                Some(p) => {
                    println!(
                        "online         version {} ({} keys) in the {} store, published {} by {}",
                        p.version,
                        p.keys,
                        online.kind(),
                        tarn_lake::format_timestamp(p.published_at),
                        p.published_by
                    );
                    println!(
                        "refresh        {}",
                        p.refresh.as_deref().unwrap_or("manual")
                    );
                    if let Some(error) = &p.refresh_error {
                        println!("refresh error  {error}");
                    }
                }
            }
            println!("\n{:<32} TYPE", "FEATURE");
            for column in &table.columns {
                let is_key = meta.primary_keys.contains(&column.name)
                    || meta.timestamp_key.as_deref() == Some(&column.name);
                if !is_key {
                    println!("{:<32} {}", column.name, column.type_text);
                }
            }
        }
        FeaturesCommand::TrainingSet {
            spec,
            output_table,
            out,
            workspace,
        } => {
            let text = std::fs::read_to_string(&spec)
                .with_context(|| format!("cannot read {}", spec.display()))?;
            let spec: TrainingSetSpec = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a training set spec", spec.display()))?;
            let caller = cli_caller(workspace);
            let built =
                training::create(lake, store, &caller, spec, output_table.as_deref()).await?;
            let set = &built.training_set;
            println!(
                "training set {}: {} rows, {} columns",
                set.training_set_id,
                set.num_rows,
                built.batch.num_columns()
            );
            for table in &set.tables_read {
                println!("  read {} at version {}", table.name, table.version);
            }
            if let Some(output) = &set.output_table {
                println!("  wrote {} version {}", output.name, output.version);
            }
            if let Some(out) = out {
                let bytes =
                    ipc::encode_parquet(&built.batch.schema(), std::slice::from_ref(&built.batch))?;
                std::fs::write(&out, bytes)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                println!("  rows in {}", out.display());
            } else if set.output_table.is_none() {
                let head = built.batch.slice(0, built.batch.num_rows().min(10));
                println!("{}", pretty_format_batches(&[head])?);
            }
        }
    }
    Ok(())
}
