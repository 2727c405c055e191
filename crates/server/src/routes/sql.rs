//! `/api/2.0/sql/statements`: SQL over the lakehouse in the shape of the Databricks SQL
//! statement execution API.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::Error;
use tarn_lake::SqlScope;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Ctx, PathArgs, Req, de};
use crate::statements::{Format, Submission};

type JsonResult = ApiResult<Json<Value>>;

/// Longest SQL text accepted.
const MAX_STATEMENT_LEN: usize = 1024 * 1024;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", post(submit))
        .route("/{statement_id}", get(status))
        .route("/{statement_id}/cancel", post(cancel))
        .route("/{statement_id}/result/chunks/{chunk_index}", get(chunk))
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

async fn submit(State(state): State<AppState>, ctx: Ctx, Req(req): Req<SubmitReq>) -> JsonResult {
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
    if let Some(disposition) = &req.disposition
        && !disposition.eq_ignore_ascii_case("INLINE")
    {
        return Err(Error::invalid(format!(
            "Invalid disposition '{disposition}': tarn returns results INLINE"
        ))
        .into());
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
    let submission = Submission {
        statement,
        scope: SqlScope {
            catalog: req.catalog,
            schema: req.schema,
        },
        format: Format::parse(req.format.as_deref())?,
        row_limit,
        wait: wait_of(req.wait_timeout.as_deref())?,
        cancel_on_timeout,
    };
    let described = state
        .statements
        .submit(
            state.store.clone(),
            state.lake.clone(),
            ctx.caller(),
            submission,
        )
        .await;
    Ok(Json(described))
}

async fn status(State(state): State<AppState>, ctx: Ctx, path: PathArgs) -> JsonResult {
    Ok(Json(
        state
            .statements
            .get(&ctx.caller(), path.get("statement_id")?)?,
    ))
}

async fn chunk(State(state): State<AppState>, ctx: Ctx, path: PathArgs) -> JsonResult {
    let index = path.get("chunk_index")?;
    let index = index
        .parse::<usize>()
        .map_err(|_| Error::invalid(format!("Invalid chunk_index '{index}'")))?;
    Ok(Json(state.statements.chunk(
        &ctx.caller(),
        path.get("statement_id")?,
        index,
    )?))
}

async fn cancel(State(state): State<AppState>, ctx: Ctx, path: PathArgs) -> JsonResult {
    state
        .statements
        .cancel(&ctx.caller(), path.get("statement_id")?)?;
    Ok(Json(json!({})))
}
