//! The store conformance suite: every test runs against SQLite and against PostgreSQL
//! (`TARN_TEST_POSTGRES_URL`, default the server at 127.0.0.1:5432), each on a fresh database.

mod alerts;
mod catalog;
mod conformance;
mod jobs;
mod lineage;
mod monitors;
mod registry;
mod serving;
mod upgrade;

use std::sync::Arc;

use tarn_core::store::MetaStore;

pub struct Backend {
    pub store: Arc<dyn MetaStore>,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    drop_database: Option<(String, String)>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.drop_database.take() {
            // Best effort: a leftover test database is harmless.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    if let Ok(pool) = sqlx::PgPool::connect(&admin_url).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&pool)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

pub async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("tarn.db").display());
    let store = tarn_store::open(&url).await.expect("open sqlite");
    Backend {
        store,
        url,
        _dir: Some(dir),
        drop_database: None,
    }
}

pub async fn postgres() -> Backend {
    let admin_url = std::env::var("TARN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let name = format!("tarn_it_{}", tarn_core::ids::hex32(rand::random()));
    let pool = sqlx::PgPool::connect(&admin_url).await.expect(
        "PostgreSQL must be reachable for the conformance suite (set TARN_TEST_POSTGRES_URL)",
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .expect("create database");
    pool.close().await;
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("database URL with a database name");
    let url = format!("{base}/{name}");
    let store = tarn_store::open(&url).await.expect("open postgres");
    Backend {
        store,
        url,
        _dir: None,
        drop_database: Some((admin_url, name)),
    }
}

/// Instantiates each conformance test once per backend.
macro_rules! conformance_suite {
    ($($module:ident :: $test:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let backend = crate::sqlite().await;
                    crate::$module::$test(backend.store.clone()).await;
                }
            )*
        }
        mod postgres_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let backend = crate::postgres().await;
                    crate::$module::$test(backend.store.clone()).await;
                }
            )*
        }
    };
}

conformance_suite!(
    conformance::workspaces_start_with_a_default_experiment,
    conformance::experiments_lifecycle,
    conformance::experiment_search_filters_orders_and_pages,
    conformance::experiment_search_respects_read_grants,
    conformance::runs_log_and_read_back,
    conformance::params_are_immutable_and_a_failed_batch_writes_nothing,
    conformance::latest_metric_follows_step_then_timestamp,
    conformance::metric_history_pages_in_order,
    conformance::deleted_runs_refuse_logging,
    conformance::run_search_filters,
    conformance::run_search_orders_and_pages_without_duplicates,
    conformance::hostile_values_are_plain_values,
    conformance::logged_models_lifecycle,
    conformance::principals_tokens_and_groups,
    conformance::workspace_membership_and_grants,
    conformance::concurrent_logging_to_one_run,
    conformance::a_refused_write_rolls_back_alone_among_concurrent_ones,
    conformance::writers_that_go_away_do_not_stall_the_others,
    registry::registered_models_lifecycle,
    registry::versions_stages_and_aliases,
    registry::transitions_check_stage_levels_in_their_write,
    registry::registry_search_filters_pages_and_grants,
    registry::every_change_is_an_event,
    registry::transition_requests_and_comments,
    registry::webhook_outbox_is_at_least_once,
    registry::every_committed_event_is_fanned_out_once,
    catalog::schemas_and_tables_lifecycle,
    catalog::schema_updates_change_only_what_is_given,
    catalog::views_hold_a_definition_and_no_location,
    catalog::grants_and_bindings_follow_their_objects,
    catalog::ingested_files_are_recorded_once_and_go_with_their_table,
    catalog::tags_are_set_unset_limited_and_go_with_their_table,
    catalog::feature_tables_and_training_sets_are_kept_and_searched,
    catalog::table_commits_are_events_and_outside_commits_recorded_once,
    lineage::edges_group_writes_and_keep_the_newest_details,
    serving::endpoints_lifecycle_grants_and_events,
    jobs::jobs_keep_their_settings_owner_and_events,
    jobs::job_runs_are_claimed_renewed_cancelled_and_kept,
    jobs::workspace_files_keep_a_tree_per_workspace,
    jobs::statements_are_shared_by_the_servers,
    monitors::monitors_and_refreshes_are_kept_with_their_events,
    monitors::refreshes_that_fall_silent_are_found,
    alerts::alerts_and_evaluations_are_kept_with_their_events,
);

/// The server and the CLI open one SQLite file from two processes (two stores here): writes
/// from both, interleaved, all land, each waiting for the other's writer. (The failure this
/// guards against, SQLITE_BUSY_SNAPSHOT when a deferred transaction that read before the
/// other committed tries to write, depends on timing; seen once in CI as "database is locked"
/// from `tarn ingest` beside a running server.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_share_one_sqlite_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("tarn.db").display());
    let server = tarn_store::open(&url).await.expect("open");
    let cli = tarn_store::open(&url).await.expect("open again");
    server.ensure_workspace("dev", "tester").await.expect("dev");
    let owner = server
        .create_principal(
            "alice",
            tarn_core::auth::PrincipalKind::User,
            false,
            None,
            "tester",
        )
        .await
        .expect("owner");
    let actor = tarn_core::registry::Actor {
        id: owner.id,
        name: owner.name,
    };
    let create = |store: Arc<dyn MetaStore>, prefix: &'static str| {
        let actor = actor.clone();
        async move {
            for i in 0..40 {
                let schema = tarn_core::catalog::NewSchema {
                    catalog: "dev".into(),
                    name: format!("{prefix}_{i}"),
                    comment: String::new(),
                    properties: Default::default(),
                };
                store
                    .create_schema(&schema, &actor)
                    .await
                    .unwrap_or_else(|err| panic!("{prefix}_{i}: {}", err.message));
            }
        }
    };
    tokio::join!(create(server.clone(), "server"), create(cli.clone(), "cli"));
    let schemas = cli.list_schemas("dev", 1000, 0).await.expect("list");
    assert_eq!(
        schemas
            .items
            .iter()
            .filter(|s| s.name.starts_with("server_") || s.name.starts_with("cli_"))
            .count(),
        80
    );
}

/// A PostgreSQL read whose caller stops waiting (a dropped request) is cancelled on the
/// server at once instead of running on.
#[tokio::test]
async fn postgres_reads_are_cancelled_when_abandoned() {
    let admin_url = std::env::var("TARN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let pool = sqlx::PgPool::connect(&admin_url).await.expect("connect");
    let marker = format!("tarn_abandoned_{}", tarn_core::ids::hex32(rand::random()));
    let sleeper = tarn_store::pg::fetch_all_cancelling(
        &pool,
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT pg_sleep(60), '{marker}'"
        ))),
    );
    let abandoned = tokio::time::timeout(std::time::Duration::from_millis(500), sleeper).await;
    assert!(abandoned.is_err(), "the sleep cannot have finished");
    let running = || {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 AND state = 'active' \
             AND pid <> pg_backend_pid()",
        )
        .bind(format!("%{marker}%"))
        .fetch_one(&pool)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while running().await.expect("activity") > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned query is still running"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The failure behind undelivered webhooks on PostgreSQL: an event's id is taken at insert, so a
/// transaction that inserted an event and is still open can commit after a later event did, and
/// after a fan-out has already taken that later one. A trigger the test installs holds the first
/// model's transaction open, just after its event is written, until the test lets it go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_delivers_an_event_committed_after_a_later_one() {
    const HOLD: i64 = 0x686f_6c64;
    let backend = postgres().await;
    let store = backend.store.clone();
    let pool = sqlx::PgPool::connect(&backend.url).await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION hold_event() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.object LIKE 'held%' THEN PERFORM pg_advisory_xact_lock_shared({HOLD}); END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER hold_event AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION hold_event();"
    )))
    .execute(&pool)
    .await
    .expect("trigger");
    store.ensure_workspace("dev", "tester").await.expect("dev");
    let owner = store
        .create_principal(
            "owner",
            tarn_core::auth::PrincipalKind::User,
            false,
            None,
            "tester",
        )
        .await
        .expect("owner");
    let actor = tarn_core::registry::Actor {
        id: owner.id,
        name: owner.name,
    };
    registry::model_created_hook(&store, &actor).await;

    let mut gate = pool.acquire().await.expect("gate connection");
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(HOLD)
        .execute(&mut *gate)
        .await
        .expect("close the gate");
    let held = tokio::spawn({
        let (store, actor) = (store.clone(), actor.clone());
        async move {
            store
                .create_registered_model("dev", "held", "", &[], &actor)
                .await
                .expect("held model")
        }
    });
    // Its event is written (the trigger waits on the gate): its id is taken, it is not committed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid::bigint = $1",
        )
        .bind(HOLD)
        .fetch_one(&pool)
        .await
        .expect("locks");
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the held write never reached its event"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    store
        .create_registered_model("dev", "later", "", &[], &actor)
        .await
        .expect("later model");
    store.fan_out(100, 1000).await.expect("fan out");
    assert_eq!(registry::delivered_model_names(&store).await, vec!["later"]);

    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(HOLD)
        .execute(&mut *gate)
        .await
        .expect("open the gate");
    held.await.expect("held write");
    assert_eq!(
        store.fan_out(100, 1000).await.expect("fan out"),
        1,
        "the held event alone"
    );
    assert_eq!(
        registry::delivered_model_names(&store).await,
        vec!["held", "later"]
    );
}

/// Runs SQL on a backend's database behind the store's back, as damage (or a newer tarn) would.
async fn alter_behind_the_store(backend: &Backend, sql: &str) {
    if let Some(path) = backend.url.strip_prefix("sqlite://") {
        let connection = rusqlite::Connection::open(path).expect("open");
        connection.execute_batch(sql).expect("sql");
    } else {
        let pool = sqlx::PgPool::connect(&backend.url).await.expect("connect");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&pool)
            .await
            .expect("sql");
    }
}

/// A stored value tarn cannot decode is an error naming its column, on both backends; it is
/// never read as a default (a webhook that reads as disabled, an event without data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_stored_values_are_errors() {
    for backend in [sqlite().await, postgres().await] {
        let store = backend.store.clone();
        store.ensure_workspace("dev", "tester").await.expect("dev");
        let owner = store
            .create_principal(
                "owner",
                tarn_core::auth::PrincipalKind::User,
                false,
                None,
                "tester",
            )
            .await
            .expect("owner");
        let actor = tarn_core::registry::Actor::from(&tarn_core::auth::Principal {
            id: owner.id,
            name: owner.name,
            kind: owner.kind,
            is_admin: false,
            group_ids: Vec::new(),
            only_workspace: None,
        });
        registry::model_created_hook(&store, &actor).await;
        alter_behind_the_store(
            &backend,
            "UPDATE webhooks SET status = 'SOMETIMES' WHERE id = 'every-model'",
        )
        .await;
        let err = store
            .get_webhook("dev", "every-model")
            .await
            .expect_err("an unknown status");
        assert_eq!(err.code, tarn_core::ErrorCode::InternalError);
        assert!(err.message.contains("status"), "{}", err.message);

        alter_behind_the_store(&backend, "UPDATE events SET data = 'not json'").await;
        let err = store
            .events(&tarn_core::events::EventQuery {
                workspace: Some("dev".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect_err("event data that is not JSON");
        assert_eq!(err.code, tarn_core::ErrorCode::InternalError);
        assert!(err.message.contains("data"), "{}", err.message);

        alter_behind_the_store(
            &backend,
            "UPDATE events SET action = 'exploded', data = '{\"name\": \"m\"}'",
        )
        .await;
        let err = store
            .events(&tarn_core::events::EventQuery {
                workspace: Some("dev".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect_err("an event of no known kind");
        assert_eq!(err.code, tarn_core::ErrorCode::InternalError);
        assert!(err.message.contains("exploded"), "{}", err.message);
    }
}
