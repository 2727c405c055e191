//! Row-level changes beyond append and overwrite: merge (upsert on keys), delete where, and
//! the change data feed that incremental readers follow.

use deltalake::DeltaTableError;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::common::Column;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::logical_expr::{Expr, JoinType, cast, col};
use deltalake::datafusion::physical_plan::collect;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Transaction;
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

/// What a merge does with the rows it matches and the rows it does not.
struct MergeActions {
    insert_unmatched: bool,
    delete_unmatched: bool,
    /// Recorded in the merge's commit as a Delta application transaction.
    record: Option<Transaction>,
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
        let actions = MergeActions {
            insert_unmatched: true,
            delete_unmatched: spec.delete_unmatched,
            record: None,
        };
        self.run_merge(location, full_name, batches, &spec.keys, actions)
            .await
    }

    /// Sets the other columns of `batches` on the rows that match them on `keys` and leaves
    /// the rest (`MERGE ... WHEN MATCHED UPDATE SET *` alone), recording `(app_id, version)` in
    /// the same commit as `append_recording` does.
    pub async fn update_matching(
        &self,
        location: &Url,
        full_name: &str,
        batches: Vec<RecordBatch>,
        keys: &[String],
        (app_id, version): (&str, i64),
    ) -> Result<Merged> {
        let actions = MergeActions {
            insert_unmatched: false,
            delete_unmatched: false,
            record: Some(Transaction::new(app_id, version)),
        };
        self.run_merge(location, full_name, batches, keys, actions)
            .await
    }

    async fn run_merge(
        &self,
        location: &Url,
        full_name: &str,
        batches: Vec<RecordBatch>,
        keys: &[String],
        actions: MergeActions,
    ) -> Result<Merged> {
        if keys.is_empty() {
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
        for key in keys {
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
        let on = keys
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
        let mut commit = commit_properties();
        if let Some(record) = actions.record {
            commit = commit.with_application_transaction(record);
        }
        let mut merge = table
            .merge(source, on)
            .with_commit_properties(commit)
            .with_source_alias("source")
            .with_target_alias("target")
            .when_matched_update(move |update: UpdateBuilder| {
                update_fields.iter().fold(update, |update, name| {
                    update.update(Column::new_unqualified(name), column("source", name))
                })
            })
            .map_err(|e| write_error(full_name, e))?;
        if actions.insert_unmatched {
            merge = merge
                .when_not_matched_insert(move |insert: InsertBuilder| {
                    fields.iter().fold(insert, |insert, name| {
                        insert.set(Column::new_unqualified(name), column("source", name))
                    })
                })
                .map_err(|e| write_error(full_name, e))?;
        }
        if actions.delete_unmatched {
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

    /// The rows of the table that match `keys` on all of its columns (named as in the table;
    /// the table's values are cast to the types in `keys`): `keys`' columns and `value`, an
    /// inner join read at the table's latest version. A key the table holds twice comes back
    /// twice.
    pub async fn lookup(
        &self,
        location: &Url,
        full_name: &str,
        keys: RecordBatch,
        value: &str,
    ) -> Result<Vec<RecordBatch>> {
        let context = SessionContext::new();
        let (provider, _) = self
            .provider(location, full_name, At::Latest, &context.state())
            .await?;
        let key_fields = keys.schema();
        let names: Vec<String> = key_fields
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let looked_up = |i: usize| format!("__tarn_lookup_key_{i}");
        let mut projection: Vec<Expr> = key_fields
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| {
                cast(col(field.name()), field.data_type().clone()).alias(looked_up(i))
            })
            .collect();
        projection.push(col(value).alias("__tarn_lookup_value"));
        let bad = |e: DataFusionError| {
            Error::invalid(format!("Cannot look up {value} in {full_name}: {e}"))
        };
        let table = context
            .read_table(provider)
            .and_then(|table| table.select(projection))
            .map_err(bad)?;
        let left: Vec<String> = names.clone();
        let right: Vec<String> = (0..names.len()).map(looked_up).collect();
        let left_refs: Vec<&str> = left.iter().map(String::as_str).collect();
        let right_refs: Vec<&str> = right.iter().map(String::as_str).collect();
        let mut output: Vec<Expr> = names.iter().map(|n| col(n.as_str())).collect();
        output.push(col("__tarn_lookup_value").alias(value));
        context
            .read_batch(keys)
            .and_then(|keys| keys.join(table, JoinType::Inner, &left_refs, &right_refs, None))
            .and_then(|joined| joined.select(output))
            .map_err(bad)?
            .collect()
            .await
            .map_err(bad)
    }

    /// Turns the table's change data feed on from its next version (a property change, as
    /// `ALTER TABLE ... SET TBLPROPERTIES` makes).
    pub async fn enable_change_feed(&self, location: &Url, full_name: &str) -> Result<()> {
        let table = open(location, full_name, At::Latest).await?;
        let enabled = table
            .snapshot()
            .map_err(|e| table_error(full_name, e))?
            .table_config()
            .enable_change_data_feed();
        if enabled {
            return Ok(());
        }
        table
            .set_tbl_properties()
            .with_properties(
                [("delta.enableChangeDataFeed".to_string(), "true".to_string())].into(),
            )
            .with_commit_properties(commit_properties())
            .await
            .map_err(|e| write_error(full_name, e))?;
        Ok(())
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
