//! SCIM 2.0 at the paths the Databricks SDK uses (`w.users`, `w.groups`,
//! `w.service_principals`, `w.current_user.me()`); `tarn_identity::scim` does the work.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::Value;
use tarn_core::caller::Caller;
use tarn_identity::scim::{self, ListQuery, Resource};

use super::mounted::Mounted;
use crate::error::ApiResult;
use crate::extract::{PathArgs, QueryArgs, Req, de};
use crate::state::AppState;

pub fn routes() -> Mounted {
    let mut router = Mounted::new().route("/Me", get(me));
    for (collection, resource) in [
        ("Users", Resource::User),
        ("Groups", Resource::Group),
        ("ServicePrincipals", Resource::ServicePrincipal),
    ] {
        router = router
            .route(
                &format!("/{collection}"),
                get(move |state: State<AppState>, ctx: Caller, query| {
                    list(state, ctx, query, resource)
                })
                .post(move |state: State<AppState>, ctx: Caller, body| {
                    create(state, ctx, body, resource)
                }),
            )
            .route(
                &format!("/{collection}/{{id}}"),
                get(move |state: State<AppState>, ctx: Caller, path: PathArgs| {
                    read(state, ctx, path, resource)
                })
                .put(
                    move |state: State<AppState>, ctx: Caller, path: PathArgs, body| {
                        replace(state, ctx, path, body, resource)
                    },
                )
                .patch(
                    move |state: State<AppState>, ctx: Caller, path: PathArgs, body| {
                        modify(state, ctx, path, body, resource)
                    },
                )
                .delete(
                    move |state: State<AppState>, ctx: Caller, path: PathArgs| {
                        remove(state, ctx, path, resource)
                    },
                ),
            );
    }
    router
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListArgs {
    filter: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    start_index: Option<i64>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    count: Option<i64>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    attributes: Option<String>,
    excluded_attributes: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    ctx: Caller,
    QueryArgs(args): QueryArgs<ListArgs>,
    resource: Resource,
) -> ApiResult<Json<Value>> {
    let descending = match args.sort_order.as_deref().map(str::to_ascii_lowercase) {
        None => false,
        Some(order) if order == "ascending" => false,
        Some(order) if order == "descending" => true,
        Some(other) => {
            return Err(tarn_core::Error::invalid(format!(
                "Invalid sortOrder '{other}': expected ascending or descending"
            ))
            .into());
        }
    };
    let query = ListQuery {
        filter: args.filter,
        start_index: args.start_index,
        count: args.count,
        sort_by: args.sort_by,
        descending,
        attributes: args.attributes,
        excluded_attributes: args.excluded_attributes,
    };
    Ok(Json(
        scim::list(state.store.as_ref(), &ctx, resource, &query).await?,
    ))
}

async fn create(
    State(state): State<AppState>,
    ctx: Caller,
    Req(body): Req<Value>,
    resource: Resource,
) -> ApiResult<Response> {
    let created = scim::create(state.store.as_ref(), &ctx, resource, &body).await?;
    state.forget_access();
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn read(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    resource: Resource,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        scim::get(state.store.as_ref(), &ctx, resource, path.get("id")?).await?,
    ))
}

async fn replace(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    Req(body): Req<Value>,
    resource: Resource,
) -> ApiResult<Json<Value>> {
    let replaced =
        scim::replace(state.store.as_ref(), &ctx, resource, path.get("id")?, &body).await?;
    state.forget_access();
    Ok(Json(replaced))
}

async fn modify(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    Req(body): Req<Value>,
    resource: Resource,
) -> ApiResult<Json<Value>> {
    let modified =
        scim::modify(state.store.as_ref(), &ctx, resource, path.get("id")?, &body).await?;
    state.forget_access();
    Ok(Json(modified))
}

async fn remove(
    State(state): State<AppState>,
    ctx: Caller,
    path: PathArgs,
    resource: Resource,
) -> ApiResult<StatusCode> {
    scim::delete(state.store.as_ref(), &ctx, resource, path.get("id")?).await?;
    state.forget_access();
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(state): State<AppState>, ctx: Caller) -> ApiResult<Json<Value>> {
    Ok(Json(scim::me(state.store.as_ref(), &ctx).await?))
}
