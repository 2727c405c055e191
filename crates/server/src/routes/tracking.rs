//! MLflow tracking handlers: experiments, runs, metrics, params, tags, inputs and outputs.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::Error;
use tarn_core::auth::PermissionLevel;
use tarn_core::caller::Caller;
use tarn_core::entities::{
    DatasetInput, Experiment, KeyValue, LogBatch, Metric, ModelOutput, NewRun, Run, RunStatus,
    RunUpdate, ViewType,
};
use tarn_core::search;
use tarn_core::store::{ReadableBy, SearchExperiments, SearchRuns};
use tarn_core::validation;

use super::pages::{PageBody, max_results, page_body};
use crate::error::ApiResult;
use crate::extract::{Req, de};
use crate::state::AppState;
use tarn_identity::access;

type JsonResult = ApiResult<Json<Value>>;

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, Error> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::invalid(format!("Missing value for required parameter '{name}'.")))
}

fn view_type(value: &Option<String>) -> Result<ViewType, Error> {
    match value {
        None => Ok(ViewType::ActiveOnly),
        Some(v) => {
            ViewType::parse(v).ok_or_else(|| Error::invalid(format!("Invalid view type '{v}'")))
        }
    }
}

#[derive(Deserialize)]
pub struct CreateExperiment {
    name: Option<String>,
    artifact_location: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

pub async fn create_experiment(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<CreateExperiment>,
) -> JsonResult {
    let name = req.name.as_deref().unwrap_or("");
    validation::validate_experiment_name(name)?;
    for tag in &req.tags {
        validation::validate_experiment_tag(tag)?;
    }
    // Artifacts go through the proxy; a client-chosen location could point at another
    // workspace's files.
    if let Some(location) = req.artifact_location.as_deref().filter(|l| !l.is_empty()) {
        return Err(Error::invalid(format!(
            "Custom artifact locations are not supported ('{location}'): tarn stores artifacts under its artifact root"
        ))
        .into());
    }
    let id = state
        .store
        .create_experiment(&ctx.workspace, name, None, &req.tags, ctx.principal.id)
        .await?;
    Ok(Json(json!({ "experiment_id": id })))
}

#[derive(Deserialize)]
pub struct ExperimentIdArg {
    #[serde(default, deserialize_with = "de::opt_id")]
    experiment_id: Option<String>,
}

pub async fn get_experiment(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<ExperimentIdArg>,
) -> JsonResult {
    let id = access::experiment(
        state.store.as_ref(),
        &ctx,
        required(&req.experiment_id, "experiment_id")?,
        PermissionLevel::CanRead,
    )
    .await?;
    let experiment = state.store.get_experiment(&ctx.workspace, id).await?;
    Ok(Json(json!({ "experiment": experiment })))
}

#[derive(Deserialize)]
pub struct ExperimentNameArg {
    experiment_name: Option<String>,
}

pub async fn get_experiment_by_name(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<ExperimentNameArg>,
) -> JsonResult {
    let name = required(&req.experiment_name, "experiment_name")?;
    let experiment = state
        .store
        .get_experiment_by_name(&ctx.workspace, name)
        .await?;
    access::experiment(
        state.store.as_ref(),
        &ctx,
        &experiment.experiment_id,
        PermissionLevel::CanRead,
    )
    .await?;
    Ok(Json(json!({ "experiment": experiment })))
}

#[derive(Deserialize)]
pub struct SearchExperimentsReq {
    #[serde(default, deserialize_with = "de::opt_i64")]
    max_results: Option<i64>,
    page_token: Option<String>,
    filter: Option<String>,
    #[serde(default, deserialize_with = "de::string_list")]
    order_by: Vec<String>,
    view_type: Option<String>,
}

pub async fn search_experiments(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<SearchExperimentsReq>,
) -> ApiResult<Json<PageBody<Experiment>>> {
    let query = SearchExperiments {
        filter: search::parse_experiment_filter(req.filter.as_deref().unwrap_or(""))?,
        order_by: req
            .order_by
            .iter()
            .map(|o| search::parse_experiment_order_by(o))
            .collect::<Result<_, _>>()?,
        view_type: view_type(&req.view_type)?,
        max_results: max_results(req.max_results, 1000, 50000)?,
        offset: search::decode_page_token(req.page_token.as_deref().unwrap_or(""))?,
        readable_by: ReadableBy::for_principal(&ctx.principal),
    };
    let page = state
        .store
        .search_experiments(&ctx.workspace, &query)
        .await?;
    Ok(page_body("experiments", page.items, page.next_offset))
}

#[derive(Deserialize)]
pub struct UpdateExperiment {
    #[serde(default, deserialize_with = "de::opt_id")]
    experiment_id: Option<String>,
    new_name: Option<String>,
}

pub async fn update_experiment(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<UpdateExperiment>,
) -> JsonResult {
    let id = access::experiment(
        state.store.as_ref(),
        &ctx,
        required(&req.experiment_id, "experiment_id")?,
        PermissionLevel::CanManage,
    )
    .await?;
    if let Some(new_name) = &req.new_name {
        validation::validate_experiment_name(new_name)?;
        state
            .store
            .rename_experiment(&ctx.workspace, id, new_name)
            .await?;
    }
    Ok(Json(json!({})))
}

pub async fn delete_experiment(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<ExperimentIdArg>,
) -> JsonResult {
    let id = access::experiment(
        state.store.as_ref(),
        &ctx,
        required(&req.experiment_id, "experiment_id")?,
        PermissionLevel::CanManage,
    )
    .await?;
    state.store.delete_experiment(&ctx.workspace, id).await?;
    Ok(Json(json!({})))
}

pub async fn restore_experiment(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<ExperimentIdArg>,
) -> JsonResult {
    let id = access::experiment(
        state.store.as_ref(),
        &ctx,
        required(&req.experiment_id, "experiment_id")?,
        PermissionLevel::CanManage,
    )
    .await?;
    state.store.restore_experiment(&ctx.workspace, id).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct ExperimentTagReq {
    #[serde(default, deserialize_with = "de::opt_id")]
    experiment_id: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

pub async fn set_experiment_tag(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<ExperimentTagReq>,
) -> JsonResult {
    let id = access::experiment(
        state.store.as_ref(),
        &ctx,
        required(&req.experiment_id, "experiment_id")?,
        PermissionLevel::CanEdit,
    )
    .await?;
    let tag = KeyValue {
        key: required(&req.key, "key")?.to_string(),
        value: req.value.clone().unwrap_or_default(),
    };
    validation::validate_experiment_tag(&tag)?;
    state
        .store
        .set_experiment_tag(&ctx.workspace, id, &tag)
        .await?;
    Ok(Json(json!({})))
}

pub async fn delete_experiment_tag(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<ExperimentTagReq>,
) -> JsonResult {
    let id = access::experiment(
        state.store.as_ref(),
        &ctx,
        required(&req.experiment_id, "experiment_id")?,
        PermissionLevel::CanEdit,
    )
    .await?;
    state
        .store
        .delete_experiment_tag(&ctx.workspace, id, required(&req.key, "key")?)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct CreateRun {
    #[serde(default, deserialize_with = "de::opt_id")]
    experiment_id: Option<String>,
    run_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    start_time: Option<i64>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

pub async fn create_run(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<CreateRun>,
) -> JsonResult {
    let experiment_id = req.experiment_id.clone().unwrap_or_else(|| "0".to_string());
    access::experiment(
        state.store.as_ref(),
        &ctx,
        &experiment_id,
        PermissionLevel::CanEdit,
    )
    .await?;
    let tags = req
        .tags
        .iter()
        .map(validation::validate_run_tag)
        .collect::<Result<Vec<_>, _>>()?;
    let run_name = req
        .run_name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            tags.iter()
                .find(|t| t.key == "mlflow.runName")
                .map(|t| t.value.clone())
        })
        .unwrap_or_else(|| tarn_core::ids::random_run_name(rand::random()));
    let run = NewRun {
        experiment_id,
        // The authenticated principal, not what the client claims.
        user_id: ctx.principal.name.clone(),
        run_name,
        start_time: req.start_time.unwrap_or_else(tarn_core::ids::now_millis),
        tags,
    };
    let run = state.store.create_run(&ctx.workspace, &run).await?;
    Ok(Json(json!({ "run": run })))
}

#[derive(Deserialize)]
pub struct RunIdArg {
    // Kept as JSON values: inside `#[serde(flatten)]` a type error would lose the field name.
    run_id: Option<Value>,
    run_uuid: Option<Value>,
}

impl RunIdArg {
    fn get(&self) -> Result<&str, Error> {
        let (name, value) = match (&self.run_id, &self.run_uuid) {
            (Some(value), _) => ("run_id", value),
            (None, Some(value)) => ("run_uuid", value),
            (None, None) => {
                return Err(Error::invalid(
                    "Missing value for required parameter 'run_id'.",
                ));
            }
        };
        match value {
            Value::String(id) if !id.is_empty() => Ok(id),
            Value::String(_) | Value::Null => Err(Error::invalid(
                "Missing value for required parameter 'run_id'.",
            )),
            other => Err(Error::invalid(format!(
                "Invalid value {other} for parameter '{name}' supplied: expected a string"
            ))),
        }
    }
}

pub async fn get_run(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<RunIdArg>,
) -> JsonResult {
    let run_id = req.get()?;
    access::run(state.store.as_ref(), &ctx, run_id, PermissionLevel::CanRead).await?;
    Ok(Json(
        json!({ "run": state.store.get_run(&ctx.workspace, run_id).await? }),
    ))
}

#[derive(Deserialize)]
pub struct UpdateRun {
    #[serde(flatten)]
    id: RunIdArg,
    status: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    end_time: Option<i64>,
    run_name: Option<String>,
}

pub async fn update_run(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<UpdateRun>,
) -> JsonResult {
    let run_id = req.id.get()?;
    access::run(state.store.as_ref(), &ctx, run_id, PermissionLevel::CanEdit).await?;
    let status = match &req.status {
        None => None,
        Some(s) => Some(
            RunStatus::parse(s)
                .ok_or_else(|| Error::invalid(format!("Invalid run status '{s}'")))?,
        ),
    };
    let update = RunUpdate {
        status,
        end_time: req.end_time,
        run_name: req.run_name.clone().filter(|n| !n.is_empty()),
    };
    let run_info = state
        .store
        .update_run(&ctx.workspace, run_id, &update)
        .await?;
    Ok(Json(json!({ "run_info": run_info })))
}

/// Deleting and restoring runs is CAN_EDIT's, as in Databricks' experiment permissions
/// ("create, delete, and restore runs"); only purging is CAN_MANAGE's.
pub async fn delete_run(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<RunIdArg>,
) -> JsonResult {
    let run_id = req.get()?;
    access::run(state.store.as_ref(), &ctx, run_id, PermissionLevel::CanEdit).await?;
    state.store.delete_run(&ctx.workspace, run_id).await?;
    Ok(Json(json!({})))
}

pub async fn restore_run(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<RunIdArg>,
) -> JsonResult {
    let run_id = req.get()?;
    access::run(state.store.as_ref(), &ctx, run_id, PermissionLevel::CanEdit).await?;
    state.store.restore_run(&ctx.workspace, run_id).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct LogMetric {
    #[serde(flatten)]
    id: RunIdArg,
    key: Option<String>,
    #[serde(default, deserialize_with = "de_opt_f64")]
    value: Option<f64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    timestamp: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    step: Option<i64>,
    model_id: Option<String>,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

fn de_opt_f64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    de::f64_value(d).map(Some)
}

pub async fn log_metric(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<LogMetric>,
) -> JsonResult {
    let run_id = req.id.get()?;
    let metric = Metric {
        key: required(&req.key, "key")?.to_string(),
        value: req
            .value
            .ok_or_else(|| Error::invalid("Missing value for required parameter 'value'."))?,
        timestamp: req.timestamp.unwrap_or_else(tarn_core::ids::now_millis),
        step: req.step.unwrap_or(0),
        dataset_name: req.dataset_name.clone(),
        dataset_digest: req.dataset_digest.clone(),
        model_id: req.model_id.clone(),
        run_id: None,
    };
    write_batch(
        &state,
        &ctx,
        run_id,
        LogBatch {
            metrics: vec![metric],
            ..Default::default()
        },
    )
    .await
}

#[derive(Deserialize)]
pub struct KeyValueReq {
    #[serde(flatten)]
    id: RunIdArg,
    key: Option<String>,
    value: Option<String>,
}

impl KeyValueReq {
    fn pair(&self) -> Result<(&str, KeyValue), Error> {
        let pair = KeyValue {
            key: required(&self.key, "key")?.to_string(),
            value: self.value.clone().unwrap_or_default(),
        };
        Ok((self.id.get()?, pair))
    }
}

pub async fn log_param(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<KeyValueReq>,
) -> JsonResult {
    let (run_id, param) = req.pair()?;
    let batch = LogBatch {
        params: vec![param],
        ..Default::default()
    };
    write_batch(&state, &ctx, run_id, batch).await
}

pub async fn set_tag(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<KeyValueReq>,
) -> JsonResult {
    let (run_id, tag) = req.pair()?;
    let batch = LogBatch {
        tags: vec![tag],
        ..Default::default()
    };
    write_batch(&state, &ctx, run_id, batch).await
}

pub async fn delete_tag(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<KeyValueReq>,
) -> JsonResult {
    let run_id = req.id.get()?;
    access::run(state.store.as_ref(), &ctx, run_id, PermissionLevel::CanEdit).await?;
    state
        .store
        .delete_run_tag(&ctx.workspace, run_id, required(&req.key, "key")?)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct WireMetric {
    key: Option<String>,
    #[serde(deserialize_with = "de::f64_value")]
    value: f64,
    #[serde(default, deserialize_with = "de::opt_i64")]
    timestamp: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    step: Option<i64>,
    model_id: Option<String>,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

#[derive(Deserialize)]
pub struct LogBatchReq {
    #[serde(flatten)]
    id: RunIdArg,
    #[serde(default)]
    metrics: Vec<WireMetric>,
    #[serde(default)]
    params: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

pub async fn log_batch(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<LogBatchReq>,
) -> JsonResult {
    let run_id = req.id.get()?;
    let now = tarn_core::ids::now_millis();
    let metrics = req
        .metrics
        .into_iter()
        .map(|m| {
            Ok(Metric {
                key: m
                    .key
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| Error::invalid("Metric name cannot be None."))?,
                value: m.value,
                timestamp: m.timestamp.unwrap_or(now),
                step: m.step.unwrap_or(0),
                dataset_name: m.dataset_name,
                dataset_digest: m.dataset_digest,
                model_id: m.model_id,
                run_id: None,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    write_batch(
        &state,
        &ctx,
        run_id,
        LogBatch {
            metrics,
            params: req.params,
            tags: req.tags,
        },
    )
    .await
}

/// log-metric, log-parameter, set-tag and log-batch all come here: validate, check, write once.
async fn write_batch(state: &AppState, ctx: &Caller, run_id: &str, batch: LogBatch) -> JsonResult {
    let batch = validation::validate_batch(&batch)?;
    access::run(state.store.as_ref(), ctx, run_id, PermissionLevel::CanEdit).await?;
    state
        .store
        .log_batch(&ctx.workspace, run_id, &batch)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct LogInputs {
    #[serde(flatten)]
    id: RunIdArg,
    #[serde(default)]
    datasets: Vec<DatasetInput>,
    #[serde(default)]
    models: Vec<tarn_core::entities::ModelInput>,
}

pub async fn log_inputs(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<LogInputs>,
) -> JsonResult {
    let run_id = req.id.get()?;
    access::run(state.store.as_ref(), &ctx, run_id, PermissionLevel::CanEdit).await?;
    let model_ids: Vec<String> = req.models.into_iter().map(|m| m.model_id).collect();
    state
        .store
        .log_inputs(&ctx.workspace, run_id, &req.datasets, &model_ids)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct LogOutputs {
    #[serde(flatten)]
    id: RunIdArg,
    #[serde(default)]
    models: Vec<WireModelOutput>,
}

#[derive(Deserialize)]
pub struct WireModelOutput {
    model_id: String,
    #[serde(default, deserialize_with = "de::opt_i64")]
    step: Option<i64>,
}

pub async fn log_outputs(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<LogOutputs>,
) -> JsonResult {
    let run_id = req.id.get()?;
    access::run(state.store.as_ref(), &ctx, run_id, PermissionLevel::CanEdit).await?;
    let models: Vec<ModelOutput> = req
        .models
        .into_iter()
        .map(|m| ModelOutput {
            model_id: m.model_id,
            step: m.step.unwrap_or(0),
        })
        .collect();
    state
        .store
        .log_outputs(&ctx.workspace, run_id, &models)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct LogModelReq {
    #[serde(flatten)]
    id: RunIdArg,
    model_json: Option<String>,
}

/// Legacy `log-model`: MLflow appends the model's JSON to the run tag `mlflow.log-model.history`.
pub async fn log_model(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<LogModelReq>,
) -> JsonResult {
    let run_id = req.id.get()?;
    access::run(state.store.as_ref(), &ctx, run_id, PermissionLevel::CanEdit).await?;
    let model: Value = serde_json::from_str(required(&req.model_json, "model_json")?)
        .map_err(|e| Error::invalid(format!("Invalid model_json: {e}")))?;
    let run = state.store.get_run(&ctx.workspace, run_id).await?;
    let mut history: Vec<Value> = run
        .data
        .tags
        .iter()
        .find(|t| t.key == "mlflow.log-model.history")
        .and_then(|t| serde_json::from_str(&t.value).ok())
        .unwrap_or_default();
    history.push(model);
    let tag = KeyValue {
        key: "mlflow.log-model.history".into(),
        value: Value::Array(history).to_string(),
    };
    write_batch(
        &state,
        &ctx,
        run_id,
        LogBatch {
            tags: vec![tag],
            ..Default::default()
        },
    )
    .await
}

#[derive(Deserialize)]
pub struct MetricHistoryReq {
    #[serde(flatten)]
    id: RunIdArg,
    metric_key: Option<String>,
    page_token: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    max_results: Option<i64>,
}

pub async fn metric_history(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<MetricHistoryReq>,
) -> ApiResult<Json<PageBody<Metric>>> {
    let run_id = req.id.get()?;
    access::run(state.store.as_ref(), &ctx, run_id, PermissionLevel::CanRead).await?;
    let key = required(&req.metric_key, "metric_key")?;
    let offset = search::decode_page_token(req.page_token.as_deref().unwrap_or(""))?;
    let page = state
        .store
        .metric_history(
            &ctx.workspace,
            run_id,
            key,
            offset,
            max_results(req.max_results, 25000, 25000)?,
        )
        .await?;
    Ok(page_body("metrics", page.items, page.next_offset))
}

#[derive(Deserialize)]
pub struct SearchRunsReq {
    #[serde(default, deserialize_with = "de::string_list")]
    experiment_ids: Vec<String>,
    filter: Option<String>,
    run_view_type: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    max_results: Option<i64>,
    #[serde(default, deserialize_with = "de::string_list")]
    order_by: Vec<String>,
    page_token: Option<String>,
}

pub async fn search_runs(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<SearchRunsReq>,
) -> ApiResult<Json<PageBody<Run>>> {
    let filter = search::parse_run_filter(req.filter.as_deref().unwrap_or(""))?;
    let order_by = req
        .order_by
        .iter()
        .map(|o| search::parse_run_order_by(o))
        .collect::<Result<Vec<_>, _>>()?;
    let max_results = max_results(req.max_results, 1000, 50000)?;
    let offset = search::decode_page_token(req.page_token.as_deref().unwrap_or(""))?;
    // Experiments the caller may not read are left out, as MLflow's auth plugin does.
    let mut experiment_ids = Vec::with_capacity(req.experiment_ids.len());
    for id in &req.experiment_ids {
        match access::experiment(state.store.as_ref(), &ctx, id, PermissionLevel::CanRead).await {
            Ok(id) => experiment_ids.push(id),
            Err(err) if err.hides_object() => {}
            Err(err) => return Err(err.into()),
        }
    }
    let query = SearchRuns {
        experiment_ids,
        filter,
        order_by,
        view_type: view_type(&req.run_view_type)?,
        max_results,
        offset,
    };
    let page = state.store.search_runs(&ctx.workspace, &query).await?;
    Ok(page_body("runs", page.items, page.next_offset))
}
