//! The artifact proxy (`/api/2.0/mlflow-artifacts/...`) and the run-based artifact listing.
//! Paths start with the experiment id (`<exp>/<run>/artifacts/...`), which decides permissions.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::auth::PermissionLevel;
use tarn_core::{Error, ErrorCode};

use super::{experiment_access, run_access};
use crate::AppState;
use crate::artifacts::validate_relative_path;
use crate::error::ApiResult;
use crate::extract::{Ctx, PathArgs, Req};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/artifacts", get(list))
        .route(
            "/artifacts/{*path}",
            get(download).put(upload).delete(remove),
        )
        .route("/mpu/create/{*path}", post(multipart_unsupported))
        .route("/mpu/complete/{*path}", post(multipart_unsupported))
        .route("/mpu/abort/{*path}", post(multipart_unsupported))
}

/// Checks the path and the caller's level on the experiment the path starts with.
async fn authorize_path(
    state: &AppState,
    ctx: &Ctx,
    path: &str,
    level: PermissionLevel,
) -> ApiResult<()> {
    validate_relative_path(path)?;
    let experiment_id = path.split('/').next().unwrap_or("");
    if experiment_id.is_empty() {
        return Err(Error::invalid("An artifact path must start with an experiment id").into());
    }
    experiment_access(state, ctx, experiment_id, level).await?;
    Ok(())
}

pub async fn upload(
    State(state): State<AppState>,
    ctx: Ctx,
    path_args: PathArgs,
    request: Request,
) -> ApiResult<Json<Value>> {
    let path = path_args.get("path")?.to_string();
    authorize_path(&state, &ctx, &path, PermissionLevel::CanEdit).await?;
    let body = request
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    state
        .artifacts
        .put_stream(&ctx.workspace, &path, body)
        .await?;
    Ok(Json(json!({})))
}

pub async fn download(
    State(state): State<AppState>,
    ctx: Ctx,
    path_args: PathArgs,
) -> ApiResult<Response> {
    let path = path_args.get("path")?.to_string();
    authorize_path(&state, &ctx, &path, PermissionLevel::CanRead).await?;
    let (size, stream) = state.artifacts.get_stream(&ctx.workspace, &path).await?;
    let content_type = content_type_of(&path);
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

fn content_type_of(path: &str) -> &'static str {
    let extension = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "json" => "application/json",
        "txt" | "log" | "yaml" | "yml" | "md" | "py" | "csv" => "text/plain",
        "html" | "htm" => "text/html",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

pub async fn remove(
    State(state): State<AppState>,
    ctx: Ctx,
    path_args: PathArgs,
) -> ApiResult<Json<Value>> {
    let path = path_args.get("path")?.to_string();
    authorize_path(&state, &ctx, &path, PermissionLevel::CanEdit).await?;
    state.artifacts.delete(&ctx.workspace, &path).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct ListQuery {
    path: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    ctx: Ctx,
    Req(query): Req<ListQuery>,
) -> ApiResult<Json<Value>> {
    let path = query.path.unwrap_or_default();
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Err(
            Error::invalid("Listing needs a path that starts with an experiment id").into(),
        );
    }
    authorize_path(&state, &ctx, path, PermissionLevel::CanRead).await?;
    let files = state.artifacts.list(&ctx.workspace, path).await?;
    Ok(Json(if files.is_empty() {
        json!({})
    } else {
        json!({ "files": files })
    }))
}

async fn multipart_unsupported(_ctx: Ctx) -> ApiResult<Json<Value>> {
    Err(Error::new(
        ErrorCode::NotImplemented,
        "Multipart uploads are not offered by this server (server-info says so)",
    )
    .into())
}

#[derive(Deserialize)]
pub struct RunArtifactsReq {
    run_id: Option<String>,
    run_uuid: Option<String>,
    path: Option<String>,
}

/// `GET /mlflow/artifacts/list`: paths relative to the run's artifact root.
pub async fn list_run_artifacts(
    State(state): State<AppState>,
    ctx: Ctx,
    Req(req): Req<RunArtifactsReq>,
) -> ApiResult<Json<Value>> {
    let run_id = req
        .run_id
        .or(req.run_uuid)
        .ok_or_else(|| Error::invalid("Missing value for required parameter 'run_id'."))?;
    run_access(&state, &ctx, &run_id, PermissionLevel::CanRead).await?;
    let run = state.store.get_run(&ctx.workspace, &run_id).await?;
    let sub = req.path.unwrap_or_default();
    let sub = sub.trim_matches('/');
    if !sub.is_empty() {
        validate_relative_path(sub)?;
    }
    let root = run
        .info
        .artifact_uri
        .trim_start_matches("mlflow-artifacts:/")
        .trim_matches('/')
        .to_string();
    let listed = if sub.is_empty() {
        root.clone()
    } else {
        format!("{root}/{sub}")
    };
    let files: Vec<Value> = state
        .artifacts
        .list(&ctx.workspace, &listed)
        .await?
        .into_iter()
        .map(|f| {
            let path = if sub.is_empty() {
                f.path
            } else {
                format!("{sub}/{}", f.path)
            };
            json!({ "path": path, "is_dir": f.is_dir, "file_size": f.file_size })
        })
        .collect();
    Ok(Json(
        json!({ "root_uri": run.info.artifact_uri, "files": files }),
    ))
}
