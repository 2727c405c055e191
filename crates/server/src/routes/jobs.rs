//! Jobs in the Databricks Jobs API shape, at `/api/2.2/jobs` and `/api/2.1/jobs` (the SDK's
//! paths): create, get, list, reset, update, delete; run-now, runs/submit, runs/get, list,
//! cancel, cancel-all, get-output, delete. The use cases and their permission checks are
//! `tarn_jobs::manage`'s and `tarn_jobs::runs`'; settings are checked there before anything
//! is stored.

use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tarn_core::Error;
use tarn_core::auth::PermissionLevel;
use tarn_core::caller::Caller;
use tarn_core::jobs::{Job, JobRun, RunFilter, RunState, TaskRun};
use tarn_jobs::{manage, runs};

use super::mounted::Mounted;
use crate::error::ApiResult;
use crate::extract::{Req, de};
use crate::state::AppState;

type JsonResult = ApiResult<Json<Value>>;

/// Jobs listed per page when the client does not say (Databricks' default).
const DEFAULT_LIST_LIMIT: u64 = 20;

pub fn routes() -> Mounted {
    Mounted::new()
        .route("/create", post(create))
        .route("/get", get(get_job))
        .route("/list", get(list))
        .route("/reset", post(reset))
        .route("/update", post(update))
        .route("/delete", post(delete))
        .route("/run-now", post(run_now))
        .route("/runs/submit", post(submit))
        .route("/runs/get", get(get_run))
        .route("/runs/list", get(list_runs))
        .route("/runs/cancel", post(cancel_run))
        .route("/runs/cancel-all", post(cancel_all_runs))
        .route("/runs/get-output", get(get_run_output))
        .route("/runs/delete", post(delete_run))
        .route("/runs/repair", post(repair_run))
}

/// A job as `jobs/get` shows it; `jobs/list` leaves out the tasks and clusters unless asked.
fn job_json(job: &Job, expand_tasks: bool) -> Value {
    let mut settings = job.settings.clone();
    if !expand_tasks && let Value::Object(fields) = &mut settings {
        fields.remove("tasks");
        fields.remove("job_clusters");
    }
    json!({
        "job_id": job.job_id,
        "creator_user_name": job.creator_user_name,
        "run_as_user_name": job.run_as_user_name,
        "run_as_owner": job.run_as_user_name == job.creator_user_name,
        "settings": settings,
        "created_time": job.created_time,
    })
}

/// The body of `jobs/create`: the job's settings, beside the request-only fields.
pub async fn create(
    State(state): State<AppState>,
    ctx: Caller,
    Req(mut body): Req<Map<String, Value>>,
) -> JsonResult {
    if body
        .remove("access_control_list")
        .is_some_and(|acl| !acl.is_null())
    {
        return Err(Error::invalid(
            "access_control_list on jobs/create is not supported yet; set permissions with \
             /api/2.0/permissions/jobs/{job_id} after creating the job",
        )
        .into());
    }
    let job = manage::create(state.store.as_ref(), &ctx, Value::Object(body)).await?;
    Ok(Json(json!({ "job_id": job.job_id })))
}

#[derive(Deserialize)]
pub struct JobId {
    #[serde(default, deserialize_with = "de::opt_i64")]
    job_id: Option<i64>,
}

fn required(job_id: Option<i64>) -> Result<i64, Error> {
    job_id.ok_or_else(|| Error::invalid("job_id is required"))
}

pub async fn get_job(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<JobId>,
) -> JsonResult {
    let job = manage::job_for(
        state.store.as_ref(),
        &ctx,
        required(args.job_id)?,
        PermissionLevel::CanView,
    )
    .await?;
    Ok(Json(job_json(&job, true)))
}

#[derive(Deserialize)]
pub struct ListJobs {
    #[serde(default, deserialize_with = "de::opt_i64")]
    limit: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    offset: Option<i64>,
    page_token: Option<String>,
    name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    expand_tasks: Option<bool>,
}

pub async fn list(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<ListJobs>,
) -> JsonResult {
    let limit = page_limit(args.limit, DEFAULT_LIST_LIMIT, manage::MAX_LIST_LIMIT)?;
    let offset = page_offset(args.page_token.as_deref(), args.offset)?;
    let page = manage::list(
        state.store.as_ref(),
        &ctx,
        args.name.as_deref().filter(|name| !name.is_empty()),
        offset,
        limit,
    )
    .await?;
    let expand = args.expand_tasks.unwrap_or(false);
    let jobs: Vec<Value> = page.items.iter().map(|job| job_json(job, expand)).collect();
    Ok(Json(paged("jobs", jobs, page.next_offset)))
}

#[derive(Deserialize)]
pub struct ResetJob {
    #[serde(default, deserialize_with = "de::opt_i64")]
    job_id: Option<i64>,
    new_settings: Option<Value>,
}

pub async fn reset(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<ResetJob>,
) -> JsonResult {
    let settings = args
        .new_settings
        .ok_or_else(|| Error::invalid("new_settings is required"))?;
    manage::reset(state.store.as_ref(), &ctx, required(args.job_id)?, settings).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct UpdateJob {
    #[serde(default, deserialize_with = "de::opt_i64")]
    job_id: Option<i64>,
    new_settings: Option<Value>,
    #[serde(default)]
    fields_to_remove: Vec<String>,
}

pub async fn update(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<UpdateJob>,
) -> JsonResult {
    manage::update(
        state.store.as_ref(),
        &ctx,
        required(args.job_id)?,
        args.new_settings,
        &args.fields_to_remove,
    )
    .await?;
    Ok(Json(json!({})))
}

pub async fn delete(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<JobId>,
) -> JsonResult {
    manage::delete(state.store.as_ref(), &ctx, required(args.job_id)?).await?;
    Ok(Json(json!({})))
}

/// A state as the API shows it (`state`), and the newer `status` beside it.
fn state_json(state: &RunState) -> (Value, Value) {
    let mut legacy = json!({
        "life_cycle_state": state.life_cycle.as_str(),
        "state_message": state.message,
        "user_cancelled_or_timedout": state.user_cancelled_or_timedout,
    });
    let mut status = json!({ "state": state.life_cycle.status() });
    if let Some(result) = state.result {
        legacy["result_state"] = json!(result.as_str());
    }
    if let Some((code, kind)) = state.termination() {
        status["termination_details"] = json!({
            "code": code,
            "type": kind,
            "message": state.message,
        });
    }
    if state.life_cycle == tarn_core::jobs::LifeCycle::Queued {
        legacy["queue_reason"] = json!(state.message);
        status["queue_details"] = json!({
            "code": "ACTIVE_RUNS_LIMIT_REACHED",
            "message": state.message,
        });
    }
    (legacy, status)
}

/// How long something ran: from its start to its end, or to now while it runs.
fn duration(start: i64, end: i64) -> i64 {
    match (start, end) {
        (0, _) => 0,
        (start, 0) => tarn_core::ids::now_millis().saturating_sub(start),
        (start, end) => end.saturating_sub(start),
    }
}

/// A task run as `runs/get` lists it: the task's settings (an iteration's, its for_each
/// task's nested task) with how this attempt went.
fn task_json(run: &JobRun, task: &TaskRun) -> Value {
    let settings = run
        .settings
        .get("tasks")
        .and_then(Value::as_array)
        .and_then(|tasks| {
            tasks
                .iter()
                .find(|t| t.get("task_key").and_then(Value::as_str) == Some(task.task_key.as_str()))
        });
    let settings = match &task.iteration {
        Some(_) => settings.and_then(|settings| settings.pointer("/for_each_task/task")),
        None => settings,
    };
    let mut fields = settings
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let (state, status) = state_json(&task.state);
    let ran = duration(task.start_time, task.end_time);
    for (name, value) in [
        ("run_id", json!(task.run_id)),
        ("task_key", json!(task.task_key)),
        ("attempt_number", json!(task.attempt_number)),
        ("state", state),
        ("status", status),
        ("start_time", json!(task.start_time)),
        ("end_time", json!(task.end_time)),
        ("setup_duration", json!(0)),
        ("execution_duration", json!(ran)),
        ("cleanup_duration", json!(0)),
        ("run_duration", json!(ran)),
    ] {
        fields.insert(name.to_string(), value);
    }
    if let Some(outcome) = &task.outcome
        && let Some(Value::Object(condition)) = fields.get_mut("condition_task")
    {
        condition.insert("outcome".into(), json!(outcome));
    }
    if task.iteration.is_none()
        && let Some(Value::Object(for_each)) = fields.get_mut("for_each_task")
    {
        for_each.insert(
            "stats".into(),
            json!({ "task_run_stats": iteration_stats(&run.iterations_of(task.run_id)) }),
        );
    }
    Value::Object(fields)
}

/// How a for_each task's iterations stand, as Databricks counts them.
fn iteration_stats(iterations: &[&TaskRun]) -> Value {
    use tarn_core::jobs::LifeCycle;
    let count = |keep: &dyn Fn(&TaskRun) -> bool| iterations.iter().filter(|t| keep(t)).count();
    json!({
        "total_iterations": iterations.len(),
        "scheduled_iterations": count(&|t| t.state.life_cycle != LifeCycle::Blocked),
        "active_iterations": count(&|t| matches!(t.state.life_cycle, LifeCycle::Pending | LifeCycle::Running)),
        "completed_iterations": count(&|t| t.state.life_cycle.is_terminal()),
        "succeeded_iterations": count(&|t| t.state.result == Some(tarn_core::jobs::ResultState::Success)),
        "failed_iterations": count(&|t| t.state.life_cycle.is_terminal() && t.state.result != Some(tarn_core::jobs::ResultState::Success)),
    })
}

/// A run as `runs/get` shows it; `runs/list` leaves out the tasks unless asked.
fn run_json(run: &JobRun, with_tasks: bool, with_history: bool) -> Value {
    let (state, status) = state_json(&run.state);
    let declared: Vec<&Value> = run
        .settings
        .get("parameters")
        .and_then(Value::as_array)
        .map(|parameters| parameters.iter().collect())
        .unwrap_or_default();
    let job_parameters: Vec<Value> = declared
        .iter()
        .filter_map(|parameter| {
            let name = parameter.get("name")?.as_str()?;
            Some(json!({
                "name": name,
                "default": parameter.get("default").cloned().unwrap_or(json!("")),
                "value": run.job_parameters.get(name).cloned().unwrap_or(json!("")),
            }))
        })
        .collect();
    let ran = duration(run.start_time, run.end_time);
    let mut body = json!({
        "run_id": run.run_id,
        "number_in_job": run.run_id,
        "original_attempt_run_id": run.run_id,
        "run_name": run.run_name,
        "run_type": run.run_type,
        "trigger": run.trigger,
        "creator_user_name": run.creator_user_name,
        "run_as_user_name": run.run_as_user_name,
        "state": state,
        "status": status,
        "start_time": if run.start_time == 0 { run.created_time } else { run.start_time },
        "end_time": run.end_time,
        "setup_duration": 0,
        "execution_duration": ran,
        "cleanup_duration": 0,
        "run_duration": ran,
        "attempt_number": 0,
        "format": "MULTI_TASK",
    });
    if let Some(job_id) = run.job_id {
        body["job_id"] = json!(job_id);
    }
    if !job_parameters.is_empty() {
        body["job_parameters"] = Value::Array(job_parameters);
    }
    if run
        .overriding_parameters
        .as_object()
        .is_some_and(|fields| !fields.is_empty())
    {
        body["overriding_parameters"] = run.overriding_parameters.clone();
    }
    if !run.repair_history.is_empty() {
        let last = run.repair_history.len() - 1;
        let history: Vec<Value> = run
            .repair_history
            .iter()
            .enumerate()
            .map(|(index, attempt)| {
                // The current attempt ends as the run does.
                let (end_time, state) = if index == last {
                    (run.end_time, state_json(&run.state).0)
                } else {
                    let mut state = json!({});
                    if let Some(life_cycle) = &attempt.life_cycle_state {
                        state["life_cycle_state"] = json!(life_cycle);
                    }
                    if let Some(result) = &attempt.result_state {
                        state["result_state"] = json!(result);
                    }
                    (attempt.end_time, state)
                };
                json!({
                    "type": attempt.kind,
                    "id": attempt.id,
                    "start_time": attempt.start_time,
                    "end_time": end_time,
                    "state": state,
                    "task_run_ids": attempt.task_run_ids,
                })
            })
            .collect();
        body["repair_history"] = Value::Array(history);
    }
    if with_tasks {
        let tasks: Vec<Value> = if with_history {
            run.tasks
                .iter()
                .filter(|task| task.iteration.is_none())
                .map(|task| task_json(run, task))
                .collect()
        } else {
            run.latest_attempts()
                .into_iter()
                .map(|task| task_json(run, task))
                .collect()
        };
        body["tasks"] = Value::Array(tasks);
    }
    body
}

#[derive(Deserialize)]
pub struct RunNowArgs {
    #[serde(default, deserialize_with = "de::opt_i64")]
    job_id: Option<i64>,
    #[serde(default)]
    job_parameters: Map<String, Value>,
    #[serde(default)]
    only: Vec<String>,
    idempotency_token: Option<String>,
    python_params: Option<Value>,
    notebook_params: Option<Value>,
    python_named_params: Option<Value>,
}

pub async fn run_now(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<RunNowArgs>,
) -> JsonResult {
    let mut overriding = Map::new();
    for (name, value) in [
        ("python_params", args.python_params),
        ("notebook_params", args.notebook_params),
        ("python_named_params", args.python_named_params),
    ] {
        if let Some(value) = value.filter(|value| !value.is_null()) {
            overriding.insert(name.to_string(), value);
        }
    }
    let request = runs::RunNow {
        job_parameters: args.job_parameters,
        only: args.only,
        idempotency_token: args.idempotency_token,
        overriding,
    };
    let run = runs::run_now(
        state.store.as_ref(),
        &state.jobs.runner,
        &ctx,
        required(args.job_id)?,
        request,
    )
    .await?;
    Ok(Json(
        json!({ "run_id": run.run_id, "number_in_job": run.run_id }),
    ))
}

pub async fn submit(
    State(state): State<AppState>,
    ctx: Caller,
    Req(body): Req<Map<String, Value>>,
) -> JsonResult {
    let run = runs::submit(state.store.as_ref(), &state.jobs.runner, &ctx, body).await?;
    Ok(Json(json!({ "run_id": run.run_id })))
}

#[derive(Deserialize)]
pub struct RunId {
    #[serde(default, deserialize_with = "de::opt_i64")]
    run_id: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    include_history: Option<bool>,
}

fn required_run(run_id: Option<i64>) -> Result<i64, Error> {
    run_id.ok_or_else(|| Error::invalid("run_id is required"))
}

pub async fn get_run(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<RunId>,
) -> JsonResult {
    let run = runs::run_for(
        state.store.as_ref(),
        &ctx,
        required_run(args.run_id)?,
        PermissionLevel::CanView,
    )
    .await?;
    let mut body = run_json(&run, true, args.include_history.unwrap_or(false));
    // Asked with a for_each task run's id: its iterations too, as Databricks answers.
    let iterations = run.iterations_of(required_run(args.run_id)?);
    if !iterations.is_empty() {
        body["iterations"] = iterations
            .into_iter()
            .map(|task| task_json(&run, task))
            .collect();
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
pub struct ListRuns {
    #[serde(default, deserialize_with = "de::opt_i64")]
    job_id: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    active_only: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    completed_only: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    limit: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    offset: Option<i64>,
    page_token: Option<String>,
    run_type: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    start_time_from: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    start_time_to: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    expand_tasks: Option<bool>,
}

/// Runs listed per page when the client does not say (Databricks' default).
const DEFAULT_RUNS_LIMIT: u64 = 20;

pub async fn list_runs(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<ListRuns>,
) -> JsonResult {
    let limit = page_limit(args.limit, DEFAULT_RUNS_LIMIT, runs::MAX_LIST_LIMIT)?;
    let offset = page_offset(args.page_token.as_deref(), args.offset)?;
    if let Some(run_type) = &args.run_type
        && !["JOB_RUN", "WORKFLOW_RUN", "SUBMIT_RUN"].contains(&run_type.as_str())
    {
        return Err(Error::invalid(format!("Unknown run_type '{run_type}'")).into());
    }
    let filter = RunFilter {
        job_id: args.job_id,
        active_only: args.active_only.unwrap_or(false),
        completed_only: args.completed_only.unwrap_or(false),
        run_type: args.run_type,
        start_time_from: args.start_time_from,
        start_time_to: args.start_time_to,
    };
    let expand = args.expand_tasks.unwrap_or(false);
    let page = runs::list(state.store.as_ref(), &ctx, &filter, expand, offset, limit).await?;
    let listed: Vec<Value> = page
        .items
        .iter()
        .map(|run| run_json(run, expand, false))
        .collect();
    Ok(Json(paged("runs", listed, page.next_offset)))
}

/// A list page's body: its items (left out when none, as Databricks does), whether more
/// follow and the token of the next page.
fn paged(field: &str, items: Vec<Value>, next_offset: Option<u64>) -> Value {
    let mut body = json!({ "has_more": next_offset.is_some() });
    if !items.is_empty() {
        body[field] = Value::Array(items);
    }
    if let Some(next) = next_offset {
        body["next_page_token"] = json!(next.to_string());
    }
    body
}

/// A page's size: the default when not given, refused outside 1..=max.
fn page_limit(limit: Option<i64>, default: u64, max: u64) -> Result<u64, Error> {
    match limit {
        None | Some(0) => Ok(default),
        Some(limit) if (1..=max as i64).contains(&limit) => Ok(limit as u64),
        Some(limit) => Err(Error::invalid(format!(
            "limit must be between 1 and {max}, not {limit}"
        ))),
    }
}

/// Where a page starts: the page token is the offset the next page starts at.
fn page_offset(page_token: Option<&str>, offset: Option<i64>) -> Result<u64, Error> {
    match (page_token, offset) {
        (Some(token), _) if !token.is_empty() => token
            .parse::<u64>()
            .map_err(|_| Error::invalid(format!("Invalid page_token '{token}'"))),
        (_, Some(offset)) => u64::try_from(offset)
            .map_err(|_| Error::invalid(format!("offset must not be negative, not {offset}"))),
        _ => Ok(0),
    }
}

pub async fn cancel_run(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<RunId>,
) -> JsonResult {
    runs::cancel(
        state.store.as_ref(),
        &state.jobs.runner,
        &ctx,
        required_run(args.run_id)?,
    )
    .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct CancelAll {
    #[serde(default, deserialize_with = "de::opt_i64")]
    job_id: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    all_queued_runs: Option<bool>,
}

pub async fn cancel_all_runs(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<CancelAll>,
) -> JsonResult {
    if args.all_queued_runs == Some(true) && args.job_id.is_none() {
        return Err(Error::invalid(
            "all_queued_runs without job_id is not supported; name the job",
        )
        .into());
    }
    runs::cancel_all(
        state.store.as_ref(),
        &state.jobs.runner,
        &ctx,
        required(args.job_id)?,
    )
    .await?;
    Ok(Json(json!({})))
}

pub async fn get_run_output(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<RunId>,
) -> JsonResult {
    let runs::RunOutput {
        run,
        task,
        logs,
        logs_truncated,
    } = runs::output(
        state.store.as_ref(),
        &state.jobs.executor.folder,
        &ctx,
        required_run(args.run_id)?,
    )
    .await?;
    let mut body = json!({ "metadata": task_json(&run, &task) });
    if let Some(result) = &task.output.result {
        body["notebook_output"] = json!({ "result": result, "truncated": false });
    } else if body["metadata"].get("notebook_task").is_some() {
        body["notebook_output"] = json!({});
    }
    if !logs.is_empty() {
        body["logs"] = json!(logs);
        body["logs_truncated"] = json!(logs_truncated);
    }
    if let Some(error) = &task.output.error {
        body["error"] = json!(error);
    }
    if let Some(trace) = &task.output.error_trace {
        body["error_trace"] = json!(trace);
    }
    Ok(Json(body))
}

pub async fn delete_run(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<RunId>,
) -> JsonResult {
    runs::delete(state.store.as_ref(), &ctx, required_run(args.run_id)?).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct RepairArgs {
    #[serde(default, deserialize_with = "de::opt_i64")]
    run_id: Option<i64>,
    #[serde(default)]
    rerun_tasks: Vec<String>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    rerun_all_failed_tasks: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    rerun_dependent_tasks: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    latest_repair_id: Option<i64>,
    #[serde(default)]
    job_parameters: Map<String, Value>,
}

pub async fn repair_run(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<RepairArgs>,
) -> JsonResult {
    let request = runs::Repair {
        rerun_tasks: args.rerun_tasks,
        rerun_all_failed_tasks: args.rerun_all_failed_tasks.unwrap_or(false),
        rerun_dependent_tasks: args.rerun_dependent_tasks.unwrap_or(false),
        latest_repair_id: args.latest_repair_id,
        job_parameters: args.job_parameters,
    };
    let run = runs::repair(
        state.store.as_ref(),
        &state.jobs.runner,
        &ctx,
        required_run(args.run_id)?,
        request,
    )
    .await?;
    Ok(Json(json!({ "repair_id": run.latest_repair_id() })))
}
