//! The registry over HTTP: bad input gets MLflow's error codes and changes nothing (the event
//! log, which records every change, stays as it was); hostile sources and registry paths are
//! refused.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::{TestApp, app, status_and_body};

/// A model `m` with one version registered from a run's `model/` folder.
async fn model_with_version(app: &TestApp) -> String {
    let run_id = app.new_run("0").await;
    let upload = app
        .call_raw_put(
            &format!("/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts/model/MLmodel"),
            "flavors: {}",
        )
        .await;
    assert_eq!(upload.status, StatusCode::OK, "{}", upload.text);
    let created = app
        .admin(
            "POST",
            "/api/2.0/mlflow/registered-models/create",
            json!({"name": "m"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    let version = app
        .admin(
            "POST",
            "/api/2.0/mlflow/model-versions/create",
            json!({"name": "m", "source": format!("runs:/{run_id}/model"), "run_id": run_id}),
        )
        .await;
    assert_eq!(version.status, StatusCode::OK, "{}", version.text);
    assert_eq!(version.json["model_version"]["version"], "1");
    run_id
}

async fn event_count(app: &TestApp) -> usize {
    let events = app
        .admin("GET", "/api/2.0/tarn/audit", json!({"max_results": 10000}))
        .await;
    events.json["events"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn bad_registry_input_is_refused_and_changes_nothing() {
    let app = app().await;
    model_with_version(&app).await;
    let before_events = event_count(&app).await;
    let before = app
        .admin(
            "GET",
            "/api/2.0/mlflow/registered-models/get",
            json!({"name": "m"}),
        )
        .await
        .json;

    let cases: Vec<(&str, &str, &str, Value)> = vec![
        (
            "duplicate_model",
            "POST",
            "registered-models/create",
            json!({"name": "m"}),
        ),
        (
            "model_name_with_slash",
            "POST",
            "registered-models/create",
            json!({"name": "a/b"}),
        ),
        (
            "empty_model_name",
            "POST",
            "registered-models/create",
            json!({"name": ""}),
        ),
        (
            "unknown_model",
            "GET",
            "registered-models/get",
            json!({"name": "nope"}),
        ),
        (
            "unknown_version",
            "GET",
            "model-versions/get",
            json!({"name": "m", "version": "7"}),
        ),
        (
            "non_numeric_version",
            "GET",
            "model-versions/get",
            json!({"name": "m", "version": "x"}),
        ),
        (
            "invalid_stage",
            "POST",
            "model-versions/transition-stage",
            json!({"name": "m", "version": "1", "stage": "Prod"}),
        ),
        (
            "archive_from_inactive_stage",
            "POST",
            "model-versions/transition-stage",
            json!({"name": "m", "version": "1", "stage": "Archived", "archive_existing_versions": true}),
        ),
        (
            "reserved_alias",
            "POST",
            "registered-models/alias",
            json!({"name": "m", "alias": "latest", "version": "1"}),
        ),
        (
            "version_like_alias",
            "POST",
            "registered-models/alias",
            json!({"name": "m", "alias": "v2", "version": "1"}),
        ),
        (
            "alias_with_space",
            "POST",
            "registered-models/alias",
            json!({"name": "m", "alias": "a b", "version": "1"}),
        ),
        (
            "alias_to_unknown_version",
            "POST",
            "registered-models/alias",
            json!({"name": "m", "alias": "champion", "version": "9"}),
        ),
        (
            "unknown_alias",
            "GET",
            "registered-models/alias",
            json!({"name": "m", "alias": "ghost"}),
        ),
        (
            "rename_onto_itself_missing_new_name",
            "POST",
            "registered-models/rename",
            json!({"name": "m"}),
        ),
        (
            "source_outside_workspace_storage",
            "POST",
            "model-versions/create",
            json!({"name": "m", "source": "file:///etc"}),
        ),
        (
            "source_traversal",
            "POST",
            "model-versions/create",
            json!({"name": "m", "source": "mlflow-artifacts:/0/../../prod/0"}),
        ),
        (
            "source_without_files",
            "POST",
            "model-versions/create",
            json!({"name": "m", "source": "mlflow-artifacts:/0/nothing-here"}),
        ),
        (
            "bad_search_filter",
            "GET",
            "registered-models/search",
            json!({"filter": "name = 'm' OR 1=1"}),
        ),
        (
            "bad_version_search_order",
            "GET",
            "model-versions/search",
            json!({"order_by": "stage DESC"}),
        ),
        (
            "too_many_results",
            "GET",
            "registered-models/search",
            json!({"max_results": 5000}),
        ),
        (
            "tag_key_with_bad_chars",
            "POST",
            "registered-models/set-tag",
            json!({"name": "m", "key": "a$b", "value": "x"}),
        ),
    ];
    for (label, method, path, body) in cases {
        let response = app
            .admin(method, &format!("/api/2.0/mlflow/{path}"), body)
            .await;
        insta::assert_json_snapshot!(format!("registry_{label}"), status_and_body(&response));
    }

    assert_eq!(
        event_count(&app).await,
        before_events,
        "a refused call records nothing"
    );
    let after = app
        .admin(
            "GET",
            "/api/2.0/mlflow/registered-models/get",
            json!({"name": "m"}),
        )
        .await
        .json;
    assert_eq!(before, after);
}

#[tokio::test]
async fn registry_copies_are_read_only_and_follow_model_permissions() {
    let app = app().await;
    model_with_version(&app).await;
    let uri = app
        .admin(
            "GET",
            "/api/2.0/mlflow/model-versions/get-download-uri",
            json!({"name": "m", "version": "1"}),
        )
        .await;
    let location = uri.json["artifact_uri"]
        .as_str()
        .expect("artifact_uri")
        .trim_start_matches("mlflow-artifacts:/")
        .to_string();
    assert!(location.starts_with("_registry/"), "{location}");
    let listed = app
        .admin(
            "GET",
            "/api/2.0/mlflow-artifacts/artifacts",
            json!({"path": location}),
        )
        .await;
    assert_eq!(listed.json["files"][0]["path"], "MLmodel");
    let overwrite = app
        .call_raw_put(
            &format!("/api/2.0/mlflow-artifacts/artifacts/{location}/MLmodel"),
            "tampered",
        )
        .await;
    assert_eq!(overwrite.status, StatusCode::FORBIDDEN);
    let delete = app
        .admin(
            "DELETE",
            &format!("/api/2.0/mlflow-artifacts/artifacts/{location}/MLmodel"),
            json!({}),
        )
        .await;
    assert_eq!(delete.status, StatusCode::FORBIDDEN);

    // A workspace member without a grant on the model cannot read its copy.
    let token = app.user_with_token("eve", "dev").await;
    let denied = app
        .call(
            "GET",
            &format!("/api/2.0/mlflow-artifacts/artifacts/{location}/MLmodel"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let search = app
        .call(
            "GET",
            "/api/2.0/mlflow/registered-models/search",
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(search.json, json!({"registered_models": []}));
}
