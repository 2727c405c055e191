//! `tarn worker`: runs job tasks on this machine for the servers that share a metadata store.
//! It claims ready task runs from the store like a server's own executor does, runs them with
//! their clients pointed at a server, and ships their logs into the store so any server reads
//! them. Kill it and its claims lapse: the servers' runner retries or fails its tasks.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use tokio::sync::watch;

use crate::server::{ExecutorArgs, StoreArgs, host_name, shutdown_signal};

#[derive(Args)]
pub struct WorkerArgs {
    /// The metadata store the servers use (`--database-url postgres://...`); this worker's
    /// task folders go under DATA_DIR/jobs.
    #[command(flatten)]
    pub store: StoreArgs,
    /// A tarn server the tasks' clients talk to (`MLFLOW_TRACKING_URI`, `DATABRICKS_HOST`),
    /// e.g. `http://tarn.internal:5000`.
    #[arg(long, env = "TARN_SERVER_URL")]
    pub server_url: String,
    /// This worker's name in the store; keep it across restarts, so a restarted worker ends
    /// what it left running. Default: the host name and the data directory.
    #[arg(long, env = "TARN_WORKER_NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub jobs: ExecutorArgs,
}

pub async fn run(args: WorkerArgs) -> Result<()> {
    let stop = shutdown_signal();
    let server_url = server_url(&args.server_url)?;
    if args.jobs.slots == 0 {
        bail!("--jobs-slots 0 runs nothing: a worker needs at least one slot");
    }
    let store = args.store.open().await?;
    let folder = args.store.jobs_folder();
    let name = match args.name {
        Some(name) => name,
        None => default_name(&args.store.data_dir)?,
    };
    let config = args
        .jobs
        .config(name.clone(), server_url.clone(), folder, true);
    tracing::info!(
        worker = %name,
        backend = store.backend_name(),
        server = %server_url,
        slots = config.slots,
        "tarn worker running job tasks"
    );
    // No runner here wakes this executor: it looks for ready tasks in the store on its own.
    let executor = Arc::new(tarn_jobs::executor::Executor::new(
        store,
        config,
        tarn_jobs::runs::Wakeup::default(),
        tarn_jobs::runs::Wakeup::default(),
        Arc::new(tarn_identity::AuthCache::default()),
    ));
    let (stopping, stopped) = watch::channel(false);
    let running = tokio::spawn(executor.run(stopped));
    stop.await;
    let _ = stopping.send(true);
    running.await.context("the worker's executor failed")?;
    tracing::info!(worker = %name, "tarn worker stopped");
    Ok(())
}

/// The server URL, checked: http(s), a host, nothing after the path.
fn server_url(given: &str) -> Result<String> {
    let url = url::Url::parse(given).with_context(|| format!("--server-url {given:?}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!("--server-url must be an http(s) URL of a tarn server, not {given:?}");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("--server-url takes no query or fragment: {given:?}");
    }
    Ok(given.trim_end_matches('/').to_string())
}

/// `host:/absolute/data/dir`: stable across restarts and distinct for two workers on a machine
/// (which need distinct data directories anyway).
fn default_name(data_dir: &std::path::Path) -> Result<String> {
    let folder: PathBuf = data_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", data_dir.display()))?;
    Ok(format!("{}:{}", host_name(), folder.display()))
}
