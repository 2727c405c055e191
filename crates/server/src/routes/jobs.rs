//! Jobs in the Databricks Jobs API shape, at `/api/2.2/jobs` and `/api/2.1/jobs` (the SDK's
//! paths): create, get, list, reset, update, delete. The use cases and their permission checks
//! are `tarn_jobs::manage`'s; settings are checked there before anything is stored.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tarn_core::Error;
use tarn_core::auth::PermissionLevel;
use tarn_core::caller::Caller;
use tarn_core::jobs::Job;
use tarn_jobs::manage;

use crate::error::ApiResult;
use crate::extract::{Req, de};
use crate::state::AppState;

type JsonResult = ApiResult<Json<Value>>;

/// Jobs listed per page when the client does not say (Databricks' default).
const DEFAULT_LIST_LIMIT: u64 = 20;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/create", post(create))
        .route("/get", get(get_job))
        .route("/list", get(list))
        .route("/reset", post(reset))
        .route("/update", post(update))
        .route("/delete", post(delete))
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
    let limit = match args.limit {
        None | Some(0) => DEFAULT_LIST_LIMIT,
        Some(limit) if (1..=manage::MAX_LIST_LIMIT as i64).contains(&limit) => limit as u64,
        Some(limit) => {
            return Err(Error::invalid(format!(
                "limit must be between 1 and {}, not {limit}",
                manage::MAX_LIST_LIMIT
            ))
            .into());
        }
    };
    // The page token is where the next page starts, as the offset would say it.
    let offset = match (&args.page_token, args.offset) {
        (Some(token), _) if !token.is_empty() => token
            .parse::<u64>()
            .map_err(|_| Error::invalid(format!("Invalid page_token '{token}'")))?,
        (_, Some(offset)) => u64::try_from(offset)
            .map_err(|_| Error::invalid(format!("offset must not be negative, not {offset}")))?,
        _ => 0,
    };
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
    let mut body = json!({ "has_more": page.next_offset.is_some() });
    if !jobs.is_empty() {
        body["jobs"] = Value::Array(jobs);
    }
    if let Some(next) = page.next_offset {
        body["next_page_token"] = json!(next.to_string());
    }
    Ok(Json(body))
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
