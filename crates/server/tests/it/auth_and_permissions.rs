//! Every API needs a principal; workspaces need membership; experiments need grants.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use serde_json::json;

use crate::{ADMIN_TOKEN, app, status_and_body};

#[tokio::test]
async fn credentials_are_required_and_checked() {
    let app = app().await;
    let path = "/api/2.0/mlflow/experiments/get";
    let args = json!({"experiment_id": "0"});
    insta::assert_json_snapshot!(
        "no_credentials",
        status_and_body(&app.call("GET", path, None, args.clone()).await)
    );
    assert_eq!(
        app.call("GET", path, Some("tarn_wrong"), args.clone())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.call("GET", path, Some(ADMIN_TOKEN), args.clone())
            .await
            .status,
        StatusCode::OK
    );

    app.user_with_token("alice", "dev").await;
    let basic = |user: &str, password: &str| {
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Request::builder()
            .uri("/api/2.0/mlflow/experiments/search?max_results=10")
            .header("authorization", format!("Basic {credentials}"))
            .body(Body::empty())
            .expect("request")
    };
    assert_eq!(
        app.send(basic("alice", "password-123")).await.status,
        StatusCode::OK
    );
    // Second time from the login cache.
    assert_eq!(
        app.send(basic("alice", "password-123")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.send(basic("alice", "wrong-password")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.send(basic("nobody", "password-123")).await.status,
        StatusCode::UNAUTHORIZED
    );
    // /health needs nothing.
    assert_eq!(
        app.call("GET", "/health", None, json!({})).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn tokens_expire_and_can_be_revoked() {
    let app = app().await;
    let token = app.user_with_token("carol", "dev").await;
    let me = app
        .call("GET", "/api/2.0/tarn/me", Some(&token), json!({}))
        .await;
    assert_eq!(me.json["name"], "carol");
    let own = app
        .call(
            "POST",
            "/api/2.0/token/create",
            Some(&token),
            json!({"comment": "ci", "lifetime_seconds": 60}),
        )
        .await;
    let second = own.json["token_value"].as_str().expect("token").to_string();
    let token_id = own.json["token_info"]["token_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(
        app.call("GET", "/api/2.0/tarn/me", Some(&second), json!({}))
            .await
            .status,
        StatusCode::OK
    );
    let listed = app
        .call("GET", "/api/2.0/token/list", Some(&token), json!({}))
        .await;
    assert_eq!(
        listed.json["token_infos"].as_array().expect("list").len(),
        2
    );
    assert!(
        !listed.text.contains(&second),
        "listing never shows secrets"
    );
    app.call(
        "POST",
        "/api/2.0/token/delete",
        Some(&token),
        json!({"token_id": token_id}),
    )
    .await;
    assert_eq!(
        app.call("GET", "/api/2.0/tarn/me", Some(&second), json!({}))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let refused = app
        .call(
            "POST",
            "/api/2.0/token/create",
            Some(&token),
            json!({"lifetime_seconds": -5}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    // Only admins manage users.
    let denied = app
        .call(
            "POST",
            "/api/2.0/tarn/users",
            Some(&token),
            json!({"name": "mallory"}),
        )
        .await;
    assert_eq!(denied.json["error_code"], "PERMISSION_DENIED");
}

#[tokio::test]
async fn workspace_membership_is_required() {
    let app = app().await;
    let token = app.user_with_token("dana", "dev").await;
    let in_dev = app
        .call(
            "GET",
            "/api/2.0/mlflow/experiments/search",
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(in_dev.status, StatusCode::OK);
    let in_prod = app
        .call(
            "GET",
            "/ws/prod/api/2.0/mlflow/experiments/search",
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(in_prod.status, StatusCode::FORBIDDEN);
    assert_eq!(in_prod.json["error_code"], "PERMISSION_DENIED");
}

#[tokio::test]
async fn experiment_permission_levels() {
    let app = app().await;
    let owner = app.user_with_token("owner", "dev").await;
    let other = app.user_with_token("other", "dev").await;
    let created = app
        .call(
            "POST",
            "/api/2.0/mlflow/experiments/create",
            Some(&owner),
            json!({"name": "private"}),
        )
        .await;
    let id = created.json["experiment_id"]
        .as_str()
        .expect("id")
        .to_string();
    let run = app
        .call(
            "POST",
            "/api/2.0/mlflow/runs/create",
            Some(&owner),
            json!({"experiment_id": id}),
        )
        .await;
    let run_id = run.json["run"]["info"]["run_id"]
        .as_str()
        .expect("run")
        .to_string();

    let read = |token: String| {
        let app = &app;
        let id = id.clone();
        async move {
            app.call(
                "GET",
                "/api/2.0/mlflow/experiments/get",
                Some(&token),
                json!({"experiment_id": id}),
            )
            .await
            .status
        }
    };
    let log = |token: String| {
        let app = &app;
        let run_id = run_id.clone();
        async move {
            app.call(
                "POST",
                "/api/2.0/mlflow/runs/log-metric",
                Some(&token),
                json!({"run_id": run_id, "key": "m", "value": 1, "timestamp": 1}),
            )
            .await
            .status
        }
    };
    let visible = |token: String| {
        let app = &app;
        async move {
            let found = app
                .call(
                    "POST",
                    "/api/2.0/mlflow/experiments/search",
                    Some(&token),
                    json!({}),
                )
                .await;
            found.json["experiments"]
                .as_array()
                .expect("experiments")
                .iter()
                .map(|e| e["name"].as_str().unwrap_or("").to_string())
                .collect::<Vec<_>>()
        }
    };

    // No grant: cannot read, log or see it.
    assert_eq!(read(other.clone()).await, StatusCode::FORBIDDEN);
    assert_eq!(log(other.clone()).await, StatusCode::FORBIDDEN);
    assert!(
        !visible(other.clone())
            .await
            .contains(&"private".to_string())
    );
    let denied_run = app
        .call(
            "GET",
            "/api/2.0/mlflow/runs/get",
            Some(&other),
            json!({"run_id": run_id}),
        )
        .await;
    insta::assert_json_snapshot!("run_without_grant", status_and_body(&denied_run));
    // An id that does not exist answers a non-reader as one it may not read: ids cannot be
    // walked to learn which exist.
    let absent = app
        .call(
            "GET",
            "/api/2.0/mlflow/experiments/get",
            Some(&other),
            json!({"experiment_id": "987654"}),
        )
        .await;
    assert_eq!(absent.status, StatusCode::FORBIDDEN);
    assert_eq!(absent.json["error_code"], "PERMISSION_DENIED");
    // The other user cannot grant itself access.
    let self_grant = app
        .call("PATCH", &format!("/api/2.0/permissions/experiments/{id}"), Some(&other), json!({"access_control_list": [{"user_name": "other", "permission_level": "CAN_MANAGE"}]}))
        .await;
    assert_eq!(self_grant.status, StatusCode::FORBIDDEN);

    let grant = |level: &'static str| {
        let app = &app;
        let owner = owner.clone();
        let id = id.clone();
        async move {
            app.call(
                "PATCH",
                &format!("/api/2.0/permissions/experiments/{id}"),
                Some(&owner),
                json!({"access_control_list": [{"user_name": "other", "permission_level": level}]}),
            )
            .await
        }
    };
    let granted = grant("CAN_READ").await;
    assert_eq!(granted.status, StatusCode::OK, "{}", granted.text);
    assert_eq!(granted.json["object_type"], "mlflow-experiment");
    assert_eq!(read(other.clone()).await, StatusCode::OK);
    assert_eq!(log(other.clone()).await, StatusCode::FORBIDDEN);
    assert!(
        visible(other.clone())
            .await
            .contains(&"private".to_string())
    );
    grant("CAN_EDIT").await;
    assert_eq!(log(other.clone()).await, StatusCode::OK);
    // Editing does not allow deleting.
    let delete = app
        .call(
            "POST",
            "/api/2.0/mlflow/experiments/delete",
            Some(&other),
            json!({"experiment_id": id}),
        )
        .await;
    assert_eq!(delete.status, StatusCode::FORBIDDEN);
    // A bad level is refused and changes nothing.
    assert_eq!(grant("CAN_FLY").await.status, StatusCode::BAD_REQUEST);
    let acl = app
        .call(
            "GET",
            &format!("/api/2.0/permissions/experiments/{id}"),
            Some(&owner),
            json!({}),
        )
        .await;
    let levels: Vec<_> = acl.json["access_control_list"]
        .as_array()
        .expect("acl")
        .iter()
        .map(|e| {
            (
                e["user_name"].as_str().unwrap_or("").to_string(),
                e["all_permissions"][0]["permission_level"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        levels,
        vec![
            ("other".to_string(), "CAN_EDIT".to_string()),
            ("owner".to_string(), "CAN_MANAGE".to_string())
        ]
    );
    // PUT replaces the list.
    let replaced = app
        .call("PUT", &format!("/api/2.0/permissions/experiments/{id}"), Some(&owner), json!({"access_control_list": [{"user_name": "owner", "permission_level": "CAN_MANAGE"}]}))
        .await;
    assert_eq!(replaced.status, StatusCode::OK);
    assert_eq!(read(other.clone()).await, StatusCode::FORBIDDEN);
    // Admins pass every check.
    assert_eq!(read(ADMIN_TOKEN.to_string()).await, StatusCode::OK);
    // An object type the permissions API does not have is no endpoint, and changes nothing.
    for method in ["GET", "PUT", "PATCH"] {
        let unknown = app
            .call(method, &format!("/api/2.0/permissions/notebooks/{id}"), Some(&owner), json!({"access_control_list": [{"user_name": "other", "permission_level": "CAN_MANAGE"}]}))
            .await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(unknown.json["error_code"], "ENDPOINT_NOT_FOUND", "{method}");
    }
    assert_eq!(read(other.clone()).await, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_token_limited_to_one_workspace_works_only_there() {
    let app = app().await;
    let everywhere = app.user_with_token("wanda", "dev").await;
    let member = app
        .admin(
            "POST",
            "/ws/prod/api/2.0/tarn/workspace/members",
            json!({"principal": "wanda"}),
        )
        .await;
    assert_eq!(member.status, StatusCode::OK, "{}", member.text);
    let search = |token: String, prefix: &'static str| {
        let app = &app;
        async move {
            app.call(
                "GET",
                &format!("{prefix}/api/2.0/mlflow/experiments/search"),
                Some(&token),
                json!({}),
            )
            .await
        }
    };
    assert_eq!(
        search(everywhere.clone(), "/ws/prod").await.status,
        StatusCode::OK
    );
    assert_eq!(search(everywhere.clone(), "").await.status, StatusCode::OK);

    let issued = app
        .admin(
            "POST",
            "/api/2.0/token-management/on-behalf-of/tokens",
            json!({"principal": "wanda", "workspace": "prod"}),
        )
        .await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.text);
    assert_eq!(issued.json["token_info"]["workspace"], "prod");
    let limited = issued.json["token_value"]
        .as_str()
        .expect("token")
        .to_string();
    assert_eq!(
        search(limited.clone(), "/ws/prod").await.status,
        StatusCode::OK
    );
    let elsewhere = search(limited.clone(), "").await;
    assert_eq!(elsewhere.status, StatusCode::FORBIDDEN);
    assert_eq!(elsewhere.json["error_code"], "PERMISSION_DENIED");
    assert!(
        elsewhere.json["message"]
            .as_str()
            .is_some_and(|m| m.contains("limited to workspace 'prod'"))
    );

    // A limited token makes only tokens limited to its workspace.
    let widened = app
        .call(
            "POST",
            "/ws/prod/api/2.0/token/create",
            Some(&limited),
            json!({"workspace": "dev"}),
        )
        .await;
    assert_eq!(widened.status, StatusCode::FORBIDDEN, "{}", widened.text);
    let made = app
        .call(
            "POST",
            "/ws/prod/api/2.0/token/create",
            Some(&limited),
            json!({"comment": "ci"}),
        )
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.text);
    assert_eq!(made.json["token_info"]["workspace"], "prod");
    let child = made.json["token_value"]
        .as_str()
        .expect("token")
        .to_string();
    assert_eq!(
        search(child.clone(), "/ws/prod").await.status,
        StatusCode::OK
    );
    assert_eq!(search(child, "").await.status, StatusCode::FORBIDDEN);

    // A workspace that does not exist is refused, and no token is made.
    let before = app
        .admin("GET", "/api/2.0/token-management/tokens", json!({}))
        .await;
    let nowhere = app
        .call(
            "POST",
            "/api/2.0/token/create",
            Some(&everywhere),
            json!({"workspace": "nowhere"}),
        )
        .await;
    assert_eq!(nowhere.status, StatusCode::BAD_REQUEST, "{}", nowhere.text);
    let after = app
        .admin("GET", "/api/2.0/token-management/tokens", json!({}))
        .await;
    assert_eq!(before.json, after.json);
}
