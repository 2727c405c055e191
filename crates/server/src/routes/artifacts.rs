//! The artifact proxy (`/api/2.0/mlflow-artifacts/...`) and the run-based artifact listing.
//! Paths start with the experiment id (`<exp>/<run>/artifacts/...`), which decides permissions.

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::auth::{ObjectType, PermissionLevel};
use tarn_core::caller::Caller;
use tarn_core::{Error, ErrorCode};

use super::mounted::Mounted;
use crate::error::ApiResult;
use crate::extract::{PathArgs, QueryArgs, Req, de};
use crate::state::AppState;
use tarn_artifacts::validate_relative_path;
use tarn_identity::access;
use tarn_registry::REGISTRY_PREFIX;

pub fn routes() -> Mounted {
    Mounted::new()
        .route("/artifacts", get(list))
        .route(
            "/artifacts/{*path}",
            get(download).put(upload).delete(remove),
        )
        .route("/mpu/create/{*path}", post(create_multipart))
        .route("/mpu/part/{*path}", put(upload_part))
        .route("/mpu/complete/{*path}", post(complete_multipart))
        .route("/mpu/abort/{*path}", post(abort_multipart))
}

/// Checks the path and the caller's level on what the path belongs to: the experiment its
/// first segment names, or for `_registry/<model id>/...` the registered model. Registry
/// copies are immutable: nobody writes or deletes them through the proxy.
async fn authorize_path(
    state: &AppState,
    ctx: &Caller,
    path: &str,
    level: PermissionLevel,
) -> ApiResult<()> {
    validate_relative_path(path)?;
    let mut segments = path.split('/');
    let first = segments.next().unwrap_or("");
    if first.is_empty() {
        return Err(Error::invalid("An artifact path must start with an experiment id").into());
    }
    if first == REGISTRY_PREFIX {
        if level != PermissionLevel::CanRead {
            return Err(Error::permission_denied(
                "Model version artifacts are immutable: registry storage cannot be written",
            )
            .into());
        }
        let model_id = segments.next().unwrap_or("");
        tarn_identity::require(
            state.store.as_ref(),
            &ctx.workspace,
            &ctx.principal,
            ObjectType::RegisteredModel,
            model_id,
            PermissionLevel::CanRead,
        )
        .await?;
        return Ok(());
    }
    access::experiment(state.store.as_ref(), ctx, first, level).await?;
    Ok(())
}

pub async fn upload(
    State(state): State<AppState>,
    ctx: Caller,
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
    ctx: Caller,
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

/// Deleting an artifact loses it for good: CAN_MANAGE, as MLflow's auth plugin asks for an
/// artifact DELETE and Databricks for purging (CAN_EDIT only logs artifacts).
pub async fn remove(
    State(state): State<AppState>,
    ctx: Caller,
    path_args: PathArgs,
) -> ApiResult<Json<Value>> {
    let path = path_args.get("path")?.to_string();
    authorize_path(&state, &ctx, &path, PermissionLevel::CanManage).await?;
    state.artifacts.delete(&ctx.workspace, &path).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct ListQuery {
    path: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    ctx: Caller,
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

#[derive(Deserialize)]
pub struct CreateMultipartReq {
    path: Option<String>,
    num_parts: Option<u64>,
}

/// The object a multipart call names: MLflow's client puts the destination folder in the URL
/// and its local file in `path`, and the file keeps its base name.
fn multipart_file(folder: &str, local_file: &Option<String>) -> ApiResult<String> {
    let local_file = local_file
        .as_deref()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Error::invalid("Missing value for required parameter 'path'."))?;
    let name = local_file
        .rsplit(['/', '\\'])
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .ok_or_else(|| Error::invalid(format!("Invalid file path '{local_file}'")))?;
    let path = format!("{}/{name}", folder.trim_end_matches('/'));
    validate_relative_path(&path)?;
    Ok(path)
}

/// The most parts S3 accepts in one upload.
const MAX_PARTS: u64 = 10_000;
/// How long the part URLs handed out by `mpu/create` stay valid.
const PART_URL_LIFETIME_SECS: i64 = 24 * 3600;
/// The largest part accepted; MLflow's client sends 10 MiB parts by default.
const MAX_PART_BYTES: usize = 512 * 1024 * 1024;

/// `mpu/create`: starts an upload and hands out one signed URL per part. The URLs point back at
/// this server (clients of a proxying server need no storage credentials or network path to
/// the bucket); the signature binds workspace, path, upload and part, so a part URL grants
/// nothing else.
pub async fn create_multipart(
    State(state): State<AppState>,
    ctx: Caller,
    path_args: PathArgs,
    headers: axum::http::HeaderMap,
    Req(req): Req<CreateMultipartReq>,
) -> ApiResult<Json<Value>> {
    let path = multipart_file(path_args.get("path")?, &req.path)?;
    authorize_path(&state, &ctx, &path, PermissionLevel::CanEdit).await?;
    let num_parts = req.num_parts.unwrap_or(1);
    if !(1..=MAX_PARTS).contains(&num_parts) {
        return Err(Error::invalid(format!(
            "num_parts must be between 1 and {MAX_PARTS}, got {num_parts}"
        ))
        .into());
    }
    let upload_id = state
        .artifacts
        .create_multipart(&ctx.workspace, &path)
        .await?;
    let base = crate::extract::request_base_url(&headers)
        .ok_or_else(|| Error::invalid("The request has no Host header"))?;
    let expires = tarn_core::ids::now_millis() / 1000 + PART_URL_LIFETIME_SECS;
    let credentials = (1..=num_parts)
        .map(|part_number| {
            let url = state.part_urls.url(
                &base,
                &ctx.workspace,
                &path,
                &upload_id,
                part_number,
                expires,
            )?;
            Ok(json!({ "url": url, "part_number": part_number, "headers": {} }))
        })
        .collect::<tarn_core::Result<Vec<Value>>>()?;
    Ok(Json(
        json!({ "upload_id": upload_id, "credentials": credentials }),
    ))
}

#[derive(Deserialize)]
pub struct PartQuery {
    upload_id: String,
    #[serde(default, deserialize_with = "de::opt_i64")]
    part_number: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    expires: Option<i64>,
    signature: String,
}

/// `PUT mpu/part/<path>?...`: one part, authorised by the URL's signature instead of a token.
pub async fn upload_part(
    State(state): State<AppState>,
    path_args: PathArgs,
    QueryArgs(query): QueryArgs<PartQuery>,
    request: Request,
) -> ApiResult<Response> {
    let path = path_args.get("path")?.to_string();
    let (Some(part_number), Some(expires)) = (
        query.part_number.and_then(|n| u64::try_from(n).ok()),
        query.expires,
    ) else {
        return Err(Error::invalid("A part URL needs part_number and expires").into());
    };
    let workspace = path_args
        .get("workspace")
        .unwrap_or(crate::extract::DEFAULT_WORKSPACE)
        .to_string();
    state.part_urls.verify(
        &workspace,
        &path,
        &query.upload_id,
        part_number,
        expires,
        &query.signature,
        tarn_core::ids::now_millis() / 1000,
    )?;
    let data = axum::body::to_bytes(request.into_body(), MAX_PART_BYTES)
        .await
        .map_err(|e| {
            Error::new(
                ErrorCode::InvalidParameterValue,
                format!("Part body could not be read (at most {MAX_PART_BYTES} bytes): {e}"),
            )
        })?;
    let part_number =
        usize::try_from(part_number).map_err(|_| Error::invalid("part_number is out of range"))?;
    let etag = state
        .artifacts
        .put_part(&workspace, &path, &query.upload_id, part_number, data)
        .await?;
    Ok(([(header::ETAG, etag)], Json(json!({}))).into_response())
}

#[derive(Deserialize)]
pub struct UploadedPart {
    part_number: u64,
    etag: String,
}

#[derive(Deserialize)]
pub struct CompleteMultipartReq {
    path: Option<String>,
    upload_id: Option<String>,
    #[serde(default)]
    parts: Vec<UploadedPart>,
}

pub async fn complete_multipart(
    State(state): State<AppState>,
    ctx: Caller,
    path_args: PathArgs,
    Req(req): Req<CompleteMultipartReq>,
) -> ApiResult<Json<Value>> {
    let path = multipart_file(path_args.get("path")?, &req.path)?;
    authorize_path(&state, &ctx, &path, PermissionLevel::CanEdit).await?;
    let upload_id = required_upload_id(req.upload_id)?;
    let mut parts = req.parts;
    if parts.is_empty() {
        return Err(Error::invalid("Completing a multipart upload needs its parts").into());
    }
    parts.sort_by_key(|p| p.part_number);
    if parts
        .iter()
        .enumerate()
        .any(|(i, p)| p.part_number != i as u64 + 1)
    {
        return Err(Error::invalid("Parts must be numbered 1, 2, ... without gaps").into());
    }
    let etags = parts.into_iter().map(|p| p.etag).collect();
    state
        .artifacts
        .complete_multipart(&ctx.workspace, &path, &upload_id, etags)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub struct AbortMultipartReq {
    path: Option<String>,
    upload_id: Option<String>,
}

pub async fn abort_multipart(
    State(state): State<AppState>,
    ctx: Caller,
    path_args: PathArgs,
    Req(req): Req<AbortMultipartReq>,
) -> ApiResult<Json<Value>> {
    let path = multipart_file(path_args.get("path")?, &req.path)?;
    authorize_path(&state, &ctx, &path, PermissionLevel::CanEdit).await?;
    let upload_id = required_upload_id(req.upload_id)?;
    state
        .artifacts
        .abort_multipart(&ctx.workspace, &path, &upload_id)
        .await?;
    Ok(Json(json!({})))
}

fn required_upload_id(upload_id: Option<String>) -> ApiResult<String> {
    upload_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Error::invalid("Missing value for required parameter 'upload_id'.").into())
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
    ctx: Caller,
    Req(req): Req<RunArtifactsReq>,
) -> ApiResult<Json<Value>> {
    let run_id = req
        .run_id
        .or(req.run_uuid)
        .ok_or_else(|| Error::invalid("Missing value for required parameter 'run_id'."))?;
    access::run(
        state.store.as_ref(),
        &ctx,
        &run_id,
        PermissionLevel::CanRead,
    )
    .await?;
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
