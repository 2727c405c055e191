//! Bad input gets MLflow's error JSON with the right status, and changes nothing stored.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::{ADMIN_TOKEN, TestApp, app, status_and_body};

async fn run_with_param(app: &TestApp) -> String {
    let run_id = app.new_run("0").await;
    app.admin(
        "POST",
        "/api/2.0/mlflow/runs/log-parameter",
        json!({"run_id": run_id, "key": "lr", "value": "0.1"}),
    )
    .await;
    run_id
}

async fn raw(app: &TestApp, method: &str, uri: &str, body: &'static str) -> crate::Response {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    app.send(request).await
}

#[tokio::test]
async fn error_shapes() {
    let app = app().await;
    let run_id = run_with_param(&app).await;
    let before = app
        .admin("GET", "/api/2.0/mlflow/runs/get", json!({"run_id": run_id}))
        .await
        .json;

    insta::assert_json_snapshot!(
        "unknown_experiment",
        status_and_body(
            &app.admin(
                "GET",
                "/api/2.0/mlflow/experiments/get",
                json!({"experiment_id": "999"})
            )
            .await
        )
    );
    insta::assert_json_snapshot!(
        "unknown_experiment_name",
        status_and_body(
            &app.admin(
                "GET",
                "/api/2.0/mlflow/experiments/get-by-name",
                json!({"experiment_name": "nope"})
            )
            .await
        )
    );
    insta::assert_json_snapshot!(
        "unknown_run",
        status_and_body(
            &app.admin(
                "GET",
                "/api/2.0/mlflow/runs/get",
                json!({"run_id": "0123456789abcdef0123456789abcdef"})
            )
            .await
        )
    );
    insta::assert_json_snapshot!(
        "malformed_json",
        status_and_body(
            &raw(
                &app,
                "POST",
                "/api/2.0/mlflow/runs/log-batch",
                "{\"run_id\": "
            )
            .await
        )
    );
    insta::assert_json_snapshot!(
        "wrong_type",
        status_and_body(
            &app.admin(
                "POST",
                "/api/2.0/mlflow/runs/log-parameter",
                json!({"run_id": 31, "key": "a", "value": "b"})
            )
            .await
        )
    );
    let changed = app
        .admin(
            "POST",
            "/api/2.0/mlflow/runs/log-batch",
            json!({"run_id": run_id, "params": [{"key": "lr", "value": "0.2"}], "metrics": [{"key": "m", "value": 1, "timestamp": 1, "step": 0}]}),
        )
        .await;
    let changed = status_and_body(&changed)
        .to_string()
        .replace(&run_id, "<run_id>");
    insta::assert_snapshot!("changed_param", changed);
    let too_many: Vec<_> = (0..101)
        .map(|i| json!({"key": format!("p{i}"), "value": "v"}))
        .collect();
    insta::assert_json_snapshot!(
        "over_limit_batch",
        status_and_body(
            &app.admin(
                "POST",
                "/api/2.0/mlflow/runs/log-batch",
                json!({"run_id": run_id, "params": too_many})
            )
            .await
        )
    );
    insta::assert_json_snapshot!(
        "bad_metric_name",
        status_and_body(
            &app.admin(
                "POST",
                "/api/2.0/mlflow/runs/log-metric",
                json!({"run_id": run_id, "key": "../escape", "value": 1, "timestamp": 1})
            )
            .await
        )
    );
    insta::assert_json_snapshot!(
        "bad_filter",
        status_and_body(
            &app.admin(
                "POST",
                "/api/2.0/mlflow/runs/search",
                json!({"experiment_ids": ["0"], "filter": "metrics.acc ~ 1"})
            )
            .await
        )
    );
    insta::assert_json_snapshot!(
        "bad_max_results",
        status_and_body(
            &app.admin(
                "POST",
                "/api/2.0/mlflow/runs/search",
                json!({"experiment_ids": ["0"], "max_results": 50001})
            )
            .await
        )
    );
    insta::assert_json_snapshot!(
        "duplicate_experiment",
        status_and_body(
            &app.admin(
                "POST",
                "/api/2.0/mlflow/experiments/create",
                json!({"name": "Default"})
            )
            .await
        )
    );
    insta::assert_json_snapshot!(
        "unknown_endpoint",
        status_and_body(&app.admin("GET", "/api/2.0/mlflow/nope", json!({})).await)
    );
    insta::assert_json_snapshot!(
        "unknown_workspace",
        status_and_body(
            &app.admin(
                "GET",
                "/ws/nope/api/2.0/mlflow/experiments/get",
                json!({"experiment_id": "0"})
            )
            .await
        )
    );

    let after = app
        .admin("GET", "/api/2.0/mlflow/runs/get", json!({"run_id": run_id}))
        .await
        .json;
    assert_eq!(before, after, "bad requests changed the run");
}

#[tokio::test]
async fn injection_in_filters_is_rejected_or_inert() {
    let app = app().await;
    let run_id = run_with_param(&app).await;
    for filter in [
        "params.lr = '0.1' OR 1=1",
        "params.lr = '0.1'; DROP TABLE runs; --",
        "params.lr = '0.1' UNION SELECT token_hash FROM tokens",
        "params.`lr` = '' OR ''=''",
        "params.lr = '\u{0}'",
    ] {
        let response = app
            .admin(
                "POST",
                "/api/2.0/mlflow/runs/search",
                json!({"experiment_ids": ["0"], "filter": filter}),
            )
            .await;
        match response.status {
            StatusCode::BAD_REQUEST => assert_eq!(
                response.json["error_code"], "INVALID_PARAMETER_VALUE",
                "{filter}"
            ),
            StatusCode::OK => assert_eq!(response.json["runs"], json!([]), "{filter} matched rows"),
            other => panic!("{filter}: unexpected {other}: {}", response.text),
        }
    }
    let all = app
        .admin(
            "POST",
            "/api/2.0/mlflow/runs/search",
            json!({"experiment_ids": ["0"]}),
        )
        .await;
    assert_eq!(all.json["runs"][0]["info"]["run_id"], run_id.as_str());
}

#[tokio::test]
async fn hostile_artifact_paths() {
    let app = app().await;
    let run_id = run_with_param(&app).await;
    for path in [
        format!("0/{run_id}/artifacts/%2E%2E/%2E%2E/%2E%2E/etc/passwd"),
        format!("0/{run_id}/artifacts/a/../../../../x"),
        "%2Fetc%2Fpasswd".to_string(),
        format!("0/{run_id}/artifacts/nul%00byte"),
        format!("0/{run_id}/artifacts/back%5C..%5Cslash"),
    ] {
        let uri = format!("/api/2.0/mlflow-artifacts/artifacts/{path}");
        for method in ["PUT", "GET", "DELETE"] {
            let response = raw(&app, method, &uri, "payload").await;
            assert!(
                response.status == StatusCode::BAD_REQUEST
                    || response.status == StatusCode::NOT_FOUND,
                "{method} {uri}: {} {}",
                response.status,
                response.text
            );
            if response.status == StatusCode::BAD_REQUEST {
                assert_eq!(
                    response.json["error_code"], "INVALID_PARAMETER_VALUE",
                    "{method} {uri}"
                );
            }
        }
    }
    let listed = app
        .admin(
            "GET",
            "/api/2.0/mlflow-artifacts/artifacts",
            json!({"path": "../.."}),
        )
        .await;
    assert_eq!(listed.status, StatusCode::BAD_REQUEST);
    // Nothing was written anywhere under the run.
    let run_list = app
        .admin(
            "GET",
            "/api/2.0/mlflow/artifacts/list",
            json!({"run_id": run_id}),
        )
        .await;
    assert_eq!(run_list.json["files"], json!([]));
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let app = app().await;
    let run_id = run_with_param(&app).await;
    let huge = "x".repeat(tarn_server::extract::MAX_JSON_BODY + 10);
    let body = format!("{{\"run_id\": \"{run_id}\", \"key\": \"big\", \"value\": \"{huge}\"}}");
    let request = Request::builder()
        .method("POST")
        .uri("/api/2.0/mlflow/runs/set-tag")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::from(body))
        .expect("request");
    let response = app.send(request).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.json["error_code"], "INVALID_PARAMETER_VALUE");
    let run = app
        .admin("GET", "/api/2.0/mlflow/runs/get", json!({"run_id": run_id}))
        .await;
    assert!(!run.text.contains("\"big\""));
}

#[tokio::test]
async fn long_values_are_truncated_like_mlflow() {
    let app = app().await;
    let run_id = run_with_param(&app).await;
    let long = "v".repeat(6001);
    let ok = app
        .admin(
            "POST",
            "/api/2.0/mlflow/runs/log-parameter",
            json!({"run_id": run_id, "key": "long", "value": long}),
        )
        .await;
    assert_eq!(ok.json, json!({}));
    let run = app
        .admin("GET", "/api/2.0/mlflow/runs/get", json!({"run_id": run_id}))
        .await;
    let params = run.json["run"]["data"]["params"]
        .as_array()
        .expect("params")
        .clone();
    let stored = params.iter().find(|p| p["key"] == "long").expect("long");
    assert_eq!(stored["value"].as_str().expect("value").len(), 6000);
    let long_key = "k".repeat(251);
    let refused = app
        .admin(
            "POST",
            "/api/2.0/mlflow/runs/set-tag",
            json!({"run_id": run_id, "key": long_key, "value": "x"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
}
