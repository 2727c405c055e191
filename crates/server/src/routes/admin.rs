//! Identity administration: users, groups, service principals, workspace membership and tokens.
//! Principals are global; membership is per workspace (taken from the URL).

use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::Error;
use tarn_core::auth::PrincipalKind;
use tarn_core::caller::Caller;
use tarn_core::store::{PrincipalRecord, TokenInfo};
use tarn_identity::{create_principal, issue_token};

use super::mounted::Mounted;
use crate::error::ApiResult;
use crate::extract::{Admin, Req, de};
use crate::state::AppState;

pub fn routes() -> Mounted {
    Mounted::new()
        .route("/api/2.0/tarn/users", post(create_user).get(list_users))
        .route("/api/2.0/tarn/groups", post(create_group))
        .route("/api/2.0/tarn/groups/members", post(add_group_member))
        .route(
            "/api/2.0/tarn/service-principals",
            post(create_service_principal),
        )
        .route(
            "/api/2.0/tarn/workspace/members",
            post(add_member).get(list_members).delete(remove_member),
        )
        .route("/api/2.0/tarn/me", get(me))
        .route("/api/2.0/token/create", post(create_own_token))
        .route("/api/2.0/token/list", get(list_own_tokens))
        .route("/api/2.0/token/delete", post(revoke_own_token))
        .route(
            "/api/2.0/token-management/on-behalf-of/tokens",
            post(create_token_for),
        )
        .route("/api/2.0/token-management/tokens", get(list_all_tokens))
        .route("/api/2.0/tarn/audit", get(audit))
}

#[derive(Deserialize)]
pub struct AuditReq {
    #[serde(default, deserialize_with = "de::opt_i64")]
    after_id: Option<i64>,
    entity: Option<String>,
    object: Option<String>,
    actor: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    max_results: Option<i64>,
    /// The account's changes instead: principals, groups, passwords, tokens, workspaces.
    #[serde(default, deserialize_with = "de::opt_bool")]
    account: Option<bool>,
}

/// `GET /api/2.0/tarn/audit`: the workspace's changes (registry and permissions) in order,
/// or with `account=true` the identity changes every workspace shares, for admins. Page with
/// `after_id` = the last `id` seen.
async fn audit(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    Req(req): Req<AuditReq>,
) -> ApiResult<Json<Value>> {
    let limit = super::pages::max_results(req.max_results, 1000, 10_000)?;
    let events = state
        .store
        .events(&tarn_core::events::EventQuery {
            workspace: Some(if req.account.unwrap_or(false) {
                tarn_core::events::ACCOUNT.to_string()
            } else {
                ctx.workspace.clone()
            }),
            after_id: req.after_id.unwrap_or(0),
            entity: req.entity,
            object: req.object,
            actor: req.actor,
            limit,
        })
        .await?;
    Ok(Json(json!({ "events": events })))
}

fn principal_json(p: &PrincipalRecord) -> Value {
    json!({"id": p.id, "name": p.name, "kind": p.kind.as_str(), "is_admin": p.is_admin, "active": p.active, "created_at": p.created_at})
}

fn token_json(t: &TokenInfo) -> Value {
    json!({
        "token_id": t.token_id,
        "principal": t.principal_name,
        "comment": t.comment,
        "creation_time": t.created_at,
        "expiry_time": t.expires_at.unwrap_or(-1),
        "workspace": t.workspace,
    })
}

#[derive(Deserialize)]
pub struct CreateUser {
    name: String,
    password: Option<String>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    admin: Option<bool>,
}

pub async fn create_user(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    Req(req): Req<CreateUser>,
) -> ApiResult<Json<Value>> {
    let user = create_principal(
        state.store.as_ref(),
        &req.name,
        PrincipalKind::User,
        req.admin.unwrap_or(false),
        req.password.as_deref(),
        &ctx.principal.name,
    )
    .await?;
    Ok(Json(json!({ "user": principal_json(&user) })))
}

pub async fn list_users(State(state): State<AppState>, _: Admin) -> ApiResult<Json<Value>> {
    let principals = state.store.list_principals(None).await?;
    Ok(Json(
        json!({ "principals": principals.iter().map(principal_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize)]
pub struct NameReq {
    name: String,
}

pub async fn create_group(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    Req(req): Req<NameReq>,
) -> ApiResult<Json<Value>> {
    let group = create_principal(
        state.store.as_ref(),
        &req.name,
        PrincipalKind::Group,
        false,
        None,
        &ctx.principal.name,
    )
    .await?;
    Ok(Json(json!({ "group": principal_json(&group) })))
}

pub async fn create_service_principal(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    Req(req): Req<NameReq>,
) -> ApiResult<Json<Value>> {
    let sp = create_principal(
        state.store.as_ref(),
        &req.name,
        PrincipalKind::ServicePrincipal,
        false,
        None,
        &ctx.principal.name,
    )
    .await?;
    Ok(Json(json!({ "service_principal": principal_json(&sp) })))
}

#[derive(Deserialize)]
pub struct GroupMemberReq {
    group: String,
    member: String,
}

pub async fn add_group_member(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    Req(req): Req<GroupMemberReq>,
) -> ApiResult<Json<Value>> {
    state
        .store
        .add_group_member(&req.group, &req.member, &ctx.principal.name)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct MemberReq {
    principal: String,
}

pub async fn add_member(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    Req(req): Req<MemberReq>,
) -> ApiResult<Json<Value>> {
    state
        .store
        .add_workspace_member(&ctx.workspace, &req.principal, &ctx.principal.name)
        .await?;
    Ok(Json(json!({})))
}

pub async fn remove_member(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    Req(req): Req<MemberReq>,
) -> ApiResult<Json<Value>> {
    state
        .store
        .remove_workspace_member(&ctx.workspace, &req.principal, &ctx.principal.name)
        .await?;
    state.forget_access();
    Ok(Json(json!({})))
}

pub async fn list_members(State(state): State<AppState>, ctx: Caller) -> ApiResult<Json<Value>> {
    let members = state.store.workspace_members(&ctx.workspace).await?;
    Ok(Json(
        json!({ "members": members.iter().map(principal_json).collect::<Vec<_>>() }),
    ))
}

pub async fn me(ctx: Caller) -> Json<Value> {
    Json(
        json!({ "name": ctx.principal.name, "kind": ctx.principal.kind.as_str(), "is_admin": ctx.principal.is_admin, "workspace": ctx.workspace }),
    )
}

#[derive(Deserialize)]
pub struct TokenReq {
    principal: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    lifetime_seconds: Option<i64>,
    comment: Option<String>,
    /// The one workspace the token may be used in.
    workspace: Option<String>,
}

fn issued(info: &TokenInfo, secret: String) -> Json<Value> {
    Json(json!({ "token_value": secret, "token_info": token_json(info) }))
}

pub async fn create_own_token(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<TokenReq>,
) -> ApiResult<Json<Value>> {
    // A token limited to a workspace makes only tokens limited to it.
    let workspace = match (&ctx.principal.only_workspace, req.workspace) {
        (Some(only), Some(asked)) if *only != asked => {
            return Err(Error::permission_denied(format!(
                "This token is limited to workspace '{only}' and cannot make tokens for '{asked}'"
            ))
            .into());
        }
        (Some(only), _) => Some(only.clone()),
        (None, asked) => asked,
    };
    let (info, secret) = issue_token(
        state.store.as_ref(),
        &ctx.principal.name,
        req.comment.as_deref().unwrap_or(""),
        req.lifetime_seconds,
        workspace.as_deref(),
        &ctx.principal.name,
    )
    .await?;
    Ok(issued(&info, secret))
}

pub async fn create_token_for(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    Req(req): Req<TokenReq>,
) -> ApiResult<Json<Value>> {
    let principal = req
        .principal
        .as_deref()
        .ok_or_else(|| Error::invalid("Missing value for required parameter 'principal'."))?;
    if state.store.get_principal(principal).await?.kind == PrincipalKind::Group {
        return Err(Error::invalid("Groups cannot hold tokens").into());
    }
    let (info, secret) = issue_token(
        state.store.as_ref(),
        principal,
        req.comment.as_deref().unwrap_or(""),
        req.lifetime_seconds,
        req.workspace.as_deref(),
        &ctx.principal.name,
    )
    .await?;
    Ok(issued(&info, secret))
}

pub async fn list_own_tokens(State(state): State<AppState>, ctx: Caller) -> ApiResult<Json<Value>> {
    let tokens = state.store.list_tokens(Some(&ctx.principal.name)).await?;
    Ok(Json(
        json!({ "token_infos": tokens.iter().map(token_json).collect::<Vec<_>>() }),
    ))
}

pub async fn list_all_tokens(State(state): State<AppState>, _: Admin) -> ApiResult<Json<Value>> {
    let tokens = state.store.list_tokens(None).await?;
    Ok(Json(
        json!({ "token_infos": tokens.iter().map(token_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize)]
pub struct RevokeReq {
    token_id: String,
}

pub async fn revoke_own_token(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<RevokeReq>,
) -> ApiResult<Json<Value>> {
    let owner = state.store.token_owner(&req.token_id).await?;
    if owner != ctx.principal.id && !ctx.principal.is_admin {
        return Err(
            Error::permission_denied("Only the token's owner or an admin can revoke it").into(),
        );
    }
    state
        .store
        .revoke_token(&req.token_id, &ctx.principal.name)
        .await?;
    state.forget_access();
    Ok(Json(json!({})))
}
