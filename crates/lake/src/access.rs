//! Who may do what to the lakehouse, in one place for the table API, SQL and ingestion.
//!
//! Unity Catalog's model: a securable (catalog, schema, table) needs `USE_CATALOG` on its
//! catalog and `USE_SCHEMA` on its schema, plus the privilege the action takes (`SELECT`,
//! `MODIFY`, `CREATE_SCHEMA`, `CREATE_TABLE`); a grant on a container holds for everything in
//! it; owners hold every privilege on what they own; admins bypass grants.
//!
//! A workspace works in its own catalog, whose members hold `USE_CATALOG`, `USE_SCHEMA`,
//! `CREATE_SCHEMA` and `CREATE_TABLE` there by default (they find schemas and create tables;
//! reading and changing others' tables takes a grant). Another workspace's catalog is
//! reachable only where it is bound to this workspace, and then read-only: writes are refused
//! even with a grant, even for admins.

use tarn_core::caller::Caller;
use tarn_core::catalog::{Privilege, SchemaInfo, SecurableType, TableInfo};
use tarn_core::store::MetaStore;
use tarn_core::{Error, Result};

/// Privileges members hold in their own workspace's catalog without a grant.
const MEMBER_DEFAULTS: [Privilege; 4] = [
    Privilege::UseCatalog,
    Privilege::UseSchema,
    Privilege::CreateSchema,
    Privilege::CreateTable,
];

/// A catalog, schema or table, with the owner of the object itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Securable {
    pub catalog: String,
    pub schema: Option<String>,
    pub table: Option<String>,
    pub owner: Option<String>,
}

impl Securable {
    pub fn catalog(name: &str) -> Self {
        Self {
            catalog: name.to_string(),
            schema: None,
            table: None,
            owner: None,
        }
    }

    pub fn schema(schema: &SchemaInfo) -> Self {
        Self {
            catalog: schema.catalog_name.clone(),
            schema: Some(schema.name.clone()),
            table: None,
            owner: Some(schema.owner.clone()),
        }
    }

    pub fn table(table: &TableInfo) -> Self {
        Self {
            catalog: table.catalog_name.clone(),
            schema: Some(table.schema_name.clone()),
            table: Some(table.name.clone()),
            owner: Some(table.owner.clone()),
        }
    }

    pub fn kind(&self) -> SecurableType {
        match (&self.schema, &self.table) {
            (_, Some(_)) => SecurableType::Table,
            (Some(_), None) => SecurableType::Schema,
            _ => SecurableType::Catalog,
        }
    }

    pub fn full_name(&self) -> String {
        [
            Some(&self.catalog),
            self.schema.as_ref(),
            self.table.as_ref(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect::<Vec<_>>()
        .join(".")
    }

    /// The securable and its containers, by full name: the grants that hold for it.
    fn lineage(&self) -> Vec<String> {
        let mut names = vec![self.catalog.clone()];
        if let Some(schema) = &self.schema {
            names.push(format!("{}.{schema}", self.catalog));
            if let Some(table) = &self.table {
                names.push(format!("{}.{schema}.{table}", self.catalog));
            }
        }
        names
    }
}

/// Whether `caller` may reach `catalog` at all, and write to it when `write`.
pub async fn reach_catalog(
    store: &dyn MetaStore,
    caller: &Caller,
    catalog: &str,
    write: bool,
) -> Result<()> {
    if catalog == caller.workspace {
        return Ok(());
    }
    if !store.workspace_exists(catalog).await? {
        return Err(Error::not_found(format!("Catalog not found: {catalog}")));
    }
    if !store
        .catalog_bindings(catalog)
        .await?
        .contains(&caller.workspace)
    {
        return Err(Error::permission_denied(format!(
            "Catalog '{catalog}' is not bound to workspace '{}': an admin may bind it read-only, or work in it under /ws/{catalog}/",
            caller.workspace
        )));
    }
    if write {
        return Err(Error::permission_denied(format!(
            "Catalog '{catalog}' is bound read-only to workspace '{}': writes to it are refused even with a grant",
            caller.workspace
        )));
    }
    Ok(())
}

/// Checks that `caller` holds `privilege` on `securable` (and the `USE_*` privileges its
/// containers take); the error names the privilege and the securable.
pub async fn authorize(
    store: &dyn MetaStore,
    caller: &Caller,
    securable: &Securable,
    privilege: Privilege,
) -> Result<()> {
    reach_catalog(store, caller, &securable.catalog, privilege.is_write()).await?;
    if caller.principal.is_admin
        || securable.owner.as_deref() == Some(caller.principal.name.as_str())
    {
        return Ok(());
    }
    let own_catalog = securable.catalog == caller.workspace;
    let grants = store.catalog_grants_on(&securable.lineage()).await?;
    let holds = |wanted: Privilege| {
        (own_catalog && MEMBER_DEFAULTS.contains(&wanted))
            || grants.iter().any(|grant| {
                (grant.principal_id == caller.principal.id
                    || caller.principal.group_ids.contains(&grant.principal_id))
                    && (grant.privilege == wanted || grant.privilege == Privilege::AllPrivileges)
            })
    };
    let mut needed = vec![Privilege::UseCatalog];
    if securable.kind() != SecurableType::Catalog {
        needed.push(Privilege::UseSchema);
    }
    needed.push(privilege);
    match needed.into_iter().find(|p| !holds(*p)) {
        None => Ok(()),
        Some(missing) => Err(denied(caller, missing, securable)),
    }
}

/// Whether `caller` may create a table in `catalog.schema`: the catalog is writable from the
/// caller's workspace and the caller holds CREATE_TABLE on the schema. Returns the schema.
pub async fn authorize_create_table(
    store: &dyn MetaStore,
    caller: &Caller,
    catalog: &str,
    schema: &str,
) -> Result<SchemaInfo> {
    reach_catalog(store, caller, catalog, true).await?;
    let schema = store.get_schema(catalog, schema).await?;
    authorize(
        store,
        caller,
        &Securable::schema(&schema),
        Privilege::CreateTable,
    )
    .await?;
    Ok(schema)
}

/// The table `full_name` names, once `caller` holds `privilege` on it (and may reach its
/// catalog, for writing when the privilege writes).
pub async fn table_for(
    store: &dyn MetaStore,
    caller: &Caller,
    full_name: &str,
    privilege: Privilege,
) -> Result<TableInfo> {
    let (catalog, schema, name) = tarn_core::catalog::parse_table_name(full_name)?;
    reach_catalog(store, caller, &catalog, privilege.is_write()).await?;
    let table = store.get_table(&catalog, &schema, &name).await?;
    authorize(store, caller, &Securable::table(&table), privilege).await?;
    Ok(table)
}

/// Changing, dropping or granting on an object is for its owner and admins, and never
/// across a read-only binding.
pub async fn require_owner(
    store: &dyn MetaStore,
    caller: &Caller,
    securable: &Securable,
) -> Result<()> {
    reach_catalog(store, caller, &securable.catalog, true).await?;
    if caller.principal.is_admin
        || securable.owner.as_deref() == Some(caller.principal.name.as_str())
    {
        return Ok(());
    }
    Err(Error::permission_denied(format!(
        "'{}' may not change {} {}: only its owner{} or an admin may",
        caller.principal.name,
        securable.kind().as_str(),
        securable.full_name(),
        securable
            .owner
            .as_deref()
            .map(|owner| format!(" '{owner}'"))
            .unwrap_or_default()
    )))
}

fn denied(caller: &Caller, privilege: Privilege, securable: &Securable) -> Error {
    Error::permission_denied(format!(
        "'{}' lacks {} on {} {}",
        caller.principal.name,
        privilege.as_str(),
        securable.kind().as_str(),
        securable.full_name()
    ))
}
