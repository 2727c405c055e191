//! MLflow 3 logged models: what `log_model` creates before uploading the model's files.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::Error;
use tarn_core::auth::PermissionLevel;
use tarn_core::caller::Caller;
use tarn_core::entities::{KeyValue, LoggedModel, LoggedModelStatus, NewLoggedModel};
use tarn_core::search;
use tarn_core::store::SearchLoggedModels;

use super::pages::{PageBody, max_results, page_body};
use crate::error::ApiResult;
use crate::extract::{PathArgs, Req, de};
use crate::state::AppState;
use tarn_identity::access;

type JsonResult = ApiResult<Json<Value>>;

#[derive(Deserialize)]
pub struct CreateReq {
    #[serde(default, deserialize_with = "de::opt_id")]
    experiment_id: Option<String>,
    name: Option<String>,
    model_type: Option<String>,
    source_run_id: Option<String>,
    #[serde(default)]
    params: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

pub async fn create(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<CreateReq>,
) -> JsonResult {
    let experiment_id = req
        .experiment_id
        .clone()
        .ok_or_else(|| Error::invalid("Missing value for required parameter 'experiment_id'."))?;
    access::experiment(
        state.store.as_ref(),
        &ctx,
        &experiment_id,
        PermissionLevel::CanEdit,
    )
    .await?;
    let name = req
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| tarn_core::ids::random_run_name(rand::random()));
    tarn_core::validation::validate_key("name", &name)?;
    let model = NewLoggedModel {
        experiment_id,
        name,
        model_type: req.model_type,
        source_run_id: req.source_run_id,
        creator_id: ctx.principal.id,
        params: req.params,
        tags: req.tags,
    };
    let model = state
        .store
        .create_logged_model(&ctx.workspace, &model)
        .await?;
    Ok(Json(json!({ "model": model })))
}

/// Loads the model and checks the caller's level on its experiment.
async fn model_access(
    state: &AppState,
    ctx: &Caller,
    model_id: &str,
    level: PermissionLevel,
) -> ApiResult<tarn_core::entities::LoggedModel> {
    let model = state
        .store
        .get_logged_model(&ctx.workspace, model_id)
        .await?;
    access::experiment(state.store.as_ref(), ctx, &model.info.experiment_id, level).await?;
    Ok(model)
}

pub async fn get(State(state): State<AppState>, ctx: Caller, path_args: PathArgs) -> JsonResult {
    let model_id = path_args.get("model_id")?.to_string();
    let model = model_access(&state, &ctx, &model_id, PermissionLevel::CanRead).await?;
    Ok(Json(json!({ "model": model })))
}

#[derive(Deserialize)]
pub struct FinalizeReq {
    status: Option<Value>,
}

pub async fn finalize(
    State(state): State<AppState>,
    ctx: Caller,
    path_args: PathArgs,
    Req(req): Req<FinalizeReq>,
) -> JsonResult {
    let model_id = path_args.get("model_id")?.to_string();
    model_access(&state, &ctx, &model_id, PermissionLevel::CanEdit).await?;
    let status_text = match &req.status {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(Error::invalid("Missing value for required parameter 'status'.").into()),
    };
    let status = LoggedModelStatus::parse(&status_text)
        .ok_or_else(|| Error::invalid(format!("Invalid status '{status_text}'")))?;
    let model = state
        .store
        .finalize_logged_model(&ctx.workspace, &model_id, status)
        .await?;
    Ok(Json(json!({ "model": model })))
}

pub async fn delete(State(state): State<AppState>, ctx: Caller, path_args: PathArgs) -> JsonResult {
    let model_id = path_args.get("model_id")?.to_string();
    model_access(&state, &ctx, &model_id, PermissionLevel::CanManage).await?;
    state
        .store
        .delete_logged_model(&ctx.workspace, &model_id)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct TagsReq {
    #[serde(default)]
    tags: Vec<KeyValue>,
}

pub async fn set_tags(
    State(state): State<AppState>,
    ctx: Caller,
    path_args: PathArgs,
    Req(req): Req<TagsReq>,
) -> JsonResult {
    let model_id = path_args.get("model_id")?.to_string();
    model_access(&state, &ctx, &model_id, PermissionLevel::CanEdit).await?;
    for tag in &req.tags {
        tarn_core::validation::validate_key("key", &tag.key)?;
    }
    state
        .store
        .set_logged_model_tags(&ctx.workspace, &model_id, &req.tags)
        .await?;
    Ok(Json(json!({})))
}

pub async fn delete_tag(
    State(state): State<AppState>,
    ctx: Caller,
    path_args: PathArgs,
) -> JsonResult {
    let model_id = path_args.get("model_id")?.to_string();
    let key = path_args.get("key")?;
    model_access(&state, &ctx, &model_id, PermissionLevel::CanEdit).await?;
    state
        .store
        .delete_logged_model_tag(&ctx.workspace, &model_id, key)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct ParamsReq {
    #[serde(default)]
    params: Vec<KeyValue>,
}

pub async fn log_params(
    State(state): State<AppState>,
    ctx: Caller,
    path_args: PathArgs,
    Req(req): Req<ParamsReq>,
) -> JsonResult {
    let model_id = path_args.get("model_id")?.to_string();
    model_access(&state, &ctx, &model_id, PermissionLevel::CanEdit).await?;
    let params = req
        .params
        .iter()
        .map(tarn_core::validation::validate_param)
        .collect::<Result<Vec<_>, _>>()?;
    state
        .store
        .log_logged_model_params(&ctx.workspace, &model_id, &params)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct OrderByReq {
    field_name: String,
    #[serde(default, deserialize_with = "de::opt_bool")]
    ascending: Option<bool>,
}

#[derive(Deserialize)]
pub struct SearchReq {
    #[serde(default, deserialize_with = "de::string_list")]
    experiment_ids: Vec<String>,
    filter: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    max_results: Option<i64>,
    #[serde(default)]
    order_by: Vec<OrderByReq>,
    page_token: Option<String>,
}

pub async fn search(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<SearchReq>,
) -> ApiResult<Json<PageBody<LoggedModel>>> {
    let mut experiment_ids = Vec::new();
    for id in &req.experiment_ids {
        if let Ok(id) =
            access::experiment(state.store.as_ref(), &ctx, id, PermissionLevel::CanRead).await
        {
            experiment_ids.push(id);
        }
    }
    let order_by = req
        .order_by
        .iter()
        .map(|o| search::OrderBy {
            entity: search::Entity::Attribute,
            key: o.field_name.trim_start_matches("attributes.").to_string(),
            ascending: o.ascending.unwrap_or(true),
        })
        .collect();
    let query = SearchLoggedModels {
        experiment_ids,
        filter: search::parse_logged_model_filter(req.filter.as_deref().unwrap_or(""))?,
        order_by,
        max_results: max_results(req.max_results, 100, 50000)?,
        offset: search::decode_page_token(req.page_token.as_deref().unwrap_or(""))?,
    };
    let page = state
        .store
        .search_logged_models(&ctx.workspace, &query)
        .await?;
    Ok(page_body("models", page.items, page.next_offset))
}
