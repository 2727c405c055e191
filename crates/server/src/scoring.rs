//! Scoring over HTTP: the request body and the response shared by `tarn serve` (one model, the
//! routes of `mlflow models serve`) and serving endpoints.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tarn_core::Error;
use tarn_models::Batcher;
use tarn_models::batcher::Scored;
use tarn_serving::Limits;

use crate::error::ApiError;

/// Reads a JSON scoring body within the size limit.
pub async fn read_body(headers: &HeaderMap, body: Body, limits: Limits) -> Result<Bytes, Error> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if !content_type.starts_with("application/json") {
        return Err(Error::new(
            tarn_core::ErrorCode::BadRequest,
            format!("content type {content_type:?} is not supported; send application/json"),
        ));
    }
    axum::body::to_bytes(body, limits.max_body_bytes)
        .await
        .map_err(|_| {
            Error::invalid(format!(
                "the request body is larger than {} bytes",
                limits.max_body_bytes
            ))
        })
}

/// A `{"predictions": ...}` response.
pub fn predictions(scored: Scored) -> Response {
    let mut response = (StatusCode::OK, scored.body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[derive(Clone)]
struct LocalState {
    batcher: Arc<Batcher>,
    limits: Limits,
}

/// The scoring server of one model, with the routes of `mlflow models serve`.
pub fn local_router(batcher: Arc<Batcher>, limits: Limits) -> Router {
    Router::new()
        .route("/invocations", post(local_invocation))
        .route("/ping", get(|| async { "" }))
        .route("/health", get(|| async { "" }))
        .route("/version", get(|| async { env!("CARGO_PKG_VERSION") }))
        .fallback(crate::error::not_found)
        .with_state(LocalState { batcher, limits })
}

async fn local_invocation(
    State(state): State<LocalState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(&headers, body, state.limits).await?;
    let (scored, _) = tarn_serving::score(&state.batcher, &body, state.limits).await?;
    Ok(predictions(scored))
}

/// Serves one model until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve_model(
    batcher: Arc<Batcher>,
    limits: Limits,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        crate::listener::no_delay(listener),
        local_router(batcher, limits),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
