//! Row-level changes beyond append and overwrite: merge (upsert on keys), delete where, and
//! the change data feed that incremental readers follow.

use deltalake::DeltaTableError;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::common::Column;
use deltalake::datafusion::logical_expr::{Expr, col};
use deltalake::datafusion::physical_plan::collect;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::operations::delete::DeleteMetrics;
use deltalake::operations::merge::{InsertBuilder, UpdateBuilder};
use deltalake::table::config::TablePropertiesExt;
use serde::Serialize;
use tarn_core::{Error, ErrorCode, Result};
use url::Url;

use crate::error::{table_error, write_error};
use crate::sql::check_predicate;
use crate::tables::{At, Lake, commit_properties, describe_state, open};

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Merged {
    pub version: u64,
    pub num_source_rows: usize,
    pub num_inserted_rows: usize,
    pub num_updated_rows: usize,
    pub num_deleted_rows: usize,
}

fn deletion(
    full_name: &str,
    deleted: std::result::Result<(deltalake::DeltaTable, DeleteMetrics), DeltaTableError>,
) -> Result<Deleted> {
    let (table, metrics) = deleted.map_err(|e| match e {
        DeltaTableError::Generic(_)
        | DeltaTableError::GenericError { .. }
        | DeltaTableError::Arrow { .. } => Error::invalid(e.to_string()),
        other => write_error(full_name, other),
    })?;
    Ok(Deleted {
        version: table.version().unwrap_or_default(),
        num_deleted_rows: metrics.num_deleted_rows,
    })
}

/// What a delete did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deleted {
    pub version: u64,
    /// Unknown when whole files were dropped by their statistics alone.
    pub num_deleted_rows: Option<usize>,
}

/// The rows a merge brings and what to do with them.
#[derive(Debug, Clone)]
pub struct MergeSpec {
    /// Columns that identify a row; a source row matching a target row on all of them
    /// updates it, otherwise it is inserted.
    pub keys: Vec<String>,
    /// Target rows no source row matches are deleted (a full sync of the table).
    pub delete_unmatched: bool,
}

fn column(relation: &str, name: &str) -> Expr {
    col(Column::new(Some(relation), name))
}

impl Lake {
    /// Upserts `batches` into the table on `spec.keys`: `MERGE INTO target USING source ON
    /// keys WHEN MATCHED UPDATE SET * WHEN NOT MATCHED INSERT *`.
    pub async fn merge(
        &self,
        location: &Url,
        full_name: &str,
        batches: Vec<RecordBatch>,
        spec: &MergeSpec,
    ) -> Result<Merged> {
        if spec.keys.is_empty() {
            return Err(Error::invalid(format!(
                "A merge into {full_name} needs at least one key column"
            )));
        }
        let Some(first) = batches.first() else {
            return Err(Error::invalid(format!(
                "A merge into {full_name} needs at least one source row batch"
            )));
        };
        let source_schema = first.schema();
        let table = open(location, full_name, At::Latest).await?;
        let target_columns: Vec<String> = describe_state(&table, full_name)?
            .into_iter()
            .map(|c| c.name)
            .collect();
        for key in &spec.keys {
            if !target_columns.contains(key) {
                return Err(Error::invalid(format!(
                    "Merge key '{key}' is not a column of {full_name}"
                )));
            }
            if source_schema.field_with_name(key).is_err() {
                return Err(Error::invalid(format!(
                    "Merge key '{key}' is missing from the rows sent to {full_name}"
                )));
            }
        }
        let extra: Vec<&str> = source_schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|name| !target_columns.iter().any(|c| c == name))
            .collect();
        if !extra.is_empty() {
            return Err(Error::invalid(format!(
                "The rows sent to {full_name} have columns it lacks: {}",
                extra.join(", ")
            )));
        }
        let source = SessionContext::new()
            .read_batches(batches)
            .map_err(|e| Error::invalid(format!("The rows sent to {full_name}: {e}")))?;
        let on = spec
            .keys
            .iter()
            .map(|key| column("target", key).eq(column("source", key)))
            .reduce(Expr::and)
            .unwrap_or_else(|| deltalake::datafusion::prelude::lit(false));
        let fields: Vec<String> = source_schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let update_fields = fields.clone();
        let mut merge = table
            .merge(source, on)
            .with_commit_properties(commit_properties())
            .with_source_alias("source")
            .with_target_alias("target")
            .when_matched_update(move |update: UpdateBuilder| {
                update_fields.iter().fold(update, |update, name| {
                    update.update(Column::new_unqualified(name), column("source", name))
                })
            })
            .and_then(|merge| {
                merge.when_not_matched_insert(move |insert: InsertBuilder| {
                    fields.iter().fold(insert, |insert, name| {
                        insert.set(Column::new_unqualified(name), column("source", name))
                    })
                })
            })
            .map_err(|e| write_error(full_name, e))?;
        if spec.delete_unmatched {
            merge = merge
                .when_not_matched_by_source_delete(|delete| delete)
                .map_err(|e| write_error(full_name, e))?;
        }
        let (table, metrics) = merge.await.map_err(|e| write_error(full_name, e))?;
        Ok(Merged {
            version: table.version().unwrap_or_default(),
            num_source_rows: metrics.num_source_rows,
            num_inserted_rows: metrics.num_target_rows_inserted,
            num_updated_rows: metrics.num_target_rows_updated,
            num_deleted_rows: metrics.num_target_rows_deleted,
        })
    }

    /// Deletes the rows matching a SQL predicate (`DELETE FROM t WHERE predicate`).
    pub async fn delete_where(
        &self,
        location: &Url,
        full_name: &str,
        predicate: &str,
    ) -> Result<Deleted> {
        if predicate.trim().is_empty() {
            return Err(Error::invalid(format!(
                "A delete from {full_name} needs a predicate; overwrite the table to empty it"
            )));
        }
        check_predicate(predicate)?;
        let table = open(location, full_name, At::Latest).await?;
        let deleted = table
            .delete()
            .with_commit_properties(commit_properties())
            .with_predicate(predicate)
            .await;
        deletion(full_name, deleted).map_err(|e| {
            if e.code == ErrorCode::InvalidParameterValue {
                Error::invalid(format!(
                    "Invalid predicate for {full_name}: '{predicate}': {}",
                    e.message
                ))
            } else {
                e
            }
        })
    }

    /// Deletes the rows matching a planned predicate, or every row when there is none.
    pub(crate) async fn delete_expr(
        &self,
        location: &Url,
        full_name: &str,
        predicate: Option<Expr>,
    ) -> Result<Deleted> {
        let table = open(location, full_name, At::Latest).await?;
        let delete = table.delete().with_commit_properties(commit_properties());
        let deleted = match predicate {
            Some(predicate) => delete.with_predicate(predicate).await,
            None => delete.await,
        };
        deletion(full_name, deleted)
    }

    /// The change data feed from `starting` to `ending` (inclusive; the latest when none):
    /// each changed row with `_change_type` (insert, update_preimage, update_postimage,
    /// delete), `_commit_version` and `_commit_timestamp`.
    pub async fn changes(
        &self,
        location: &Url,
        full_name: &str,
        starting: u64,
        ending: Option<u64>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let table = open(location, full_name, At::Latest).await?;
        let latest = table.version().unwrap_or_default();
        let enabled = table
            .snapshot()
            .map_err(|e| table_error(full_name, e))?
            .table_config()
            .enable_change_data_feed();
        if !enabled {
            return Err(Error::invalid(format!(
                "Table {full_name} does not record its changes: set the table property delta.enableChangeDataFeed=true"
            )));
        }
        if starting > latest {
            return Err(Error::invalid(format!(
                "Table {full_name} has no version {starting}: its latest is {latest}"
            )));
        }
        let ending = ending.unwrap_or(latest).min(latest);
        if ending < starting {
            return Err(Error::invalid(format!(
                "Invalid version range for {full_name}: {starting} is after {ending}"
            )));
        }
        let context = SessionContext::new();
        let state = context.state();
        let plan = table
            .scan_cdf()
            .with_starting_version(starting)
            .with_ending_version(ending)
            .build(&state, None)
            .await
            .map_err(|e| match e {
                DeltaTableError::ChangeDataNotEnabled { version } => Error::invalid(format!(
                    "Table {full_name} did not record changes at version {version}: the change data feed was enabled later"
                )),
                other => table_error(full_name, other),
            })?;
        let schema = plan.schema();
        let batches = collect(plan, state.task_ctx()).await.map_err(|e| {
            Error::internal_from(format!("cannot read the changes of {full_name}"), e)
        })?;
        Ok((schema, batches))
    }
}
