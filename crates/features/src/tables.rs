//! Feature tables: created from a schema, from rows or from a query; written by merging on
//! their keys, so a late correction for a key and time replaces the old value in a new version
//! of the table (its history shows both).

use tarn_core::caller::Caller;
use tarn_core::catalog::{ColumnInfo, Privilege, TableInfo};
use tarn_core::features::{FeatureTable, Pipeline, validate_keys};
use tarn_core::ids::now_millis;
use tarn_core::lineage::{NewLineage, Node, NodeKind, SourceRead};
use tarn_core::store::MetaStore;
use tarn_core::{Error, Result};
use tarn_lake::arrow::array::{Array, ArrayRef};
use tarn_lake::arrow::compute::concat_batches;
use tarn_lake::arrow::record_batch::RecordBatch;
use tarn_lake::catalog::{ManagedTable, location_of};
use tarn_lake::{Lake, MergeSpec, Merged, WriteMode, columns_of_arrow};

use crate::pit::{FeatureIndex, micros};
use crate::{creatable_table, table_for};

/// What a new feature table is.
#[derive(Debug, Clone, Default)]
pub struct NewFeatureTable {
    /// `catalog.schema.table`.
    pub name: String,
    pub primary_keys: Vec<String>,
    pub timestamp_key: Option<String>,
    pub description: String,
    /// The tables its pipeline reads; for a table made by a query, the query's tables when
    /// left empty.
    pub source_tables: Vec<String>,
    pub pipeline: Pipeline,
    pub partition_columns: Vec<String>,
}

/// Where a new feature table's columns (and first rows) come from.
#[derive(Debug, Clone)]
pub enum FeatureRows {
    /// Columns only: an empty table.
    Schema(Vec<ColumnInfo>),
    /// Rows sent by the client.
    Data(Vec<RecordBatch>),
    /// A query's rows, read with the caller's privileges.
    Query(String),
}

/// Checks rows for a feature table: every key present and non-null, and no two rows for
/// one key (and time).
fn check_rows(meta: &FeatureTable, batch: &RecordBatch) -> Result<()> {
    let table = &meta.full_name;
    let mut keys: Vec<ArrayRef> = Vec::new();
    for key in meta.primary_keys.iter().chain(&meta.timestamp_key) {
        let column = batch.column_by_name(key).ok_or_else(|| {
            Error::invalid(format!("The rows for {table} lack its key column '{key}'"))
        })?;
        if column.null_count() > 0 {
            return Err(Error::invalid(format!(
                "Key column '{key}' of the rows for {table} holds nulls: keys identify rows and may not be null"
            )));
        }
        keys.push(column.clone());
    }
    let entity_keys = &keys[..meta.primary_keys.len()];
    let times = match &meta.timestamp_key {
        Some(ts) => Some(micros(keys[meta.primary_keys.len()].as_ref(), ts)?),
        None => None,
    };
    FeatureIndex::build(
        &format!("The rows for {table}"),
        &meta.primary_keys,
        entity_keys,
        times.as_ref(),
    )
    .map(|_| ())
}

async fn checked_rows(meta: &FeatureTable, batches: &[RecordBatch]) -> Result<()> {
    let Some(first) = batches.first() else {
        return Ok(());
    };
    let batch = concat_batches(&first.schema(), batches)
        .map_err(|e| Error::invalid(format!("The rows for {}: {e}", meta.full_name)))?;
    let meta = meta.clone();
    tokio::task::spawn_blocking(move || check_rows(&meta, &batch))
        .await
        .map_err(|e| Error::internal_from("checking rows failed", e))?
}

/// Creates a feature table for `caller`, with its first rows when given.
pub async fn create(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    new: NewFeatureTable,
    rows: FeatureRows,
) -> Result<(FeatureTable, TableInfo)> {
    let (catalog, schema, name) = creatable_table(store, caller, &new.name).await?;
    let full_name = format!("{catalog}.{schema}.{name}");
    let mut reads: Vec<SourceRead> = Vec::new();
    let (mut columns, batches) = match rows {
        FeatureRows::Schema(columns) => (columns, Vec::new()),
        FeatureRows::Data(batches) => {
            let first = batches.first().ok_or_else(|| {
                Error::invalid("The body holds no rows: send an Arrow IPC stream with a schema")
            })?;
            (columns_of_arrow(&first.schema())?, batches)
        }
        FeatureRows::Query(sql) => {
            let output = lake.query(store, caller, &sql, &Default::default()).await?;
            reads = output.reads;
            (columns_of_arrow(&output.schema)?, output.batches)
        }
    };
    let primary_keys = validate_keys(&new.primary_keys, new.timestamp_key.as_deref(), &columns)?;
    for (position, partition) in new.partition_columns.iter().enumerate() {
        let column = columns
            .iter_mut()
            .find(|c| &c.name == partition)
            .ok_or_else(|| {
                Error::invalid(format!("Partition column '{partition}' is not a column"))
            })?;
        column.partition_index = Some(position as i64);
    }
    let mut source_tables = new.source_tables;
    if source_tables.is_empty() {
        source_tables = reads
            .iter()
            .filter(|r| r.node.kind == NodeKind::Table)
            .map(|r| r.node.name.clone())
            .collect();
    }
    let meta = FeatureTable {
        table_id: String::new(),
        full_name: full_name.clone(),
        primary_keys,
        timestamp_key: new.timestamp_key,
        description: new.description.clone(),
        source_tables,
        pipeline: new.pipeline,
        created_by: caller.principal.name.clone(),
        created_at: now_millis(),
    };
    checked_rows(&meta, &batches).await?;
    let table = lake
        .create_managed(
            store,
            &caller.actor(),
            ManagedTable {
                catalog,
                schema,
                name,
                columns,
                comment: new.description,
                // Publishing to the online store follows the change feed.
                properties: [("delta.enableChangeDataFeed".to_string(), "true".to_string())].into(),
            },
        )
        .await?;
    let meta = FeatureTable {
        table_id: table.table_id.clone(),
        ..meta
    };
    let created = fill(lake, store, caller, &table, &meta, batches, reads).await;
    if let Err(err) = created {
        // All or nothing: a table that could not become a feature table goes again.
        if let Err(drop_err) = lake.drop_table(store, &caller.actor(), &table).await {
            tracing::warn!(table = %full_name, error = %drop_err.report(), "cannot drop a half-made feature table");
        }
        return Err(err);
    }
    let table = store
        .get_table(&table.catalog_name, &table.schema_name, &table.name)
        .await?;
    Ok((meta, table))
}

/// Registers a new table as a feature table and writes its first rows.
async fn fill(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    table: &TableInfo,
    meta: &FeatureTable,
    batches: Vec<RecordBatch>,
    reads: Vec<SourceRead>,
) -> Result<()> {
    store.create_feature_table(meta, &caller.actor()).await?;
    if batches.is_empty() {
        return Ok(());
    }
    let written = lake
        .write(
            &location_of(table)?,
            &table.full_name,
            batches,
            WriteMode::Append,
            false,
        )
        .await?;
    let write = NewLineage::new(
        Node::table(table.full_name.clone()),
        Some(written.version as i64),
        "CREATE FEATURE TABLE",
        caller.principal.name.clone(),
    )
    .reading(reads);
    store.record_committed_write(&write).await;
    Ok(())
}

/// A feature table and its catalog entry, once `caller` holds `privilege` on it.
pub async fn feature_table_for(
    store: &dyn MetaStore,
    caller: &Caller,
    full_name: &str,
    privilege: Privilege,
) -> Result<(FeatureTable, TableInfo)> {
    let table = table_for(store, caller, full_name, privilege).await?;
    let meta = store
        .get_feature_table(&table.catalog_name, &table.schema_name, &table.name)
        .await?;
    Ok((meta, table))
}

/// Upserts rows into a feature table on its keys (and timestamp key).
pub async fn write(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    full_name: &str,
    batches: Vec<RecordBatch>,
) -> Result<Merged> {
    let (meta, table) = feature_table_for(store, caller, full_name, Privilege::Modify).await?;
    checked_rows(&meta, &batches).await?;
    let keys: Vec<String> = meta
        .primary_keys
        .iter()
        .chain(&meta.timestamp_key)
        .cloned()
        .collect();
    let merged = lake
        .merge(
            &location_of(&table)?,
            &table.full_name,
            batches,
            &MergeSpec {
                keys,
                delete_unmatched: false,
            },
        )
        .await?;
    let write = NewLineage::new(
        Node::table(table.full_name.clone()),
        Some(merged.version as i64),
        "MERGE",
        caller.principal.name.clone(),
    );
    store.record_committed_write(&write).await;
    Ok(merged)
}

/// Feature tables the caller may see whose name, description or columns contain `text`.
pub async fn search(
    store: &dyn MetaStore,
    caller: &Caller,
    text: &str,
    max_results: u64,
    offset: u64,
) -> Result<(Vec<(FeatureTable, TableInfo)>, Option<u64>)> {
    let mut catalogs = Vec::new();
    for workspace in store.list_workspaces().await? {
        match tarn_lake::access::reach_catalog(store, caller, &workspace, false).await {
            Ok(()) => catalogs.push(workspace),
            Err(err) if err.hides_object() => {}
            Err(err) => return Err(err),
        }
    }
    let page = store
        .search_feature_tables(&catalogs, text, max_results, offset)
        .await?;
    let mut visible = Vec::new();
    for meta in page.items {
        if let Ok(table) = table_for(store, caller, &meta.full_name, Privilege::UseSchema).await {
            visible.push((meta, table));
        }
    }
    Ok((visible, page.next_offset))
}
