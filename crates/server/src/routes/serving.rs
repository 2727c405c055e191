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
use tarn_core::serving::{EndpointConfig, ServingEndpoint};
use tarn_core::{Error, ErrorCode};

use crate::error::{ApiError, ApiResult};
use crate::extract::{PathArgs, Req};
use crate::state::AppState;

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
    let endpoint = state
        .endpoints
        .create(&ctx, args.name, args.config, args.tags)
        .await?;
    Ok(Json(endpoint_json(&state, &endpoint)))
}

pub async fn get(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    let endpoint = state
        .endpoints
        .endpoint_for(&ctx, path.get("name")?, PermissionLevel::CanView)
        .await?;
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
    let stored = state
        .endpoints
        .update_config(&ctx, path.get("name")?, config)
        .await?;
    Ok(Json(endpoint_json(&state, &stored)))
}

pub async fn delete(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    state.endpoints.delete(&ctx, path.get("name")?).await?;
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
