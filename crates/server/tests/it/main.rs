//! In-process HTTP tests: the real router over a real SQLite store and artifact folder.

mod api_errors;
mod auth_and_permissions;
mod authorization_sweep;
mod permission_levels;
mod properties;
mod registry_api;
mod replicas;
mod serving_api;
mod shutdown;
mod tracking_api;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub const ADMIN_TOKEN: &str = "tarn_test_admin_token";

pub struct TestApp {
    pub router: axum::Router,
    pub state: tarn_server::AppState,
    /// The data folder, removed with the app (None: the test owns it).
    _dir: Option<tempfile::TempDir>,
}

pub async fn app() -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = tarn_store::open(&format!(
        "sqlite://{}",
        dir.path().join("tarn.db").display()
    ))
    .await
    .expect("store");
    tarn_server::bootstrap(store.as_ref(), dir.path(), Some(ADMIN_TOKEN))
        .await
        .expect("bootstrap");
    let artifacts =
        tarn_artifacts::ArtifactStore::open(&dir.path().join("artifacts").to_string_lossy())
            .expect("artifacts");
    let settings = tarn_server::Settings {
        webhooks: tarn_events::webhooks::WebhookSettings {
            allow_private: true,
            retry_base: std::time::Duration::from_millis(20),
            ..Default::default()
        },
        ..Default::default()
    };
    let lake = tarn_lake::Lake::open(&dir.path().join("lake").to_string_lossy()).expect("lake");
    let online = tarn_features::online::open(&dir.path().join("online.db").to_string_lossy())
        .await
        .expect("online store");
    let state =
        tarn_server::AppState::new(store, artifacts, lake, online, settings).expect("state");
    TestApp {
        router: tarn_server::build_router(state.clone()),
        state,
        _dir: Some(dir),
    }
}

pub struct Response {
    pub status: StatusCode,
    pub json: Value,
    pub text: String,
}

impl TestApp {
    pub async fn send(&self, request: Request<Body>) -> Response {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("response");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        Response {
            status,
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text,
        }
    }

    /// A JSON request; `GET` bodies become the query string, as the MLflow client sends them.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Response {
        let mut uri = path.to_string();
        let mut request = Request::builder().method(method);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = if method == "GET" {
            if let Some(map) = body.as_object().filter(|m| !m.is_empty()) {
                let query: Vec<String> = map
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{k}={}",
                            urlencode(
                                v.as_str()
                                    .map_or_else(|| v.to_string(), str::to_string)
                                    .as_str()
                            )
                        )
                    })
                    .collect();
                uri = format!("{uri}?{}", query.join("&"));
            }
            Body::empty()
        } else {
            request = request.header("content-type", "application/json");
            Body::from(body.to_string())
        };
        self.send(request.uri(uri).body(body).expect("request"))
            .await
    }

    /// A raw-body PUT as the admin (artifact uploads).
    pub async fn call_raw_put(&self, path: &str, body: impl Into<Body>) -> Response {
        let request = Request::builder()
            .method("PUT")
            .uri(path)
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(body.into())
            .expect("request");
        self.send(request).await
    }

    pub async fn admin(&self, method: &str, path: &str, body: Value) -> Response {
        self.call(method, path, Some(ADMIN_TOKEN), body).await
    }

    /// Starts a run in `experiment_id` of workspace dev as the admin; returns its id.
    pub async fn new_run(&self, experiment_id: &str) -> String {
        let run = self
            .admin(
                "POST",
                "/api/2.0/mlflow/runs/create",
                serde_json::json!({"experiment_id": experiment_id}),
            )
            .await;
        assert_eq!(run.status, StatusCode::OK, "{}", run.text);
        run.json["run"]["info"]["run_id"]
            .as_str()
            .expect("run id")
            .to_string()
    }

    /// Creates a user who is a member of `workspace` and returns a token for it.
    pub async fn user_with_token(&self, name: &str, workspace: &str) -> String {
        let created = self
            .admin(
                "POST",
                "/api/2.0/tarn/users",
                serde_json::json!({"name": name, "password": "password-123"}),
            )
            .await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.text);
        let prefix = if workspace == "dev" {
            String::new()
        } else {
            format!("/ws/{workspace}")
        };
        let member = self
            .admin(
                "POST",
                &format!("{prefix}/api/2.0/tarn/workspace/members"),
                serde_json::json!({"principal": name}),
            )
            .await;
        assert_eq!(member.status, StatusCode::OK, "{}", member.text);
        let token = self
            .admin(
                "POST",
                "/api/2.0/token-management/on-behalf-of/tokens",
                serde_json::json!({"principal": name, "lifetime_seconds": 3600}),
            )
            .await;
        assert_eq!(token.status, StatusCode::OK, "{}", token.text);
        token.json["token_value"]
            .as_str()
            .expect("token")
            .to_string()
    }
}

pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Status and body together, for snapshots of error responses.
pub fn status_and_body(response: &Response) -> Value {
    serde_json::json!({ "status": response.status.as_u16(), "body": response.json })
}
