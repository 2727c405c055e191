//! Route tables. The MLflow API is mounted under every prefix the client and UI use.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};
use tarn_core::auth::{ObjectType, PermissionLevel};
use tarn_core::{Error, ErrorCode};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::Ctx;

mod admin;
mod artifacts;
mod catalog;
mod features;
mod lineage;
mod logged_models;
mod permissions;
mod registry;
pub use registry::{TRAINING_SET_TAG, UNOWNED_COPY_GRACE, remove_unowned_copies};
mod reviews;
mod serving;
mod sql;
mod tracking;
mod webhooks;

fn mlflow() -> Router<AppState> {
    use tracking::*;
    Router::new()
        .route("/experiments/create", post(create_experiment))
        .route("/experiments/get", get(get_experiment))
        .route("/experiments/get-by-name", get(get_experiment_by_name))
        .route(
            "/experiments/search",
            get(search_experiments).post(search_experiments),
        )
        .route("/experiments/list", get(search_experiments))
        .route("/experiments/update", post(update_experiment))
        .route("/experiments/delete", post(delete_experiment))
        .route("/experiments/restore", post(restore_experiment))
        .route("/experiments/set-experiment-tag", post(set_experiment_tag))
        .route(
            "/experiments/delete-experiment-tag",
            post(delete_experiment_tag),
        )
        .route("/runs/create", post(create_run))
        .route("/runs/get", get(get_run))
        .route("/runs/update", post(update_run))
        .route("/runs/delete", post(delete_run))
        .route("/runs/restore", post(restore_run))
        .route("/runs/search", post(search_runs).get(search_runs))
        .route("/runs/log-metric", post(log_metric))
        .route("/runs/log-parameter", post(log_param))
        .route("/runs/set-tag", post(set_tag))
        .route("/runs/delete-tag", post(delete_tag))
        .route("/runs/log-batch", post(log_batch))
        .route("/runs/log-inputs", post(log_inputs))
        .route("/runs/outputs", post(log_outputs))
        .route("/runs/log-model", post(log_model))
        .route("/metrics/get-history", get(metric_history))
        .route("/artifacts/list", get(artifacts::list_run_artifacts))
        .route("/logged-models", post(logged_models::create))
        .route("/logged-models/search", post(logged_models::search))
        .route(
            "/logged-models/{model_id}",
            get(logged_models::get)
                .patch(logged_models::finalize)
                .delete(logged_models::delete),
        )
        .route(
            "/logged-models/{model_id}/tags",
            patch(logged_models::set_tags),
        )
        .route(
            "/logged-models/{model_id}/tags/{key}",
            delete(logged_models::delete_tag),
        )
        .route(
            "/logged-models/{model_id}/params",
            post(logged_models::log_params),
        )
        .route("/server-info", get(server_info))
        .merge(registry_routes())
}

fn registry_routes() -> Router<AppState> {
    use registry::*;
    Router::new()
        .route("/registered-models/create", post(create_model))
        .route("/registered-models/get", get(get_model))
        .route("/registered-models/rename", post(rename_model))
        .route("/registered-models/update", patch(update_model))
        .route("/registered-models/delete", delete(delete_model))
        .route(
            "/registered-models/search",
            get(search_models).post(search_models),
        )
        .route(
            "/registered-models/get-latest-versions",
            post(latest_versions).get(latest_versions),
        )
        .route("/registered-models/set-tag", post(set_model_tag))
        .route("/registered-models/delete-tag", delete(delete_model_tag))
        .route(
            "/registered-models/alias",
            post(set_alias).delete(delete_alias).get(get_by_alias),
        )
        .route("/model-versions/create", post(create_version))
        .route("/model-versions/get", get(get_version))
        .route("/model-versions/update", patch(update_version))
        .route("/model-versions/delete", delete(delete_version))
        .route(
            "/model-versions/search",
            get(search_versions).post(search_versions),
        )
        .route("/model-versions/transition-stage", post(transition_stage))
        .route("/model-versions/get-download-uri", get(download_uri))
        .route("/model-versions/set-tag", post(set_version_tag))
        .route("/model-versions/delete-tag", delete(delete_version_tag))
        .route(
            "/databricks/registered-models/get",
            get(get_model_databricks),
        )
        .route(
            "/databricks/model-versions/transition-stage",
            post(transition_stage_databricks),
        )
        .route("/transition-requests/create", post(reviews::create_request))
        .route(
            "/transition-requests/approve",
            post(reviews::approve_request),
        )
        .route("/transition-requests/reject", post(reviews::reject_request))
        .route(
            "/transition-requests/delete",
            delete(reviews::cancel_request),
        )
        .route("/transition-requests/list", get(reviews::list_requests))
        .route("/model-versions/activities", get(reviews::list_activities))
        .route("/comments/create", post(reviews::create_comment))
        .route("/comments/update", patch(reviews::update_comment))
        .route("/comments/delete", delete(reviews::delete_comment))
        .route(
            "/webhooks",
            post(webhooks::create_mlflow).get(webhooks::list_mlflow),
        )
        .route(
            "/webhooks/{webhook_id}",
            get(webhooks::get_mlflow)
                .patch(webhooks::update_mlflow)
                .delete(webhooks::delete_mlflow),
        )
        .route("/webhooks/{webhook_id}/test", post(webhooks::test_mlflow))
        .route(
            "/registry-webhooks/create",
            post(webhooks::create_databricks),
        )
        .route("/registry-webhooks/list", get(webhooks::list_databricks))
        .route(
            "/registry-webhooks/update",
            patch(webhooks::update_databricks),
        )
        .route(
            "/registry-webhooks/delete",
            delete(webhooks::delete_databricks),
        )
        .route("/registry-webhooks/test", post(webhooks::test_databricks))
}

/// Every API, relative to the root or to `/ws/{workspace}`.
pub fn api() -> Router<AppState> {
    let mlflow = mlflow();
    Router::new()
        .nest("/api/2.0/mlflow", mlflow.clone())
        .nest("/ajax-api/2.0/mlflow", mlflow.clone())
        .nest("/api/3.0/mlflow", mlflow.clone())
        .nest("/ajax-api/3.0/mlflow", mlflow)
        .nest("/api/2.0/mlflow-artifacts", artifacts::routes())
        .nest("/ajax-api/2.0/mlflow-artifacts", artifacts::routes())
        .route(
            "/api/2.0/permissions/experiments/{experiment_id}",
            get(permissions::get_experiment)
                .put(permissions::put_experiment)
                .patch(permissions::patch_experiment),
        )
        .route(
            "/api/2.0/permissions/experiments/{experiment_id}/permissionLevels",
            get(permissions::experiment_levels),
        )
        .route(
            "/api/2.0/permissions/registered-models/{registered_model_id}",
            get(permissions::get_registered_model)
                .put(permissions::put_registered_model)
                .patch(permissions::patch_registered_model),
        )
        .route(
            "/api/2.0/permissions/registered-models/{registered_model_id}/permissionLevels",
            get(permissions::registered_model_levels),
        )
        .route(
            "/api/2.0/permissions/serving-endpoints/{serving_endpoint_id}",
            get(permissions::get_serving_endpoint)
                .put(permissions::put_serving_endpoint)
                .patch(permissions::patch_serving_endpoint),
        )
        .route(
            "/api/2.0/permissions/serving-endpoints/{serving_endpoint_id}/permissionLevels",
            get(permissions::serving_endpoint_levels),
        )
        .route(
            "/api/2.0/serving-endpoints",
            post(serving::create).get(serving::list),
        )
        .route(
            "/api/2.0/serving-endpoints/{name}",
            get(serving::get).delete(serving::delete),
        )
        .route(
            "/api/2.0/serving-endpoints/{name}/config",
            put(serving::update_config),
        )
        .route(
            "/serving-endpoints/{name}/invocations",
            post(serving::invoke),
        )
        .nest("/api/2.1/unity-catalog", catalog::unity_catalog())
        .nest("/api/2.0/tarn/tables", catalog::table_data())
        .nest("/api/2.0/sql/statements", sql::routes())
        .nest("/api/2.0/tarn/lineage", lineage::routes())
        .merge(features::routes())
        .nest("/api/2.0/lineage-tracking", lineage::table_lineage_routes())
        .route(
            "/api/2.0/tarn/webhooks/deliveries",
            get(webhooks::deliveries),
        )
        .merge(admin::routes())
}

async fn server_info(State(state): State<AppState>, _ctx: Ctx) -> Json<Value> {
    Json(json!({
        "store_type": state.store.backend_name(),
        "workspaces_enabled": true,
        "trace_archival_enabled": false,
        "multipart_uploads_enabled": state.artifacts.supports_multipart(),
        "multipart_downloads_enabled": false,
        "presigned_upload_run_id_supported": false,
        "presigned_upload_model_id_supported": false,
        "features_enabled": {"gateway": false},
    }))
}

pub async fn prometheus(State(state): State<AppState>, ctx: Ctx) -> ApiResult<Response> {
    crate::auth::require_admin(&ctx.principal)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render() + &state.endpoints.render_metrics(),
    )
        .into_response())
}

pub async fn not_found(uri: axum::http::Uri) -> Response {
    let error = Error::new(
        ErrorCode::EndpointNotFound,
        format!("No API endpoint at {}", uri.path()),
    );
    let mut response = ApiError(error).into_response();
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// Experiment ids arrive as strings; check the experiment exists, then the caller's level.
pub async fn experiment_access(
    state: &AppState,
    ctx: &Ctx,
    experiment_id: &str,
    level: PermissionLevel,
) -> ApiResult<i64> {
    let id = tarn_core::validation::parse_experiment_id(experiment_id)?;
    // Permission first: whoever may not read an id learns nothing, not even whether it exists
    // (ids are small numbers, easy to walk).
    crate::auth::require(
        state.store.as_ref(),
        &ctx.workspace,
        &ctx.principal,
        ObjectType::Experiment,
        &id.to_string(),
        level,
    )
    .await?;
    if !state.store.experiment_exists(&ctx.workspace, id).await? {
        return Err(Error::not_found(format!("No Experiment with id={id} exists")).into());
    }
    Ok(id)
}

/// The same for a run, through its experiment.
pub async fn run_access(
    state: &AppState,
    ctx: &Ctx,
    run_id: &str,
    level: PermissionLevel,
) -> ApiResult<i64> {
    tarn_core::validation::validate_run_id(run_id)?;
    let experiment_id = state
        .store
        .run_experiment_id(&ctx.workspace, run_id)
        .await?;
    crate::auth::require(
        state.store.as_ref(),
        &ctx.workspace,
        &ctx.principal,
        ObjectType::Experiment,
        &experiment_id.to_string(),
        level,
    )
    .await?;
    Ok(experiment_id)
}

/// Checks a `max_results` against MLflow's default and cap for that search.
/// A page of a list or search answer, `{"<key>": [...], "next_page_token": "..."}` (the token
/// only when more follow), serialized straight from the items: through a `Value` every item's
/// fields would be copied into maps first, a tenth of a 100-version registry search's time.
pub struct PageBody<T> {
    key: &'static str,
    items: Vec<T>,
    next_offset: Option<u64>,
}

impl<T: serde::Serialize> serde::Serialize for PageBody<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(self.key, &self.items)?;
        if let Some(next) = self.next_offset {
            map.serialize_entry(
                "next_page_token",
                &tarn_core::search::encode_page_token(next),
            )?;
        }
        map.end()
    }
}

pub fn page_body<T>(
    key: &'static str,
    items: Vec<T>,
    next_offset: Option<u64>,
) -> Json<PageBody<T>> {
    Json(PageBody {
        key,
        items,
        next_offset,
    })
}

pub fn max_results(requested: Option<i64>, default: u64, cap: u64) -> Result<u64, Error> {
    match requested {
        None => Ok(default),
        Some(n) if n <= 0 => Err(Error::invalid(format!(
            "Invalid value {n} for parameter 'max_results' supplied. It must be a positive integer"
        ))),
        Some(n) if n as u64 > cap => Err(Error::invalid(format!(
            "Invalid value {n} for parameter 'max_results' supplied. It must be at most {cap}"
        ))),
        Some(n) => Ok(n as u64),
    }
}
