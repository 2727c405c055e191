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
use tarn_core::features::{TRAINING_SET_TAG, TableVersion, TrainingSet};
use tarn_core::lineage::{NewLineage, Node};
use tarn_core::registry::{
    self, MAX_MODEL_VERSIONS_PER_PAGE, MAX_REGISTERED_MODELS_PER_PAGE, ModelVersion,
    NewModelVersion, RegisteredModel, Stage,
};
use tarn_core::search;
use tarn_core::store::{ReadableBy, SearchRegistry};

use super::access::{experiment_access, run_access};
use super::pages::{PageBody, max_results, page_body};
use crate::error::ApiResult;
use crate::extract::{Req, de};
use crate::state::AppState;

type JsonResult = ApiResult<Json<Value>>;

/// Where registry-owned copies live, relative to a workspace's artifact root.
pub const REGISTRY_PREFIX: &str = "_registry";

pub(super) fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, Error> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::invalid(format!("Missing value for required parameter '{name}'.")))
}

/// Checks the caller's level on a model and returns the model's id.
pub async fn model_access(
    state: &AppState,
    ctx: &Caller,
    name: &str,
    level: PermissionLevel,
) -> ApiResult<String> {
    let id = state
        .store
        .registered_model_id(&ctx.workspace, name)
        .await?;
    tarn_identity::require(
        state.store.as_ref(),
        &ctx.workspace,
        &ctx.principal,
        ObjectType::RegisteredModel,
        &id,
        level,
    )
    .await?;
    Ok(id)
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
    model_access(&state, &ctx, name, PermissionLevel::CanRead).await?;
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
    model_access(&state, &ctx, name, PermissionLevel::CanManage).await?;
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
    model_access(&state, &ctx, name, PermissionLevel::CanEdit).await?;
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
    model_access(&state, &ctx, name, PermissionLevel::CanManage).await?;
    let locations = state
        .store
        .delete_registered_model(&ctx.workspace, name, &ctx.actor())
        .await?;
    remove_copies(&state, &ctx.workspace, &locations).await;
    Ok(Json(json!({})))
}

/// How long a registry copy no version owns is left alone: a create on this or another
/// replica may still be about to store its version.
pub const UNOWNED_COPY_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes registry copies that no version owns and that nothing wrote to for `grace`: what a
/// create interrupted between its copy and its version (a crash, a dropped request) or a
/// delete interrupted before its files went left behind. Returns how many it removed.
pub async fn remove_unowned_copies(
    state: &AppState,
    grace: std::time::Duration,
) -> Result<usize, Error> {
    let mut removed = 0;
    for workspace in state.store.list_workspaces().await? {
        let models = match state.artifacts.list(&workspace, REGISTRY_PREFIX).await {
            Ok(models) => models,
            Err(err) if err.code == tarn_core::ErrorCode::ResourceDoesNotExist => continue,
            Err(err) => return Err(err),
        };
        for model in models {
            if !model.is_dir {
                continue;
            }
            let owned: std::collections::HashSet<String> = state
                .store
                .version_storage_locations(&model.path)
                .await?
                .into_iter()
                .collect();
            let folder = format!("{REGISTRY_PREFIX}/{}", model.path);
            let untouched = state
                .artifacts
                .folders_untouched_for(&workspace, &folder, grace)
                .await?;
            for copy in untouched.into_iter().filter(|copy| !owned.contains(copy)) {
                tracing::info!(%workspace, copy, "removing a registry copy no version owns");
                state.artifacts.delete(&workspace, &copy).await?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Removes registry copies after their rows are gone; a failure leaves only unreachable files.
async fn remove_copies(state: &AppState, workspace: &str, locations: &[String]) {
    for location in locations {
        if let Err(err) = state.artifacts.delete(workspace, location).await {
            tracing::warn!(location, error = %err.message, "could not remove registry copy");
        }
    }
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
    model_access(&state, &ctx, name, PermissionLevel::CanRead).await?;
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
    model_access(&state, &ctx, name, PermissionLevel::CanEdit).await?;
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
    model_access(&state, &ctx, name, PermissionLevel::CanEdit).await?;
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
    model_access(&state, &ctx, name, PermissionLevel::CanEdit).await?;
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
    model_access(&state, &ctx, name, PermissionLevel::CanEdit).await?;
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
    model_access(&state, &ctx, name, PermissionLevel::CanRead).await?;
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

/// What a version's source names: a folder of this workspace's artifacts, and the lineage
/// the source implies (a logged model's run).
struct ResolvedSource {
    folder: String,
    run_id: Option<String>,
    model_id: Option<String>,
}

/// Resolves `models:/<model_id>`, `models:/<name>/<version>`, `runs:/<run_id>/<path>` or
/// `mlflow-artifacts:/...` after checking the caller may read it.
async fn resolve_source(state: &AppState, ctx: &Caller, source: &str) -> ApiResult<ResolvedSource> {
    let unsupported = || {
        Error::invalid(format!(
            "Unsupported model version source '{source}': use a models:/, runs:/ or \
             mlflow-artifacts:/ URI of this workspace"
        ))
    };
    let mut resolved = ResolvedSource {
        folder: String::new(),
        run_id: None,
        model_id: None,
    };
    if let Some(rest) = source.strip_prefix("models:/") {
        match rest.split_once('/') {
            None if !rest.is_empty() => {
                let model = state.store.get_logged_model(&ctx.workspace, rest).await?;
                resolved.folder = model.info.artifact_uri;
                resolved.run_id = model.info.source_run_id;
                resolved.model_id = Some(rest.to_string());
            }
            Some((name, version)) => {
                let version = registry::parse_version(version)?;
                model_access(state, ctx, name, PermissionLevel::CanRead).await?;
                let from = state
                    .store
                    .get_model_version(&ctx.workspace, name, version)
                    .await?;
                // Registry copies are readable to whoever may read the model: done.
                resolved.folder = from.storage_location;
                resolved.run_id = from.run_id;
                resolved.model_id = from.model_id;
                return Ok(resolved);
            }
            None => return Err(unsupported().into()),
        }
    } else if let Some(rest) = source.strip_prefix("runs:/") {
        let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
        let experiment_id = run_access(state, ctx, run_id, PermissionLevel::CanRead).await?;
        // Runs' artifact roots are always this (tarn refuses custom locations).
        resolved.folder = format!(
            "mlflow-artifacts:/{experiment_id}/{run_id}/artifacts/{}",
            path.trim_matches('/')
        );
        resolved.run_id = Some(run_id.to_string());
    } else if source.starts_with("mlflow-artifacts:") {
        resolved.folder = source.to_string();
    } else {
        return Err(unsupported().into());
    }
    resolved.folder = resolved
        .folder
        .strip_prefix("mlflow-artifacts:")
        .ok_or_else(unsupported)?
        .trim_matches('/')
        .to_string();
    tarn_artifacts::validate_relative_path(&resolved.folder)?;
    let experiment_id = resolved.folder.split('/').next().unwrap_or("");
    experiment_access(state, ctx, experiment_id, PermissionLevel::CanRead).await?;
    Ok(resolved)
}

pub async fn create_version(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<CreateVersionReq>,
) -> JsonResult {
    let name = required(&req.name, "name")?.to_string();
    let source = required(&req.source, "source")?.to_string();
    for tag in &req.tags {
        registry::validate_registry_tag(tag)?;
    }
    let description = req.description.unwrap_or_default();
    registry::validate_description(&description)?;
    let model_id = model_access(&state, &ctx, &name, PermissionLevel::CanEdit).await?;
    let run_id = req.run_id.filter(|r| !r.is_empty());
    if let Some(run_id) = &run_id {
        run_access(&state, &ctx, run_id, PermissionLevel::CanRead).await?;
    }
    let resolved = resolve_source(&state, &ctx, &source).await?;
    let location = format!(
        "{REGISTRY_PREFIX}/{model_id}/{}",
        tarn_core::ids::hex32(rand::random())
    );
    let copied = state
        .artifacts
        .copy_tree_with_checksum(&ctx.workspace, &resolved.folder, &location)
        .await;
    let (files, checksum) = match copied {
        Ok(copied) => copied,
        Err(err) => {
            remove_copies(&state, &ctx.workspace, &[location]).await;
            return Err(err.into());
        }
    };
    if files == 0 {
        return Err(Error::invalid(format!(
            "Unable to fetch model from model URI source artifact location '{source}': it holds no files"
        ))
        .into());
    }
    let mut new = NewModelVersion {
        name,
        source,
        run_id: run_id.or(resolved.run_id),
        run_link: req.run_link.filter(|l| !l.is_empty()),
        description,
        tags: req.tags,
        model_id: req.model_id.filter(|m| !m.is_empty()).or(resolved.model_id),
        storage_location: location.clone(),
        checksum,
    };
    let training_set = match feature_spec_of(&state, &ctx, &new).await {
        Ok(found) => found,
        Err(err) => {
            remove_copies(&state, &ctx.workspace, &[location]).await;
            return Err(err.into());
        }
    };
    if let Some(set) = &training_set
        && !new.tags.iter().any(|t| t.key == TRAINING_SET_TAG)
    {
        new.tags.push(KeyValue {
            key: TRAINING_SET_TAG.to_string(),
            value: set.training_set_id.clone(),
        });
    }
    match state
        .store
        .create_model_version(&ctx.workspace, &new, &ctx.actor())
        .await
    {
        Ok(version) => {
            if let Some(set) = training_set {
                record_features_of_version(&state, &ctx, &version, &set).await;
            }
            Ok(Json(json!({ "model_version": version })))
        }
        Err(err) => {
            remove_copies(&state, &ctx.workspace, &[location]).await;
            Err(err.into())
        }
    }
}

/// The training set a new version was trained on, named by the tag on the request, its run or
/// its logged model; refused when the tag names no training set of this workspace.
async fn feature_spec_of(
    state: &AppState,
    ctx: &Caller,
    new: &NewModelVersion,
) -> Result<Option<TrainingSet>, Error> {
    let tagged = |tags: &[KeyValue]| {
        tags.iter()
            .find(|t| t.key == TRAINING_SET_TAG)
            .map(|t| t.value.clone())
    };
    let mut id = tagged(&new.tags);
    if id.is_none()
        && let Some(run_id) = &new.run_id
    {
        id = state
            .store
            .run_tag(&ctx.workspace, run_id, TRAINING_SET_TAG)
            .await?;
    }
    if id.is_none()
        && let Some(model_id) = &new.model_id
    {
        let model = state
            .store
            .get_logged_model(&ctx.workspace, model_id)
            .await?;
        id = tagged(&model.info.tags);
    }
    let Some(id) = id else {
        return Ok(None);
    };
    match state.store.get_training_set(&ctx.workspace, &id).await {
        Ok(set) => Ok(Some(set)),
        Err(err) if err.code == tarn_core::ErrorCode::ResourceDoesNotExist => {
            Err(Error::invalid(format!(
                "Tag {TRAINING_SET_TAG} names training set '{id}', which workspace '{}' does not have",
                ctx.workspace
            )))
        }
        Err(err) => Err(err),
    }
}

/// Links a version to the tables its training set read, at the versions read: the feature
/// tables (and label tables) -> model version edges of the lineage graph.
async fn record_features_of_version(
    state: &AppState,
    ctx: &Caller,
    version: &ModelVersion,
    set: &TrainingSet,
) {
    let sources = TableVersion::lineage_sources(&set.tables_read);
    let write = NewLineage::new(
        Node::model_version(&ctx.workspace, &version.name, version.version),
        Some(version.version),
        "CREATE MODEL VERSION",
        ctx.principal.name.clone(),
    )
    .reading(sources);
    tarn_lake::lineage::record(state.store.as_ref(), write).await;
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
    model_access(&state, &ctx, &name, PermissionLevel::CanRead).await?;
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
    model_access(&state, &ctx, &name, PermissionLevel::CanRead).await?;
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
    model_access(&state, &ctx, &name, PermissionLevel::CanEdit).await?;
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
    model_access(&state, &ctx, &name, PermissionLevel::CanManage).await?;
    let location = state
        .store
        .delete_model_version(&ctx.workspace, &name, version, &ctx.actor())
        .await?;
    remove_copies(&state, &ctx.workspace, &[location]).await;
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
    model_access(&state, &ctx, &name, PermissionLevel::CanEdit).await?;
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
    model_access(&state, &ctx, &name, PermissionLevel::CanEdit).await?;
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
    let id = model_access(&state, &ctx, name, PermissionLevel::CanRead).await?;
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
    let mut body = serde_json::to_value(&model).map_err(|e| Error::internal(e.to_string()))?;
    body["id"] = json!(id);
    if let Some(level) = level {
        body["permission_level"] = json!(level.as_str());
    }
    Ok(Json(json!({ "registered_model_databricks": body })))
}
