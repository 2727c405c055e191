//! The lakehouse catalog's SQL. Every change writes its event in the same transaction, like the
//! registry's, so the audit trail is whole.

use super::*;

pub(super) async fn tags_of<'e, E>(executor: E, securable: &str) -> Result<BTreeMap<String, String>>
where
    E: db::Executor<'e>,
{
    let rows: Vec<(String, String)> = db::query_as(
        "SELECT tag_key, tag_value FROM catalog_tags WHERE securable = $1 ORDER BY tag_key",
    )
    .bind(securable)
    .fetch_all(executor)
    .await
    .map_err(db_error)?;
    Ok(rows.into_iter().collect())
}

pub(super) fn schema_not_found(catalog: &str, name: &str) -> Error {
    Error::not_found(format!("Schema not found: {catalog}.{name}"))
}

pub(super) fn table_not_found(catalog: &str, schema: &str, name: &str) -> Error {
    Error::not_found(format!("Table not found: {catalog}.{schema}.{name}"))
}

pub(super) fn json_text<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::internal_from("cannot encode", e))
}

pub(super) fn row_schema(row: &db::DbRow) -> std::result::Result<SchemaInfo, sqlx::Error> {
    let catalog: String = row.try_get("workspace")?;
    let name: String = row.try_get("name")?;
    Ok(SchemaInfo {
        schema_id: row.try_get("id")?,
        full_name: format!("{catalog}.{name}"),
        catalog_name: catalog,
        name,
        comment: row.try_get("comment")?,
        properties: decode_json(row, "properties")?,
        owner: row.try_get("owner")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

pub(super) fn row_table(row: &db::DbRow) -> std::result::Result<TableInfo, sqlx::Error> {
    let catalog: String = row.try_get("workspace")?;
    let schema: String = row.try_get("schema_name")?;
    let name: String = row.try_get("name")?;
    Ok(TableInfo {
        table_id: row.try_get("id")?,
        full_name: format!("{catalog}.{schema}.{name}"),
        catalog_name: catalog,
        schema_name: schema,
        name,
        table_type: decode_with(row, "table_type", |v| TableType::parse(v).ok())?,
        data_source_format: row.try_get("data_source_format")?,
        columns: decode_json(row, "columns")?,
        storage_location: row
            .try_get::<Option<String>, _>("storage_location")?
            .unwrap_or_default(),
        view_definition: row.try_get("view_definition")?,
        comment: row.try_get("comment")?,
        properties: decode_json(row, "properties")?,
        owner: row.try_get("owner")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

/// Who holds what on a securable, one entry per principal, privileges in a fixed order.
pub(super) async fn assignments<'e, E>(
    executor: E,
    securable: &str,
) -> Result<Vec<PrivilegeAssignment>>
where
    E: db::Executor<'e>,
{
    let rows = db::query(
        "SELECT p.name, g.privilege FROM catalog_grants g JOIN principals p ON p.id = g.principal_id \
         WHERE g.securable = $1 ORDER BY p.name",
    )
    .bind(securable)
    .fetch_all(executor)
    .await
    .map_err(db_error)?;
    let mut result: Vec<PrivilegeAssignment> = Vec::new();
    for row in &rows {
        let principal: String = row.try_get("name").map_err(db_error)?;
        let privilege: String = row.try_get("privilege").map_err(db_error)?;
        let privilege = Privilege::parse(&privilege)?;
        match result.last_mut() {
            Some(last) if last.principal == principal => last.privileges.push(privilege),
            _ => result.push(PrivilegeAssignment {
                principal,
                privileges: vec![privilege],
            }),
        }
    }
    for assignment in &mut result {
        assignment.privileges.sort();
    }
    Ok(result)
}

pub(super) const TABLE_COLUMNS: &str = "t.*, s.workspace, s.name AS schema_name";

/// The schema's id, inside the transaction.
pub(super) async fn schema_id_in_tx(tx: &mut Tx<'_>, catalog: &str, name: &str) -> Result<String> {
    db::query_scalar("SELECT id FROM catalog_schemas WHERE workspace = $1 AND name = $2")
        .bind(catalog)
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?
        .ok_or_else(|| schema_not_found(catalog, name))
}

impl Store {
    pub(super) async fn fetch_tables(&self, builder: &mut Builder) -> Result<Vec<TableInfo>> {
        self.read_all(builder, row_table).await
    }

    pub(super) async fn table_in_tx(
        tx: &mut Tx<'_>,
        catalog: &str,
        schema: &str,
        name: &str,
    ) -> Result<TableInfo> {
        let row = db::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TABLE_COLUMNS} FROM catalog_tables t JOIN catalog_schemas s ON s.id = t.schema_id \
             WHERE s.workspace = $1 AND s.name = $2 AND t.name = $3"
        )))
        .bind(catalog)
        .bind(schema)
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?
        .ok_or_else(|| table_not_found(catalog, schema, name))?;
        row_table(&row).map_err(db_error)
    }
}

/// Where the commit watcher starts reading a new table's log. A managed table's every commit is
/// read (tarn's own carry its mark and are skipped; another writer may write to a managed
/// location too); an external table's history came before tarn knew it, so its first scan takes
/// the table as it is then.
fn first_watched_version(table_type: TableType) -> Option<i64> {
    match table_type {
        TableType::Managed => Some(-1),
        TableType::External | TableType::View => None,
    }
}

/// A catalog bound to a workspace (read-only) or unbound from it.
fn binding_change(bound: bool, catalog: &str, workspace: &str) -> Change {
    let binding = event::CatalogBinding {
        catalog: catalog.to_string(),
        workspace: workspace.to_string(),
        access: "read-only".into(),
    };
    if bound {
        Change::CatalogBound(binding)
    } else {
        Change::CatalogUnbound(binding)
    }
}

#[async_trait]
impl CatalogStore for Store {
    async fn relocate_tables(&self, from: &str, to: &str) -> Result<u64> {
        let moved = db::query(
            "UPDATE catalog_tables SET storage_location = \
             CAST($2 AS TEXT) || substr(storage_location, length(CAST($1 AS TEXT)) + 1) \
             WHERE substr(storage_location, 1, length(CAST($1 AS TEXT))) = CAST($1 AS TEXT)",
        )
        .bind(from)
        .bind(to)
        .execute(&self.write)
        .await
        .map_err(db_error)?;
        Ok(moved.rows_affected())
    }

    async fn create_schema(&self, schema: &NewSchema, actor: &Actor) -> Result<SchemaInfo> {
        let now = now_millis();
        let id = tarn_core::ids::hex32(rand::random());
        let mut tx = self.begin().await?;
        let inserted = db::query(
            "INSERT INTO catalog_schemas (id, workspace, name, comment, properties, owner, owner_id, \
             created_at, created_by, updated_at, updated_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $6, $8, $6)",
        )
        .bind(&id)
        .bind(&schema.catalog)
        .bind(&schema.name)
        .bind(&schema.comment)
        .bind(json_text(&schema.properties)?)
        .bind(&actor.name)
        .bind(actor.id)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(err) if is_unique_violation(&err) => {
                return Err(Error::already_exists(format!(
                    "Schema already exists: {}.{}",
                    schema.catalog, schema.name
                )));
            }
            Err(err) if matches!(&err, sqlx::Error::Database(db) if db.is_foreign_key_violation()) =>
            {
                return Err(Error::not_found(format!(
                    "Catalog not found: {}",
                    schema.catalog
                )));
            }
            Err(err) => return Err(db_error(err)),
        }
        insert_event(
            &mut tx,
            &schema.catalog,
            &actor.name,
            now,
            &Change::SchemaCreated {
                full_name: format!("{}.{}", schema.catalog, schema.name),
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        self.get_schema(&schema.catalog, &schema.name).await
    }

    async fn get_schema(&self, catalog: &str, name: &str) -> Result<SchemaInfo> {
        let row = db::query("SELECT * FROM catalog_schemas WHERE workspace = $1 AND name = $2")
            .bind(catalog)
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?
            .ok_or_else(|| schema_not_found(catalog, name))?;
        row_schema(&row).map_err(db_error)
    }

    async fn list_schemas(
        &self,
        catalog: &str,
        max_results: u64,
        offset: u64,
    ) -> Result<Page<SchemaInfo>> {
        let mut builder = Builder::new("SELECT * FROM catalog_schemas WHERE workspace = ");
        builder.push_bind(catalog.to_string());
        builder.push(" ORDER BY name");
        self.read_page(&mut builder, row_schema, max_results, offset)
            .await
    }

    async fn update_schema(
        &self,
        catalog: &str,
        name: &str,
        comment: Option<&str>,
        properties: Option<&BTreeMap<String, String>>,
        actor: &Actor,
    ) -> Result<SchemaInfo> {
        let now = now_millis();
        let properties = properties.map(json_text).transpose()?;
        let mut tx = self.begin().await?;
        let updated = db::query(
            "UPDATE catalog_schemas SET comment = COALESCE($1, comment), properties = COALESCE($2, properties), \
             updated_at = $3, updated_by = $4 WHERE workspace = $5 AND name = $6",
        )
        .bind(comment)
        .bind(properties)
        .bind(now)
        .bind(&actor.name)
        .bind(catalog)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if updated.rows_affected() == 0 {
            return Err(schema_not_found(catalog, name));
        }
        insert_event(
            &mut tx,
            catalog,
            &actor.name,
            now,
            &Change::SchemaUpdated {
                full_name: format!("{catalog}.{name}"),
                comment: comment.map(str::to_string),
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        self.get_schema(catalog, name).await
    }

    async fn delete_schema(
        &self,
        catalog: &str,
        name: &str,
        force: bool,
        actor: &Actor,
    ) -> Result<Vec<TableInfo>> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let schema_id = schema_id_in_tx(&mut tx, catalog, name).await?;
        let tables = db::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TABLE_COLUMNS} FROM catalog_tables t JOIN catalog_schemas s ON s.id = t.schema_id \
             WHERE t.schema_id = $1 ORDER BY t.name"
        )))
        .bind(&schema_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?
        .iter()
        .map(row_table)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(db_error)?;
        if !tables.is_empty() && !force {
            return Err(Error::invalid(format!(
                "Schema {catalog}.{name} is not empty: it holds {} table(s); delete them first or pass force=true",
                tables.len()
            )));
        }
        db::query("DELETE FROM catalog_tables WHERE schema_id = $1")
            .bind(&schema_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        // The schema's grants and tags and those of every table in it.
        let full_name = format!("{catalog}.{name}");
        for owned in ["catalog_grants", "catalog_tags"] {
            db::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {owned} WHERE securable = $1 \
                 OR substr(securable, 1, length($1) + 1) = $1 || '.'"
            )))
            .bind(&full_name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        db::query("DELETE FROM catalog_schemas WHERE id = $1")
            .bind(&schema_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        insert_event(
            &mut tx,
            catalog,
            &actor.name,
            now,
            &Change::SchemaDeleted {
                full_name: format!("{catalog}.{name}"),
                tables: tables.iter().map(|t| t.full_name.clone()).collect(),
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(tables)
    }

    async fn create_table(&self, table: &NewTable, actor: &Actor) -> Result<TableInfo> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let schema_id = schema_id_in_tx(&mut tx, &table.catalog, &table.schema).await?;
        let inserted = db::query(
            "INSERT INTO catalog_tables (id, schema_id, name, table_type, data_source_format, columns, \
             storage_location, view_definition, comment, properties, owner, owner_id, created_at, created_by, updated_at, updated_by, \
             watched_version) \
             VALUES ($1, $2, $3, $4, 'DELTA', $5, $6, $7, $8, $9, $10, $11, $12, $10, $12, $10, $13)",
        )
        .bind(&table.table_id)
        .bind(&schema_id)
        .bind(&table.name)
        .bind(table.table_type.as_str())
        .bind(json_text(&table.columns)?)
        .bind(Some(&table.storage_location).filter(|l| !l.is_empty()))
        .bind(&table.view_definition)
        .bind(&table.comment)
        .bind(json_text(&table.properties)?)
        .bind(&actor.name)
        .bind(actor.id)
        .bind(now)
        .bind(first_watched_version(table.table_type))
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(err) if is_unique_violation(&err) => {
                // The failed statement ends the transaction on PostgreSQL: ask on a reader.
                drop(tx);
                let taken: Option<String> = db::query_scalar(
                    "SELECT name FROM catalog_tables WHERE schema_id = $1 AND name = $2",
                )
                .bind(&schema_id)
                .bind(&table.name)
                .fetch_optional(&self.read)
                .await
                .map_err(db_error)?;
                return Err(Error::already_exists(if taken.is_some() {
                    format!(
                        "Table already exists: {}.{}.{}",
                        table.catalog, table.schema, table.name
                    )
                } else {
                    format!("Another table is registered at {}", table.storage_location)
                }));
            }
            Err(err) => return Err(db_error(err)),
        }
        let full_name = format!("{}.{}.{}", table.catalog, table.schema, table.name);
        insert_event(
            &mut tx,
            &table.catalog,
            &actor.name,
            now,
            &Change::TableCreated {
                full_name: full_name.clone(),
                table_type: table.table_type,
                storage_location: table.storage_location.clone(),
            },
        )
        .await?;
        let created =
            Self::table_in_tx(&mut tx, &table.catalog, &table.schema, &table.name).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(created)
    }

    async fn get_table(&self, catalog: &str, schema: &str, name: &str) -> Result<TableInfo> {
        let mut builder = Builder::new(format!(
            "SELECT {TABLE_COLUMNS} FROM catalog_tables t JOIN catalog_schemas s ON s.id = t.schema_id \
             WHERE s.workspace = "
        ));
        builder.push_bind(catalog.to_string());
        builder.push(" AND s.name = ");
        builder.push_bind(schema.to_string());
        builder.push(" AND t.name = ");
        builder.push_bind(name.to_string());
        self.fetch_tables(&mut builder)
            .await?
            .pop()
            .ok_or_else(|| table_not_found(catalog, schema, name))
    }

    async fn list_tables(
        &self,
        catalog: &str,
        schema: &str,
        max_results: u64,
        offset: u64,
    ) -> Result<Page<TableInfo>> {
        // A missing schema is an error, not an empty list.
        self.get_schema(catalog, schema).await?;
        let mut builder = Builder::new(format!(
            "SELECT {TABLE_COLUMNS} FROM catalog_tables t JOIN catalog_schemas s ON s.id = t.schema_id \
             WHERE s.workspace = "
        ));
        builder.push_bind(catalog.to_string());
        builder.push(" AND s.name = ");
        builder.push_bind(schema.to_string());
        builder.push(" ORDER BY t.name");
        self.read_page(&mut builder, row_table, max_results, offset)
            .await
    }

    async fn set_table_columns(
        &self,
        catalog: &str,
        schema: &str,
        name: &str,
        columns: &[ColumnInfo],
        actor: &Actor,
    ) -> Result<TableInfo> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let current = Self::table_in_tx(&mut tx, catalog, schema, name).await?;
        let columns: Vec<ColumnInfo> = columns
            .iter()
            .map(|column| {
                let kept = current.columns.iter().find(|c| c.name == column.name);
                ColumnInfo {
                    comment: if column.comment.is_empty() {
                        kept.map(|c| c.comment.clone()).unwrap_or_default()
                    } else {
                        column.comment.clone()
                    },
                    ..column.clone()
                }
            })
            .collect();
        db::query("UPDATE catalog_tables SET columns = $1, updated_at = $2, updated_by = $3 WHERE id = $4")
            .bind(json_text(&columns)?)
            .bind(now)
            .bind(&actor.name)
            .bind(&current.table_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        insert_event(
            &mut tx,
            catalog,
            &actor.name,
            now,
            &Change::TableSchemaChanged {
                full_name: current.full_name.clone(),
                columns: columns.iter().map(|c| c.name.clone()).collect(),
            },
        )
        .await?;
        let updated = Self::table_in_tx(&mut tx, catalog, schema, name).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(updated)
    }

    async fn delete_table(
        &self,
        catalog: &str,
        schema: &str,
        name: &str,
        actor: &Actor,
    ) -> Result<TableInfo> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let table = Self::table_in_tx(&mut tx, catalog, schema, name).await?;
        db::query("DELETE FROM catalog_tables WHERE id = $1")
            .bind(&table.table_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        for owned in ["catalog_grants", "catalog_tags"] {
            db::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {owned} WHERE securable = $1"
            )))
            .bind(&table.full_name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        insert_event(
            &mut tx,
            catalog,
            &actor.name,
            now,
            &Change::TableDeleted {
                full_name: table.full_name.clone(),
                table_type: table.table_type,
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(table)
    }

    async fn catalog_grants_on(&self, securables: &[String]) -> Result<Vec<CatalogGrant>> {
        if securables.is_empty() {
            return Ok(Vec::new());
        }
        let mut builder = Builder::new(
            "SELECT securable, principal_id, privilege FROM catalog_grants WHERE securable IN (",
        );
        let mut list = builder.separated(", ");
        for securable in securables {
            list.push_bind(securable.clone());
        }
        builder.push(")");
        let rows = builder
            .build()
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let privilege: String = row.try_get("privilege").map_err(db_error)?;
                Ok(CatalogGrant {
                    securable: row.try_get("securable").map_err(db_error)?,
                    principal_id: row.try_get("principal_id").map_err(db_error)?,
                    privilege: Privilege::parse(&privilege)?,
                })
            })
            .collect()
    }

    async fn catalog_privileges(&self, securable: &str) -> Result<Vec<PrivilegeAssignment>> {
        assignments(&self.read, securable).await
    }

    async fn update_catalog_grants(
        &self,
        catalog: &str,
        securable_type: SecurableType,
        securable: &str,
        changes: &[PermissionsChange],
        actor: &Actor,
    ) -> Result<Vec<PrivilegeAssignment>> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        for change in changes {
            let principal_id: i64 = db::query_scalar("SELECT id FROM principals WHERE name = $1")
                .bind(&change.principal)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?
                .ok_or_else(|| {
                    Error::not_found(format!("Principal '{}' does not exist", change.principal))
                })?;
            for privilege in &change.add {
                db::query(
                    "INSERT INTO catalog_grants (securable, securable_type, principal_id, privilege, granted_by, granted_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                )
                .bind(securable)
                .bind(securable_type.as_str())
                .bind(principal_id)
                .bind(privilege.as_str())
                .bind(&actor.name)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            }
            for privilege in &change.remove {
                db::query(
                    "DELETE FROM catalog_grants WHERE securable = $1 AND principal_id = $2 AND privilege = $3",
                )
                .bind(securable)
                .bind(principal_id)
                .bind(privilege.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            }
        }
        insert_event(
            &mut tx,
            catalog,
            &actor.name,
            now,
            &Change::GrantsChanged {
                securable_type,
                securable: securable.to_string(),
                changes: changes.to_vec(),
            },
        )
        .await?;
        let updated = assignments(&mut *tx, securable).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(updated)
    }

    async fn catalog_tags(&self, securable: &str) -> Result<BTreeMap<String, String>> {
        tags_of(&self.read, securable).await
    }

    async fn update_catalog_tags(
        &self,
        catalog: &str,
        securable_type: SecurableType,
        securable: &str,
        set: &BTreeMap<String, String>,
        unset: &[String],
        actor: &Actor,
    ) -> Result<BTreeMap<String, String>> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        for (key, value) in set {
            db::query(
                "INSERT INTO catalog_tags (securable, securable_type, tag_key, tag_value, updated_by, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (securable, tag_key) DO UPDATE SET \
                 tag_value = excluded.tag_value, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            )
            .bind(securable)
            .bind(securable_type.as_str())
            .bind(key)
            .bind(value)
            .bind(&actor.name)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        for key in unset {
            db::query("DELETE FROM catalog_tags WHERE securable = $1 AND tag_key = $2")
                .bind(securable)
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        let tags = tags_of(&mut *tx, securable).await?;
        if tags.len() > tarn_core::catalog::MAX_TAGS {
            return Err(Error::invalid(format!(
                "{securable} would carry {} tags: at most {} are allowed",
                tags.len(),
                tarn_core::catalog::MAX_TAGS
            )));
        }
        insert_event(
            &mut tx,
            catalog,
            &actor.name,
            now,
            &Change::TagsChanged {
                securable_type,
                securable: securable.to_string(),
                set: set.clone(),
                unset: unset.to_vec(),
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(tags)
    }

    async fn catalog_bindings(&self, catalog: &str) -> Result<Vec<String>> {
        db::query_scalar(
            "SELECT workspace FROM catalog_bindings WHERE catalog = $1 ORDER BY workspace",
        )
        .bind(catalog)
        .fetch_all(&self.read)
        .await
        .map_err(db_error)
    }

    async fn set_catalog_binding(
        &self,
        catalog: &str,
        workspace: &str,
        bound: bool,
        actor: &Actor,
    ) -> Result<()> {
        if catalog == workspace {
            return Err(Error::invalid(format!(
                "Workspace '{workspace}' owns catalog '{catalog}': it needs no binding"
            )));
        }
        let now = now_millis();
        let mut tx = self.begin().await?;
        for name in [catalog, workspace] {
            let exists: Option<String> =
                db::query_scalar("SELECT name FROM workspaces WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error)?;
            if exists.is_none() {
                return Err(Error::not_found(format!("Workspace not found: {name}")));
            }
        }
        if bound {
            db::query(
                "INSERT INTO catalog_bindings (catalog, workspace, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(catalog)
            .bind(workspace)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        } else {
            db::query("DELETE FROM catalog_bindings WHERE catalog = $1 AND workspace = $2")
                .bind(catalog)
                .bind(workspace)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        insert_event(
            &mut tx,
            catalog,
            &actor.name,
            now,
            &binding_change(bound, catalog, workspace),
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    async fn ingested_files(&self, table_id: &str) -> Result<Vec<IngestedFile>> {
        let rows = db::query(
            "SELECT * FROM ingested_files WHERE table_id = $1 ORDER BY ingested_at, source",
        )
        .bind(table_id)
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                Ok(IngestedFile {
                    table_id: row.try_get("table_id")?,
                    source: row.try_get("source")?,
                    size: row.try_get("size")?,
                    rows_written: row.try_get("rows_written")?,
                    rows_quarantined: row.try_get("rows_quarantined")?,
                    table_version: row.try_get("table_version")?,
                    ingested_at: row.try_get("ingested_at")?,
                    ingested_by: row.try_get("ingested_by")?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(db_error)
    }

    async fn watched_tables(&self) -> Result<Vec<WatchedTable>> {
        let rows = db::query(
            "SELECT t.id, s.workspace, s.name AS schema_name, t.name, t.storage_location, \
             t.watched_version FROM catalog_tables t JOIN catalog_schemas s ON s.id = t.schema_id \
             WHERE t.storage_location IS NOT NULL ORDER BY t.id",
        )
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let catalog: String = row.try_get("workspace")?;
                let schema: String = row.try_get("schema_name")?;
                let name: String = row.try_get("name")?;
                Ok(WatchedTable {
                    table_id: row.try_get("id")?,
                    full_name: format!("{catalog}.{schema}.{name}"),
                    storage_location: row.try_get("storage_location")?,
                    watched_version: row.try_get("watched_version")?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(db_error)
    }

    async fn record_outside_commits(
        &self,
        table: &WatchedTable,
        latest: i64,
        commits: &[OutsideCommit],
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let moved = db::query(
            "UPDATE catalog_tables SET watched_version = $1 \
             WHERE id = $2 AND watched_version IS NOT DISTINCT FROM $3",
        )
        .bind(latest)
        .bind(&table.table_id)
        .bind(table.watched_version)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if moved == 0 {
            return Ok(false);
        }
        let catalog = table.full_name.split('.').next().unwrap_or_default();
        for commit in commits {
            let change = Change::TableCommitted {
                full_name: table.full_name.clone(),
                version: commit.version,
                operation: commit.operation.clone(),
                sources: Vec::new(),
                outside: true,
            };
            insert_event(&mut tx, catalog, &commit.writer, commit.timestamp, &change).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn record_ingested_file(&self, file: &IngestedFile) -> Result<()> {
        let inserted = db::query(
            "INSERT INTO ingested_files (table_id, source, size, rows_written, rows_quarantined, \
             table_version, ingested_at, ingested_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&file.table_id)
        .bind(&file.source)
        .bind(file.size)
        .bind(file.rows_written)
        .bind(file.rows_quarantined)
        .bind(file.table_version)
        .bind(file.ingested_at)
        .bind(&file.ingested_by)
        .execute(&self.write)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(err) if is_unique_violation(&err) => Err(Error::already_exists(format!(
                "{} was ingested already",
                file.source
            ))),
            Err(err) => Err(db_error(err)),
        }
    }
}
