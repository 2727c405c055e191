//! `/api/2.0/sql/statements`: SQL over the lakehouse in the shape of the Databricks SQL
//! statement execution API.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::Error;
use tarn_core::caller::Caller;
use tarn_lake::{SqlScope, ipc};

use super::mounted::Mounted;
use crate::error::ApiResult;
use crate::extract::{PathArgs, QueryArgs, Req, de};
use crate::state::AppState;
use tarn_lake::statements::{Disposition, Format, LinkBase, Submission};

type JsonResult = ApiResult<Json<Value>>;

/// Longest SQL text accepted.
const MAX_STATEMENT_LEN: usize = 1024 * 1024;

pub fn routes() -> Mounted {
    Mounted::new()
        .route("/", post(submit))
        .route("/{statement_id}", get(status))
        .route("/{statement_id}/cancel", post(cancel))
        .route("/{statement_id}/result/chunks/{chunk_index}", get(chunk))
        .route(
            "/{statement_id}/result/chunks/{chunk_index}/file",
            get(download),
        )
}

/// The address the client reached this server at, for the links to result files.
fn link_base(headers: &HeaderMap) -> LinkBase {
    LinkBase(crate::extract::request_base_url(headers))
}

#[derive(Deserialize)]
struct SubmitReq {
    statement: Option<String>,
    /// Accepted for compatibility: tarn has no warehouses to choose.
    #[serde(rename = "warehouse_id")]
    _warehouse_id: Option<String>,
    catalog: Option<String>,
    schema: Option<String>,
    wait_timeout: Option<String>,
    on_wait_timeout: Option<String>,
    format: Option<String>,
    disposition: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    row_limit: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    byte_limit: Option<i64>,
}

/// `wait_timeout` as Databricks takes it: `0s` (answer at once) or 5 to 50 seconds.
fn wait_of(text: Option<&str>) -> Result<Duration, Error> {
    let text = text.unwrap_or("10s");
    let seconds = text
        .strip_suffix('s')
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| {
            Error::invalid(format!(
                "Invalid wait_timeout '{text}': expected 0s or 5s to 50s"
            ))
        })?;
    if seconds != 0 && !(5..=50).contains(&seconds) {
        return Err(Error::invalid(format!(
            "Invalid wait_timeout '{text}': expected 0s or 5s to 50s"
        )));
    }
    Ok(Duration::from_secs(seconds))
}

async fn submit(
    State(state): State<AppState>,
    ctx: Caller,
    headers: HeaderMap,
    Req(req): Req<SubmitReq>,
) -> JsonResult {
    let statement = req.statement.unwrap_or_default();
    if statement.trim().is_empty() {
        return Err(Error::invalid("Missing value for required parameter 'statement'").into());
    }
    if statement.len() > MAX_STATEMENT_LEN {
        return Err(Error::invalid(format!(
            "The statement is longer than {MAX_STATEMENT_LEN} bytes"
        ))
        .into());
    }
    let disposition = Disposition::parse(req.disposition.as_deref())?;
    let format = Format::parse(req.format.as_deref())?;
    if disposition == Disposition::ExternalLinks {
        if format != Format::ArrowStream {
            return Err(Error::invalid(
                "EXTERNAL_LINKS results are written as ARROW_STREAM: ask for that format",
            )
            .into());
        }
        if req.row_limit.is_some() || req.byte_limit.is_some() {
            return Err(Error::invalid(
                "row_limit and byte_limit apply to INLINE results; limit an EXTERNAL_LINKS query in its SQL",
            )
            .into());
        }
    }
    let cancel_on_timeout = match req.on_wait_timeout.as_deref().map(str::to_ascii_uppercase) {
        None => false,
        Some(value) if value == "CONTINUE" => false,
        Some(value) if value == "CANCEL" => true,
        Some(other) => {
            return Err(Error::invalid(format!(
                "Invalid on_wait_timeout '{other}': expected CONTINUE or CANCEL"
            ))
            .into());
        }
    };
    let row_limit = match req.row_limit {
        Some(n) if n <= 0 => {
            return Err(
                Error::invalid(format!("Invalid row_limit {n}: expected 1 or more")).into(),
            );
        }
        other => other.map(|n| n as usize),
    };
    let byte_limit = match req.byte_limit {
        Some(n) if n <= 0 => {
            return Err(
                Error::invalid(format!("Invalid byte_limit {n}: expected 1 or more")).into(),
            );
        }
        other => other.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
    };
    let submission = Submission {
        statement,
        scope: SqlScope {
            catalog: req.catalog,
            schema: req.schema,
            ..SqlScope::default()
        },
        format,
        disposition,
        row_limit,
        byte_limit,
        wait: wait_of(req.wait_timeout.as_deref())?,
        cancel_on_timeout,
    };
    let described = state
        .statements
        .submit(
            state.lake.clone(),
            ctx.clone(),
            submission,
            &link_base(&headers),
        )
        .await?;
    Ok(Json(described))
}

async fn status(
    State(state): State<AppState>,
    ctx: Caller,
    headers: HeaderMap,
    path: PathArgs,
) -> JsonResult {
    Ok(Json(
        state
            .statements
            .get(&ctx, path.get("statement_id")?, &link_base(&headers))
            .await?,
    ))
}

async fn chunk(
    State(state): State<AppState>,
    ctx: Caller,
    headers: HeaderMap,
    path: PathArgs,
) -> JsonResult {
    let index = path.get("chunk_index")?;
    let index = index
        .parse::<usize>()
        .map_err(|_| Error::invalid(format!("Invalid chunk_index '{index}'")))?;
    Ok(Json(
        state
            .statements
            .chunk(&ctx, path.get("statement_id")?, index, &link_base(&headers))
            .await?,
    ))
}

#[derive(Deserialize)]
struct DownloadArgs {
    #[serde(default, deserialize_with = "de::opt_i64")]
    expires: Option<i64>,
    signature: Option<String>,
}

/// A result file, through the signed link a statement's answer gave: no credentials, as with
/// the presigned URLs Databricks hands out.
async fn download(
    State(state): State<AppState>,
    path: PathArgs,
    QueryArgs(args): QueryArgs<DownloadArgs>,
) -> ApiResult<Response> {
    let index = path.get("chunk_index")?;
    let index = index
        .parse::<usize>()
        .map_err(|_| Error::invalid(format!("Invalid chunk_index '{index}'")))?;
    let bytes = state
        .statements
        .download(
            path.get("statement_id")?,
            index,
            args.expires.unwrap_or_default(),
            args.signature.as_deref().unwrap_or_default(),
        )
        .await?;
    Ok(([(header::CONTENT_TYPE, ipc::ARROW_STREAM)], bytes).into_response())
}

async fn cancel(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    state
        .statements
        .cancel(&ctx, path.get("statement_id")?)
        .await?;
    Ok(Json(json!({})))
}
