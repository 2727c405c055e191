//! Alerts on what monitors measure: the use cases behind `/api/2.0/alerts` (each checks the
//! caller's permissions: anyone in the workspace reads its alerts, their owner or an admin
//! changes them, and the query must run for the owner when saved), an alert's evaluation (its
//! query run as its owner, the source column judged against the threshold), and the evaluator,
//! which one server at a time (the holder of the `alert-evaluator` lease) runs: after each
//! successful monitor refresh (read from the event stream) it evaluates the alerts whose query
//! reads that monitor's metrics tables, and it evaluates every alert on its Quartz schedule.
//!
//! A change of state is an `alert.state_changed` event; the webhooks the alert subscribes are
//! told of a change to TRIGGERED (and to OK with `notify_on_ok`), and again every
//! `retrigger_seconds` while it stays TRIGGERED. Jobs start on it through their
//! `trigger.alert`, whose `min_time_between_triggers_seconds` is the cool-down.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use tarn_core::alerts::{
    Alert, AlertSettings, AlertState, Comparison, Evaluation, EvaluationReason, Operand,
    OperandColumn,
};
use tarn_core::auth::require_admin;
use tarn_core::caller::Caller;
use tarn_core::events::{AlertStateChange, Change};
use tarn_core::store::MetaStore;
use tarn_core::{Error, ErrorCode, Result};
use tarn_jobs::cron::{Cron, time_zone};
use tarn_lake::Lake;
use tarn_lake::arrow::array::{Array, AsArray, RecordBatch};
use tarn_lake::arrow::compute::cast;
use tarn_lake::arrow::datatypes::{DataType, Float64Type};

/// The event stream's consumer name for alerts.
pub const CONSUMER: &str = "alerts";
/// The lease the evaluating server holds.
pub const EVALUATOR_LEASE: &str = "alert-evaluator";
/// How long a pass's hold on the lease lasts; passes come more often than this.
pub const LEASE_TERM_MS: i64 = 30_000;
/// Events taken from the stream per pass.
const EVENT_BATCH: u64 = 500;
/// Evaluations answered by the history call at most.
pub const MAX_HISTORY: u64 = 1000;

/// Creates an alert owned by the caller, after checking its settings and running its query
/// once for the caller (it must run, and have the columns the evaluation names).
pub async fn create(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    settings: AlertSettings,
) -> Result<Alert> {
    check(lake, store, caller, &settings).await?;
    let now = tarn_core::ids::now_millis();
    let alert = Alert {
        id: uuid_like(),
        workspace: caller.workspace.clone(),
        settings,
        owner: caller.principal.name.clone(),
        created_at: now,
        updated_at: now,
        state: AlertState::Unknown,
        last_evaluated_at: None,
        state_changed_at: None,
        last_notified_at: None,
    };
    store.create_alert(&alert, &caller.actor()).await?;
    Ok(alert)
}

/// Databricks' alert ids are UUIDs.
fn uuid_like() -> String {
    let hex = tarn_core::ids::hex32(rand::random());
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// An alert of the caller's workspace.
pub async fn get(store: &dyn MetaStore, caller: &Caller, id: &str) -> Result<Alert> {
    store.get_alert(&caller.workspace, id).await
}

/// The alerts of the caller's workspace.
pub async fn list(store: &dyn MetaStore, caller: &Caller) -> Result<Vec<Alert>> {
    store.list_alerts(Some(&caller.workspace)).await
}

/// The owner or an admin may change an alert.
async fn managed(store: &dyn MetaStore, caller: &Caller, id: &str) -> Result<Alert> {
    let alert = store.get_alert(&caller.workspace, id).await?;
    if alert.owner != caller.principal.name {
        require_admin(&caller.principal).map_err(|_| {
            Error::new(
                ErrorCode::PermissionDenied,
                format!(
                    "Only the owner ({}) or an admin can change alert {id}",
                    alert.owner
                ),
            )
        })?;
    }
    Ok(alert)
}

/// Replaces the fields `update_mask` names (comma-separated; `*` for all) with `given`'s.
pub async fn update(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    id: &str,
    given: AlertSettings,
    update_mask: &str,
) -> Result<Alert> {
    let current = managed(store, caller, id).await?;
    let settings = masked(current.settings, given, update_mask)?;
    check(lake, store, caller, &settings).await?;
    store
        .update_alert(
            &caller.workspace,
            id,
            &settings,
            tarn_core::ids::now_millis(),
            &caller.actor(),
        )
        .await
}

fn masked(
    current: AlertSettings,
    given: AlertSettings,
    update_mask: &str,
) -> Result<AlertSettings> {
    let fields: Vec<&str> = update_mask
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    if fields.is_empty() {
        return Err(Error::invalid(
            "update_mask must name the fields to change (comma-separated), or * for all",
        ));
    }
    if fields.contains(&"*") {
        return Ok(given);
    }
    let mut settings = current;
    for field in fields {
        // A nested path replaces its top-level field, as sent.
        match field.split('.').next().unwrap_or(field) {
            "display_name" => settings.display_name = given.display_name.clone(),
            "query_text" => settings.query_text = given.query_text.clone(),
            "warehouse_id" => settings.warehouse_id = given.warehouse_id.clone(),
            "evaluation" => settings.evaluation = given.evaluation.clone(),
            "schedule" => settings.schedule = given.schedule.clone(),
            "custom_summary" => settings.custom_summary = given.custom_summary.clone(),
            "custom_description" => settings.custom_description = given.custom_description.clone(),
            "parent_path" => settings.parent_path = given.parent_path.clone(),
            other => {
                return Err(Error::invalid(format!(
                    "update_mask names '{other}', which is not a field of an alert one can set"
                )));
            }
        }
    }
    Ok(settings)
}

/// Deletes an alert the caller owns (or any, for an admin) with its history.
pub async fn delete(store: &dyn MetaStore, caller: &Caller, id: &str) -> Result<()> {
    managed(store, caller, id).await?;
    store
        .delete_alert(&caller.workspace, id, &caller.actor())
        .await
}

/// The latest evaluations of an alert of the caller's workspace, newest first.
pub async fn history(
    store: &dyn MetaStore,
    caller: &Caller,
    id: &str,
    limit: u64,
) -> Result<Vec<Evaluation>> {
    let alert = get(store, caller, id).await?;
    store
        .list_evaluations(&alert.id, limit.clamp(1, MAX_HISTORY))
        .await
}

/// Evaluates an alert now, as its owner, for a caller who may see it.
pub async fn evaluate_now(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    id: &str,
) -> Result<Evaluation> {
    let alert = get(store, caller, id).await?;
    evaluate(
        lake,
        store,
        &alert,
        EvaluationReason::Manual,
        tarn_core::ids::now_millis(),
    )
    .await
}

/// The settings' own checks, the schedule, the webhooks named, and the query: it runs for the
/// caller and answers the columns the evaluation reads.
async fn check(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    settings: &AlertSettings,
) -> Result<()> {
    settings.validate()?;
    if let Some(schedule) = &settings.schedule {
        schedule
            .quartz_cron_schedule
            .parse::<Cron>()
            .map_err(|e| Error::invalid(format!("schedule.quartz_cron_schedule: {e}")))?;
        time_zone(&schedule.timezone_id).map_err(Error::invalid)?;
    }
    for destination in settings.destinations() {
        match store.get_webhook(&caller.workspace, &destination).await {
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::ResourceDoesNotExist => {
                return Err(Error::invalid(format!(
                    "subscription destination_id {destination} names no webhook"
                )));
            }
            Err(e) => return Err(e),
        }
    }
    let output = lake
        .query(store, caller, &settings.query_text, &BTreeMap::new())
        .await
        .map_err(|e| Error::new(e.code, format!("query_text does not run: {}", e.message)))?;
    let columns: Vec<&str> = output
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let mut named = vec![&settings.evaluation.source];
    if let Some(Operand {
        column: Some(column),
        ..
    }) = &settings.evaluation.threshold
    {
        named.push(column);
    }
    for column in named {
        if !columns.contains(&column.name.as_str()) {
            return Err(Error::invalid(format!(
                "The query answers no column '{}'; it answers {}",
                column.name,
                columns.join(", ")
            )));
        }
    }
    Ok(())
}

/// A value of the result, as compared.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Number(f64),
    Text(String),
    Bool(bool),
}

impl Value {
    fn show(&self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Text(t) => t.clone(),
            Self::Bool(b) => b.to_string(),
        }
    }
}

/// A column's values over the result's rows (None for nulls).
fn column_values(batches: &[RecordBatch], name: &str) -> Result<Vec<Option<Value>>> {
    let mut values = Vec::new();
    for batch in batches {
        let Some(column) = batch.column_by_name(name) else {
            return Err(Error::invalid(format!(
                "The query answers no column '{name}'"
            )));
        };
        let data_type = column.data_type();
        if data_type.is_numeric() {
            let numbers = cast(column, &DataType::Float64)
                .map_err(|e| Error::internal_from(format!("column {name}"), e))?;
            values.extend(
                numbers
                    .as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| v.map(Value::Number)),
            );
        } else if *data_type == DataType::Boolean {
            values.extend(column.as_boolean().iter().map(|v| v.map(Value::Bool)));
        } else {
            let texts = cast(column, &DataType::Utf8)
                .map_err(|e| Error::invalid(format!("column {name} cannot be compared: {e}")))?;
            values.extend(
                texts
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map(|t| Value::Text(t.to_string()))),
            );
        }
    }
    Ok(values)
}

/// A column's value as the evaluation reads it: the first row's, or an aggregation of the
/// non-null values (as Databricks SQL computes it; STDDEV is the sample's).
fn operand_value(batches: &[RecordBatch], column: &OperandColumn) -> Result<Option<Value>> {
    let values = column_values(batches, &column.name)?;
    let Some(aggregation) = column.aggregation.as_deref() else {
        return Ok(values.into_iter().next().flatten());
    };
    let present: Vec<Value> = values.into_iter().flatten().collect();
    let count = |n: usize| Ok(Some(Value::Number(n as f64)));
    match aggregation {
        "COUNT" => return count(present.len()),
        "COUNT_DISTINCT" => {
            let distinct: BTreeSet<String> = present.iter().map(Value::show).collect();
            return count(distinct.len());
        }
        _ => {}
    }
    let mut numbers: Vec<f64> = Vec::with_capacity(present.len());
    for value in &present {
        match value {
            Value::Number(n) => numbers.push(*n),
            other => {
                return Err(Error::invalid(format!(
                    "{aggregation} of column '{}' needs numbers, and it holds {other:?}",
                    column.name
                )));
            }
        }
    }
    if numbers.is_empty() {
        return Ok(None);
    }
    let n = numbers.len() as f64;
    let sum: f64 = numbers.iter().sum();
    let value = match aggregation {
        "SUM" => sum,
        "AVG" => sum / n,
        "MIN" => numbers.iter().copied().fold(f64::INFINITY, f64::min),
        "MAX" => numbers.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        "MEDIAN" => {
            numbers.sort_by(f64::total_cmp);
            let middle = numbers.len() / 2;
            if numbers.len() % 2 == 1 {
                numbers[middle]
            } else {
                (numbers[middle - 1] + numbers[middle]) / 2.0
            }
        }
        "STDDEV" => {
            if numbers.len() < 2 {
                return Ok(None);
            }
            let mean = sum / n;
            (numbers.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        }
        other => {
            return Err(Error::invalid(format!("Unknown aggregation {other}")));
        }
    };
    Ok(Some(Value::Number(value)))
}

/// What an evaluation found: its state, the values compared, and why when not OK/TRIGGERED.
#[derive(Debug, Clone, PartialEq)]
struct Judged {
    state: AlertState,
    value: Option<String>,
    threshold: Option<String>,
    message: Option<String>,
}

impl Judged {
    fn unknown(message: impl Into<String>) -> Self {
        Self {
            state: AlertState::Unknown,
            value: None,
            threshold: None,
            message: Some(message.into()),
        }
    }
}

/// Judges the query's result against the settings.
fn judge(settings: &AlertSettings, batches: &[RecordBatch]) -> Result<Judged> {
    let evaluation = &settings.evaluation;
    let comparison = Comparison::parse(&evaluation.comparison_operator)?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows == 0 {
        return Ok(Judged {
            state: evaluation.empty_result_state.unwrap_or(AlertState::Unknown),
            message: Some("the query answered no rows".into()),
            ..Judged::unknown("")
        });
    }
    let value = operand_value(batches, &evaluation.source)?;
    let threshold = match &evaluation.threshold {
        None => None,
        Some(Operand {
            column: Some(column),
            ..
        }) => operand_value(batches, column)?,
        Some(Operand {
            value: Some(constant),
            ..
        }) => constant
            .double_value
            .map(Value::Number)
            .or_else(|| constant.string_value.clone().map(Value::Text))
            .or(constant.bool_value.map(Value::Bool)),
        Some(_) => None,
    };
    let shown = |v: &Option<Value>| v.as_ref().map(Value::show);
    let triggered = match comparison {
        Comparison::IsNull => value.is_none(),
        Comparison::IsNotNull => value.is_some(),
        _ => {
            let (Some(left), Some(right)) = (&value, &threshold) else {
                return Ok(Judged {
                    value: shown(&value),
                    threshold: shown(&threshold),
                    ..Judged::unknown(if value.is_none() {
                        "the source value is null"
                    } else {
                        "the threshold value is null"
                    })
                });
            };
            let ordering = match (left, right) {
                (Value::Number(a), Value::Number(b)) => a.partial_cmp(b),
                (Value::Text(a), Value::Text(b)) => Some(a.cmp(b)),
                (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
                // A number against a text threshold (or the reverse) compares as text.
                (a, b) => Some(a.show().cmp(&b.show())),
            };
            let Some(ordering) = ordering else {
                return Ok(Judged::unknown("the value is not a number"));
            };
            use std::cmp::Ordering::{Equal, Greater, Less};
            match comparison {
                Comparison::GreaterThan => ordering == Greater,
                Comparison::GreaterThanOrEqual => ordering != Less,
                Comparison::LessThan => ordering == Less,
                Comparison::LessThanOrEqual => ordering != Greater,
                Comparison::Equal => ordering == Equal,
                Comparison::NotEqual => ordering != Equal,
                Comparison::IsNull | Comparison::IsNotNull => false,
            }
        }
    };
    Ok(Judged {
        state: if triggered {
            AlertState::Triggered
        } else {
            AlertState::Ok
        },
        value: shown(&value),
        threshold: shown(&threshold),
        message: None,
    })
}

/// Whether an evaluation is announced, and to whom: every change of state is announced (an
/// event); the subscribed webhooks hear of TRIGGERED, of OK with `notify_on_ok`, and of
/// TRIGGERED again once `retrigger_seconds` passed since they last heard.
fn announcement(alert: &Alert, state: AlertState, now: i64) -> Option<Vec<String>> {
    let notification = alert
        .settings
        .evaluation
        .notification
        .clone()
        .unwrap_or_default();
    let destinations = alert.settings.destinations();
    let told = match state {
        AlertState::Triggered => destinations.clone(),
        AlertState::Ok if notification.notify_on_ok.unwrap_or(false) => destinations.clone(),
        _ => Vec::new(),
    };
    if state != alert.state {
        return Some(told);
    }
    let retrigger = state == AlertState::Triggered
        && notification.retrigger_seconds.is_some_and(|seconds| {
            seconds > 0
                && alert
                    .last_notified_at
                    .is_none_or(|at| now.saturating_sub(at) >= seconds.saturating_mul(1000))
        });
    retrigger.then_some(destinations)
}

/// Runs an alert's query as its owner, judges the result, keeps the evaluation and announces
/// it when it should be.
pub async fn evaluate(
    lake: &Lake,
    store: &dyn MetaStore,
    alert: &Alert,
    reason: EvaluationReason,
    now: i64,
) -> Result<Evaluation> {
    let judged = match run_query(lake, store, alert).await {
        Ok(batches) => judge(&alert.settings, &batches),
        Err(e) => Err(e),
    }
    .unwrap_or_else(|error| Judged {
        state: AlertState::Error,
        value: None,
        threshold: None,
        message: Some(error.message),
    });
    let announce = announcement(alert, judged.state, now).map(|notify| AlertStateChange {
        alert_id: alert.id.clone(),
        display_name: alert.settings.display_name.clone(),
        state: judged.state.as_str().into(),
        previous_state: alert.state.as_str().into(),
        value: judged.value.clone(),
        threshold: judged.threshold.clone(),
        message: judged.message.clone(),
        query_text: alert.settings.query_text.clone(),
        notify,
    });
    let evaluation = Evaluation {
        alert_id: alert.id.clone(),
        evaluated_at: now,
        reason,
        state: judged.state,
        value: judged.value,
        threshold: judged.threshold,
        message: judged.message,
        notified: announce.is_some(),
    };
    store
        .record_evaluation(&evaluation, announce.as_ref())
        .await?;
    Ok(evaluation)
}

async fn run_query(lake: &Lake, store: &dyn MetaStore, alert: &Alert) -> Result<Vec<RecordBatch>> {
    let principal = store.active_principal(&alert.owner).await?;
    let caller = Caller::new(alert.workspace.clone(), principal);
    let output = lake
        .query(store, &caller, &alert.settings.query_text, &BTreeMap::new())
        .await?;
    Ok(output.batches)
}

/// When an alert's schedule next fires after its latest scheduled evaluation (or after it was
/// made or changed); None without an active schedule.
pub fn next_due(alert: &Alert, last_scheduled: Option<i64>) -> Option<DateTime<Utc>> {
    let schedule = alert.settings.schedule.as_ref().filter(|s| !s.paused())?;
    let cron: Cron = schedule.quartz_cron_schedule.parse().ok()?;
    let zone = time_zone(&schedule.timezone_id).ok()?;
    let since = last_scheduled
        .unwrap_or(alert.updated_at)
        .max(alert.updated_at);
    cron.next_after(DateTime::from_timestamp_millis(since)?, zone)
}

/// One pass at `now`: when `holder` holds the lease, evaluates the alerts that refreshes
/// finished since the last pass concern and those whose schedule came due. Returns the
/// evaluations made.
pub async fn pass(
    lake: &Lake,
    store: &dyn MetaStore,
    holder: &str,
    now: i64,
) -> Result<Vec<Evaluation>> {
    if !store
        .hold_lease(EVALUATOR_LEASE, holder, now, now + LEASE_TERM_MS)
        .await?
    {
        return Ok(Vec::new());
    }
    let events = store.pending_events(CONSUMER, EVENT_BATCH).await?;
    let alerts = store.list_alerts(None).await?;
    let mut due: BTreeMap<String, EvaluationReason> = BTreeMap::new();
    let refreshed: Vec<(String, String)> = events
        .iter()
        .filter_map(|event| match &event.change {
            Change::MonitorRefreshFinished {
                table_name, state, ..
            } if state == "SUCCESS" => Some((event.workspace.clone(), table_name.clone())),
            _ => None,
        })
        .collect();
    if !refreshed.is_empty() {
        let monitors = store.list_monitors().await?;
        for (workspace, table_name) in &refreshed {
            let Some(monitor) = monitors.iter().find(|m| &m.table_name == table_name) else {
                continue;
            };
            let (profile, drift) = monitor.metrics_tables();
            for alert in alerts.iter().filter(|a| &a.workspace == workspace) {
                let query = alert.settings.query_text.to_lowercase();
                if query.contains(&profile.to_lowercase()) || query.contains(&drift.to_lowercase())
                {
                    due.insert(alert.id.clone(), EvaluationReason::Refresh);
                }
            }
        }
    }
    for alert in alerts.iter().filter(|a| a.settings.schedule.is_some()) {
        if due.contains_key(&alert.id) {
            continue;
        }
        let last_scheduled = store
            .list_evaluations(&alert.id, 25)
            .await?
            .into_iter()
            .find(|e| e.reason == EvaluationReason::Schedule)
            .map(|e| e.evaluated_at);
        if next_due(alert, last_scheduled).is_some_and(|at| at.timestamp_millis() <= now) {
            due.insert(alert.id.clone(), EvaluationReason::Schedule);
        }
    }
    let mut evaluated = Vec::new();
    for alert in &alerts {
        let Some(reason) = due.get(&alert.id) else {
            continue;
        };
        match evaluate(lake, store, alert, *reason, now).await {
            Ok(evaluation) => evaluated.push(evaluation),
            Err(err) => {
                tracing::warn!(alert = %alert.id, error = %err.report(), "cannot evaluate an alert")
            }
        }
    }
    if let Some(last) = events.last() {
        store.acknowledge_events(CONSUMER, last.id).await?;
    }
    Ok(evaluated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;
    use tarn_lake::arrow::array::{Float64Array, StringArray};
    use tarn_lake::arrow::datatypes::{Field, Schema};

    fn settings(evaluation: serde_json::Value) -> AlertSettings {
        serde_json::from_value(json!({
            "display_name": "psi",
            "query_text": "SELECT 1",
            "evaluation": evaluation,
        }))
        .expect("settings")
    }

    fn rows(psi: &[Option<f64>]) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("psi", DataType::Float64, true),
            Field::new("column_name", DataType::Utf8, true),
        ]));
        let names: Vec<String> = (0..psi.len()).map(|i| format!("f{i}")).collect();
        vec![
            RecordBatch::try_new(
                schema,
                vec![
                    Arc::new(Float64Array::from(psi.to_vec())),
                    Arc::new(StringArray::from(names)),
                ],
            )
            .expect("batch"),
        ]
    }

    #[test]
    fn the_source_is_aggregated_and_compared_with_the_threshold() {
        let above = |aggregation: &str, bound: f64| {
            settings(json!({
                "source": {"name": "psi", "aggregation": aggregation},
                "comparison_operator": "GREATER_THAN",
                "threshold": {"value": {"double_value": bound}},
            }))
        };
        let data = rows(&[Some(0.1), None, Some(0.3), Some(0.2)]);
        let max = judge(&above("MAX", 0.25), &data).expect("max");
        assert_eq!(
            (max.state, max.value.as_deref()),
            (AlertState::Triggered, Some("0.3"))
        );
        let avg = judge(&above("AVG", 0.25), &data).expect("avg");
        assert_eq!(avg.state, AlertState::Ok);
        assert_eq!(
            avg.value.as_deref(),
            Some(&*((0.1f64 + 0.3 + 0.2) / 3.0).to_string())
        );
        let count = judge(&above("COUNT", 2.0), &data).expect("count");
        assert_eq!(count.value.as_deref(), Some("3"));
        let median = judge(&above("MEDIAN", 0.0), &data).expect("median");
        assert_eq!(median.value.as_deref(), Some("0.2"));
        let stddev = judge(&above("STDDEV", 0.0), &data).expect("stddev");
        assert_eq!(stddev.value.as_deref(), Some("0.09999999999999999"));
        let first = settings(json!({
            "source": {"name": "psi"},
            "comparison_operator": "LESS_THAN_OR_EQUAL",
            "threshold": {"value": {"double_value": 0.1}},
        }));
        assert_eq!(
            judge(&first, &data).expect("first").state,
            AlertState::Triggered
        );
    }

    #[test]
    fn nulls_and_empty_results_are_unknown_unless_said_otherwise() {
        let over = settings(json!({
            "source": {"name": "psi"},
            "comparison_operator": "GREATER_THAN",
            "threshold": {"value": {"double_value": 0.2}},
        }));
        let null = judge(&over, &rows(&[None])).expect("null");
        assert_eq!(null.state, AlertState::Unknown);
        assert_eq!(
            judge(&over, &rows(&[])).expect("empty").state,
            AlertState::Unknown
        );
        let empty_ok = settings(json!({
            "source": {"name": "psi"},
            "comparison_operator": "GREATER_THAN",
            "threshold": {"value": {"double_value": 0.2}},
            "empty_result_state": "OK",
        }));
        assert_eq!(
            judge(&empty_ok, &rows(&[])).expect("empty").state,
            AlertState::Ok
        );
        let is_null =
            settings(json!({"source": {"name": "psi"}, "comparison_operator": "IS_NULL"}));
        assert_eq!(
            judge(&is_null, &rows(&[None])).expect("is null").state,
            AlertState::Triggered
        );
        let by_name = settings(json!({
            "source": {"name": "column_name"},
            "comparison_operator": "EQUAL",
            "threshold": {"value": {"string_value": "f0"}},
        }));
        assert_eq!(
            judge(&by_name, &rows(&[Some(1.0)])).expect("text").state,
            AlertState::Triggered
        );
    }

    fn alert(
        state: AlertState,
        notification: serde_json::Value,
        last_notified_at: Option<i64>,
    ) -> Alert {
        Alert {
            id: "a".into(),
            workspace: "dev".into(),
            settings: settings(json!({
                "source": {"name": "psi"},
                "comparison_operator": "IS_NULL",
                "notification": notification,
            })),
            owner: "o".into(),
            created_at: 0,
            updated_at: 0,
            state,
            last_evaluated_at: None,
            state_changed_at: None,
            last_notified_at,
        }
    }

    #[test]
    fn changes_are_announced_and_webhooks_hear_of_triggers_and_retriggers() {
        let hooks = json!({"subscriptions": [{"destination_id": "h"}], "retrigger_seconds": 60});
        let ok = alert(AlertState::Ok, hooks.clone(), None);
        assert_eq!(
            announcement(&ok, AlertState::Triggered, 0),
            Some(vec!["h".to_string()])
        );
        assert_eq!(announcement(&ok, AlertState::Ok, 0), None);
        let triggered = alert(AlertState::Triggered, hooks.clone(), Some(1_000));
        // Back to OK: an event, but the webhooks hear of it only with notify_on_ok.
        assert_eq!(
            announcement(&triggered, AlertState::Ok, 2_000),
            Some(vec![])
        );
        assert_eq!(
            announcement(&triggered, AlertState::Triggered, 30_000),
            None
        );
        assert_eq!(
            announcement(&triggered, AlertState::Triggered, 61_000),
            Some(vec!["h".to_string()])
        );
        let told_of_ok = alert(
            AlertState::Triggered,
            json!({"subscriptions": [{"destination_id": "h"}], "notify_on_ok": true}),
            None,
        );
        assert_eq!(
            announcement(&told_of_ok, AlertState::Ok, 0),
            Some(vec!["h".to_string()])
        );
    }

    #[test]
    fn an_update_mask_replaces_only_the_fields_it_names() {
        let current =
            settings(json!({"source": {"name": "psi"}, "comparison_operator": "IS_NULL"}));
        let given = AlertSettings {
            display_name: "renamed".into(),
            query_text: "SELECT 2".into(),
            ..current.clone()
        };
        let renamed = masked(current.clone(), given.clone(), "display_name").expect("mask");
        assert_eq!(
            (renamed.display_name.as_str(), renamed.query_text.as_str()),
            ("renamed", "SELECT 1")
        );
        assert_eq!(
            masked(current.clone(), given.clone(), "*").expect("all"),
            given
        );
        assert!(masked(current.clone(), given.clone(), "id").is_err());
        assert!(masked(current, given, "").is_err());
    }
}
