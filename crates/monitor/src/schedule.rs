//! Scheduled refreshes: one server at a time (the holder of the store's `monitor-scheduler`
//! lease) starts every monitor's refresh when its Quartz schedule comes due, as the monitor's
//! creator. A schedule fires at most once per pass however many times it came due meanwhile
//! (a server that was down does not replay missed refreshes), and not while a refresh runs.
//! The same pass fails the refreshes whose process stopped (no heartbeat for a minute), so a
//! server that crashed mid-refresh does not block the monitor's next one.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tarn_core::caller::Caller;
use tarn_core::monitors::{Monitor, RefreshEnd, RefreshState, RefreshTrigger};
use tarn_core::store::MetaStore;
use tarn_core::{ErrorCode, Result};
use tarn_jobs::cron::{Cron, time_zone};
use tarn_lake::Lake;

use crate::refresh;

/// The lease the scheduling server holds.
pub const SCHEDULER_LEASE: &str = "monitor-scheduler";
/// How long a pass's hold on the lease lasts; passes come more often than this.
pub const LEASE_TERM_MS: i64 = 30_000;
/// A refresh not heard from for this long has lost its process (it beats every 10 s).
pub const STALLED_AFTER_MS: i64 = 60_000;

/// When the monitor's schedule next fires after its latest scheduled refresh (or after it was
/// made or changed); None without an active schedule.
pub fn next_due(monitor: &Monitor, last_scheduled: Option<i64>) -> Option<DateTime<Utc>> {
    let schedule = monitor.settings.schedule.as_ref().filter(|s| !s.paused())?;
    let cron: Cron = schedule.quartz_cron_expression.parse().ok()?;
    let zone = time_zone(&schedule.timezone_id).ok()?;
    let since = last_scheduled
        .unwrap_or(monitor.updated_at)
        .max(monitor.updated_at);
    cron.next_after(DateTime::from_timestamp_millis(since)?, zone)
}

/// One pass at `now`: when `holder` holds the lease, starts the refreshes that came due.
/// Returns how many it started.
pub async fn tick(
    lake: &Arc<Lake>,
    store: &Arc<dyn MetaStore>,
    holder: &str,
    now: i64,
) -> Result<usize> {
    if !store
        .hold_lease(SCHEDULER_LEASE, holder, now, now + LEASE_TERM_MS)
        .await?
    {
        return Ok(0);
    }
    fail_stalled(store.as_ref(), now).await?;
    let mut started = 0;
    for monitor in store.list_monitors().await? {
        if monitor.settings.schedule.is_none() {
            continue;
        }
        let last_scheduled = store
            .list_refreshes(&monitor.table_id, 25)
            .await?
            .into_iter()
            .find(|r| r.trigger == RefreshTrigger::Schedule)
            .map(|r| r.start_time_ms);
        let due = next_due(&monitor, last_scheduled);
        if due.is_none_or(|due| due.timestamp_millis() > now) {
            continue;
        }
        let refresh = match store
            .create_refresh(&monitor.table_id, RefreshTrigger::Schedule, now)
            .await
        {
            Ok(refresh) => refresh,
            // A refresh still runs: this schedule's turn passes.
            Err(err) if err.code == ErrorCode::ResourceConflict => continue,
            Err(err) => return Err(err),
        };
        let principal = match store.active_principal(&monitor.created_by).await {
            Ok(principal) => principal,
            Err(err) => {
                tracing::warn!(table = %monitor.table_name, error = %err.report(), "a scheduled refresh has no one to run as");
                continue;
            }
        };
        let caller = Caller::new(monitor.workspace.clone(), principal);
        tokio::spawn(refresh::execute(
            lake.clone(),
            store.clone(),
            caller,
            monitor,
            refresh,
        ));
        started += 1;
    }
    Ok(started)
}

/// Fails the refreshes whose process stopped beating.
pub async fn fail_stalled(store: &dyn MetaStore, now: i64) -> Result<usize> {
    let mut failed = 0;
    for (table_id, stalled) in store.stalled_refreshes(now - STALLED_AFTER_MS).await? {
        let monitor = match store.get_monitor(&table_id).await {
            Ok(monitor) => monitor,
            Err(err) if err.code == ErrorCode::ResourceDoesNotExist => continue,
            Err(err) => return Err(err),
        };
        tracing::warn!(table = %monitor.table_name, refresh = stalled.refresh_id, "a refresh's process stopped: failing it");
        let system = tarn_core::registry::Actor {
            id: 0,
            name: "system".into(),
        };
        let end = RefreshEnd {
            message: Some(
                "The server running this refresh stopped before it ended; refresh again".into(),
            ),
            versions: None,
        };
        refresh::finish(
            store,
            &monitor,
            &system,
            stalled.refresh_id,
            &[RefreshState::Pending, RefreshState::Running],
            end,
        )
        .await;
        failed += 1;
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tarn_core::monitors::{MonitorSchedule, MonitorSettings, MonitorStatus};

    fn monitor(schedule: Option<MonitorSchedule>) -> Monitor {
        Monitor {
            table_id: "t".into(),
            table_name: "dev.s.t".into(),
            workspace: "dev".into(),
            settings: MonitorSettings {
                schedule,
                ..MonitorSettings::default()
            },
            status: MonitorStatus::Active,
            monitor_version: 1,
            created_by: "admin".into(),
            created_at: 0,
            updated_at: 1_767_225_600_000, // 2026-01-01T00:00:00Z
            latest_failure: None,
        }
    }

    fn hourly(pause: Option<&str>) -> Option<MonitorSchedule> {
        Some(MonitorSchedule {
            quartz_cron_expression: "0 0 * * * ?".into(),
            timezone_id: "UTC".into(),
            pause_status: pause.map(str::to_string),
        })
    }

    #[test]
    fn a_schedule_comes_due_after_the_last_scheduled_refresh() {
        let hour = 3_600_000;
        let made = monitor(hourly(None));
        assert_eq!(
            next_due(&made, None).map(|d| d.timestamp_millis()),
            Some(made.updated_at + hour)
        );
        let after = made.updated_at + 5 * hour + 10;
        assert_eq!(
            next_due(&made, Some(after)).map(|d| d.timestamp_millis()),
            Some(made.updated_at + 6 * hour)
        );
        assert_eq!(next_due(&monitor(hourly(Some("PAUSED"))), None), None);
        assert_eq!(next_due(&monitor(None), None), None);
    }
}
