//! The workspace files API in Databricks' shape (`/api/2.0/workspace/...`): what
//! `WorkspaceClient().workspace.upload/download/list/get_status/mkdirs/delete` and bundle
//! deploys call. `import` takes JSON with base64 content or a multipart form, as the SDK sends.

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::Error;
use tarn_core::caller::Caller;
use tarn_core::files::{MAX_FILE_SIZE, WorkspaceObject};
use tarn_jobs::workspace_files::{self, Import, ImportFormat};

use super::mounted::Mounted;
use crate::error::ApiResult;
use crate::extract::{Req, de};
use crate::state::AppState;

type JsonResult = ApiResult<Json<Value>>;

/// An import's body: the file as base64 in JSON (a third larger) or a form, with room for the
/// other fields.
const IMPORT_BODY_LIMIT: usize = MAX_FILE_SIZE / 3 * 4 + 64 * 1024;

pub fn routes() -> Mounted {
    Mounted::new()
        .route("/import", post(import))
        .route("/export", get(export))
        .route("/get-status", get(get_status))
        .route("/list", get(list))
        .route("/mkdirs", post(mkdirs))
        .route("/delete", post(delete))
        .body_limit(IMPORT_BODY_LIMIT)
}

#[derive(Deserialize, Default)]
struct ImportArgs {
    #[serde(default)]
    path: Option<String>,
    /// Base64.
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    overwrite: Option<bool>,
}

async fn import(State(state): State<AppState>, ctx: Caller, request: Request<Body>) -> JsonResult {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("multipart/form-data"));
    let (args, content) = if multipart {
        form_import(
            Multipart::from_request(request, &state)
                .await
                .map_err(bad_form)?,
        )
        .await?
    } else {
        let Req(args) = Req::<ImportArgs>::from_request(request, &state).await?;
        let content = match &args.content {
            Some(text) => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|err| Error::invalid(format!("content is not base64: {err}")))?,
            None => return Err(Error::invalid("content is required").into()),
        };
        (args, content)
    };
    let format = ImportFormat::parse(args.format.as_deref().unwrap_or("SOURCE"))?;
    let path = args
        .path
        .as_deref()
        .ok_or_else(|| Error::invalid("path is required"))?;
    workspace_files::import(
        state.store.as_ref(),
        &ctx,
        Import {
            path,
            content: &content,
            format,
            language: args.language.as_deref(),
            overwrite: args.overwrite.unwrap_or(false),
        },
    )
    .await?;
    Ok(Json(json!({})))
}

fn bad_form(err: impl std::fmt::Display) -> Error {
    Error::new(
        tarn_core::ErrorCode::BadRequest,
        format!("Malformed multipart form: {err}"),
    )
}

/// An import sent as a form: `content` the file, the other fields text.
async fn form_import(mut form: Multipart) -> ApiResult<(ImportArgs, Vec<u8>)> {
    let mut args = ImportArgs::default();
    let mut content = None;
    while let Some(field) = form.next_field().await.map_err(bad_form)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "content" {
            content = Some(field.bytes().await.map_err(bad_form)?.to_vec());
            continue;
        }
        let text = field.text().await.map_err(bad_form)?;
        match name.as_str() {
            "path" => args.path = Some(text),
            "format" => args.format = Some(text),
            "language" => args.language = Some(text),
            "overwrite" => args.overwrite = Some(text.eq_ignore_ascii_case("true")),
            _ => {}
        }
    }
    let content = content.ok_or_else(|| Error::invalid("content is required"))?;
    Ok((args, content))
}

#[derive(Deserialize)]
struct ObjectArgs {
    path: Option<String>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    direct_download: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    recursive: Option<bool>,
}

impl ObjectArgs {
    fn path(&self) -> Result<&str, Error> {
        self.path
            .as_deref()
            .ok_or_else(|| Error::invalid("path is required"))
    }
}

async fn export(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<ObjectArgs>,
) -> ApiResult<Response> {
    let (object, content) =
        workspace_files::export(state.store.as_ref(), &ctx, args.path()?).await?;
    if args.direct_download.unwrap_or(false) {
        return Ok((
            [(header::CONTENT_TYPE, "application/octet-stream")],
            content,
        )
            .into_response());
    }
    let file_type = match object.language.as_deref() {
        Some("PYTHON") => "py",
        Some("SQL") => "sql",
        Some("SCALA") => "scala",
        Some("R") => "r",
        _ => "",
    };
    let mut body = json!({
        "content": base64::engine::general_purpose::STANDARD.encode(content),
    });
    if !file_type.is_empty() {
        body["file_type"] = json!(file_type);
    }
    Ok(Json(body).into_response())
}

fn object_json(object: &WorkspaceObject) -> Value {
    let mut body = json!({
        "object_type": object.object_type.as_str(),
        "path": object.path,
        "object_id": object.object_id,
        "created_at": object.created_at,
        "modified_at": object.modified_at,
    });
    if let Some(language) = &object.language {
        body["language"] = json!(language);
    }
    if object.object_type != tarn_core::files::ObjectType::Directory {
        body["size"] = json!(object.size);
    }
    body
}

async fn get_status(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<ObjectArgs>,
) -> JsonResult {
    let object = workspace_files::status(state.store.as_ref(), &ctx, args.path()?).await?;
    Ok(Json(object_json(&object)))
}

async fn list(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<ObjectArgs>,
) -> JsonResult {
    let objects = workspace_files::list(state.store.as_ref(), &ctx, args.path()?).await?;
    if objects.is_empty() {
        return Ok(Json(json!({})));
    }
    Ok(Json(json!({
        "objects": objects.iter().map(object_json).collect::<Vec<_>>(),
    })))
}

async fn mkdirs(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<ObjectArgs>,
) -> JsonResult {
    workspace_files::mkdirs(state.store.as_ref(), &ctx, args.path()?).await?;
    Ok(Json(json!({})))
}

async fn delete(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<ObjectArgs>,
) -> JsonResult {
    workspace_files::delete(
        state.store.as_ref(),
        &ctx,
        args.path()?,
        args.recursive.unwrap_or(false),
    )
    .await?;
    Ok(Json(json!({})))
}
