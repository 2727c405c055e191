//! Webhook management in both shapes: MLflow 3 (`/api/2.0/mlflow/webhooks[/{id}[/test]]`,
//! admin only, as in MLflow 3.17) and Databricks registry webhooks
//! (`/api/2.0/mlflow/registry-webhooks/...`: model webhooks need CAN_MANAGE on the model,
//! registry-wide ones an admin), plus tarn's delivery log.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::Error;
use tarn_core::auth::PermissionLevel;
use tarn_core::caller::Caller;
use tarn_core::store::DeliveryQuery;
use tarn_core::webhooks::{self as hooks, Flavor, Webhook, WebhookStatus};
use tarn_events::webhooks::check_destination;
use tarn_identity::require_admin;

use super::pages::{PageBody, max_results, page_body};
use super::registry::required;
use crate::error::ApiResult;
use crate::extract::{Admin, PathArgs, Req, de};
use crate::state::AppState;
use tarn_identity::access;

type JsonResult = ApiResult<Json<Value>>;

const MAX_NAME_LENGTH: usize = 256;

fn mlflow_json(webhook: &Webhook) -> Value {
    json!({
        "webhook_id": webhook.id,
        "name": webhook.name,
        "description": webhook.description,
        "url": webhook.url,
        "events": webhook.events.iter().map(|e| hooks::mlflow_event_json(e)).collect::<Vec<_>>(),
        "status": webhook.status.as_str(),
        "creation_timestamp": webhook.creation_timestamp,
        "last_updated_timestamp": webhook.last_updated_timestamp,
    })
}

fn databricks_json(webhook: &Webhook) -> Value {
    let mut body = json!({
        "id": webhook.id,
        "events": webhook.events,
        "description": webhook.description,
        "status": webhook.status.as_str(),
        "http_url_spec": {
            "url": webhook.url,
            "enable_ssl_verification": webhook.enable_ssl_verification,
        },
        "creation_timestamp": webhook.creation_timestamp,
        "last_updated_timestamp": webhook.last_updated_timestamp,
    });
    if let Some(model) = &webhook.model_name {
        body["model_name"] = json!(model);
    }
    body
}

#[derive(Deserialize)]
pub struct MlflowEvent {
    entity: String,
    action: String,
}

#[derive(Deserialize)]
pub struct MlflowWebhookReq {
    name: Option<String>,
    description: Option<String>,
    url: Option<String>,
    events: Option<Vec<MlflowEvent>>,
    secret: Option<String>,
    status: Option<String>,
}

fn mlflow_events(events: &[MlflowEvent]) -> Result<Vec<String>, Error> {
    if events.is_empty() {
        return Err(Error::invalid("A webhook needs at least one event"));
    }
    events
        .iter()
        .map(|e| hooks::mlflow_event_name(&e.entity, &e.action))
        .collect()
}

fn validate_name(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_LENGTH {
        return Err(Error::invalid(format!(
            "Webhook name must be 1 to {MAX_NAME_LENGTH} characters"
        )));
    }
    Ok(())
}

pub async fn create_mlflow(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    Req(req): Req<MlflowWebhookReq>,
) -> JsonResult {
    let name = required(&req.name, "name")?.to_string();
    validate_name(&name)?;
    let url = required(&req.url, "url")?.to_string();
    let events = mlflow_events(req.events.as_deref().unwrap_or_default())?;
    let status = req
        .status
        .as_deref()
        .map(WebhookStatus::parse)
        .transpose()?
        .unwrap_or(WebhookStatus::Active);
    if status == WebhookStatus::TestMode {
        return Err(Error::invalid("MLflow webhooks are ACTIVE or DISABLED").into());
    }
    check_destination(&url, state.webhooks.settings().allow_private).await?;
    let now = tarn_core::ids::now_millis();
    let webhook = Webhook {
        id: tarn_core::ids::hex32(rand::random()),
        workspace: ctx.workspace.clone(),
        flavor: Flavor::Mlflow,
        name,
        description: req.description.unwrap_or_default(),
        url,
        secret: req.secret.filter(|s| !s.is_empty()),
        authorization: None,
        enable_ssl_verification: true,
        model_name: None,
        events,
        status,
        creation_timestamp: now,
        last_updated_timestamp: now,
    };
    state.store.create_webhook(&webhook, &ctx.actor()).await?;
    Ok(Json(json!({ "webhook": mlflow_json(&webhook) })))
}

#[derive(Deserialize)]
pub struct PageReq {
    #[serde(default, deserialize_with = "de::opt_i64")]
    max_results: Option<i64>,
    page_token: Option<String>,
    model_name: Option<String>,
}

pub async fn list_mlflow(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    Req(req): Req<PageReq>,
) -> ApiResult<Json<PageBody<Value>>> {
    let offset = tarn_core::search::decode_page_token(req.page_token.as_deref().unwrap_or(""))?;
    let page = state
        .store
        .list_webhooks(
            &ctx.workspace,
            Flavor::Mlflow,
            None,
            offset,
            max_results(req.max_results, 100, 1000)?,
        )
        .await?;
    Ok(page_body(
        "webhooks",
        page.items.iter().map(mlflow_json).collect(),
        page.next_offset,
    ))
}

async fn mlflow_webhook(
    state: &AppState,
    ctx: &Caller,
    path_args: &PathArgs,
) -> ApiResult<Webhook> {
    require_admin(&ctx.principal)?;
    let id = path_args.get("webhook_id")?;
    let webhook = state.store.get_webhook(&ctx.workspace, id).await?;
    if webhook.flavor != Flavor::Mlflow {
        return Err(Error::not_found(format!("Webhook with ID {id} not found.")).into());
    }
    Ok(webhook)
}

pub async fn get_mlflow(
    State(state): State<AppState>,
    ctx: Caller,
    path_args: PathArgs,
) -> JsonResult {
    let webhook = mlflow_webhook(&state, &ctx, &path_args).await?;
    Ok(Json(json!({ "webhook": mlflow_json(&webhook) })))
}

pub async fn update_mlflow(
    State(state): State<AppState>,
    ctx: Caller,
    path_args: PathArgs,
    Req(req): Req<MlflowWebhookReq>,
) -> JsonResult {
    let mut webhook = mlflow_webhook(&state, &ctx, &path_args).await?;
    if let Some(name) = req.name {
        validate_name(&name)?;
        webhook.name = name;
    }
    if let Some(description) = req.description {
        webhook.description = description;
    }
    if let Some(url) = req.url {
        check_destination(&url, state.webhooks.settings().allow_private).await?;
        webhook.url = url;
    }
    if let Some(events) = req.events {
        webhook.events = mlflow_events(&events)?;
    }
    if let Some(secret) = req.secret {
        webhook.secret = Some(secret).filter(|s| !s.is_empty());
    }
    if let Some(status) = req.status {
        webhook.status = WebhookStatus::parse(&status)?;
    }
    webhook.last_updated_timestamp = tarn_core::ids::now_millis();
    state.store.update_webhook(&webhook, &ctx.actor()).await?;
    Ok(Json(json!({ "webhook": mlflow_json(&webhook) })))
}

pub async fn delete_mlflow(
    State(state): State<AppState>,
    ctx: Caller,
    path_args: PathArgs,
) -> JsonResult {
    let webhook = mlflow_webhook(&state, &ctx, &path_args).await?;
    state
        .store
        .delete_webhook(&ctx.workspace, &webhook.id, &ctx.actor())
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct MlflowTestReq {
    event: Option<MlflowEvent>,
}

/// Sends an example payload now and reports what the receiver answered; not queued.
pub async fn test_mlflow(
    State(state): State<AppState>,
    ctx: Caller,
    path_args: PathArgs,
    Req(req): Req<MlflowTestReq>,
) -> JsonResult {
    let webhook = mlflow_webhook(&state, &ctx, &path_args).await?;
    let name = match req.event {
        Some(event) => hooks::mlflow_event_name(&event.entity, &event.action)?,
        None => webhook
            .events
            .first()
            .cloned()
            .unwrap_or_else(|| "model_version.created".into()),
    };
    let sent = send_example(&state, &webhook, &name).await?;
    // The receiver's body stays out of the answer: the server is not a proxy that reads pages
    // for its callers.
    Ok(Json(json!({ "result": {
        "success": sent.succeeded(),
        "response_status": sent.status_code,
        "error_message": sent.error,
    }})))
}

async fn send_example(
    state: &AppState,
    webhook: &Webhook,
    name: &str,
) -> Result<tarn_events::webhooks::Sent, Error> {
    let event = hooks::example_event(webhook, name, tarn_core::ids::now_millis());
    let stored = event.change.store()?;
    let body = hooks::payload(webhook, name, &event, &stored).to_string();
    let delivery_id = format!("test-{}", tarn_core::ids::hex32(rand::random()));
    Ok(state.webhooks.send(webhook, &delivery_id, &body).await)
}

#[derive(Deserialize)]
pub struct HttpUrlSpec {
    url: Option<String>,
    secret: Option<String>,
    authorization: Option<String>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    enable_ssl_verification: Option<bool>,
}

#[derive(Deserialize)]
pub struct DatabricksWebhookReq {
    id: Option<String>,
    model_name: Option<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
    description: Option<String>,
    status: Option<String>,
    http_url_spec: Option<HttpUrlSpec>,
    job_spec: Option<Value>,
}

fn databricks_events(events: &[String]) -> Result<Vec<String>, Error> {
    if events.is_empty() {
        return Err(Error::invalid(
            "A registry webhook needs at least one event",
        ));
    }
    for event in events {
        hooks::validate_databricks_event(event)?;
    }
    Ok(events.to_vec())
}

/// Model webhooks need CAN_MANAGE on the model; registry-wide ones an admin.
async fn may_manage(state: &AppState, ctx: &Caller, model_name: Option<&str>) -> ApiResult<()> {
    match model_name {
        Some(model) => {
            access::registered_model(state.store.as_ref(), ctx, model, PermissionLevel::CanManage)
                .await?;
            Ok(())
        }
        None => Ok(require_admin(&ctx.principal)?),
    }
}

pub async fn create_databricks(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<DatabricksWebhookReq>,
) -> JsonResult {
    if req.job_spec.is_some() {
        return Err(Error::new(
            tarn_core::ErrorCode::NotImplemented,
            "job_spec webhooks start jobs, which tarn does not run yet; use http_url_spec",
        )
        .into());
    }
    let spec = req
        .http_url_spec
        .ok_or_else(|| Error::invalid("Missing value for required parameter 'http_url_spec'."))?;
    let url = required(&spec.url, "http_url_spec.url")?.to_string();
    let events = databricks_events(req.events.as_deref().unwrap_or_default())?;
    let model_name = req.model_name.filter(|m| !m.is_empty());
    if model_name.is_some() && events.iter().any(|e| e == "REGISTERED_MODEL_CREATED") {
        return Err(Error::invalid(
            "REGISTERED_MODEL_CREATED is only for registry-wide webhooks (no model_name)",
        )
        .into());
    }
    may_manage(&state, &ctx, model_name.as_deref()).await?;
    check_destination(&url, state.webhooks.settings().allow_private).await?;
    let status = req
        .status
        .as_deref()
        .map(WebhookStatus::parse)
        .transpose()?
        .unwrap_or(WebhookStatus::Active);
    let now = tarn_core::ids::now_millis();
    let webhook = Webhook {
        id: tarn_core::ids::hex32(rand::random()),
        workspace: ctx.workspace.clone(),
        flavor: Flavor::Databricks,
        name: String::new(),
        description: req.description.unwrap_or_default(),
        url,
        secret: spec.secret.filter(|s| !s.is_empty()),
        authorization: spec.authorization.filter(|a| !a.is_empty()),
        enable_ssl_verification: spec.enable_ssl_verification.unwrap_or(true),
        model_name,
        events,
        status,
        creation_timestamp: now,
        last_updated_timestamp: now,
    };
    state.store.create_webhook(&webhook, &ctx.actor()).await?;
    Ok(Json(json!({ "webhook": databricks_json(&webhook) })))
}

pub async fn list_databricks(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<PageReq>,
) -> ApiResult<Json<PageBody<Value>>> {
    let model = req.model_name.as_deref().filter(|m| !m.is_empty());
    may_manage(&state, &ctx, model).await?;
    let offset = tarn_core::search::decode_page_token(req.page_token.as_deref().unwrap_or(""))?;
    let page = state
        .store
        .list_webhooks(
            &ctx.workspace,
            Flavor::Databricks,
            model,
            offset,
            max_results(req.max_results, 100, 1000)?,
        )
        .await?;
    Ok(page_body(
        "webhooks",
        page.items.iter().map(databricks_json).collect(),
        page.next_offset,
    ))
}

async fn databricks_webhook(
    state: &AppState,
    ctx: &Caller,
    id: &Option<String>,
) -> ApiResult<Webhook> {
    let id = required(id, "id")?;
    let webhook = state.store.get_webhook(&ctx.workspace, id).await?;
    if webhook.flavor != Flavor::Databricks {
        return Err(Error::not_found(format!("Webhook with ID {id} not found.")).into());
    }
    may_manage(state, ctx, webhook.model_name.as_deref()).await?;
    Ok(webhook)
}

pub async fn update_databricks(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<DatabricksWebhookReq>,
) -> JsonResult {
    let mut webhook = databricks_webhook(&state, &ctx, &req.id).await?;
    if let Some(events) = req.events {
        webhook.events = databricks_events(&events)?;
    }
    if let Some(description) = req.description {
        webhook.description = description;
    }
    if let Some(status) = req.status {
        webhook.status = WebhookStatus::parse(&status)?;
    }
    if let Some(spec) = req.http_url_spec {
        if let Some(url) = spec.url {
            check_destination(&url, state.webhooks.settings().allow_private).await?;
            webhook.url = url;
        }
        if let Some(secret) = spec.secret {
            webhook.secret = Some(secret).filter(|s| !s.is_empty());
        }
        if let Some(authorization) = spec.authorization {
            webhook.authorization = Some(authorization).filter(|a| !a.is_empty());
        }
        if let Some(verify) = spec.enable_ssl_verification {
            webhook.enable_ssl_verification = verify;
        }
    }
    webhook.last_updated_timestamp = tarn_core::ids::now_millis();
    state.store.update_webhook(&webhook, &ctx.actor()).await?;
    Ok(Json(json!({ "webhook": databricks_json(&webhook) })))
}

#[derive(Deserialize)]
pub struct IdReq {
    id: Option<String>,
    event: Option<String>,
}

pub async fn delete_databricks(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<IdReq>,
) -> JsonResult {
    let webhook = databricks_webhook(&state, &ctx, &req.id).await?;
    state
        .store
        .delete_webhook(&ctx.workspace, &webhook.id, &ctx.actor())
        .await?;
    Ok(Json(json!({})))
}

/// Fires an example event now (any status, TEST_MODE included) and returns the answer.
pub async fn test_databricks(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<IdReq>,
) -> JsonResult {
    let webhook = databricks_webhook(&state, &ctx, &req.id).await?;
    let name = match req.event {
        Some(event) => {
            hooks::validate_databricks_event(&event)?;
            event
        }
        None => webhook.events.first().cloned().unwrap_or_default(),
    };
    let sent = send_example(&state, &webhook, &name).await?;
    if let Some(error) = sent.error {
        return Err(Error::invalid(format!("The test delivery failed: {error}")).into());
    }
    Ok(Json(
        json!({ "webhook": { "status_code": sent.status_code } }),
    ))
}

#[derive(Deserialize)]
pub struct DeliveriesReq {
    webhook_id: Option<String>,
    status: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    max_results: Option<i64>,
}

/// `GET /api/2.0/tarn/webhooks/deliveries`: each delivery with its attempts, status code,
/// latency and last error, newest first. Admins, or managers of a model webhook's model.
pub async fn deliveries(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<DeliveriesReq>,
) -> JsonResult {
    match &req.webhook_id {
        Some(id) => {
            let webhook = state.store.get_webhook(&ctx.workspace, id).await?;
            may_manage(&state, &ctx, webhook.model_name.as_deref()).await?;
        }
        None => require_admin(&ctx.principal)?,
    }
    if let Some(status) = &req.status
        && !matches!(status.as_str(), "pending" | "succeeded" | "failed")
    {
        return Err(Error::invalid("status is one of pending, succeeded, failed").into());
    }
    let deliveries = state
        .store
        .deliveries(&DeliveryQuery {
            workspace: ctx.workspace.clone(),
            webhook_id: req.webhook_id,
            status: req.status,
            limit: max_results(req.max_results, 100, 10_000)?,
        })
        .await?;
    Ok(Json(json!({ "deliveries": deliveries })))
}
