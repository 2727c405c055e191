//! The lakehouse catalog in open-source Unity Catalog's REST shape
//! (`/api/2.1/unity-catalog/catalogs|schemas|tables`), and tarn's table data API
//! (`/api/2.0/tarn/tables/{full_name}/data|merge|delete|changes|optimize|vacuum|history`) with
//! Arrow IPC and Parquet bodies (appends made once per `txn_app_id` and version, read back at
//! `.../transaction`), and file ingestion (`.../ingest`, `.../ingested-files`).
//!
//! Grants in Unity Catalog's shape (`/permissions/{securable_type}/{full_name}`) and read-only
//! catalog bindings (`/bindings/catalog/{name}`). Every handler checks through
//! `tarn_lake::access`, as SQL does; external tables (a location of the caller's choosing) are
//! for admins.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::Error;
use tarn_core::caller::Caller;
use tarn_core::catalog::{
    self, CatalogInfo, ColumnInfo, NewSchema, Privilege, SchemaInfo, TableInfo, TableType,
};
use tarn_core::search::decode_page_token;
use tarn_lake::access::{self, Securable, reach_catalog};
use tarn_lake::arrow::datatypes::SchemaRef;
use tarn_lake::arrow::record_batch::RecordBatch;
use tarn_lake::catalog::location_of;
use tarn_lake::ingest::{SourceFormat, Upload, parse_columns};
use tarn_lake::writes::{self, TableRequest};
use tarn_lake::{At, MergeSpec, VacuumSpec, WriteMode, ipc};

use super::mounted::Mounted;
use super::pages::{PageBody, page_body};
use crate::error::ApiResult;
use crate::extract::{Admin, PathArgs, QueryArgs, Req, de};
use crate::state::AppState;

type JsonResult = ApiResult<Json<Value>>;

/// Largest table-data upload, in bytes.
pub const MAX_DATA_BODY: usize = 512 * 1024 * 1024;
const DEFAULT_PAGE: u64 = 100;
const MAX_PAGE: u64 = 1000;

pub fn unity_catalog() -> Mounted {
    Mounted::new()
        .route("/catalogs", get(list_catalogs))
        .route("/catalogs/{name}", get(get_catalog))
        .route("/schemas", get(list_schemas).post(create_schema))
        .route(
            "/schemas/{full_name}",
            get(get_schema).patch(update_schema).delete(delete_schema),
        )
        .route("/tables", get(list_tables).post(create_table))
        .route("/tables/{full_name}", get(get_table).delete(delete_table))
        .route(
            "/permissions/{securable_type}/{full_name}",
            get(get_permissions).patch(update_permissions),
        )
        .route(
            "/tags/{securable_type}/{full_name}",
            get(get_tags).patch(update_tags),
        )
        .route(
            "/bindings/catalog/{name}",
            get(get_bindings).patch(update_bindings),
        )
}

pub fn table_data() -> Mounted {
    Mounted::new()
        .route("/{full_name}/data", get(read_data).post(write_data))
        .route("/{full_name}/merge", post(merge_data))
        .route("/{full_name}/delete", post(delete_rows))
        .route("/{full_name}/changes", get(changes))
        .route("/{full_name}/optimize", post(optimize))
        .route("/{full_name}/vacuum", post(vacuum))
        .route("/{full_name}/history", get(history))
        .route("/{full_name}/ingest", post(ingest_file))
        .route("/{full_name}/ingested-files", get(ingested_files))
        .route("/{full_name}/transaction", get(transaction))
        .body_limit(MAX_DATA_BODY)
}

/// Checks the caller's privilege on a securable (see `tarn_lake::access`).
async fn authorize(
    state: &AppState,
    ctx: &Caller,
    securable: &Securable,
    privilege: Privilege,
) -> Result<(), Error> {
    access::authorize(state.store.as_ref(), ctx, securable, privilege).await
}

async fn require_owner(state: &AppState, ctx: &Caller, securable: &Securable) -> Result<(), Error> {
    access::require_owner(state.store.as_ref(), ctx, securable).await
}

/// Unity Catalog's paging: `max_results` 0 (what the Databricks SDK sends by default) asks
/// for a page of the server's size.
fn page_args(max_results: Option<i64>, page_token: Option<&str>) -> Result<(u64, u64), Error> {
    let limit = super::pages::max_results(max_results.filter(|&n| n != 0), DEFAULT_PAGE, MAX_PAGE)?;
    let offset = decode_page_token(page_token.unwrap_or(""))
        .map_err(|e| Error::invalid(format!("Invalid page_token: {e}")))?;
    Ok((limit, offset))
}

fn catalog_info(name: &str) -> CatalogInfo {
    CatalogInfo {
        name: name.to_string(),
        comment: format!("The catalog of workspace {name}"),
        owner: "admin".to_string(),
    }
}

async fn list_catalogs(State(state): State<AppState>, ctx: Caller) -> JsonResult {
    let mut catalogs = Vec::new();
    for workspace in state.store.list_workspaces().await? {
        let member = ctx.principal.is_admin
            || state
                .store
                .is_workspace_member(&workspace, &ctx.principal.grantee_ids())
                .await?;
        let bound = workspace == ctx.workspace
            || state
                .store
                .catalog_bindings(&workspace)
                .await?
                .contains(&ctx.workspace);
        if member && bound {
            catalogs.push(catalog_info(&workspace));
        }
    }
    Ok(Json(json!({ "catalogs": catalogs })))
}

async fn get_catalog(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    let name = catalog::normalize_name("name", path.get("name")?)?;
    authorize(
        &state,
        &ctx,
        &Securable::catalog(&name),
        Privilege::UseCatalog,
    )
    .await?;
    Ok(Json(json!(catalog_info(&name))))
}

#[derive(Deserialize)]
struct ListArgs {
    catalog_name: Option<String>,
    schema_name: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    max_results: Option<i64>,
    page_token: Option<String>,
}

async fn list_schemas(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<ListArgs>,
) -> ApiResult<Json<PageBody<SchemaInfo>>> {
    let catalog = catalog::normalize_name(
        "catalog_name",
        args.catalog_name.as_deref().unwrap_or(&ctx.workspace),
    )?;
    authorize(
        &state,
        &ctx,
        &Securable::catalog(&catalog),
        Privilege::UseCatalog,
    )
    .await?;
    let (limit, offset) = page_args(args.max_results, args.page_token.as_deref())?;
    let page = state.store.list_schemas(&catalog, limit, offset).await?;
    Ok(page_body("schemas", page.items, page.next_offset))
}

#[derive(Deserialize)]
struct CreateSchemaReq {
    name: Option<String>,
    catalog_name: Option<String>,
    comment: Option<String>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

async fn create_schema(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<CreateSchemaReq>,
) -> JsonResult {
    let name = catalog::normalize_name("name", req.name.as_deref().unwrap_or(""))?;
    let catalog = catalog::normalize_name(
        "catalog_name",
        req.catalog_name.as_deref().unwrap_or(&ctx.workspace),
    )?;
    let comment = req.comment.unwrap_or_default();
    catalog::validate_comment(&comment)?;
    authorize(
        &state,
        &ctx,
        &Securable::catalog(&catalog),
        Privilege::CreateSchema,
    )
    .await?;
    let schema = state
        .store
        .create_schema(
            &NewSchema {
                catalog,
                name,
                comment,
                properties: req.properties,
            },
            &ctx.actor(),
        )
        .await?;
    Ok(Json(json!(schema)))
}

/// The schema a path names, once its catalog is reachable.
async fn schema_of(state: &AppState, ctx: &Caller, path: &PathArgs) -> Result<SchemaInfo, Error> {
    let (catalog, name) = catalog::parse_schema_name(path.get("full_name")?)?;
    reach_catalog(state.store.as_ref(), ctx, &catalog, false).await?;
    state.store.get_schema(&catalog, &name).await
}

async fn get_schema(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    let schema = schema_of(&state, &ctx, &path).await?;
    authorize(
        &state,
        &ctx,
        &Securable::schema(&schema),
        Privilege::UseSchema,
    )
    .await?;
    Ok(Json(json!(schema)))
}

#[derive(Deserialize)]
struct UpdateSchemaReq {
    comment: Option<String>,
    properties: Option<BTreeMap<String, String>>,
    new_name: Option<String>,
}

async fn update_schema(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    Req(req): Req<UpdateSchemaReq>,
) -> JsonResult {
    let current = schema_of(&state, &ctx, &path).await?;
    let (catalog, name) = (current.catalog_name.clone(), current.name.clone());
    if req.new_name.is_some() {
        return Err(Error::invalid(
            "Renaming a schema is not supported: its tables' names would change under their readers",
        )
        .into());
    }
    if let Some(comment) = &req.comment {
        catalog::validate_comment(comment)?;
    }
    require_owner(&state, &ctx, &Securable::schema(&current)).await?;
    let schema = state
        .store
        .update_schema(
            &catalog,
            &name,
            req.comment.as_deref(),
            req.properties.as_ref(),
            &ctx.actor(),
        )
        .await?;
    Ok(Json(json!(schema)))
}

async fn delete_schema(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    Query(query): Query<HashMap<String, String>>,
) -> JsonResult {
    let current = schema_of(&state, &ctx, &path).await?;
    let (catalog, name) = (current.catalog_name.clone(), current.name.clone());
    let force = match query.get("force").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(Error::invalid(format!("Invalid value '{other}' for force")).into());
        }
    };
    require_owner(&state, &ctx, &Securable::schema(&current)).await?;
    let dropped = state
        .store
        .delete_schema(&catalog, &name, force, &ctx.actor())
        .await?;
    state.forget_access();
    for table in &dropped {
        state.lake.remove_data_of(table).await;
    }
    Ok(Json(json!({})))
}

async fn list_tables(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<ListArgs>,
) -> ApiResult<Json<PageBody<TableInfo>>> {
    let catalog = catalog::normalize_name(
        "catalog_name",
        args.catalog_name.as_deref().unwrap_or(&ctx.workspace),
    )?;
    let schema = catalog::normalize_name("schema_name", args.schema_name.as_deref().unwrap_or(""))?;
    reach_catalog(state.store.as_ref(), &ctx, &catalog, false).await?;
    let schema_info = state.store.get_schema(&catalog, &schema).await?;
    authorize(
        &state,
        &ctx,
        &Securable::schema(&schema_info),
        Privilege::UseSchema,
    )
    .await?;
    let (limit, offset) = page_args(args.max_results, args.page_token.as_deref())?;
    let page = state
        .store
        .list_tables(&catalog, &schema, limit, offset)
        .await?;
    Ok(page_body("tables", page.items, page.next_offset))
}

#[derive(Deserialize)]
struct CreateTableReq {
    name: Option<String>,
    catalog_name: Option<String>,
    schema_name: Option<String>,
    table_type: Option<String>,
    data_source_format: Option<String>,
    #[serde(default)]
    columns: Vec<ColumnInfo>,
    storage_location: Option<String>,
    comment: Option<String>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

async fn create_table(
    State(state): State<AppState>,
    ctx: Caller,
    Req(req): Req<CreateTableReq>,
) -> JsonResult {
    let name = catalog::normalize_name("name", req.name.as_deref().unwrap_or(""))?;
    let catalog = catalog::normalize_name(
        "catalog_name",
        req.catalog_name.as_deref().unwrap_or(&ctx.workspace),
    )?;
    let schema = catalog::normalize_name("schema_name", req.schema_name.as_deref().unwrap_or(""))?;
    let comment = req.comment.unwrap_or_default();
    catalog::validate_comment(&comment)?;
    if let Some(format) = &req.data_source_format
        && !format.eq_ignore_ascii_case("DELTA")
    {
        return Err(Error::invalid(format!(
            "Unsupported data_source_format '{format}': tarn's tables are Delta tables"
        ))
        .into());
    }
    let table_type = match (&req.table_type, &req.storage_location) {
        (Some(kind), _) => TableType::parse(kind)?,
        (None, Some(_)) => TableType::External,
        (None, None) => TableType::Managed,
    };
    let request = TableRequest {
        catalog,
        schema,
        name,
        table_type,
        storage_location: req.storage_location,
        columns: req.columns,
        comment,
        properties: req.properties,
    };
    let table = writes::create_table(&state.lake, state.store.as_ref(), &ctx, request).await?;
    Ok(Json(json!(table)))
}

/// The table a path names, once the caller holds `privilege` on it.
async fn table_of(
    state: &AppState,
    ctx: &Caller,
    path: &PathArgs,
    privilege: Privilege,
) -> Result<TableInfo, Error> {
    access::table_for(state.store.as_ref(), ctx, path.get("full_name")?, privilege).await
}

async fn get_table(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    Ok(Json(json!(
        table_of(&state, &ctx, &path, Privilege::UseSchema).await?
    )))
}

async fn delete_table(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    let table = table_of(&state, &ctx, &path, Privilege::UseSchema).await?;
    require_owner(&state, &ctx, &Securable::table(&table)).await?;
    let dropped = state
        .store
        .delete_table(
            &table.catalog_name,
            &table.schema_name,
            &table.name,
            &ctx.actor(),
        )
        .await?;
    state.forget_access();
    state.lake.remove_data_of(&dropped).await;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct ReadArgs {
    #[serde(default, deserialize_with = "de::opt_i64")]
    version: Option<i64>,
    timestamp: Option<String>,
    format: Option<String>,
}

/// Answers with Arrow IPC, or Parquet when `format=parquet`.
pub(crate) async fn data_response(
    format: Option<&str>,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> ApiResult<Response> {
    let parquet = match format {
        None | Some("arrow") => false,
        Some("parquet") => true,
        Some(other) => {
            return Err(Error::invalid(format!(
                "Invalid format '{other}': expected arrow or parquet"
            ))
            .into());
        }
    };
    let (bytes, media_type) = tokio::task::spawn_blocking(move || {
        if parquet {
            ipc::encode_parquet(&schema, &batches).map(|b| (b, ipc::PARQUET))
        } else {
            ipc::encode(&schema, &batches).map(|b| (b, ipc::ARROW_STREAM))
        }
    })
    .await
    .map_err(|e| Error::internal_from("encoding failed", e))??;
    Ok(([(header::CONTENT_TYPE, media_type)], Body::from(bytes)).into_response())
}

async fn read_data(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    Req(args): Req<ReadArgs>,
) -> ApiResult<Response> {
    let table = table_of(&state, &ctx, &path, Privilege::Select).await?;
    let at = At::parse(args.version, args.timestamp.as_deref())?;
    let (schema, batches) = state
        .lake
        .read(&location_of(&table)?, &table.full_name, at)
        .await?;
    data_response(args.format.as_deref(), schema, batches).await
}

#[derive(Deserialize)]
struct WriteArgs {
    mode: Option<String>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    merge_schema: Option<bool>,
    /// Delta's idempotent writes: an append made once per application and version.
    txn_app_id: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    txn_version: Option<i64>,
}

/// The rows a client sent to write: they were read from no table.
async fn client_rows(body: Body) -> Result<writes::Rows, Error> {
    Ok(writes::Rows {
        batches: rows_of(body).await?,
        read_from: Vec::new(),
    })
}

/// The rows of a data request: an Arrow IPC stream or file.
pub(crate) async fn rows_of(body: Body) -> Result<Vec<RecordBatch>, Error> {
    let body: Bytes = axum::body::to_bytes(body, MAX_DATA_BODY)
        .await
        .map_err(|_| {
            Error::invalid(format!(
                "Request body is too large: the limit for table data is {MAX_DATA_BODY} bytes"
            ))
        })?;
    if body.is_empty() {
        return Err(Error::invalid(
            "The body must be an Arrow IPC stream of the rows to write",
        ));
    }
    let (_, batches) = tokio::task::spawn_blocking(move || ipc::decode(&body))
        .await
        .map_err(|e| Error::internal_from("decoding failed", e))??;
    Ok(batches)
}

async fn write_data(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    QueryArgs(args): QueryArgs<WriteArgs>,
    body: Body,
) -> JsonResult {
    let mode = match args.mode.as_deref() {
        None | Some("append") => WriteMode::Append,
        Some("overwrite") => WriteMode::Overwrite,
        Some(other) => {
            return Err(Error::invalid(format!(
                "Invalid mode '{other}': expected append or overwrite"
            ))
            .into());
        }
    };
    let once = match (args.txn_app_id, args.txn_version) {
        (None, None) => None,
        (Some(app_id), Some(version)) if mode == WriteMode::Append => Some((app_id, version)),
        (Some(_), Some(_)) => {
            return Err(Error::invalid("An idempotent write (txn_app_id) appends").into());
        }
        _ => return Err(Error::invalid("Give txn_app_id and txn_version together").into()),
    };
    let rows = client_rows(body).await?;
    let (full_name, store) = (path.get("full_name")?, state.store.as_ref());
    let written = match once {
        Some((app_id, version)) => {
            writes::append_once(
                &state.lake,
                store,
                &ctx,
                full_name,
                rows,
                (&app_id, version),
            )
            .await?
        }
        None => Some(
            writes::write_rows(
                &state.lake,
                store,
                &ctx,
                full_name,
                rows,
                mode,
                args.merge_schema.unwrap_or(false),
            )
            .await?,
        ),
    };
    Ok(Json(match written {
        Some(written) => json!({ "version": written.version, "num_rows": written.rows }),
        None => json!({ "skipped": true, "num_rows": 0 }),
    }))
}

#[derive(Deserialize)]
struct TransactionArgs {
    app_id: Option<String>,
}

/// The version an application last recorded with an idempotent write (`txn_app_id`).
async fn transaction(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    QueryArgs(args): QueryArgs<TransactionArgs>,
) -> JsonResult {
    let app_id = args.app_id.unwrap_or_default();
    let version = writes::recorded_version(
        &state.lake,
        state.store.as_ref(),
        &ctx,
        path.get("full_name")?,
        &app_id,
    )
    .await?;
    let mut body = json!({ "app_id": app_id });
    if let Some(version) = version {
        body["version"] = json!(version);
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
struct IngestArgs {
    /// The name the file is recorded under: its absolute path on the client's machine.
    source: Option<String>,
    format: Option<String>,
    /// Columns of a new table, `name type, ...`.
    columns: Option<String>,
}

/// One file (CSV, JSON lines or Parquet, the body streamed as sent) into the table, once per
/// source; bad rows to its quarantine table. The body is not limited: it goes to disk.
async fn ingest_file(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    QueryArgs(args): QueryArgs<IngestArgs>,
    body: Body,
) -> JsonResult {
    let upload = Upload {
        table: path.get("full_name")?.to_string(),
        source: args.source.unwrap_or_default(),
        format: args
            .format
            .as_deref()
            .map(SourceFormat::parse)
            .transpose()?,
        columns: args.columns.as_deref().map(parse_columns).transpose()?,
    };
    let body = body.into_data_stream().map_err(std::io::Error::other);
    let report = state
        .lake
        .ingest_upload(state.store.as_ref(), &ctx, &upload, body)
        .await?;
    Ok(Json(json!(report)))
}

async fn ingested_files(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    let files = state
        .lake
        .ingested_files(state.store.as_ref(), &ctx, path.get("full_name")?)
        .await?;
    let files: Vec<Value> = files
        .into_iter()
        .map(|file| {
            json!({
                "source": file.source,
                "size": file.size,
                "rows_written": file.rows_written,
                "rows_quarantined": file.rows_quarantined,
                "table_version": file.table_version,
                "ingested_at": file.ingested_at,
                "ingested_by": file.ingested_by,
            })
        })
        .collect();
    Ok(Json(json!({ "files": files })))
}

#[derive(Deserialize)]
struct MergeArgs {
    #[serde(default, deserialize_with = "de::string_list")]
    keys: Vec<String>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    delete_unmatched: Option<bool>,
}

/// Upserts the rows of the body on `keys` (comma-separated or repeated).
async fn merge_data(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    QueryArgs(args): QueryArgs<MergeArgs>,
    body: Body,
) -> JsonResult {
    let keys: Vec<String> = args
        .keys
        .iter()
        .flat_map(|k| k.split(','))
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    let spec = MergeSpec {
        keys,
        delete_unmatched: args.delete_unmatched.unwrap_or(false),
    };
    let rows = client_rows(body).await?;
    let merged = writes::merge_rows(
        &state.lake,
        state.store.as_ref(),
        &ctx,
        path.get("full_name")?,
        rows,
        &spec,
    )
    .await?;
    Ok(Json(json!(merged)))
}

#[derive(Deserialize)]
struct DeleteArgs {
    predicate: Option<String>,
}

/// `DELETE FROM table WHERE predicate`.
async fn delete_rows(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    Req(args): Req<DeleteArgs>,
) -> JsonResult {
    let deleted = writes::delete_rows(
        &state.lake,
        state.store.as_ref(),
        &ctx,
        path.get("full_name")?,
        args.predicate.as_deref().unwrap_or(""),
    )
    .await?;
    Ok(Json(json!(deleted)))
}

#[derive(Deserialize)]
struct ChangesArgs {
    #[serde(default, deserialize_with = "de::opt_i64")]
    starting_version: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    ending_version: Option<i64>,
    format: Option<String>,
}

/// The change data feed between two versions, as Arrow or Parquet.
async fn changes(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    Req(args): Req<ChangesArgs>,
) -> ApiResult<Response> {
    let table = table_of(&state, &ctx, &path, Privilege::Select).await?;
    let version = |name: &str, v: Option<i64>| match v {
        Some(v) if v < 0 => Err(Error::invalid(format!(
            "Invalid {name} {v}: versions start at 0"
        ))),
        other => Ok(other.map(|v| v as u64)),
    };
    let starting = version("starting_version", args.starting_version)?.unwrap_or(0);
    let ending = version("ending_version", args.ending_version)?;
    let (schema, batches) = state
        .lake
        .changes(&location_of(&table)?, &table.full_name, starting, ending)
        .await?;
    data_response(args.format.as_deref(), schema, batches).await
}

#[derive(Deserialize)]
struct OptimizeArgs {
    #[serde(default, deserialize_with = "de::opt_i64")]
    target_size: Option<i64>,
    #[serde(default, deserialize_with = "de::string_list")]
    zorder_by: Vec<String>,
}

async fn optimize(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    Req(args): Req<OptimizeArgs>,
) -> JsonResult {
    let table = table_of(&state, &ctx, &path, Privilege::Modify).await?;
    let target_size = match args.target_size {
        Some(size) if size <= 0 => {
            return Err(Error::invalid(format!(
                "Invalid target_size {size}: expected a number of bytes above 0"
            ))
            .into());
        }
        other => other.map(|size| size as u64),
    };
    let optimized = state
        .lake
        .optimize(
            &location_of(&table)?,
            &table.full_name,
            target_size,
            args.zorder_by,
        )
        .await?;
    Ok(Json(json!(optimized)))
}

#[derive(Deserialize)]
struct VacuumArgs {
    #[serde(default, deserialize_with = "de::opt_i64")]
    retention_hours: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    dry_run: Option<bool>,
    #[serde(default, deserialize_with = "de::opt_bool")]
    skip_retention_check: Option<bool>,
}

async fn vacuum(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    Req(args): Req<VacuumArgs>,
) -> JsonResult {
    let table = table_of(&state, &ctx, &path, Privilege::Modify).await?;
    let retention_hours = match args.retention_hours {
        Some(hours) if hours < 0 => {
            return Err(Error::invalid(format!(
                "Invalid retention_hours {hours}: expected 0 or more"
            ))
            .into());
        }
        other => other.map(|hours| hours as u64),
    };
    let spec = VacuumSpec {
        retention_hours,
        dry_run: args.dry_run.unwrap_or(false),
        skip_retention_check: args.skip_retention_check.unwrap_or(false),
    };
    let vacuumed = state
        .lake
        .vacuum(&location_of(&table)?, &table.full_name, &spec)
        .await?;
    Ok(Json(json!(vacuumed)))
}

#[derive(Deserialize)]
struct HistoryArgs {
    #[serde(default, deserialize_with = "de::opt_i64")]
    max_results: Option<i64>,
}

async fn history(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    Req(args): Req<HistoryArgs>,
) -> JsonResult {
    let table = table_of(&state, &ctx, &path, Privilege::Select).await?;
    let limit = super::pages::max_results(args.max_results, DEFAULT_PAGE, MAX_PAGE)?;
    let commits = state
        .lake
        .history(&location_of(&table)?, &table.full_name, limit as usize)
        .await?;
    Ok(Json(json!({ "history": commits })))
}

/// The securable a permissions path names, which must exist.
async fn securable_of(state: &AppState, ctx: &Caller, path: &PathArgs) -> Result<Securable, Error> {
    let kind = catalog::SecurableType::parse(path.get("securable_type")?)?;
    let full_name = kind.normalize(path.get("full_name")?)?;
    let catalog = full_name.split('.').next().unwrap_or_default().to_string();
    reach_catalog(state.store.as_ref(), ctx, &catalog, false).await?;
    Ok(match kind {
        catalog::SecurableType::Catalog => Securable::catalog(&catalog),
        catalog::SecurableType::Schema => {
            let (catalog, schema) = catalog::parse_schema_name(&full_name)?;
            Securable::schema(&state.store.get_schema(&catalog, &schema).await?)
        }
        catalog::SecurableType::Table => {
            let (catalog, schema, table) = catalog::parse_table_name(&full_name)?;
            Securable::table(&state.store.get_table(&catalog, &schema, &table).await?)
        }
    })
}

/// The securable a path names, for a caller who may see it (`USE_*` on its containers).
async fn visible_securable(
    state: &AppState,
    ctx: &Caller,
    path: &PathArgs,
) -> Result<Securable, Error> {
    let securable = securable_of(state, ctx, path).await?;
    let seeing = match securable.kind() {
        catalog::SecurableType::Catalog => Privilege::UseCatalog,
        _ => Privilege::UseSchema,
    };
    authorize(state, ctx, &securable, seeing).await?;
    Ok(securable)
}

async fn get_permissions(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    let securable = visible_securable(&state, &ctx, &path).await?;
    let assignments = state
        .store
        .catalog_privileges(&securable.full_name())
        .await?;
    Ok(Json(json!({ "privilege_assignments": assignments })))
}

#[derive(Deserialize)]
struct PermissionsReq {
    #[serde(default)]
    changes: Vec<catalog::PermissionsChange>,
}

/// Grants and revokes: for the securable's owner and admins.
async fn update_permissions(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    Req(req): Req<PermissionsReq>,
) -> JsonResult {
    let securable = securable_of(&state, &ctx, &path).await?;
    require_owner(&state, &ctx, &securable).await?;
    let kind = securable.kind();
    for change in &req.changes {
        if let Some(wrong) = change
            .add
            .iter()
            .chain(&change.remove)
            .find(|p| !p.applies_to(kind))
        {
            return Err(Error::invalid(format!(
                "{} cannot be granted on a {}",
                wrong.as_str(),
                kind.as_str()
            ))
            .into());
        }
    }
    let assignments = state
        .store
        .update_catalog_grants(
            &securable.catalog,
            kind,
            &securable.full_name(),
            &req.changes,
            &ctx.actor(),
        )
        .await?;
    state.forget_access();
    Ok(Json(json!({ "privilege_assignments": assignments })))
}

async fn get_tags(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    let securable = visible_securable(&state, &ctx, &path).await?;
    let tags = state.store.catalog_tags(&securable.full_name()).await?;
    Ok(Json(
        json!({ "full_name": securable.full_name(), "tags": tags }),
    ))
}

#[derive(Deserialize)]
struct TagsReq {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    unset: Vec<String>,
}

/// Sets and unsets tags: for the securable's owner and admins.
async fn update_tags(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    Req(req): Req<TagsReq>,
) -> JsonResult {
    let securable = securable_of(&state, &ctx, &path).await?;
    require_owner(&state, &ctx, &securable).await?;
    catalog::validate_tags(&req.set, &req.unset)?;
    let tags = state
        .store
        .update_catalog_tags(
            &securable.catalog,
            securable.kind(),
            &securable.full_name(),
            &req.set,
            &req.unset,
            &ctx.actor(),
        )
        .await?;
    Ok(Json(
        json!({ "full_name": securable.full_name(), "tags": tags }),
    ))
}

fn bindings_body(workspaces: Vec<String>) -> Json<Value> {
    Json(json!({
        "bindings": workspaces
            .into_iter()
            .map(|workspace| json!({ "workspace": workspace, "binding_type": "BINDING_TYPE_READ_ONLY" }))
            .collect::<Vec<_>>()
    }))
}

async fn get_bindings(State(state): State<AppState>, ctx: Caller, path: PathArgs) -> JsonResult {
    let name = catalog::normalize_name("name", path.get("name")?)?;
    if !state.store.workspace_exists(&name).await? {
        return Err(Error::not_found(format!("Catalog not found: {name}")).into());
    }
    let bound = state.store.catalog_bindings(&name).await?;
    if !ctx.principal.is_admin && name != ctx.workspace && !bound.contains(&ctx.workspace) {
        return Err(Error::permission_denied(format!(
            "Catalog '{name}' is not bound to workspace '{}'",
            ctx.workspace
        ))
        .into());
    }
    Ok(bindings_body(bound))
}

#[derive(Deserialize)]
struct Binding {
    workspace: String,
}

#[derive(Deserialize)]
struct BindingsReq {
    #[serde(default)]
    add: Vec<Binding>,
    #[serde(default)]
    remove: Vec<Binding>,
}

/// Lets workspaces read a catalog (read-only), or stops them: admins only.
async fn update_bindings(
    State(state): State<AppState>,
    Admin(ctx): Admin,
    path: PathArgs,
    Req(req): Req<BindingsReq>,
) -> JsonResult {
    let name = catalog::normalize_name("name", path.get("name")?)?;
    for (bindings, bound) in [(&req.add, true), (&req.remove, false)] {
        for binding in bindings {
            let workspace = catalog::normalize_name("workspace", &binding.workspace)?;
            state
                .store
                .set_catalog_binding(&name, &workspace, bound, &ctx.actor())
                .await?;
        }
    }
    state.forget_access();
    Ok(bindings_body(state.store.catalog_bindings(&name).await?))
}
