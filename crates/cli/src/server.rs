//! `tarn server`: its flags, the state it starts from, and how it stops.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use tarn_core::store::MetaStore;

#[derive(Args, Clone)]
pub struct StoreArgs {
    /// Folder for the SQLite database, artifacts and the admin token.
    #[arg(
        long,
        global = true,
        env = "TARN_DATA_DIR",
        default_value = "./tarn-data"
    )]
    pub data_dir: PathBuf,
    /// Metadata store: `postgres://...` or `sqlite://PATH`; default `sqlite://DATA_DIR/tarn.db`.
    #[arg(long, global = true, env = "TARN_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl StoreArgs {
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("tarn.db").display()))
    }

    /// The artifact root given, or DATA_DIR/artifacts.
    pub fn artifact_root(&self, given: Option<String>) -> String {
        given.unwrap_or_else(|| self.data_dir.join("artifacts").display().to_string())
    }

    /// Where job tasks keep their logs and files: DATA_DIR/jobs.
    pub fn jobs_folder(&self) -> PathBuf {
        self.data_dir.join("jobs")
    }

    /// The lake root given, or DATA_DIR/lake.
    pub fn lake_root(&self, given: Option<String>) -> String {
        given.unwrap_or_else(|| self.data_dir.join("lake").display().to_string())
    }

    pub async fn open(&self) -> Result<Arc<dyn MetaStore>> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create {}", self.data_dir.display()))?;
        Ok(tarn_store::open(&self.database_url()).await?)
    }
}

#[derive(Args, Clone)]
pub struct ServerArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The address to listen on (`TARN_HOST` names the server client commands talk to).
    #[arg(long, env = "TARN_BIND_HOST", default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, env = "TARN_PORT", default_value_t = 5000)]
    pub port: u16,
    /// The lake: managed Delta tables live here; a local folder or `s3://bucket/prefix`,
    /// default DATA_DIR/lake.
    #[arg(long, env = "TARN_LAKE_ROOT")]
    pub lake_root: Option<String>,
    /// Artifacts: a local folder or `s3://bucket/prefix`; default DATA_DIR/artifacts.
    #[arg(long, env = "TARN_ARTIFACT_ROOT")]
    pub artifact_root: Option<String>,
    /// The online feature store: `sqlite://PATH` or `redis://HOST:PORT/DB` (shared by replicas);
    /// default DATA_DIR/online.db.
    #[arg(long, env = "TARN_ONLINE_STORE")]
    pub online_store: Option<String>,
    /// The admin's token; generated into DATA_DIR/admin.token when not given.
    #[arg(long, env = "TARN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Let webhooks reach loopback and private addresses (refused by default: SSRF).
    #[arg(long, env = "TARN_WEBHOOKS_ALLOW_PRIVATE")]
    pub webhooks_allow_private: bool,
    /// First webhook retry delay in milliseconds; doubles per attempt, capped at 5 minutes.
    #[arg(
        long,
        env = "TARN_WEBHOOK_RETRY_BASE_MS",
        default_value_t = 1000,
        hide = true
    )]
    pub webhook_retry_base_ms: u64,
    /// Memory one SQL statement's operators may hold, in MiB; sorts, joins and aggregations
    /// spill to disk past it.
    #[arg(long, env = "TARN_SQL_MEMORY_LIMIT_MIB", default_value_t = 2048)]
    pub sql_memory_limit_mib: usize,
    /// How long one SQL statement may run, in seconds, before it is cancelled.
    #[arg(long, env = "TARN_SQL_TIMEOUT_SECONDS", default_value_t = 3600)]
    pub sql_timeout_seconds: u64,
    /// How long a serving endpoint's scoring thread waits for more requests to batch with the
    /// one it holds, in microseconds (0: only those already queued).
    #[arg(long, env = "TARN_SERVING_MAX_WAIT_US", default_value_t = 0)]
    pub serving_max_wait_us: u64,
    /// Scoring threads per served model version; default one per core.
    #[arg(long, env = "TARN_SERVING_THREADS")]
    pub serving_threads: Option<usize>,
    /// How often tables' Delta logs are read for commits other writers made (Spark,
    /// `deltalake`), which become `table.committed` events, in milliseconds.
    #[arg(long, env = "TARN_TABLE_WATCH_INTERVAL_MS", default_value_t = 5000)]
    pub table_watch_interval_ms: u64,
    #[command(flatten)]
    pub jobs: ExecutorArgs,
}

/// How job tasks run here: `tarn server`'s and `tarn worker`'s flags.
#[derive(Args, Clone)]
pub struct ExecutorArgs {
    /// The Python interpreter job tasks run with (spark_python_task, python_wheel_task,
    /// notebook_task); a virtual environment's holds the task's packages.
    #[arg(
        long = "jobs-python",
        env = "TARN_JOBS_PYTHON",
        default_value = "python3"
    )]
    pub python: PathBuf,
    /// Job tasks run here at once (on a server, 0: only `tarn worker`s run them).
    #[arg(long = "jobs-slots", env = "TARN_JOBS_SLOTS", default_value_t = 8)]
    pub slots: usize,
    /// How long, in seconds, an executor's claim on a task holds without renewal: how soon a
    /// task whose executor died is failed or retried.
    #[arg(
        long = "jobs-lease-seconds",
        env = "TARN_JOBS_LEASE_SECONDS",
        default_value_t = 30
    )]
    pub lease_seconds: u64,
}

impl ExecutorArgs {
    /// The executor these flags describe, named `worker` in the store, keeping its tasks'
    /// folders under `folder`.
    pub fn config(
        &self,
        worker: String,
        server_url: String,
        folder: PathBuf,
        ship_logs: bool,
    ) -> tarn_jobs::executor::ExecutorConfig {
        tarn_jobs::executor::ExecutorConfig {
            worker,
            slots: self.slots,
            python: self.python.clone(),
            server_url,
            folder,
            lease: std::time::Duration::from_secs(self.lease_seconds.max(1)),
            ship_logs,
        }
    }
}

impl ServerArgs {
    /// A server's flags as `tarn server` would take them with none given (environment
    /// variables still apply).
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            server: ServerArgs,
        }
        <Only as clap::Parser>::parse_from(["tarn"]).server
    }
}

/// Opens the store, bootstraps it, binds and serves until Ctrl-C or SIGTERM.
pub async fn start_server(
    args: &ServerArgs,
) -> Result<(
    tarn_server::AppState,
    tokio::net::TcpListener,
    tarn_server::Bootstrap,
)> {
    let store = args.store.open().await?;
    let bootstrap = tarn_server::bootstrap(
        store.as_ref(),
        &args.store.data_dir,
        args.admin_token.as_deref(),
    )
    .await?;
    let artifact_root = args.store.artifact_root(args.artifact_root.clone());
    let artifacts = tarn_artifacts::ArtifactStore::open(&artifact_root)?;
    let lake = tarn_lake::Lake::open(&args.store.lake_root(args.lake_root.clone()))?;
    let online_url = args.online_store.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            args.store.data_dir.join("online.db").display()
        )
    });
    let online = tarn_features::online::open(&online_url).await?;
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let mut scoring = tarn_models::BatcherOptions {
        max_wait: std::time::Duration::from_micros(args.serving_max_wait_us),
        ..Default::default()
    };
    if let Some(threads) = args.serving_threads {
        scoring.threads = threads.max(1);
    }
    let settings = tarn_server::Settings {
        webhooks: tarn_events::webhooks::WebhookSettings {
            allow_private: args.webhooks_allow_private,
            retry_base: std::time::Duration::from_millis(args.webhook_retry_base_ms),
            ..Default::default()
        },
        scoring,
        serving_limits: tarn_serving::Limits::default(),
        statements: tarn_lake::statements::StatementLimits {
            memory: args.sql_memory_limit_mib.saturating_mul(1024 * 1024),
            max_duration: std::time::Duration::from_secs(args.sql_timeout_seconds),
        },
        statements_folder: args.store.data_dir.join("statements"),
        inference_spool: args.store.data_dir.join("inference-spool"),
        table_watch_every: std::time::Duration::from_millis(args.table_watch_interval_ms.max(10)),
        jobs: tarn_server::JobsSettings {
            folder: args.store.jobs_folder(),
            python: args.jobs.python.clone(),
            slots: args.jobs.slots,
            lease: std::time::Duration::from_secs(args.jobs.lease_seconds.max(1)),
            // Stable across restarts: a restarted server ends what its previous start left.
            worker: format!("{}:{}", host_name(), listener.local_addr()?.port()),
        },
        link_key: tarn_core::signed_urls::shared_key(store.as_ref()).await?,
    };
    let state = tarn_server::AppState::new(store, artifacts, lake, online, settings)?;
    Ok((state, listener, bootstrap))
}

/// This machine's name, as executors' names in the store begin.
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

pub async fn run_server(args: ServerArgs) -> Result<()> {
    let stop = shutdown_signal();
    let (state, listener, bootstrap) = start_server(&args).await?;
    let address = listener.local_addr()?;
    announce_admin_token(&bootstrap);
    tracing::info!(%address, backend = state.store.backend_name(), "tarn server listening");
    tarn_server::serve(state, listener, stop).await?;
    tracing::info!("tarn server stopped");
    Ok(())
}

pub fn announce_admin_token(bootstrap: &tarn_server::Bootstrap) {
    if let (Some(token), Some(file)) = (
        &bootstrap.generated_admin_token,
        &bootstrap.admin_token_file,
    ) {
        eprintln!(
            "Admin token (shown once, also saved to {}):\n  {token}",
            file.display()
        );
    }
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when
/// first polled: a SIGTERM that arrives while the server starts still stops it gracefully
/// (handing back its leases) instead of killing it.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        [SignalKind::interrupt(), SignalKind::terminate()].map(|kind| {
            signal(kind)
                .map_err(|err| tracing::warn!(error = %err, "cannot listen for a stop signal"))
                .ok()
        })
    };
    async move {
        #[cfg(unix)]
        {
            let [interrupt, terminate] = signals;
            let received = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = received(interrupt) => {},
                () = received(terminate) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}

/// Reads the admin token a server started from `data_dir` uses.
pub fn read_admin_token(data_dir: &Path) -> Result<String> {
    let file = data_dir.join("admin.token");
    Ok(std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .trim()
        .to_string())
}
