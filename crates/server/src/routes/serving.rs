//! Serving endpoints in the Databricks API shape (`/api/2.0/serving-endpoints`) and their
//! invocations (`/serving-endpoints/{name}/invocations`). Creating or updating an endpoint
//! loads its models first: a model tarn cannot score is refused then, with the operator named,
//! and nothing is stored.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::auth::{ObjectType, PermissionLevel};
use tarn_core::caller::Caller;
use tarn_core::entities::KeyValue;
use tarn_core::serving::{EndpointConfig, ServingEndpoint, validate_endpoint_name};
use tarn_core::{Error, ErrorCode};

use crate::error::{ApiError, ApiResult};
use crate::extract::{PathArgs, Req};
use crate::state::AppState;
use tarn_identity::access;

type JsonResult = ApiResult<Json<Value>>;

/// The endpoint as Databricks' API shows it, with what is running now.
fn endpoint_json(state: &AppState, endpoint: &ServingEndpoint) -> Value {
    let live = state.endpoints.get(&endpoint.workspace, &endpoint.name);
    let failure = state.endpoints.failure(&endpoint.workspace, &endpoint.name);
    let running = live
        .as_ref()
        .filter(|l| l.endpoint.config_version == endpoint.config_version);
    let ready = if live.is_some() { "READY" } else { "NOT_READY" };
    let config_update = match (running, &failure) {
        (_, Some(_)) => "UPDATE_FAILED",
        (Some(_), None) => "NOT_UPDATING",
        (None, None) => "IN_PROGRESS",
    };
    let entities: Vec<Value> = endpoint
        .config
        .served_entities
        .iter()
        .map(|entity| {
            let mut value = serde_json::to_value(entity).unwrap_or(Value::Null);
            if let Some(running) =
                running.and_then(|l| l.entities.iter().find(|e| e.name == entity.name))
            {
                value["state"] = json!({
                    "deployment": "DEPLOYMENT_READY",
                    "deployment_state_message": format!("serving version {}", running.version),
                });
                value["served_version"] = json!(running.version.to_string());
            }
            value
        })
        .collect();
    let mut config = serde_json::to_value(&endpoint.config).unwrap_or(Value::Null);
    config["served_entities"] = Value::Array(entities);
    config["config_version"] = json!(endpoint.config_version);
    let mut body = json!({
        "id": endpoint.id,
        "name": endpoint.name,
        "creator": endpoint.creator,
        "creation_timestamp": endpoint.creation_timestamp,
        "last_updated_timestamp": endpoint.last_updated_timestamp,
        "config": config,
        "state": { "ready": ready, "config_update": config_update },
        "tags": endpoint.tags,
    });
    if let Some(message) = failure {
        body["state"]["update_failure_message"] = json!(message);
    }
    if let Some(table) = live.as_ref().and_then(|l| l.log.as_ref()) {
        body["inference_table"] = json!(table.table);
    }
    body
}

/// The caller's level on the endpoint must include `level`.
async fn endpoint_access(
    state: &AppState,
    ctx: &Caller,
    name: &str,
    level: PermissionLevel,
) -> ApiResult<ServingEndpoint> {
    let endpoint = state.store.get_endpoint(&ctx.workspace, name).await?;
    tarn_identity::require(
        state.store.as_ref(),
        &ctx.workspace,
        &ctx.principal,
        ObjectType::ServingEndpoint,
        &endpoint.id,
        level,
    )
    .await?;
    Ok(endpoint)
}

/// Its owner (the caller) must be able to read every model the config serves.
async fn check_models(state: &AppState, ctx: &Caller, config: &EndpointConfig) -> ApiResult<()> {
    for entity in &config.served_entities {
        access::registered_model(
            state.store.as_ref(),
            ctx,
            &entity.entity_name,
            PermissionLevel::CanRead,
        )
        .await?;
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct CreateEndpoint {
    name: String,
    config: EndpointConfig,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

pub async fn create(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<CreateEndpoint>,
) -> JsonResult {
    validate_endpoint_name(&args.name)?;
    let config = args.config.normalized(&ctx.workspace, &args.name)?;
    check_models(&state, &ctx, &config).await?;
    match state.store.get_endpoint(&ctx.workspace, &args.name).await {
        Ok(_) => {
            return Err(Error::already_exists(format!(
                "Serving endpoint '{}' already exists.",
                args.name
            ))
            .into());
        }
        Err(err) if err.code == ErrorCode::ResourceDoesNotExist => {}
        Err(err) => return Err(err.into()),
    }
    let now = tarn_core::ids::now_millis();
    let endpoint = ServingEndpoint {
        id: tarn_core::ids::hex32(rand::random()),
        workspace: ctx.workspace.clone(),
        name: args.name,
        creator: ctx.principal.name.clone(),
        creation_timestamp: now,
        last_updated_timestamp: now,
        config,
        config_version: 1,
        tags: args.tags,
    };
    let entities = state.endpoints.prepare(&endpoint).await?;
    state.store.create_endpoint(&endpoint, &ctx.actor()).await?;
    state.endpoints.install(endpoint.clone(), entities).await?;
    Ok(Json(endpoint_json(&state, &endpoint)))
}

pub async fn get(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    let endpoint =
        endpoint_access(&state, &ctx, path.get("name")?, PermissionLevel::CanView).await?;
    Ok(Json(endpoint_json(&state, &endpoint)))
}

pub async fn list(State(state): State<AppState>, ctx: Caller) -> JsonResult {
    let mut visible = Vec::new();
    for endpoint in state.store.list_endpoints(Some(&ctx.workspace)).await? {
        let allowed = tarn_identity::require(
            state.store.as_ref(),
            &ctx.workspace,
            &ctx.principal,
            ObjectType::ServingEndpoint,
            &endpoint.id,
            PermissionLevel::CanView,
        )
        .await;
        match allowed {
            Ok(()) => visible.push(endpoint_json(&state, &endpoint)),
            Err(err) if err.hides_object() => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(Json(json!({ "endpoints": visible })))
}

pub async fn update_config(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    Req(config): Req<EndpointConfig>,
) -> JsonResult {
    let name = path.get("name")?;
    let current = endpoint_access(&state, &ctx, name, PermissionLevel::CanManage).await?;
    let config = config.normalized(&ctx.workspace, name)?;
    check_models(&state, &ctx, &config).await?;
    let next = ServingEndpoint {
        config: config.clone(),
        config_version: current.config_version + 1,
        ..current
    };
    let entities = state.endpoints.prepare(&next).await?;
    let stored = state
        .store
        .update_endpoint_config(
            &ctx.workspace,
            name,
            &config,
            tarn_core::ids::now_millis(),
            &ctx.actor(),
        )
        .await?;
    state.endpoints.install(stored.clone(), entities).await?;
    Ok(Json(endpoint_json(&state, &stored)))
}

pub async fn delete(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    let name = path.get("name")?;
    endpoint_access(&state, &ctx, name, PermissionLevel::CanManage).await?;
    state
        .store
        .delete_endpoint(&ctx.workspace, name, &ctx.actor())
        .await?;
    state.endpoints.remove(&ctx.workspace, name);
    state.forget_access();
    Ok(Json(json!({})))
}

/// `POST /serving-endpoints/{name}/invocations`: scores with the entity the traffic split
/// picks; answers `served-model-name` and `tarn-model-version` headers; logs the request and
/// its answer (or error) to the inference table.
pub async fn invoke(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let name = path.get("name")?;
    let live = match state.endpoints.get(&ctx.workspace, name) {
        Some(live) => live,
        None => {
            // Tell a missing endpoint from one still loading.
            state.store.get_endpoint(&ctx.workspace, name).await?;
            return Err(Error::new(
                ErrorCode::TemporarilyUnavailable,
                format!("Serving endpoint '{name}' is not ready yet"),
            )
            .into());
        }
    };
    tarn_identity::require_cached(
        state.store.as_ref(),
        &state.auth_cache,
        &ctx.workspace,
        &ctx.principal,
        ObjectType::ServingEndpoint,
        &live.endpoint.id,
        PermissionLevel::CanQuery,
    )
    .await?;
    let body = crate::scoring::read_body(&headers, body, state.endpoints.limits).await;
    let invoked = state.endpoints.invoke(&live, body).await?;
    let entity = &invoked.entity;
    let mut response = match invoked.outcome {
        Ok((scored, _)) => crate::scoring::predictions(scored),
        Err(error) => ApiError(error).into_response(),
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&entity.name) {
        headers.insert("served-model-name", value);
    }
    headers.insert("tarn-model-version", HeaderValue::from(entity.version));
    if let Ok(value) = HeaderValue::from_str(&invoked.request_id) {
        headers.insert("x-request-id", value);
    }
    Ok(response)
}
