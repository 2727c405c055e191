//! tarn's HTTP layer. Handlers are thin: they parse arguments, check permissions and call the
//! store or a plain function, and errors become MLflow's error JSON. `build_router` is used by
//! `tarn server` and by the in-process tests alike.

use std::net::SocketAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;

use axum::Router;
use axum::routing::get;

pub mod bootstrap;
pub mod error;
pub mod extract;
mod keep_alive;
mod listener;
pub mod metrics;
mod routes;
pub mod scoring;
mod state;

pub use bootstrap::{ADMIN_USER, Bootstrap, bootstrap};
pub use state::{AppState, JobsSettings, Settings};

/// The whole HTTP surface: every API at its bare path (workspace `dev`) and under
/// `/ws/{workspace}`.
pub fn build_router(state: AppState) -> Router {
    let api = routes::api();
    Router::new()
        .route("/health", get(|| async { "OK" }))
        .route("/version", get(|| async { env!("CARGO_PKG_VERSION") }))
        .route("/metrics", get(routes::prometheus))
        // The Databricks SDK asks this first for the host's identity provider; tarn has none
        // and says so, rather than answer a 404 the SDK warns about for every client it makes.
        .route(
            "/.well-known/databricks-config",
            get(|| async { axum::Json(serde_json::json!({ "oidc_endpoint": "" })) }),
        )
        .merge(api.clone())
        .nest("/ws/{workspace}", api)
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn(
            keep_alive::close_when_body_unread,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish. The background tasks
/// (the job runner and this server's executor, webhook delivery, online refreshes, endpoint
/// sync, the commit watcher, monitors' schedules, the sweeper) run alongside and stop with
/// the server; undelivered deliveries stay queued, and tasks still running keep their claims
/// until the next start.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let server_url = listener
        .local_addr()
        .map(|address| task_facing_url(&address))?;
    let listener = listener::no_delay(listener);
    let (stop, stopped) = watch::channel(false);
    let jobs = &state.jobs;
    let executor = std::sync::Arc::new(tarn_jobs::executor::Executor::new(
        state.store.clone(),
        tarn_jobs::executor::ExecutorConfig {
            worker: jobs.executor.worker.clone(),
            slots: jobs.executor.slots,
            python: jobs.executor.python.clone(),
            server_url,
            folder: jobs.executor.folder.clone(),
            lease: jobs.executor.lease,
            // This server reads its tasks' logs where they are written.
            ship_logs: false,
        },
        jobs.ready.clone(),
        jobs.runner.clone(),
        state.auth_cache.clone(),
    ));
    let tasks = [
        tokio::spawn(tarn_jobs::runner::run(
            state.store.clone(),
            jobs.executor.worker.clone(),
            jobs.runner.clone(),
            jobs.ready.clone(),
            stopped.clone(),
        )),
        tokio::spawn(executor.run(stopped.clone())),
        tokio::spawn(tarn_events::webhooks::run_dispatcher(
            state.store.clone(),
            state.webhooks.clone(),
            stopped.clone(),
        )),
        tokio::spawn(every(
            ONLINE_REFRESH_TICK,
            stopped.clone(),
            refresh_online_features(state.clone()),
        )),
        tokio::spawn(every(
            tarn_serving::SYNC_EVERY,
            stopped.clone(),
            sync_endpoints(state.clone()),
        )),
        tokio::spawn(every(
            state.table_watch_every,
            stopped.clone(),
            watch_tables(state.clone()),
        )),
        tokio::spawn(every(
            MONITOR_SCHEDULE_TICK,
            stopped.clone(),
            start_scheduled_refreshes(state.clone()),
        )),
        tokio::spawn(every(
            ALERT_PASS_EVERY,
            stopped.clone(),
            evaluate_alerts(state.clone()),
        )),
        tokio::spawn(every(
            UNPACK_EVERY,
            stopped.clone(),
            unpack_inference_tables(state.clone()),
        )),
        tokio::spawn(every(
            UNOWNED_COPY_SWEEP_EVERY,
            stopped,
            remove_unowned_registry_copies(state.clone()),
        )),
    ];
    let served = axum::serve(
        listener,
        build_router(state.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    // Requests in flight have finished: what they logged is written before we return.
    state.endpoints.shutdown().await;
    served
}

/// The URL a task started here reaches this server at: the listening address, with a
/// wildcard one replaced by loopback.
fn task_facing_url(address: &SocketAddr) -> String {
    let ip = if address.ip().is_unspecified() {
        match address {
            SocketAddr::V4(_) => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        }
    } else {
        address.ip()
    };
    format!("http://{}", SocketAddr::new(ip, address.port()))
}

/// Runs `tick` now and then every `period` until the server stops.
async fn every<Tick, Ticked>(period: Duration, mut stopped: watch::Receiver<bool>, mut tick: Tick)
where
    Tick: FnMut() -> Ticked,
    Ticked: std::future::Future<Output = ()>,
{
    loop {
        tick().await;
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// How often registry copies no version owns are looked for (also once at start).
const UNOWNED_COPY_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Removes registry copies an interrupted create or delete left behind.
fn remove_unowned_registry_copies(state: AppState) -> impl FnMut() -> BoxFuture<'static, ()> {
    move || {
        let state = state.clone();
        Box::pin(async move {
            let removed = tarn_registry::remove_unowned_copies(
                state.store.as_ref(),
                &state.artifacts,
                tarn_registry::UNOWNED_COPY_GRACE,
            )
            .await;
            match removed {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "removed registry copies no version owns"),
                Err(err) => {
                    tracing::warn!(error = %err.report(), "cannot look for unowned registry copies")
                }
            }
        })
    }
}

/// Keeps the running serving endpoints in line with the store and the registry.
fn sync_endpoints(state: AppState) -> impl FnMut() -> BoxFuture<'static, ()> {
    move || {
        let state = state.clone();
        Box::pin(async move {
            if let Err(err) = state.endpoints.sync().await {
                tracing::warn!(error = %err.report(), "cannot list serving endpoints");
            }
        })
    }
}

/// Records the commits other Delta writers made to tables as events.
fn watch_tables(state: AppState) -> impl FnMut() -> BoxFuture<'static, ()> {
    move || {
        let state = state.clone();
        Box::pin(async move {
            match tarn_lake::commits::record_outside_commits(state.store.as_ref()).await {
                Ok(scanned) if scanned.outside_commits > 0 => tracing::info!(
                    commits = scanned.outside_commits,
                    "recorded commits other writers made to tables"
                ),
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err.report(), "cannot list tables to watch"),
            }
        })
    }
}

/// How often the server looks for monitors whose schedule came due (well within the lease's
/// term, so the holder keeps it).
const MONITOR_SCHEDULE_TICK: Duration = Duration::from_secs(5);

/// Starts monitors' scheduled refreshes while this server holds the scheduler's lease.
fn start_scheduled_refreshes(state: AppState) -> impl FnMut() -> BoxFuture<'static, ()> {
    move || {
        let state = state.clone();
        Box::pin(async move {
            let holder = &state.jobs.executor.worker;
            let now = tarn_core::ids::now_millis();
            match tarn_monitor::schedule::tick(&state.lake, &state.store, holder, now).await {
                Ok(0) => {}
                Ok(started) => tracing::info!(started, "started scheduled monitor refreshes"),
                Err(err) => {
                    tracing::warn!(error = %err.report(), "cannot start scheduled monitor refreshes")
                }
            }
        })
    }
}

/// How often the server evaluates the alerts that refreshes or schedules made due.
const ALERT_PASS_EVERY: Duration = Duration::from_secs(2);

/// Evaluates alerts after monitor refreshes and on their schedules while this server holds
/// the evaluator's lease.
fn evaluate_alerts(state: AppState) -> impl FnMut() -> BoxFuture<'static, ()> {
    move || {
        let state = state.clone();
        Box::pin(async move {
            let holder = &state.jobs.executor.worker;
            let now = tarn_core::ids::now_millis();
            match tarn_monitor::alerts::pass(&state.lake, state.store.as_ref(), holder, now).await {
                Ok(evaluations) => {
                    for e in evaluations {
                        tracing::info!(alert = %e.alert_id, state = e.state.as_str(), value = ?e.value, reason = e.reason.as_str(), "evaluated an alert");
                    }
                }
                Err(err) => tracing::warn!(error = %err.report(), "cannot evaluate alerts"),
            }
        })
    }
}

/// How often the server unpacks what endpoints logged: a logged request becomes a prediction
/// row within about this long after its payload row is written.
const UNPACK_EVERY: Duration = Duration::from_secs(2);

/// Keeps every endpoint's predictions table up with its payload table and label table.
fn unpack_inference_tables(state: AppState) -> impl FnMut() -> BoxFuture<'static, ()> {
    move || {
        let state = state.clone();
        Box::pin(async move {
            let holder = &state.jobs.executor.worker;
            let now = tarn_core::ids::now_millis();
            match tarn_serving::unpack::tick(&state.lake, state.store.as_ref(), holder, now).await {
                Ok(done) => {
                    for unpacked in done {
                        tracing::info!(endpoint = %unpacked.endpoint, table = %unpacked.table, rows = unpacked.rows, labeled = unpacked.labeled, "unpacked inference rows");
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err.report(), "cannot unpack inference tables")
                }
            }
        })
    }
}

/// How often the server looks for published feature tables due a refresh.
const ONLINE_REFRESH_TICK: Duration = Duration::from_secs(2);

/// Keeps continuously published and scheduled feature tables fresh in the online store.
fn refresh_online_features(state: AppState) -> impl FnMut() -> BoxFuture<'static, ()> {
    move || {
        let state = state.clone();
        Box::pin(async move {
            let refreshed = tarn_features::online::refresh_due(
                &state.lake,
                state.store.as_ref(),
                state.online.as_ref(),
                tarn_core::ids::now_millis(),
            )
            .await;
            match refreshed {
                Ok(published) => {
                    for p in published {
                        tracing::info!(table = %p.table_name, version = p.version, keys_written = p.keys_written, keys_removed = p.keys_removed, "refreshed online features");
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err.report(), "cannot list publications to refresh")
                }
            }
        })
    }
}
