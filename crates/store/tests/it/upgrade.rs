//! Upgrades: a database made by each earlier schema version, holding data in every area its
//! tables cover, migrates to the current schema with that data intact and usable, on SQLite and
//! on PostgreSQL.
//!
//! For each version k the test applies migrations 1..=k itself (with the ledger rows the store
//! writes), seeds data with plain SQL written against the tables as the migration that made them
//! left them (later migrations only add columns with defaults, so an explicit column list stays
//! valid), lets `tarn_store::open` apply the rest, and reads everything back through `MetaStore`;
//! then it writes through the store next to the old data. k goes up to the latest version too,
//! where `open` applies nothing: that checks the seeds and the reads themselves, so a failure at
//! an earlier k alone is the upgrade's.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use sqlx::Connection as _;
use tarn_core::ErrorCode;
use tarn_core::alerts::{
    Alert, AlertEvaluation, AlertSchedule, AlertSettings, AlertState, Evaluation, EvaluationReason,
    Operand, OperandColumn, OperandValue,
};
use tarn_core::auth::{Grant, ObjectType, PermissionLevel, Principal, PrincipalKind};
use tarn_core::catalog::{
    ColumnInfo, IngestedFile, NewTable, Privilege, PrivilegeAssignment, SchemaInfo, SecurableType,
    TableInfo, TableType, WatchedTable,
};
use tarn_core::entities::{
    Dataset, DatasetInput, Experiment, KeyValue, LifecycleStage, LogBatch, LoggedModelStatus,
    Metric, ModelInput, ModelOutput, RunInfo, RunStatus, ViewType,
};
use tarn_core::events::{Change, EventQuery};
use tarn_core::features::{
    FeatureLookup, FeatureTable, LabelSource, OnDemandFeature, Pipeline, TableVersion, TrainingSet,
    TrainingSetSpec,
};
use tarn_core::files::{ObjectType as FileType, WorkspaceObject};
use tarn_core::jobs::{
    Iteration, Job, LifeCycle, RepairAttempt, RepairKind, ResultState, RunFilter, RunState,
    TaskOutput, TaskRun,
};
use tarn_core::lineage::{Direction, LineageEdge, LineageWrite, NewLineage, Node, SourceRead};
use tarn_core::monitors::{
    Monitor, MonitorSchedule, MonitorSettings, MonitorStatus, Refresh, RefreshEnd, RefreshState,
    RefreshTrigger, RefreshVersions, TimeSeries,
};
use tarn_core::registry::{
    ActivityType, Actor, Alias, ModelVersion, NewModelVersion, RequestOutcome, Stage, VersionStatus,
};
use tarn_core::search::{Comparator, Comparison, Entity, Value};
use tarn_core::serving::{EndpointConfig, ServedEntity, ServingEndpoint};
use tarn_core::store::{
    Delivery, DeliveryQuery, MetaStore, NewToken, PrincipalRecord, SearchRegistry, SearchRuns,
    StatementRecord, TokenInfo,
};
use tarn_core::webhooks::{Flavor, Webhook, WebhookStatus};

use crate::conformance::{kv, metric};

type Store = Arc<dyn MetaStore>;

/// The migration ledger, as `migrate.rs` makes it.
const LEDGER: &str = "CREATE TABLE IF NOT EXISTS tarn_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";
const LEDGER_ROW: &str = "INSERT INTO tarn_migrations (version, applied_at) VALUES ($1, $2)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_databases_of_every_earlier_version_upgrade() {
    every_version(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_databases_of_every_earlier_version_upgrade() {
    every_version(Dialect::Postgres).await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn folder(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Databases made at the same time: the work is mostly waiting for commits to reach the disk.
const AT_ONCE: usize = 4;

/// Every version, a few at a time, each run to its end even when another failed, so a report
/// names all the versions that do not upgrade.
async fn every_version(dialect: Dialect) {
    let migrations = Arc::new(migrations(dialect));
    let versions = Arc::new(Versions::of(&migrations));
    let at_once = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    let upgrades: Vec<_> = (1..=versions.latest)
        .map(|k| {
            let (migrations, versions, at_once) =
                (migrations.clone(), versions.clone(), at_once.clone());
            let upgrade = tokio::spawn(async move {
                let _turn = at_once.acquire_owned().await.expect("a turn");
                upgrade_from(dialect, k, migrations, versions).await;
            });
            (k, upgrade)
        })
        .collect();
    let mut failed = Vec::new();
    for (k, upgrade) in upgrades {
        if let Err(err) = upgrade.await {
            let message = match err.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
                Err(err) => err.to_string(),
            };
            failed.push(format!("version {k}: {message}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{dialect:?} databases that do not upgrade:\n{}",
        failed.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Migrations and the versions that made each area

struct Migration {
    version: i64,
    name: String,
    sql: String,
}

/// The dialect's migration files, in order; numbered 1.. without gaps.
fn migrations(dialect: Dialect) -> Vec<Migration> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect.folder());
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&folder).expect("the migrations folder") {
        let path = entry.expect("a migration file").path();
        let file = path
            .file_name()
            .and_then(|name| name.to_str())
            .expect("a UTF-8 file name")
            .to_string();
        let Some(stem) = file.strip_suffix(".sql") else {
            continue;
        };
        let (number, name) = stem.split_once('_').expect("NNNN_name.sql");
        found.push(Migration {
            version: number.parse().expect("a numbered migration"),
            name: name.to_string(),
            sql: std::fs::read_to_string(&path).expect("a readable migration"),
        });
    }
    found.sort_by_key(|migration| migration.version);
    for (i, migration) in found.iter().enumerate() {
        assert_eq!(
            migration.version,
            i as i64 + 1,
            "{dialect:?} migrations are numbered 1.. without gaps"
        );
    }
    found
}

/// Every migration this test knows what to seed for. A new one must be added here, with seeds
/// for the tables it makes (or a note that it makes none), so that upgrades to it are tested.
const KNOWN_MIGRATIONS: &[&str] = &[
    "init",
    "registry",
    "activities",
    "webhooks",
    "latest_metric_trigger",
    "catalog",
    "ingested_files",
    "lineage",
    "catalog_tags",
    "features",
    "serving",
    // SQLite only: rebuilds model_version_tags (seeded with the registry).
    "registry_search",
    // SQLite only: rebuilds metrics and latest_metrics (seeded at init).
    "exact_metric_values",
    "event_outbox",
    "table_watch",
    "jobs",
    "job_runs",
    "job_repairs_and_triggers",
    "task_logs_and_workspace_files",
    "for_each_iterations",
    "monitors",
    "alerts",
    "refresh_heartbeats",
    "server_secrets",
    "sql_statements",
    "principal_attributes",
    // Adds a column to tokens (seeded at init): old tokens reach every workspace.
    "token_workspaces",
    // PostgreSQL only: latest_metrics kept per statement (metrics are seeded at init).
    "latest_metrics_per_statement",
];

/// The version at which one dialect made (or changed) each area's tables.
#[derive(Debug)]
struct Versions {
    latest: i64,
    registry: i64,
    activities: i64,
    webhooks: i64,
    latest_metric_trigger: i64,
    catalog: i64,
    ingested_files: i64,
    lineage: i64,
    catalog_tags: i64,
    features: i64,
    serving: i64,
    /// SQLite only: since when metric values keep the sign of zero.
    exact_metric_values: Option<i64>,
    event_outbox: i64,
    table_watch: i64,
    jobs: i64,
    job_runs: i64,
    job_repairs: i64,
    task_logs: i64,
    for_each: i64,
    monitors: i64,
    alerts: i64,
    heartbeats: i64,
    server_secrets: i64,
    sql_statements: i64,
    principal_attributes: i64,
}

impl Versions {
    fn of(migrations: &[Migration]) -> Self {
        for migration in migrations {
            assert!(
                KNOWN_MIGRATIONS.contains(&migration.name.as_str()),
                "migration {:04}_{}.sql is new to the upgrade test: add seeds for its tables to \
                 tests/it/upgrade.rs",
                migration.version,
                migration.name
            );
        }
        let find = |name: &str| {
            migrations
                .iter()
                .find(|migration| migration.name == name)
                .map(|migration| migration.version)
        };
        let version = |name: &str| find(name).unwrap_or_else(|| panic!("no migration {name}"));
        Self {
            latest: migrations.len() as i64,
            registry: version("registry"),
            activities: version("activities"),
            webhooks: version("webhooks"),
            latest_metric_trigger: version("latest_metric_trigger"),
            catalog: version("catalog"),
            ingested_files: version("ingested_files"),
            lineage: version("lineage"),
            catalog_tags: version("catalog_tags"),
            features: version("features"),
            serving: version("serving"),
            exact_metric_values: find("exact_metric_values"),
            event_outbox: version("event_outbox"),
            table_watch: version("table_watch"),
            jobs: version("jobs"),
            job_runs: version("job_runs"),
            job_repairs: version("job_repairs_and_triggers"),
            task_logs: version("task_logs_and_workspace_files"),
            for_each: version("for_each_iterations"),
            monitors: version("monitors"),
            alerts: version("alerts"),
            heartbeats: version("refresh_heartbeats"),
            server_secrets: version("server_secrets"),
            sql_statements: version("sql_statements"),
            principal_attributes: version("principal_attributes"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Databases at version k

async fn upgrade_from(
    dialect: Dialect,
    k: i64,
    migrations: Arc<Vec<Migration>>,
    versions: Arc<Versions>,
) {
    let label = format!("{dialect:?} database at version {k}");
    let seeds = seeds(&versions, k);
    let applied = &migrations[..k as usize];
    match dialect {
        Dialect::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("tarn.db");
            let ledger = sqlite_at(&path, applied, &seeds, &label);
            let store = tarn_store::open(&format!("sqlite://{}", path.display()))
                .await
                .unwrap_or_else(|err| panic!("{label}: open: {}", err.message));
            let context = Context {
                store,
                dialect,
                k,
                v: versions.clone(),
                label: label.clone(),
            };
            check(&context).await;
            check_ledger(&label, &ledger, &sqlite_ledger(&path), versions.latest);
        }
        Dialect::Postgres => {
            let (url, database) = postgres_database(k).await;
            let ledger = postgres_at(&url, applied, &seeds, &label).await;
            let store = tarn_store::open(&url)
                .await
                .unwrap_or_else(|err| panic!("{label}: open: {}", err.message));
            let context = Context {
                store,
                dialect,
                k,
                v: versions.clone(),
                label: label.clone(),
            };
            check(&context).await;
            let mut connection = sqlx::PgConnection::connect(&url).await.expect("connect");
            let after: Vec<(i64, i64)> =
                sqlx::query_as("SELECT version, applied_at FROM tarn_migrations ORDER BY version")
                    .fetch_all(&mut connection)
                    .await
                    .expect("the ledger");
            connection.close().await.expect("close");
            check_ledger(&label, &ledger, &after, versions.latest);
            drop(context);
            database.drop_now().await;
        }
    }
}

/// A SQLite database as a release at the version of the last of `applied` left it, with the
/// seeds; returns its ledger.
fn sqlite_at(path: &Path, applied: &[Migration], seeds: &[Stmt], label: &str) -> Vec<(i64, i64)> {
    let mut connection = rusqlite::Connection::open(path).expect("create the database");
    // As the store opens it (lite::Options): a WAL database, foreign keys enforced.
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .expect("WAL");
    connection
        .pragma_update(None, "foreign_keys", "ON")
        .expect("foreign keys");
    connection.execute_batch(LEDGER).expect("the ledger");
    let mut ledger = Vec::new();
    for migration in applied {
        let tx = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .expect("begin");
        tx.execute_batch(&migration.sql)
            .unwrap_or_else(|err| panic!("{label}: migration {} fails: {err}", migration.version));
        let applied_at = tarn_core::ids::now_millis();
        tx.execute(LEDGER_ROW, (migration.version, applied_at))
            .expect("ledger row");
        tx.commit().expect("commit");
        ledger.push((migration.version, applied_at));
    }
    let tx = connection.transaction().expect("begin");
    for stmt in seeds {
        let values = stmt.args.iter().map(Arg::sqlite);
        tx.execute(stmt.sql, rusqlite::params_from_iter(values))
            .unwrap_or_else(|err| panic!("{label}: seed {:?} fails: {err}", stmt.sql));
    }
    tx.commit().expect("commit the seeds");
    ledger
}

fn sqlite_ledger(path: &Path) -> Vec<(i64, i64)> {
    let connection = rusqlite::Connection::open(path).expect("open");
    let mut statement = connection
        .prepare("SELECT version, applied_at FROM tarn_migrations ORDER BY version")
        .expect("prepare");
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("the ledger")
        .collect::<rusqlite::Result<_>>()
        .expect("ledger rows")
}

/// A fresh PostgreSQL database.
async fn postgres_database(k: i64) -> (String, TestDatabase) {
    let admin_url = std::env::var("TARN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let name = format!("tarn_upgrade_{k}_{}", tarn_core::ids::hex32(rand::random()));
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("PostgreSQL must be reachable for the upgrade test (set TARN_TEST_POSTGRES_URL)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create database");
    admin.close().await.expect("close");
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("database URL with a database name");
    let url = format!("{base}/{name}");
    let database = TestDatabase {
        admin_url,
        name,
        dropped: false,
    };
    (url, database)
}

/// A test database, dropped once its check is done, or (best effort: a leftover one is
/// harmless) when the check fails, as `Backend` does.
struct TestDatabase {
    admin_url: String,
    name: String,
    dropped: bool,
}

async fn drop_database(admin_url: &str, name: &str) {
    if let Ok(mut admin) = sqlx::PgConnection::connect(admin_url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
        let _ = admin.close().await;
    }
}

impl TestDatabase {
    async fn drop_now(mut self) {
        drop_database(&self.admin_url, &self.name).await;
        self.dropped = true;
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(drop_database(&admin_url, &name));
        })
        .join();
    }
}

/// The PostgreSQL database at `url` as a release at the version of the last of `applied` left
/// it, with the seeds; returns its ledger.
async fn postgres_at(
    url: &str,
    applied: &[Migration],
    seeds: &[Stmt],
    label: &str,
) -> Vec<(i64, i64)> {
    let mut connection = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::raw_sql(LEDGER)
        .execute(&mut connection)
        .await
        .expect("the ledger");
    let mut ledger = Vec::new();
    for migration in applied {
        let mut tx = connection.begin().await.expect("begin");
        sqlx::raw_sql(sqlx::AssertSqlSafe(migration.sql.clone()))
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|err| panic!("{label}: migration {} fails: {err}", migration.version));
        let applied_at = tarn_core::ids::now_millis();
        sqlx::query(LEDGER_ROW)
            .bind(migration.version)
            .bind(applied_at)
            .execute(&mut *tx)
            .await
            .expect("ledger row");
        tx.commit().await.expect("commit");
        ledger.push((migration.version, applied_at));
    }
    let mut tx = connection.begin().await.expect("begin");
    for stmt in seeds {
        let mut query = sqlx::query::<sqlx::Postgres>(stmt.sql);
        for arg in &stmt.args {
            query = match arg.clone() {
                Arg::Int(value) => query.bind(value),
                Arg::Real(value) => query.bind(value),
                Arg::Text(value) => query.bind(value),
                Arg::Bool(value) => query.bind(value),
                Arg::Bytes(value) => query.bind(value),
            };
        }
        query
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|err| panic!("{label}: seed {:?} fails: {err}", stmt.sql));
    }
    tx.commit().await.expect("commit the seeds");
    connection.close().await.expect("close");
    ledger
}

/// The ledger holds every version once; those the old release applied keep their rows.
fn check_ledger(label: &str, before: &[(i64, i64)], after: &[(i64, i64)], latest: i64) {
    assert_eq!(
        after
            .iter()
            .map(|(version, _)| *version)
            .collect::<Vec<_>>(),
        (1..=latest).collect::<Vec<_>>(),
        "{label}: the ledger after the upgrade"
    );
    assert_eq!(
        &after[..before.len()],
        before,
        "{label}: the versions applied before keep their ledger rows"
    );
}

// ---------------------------------------------------------------------------------------------
// Seeds

/// A bound value of a seed statement, typed (PostgreSQL wants a NULL's type).
#[derive(Debug, Clone)]
enum Arg {
    Int(Option<i64>),
    Real(f64),
    Text(Option<String>),
    Bool(bool),
    Bytes(Option<Vec<u8>>),
}

impl Arg {
    fn sqlite(&self) -> rusqlite::types::Value {
        use rusqlite::types::Value as V;
        match self.clone() {
            Self::Int(value) => value.map_or(V::Null, V::Integer),
            Self::Real(value) => V::Real(value),
            Self::Text(value) => value.map_or(V::Null, V::Text),
            Self::Bool(value) => V::Integer(value.into()),
            Self::Bytes(value) => value.map_or(V::Null, V::Blob),
        }
    }
}

fn int(value: i64) -> Arg {
    Arg::Int(Some(value))
}

fn opt_int(value: Option<i64>) -> Arg {
    Arg::Int(value)
}

fn text(value: &str) -> Arg {
    Arg::Text(Some(value.to_string()))
}

fn opt_text(value: Option<&str>) -> Arg {
    Arg::Text(value.map(str::to_string))
}

fn json_text<T: serde::Serialize>(value: &T) -> Arg {
    Arg::Text(Some(serde_json::to_string(value).expect("JSON")))
}

fn blob(value: Option<&[u8]>) -> Arg {
    Arg::Bytes(value.map(<[u8]>::to_vec))
}

/// One seed statement: `$1`, `$2`, ... in order of first use (SQLite numbers `$N` parameters
/// by first appearance).
struct Stmt {
    sql: &'static str,
    args: Vec<Arg>,
}

#[derive(Default)]
struct Seeds(Vec<Stmt>);

impl Seeds {
    fn add(&mut self, sql: &'static str, args: Vec<Arg>) {
        let mut seen = Vec::new();
        let mut rest = sql;
        while let Some(at) = rest.find('$') {
            rest = &rest[at + 1..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let number: usize = digits.parse().expect("a $N parameter");
            if !seen.contains(&number) {
                seen.push(number);
            }
        }
        assert_eq!(
            seen,
            (1..=args.len()).collect::<Vec<_>>(),
            "parameters of {sql:?}"
        );
        self.0.push(Stmt { sql, args });
    }
}

const WS: &str = "legacy";
const READER: &str = "reader";
const T0: i64 = 1_700_000_000_123;
/// 2^53 + 1: no double holds it, so a detour through floating point (or JSON numbers read as
/// doubles) shows.
const HUGE: i64 = 9_007_199_254_740_993;
const TRICKY: &str = "quote ' double \" backslash \\ tab \t new\nline ünïcödé 🚀 %_";
const ALICE: &str = "ålice";
const BOT: &str = "🤖-bot";
const TEAM: &str = "data-team";
const OPS: &str = "ops-admin";
const PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
const EXPERIMENT: &str = "Churn — ünïcode 🚀";
const EXPERIMENT_LOCATION: &str = "s3://bucket/ëxp/1";
const RUN: &str = "0123456789abcdef0123456789abcdef";
const DELETED_RUN: &str = "fedcba9876543210fedcba9876543210";
const LOGGED_MODEL: &str = "m-0123456789abcdef0123456789abcdef";
const MODEL: &str = "Fraud 🕵️";
const MODEL_ID: &str = "0f0e0d0c0b0a09080706050403020100";
const WEBHOOK_ID: &str = "wh-0001";
const SCHEMA_ID: &str = "sch-0001";
const TABLE_ID: &str = "tbl-0001";
const VIEW_ID: &str = "tbl-0002";
const TABLE: &str = "legacy.sales.orders";
const TABLE_LOCATION: &str = "file:///lake/legacy/sales/orders ü";
const INGESTED: &str = "s3://in/2024/01/part 0001 ü.csv";
const TRAINING_SET: &str = "ts-0001";
const ENDPOINT_ID: &str = "ep-0001";
const ENDPOINT: &str = "fraud-ep";
const JOB_NAME: &str = "nightly ✓";
const IDEMPOTENCY: &str = "idem-ü";
const LEASE: &str = "job-runner";
const ALERT_ID: &str = "al-0001";
const SECRET_NAME: &str = "signing-key";
const SECRET: &str = "söcret ✓";
const STATEMENT_ID: &str = "st-0001";
const LOG_PIECES: [&[u8]; 2] = [b"hello\n", &[0xff, 0x00, 0xfe, b'\n', 0xc3, 0xbc]];
const SCRIPT: &[u8] = "print('ü')\n".as_bytes();
const NOTEBOOK: &[u8] = &[0x23, 0x20, 0xff, 0x00, 0x0a];

/// Whether a database made at `k` keeps the sign of zero in metric values (SQLite's REAL
/// columns did not until exact_metric_values; that loss happened before any upgrade).
fn keeps_sign(v: &Versions, k: i64) -> bool {
    v.exact_metric_values.is_none_or(|exact| k >= exact)
}

/// The points logged to RUN: values only a double holds exactly, NaN (kept as a flag), the
/// extremes, and one point of a logged model with its dataset.
fn run_points(v: &Versions, k: i64) -> Vec<Metric> {
    let mut acc = metric("acc", -2.5, T0, 3);
    acc.model_id = Some(LOGGED_MODEL.into());
    acc.dataset_name = Some("ds ✓".into());
    acc.dataset_digest = Some("abc123".into());
    let mut points = vec![
        metric("loss", 0.1, T0, 0),
        metric("loss", f64::NAN, T0, 1),
        metric("loss", 0.1 + 0.2, T0 + 1, 1),
        metric("big", f64::MAX, HUGE, HUGE),
        metric("tiny", 5e-324, T0, 0),
        metric("epochs", 3.0, T0, 0),
        acc,
    ];
    if keeps_sign(v, k) {
        points.push(metric("signed_zero", -0.0, T0, 0));
    }
    points
}

/// The latest point of each key, as the store keeps it (MLflow's rule: highest step, then
/// timestamp, then value with NaN above numbers), without the point's model and dataset.
fn latest(points: &[Metric]) -> Vec<Metric> {
    let mut latest: BTreeMap<String, Metric> = BTreeMap::new();
    for p in points {
        let newer = match latest.get(&p.key) {
            None => true,
            Some(l) => {
                (p.step, p.timestamp) > (l.step, l.timestamp)
                    || ((p.step, p.timestamp) == (l.step, l.timestamp)
                        && ((p.value.is_nan() && !l.value.is_nan())
                            || (p.value.is_nan() == l.value.is_nan() && p.value > l.value)))
            }
        };
        if newer {
            latest.insert(p.key.clone(), metric(&p.key, p.value, p.timestamp, p.step));
        }
    }
    latest.into_values().collect()
}

/// A metric compared bit for bit (NaN as such), in a fixed order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Exact {
    key: String,
    bits: Option<u64>,
    timestamp: i64,
    step: i64,
    model_id: Option<String>,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
    run_id: Option<String>,
}

fn exact(metrics: &[Metric]) -> Vec<Exact> {
    let mut exact: Vec<Exact> = metrics
        .iter()
        .map(|m| Exact {
            key: m.key.clone(),
            bits: (!m.value.is_nan()).then(|| m.value.to_bits()),
            timestamp: m.timestamp,
            step: m.step,
            model_id: m.model_id.clone(),
            dataset_name: m.dataset_name.clone(),
            dataset_digest: m.dataset_digest.clone(),
            run_id: m.run_id.clone(),
        })
        .collect();
    exact.sort();
    exact
}

fn run_inputs() -> Vec<DatasetInput> {
    vec![DatasetInput {
        tags: vec![kv("mlflow.data.context", "training ✓")],
        dataset: Dataset {
            name: "train ✓".into(),
            digest: "d1g3st".into(),
            source_type: "local".into(),
            source: "/data/träin.csv".into(),
            schema: Some(r#"{"mlflow_colspec": [{"type": "double", "name": "spend"}]}"#.into()),
            profile: None,
        },
    }]
}

/// The registry's events: the first delivered before the release at k stopped, the others
/// waiting for the webhooks.
fn seeded_events() -> Vec<(i64, Change)> {
    vec![
        (
            T0 + 66,
            Change::ModelCreated {
                name: MODEL.into(),
                tags: BTreeMap::from([("team".to_string(), "risk ✓".to_string())]),
                description: "détecteur".into(),
            },
        ),
        (
            T0 + 67,
            Change::VersionCreated {
                name: MODEL.into(),
                version: 1,
                source: format!("models:/{LOGGED_MODEL}"),
                run_id: Some(RUN.into()),
                model_id: Some(LOGGED_MODEL.into()),
                tags: BTreeMap::new(),
                description: "prêt".into(),
            },
        ),
        (
            T0 + 68,
            Change::VersionTagSet {
                name: MODEL.into(),
                version: 1,
                key: "validated".into(),
                value: "yes ✓".into(),
            },
        ),
    ]
}

fn table_columns() -> Vec<ColumnInfo> {
    vec![
        ColumnInfo {
            name: "customer_id".into(),
            type_name: "LONG".into(),
            type_text: "bigint".into(),
            type_json: r#"{"name":"customer_id","type":"long","nullable":false,"metadata":{}}"#
                .into(),
            position: 0,
            nullable: false,
            comment: "clé ✓".into(),
            partition_index: None,
        },
        ColumnInfo {
            name: "ts".into(),
            type_name: "TIMESTAMP".into(),
            type_text: "timestamp".into(),
            type_json: r#"{"name":"ts","type":"timestamp","nullable":true,"metadata":{}}"#.into(),
            position: 1,
            nullable: true,
            comment: String::new(),
            partition_index: Some(0),
        },
        ColumnInfo {
            name: "spend".into(),
            type_name: "DOUBLE".into(),
            type_text: "double".into(),
            type_json: r#"{"name":"spend","type":"double","nullable":true,"metadata":{}}"#.into(),
            position: 2,
            nullable: true,
            comment: TRICKY.into(),
            partition_index: None,
        },
    ]
}

fn schema_properties() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("owner.team".to_string(), "ßales".to_string()),
        ("tricky".to_string(), TRICKY.to_string()),
    ])
}

fn table_properties() -> BTreeMap<String, String> {
    BTreeMap::from([("delta.appendOnly".to_string(), "true".to_string())])
}

const VIEW_DEFINITION: &str = "SELECT customer_id FROM legacy.sales.orders WHERE note = 'ü'";

fn pipeline() -> Pipeline {
    Pipeline {
        job: Some("job ✓".into()),
        run_id: Some(RUN.into()),
        commit: Some("abc123".into()),
    }
}

fn training_spec() -> TrainingSetSpec {
    TrainingSetSpec {
        label: LabelSource {
            table: Some("legacy.sales.labels".into()),
            version: Some(3),
            ..LabelSource::default()
        },
        feature_lookups: vec![FeatureLookup {
            table_name: TABLE.into(),
            lookup_key: vec!["customer_id".into()],
            feature_names: Some(vec!["spend".into()]),
            default_values: BTreeMap::from([("spend".to_string(), json!(0.1))]),
            version: Some(5),
            ..FeatureLookup::default()
        }],
        on_demand_features: vec![OnDemandFeature {
            name: "double spend".into(),
            expression: "spend * 2".into(),
        }],
        exclude_columns: vec!["ts".into()],
    }
}

fn training_tables() -> Vec<TableVersion> {
    vec![
        TableVersion {
            name: TABLE.into(),
            version: 5,
        },
        TableVersion {
            name: "legacy.sales.labels".into(),
            version: 3,
        },
    ]
}

fn training_output() -> TableVersion {
    TableVersion {
        name: "legacy.sales.training ü".into(),
        version: u64::try_from(HUGE).expect("positive"),
    }
}

fn endpoint_config(version: &str) -> EndpointConfig {
    EndpointConfig {
        served_entities: vec![ServedEntity {
            entity_name: "fraud".into(),
            entity_version: Some(version.into()),
            ..ServedEntity::default()
        }],
        ..EndpointConfig::default()
    }
    .normalized(WS, ENDPOINT)
    .expect("a valid config")
}

fn job_settings() -> serde_json::Value {
    json!({
        "name": JOB_NAME,
        "tasks": [{"task_key": "ingest", "notebook_task": {"notebook_path": "/Users/ålice/nb"}}],
        "max_concurrent_runs": 1,
        "timeout_seconds": HUGE,
        "tags": {"ratio": 0.1, "tricky": TRICKY},
    })
}

fn job_parameters() -> serde_json::Value {
    json!([{"name": "env", "value": "prød"}])
}

fn task_values() -> serde_json::Value {
    json!({"rows": HUGE, "ratio": 0.1})
}

fn task_output() -> TaskOutput {
    TaskOutput {
        result: Some("42 ✓".into()),
        error: None,
        error_trace: None,
    }
}

fn repair_history() -> Vec<RepairAttempt> {
    vec![
        RepairAttempt {
            kind: RepairKind::Original,
            id: 777,
            start_time: T0 + 171,
            end_time: T0 + 172,
            life_cycle_state: Some("TERMINATED".into()),
            result_state: Some("FAILED".into()),
            task_run_ids: vec![778],
        },
        RepairAttempt {
            kind: RepairKind::Repair,
            id: 779,
            start_time: T0 + 175,
            end_time: 0,
            life_cycle_state: None,
            result_state: None,
            task_run_ids: vec![780, HUGE],
        },
    ]
}

fn trigger_state() -> serde_json::Value {
    json!({"cron": {"last_fired": HUGE}, "ratio": 0.1, "ü": TRICKY})
}

fn monitor_settings() -> MonitorSettings {
    MonitorSettings {
        output_schema_name: Some("legacy.monitoring".into()),
        time_series: Some(TimeSeries {
            timestamp_col: "ts".into(),
            granularities: vec!["1 day".into(), "1 week".into()],
        }),
        slicing_exprs: vec!["spend > 0.1".into(), TRICKY.into()],
        schedule: Some(MonitorSchedule {
            quartz_cron_expression: "0 0 * * * ?".into(),
            timezone_id: "Europe/Zürich".into(),
            pause_status: None,
        }),
        notifications: Some(json!({"on_failure": {"email_addresses": ["ålice@example.com"]}})),
        ..MonitorSettings::default()
    }
}

fn alert_settings() -> AlertSettings {
    AlertSettings {
        display_name: "psi ✓".into(),
        query_text: "SELECT psi FROM legacy.monitoring.orders_drift_metrics WHERE note = 'ü'"
            .into(),
        warehouse_id: "wh-ü".into(),
        evaluation: AlertEvaluation {
            source: OperandColumn {
                name: "psi".into(),
                aggregation: Some("MAX".into()),
                display: None,
            },
            comparison_operator: "GREATER_THAN".into(),
            threshold: Some(Operand {
                column: None,
                value: Some(OperandValue {
                    double_value: Some(0.1 + 0.2),
                    ..OperandValue::default()
                }),
            }),
            empty_result_state: Some(AlertState::Unknown),
            ..AlertEvaluation::default()
        },
        schedule: Some(AlertSchedule {
            quartz_cron_schedule: "0 0 * * * ?".into(),
            timezone_id: "UTC".into(),
            pause_status: None,
        }),
        custom_summary: Some(TRICKY.into()),
        ..AlertSettings::default()
    }
}

fn statement_outcome() -> serde_json::Value {
    json!({"rows": HUGE, "ratio": 0.1, "columns": ["ü"]})
}

fn principal_attributes() -> serde_json::Value {
    json!({
        "displayName": "Ålice Ünïcode",
        "emails": [{"value": "ålice@example.com", "primary": true}],
        "externalId": TRICKY,
    })
}

/// What a release at version k holds: every area whose tables exist at k, written against
/// those tables as the migration that made them left them.
fn seeds(v: &Versions, k: i64) -> Vec<Stmt> {
    let mut s = Seeds::default();

    // 0001: workspaces, principals, tracking.
    s.add(
        "INSERT INTO workspaces (name, created_at, next_experiment_id) VALUES ($1, $2, $3)",
        vec![text(WS), int(T0), int(2)],
    );
    for (name, kind, is_admin, active, hash, created_at) in [
        (ALICE, "user", false, true, Some(PASSWORD_HASH), T0 + 1),
        (BOT, "service_principal", false, true, None, T0 + 2),
        (TEAM, "group", false, true, None, T0 + 3),
        (OPS, "user", true, false, None, HUGE),
    ] {
        s.add(
            "INSERT INTO principals (name, kind, is_admin, active, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            vec![
                text(name),
                text(kind),
                Arg::Bool(is_admin),
                Arg::Bool(active),
                opt_text(hash),
                int(created_at),
            ],
        );
    }
    s.add(
        "INSERT INTO group_members (group_id, member_id) VALUES \
         ((SELECT id FROM principals WHERE name = $1), (SELECT id FROM principals WHERE name = $2))",
        vec![text(TEAM), text(ALICE)],
    );
    for (token_id, owner, hash, comment, created_at, expires_at, revoked_at) in [
        ("tok-1", ALICE, "hash-1", TRICKY, T0 + 4, Some(HUGE), None),
        (
            "tok-2",
            BOT,
            "hash-2",
            "revoked",
            T0 + 5,
            None,
            Some(T0 + 6),
        ),
        ("tok-3", BOT, "hash-3", "bot ✓", T0 + 7, None, None),
    ] {
        s.add(
            "INSERT INTO tokens (token_id, principal_id, token_hash, comment, created_at, \
             expires_at, revoked_at) VALUES ($1, (SELECT id FROM principals WHERE name = $2), \
             $3, $4, $5, $6, $7)",
            vec![
                text(token_id),
                text(owner),
                text(hash),
                text(comment),
                int(created_at),
                opt_int(expires_at),
                opt_int(revoked_at),
            ],
        );
    }
    for member in [ALICE, TEAM] {
        s.add(
            "INSERT INTO workspace_members (workspace, principal_id) VALUES \
             ($1, (SELECT id FROM principals WHERE name = $2))",
            vec![text(WS), text(member)],
        );
    }
    for (object_type, object_id, principal, level) in [
        ("experiment", "1", ALICE, "CAN_MANAGE"),
        ("experiment", "1", TEAM, "CAN_READ"),
    ] {
        s.add(
            "INSERT INTO acl (workspace, object_type, object_id, principal_id, level) VALUES \
             ($1, $2, $3, (SELECT id FROM principals WHERE name = $4), $5)",
            vec![
                text(WS),
                text(object_type),
                text(object_id),
                text(principal),
                text(level),
            ],
        );
    }
    s.add(
        "INSERT INTO experiments (workspace, experiment_id, name, artifact_location, \
         lifecycle_stage, creation_time, last_update_time, owner_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        vec![
            text(WS),
            int(0),
            text("Default"),
            text("mlflow-artifacts:/0"),
            text("active"),
            int(T0),
            int(T0),
            Arg::Int(None),
        ],
    );
    s.add(
        "INSERT INTO experiments (workspace, experiment_id, name, artifact_location, \
         lifecycle_stage, creation_time, last_update_time, owner_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, (SELECT id FROM principals WHERE name = $8))",
        vec![
            text(WS),
            int(1),
            text(EXPERIMENT),
            text(EXPERIMENT_LOCATION),
            text("active"),
            int(T0 + 10),
            int(T0 + 11),
            text(ALICE),
        ],
    );
    for (key, value) in [("team", TRICKY), ("mlflow.note.content", "ünï")] {
        s.add(
            "INSERT INTO experiment_tags (workspace, experiment_id, key, value) \
             VALUES ($1, $2, $3, $4)",
            vec![text(WS), int(1), text(key), text(value)],
        );
    }
    for (run, name, user, status, start, end, stage, deleted) in [
        (
            RUN,
            "rün ✓",
            ALICE,
            "FINISHED",
            T0 + 20,
            Some(T0 + 30),
            "active",
            None,
        ),
        (
            DELETED_RUN,
            "gone",
            BOT,
            "KILLED",
            T0 + 21,
            None,
            "deleted",
            Some(T0 + 40),
        ),
    ] {
        s.add(
            "INSERT INTO runs (run_uuid, workspace, experiment_id, name, user_id, status, \
             start_time, end_time, lifecycle_stage, artifact_uri, deleted_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            vec![
                text(run),
                text(WS),
                int(1),
                text(name),
                text(user),
                text(status),
                int(start),
                opt_int(end),
                text(stage),
                text(&format!("{EXPERIMENT_LOCATION}/{run}/artifacts")),
                opt_int(deleted),
            ],
        );
    }
    let points = run_points(v, k);
    for p in &points {
        s.add(
            "INSERT INTO metrics (run_uuid, key, value, is_nan, timestamp, step, model_id, \
             dataset_name, dataset_digest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            vec![
                text(RUN),
                text(&p.key),
                Arg::Real(if p.value.is_nan() { 0.0 } else { p.value }),
                Arg::Bool(p.value.is_nan()),
                int(p.timestamp),
                int(p.step),
                opt_text(p.model_id.as_deref()),
                opt_text(p.dataset_name.as_deref()),
                opt_text(p.dataset_digest.as_deref()),
            ],
        );
    }
    if k < v.latest_metric_trigger {
        // Before the trigger the release wrote the latest points itself.
        for p in latest(&points) {
            s.add(
                "INSERT INTO latest_metrics (run_uuid, key, value, is_nan, timestamp, step) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                vec![
                    text(RUN),
                    text(&p.key),
                    Arg::Real(if p.value.is_nan() { 0.0 } else { p.value }),
                    Arg::Bool(p.value.is_nan()),
                    int(p.timestamp),
                    int(p.step),
                ],
            );
        }
    }
    for (run, key, value) in [
        (RUN, "lr", "0.1"),
        (RUN, "tricky", TRICKY),
        (DELETED_RUN, "lr", "0.2"),
    ] {
        s.add(
            "INSERT INTO params (run_uuid, key, value) VALUES ($1, $2, $3)",
            vec![text(run), text(key), text(value)],
        );
    }
    for (key, value) in [("mlflow.user", ALICE), ("note", TRICKY)] {
        s.add(
            "INSERT INTO tags (run_uuid, key, value) VALUES ($1, $2, $3)",
            vec![text(RUN), text(key), text(value)],
        );
    }
    for input in run_inputs() {
        s.add(
            "INSERT INTO run_inputs (run_uuid, name, digest, source_type, source, schema, \
             profile, context, tags_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            vec![
                text(RUN),
                text(&input.dataset.name),
                text(&input.dataset.digest),
                text(&input.dataset.source_type),
                text(&input.dataset.source),
                opt_text(input.dataset.schema.as_deref()),
                opt_text(input.dataset.profile.as_deref()),
                text("training ✓"),
                json_text(&input.tags),
            ],
        );
    }
    s.add(
        "INSERT INTO run_model_inputs (run_uuid, model_id) VALUES ($1, $2)",
        vec![text(RUN), text("m-input")],
    );
    s.add(
        "INSERT INTO run_model_outputs (run_uuid, model_id, step) VALUES ($1, $2, $3)",
        vec![text(RUN), text(LOGGED_MODEL), int(7)],
    );
    s.add(
        "INSERT INTO logged_models (model_id, workspace, experiment_id, name, artifact_location, \
         creation_timestamp_ms, last_updated_timestamp_ms, status, lifecycle_stage, model_type, \
         source_run_id, status_message, creator_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
         $10, $11, $12, (SELECT CAST(id AS TEXT) FROM principals WHERE name = $13))",
        vec![
            text(LOGGED_MODEL),
            text(WS),
            int(1),
            text("modèle ✨"),
            text(&format!(
                "{EXPERIMENT_LOCATION}/models/{LOGGED_MODEL}/artifacts"
            )),
            int(T0 + 50),
            int(T0 + 51),
            text("LOGGED_MODEL_READY"),
            text("active"),
            text("agent"),
            text(RUN),
            Arg::Text(None),
            text(ALICE),
        ],
    );
    s.add(
        "INSERT INTO logged_model_tags (model_id, key, value) VALUES ($1, $2, $3)",
        vec![text(LOGGED_MODEL), text("k"), text(TRICKY)],
    );
    s.add(
        "INSERT INTO logged_model_params (model_id, key, value) VALUES ($1, $2, $3)",
        vec![text(LOGGED_MODEL), text("depth"), text("12")],
    );

    if k >= v.registry {
        s.add(
            "INSERT INTO registered_models (id, workspace, name, description, owner_id, user_id, \
             creation_timestamp, last_updated_timestamp, next_version) VALUES ($1, $2, $3, $4, \
             (SELECT id FROM principals WHERE name = $5), $6, $7, $8, $9)",
            vec![
                text(MODEL_ID),
                text(WS),
                text(MODEL),
                text("détecteur"),
                text(ALICE),
                text(ALICE),
                int(T0 + 60),
                int(T0 + 61),
                // Version 3 was deleted: its number is never used again.
                int(4),
            ],
        );
        for (key, value) in [("team", "risk ✓"), ("tricky", TRICKY)] {
            s.add(
                "INSERT INTO registered_model_tags (model_id, key, value) VALUES ($1, $2, $3)",
                vec![text(MODEL_ID), text(key), text(value)],
            );
        }
        for version in expected_versions() {
            s.add(
                "INSERT INTO model_versions (model_id, version, creation_timestamp, \
                 last_updated_timestamp, user_id, current_stage, description, source, run_id, \
                 run_link, logged_model_id, status, status_message, storage_location, checksum) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                vec![
                    text(MODEL_ID),
                    int(version.version),
                    int(version.creation_timestamp),
                    int(version.last_updated_timestamp),
                    opt_text(version.user_id.as_deref()),
                    text(version.current_stage.as_str()),
                    text(&version.description),
                    text(&version.source),
                    opt_text(version.run_id.as_deref()),
                    opt_text(version.run_link.as_deref()),
                    opt_text(version.model_id.as_deref()),
                    text(version.status.as_str()),
                    opt_text(version.status_message.as_deref()),
                    text(&version.storage_location),
                    text(&version.checksum),
                ],
            );
            for tag in &version.tags {
                s.add(
                    "INSERT INTO model_version_tags (model_id, version, key, value) \
                     VALUES ($1, $2, $3, $4)",
                    vec![
                        text(MODEL_ID),
                        int(version.version),
                        text(&tag.key),
                        text(&tag.value),
                    ],
                );
            }
            for alias in &version.aliases {
                s.add(
                    "INSERT INTO registered_model_aliases (model_id, alias, version) \
                     VALUES ($1, $2, $3)",
                    vec![text(MODEL_ID), text(alias), int(version.version)],
                );
            }
        }
        s.add(
            "INSERT INTO acl (workspace, object_type, object_id, principal_id, level) VALUES \
             ($1, $2, $3, (SELECT id FROM principals WHERE name = $4), $5)",
            vec![
                text(WS),
                text("registered_model"),
                text(MODEL_ID),
                text(ALICE),
                text("CAN_MANAGE"),
            ],
        );
        let events = seeded_events();
        for (timestamp, change) in &events {
            let stored = change.store().expect("an event");
            s.add(
                "INSERT INTO events (workspace, timestamp, actor, entity, action, object, data) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                vec![
                    text(WS),
                    int(*timestamp),
                    text(ALICE),
                    text(&stored.entity),
                    text(&stored.action),
                    text(&change.object()),
                    text(&stored.data.to_string()),
                ],
            );
        }
        if k >= v.event_outbox {
            // The first event was delivered and taken out of the outbox.
            for (timestamp, _) in &events[1..] {
                s.add(
                    "INSERT INTO event_outbox (consumer, event_id) \
                     SELECT $1, id FROM events WHERE timestamp = $2",
                    vec![text("webhooks"), int(*timestamp)],
                );
            }
        }
    }

    if k >= v.activities {
        for activity in expected_activities() {
            s.add(
                "INSERT INTO model_version_activities (model_id, version, activity_type, \
                 from_stage, to_stage, user_id, comment, system_comment, request_status, \
                 creation_timestamp, last_updated_timestamp) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                vec![
                    text(MODEL_ID),
                    int(activity.version),
                    text(activity.activity_type.as_str()),
                    opt_text(activity.from_stage.map(Stage::as_str)),
                    opt_text(activity.to_stage.map(Stage::as_str)),
                    text(&activity.user_id),
                    text(&activity.comment),
                    text(&activity.system_comment),
                    opt_text(activity.open.then_some("open")),
                    int(activity.creation_timestamp),
                    int(activity.last_updated_timestamp),
                ],
            );
        }
    }

    if k >= v.webhooks {
        let hook = expected_webhook();
        s.add(
            "INSERT INTO webhooks (id, workspace, flavor, name, description, url, secret, \
             authorization_header, enable_ssl_verification, model_name, events, status, \
             start_event_id, creation_timestamp, last_updated_timestamp) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            vec![
                text(&hook.id),
                text(&hook.workspace),
                text(hook.flavor.as_str()),
                text(&hook.name),
                text(&hook.description),
                text(&hook.url),
                opt_text(hook.secret.as_deref()),
                opt_text(hook.authorization.as_deref()),
                Arg::Bool(hook.enable_ssl_verification),
                opt_text(hook.model_name.as_deref()),
                json_text(&hook.events),
                text(hook.status.as_str()),
                int(0),
                int(hook.creation_timestamp),
                int(hook.last_updated_timestamp),
            ],
        );
        let delivery = expected_delivery(0);
        s.add(
            "INSERT INTO webhook_deliveries (delivery_id, webhook_id, event_id, event_name, \
             payload, status, attempts, next_attempt_at, last_status_code, last_error, \
             last_latency_ms, created_at, updated_at) SELECT $1, $2, id, $3, $4, $5, $6, $7, $8, \
             $9, $10, $11, $12 FROM events WHERE timestamp = $13",
            vec![
                text(&delivery.delivery_id),
                text(&delivery.webhook_id),
                text(&delivery.event_name),
                text(&delivery.payload),
                text(&delivery.status),
                int(delivery.attempts),
                int(delivery.next_attempt_at),
                opt_int(delivery.last_status_code),
                opt_text(delivery.last_error.as_deref()),
                opt_int(delivery.last_latency_ms),
                int(delivery.created_at),
                int(delivery.updated_at),
                int(seeded_events()[0].0),
            ],
        );
        if k < v.event_outbox {
            // Before the outbox, a cursor: the first event was delivered.
            s.add(
                "INSERT INTO outbox_cursors (consumer, last_event_id) \
                 SELECT $1, id FROM events WHERE timestamp = $2",
                vec![text("webhooks"), int(seeded_events()[0].0)],
            );
        }
    }

    if k >= v.catalog {
        s.add(
            "INSERT INTO workspaces (name, created_at, next_experiment_id) VALUES ($1, $2, $3)",
            vec![text(READER), int(T0 + 90), int(1)],
        );
        s.add(
            "INSERT INTO experiments (workspace, experiment_id, name, artifact_location, \
             lifecycle_stage, creation_time, last_update_time, owner_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![
                text(READER),
                int(0),
                text("Default"),
                text("mlflow-artifacts:/0"),
                text("active"),
                int(T0 + 90),
                int(T0 + 90),
                Arg::Int(None),
            ],
        );
        let schema = expected_schema();
        s.add(
            "INSERT INTO catalog_schemas (id, workspace, name, comment, properties, owner, \
             owner_id, created_at, created_by, updated_at, updated_by) VALUES ($1, $2, $3, $4, \
             $5, $6, (SELECT id FROM principals WHERE name = $7), $8, $9, $10, $11)",
            vec![
                text(&schema.schema_id),
                text(&schema.catalog_name),
                text(&schema.name),
                text(&schema.comment),
                json_text(&schema.properties),
                text(&schema.owner),
                text(ALICE),
                int(schema.created_at),
                text(&schema.created_by),
                int(schema.updated_at),
                text(&schema.updated_by),
            ],
        );
        for table in [expected_table(), expected_view()] {
            s.add(
                "INSERT INTO catalog_tables (id, schema_id, name, table_type, data_source_format, \
                 columns, storage_location, view_definition, comment, properties, owner, \
                 owner_id, created_at, created_by, updated_at, updated_by) VALUES ($1, $2, $3, \
                 $4, $5, $6, $7, $8, $9, $10, $11, (SELECT id FROM principals WHERE name = $12), \
                 $13, $14, $15, $16)",
                vec![
                    text(&table.table_id),
                    text(SCHEMA_ID),
                    text(&table.name),
                    text(table.table_type.as_str()),
                    text(&table.data_source_format),
                    json_text(&table.columns),
                    opt_text(
                        (!table.storage_location.is_empty())
                            .then_some(table.storage_location.as_str()),
                    ),
                    text(&table.view_definition),
                    text(&table.comment),
                    json_text(&table.properties),
                    text(&table.owner),
                    text(ALICE),
                    int(table.created_at),
                    text(&table.created_by),
                    int(table.updated_at),
                    text(&table.updated_by),
                ],
            );
        }
        for (securable, securable_type, principal, privilege) in [
            (TABLE, "table", ALICE, "SELECT"),
            (TABLE, "table", ALICE, "MODIFY"),
            ("legacy.sales", "schema", TEAM, "USE_SCHEMA"),
        ] {
            s.add(
                "INSERT INTO catalog_grants (securable, securable_type, principal_id, privilege, \
                 granted_by, granted_at) VALUES ($1, $2, \
                 (SELECT id FROM principals WHERE name = $3), $4, $5, $6)",
                vec![
                    text(securable),
                    text(securable_type),
                    text(principal),
                    text(privilege),
                    text(BOT),
                    int(T0 + 105),
                ],
            );
        }
        s.add(
            "INSERT INTO catalog_bindings (catalog, workspace, created_at) VALUES ($1, $2, $3)",
            vec![text(WS), text(READER), int(T0 + 107)],
        );
    }

    if k >= v.ingested_files {
        let file = expected_ingested_file();
        s.add(
            "INSERT INTO ingested_files (table_id, source, size, rows_written, rows_quarantined, \
             table_version, ingested_at, ingested_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![
                text(&file.table_id),
                text(&file.source),
                int(file.size),
                int(file.rows_written),
                int(file.rows_quarantined),
                int(file.table_version),
                int(file.ingested_at),
                text(&file.ingested_by),
            ],
        );
    }

    if k >= v.lineage {
        s.add(
            "INSERT INTO lineage_writes (target_kind, target_name, target_version, operation, \
             actor, statement, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                text("table"),
                text(TABLE),
                int(5),
                text("WRITE"),
                text(ALICE),
                text(TRICKY),
                int(T0 + 120),
            ],
        );
        for (kind, name, version) in [
            ("file", INGESTED, None),
            ("table", "legacy.sales.customers", Some(2)),
        ] {
            s.add(
                "INSERT INTO lineage_reads (write_id, source_kind, source_name, source_version) \
                 SELECT id, $1, $2, $3 FROM lineage_writes WHERE created_at = $4",
                vec![text(kind), text(name), opt_int(version), int(T0 + 120)],
            );
        }
    }

    if k >= v.catalog_tags {
        for (securable, securable_type, key, value) in [
            (TABLE, "table", "pii", "nön ✓"),
            ("legacy.sales", "schema", "domain", TRICKY),
        ] {
            s.add(
                "INSERT INTO catalog_tags (securable, securable_type, tag_key, tag_value, \
                 updated_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
                vec![
                    text(securable),
                    text(securable_type),
                    text(key),
                    text(value),
                    text(ALICE),
                    int(T0 + 130),
                ],
            );
        }
    }

    if k >= v.features {
        let feature = expected_feature_table();
        s.add(
            "INSERT INTO feature_tables (table_id, primary_keys, timestamp_key, description, \
             source_tables, pipeline, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![
                text(&feature.table_id),
                json_text(&feature.primary_keys),
                opt_text(feature.timestamp_key.as_deref()),
                text(&feature.description),
                json_text(&feature.source_tables),
                json_text(&feature.pipeline),
                text(&feature.created_by),
                int(feature.created_at),
            ],
        );
        let set = expected_training_set();
        s.add(
            "INSERT INTO training_sets (id, workspace, spec, tables_read, num_rows, output_table, \
             created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![
                text(&set.training_set_id),
                text(&set.workspace),
                json_text(&set.spec),
                json_text(&set.tables_read),
                int(i64::try_from(set.num_rows).expect("rows")),
                json_text(&set.output_table),
                text(&set.created_by),
                int(set.created_at),
            ],
        );
    }

    if k >= v.serving {
        let endpoint = expected_endpoint();
        s.add(
            "INSERT INTO serving_endpoints (id, workspace, name, creator, config, config_version, \
             tags, creation_timestamp, last_updated_timestamp) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            vec![
                text(&endpoint.id),
                text(&endpoint.workspace),
                text(&endpoint.name),
                text(&endpoint.creator),
                json_text(&endpoint.config),
                int(endpoint.config_version),
                json_text(&endpoint.tags),
                int(endpoint.creation_timestamp),
                int(endpoint.last_updated_timestamp),
            ],
        );
    }

    if k >= v.table_watch {
        s.add(
            "UPDATE catalog_tables SET watched_version = $1 WHERE id = $2",
            vec![int(7), text(TABLE_ID)],
        );
    }

    if k >= v.jobs {
        s.add(
            "INSERT INTO jobs (workspace, name, creator, run_as, settings, created_time, \
             last_updated_time) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                text(WS),
                text(JOB_NAME),
                text(ALICE),
                text(BOT),
                json_text(&job_settings()),
                int(T0 + 160),
                int(T0 + 161),
            ],
        );
    }

    if k >= v.job_runs {
        s.add(
            "INSERT INTO job_runs (workspace, job_id, run_name, run_type, trigger_type, creator, \
             run_as, settings, job_parameters, overriding_parameters, idempotency_token, \
             life_cycle, result_state, state_message, user_cancelled_or_timedout, \
             cancel_requested, created_time, start_time, end_time) VALUES ($1, \
             (SELECT job_id FROM jobs WHERE name = $2), $3, $4, $5, $6, $7, $8, $9, $10, $11, \
             $12, $13, $14, $15, $16, $17, $18, $19)",
            vec![
                text(WS),
                text(JOB_NAME),
                text("nightly run ✓"),
                text("JOB_RUN"),
                text("PERIODIC"),
                text(ALICE),
                text(BOT),
                json_text(&job_settings()),
                json_text(&job_parameters()),
                Arg::Text(None),
                text(IDEMPOTENCY),
                text("TERMINATED"),
                text("SUCCESS"),
                text("done ✓"),
                Arg::Bool(false),
                Arg::Bool(true),
                int(T0 + 170),
                int(T0 + 171),
                int(T0 + 172),
            ],
        );
        s.add(
            "INSERT INTO job_runs (workspace, job_run_id, task_key, attempt_number, life_cycle, \
             result_state, state_message, user_cancelled_or_timedout, start_time, end_time, \
             not_before, worker, lease_until, process_group, outcome, task_values, output, \
             created_time) VALUES ($1, \
             (SELECT run_id FROM job_runs WHERE idempotency_token = $2), $3, $4, $5, $6, $7, $8, \
             $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
            vec![
                text(WS),
                text(IDEMPOTENCY),
                text("ingest"),
                int(2),
                text("TERMINATED"),
                text("SUCCESS"),
                text(""),
                Arg::Bool(true),
                int(T0 + 171),
                int(T0 + 172),
                int(T0 + 100),
                text("worker-ü"),
                int(HUGE),
                int(4242),
                text("succeeded ✓"),
                json_text(&task_values()),
                json_text(&task_output()),
                int(T0 + 170),
            ],
        );
        s.add(
            "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3)",
            vec![text(LEASE), text("server-ä"), int(HUGE)],
        );
    }

    if k >= v.job_repairs {
        s.add(
            "UPDATE job_runs SET repair_history = $1 WHERE idempotency_token = $2",
            vec![json_text(&repair_history()), text(IDEMPOTENCY)],
        );
        s.add(
            "INSERT INTO job_trigger_states (job_id, state) SELECT job_id, $1 FROM jobs \
             WHERE name = $2",
            vec![json_text(&trigger_state()), text(JOB_NAME)],
        );
    }

    if k >= v.task_logs {
        let mut offset = 0;
        for piece in LOG_PIECES {
            let end = offset + piece.len() as i64;
            s.add(
                "INSERT INTO job_task_logs (task_run_id, start_offset, end_offset, data) \
                 SELECT run_id, $1, $2, $3 FROM job_runs WHERE task_key = $4",
                vec![int(offset), int(end), blob(Some(piece)), text("ingest")],
            );
            offset = end;
        }
        for (path, parent, object_type, language, content, at) in [
            ("/Users", "/", "DIRECTORY", None, None, T0 + 180),
            ("/Users/ålice", "/Users", "DIRECTORY", None, None, T0 + 180),
            (
                "/Users/ålice/etl.py",
                "/Users/ålice",
                "FILE",
                None,
                Some(SCRIPT),
                T0 + 181,
            ),
            (
                "/Users/ålice/nb",
                "/Users/ålice",
                "NOTEBOOK",
                Some("PYTHON"),
                Some(NOTEBOOK),
                T0 + 183,
            ),
        ] {
            s.add(
                "INSERT INTO workspace_files (workspace, path, parent, object_type, language, \
                 content, size, created_at, modified_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                vec![
                    text(WS),
                    text(path),
                    text(parent),
                    text(object_type),
                    opt_text(language),
                    blob(content),
                    int(content.map_or(0, |c| c.len() as i64)),
                    int(at),
                    int(at + 1),
                ],
            );
        }
    }

    if k >= v.for_each {
        s.add(
            "INSERT INTO job_runs (workspace, job_run_id, task_key, attempt_number, life_cycle, \
             result_state, state_message, start_time, end_time, created_time, parent_run_id, \
             iteration, iteration_input) SELECT $1, job_run_id, $2, $3, $4, $5, $6, $7, $8, $9, \
             run_id, $10, $11 FROM job_runs WHERE task_key = $12",
            vec![
                text(WS),
                text("ingest_iteration"),
                int(0),
                text("TERMINATED"),
                text("FAILED"),
                text("boom ✗"),
                int(T0 + 173),
                int(T0 + 174),
                int(T0 + 170),
                int(1),
                text(r#"{"x": "ü"}"#),
                text("ingest"),
            ],
        );
    }

    if k >= v.monitors {
        let monitor = expected_monitor();
        s.add(
            "INSERT INTO table_monitors (table_id, table_name, workspace, settings, status, \
             monitor_version, created_by, created_at, updated_at, latest_failure) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            vec![
                text(&monitor.table_id),
                text(&monitor.table_name),
                text(&monitor.workspace),
                json_text(&monitor.settings),
                text(monitor.status.as_str()),
                int(monitor.monitor_version),
                text(&monitor.created_by),
                int(monitor.created_at),
                int(monitor.updated_at),
                opt_text(monitor.latest_failure.as_deref()),
            ],
        );
        // Oldest first: ids follow.
        for refresh in expected_refreshes().iter().rev() {
            let versions = refresh.versions;
            s.add(
                "INSERT INTO monitor_refreshes (table_id, state, trigger_kind, start_time_ms, \
                 end_time_ms, message, source_version, baseline_version, monitor_version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                vec![
                    text(TABLE_ID),
                    text(refresh.state.as_str()),
                    text(refresh.trigger.as_str()),
                    int(refresh.start_time_ms),
                    opt_int(refresh.end_time_ms),
                    opt_text(refresh.message.as_deref()),
                    opt_int(versions.map(|v| v.source)),
                    opt_int(versions.and_then(|v| v.baseline)),
                    opt_int(versions.map(|v| v.monitor)),
                ],
            );
        }
    }

    if k >= v.heartbeats {
        s.add(
            "UPDATE monitor_refreshes SET heartbeat_at = $1 WHERE state = $2",
            vec![int(T0 + 1000), text("RUNNING")],
        );
    }

    if k >= v.alerts {
        let alert = expected_alert();
        s.add(
            "INSERT INTO alerts (id, workspace, display_name, settings, owner, created_at, \
             updated_at, state, last_evaluated_at, state_changed_at, last_notified_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            vec![
                text(&alert.id),
                text(&alert.workspace),
                text(&alert.settings.display_name),
                json_text(&alert.settings),
                text(&alert.owner),
                int(alert.created_at),
                int(alert.updated_at),
                text(alert.state.as_str()),
                opt_int(alert.last_evaluated_at),
                opt_int(alert.state_changed_at),
                opt_int(alert.last_notified_at),
            ],
        );
        let evaluation = expected_evaluation();
        s.add(
            "INSERT INTO alert_evaluations (alert_id, evaluated_at, reason, state, value, \
             threshold, message, notified) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![
                text(&evaluation.alert_id),
                int(evaluation.evaluated_at),
                text(evaluation.reason.as_str()),
                text(evaluation.state.as_str()),
                opt_text(evaluation.value.as_deref()),
                opt_text(evaluation.threshold.as_deref()),
                opt_text(evaluation.message.as_deref()),
                Arg::Bool(evaluation.notified),
            ],
        );
    }

    if k >= v.server_secrets {
        s.add(
            "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3)",
            vec![text(SECRET_NAME), text(SECRET), int(T0 + 210)],
        );
    }

    if k >= v.sql_statements {
        s.add(
            "INSERT INTO sql_statements (id, workspace, owner_id, server, state, outcome, \
             cancel_requested, submitted_at, seen_at, ended_at) VALUES ($1, $2, \
             (SELECT id FROM principals WHERE name = $3), $4, $5, $6, $7, $8, $9, $10)",
            vec![
                text(STATEMENT_ID),
                text(WS),
                text(ALICE),
                text("server-ä"),
                text("SUCCEEDED"),
                json_text(&statement_outcome()),
                Arg::Bool(false),
                int(T0 + 220),
                int(T0 + 221),
                int(T0 + 222),
            ],
        );
    }

    if k >= v.principal_attributes {
        s.add(
            "UPDATE principals SET attributes = $1 WHERE name = $2",
            vec![json_text(&principal_attributes()), text(ALICE)],
        );
        s.add(
            "UPDATE principals SET deleted_at = $1 WHERE name = $2",
            vec![int(T0 + 230), text(OPS)],
        );
    }

    s.0
}

// ---------------------------------------------------------------------------------------------
// What the store must read back (ids the database chose are filled in from what it returns)

fn expected_versions() -> Vec<ModelVersion> {
    vec![
        ModelVersion {
            name: MODEL.into(),
            version: 1,
            creation_timestamp: T0 + 62,
            last_updated_timestamp: T0 + 63,
            user_id: Some(ALICE.into()),
            current_stage: Stage::Production,
            description: "prêt".into(),
            source: format!("models:/{LOGGED_MODEL}"),
            run_id: Some(RUN.into()),
            status: VersionStatus::Ready,
            status_message: None,
            tags: vec![kv("validated", "yes ✓")],
            run_link: None,
            aliases: vec!["champion".into()],
            model_id: Some(LOGGED_MODEL.into()),
            storage_location: format!("_registry/{MODEL_ID}/1"),
            checksum: "c0ffee".into(),
            registered_model_id: MODEL_ID.into(),
        },
        ModelVersion {
            name: MODEL.into(),
            version: 2,
            creation_timestamp: T0 + 64,
            last_updated_timestamp: HUGE,
            user_id: None,
            current_stage: Stage::None,
            description: String::new(),
            source: format!("runs:/{RUN}/model"),
            run_id: Some(RUN.into()),
            status: VersionStatus::PendingRegistration,
            status_message: Some("waiting… ✓".into()),
            tags: vec![kv("tricky", TRICKY)],
            run_link: Some("https://example.com/r/ü".into()),
            aliases: vec!["challenger".into()],
            model_id: None,
            storage_location: format!("_registry/{MODEL_ID}/2"),
            checksum: "beef".into(),
            registered_model_id: MODEL_ID.into(),
        },
    ]
}

/// The activities, without their ids.
fn expected_activities() -> Vec<tarn_core::registry::Activity> {
    let activity = |version, activity_type, from, to, user: &str, comment: &str, open, at| {
        tarn_core::registry::Activity {
            id: 0,
            activity_type,
            from_stage: from,
            to_stage: to,
            user_id: user.into(),
            comment: comment.into(),
            system_comment: String::new(),
            creation_timestamp: at,
            last_updated_timestamp: at + 1,
            open,
            model_name: MODEL.into(),
            version,
        }
    };
    vec![
        activity(
            1,
            ActivityType::AppliedTransition,
            Some(Stage::None),
            Some(Stage::Production),
            ALICE,
            "ship it 🚢",
            false,
            T0 + 70,
        ),
        activity(
            1,
            ActivityType::NewComment,
            None,
            None,
            BOT,
            TRICKY,
            false,
            T0 + 71,
        ),
        activity(
            2,
            ActivityType::RequestedTransition,
            Some(Stage::None),
            Some(Stage::Staging),
            ALICE,
            "please",
            true,
            T0 + 73,
        ),
    ]
}

fn expected_webhook() -> Webhook {
    Webhook {
        id: WEBHOOK_ID.into(),
        workspace: WS.into(),
        flavor: Flavor::Mlflow,
        name: "hook ⚓".into(),
        description: TRICKY.into(),
        url: "https://example.com/hook?ü=1".into(),
        secret: Some("sëcret".into()),
        authorization: Some("Bearer tøken".into()),
        enable_ssl_verification: false,
        model_name: None,
        events: vec![
            "model_version.created".into(),
            "registered_model.created".into(),
        ],
        status: WebhookStatus::Active,
        creation_timestamp: T0 + 80,
        last_updated_timestamp: T0 + 81,
    }
}

/// The delivery of the first event, made before the upgrade; `id` and `event_id` as read.
fn expected_delivery(event_id: i64) -> Delivery {
    Delivery {
        id: 0,
        delivery_id: "dlv-0001".into(),
        webhook_id: WEBHOOK_ID.into(),
        event_id,
        event_name: "registered_model.created".into(),
        payload: format!(
            r#"{{"entity":"registered_model","action":"created","data":{{"name":"{MODEL}"}}}}"#
        ),
        status: "succeeded".into(),
        attempts: 1,
        next_attempt_at: T0 + 82,
        last_status_code: Some(200),
        last_error: None,
        last_latency_ms: Some(15),
        created_at: T0 + 82,
        updated_at: T0 + 83,
    }
}

fn expected_schema() -> SchemaInfo {
    SchemaInfo {
        schema_id: SCHEMA_ID.into(),
        catalog_name: WS.into(),
        name: "sales".into(),
        full_name: "legacy.sales".into(),
        comment: "Umsätze ✓".into(),
        properties: schema_properties(),
        owner: ALICE.into(),
        created_at: T0 + 100,
        created_by: ALICE.into(),
        updated_at: T0 + 101,
        updated_by: BOT.into(),
    }
}

fn expected_table() -> TableInfo {
    TableInfo {
        table_id: TABLE_ID.into(),
        catalog_name: WS.into(),
        schema_name: "sales".into(),
        name: "orders".into(),
        full_name: TABLE.into(),
        table_type: TableType::Managed,
        data_source_format: "DELTA".into(),
        columns: table_columns(),
        storage_location: TABLE_LOCATION.into(),
        view_definition: String::new(),
        comment: "commandes".into(),
        properties: table_properties(),
        owner: ALICE.into(),
        created_at: T0 + 102,
        created_by: ALICE.into(),
        updated_at: T0 + 103,
        updated_by: BOT.into(),
    }
}

fn expected_view() -> TableInfo {
    TableInfo {
        table_id: VIEW_ID.into(),
        catalog_name: WS.into(),
        schema_name: "sales".into(),
        name: "orders_view".into(),
        full_name: "legacy.sales.orders_view".into(),
        table_type: TableType::View,
        data_source_format: "DELTA".into(),
        columns: table_columns()[..1].to_vec(),
        storage_location: String::new(),
        view_definition: VIEW_DEFINITION.into(),
        comment: String::new(),
        properties: BTreeMap::new(),
        owner: ALICE.into(),
        created_at: T0 + 104,
        created_by: ALICE.into(),
        updated_at: T0 + 104,
        updated_by: ALICE.into(),
    }
}

fn expected_ingested_file() -> IngestedFile {
    IngestedFile {
        table_id: TABLE_ID.into(),
        source: INGESTED.into(),
        size: HUGE,
        rows_written: 1000,
        rows_quarantined: 3,
        table_version: 5,
        ingested_at: T0 + 110,
        ingested_by: ALICE.into(),
    }
}

fn expected_feature_table() -> FeatureTable {
    FeatureTable {
        table_id: TABLE_ID.into(),
        full_name: TABLE.into(),
        primary_keys: vec!["customer_id".into()],
        timestamp_key: Some("ts".into()),
        description: "features ✓".into(),
        source_tables: vec!["legacy.sales.raw".into(), TRICKY.into()],
        pipeline: pipeline(),
        created_by: ALICE.into(),
        created_at: T0 + 140,
    }
}

fn expected_training_set() -> TrainingSet {
    TrainingSet {
        training_set_id: TRAINING_SET.into(),
        workspace: WS.into(),
        spec: training_spec(),
        tables_read: training_tables(),
        num_rows: 123_456_789_012,
        output_table: Some(training_output()),
        created_by: ALICE.into(),
        created_at: T0 + 141,
    }
}

fn expected_endpoint() -> ServingEndpoint {
    ServingEndpoint {
        id: ENDPOINT_ID.into(),
        workspace: WS.into(),
        name: ENDPOINT.into(),
        creator: ALICE.into(),
        creation_timestamp: T0 + 150,
        last_updated_timestamp: T0 + 151,
        config: endpoint_config("1"),
        config_version: 3,
        tags: vec![kv("env", "prød"), kv("tricky", TRICKY)],
    }
}

fn expected_monitor() -> Monitor {
    Monitor {
        table_id: TABLE_ID.into(),
        table_name: TABLE.into(),
        workspace: WS.into(),
        settings: monitor_settings(),
        status: MonitorStatus::Error,
        monitor_version: 2,
        created_by: ALICE.into(),
        created_at: T0 + 190,
        updated_at: T0 + 191,
        latest_failure: Some("boom ✗".into()),
    }
}

/// The refreshes newest first (as listed), without their ids.
fn expected_refreshes() -> Vec<Refresh> {
    vec![
        Refresh {
            refresh_id: 0,
            state: RefreshState::Running,
            start_time_ms: T0 + 194,
            end_time_ms: None,
            message: Some("running ü".into()),
            trigger: RefreshTrigger::Manual,
            versions: None,
        },
        Refresh {
            refresh_id: 0,
            state: RefreshState::Success,
            start_time_ms: T0 + 192,
            end_time_ms: Some(T0 + 193),
            message: None,
            trigger: RefreshTrigger::Schedule,
            versions: Some(RefreshVersions {
                source: 5,
                baseline: None,
                monitor: 2,
            }),
        },
    ]
}

fn expected_alert() -> Alert {
    Alert {
        id: ALERT_ID.into(),
        workspace: WS.into(),
        settings: alert_settings(),
        owner: ALICE.into(),
        created_at: T0 + 200,
        updated_at: T0 + 201,
        state: AlertState::Triggered,
        last_evaluated_at: Some(T0 + 202),
        state_changed_at: Some(T0 + 202),
        last_notified_at: None,
    }
}

fn expected_evaluation() -> Evaluation {
    Evaluation {
        alert_id: ALERT_ID.into(),
        evaluated_at: T0 + 202,
        reason: EvaluationReason::Schedule,
        state: AlertState::Triggered,
        value: Some("0.30000000000000004".into()),
        threshold: Some("0.3".into()),
        message: None,
        notified: true,
    }
}

// ---------------------------------------------------------------------------------------------
// Checks

struct Context {
    store: Store,
    dialect: Dialect,
    k: i64,
    v: Arc<Versions>,
    label: String,
}

impl Context {
    /// Whether the database was made at or after `version` (the tables it made were seeded).
    fn has(&self, version: i64) -> bool {
        self.k >= version
    }
}

trait OrFail<T> {
    fn or_fail(self, c: &Context, what: &str) -> T;
}

impl<T> OrFail<T> for tarn_core::Result<T> {
    fn or_fail(self, c: &Context, what: &str) -> T {
        self.unwrap_or_else(|err| panic!("{}: {what}: {:?}: {}", c.label, err.code, err.message))
    }
}

fn by_key(mut values: Vec<KeyValue>) -> Vec<KeyValue> {
    values.sort_by(|a, b| a.key.cmp(&b.key));
    values
}

fn sorted<T: Ord>(mut values: Vec<T>) -> Vec<T> {
    values.sort();
    values
}

/// The principals the seeds made, by name.
struct People {
    alice: PrincipalRecord,
    bot: PrincipalRecord,
    team: PrincipalRecord,
    ops: PrincipalRecord,
}

impl People {
    fn actor(&self) -> Actor {
        Actor {
            id: self.alice.id,
            name: ALICE.into(),
        }
    }
}

async fn check(c: &Context) {
    assert_eq!(
        c.store.backend_name(),
        match c.dialect {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgresql",
        },
        "{}",
        c.label
    );
    // Reads first: every seeded object as it was.
    let people = identity(c).await;
    tracking(c, &people).await;
    let pending = if c.has(c.v.registry) {
        registry(c, &people).await
    } else {
        Vec::new()
    };
    if c.has(c.v.webhooks) {
        webhooks(c).await;
    }
    if c.has(c.v.catalog) {
        catalog(c).await;
    }
    if c.has(c.v.jobs) {
        jobs(c).await;
    }
    if c.has(c.v.monitors) {
        monitors(c).await;
    }
    if c.has(c.v.alerts) {
        alerts(c).await;
    }
    secrets_and_statements(c, &people).await;

    // Then writes next to the old data.
    delivery_after_upgrade(c, &pending).await;
    use_identity(c, &people).await;
    use_tracking(c, &people).await;
    if c.has(c.v.registry) {
        use_registry(c, &people).await;
    }
    if c.has(c.v.catalog) {
        use_catalog(c, &people).await;
    }
    if c.has(c.v.jobs) {
        use_jobs(c, &people).await;
    }
    if c.has(c.v.monitors) {
        use_monitors(c).await;
    }
    if c.has(c.v.alerts) {
        use_alerts(c).await;
    }
}

async fn identity(c: &Context) -> People {
    let s = &c.store;
    let label = &c.label;
    let principal =
        |name: &'static str| async move { s.get_principal(name).await.or_fail(c, "a principal") };
    let people = People {
        alice: principal(ALICE).await,
        bot: principal(BOT).await,
        team: principal(TEAM).await,
        ops: principal(OPS).await,
    };
    let attributed = c.has(c.v.principal_attributes);
    let record =
        |found: &PrincipalRecord, kind, is_admin, active, created_at, attributes| PrincipalRecord {
            id: found.id,
            name: found.name.clone(),
            kind,
            is_admin,
            active,
            created_at,
            attributes,
            deleted_at: None,
        };
    assert_eq!(
        people.alice,
        record(
            &people.alice,
            PrincipalKind::User,
            false,
            true,
            T0 + 1,
            if attributed {
                principal_attributes()
            } else {
                json!({})
            }
        ),
        "{label}"
    );
    assert_eq!(people.alice.name, ALICE, "{label}");
    assert_eq!(
        people.bot,
        record(
            &people.bot,
            PrincipalKind::ServicePrincipal,
            false,
            true,
            T0 + 2,
            json!({})
        ),
        "{label}"
    );
    assert_eq!(
        people.team,
        record(
            &people.team,
            PrincipalKind::Group,
            false,
            true,
            T0 + 3,
            json!({})
        ),
        "{label}"
    );
    assert_eq!(
        people.ops,
        PrincipalRecord {
            deleted_at: attributed.then_some(T0 + 230),
            ..record(
                &people.ops,
                PrincipalKind::User,
                true,
                false,
                HUGE,
                json!({})
            )
        },
        "{label}"
    );
    let names: Vec<String> = s
        .list_principals(None)
        .await
        .or_fail(c, "principals")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(
        sorted(names),
        sorted(vec![
            ALICE.to_string(),
            BOT.to_string(),
            TEAM.to_string(),
            OPS.to_string()
        ]),
        "{label}"
    );
    assert_eq!(
        s.group_memberships().await.or_fail(c, "memberships"),
        vec![(people.team.id, people.alice.id)],
        "{label}"
    );
    assert_eq!(
        s.group_members(TEAM).await.or_fail(c, "members"),
        vec![people.alice.clone()],
        "{label}"
    );
    assert_eq!(
        s.list_tokens(None).await.or_fail(c, "tokens"),
        vec![
            TokenInfo {
                token_id: "tok-1".into(),
                principal_id: people.alice.id,
                principal_name: ALICE.into(),
                comment: TRICKY.into(),
                created_at: T0 + 4,
                expires_at: Some(HUGE),
                workspace: None,
            },
            TokenInfo {
                token_id: "tok-3".into(),
                principal_id: people.bot.id,
                principal_name: BOT.into(),
                comment: "bot ✓".into(),
                created_at: T0 + 7,
                expires_at: None,
                workspace: None,
            },
        ],
        "{label}: tokens but the revoked one"
    );
    let alice = Principal {
        id: people.alice.id,
        name: ALICE.into(),
        kind: PrincipalKind::User,
        is_admin: false,
        group_ids: vec![people.team.id],
        only_workspace: None,
    };
    assert_eq!(
        s.principal_for_token("hash-1", T0)
            .await
            .or_fail(c, "a token"),
        Some(alice.clone()),
        "{label}"
    );
    assert_eq!(
        s.principal_for_token("hash-1", HUGE)
            .await
            .or_fail(c, "an expired token"),
        None,
        "{label}"
    );
    assert_eq!(
        s.principal_for_token("hash-2", T0)
            .await
            .or_fail(c, "a revoked token"),
        None,
        "{label}"
    );
    assert_eq!(
        s.password_login(ALICE).await.or_fail(c, "password login"),
        Some((PASSWORD_HASH.to_string(), alice)),
        "{label}"
    );
    assert_eq!(
        s.password_login(OPS).await.or_fail(c, "inactive login"),
        None,
        "{label}"
    );
    let members: Vec<String> = s
        .workspace_members(WS)
        .await
        .or_fail(c, "workspace members")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(
        sorted(members),
        sorted(vec![ALICE.to_string(), TEAM.to_string()]),
        "{label}"
    );
    assert!(
        s.is_workspace_member(WS, &[people.team.id])
            .await
            .or_fail(c, "membership"),
        "{label}"
    );
    let mut grants = s
        .object_grants(WS, ObjectType::Experiment, "1")
        .await
        .or_fail(c, "experiment grants");
    grants.sort_by(|a, b| a.principal_name.cmp(&b.principal_name));
    let mut expected = vec![
        Grant {
            principal_id: people.alice.id,
            principal_name: ALICE.into(),
            principal_kind: PrincipalKind::User,
            level: PermissionLevel::CanManage,
        },
        Grant {
            principal_id: people.team.id,
            principal_name: TEAM.into(),
            principal_kind: PrincipalKind::Group,
            level: PermissionLevel::CanRead,
        },
    ];
    expected.sort_by(|a, b| a.principal_name.cmp(&b.principal_name));
    assert_eq!(grants, expected, "{label}");
    let mut workspaces = vec![WS.to_string()];
    if c.has(c.v.catalog) {
        workspaces.push(READER.into());
    }
    assert_eq!(
        sorted(s.list_workspaces().await.or_fail(c, "workspaces")),
        workspaces,
        "{label}"
    );
    people
}

async fn tracking(c: &Context, people: &People) {
    let s = &c.store;
    let label = &c.label;
    let mut experiment = s.get_experiment(WS, 1).await.or_fail(c, "the experiment");
    experiment.tags = by_key(experiment.tags);
    assert_eq!(
        experiment,
        Experiment {
            experiment_id: "1".into(),
            name: EXPERIMENT.into(),
            artifact_location: EXPERIMENT_LOCATION.into(),
            lifecycle_stage: LifecycleStage::Active,
            last_update_time: T0 + 11,
            creation_time: T0 + 10,
            tags: by_key(vec![kv("team", TRICKY), kv("mlflow.note.content", "ünï")]),
            owner_id: Some(people.alice.id),
        },
        "{label}"
    );
    assert_eq!(
        s.get_experiment_by_name(WS, "Default")
            .await
            .or_fail(c, "the default experiment")
            .experiment_id,
        "0",
        "{label}"
    );

    let points = run_points(&c.v, c.k);
    let run = s.get_run(WS, RUN).await.or_fail(c, "the run");
    assert_eq!(
        run.info,
        RunInfo {
            run_id: RUN.into(),
            run_uuid: RUN.into(),
            run_name: "rün ✓".into(),
            experiment_id: "1".into(),
            user_id: ALICE.into(),
            status: RunStatus::Finished,
            start_time: T0 + 20,
            end_time: Some(T0 + 30),
            artifact_uri: format!("{EXPERIMENT_LOCATION}/{RUN}/artifacts"),
            lifecycle_stage: LifecycleStage::Active,
        },
        "{label}"
    );
    assert_eq!(
        exact(&run.data.metrics),
        exact(&latest(&points)),
        "{label}: the latest metrics"
    );
    assert_eq!(
        by_key(run.data.params),
        vec![kv("lr", "0.1"), kv("tricky", TRICKY)],
        "{label}"
    );
    assert_eq!(
        by_key(run.data.tags),
        vec![kv("mlflow.user", ALICE), kv("note", TRICKY)],
        "{label}"
    );
    assert_eq!(run.inputs.dataset_inputs, run_inputs(), "{label}");
    assert_eq!(
        run.inputs.model_inputs,
        vec![ModelInput {
            model_id: "m-input".into()
        }],
        "{label}"
    );
    assert_eq!(
        run.outputs.model_outputs,
        vec![ModelOutput {
            model_id: LOGGED_MODEL.into(),
            step: 7
        }],
        "{label}"
    );
    let mut keys: Vec<&str> = points.iter().map(|p| p.key.as_str()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let history = s
            .metric_history(WS, RUN, key, 0, 100)
            .await
            .or_fail(c, "a metric's history");
        let logged: Vec<Metric> = points.iter().filter(|p| p.key == key).cloned().collect();
        assert_eq!(
            exact(&history.items),
            exact(&logged),
            "{label}: the history of {key}"
        );
    }

    let deleted = s.get_run(WS, DELETED_RUN).await.or_fail(c, "a deleted run");
    assert_eq!(
        (
            deleted.info.lifecycle_stage,
            deleted.info.status,
            deleted.info.end_time,
            deleted.info.user_id.as_str(),
        ),
        (LifecycleStage::Deleted, RunStatus::Killed, None, BOT),
        "{label}"
    );
    assert_eq!(deleted.data.params, vec![kv("lr", "0.2")], "{label}");

    // Search reads the values exactly: the latest loss is 0.1 + 0.2, just above 0.3.
    let search = |filter: Vec<Comparison>, view_type| SearchRuns {
        experiment_ids: vec![1],
        filter,
        order_by: vec![],
        view_type,
        max_results: 100,
        offset: 0,
    };
    let found = s
        .search_runs(
            WS,
            &search(
                vec![
                    Comparison {
                        entity: Entity::Metric,
                        key: "loss".into(),
                        comparator: Comparator::Gt,
                        value: Value::Number(0.3),
                    },
                    Comparison {
                        entity: Entity::Param,
                        key: "tricky".into(),
                        comparator: Comparator::Eq,
                        value: Value::Str(TRICKY.into()),
                    },
                    Comparison {
                        entity: Entity::Tag,
                        key: "mlflow.user".into(),
                        comparator: Comparator::Eq,
                        value: Value::Str(ALICE.into()),
                    },
                ],
                ViewType::ActiveOnly,
            ),
        )
        .await
        .or_fail(c, "search runs");
    assert_eq!(
        found
            .items
            .iter()
            .map(|r| r.info.run_id.as_str())
            .collect::<Vec<_>>(),
        vec![RUN],
        "{label}: runs found by their metrics, params and tags"
    );
    let found = s
        .search_runs(WS, &search(vec![], ViewType::DeletedOnly))
        .await
        .or_fail(c, "search deleted runs");
    assert_eq!(
        found
            .items
            .iter()
            .map(|r| r.info.run_id.as_str())
            .collect::<Vec<_>>(),
        vec![DELETED_RUN],
        "{label}"
    );

    let model = s
        .get_logged_model(WS, LOGGED_MODEL)
        .await
        .or_fail(c, "the logged model");
    let info = &model.info;
    assert_eq!(
        (
            info.model_id.as_str(),
            info.experiment_id.as_str(),
            info.name.as_str(),
            info.creation_timestamp_ms,
            info.last_updated_timestamp_ms,
            info.status,
            info.creator_id,
            info.model_type.as_deref(),
            info.source_run_id.as_deref(),
            info.status_message.as_deref(),
        ),
        (
            LOGGED_MODEL,
            "1",
            "modèle ✨",
            T0 + 50,
            T0 + 51,
            LoggedModelStatus::LoggedModelReady,
            Some(people.alice.id),
            Some("agent"),
            Some(RUN),
            None,
        ),
        "{label}"
    );
    assert_eq!(
        info.artifact_uri,
        format!("{EXPERIMENT_LOCATION}/models/{LOGGED_MODEL}/artifacts"),
        "{label}"
    );
    assert_eq!(info.tags, vec![kv("k", TRICKY)], "{label}");
    assert_eq!(model.data.params, vec![kv("depth", "12")], "{label}");
    let of_model: Vec<Metric> = points
        .iter()
        .filter(|p| p.model_id.as_deref() == Some(LOGGED_MODEL))
        .map(|p| Metric {
            run_id: Some(RUN.into()),
            ..p.clone()
        })
        .collect();
    assert_eq!(
        exact(&model.data.metrics),
        exact(&of_model),
        "{label}: the logged model's metrics"
    );
}

/// Reads the registry back; returns the events waiting for the webhooks.
async fn registry(c: &Context, people: &People) -> Vec<(i64, Change)> {
    let s = &c.store;
    let label = &c.label;
    let model = s
        .get_registered_model(WS, MODEL)
        .await
        .or_fail(c, "the registered model");
    assert_eq!(
        (
            model.id.as_str(),
            model.name.as_str(),
            model.creation_timestamp,
            model.last_updated_timestamp,
            model.user_id.as_deref(),
            model.description.as_str(),
        ),
        (MODEL_ID, MODEL, T0 + 60, T0 + 61, Some(ALICE), "détecteur"),
        "{label}"
    );
    assert_eq!(
        by_key(model.tags.clone()),
        vec![kv("team", "risk ✓"), kv("tricky", TRICKY)],
        "{label}"
    );
    let mut aliases = model.aliases.clone();
    aliases.sort_by(|a, b| a.alias.cmp(&b.alias));
    assert_eq!(
        aliases,
        vec![
            Alias {
                alias: "challenger".into(),
                version: 2
            },
            Alias {
                alias: "champion".into(),
                version: 1
            },
        ],
        "{label}"
    );
    let mut expected = expected_versions();
    let latest: Vec<ModelVersion> = expected
        .iter()
        .rev()
        .map(|version| ModelVersion {
            aliases: vec![],
            ..version.clone()
        })
        .collect();
    assert_eq!(
        model.latest_versions, latest,
        "{label}: the newest version in each stage"
    );
    for version in &expected {
        assert_eq!(
            &s.get_model_version(WS, MODEL, version.version)
                .await
                .or_fail(c, "a version"),
            version,
            "{label}"
        );
    }
    assert_eq!(
        s.version_by_alias(WS, MODEL, "champion")
            .await
            .or_fail(c, "an alias")
            .version,
        1,
        "{label}"
    );
    let tagged = s
        .search_model_versions(
            WS,
            &SearchRegistry {
                filter: vec![Comparison {
                    entity: Entity::Tag,
                    key: "validated".into(),
                    comparator: Comparator::Eq,
                    value: Value::Str("yes ✓".into()),
                }],
                order_by: vec![],
                max_results: 100,
                offset: 0,
                readable_by: None,
            },
        )
        .await
        .or_fail(c, "search versions by tag");
    assert_eq!(tagged.items, vec![expected.remove(0)], "{label}");
    assert_eq!(
        s.granted_levels(
            WS,
            ObjectType::RegisteredModel,
            MODEL_ID,
            &[people.alice.id]
        )
        .await
        .or_fail(c, "model grants"),
        vec![PermissionLevel::CanManage],
        "{label}"
    );

    if c.has(c.v.activities) {
        let mut read = s.activities(WS, MODEL, 1).await.or_fail(c, "activities");
        read.extend(s.activities(WS, MODEL, 2).await.or_fail(c, "activities"));
        let ids: Vec<i64> = read.iter().map(|a| a.id).collect();
        for activity in &mut read {
            activity.id = 0;
        }
        assert_eq!(read, expected_activities(), "{label}");
        let comment = s.get_comment(WS, ids[1]).await.or_fail(c, "a comment");
        assert_eq!(comment.comment, TRICKY, "{label}");
        let open = s
            .open_transition_requests(WS, MODEL, 2)
            .await
            .or_fail(c, "open requests");
        assert_eq!(open.len(), 1, "{label}");
        assert_eq!(open[0].id, ids[2], "{label}");
    }

    let events = s
        .events(&EventQuery {
            workspace: Some(WS.into()),
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .or_fail(c, "events");
    let seeded = seeded_events();
    assert_eq!(
        events
            .iter()
            .map(|e| (
                e.timestamp,
                e.actor.as_str(),
                e.object.clone(),
                e.change.clone()
            ))
            .collect::<Vec<_>>(),
        seeded
            .iter()
            .map(|(at, change)| (*at, ALICE, change.object(), change.clone()))
            .collect::<Vec<_>>(),
        "{label}: the event log"
    );
    // The outbox holds what the release had not delivered: since webhooks, the events after
    // the first (which was); before them, every event.
    let undelivered = if c.has(c.v.webhooks) { 1 } else { 0 };
    let expected_pending: Vec<(i64, Change)> = events[undelivered..]
        .iter()
        .map(|e| (e.id, e.change.clone()))
        .collect();
    let pending: Vec<(i64, Change)> = s
        .pending_events("webhooks", 100)
        .await
        .or_fail(c, "pending events")
        .into_iter()
        .map(|e| (e.id, e.change))
        .collect();
    assert_eq!(
        pending, expected_pending,
        "{label}: events waiting for the webhooks"
    );
    pending
}

async fn webhooks(c: &Context) {
    let s = &c.store;
    let label = &c.label;
    assert_eq!(
        s.get_webhook(WS, WEBHOOK_ID)
            .await
            .or_fail(c, "the webhook"),
        expected_webhook(),
        "{label}"
    );
    let listed = s
        .list_webhooks(WS, Flavor::Mlflow, None, 0, 10)
        .await
        .or_fail(c, "webhooks");
    assert_eq!(listed.items, vec![expected_webhook()], "{label}");
    let first_event = s
        .events(&EventQuery {
            workspace: Some(WS.into()),
            limit: 1,
            ..EventQuery::default()
        })
        .await
        .or_fail(c, "events")[0]
        .id;
    let deliveries = s
        .deliveries(&DeliveryQuery {
            workspace: WS.into(),
            webhook_id: Some(WEBHOOK_ID.into()),
            status: None,
            limit: 100,
        })
        .await
        .or_fail(c, "deliveries");
    assert_eq!(deliveries.len(), 1, "{label}");
    assert_eq!(
        deliveries[0],
        Delivery {
            id: deliveries[0].id,
            ..expected_delivery(first_event)
        },
        "{label}"
    );
}

async fn catalog(c: &Context) {
    let s = &c.store;
    let label = &c.label;
    assert_eq!(
        s.get_schema(WS, "sales").await.or_fail(c, "the schema"),
        expected_schema(),
        "{label}"
    );
    assert_eq!(
        s.list_schemas(WS, 10, 0).await.or_fail(c, "schemas").items,
        vec![expected_schema()],
        "{label}"
    );
    assert_eq!(
        s.get_table(WS, "sales", "orders")
            .await
            .or_fail(c, "the table"),
        expected_table(),
        "{label}"
    );
    assert_eq!(
        s.get_table(WS, "sales", "orders_view")
            .await
            .or_fail(c, "the view"),
        expected_view(),
        "{label}"
    );
    let mut privileges = vec![Privilege::Select, Privilege::Modify];
    privileges.sort();
    assert_eq!(
        s.catalog_privileges(TABLE)
            .await
            .or_fail(c, "table privileges"),
        vec![PrivilegeAssignment {
            principal: ALICE.into(),
            privileges,
        }],
        "{label}"
    );
    assert_eq!(
        s.catalog_privileges("legacy.sales")
            .await
            .or_fail(c, "schema privileges"),
        vec![PrivilegeAssignment {
            principal: TEAM.into(),
            privileges: vec![Privilege::UseSchema],
        }],
        "{label}"
    );
    assert_eq!(
        s.catalog_bindings(WS).await.or_fail(c, "bindings"),
        vec![READER.to_string()],
        "{label}"
    );
    assert_eq!(
        s.watched_tables().await.or_fail(c, "watched tables"),
        vec![WatchedTable {
            table_id: TABLE_ID.into(),
            full_name: TABLE.into(),
            storage_location: TABLE_LOCATION.into(),
            watched_version: c.has(c.v.table_watch).then_some(7),
        }],
        "{label}: tables made before the watcher have not been scanned"
    );
    if c.has(c.v.ingested_files) {
        assert_eq!(
            s.ingested_files(TABLE_ID)
                .await
                .or_fail(c, "ingested files"),
            vec![expected_ingested_file()],
            "{label}"
        );
    }
    if c.has(c.v.lineage) {
        let writes = s
            .lineage_writes(&Node::table(TABLE), 10)
            .await
            .or_fail(c, "lineage writes");
        assert_eq!(writes.len(), 1, "{label}");
        let write_id = writes[0].id;
        assert_eq!(
            writes,
            vec![LineageWrite {
                id: write_id,
                target: Node::table(TABLE),
                target_version: Some(5),
                operation: "WRITE".into(),
                actor: ALICE.into(),
                statement: Some(TRICKY.into()),
                created_at: T0 + 120,
            }],
            "{label}"
        );
        let edge = |source: Node, version| LineageEdge {
            source,
            target: Node::table(TABLE),
            writes: 1,
            last_write_id: write_id,
            last_operation: "WRITE".into(),
            last_actor: ALICE.into(),
            last_timestamp: T0 + 120,
            source_version: version,
            target_version: Some(5),
        };
        assert_eq!(
            s.lineage_edges(&Node::table(TABLE), Direction::Upstream)
                .await
                .or_fail(c, "upstream edges"),
            vec![
                edge(Node::file(INGESTED), None),
                edge(Node::table("legacy.sales.customers"), Some(2)),
            ],
            "{label}"
        );
        assert_eq!(
            s.lineage_edges(&Node::file(INGESTED), Direction::Downstream)
                .await
                .or_fail(c, "downstream edges"),
            vec![edge(Node::file(INGESTED), None)],
            "{label}"
        );
    }
    if c.has(c.v.catalog_tags) {
        assert_eq!(
            s.catalog_tags(TABLE).await.or_fail(c, "table tags"),
            BTreeMap::from([("pii".to_string(), "nön ✓".to_string())]),
            "{label}"
        );
        assert_eq!(
            s.catalog_tags("legacy.sales")
                .await
                .or_fail(c, "schema tags"),
            BTreeMap::from([("domain".to_string(), TRICKY.to_string())]),
            "{label}"
        );
    }
    if c.has(c.v.features) {
        assert_eq!(
            s.get_feature_table(WS, "sales", "orders")
                .await
                .or_fail(c, "the feature table"),
            expected_feature_table(),
            "{label}"
        );
        assert_eq!(
            s.search_feature_tables(&[WS.to_string()], "features ✓", 10, 0)
                .await
                .or_fail(c, "search feature tables")
                .items,
            vec![expected_feature_table()],
            "{label}"
        );
        assert_eq!(
            s.get_training_set(WS, TRAINING_SET)
                .await
                .or_fail(c, "the training set"),
            expected_training_set(),
            "{label}"
        );
    }
    if c.has(c.v.serving) {
        assert_eq!(
            s.get_endpoint(WS, ENDPOINT)
                .await
                .or_fail(c, "the endpoint"),
            expected_endpoint(),
            "{label}"
        );
        assert_eq!(
            s.list_endpoints(None).await.or_fail(c, "endpoints"),
            vec![expected_endpoint()],
            "{label}"
        );
    }
}

/// The seeded run's tasks as the store reads them, given the ids it chose.
fn expected_tasks(c: &Context, run_id: i64, task_id: i64, iteration_id: i64) -> Vec<TaskRun> {
    let mut tasks = vec![TaskRun {
        run_id: task_id,
        job_run_id: run_id,
        task_key: "ingest".into(),
        attempt_number: 2,
        state: RunState {
            life_cycle: LifeCycle::Terminated,
            result: Some(ResultState::Success),
            message: String::new(),
            user_cancelled_or_timedout: true,
        },
        start_time: T0 + 171,
        end_time: T0 + 172,
        not_before: T0 + 100,
        worker: Some("worker-ü".into()),
        lease_until: HUGE,
        process_group: Some(4242),
        outcome: Some("succeeded ✓".into()),
        values: task_values(),
        output: task_output(),
        iteration: None,
    }];
    if c.has(c.v.for_each) {
        tasks.push(TaskRun {
            run_id: iteration_id,
            job_run_id: run_id,
            task_key: "ingest_iteration".into(),
            attempt_number: 0,
            state: RunState {
                life_cycle: LifeCycle::Terminated,
                result: Some(ResultState::Failed),
                message: "boom ✗".into(),
                user_cancelled_or_timedout: false,
            },
            start_time: T0 + 173,
            end_time: T0 + 174,
            not_before: 0,
            worker: None,
            lease_until: 0,
            process_group: None,
            outcome: None,
            values: json!({}),
            output: TaskOutput::default(),
            iteration: Some(Iteration {
                parent_run_id: task_id,
                index: 1,
                input: r#"{"x": "ü"}"#.into(),
            }),
        });
    }
    tasks
}

async fn jobs(c: &Context) {
    let s = &c.store;
    let label = &c.label;
    let jobs = s.list_jobs(WS, None, 0, 10).await.or_fail(c, "jobs").items;
    assert_eq!(jobs.len(), 1, "{label}");
    let job_id = jobs[0].job_id;
    let job = Job {
        job_id,
        workspace: WS.into(),
        creator_user_name: ALICE.into(),
        run_as_user_name: BOT.into(),
        settings: job_settings(),
        created_time: T0 + 160,
    };
    assert_eq!(jobs, vec![job.clone()], "{label}");
    assert_eq!(
        s.get_job(WS, job_id).await.or_fail(c, "the job"),
        job,
        "{label}"
    );
    assert_eq!(
        s.list_jobs(WS, Some("NIGHTLY ✓"), 0, 10)
            .await
            .or_fail(c, "jobs by name")
            .items,
        vec![job],
        "{label}: names match but for case"
    );
    if !c.has(c.v.job_runs) {
        return;
    }
    let runs = s
        .list_job_runs(WS, &RunFilter::default(), true, 0, 10)
        .await
        .or_fail(c, "job runs")
        .items;
    assert_eq!(runs.len(), 1, "{label}");
    let run = &runs[0];
    assert_eq!(
        run.tasks.len(),
        if c.has(c.v.for_each) { 2 } else { 1 },
        "{label}"
    );
    let task_id = run.tasks[0].run_id;
    let iteration_id = run.tasks.get(1).map_or(0, |t| t.run_id);
    assert!(task_id > run.run_id, "{label}");
    let expected = tarn_core::jobs::JobRun {
        run_id: run.run_id,
        workspace: WS.into(),
        job_id: Some(job_id),
        run_name: "nightly run ✓".into(),
        run_type: "JOB_RUN".into(),
        trigger: "PERIODIC".into(),
        creator_user_name: ALICE.into(),
        run_as_user_name: BOT.into(),
        settings: job_settings(),
        job_parameters: job_parameters(),
        overriding_parameters: serde_json::Value::Null,
        state: RunState {
            life_cycle: LifeCycle::Terminated,
            result: Some(ResultState::Success),
            message: "done ✓".into(),
            user_cancelled_or_timedout: false,
        },
        cancel_requested: true,
        created_time: T0 + 170,
        start_time: T0 + 171,
        end_time: T0 + 172,
        idempotency_token: Some(IDEMPOTENCY.into()),
        repair_history: if c.has(c.v.job_repairs) {
            repair_history()
        } else {
            Vec::new()
        },
        tasks: expected_tasks(c, run.run_id, task_id, iteration_id),
    };
    assert_eq!(run, &expected, "{label}");
    assert_eq!(
        s.get_job_run(WS, task_id)
            .await
            .or_fail(c, "a run by its task's id"),
        expected,
        "{label}"
    );
    assert!(
        s.active_job_runs()
            .await
            .or_fail(c, "active runs")
            .is_empty(),
        "{label}"
    );
    assert_eq!(
        s.lease_holder(LEASE).await.or_fail(c, "the lease"),
        Some(("server-ä".to_string(), HUGE)),
        "{label}"
    );
    if c.has(c.v.job_repairs) {
        assert_eq!(
            s.trigger_states().await.or_fail(c, "trigger states"),
            vec![(job_id, trigger_state())],
            "{label}"
        );
    }
    if c.has(c.v.task_logs) {
        let whole: Vec<u8> = LOG_PIECES.concat();
        assert_eq!(
            s.read_task_log(task_id, 0, 100)
                .await
                .or_fail(c, "a task's log"),
            (whole.clone(), whole.len() as i64),
            "{label}"
        );
        assert_eq!(
            s.read_task_log(task_id, LOG_PIECES[0].len() as i64, 100)
                .await
                .or_fail(c, "the rest of a task's log"),
            (LOG_PIECES[1].to_vec(), whole.len() as i64),
            "{label}"
        );
        let script = s
            .workspace_object(WS, "/Users/ålice/etl.py")
            .await
            .or_fail(c, "a workspace file")
            .unwrap_or_else(|| panic!("{label}: the script is gone"));
        assert_eq!(
            script,
            WorkspaceObject {
                path: "/Users/ålice/etl.py".into(),
                object_type: FileType::File,
                language: None,
                object_id: script.object_id,
                size: SCRIPT.len() as i64,
                created_at: T0 + 181,
                modified_at: T0 + 182,
            },
            "{label}"
        );
        assert_eq!(
            s.workspace_file_content(WS, "/Users/ålice/etl.py")
                .await
                .or_fail(c, "a script"),
            SCRIPT,
            "{label}"
        );
        assert_eq!(
            s.workspace_file_content(WS, "/Users/ålice/nb")
                .await
                .or_fail(c, "a notebook"),
            NOTEBOOK,
            "{label}"
        );
        let listed: Vec<(String, FileType, Option<String>)> = s
            .list_workspace_objects(WS, "/Users", true)
            .await
            .or_fail(c, "workspace files")
            .into_iter()
            .map(|o| (o.path, o.object_type, o.language))
            .collect();
        let mut expected = vec![
            ("/Users/ålice".to_string(), FileType::Directory, None),
            ("/Users/ålice/etl.py".to_string(), FileType::File, None),
            (
                "/Users/ålice/nb".to_string(),
                FileType::Notebook,
                Some("PYTHON".to_string()),
            ),
        ];
        let mut listed = listed;
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(listed, expected, "{label}");
    }
}

async fn monitors(c: &Context) {
    let s = &c.store;
    let label = &c.label;
    assert_eq!(
        s.get_monitor(TABLE_ID).await.or_fail(c, "the monitor"),
        expected_monitor(),
        "{label}"
    );
    assert_eq!(
        s.list_monitors().await.or_fail(c, "monitors"),
        vec![expected_monitor()],
        "{label}"
    );
    let refreshes = s.list_refreshes(TABLE_ID, 10).await.or_fail(c, "refreshes");
    assert_eq!(refreshes.len(), 2, "{label}");
    let (running, success) = (refreshes[0].refresh_id, refreshes[1].refresh_id);
    assert!(running > success, "{label}");
    let mut expected = expected_refreshes();
    expected[0].refresh_id = running;
    expected[1].refresh_id = success;
    assert_eq!(refreshes, expected, "{label}");
    assert_eq!(
        s.get_refresh(TABLE_ID, success)
            .await
            .or_fail(c, "a refresh"),
        expected[1],
        "{label}"
    );
    assert_eq!(
        s.last_successful_refresh(TABLE_ID)
            .await
            .or_fail(c, "the last success"),
        Some(expected[1].clone()),
        "{label}"
    );
    // A refresh from before heartbeats is judged by its start; a later one by its heartbeat.
    let silent = s
        .stalled_refreshes(T0 + 500)
        .await
        .or_fail(c, "stalled refreshes");
    assert_eq!(
        silent,
        if c.has(c.v.heartbeats) {
            vec![]
        } else {
            vec![(TABLE_ID.to_string(), expected[0].clone())]
        },
        "{label}"
    );
    assert_eq!(
        s.stalled_refreshes(T0 + 2000)
            .await
            .or_fail(c, "stalled refreshes"),
        vec![(TABLE_ID.to_string(), expected[0].clone())],
        "{label}"
    );
}

async fn alerts(c: &Context) {
    let s = &c.store;
    let label = &c.label;
    assert_eq!(
        s.get_alert(WS, ALERT_ID).await.or_fail(c, "the alert"),
        expected_alert(),
        "{label}"
    );
    assert_eq!(
        s.list_alerts(Some(WS)).await.or_fail(c, "alerts"),
        vec![expected_alert()],
        "{label}"
    );
    assert_eq!(
        s.list_evaluations(ALERT_ID, 10)
            .await
            .or_fail(c, "evaluations"),
        vec![expected_evaluation()],
        "{label}"
    );
}

async fn secrets_and_statements(c: &Context, people: &People) {
    let s = &c.store;
    let label = &c.label;
    let kept = s
        .shared_secret(SECRET_NAME, "a candidate", T0 + 300)
        .await
        .or_fail(c, "a shared secret");
    assert_eq!(
        kept,
        if c.has(c.v.server_secrets) {
            SECRET
        } else {
            "a candidate"
        },
        "{label}"
    );
    if c.has(c.v.sql_statements) {
        assert_eq!(
            s.get_statement(STATEMENT_ID)
                .await
                .or_fail(c, "a statement"),
            Some(StatementRecord {
                id: STATEMENT_ID.into(),
                workspace: WS.into(),
                owner_id: people.alice.id,
                server: "server-ä".into(),
                state: "SUCCEEDED".into(),
                outcome: Some(statement_outcome()),
                cancel_requested: false,
                submitted_at: T0 + 220,
                seen_at: T0 + 221,
            }),
            "{label}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Usable: writes next to the old data

/// The events the release had not delivered go out to the webhooks it had.
async fn delivery_after_upgrade(c: &Context, pending: &[(i64, Change)]) {
    let s = &c.store;
    let label = &c.label;
    let taken = s
        .fan_out(100, T0 + 400)
        .await
        .or_fail(c, "fan out the pending events");
    assert_eq!(taken, pending.len(), "{label}");
    if !c.has(c.v.webhooks) {
        return;
    }
    let deliveries = s
        .deliveries(&DeliveryQuery {
            workspace: WS.into(),
            webhook_id: Some(WEBHOOK_ID.into()),
            status: None,
            limit: 100,
        })
        .await
        .or_fail(c, "deliveries");
    // Of the pending events the webhook subscribes to the version's creation.
    let version_created = pending
        .iter()
        .find(|(_, change)| matches!(change, Change::VersionCreated { .. }))
        .unwrap_or_else(|| panic!("{label}: the version's creation was pending"));
    assert_eq!(deliveries.len(), 2, "{label}");
    assert_eq!(
        (
            deliveries[0].event_id,
            deliveries[0].event_name.as_str(),
            deliveries[0].status.as_str(),
        ),
        (version_created.0, "model_version.created", "pending"),
        "{label}"
    );
    assert!(
        s.pending_events("webhooks", 100)
            .await
            .or_fail(c, "pending events")
            .is_empty(),
        "{label}"
    );
}

async fn use_identity(c: &Context, people: &People) {
    let s = &c.store;
    let label = &c.label;
    assert!(
        !s.ensure_workspace(WS, "tester")
            .await
            .or_fail(c, "ensure the workspace"),
        "{label}: the workspace exists"
    );
    let newcomer = s
        .create_principal("newcomer ✓", PrincipalKind::User, false, None, "tester")
        .await
        .or_fail(c, "a new principal");
    let old = [
        people.alice.id,
        people.bot.id,
        people.team.id,
        people.ops.id,
    ];
    assert!(
        newcomer.id > *old.iter().max().unwrap_or(&0),
        "{label}: a new principal takes a new id"
    );
    s.add_group_member(TEAM, "newcomer ✓", "tester")
        .await
        .or_fail(c, "a new member");
    s.create_token(
        &NewToken {
            token_id: "tok-new",
            principal_name: "newcomer ✓",
            token_hash: "hash-new",
            comment: "",
            expires_at: None,
            workspace: None,
        },
        "tester",
    )
    .await
    .or_fail(c, "a new token");
    let principal = s
        .principal_for_token("hash-new", T0)
        .await
        .or_fail(c, "the new token")
        .unwrap_or_else(|| panic!("{label}: the new token is refused"));
    assert_eq!(principal.group_ids, vec![people.team.id], "{label}");
    s.set_active(OPS, true, "tester")
        .await
        .or_fail(c, "activate an old principal");
    s.set_principal_attributes(ALICE, &json!({"displayName": "Ålice"}), "tester")
        .await
        .or_fail(c, "attributes of an old principal");
    assert_eq!(
        s.get_principal(ALICE)
            .await
            .or_fail(c, "a principal")
            .attributes,
        json!({"displayName": "Ålice"}),
        "{label}"
    );
}

async fn use_tracking(c: &Context, people: &People) {
    let s = &c.store;
    let label = &c.label;
    assert_eq!(
        s.create_experiment(WS, "nouvelle ✓", None, &[], people.alice.id)
            .await
            .or_fail(c, "a new experiment"),
        "2",
        "{label}: experiment ids go on from the old ones"
    );
    s.log_batch(
        WS,
        RUN,
        &LogBatch {
            // A new point, and an old one logged again (kept once).
            metrics: vec![
                metric("loss", 0.25, T0 + 2, 2),
                metric("epochs", 3.0, T0, 0),
            ],
            params: vec![kv("new", "ü")],
            tags: vec![kv("note", "changed")],
        },
    )
    .await
    .or_fail(c, "log to an old run");
    let history = s
        .metric_history(WS, RUN, "loss", 0, 100)
        .await
        .or_fail(c, "history");
    assert_eq!(history.items.len(), 4, "{label}");
    let history = s
        .metric_history(WS, RUN, "epochs", 0, 100)
        .await
        .or_fail(c, "history");
    assert_eq!(
        history.items.len(),
        1,
        "{label}: a point logged again is kept once"
    );
    let run = s.get_run(WS, RUN).await.or_fail(c, "the run");
    let loss = run
        .data
        .metrics
        .iter()
        .find(|m| m.key == "loss")
        .unwrap_or_else(|| panic!("{label}: no loss"));
    assert_eq!((loss.value, loss.step), (0.25, 2), "{label}");
    assert_eq!(
        s.run_tag(WS, RUN, "note").await.or_fail(c, "a tag"),
        Some("changed".to_string()),
        "{label}"
    );
    let refused = s
        .log_batch(
            WS,
            RUN,
            &LogBatch {
                params: vec![kv("lr", "0.5")],
                ..LogBatch::default()
            },
        )
        .await
        .expect_err("an old param cannot change");
    assert_eq!(refused.code, ErrorCode::InvalidParameterValue, "{label}");
    s.set_logged_model_tags(WS, LOGGED_MODEL, &[kv("new", "✓")])
        .await
        .or_fail(c, "tag an old logged model");
}

async fn use_registry(c: &Context, people: &People) {
    let s = &c.store;
    let label = &c.label;
    let actor = people.actor();
    let created = s
        .create_model_version(
            WS,
            &NewModelVersion {
                name: MODEL.into(),
                source: format!("models:/{LOGGED_MODEL}"),
                run_id: Some(RUN.into()),
                run_link: None,
                description: "nouvelle".into(),
                tags: vec![kv("fresh", "✓")],
                model_id: Some(LOGGED_MODEL.into()),
                storage_location: format!("_registry/{MODEL_ID}/4"),
                checksum: "f00d".into(),
            },
            &actor,
        )
        .await
        .or_fail(c, "a new version of an old model");
    assert_eq!(
        created.version, 4,
        "{label}: the deleted version's number is not reused"
    );
    s.set_model_version_tag(WS, MODEL, 2, &kv("tricky", "changed"), &actor)
        .await
        .or_fail(c, "tag an old version");
    assert_eq!(
        s.get_model_version(WS, MODEL, 2)
            .await
            .or_fail(c, "a version")
            .tags,
        vec![kv("tricky", "changed")],
        "{label}"
    );
    s.set_alias(WS, MODEL, "champion", 4, &actor)
        .await
        .or_fail(c, "move an old alias");
    assert_eq!(
        s.version_by_alias(WS, MODEL, "champion")
            .await
            .or_fail(c, "an alias")
            .version,
        4,
        "{label}"
    );
    if c.has(c.v.activities) {
        s.resolve_transition_request(
            WS,
            MODEL,
            2,
            Stage::Staging,
            RequestOutcome::Approve {
                archive_existing: false,
            },
            None,
            "ok ✓",
            &actor,
        )
        .await
        .or_fail(c, "approve an old request");
        assert_eq!(
            s.get_model_version(WS, MODEL, 2)
                .await
                .or_fail(c, "a version")
                .current_stage,
            Stage::Staging,
            "{label}"
        );
    }
}

async fn use_catalog(c: &Context, people: &People) {
    let s = &c.store;
    let label = &c.label;
    let actor = people.actor();
    s.create_table(
        &NewTable {
            table_id: "tbl-new".into(),
            catalog: WS.into(),
            schema: "sales".into(),
            name: "fresh".into(),
            table_type: TableType::Managed,
            columns: table_columns(),
            storage_location: "file:///lake/legacy/sales/fresh".into(),
            view_definition: String::new(),
            comment: String::new(),
            properties: BTreeMap::new(),
        },
        &actor,
    )
    .await
    .or_fail(c, "a new table in an old schema");
    assert_eq!(
        s.list_tables(WS, "sales", 10, 0)
            .await
            .or_fail(c, "tables")
            .items
            .len(),
        3,
        "{label}"
    );
    let tags = s
        .update_catalog_tags(
            WS,
            SecurableType::Table,
            TABLE,
            &BTreeMap::from([("new".to_string(), "ü".to_string())]),
            &["pii".to_string()],
            &actor,
        )
        .await
        .or_fail(c, "tag an old table");
    assert_eq!(
        tags,
        BTreeMap::from([("new".to_string(), "ü".to_string())]),
        "{label}"
    );
    if c.has(c.v.ingested_files) {
        let again = s
            .record_ingested_file(&expected_ingested_file())
            .await
            .expect_err("a file ingested before the upgrade is known");
        assert_eq!(again.code, ErrorCode::ResourceAlreadyExists, "{label}");
    }
    if c.has(c.v.lineage) {
        let old = s
            .lineage_writes(&Node::table(TABLE), 10)
            .await
            .or_fail(c, "writes")[0]
            .id;
        let id = s
            .record_lineage(&NewLineage {
                target: Node::table(TABLE),
                target_version: Some(6),
                sources: vec![SourceRead {
                    node: Node::table("legacy.sales.customers"),
                    version: Some(3),
                }],
                operation: "MERGE".into(),
                actor: ALICE.into(),
                statement: None,
                created_at: T0 + 500,
            })
            .await
            .or_fail(c, "a new write");
        assert!(id > old, "{label}");
        let edges = s
            .lineage_edges(&Node::table(TABLE), Direction::Upstream)
            .await
            .or_fail(c, "edges");
        let customers = edges
            .iter()
            .find(|e| e.source == Node::table("legacy.sales.customers"))
            .unwrap_or_else(|| panic!("{label}: no edge"));
        assert_eq!(
            (customers.writes, customers.source_version),
            (2, Some(3)),
            "{label}"
        );
    }
    if c.has(c.v.serving) {
        let updated = s
            .update_endpoint_config(WS, ENDPOINT, &endpoint_config("2"), T0 + 600, &actor)
            .await
            .or_fail(c, "update an old endpoint");
        assert_eq!(updated.config_version, 4, "{label}");
    }
}

async fn use_jobs(c: &Context, people: &People) {
    let s = &c.store;
    let label = &c.label;
    let actor = people.actor();
    let old = s.list_jobs(WS, None, 0, 10).await.or_fail(c, "jobs").items[0].job_id;
    let job = s
        .create_job(WS, &json!({"name": "fresh"}), ALICE, T0 + 700, &actor)
        .await
        .or_fail(c, "a new job");
    assert!(job.job_id > old, "{label}: job ids are never reused");
    if c.has(c.v.job_runs) {
        let run = s
            .list_job_runs(WS, &RunFilter::default(), true, 0, 10)
            .await
            .or_fail(c, "runs")
            .items
            .remove(0);
        let last = run.tasks.iter().map(|t| t.run_id).max().unwrap_or_default();
        let retry = s
            .insert_task_run(&TaskRun {
                run_id: 0,
                attempt_number: 3,
                ..run.tasks[0].clone()
            })
            .await
            .or_fail(c, "a new attempt of an old task");
        assert!(retry.run_id > last, "{label}: run ids are never reused");
        assert!(
            !s.hold_lease(LEASE, "server-b", T0, T0 + 1)
                .await
                .or_fail(c, "a held lease"),
            "{label}: the old holder's lease still holds"
        );
        if c.has(c.v.task_logs) {
            let task = run.tasks[0].run_id;
            s.append_task_log(task, 12, b"more")
                .await
                .or_fail(c, "log more");
            assert_eq!(
                s.read_task_log(task, 0, 100).await.or_fail(c, "the log").1,
                16,
                "{label}"
            );
            let script = s
                .workspace_object(WS, "/Users/ålice/etl.py")
                .await
                .or_fail(c, "a file")
                .map_or(0, |o| o.object_id);
            let made = s
                .put_workspace_file(
                    WS,
                    "/Users/ålice/new.py",
                    FileType::File,
                    None,
                    b"x = 1\n",
                    false,
                )
                .await
                .or_fail(c, "a new file in an old folder");
            assert!(made.object_id > script, "{label}");
            assert_eq!(
                s.list_workspace_objects(WS, "/Users/ålice", false)
                    .await
                    .or_fail(c, "a folder")
                    .len(),
                3,
                "{label}"
            );
        }
    }
}

async fn use_monitors(c: &Context) {
    let s = &c.store;
    let label = &c.label;
    let refreshes = s.list_refreshes(TABLE_ID, 10).await.or_fail(c, "refreshes");
    let running = refreshes[0].refresh_id;
    s.beat_refresh(TABLE_ID, running, T0 + 3000)
        .await
        .or_fail(c, "a heartbeat");
    assert!(
        s.stalled_refreshes(T0 + 2000)
            .await
            .or_fail(c, "stalled")
            .is_empty(),
        "{label}: the heartbeat counts"
    );
    assert!(
        s.transition_refresh(
            TABLE_ID,
            running,
            &[RefreshState::Running],
            RefreshState::Failed,
            T0 + 3001,
            &RefreshEnd {
                message: Some("stopped ✗".into()),
                versions: None,
            },
        )
        .await
        .or_fail(c, "end an old refresh"),
        "{label}"
    );
    let next = s
        .create_refresh(TABLE_ID, RefreshTrigger::Manual, T0 + 3002)
        .await
        .or_fail(c, "a new refresh");
    assert!(next.refresh_id > running, "{label}");
}

async fn use_alerts(c: &Context) {
    let s = &c.store;
    let label = &c.label;
    s.record_evaluation(
        &Evaluation {
            alert_id: ALERT_ID.into(),
            evaluated_at: T0 + 800,
            reason: EvaluationReason::Manual,
            state: AlertState::Ok,
            value: Some("0.1".into()),
            threshold: Some("0.3".into()),
            message: None,
            notified: false,
        },
        None,
    )
    .await
    .or_fail(c, "evaluate an old alert");
    let evaluations = s
        .list_evaluations(ALERT_ID, 10)
        .await
        .or_fail(c, "evaluations");
    assert_eq!(
        evaluations
            .iter()
            .map(|e| e.evaluated_at)
            .collect::<Vec<_>>(),
        vec![T0 + 800, T0 + 202],
        "{label}"
    );
    assert_eq!(
        s.get_alert(WS, ALERT_ID)
            .await
            .or_fail(c, "the alert")
            .state,
        AlertState::Ok,
        "{label}"
    );
}
