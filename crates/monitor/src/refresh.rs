//! Running a refresh: the monitored table (and its baseline) read through SQL at one version,
//! with the slicing expressions evaluated beside its columns; the metrics computed off the
//! async threads; both metrics tables written only once everything is computed, so a refresh
//! that fails leaves them as they were.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tarn_core::caller::Caller;
use tarn_core::catalog::{self, Privilege, TableInfo};
use tarn_core::events::Change;
use tarn_core::ids::now_millis;
use tarn_core::monitors::{
    Granularity, Monitor, MonitorStatus, Profile, Refresh, RefreshEnd, RefreshState,
    RefreshVersions,
};
use tarn_core::store::MetaStore;
use tarn_core::{Error, ErrorCode, Result};
use tarn_lake::access::{Securable, authorize, authorize_create_table, table_for};
use tarn_lake::arrow::array::{Array, AsArray, BooleanArray};
use tarn_lake::arrow::compute::{cast, filter_record_batch};
use tarn_lake::arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use tarn_lake::arrow::record_batch::RecordBatch;
use tarn_lake::catalog::{ManagedTable, location_of};
use tarn_lake::writes::keep_columns;
use tarn_lake::{At, Lake, WriteMode, columns_of_arrow};

use crate::compute::{self, Plan, Quality, SLICE_COLUMN, Source, Summaries, quoted};
use crate::custom::{self, Custom};
use crate::kept;
use crate::tables::{self, Provenance};
use crate::windows::{Window, previous, window_of};

/// What a monitor's settings ask to compute.
pub fn plan_of(monitor: &Monitor) -> Result<Plan> {
    let profile = monitor.settings.profile()?;
    let mut plan = Plan {
        granularities: Vec::new(),
        timestamp_col: None,
        model_id_col: None,
        quality: None,
        slicing_exprs: monitor.settings.slicing_exprs.clone(),
        only: None,
    };
    if let Some((timestamp_col, granularities)) = profile.windows() {
        plan.timestamp_col = Some(timestamp_col.to_string());
        for name in granularities {
            plan.granularities
                .push((name.clone(), Granularity::parse(name)?));
        }
    }
    if let Profile::InferenceLog(log) = &profile {
        plan.model_id_col = Some(log.model_id_col.clone());
        plan.quality = log.label_col.as_ref().map(|label| Quality {
            problem_type: log.problem_type,
            prediction_col: log.prediction_col.clone(),
            label_col: label.clone(),
            prediction_proba_col: log.prediction_proba_col.clone(),
        });
    }
    Ok(plan)
}

/// The query reading a source: its columns and one text column per slicing expression.
pub fn source_query(full_name: &str, slicing_exprs: &[String], limit_zero: bool) -> String {
    let table = full_name
        .split('.')
        .map(quoted)
        .collect::<Vec<_>>()
        .join(".");
    let mut sql = String::from("SELECT *");
    for (i, expr) in slicing_exprs.iter().enumerate() {
        sql.push_str(&format!(", CAST(({expr}) AS STRING) AS {SLICE_COLUMN}{i}"));
    }
    sql.push_str(&format!(" FROM {table}"));
    if limit_zero {
        sql.push_str(" LIMIT 0");
    }
    sql
}

/// The query reading a source's rows for `read`, and the version it pins.
fn read_query(table: &TableInfo, read: Read<'_>) -> (String, BTreeMap<String, u64>) {
    let mut sql = source_query(&table.full_name, read.slicing_exprs, false);
    if let Some(filter) = read.filter {
        sql.push_str(" WHERE ");
        sql.push_str(filter);
    }
    (
        sql,
        BTreeMap::from([(table.full_name.clone(), read.version)]),
    )
}

fn reading_failed(table: &TableInfo, err: Error) -> Error {
    Error::new(
        err.code,
        format!("Reading {} failed: {}", table.full_name, err.message),
    )
}

/// A source's rows at `version` (those `filter` keeps, when given: a SQL condition), decoded
/// as the query makes them, so the rows are held about once.
async fn read(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    table: &TableInfo,
    read: Read<'_>,
    plan: &Plan,
    baseline: bool,
) -> Result<Source> {
    let (sql, pinned) = read_query(table, read);
    let (rows, mut received) = tokio::sync::mpsc::channel::<RecordBatch>(2);
    let decoding_plan = plan.clone();
    let decoding = tokio::task::spawn_blocking(move || -> Result<Option<Source>> {
        let Some(first) = received.blocking_recv() else {
            return Ok(None);
        };
        let schema = first.schema();
        let batches = std::iter::once(first).chain(std::iter::from_fn(|| received.blocking_recv()));
        Source::decode(&schema, batches, &decoding_plan, baseline).map(Some)
    });
    let output = lake
        .query_streamed(store, caller, &sql, &pinned, rows)
        .await
        .map_err(|err| reading_failed(table, err));
    let decoded = decoding
        .await
        .map_err(|e| Error::internal_from("decoding a monitored table failed", e))?;
    let output = output?;
    match decoded? {
        Some(source) => Ok(source),
        None => Source::decode(&output.schema, Vec::new(), plan, baseline),
    }
}

/// A source's rows as Arrow batches, for the custom metrics' SQL.
async fn read_rows(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    table: &TableInfo,
    read: Read<'_>,
) -> Result<Vec<RecordBatch>> {
    let (sql, pinned) = read_query(table, read);
    let (rows, mut received) = tokio::sync::mpsc::channel::<RecordBatch>(4);
    let collecting = tokio::spawn(async move {
        let mut batches = Vec::new();
        while let Some(batch) = received.recv().await {
            batches.push(batch);
        }
        batches
    });
    let output = lake
        .query_streamed(store, caller, &sql, &pinned, rows)
        .await
        .map_err(|err| reading_failed(table, err));
    let mut batches = collecting
        .await
        .map_err(|e| Error::internal_from("reading a monitored table failed", e))?;
    let output = output?;
    if batches.is_empty() {
        batches.push(RecordBatch::new_empty(output.schema));
    }
    Ok(batches)
}

/// Reads the baseline at `version` with the source's slicing columns when it has what the
/// expressions read (it is sliced too), else whole.
async fn sliced_or_whole<'a, T, Fut>(
    reading: Read<'a>,
    version: u64,
    read: impl Fn(Read<'a>) -> Fut,
) -> Result<T>
where
    Fut: std::future::Future<Output = Result<T>>,
{
    let sliced = Read {
        filter: None,
        version,
        ..reading
    };
    match read(sliced).await {
        Ok(found) => Ok(found),
        Err(_) if !sliced.slicing_exprs.is_empty() => {
            read(Read {
                slicing_exprs: &[],
                ..sliced
            })
            .await
        }
        Err(err) => Err(err),
    }
}

/// Which rows of a source a refresh reads.
#[derive(Clone, Copy)]
struct Read<'a> {
    slicing_exprs: &'a [String],
    version: u64,
    filter: Option<&'a str>,
}

async fn latest(lake: &Lake, table: &TableInfo, known: Option<i64>) -> Result<u64> {
    lake.latest_version(
        &location_of(table)?,
        &table.full_name,
        known.unwrap_or_default().max(0) as u64,
    )
    .await
}

/// What a refresh recomputes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every window (the first refresh, changed settings or baseline, no change feed).
    Full,
    /// The windows the source's new commits touched, and the windows after them (whose
    /// comparison changed), by granularity.
    Windows(BTreeMap<String, BTreeSet<Window>>),
    /// Nothing was committed since the last refresh.
    Unchanged,
}

impl Scope {
    pub fn describe(&self) -> String {
        match self {
            Self::Full => "every window".into(),
            Self::Windows(windows) => {
                format!(
                    "{} windows",
                    windows.values().map(BTreeSet::len).sum::<usize>()
                )
            }
            Self::Unchanged => "nothing: no commits since the last refresh".into(),
        }
    }
}

/// The metrics a refresh computed, ready to write.
pub struct Computed {
    pub profile: RecordBatch,
    pub drift: RecordBatch,
    pub versions: RefreshVersions,
    pub scope: Scope,
}

/// The windows the commits after `since` up to `version` touched, with those after them.
async fn touched_windows(
    lake: &Lake,
    table: &TableInfo,
    plan: &Plan,
    since: i64,
    version: u64,
) -> Result<BTreeMap<String, BTreeSet<Window>>> {
    let timestamp_col = plan.timestamp_col.as_deref().unwrap_or_default();
    let (_, changes) = lake
        .changes(
            &location_of(table)?,
            &table.full_name,
            since as u64 + 1,
            Some(version),
        )
        .await?;
    let mut touched: BTreeMap<String, BTreeSet<Window>> = BTreeMap::new();
    for batch in &changes {
        let Some(times) = batch.column_by_name(timestamp_col) else {
            return Err(Error::internal(format!(
                "the changes of {} lack column {timestamp_col}",
                table.full_name
            )));
        };
        for time in compute::micros(times, timestamp_col)?.into_iter().flatten() {
            for (name, granularity) in &plan.granularities {
                let window = window_of(*granularity, time);
                let next = Window {
                    start: window.end,
                    end: window_of(*granularity, window.end).end,
                };
                let windows = touched.entry(name.clone()).or_default();
                windows.insert(window);
                windows.insert(next);
            }
        }
    }
    Ok(touched)
}

/// A SQL condition keeping the rows of `windows` and of the windows before them, but for
/// those `earlier` holds already.
fn window_filter(
    plan: &Plan,
    windows: &BTreeMap<String, BTreeSet<Window>>,
    earlier: &BTreeMap<String, (Window, Arc<Summaries>)>,
) -> String {
    let column = quoted(plan.timestamp_col.as_deref().unwrap_or_default());
    let literal = |micros: i64| format!("TIMESTAMP '{}'", format_timestamp_micros(micros));
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for (name, granularity) in &plan.granularities {
        let held = earlier.get(name).map(|(window, _)| *window);
        let touched = windows.get(name);
        for window in touched.into_iter().flatten() {
            let before = previous(*granularity, *window);
            let start = if held == Some(before) && !touched.is_some_and(|t| t.contains(&before)) {
                window.start
            } else {
                before.start
            };
            ranges.push((start, window.end));
        }
    }
    ranges.sort();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    if merged.is_empty() {
        return "FALSE".into();
    }
    merged
        .iter()
        .map(|(start, end)| {
            format!(
                "({column} >= {} AND {column} < {})",
                literal(*start),
                literal(*end)
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

fn format_timestamp_micros(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// Reads what changed in the monitored table (all of it when `previous` cannot be built on)
/// and its baseline, and computes the metrics.
pub async fn compute_metrics(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    monitor: &Monitor,
    previous: Option<RefreshVersions>,
) -> Result<Computed> {
    let mut plan = plan_of(monitor)?;
    let custom = Custom::of(&monitor.settings.custom_metrics)?;
    let table = table_for(store, caller, &monitor.table_name, Privilege::Select).await?;
    let version = latest(lake, &table, previous.map(|p| p.source)).await?;
    let baseline_table = match &monitor.settings.baseline_table_name {
        Some(name) => Some(table_for(store, caller, name, Privilege::Select).await?),
        None => None,
    };
    let baseline_version = match &baseline_table {
        Some(baseline) => Some(latest(lake, baseline, None).await?),
        None => None,
    };
    let versions = RefreshVersions {
        source: version as i64,
        baseline: baseline_version.map(|v| v as i64),
        monitor: monitor.monitor_version,
    };
    // Metrics tables dropped since the last refresh are made again whole.
    let (profile_name, _) = monitor.metrics_tables();
    let (catalog_name, schema_name, name) = catalog::parse_table_name(&profile_name)?;
    let tables_kept = match store.get_table(&catalog_name, &schema_name, &name).await {
        Ok(_) => true,
        Err(err) if err.code == ErrorCode::ResourceDoesNotExist => false,
        Err(err) => return Err(err),
    };
    let scope = match previous {
        Some(previous)
            if previous.monitor == versions.monitor
                && previous.baseline == versions.baseline
                && tables_kept
                && !plan.granularities.is_empty() =>
        {
            if previous.source == versions.source {
                Scope::Unchanged
            } else {
                match touched_windows(lake, &table, &plan, previous.source, version).await {
                    Ok(windows) => Scope::Windows(windows),
                    Err(err) => {
                        tracing::info!(table = %table.full_name, reason = %err.message, "refreshing every window");
                        Scope::Full
                    }
                }
            }
        }
        _ => Scope::Full,
    };
    let provenance = Provenance {
        source_version: versions.source,
        monitor_version: monitor.monitor_version,
    };
    if scope == Scope::Unchanged {
        let (profile, drift) = custom::schemas(custom.as_ref());
        return Ok(Computed {
            profile: RecordBatch::new_empty(profile),
            drift: RecordBatch::new_empty(drift),
            versions,
            scope,
        });
    }
    // The last window kept from the previous refresh spares reading it again: only when it
    // is as of the version that refresh read and its settings are the same.
    let earlier = match (&scope, previous, &custom) {
        (Scope::Windows(_), Some(previous), None) => {
            kept::kept_at(&monitor.table_id, monitor.monitor_version, previous.source)
        }
        _ => BTreeMap::new(),
    };
    let filter = match &scope {
        Scope::Windows(windows) => Some(window_filter(&plan, windows, &earlier)),
        _ => None,
    };
    let started = std::time::Instant::now();
    let reading = Read {
        slicing_exprs: &plan.slicing_exprs,
        version,
        filter: filter.as_deref(),
    };
    // Both sources are read at once: each query decodes on its own thread.
    let reading_baseline = async {
        match (&baseline_table, baseline_version) {
            (Some(baseline), Some(baseline_version)) => Some(
                sliced_or_whole(reading, baseline_version, |r| {
                    read(lake, store, caller, baseline, r, &plan, true)
                })
                .await,
            )
            .transpose(),
            _ => Ok(None),
        }
    };
    let (source, baseline) = tokio::join!(
        read(lake, store, caller, &table, reading, &plan, false),
        reading_baseline
    );
    let (source, baseline) = (source?, baseline?);
    let custom_values = match &custom {
        Some(custom) => {
            let rows = read_rows(lake, store, caller, &table, reading).await?;
            let base_rows = match (&baseline_table, baseline_version) {
                (Some(baseline), Some(baseline_version)) => Some(
                    sliced_or_whole(reading, baseline_version, |r| {
                        read_rows(lake, store, caller, baseline, r)
                    })
                    .await?,
                ),
                _ => None,
            };
            Some(custom::compute(custom, &plan, &rows, base_rows.as_deref()).await?)
        }
        None => None,
    };
    let read_time = started.elapsed();
    if let Scope::Windows(windows) = &scope {
        plan.only = Some(windows.clone());
    }
    let table_name = table.full_name.clone();
    let (table_id, monitor_version) = (monitor.table_id.clone(), monitor.monitor_version);
    tokio::task::spawn_blocking(move || -> Result<Computed> {
        let computing = std::time::Instant::now();
        let mut metrics = compute::compute(&plan, &source, baseline.as_ref(), &earlier);
        tracing::info!(
            table = %table_name,
            rows = source.rows(),
            scope = %scope.describe(),
            windows_kept_before = earlier.len(),
            read_ms = read_time.as_millis() as u64,
            compute_ms = computing.elapsed().as_millis() as u64,
            "computed a monitor's metrics"
        );
        kept::keep(
            &table_id,
            monitor_version,
            versions.source,
            std::mem::take(&mut metrics.last),
            earlier,
            plan.only.as_ref(),
        );
        let profile = tables::profile_batch(&metrics.profile, provenance)?;
        let drift = tables::drift_batch(&metrics.drift, provenance)?;
        let (profile, drift) = match (&custom, &custom_values) {
            (Some(custom), Some(values)) => (
                custom::extend_profile(custom, &profile, values)?,
                custom::extend_drift(custom, &drift, values)?,
            ),
            _ => (profile, drift),
        };
        Ok(Computed {
            profile,
            drift,
            versions,
            scope,
        })
    })
    .await
    .map_err(|e| Error::internal_from("computing the monitor's metrics failed", e))?
}

/// The metrics table `full_name`, made when missing, once `caller` may write it.
async fn metrics_table(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    full_name: &str,
    schema: &SchemaRef,
) -> Result<TableInfo> {
    let (catalog_name, schema_name, name) = catalog::parse_table_name(full_name)?;
    match store.get_table(&catalog_name, &schema_name, &name).await {
        Ok(table) => {
            authorize(store, caller, &Securable::table(&table), Privilege::Modify).await?;
            Ok(table)
        }
        Err(err) if err.code == ErrorCode::ResourceDoesNotExist => {
            authorize_create_table(store, caller, &catalog_name, &schema_name).await?;
            lake.create_managed(
                store,
                &caller.actor(),
                ManagedTable {
                    catalog: catalog_name,
                    schema: schema_name,
                    name,
                    columns: columns_of_arrow(schema)?,
                    comment: "Metrics written by a tarn monitor".into(),
                    properties: Default::default(),
                },
            )
            .await
        }
        Err(err) => Err(err),
    }
}

/// A batch read back from a metrics table in the shape the refresh writes (the scan may hand
/// text back as views).
fn conformed(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let column = batch.column_by_name(field.name()).ok_or_else(|| {
                Error::internal(format!("a metrics table lacks column {}", field.name()))
            })?;
            cast(column, field.data_type()).map_err(|e| {
                Error::internal_from(format!("cannot read metrics column {}", field.name()), e)
            })
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::internal_from("cannot read a metrics table back", e))
}

/// The rows of a metrics table outside the recomputed windows (a baseline's profile rows, which
/// have no window, stay), in the shape of `schema`.
fn kept_rows(
    batches: Vec<RecordBatch>,
    schema: &SchemaRef,
    recomputed: &BTreeMap<String, BTreeSet<Window>>,
) -> Result<Vec<RecordBatch>> {
    let mut kept = Vec::with_capacity(batches.len());
    for batch in batches {
        let batch = conformed(&batch, schema)?;
        let granularities = batch
            .column_by_name("granularity")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| Error::internal("a metrics table lacks its granularity"))?;
        let windows = batch
            .column_by_name("window")
            .and_then(|c| c.as_struct_opt())
            .ok_or_else(|| Error::internal("a metrics table lacks its window"))?;
        let starts = windows
            .column(0)
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(|| Error::internal("a metrics table's window has no start"))?;
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|row| {
                let replaced = granularities.is_valid(row)
                    && windows.is_valid(row)
                    && recomputed
                        .get(granularities.value(row))
                        .is_some_and(|set| set.iter().any(|w| w.start == starts.value(row)));
                Some(!replaced)
            })
            .collect();
        kept.push(
            filter_record_batch(&batch, &keep)
                .map_err(|e| Error::internal_from("cannot keep a metrics table's rows", e))?,
        );
    }
    Ok(kept)
}

/// Writes both metrics tables in a commit each: replaced by a full refresh's rows, or with the
/// recomputed windows' rows in place of the old ones.
pub async fn write_metrics(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    monitor: &Monitor,
    computed: Computed,
) -> Result<()> {
    if computed.scope == Scope::Unchanged {
        return Ok(());
    }
    let (profile_name, drift_name) = monitor.metrics_tables();
    let scope = &computed.scope;
    let write = |full_name: String, batch: RecordBatch| async move {
        let table = metrics_table(lake, store, caller, &full_name, &batch.schema()).await?;
        let location = location_of(&table)?;
        let batches = match scope {
            Scope::Windows(recomputed) => {
                let (_, existing, _) = lake
                    .read_columns(&location, &table.full_name, At::Latest, None)
                    .await?;
                let mut batches = kept_rows(existing, &batch.schema(), recomputed)?;
                batches.push(batch);
                batches
            }
            _ => vec![batch],
        };
        // Custom metrics added since the table was made are new columns.
        let written = lake
            .write(
                &location,
                &table.full_name,
                batches,
                WriteMode::Overwrite,
                true,
            )
            .await?;
        keep_columns(store, caller, &table, &written.columns).await
    };
    // The tables are written at once, each to its end: one table's failure does not leave
    // the other's write between its files and its commit.
    let (profile, drift) = tokio::join!(
        write(profile_name, computed.profile),
        write(drift_name, computed.drift)
    );
    profile.and(drift)
}

/// How often the process running a refresh says it is alive.
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Stops the heartbeat when the refresh ends, whichever way.
struct Beating(tokio::task::JoinHandle<()>);

impl Drop for Beating {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a PENDING refresh to its end as `caller`: RUNNING, then SUCCESS with the metrics
/// written, FAILED with why, or nothing more when it was cancelled meanwhile. Records the end
/// as an event and the monitor's status. While it runs it beats a heartbeat, so a refresh
/// whose process stops is found and failed (`schedule::tick`).
pub async fn execute(
    lake: Arc<Lake>,
    store: Arc<dyn MetaStore>,
    caller: Caller,
    monitor: Monitor,
    refresh: Refresh,
) {
    let table_id = monitor.table_id.clone();
    let id = refresh.refresh_id;
    let started = store
        .transition_refresh(
            &table_id,
            id,
            &[RefreshState::Pending],
            RefreshState::Running,
            now_millis(),
            &RefreshEnd::default(),
        )
        .await;
    if !matches!(started, Ok(true)) {
        return;
    }
    let _beating = Beating(tokio::spawn({
        let (store, table_id) = (store.clone(), table_id.clone());
        async move {
            loop {
                if let Err(err) = store.beat_refresh(&table_id, id, now_millis()).await {
                    tracing::warn!(refresh = id, error = %err.report(), "cannot note a refresh's heartbeat");
                }
                tokio::time::sleep(HEARTBEAT_EVERY).await;
            }
        }
    }));
    let previous = match store.last_successful_refresh(&table_id).await {
        Ok(previous) => previous.and_then(|p| p.versions),
        Err(err) => {
            tracing::warn!(error = %err.report(), "cannot read the last refresh: refreshing every window");
            None
        }
    };
    let outcome = match compute_metrics(&lake, store.as_ref(), &caller, &monitor, previous).await {
        Ok(computed) => {
            let versions = computed.versions;
            // A refresh cancelled while it computed writes nothing.
            match store.get_refresh(&table_id, id).await {
                Ok(current) if current.state == RefreshState::Running => {
                    write_metrics(&lake, store.as_ref(), &caller, &monitor, computed)
                        .await
                        .map(|()| versions)
                }
                _ => return,
            }
        }
        Err(err) => Err(err),
    };
    if let Err(err) = &outcome {
        tracing::warn!(table = %monitor.table_name, refresh = id, error = %err.report(), "monitor refresh failed");
    }
    let end = match outcome {
        Ok(versions) => RefreshEnd {
            message: None,
            versions: Some(versions),
        },
        Err(err) => RefreshEnd {
            message: Some(err.message),
            versions: None,
        },
    };
    finish(
        store.as_ref(),
        &monitor,
        &caller.actor(),
        id,
        &[RefreshState::Running],
        end,
    )
    .await;
}

/// Ends a refresh found in one of `from`: SUCCESS when `end` has the versions it read, FAILED
/// with its message otherwise; then the monitor's status and the `monitor_refresh.finished`
/// event. Nothing when the refresh had already moved on (cancelled, or ended elsewhere).
pub async fn finish(
    store: &dyn MetaStore,
    monitor: &Monitor,
    actor: &tarn_core::registry::Actor,
    id: i64,
    from: &[RefreshState],
    end: RefreshEnd,
) {
    let (state, status) = match end.versions {
        Some(_) => (RefreshState::Success, MonitorStatus::Active),
        None => (RefreshState::Failed, MonitorStatus::Error),
    };
    let ended = store
        .transition_refresh(&monitor.table_id, id, from, state, now_millis(), &end)
        .await;
    if !matches!(ended, Ok(true)) {
        return;
    }
    if let Err(err) = store
        .set_monitor_status(&monitor.table_id, status, end.message.as_deref())
        .await
    {
        tracing::warn!(table = %monitor.table_name, error = %err.report(), "cannot record a monitor's status");
    }
    let change = Change::MonitorRefreshFinished {
        table_name: monitor.table_name.clone(),
        refresh_id: id,
        state: state.as_str().to_string(),
        source_version: end.versions.map(|v| v.source),
        message: end.message,
    };
    if let Err(err) = store.record_event(&monitor.workspace, actor, &change).await {
        tracing::warn!(table = %monitor.table_name, error = %err.report(), "cannot record a refresh's end");
    }
}
