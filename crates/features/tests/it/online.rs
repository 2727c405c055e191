//! Publishing to the online stores (SQLite, and the Redis server at 127.0.0.1:6379 or
//! `TARN_TEST_REDIS_URL`): full then incremental from the change feed, and lookups that honour
//! the time to live and agree with the offline point-in-time values.

use serde_json::{Map, Value, json};
use tarn_core::caller::Caller;
use tarn_core::features::{FeatureLookup, LabelSource, TrainingSetSpec};
use tarn_features::online::{self, LookupCache, LookupRequest, PublishOptions, Status};
use tarn_features::{tables, training};
use tarn_lake::catalog::location_of;

use crate::pit_end_to_end::{DAY, Fixture, spend_rows};

fn key(id: i64) -> Map<String, Value> {
    let mut key = Map::new();
    key.insert("customer_id".into(), json!(id));
    key
}

/// Redis that is not there is a service to try again later (503), with Redis's own error kept
/// as the cause for the server's log; never a bare internal error.
#[tokio::test]
async fn a_redis_that_does_not_answer_is_temporarily_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let err = match online::open(&format!("redis://127.0.0.1:{port}/0")).await {
        Ok(_) => panic!("nothing listens on port {port}"),
        Err(err) => err,
    };
    assert_eq!(
        err.code,
        tarn_core::ErrorCode::TemporarilyUnavailable,
        "{err} {:?}",
        std::error::Error::source(&err)
    );
    assert!(err.message.contains("Redis"), "{}", err.message);
    assert!(
        std::error::Error::source(&err).is_some(),
        "the cause is kept: {}",
        err.report()
    );
}

#[tokio::test]
async fn sqlite_publishes_incrementally_and_looks_up_within_the_time_to_live() {
    let f = Fixture::new().await;
    let online = online::open(&f._dir.path().join("online.db").to_string_lossy())
        .await
        .expect("online store");
    assert_eq!(online.kind(), "sqlite");
    publish_and_look_up(&f, online.as_ref()).await;
}

#[tokio::test]
async fn redis_publishes_incrementally_and_looks_up_within_the_time_to_live() {
    let f = Fixture::new().await;
    let online = redis_store().await;
    assert_eq!(online.kind(), "redis");
    publish_and_look_up(&f, online.as_ref()).await;
}

/// A Redis online store in a namespace of its own, so runs never meet.
async fn redis_store() -> std::sync::Arc<dyn online::OnlineStore> {
    let server = std::env::var("TARN_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_string());
    let namespace = format!(
        "tarn-test-{}",
        tarn_core::ids::hex32(rand_id().to_le_bytes())
    );
    online::open(&format!("{server}?namespace={namespace}"))
        .await
        .expect("Redis must be reachable for the online store tests (set TARN_TEST_REDIS_URL)")
}

/// Two servers publish one table and the one that read an older version finishes last: its
/// publish changes nothing, on either store.
#[tokio::test]
async fn an_older_publish_never_overwrites_a_newer_one() {
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = online::open(&dir.path().join("online.db").to_string_lossy())
        .await
        .expect("online store");
    for online in [sqlite, redis_store().await] {
        let publication = |version| online::Publication {
            table_name: "dev.features.raced".into(),
            version,
            published_at: 1,
            keys: 0,
            ttl_micros: None,
            refresh: None,
            published_by: "alice".into(),
            workspace: "dev".into(),
            refresh_error: None,
        };
        let spend = |value: u64| online::OnlineRow {
            key: "1".into(),
            feature_ts: Some(1),
            values: format!("{{\"spend\":{value}}}"),
        };
        let apply = |version: u64, replace_all: bool| {
            online.apply(
                publication(version),
                vec![spend(version)],
                vec![],
                replace_all,
            )
        };
        let read = || async {
            let values = online
                .get("dev.features.raced", &["1".to_string()])
                .await
                .expect("get");
            let version = online
                .publication("dev.features.raced")
                .await
                .expect("publication")
                .expect("published")
                .version;
            (values, version)
        };
        let at = |value: u64| {
            (
                vec![Some((Some(1), format!("{{\"spend\":{value}}}")))],
                value,
            )
        };
        assert!(apply(6, true).await.expect("first"), "{}", online.kind());
        assert!(!apply(5, false).await.expect("older"), "{}", online.kind());
        assert!(
            !apply(4, true).await.expect("older, whole"),
            "{}",
            online.kind()
        );
        assert_eq!(read().await, at(6), "{}", online.kind());
        assert!(apply(6, false).await.expect("the same again"));
        assert!(apply(7, false).await.expect("newer"));
        assert_eq!(read().await, at(7), "{}", online.kind());
        // Racing publishes: whichever commits first, the later version is what stays.
        for version in (8..28).step_by(2) {
            let (older, newer) = tokio::join!(apply(version, false), apply(version + 1, false));
            assert!(newer.expect("newer"), "{}", online.kind());
            older.expect("older");
            assert_eq!(read().await, at(version + 1), "{}", online.kind());
        }
    }
}

#[tokio::test]
async fn composite_keys_publish_incrementally_too() {
    let f = Fixture::new().await;
    let online = online::open(&f._dir.path().join("online.db").to_string_lossy())
        .await
        .expect("online store");
    let online = online.as_ref();
    let store = f.store.as_ref();
    let table = "dev.features.by_visits";
    tables::create(
        &f.lake,
        store,
        &f.alice,
        tables::NewFeatureTable {
            name: table.into(),
            primary_keys: vec!["customer_id".into(), "visits".into()],
            ..Default::default()
        },
        tables::FeatureRows::Data(vec![spend_rows(&[
            (1, 1, Some(1.0), 10),
            (1, 2, Some(2.0), 20),
            (2, 1, Some(3.0), 10),
        ])]),
    )
    .await
    .expect("feature table");
    let manual = PublishOptions::default();
    let first = online::publish(&f.lake, store, online, &f.alice, table, &manual)
        .await
        .expect("publish");
    assert_eq!((first.mode, first.keys_written), ("full", 3));
    // A correction of (1, 20): with two keys the publish reads the table, and writes that key.
    tables::write(
        &f.lake,
        store,
        &f.alice,
        table,
        vec![spend_rows(&[(1, 5, Some(9.0), 20)])],
    )
    .await
    .expect("write");
    let second = online::publish(&f.lake, store, online, &f.alice, table, &manual)
        .await
        .expect("publish again");
    assert_eq!(
        (second.mode, second.keys_written, second.keys_removed),
        ("incremental", 1, 0)
    );
    let composite = |customer: i64, visits: i64| {
        let mut key = Map::new();
        key.insert("customer_id".into(), json!(customer));
        key.insert("visits".into(), json!(visits));
        key
    };
    let found = look_up(
        &f,
        online,
        &f.alice,
        table,
        &[composite(1, 20), composite(2, 10), composite(2, 20)],
        None,
        0,
    )
    .await
    .expect("lookup");
    let spend: Vec<Value> = found.iter().map(|l| l.values()["spend"].clone()).collect();
    assert_eq!(spend, [json!(9.0), json!(3.0), Value::Null]);
    assert_eq!(found[2].status, Status::NotFound);
}

/// A lookup with a cache of its own, as a first request resolves the table.
async fn look_up(
    f: &Fixture,
    online: &dyn online::OnlineStore,
    caller: &Caller,
    table: &str,
    keys: &[Map<String, Value>],
    ttl: Option<&str>,
    now: i64,
) -> tarn_core::Result<Vec<online::Lookup>> {
    let request = LookupRequest {
        table,
        keys,
        ttl,
        now,
    };
    online::lookup(
        f.store.as_ref(),
        online,
        &LookupCache::default(),
        caller,
        &request,
    )
    .await
}

fn rand_id() -> u128 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    nanos ^ (u128::from(std::process::id()) << 64)
}

async fn publish_and_look_up(f: &Fixture, online: &dyn online::OnlineStore) {
    f.spend_table().await;
    let manual = PublishOptions::default();
    let store = f.store.as_ref();
    let table = "dev.features.spend";
    let first = online::publish(
        &f.lake,
        store,
        online,
        &f.alice,
        table,
        &PublishOptions {
            ttl: Some("3d".into()),
            ..Default::default()
        },
    )
    .await
    .expect("publish");
    assert_eq!(
        (first.mode, first.version, first.keys_written),
        ("full", 1, 2)
    );

    let keys = [key(1), key(2), key(3)];
    let day = |d: i64| d * DAY / 1000;
    let found = look_up(f, online, &f.alice, table, &keys, None, day(6))
        .await
        .expect("lookup");
    let statuses: Vec<Status> = found.iter().map(|l| l.status).collect();
    assert_eq!(
        statuses,
        [Status::Present, Status::OutsideMaxAge, Status::NotFound],
        "key 2's row is 4 days old at day 6, older than the 3-day ttl"
    );
    assert_eq!(found[0].values(), json!({"spend": 5.0, "visits": 50}));
    assert_eq!(found[0].feature_timestamp, Some(5 * DAY));
    let without_ttl = look_up(f, online, &f.alice, table, &keys, Some("30d"), day(6))
        .await
        .expect("lookup");
    assert_eq!(without_ttl[1].status, Status::Present);
    assert_eq!(
        without_ttl[1].values(),
        json!({"spend": null, "visits": 5}),
        "a null value is served as null"
    );

    // Online values equal the offline point-in-time values at the same time.
    let spec = TrainingSetSpec {
        label: LabelSource {
            query: Some(
                "SELECT customer_id, to_timestamp_micros(6 * 86400000000) AS at FROM \
                 (VALUES (1), (2)) AS k(customer_id)"
                    .into(),
            ),
            ..Default::default()
        },
        feature_lookups: vec![FeatureLookup {
            table_name: table.into(),
            timestamp_lookup_key: Some("at".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let (offline, _, _) = training::build(&f.lake, store, &f.alice, spec)
        .await
        .expect("offline");
    let offline_rows: Vec<Value> = serde_json::from_slice::<Vec<Value>>(&{
        let mut writer = tarn_lake::arrow::json::ArrayWriter::new(Vec::new());
        writer
            .write(&offline.project(&[2, 3]).expect("features"))
            .expect("json");
        writer.finish().expect("json");
        writer.into_inner()
    })
    .expect("rows");
    assert_eq!(offline_rows[0], without_ttl[0].values());
    assert_eq!(
        offline_rows[1],
        json!({"visits": 5}),
        "arrow-json leaves the null out"
    );

    // A new row for key 1 and key 2's rows deleted: the next publish touches those two only.
    tables::write(
        &f.lake,
        store,
        &f.alice,
        table,
        vec![spend_rows(&[(1, 6, Some(6.0), 60)])],
    )
    .await
    .expect("write");
    let (_, info) = tables::feature_table_for(
        store,
        &f.alice,
        table,
        tarn_core::catalog::Privilege::Modify,
    )
    .await
    .expect("table");
    f.lake
        .delete_where(
            &location_of(&info).expect("location"),
            table,
            "customer_id = 2",
        )
        .await
        .expect("delete");
    let second = online::publish(&f.lake, store, online, &f.alice, table, &manual)
        .await
        .expect("publish again");
    assert_eq!(
        (
            second.mode,
            second.from_version,
            second.version,
            second.keys_written,
            second.keys_removed
        ),
        ("incremental", Some(1), 3, 1, 1)
    );
    let found = look_up(f, online, &f.alice, table, &keys, None, day(7))
        .await
        .expect("lookup");
    assert_eq!(found[0].values(), json!({"spend": 6.0, "visits": 60}));
    assert_eq!(found[1].status, Status::NotFound);
    let freshness = online
        .publication(table)
        .await
        .expect("publication")
        .expect("published");
    assert_eq!(
        (freshness.version, freshness.keys, freshness.ttl_micros),
        (3, 1, Some(3 * DAY))
    );
    let nothing_new = online::publish(&f.lake, store, online, &f.alice, table, &manual)
        .await
        .expect("publish without changes");
    assert_eq!((nothing_new.keys_written, nothing_new.keys_removed), (0, 0));

    kept_fresh_by_the_server(f, online, table).await;

    // Bob may not read alice's table, online either.
    let err = look_up(f, online, &f.bob, table, &keys, None, day(7))
        .await
        .expect_err("refused");
    assert_eq!(err.code, tarn_core::ErrorCode::PermissionDenied);
}

/// Continuous and scheduled publications, refreshed as the server's loop does, with the clock
/// given; a refresh that fails is recorded on the publication until one works.
async fn kept_fresh_by_the_server(f: &Fixture, online: &dyn online::OnlineStore, table: &str) {
    let store = f.store.as_ref();
    let refresh = |text: &str| PublishOptions {
        refresh: Some(text.into()),
        ..Default::default()
    };
    let write = |day: i64, spend: f64| {
        tables::write(
            &f.lake,
            store,
            &f.alice,
            table,
            vec![spend_rows(&[(1, day, Some(spend), 0)])],
        )
    };
    let refreshed = |now: i64| async move {
        online::refresh_due(&f.lake, store, online, now)
            .await
            .expect("refresh")
            .iter()
            .map(|p| (p.table_name.clone(), p.version, p.keys_written))
            .collect::<Vec<_>>()
    };
    let spend_of_key_1 = || async {
        let found = look_up(f, online, &f.alice, table, &[key(1)], Some("365d"), 0)
            .await
            .expect("lookup");
        found[0].values()["spend"].clone()
    };
    let now = tarn_core::ids::now_millis();
    let hour = 3_600_000;

    let published = online::publish(
        &f.lake,
        store,
        online,
        &f.alice,
        table,
        &refresh("continuous"),
    )
    .await
    .expect("continuous");
    assert_eq!(published.refresh.as_deref(), Some("continuous"));
    assert_eq!(refreshed(now).await, [], "nothing new to publish");
    write(7, 7.0).await.expect("write");
    assert_eq!(refreshed(now).await, [(table.to_string(), 4, 1)]);
    assert_eq!(spend_of_key_1().await, json!(7.0));
    assert_eq!(refreshed(now).await, []);

    // A schedule: the next change waits until the last publish is an hour old.
    online::publish(&f.lake, store, online, &f.alice, table, &refresh("1h"))
        .await
        .expect("scheduled");
    write(8, 8.0).await.expect("write");
    assert_eq!(refreshed(now + hour / 2).await, []);
    assert_eq!(spend_of_key_1().await, json!(7.0));
    assert_eq!(refreshed(now + 2 * hour).await, [(table.to_string(), 5, 1)]);
    assert_eq!(spend_of_key_1().await, json!(8.0));

    // The publisher deactivated: the refresh fails, says why, and works again once they are back.
    store
        .set_active("alice", false, "tester")
        .await
        .expect("deactivate");
    write(9, 9.0).await.expect("write");
    assert_eq!(refreshed(now + 4 * hour).await, []);
    let failed = online
        .publication(table)
        .await
        .expect("read")
        .expect("published");
    assert!(
        failed
            .refresh_error
            .as_deref()
            .is_some_and(|e| e.contains("'alice' is deactivated")),
        "{failed:?}"
    );
    store
        .set_active("alice", true, "tester")
        .await
        .expect("reactivate");
    assert_eq!(refreshed(now + 4 * hour).await, [(table.to_string(), 6, 1)]);
    let healed = online
        .publication(table)
        .await
        .expect("read")
        .expect("published");
    assert_eq!(
        (healed.refresh_error, healed.refresh.as_deref()),
        (None, Some("1h"))
    );

    // Back to publishing only when asked.
    online::publish(&f.lake, store, online, &f.alice, table, &refresh("manual"))
        .await
        .expect("manual");
    write(10, 10.0).await.expect("write");
    assert_eq!(refreshed(now + 10 * hour).await, []);
    let err = online::publish(&f.lake, store, online, &f.alice, table, &refresh("often"))
        .await
        .expect_err("refused");
    assert!(
        err.message.contains("Invalid refresh 'often'"),
        "{}",
        err.message
    );
}
