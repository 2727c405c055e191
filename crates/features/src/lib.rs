//! The feature store: feature tables (Delta tables in the catalog with keys and provenance),
//! point-in-time training sets, and on-demand features. Plain functions over the lake and the
//! metadata store, with the lakehouse's access checks; the server's handlers are thin over
//! them.

pub mod ondemand;
pub mod online;
pub mod pit;
pub mod tables;
pub mod training;

use tarn_core::caller::Caller;
use tarn_core::catalog::{self, Privilege, TableInfo};
use tarn_core::store::MetaStore;
use tarn_core::{Error, ErrorCode, Result};
use tarn_lake::access::authorize_create_table;
pub use tarn_lake::access::table_for;

/// The table `full_name` names, once `caller` may read it.
pub(crate) async fn readable_table(
    store: &dyn MetaStore,
    caller: &Caller,
    full_name: &str,
) -> Result<TableInfo> {
    table_for(store, caller, full_name, Privilege::Select).await
}

/// The parts of a new table's name, once `caller` may create it there and the name is free.
pub(crate) async fn creatable_table(
    store: &dyn MetaStore,
    caller: &Caller,
    full_name: &str,
) -> Result<(String, String, String)> {
    let (catalog, schema, name) = catalog::parse_table_name(full_name)?;
    authorize_create_table(store, caller, &catalog, &schema).await?;
    match store.get_table(&catalog, &schema, &name).await {
        Ok(_) => Err(Error::already_exists(format!(
            "Table already exists: {catalog}.{schema}.{name}"
        ))),
        Err(err) if err.code == ErrorCode::ResourceDoesNotExist => Ok((catalog, schema, name)),
        Err(err) => Err(err),
    }
}
