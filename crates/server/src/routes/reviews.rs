//! Transition requests, comments and activity history, in the Databricks registry's shapes
//! (`/api/2.0/mlflow/transition-requests/...`, `/comments/...`). Anyone who may read a model
//! may request a transition and comment; approving or rejecting needs the level the transition
//! itself needs; a requester may cancel their own request and an author edit their own
//! comment, CAN_MANAGE may do both for anyone.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::Error;
use tarn_core::auth::{ObjectType, PermissionLevel};
use tarn_core::caller::Caller;
use tarn_core::registry::{self, Activity, RequestOutcome, Stage};

use super::registry::required;
use crate::error::ApiResult;
use crate::extract::{Req, de};
use crate::state::AppState;
use tarn_identity::access;

type JsonResult = ApiResult<Json<Value>>;

/// The caller's effective level on a model (admins manage everything).
async fn level_on(
    state: &AppState,
    ctx: &Caller,
    model_id: &str,
) -> ApiResult<Option<PermissionLevel>> {
    if ctx.principal.is_admin {
        return Ok(Some(PermissionLevel::CanManage));
    }
    let granted = state
        .store
        .granted_levels(
            &ctx.workspace,
            ObjectType::RegisteredModel,
            model_id,
            &ctx.principal.grantee_ids(),
        )
        .await?;
    Ok(ObjectType::RegisteredModel.highest(granted))
}

fn has(level: Option<PermissionLevel>, required: PermissionLevel) -> bool {
    level.is_some_and(|l| ObjectType::RegisteredModel.satisfies(l, required))
}

/// A request as Databricks lists it, with what this caller may do with it.
fn request_json(
    request: &Activity,
    current: Stage,
    level: Option<PermissionLevel>,
    caller: &str,
) -> Value {
    let mut actions = Vec::new();
    if let Some(to) = request.to_stage
        && has(level, to.change_level(current))
    {
        actions.extend(["APPROVE_TRANSITION_REQUEST", "REJECT_TRANSITION_REQUEST"]);
    }
    if request.user_id == caller || has(level, PermissionLevel::CanManage) {
        actions.push("CANCEL_TRANSITION_REQUEST");
    }
    json!({
        "creation_timestamp": request.creation_timestamp,
        "to_stage": request.to_stage,
        "user_id": request.user_id,
        "comment": request.comment,
        "available_actions": actions,
    })
}

fn comment_json(comment: &Activity, level: Option<PermissionLevel>, caller: &str) -> Value {
    let own_or_manager = comment.user_id == caller || has(level, PermissionLevel::CanManage);
    json!({
        "id": comment.id.to_string(),
        "user_id": comment.user_id,
        "creation_timestamp": comment.creation_timestamp,
        "last_updated_timestamp": comment.last_updated_timestamp,
        "comment": comment.comment,
        "available_actions": if own_or_manager { vec!["EDIT_COMMENT", "DELETE_COMMENT"] } else { vec![] },
    })
}

#[derive(Deserialize)]
pub struct RequestReq {
    name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    version: Option<String>,
    stage: Option<String>,
    comment: Option<String>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    archive_existing_versions: Option<bool>,
    /// `transition-requests/delete`: whose request to cancel (default: the caller's).
    creator: Option<String>,
}

struct Target {
    name: String,
    version: i64,
    stage: Stage,
    comment: String,
}

fn target(req: &RequestReq) -> Result<Target, Error> {
    let comment = req.comment.clone().unwrap_or_default();
    registry::validate_description(&comment)?;
    Ok(Target {
        name: required(&req.name, "name")?.to_string(),
        version: registry::parse_version(required(&req.version, "version")?)?,
        stage: Stage::parse(required(&req.stage, "stage")?)?,
        comment,
    })
}

pub async fn create_request(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<RequestReq>,
) -> JsonResult {
    let t = target(&req)?;
    let model_id = access::registered_model(
        state.store.as_ref(),
        &ctx,
        &t.name,
        PermissionLevel::CanRead,
    )
    .await?;
    let request = state
        .store
        .create_transition_request(
            &ctx.workspace,
            &t.name,
            t.version,
            t.stage,
            &t.comment,
            &ctx.actor(),
        )
        .await?;
    let current = state
        .store
        .get_model_version(&ctx.workspace, &t.name, t.version)
        .await?
        .current_stage;
    let level = level_on(&state, &ctx, &model_id).await?;
    Ok(Json(
        json!({ "request": request_json(&request, current, level, &ctx.principal.name) }),
    ))
}

/// Approve and reject need the level of the transition they decide.
async fn decide(
    state: &AppState,
    ctx: &Caller,
    req: &RequestReq,
    outcome: RequestOutcome,
) -> JsonResult {
    let t = target(req)?;
    access::registered_model(state.store.as_ref(), ctx, &t.name, PermissionLevel::CanRead).await?;
    let current = state
        .store
        .get_model_version(&ctx.workspace, &t.name, t.version)
        .await?
        .current_stage;
    let archive = matches!(
        outcome,
        RequestOutcome::Approve {
            archive_existing: true
        }
    );
    access::registered_model(
        state.store.as_ref(),
        ctx,
        &t.name,
        t.stage.transition_level(current, archive),
    )
    .await?;
    let activity = state
        .store
        .resolve_transition_request(
            &ctx.workspace,
            &t.name,
            t.version,
            t.stage,
            outcome,
            None,
            &t.comment,
            &ctx.actor(),
        )
        .await?;
    Ok(Json(json!({ "activity": activity })))
}

pub async fn approve_request(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<RequestReq>,
) -> JsonResult {
    // Databricks makes archive_existing_versions required on approval.
    let archive_existing = req.archive_existing_versions.ok_or_else(|| {
        Error::invalid("Missing value for required parameter 'archive_existing_versions'.")
    })?;
    decide(
        &state,
        &ctx,
        &req,
        RequestOutcome::Approve { archive_existing },
    )
    .await
}

pub async fn reject_request(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<RequestReq>,
) -> JsonResult {
    decide(&state, &ctx, &req, RequestOutcome::Reject).await
}

pub async fn cancel_request(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<RequestReq>,
) -> JsonResult {
    let t = target(&req)?;
    let creator = req
        .creator
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| ctx.principal.name.clone());
    let needed = if creator == ctx.principal.name {
        PermissionLevel::CanRead
    } else {
        PermissionLevel::CanManage
    };
    access::registered_model(state.store.as_ref(), &ctx, &t.name, needed).await?;
    let activity = state
        .store
        .resolve_transition_request(
            &ctx.workspace,
            &t.name,
            t.version,
            t.stage,
            RequestOutcome::Cancel,
            Some(&creator),
            &t.comment,
            &ctx.actor(),
        )
        .await?;
    Ok(Json(json!({ "activity": activity })))
}

#[derive(Deserialize)]
pub struct VersionReq {
    name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    version: Option<String>,
}

fn name_version(req: &VersionReq) -> Result<(String, i64), Error> {
    Ok((
        required(&req.name, "name")?.to_string(),
        registry::parse_version(required(&req.version, "version")?)?,
    ))
}

pub async fn list_requests(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<VersionReq>,
) -> JsonResult {
    let (name, version) = name_version(&req)?;
    let model_id =
        access::registered_model(state.store.as_ref(), &ctx, &name, PermissionLevel::CanRead)
            .await?;
    let current = state
        .store
        .get_model_version(&ctx.workspace, &name, version)
        .await?
        .current_stage;
    let level = level_on(&state, &ctx, &model_id).await?;
    let requests: Vec<Value> = state
        .store
        .open_transition_requests(&ctx.workspace, &name, version)
        .await?
        .iter()
        .map(|r| request_json(r, current, level, &ctx.principal.name))
        .collect();
    Ok(Json(json!({ "requests": requests })))
}

pub async fn list_activities(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<VersionReq>,
) -> JsonResult {
    let (name, version) = name_version(&req)?;
    access::registered_model(state.store.as_ref(), &ctx, &name, PermissionLevel::CanRead).await?;
    let activities = state
        .store
        .activities(&ctx.workspace, &name, version)
        .await?;
    Ok(Json(json!({ "activities": activities })))
}

#[derive(Deserialize)]
pub struct CommentReq {
    name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    version: Option<String>,
    #[serde(default, deserialize_with = "de::opt_id")]
    id: Option<String>,
    comment: Option<String>,
}

fn comment_text(req: &CommentReq) -> Result<String, Error> {
    let text = required(&req.comment, "comment")?.to_string();
    registry::validate_description(&text)?;
    Ok(text)
}

pub async fn create_comment(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<CommentReq>,
) -> JsonResult {
    let name = required(&req.name, "name")?.to_string();
    let version = registry::parse_version(required(&req.version, "version")?)?;
    let text = comment_text(&req)?;
    let model_id =
        access::registered_model(state.store.as_ref(), &ctx, &name, PermissionLevel::CanRead)
            .await?;
    let comment = state
        .store
        .create_comment(&ctx.workspace, &name, version, &text, &ctx.actor())
        .await?;
    let level = level_on(&state, &ctx, &model_id).await?;
    Ok(Json(
        json!({ "comment": comment_json(&comment, level, &ctx.principal.name) }),
    ))
}

/// The comment `req.id` names, after checking the caller wrote it or manages the model.
async fn own_comment(
    state: &AppState,
    ctx: &Caller,
    req: &CommentReq,
) -> ApiResult<(Activity, Option<PermissionLevel>)> {
    let id: i64 = required(&req.id, "id")?
        .parse()
        .map_err(|_| Error::invalid("Parameter 'id' must be an integer"))?;
    let comment = state.store.get_comment(&ctx.workspace, id).await?;
    let model_id = access::registered_model(
        state.store.as_ref(),
        ctx,
        &comment.model_name,
        PermissionLevel::CanRead,
    )
    .await?;
    let level = level_on(state, ctx, &model_id).await?;
    if comment.user_id != ctx.principal.name && !has(level, PermissionLevel::CanManage) {
        return Err(Error::permission_denied(format!(
            "Permission denied: only the author or a manager of '{}' may change comment {id}",
            comment.model_name
        ))
        .into());
    }
    Ok((comment, level))
}

pub async fn update_comment(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<CommentReq>,
) -> JsonResult {
    let text = comment_text(&req)?;
    let (comment, level) = own_comment(&state, &ctx, &req).await?;
    let updated = state
        .store
        .update_comment(&ctx.workspace, comment.id, &text, &ctx.actor())
        .await?;
    Ok(Json(
        json!({ "comment": comment_json(&updated, level, &ctx.principal.name) }),
    ))
}

pub async fn delete_comment(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<CommentReq>,
) -> JsonResult {
    let (comment, _) = own_comment(&state, &ctx, &req).await?;
    state
        .store
        .delete_comment(&ctx.workspace, comment.id, &ctx.actor())
        .await?;
    Ok(Json(json!({})))
}
