//! Serving endpoints over HTTP: models from the registry (the ONNX fixtures of tarn-models),
//! invocations with the version that answered, a hot swap under load without a failed request,
//! one inference row per request, permissions, and models refused at deployment.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::{ADMIN_TOKEN, TestApp, app};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/fixtures")
        .join(name)
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).expect("expected"))
        .expect("json")
}

/// Registers the fixture model directory `name` as a new version of `model`.
pub(crate) async fn register(app: &TestApp, model: &str, name: &str) {
    let run_id = app.new_run("0").await;
    for file in ["MLmodel", "model.onnx"] {
        let bytes = std::fs::read(fixture(name).join(file)).expect("fixture file");
        let upload = app
            .call_raw_put(
                &format!("/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts/model/{file}"),
                bytes,
            )
            .await;
        assert_eq!(upload.status, StatusCode::OK, "{}", upload.text);
    }
    let _ = app
        .admin(
            "POST",
            "/api/2.0/mlflow/registered-models/create",
            json!({ "name": model }),
        )
        .await;
    let version = app
        .admin(
            "POST",
            "/api/2.0/mlflow/model-versions/create",
            json!({ "name": model, "source": format!("runs:/{run_id}/model"), "run_id": run_id }),
        )
        .await;
    assert_eq!(version.status, StatusCode::OK, "{}", version.text);
}

pub(crate) async fn set_alias(app: &TestApp, model: &str, alias: &str, version: &str) {
    let set = app
        .admin(
            "POST",
            "/api/2.0/mlflow/registered-models/alias",
            json!({ "name": model, "alias": alias, "version": version }),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
}

pub(crate) fn one_row(i: usize) -> Value {
    let expected = expected();
    let rows = expected["rows"].as_array().expect("rows");
    json!({ "dataframe_split": { "columns": expected["columns"], "data": [rows[i % rows.len()]] }, "client_request_id": format!("c{i}") })
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) version: Option<String>,
    entity: Option<String>,
    json: Value,
}

pub(crate) async fn invoke(
    router: &axum::Router,
    token: &str,
    endpoint: &str,
    body: &Value,
) -> Answer {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request = Request::builder()
        .method("POST")
        .uri(format!("/serving-endpoints/{endpoint}/invocations"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("response");
    let (version, entity) = {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        (header("tarn-model-version"), header("served-model-name"))
    };
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        version,
        entity,
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// Rows in the endpoint's inference table, after the writers have written what they hold.
async fn inference_rows(app: &TestApp, table: &str) -> Vec<tarn_lake::arrow::array::RecordBatch> {
    app.state.endpoints.shutdown().await;
    let info = app
        .state
        .store
        .get_table("dev", "inference", table)
        .await
        .expect("inference table");
    let location = tarn_lake::catalog::location_of(&info).expect("location");
    app.state
        .lake
        .read(&location, &info.full_name, tarn_lake::At::Latest)
        .await
        .expect("read")
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endpoint_follows_its_alias_with_no_failed_request_and_logs_every_request() {
    let app = app().await;
    register(&app, "fraud", "gradient_boosting").await;
    register(&app, "fraud", "scaled_logistic").await;
    set_alias(&app, "fraud", "champion", "1").await;
    let created = app
        .admin(
            "POST",
            "/api/2.0/serving-endpoints",
            json!({ "name": "fraud-api", "config": { "served_entities": [{ "entity_name": "fraud", "entity_alias": "champion" }] } }),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    assert_eq!(created.json["state"]["ready"], "READY");
    assert_eq!(
        created.json["config"]["served_entities"][0]["name"],
        "fraud-champion"
    );
    assert_eq!(
        created.json["config"]["served_entities"][0]["served_version"],
        "1"
    );
    assert_eq!(
        created.json["inference_table"],
        "dev.inference.fraud_api_payload"
    );

    let expected = expected();
    let first = invoke(&app.router, ADMIN_TOKEN, "fraud-api", &one_row(0)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.json);
    assert_eq!(first.version.as_deref(), Some("1"));
    assert_eq!(first.entity.as_deref(), Some("fraud-champion"));
    assert_eq!(
        first.json["predictions"][0]["output_label"],
        expected["models"]["gradient_boosting"]["label"][0]
    );

    // Clients hammer the endpoint while the alias moves to version 2 and the endpoint swaps.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (router, stop, sent) = (app.router.clone(), stop.clone(), sent.clone());
            tokio::spawn(async move {
                let mut failed = Vec::new();
                let mut versions = std::collections::BTreeSet::new();
                let mut i = client;
                while !stop.load(Ordering::Relaxed) {
                    let answer = invoke(&router, ADMIN_TOKEN, "fraud-api", &one_row(i)).await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    if answer.status != StatusCode::OK {
                        failed.push(answer.json);
                    }
                    versions.extend(answer.version);
                    i += 4;
                }
                (failed, versions)
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    set_alias(&app, "fraud", "champion", "2").await;
    app.state.endpoints.sync().await.expect("sync");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut versions = std::collections::BTreeSet::new();
    for client in clients {
        let (failed, seen) = client.await.expect("client");
        assert!(failed.is_empty(), "failed during the swap: {failed:?}");
        versions.extend(seen);
    }
    assert_eq!(versions.into_iter().collect::<Vec<_>>(), vec!["1", "2"]);
    let after = invoke(&app.router, ADMIN_TOKEN, "fraud-api", &one_row(3)).await;
    assert_eq!(after.version.as_deref(), Some("2"));
    assert_eq!(
        after.json["predictions"][0]["output_label"],
        expected["models"]["scaled_logistic"]["label"][3]
    );
    let shown = app
        .admin("GET", "/api/2.0/serving-endpoints/fraud-api", json!({}))
        .await;
    assert_eq!(
        shown.json["config"]["served_entities"][0]["served_version"],
        "2"
    );

    // A bad request is answered (400) and logged too.
    let bad = invoke(
        &app.router,
        ADMIN_TOKEN,
        "fraud-api",
        &json!({ "dataframe_records": [{ "a": 1 }] }),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json["error_code"], "BAD_REQUEST");

    let total = sent.load(Ordering::Relaxed) + 3;
    let batches = inference_rows(&app, "fraud_api_payload").await;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, total, "one inference row per request");
    let statuses: Vec<i32> = batches
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name("status_code").expect("status_code");
            let ints = column
                .as_any()
                .downcast_ref::<tarn_lake::arrow::array::Int32Array>()
                .expect("int");
            ints.values().to_vec()
        })
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 1);
    // The table's lineage names the endpoint that writes it.
    let upstream = app
        .state
        .store
        .lineage_edges(
            &tarn_core::lineage::Node::table("dev.inference.fraud_api_payload"),
            tarn_core::lineage::Direction::Upstream,
        )
        .await
        .expect("lineage");
    assert_eq!(upstream.len(), 1);
    assert_eq!(
        upstream[0].source,
        tarn_core::lineage::Node::serving_endpoint("dev", "fraud-api")
    );
}

#[tokio::test]
async fn traffic_splits_between_versions_and_querying_needs_a_grant() {
    let app = app().await;
    register(&app, "churn", "gradient_boosting").await;
    register(&app, "churn", "scaled_logistic").await;
    let created = app
        .admin(
            "POST",
            "/api/2.0/serving-endpoints",
            json!({ "name": "churn", "config": {
                "served_entities": [
                    { "name": "current", "entity_name": "churn", "entity_version": "1" },
                    { "name": "canary", "entity_name": "churn", "entity_version": "2" }
                ],
                "traffic_config": { "routes": [
                    { "served_entity_name": "current", "traffic_percentage": 70 },
                    { "served_entity_name": "canary", "traffic_percentage": 30 }
                ] }
            } }),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    let mut by_entity = std::collections::BTreeMap::new();
    for i in 0..200 {
        let answer = invoke(&app.router, ADMIN_TOKEN, "churn", &one_row(i)).await;
        assert_eq!(answer.status, StatusCode::OK);
        *by_entity
            .entry(answer.entity.expect("served-model-name"))
            .or_insert(0) += 1;
    }
    assert_eq!(by_entity.len(), 2, "{by_entity:?}");
    assert!(by_entity["current"] > by_entity["canary"], "{by_entity:?}");

    let alice = app.user_with_token("alice", "dev").await;
    let denied = invoke(&app.router, &alice, "churn", &one_row(0)).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.json);
    let id = created.json["id"].as_str().expect("id");
    let granted = app
        .admin(
            "PATCH",
            &format!("/api/2.0/permissions/serving-endpoints/{id}"),
            json!({ "access_control_list": [{ "user_name": "alice", "permission_level": "CAN_QUERY" }] }),
        )
        .await;
    assert_eq!(granted.status, StatusCode::OK, "{}", granted.text);
    assert_eq!(
        invoke(&app.router, &alice, "churn", &one_row(0))
            .await
            .status,
        StatusCode::OK
    );
    // Querying is not managing.
    let update = app
        .call(
            "PUT",
            "/api/2.0/serving-endpoints/churn/config",
            Some(&alice),
            json!({ "served_entities": [{ "entity_name": "churn", "entity_version": "1" }] }),
        )
        .await;
    assert_eq!(update.status, StatusCode::FORBIDDEN, "{}", update.text);
    // A revoke applies at once, cached decisions included.
    let revoked = app
        .admin(
            "PUT",
            &format!("/api/2.0/permissions/serving-endpoints/{id}"),
            json!({ "access_control_list": [] }),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert_eq!(
        invoke(&app.router, &alice, "churn", &one_row(0))
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    let deleted = app
        .admin("DELETE", "/api/2.0/serving-endpoints/churn", json!({}))
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    assert_eq!(
        invoke(&app.router, ADMIN_TOKEN, "churn", &one_row(0))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn models_tarn_cannot_serve_are_refused_at_deployment_and_nothing_is_stored() {
    let app = app().await;
    // A version whose MLmodel has no onnx flavor.
    let run_id = app.new_run("0").await;
    let upload = app
        .call_raw_put(
            &format!("/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts/model/MLmodel"),
            "flavors:\n  sklearn:\n    pickled_model: model.pkl\n",
        )
        .await;
    assert_eq!(upload.status, StatusCode::OK, "{}", upload.text);
    app.admin(
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        json!({ "name": "pickled" }),
    )
    .await;
    app.admin(
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        json!({ "name": "pickled", "source": format!("runs:/{run_id}/model"), "run_id": run_id }),
    )
    .await;
    let refused = app
        .admin(
            "POST",
            "/api/2.0/serving-endpoints",
            json!({ "name": "pickled", "config": { "served_entities": [{ "entity_name": "pickled", "entity_version": "1" }] } }),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert!(
        refused.json["message"]
            .as_str()
            .expect("message")
            .contains("sklearn"),
        "{}",
        refused.text
    );
    let listed = app
        .admin("GET", "/api/2.0/serving-endpoints", json!({}))
        .await;
    assert_eq!(listed.json["endpoints"], json!([]));

    for (config, reason) in [
        (json!({ "served_entities": [] }), "at least one"),
        (
            json!({ "served_entities": [{ "entity_name": "pickled", "entity_version": "9" }] }),
            "9",
        ),
        (
            json!({ "served_entities": [{ "entity_name": "nope", "entity_version": "1" }] }),
            "nope",
        ),
        (
            json!({ "served_entities": [{ "entity_name": "pickled" }] }),
            "exactly one",
        ),
    ] {
        let refused = app
            .admin(
                "POST",
                "/api/2.0/serving-endpoints",
                json!({ "name": "e", "config": config }),
            )
            .await;
        assert!(refused.status.is_client_error(), "{}", refused.text);
        assert!(
            refused.json["message"]
                .as_str()
                .expect("message")
                .contains(reason),
            "{reason}: {}",
            refused.text
        );
    }
    let bad_name = app
        .admin(
            "POST",
            "/api/2.0/serving-endpoints",
            json!({ "name": "../x", "config": {} }),
        )
        .await;
    assert_eq!(bad_name.status, StatusCode::BAD_REQUEST);
}
