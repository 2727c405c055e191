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

/// The routes every server mounts outside the workspace APIs.
fn root_routes() -> routes::Mounted {
    routes::Mounted::new()
        .route("/health", get(|| async { "OK" }))
        .route("/version", get(|| async { env!("CARGO_PKG_VERSION") }))
        .route("/metrics", get(routes::prometheus))
        // The Databricks SDK asks this first for the host's identity provider; tarn has none
        // and says so, rather than answer a 404 the SDK warns about for every client it makes.
        .route(
            "/.well-known/databricks-config",
            get(|| async { axum::Json(serde_json::json!({ "oidc_endpoint": "" })) }),
        )
}

/// Every API at its bare path (workspace `dev`) and under `/ws/{workspace}`.
fn mounted() -> routes::Mounted {
    let api = routes::api();
    root_routes()
        .merge(api.clone())
        .nest("/ws/{workspace}", api)
}

/// Every path the router mounts, in axum's syntax (`{name}`, `{*rest}`).
pub fn mounted_paths() -> Vec<String> {
    mounted().into_parts().1
}

/// The whole HTTP surface: every API at its bare path (workspace `dev`) and under
/// `/ws/{workspace}`.
pub fn build_router(state: AppState) -> Router {
    let (router, _) = mounted().into_parts();
    router
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
/// until the next start. Of the servers sharing a store, one at a time does each kind of
/// work that must not be done twice (it holds that work's lease); a server that stops hands
/// its leases back.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let server_url = listener
        .local_addr()
        .map(|address| task_facing_url(&address))?;
    let listener = listener::no_delay(listener);
    // A server takes requests once it serves every endpoint it knows: one restarted behind a
    // load balancer fails no scoring request for an endpoint still loading.
    if let Err(err) = state.endpoints.sync().await {
        tracing::warn!(error = %err.report(), "cannot load the serving endpoints");
    }
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
            leased(
                &state,
                ONLINE_REFRESHER_LEASE,
                lease_term(ONLINE_REFRESH_TICK),
                refresh_online_features(state.clone()),
            ),
        )),
        tokio::spawn(every(
            tarn_serving::SYNC_EVERY,
            stopped.clone(),
            sync_endpoints(state.clone()),
        )),
        tokio::spawn(follow_access_changes(state.clone(), stopped.clone())),
        tokio::spawn(every(
            tarn_lake::statements::HEARTBEAT_EVERY,
            stopped.clone(),
            keep_up_statements(state.clone()),
        )),
        tokio::spawn(every(
            state.table_watch_every,
            stopped.clone(),
            leased(
                &state,
                COMMIT_WATCHER_LEASE,
                lease_term(state.table_watch_every),
                watch_tables(state.clone()),
            ),
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
            leased(
                &state,
                COPY_SWEEPER_LEASE,
                lease_term(UNOWNED_COPY_SWEEP_EVERY),
                remove_unowned_registry_copies(state.clone()),
            ),
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
    hand_back_leases(&state).await;
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

/// The leases of the background work one replica at a time does (on one store, any number of
/// servers run; the job runner, the monitors' scheduler and alert evaluator, and the
/// unpacker hold leases of their own).
pub const ONLINE_REFRESHER_LEASE: &str = "online-refresher";
pub const COMMIT_WATCHER_LEASE: &str = "commit-watcher";
pub const COPY_SWEEPER_LEASE: &str = "copy-sweeper";
const LEASED_WORK: [&str; 3] = [
    ONLINE_REFRESHER_LEASE,
    COMMIT_WATCHER_LEASE,
    COPY_SWEEPER_LEASE,
];

/// How long a holder's lease lasts past its last tick: a few ticks, and no less than 30 s, so
/// a slow store does not pass the work around; a holder that stops is replaced that long
/// after.
fn lease_term(tick: Duration) -> Duration {
    (tick * 3).max(Duration::from_secs(30))
}

/// Runs `tick` only while this server holds the lease `name`, renewing it for `term` at each
/// turn.
fn leased<Tick>(
    state: &AppState,
    name: &'static str,
    term: Duration,
    mut tick: Tick,
) -> impl FnMut() -> BoxFuture<'static, ()> + use<Tick>
where
    Tick: FnMut() -> BoxFuture<'static, ()>,
{
    let store = state.store.clone();
    let holder = state.jobs.executor.worker.clone();
    move || {
        let (store, holder) = (store.clone(), holder.clone());
        let ticked = tick();
        Box::pin(async move {
            let now = tarn_core::ids::now_millis();
            let until = now.saturating_add(i64::try_from(term.as_millis()).unwrap_or(i64::MAX));
            match store.hold_lease(name, &holder, now, until).await {
                Ok(true) => ticked.await,
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(lease = name, error = %err.report(), "cannot take a lease")
                }
            }
        })
    }
}

/// Lets another replica take this one's background work over at once rather than when its
/// leases lapse.
async fn hand_back_leases(state: &AppState) {
    let now = tarn_core::ids::now_millis();
    for name in LEASED_WORK {
        let handed = state
            .store
            .hold_lease(name, &state.jobs.executor.worker, now, 0)
            .await;
        if let Err(err) = handed {
            tracing::warn!(lease = name, error = %err.report(), "cannot hand back a lease");
        }
    }
}

/// How often a server reads the event stream for changes to access that any server (or the
/// CLI) made: what its caches hold is forgotten this soon after.
pub const ACCESS_WATCH_EVERY: Duration = Duration::from_millis(250);
/// How many ids behind the newest event seen are read again: PostgreSQL takes an id before
/// the commit, so a change can appear after one with a higher id. (One that lags further is
/// missed, and the caches forget it when their entries expire.)
const ACCESS_WATCH_LOOKBACK: i64 = 100;

/// Forgets this server's cached access decisions whenever the event stream shows a change to
/// access (a revoked token, a grant, a membership), wherever it was made.
async fn follow_access_changes(state: AppState, mut stopped: watch::Receiver<bool>) {
    let mut newest = state.store.last_event_id().await.unwrap_or_else(|err| {
        tracing::warn!(error = %err.report(), "cannot read the event stream's end");
        0
    });
    let mut seen = std::collections::BTreeSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ACCESS_WATCH_EVERY) => {}
            _ = stopped.changed() => return,
        }
        let query = tarn_core::events::EventQuery {
            after_id: newest.saturating_sub(ACCESS_WATCH_LOOKBACK),
            limit: 1000,
            ..Default::default()
        };
        let events = match state.store.events(&query).await {
            Ok(events) => events,
            Err(err) => {
                tracing::warn!(error = %err.report(), "cannot read the event stream");
                continue;
            }
        };
        let mut changed = false;
        for event in &events {
            if seen.insert(event.id) {
                changed |= event.change.changes_access();
            }
            newest = newest.max(event.id);
        }
        seen = seen.split_off(&newest.saturating_sub(ACCESS_WATCH_LOOKBACK));
        if changed {
            state.forget_access();
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

/// Keeps this server's running statements alive in the store and stops those canceled through
/// another server.
fn keep_up_statements(state: AppState) -> impl FnMut() -> BoxFuture<'static, ()> {
    move || {
        let state = state.clone();
        Box::pin(async move { state.statements.keep_up().await })
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
