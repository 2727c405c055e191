//! The table API's use cases, called alike by the HTTP API and the CLI (and next, job tasks):
//! creating a table, writing, merging and deleting rows. Each checks the caller's privileges
//! itself and records what it committed (the lineage write and its `table.committed` event) as
//! made by the caller, from what it read.

use std::collections::BTreeMap;

use deltalake::arrow::record_batch::RecordBatch;
use tarn_core::auth::require_admin;
use tarn_core::caller::Caller;
use tarn_core::catalog::{ColumnInfo, NewTable, Privilege, TableInfo, TableType};
use tarn_core::lineage::{NewLineage, Node, SourceRead};
use tarn_core::store::MetaStore;
use tarn_core::{Error, Result};
use url::Url;

use crate::access::{authorize_create_table, table_for};
use crate::catalog::{ManagedTable, location_of, new_table_id};
use crate::changes::{Deleted, MergeSpec, Merged};
use crate::tables::{Lake, WriteMode, Written};

/// Rows for a table, with what they were read from: the files a command read, nothing for
/// rows a client sent.
#[derive(Debug, Default)]
pub struct Rows {
    pub batches: Vec<RecordBatch>,
    pub read_from: Vec<SourceRead>,
}

/// A table as Unity Catalog's `CreateTable` asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRequest {
    pub catalog: String,
    pub schema: String,
    pub name: String,
    pub table_type: TableType,
    /// Only for external tables: where their Delta table is.
    pub storage_location: Option<String>,
    pub columns: Vec<ColumnInfo>,
    pub comment: String,
    pub properties: BTreeMap<String, String>,
}

/// Creates a managed table under the lake root, or registers an external Delta table (admins
/// only) at a location outside it, for a caller who may create tables in the schema.
pub async fn create_table(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    request: TableRequest,
) -> Result<TableInfo> {
    authorize_create_table(store, caller, &request.catalog, &request.schema).await?;
    match request.table_type {
        TableType::Managed => {
            if request.storage_location.is_some() {
                return Err(Error::invalid(
                    "A MANAGED table lives under the lake root: leave storage_location out",
                ));
            }
            let table = ManagedTable {
                catalog: request.catalog,
                schema: request.schema,
                name: request.name,
                columns: request.columns,
                comment: request.comment,
                properties: request.properties,
            };
            lake.create_managed(store, &caller.actor(), table).await
        }
        TableType::External => {
            // Registering data from anywhere the server reaches is for admins.
            require_admin(&caller.principal)?;
            let given = request.storage_location.as_deref().unwrap_or("");
            let location = Url::parse(given)
                .map_err(|e| Error::invalid(format!("Invalid storage_location '{given}': {e}")))?;
            if !lake.reaches(&location) {
                return Err(Error::invalid(format!(
                    "Invalid storage_location '{given}': expected a file:// location, or s3:// when the lake root is on S3"
                )));
            }
            if lake.contains(&location) {
                return Err(Error::invalid(format!(
                    "Invalid storage_location '{given}': it lies under the lake root, which holds managed tables"
                )));
            }
            let full_name = format!("{}.{}.{}", request.catalog, request.schema, request.name);
            let mut columns = lake.describe(&location, &full_name).await?;
            for column in &mut columns {
                if let Some(asked) = request.columns.iter().find(|c| c.name == column.name) {
                    column.comment = asked.comment.clone();
                }
            }
            let table = NewTable {
                table_id: new_table_id(),
                catalog: request.catalog,
                schema: request.schema,
                name: request.name,
                table_type: TableType::External,
                columns,
                storage_location: location.to_string(),
                view_definition: String::new(),
                comment: request.comment,
                properties: request.properties,
            };
            store.create_table(&table, &caller.actor()).await
        }
        TableType::View => Err(Error::invalid(
            "Create views with SQL: CREATE VIEW name AS SELECT ...",
        )),
    }
}

/// Appends or overwrites rows of a table the caller may modify; a write that changes the
/// table's columns (with `merge_schema`) updates the catalog's.
pub async fn write_rows(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    full_name: &str,
    rows: Rows,
    mode: WriteMode,
    merge_schema: bool,
) -> Result<Written> {
    let table = table_for(store, caller, full_name, Privilege::Modify).await?;
    let written = lake
        .write(
            &location_of(&table)?,
            &table.full_name,
            rows.batches,
            mode,
            merge_schema,
        )
        .await?;
    let operation = match mode {
        WriteMode::Append => "APPEND",
        WriteMode::Overwrite => "OVERWRITE",
    };
    record(
        store,
        caller,
        &table,
        written.version,
        operation,
        rows.read_from,
    )
    .await;
    keep_columns(store, caller, &table, &written.columns).await?;
    Ok(written)
}

/// Updates the catalog's columns of `table` when a write changed them.
pub async fn keep_columns(
    store: &dyn MetaStore,
    caller: &Caller,
    table: &TableInfo,
    columns: &[ColumnInfo],
) -> Result<()> {
    let same_columns = columns.len() == table.columns.len()
        && columns
            .iter()
            .zip(&table.columns)
            .all(|(a, b)| a.name == b.name && a.type_text == b.type_text);
    if !same_columns {
        store
            .set_table_columns(
                &table.catalog_name,
                &table.schema_name,
                &table.name,
                columns,
                &caller.actor(),
            )
            .await?;
    }
    Ok(())
}

/// Appends rows that a continuous job derived from other tables to a table the caller may
/// modify, adding the new columns they bring, and records `progress` (the job's name and how
/// far it has read) in the same commit, where `Lake::recorded_version` finds it.
pub async fn append_progress(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    table: &TableInfo,
    rows: Rows,
    progress: (&str, i64),
) -> Result<Written> {
    let table = table_for(store, caller, &table.full_name, Privilege::Modify).await?;
    let written = lake
        .append_recording(
            &location_of(&table)?,
            &table.full_name,
            rows.batches,
            progress,
            true,
        )
        .await?;
    record(
        store,
        caller,
        &table,
        written.version,
        "APPEND",
        rows.read_from,
    )
    .await;
    keep_columns(store, caller, &table, &written.columns).await?;
    Ok(written)
}

/// Appends rows once per application and version, as Delta's idempotent writes
/// (`txnAppId`, `txnVersion`) do: when the table already records `version` or a later one for
/// `app_id`, nothing is written and None is answered; otherwise the pair is recorded in the
/// append's own commit.
pub async fn append_once(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    full_name: &str,
    rows: Rows,
    (app_id, version): (&str, i64),
) -> Result<Option<Written>> {
    if app_id.is_empty() || version < 0 {
        return Err(Error::invalid(
            "An idempotent write needs an application id and a version of 0 or more",
        ));
    }
    let table = table_for(store, caller, full_name, Privilege::Modify).await?;
    let recorded = lake
        .recorded_version(&location_of(&table)?, &table.full_name, app_id)
        .await?;
    if recorded.is_some_and(|done| done >= version) {
        return Ok(None);
    }
    append_progress(lake, store, caller, &table, rows, (app_id, version))
        .await
        .map(Some)
}

/// The version `app_id` last recorded with a write to the table (see [`append_once`]); for
/// readers of the table.
pub async fn recorded_version(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    full_name: &str,
    app_id: &str,
) -> Result<Option<i64>> {
    let table = table_for(store, caller, full_name, Privilege::Select).await?;
    lake.recorded_version(&location_of(&table)?, &table.full_name, app_id)
        .await
}

/// Sets the other columns of `rows` on the rows of the table matching them on `keys`, as a
/// continuous job does, recording `progress` as `append_progress` does.
pub async fn update_progress(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    table: &TableInfo,
    rows: Rows,
    keys: &[String],
    progress: (&str, i64),
) -> Result<Merged> {
    let table = table_for(store, caller, &table.full_name, Privilege::Modify).await?;
    let merged = lake
        .update_matching(
            &location_of(&table)?,
            &table.full_name,
            rows.batches,
            keys,
            progress,
        )
        .await?;
    record(
        store,
        caller,
        &table,
        merged.version,
        "MERGE",
        rows.read_from,
    )
    .await;
    Ok(merged)
}

/// Upserts rows into a table the caller may modify on `spec`'s keys.
pub async fn merge_rows(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    full_name: &str,
    rows: Rows,
    spec: &MergeSpec,
) -> Result<Merged> {
    let table = table_for(store, caller, full_name, Privilege::Modify).await?;
    let merged = lake
        .merge(&location_of(&table)?, &table.full_name, rows.batches, spec)
        .await?;
    record(
        store,
        caller,
        &table,
        merged.version,
        "MERGE",
        rows.read_from,
    )
    .await;
    Ok(merged)
}

/// `DELETE FROM table WHERE predicate` on a table the caller may modify.
pub async fn delete_rows(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    full_name: &str,
    predicate: &str,
) -> Result<Deleted> {
    let table = table_for(store, caller, full_name, Privilege::Modify).await?;
    let deleted = lake
        .delete_where(&location_of(&table)?, &table.full_name, predicate)
        .await?;
    record(store, caller, &table, deleted.version, "DELETE", Vec::new()).await;
    Ok(deleted)
}

/// Records a committed write: who wrote which version, from what.
async fn record(
    store: &dyn MetaStore,
    caller: &Caller,
    table: &TableInfo,
    version: u64,
    operation: &str,
    read_from: Vec<SourceRead>,
) {
    let write = NewLineage::new(
        Node::table(table.full_name.clone()),
        Some(version as i64),
        operation,
        caller.principal.name.clone(),
    )
    .reading(read_from);
    store.record_committed_write(&write).await;
}
