//! Backend-independent behaviour of the monitors store: one monitor per table, settings kept
//! as sent, versions bumped, refreshes moving only from the states a change expects, and
//! every change an event.

use std::sync::Arc;

use tarn_core::ErrorCode;
use tarn_core::auth::PrincipalKind;
use tarn_core::events::{Change, EventQuery};
use tarn_core::monitors::{
    Monitor, MonitorSettings, MonitorStatus, RefreshEnd, RefreshState, RefreshTrigger,
    RefreshVersions, TimeSeries,
};
use tarn_core::registry::Actor;
use tarn_core::store::MetaStore;

type Store = Arc<dyn MetaStore>;

fn settings(granularities: &[&str]) -> MonitorSettings {
    MonitorSettings {
        output_schema_name: Some("dev.monitoring".into()),
        time_series: Some(TimeSeries {
            timestamp_col: "ts".into(),
            granularities: granularities.iter().map(|g| g.to_string()).collect(),
        }),
        slicing_exprs: vec!["region".into(), "amount > 100".into()],
        warehouse_id: Some("'; DROP TABLE table_monitors; --".into()),
        ..MonitorSettings::default()
    }
}

/// A new owner in `dev` and a monitor of theirs on `table_id` (not stored yet).
async fn owned_monitor(
    store: &Store,
    owner: &str,
    table_id: &str,
    table_name: &str,
) -> (Actor, Monitor) {
    store.ensure_workspace("dev", "tester").await.expect("dev");
    let principal = store
        .create_principal(owner, PrincipalKind::User, false, None, "tester")
        .await
        .expect("owner");
    let actor = Actor {
        id: principal.id,
        name: principal.name.clone(),
    };
    let monitor = Monitor {
        table_id: table_id.into(),
        table_name: table_name.into(),
        workspace: "dev".into(),
        settings: settings(&["1 day"]),
        status: MonitorStatus::Active,
        monitor_version: 1,
        created_by: owner.into(),
        created_at: 10,
        updated_at: 10,
        latest_failure: None,
    };
    (actor, monitor)
}

pub async fn monitors_and_refreshes_are_kept_with_their_events(store: Store) {
    let (actor, monitor) = owned_monitor(&store, "owner", "t1", "dev.sales.orders").await;
    store
        .create_monitor(&monitor, &actor)
        .await
        .expect("create");
    assert_eq!(store.get_monitor("t1").await.expect("get"), monitor);
    let again = store
        .create_monitor(&monitor, &actor)
        .await
        .expect_err("one per table");
    assert_eq!(again.code, ErrorCode::ResourceAlreadyExists);
    let missing = store.get_monitor("t2").await.expect_err("none");
    assert_eq!(missing.code, ErrorCode::ResourceDoesNotExist);

    let updated = store
        .update_monitor("t1", &settings(&["1 day", "1 week"]), 20, &actor)
        .await
        .expect("update");
    assert_eq!(updated.monitor_version, 2);
    assert_eq!(updated.updated_at, 20);
    assert_eq!(updated.settings, settings(&["1 day", "1 week"]));
    assert_eq!(
        store.list_monitors().await.expect("list"),
        vec![updated.clone()]
    );

    // Refreshes: one at a time, moving only from the states a change expects.
    let first = store
        .create_refresh("t1", RefreshTrigger::Manual, 30)
        .await
        .expect("refresh");
    assert_eq!(first.state, RefreshState::Pending);
    let busy = store
        .create_refresh("t1", RefreshTrigger::Schedule, 31)
        .await
        .expect_err("one at a time");
    assert_eq!(busy.code, ErrorCode::ResourceConflict);
    let running = store
        .transition_refresh(
            "t1",
            first.refresh_id,
            &[RefreshState::Pending],
            RefreshState::Running,
            32,
            &RefreshEnd::default(),
        )
        .await
        .expect("run");
    assert!(running);
    let stale = store
        .transition_refresh(
            "t1",
            first.refresh_id,
            &[RefreshState::Pending],
            RefreshState::Canceled,
            33,
            &RefreshEnd::default(),
        )
        .await
        .expect("stale");
    assert!(
        !stale,
        "a refresh no longer pending is not cancelled as pending"
    );
    let versions = RefreshVersions {
        source: 7,
        baseline: Some(3),
        monitor: 2,
    };
    store
        .transition_refresh(
            "t1",
            first.refresh_id,
            &[RefreshState::Running],
            RefreshState::Success,
            40,
            &RefreshEnd {
                message: None,
                versions: Some(versions),
            },
        )
        .await
        .expect("end");
    let ended = store
        .get_refresh("t1", first.refresh_id)
        .await
        .expect("get");
    assert_eq!(
        (ended.state, ended.end_time_ms),
        (RefreshState::Success, Some(40))
    );
    assert_eq!(ended.versions, Some(versions));
    let second = store
        .create_refresh("t1", RefreshTrigger::Schedule, 50)
        .await
        .expect("after the first ended");
    store
        .transition_refresh(
            "t1",
            second.refresh_id,
            &[RefreshState::Pending, RefreshState::Running],
            RefreshState::Failed,
            51,
            &RefreshEnd {
                message: Some("the baseline is gone".into()),
                versions: None,
            },
        )
        .await
        .expect("fail");
    let listed = store.list_refreshes("t1", 10).await.expect("list");
    assert_eq!(
        listed
            .iter()
            .map(|r| (r.refresh_id, r.state, r.trigger))
            .collect::<Vec<_>>(),
        vec![
            (
                second.refresh_id,
                RefreshState::Failed,
                RefreshTrigger::Schedule
            ),
            (
                first.refresh_id,
                RefreshState::Success,
                RefreshTrigger::Manual
            ),
        ]
    );
    assert_eq!(listed[0].message.as_deref(), Some("the baseline is gone"));
    let last = store.last_successful_refresh("t1").await.expect("last");
    assert_eq!(last.map(|r| r.refresh_id), Some(first.refresh_id));
    store
        .set_monitor_status("t1", MonitorStatus::Error, Some("the baseline is gone"))
        .await
        .expect("status");
    let failed = store.get_monitor("t1").await.expect("get");
    assert_eq!(failed.status, MonitorStatus::Error);
    assert_eq!(
        failed.latest_failure.as_deref(),
        Some("the baseline is gone")
    );

    // Deleting takes the refreshes along; every change was an event.
    store.delete_monitor("t1", &actor).await.expect("delete");
    assert_eq!(
        store.get_monitor("t1").await.expect_err("gone").code,
        ErrorCode::ResourceDoesNotExist
    );
    assert!(
        store
            .list_refreshes("t1", 10)
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        store
            .delete_monitor("t1", &actor)
            .await
            .expect_err("twice")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
    let events = store
        .events(&EventQuery {
            workspace: Some("dev".into()),
            entity: Some("monitor".into()),
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .expect("events");
    let kinds: Vec<(i64, &str)> = events
        .iter()
        .map(|e| match &e.change {
            Change::MonitorCreated(c) => (c.monitor_version, "created"),
            Change::MonitorUpdated(c) => (c.monitor_version, "updated"),
            Change::MonitorDeleted { .. } => (0, "deleted"),
            _ => (-1, "other"),
        })
        .collect();
    assert_eq!(kinds, vec![(1, "created"), (2, "updated"), (0, "deleted")]);
    assert!(
        events
            .iter()
            .all(|e| e.actor == "owner" && e.object == "dev.sales.orders")
    );
}

/// A refresh's heartbeat keeps it off the stalled list; silence (or an end) does not.
pub async fn refreshes_that_fall_silent_are_found(store: Store) {
    let (actor, monitor) = owned_monitor(&store, "beater", "silent", "dev.sales.silent").await;
    store
        .create_monitor(&monitor, &actor)
        .await
        .expect("create");
    let refresh = store
        .create_refresh("silent", RefreshTrigger::Manual, 100)
        .await
        .expect("refresh");
    let stalled = |silent_since: i64| {
        let store = store.clone();
        async move {
            store
                .stalled_refreshes(silent_since)
                .await
                .expect("stalled")
                .into_iter()
                .map(|(table, r)| (table, r.refresh_id))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(stalled(100).await, []);
    assert_eq!(
        stalled(101).await,
        [("silent".to_string(), refresh.refresh_id)]
    );
    store
        .beat_refresh("silent", refresh.refresh_id, 300)
        .await
        .expect("beat");
    assert_eq!(stalled(200).await, []);
    assert_eq!(stalled(301).await.len(), 1);
    assert!(
        store
            .transition_refresh(
                "silent",
                refresh.refresh_id,
                &[RefreshState::Pending],
                RefreshState::Success,
                400,
                &RefreshEnd::default(),
            )
            .await
            .expect("end")
    );
    assert_eq!(stalled(10_000).await, []);
    // An ended refresh keeps no heartbeat.
    store
        .beat_refresh("silent", refresh.refresh_id, 500)
        .await
        .expect("beat after");
    assert_eq!(stalled(10_000).await, []);
}
