//! Two servers on one store: each lease-held kind of background work runs on one of them,
//! a server that stops hands its work to the other at once, and links one signs the other
//! honours.

use std::time::Duration;

use tarn_server::{COMMIT_WATCHER_LEASE, COPY_SWEEPER_LEASE, ONLINE_REFRESHER_LEASE};

const LEASES: [&str; 3] = [
    ONLINE_REFRESHER_LEASE,
    COMMIT_WATCHER_LEASE,
    COPY_SWEEPER_LEASE,
];

struct Replica {
    name: &'static str,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn replica(dir: &std::path::Path, name: &'static str) -> (crate::TestApp, Replica) {
    let store = tarn_store::open(&format!("sqlite://{}", dir.join("tarn.db").display()))
        .await
        .expect("store");
    let artifacts = tarn_artifacts::ArtifactStore::open(&dir.join("artifacts").to_string_lossy())
        .expect("artifacts");
    let lake = tarn_lake::Lake::open(&dir.join("lake").to_string_lossy()).expect("lake");
    let online = tarn_features::online::open(&dir.join("online.db").to_string_lossy())
        .await
        .expect("online store");
    let settings = tarn_server::Settings {
        link_key: tarn_core::signed_urls::shared_key(store.as_ref())
            .await
            .expect("link key"),
        table_watch_every: Duration::from_millis(200),
        jobs: tarn_server::JobsSettings {
            folder: dir.join(format!("jobs-{name}")),
            slots: 0,
            worker: name.to_string(),
            ..Default::default()
        },
        ..Default::default()
    };
    let state =
        tarn_server::AppState::new(store, artifacts, lake, online, settings).expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(tarn_server::serve(state.clone(), listener, async move {
        let _ = stopped.await;
    }));
    let app = crate::TestApp {
        router: tarn_server::build_router(state.clone()),
        state,
        _dir: None,
    };
    (app, Replica { name, stop, served })
}

/// Who holds each of `leases` now (None: no one, or it lapsed).
async fn holders(state: &tarn_server::AppState, leases: &[&str]) -> Vec<Option<String>> {
    let now = tarn_core::ids::now_millis();
    let mut found = Vec::new();
    for lease in leases {
        let holder = state.store.lease_holder(lease).await.expect("lease");
        found.push(holder.filter(|(_, until)| *until > now).map(|(h, _)| h));
    }
    found
}

async fn until_held(
    state: &tarn_server::AppState,
    leases: &[&str],
    by: impl Fn(&str) -> bool,
) -> Vec<String> {
    for _ in 0..100 {
        let now = holders(state, leases).await;
        if now.iter().all(|h| h.as_deref().is_some_and(&by)) {
            return now.into_iter().flatten().collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "leases not held as expected: {:?}",
        holders(state, leases).await
    );
}

async fn bootstrapped() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    tarn_server::bootstrap(
        tarn_store::open(&format!(
            "sqlite://{}",
            dir.path().join("tarn.db").display()
        ))
        .await
        .expect("store")
        .as_ref(),
        dir.path(),
        Some(crate::ADMIN_TOKEN),
    )
    .await
    .expect("bootstrap");
    dir
}

#[tokio::test]
async fn background_work_runs_on_one_replica_and_moves_when_it_stops() {
    let dir = bootstrapped().await;
    let (app_a, a) = replica(dir.path(), "replica-a").await;
    let (app_b, b) = replica(dir.path(), "replica-b").await;
    let (state_a, state_b) = (&app_a.state, &app_b.state);

    // A part URL one replica signed is honoured by the other: they share the store's key.
    let expires = tarn_core::ids::now_millis() / 1000 + 60;
    let url = state_a
        .part_urls
        .url("http://a", "dev", "1/r/artifacts/x.bin", "up", 1, expires)
        .expect("url");
    let signature = url.rsplit_once("signature=").expect("signed").1;
    state_b
        .part_urls
        .verify(
            "dev",
            "1/r/artifacts/x.bin",
            "up",
            1,
            expires,
            signature,
            expires - 60,
        )
        .expect("honoured by the other replica");

    // Every lease has one holder among the two, and keeps it while the holder runs.
    let first = until_held(state_a, &LEASES, |h| h == a.name || h == b.name).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(until_held(state_a, &LEASES, |_| true).await, first);

    // The holder of the online refresher stops: it hands its leases back, and the work that
    // ticks every few seconds moves to the one left (the hourly sweep moves at its next turn).
    let (stopping, staying) = if first[0] == a.name { (a, b) } else { (b, a) };
    stopping.stop.send(()).expect("stop");
    tokio::time::timeout(Duration::from_secs(20), stopping.served)
        .await
        .expect("stops")
        .expect("join")
        .expect("serve");
    // Handed back: none of the stopped server's leases holds any longer (they would have
    // held for 30 s and more).
    let stopping_name = stopping.name;
    assert!(
        holders(state_a, &LEASES)
            .await
            .iter()
            .all(|h| h.as_deref() != Some(stopping_name)),
        "{:?}",
        holders(state_a, &LEASES).await
    );
    let staying_name = staying.name;
    until_held(
        state_a,
        &[ONLINE_REFRESHER_LEASE, COMMIT_WATCHER_LEASE],
        |h| h == staying_name,
    )
    .await;

    staying.stop.send(()).expect("stop");
    staying.served.await.expect("join").expect("serve");
}

#[tokio::test]
async fn a_token_revoked_on_one_replica_is_refused_by_the_other_at_once() {
    let dir = bootstrapped().await;
    let (app_a, a) = replica(dir.path(), "replica-a").await;
    let (app_b, b) = replica(dir.path(), "replica-b").await;
    let admin = Some(crate::ADMIN_TOKEN);
    let created = app_a
        .call(
            "POST",
            "/api/2.0/token/create",
            admin,
            serde_json::json!({"comment": "laptop"}),
        )
        .await;
    let token = created.json["token_value"].as_str().expect("token");
    let token_id = created.json["token_info"]["token_id"].as_str().expect("id");
    async fn me(app: &crate::TestApp, token: &str) -> axum::http::StatusCode {
        app.call(
            "GET",
            "/api/2.0/tarn/me",
            Some(token),
            serde_json::json!({}),
        )
        .await
        .status
    }
    // Replica B has checked the token and holds it in its cache (for 10 s, unless told).
    assert_eq!(me(&app_b, token).await, axum::http::StatusCode::OK);
    let revoked = app_a
        .call(
            "POST",
            "/api/2.0/token/delete",
            admin,
            serde_json::json!({"token_id": token_id}),
        )
        .await;
    assert_eq!(
        revoked.status,
        axum::http::StatusCode::OK,
        "{}",
        revoked.text
    );
    assert_eq!(
        me(&app_a, token).await,
        axum::http::StatusCode::UNAUTHORIZED
    );
    // B reads the revocation from the event stream and forgets the token: refused long
    // before its cache entry would have expired.
    let mut refused_after = None;
    for turn in 0..20 {
        if me(&app_b, token).await == axum::http::StatusCode::UNAUTHORIZED {
            refused_after = Some(turn);
            break;
        }
        tokio::time::sleep(tarn_server::ACCESS_WATCH_EVERY).await;
    }
    assert!(
        refused_after.is_some(),
        "replica B still accepts the revoked token"
    );

    for replica in [a, b] {
        replica.stop.send(()).expect("stop");
        replica.served.await.expect("join").expect("serve");
    }
}

/// A statement runs on the replica it was submitted to; its state and chunks are read, its
/// result files downloaded and its cancel asked through the other.
#[tokio::test]
async fn a_statement_is_polled_fetched_and_canceled_through_either_replica() {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let dir = bootstrapped().await;
    let (app_a, a) = replica(dir.path(), "replica-a").await;
    let (app_b, b) = replica(dir.path(), "replica-b").await;
    let admin = Some(crate::ADMIN_TOKEN);
    const STATEMENTS: &str = "/api/2.0/sql/statements";

    // Three chunks computed on A: the answer holds the first, B serves the others.
    let ran = app_a
        .call(
            "POST",
            STATEMENTS,
            admin,
            serde_json::json!({"statement": "SELECT value FROM generate_series(1, 25000)", "wait_timeout": "30s"}),
        )
        .await;
    assert_eq!(ran.json["status"]["state"], "SUCCEEDED", "{}", ran.text);
    let id = ran.json["statement_id"].as_str().expect("id").to_string();
    assert_eq!(ran.json["result"]["data_array"][0][0], "1");
    let polled = app_b
        .call(
            "GET",
            &format!("{STATEMENTS}/{id}"),
            admin,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(
        polled.json["status"]["state"], "SUCCEEDED",
        "{}",
        polled.text
    );
    assert_eq!(polled.json["manifest"], ran.json["manifest"]);
    assert!(
        polled.json.get("result").is_none(),
        "chunk 0 was fetched once"
    );
    let second = app_b
        .call(
            "GET",
            &format!("{STATEMENTS}/{id}/result/chunks/1"),
            admin,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(second.json["row_offset"], 10_000, "{}", second.text);
    assert_eq!(second.json["data_array"][0][0], "10001");
    assert_eq!(second.json["next_chunk_index"], 2);
    let third = app_a
        .call(
            "GET",
            &format!("{STATEMENTS}/{id}/result/chunks/2"),
            admin,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(third.json["row_count"], 5_000, "{}", third.text);
    assert_eq!(third.json["data_array"][4_999][0], "25000");
    let again = app_a
        .call(
            "GET",
            &format!("{STATEMENTS}/{id}/result/chunks/1"),
            admin,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(again.status, axum::http::StatusCode::BAD_REQUEST);
    assert!(again.text.contains("once fetched"), "{}", again.text);

    // Another user sees none of it through either replica.
    let other = app_a.user_with_token("analyst", "dev").await;
    for app in [&app_a, &app_b] {
        let hidden = app
            .call(
                "GET",
                &format!("{STATEMENTS}/{id}"),
                Some(&other),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(
            hidden.status,
            axum::http::StatusCode::NOT_FOUND,
            "{}",
            hidden.text
        );
    }

    // A result file A wrote is downloaded through B by its link.
    let request = axum::http::Request::builder()
        .method("POST")
        .uri(STATEMENTS)
        .header("authorization", format!("Bearer {}", crate::ADMIN_TOKEN))
        .header("host", "replica-a.test")
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::json!({"statement": "SELECT value FROM generate_series(1, 10)", "disposition": "EXTERNAL_LINKS", "format": "ARROW_STREAM", "wait_timeout": "30s"}).to_string(),
        ))
        .expect("request");
    let linked = app_a.send(request).await;
    let link = linked.json["result"]["external_links"][0]["external_link"]
        .as_str()
        .unwrap_or_else(|| panic!("a link: {}", linked.text));
    let path = link
        .strip_prefix("http://replica-a.test")
        .expect("our host");
    let download = |app: &crate::TestApp| {
        let router = app.router.clone();
        let request = axum::http::Request::builder()
            .uri(path)
            .body(Body::empty())
            .expect("request");
        async move { router.oneshot(request).await.expect("response") }
    };
    let got = download(&app_b).await;
    assert_eq!(got.status(), axum::http::StatusCode::OK);
    let bytes = got.into_body().collect().await.expect("body").to_bytes();
    let (_, batches) = tarn_lake::ipc::decode(&bytes).expect("arrow");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 10);
    assert_eq!(
        download(&app_a).await.status(),
        axum::http::StatusCode::NOT_FOUND,
        "a file goes once downloaded, through any replica"
    );

    // A long statement runs on A; B reports it running and passes on the cancel.
    let long = app_a
        .call(
            "POST",
            STATEMENTS,
            admin,
            serde_json::json!({"statement": "SELECT count(*) FROM generate_series(1, 100000000000)", "wait_timeout": "0s"}),
        )
        .await;
    assert_eq!(long.json["status"]["state"], "RUNNING", "{}", long.text);
    let long_id = long.json["statement_id"].as_str().expect("id").to_string();
    async fn state_on(app: &crate::TestApp, id: &str) -> serde_json::Value {
        app.call(
            "GET",
            &format!("/api/2.0/sql/statements/{id}"),
            Some(crate::ADMIN_TOKEN),
            serde_json::json!({}),
        )
        .await
        .json["status"]["state"]
            .clone()
    }
    assert_eq!(state_on(&app_b, &long_id).await, "RUNNING");
    let canceled = app_b
        .call(
            "POST",
            &format!("{STATEMENTS}/{long_id}/cancel"),
            admin,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(
        canceled.status,
        axum::http::StatusCode::OK,
        "{}",
        canceled.text
    );
    let mut turns = 0;
    while state_on(&app_b, &long_id).await != "CANCELED" {
        turns += 1;
        assert!(turns < 100, "A did not stop the statement B canceled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state_on(&app_a, &long_id).await, "CANCELED");

    for replica in [a, b] {
        replica.stop.send(()).expect("stop");
        replica.served.await.expect("join").expect("serve");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endpoint_rolls_to_a_new_version_on_both_replicas_with_no_failed_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use crate::serving_api::{invoke, one_row, register, set_alias};

    let dir = bootstrapped().await;
    let (app_a, a) = replica(dir.path(), "replica-a").await;
    let (app_b, b) = replica(dir.path(), "replica-b").await;
    register(&app_a, "fraud", "gradient_boosting").await;
    register(&app_a, "fraud", "scaled_logistic").await;
    set_alias(&app_a, "fraud", "champion", "1").await;
    let created = app_a
        .admin(
            "POST",
            "/api/2.0/serving-endpoints",
            serde_json::json!({ "name": "fraud-api", "config": { "served_entities": [{ "entity_name": "fraud", "entity_alias": "champion" }] } }),
        )
        .await;
    assert_eq!(
        created.status,
        axum::http::StatusCode::OK,
        "{}",
        created.text
    );

    // B picks up the endpoint A made.
    let serves = |router: axum::Router, version: &'static str| async move {
        for _ in 0..200 {
            let answer = invoke(&router, crate::ADMIN_TOKEN, "fraud-api", &one_row(0)).await;
            if answer.status == axum::http::StatusCode::OK
                && answer.version.as_deref() == Some(version)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("version {version} was not served within 10 s");
    };
    serves(app_b.router.clone(), "1").await;

    // Requests flow to both replicas while the alias moves on A; none fails.
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for router in [app_a.router.clone(), app_b.router.clone()] {
        let (stop, failed, answered) = (stop.clone(), failed.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let answer = invoke(&router, crate::ADMIN_TOKEN, "fraud-api", &one_row(i)).await;
                if answer.status != axum::http::StatusCode::OK {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                answered.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moved_at = std::time::Instant::now();
    set_alias(&app_a, "fraud", "champion", "2").await;
    serves(app_a.router.clone(), "2").await;
    serves(app_b.router.clone(), "2").await;
    let rolled_in = moved_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client");
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the roll"
    );
    assert!(answered.load(Ordering::Relaxed) > 10);
    // Both replicas follow the registry within their sync period (1 s) and a load.
    println!("both replicas served version 2 {rolled_in:?} after the alias moved");

    for replica in [a, b] {
        replica.stop.send(()).expect("stop");
        replica.served.await.expect("join").expect("serve");
    }
}
