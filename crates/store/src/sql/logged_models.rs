//! Logged models (MLflow 3): create, finalize, tags, params, metrics and search.

use super::*;

#[async_trait]
impl LoggedModelStore for Store {
    async fn create_logged_model(
        &self,
        workspace: &str,
        model: &NewLoggedModel,
    ) -> Result<LoggedModel> {
        let experiment_id = tarn_core::validation::parse_experiment_id(&model.experiment_id)?;
        let experiment = self.experiment_row(workspace, experiment_id).await?;
        let model_id = tarn_core::ids::logged_model_id(rand::random());
        let artifact_location = format!(
            "{}/models/{model_id}/artifacts",
            experiment.artifact_location.trim_end_matches('/')
        );
        let now = now_millis();
        let mut tx = self.begin().await?;
        db::query(
            "INSERT INTO logged_models (model_id, workspace, experiment_id, name, artifact_location, creation_timestamp_ms, \
             last_updated_timestamp_ms, status, lifecycle_stage, model_type, source_run_id, creator_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7, 'active', $8, $9, $10)",
        )
        .bind(&model_id)
        .bind(workspace)
        .bind(experiment_id)
        .bind(&model.name)
        .bind(&artifact_location)
        .bind(now)
        .bind(LoggedModelStatus::LoggedModelPending.as_str())
        .bind(&model.model_type)
        .bind(&model.source_run_id)
        .bind(model.creator_id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        upsert_model_pairs(&mut tx, "logged_model_tags", &model_id, &model.tags).await?;
        upsert_model_pairs(&mut tx, "logged_model_params", &model_id, &model.params).await?;
        tx.commit().await.map_err(db_error)?;
        self.get_logged_model(workspace, &model_id).await
    }

    async fn get_logged_model(&self, workspace: &str, model_id: &str) -> Result<LoggedModel> {
        let mut builder = Builder::new(
            "SELECT * FROM logged_models WHERE lifecycle_stage = 'active' AND workspace = ",
        );
        builder.push_bind(workspace.to_string());
        builder.push(" AND model_id = ");
        builder.push_bind(model_id.to_string());
        self.logged_model_rows(&mut builder)
            .await?
            .pop()
            .ok_or_else(|| logged_model_not_found(model_id))
    }

    async fn finalize_logged_model(
        &self,
        workspace: &str,
        model_id: &str,
        status: LoggedModelStatus,
    ) -> Result<LoggedModel> {
        let result = db::query(
            "UPDATE logged_models SET status = $1, last_updated_timestamp_ms = $2 WHERE workspace = $3 AND model_id = $4 AND lifecycle_stage = 'active'",
        )
        .bind(status.as_str())
        .bind(now_millis())
        .bind(workspace)
        .bind(model_id)
        .execute(&self.write)
        .await
        .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Err(logged_model_not_found(model_id));
        }
        self.get_logged_model(workspace, model_id).await
    }

    async fn delete_logged_model(&self, workspace: &str, model_id: &str) -> Result<()> {
        let result = db::query(
            "UPDATE logged_models SET lifecycle_stage = 'deleted', last_updated_timestamp_ms = $1 WHERE workspace = $2 AND model_id = $3 AND lifecycle_stage = 'active'",
        )
        .bind(now_millis())
        .bind(workspace)
        .bind(model_id)
        .execute(&self.write)
        .await
        .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Err(logged_model_not_found(model_id));
        }
        Ok(())
    }

    async fn set_logged_model_tags(
        &self,
        workspace: &str,
        model_id: &str,
        tags: &[KeyValue],
    ) -> Result<()> {
        self.get_logged_model(workspace, model_id).await?;
        let mut tx = self.begin().await?;
        upsert_model_pairs(&mut tx, "logged_model_tags", model_id, tags).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete_logged_model_tag(
        &self,
        workspace: &str,
        model_id: &str,
        key: &str,
    ) -> Result<()> {
        self.get_logged_model(workspace, model_id).await?;
        let result = db::query("DELETE FROM logged_model_tags WHERE model_id = $1 AND key = $2")
            .bind(model_id)
            .bind(key)
            .execute(&self.write)
            .await
            .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "No tag with key '{key}' found for logged model '{model_id}'"
            )));
        }
        Ok(())
    }

    async fn log_logged_model_params(
        &self,
        workspace: &str,
        model_id: &str,
        params: &[KeyValue],
    ) -> Result<()> {
        self.get_logged_model(workspace, model_id).await?;
        let mut tx = self.begin().await?;
        upsert_model_pairs(&mut tx, "logged_model_params", model_id, params).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn search_logged_models(
        &self,
        workspace: &str,
        query: &SearchLoggedModels,
    ) -> Result<Page<LoggedModel>> {
        if query.experiment_ids.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_offset: None,
            });
        }
        let mut builder = Builder::new(
            "SELECT lm.* FROM logged_models lm WHERE lm.lifecycle_stage = 'active' AND lm.workspace = ",
        );
        builder.push_bind(workspace.to_string());
        builder.push(" AND lm.experiment_id IN ");
        push_in_list(&mut builder, query.experiment_ids.iter().copied());
        for comparison in &query.filter {
            builder.push(" AND ");
            match comparison.entity {
                Entity::Tag => push_key_value_condition(
                    &mut builder,
                    "logged_model_tags",
                    "kv.model_id = lm.model_id",
                    comparison,
                )?,
                Entity::Param => push_key_value_condition(
                    &mut builder,
                    "logged_model_params",
                    "kv.model_id = lm.model_id",
                    comparison,
                )?,
                Entity::Metric => {
                    builder.push("EXISTS (SELECT 1 FROM metrics m WHERE m.model_id = lm.model_id AND m.key = ");
                    builder.push_bind(comparison.key.clone());
                    builder.push(" AND m.is_nan = FALSE AND ");
                    push_numeric_comparison(&mut builder, "m.value", comparison)?;
                    builder.push(")");
                }
                Entity::Attribute => match comparison.key.as_str() {
                    "name" => push_comparison(&mut builder, "lm.name", comparison)?,
                    "model_id" => push_comparison(&mut builder, "lm.model_id", comparison)?,
                    "status" => push_comparison(&mut builder, "lm.status", comparison)?,
                    "model_type" => push_comparison(&mut builder, "lm.model_type", comparison)?,
                    "source_run_id" => {
                        push_comparison(&mut builder, "lm.source_run_id", comparison)?
                    }
                    "creation_timestamp" | "creation_time" => push_numeric_comparison(
                        &mut builder,
                        "lm.creation_timestamp_ms",
                        comparison,
                    )?,
                    "last_updated_timestamp" => push_numeric_comparison(
                        &mut builder,
                        "lm.last_updated_timestamp_ms",
                        comparison,
                    )?,
                    other => {
                        return Err(Error::invalid(format!(
                            "Invalid attribute key '{other}' specified."
                        )));
                    }
                },
                Entity::Dataset => {
                    return Err(Error::invalid(
                        "Dataset filters are not supported for logged models",
                    ));
                }
            }
        }
        builder.push(" ORDER BY ");
        for order in &query.order_by {
            let column = match order.key.as_str() {
                "name" => format!("lm.name{}", collate()),
                "model_id" => "lm.model_id".to_string(),
                "creation_timestamp" | "creation_time" => "lm.creation_timestamp_ms".to_string(),
                "last_updated_timestamp" => "lm.last_updated_timestamp_ms".to_string(),
                other => return Err(Error::invalid(format!("Invalid order_by key '{other}'"))),
            };
            builder.push(format!(
                "{column} {}, ",
                if order.ascending { "ASC" } else { "DESC" }
            ));
        }
        builder.push("lm.creation_timestamp_ms DESC, lm.model_id ASC");
        limit_offset(&mut builder, query.max_results, query.offset);
        let models = self.logged_model_rows(&mut builder).await?;
        Ok(into_page(models, query.offset, query.max_results))
    }
}

pub(super) async fn upsert_model_pairs(
    tx: &mut Tx<'_>,
    table: &str,
    model_id: &str,
    pairs: &[KeyValue],
) -> Result<()> {
    for pair in pairs {
        db::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} (model_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value"
        )))
        .bind(model_id)
        .bind(&pair.key)
        .bind(&pair.value)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}
