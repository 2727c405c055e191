//! Route tables. The MLflow API is mounted under every prefix the client and UI use.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use serde_json::{Value, json};
use tarn_core::caller::Caller;

use crate::error::ApiResult;
use crate::state::AppState;
pub use mounted::Mounted;

mod admin;
mod alerts;
mod artifacts;
mod catalog;
mod features;
mod jobs;
mod lineage;
mod logged_models;
mod monitors;
mod mounted;
mod pages;
mod permissions;
mod registry;
mod reviews;
mod scim;
mod serving;
mod sql;
mod tracking;
mod webhooks;
mod workspace_files;

fn mlflow() -> Mounted {
    use tracking::*;
    Mounted::new()
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

fn registry_routes() -> Mounted {
    use registry::*;
    Mounted::new()
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
pub fn api() -> Mounted {
    let mlflow = mlflow();
    Mounted::new()
        .nest("/api/2.0/mlflow", mlflow.clone())
        .nest("/ajax-api/2.0/mlflow", mlflow.clone())
        .nest("/api/3.0/mlflow", mlflow.clone())
        .nest("/ajax-api/3.0/mlflow", mlflow)
        .nest("/api/2.0/mlflow-artifacts", artifacts::routes())
        .nest("/ajax-api/2.0/mlflow-artifacts", artifacts::routes())
        .route(
            "/api/2.0/permissions/{object_type}/{object_id}",
            get(permissions::get)
                .put(permissions::put)
                .patch(permissions::patch),
        )
        .route(
            "/api/2.0/permissions/{object_type}/{object_id}/permissionLevels",
            get(permissions::permission_levels),
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
        .nest("/api/2.0/workspace", workspace_files::routes())
        .nest("/api/2.2/jobs", jobs::routes())
        .nest("/api/2.1/jobs", jobs::routes())
        .nest(
            "/api/2.1/unity-catalog",
            catalog::unity_catalog().merge(monitors::routes()),
        )
        .nest("/api/2.0/tarn/tables", catalog::table_data())
        .nest("/api/2.0/tarn/monitors", monitors::tarn_routes())
        .nest("/api/2.0/alerts", alerts::routes())
        .nest("/api/2.0/tarn/alerts", alerts::tarn_routes())
        .nest("/api/2.0/sql/statements", sql::routes())
        .nest("/api/2.0/tarn/lineage", lineage::routes())
        .merge(features::routes())
        .nest("/api/2.0/lineage-tracking", lineage::table_lineage_routes())
        .route(
            "/api/2.0/tarn/webhooks/deliveries",
            get(webhooks::deliveries),
        )
        .merge(admin::routes())
        .nest("/api/2.0/preview/scim/v2", scim::routes())
}

async fn server_info(State(state): State<AppState>, _ctx: Caller) -> Json<Value> {
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

pub async fn prometheus(State(state): State<AppState>, ctx: Caller) -> ApiResult<Response> {
    tarn_identity::require_admin(&ctx.principal)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render() + &state.endpoints.render_metrics(),
    )
        .into_response())
}
