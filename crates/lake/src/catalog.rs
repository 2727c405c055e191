//! Tables as the catalog and the lake hold them together: a managed table is a Delta table
//! in a folder of its own plus its catalog entry, created and dropped as one.

use std::collections::BTreeMap;

use tarn_core::catalog::{ColumnInfo, NewTable, TableInfo, TableType};
use tarn_core::registry::Actor;
use tarn_core::store::MetaStore;
use tarn_core::{Error, Result};
use url::Url;

use crate::columns::field_of;
use crate::tables::Lake;

/// What creating a managed table takes.
#[derive(Debug, Clone, Default)]
pub struct ManagedTable {
    pub catalog: String,
    pub schema: String,
    pub name: String,
    /// Columns with their types, comments and partition positions.
    pub columns: Vec<ColumnInfo>,
    pub comment: String,
    /// `delta.*` keys configure the Delta table; all are kept in the catalog.
    pub properties: BTreeMap<String, String>,
}

impl ManagedTable {
    pub fn full_name(&self) -> String {
        format!("{}.{}.{}", self.catalog, self.schema, self.name)
    }
}

/// A fresh id for a table: it names its folder, so a re-created name never meets old files.
pub fn new_table_id() -> String {
    tarn_core::ids::hex32(rand::random())
}

/// Where a table's data is; views have none.
pub fn location_of(table: &TableInfo) -> Result<Url> {
    if table.table_type == TableType::View {
        return Err(Error::invalid(format!(
            "{} is a view: query it with SQL",
            table.full_name
        )));
    }
    Url::parse(&table.storage_location).map_err(|e| {
        Error::internal_from(
            format!("Table {} has an invalid storage location", table.full_name),
            e,
        )
    })
}

impl Lake {
    /// Creates an empty managed table and registers it. The schema must exist.
    pub async fn create_managed(
        &self,
        store: &dyn MetaStore,
        actor: &Actor,
        table: ManagedTable,
    ) -> Result<TableInfo> {
        store.get_schema(&table.catalog, &table.schema).await?;
        let full_name = table.full_name();
        let fields = table
            .columns
            .iter()
            .map(field_of)
            .collect::<Result<Vec<_>>>()?;
        let mut partitions: Vec<(i64, String)> = table
            .columns
            .iter()
            .filter_map(|c| c.partition_index.map(|i| (i, c.name.clone())))
            .collect();
        partitions.sort();
        let partitions: Vec<String> = partitions.into_iter().map(|(_, n)| n).collect();
        let table_id = new_table_id();
        let location =
            self.managed_location(&table.catalog, &table.schema, &table.name, &table_id)?;
        let columns = self
            .create_table(
                &location,
                &full_name,
                fields,
                &partitions,
                &table.comment,
                &table.properties,
            )
            .await?;
        self.register_managed(store, actor, table, table_id, location, columns)
            .await
    }

    /// Records a managed table whose Delta table was just created at `location`; when the
    /// name was taken meanwhile, the fresh data goes again.
    pub(crate) async fn register_managed(
        &self,
        store: &dyn MetaStore,
        actor: &Actor,
        table: ManagedTable,
        table_id: String,
        location: Url,
        mut columns: Vec<ColumnInfo>,
    ) -> Result<TableInfo> {
        for column in &mut columns {
            if let Some(asked) = table.columns.iter().find(|c| c.name == column.name) {
                column.comment = asked.comment.clone();
            }
        }
        let registered = store
            .create_table(
                &NewTable {
                    table_id,
                    catalog: table.catalog,
                    schema: table.schema,
                    name: table.name,
                    table_type: TableType::Managed,
                    columns,
                    storage_location: location.to_string(),
                    view_definition: String::new(),
                    comment: table.comment,
                    properties: table.properties,
                },
                actor,
            )
            .await;
        if registered.is_err()
            && let Err(err) = self.remove_managed(&location).await
        {
            tracing::warn!(%location, error = %err.report(), "unregistered table data left behind");
        }
        registered
    }

    /// Forgets a table and deletes its data when tarn manages it.
    pub async fn drop_table(
        &self,
        store: &dyn MetaStore,
        actor: &Actor,
        table: &TableInfo,
    ) -> Result<()> {
        let dropped = store
            .delete_table(&table.catalog_name, &table.schema_name, &table.name, actor)
            .await?;
        self.remove_data_of(&dropped).await;
        Ok(())
    }

    /// Deletes the data of a managed table that was dropped; failures are logged, as the
    /// catalog has forgotten the table already.
    pub async fn remove_data_of(&self, table: &TableInfo) {
        if table.table_type != TableType::Managed {
            return;
        }
        let removed = match location_of(table) {
            Ok(location) => self.remove_managed(&location).await,
            Err(err) => Err(err),
        };
        if let Err(err) = removed {
            tracing::warn!(table = %table.full_name, error = %err.report(), "managed data left behind");
        }
    }
}
