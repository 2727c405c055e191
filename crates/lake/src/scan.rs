//! Reading a Delta snapshot with DataFusion's own Parquet scan. A table whose data files hold
//! its rows exactly as they are (reader protocol 1: no deletion vectors, no column mapping, no
//! other reader features; no partition columns, whose values live in the log) is the list of
//! its active files, so tarn hands that list straight to DataFusion: no per-batch file-id
//! column and transforms as delta-rs's general scan adds. Every other table goes through
//! delta-rs's scan.

use std::sync::Arc;

use async_trait::async_trait;
use deltalake::DeltaTable;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::common::project_schema;
use deltalake::datafusion::datasource::TableType;
use deltalake::datafusion::datasource::file_format::FileFormat;
use deltalake::datafusion::datasource::file_format::parquet::{
    ParquetFormat, transform_schema_to_view,
};
use deltalake::datafusion::datasource::listing::PartitionedFile;
use deltalake::datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use deltalake::datafusion::datasource::table_schema::TableSchema;
use deltalake::datafusion::error::Result as DataFusionResult;
use deltalake::datafusion::execution::object_store::ObjectStoreUrl;
use deltalake::datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::physical_plan::empty::EmptyExec;
use deltalake::logstore::LogStore;
use object_store::ObjectMeta;

/// The active files of one snapshot, read as plain Parquet.
#[derive(Debug)]
pub(crate) struct PlainParquetSnapshot {
    schema: SchemaRef,
    store_url: ObjectStoreUrl,
    files: Vec<PartitionedFile>,
}

impl PlainParquetSnapshot {
    /// The snapshot `table` holds, when its files can be read as they are; registers the
    /// table's object store with `session`.
    pub(crate) fn try_new(table: &DeltaTable, session: &dyn Session) -> Option<Self> {
        let state = table.snapshot().ok()?;
        if state.protocol().min_reader_version() != 1
            || !state.metadata().partition_columns().is_empty()
        {
            return None;
        }
        let log_store = table.log_store();
        let store_url = log_store.object_store_url();
        session
            .runtime_env()
            .register_object_store(store_url.as_ref(), log_store.object_store(None));
        let files = state
            .log_data()
            .into_iter()
            .map(|file| {
                PartitionedFile::new_from_meta(ObjectMeta {
                    location: file.object_store_path(),
                    last_modified: chrono::DateTime::from_timestamp_millis(
                        file.modification_time(),
                    )
                    .unwrap_or_default(),
                    size: file.size().max(0) as u64,
                    e_tag: None,
                    version: None,
                })
            })
            .collect();
        // Strings and binaries as view types when the session reads Parquet so (DataFusion's
        // default, and what delta-rs's scan answers): they aggregate fastest.
        let schema = state.snapshot().arrow_schema();
        let schema = if session
            .config_options()
            .execution
            .parquet
            .schema_force_view_types
        {
            Arc::new(transform_schema_to_view(&schema))
        } else {
            schema
        };
        Some(Self {
            schema,
            store_url,
            files,
        })
    }
}

#[async_trait]
impl TableProvider for PlainParquetSnapshot {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Filters reach the Parquet scan (row-group pruning, late materialisation) through
    /// DataFusion's physical pushdown; rows are still checked above it.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DataFusionResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DataFusionResult<Arc<dyn ExecutionPlan>> {
        if self.files.is_empty() {
            let schema = project_schema(&self.schema, projection)?;
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let source = format.file_source(TableSchema::from(self.schema.clone()));
        // One group per target partition; DataFusion splits large files into ranges itself.
        let groups = state.config().target_partitions().max(1);
        let mut file_groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); groups];
        for (index, file) in self.files.iter().enumerate() {
            file_groups[index % groups].push(file.clone());
        }
        let config = FileScanConfigBuilder::new(self.store_url.clone(), source)
            .with_file_groups(
                file_groups
                    .into_iter()
                    .filter(|files| !files.is_empty())
                    .map(FileGroup::new)
                    .collect(),
            )
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }
}
