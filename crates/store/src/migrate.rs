//! Schema migrations, one folder per dialect, applied in order at start-up. Each migration runs
//! in its own transaction; on PostgreSQL an advisory lock keeps two starting servers from racing.

use sqlx::{Pool, Postgres};
use tarn_core::Result;

use crate::common::db_error;
use crate::lite;

const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_registry.sql")),
    (3, include_str!("../migrations/sqlite/0003_activities.sql")),
    (4, include_str!("../migrations/sqlite/0004_webhooks.sql")),
    (
        5,
        include_str!("../migrations/sqlite/0005_latest_metric_trigger.sql"),
    ),
    (6, include_str!("../migrations/sqlite/0006_catalog.sql")),
    (
        7,
        include_str!("../migrations/sqlite/0007_ingested_files.sql"),
    ),
    (8, include_str!("../migrations/sqlite/0008_lineage.sql")),
    (
        9,
        include_str!("../migrations/sqlite/0009_catalog_tags.sql"),
    ),
    (10, include_str!("../migrations/sqlite/0010_features.sql")),
    (11, include_str!("../migrations/sqlite/0011_serving.sql")),
    (
        12,
        include_str!("../migrations/sqlite/0012_registry_search.sql"),
    ),
    (
        13,
        include_str!("../migrations/sqlite/0013_exact_metric_values.sql"),
    ),
    (
        14,
        include_str!("../migrations/sqlite/0014_event_outbox.sql"),
    ),
    (
        15,
        include_str!("../migrations/sqlite/0015_table_watch.sql"),
    ),
    (16, include_str!("../migrations/sqlite/0016_jobs.sql")),
    (17, include_str!("../migrations/sqlite/0017_job_runs.sql")),
    (
        18,
        include_str!("../migrations/sqlite/0018_job_repairs_and_triggers.sql"),
    ),
    (
        19,
        include_str!("../migrations/sqlite/0019_task_logs_and_workspace_files.sql"),
    ),
    (
        20,
        include_str!("../migrations/sqlite/0020_for_each_iterations.sql"),
    ),
    (21, include_str!("../migrations/sqlite/0021_monitors.sql")),
    (22, include_str!("../migrations/sqlite/0022_alerts.sql")),
    (
        23,
        include_str!("../migrations/sqlite/0023_refresh_heartbeats.sql"),
    ),
    (
        24,
        include_str!("../migrations/sqlite/0024_server_secrets.sql"),
    ),
    (
        25,
        include_str!("../migrations/sqlite/0025_sql_statements.sql"),
    ),
    (
        26,
        include_str!("../migrations/sqlite/0026_principal_attributes.sql"),
    ),
    (
        27,
        include_str!("../migrations/sqlite/0027_token_workspaces.sql"),
    ),
];
const POSTGRES: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_registry.sql")),
    (
        3,
        include_str!("../migrations/postgres/0003_activities.sql"),
    ),
    (4, include_str!("../migrations/postgres/0004_webhooks.sql")),
    (
        5,
        include_str!("../migrations/postgres/0005_latest_metric_trigger.sql"),
    ),
    (6, include_str!("../migrations/postgres/0006_catalog.sql")),
    (
        7,
        include_str!("../migrations/postgres/0007_ingested_files.sql"),
    ),
    (8, include_str!("../migrations/postgres/0008_lineage.sql")),
    (
        9,
        include_str!("../migrations/postgres/0009_catalog_tags.sql"),
    ),
    (10, include_str!("../migrations/postgres/0010_features.sql")),
    (11, include_str!("../migrations/postgres/0011_serving.sql")),
    (
        12,
        include_str!("../migrations/postgres/0012_event_outbox.sql"),
    ),
    (
        13,
        include_str!("../migrations/postgres/0013_table_watch.sql"),
    ),
    (14, include_str!("../migrations/postgres/0014_jobs.sql")),
    (15, include_str!("../migrations/postgres/0015_job_runs.sql")),
    (
        16,
        include_str!("../migrations/postgres/0016_job_repairs_and_triggers.sql"),
    ),
    (
        17,
        include_str!("../migrations/postgres/0017_task_logs_and_workspace_files.sql"),
    ),
    (
        18,
        include_str!("../migrations/postgres/0018_for_each_iterations.sql"),
    ),
    (19, include_str!("../migrations/postgres/0019_monitors.sql")),
    (20, include_str!("../migrations/postgres/0020_alerts.sql")),
    (
        21,
        include_str!("../migrations/postgres/0021_refresh_heartbeats.sql"),
    ),
    (
        22,
        include_str!("../migrations/postgres/0022_server_secrets.sql"),
    ),
    (
        23,
        include_str!("../migrations/postgres/0023_sql_statements.sql"),
    ),
    (
        24,
        include_str!("../migrations/postgres/0024_principal_attributes.sql"),
    ),
    (
        25,
        include_str!("../migrations/postgres/0025_token_workspaces.sql"),
    ),
    (
        26,
        include_str!("../migrations/postgres/0026_latest_metrics_per_statement.sql"),
    ),
];
const LEDGER: &str = "CREATE TABLE IF NOT EXISTS tarn_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";
/// Arbitrary but fixed key for `pg_advisory_lock`.
const MIGRATION_LOCK_KEY: i64 = 0x7461_726e_6d69;

pub async fn sqlite(pool: &lite::Pool) -> Result<()> {
    lite::query(LEDGER).execute(pool).await.map_err(db_error)?;
    for (version, sql) in SQLITE {
        // Immediate: two processes starting at once take turns instead of both migrating.
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
        let done: Option<i64> =
            lite::query_scalar("SELECT version FROM tarn_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut tx)
                .await
                .map_err(db_error)?;
        if done.is_some() {
            continue;
        }
        tx.execute_batch(sql).map_err(db_error)?;
        lite::query("INSERT INTO tarn_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(tarn_core::ids::now_millis())
            .execute(&mut tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        tracing::info!(version, "applied SQLite migration");
    }
    Ok(())
}

pub async fn postgres(pool: &Pool<Postgres>) -> Result<()> {
    let mut conn = pool.acquire().await.map_err(db_error)?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    let result = async {
        sqlx::query(LEDGER)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        for (version, sql) in POSTGRES {
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM tarn_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(db_error)?;
            if done.is_some() {
                continue;
            }
            let mut tx = sqlx::Connection::begin(&mut *conn)
                .await
                .map_err(db_error)?;
            sqlx::raw_sql(*sql)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            sqlx::query("INSERT INTO tarn_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(tarn_core::ids::now_millis())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            tracing::info!(version, "applied PostgreSQL migration");
        }
        Ok(())
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    result
}
