//! Table monitors in Lakehouse Monitoring's REST shape
//! (`/api/2.1/unity-catalog/tables/{full_name}/monitor` and its `/refreshes`), as
//! `databricks-sdk`'s `w.quality_monitors` calls them, and their charts as SVG
//! (`/api/2.0/tarn/monitors/{full_name}/charts/{column}?metric=drift|mean|nulls|quality|rows`).
//! Thin over `tarn_monitor`.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::Error;
use tarn_core::caller::Caller;
use tarn_core::monitors::{MonitorSettings, RefreshTrigger};
use tarn_monitor::charts::{self, Metric};
use tarn_monitor::{manage, overview};

use super::mounted::Mounted;
use crate::error::ApiResult;
use crate::extract::{PathArgs, QueryArgs, Req};
use crate::state::AppState;

type JsonResult = ApiResult<Json<Value>>;

/// Mounted beside the catalog's routes (the path parameter keeps the catalog's name).
pub fn routes() -> Mounted {
    Mounted::new()
        .route(
            "/tables/{full_name}/monitor",
            get(get_monitor).post(create).put(update).delete(delete),
        )
        .route(
            "/tables/{full_name}/monitor/refreshes",
            get(list_refreshes).post(run_refresh),
        )
        .route(
            "/tables/{full_name}/monitor/refreshes/{refresh_id}",
            get(get_refresh),
        )
        .route(
            "/tables/{full_name}/monitor/refreshes/{refresh_id}/cancel",
            post(cancel_refresh),
        )
}

/// tarn's own monitor routes.
pub fn tarn_routes() -> Mounted {
    Mounted::new().route("/{full_name}/charts/{column}", get(chart))
}

#[derive(Deserialize)]
struct ChartArgs {
    #[serde(default)]
    metric: Option<String>,
    #[serde(default)]
    granularity: Option<String>,
}

async fn chart(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    QueryArgs(args): QueryArgs<ChartArgs>,
) -> ApiResult<Response> {
    let metric = args.metric.as_deref().unwrap_or("drift");
    let metric = Metric::parse(metric).ok_or_else(|| {
        Error::invalid(format!(
            "Invalid metric '{metric}': use drift, mean, nulls, quality or rows"
        ))
    })?;
    let column = path.get("column")?;
    let overview = overview::overview(
        &state.lake,
        state.store.as_ref(),
        &ctx,
        path.get("full_name")?,
        args.granularity.as_deref(),
    )
    .await?;
    let svg = charts::chart(&overview, column, metric).ok_or_else(|| {
        Error::not_found(format!(
            "The monitor has no {} metrics for column '{column}'",
            metric.as_str()
        ))
    })?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

fn refresh_id(path: &PathArgs) -> Result<i64, Error> {
    let text = path.get("refresh_id")?;
    text.parse()
        .map_err(|_| Error::invalid(format!("Invalid refresh_id '{text}': expected an integer")))
}

async fn create(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    Req(settings): Req<MonitorSettings>,
) -> JsonResult {
    let monitor = manage::create(
        &state.lake,
        state.store.as_ref(),
        &ctx,
        path.get("full_name")?,
        settings,
    )
    .await?;
    Ok(Json(monitor.info()))
}

async fn get_monitor(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    let monitor = manage::get(state.store.as_ref(), &ctx, path.get("full_name")?).await?;
    Ok(Json(monitor.info()))
}

async fn update(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    Req(settings): Req<MonitorSettings>,
) -> JsonResult {
    let monitor = manage::update(
        &state.lake,
        state.store.as_ref(),
        &ctx,
        path.get("full_name")?,
        settings,
    )
    .await?;
    Ok(Json(monitor.info()))
}

async fn delete(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    manage::delete(state.store.as_ref(), &ctx, path.get("full_name")?).await?;
    Ok(Json(json!({})))
}

async fn run_refresh(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    let refresh = manage::run_refresh(
        state.lake.clone(),
        state.store.clone(),
        &ctx,
        path.get("full_name")?,
        RefreshTrigger::Manual,
    )
    .await?;
    Ok(Json(json!(refresh)))
}

async fn list_refreshes(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    let refreshes =
        manage::list_refreshes(state.store.as_ref(), &ctx, path.get("full_name")?).await?;
    Ok(Json(json!({ "refreshes": refreshes })))
}

async fn get_refresh(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    let refresh = manage::get_refresh(
        state.store.as_ref(),
        &ctx,
        path.get("full_name")?,
        refresh_id(&path)?,
    )
    .await?;
    Ok(Json(json!(refresh)))
}

async fn cancel_refresh(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    manage::cancel_refresh(
        state.store.as_ref(),
        &ctx,
        path.get("full_name")?,
        refresh_id(&path)?,
    )
    .await?;
    Ok(Json(json!({})))
}
