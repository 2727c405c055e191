//! The tracking API end to end over HTTP, in MLflow's wire shapes.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::{ADMIN_TOKEN, app};

#[tokio::test]
async fn experiment_run_metric_round_trip() {
    let app = app().await;
    let created = app
        .admin(
            "POST",
            "/api/2.0/mlflow/experiments/create",
            json!({"name": "churn", "tags": [{"key": "team", "value": "ml"}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    let experiment_id = created.json["experiment_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(experiment_id, "1");

    let got = app
        .admin(
            "GET",
            "/api/2.0/mlflow/experiments/get-by-name",
            json!({"experiment_name": "churn"}),
        )
        .await;
    assert_eq!(
        got.json["experiment"]["artifact_location"],
        "mlflow-artifacts:/1"
    );
    assert_eq!(got.json["experiment"]["lifecycle_stage"], "active");
    assert_eq!(
        got.json["experiment"]["tags"],
        json!([{"key": "team", "value": "ml"}])
    );

    let run = app
        .admin(
            "POST",
            "/api/2.0/mlflow/runs/create",
            json!({"experiment_id": experiment_id, "start_time": 1000}),
        )
        .await;
    assert_eq!(run.status, StatusCode::OK, "{}", run.text);
    let run_id = run.json["run"]["info"]["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    assert_eq!(run.json["run"]["info"]["status"], "RUNNING");
    assert_eq!(run.json["run"]["info"]["user_id"], "admin");
    assert!(
        run.json["run"]["info"].get("end_time").is_none(),
        "unset fields are omitted"
    );
    let generated_name = run.json["run"]["info"]["run_name"].as_str().expect("name");
    assert_eq!(generated_name.split('-').count(), 3, "{generated_name}");

    // int64 as JSON numbers and as strings, NaN and infinities as MLflow's client sends them.
    let batch = json!({"run_id": run_id,
        "metrics": [{"key": "acc", "value": 0.5, "timestamp": 1, "step": 0}, {"key": "acc", "value": "0.75", "timestamp": "2", "step": "1"},
                    {"key": "nan", "value": "NaN", "timestamp": 1, "step": 0}, {"key": "inf", "value": "Infinity", "timestamp": 1, "step": 0}],
        "params": [{"key": "lr", "value": "0.1"}], "tags": [{"key": "team", "value": "ml"}]});
    assert_eq!(
        app.admin("POST", "/api/2.0/mlflow/runs/log-batch", batch)
            .await
            .json,
        json!({})
    );
    app.admin(
        "POST",
        "/api/2.0/mlflow/runs/log-metric",
        json!({"run_id": run_id, "key": "loss", "value": 0.3, "timestamp": 5, "step": 2}),
    )
    .await;
    app.admin(
        "POST",
        "/api/2.0/mlflow/runs/log-parameter",
        json!({"run_id": run_id, "key": "depth", "value": "4"}),
    )
    .await;
    app.admin(
        "POST",
        "/api/2.0/mlflow/runs/set-tag",
        json!({"run_uuid": run_id, "key": "note", "value": "hello"}),
    )
    .await;
    let ended = app
        .admin(
            "POST",
            "/api/2.0/mlflow/runs/update",
            json!({"run_id": run_id, "status": "FINISHED", "end_time": 2000}),
        )
        .await;
    assert_eq!(ended.json["run_info"]["status"], "FINISHED");

    let got = app
        .admin("GET", "/api/2.0/mlflow/runs/get", json!({"run_id": run_id}))
        .await;
    let data = &got.json["run"]["data"];
    let metric = |key: &str| {
        data["metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .find(|m| m["key"] == key)
            .expect("metric")
            .clone()
    };
    assert_eq!(metric("acc")["value"], 0.75);
    assert_eq!(metric("acc")["step"], 1);
    assert_eq!(metric("inf")["value"], 1.7976931348623157e308);
    assert_eq!(
        metric("nan")["value"],
        "NaN",
        "proto3 JSON spells NaN as a string"
    );
    assert_eq!(
        data["params"],
        json!([{"key": "depth", "value": "4"}, {"key": "lr", "value": "0.1"}])
    );
    let history = app
        .admin(
            "GET",
            "/api/2.0/mlflow/metrics/get-history",
            json!({"run_id": run_id, "metric_key": "acc"}),
        )
        .await;
    assert_eq!(
        history.json["metrics"].as_array().expect("history").len(),
        2
    );

    let search = app
        .admin(
            "POST",
            "/api/2.0/mlflow/runs/search",
            json!({"experiment_ids": [experiment_id], "filter": "metrics.acc > 0.5 and params.lr = '0.1'", "order_by": ["metrics.acc DESC"]}),
        )
        .await;
    assert_eq!(search.status, StatusCode::OK, "{}", search.text);
    assert_eq!(search.json["runs"][0]["info"]["run_id"], run_id.as_str());
    let none = app
        .admin(
            "POST",
            "/api/2.0/mlflow/runs/search",
            json!({"experiment_ids": [experiment_id], "filter": "metrics.acc > 0.9"}),
        )
        .await;
    assert_eq!(none.json["runs"], json!([]));

    // The same API under /ws/prod is another workspace: the run is not there.
    let other = app
        .admin(
            "GET",
            "/ws/prod/api/2.0/mlflow/runs/get",
            json!({"run_id": run_id}),
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(other.json["error_code"], "RESOURCE_DOES_NOT_EXIST");
    // And the ajax-api prefix serves the same data.
    let ajax = app
        .admin(
            "GET",
            "/ajax-api/2.0/mlflow/runs/get",
            json!({"run_id": run_id}),
        )
        .await;
    assert_eq!(ajax.status, StatusCode::OK);
}

#[tokio::test]
async fn artifacts_upload_list_download_delete() {
    let app = app().await;
    let run_id = app.new_run("0").await;
    let base = format!("/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts");
    // The same path in another workspace is another file.
    let prod_put = Request::builder()
        .method("PUT")
        .uri(format!("/ws/prod{base}/model/weights.bin"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::from("prod bytes"))
        .expect("request");
    assert_eq!(app.send(prod_put).await.status, StatusCode::OK);
    let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let put = Request::builder()
        .method("PUT")
        .uri(format!("{base}/model/weights.bin"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::from(payload.clone()))
        .expect("request");
    assert_eq!(app.send(put).await.status, StatusCode::OK);

    let listed = app
        .admin(
            "GET",
            "/api/2.0/mlflow-artifacts/artifacts",
            json!({"path": format!("0/{run_id}/artifacts/model")}),
        )
        .await;
    assert_eq!(
        listed.json,
        json!({"files": [{"path": "weights.bin", "is_dir": false, "file_size": 100000}]})
    );
    let run_list = app
        .admin(
            "GET",
            "/api/2.0/mlflow/artifacts/list",
            json!({"run_id": run_id}),
        )
        .await;
    assert_eq!(
        run_list.json["files"],
        json!([{"path": "model", "is_dir": true, "file_size": null}])
    );
    assert_eq!(
        run_list.json["root_uri"],
        format!("mlflow-artifacts:/0/{run_id}/artifacts")
    );

    let get = Request::builder()
        .uri(format!("{base}/model/weights.bin"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .expect("request");
    let downloaded = app.router.clone();
    let response = tower::ServiceExt::oneshot(downloaded, get)
        .await
        .expect("response");
    assert_eq!(response.headers()["content-length"], "100000");
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(bytes.as_ref(), payload.as_slice());

    assert_eq!(
        app.admin("DELETE", &format!("{base}/model"), json!({}))
            .await
            .status,
        StatusCode::OK
    );
    let gone = app
        .admin("GET", &format!("{base}/model/weights.bin"), json!({}))
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn logged_models_and_server_info() {
    let app = app().await;
    let created = app
        .admin(
            "POST",
            "/api/2.0/mlflow/logged-models",
            json!({"experiment_id": "0", "name": "model", "model_type": "sklearn"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    let model_id = created.json["model"]["info"]["model_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(model_id.starts_with("m-"));
    assert_eq!(
        created.json["model"]["info"]["status"],
        "LOGGED_MODEL_PENDING"
    );
    let finalized = app
        .admin(
            "PATCH",
            &format!("/api/2.0/mlflow/logged-models/{model_id}"),
            json!({"status": "LOGGED_MODEL_READY"}),
        )
        .await;
    assert_eq!(
        finalized.json["model"]["info"]["status"],
        "LOGGED_MODEL_READY"
    );
    let tagged = app
        .admin(
            "PATCH",
            &format!("/api/2.0/mlflow/logged-models/{model_id}/tags"),
            json!({"tags": [{"key": "k", "value": "v"}]}),
        )
        .await;
    assert_eq!(tagged.status, StatusCode::OK);
    let found = app
        .admin(
            "POST",
            "/api/2.0/mlflow/logged-models/search",
            json!({"experiment_ids": ["0"]}),
        )
        .await;
    assert_eq!(
        found.json["models"][0]["info"]["tags"],
        json!([{"key": "k", "value": "v"}])
    );
    let info = app
        .admin("GET", "/api/3.0/mlflow/server-info", json!({}))
        .await;
    assert_eq!(info.json["store_type"], "sqlite");
    assert_eq!(info.json["multipart_uploads_enabled"], false);
}

#[tokio::test]
async fn health_and_metrics() {
    let app = app().await;
    let health = app.call("GET", "/health", None, json!({})).await;
    assert_eq!(
        (health.status, health.text.as_str()),
        (StatusCode::OK, "OK")
    );
    app.admin(
        "GET",
        "/api/2.0/mlflow/experiments/get",
        json!({"experiment_id": "0"}),
    )
    .await;
    let metrics = app.admin("GET", "/metrics", json!({})).await;
    assert!(
        metrics.text.contains(r#"tarn_http_requests_total{method="GET",route="/api/2.0/mlflow/experiments/get",status="200"} 1"#),
        "{}",
        metrics.text
    );
    assert!(
        metrics
            .text
            .contains("tarn_http_request_duration_seconds_bucket")
    );
}
