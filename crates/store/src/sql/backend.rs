//! The store over one backend: its pools, the helpers every aggregate's SQL uses (query building,
//! row decoding, pages), and `MetaStore`. Queries use `$N` placeholders, which both SQLite and
//! PostgreSQL accept.

use super::*;

pub(super) type Tx<'c> = db::Transaction<'c>;

pub(super) type Builder = db::QueryBuilder;

/// The store over one backend. Reads go to `read`; writes to `write` (the same pool on
/// PostgreSQL, a single connection on SQLite).
#[derive(Debug, Clone)]
pub struct Store {
    pub(super) read: db::Pool,
    pub(super) write: db::Pool,
    /// Runs writes: SQLite's group commit, or a transaction each on PostgreSQL.
    pub(super) writer: db::Writer,
    /// Run id -> experiment id, asked on every logging call.
    pub(super) run_experiments: std::sync::Arc<std::sync::Mutex<HashMap<(String, String), i64>>>,
    /// Experiments known to exist, asked on every call that names one.
    pub(super) known_experiments:
        std::sync::Arc<std::sync::Mutex<std::collections::HashSet<(String, i64)>>>,
}

pub(super) const RUN_EXPERIMENT_CACHE_MAX: usize = 100_000;

impl Store {
    pub fn new(read: db::Pool, write: db::Pool) -> Self {
        let writer = db::Writer::new(write.clone());
        Self {
            read,
            write,
            writer,
            run_experiments: Default::default(),
            known_experiments: Default::default(),
        }
    }

    pub(super) async fn begin(&self) -> Result<Tx<'static>> {
        begin_write(&self.write).await.map_err(db_error)
    }
}

/// A write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`): the
/// server and the CLI share one database file, and a deferred transaction that read before
/// another process committed could not write afterwards (SQLITE_BUSY_SNAPSHOT, which the busy
/// timeout does not wait out); an immediate one waits for the other writer instead.
pub(super) async fn begin_write(pool: &db::Pool) -> std::result::Result<Tx<'static>, sqlx::Error> {
    match DIALECT {
        Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        Dialect::Postgres => pool.begin().await,
    }
}

pub(super) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Binary (code-point) ordering for strings, as MLflow's SQLite store orders them.
pub(super) fn collate() -> &'static str {
    match DIALECT {
        Dialect::Sqlite => "",
        Dialect::Postgres => " COLLATE \"C\"",
    }
}

pub(super) fn lifecycle_condition(view_type: ViewType) -> &'static str {
    match view_type {
        ViewType::ActiveOnly => " = 'active'",
        ViewType::DeletedOnly => " = 'deleted'",
        ViewType::All => " IN ('active', 'deleted')",
    }
}

pub(super) fn push_in_list<'a, T>(builder: &mut Builder, values: impl IntoIterator<Item = T>)
where
    T: db::Bind<'a>,
{
    builder.push("(");
    let mut separated = builder.separated(", ");
    for value in values {
        separated.push_bind(value);
    }
    separated.push_unseparated(")");
}

/// Appends `<column> <op> <value>` for a string or numeric comparison. `column` is trusted SQL
/// chosen by the caller from a fixed list; the value is always bound.
pub(super) fn push_comparison(
    builder: &mut Builder,
    column: &str,
    comparison: &Comparison,
) -> Result<()> {
    let op = match comparison.comparator {
        Comparator::Eq => "=",
        Comparator::Ne => "<>",
        Comparator::Gt => ">",
        Comparator::Ge => ">=",
        Comparator::Lt => "<",
        Comparator::Le => "<=",
        Comparator::Like => "LIKE",
        Comparator::ILike => {
            builder.push(format!("LOWER({column}) LIKE LOWER("));
            push_value(builder, &comparison.value)?;
            builder.push(")");
            return Ok(());
        }
        Comparator::In | Comparator::NotIn => {
            let Value::List(items) = &comparison.value else {
                return Err(Error::invalid("IN expects a list of values"));
            };
            if items.is_empty() {
                // An empty IN matches nothing; an empty NOT IN matches everything.
                builder.push(if comparison.comparator == Comparator::In {
                    "1 = 0"
                } else {
                    "1 = 1"
                });
                return Ok(());
            }
            for item in items {
                reject_nul(item)?;
            }
            builder.push(column);
            builder.push(if comparison.comparator == Comparator::In {
                " IN "
            } else {
                " NOT IN "
            });
            push_in_list(builder, items.iter().cloned());
            return Ok(());
        }
        Comparator::IsNull => {
            builder.push(format!("{column} IS NULL"));
            return Ok(());
        }
        Comparator::IsNotNull => {
            builder.push(format!("{column} IS NOT NULL"));
            return Ok(());
        }
    };
    builder.push(format!("{column} {op} "));
    push_value(builder, &comparison.value)
}

/// PostgreSQL cannot hold NUL in text; refuse it on both backends alike.
pub(super) fn reject_nul(text: &str) -> Result<()> {
    if text.contains('\0') {
        return Err(Error::invalid(
            "Search values and keys must not contain NUL characters",
        ));
    }
    Ok(())
}

pub(super) fn push_value(builder: &mut Builder, value: &Value) -> Result<()> {
    if let Value::Str(text) = value {
        reject_nul(text)?;
    }
    match value {
        Value::Number(number) => builder.push_bind(*number),
        Value::Str(text) => builder.push_bind(text.clone()),
        Value::List(_) | Value::Null => return Err(Error::invalid("expected a single value")),
    };
    Ok(())
}

pub(super) fn push_numeric_comparison(
    builder: &mut Builder,
    column: &str,
    comparison: &Comparison,
) -> Result<()> {
    match &comparison.value {
        Value::Number(_) => push_comparison(builder, column, comparison),
        Value::Str(text) => {
            let number: f64 = text
                .parse()
                .map_err(|_| Error::invalid(format!("expected a numeric value, got '{text}'")))?;
            push_comparison(
                builder,
                column,
                &Comparison {
                    value: Value::Number(number),
                    ..comparison.clone()
                },
            )
        }
        _ => push_comparison(builder, column, comparison),
    }
}

/// `EXISTS`/`NOT EXISTS` over a key-value side table (params, tags) of `owner_column`.
pub(super) fn push_key_value_condition(
    builder: &mut Builder,
    table: &str,
    join: &str,
    comparison: &Comparison,
) -> Result<()> {
    reject_nul(&comparison.key)?;
    let negate = comparison.comparator == Comparator::IsNull;
    builder.push(if negate {
        "NOT EXISTS (SELECT 1 FROM "
    } else {
        "EXISTS (SELECT 1 FROM "
    });
    builder.push(format!("{table} kv WHERE {join} AND kv.key = "));
    builder.push_bind(comparison.key.clone());
    if !matches!(
        comparison.comparator,
        Comparator::IsNull | Comparator::IsNotNull
    ) {
        builder.push(" AND ");
        push_comparison(builder, "kv.value", comparison)?;
    }
    builder.push(")");
    Ok(())
}

/// A JSON column decoded; text that does not decode is an error, never a silent default.
pub(super) fn decode_json<T: serde::de::DeserializeOwned>(
    row: &db::DbRow,
    column: &str,
) -> std::result::Result<T, sqlx::Error> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|err| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: Box::new(err),
    })
}

/// A text column read through `parse`. A value it does not know (a damaged row, or one a newer
/// tarn wrote) is an error, never a silent default.
pub(super) fn decode_with<T>(
    row: &db::DbRow,
    column: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> std::result::Result<T, sqlx::Error> {
    let text: String = row.try_get(column)?;
    parse(&text).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: format!("unknown stored value {text:?}").into(),
    })
}

pub(super) fn row_experiment(row: &db::DbRow) -> std::result::Result<Experiment, sqlx::Error> {
    Ok(Experiment {
        experiment_id: row.try_get::<i64, _>("experiment_id")?.to_string(),
        name: row.try_get("name")?,
        artifact_location: row.try_get("artifact_location")?,
        lifecycle_stage: decode_with(row, "lifecycle_stage", LifecycleStage::parse)?,
        last_update_time: row.try_get("last_update_time")?,
        creation_time: row.try_get("creation_time")?,
        tags: Vec::new(),
        owner_id: row.try_get("owner_id")?,
    })
}

pub(super) fn row_run_info(row: &db::DbRow) -> std::result::Result<RunInfo, sqlx::Error> {
    let run_id: String = row.try_get("run_uuid")?;
    Ok(RunInfo {
        run_uuid: run_id.clone(),
        run_id,
        run_name: row.try_get("name")?,
        experiment_id: row.try_get::<i64, _>("experiment_id")?.to_string(),
        user_id: row.try_get("user_id")?,
        status: decode_with(row, "status", RunStatus::parse)?,
        start_time: row.try_get("start_time")?,
        end_time: row.try_get("end_time")?,
        artifact_uri: row.try_get("artifact_uri")?,
        lifecycle_stage: decode_with(row, "lifecycle_stage", LifecycleStage::parse)?,
    })
}

pub(super) fn row_metric(row: &db::DbRow) -> std::result::Result<Metric, sqlx::Error> {
    let is_nan: bool = row.try_get("is_nan")?;
    Ok(Metric {
        key: row.try_get("key")?,
        value: if is_nan {
            f64::NAN
        } else {
            row.try_get("value")?
        },
        timestamp: row.try_get("timestamp")?,
        step: row.try_get("step")?,
        dataset_name: None,
        dataset_digest: None,
        model_id: None,
        run_id: None,
    })
}

pub(super) fn row_principal(row: &db::DbRow) -> std::result::Result<PrincipalRecord, sqlx::Error> {
    Ok(PrincipalRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: decode_with(row, "kind", PrincipalKind::parse)?,
        is_admin: row.try_get("is_admin")?,
        active: row.try_get("active")?,
        created_at: row.try_get("created_at")?,
        attributes: decode_json(row, "attributes")?,
        deleted_at: row.try_get("deleted_at")?,
    })
}

pub(super) fn row_token(row: &db::DbRow) -> std::result::Result<TokenInfo, sqlx::Error> {
    Ok(TokenInfo {
        token_id: row.try_get("token_id")?,
        principal_id: row.try_get("principal_id")?,
        principal_name: row.try_get("name")?,
        comment: row.try_get("comment")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        workspace: row.try_get("workspace")?,
    })
}

pub(super) fn experiment_not_found(experiment_id: i64) -> Error {
    Error::not_found(format!("No Experiment with id={experiment_id} exists"))
}

pub(super) fn run_not_found(run_id: &str) -> Error {
    Error::not_found(format!("Run with id={run_id} not found"))
}

pub(super) fn logged_model_not_found(model_id: &str) -> Error {
    Error::not_found(format!("Logged model with ID '{model_id}' not found."))
}

/// Splits the bookkeeping of pages: fetch one row more than asked to know if a next page exists.
pub(super) fn into_page<T>(mut items: Vec<T>, offset: u64, max_results: u64) -> Page<T> {
    let has_more = items.len() as u64 > max_results;
    items.truncate(max_results as usize);
    Page {
        items,
        // Any offset may come from a client's page token: the next one saturates, never wraps.
        next_offset: has_more.then(|| offset.saturating_add(max_results)),
    }
}

pub(super) fn limit_offset(builder: &mut Builder, max_results: u64, offset: u64) {
    builder.push(" LIMIT ");
    builder.push_bind(i64::try_from(max_results.saturating_add(1)).unwrap_or(i64::MAX));
    builder.push(" OFFSET ");
    builder.push_bind(i64::try_from(offset).unwrap_or(i64::MAX));
}

/// How a row becomes a value.
pub(super) type Decode<T> = fn(&db::DbRow) -> std::result::Result<T, sqlx::Error>;

impl Store {
    /// Runs a built read on the reader pool and decodes every row.
    pub(super) async fn read_all<T>(
        &self,
        builder: &mut Builder,
        decode: Decode<T>,
    ) -> Result<Vec<T>> {
        builder
            .build()
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?
            .iter()
            .map(decode)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(db_error)
    }

    /// One page of a built read: one row more than asked tells whether another page follows.
    pub(super) async fn read_page<T>(
        &self,
        builder: &mut Builder,
        decode: Decode<T>,
        max_results: u64,
        offset: u64,
    ) -> Result<Page<T>> {
        limit_offset(builder, max_results, offset);
        let items = self.read_all(builder, decode).await?;
        Ok(into_page(items, offset, max_results))
    }
}

impl Store {
    /// Key-value rows (params, tags) of several owners, grouped by owner and sorted by key.
    /// `table` and `owner_column` are fixed names chosen by the caller.
    pub(super) async fn key_values(
        &self,
        table: &str,
        owner_column: &str,
        owners: &[String],
    ) -> Result<HashMap<String, Vec<KeyValue>>> {
        let mut grouped: HashMap<String, Vec<KeyValue>> = HashMap::new();
        if owners.is_empty() {
            return Ok(grouped);
        }
        let mut builder = Builder::new(format!(
            "SELECT {owner_column} AS owner, key, value FROM {table} WHERE {owner_column} IN "
        ));
        push_in_list(&mut builder, owners.iter().cloned());
        builder.push(" ORDER BY key");
        for row in builder
            .build()
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?
        {
            grouped
                .entry(row.try_get("owner").map_err(db_error)?)
                .or_default()
                .push(KeyValue {
                    key: row.try_get("key").map_err(db_error)?,
                    value: row.try_get("value").map_err(db_error)?,
                });
        }
        Ok(grouped)
    }

    pub(super) async fn experiment_tags(
        &self,
        workspace: &str,
        ids: &[i64],
    ) -> Result<HashMap<i64, Vec<KeyValue>>> {
        let mut tags: HashMap<i64, Vec<KeyValue>> = HashMap::new();
        if ids.is_empty() {
            return Ok(tags);
        }
        let mut builder = Builder::new(
            "SELECT experiment_id, key, value FROM experiment_tags WHERE workspace = ",
        );
        builder.push_bind(workspace.to_string());
        builder.push(" AND experiment_id IN ");
        push_in_list(&mut builder, ids.iter().copied());
        builder.push(" ORDER BY key");
        for row in builder
            .build()
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?
        {
            let id: i64 = row.try_get("experiment_id").map_err(db_error)?;
            tags.entry(id).or_default().push(KeyValue {
                key: row.try_get("key").map_err(db_error)?,
                value: row.try_get("value").map_err(db_error)?,
            });
        }
        Ok(tags)
    }

    pub(super) async fn with_experiment_tags(
        &self,
        workspace: &str,
        mut experiments: Vec<Experiment>,
    ) -> Result<Vec<Experiment>> {
        let ids: Vec<i64> = experiments
            .iter()
            .filter_map(|e| e.experiment_id.parse().ok())
            .collect();
        let mut tags = self.experiment_tags(workspace, &ids).await?;
        for experiment in &mut experiments {
            if let Some(found) = experiment
                .experiment_id
                .parse()
                .ok()
                .and_then(|id: i64| tags.remove(&id))
            {
                experiment.tags = found;
            }
        }
        Ok(experiments)
    }

    pub(super) async fn experiment_row(
        &self,
        workspace: &str,
        experiment_id: i64,
    ) -> Result<Experiment> {
        let row =
            db::query("SELECT * FROM experiments WHERE workspace = $1 AND experiment_id = $2")
                .bind(workspace)
                .bind(experiment_id)
                .fetch_optional(&self.read)
                .await
                .map_err(db_error)?
                .ok_or_else(|| experiment_not_found(experiment_id))?;
        row_experiment(&row).map_err(db_error)
    }

    /// Loads metrics, params, tags, inputs and outputs for a set of runs in five queries.
    pub(super) async fn runs_with_data(&self, infos: Vec<RunInfo>) -> Result<Vec<Run>> {
        if infos.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = infos.iter().map(|i| i.run_id.clone()).collect();
        let mut runs: Vec<Run> = infos
            .into_iter()
            .map(|info| Run {
                info,
                data: RunData::default(),
                inputs: RunInputs::default(),
                outputs: RunOutputs::default(),
            })
            .collect();
        let index: HashMap<String, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();

        let mut builder = Builder::new(
            "SELECT run_uuid, key, value, is_nan, timestamp, step FROM latest_metrics WHERE run_uuid IN ",
        );
        push_in_list(&mut builder, ids.iter().cloned());
        builder.push(" ORDER BY key");
        for row in builder
            .build()
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?
        {
            let run_id: String = row.try_get("run_uuid").map_err(db_error)?;
            if let Some(&i) = index.get(&run_id) {
                runs[i]
                    .data
                    .metrics
                    .push(row_metric(&row).map_err(db_error)?);
            }
        }
        let mut params = self.key_values("params", "run_uuid", &ids).await?;
        let mut tags = self.key_values("tags", "run_uuid", &ids).await?;
        for run in &mut runs {
            run.data.params = params.remove(&run.info.run_id).unwrap_or_default();
            run.data.tags = tags.remove(&run.info.run_id).unwrap_or_default();
        }
        let mut builder = Builder::new(
            "SELECT run_uuid, name, digest, source_type, source, schema, profile, tags_json FROM run_inputs WHERE run_uuid IN ",
        );
        push_in_list(&mut builder, ids.iter().cloned());
        builder.push(" ORDER BY name, digest");
        for row in builder
            .build()
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?
        {
            let run_id: String = row.try_get("run_uuid").map_err(db_error)?;
            if let Some(&i) = index.get(&run_id) {
                runs[i].inputs.dataset_inputs.push(DatasetInput {
                    tags: decode_json(&row, "tags_json").map_err(db_error)?,
                    dataset: Dataset {
                        name: row.try_get("name").map_err(db_error)?,
                        digest: row.try_get("digest").map_err(db_error)?,
                        source_type: row.try_get("source_type").map_err(db_error)?,
                        source: row.try_get("source").map_err(db_error)?,
                        schema: row.try_get("schema").map_err(db_error)?,
                        profile: row.try_get("profile").map_err(db_error)?,
                    },
                });
            }
        }
        let mut builder =
            Builder::new("SELECT run_uuid, model_id FROM run_model_inputs WHERE run_uuid IN ");
        push_in_list(&mut builder, ids.iter().cloned());
        for row in builder
            .build()
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?
        {
            let run_id: String = row.try_get("run_uuid").map_err(db_error)?;
            if let Some(&i) = index.get(&run_id) {
                runs[i].inputs.model_inputs.push(ModelInput {
                    model_id: row.try_get("model_id").map_err(db_error)?,
                });
            }
        }
        let mut builder = Builder::new(
            "SELECT run_uuid, model_id, step FROM run_model_outputs WHERE run_uuid IN ",
        );
        push_in_list(&mut builder, ids.iter().cloned());
        for row in builder
            .build()
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?
        {
            let run_id: String = row.try_get("run_uuid").map_err(db_error)?;
            if let Some(&i) = index.get(&run_id) {
                runs[i].outputs.model_outputs.push(ModelOutput {
                    model_id: row.try_get("model_id").map_err(db_error)?,
                    step: row.try_get("step").map_err(db_error)?,
                });
            }
        }
        Ok(runs)
    }

    /// The run's lifecycle stage inside a write transaction; logging needs an active run.
    pub(super) async fn active_run_in_tx(
        tx: &mut Tx<'_>,
        workspace: &str,
        run_id: &str,
    ) -> Result<()> {
        let stage: Option<String> = db::query_scalar(
            "SELECT lifecycle_stage FROM runs WHERE workspace = $1 AND run_uuid = $2",
        )
        .bind(workspace)
        .bind(run_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
        match stage.as_deref() {
            None => Err(run_not_found(run_id)),
            Some("active") => Ok(()),
            Some(other) => Err(Error::invalid(format!(
                "The run {run_id} must be in the 'active' state. Current state is {other}."
            ))),
        }
    }

    pub(super) async fn principal_with_groups(&self, record: PrincipalRecord) -> Result<Principal> {
        let group_ids: Vec<i64> =
            db::query_scalar("SELECT group_id FROM group_members WHERE member_id = $1")
                .bind(record.id)
                .fetch_all(&self.read)
                .await
                .map_err(db_error)?;
        Ok(Principal {
            id: record.id,
            name: record.name,
            kind: record.kind,
            is_admin: record.is_admin,
            group_ids,
            only_workspace: None,
        })
    }

    pub(super) async fn principal_id(&self, name: &str) -> Result<i64> {
        db::query_scalar("SELECT id FROM principals WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found(format!("Principal '{name}' does not exist")))
    }

    pub(super) async fn logged_model_rows(
        &self,
        builder: &mut Builder,
    ) -> Result<Vec<LoggedModel>> {
        let rows = builder
            .build()
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?;
        let mut models = Vec::with_capacity(rows.len());
        for row in rows {
            let status = decode_with(&row, "status", LoggedModelStatus::parse).map_err(db_error)?;
            models.push(LoggedModel {
                info: LoggedModelInfo {
                    model_id: row.try_get("model_id").map_err(db_error)?,
                    experiment_id: row
                        .try_get::<i64, _>("experiment_id")
                        .map_err(db_error)?
                        .to_string(),
                    name: row.try_get("name").map_err(db_error)?,
                    creation_timestamp_ms: row
                        .try_get("creation_timestamp_ms")
                        .map_err(db_error)?,
                    last_updated_timestamp_ms: row
                        .try_get("last_updated_timestamp_ms")
                        .map_err(db_error)?,
                    artifact_uri: row.try_get("artifact_location").map_err(db_error)?,
                    status,
                    creator_id: row
                        .try_get::<String, _>("creator_id")
                        .map_err(db_error)?
                        .parse()
                        .ok(),
                    model_type: row.try_get("model_type").map_err(db_error)?,
                    source_run_id: row.try_get("source_run_id").map_err(db_error)?,
                    status_message: row.try_get("status_message").map_err(db_error)?,
                    tags: Vec::new(),
                },
                data: LoggedModelData::default(),
            });
        }
        if models.is_empty() {
            return Ok(models);
        }
        let ids: Vec<String> = models.iter().map(|m| m.info.model_id.clone()).collect();
        let index: HashMap<String, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        let mut tags = self
            .key_values("logged_model_tags", "model_id", &ids)
            .await?;
        let mut params = self
            .key_values("logged_model_params", "model_id", &ids)
            .await?;
        for model in &mut models {
            model.info.tags = tags.remove(&model.info.model_id).unwrap_or_default();
            model.data.params = params.remove(&model.info.model_id).unwrap_or_default();
        }
        let mut builder = Builder::new(
            "SELECT model_id, run_uuid, key, value, is_nan, timestamp, step, dataset_name, dataset_digest FROM metrics WHERE model_id IN ",
        );
        push_in_list(&mut builder, ids.iter().cloned());
        builder.push(" ORDER BY key, step, timestamp");
        for row in builder
            .build()
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?
        {
            let model_id: String = row.try_get("model_id").map_err(db_error)?;
            if let Some(&i) = index.get(&model_id) {
                let mut metric = row_metric(&row).map_err(db_error)?;
                metric.run_id = Some(row.try_get("run_uuid").map_err(db_error)?);
                metric.dataset_name = row.try_get("dataset_name").map_err(db_error)?;
                metric.dataset_digest = row.try_get("dataset_digest").map_err(db_error)?;
                metric.model_id = Some(model_id);
                models[i].data.metrics.push(metric);
            }
        }
        Ok(models)
    }
}

impl MetaStore for Store {
    fn backend_name(&self) -> &'static str {
        match DIALECT {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgresql",
        }
    }
}
