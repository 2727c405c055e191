//! Runs and what they log: params, metrics, tags, inputs and outputs, in batches, and run search.

use super::*;

/// The `runs` column behind a run attribute of the search grammar.
pub(super) fn run_attribute_column(key: &str) -> Result<(&'static str, bool)> {
    Ok(match key {
        "run_id" | "run_uuid" => ("r.run_uuid", false),
        "run_name" => ("r.name", false),
        "status" => ("r.status", false),
        "user_id" => ("r.user_id", false),
        "artifact_uri" => ("r.artifact_uri", false),
        "lifecycle_stage" => ("r.lifecycle_stage", false),
        "start_time" => ("r.start_time", true),
        "end_time" => ("r.end_time", true),
        other => {
            return Err(Error::invalid(format!(
                "Invalid attribute key '{other}' specified."
            )));
        }
    })
}

pub(super) fn push_run_condition(builder: &mut Builder, comparison: &Comparison) -> Result<()> {
    match comparison.entity {
        Entity::Metric => {
            reject_nul(&comparison.key)?;
            builder.push(
                "EXISTS (SELECT 1 FROM latest_metrics m WHERE m.run_uuid = r.run_uuid AND m.key = ",
            );
            builder.push_bind(comparison.key.clone());
            builder.push(" AND m.is_nan = FALSE AND ");
            push_numeric_comparison(builder, "m.value", comparison)?;
            builder.push(")");
        }
        Entity::Param => {
            push_key_value_condition(builder, "params", "kv.run_uuid = r.run_uuid", comparison)?
        }
        Entity::Tag => {
            push_key_value_condition(builder, "tags", "kv.run_uuid = r.run_uuid", comparison)?
        }
        Entity::Attribute => {
            let (column, numeric) = run_attribute_column(&comparison.key)?;
            if numeric {
                push_numeric_comparison(builder, column, comparison)?;
            } else {
                push_comparison(builder, column, comparison)?;
            }
        }
        Entity::Dataset => {
            let column = match comparison.key.as_str() {
                "name" => "d.name",
                "digest" => "d.digest",
                "context" => "d.context",
                other => {
                    return Err(Error::invalid(format!(
                        "Invalid dataset key '{other}' specified."
                    )));
                }
            };
            builder.push("EXISTS (SELECT 1 FROM run_inputs d WHERE d.run_uuid = r.run_uuid AND ");
            push_comparison(builder, column, comparison)?;
            builder.push(")");
        }
    }
    Ok(())
}

/// Joins and ORDER BY terms for a run search's `order_by`; keys are bound, never spliced.
pub(super) fn push_run_order_joins(
    builder: &mut Builder,
    order_by: &[OrderBy],
) -> Result<Vec<String>> {
    let mut terms = Vec::new();
    for (i, order) in order_by.iter().enumerate() {
        let direction = if order.ascending { "ASC" } else { "DESC" };
        let column = match order.entity {
            Entity::Metric => {
                builder.push(format!(
                    " LEFT JOIN latest_metrics o{i} ON o{i}.run_uuid = r.run_uuid AND o{i}.key = "
                ));
                builder.push_bind(order.key.clone());
                // NaN sorts above every number, as in MLflow.
                terms.push(format!(
                    "CASE WHEN o{i}.is_nan THEN 1 ELSE 0 END {direction} NULLS LAST"
                ));
                format!("o{i}.value")
            }
            Entity::Param | Entity::Tag => {
                let table = if order.entity == Entity::Param {
                    "params"
                } else {
                    "tags"
                };
                builder.push(format!(
                    " LEFT JOIN {table} o{i} ON o{i}.run_uuid = r.run_uuid AND o{i}.key = "
                ));
                builder.push_bind(order.key.clone());
                format!("o{i}.value{}", collate())
            }
            Entity::Attribute => {
                let (column, numeric) = run_attribute_column(&order.key)?;
                if numeric {
                    column.to_string()
                } else {
                    format!("{column}{}", collate())
                }
            }
            Entity::Dataset => return Err(Error::invalid("Cannot order runs by dataset fields")),
        };
        terms.push(format!("{column} {direction} NULLS LAST"));
    }
    Ok(terms)
}

#[async_trait]
impl RunStore for Store {
    async fn create_run(&self, workspace: &str, run: &NewRun) -> Result<Run> {
        let experiment_id = tarn_core::validation::parse_experiment_id(&run.experiment_id)?;
        let run_id = tarn_core::ids::hex32(rand::random());
        let mut tags = run.tags.clone();
        tags.retain(|t| t.key != "mlflow.runName");
        tags.push(KeyValue {
            key: "mlflow.runName".into(),
            value: run.run_name.clone(),
        });
        tags.sort_by(|a, b| a.key.cmp(&b.key));
        let (id, new_run, row_tags, ws) = (
            run_id.clone(),
            run.clone(),
            tags.clone(),
            workspace.to_string(),
        );
        // One statement checks the experiment is active and derives the artifact URI from it.
        let artifact_uri: Option<String> = self
            .write(move |tx| {
                Box::pin(async move {
                    let artifact_uri: Option<String> = db::query_scalar(
                        "INSERT INTO runs (run_uuid, workspace, experiment_id, name, user_id, status, start_time, lifecycle_stage, artifact_uri) \
                         SELECT $1, e.workspace, e.experiment_id, $4, $5, 'RUNNING', $6, 'active', RTRIM(e.artifact_location, '/') || '/' || $1 || '/artifacts' \
                         FROM experiments e WHERE e.workspace = $2 AND e.experiment_id = $3 AND e.lifecycle_stage = 'active' \
                         RETURNING artifact_uri",
                    )
                    .bind(&id)
                    .bind(&ws)
                    .bind(experiment_id)
                    .bind(&new_run.run_name)
                    .bind(&new_run.user_id)
                    .bind(new_run.start_time)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db_error)?;
                    if artifact_uri.is_some() {
                        upsert_run_tags(tx, &ActiveRun { workspace: &ws, run_id: &id }, &row_tags).await?;
                    }
                    Ok(artifact_uri)
                })
            })
            .await?;
        let Some(artifact_uri) = artifact_uri else {
            // Nothing inserted: say why.
            self.experiment_row(workspace, experiment_id).await?;
            return Err(Error::invalid(format!(
                "The experiment {experiment_id} must be in the 'active' state. Current state is deleted."
            )));
        };
        let info = RunInfo {
            run_id: run_id.clone(),
            run_uuid: run_id,
            run_name: run.run_name.clone(),
            experiment_id: experiment_id.to_string(),
            user_id: run.user_id.clone(),
            status: RunStatus::Running,
            start_time: run.start_time,
            end_time: None,
            artifact_uri,
            lifecycle_stage: LifecycleStage::Active,
        };
        // A new run holds nothing but its tags: no need to read it back.
        Ok(Run {
            info,
            data: RunData {
                tags,
                ..RunData::default()
            },
            inputs: RunInputs::default(),
            outputs: RunOutputs::default(),
        })
    }

    async fn get_run(&self, workspace: &str, run_id: &str) -> Result<Run> {
        let row = db::query("SELECT * FROM runs WHERE workspace = $1 AND run_uuid = $2")
            .bind(workspace)
            .bind(run_id)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?
            .ok_or_else(|| run_not_found(run_id))?;
        let info = row_run_info(&row).map_err(db_error)?;
        Ok(self.runs_with_data(vec![info]).await?.remove(0))
    }

    async fn run_tag(&self, workspace: &str, run_id: &str, key: &str) -> Result<Option<String>> {
        let row = db::query(
            "SELECT t.value FROM runs r LEFT JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = $3 \
             WHERE r.workspace = $1 AND r.run_uuid = $2",
        )
        .bind(workspace)
        .bind(run_id)
        .bind(key)
        .fetch_optional(&self.read)
        .await
        .map_err(db_error)?
        .ok_or_else(|| run_not_found(run_id))?;
        row.try_get("value").map_err(db_error)
    }

    async fn run_experiment_id(&self, workspace: &str, run_id: &str) -> Result<i64> {
        // A run never changes experiment, so the answer can be remembered.
        let key = (workspace.to_string(), run_id.to_string());
        if let Some(id) = self
            .run_experiments
            .lock()
            .ok()
            .and_then(|m| m.get(&key).copied())
        {
            return Ok(id);
        }
        let experiment_id: i64 = db::query_scalar(
            "SELECT experiment_id FROM runs WHERE workspace = $1 AND run_uuid = $2",
        )
        .bind(workspace)
        .bind(run_id)
        .fetch_optional(&self.read)
        .await
        .map_err(db_error)?
        .ok_or_else(|| run_not_found(run_id))?;
        if let Ok(mut known) = self.run_experiments.lock() {
            if known.len() >= RUN_EXPERIMENT_CACHE_MAX {
                known.clear();
            }
            known.insert(key, experiment_id);
        }
        Ok(experiment_id)
    }

    async fn update_run(
        &self,
        workspace: &str,
        run_id: &str,
        update: &RunUpdate,
    ) -> Result<RunInfo> {
        let (ws, id, update) = (workspace.to_string(), run_id.to_string(), update.clone());
        self.write(move |tx| {
            Box::pin(async move {
                // The active-run check rides along in the WHERE clause; only a miss asks why.
                let row = db::query(
                    "UPDATE runs SET status = COALESCE($1, status), end_time = COALESCE($2, end_time), name = COALESCE($3, name) \
                     WHERE workspace = $4 AND run_uuid = $5 AND lifecycle_stage = 'active' RETURNING *",
                )
                .bind(update.status.map(RunStatus::as_str))
                .bind(update.end_time)
                .bind(update.run_name.as_deref())
                .bind(&ws)
                .bind(&id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db_error)?;
                let Some(row) = row else {
                    Store::active_run_in_tx(tx, &ws, &id).await?;
                    return Err(run_not_found(&id));
                };
                if let Some(name) = &update.run_name {
                    let tag = KeyValue { key: "mlflow.runName".into(), value: name.clone() };
                    upsert_run_tags(tx, &ActiveRun { workspace: &ws, run_id: &id }, &[tag]).await?;
                }
                row_run_info(&row).map_err(db_error)
            })
        })
        .await
    }

    async fn delete_run(&self, workspace: &str, run_id: &str) -> Result<()> {
        set_run_stage(self, workspace, run_id, LifecycleStage::Deleted).await
    }

    async fn restore_run(&self, workspace: &str, run_id: &str) -> Result<()> {
        set_run_stage(self, workspace, run_id, LifecycleStage::Active).await
    }

    async fn log_batch(&self, workspace: &str, run_id: &str, batch: &LogBatch) -> Result<()> {
        let (workspace, run_id, batch) = (workspace.to_string(), run_id.to_string(), batch.clone());
        self.write(move |tx| {
            Box::pin(async move { write_log_batch(tx, &workspace, &run_id, &batch).await })
        })
        .await
    }

    async fn delete_run_tag(&self, workspace: &str, run_id: &str, key: &str) -> Result<()> {
        let (workspace, run_id, key) = (workspace.to_string(), run_id.to_string(), key.to_string());
        self.write(move |tx| {
            Box::pin(async move {
                let (workspace, run_id, key) = (workspace.as_str(), run_id.as_str(), key.as_str());
                Self::active_run_in_tx(tx, workspace, run_id).await?;
                let result = db::query("DELETE FROM tags WHERE run_uuid = $1 AND key = $2")
                    .bind(run_id)
                    .bind(key)
                    .execute(&mut **tx)
                    .await
                    .map_err(db_error)?;
                if result.rows_affected() == 0 {
                    return Err(Error::not_found(format!(
                        "No tag with name: {key} in run with id {run_id}"
                    )));
                }
                Ok(())
            })
        })
        .await
    }

    async fn metric_history(
        &self,
        workspace: &str,
        run_id: &str,
        key: &str,
        offset: u64,
        max_results: u64,
    ) -> Result<Page<Metric>> {
        self.run_experiment_id(workspace, run_id).await?;
        let mut builder = Builder::new(
            "SELECT key, value, is_nan, timestamp, step, model_id, dataset_name, dataset_digest FROM metrics WHERE run_uuid = ",
        );
        builder.push_bind(run_id.to_string());
        builder.push(" AND key = ");
        builder.push_bind(key.to_string());
        builder.push(" ORDER BY step, timestamp, value");
        limit_offset(&mut builder, max_results, offset);
        let rows = builder
            .build()
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?;
        let mut metrics = Vec::with_capacity(rows.len());
        for row in rows {
            let mut metric = row_metric(&row).map_err(db_error)?;
            metric.model_id = row.try_get("model_id").map_err(db_error)?;
            metric.dataset_name = row.try_get("dataset_name").map_err(db_error)?;
            metric.dataset_digest = row.try_get("dataset_digest").map_err(db_error)?;
            metrics.push(metric);
        }
        Ok(into_page(metrics, offset, max_results))
    }

    async fn log_inputs(
        &self,
        workspace: &str,
        run_id: &str,
        datasets: &[DatasetInput],
        model_ids: &[String],
    ) -> Result<()> {
        let (workspace, run_id, datasets, model_ids) = (
            workspace.to_string(),
            run_id.to_string(),
            datasets.to_vec(),
            model_ids.to_vec(),
        );
        self.write(move |tx| {
            Box::pin(async move {
                let (workspace, run_id, datasets, model_ids) = (workspace.as_str(), run_id.as_str(), datasets.as_slice(), model_ids.as_slice());
                Self::active_run_in_tx(tx, workspace, run_id).await?;
                for input in datasets {
                    let dataset = &input.dataset;
                    let context = input
                        .tags
                        .iter()
                        .find(|t| t.key == "mlflow.data.context")
                        .map(|t| t.value.clone());
                    let tags_json =
                        serde_json::to_string(&input.tags).map_err(|e| Error::internal_from("cannot encode dataset tags", e))?;
                    db::query(
                        "INSERT INTO run_inputs (run_uuid, name, digest, source_type, source, schema, profile, context, tags_json) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                         ON CONFLICT (run_uuid, name, digest) DO UPDATE SET context = excluded.context, tags_json = excluded.tags_json",
                    )
                    .bind(run_id)
                    .bind(&dataset.name)
                    .bind(&dataset.digest)
                    .bind(&dataset.source_type)
                    .bind(&dataset.source)
                    .bind(&dataset.schema)
                    .bind(&dataset.profile)
                    .bind(context)
                    .bind(tags_json)
                    .execute(&mut **tx)
                    .await
                    .map_err(db_error)?;
                }
                for model_id in model_ids {
                    db::query("INSERT INTO run_model_inputs (run_uuid, model_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                        .bind(run_id)
                        .bind(model_id)
                        .execute(&mut **tx)
                        .await
                        .map_err(db_error)?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn log_outputs(
        &self,
        workspace: &str,
        run_id: &str,
        models: &[ModelOutput],
    ) -> Result<()> {
        let (workspace, run_id, models) =
            (workspace.to_string(), run_id.to_string(), models.to_vec());
        self.write(move |tx| {
            Box::pin(async move {
                let (workspace, run_id, models) = (workspace.as_str(), run_id.as_str(), models.as_slice());
                Self::active_run_in_tx(tx, workspace, run_id).await?;
                for model in models {
                    db::query(
                        "INSERT INTO run_model_outputs (run_uuid, model_id, step) VALUES ($1, $2, $3) \
                         ON CONFLICT (run_uuid, model_id) DO UPDATE SET step = excluded.step",
                    )
                    .bind(run_id)
                    .bind(&model.model_id)
                    .bind(model.step)
                    .execute(&mut **tx)
                    .await
                    .map_err(db_error)?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn search_runs(&self, workspace: &str, query: &SearchRuns) -> Result<Page<Run>> {
        if query.experiment_ids.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_offset: None,
            });
        }
        let mut builder = Builder::new("SELECT r.* FROM runs r");
        let order_terms = push_run_order_joins(&mut builder, &query.order_by)?;
        builder.push(" WHERE r.workspace = ");
        builder.push_bind(workspace.to_string());
        builder.push(" AND r.experiment_id IN ");
        push_in_list(&mut builder, query.experiment_ids.iter().copied());
        builder.push(" AND r.lifecycle_stage");
        builder.push(lifecycle_condition(query.view_type));
        for comparison in &query.filter {
            builder.push(" AND ");
            push_run_condition(&mut builder, comparison)?;
        }
        builder.push(" ORDER BY ");
        for term in order_terms {
            builder.push(term);
            builder.push(", ");
        }
        builder.push("r.start_time DESC, r.run_uuid ASC");
        limit_offset(&mut builder, query.max_results, query.offset);
        let rows = db::fetch_all_cancelling(&self.read, builder.build())
            .await
            .map_err(db_error)?;
        let infos = rows
            .iter()
            .map(row_run_info)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(db_error)?;
        let page = into_page(infos, query.offset, query.max_results);
        Ok(Page {
            items: self.runs_with_data(page.items).await?,
            next_offset: page.next_offset,
        })
    }
}

/// The writes of one log-batch inside an open transaction.
pub(super) async fn write_log_batch(
    tx: &mut Tx<'_>,
    workspace: &str,
    run_id: &str,
    batch: &LogBatch,
) -> Result<()> {
    let run = ActiveRun { workspace, run_id };
    if batch.params.is_empty() && batch.tags.is_empty() && batch.metrics.is_empty() {
        return Store::active_run_in_tx(tx, workspace, run_id).await;
    }
    insert_params(tx, &run, &batch.params).await?;
    if upsert_run_tags(tx, &run, &batch.tags).await? {
        Store::active_run_in_tx(tx, workspace, run_id).await?;
    }
    if let Some(name) = batch.tags.iter().rev().find(|t| t.key == "mlflow.runName") {
        db::query("UPDATE runs SET name = $1 WHERE run_uuid = $2")
            .bind(&name.value)
            .bind(run_id)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
    }
    if insert_metrics(tx, &run, &batch.metrics).await? {
        // Either the run is not active or every point was logged before (accepted, as MLflow does).
        Store::active_run_in_tx(tx, workspace, run_id).await?;
    }
    Ok(())
}

/// The run a batch writes to. Each insert checks it is active inside its own statement, so a
/// batch costs one statement per kind of data; only an insert that wrote fewer rows than it
/// had asks why. Statements are what a write costs on SQLite's single writer.
pub(super) struct ActiveRun<'a> {
    workspace: &'a str,
    run_id: &'a str,
}

impl ActiveRun<'_> {
    /// `<insert> SELECT * FROM (VALUES ...) AS v WHERE <the run is active>`; the caller adds
    /// the conflict clause.
    pub(super) fn insert<I, F>(&self, insert: &str, rows: I, push_row: F) -> Builder
    where
        I: IntoIterator,
        F: FnMut(db::Separated<'_>, I::Item),
    {
        let mut builder = Builder::new(format!("{insert} SELECT * FROM ("));
        builder.push_values(rows, push_row);
        builder.push(") AS v WHERE EXISTS (SELECT 1 FROM runs WHERE workspace = ");
        builder.push_bind(self.workspace.to_string());
        builder.push(" AND run_uuid = ");
        builder.push_bind(self.run_id.to_string());
        builder.push(" AND lifecycle_stage = 'active')");
        builder
    }
}

impl Store {
    /// Runs `write` in a transaction and returns its value once committed (on SQLite, through
    /// group commit).
    pub(super) async fn write<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx<'static>) -> WriteFuture<'t, T> + Send + 'static,
    {
        self.writer.write(write).await
    }
}

pub(super) async fn set_run_stage(
    store: &Store,
    workspace: &str,
    run_id: &str,
    stage: LifecycleStage,
) -> Result<()> {
    let (workspace, run_id) = (workspace.to_string(), run_id.to_string());
    store
        .write(move |tx| {
            Box::pin(async move {
                let result = db::query(
                    "UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 WHERE workspace = $3 AND run_uuid = $4",
                )
                .bind(stage.as_str())
                .bind((stage == LifecycleStage::Deleted).then(now_millis))
                .bind(&workspace)
                .bind(&run_id)
                .execute(&mut **tx)
                .await
                .map_err(db_error)?;
                if result.rows_affected() == 0 {
                    return Err(run_not_found(&run_id));
                }
                Ok(())
            })
        })
        .await
}

/// Sets tags on an active run; true when fewer rows were written than asked (the run was not
/// active).
pub(super) async fn upsert_run_tags(
    tx: &mut Tx<'_>,
    run: &ActiveRun<'_>,
    tags: &[KeyValue],
) -> Result<bool> {
    if tags.is_empty() {
        return Ok(false);
    }
    // Later values for the same key win, as if logged one after another.
    let mut latest: Vec<&KeyValue> = Vec::new();
    for tag in tags {
        latest.retain(|t| t.key != tag.key);
        latest.push(tag);
    }
    let expected = latest.len() as u64;
    let mut builder = run.insert(
        "INSERT INTO tags (run_uuid, key, value)",
        latest,
        |mut row, tag| {
            row.push_bind(run.run_id.to_string())
                .push_bind(tag.key.clone())
                .push_bind(tag.value.clone());
        },
    );
    builder.push(" ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value");
    let written = builder.build().execute(&mut **tx).await.map_err(db_error)?;
    Ok(written.rows_affected() < expected)
}

/// Params are immutable: logging the same value again is accepted, a different one is refused
/// and nothing of the batch is kept (the caller rolls back).
pub(super) async fn insert_params(
    tx: &mut Tx<'_>,
    run: &ActiveRun<'_>,
    params: &[KeyValue],
) -> Result<()> {
    if params.is_empty() {
        return Ok(());
    }
    let mut builder = run.insert(
        "INSERT INTO params (run_uuid, key, value)",
        params,
        |mut row, param| {
            row.push_bind(run.run_id.to_string())
                .push_bind(param.key.clone())
                .push_bind(param.value.clone());
        },
    );
    builder.push(" ON CONFLICT (run_uuid, key) DO NOTHING");
    let written = builder.build().execute(&mut **tx).await.map_err(db_error)?;
    if written.rows_affected() == params.len() as u64 {
        return Ok(());
    }
    // Some params were there already (or the run is not active): refuse changed values.
    Store::active_run_in_tx(tx, run.workspace, run.run_id).await?;
    let mut builder = Builder::new("SELECT key, value FROM params WHERE run_uuid = ");
    builder.push_bind(run.run_id.to_string());
    builder.push(" AND key IN ");
    push_in_list(&mut builder, params.iter().map(|p| p.key.clone()));
    let existing: HashMap<String, String> = builder
        .build()
        .fetch_all(&mut **tx)
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| Ok((row.try_get("key")?, row.try_get("value")?)))
        .collect::<std::result::Result<_, sqlx::Error>>()
        .map_err(db_error)?;
    let changed: Vec<String> = params
        .iter()
        .filter_map(|p| {
            existing
                .get(&p.key)
                .filter(|old| **old != p.value)
                .map(|old| {
                    format!(
                        "{{'key': '{}', 'old_value': '{}', 'new_value': '{}'}}",
                        p.key, old, p.value
                    )
                })
        })
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "Changing param values is not allowed. Params were already logged='[{}]' for run ID='{}'.",
        changed.join(", "),
        run.run_id
    )))
}

/// The value stored for a metric: NaN is kept as a flag (SQLite turns NaN into NULL).
pub(super) fn stored_value(value: f64) -> (f64, bool) {
    if value.is_nan() {
        (0.0, true)
    } else {
        (tarn_core::validation::clamp_metric_value(value), false)
    }
}

/// Inserts metric points into an active run; `latest_metrics` follows by trigger. True when
/// fewer points were written than given (the run is not active, or points were logged before).
pub(super) async fn insert_metrics(
    tx: &mut Tx<'_>,
    run: &ActiveRun<'_>,
    metrics: &[Metric],
) -> Result<bool> {
    let mut written = 0;
    // 9 binds a row; stay far below SQLite's limit on bound variables.
    for chunk in metrics.chunks(500) {
        let mut builder = run.insert(
            "INSERT INTO metrics (run_uuid, key, value, is_nan, timestamp, step, model_id, dataset_name, dataset_digest)",
            chunk,
            |mut row, metric| {
                let (value, is_nan) = stored_value(metric.value);
                row.push_bind(run.run_id.to_string())
                    .push_bind(metric.key.clone())
                    .push_bind(value)
                    .push_bind(is_nan)
                    .push_bind(metric.timestamp)
                    .push_bind(metric.step)
                    .push_bind(metric.model_id.clone())
                    .push_bind(metric.dataset_name.clone())
                    .push_bind(metric.dataset_digest.clone());
            },
        );
        builder.push(" ON CONFLICT DO NOTHING");
        written += builder
            .build()
            .execute(&mut **tx)
            .await
            .map_err(db_error)?
            .rows_affected();
    }
    Ok(written < metrics.len() as u64)
}
