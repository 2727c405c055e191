//! `/api/2.0/permissions/{experiments|registered-models|serving-endpoints|jobs}/{id}` in the
//! Databricks shape. Changing permissions needs
//! CAN_MANAGE on the object; reading them needs CAN_READ.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::auth::{ObjectType, PermissionLevel, PrincipalKind};
use tarn_core::caller::Caller;
use tarn_core::{Error, ErrorCode};

use crate::error::ApiResult;
use crate::extract::{PathArgs, Req};
use crate::state::AppState;
use tarn_identity::access;

#[derive(Deserialize)]
pub struct AccessControlEntry {
    user_name: Option<String>,
    group_name: Option<String>,
    service_principal_name: Option<String>,
    permission_level: String,
}

#[derive(Deserialize)]
pub struct AclReq {
    #[serde(default)]
    access_control_list: Vec<AccessControlEntry>,
}

fn parse_acl(
    object_type: ObjectType,
    req: &AclReq,
) -> Result<Vec<(String, PermissionLevel)>, Error> {
    req.access_control_list
        .iter()
        .map(|entry| {
            let name = entry
                .user_name
                .as_ref()
                .or(entry.group_name.as_ref())
                .or(entry.service_principal_name.as_ref())
                .ok_or_else(|| Error::invalid("Each access control entry needs user_name, group_name or service_principal_name"))?;
            let level = object_type.parse_level(&entry.permission_level).ok_or_else(|| {
                Error::invalid(format!(
                    "Invalid permission level '{}' for {}; valid levels: {}",
                    entry.permission_level,
                    object_type.wire_name(),
                    object_type.levels().iter().map(|l| l.as_str()).collect::<Vec<_>>().join(", ")
                ))
            })?;
            Ok((name.clone(), level))
        })
        .collect()
}

/// The object a permissions URL names, after checking the caller's level on it: experiments
/// by id, registered models by their stable id.
async fn resolve(
    state: &AppState,
    ctx: &Caller,
    object_type: ObjectType,
    path_args: &PathArgs,
    level: PermissionLevel,
) -> ApiResult<String> {
    match object_type {
        ObjectType::Experiment => {
            let id = path_args.get("object_id")?;
            Ok(access::experiment(state.store.as_ref(), ctx, id, level)
                .await?
                .to_string())
        }
        ObjectType::RegisteredModel => {
            let id = path_args.get("object_id")?;
            let name = state
                .store
                .registered_model_name(&ctx.workspace, id)
                .await?;
            Ok(access::registered_model(state.store.as_ref(), ctx, &name, level).await?)
        }
        ObjectType::ServingEndpoint => {
            let id = path_args.get("object_id")?;
            let endpoint = state
                .store
                .list_endpoints(Some(&ctx.workspace))
                .await?
                .into_iter()
                .find(|e| e.id == id)
                .ok_or_else(|| {
                    Error::not_found(format!("Serving endpoint with id {id} does not exist."))
                })?;
            tarn_identity::require(
                state.store.as_ref(),
                &ctx.workspace,
                &ctx.principal,
                object_type,
                id,
                level,
            )
            .await?;
            Ok(endpoint.id)
        }
        ObjectType::Job => {
            let id = path_args.get("object_id")?;
            let job_id = id
                .parse::<i64>()
                .map_err(|_| Error::not_found(format!("Job {id} does not exist.")))?;
            tarn_jobs::manage::job_for(state.store.as_ref(), ctx, job_id, level).await?;
            Ok(job_id.to_string())
        }
    }
}

/// The level that reads an object's permissions: its lowest.
fn reading_level(object_type: ObjectType) -> PermissionLevel {
    object_type
        .levels()
        .first()
        .copied()
        .unwrap_or(PermissionLevel::CanRead)
}

/// The object types that have permissions, by their URL segment.
const OBJECT_TYPES: [(&str, ObjectType); 4] = [
    ("experiments", ObjectType::Experiment),
    ("registered-models", ObjectType::RegisteredModel),
    ("serving-endpoints", ObjectType::ServingEndpoint),
    ("jobs", ObjectType::Job),
];

fn url_segment(object_type: ObjectType) -> &'static str {
    OBJECT_TYPES
        .iter()
        .find(|(_, t)| *t == object_type)
        .map(|(segment, _)| *segment)
        .unwrap_or_default()
}

/// The object type a permissions URL names; any other segment is no API endpoint.
fn object_type_of(path_args: &PathArgs) -> ApiResult<ObjectType> {
    let segment = path_args.get("object_type")?;
    OBJECT_TYPES
        .iter()
        .find(|(s, _)| *s == segment)
        .map(|(_, object_type)| *object_type)
        .ok_or_else(|| {
            Error::new(
                ErrorCode::EndpointNotFound,
                format!("No API endpoint at /api/2.0/permissions/{segment}"),
            )
            .into()
        })
}

async fn render(
    state: &AppState,
    ctx: &Caller,
    object_type: ObjectType,
    object_id: &str,
) -> ApiResult<Json<Value>> {
    let grants = state
        .store
        .object_grants(&ctx.workspace, object_type, object_id)
        .await?;
    let entries: Vec<Value> = grants
        .iter()
        .map(|g| {
            let name_field = match g.principal_kind {
                PrincipalKind::User => "user_name",
                PrincipalKind::Group => "group_name",
                PrincipalKind::ServicePrincipal => "service_principal_name",
            };
            json!({
                name_field: g.principal_name,
                "all_permissions": [{"permission_level": g.level.as_str(), "inherited": false}],
            })
        })
        .collect();
    Ok(Json(json!({
        "object_id": format!("/{}/{object_id}", url_segment(object_type)),
        "object_type": object_type.wire_name(),
        "access_control_list": entries,
    })))
}

async fn get_acl(
    state: AppState,
    ctx: Caller,
    path_args: PathArgs,
    object_type: ObjectType,
) -> ApiResult<Json<Value>> {
    let id = resolve(
        &state,
        &ctx,
        object_type,
        &path_args,
        reading_level(object_type),
    )
    .await?;
    render(&state, &ctx, object_type, &id).await
}

/// PATCH adds or raises grants; PUT (`replace`) makes the list exactly the request's.
async fn change_acl(
    state: AppState,
    ctx: Caller,
    path_args: PathArgs,
    req: AclReq,
    object_type: ObjectType,
    replace: bool,
) -> ApiResult<Json<Value>> {
    let id = resolve(
        &state,
        &ctx,
        object_type,
        &path_args,
        PermissionLevel::CanManage,
    )
    .await?;
    let grants = parse_acl(object_type, &req)?;
    let levels: Vec<PermissionLevel> = grants.iter().map(|(_, level)| *level).collect();
    object_type.check_owners(&levels, replace)?;
    let actor = ctx.actor();
    if replace {
        state
            .store
            .replace_grants(&ctx.workspace, object_type, &id, &grants, &actor)
            .await?;
    } else {
        state
            .store
            .update_grants(&ctx.workspace, object_type, &id, &grants, &actor)
            .await?;
    }
    // Scoring trusts passed checks for a while; a change here applies at once.
    state.forget_access();
    render(&state, &ctx, object_type, &id).await
}

async fn levels(
    state: AppState,
    ctx: Caller,
    path_args: PathArgs,
    object_type: ObjectType,
) -> ApiResult<Json<Value>> {
    resolve(
        &state,
        &ctx,
        object_type,
        &path_args,
        reading_level(object_type),
    )
    .await?;
    let levels: Vec<Value> = object_type
        .levels()
        .iter()
        .map(|l| json!({"permission_level": l.as_str()}))
        .collect();
    Ok(Json(json!({ "permission_levels": levels })))
}

pub async fn get(
    State(state): State<AppState>,
    ctx: Caller,
    path_args: PathArgs,
) -> ApiResult<Json<Value>> {
    let object_type = object_type_of(&path_args)?;
    get_acl(state, ctx, path_args, object_type).await
}

pub async fn patch(
    State(state): State<AppState>,
    ctx: Caller,
    path_args: PathArgs,
    Req(req): Req<AclReq>,
) -> ApiResult<Json<Value>> {
    let object_type = object_type_of(&path_args)?;
    change_acl(state, ctx, path_args, req, object_type, false).await
}

pub async fn put(
    State(state): State<AppState>,
    ctx: Caller,
    path_args: PathArgs,
    Req(req): Req<AclReq>,
) -> ApiResult<Json<Value>> {
    let object_type = object_type_of(&path_args)?;
    change_acl(state, ctx, path_args, req, object_type, true).await
}

pub async fn permission_levels(
    State(state): State<AppState>,
    ctx: Caller,
    path_args: PathArgs,
) -> ApiResult<Json<Value>> {
    let object_type = object_type_of(&path_args)?;
    levels(state, ctx, path_args, object_type).await
}
