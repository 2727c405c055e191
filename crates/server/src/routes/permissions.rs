//! `/api/2.0/permissions/experiments/{id}` in the Databricks shape. Changing permissions needs
//! CAN_MANAGE on the object; reading them needs CAN_READ.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::Error;
use tarn_core::auth::{ObjectType, PermissionLevel, PrincipalKind};

use super::experiment_access;
use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Ctx, PathArgs, Req};

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

async fn render(
    state: &AppState,
    ctx: &Ctx,
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
        "object_id": format!("/experiments/{object_id}"),
        "object_type": object_type.wire_name(),
        "access_control_list": entries,
    })))
}

pub async fn get_experiment(
    State(state): State<AppState>,
    ctx: Ctx,
    path_args: PathArgs,
) -> ApiResult<Json<Value>> {
    let id = path_args.get("experiment_id")?.to_string();
    let id = experiment_access(&state, &ctx, &id, PermissionLevel::CanRead).await?;
    render(&state, &ctx, ObjectType::Experiment, &id.to_string()).await
}

pub async fn patch_experiment(
    State(state): State<AppState>,
    ctx: Ctx,
    path_args: PathArgs,
    Req(req): Req<AclReq>,
) -> ApiResult<Json<Value>> {
    let id = path_args.get("experiment_id")?.to_string();
    let id = experiment_access(&state, &ctx, &id, PermissionLevel::CanManage).await?;
    let grants = parse_acl(ObjectType::Experiment, &req)?;
    state
        .store
        .update_grants(
            &ctx.workspace,
            ObjectType::Experiment,
            &id.to_string(),
            &grants,
        )
        .await?;
    render(&state, &ctx, ObjectType::Experiment, &id.to_string()).await
}

pub async fn put_experiment(
    State(state): State<AppState>,
    ctx: Ctx,
    path_args: PathArgs,
    Req(req): Req<AclReq>,
) -> ApiResult<Json<Value>> {
    let id = path_args.get("experiment_id")?.to_string();
    let id = experiment_access(&state, &ctx, &id, PermissionLevel::CanManage).await?;
    let grants = parse_acl(ObjectType::Experiment, &req)?;
    state
        .store
        .replace_grants(
            &ctx.workspace,
            ObjectType::Experiment,
            &id.to_string(),
            &grants,
        )
        .await?;
    render(&state, &ctx, ObjectType::Experiment, &id.to_string()).await
}

pub async fn experiment_levels(
    State(state): State<AppState>,
    ctx: Ctx,
    path_args: PathArgs,
) -> ApiResult<Json<Value>> {
    let id = path_args.get("experiment_id")?.to_string();
    experiment_access(&state, &ctx, &id, PermissionLevel::CanRead).await?;
    let levels: Vec<Value> = ObjectType::Experiment
        .levels()
        .iter()
        .map(|l| json!({"permission_level": l.as_str()}))
        .collect();
    Ok(Json(json!({ "permission_levels": levels })))
}
