//! The feature store's API (`/api/2.0/tarn/feature-tables`, `/api/2.0/tarn/training-sets`),
//! thin over `tarn_features`. Names and shapes follow Databricks Feature Engineering's client
//! (`primary_keys`, `timestamp_keys`, `FeatureLookup`'s fields); rows travel as Arrow IPC or
//! Parquet, as the table data API's do.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tarn_core::Error;
use tarn_core::caller::Caller;
use tarn_core::catalog::{ColumnInfo, Privilege, TableInfo};
use tarn_core::features::{FeatureTable, Pipeline, TrainingSet, TrainingSetSpec};
use tarn_core::search::decode_page_token;
use tarn_features::tables::{self, FeatureRows, NewFeatureTable};
use tarn_features::{online, training};

use super::catalog::{MAX_DATA_BODY, data_response, rows_of};
use super::mounted::Mounted;
use super::pages::{PageBody, page_body};
use crate::error::ApiResult;
use crate::extract::{PathArgs, Req, de, query_args};
use crate::state::AppState;

type JsonResult = ApiResult<Json<Value>>;

const DEFAULT_PAGE: u64 = 100;
const MAX_PAGE: u64 = 1000;
/// The response header naming the training set whose rows a response holds.
pub const TRAINING_SET_HEADER: &str = "x-tarn-training-set-id";

pub fn routes() -> Mounted {
    Mounted::new()
        .route(
            "/api/2.0/tarn/feature-tables",
            get(search_feature_tables).post(create_feature_table),
        )
        .route(
            "/api/2.0/tarn/feature-tables/{full_name}",
            get(get_feature_table).delete(delete_feature_table),
        )
        .route(
            "/api/2.0/tarn/feature-tables/{full_name}/data",
            post(write_features),
        )
        .route(
            "/api/2.0/tarn/feature-tables/{full_name}/publish",
            post(publish_feature_table),
        )
        .route("/api/2.0/tarn/online/lookup", post(lookup_features))
        .route("/api/2.0/tarn/training-sets", post(create_training_set))
        .route("/api/2.0/tarn/training-sets/{id}", get(get_training_set))
        .route(
            "/api/2.0/tarn/training-sets/{id}/data",
            get(training_set_data),
        )
        .body_limit(MAX_DATA_BODY)
}

/// A feature table as the API shows it: its keys and provenance, the catalog's owner and
/// columns, and the features (the columns that are not keys).
fn feature_table_json(meta: &FeatureTable, table: &TableInfo) -> Value {
    let is_key = |c: &&ColumnInfo| {
        meta.primary_keys.contains(&c.name) || meta.timestamp_key.as_deref() == Some(&c.name)
    };
    let features: Vec<&ColumnInfo> = table.columns.iter().filter(|c| !is_key(c)).collect();
    json!({
        "name": meta.full_name,
        "table_id": meta.table_id,
        "primary_keys": meta.primary_keys,
        "timestamp_keys": meta.timestamp_key.iter().collect::<Vec<_>>(),
        "description": meta.description,
        "source_tables": meta.source_tables,
        "pipeline": meta.pipeline,
        "features": features,
        "owner": table.owner,
        "created_by": meta.created_by,
        "creation_timestamp": meta.created_at,
        "last_updated_timestamp": table.updated_at,
        "storage_location": table.storage_location,
    })
}

#[derive(Deserialize, Default)]
struct CreateFeatureTableReq {
    name: Option<String>,
    #[serde(default, deserialize_with = "de::string_list")]
    primary_keys: Vec<String>,
    /// Databricks' client takes a list holding at most one name.
    #[serde(default, deserialize_with = "de::string_list")]
    timestamp_keys: Vec<String>,
    #[serde(default)]
    description: String,
    #[serde(default, deserialize_with = "de::string_list")]
    source_tables: Vec<String>,
    #[serde(default, deserialize_with = "de::string_list")]
    partition_columns: Vec<String>,
    #[serde(default)]
    pipeline: Pipeline,
    #[serde(default)]
    columns: Vec<ColumnInfo>,
    query: Option<String>,
}

impl CreateFeatureTableReq {
    fn into_new(self) -> Result<NewFeatureTable, Error> {
        if self.timestamp_keys.len() > 1 {
            return Err(Error::invalid(
                "A feature table has at most one timestamp key",
            ));
        }
        tarn_core::catalog::validate_comment(&self.description)?;
        Ok(NewFeatureTable {
            name: self
                .name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| Error::invalid("Missing value for required parameter 'name'."))?,
            primary_keys: self.primary_keys,
            timestamp_key: self.timestamp_keys.into_iter().next(),
            description: self.description,
            source_tables: self.source_tables,
            pipeline: self.pipeline,
            partition_columns: self.partition_columns,
        })
    }
}

/// Creates a feature table from `columns` or a `query` (JSON body), or from rows (an Arrow IPC
/// body, the other arguments in the query string).
async fn create_feature_table(
    State(state): State<AppState>,
    ctx: Caller,
    request: Request,
) -> JsonResult {
    let is_arrow = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/vnd.apache.arrow"));
    let (new, rows) = if is_arrow {
        let req: CreateFeatureTableReq = query_args(request.uri().query().unwrap_or(""))?;
        let rows = FeatureRows::Data(rows_of(request.into_body()).await?);
        (req.into_new()?, rows)
    } else {
        let Req(mut req) = Req::<CreateFeatureTableReq>::from_request(request, &state).await?;
        let columns = std::mem::take(&mut req.columns);
        let rows = match (req.query.take(), columns.is_empty()) {
            (Some(_), false) => {
                return Err(Error::invalid("Give columns or a query, not both").into());
            }
            (Some(query), true) => FeatureRows::Query(query),
            (None, false) => FeatureRows::Schema(columns),
            (None, true) => {
                return Err(Error::invalid(
                    "Give the table's columns, a query, or its rows as an Arrow IPC body",
                )
                .into());
            }
        };
        (req.into_new()?, rows)
    };
    let (meta, table) = tables::create(&state.lake, state.store.as_ref(), &ctx, new, rows).await?;
    Ok(Json(feature_table_json(&meta, &table)))
}

#[derive(Deserialize)]
struct SearchArgs {
    search: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    max_results: Option<i64>,
    page_token: Option<String>,
}

/// Feature tables the caller may see, matching `search` in name, description or columns.
async fn search_feature_tables(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<SearchArgs>,
) -> ApiResult<Json<PageBody<Value>>> {
    let max_results = match args.max_results {
        None => DEFAULT_PAGE,
        Some(n) if (1..=MAX_PAGE as i64).contains(&n) => n as u64,
        Some(n) => {
            return Err(Error::invalid(format!(
                "Invalid max_results {n}: expected 1 to {MAX_PAGE}"
            ))
            .into());
        }
    };
    let offset = decode_page_token(args.page_token.as_deref().unwrap_or(""))
        .map_err(|e| Error::invalid(format!("Invalid page_token: {e}")))?;
    let (found, next) = tables::search(
        state.store.as_ref(),
        &ctx,
        args.search.as_deref().unwrap_or("").trim(),
        max_results,
        offset,
    )
    .await?;
    Ok(page_body(
        "feature_tables",
        found
            .iter()
            .map(|(m, t)| feature_table_json(m, t))
            .collect(),
        next,
    ))
}

/// A feature table, with its online freshness (the version published last and when).
async fn get_feature_table(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
) -> JsonResult {
    let (meta, table) = tables::feature_table_for(
        state.store.as_ref(),
        &ctx,
        path.get("full_name")?,
        Privilege::UseSchema,
    )
    .await?;
    let mut body = feature_table_json(&meta, &table);
    if let Some(publication) = state.online.publication(&meta.full_name).await? {
        body["online"] = json!({
            "online_store": state.online.kind(),
            "published_version": publication.version,
            "published_at": publication.published_at,
            "keys": publication.keys,
            "ttl_seconds": publication.ttl_micros.map(|t| t as f64 / 1e6),
            "refresh": publication.refresh.as_deref().unwrap_or("manual"),
            "published_by": publication.published_by,
            "refresh_error": publication.refresh_error,
        });
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
struct PublishReq {
    /// How old a value may be when looked up (`3d`, `12h`, ...).
    ttl: Option<String>,
    /// `full` rewrites every key; otherwise only keys changed since the last publish.
    mode: Option<String>,
    /// How the server keeps the table published: `manual`, `continuous` or a schedule (`1h`).
    refresh: Option<String>,
}

/// Publishes the latest value of each key to the online store.
async fn publish_feature_table(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    Req(req): Req<PublishReq>,
) -> JsonResult {
    let full = match req.mode.as_deref() {
        None | Some("incremental") => false,
        Some("full") => true,
        Some(other) => {
            return Err(Error::invalid(format!(
                "Invalid mode '{other}': expected incremental or full"
            ))
            .into());
        }
    };
    let options = online::PublishOptions {
        ttl: req.ttl,
        full,
        refresh: req.refresh,
    };
    let published = online::publish(
        &state.lake,
        state.store.as_ref(),
        state.online.as_ref(),
        &ctx,
        path.get("full_name")?,
        &options,
    )
    .await?;
    // The publication's ttl may have changed.
    state.lookups.clear();
    Ok(Json(json!(published)))
}

/// Most keys one lookup may ask for.
const MAX_LOOKUP_KEYS: usize = 1000;

#[derive(Deserialize)]
struct LookupReq {
    table_name: Option<String>,
    #[serde(default)]
    keys: Vec<serde_json::Map<String, Value>>,
    ttl: Option<String>,
}

/// A lookup's answer, serialized straight from each key's stored JSON (a `Value` would parse
/// and print every feature again).
#[derive(Serialize)]
struct LookupResponse {
    results: Vec<online::Lookup>,
}

/// Looks keys up in the online store: per key a status, the feature time and the values.
async fn lookup_features(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<LookupReq>,
) -> ApiResult<Json<LookupResponse>> {
    let table = req
        .table_name
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::invalid("Missing value for required parameter 'table_name'."))?;
    if req.keys.len() > MAX_LOOKUP_KEYS {
        return Err(Error::invalid(format!(
            "Too many keys: at most {MAX_LOOKUP_KEYS} per lookup"
        ))
        .into());
    }
    let request = online::LookupRequest {
        table: &table,
        keys: &req.keys,
        ttl: req.ttl.as_deref(),
        now: tarn_core::ids::now_millis(),
    };
    let results = online::lookup(
        state.store.as_ref(),
        state.online.as_ref(),
        &state.lookups,
        &ctx,
        &request,
    )
    .await?;
    Ok(Json(LookupResponse { results }))
}

/// Drops the feature table: its data and its catalog entry (only its owner or an admin).
async fn delete_feature_table(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
) -> JsonResult {
    let caller = ctx.clone();
    let (_, table) = tables::feature_table_for(
        state.store.as_ref(),
        &caller,
        path.get("full_name")?,
        Privilege::UseSchema,
    )
    .await?;
    tarn_lake::access::require_owner(
        state.store.as_ref(),
        &caller,
        &tarn_lake::access::Securable::table(&table),
    )
    .await?;
    state
        .lake
        .drop_table(state.store.as_ref(), &caller.actor(), &table)
        .await?;
    state.forget_access();
    Ok(Json(json!({})))
}

/// Upserts the rows of an Arrow IPC body on the table's keys.
async fn write_features(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    body: axum::body::Body,
) -> JsonResult {
    let batches = rows_of(body).await?;
    let merged = tables::write(
        &state.lake,
        state.store.as_ref(),
        &ctx,
        path.get("full_name")?,
        batches,
    )
    .await?;
    Ok(Json(json!(merged)))
}

#[derive(Deserialize)]
struct CreateTrainingSetReq {
    #[serde(flatten)]
    spec: TrainingSetSpec,
    output_table: Option<String>,
    format: Option<String>,
}

fn training_set_json(set: &TrainingSet) -> Value {
    json!({ "training_set": set })
}

/// Answers with the rows (Arrow IPC, or Parquet with `format=parquet`) and the training set's
/// id in a header.
async fn rows_response(
    batch: tarn_lake::arrow::record_batch::RecordBatch,
    format: Option<&str>,
    training_set_id: &str,
) -> ApiResult<Response> {
    let mut response = data_response(format, batch.schema(), vec![batch]).await?;
    if let Ok(value) = HeaderValue::from_str(training_set_id) {
        response.headers_mut().insert(TRAINING_SET_HEADER, value);
    }
    Ok(response)
}

/// Builds a training set. With `output_table` its rows go to a new Delta table and the answer
/// is the training set's record; without, the answer is the rows.
async fn create_training_set(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<CreateTrainingSetReq>,
) -> ApiResult<Response> {
    if let Some(format) = req.format.as_deref()
        && !matches!(format, "arrow" | "parquet")
    {
        return Err(Error::invalid(format!(
            "Invalid format '{format}': expected arrow or parquet"
        ))
        .into());
    }
    let built = training::create(
        &state.lake,
        state.store.as_ref(),
        &ctx,
        req.spec,
        req.output_table.as_deref(),
    )
    .await?;
    if built.training_set.output_table.is_some() {
        return Ok(Json(training_set_json(&built.training_set)).into_response());
    }
    rows_response(
        built.batch,
        req.format.as_deref(),
        &built.training_set.training_set_id,
    )
    .await
}

async fn get_training_set(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
) -> JsonResult {
    let set = state
        .store
        .get_training_set(&ctx.workspace, path.get("id")?)
        .await?;
    Ok(Json(training_set_json(&set)))
}

#[derive(Deserialize)]
struct DataArgs {
    format: Option<String>,
}

/// The rows of a recorded training set, built again from the table versions it read.
async fn training_set_data(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    Req(args): Req<DataArgs>,
) -> ApiResult<Response> {
    let (batch, set) =
        training::rebuild(&state.lake, state.store.as_ref(), &ctx, path.get("id")?).await?;
    rows_response(batch, args.format.as_deref(), &set.training_set_id).await
}
