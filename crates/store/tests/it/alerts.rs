//! Backend-independent behaviour of the alerts store: settings kept as sent, evaluations kept
//! newest first, the state and its change time following them, and every change (and every
//! announced evaluation) an event.

use std::sync::Arc;

use tarn_core::ErrorCode;
use tarn_core::alerts::{Alert, AlertSettings, AlertState, Evaluation, EvaluationReason};
use tarn_core::auth::PrincipalKind;
use tarn_core::events::{AlertStateChange, Change, EventQuery};
use tarn_core::registry::Actor;
use tarn_core::store::MetaStore;

type Store = Arc<dyn MetaStore>;

fn settings(name: &str, query: &str) -> AlertSettings {
    serde_json::from_value(serde_json::json!({
        "display_name": name,
        "query_text": query,
        "warehouse_id": "'; DROP TABLE alerts; --",
        "evaluation": {
            "source": {"name": "psi", "aggregation": "MAX"},
            "comparison_operator": "GREATER_THAN",
            "threshold": {"value": {"double_value": 0.2}},
            "notification": {"subscriptions": [{"destination_id": "hook-1"}]},
        },
        "schedule": {"quartz_cron_schedule": "0 0 * * * ?", "timezone_id": "UTC"},
    }))
    .expect("settings")
}

fn evaluation(at: i64, state: AlertState, notified: bool) -> Evaluation {
    Evaluation {
        alert_id: "a1".into(),
        evaluated_at: at,
        reason: EvaluationReason::Refresh,
        state,
        value: Some("0.31".into()),
        threshold: Some("0.2".into()),
        message: None,
        notified,
    }
}

pub async fn alerts_and_evaluations_are_kept_with_their_events(store: Store) {
    store.ensure_workspace("dev", "tester").await.expect("dev");
    store
        .ensure_workspace("prod", "tester")
        .await
        .expect("prod");
    let owner = store
        .create_principal("owner", PrincipalKind::User, false, None, "tester")
        .await
        .expect("owner");
    let actor = Actor {
        id: owner.id,
        name: owner.name.clone(),
    };
    let alert = Alert {
        id: "a1".into(),
        workspace: "dev".into(),
        settings: settings("psi of f3", "SELECT psi FROM dev.m.t_drift_metrics"),
        owner: "owner".into(),
        created_at: 10,
        updated_at: 10,
        state: AlertState::Unknown,
        last_evaluated_at: None,
        state_changed_at: None,
        last_notified_at: None,
    };
    store.create_alert(&alert, &actor).await.expect("create");
    assert_eq!(store.get_alert("dev", "a1").await.expect("get"), alert);
    let elsewhere = store.get_alert("prod", "a1").await.expect_err("prod");
    assert_eq!(elsewhere.code, ErrorCode::ResourceDoesNotExist);
    let other = Alert {
        id: "a2".into(),
        settings: settings("another", "SELECT 1 AS psi"),
        ..alert.clone()
    };
    store.create_alert(&other, &actor).await.expect("other");
    let names: Vec<String> = store
        .list_alerts(Some("dev"))
        .await
        .expect("list")
        .into_iter()
        .map(|a| a.settings.display_name)
        .collect();
    assert_eq!(names, ["another", "psi of f3"]);
    assert!(
        store
            .list_alerts(Some("prod"))
            .await
            .expect("prod")
            .is_empty()
    );

    let renamed = settings(
        "psi of f4",
        "SELECT psi FROM dev.m.t_drift_metrics WHERE c = 'f4'",
    );
    let updated = store
        .update_alert("dev", "a1", &renamed, 20, &actor)
        .await
        .expect("update");
    assert_eq!(updated.settings, renamed);
    assert_eq!(updated.updated_at, 20);
    let missing = store
        .update_alert("prod", "a1", &renamed, 20, &actor)
        .await
        .expect_err("missing");
    assert_eq!(missing.code, ErrorCode::ResourceDoesNotExist);

    // Triggered and announced, triggered again quietly, then back to OK.
    let announce = AlertStateChange {
        alert_id: "a1".into(),
        display_name: "psi of f4".into(),
        state: "TRIGGERED".into(),
        previous_state: "UNKNOWN".into(),
        value: Some("0.31".into()),
        threshold: Some("0.2".into()),
        message: None,
        query_text: renamed.query_text.clone(),
        notify: vec!["hook-1".into()],
    };
    store
        .record_evaluation(
            &evaluation(30, AlertState::Triggered, true),
            Some(&announce),
        )
        .await
        .expect("triggered");
    store
        .record_evaluation(&evaluation(40, AlertState::Triggered, false), None)
        .await
        .expect("again");
    let alert = store.get_alert("dev", "a1").await.expect("get");
    assert_eq!(alert.state, AlertState::Triggered);
    assert_eq!(alert.last_evaluated_at, Some(40));
    assert_eq!(alert.state_changed_at, Some(30));
    assert_eq!(alert.last_notified_at, Some(30));
    store
        .record_evaluation(&evaluation(50, AlertState::Ok, false), None)
        .await
        .expect("ok");
    let alert = store.get_alert("dev", "a1").await.expect("get");
    assert_eq!(
        (alert.state, alert.state_changed_at),
        (AlertState::Ok, Some(50))
    );
    let history = store.list_evaluations("a1", 2).await.expect("history");
    assert_eq!(
        history
            .iter()
            .map(|e| (e.evaluated_at, e.state, e.notified))
            .collect::<Vec<_>>(),
        [
            (50, AlertState::Ok, false),
            (40, AlertState::Triggered, false)
        ]
    );
    assert_eq!(history[1].value.as_deref(), Some("0.31"));

    store
        .delete_alert("dev", "a1", &actor)
        .await
        .expect("delete");
    assert_eq!(
        store.get_alert("dev", "a1").await.expect_err("gone").code,
        ErrorCode::ResourceDoesNotExist
    );
    assert!(
        store
            .list_evaluations("a1", 10)
            .await
            .expect("none")
            .is_empty()
    );
    // An evaluation that ends after its alert was deleted keeps nothing.
    store
        .record_evaluation(&evaluation(60, AlertState::Ok, false), None)
        .await
        .expect("after delete");

    let events = store
        .events(&EventQuery {
            workspace: Some("dev".into()),
            entity: Some("alert".into()),
            limit: 20,
            ..EventQuery::default()
        })
        .await
        .expect("events");
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match &e.change {
            Change::AlertCreated(c) => format!("created {}", c.display_name),
            Change::AlertUpdated(c) => format!("updated {}", c.display_name),
            Change::AlertStateChanged(c) => {
                format!("{} -> {} {:?}", c.previous_state, c.state, c.notify)
            }
            Change::AlertDeleted { display_name, .. } => format!("deleted {display_name}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "created psi of f3",
            "created another",
            "updated psi of f4",
            "UNKNOWN -> TRIGGERED [\"hook-1\"]",
            "deleted psi of f4",
        ]
    );
}
