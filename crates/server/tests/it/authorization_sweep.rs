//! The authorization sweep: every route the router mounts (`tarn_server::mounted_paths`), with
//! every method it answers, is called without credentials, with a forged token, as a user who
//! is no member of the workspace and as a plain member; each is refused as it must be, in
//! MLflow's error JSON. A route added without authentication fails here.

use axum::http::StatusCode;
use serde_json::json;

use crate::{ADMIN_TOKEN, TestApp, app};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// What anyone may call: liveness, the version, the SDK's identity-provider probe. (Upload
/// parts carry their own signature, checked before anything else.)
const PUBLIC: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/version"),
    ("GET", "/.well-known/databricks-config"),
];

/// What a signature in the URL authorises instead of credentials: upload parts, and result
/// files of SQL statements (external links).
const SIGNED: &[(&str, &str)] = &[
    ("PUT", "/api/2.0/mlflow-artifacts/mpu/part/{*path}"),
    ("PUT", "/ajax-api/2.0/mlflow-artifacts/mpu/part/{*path}"),
    (
        "GET",
        "/api/2.0/sql/statements/{statement_id}/result/chunks/{chunk_index}/file",
    ),
];

/// What only an admin may call, refused to a plain member of the workspace (MLflow's routes
/// under any of their four prefixes, as `{mlflow}`).
const ADMIN_ONLY: &[(&str, &str)] = &[
    ("GET", "/metrics"),
    ("POST", "/api/2.0/tarn/users"),
    ("GET", "/api/2.0/tarn/users"),
    ("GET", "/api/2.0/tarn/audit"),
    ("POST", "/api/2.0/tarn/groups"),
    ("POST", "/api/2.0/tarn/groups/members"),
    ("POST", "/api/2.0/tarn/service-principals"),
    ("POST", "/api/2.0/tarn/workspace/members"),
    ("DELETE", "/api/2.0/tarn/workspace/members"),
    ("POST", "/api/2.0/token-management/on-behalf-of/tokens"),
    ("GET", "/api/2.0/token-management/tokens"),
    ("GET", "/api/2.0/tarn/webhooks/deliveries"),
    ("PATCH", "/api/2.1/unity-catalog/bindings/catalog/{name}"),
    // Registry-wide webhooks (a model's own are its managers').
    ("POST", "{mlflow}/webhooks"),
    ("GET", "{mlflow}/webhooks"),
    ("GET", "{mlflow}/webhooks/{webhook_id}"),
    ("PATCH", "{mlflow}/webhooks/{webhook_id}"),
    ("DELETE", "{mlflow}/webhooks/{webhook_id}"),
    ("POST", "{mlflow}/webhooks/{webhook_id}/test"),
    ("GET", "{mlflow}/registry-webhooks/list"),
    // Identity changes through SCIM.
    ("POST", "/api/2.0/preview/scim/v2/Users"),
    ("PUT", "/api/2.0/preview/scim/v2/Users/{id}"),
    ("PATCH", "/api/2.0/preview/scim/v2/Users/{id}"),
    ("DELETE", "/api/2.0/preview/scim/v2/Users/{id}"),
    ("POST", "/api/2.0/preview/scim/v2/Groups"),
    ("PUT", "/api/2.0/preview/scim/v2/Groups/{id}"),
    ("PATCH", "/api/2.0/preview/scim/v2/Groups/{id}"),
    ("DELETE", "/api/2.0/preview/scim/v2/Groups/{id}"),
    ("POST", "/api/2.0/preview/scim/v2/ServicePrincipals"),
    ("PUT", "/api/2.0/preview/scim/v2/ServicePrincipals/{id}"),
    ("PATCH", "/api/2.0/preview/scim/v2/ServicePrincipals/{id}"),
    ("DELETE", "/api/2.0/preview/scim/v2/ServicePrincipals/{id}"),
];

/// What a member is refused with no arguments for want of a grant, not of admin rights: a run
/// with no experiment named goes to the Default experiment, which members cannot write to.
const REFUSED_ON_THE_DEFAULT_OBJECT: &[(&str, &str)] = &[("POST", "{mlflow}/runs/create")];

/// MLflow's routes are mounted under four prefixes; one name for them all.
fn family(path: &str) -> String {
    for prefix in [
        "/api/2.0/mlflow/",
        "/ajax-api/2.0/mlflow/",
        "/api/3.0/mlflow/",
        "/ajax-api/3.0/mlflow/",
    ] {
        if let Some(rest) = path.strip_prefix(prefix) {
            return format!("{{mlflow}}/{rest}");
        }
    }
    path.to_string()
}

/// A concrete path for a mounted one: placeholders become names no object has.
fn concrete(path: &str, workspace: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{workspace}" => workspace.to_string(),
            "{chunk_index}" => "0".to_string(),
            s if s.starts_with("{*") => "sweep/file.txt".to_string(),
            s if s.starts_with('{') => "sweep-1".to_string(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The bare form of a path mounted under `/ws/{workspace}`.
fn bare(path: &str) -> &str {
    path.strip_prefix("/ws/{workspace}").unwrap_or(path)
}

async fn status(
    app: &TestApp,
    method: &str,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let response = app.call(method, uri, token, json!({})).await;
    (response.status, response.json)
}

#[tokio::test]
async fn every_mounted_route_refuses_whoever_may_not_call_it() {
    let app = app().await;
    let member = app.user_with_token("sweep-member", "dev").await;
    let paths = tarn_server::mounted_paths();
    let mut answered = 0;
    let mut refused_members = Vec::new();
    for path in &paths {
        let in_dev = concrete(path, "dev");
        for method in METHODS {
            let (anonymous, body) = status(&app, method, &in_dev, None).await;
            if anonymous == StatusCode::METHOD_NOT_ALLOWED {
                continue;
            }
            answered += 1;
            let family = family(bare(path));
            let route = (method, family.as_str());
            if PUBLIC.contains(&route) {
                assert_ne!(anonymous, StatusCode::UNAUTHORIZED, "{method} {path}");
                continue;
            }
            if SIGNED.contains(&route) {
                let forged = format!(
                    "{in_dev}?upload_id=u&part_number=1&expires=99999999999&signature=forged"
                );
                for uri in [in_dev.as_str(), forged.as_str()] {
                    let (refused, body) = status(&app, method, uri, None).await;
                    assert!(
                        [
                            StatusCode::BAD_REQUEST,
                            StatusCode::FORBIDDEN,
                            StatusCode::NOT_FOUND
                        ]
                        .contains(&refused),
                        "{method} {uri} without a valid signature: {refused} {body}"
                    );
                    assert!(body["error_code"].is_string(), "{method} {uri}: {body}");
                }
                continue;
            }
            assert_eq!(
                anonymous,
                StatusCode::UNAUTHORIZED,
                "{method} {path} without credentials: {body}"
            );
            assert_eq!(
                body["error_code"], "UNAUTHENTICATED",
                "{method} {path}: {body}"
            );
            let (forged, body) = status(&app, method, &in_dev, Some("tarn_forged_0000")).await;
            assert_eq!(
                forged,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with a forged token: {body}"
            );
            // The member of dev is no member of prod.
            if path.starts_with("/ws/{workspace}") {
                let (outsider, body) =
                    status(&app, method, &concrete(path, "prod"), Some(&member)).await;
                assert_eq!(
                    outsider,
                    StatusCode::FORBIDDEN,
                    "{method} {path} as a non-member: {body}"
                );
                assert_eq!(
                    body["error_code"], "PERMISSION_DENIED",
                    "{method} {path}: {body}"
                );
            } else {
                let (as_member, _) = status(&app, method, &in_dev, Some(&member)).await;
                if as_member == StatusCode::FORBIDDEN {
                    refused_members.push((method, family.clone()));
                }
                if ADMIN_ONLY.contains(&route) {
                    assert_eq!(
                        as_member,
                        StatusCode::FORBIDDEN,
                        "{method} {path} as a member"
                    );
                    let (as_admin, body) = status(&app, method, &in_dev, Some(ADMIN_TOKEN)).await;
                    assert_ne!(
                        as_admin,
                        StatusCode::FORBIDDEN,
                        "{method} {path} as the admin: {body}"
                    );
                }
            }
        }
    }
    // Every route is mounted at its bare path and under /ws/{workspace}.
    assert!(answered > 300, "only {answered} routes answered");
    for path in &paths {
        if let Some(inner) = path.strip_prefix("/ws/{workspace}") {
            assert!(paths.iter().any(|p| p == inner), "{path} has no bare form");
        }
    }
    // A plain member is refused exactly the admin's routes, whatever the arguments, and no
    // other route on sight of its arguments alone.
    refused_members.sort();
    refused_members.dedup();
    let mut expected: Vec<(&str, String)> = ADMIN_ONLY
        .iter()
        .chain(REFUSED_ON_THE_DEFAULT_OBJECT)
        .map(|(method, path)| (*method, path.to_string()))
        .collect();
    expected.sort();
    assert_eq!(refused_members, expected);
}

/// What marks the data of the objects made in dev: no answer from another workspace holds it.
const MARK: &str = "leakmark";

async fn made(
    app: &TestApp,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let response = app.admin(method, path, body).await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "{method} {path}: {}",
        response.text
    );
    response.json
}

#[tokio::test]
async fn no_route_reaches_another_workspaces_objects() {
    let app = app().await;
    // Objects in dev, each carrying the mark in what it holds.
    let experiment = made(
        &app,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        json!({"name": format!("{MARK}-experiment")}),
    )
    .await["experiment_id"]
        .as_str()
        .expect("experiment id")
        .to_string();
    let run = app.new_run(&experiment).await;
    made(
        &app,
        "POST",
        "/api/2.0/mlflow/runs/log-batch",
        json!({
            "run_id": run,
            "metrics": [{"key": format!("{MARK}-metric"), "value": 1.0, "timestamp": 1, "step": 0}],
            "params": [{"key": format!("{MARK}-param"), "value": MARK}],
            "tags": [{"key": format!("{MARK}-tag"), "value": MARK}],
        }),
    )
    .await;
    let model = format!("{MARK}-model");
    made(
        &app,
        "POST",
        "/api/2.0/mlflow/registered-models/create",
        json!({"name": model, "description": MARK}),
    )
    .await;
    let job = made(&app, "POST", "/api/2.2/jobs/create", json!({"name": format!("{MARK}-job"), "tasks": [{"task_key": "t", "spark_python_task": {"python_file": "/Workspace/x.py"}}]})).await["job_id"]
        .to_string();
    made(
        &app,
        "POST",
        "/api/2.1/unity-catalog/schemas",
        json!({"name": format!("{MARK}_schema"), "catalog_name": "dev", "comment": MARK}),
    )
    .await;
    let table = format!("dev.{MARK}_schema.{MARK}_table");
    made(&app, "POST", "/api/2.1/unity-catalog/tables", json!({"name": format!("{MARK}_table"), "catalog_name": "dev", "schema_name": format!("{MARK}_schema"), "columns": [{"name": "id", "type_text": "bigint"}], "comment": MARK})).await;

    // Every GET route, asked from prod by the admin (who may read anything there) for dev's
    // objects by their ids and names, in the path and in the query.
    let query = [
        ("experiment_id", experiment.as_str()),
        ("run_id", run.as_str()),
        ("run_uuid", run.as_str()),
        ("name", model.as_str()),
        ("job_id", job.as_str()),
        ("full_name", table.as_str()),
        ("table_name", table.as_str()),
        ("metric_key", &format!("{MARK}-metric")),
        ("experiment_name", &format!("{MARK}-experiment")),
        ("path", &format!("{experiment}/{run}/artifacts")),
        ("version", "1"),
    ]
    .map(|(key, value)| format!("{key}={}", crate::urlencode(value)))
    .join("&");
    let mut asked = 0;
    for path in tarn_server::mounted_paths() {
        if !path.starts_with("/ws/{workspace}") {
            continue;
        }
        let uri = path
            .split('/')
            .map(|segment| match segment {
                "{workspace}" => "prod".to_string(),
                "{full_name}" => table.clone(),
                "{name}" => model.clone(),
                "{job_id}" | "{id}" => job.clone(),
                s if s.starts_with("{*") => format!("{experiment}/{run}/artifacts"),
                s if s.starts_with('{') => experiment.clone(),
                s => s.to_string(),
            })
            .collect::<Vec<_>>()
            .join("/");
        let response = app
            .call(
                "GET",
                &format!("{uri}?{query}"),
                Some(ADMIN_TOKEN),
                json!({}),
            )
            .await;
        if response.status == StatusCode::METHOD_NOT_ALLOWED {
            continue;
        }
        asked += 1;
        if response.status == StatusCode::OK {
            assert!(
                !response.text.contains(MARK),
                "GET {path} from prod shows dev's objects: {}",
                response.text
            );
        }
    }
    assert!(asked > 80, "only {asked} GET routes asked");
    // The same requests in dev do find them (the sweep above would catch a leak).
    let found = app
        .call(
            "GET",
            &format!("/api/2.0/mlflow/runs/get?run_id={run}"),
            Some(ADMIN_TOKEN),
            json!({}),
        )
        .await;
    assert!(found.text.contains(MARK));
}
