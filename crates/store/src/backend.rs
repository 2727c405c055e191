// The SQL logic of the metadata store, included once per backend by `lib.rs` with `Db` and
// `DIALECT` set. Queries use `$N` placeholders, which both SQLite and PostgreSQL accept.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use db::Row;
use tarn_core::auth::{Grant, ObjectType, PermissionLevel, Principal, PrincipalKind};
use tarn_core::entities::{
    Dataset, DatasetInput, Experiment, KeyValue, LifecycleStage, LogBatch, LoggedModel,
    LoggedModelData, LoggedModelInfo, LoggedModelStatus, Metric, ModelInput, ModelOutput,
    NewLoggedModel, NewRun, Run, RunData, RunInfo, RunInputs, RunOutputs, RunStatus, RunUpdate,
    ViewType,
};
use tarn_core::ids::now_millis;
use tarn_core::search::{Comparator, Comparison, Entity, OrderBy, Value};
use tarn_core::store::{
    ExperimentStore, IdentityStore, LoggedModelStore, MetaStore, Page, PermissionStore,
    PrincipalRecord, ReadableBy, RunStore, SearchExperiments, SearchLoggedModels, SearchRuns,
    TokenInfo, WorkspaceStore,
};
use tarn_core::{Error, Result};

use crate::db_error;

type Tx<'c> = db::Transaction<'c>;

/// The creator manages what it creates: a CAN_MANAGE grant, in the creating transaction.
async fn grant_creator(
    tx: &mut Tx<'_>,
    workspace: &str,
    object_type: ObjectType,
    object_id: &str,
    creator_id: i64,
) -> Result<()> {
    db::query("INSERT INTO acl (workspace, object_type, object_id, principal_id, level) VALUES ($1, $2, $3, $4, $5)")
        .bind(workspace)
        .bind(object_type.as_str())
        .bind(object_id)
        .bind(creator_id)
        .bind(PermissionLevel::CanManage.as_str())
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Removes every grant on an object (deleted, or its list replaced).
async fn delete_grants(tx: &mut Tx<'_>, workspace: &str, object_type: ObjectType, object_id: &str) -> Result<()> {
    db::query("DELETE FROM acl WHERE workspace = $1 AND object_type = $2 AND object_id = $3")
        .bind(workspace)
        .bind(object_type.as_str())
        .bind(object_id)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(())
}
type Builder = db::QueryBuilder;

/// The store over one backend. Reads go to `read`; writes to `write` (the same pool on
/// PostgreSQL, a single connection on SQLite).
#[derive(Debug, Clone)]
pub struct Store {
    read: db::Pool,
    write: db::Pool,
    /// Set where the backend has a single writer (SQLite).
    group_commit: Option<GroupCommit>,
    /// Run id -> experiment id, asked on every logging call.
    run_experiments: std::sync::Arc<std::sync::Mutex<HashMap<(String, String), i64>>>,
    /// Experiments known to exist, asked on every call that names one.
    known_experiments: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<(String, i64)>>>,
}

const RUN_EXPERIMENT_CACHE_MAX: usize = 100_000;

impl Store {
    pub fn new(read: db::Pool, write: db::Pool) -> Self {
        let group_commit =
            (DIALECT == crate::Dialect::Sqlite).then(|| GroupCommit::new(write.clone()));
        Self {
            read,
            write,
            group_commit,
            run_experiments: Default::default(),
            known_experiments: Default::default(),
        }
    }

    async fn begin(&self) -> Result<Tx<'static>> {
        begin_write(&self.write).await.map_err(db_error)
    }
}

/// A write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`): the
/// server and the CLI share one database file, and a deferred transaction that read before
/// another process committed could not write afterwards (SQLITE_BUSY_SNAPSHOT, which the busy
/// timeout does not wait out); an immediate one waits for the other writer instead.
async fn begin_write(pool: &db::Pool) -> std::result::Result<Tx<'static>, sqlx::Error> {
    match DIALECT {
        crate::Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        crate::Dialect::Postgres => pool.begin().await,
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Binary (code-point) ordering for strings, as MLflow's SQLite store orders them.
fn collate() -> &'static str {
    match DIALECT {
        crate::Dialect::Sqlite => "",
        crate::Dialect::Postgres => " COLLATE \"C\"",
    }
}

fn lifecycle_condition(view_type: ViewType) -> &'static str {
    match view_type {
        ViewType::ActiveOnly => " = 'active'",
        ViewType::DeletedOnly => " = 'deleted'",
        ViewType::All => " IN ('active', 'deleted')",
    }
}

fn push_in_list<'a, T>(builder: &mut Builder, values: impl IntoIterator<Item = T>)
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
fn push_comparison(builder: &mut Builder, column: &str, comparison: &Comparison) -> Result<()> {
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
fn reject_nul(text: &str) -> Result<()> {
    if text.contains('\0') {
        return Err(Error::invalid(
            "Search values and keys must not contain NUL characters",
        ));
    }
    Ok(())
}

fn push_value(builder: &mut Builder, value: &Value) -> Result<()> {
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

fn push_numeric_comparison(
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
fn push_key_value_condition(
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

fn row_experiment(
    row: &db::DbRow,
) -> std::result::Result<Experiment, sqlx::Error> {
    Ok(Experiment {
        experiment_id: row.try_get::<i64, _>("experiment_id")?.to_string(),
        name: row.try_get("name")?,
        artifact_location: row.try_get("artifact_location")?,
        lifecycle_stage: LifecycleStage::parse(&row.try_get::<String, _>("lifecycle_stage")?),
        last_update_time: row.try_get("last_update_time")?,
        creation_time: row.try_get("creation_time")?,
        tags: Vec::new(),
        owner_id: row.try_get("owner_id")?,
    })
}

fn row_run_info(row: &db::DbRow) -> std::result::Result<RunInfo, sqlx::Error> {
    let run_id: String = row.try_get("run_uuid")?;
    Ok(RunInfo {
        run_uuid: run_id.clone(),
        run_id,
        run_name: row.try_get("name")?,
        experiment_id: row.try_get::<i64, _>("experiment_id")?.to_string(),
        user_id: row.try_get("user_id")?,
        status: RunStatus::parse(&row.try_get::<String, _>("status")?)
            .unwrap_or(RunStatus::Running),
        start_time: row.try_get("start_time")?,
        end_time: row.try_get("end_time")?,
        artifact_uri: row.try_get("artifact_uri")?,
        lifecycle_stage: LifecycleStage::parse(&row.try_get::<String, _>("lifecycle_stage")?),
    })
}

fn row_metric(row: &db::DbRow) -> std::result::Result<Metric, sqlx::Error> {
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

fn row_principal(
    row: &db::DbRow,
) -> std::result::Result<PrincipalRecord, sqlx::Error> {
    Ok(PrincipalRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: PrincipalKind::parse(&row.try_get::<String, _>("kind")?)
            .unwrap_or(PrincipalKind::User),
        is_admin: row.try_get("is_admin")?,
        active: row.try_get("active")?,
        created_at: row.try_get("created_at")?,
    })
}

fn row_token(row: &db::DbRow) -> std::result::Result<TokenInfo, sqlx::Error> {
    Ok(TokenInfo {
        token_id: row.try_get("token_id")?,
        principal_id: row.try_get("principal_id")?,
        principal_name: row.try_get("name")?,
        comment: row.try_get("comment")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn experiment_not_found(experiment_id: i64) -> Error {
    Error::not_found(format!("No Experiment with id={experiment_id} exists"))
}

fn run_not_found(run_id: &str) -> Error {
    Error::not_found(format!("Run with id={run_id} not found"))
}

fn logged_model_not_found(model_id: &str) -> Error {
    Error::not_found(format!("Logged model with ID '{model_id}' not found."))
}

/// Splits the bookkeeping of pages: fetch one row more than asked to know if a next page exists.
fn into_page<T>(mut items: Vec<T>, offset: u64, max_results: u64) -> Page<T> {
    let has_more = items.len() as u64 > max_results;
    items.truncate(max_results as usize);
    Page {
        items,
        next_offset: has_more.then_some(offset + max_results),
    }
}

fn limit_offset(builder: &mut Builder, max_results: u64, offset: u64) {
    builder.push(" LIMIT ");
    builder.push_bind(i64::try_from(max_results.saturating_add(1)).unwrap_or(i64::MAX));
    builder.push(" OFFSET ");
    builder.push_bind(i64::try_from(offset).unwrap_or(i64::MAX));
}

impl Store {
    /// Key-value rows (params, tags) of several owners, grouped by owner and sorted by key.
    /// `table` and `owner_column` are fixed names chosen by the caller.
    async fn key_values(
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

    async fn experiment_tags(
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

    async fn with_experiment_tags(
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

    async fn experiment_row(&self, workspace: &str, experiment_id: i64) -> Result<Experiment> {
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
    async fn runs_with_data(&self, infos: Vec<RunInfo>) -> Result<Vec<Run>> {
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
                let tags_json: String = row.try_get("tags_json").map_err(db_error)?;
                runs[i].inputs.dataset_inputs.push(DatasetInput {
                    tags: serde_json::from_str(&tags_json).unwrap_or_default(),
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
    async fn active_run_in_tx(tx: &mut Tx<'_>, workspace: &str, run_id: &str) -> Result<()> {
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

    async fn principal_with_groups(&self, record: PrincipalRecord) -> Result<Principal> {
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
        })
    }

    async fn principal_id(&self, name: &str) -> Result<i64> {
        db::query_scalar("SELECT id FROM principals WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found(format!("Principal '{name}' does not exist")))
    }

    async fn logged_model_rows(&self, builder: &mut Builder) -> Result<Vec<LoggedModel>> {
        let rows = builder
            .build()
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?;
        let mut models = Vec::with_capacity(rows.len());
        for row in rows {
            let status: String = row.try_get("status").map_err(db_error)?;
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
                    status: LoggedModelStatus::parse(&status)
                        .unwrap_or(LoggedModelStatus::LoggedModelStatusUnspecified),
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

#[async_trait]
impl ExperimentStore for Store {
    async fn create_experiment(
        &self,
        workspace: &str,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[KeyValue],
        owner_id: i64,
    ) -> Result<String> {
        let mut tx = self.begin().await?;
        let experiment_id: i64 = db::query_scalar(
            "UPDATE workspaces SET next_experiment_id = next_experiment_id + 1 WHERE name = $1 RETURNING next_experiment_id - 1",
        )
        .bind(workspace)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found(format!("Workspace '{workspace}' does not exist")))?;
        let location = artifact_location
            .map(str::to_string)
            .unwrap_or_else(|| format!("mlflow-artifacts:/{experiment_id}"));
        insert_experiment(
            &mut tx,
            workspace,
            experiment_id,
            name,
            &location,
            Some(owner_id),
        )
        .await?;
        for tag in tags {
            upsert_experiment_tag(&mut tx, workspace, experiment_id, tag).await?;
        }
        // The creator manages what it creates.
        db::query("INSERT INTO acl (workspace, object_type, object_id, principal_id, level) VALUES ($1, $2, $3, $4, $5)")
            .bind(workspace)
            .bind(ObjectType::Experiment.as_str())
            .bind(experiment_id.to_string())
            .bind(owner_id)
            .bind(PermissionLevel::CanManage.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(experiment_id.to_string())
    }

    async fn get_experiment(&self, workspace: &str, experiment_id: i64) -> Result<Experiment> {
        let experiment = self.experiment_row(workspace, experiment_id).await?;
        Ok(self
            .with_experiment_tags(workspace, vec![experiment])
            .await?
            .remove(0))
    }

    async fn experiment_exists(&self, workspace: &str, experiment_id: i64) -> Result<bool> {
        let key = (workspace.to_string(), experiment_id);
        if self
            .known_experiments
            .lock()
            .is_ok_and(|known| known.contains(&key))
        {
            return Ok(true);
        }
        let found: Option<i64> = db::query_scalar(
            "SELECT experiment_id FROM experiments WHERE workspace = $1 AND experiment_id = $2",
        )
        .bind(workspace)
        .bind(experiment_id)
        .fetch_optional(&self.read)
        .await
        .map_err(db_error)?;
        if found.is_some()
            && let Ok(mut known) = self.known_experiments.lock()
        {
            if known.len() >= RUN_EXPERIMENT_CACHE_MAX {
                known.clear();
            }
            known.insert(key);
        }
        Ok(found.is_some())
    }

    async fn get_experiment_by_name(&self, workspace: &str, name: &str) -> Result<Experiment> {
        let row = db::query("SELECT * FROM experiments WHERE workspace = $1 AND name = $2")
            .bind(workspace)
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                Error::not_found(format!("Could not find experiment with name '{name}'"))
            })?;
        let experiment = row_experiment(&row).map_err(db_error)?;
        Ok(self
            .with_experiment_tags(workspace, vec![experiment])
            .await?
            .remove(0))
    }

    async fn search_experiments(
        &self,
        workspace: &str,
        query: &SearchExperiments,
    ) -> Result<Page<Experiment>> {
        let mut builder = Builder::new("SELECT e.* FROM experiments e WHERE e.workspace = ");
        builder.push_bind(workspace.to_string());
        builder.push(" AND e.lifecycle_stage");
        builder.push(lifecycle_condition(query.view_type));
        for comparison in &query.filter {
            builder.push(" AND ");
            match comparison.entity {
                Entity::Tag => push_key_value_condition(
                    &mut builder,
                    "experiment_tags",
                    "kv.workspace = e.workspace AND kv.experiment_id = e.experiment_id",
                    comparison,
                )?,
                Entity::Attribute => match comparison.key.as_str() {
                    "name" => push_comparison(&mut builder, "e.name", comparison)?,
                    "experiment_id" => push_experiment_id_comparison(&mut builder, comparison)?,
                    "creation_time" => {
                        push_numeric_comparison(&mut builder, "e.creation_time", comparison)?
                    }
                    "last_update_time" => {
                        push_numeric_comparison(&mut builder, "e.last_update_time", comparison)?
                    }
                    other => {
                        return Err(Error::invalid(format!(
                            "Invalid attribute key '{other}' specified."
                        )));
                    }
                },
                _ => {
                    return Err(Error::invalid(
                        "Invalid entity type for an experiment search filter",
                    ));
                }
            }
        }
        if let Some(readable) = &query.readable_by {
            builder.push(" AND EXISTS (SELECT 1 FROM acl a WHERE a.workspace = e.workspace AND a.object_type = ");
            builder.push_bind(ObjectType::Experiment.as_str());
            builder.push(" AND a.object_id = CAST(e.experiment_id AS TEXT) AND a.principal_id IN ");
            push_in_list(&mut builder, readable.grantee_ids.iter().copied());
            builder.push(")");
        }
        builder.push(" ORDER BY ");
        for order in &query.order_by {
            let column = match order.key.as_str() {
                "name" => format!("e.name{}", collate()),
                "experiment_id" => "e.experiment_id".to_string(),
                "creation_time" => "e.creation_time".to_string(),
                "last_update_time" => "e.last_update_time".to_string(),
                other => return Err(Error::invalid(format!("Invalid order_by key '{other}'"))),
            };
            builder.push(format!(
                "{column} {}, ",
                if order.ascending { "ASC" } else { "DESC" }
            ));
        }
        builder.push("e.creation_time DESC, e.experiment_id ASC");
        limit_offset(&mut builder, query.max_results, query.offset);
        let rows = builder
            .build()
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?;
        let experiments = rows
            .iter()
            .map(row_experiment)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(db_error)?;
        let page = into_page(experiments, query.offset, query.max_results);
        Ok(Page {
            items: self.with_experiment_tags(workspace, page.items).await?,
            next_offset: page.next_offset,
        })
    }

    async fn rename_experiment(
        &self,
        workspace: &str,
        experiment_id: i64,
        new_name: &str,
    ) -> Result<()> {
        let experiment = self.experiment_row(workspace, experiment_id).await?;
        if experiment.lifecycle_stage != LifecycleStage::Active {
            return Err(Error::invalid("Cannot rename a non-active experiment."));
        }
        let result = db::query("UPDATE experiments SET name = $1, last_update_time = $2 WHERE workspace = $3 AND experiment_id = $4")
            .bind(new_name)
            .bind(now_millis())
            .bind(workspace)
            .bind(experiment_id)
            .execute(&self.write)
            .await;
        match result {
            Err(err) if is_unique_violation(&err) => Err(Error::already_exists(format!(
                "Experiment(name={new_name}) already exists."
            ))),
            Err(err) => Err(db_error(err)),
            Ok(_) => Ok(()),
        }
    }

    async fn delete_experiment(&self, workspace: &str, experiment_id: i64) -> Result<()> {
        set_experiment_stage(self, workspace, experiment_id, LifecycleStage::Deleted).await
    }

    async fn restore_experiment(&self, workspace: &str, experiment_id: i64) -> Result<()> {
        set_experiment_stage(self, workspace, experiment_id, LifecycleStage::Active).await
    }

    async fn set_experiment_tag(
        &self,
        workspace: &str,
        experiment_id: i64,
        tag: &KeyValue,
    ) -> Result<()> {
        let experiment = self.experiment_row(workspace, experiment_id).await?;
        if experiment.lifecycle_stage != LifecycleStage::Active {
            return Err(Error::invalid(format!(
                "The experiment {experiment_id} must be in the 'active' state. Current state is deleted."
            )));
        }
        let mut tx = self.begin().await?;
        upsert_experiment_tag(&mut tx, workspace, experiment_id, tag).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete_experiment_tag(
        &self,
        workspace: &str,
        experiment_id: i64,
        key: &str,
    ) -> Result<()> {
        self.experiment_row(workspace, experiment_id).await?;
        let result = db::query(
            "DELETE FROM experiment_tags WHERE workspace = $1 AND experiment_id = $2 AND key = $3",
        )
        .bind(workspace)
        .bind(experiment_id)
        .bind(key)
        .execute(&self.write)
        .await
        .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "No tag with name: {key} in experiment with id {experiment_id}"
            )));
        }
        Ok(())
    }
}

fn push_experiment_id_comparison(builder: &mut Builder, comparison: &Comparison) -> Result<()> {
    let parse = |text: &str| {
        text.parse::<i64>()
            .map_err(|_| Error::invalid(format!("Invalid experiment ID '{text}'")))
    };
    match (&comparison.comparator, &comparison.value) {
        (Comparator::In | Comparator::NotIn, Value::List(items)) => {
            let ids = items
                .iter()
                .map(|i| parse(i))
                .collect::<Result<Vec<i64>>>()?;
            if ids.is_empty() {
                builder.push(if comparison.comparator == Comparator::In {
                    "1 = 0"
                } else {
                    "1 = 1"
                });
                return Ok(());
            }
            builder.push(if comparison.comparator == Comparator::In {
                "e.experiment_id IN "
            } else {
                "e.experiment_id NOT IN "
            });
            push_in_list(builder, ids);
            Ok(())
        }
        (Comparator::Eq | Comparator::Ne, Value::Str(text)) => {
            builder.push(if comparison.comparator == Comparator::Eq {
                "e.experiment_id = "
            } else {
                "e.experiment_id <> "
            });
            builder.push_bind(parse(text)?);
            Ok(())
        }
        (Comparator::Eq | Comparator::Ne, Value::Number(number)) => {
            builder.push(if comparison.comparator == Comparator::Eq {
                "e.experiment_id = "
            } else {
                "e.experiment_id <> "
            });
            builder.push_bind(*number);
            Ok(())
        }
        _ => Err(Error::invalid("experiment_id supports =, != and IN")),
    }
}

async fn insert_experiment(
    tx: &mut Tx<'_>,
    workspace: &str,
    experiment_id: i64,
    name: &str,
    location: &str,
    owner_id: Option<i64>,
) -> Result<()> {
    let now = now_millis();
    let result = db::query(
        "INSERT INTO experiments (workspace, experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time, owner_id) \
         VALUES ($1, $2, $3, $4, 'active', $5, $5, $6)",
    )
    .bind(workspace)
    .bind(experiment_id)
    .bind(name)
    .bind(location)
    .bind(now)
    .bind(owner_id)
    .execute(&mut **tx)
    .await;
    match result {
        Err(err) if is_unique_violation(&err) => Err(Error::already_exists(format!(
            "Experiment(name={name}) already exists."
        ))),
        Err(err) => Err(db_error(err)),
        Ok(_) => Ok(()),
    }
}

async fn upsert_experiment_tag(
    tx: &mut Tx<'_>,
    workspace: &str,
    experiment_id: i64,
    tag: &KeyValue,
) -> Result<()> {
    db::query(
        "INSERT INTO experiment_tags (workspace, experiment_id, key, value) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (workspace, experiment_id, key) DO UPDATE SET value = excluded.value",
    )
    .bind(workspace)
    .bind(experiment_id)
    .bind(&tag.key)
    .bind(&tag.value)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

async fn set_experiment_stage(
    store: &Store,
    workspace: &str,
    experiment_id: i64,
    stage: LifecycleStage,
) -> Result<()> {
    let experiment = store.experiment_row(workspace, experiment_id).await?;
    if stage == LifecycleStage::Deleted && experiment_id == 0 {
        return Err(Error::invalid(
            "Cannot delete the default experiment '0'. This is an internally reserved experiment.",
        ));
    }
    let from = if stage == LifecycleStage::Deleted {
        LifecycleStage::Active
    } else {
        LifecycleStage::Deleted
    };
    if experiment.lifecycle_stage != from {
        return Err(Error::invalid(format!(
            "Cannot {} experiment {experiment_id}: it is {}.",
            if stage == LifecycleStage::Deleted {
                "delete"
            } else {
                "restore"
            },
            experiment.lifecycle_stage.as_str()
        )));
    }
    let now = now_millis();
    let mut tx = store.begin().await?;
    db::query("UPDATE experiments SET lifecycle_stage = $1, last_update_time = $2 WHERE workspace = $3 AND experiment_id = $4")
        .bind(stage.as_str())
        .bind(now)
        .bind(workspace)
        .bind(experiment_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    // Runs follow their experiment, as in MLflow.
    db::query("UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 WHERE workspace = $3 AND experiment_id = $4 AND lifecycle_stage = $5")
        .bind(stage.as_str())
        .bind((stage == LifecycleStage::Deleted).then_some(now))
        .bind(workspace)
        .bind(experiment_id)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    tx.commit().await.map_err(db_error)
}

/// The `runs` column behind a run attribute of the search grammar.
fn run_attribute_column(key: &str) -> Result<(&'static str, bool)> {
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

fn push_run_condition(builder: &mut Builder, comparison: &Comparison) -> Result<()> {
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
fn push_run_order_joins(builder: &mut Builder, order_by: &[OrderBy]) -> Result<Vec<String>> {
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
                        serde_json::to_string(&input.tags).map_err(|e| Error::internal(e.to_string()))?;
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
async fn write_log_batch(
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
struct ActiveRun<'a> {
    workspace: &'a str,
    run_id: &'a str,
}

impl ActiveRun<'_> {
    /// `<insert> SELECT * FROM (VALUES ...) AS v WHERE <the run is active>`; the caller adds
    /// the conflict clause.
    fn insert<I, F>(&self, insert: &str, rows: I, push_row: F) -> Builder
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

/// A future borrowing the write transaction.
type WriteFuture<'t, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 't>>;
type WriteJob = Box<dyn for<'t> FnOnce(&'t mut Tx<'static>) -> WriteFuture<'t, ()> + Send>;

/// Group commit for a single-writer database. A write that finds the writer idle runs at once
/// on its own task, in a transaction of its own: a lone client pays no hand-off to another
/// task and back. Writes that arrive meanwhile queue up; the one that finishes hands the queue
/// to a thread of the blocking pool, which runs up to `GROUP_COMMIT_MAX` of them in one
/// transaction, each inside its own savepoint (a refused write rolls back alone), and
/// acknowledges them all after the one durable commit. One fsync then serves many requests.
#[derive(Debug, Clone)]
struct GroupCommit {
    pool: db::Pool,
    queue: Arc<std::sync::Mutex<WriteQueue>>,
}

#[derive(Debug, Default)]
struct WriteQueue {
    /// A `WriterTurn` is held: by a write on its own task, or by the thread draining the queue.
    writing: bool,
    waiting: Vec<QueuedWrite>,
}

struct QueuedWrite {
    job: WriteJob,
    done: tokio::sync::oneshot::Sender<Result<()>>,
}

impl std::fmt::Debug for QueuedWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueuedWrite")
    }
}

/// Most writes committed by one transaction.
const GROUP_COMMIT_MAX: usize = 64;

fn writer_stopped() -> Error {
    Error::internal("the metadata store writer has stopped")
}

/// The writer, held. Dropped while writes wait (after a write on its own task, or when a
/// request is cancelled or a drain unwinds), it hands them to a drain; otherwise it releases
/// the writer.
struct WriterTurn {
    /// `None` once released.
    commit: Option<GroupCommit>,
}

impl WriterTurn {
    /// The next writes waiting; none when the queue is empty, and then the writer is released.
    fn next_group(&mut self) -> Option<Vec<QueuedWrite>> {
        let group = self.commit.as_ref()?.next_group();
        if group.is_none() {
            self.commit = None;
        }
        group
    }
}

impl Drop for WriterTurn {
    fn drop(&mut self) {
        let Some(group) = self.next_group() else {
            return;
        };
        // The queue drains on a thread of the blocking pool: its commits wait for the disk
        // there, not on a runtime worker that could be reading the next requests meanwhile.
        // Without a runtime, the group is dropped and its waiters report it.
        if let (Some(commit), Ok(runtime)) =
            (self.commit.take(), tokio::runtime::Handle::try_current())
        {
            let on_runtime = runtime.clone();
            runtime.spawn_blocking(move || on_runtime.block_on(commit.drain(group)));
        }
    }
}

impl GroupCommit {
    fn new(pool: db::Pool) -> Self {
        Self {
            pool,
            queue: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WriteQueue> {
        // The queue holds no invariant a panic elsewhere could break.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Returns once the job's changes are durably committed (or refused).
    async fn submit(&self, job: WriteJob) -> Result<()> {
        let (done, answer) = tokio::sync::oneshot::channel();
        if let Some(mine) = self.queue_unless_idle(QueuedWrite { job, done }) {
            let turn = WriterTurn {
                commit: Some(self.clone()),
            };
            Self::write_group(&self.pool, vec![mine]).await;
            drop(turn);
        }
        answer.await.map_err(|_| writer_stopped())?
    }

    /// Queues `write` while the writer is busy; gives it back, holding the writer, when idle.
    fn queue_unless_idle(&self, write: QueuedWrite) -> Option<QueuedWrite> {
        let mut queue = self.lock();
        if queue.writing {
            queue.waiting.push(write);
            return None;
        }
        queue.writing = true;
        Some(write)
    }

    /// The next writes waiting, or none, and then the writer is released.
    fn next_group(&self) -> Option<Vec<QueuedWrite>> {
        let mut queue = self.lock();
        if queue.waiting.is_empty() {
            queue.writing = false;
            return None;
        }
        let take = queue.waiting.len().min(GROUP_COMMIT_MAX);
        Some(queue.waiting.drain(..take).collect())
    }

    /// Writes `group`, then the queue in groups until it is empty, holding the writer.
    async fn drain(self, mut group: Vec<QueuedWrite>) {
        let pool = self.pool.clone();
        let mut turn = WriterTurn { commit: Some(self) };
        loop {
            Self::write_group(&pool, group).await;
            match turn.next_group() {
                Some(next) => group = next,
                None => return,
            }
        }
    }

    async fn write_group(pool: &db::Pool, group: Vec<QueuedWrite>) {
        let mut tx = match begin_write(pool).await {
            Ok(tx) => tx,
            Err(err) => {
                let err = db_error(err);
                for queued in group {
                    let _ = queued.done.send(Err(err.clone()));
                }
                return;
            }
        };
        if group.len() == 1 {
            // Alone in its transaction, a job needs no savepoint: a failure rolls back all.
            if let Some(queued) = group.into_iter().next() {
                let outcome = (queued.job)(&mut tx).await;
                let result = match outcome {
                    Ok(()) => tx.commit().await.map_err(db_error),
                    Err(err) => {
                        let _ = tx.rollback().await;
                        Err(err)
                    }
                };
                let _ = queued.done.send(result);
            }
            return;
        }
        let mut outcomes = Vec::with_capacity(group.len());
        for queued in group {
            let outcome = Self::in_savepoint(&mut tx, queued.job).await;
            outcomes.push((queued.done, outcome));
        }
        let committed = tx.commit().await.map_err(db_error);
        for (done, outcome) in outcomes {
            // A requester that went away needs no answer.
            let _ = done.send(match &committed {
                Ok(()) => outcome,
                Err(err) => Err(err.clone()),
            });
        }
    }

    /// Savepoints are never released: `ROLLBACK TO` undoes the newest one of the name, which is
    /// this job's, and `COMMIT` keeps everything still standing. That saves a statement a job.
    async fn in_savepoint(tx: &mut Tx<'static>, job: WriteJob) -> Result<()> {
        db::query("SAVEPOINT tarn_write")
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        let outcome = job(tx).await;
        if outcome.is_err() {
            db::query("ROLLBACK TO tarn_write")
                .execute(&mut **tx)
                .await
                .map_err(db_error)?;
        }
        outcome
    }
}

impl Store {
    /// Runs `write` in a transaction and returns its value once committed: through group commit
    /// on SQLite, in a transaction of its own on PostgreSQL.
    async fn write<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx<'static>) -> WriteFuture<'t, T> + Send + 'static,
    {
        match &self.group_commit {
            Some(group_commit) => {
                let (value_tx, value_rx) = tokio::sync::oneshot::channel();
                let job: WriteJob = Box::new(move |tx| {
                    Box::pin(async move {
                        let value = write(tx).await?;
                        let _ = value_tx.send(value);
                        Ok(())
                    })
                });
                group_commit.submit(job).await?;
                value_rx.await.map_err(|_| writer_stopped())
            }
            None => {
                let mut tx = self.begin().await?;
                let value = write(&mut tx).await?;
                tx.commit().await.map_err(db_error)?;
                Ok(value)
            }
        }
    }
}

async fn set_run_stage(
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
async fn upsert_run_tags(tx: &mut Tx<'_>, run: &ActiveRun<'_>, tags: &[KeyValue]) -> Result<bool> {
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
async fn insert_params(tx: &mut Tx<'_>, run: &ActiveRun<'_>, params: &[KeyValue]) -> Result<()> {
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
fn stored_value(value: f64) -> (f64, bool) {
    if value.is_nan() {
        (0.0, true)
    } else {
        (tarn_core::validation::clamp_metric_value(value), false)
    }
}

/// Inserts metric points into an active run; `latest_metrics` follows by trigger. True when
/// fewer points were written than given (the run is not active, or points were logged before).
async fn insert_metrics(tx: &mut Tx<'_>, run: &ActiveRun<'_>, metrics: &[Metric]) -> Result<bool> {
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

async fn upsert_model_pairs(
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

#[async_trait]
impl IdentityStore for Store {
    async fn create_principal(
        &self,
        name: &str,
        kind: PrincipalKind,
        is_admin: bool,
        password_hash: Option<&str>,
    ) -> Result<PrincipalRecord> {
        let result = db::query(
            "INSERT INTO principals (name, kind, is_admin, active, password_hash, created_at) VALUES ($1, $2, $3, TRUE, $4, $5) RETURNING *",
        )
        .bind(name)
        .bind(kind.as_str())
        .bind(is_admin)
        .bind(password_hash)
        .bind(now_millis())
        .fetch_one(&self.write)
        .await;
        match result {
            Err(err) if is_unique_violation(&err) => Err(Error::already_exists(format!(
                "Principal '{name}' already exists"
            ))),
            Err(err) => Err(db_error(err)),
            Ok(row) => row_principal(&row).map_err(db_error),
        }
    }

    async fn get_principal(&self, name: &str) -> Result<PrincipalRecord> {
        let row = db::query("SELECT * FROM principals WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found(format!("Principal '{name}' does not exist")))?;
        row_principal(&row).map_err(db_error)
    }

    async fn list_principals(&self, kind: Option<PrincipalKind>) -> Result<Vec<PrincipalRecord>> {
        let rows =
            db::query("SELECT * FROM principals WHERE ($1 IS NULL OR kind = $1) ORDER BY name")
                .bind(kind.map(PrincipalKind::as_str))
                .fetch_all(&self.read)
                .await
                .map_err(db_error)?;
        rows.iter()
            .map(row_principal)
            .collect::<std::result::Result<_, _>>()
            .map_err(db_error)
    }

    async fn set_password_hash(&self, name: &str, password_hash: &str) -> Result<()> {
        let result = db::query(
            "UPDATE principals SET password_hash = $1 WHERE name = $2 AND kind = 'user'",
        )
        .bind(password_hash)
        .bind(name)
        .execute(&self.write)
        .await
        .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Err(Error::not_found(format!("User '{name}' does not exist")));
        }
        Ok(())
    }

    async fn set_active(&self, name: &str, active: bool) -> Result<()> {
        let result = db::query("UPDATE principals SET active = $1 WHERE name = $2")
            .bind(active)
            .bind(name)
            .execute(&self.write)
            .await
            .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "Principal '{name}' does not exist"
            )));
        }
        Ok(())
    }

    async fn active_principal(&self, name: &str) -> Result<Principal> {
        let record = self.get_principal(name).await?;
        if !record.active {
            return Err(Error::permission_denied(format!(
                "Principal '{name}' is deactivated"
            )));
        }
        self.principal_with_groups(record).await
    }

    async fn password_login(&self, name: &str) -> Result<Option<(String, Principal)>> {
        let Some(row) = db::query(
            "SELECT * FROM principals WHERE name = $1 AND kind = 'user' AND active = TRUE",
        )
        .bind(name)
        .fetch_optional(&self.read)
        .await
        .map_err(db_error)?
        else {
            return Ok(None);
        };
        let Some(hash) = row
            .try_get::<Option<String>, _>("password_hash")
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        let record = row_principal(&row).map_err(db_error)?;
        Ok(Some((hash, self.principal_with_groups(record).await?)))
    }

    async fn add_group_member(&self, group: &str, member: &str) -> Result<()> {
        let group_record = self.get_principal(group).await?;
        if group_record.kind != PrincipalKind::Group {
            return Err(Error::invalid(format!("'{group}' is not a group")));
        }
        let member_id = self.principal_id(member).await?;
        db::query("INSERT INTO group_members (group_id, member_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(group_record.id)
            .bind(member_id)
            .execute(&self.write)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn remove_group_member(&self, group: &str, member: &str) -> Result<()> {
        let group_id = self.principal_id(group).await?;
        let member_id = self.principal_id(member).await?;
        db::query("DELETE FROM group_members WHERE group_id = $1 AND member_id = $2")
            .bind(group_id)
            .bind(member_id)
            .execute(&self.write)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn group_members(&self, group: &str) -> Result<Vec<PrincipalRecord>> {
        let group_id = self.principal_id(group).await?;
        let rows = db::query("SELECT p.* FROM principals p JOIN group_members g ON g.member_id = p.id WHERE g.group_id = $1 ORDER BY p.name")
            .bind(group_id)
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(row_principal)
            .collect::<std::result::Result<_, _>>()
            .map_err(db_error)
    }

    async fn create_token(
        &self,
        token_id: &str,
        principal_name: &str,
        token_hash: &str,
        comment: &str,
        expires_at: Option<i64>,
    ) -> Result<TokenInfo> {
        let principal_id = self.principal_id(principal_name).await?;
        let now = now_millis();
        db::query(
            "INSERT INTO tokens (token_id, principal_id, token_hash, comment, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_id)
        .bind(principal_id)
        .bind(token_hash)
        .bind(comment)
        .bind(now)
        .bind(expires_at)
        .execute(&self.write)
        .await
        .map_err(db_error)?;
        Ok(TokenInfo {
            token_id: token_id.to_string(),
            principal_id,
            principal_name: principal_name.to_string(),
            comment: comment.to_string(),
            created_at: now,
            expires_at,
        })
    }

    async fn principal_for_token(&self, token_hash: &str, now: i64) -> Result<Option<Principal>> {
        let row = db::query(
            "SELECT p.* FROM tokens t JOIN principals p ON p.id = t.principal_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2) AND p.active = TRUE",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.read)
        .await
        .map_err(db_error)?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some(
                self.principal_with_groups(row_principal(&row).map_err(db_error)?)
                    .await?,
            )),
        }
    }

    async fn list_tokens(&self, principal_name: Option<&str>) -> Result<Vec<TokenInfo>> {
        let rows = db::query(
            "SELECT t.*, p.name FROM tokens t JOIN principals p ON p.id = t.principal_id \
             WHERE t.revoked_at IS NULL AND ($1 IS NULL OR p.name = $1) ORDER BY t.created_at, t.token_id",
        )
        .bind(principal_name)
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(row_token)
            .collect::<std::result::Result<_, _>>()
            .map_err(db_error)
    }

    async fn revoke_token(&self, token_id: &str) -> Result<()> {
        let result = db::query(
            "UPDATE tokens SET revoked_at = $1 WHERE token_id = $2 AND revoked_at IS NULL",
        )
        .bind(now_millis())
        .bind(token_id)
        .execute(&self.write)
        .await
        .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "Token '{token_id}' does not exist"
            )));
        }
        Ok(())
    }

    async fn token_owner(&self, token_id: &str) -> Result<i64> {
        db::query_scalar(
            "SELECT principal_id FROM tokens WHERE token_id = $1 AND revoked_at IS NULL",
        )
        .bind(token_id)
        .fetch_optional(&self.read)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found(format!("Token '{token_id}' does not exist")))
    }
}

#[async_trait]
impl WorkspaceStore for Store {
    async fn ensure_workspace(&self, name: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let inserted = db::query(
            "INSERT INTO workspaces (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(now_millis())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected()
            == 1;
        if inserted {
            // Every workspace has MLflow's "Default" experiment 0.
            insert_experiment(&mut tx, name, 0, "Default", "mlflow-artifacts:/0", None).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(inserted)
    }

    async fn list_workspaces(&self) -> Result<Vec<String>> {
        db::query_scalar("SELECT name FROM workspaces ORDER BY name")
            .fetch_all(&self.read)
            .await
            .map_err(db_error)
    }

    async fn workspace_exists(&self, name: &str) -> Result<bool> {
        let found: Option<String> =
            db::query_scalar("SELECT name FROM workspaces WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.read)
                .await
                .map_err(db_error)?;
        Ok(found.is_some())
    }

    async fn add_workspace_member(&self, workspace: &str, principal_name: &str) -> Result<()> {
        if !self.workspace_exists(workspace).await? {
            return Err(Error::not_found(format!(
                "Workspace '{workspace}' does not exist"
            )));
        }
        let principal_id = self.principal_id(principal_name).await?;
        db::query("INSERT INTO workspace_members (workspace, principal_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(workspace)
            .bind(principal_id)
            .execute(&self.write)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn remove_workspace_member(&self, workspace: &str, principal_name: &str) -> Result<()> {
        let principal_id = self.principal_id(principal_name).await?;
        db::query("DELETE FROM workspace_members WHERE workspace = $1 AND principal_id = $2")
            .bind(workspace)
            .bind(principal_id)
            .execute(&self.write)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn workspace_members(&self, workspace: &str) -> Result<Vec<PrincipalRecord>> {
        let rows = db::query(
            "SELECT p.* FROM principals p JOIN workspace_members w ON w.principal_id = p.id WHERE w.workspace = $1 ORDER BY p.name",
        )
        .bind(workspace)
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(row_principal)
            .collect::<std::result::Result<_, _>>()
            .map_err(db_error)
    }

    async fn is_workspace_member(&self, workspace: &str, grantee_ids: &[i64]) -> Result<bool> {
        if grantee_ids.is_empty() {
            return Ok(false);
        }
        let mut builder = Builder::new("SELECT COUNT(*) FROM workspace_members WHERE workspace = ");
        builder.push_bind(workspace.to_string());
        builder.push(" AND principal_id IN ");
        push_in_list(&mut builder, grantee_ids.iter().copied());
        let count: i64 = builder
            .build_query_scalar()
            .fetch_one(&self.read)
            .await
            .map_err(db_error)?;
        Ok(count > 0)
    }
}

/// The levels granted on an object to any of `grantee_ids`, read through `executor` (the
/// reader pool, or a write transaction that decides on them).
async fn granted_levels_on<'e, E>(
    executor: E,
    workspace: &str,
    object_type: ObjectType,
    object_id: &str,
    grantee_ids: &[i64],
) -> Result<Vec<PermissionLevel>>
where
    E: db::Executor<'e>,
{
    if grantee_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut builder = Builder::new("SELECT level FROM acl WHERE workspace = ");
    builder.push_bind(workspace.to_string());
    builder.push(" AND object_type = ");
    builder.push_bind(object_type.as_str());
    builder.push(" AND object_id = ");
    builder.push_bind(object_id.to_string());
    builder.push(" AND principal_id IN ");
    push_in_list(&mut builder, grantee_ids.iter().copied());
    let levels: Vec<String> = builder
        .build_query_scalar()
        .fetch_all(executor)
        .await
        .map_err(db_error)?;
    Ok(levels
        .iter()
        .filter_map(|l| PermissionLevel::parse(l))
        .collect())
}

#[async_trait]
impl PermissionStore for Store {
    async fn granted_levels(
        &self,
        workspace: &str,
        object_type: ObjectType,
        object_id: &str,
        grantee_ids: &[i64],
    ) -> Result<Vec<PermissionLevel>> {
        granted_levels_on(&self.read, workspace, object_type, object_id, grantee_ids).await
    }

    async fn object_grants(
        &self,
        workspace: &str,
        object_type: ObjectType,
        object_id: &str,
    ) -> Result<Vec<Grant>> {
        let rows = db::query(
            "SELECT a.principal_id, a.level, p.name, p.kind FROM acl a JOIN principals p ON p.id = a.principal_id \
             WHERE a.workspace = $1 AND a.object_type = $2 AND a.object_id = $3 ORDER BY p.name",
        )
        .bind(workspace)
        .bind(object_type.as_str())
        .bind(object_id)
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        let mut grants = Vec::with_capacity(rows.len());
        for row in rows {
            let level: String = row.try_get("level").map_err(db_error)?;
            let kind: String = row.try_get("kind").map_err(db_error)?;
            if let (Some(level), Some(kind)) =
                (PermissionLevel::parse(&level), PrincipalKind::parse(&kind))
            {
                grants.push(Grant {
                    principal_id: row.try_get("principal_id").map_err(db_error)?,
                    principal_name: row.try_get("name").map_err(db_error)?,
                    principal_kind: kind,
                    level,
                });
            }
        }
        Ok(grants)
    }

    async fn update_grants(
        &self,
        workspace: &str,
        object_type: ObjectType,
        object_id: &str,
        grants: &[(String, PermissionLevel)],
        actor: &tarn_core::registry::Actor,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        write_grants(&mut tx, workspace, object_type, object_id, grants).await?;
        record_grant_change(
            &mut tx,
            workspace,
            object_type,
            object_id,
            grants,
            "updated",
            actor,
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn replace_grants(
        &self,
        workspace: &str,
        object_type: ObjectType,
        object_id: &str,
        grants: &[(String, PermissionLevel)],
        actor: &tarn_core::registry::Actor,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        record_grant_change(
            &mut tx,
            workspace,
            object_type,
            object_id,
            grants,
            "replaced",
            actor,
        )
        .await?;
        delete_grants(&mut tx, workspace, object_type, object_id).await?;
        write_grants(&mut tx, workspace, object_type, object_id, grants).await?;
        tx.commit().await.map_err(db_error)
    }
}

/// Permission changes belong to the audit trail, in the same transaction as the change.
async fn record_grant_change(
    tx: &mut Tx<'_>,
    workspace: &str,
    object_type: ObjectType,
    object_id: &str,
    grants: &[(String, PermissionLevel)],
    action: &str,
    actor: &tarn_core::registry::Actor,
) -> Result<()> {
    let listed: Vec<serde_json::Value> = grants
        .iter()
        .map(|(name, level)| serde_json::json!({ "principal": name, "permission_level": level.as_str() }))
        .collect();
    insert_event(
        tx,
        workspace,
        actor,
        "permissions",
        action,
        &format!("{}/{object_id}", object_type.as_str()),
        serde_json::json!({ "object_type": object_type.as_str(), "object_id": object_id, "grants": listed }),
        now_millis(),
    )
    .await
}

async fn write_grants(
    tx: &mut Tx<'_>,
    workspace: &str,
    object_type: ObjectType,
    object_id: &str,
    grants: &[(String, PermissionLevel)],
) -> Result<()> {
    for (principal_name, level) in grants {
        let principal_id: i64 = db::query_scalar("SELECT id FROM principals WHERE name = $1")
            .bind(principal_name)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                Error::invalid(format!("Principal '{principal_name}' does not exist"))
            })?;
        db::query(
            "INSERT INTO acl (workspace, object_type, object_id, principal_id, level) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (workspace, object_type, object_id, principal_id) DO UPDATE SET level = excluded.level",
        )
        .bind(workspace)
        .bind(object_type.as_str())
        .bind(object_id)
        .bind(principal_id)
        .bind(level.as_str())
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

impl MetaStore for Store {
    fn backend_name(&self) -> &'static str {
        match DIALECT {
            crate::Dialect::Sqlite => "sqlite",
            crate::Dialect::Postgres => "postgresql",
        }
    }
}
