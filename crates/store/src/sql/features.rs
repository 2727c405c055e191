//! Feature tables and training sets. A feature table's row hangs off its catalog table and goes
//! with it.

use super::*;

pub(super) const FEATURE_TABLE_COLUMNS: &str =
    "f.*, s.workspace, s.name AS schema_name, t.name AS table_name";

pub(super) fn row_feature_table(row: &db::DbRow) -> std::result::Result<FeatureTable, sqlx::Error> {
    let catalog: String = row.try_get("workspace")?;
    let schema: String = row.try_get("schema_name")?;
    let name: String = row.try_get("table_name")?;
    Ok(FeatureTable {
        table_id: row.try_get("table_id")?,
        full_name: format!("{catalog}.{schema}.{name}"),
        primary_keys: decode_json(row, "primary_keys")?,
        timestamp_key: row.try_get("timestamp_key")?,
        description: row.try_get("description")?,
        source_tables: decode_json(row, "source_tables")?,
        pipeline: decode_json(row, "pipeline")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn row_training_set(row: &db::DbRow) -> std::result::Result<TrainingSet, sqlx::Error> {
    let output: Option<String> = row.try_get("output_table")?;
    Ok(TrainingSet {
        training_set_id: row.try_get("id")?,
        workspace: row.try_get("workspace")?,
        spec: decode_json(row, "spec")?,
        tables_read: decode_json(row, "tables_read")?,
        num_rows: row.try_get::<i64, _>("num_rows")? as u64,
        output_table: output
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|err| sqlx::Error::ColumnDecode {
                index: "output_table".into(),
                source: Box::new(err),
            })?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

/// `text` as a LIKE pattern matching it anywhere, its wildcards escaped.
pub(super) fn contains_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[async_trait]
impl FeatureStore for Store {
    async fn create_feature_table(&self, table: &FeatureTable, actor: &Actor) -> Result<()> {
        let mut tx = self.begin().await?;
        let inserted = db::query(
            "INSERT INTO feature_tables (table_id, primary_keys, timestamp_key, description, \
             source_tables, pipeline, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&table.table_id)
        .bind(json_text(&table.primary_keys)?)
        .bind(&table.timestamp_key)
        .bind(&table.description)
        .bind(json_text(&table.source_tables)?)
        .bind(json_text(&table.pipeline)?)
        .bind(&actor.name)
        .bind(table.created_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(err) if is_unique_violation(&err) => {
                return Err(Error::already_exists(format!(
                    "{} is a feature table already",
                    table.full_name
                )));
            }
            other => other.map_err(db_error)?,
        };
        let catalog = table.full_name.split('.').next().unwrap_or_default();
        insert_event(
            &mut tx,
            catalog,
            &actor.name,
            table.created_at,
            &Change::FeatureTableCreated {
                name: table.full_name.clone(),
                primary_keys: table.primary_keys.clone(),
                timestamp_key: table.timestamp_key.clone(),
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn get_feature_table(
        &self,
        catalog: &str,
        schema: &str,
        name: &str,
    ) -> Result<FeatureTable> {
        let row = db::query(sqlx::AssertSqlSafe(format!(
            "SELECT {FEATURE_TABLE_COLUMNS} FROM feature_tables f \
             JOIN catalog_tables t ON t.id = f.table_id JOIN catalog_schemas s ON s.id = t.schema_id \
             WHERE s.workspace = $1 AND s.name = $2 AND t.name = $3"
        )))
        .bind(catalog)
        .bind(schema)
        .bind(name)
        .fetch_optional(&self.read)
        .await
        .map_err(db_error)?;
        match row {
            Some(row) => row_feature_table(&row).map_err(db_error),
            None => Err(Error::not_found(format!(
                "Feature table not found: {catalog}.{schema}.{name}"
            ))),
        }
    }

    async fn search_feature_tables(
        &self,
        catalogs: &[String],
        text: &str,
        max_results: u64,
        offset: u64,
    ) -> Result<Page<FeatureTable>> {
        if catalogs.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_offset: None,
            });
        }
        let mut builder = Builder::new(format!(
            "SELECT {FEATURE_TABLE_COLUMNS} FROM feature_tables f \
             JOIN catalog_tables t ON t.id = f.table_id JOIN catalog_schemas s ON s.id = t.schema_id \
             WHERE s.workspace IN "
        ));
        push_in_list(&mut builder, catalogs.iter().cloned());
        if !text.is_empty() {
            let pattern = contains_pattern(text);
            builder.push(" AND (LOWER(s.workspace || '.' || s.name || '.' || t.name) LIKE ");
            builder.push_bind(pattern.clone());
            builder.push(" ESCAPE '\\' OR LOWER(f.description) LIKE ");
            builder.push_bind(pattern.clone());
            builder.push(" ESCAPE '\\' OR LOWER(t.columns) LIKE ");
            builder.push_bind(pattern);
            builder.push(" ESCAPE '\\')");
        }
        builder.push(" ORDER BY s.workspace, s.name, t.name");
        self.read_page(&mut builder, row_feature_table, max_results, offset)
            .await
    }

    async fn record_training_set(&self, set: &TrainingSet) -> Result<()> {
        let output = set.output_table.as_ref().map(json_text).transpose()?;
        db::query(
            "INSERT INTO training_sets (id, workspace, spec, tables_read, num_rows, output_table, \
             created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&set.training_set_id)
        .bind(&set.workspace)
        .bind(json_text(&set.spec)?)
        .bind(json_text(&set.tables_read)?)
        .bind(set.num_rows as i64)
        .bind(output)
        .bind(&set.created_by)
        .bind(set.created_at)
        .execute(&self.write)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn get_training_set(&self, workspace: &str, id: &str) -> Result<TrainingSet> {
        let row = db::query("SELECT * FROM training_sets WHERE workspace = $1 AND id = $2")
            .bind(workspace)
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?;
        match row {
            Some(row) => row_training_set(&row).map_err(db_error),
            None => Err(Error::not_found(format!("Training set not found: {id}"))),
        }
    }
}
