//! Alerts in the shape of Databricks SQL alerts v2 (`/api/2.0/alerts`), as `databricks-sdk`'s
//! `w.alerts_v2` calls them, plus tarn's history and evaluate-now
//! (`/api/2.0/tarn/alerts/{id}/history|evaluate`). Thin over `tarn_monitor::alerts`.

use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::Error;
use tarn_core::alerts::AlertSettings;
use tarn_core::caller::Caller;
use tarn_monitor::alerts;

use super::mounted::Mounted;
use crate::error::ApiResult;
use crate::extract::{PathArgs, QueryArgs, Req, de};
use crate::state::AppState;

type JsonResult = ApiResult<Json<Value>>;

pub fn routes() -> Mounted {
    Mounted::new()
        .route("/", get(list).post(create))
        .route("/{id}", get(get_alert).patch(update).delete(delete))
}

/// tarn's own alert routes.
pub fn tarn_routes() -> Mounted {
    Mounted::new()
        .route("/{id}/history", get(history))
        .route("/{id}/evaluate", post(evaluate))
}

async fn create(
    State(state): State<AppState>,
    ctx: Caller,
    Req(settings): Req<AlertSettings>,
) -> JsonResult {
    let alert = alerts::create(&state.lake, state.store.as_ref(), &ctx, settings).await?;
    Ok(Json(alert.info()))
}

#[derive(Deserialize)]
struct ListArgs {
    #[serde(default, deserialize_with = "de::opt_i64")]
    page_size: Option<i64>,
    #[serde(default)]
    page_token: Option<String>,
}

/// Pages by position: the token is the index of the page's first alert.
async fn list(
    State(state): State<AppState>,
    ctx: Caller,
    QueryArgs(args): QueryArgs<ListArgs>,
) -> JsonResult {
    let all = alerts::list(state.store.as_ref(), &ctx).await?;
    let size = args
        .page_size
        .and_then(|size| usize::try_from(size).ok())
        .filter(|size| *size > 0)
        .map_or(100, |size| size.min(100));
    let start = match args.page_token.as_deref().filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => token
            .parse::<usize>()
            .map_err(|_| Error::invalid(format!("Invalid page_token '{token}'")))?,
    };
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(size)
        .map(|a| a.info())
        .collect();
    let mut body = json!({ "alerts": page });
    // `start` is a client's page token: any number, so the sum saturates.
    let next = start.saturating_add(size);
    if next < all.len() {
        body["next_page_token"] = json!(next.to_string());
    }
    Ok(Json(body))
}

async fn get_alert(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    let alert = alerts::get(state.store.as_ref(), &ctx, path.get("id")?).await?;
    Ok(Json(alert.info()))
}

#[derive(Deserialize)]
struct UpdateArgs {
    #[serde(default)]
    update_mask: Option<String>,
}

async fn update(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    QueryArgs(args): QueryArgs<UpdateArgs>,
    Req(settings): Req<AlertSettings>,
) -> JsonResult {
    let alert = alerts::update(
        &state.lake,
        state.store.as_ref(),
        &ctx,
        path.get("id")?,
        settings,
        args.update_mask.as_deref().unwrap_or_default(),
    )
    .await?;
    Ok(Json(alert.info()))
}

async fn delete(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    alerts::delete(state.store.as_ref(), &ctx, path.get("id")?).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct HistoryArgs {
    #[serde(default, deserialize_with = "de::opt_i64")]
    max_results: Option<i64>,
}

async fn history(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    QueryArgs(args): QueryArgs<HistoryArgs>,
) -> JsonResult {
    let evaluations = alerts::history(
        state.store.as_ref(),
        &ctx,
        path.get("id")?,
        args.max_results
            .and_then(|max| u64::try_from(max).ok())
            .filter(|max| *max > 0)
            .unwrap_or(100),
    )
    .await?;
    Ok(Json(json!({ "evaluations": evaluations })))
}

async fn evaluate(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    let evaluation =
        alerts::evaluate_now(&state.lake, state.store.as_ref(), &ctx, path.get("id")?).await?;
    Ok(Json(json!(evaluation)))
}
