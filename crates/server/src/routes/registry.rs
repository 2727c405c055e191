//! MLflow model registry handlers: registered models, versions, stages, tags and aliases.
//! Abilities follow the stage-aware matrix: READ views, EDIT creates versions and edits
//! descriptions, tags and aliases, MANAGE_STAGING_VERSIONS moves versions between None,
//! Staging and Archived, MANAGE_PRODUCTION_VERSIONS also into and out of Production, MANAGE
//! renames, deletes and changes permissions.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::Error;
use tarn_core::auth::{ObjectType, PermissionLevel};
use tarn_core::caller::Caller;
use tarn_core::entities::KeyValue;
use tarn_core::registry::{
    self, MAX_MODEL_VERSIONS_PER_PAGE, MAX_REGISTERED_MODELS_PER_PAGE, ModelVersion,
    RegisteredModel, Stage,
};
use tarn_core::search;
use tarn_core::store::{ReadableBy, SearchRegistry};

use super::pages::{PageBody, max_results, page_body};
use crate::error::ApiResult;
use crate::extract::{Req, de};
use crate::state::AppState;
use tarn_identity::access;
use tarn_registry::VersionRequest;

type JsonResult = ApiResult<Json<Value>>;

pub(super) fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, Error> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::invalid(format!("Missing value for required parameter '{name}'.")))
}

#[derive(Deserialize)]
pub struct NameArg {
    name: Option<String>,
}

#[derive(Deserialize)]
pub struct CreateModelReq {
    name: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
    description: Option<String>,
}

pub async fn create_model(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<CreateModelReq>,
) -> JsonResult {
    let name = req.name.as_deref().unwrap_or("");
    registry::validate_model_name(name)?;
    for tag in &req.tags {
        registry::validate_registry_tag(tag)?;
    }
    let description = req.description.unwrap_or_default();
    registry::validate_description(&description)?;
    let model = state
        .store
        .create_registered_model(&ctx.workspace, name, &description, &req.tags, &ctx.actor())
        .await?;
    Ok(Json(json!({ "registered_model": model })))
}

pub async fn get_model(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<NameArg>,
) -> JsonResult {
    let name = required(&req.name, "name")?;
    access::registered_model(state.store.as_ref(), &ctx, name, PermissionLevel::CanRead).await?;
    let model = state
        .store
        .get_registered_model(&ctx.workspace, name)
        .await?;
    Ok(Json(json!({ "registered_model": model })))
}

#[derive(Deserialize)]
pub struct RenameModelReq {
    name: Option<String>,
    new_name: Option<String>,
}

pub async fn rename_model(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<RenameModelReq>,
) -> JsonResult {
    let name = required(&req.name, "name")?;
    let new_name = required(&req.new_name, "new_name")?;
    registry::validate_model_name(new_name)?;
    access::registered_model(state.store.as_ref(), &ctx, name, PermissionLevel::CanManage).await?;
    let model = state
        .store
        .rename_registered_model(&ctx.workspace, name, new_name, &ctx.actor())
        .await?;
    Ok(Json(json!({ "registered_model": model })))
}

#[derive(Deserialize)]
pub struct UpdateModelReq {
    name: Option<String>,
    description: Option<String>,
}

pub async fn update_model(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<UpdateModelReq>,
) -> JsonResult {
    let name = required(&req.name, "name")?;
    let description = req.description.unwrap_or_default();
    registry::validate_description(&description)?;
    access::registered_model(state.store.as_ref(), &ctx, name, PermissionLevel::CanEdit).await?;
    let model = state
        .store
        .update_registered_model(&ctx.workspace, name, &description, &ctx.actor())
        .await?;
    Ok(Json(json!({ "registered_model": model })))
}

pub async fn delete_model(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<NameArg>,
) -> JsonResult {
    let name = required(&req.name, "name")?;
    tarn_registry::delete_model(state.store.as_ref(), &state.artifacts, &ctx, name).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct SearchReq {
    filter: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    max_results: Option<i64>,
    #[serde(default, deserialize_with = "de::string_list")]
    order_by: Vec<String>,
    page_token: Option<String>,
}

fn search_query(
    ctx: &Caller,
    req: &SearchReq,
    parse_filter: fn(&str) -> Result<Vec<search::Comparison>, search::SearchError>,
    parse_order: fn(&str) -> Result<search::OrderBy, search::SearchError>,
    default_max: u64,
    cap: u64,
) -> Result<SearchRegistry, Error> {
    Ok(SearchRegistry {
        filter: parse_filter(req.filter.as_deref().unwrap_or(""))?,
        order_by: req
            .order_by
            .iter()
            .map(|o| parse_order(o))
            .collect::<Result<_, _>>()?,
        max_results: max_results(req.max_results, default_max, cap)?,
        offset: search::decode_page_token(req.page_token.as_deref().unwrap_or(""))?,
        readable_by: ReadableBy::for_principal(&ctx.principal),
    })
}

pub async fn search_models(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<SearchReq>,
) -> ApiResult<Json<PageBody<RegisteredModel>>> {
    let query = search_query(
        &ctx,
        &req,
        search::parse_registered_model_filter,
        search::parse_registered_model_order_by,
        100,
        MAX_REGISTERED_MODELS_PER_PAGE,
    )?;
    let page = state
        .store
        .search_registered_models(&ctx.workspace, &query)
        .await?;
    Ok(page_body("registered_models", page.items, page.next_offset))
}

#[derive(Deserialize)]
pub struct LatestVersionsReq {
    name: Option<String>,
    #[serde(default, deserialize_with = "de::string_list")]
    stages: Vec<String>,
}

pub async fn latest_versions(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<LatestVersionsReq>,
) -> JsonResult {
    let name = required(&req.name, "name")?;
    let stages = req
        .stages
        .iter()
        .map(|s| Stage::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    access::registered_model(state.store.as_ref(), &ctx, name, PermissionLevel::CanRead).await?;
    let versions = state
        .store
        .latest_versions(&ctx.workspace, name, &stages)
        .await?;
    Ok(Json(json!({ "model_versions": versions })))
}

#[derive(Deserialize)]
pub struct ModelTagReq {
    name: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

pub async fn set_model_tag(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<ModelTagReq>,
) -> JsonResult {
    let name = required(&req.name, "name")?;
    let tag = KeyValue {
        key: required(&req.key, "key")?.to_string(),
        value: req.value.unwrap_or_default(),
    };
    registry::validate_registry_tag(&tag)?;
    access::registered_model(state.store.as_ref(), &ctx, name, PermissionLevel::CanEdit).await?;
    state
        .store
        .set_registered_model_tag(&ctx.workspace, name, &tag, &ctx.actor())
        .await?;
    Ok(Json(json!({})))
}

pub async fn delete_model_tag(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<ModelTagReq>,
) -> JsonResult {
    let name = required(&req.name, "name")?;
    let key = required(&req.key, "key")?;
    access::registered_model(state.store.as_ref(), &ctx, name, PermissionLevel::CanEdit).await?;
    state
        .store
        .delete_registered_model_tag(&ctx.workspace, name, key, &ctx.actor())
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct AliasReq {
    name: Option<String>,
    alias: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    version: Option<String>,
}

pub async fn set_alias(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<AliasReq>,
) -> JsonResult {
    let name = required(&req.name, "name")?;
    let alias = req.alias.as_deref().unwrap_or("");
    registry::validate_settable_alias(alias)?;
    let version = registry::parse_version(required(&req.version, "version")?)?;
    access::registered_model(state.store.as_ref(), &ctx, name, PermissionLevel::CanEdit).await?;
    state
        .store
        .set_alias(&ctx.workspace, name, alias, version, &ctx.actor())
        .await?;
    Ok(Json(json!({})))
}

pub async fn delete_alias(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<AliasReq>,
) -> JsonResult {
    let name = required(&req.name, "name")?;
    let alias = req.alias.as_deref().unwrap_or("");
    registry::validate_alias(alias)?;
    access::registered_model(state.store.as_ref(), &ctx, name, PermissionLevel::CanEdit).await?;
    state
        .store
        .delete_alias(&ctx.workspace, name, alias, &ctx.actor())
        .await?;
    Ok(Json(json!({})))
}

pub async fn get_by_alias(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<AliasReq>,
) -> JsonResult {
    let name = required(&req.name, "name")?;
    let alias = req.alias.as_deref().unwrap_or("");
    registry::validate_alias(alias)?;
    access::registered_model(state.store.as_ref(), &ctx, name, PermissionLevel::CanRead).await?;
    let version = state
        .store
        .version_by_alias(&ctx.workspace, name, alias)
        .await?;
    Ok(Json(json!({ "model_version": version })))
}

#[derive(Deserialize)]
pub struct CreateVersionReq {
    name: Option<String>,
    source: Option<String>,
    run_id: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
    run_link: Option<String>,
    description: Option<String>,
    model_id: Option<String>,
}

pub async fn create_version(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<CreateVersionReq>,
) -> JsonResult {
    let request = VersionRequest {
        name: required(&req.name, "name")?.to_string(),
        source: required(&req.source, "source")?.to_string(),
        run_id: req.run_id,
        run_link: req.run_link,
        description: req.description.unwrap_or_default(),
        tags: req.tags,
        model_id: req.model_id,
    };
    let version =
        tarn_registry::create_version(state.store.as_ref(), &state.artifacts, &ctx, request)
            .await?;
    Ok(Json(json!({ "model_version": version })))
}

#[derive(Deserialize)]
pub struct VersionArg {
    name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    version: Option<String>,
}

fn name_and_version(
    name: &Option<String>,
    version: &Option<String>,
) -> Result<(String, i64), Error> {
    let name = required(name, "name")?.to_string();
    let version = registry::parse_version(required(version, "version")?)?;
    Ok((name, version))
}

pub async fn get_version(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<VersionArg>,
) -> JsonResult {
    let (name, version) = name_and_version(&req.name, &req.version)?;
    access::registered_model(state.store.as_ref(), &ctx, &name, PermissionLevel::CanRead).await?;
    let version = state
        .store
        .get_model_version(&ctx.workspace, &name, version)
        .await?;
    Ok(Json(json!({ "model_version": version })))
}

pub async fn download_uri(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<VersionArg>,
) -> JsonResult {
    let (name, version) = name_and_version(&req.name, &req.version)?;
    access::registered_model(state.store.as_ref(), &ctx, &name, PermissionLevel::CanRead).await?;
    let version = state
        .store
        .get_model_version(&ctx.workspace, &name, version)
        .await?;
    Ok(Json(json!({
        "artifact_uri": format!("mlflow-artifacts:/{}", version.storage_location)
    })))
}

#[derive(Deserialize)]
pub struct UpdateVersionReq {
    name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    version: Option<String>,
    description: Option<String>,
}

pub async fn update_version(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<UpdateVersionReq>,
) -> JsonResult {
    let (name, version) = name_and_version(&req.name, &req.version)?;
    let description = req.description.unwrap_or_default();
    registry::validate_description(&description)?;
    access::registered_model(state.store.as_ref(), &ctx, &name, PermissionLevel::CanEdit).await?;
    let version = state
        .store
        .update_model_version(&ctx.workspace, &name, version, &description, &ctx.actor())
        .await?;
    Ok(Json(json!({ "model_version": version })))
}

pub async fn delete_version(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<VersionArg>,
) -> JsonResult {
    let (name, version) = name_and_version(&req.name, &req.version)?;
    tarn_registry::delete_version(state.store.as_ref(), &state.artifacts, &ctx, &name, version)
        .await?;
    Ok(Json(json!({})))
}

pub async fn search_versions(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<SearchReq>,
) -> ApiResult<Json<PageBody<ModelVersion>>> {
    let query = search_query(
        &ctx,
        &req,
        search::parse_model_version_filter,
        search::parse_model_version_order_by,
        MAX_MODEL_VERSIONS_PER_PAGE.min(10_000),
        MAX_MODEL_VERSIONS_PER_PAGE,
    )?;
    let page = state
        .store
        .search_model_versions(&ctx.workspace, &query)
        .await?;
    Ok(page_body("model_versions", page.items, page.next_offset))
}

#[derive(Deserialize)]
pub struct VersionTagReq {
    name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    version: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

pub async fn set_version_tag(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<VersionTagReq>,
) -> JsonResult {
    let (name, version) = name_and_version(&req.name, &req.version)?;
    let tag = KeyValue {
        key: required(&req.key, "key")?.to_string(),
        value: req
            .value
            .ok_or_else(|| Error::invalid("Tag value cannot be None"))?,
    };
    registry::validate_registry_tag(&tag)?;
    access::registered_model(state.store.as_ref(), &ctx, &name, PermissionLevel::CanEdit).await?;
    state
        .store
        .set_model_version_tag(&ctx.workspace, &name, version, &tag, &ctx.actor())
        .await?;
    Ok(Json(json!({})))
}

pub async fn delete_version_tag(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<VersionTagReq>,
) -> JsonResult {
    let (name, version) = name_and_version(&req.name, &req.version)?;
    let key = required(&req.key, "key")?;
    access::registered_model(state.store.as_ref(), &ctx, &name, PermissionLevel::CanEdit).await?;
    state
        .store
        .delete_model_version_tag(&ctx.workspace, &name, version, key, &ctx.actor())
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct TransitionReq {
    name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    version: Option<String>,
    stage: Option<String>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    archive_existing_versions: Option<bool>,
    comment: Option<String>,
}

/// Moves the version; the store checks the stage-aware level in the same transaction.
async fn transition(
    state: &AppState,
    ctx: &Caller,
    req: TransitionReq,
) -> ApiResult<tarn_core::registry::ModelVersion> {
    let (name, version) = name_and_version(&req.name, &req.version)?;
    let stage = Stage::parse(required(&req.stage, "stage")?)?;
    let archive = req.archive_existing_versions.unwrap_or(false);
    let comment = req.comment.unwrap_or_default();
    registry::validate_description(&comment)?;
    Ok(state
        .store
        .transition_stage(
            &ctx.workspace,
            &name,
            version,
            stage,
            archive,
            &comment,
            &ctx.principal,
        )
        .await?)
}

pub async fn transition_stage(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<TransitionReq>,
) -> JsonResult {
    let version = transition(&state, &ctx, req).await?;
    Ok(Json(json!({ "model_version": version })))
}

/// `databricks/model-versions/transition-stage`: the same with a comment, Databricks' shape.
pub async fn transition_stage_databricks(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<TransitionReq>,
) -> JsonResult {
    let version = transition(&state, &ctx, req).await?;
    Ok(Json(json!({ "model_version_databricks": version })))
}

/// `databricks/registered-models/get`: the model with its id and the caller's level, which
/// the permissions API and transition-request tooling need.
pub async fn get_model_databricks(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<NameArg>,
) -> JsonResult {
    let name = required(&req.name, "name")?;
    let id = access::registered_model(state.store.as_ref(), &ctx, name, PermissionLevel::CanRead)
        .await?;
    let model = state
        .store
        .get_registered_model(&ctx.workspace, name)
        .await?;
    let level = if ctx.principal.is_admin {
        Some(PermissionLevel::CanManage)
    } else {
        let granted = state
            .store
            .granted_levels(
                &ctx.workspace,
                ObjectType::RegisteredModel,
                &id,
                &ctx.principal.grantee_ids(),
            )
            .await?;
        ObjectType::RegisteredModel.highest(granted)
    };
    let mut body = serde_json::to_value(&model)
        .map_err(|e| Error::internal_from("cannot encode a model", e))?;
    body["id"] = json!(id);
    if let Some(level) = level {
        body["permission_level"] = json!(level.as_str());
    }
    Ok(Json(json!({ "registered_model_databricks": body })))
}
