//! The wire form of errors: MLflow's `{"error_code", "message"}` with the code's HTTP status.

use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tarn_core::{Error, ErrorCode};

/// Any handler error; renders as MLflow's error JSON.
#[derive(Debug)]
pub struct ApiError(pub Error);

pub type ApiResult<T> = Result<T, ApiError>;

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        Self(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error_code = %self.0.code, error = %self.0.report(), "request failed");
        }
        let body =
            serde_json::json!({ "error_code": self.0.code.as_str(), "message": self.0.message });
        let mut response = (status, axum::Json(body)).into_response();
        if self.0.code == ErrorCode::Unauthenticated {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"tarn\""),
            );
        }
        response
    }
}

impl From<tarn_core::search::SearchError> for ApiError {
    fn from(err: tarn_core::search::SearchError) -> Self {
        Self(err.into())
    }
}

pub async fn not_found(uri: Uri) -> Response {
    let error = Error::new(
        ErrorCode::EndpointNotFound,
        format!("No API endpoint at {}", uri.path()),
    );
    let mut response = ApiError(error).into_response();
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}
