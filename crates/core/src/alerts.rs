//! Alerts in the shape of Databricks SQL alerts v2 (`/api/2.0/alerts`, `w.alerts_v2`): a query
//! (over monitors' metrics tables, typically), a column of its result compared with a threshold,
//! and what to do when the state changes. tarn evaluates an alert on its Quartz schedule and
//! after every refresh of a monitor whose metrics tables its query reads; the states are OK,
//! TRIGGERED, ERROR and UNKNOWN (never evaluated, or a result to compare was missing), each
//! evaluation is kept, and each change of state is an `alert.state_changed` event, delivered to
//! the webhooks the alert subscribes and read by the jobs an alert trigger starts.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// What a client sends to create or replace an alert (AlertV2's settable fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AlertSettings {
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub query_text: String,
    /// Taken and kept as sent: tarn's own SQL engine runs every query.
    #[serde(default)]
    pub warehouse_id: String,
    #[serde(default)]
    pub evaluation: AlertEvaluation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<AlertSchedule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_path: Option<String>,
}

/// How the query's result is judged. `state` and `last_evaluated_at` are answered, never taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AlertEvaluation {
    #[serde(default)]
    pub source: OperandColumn,
    #[serde(default)]
    pub comparison_operator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Operand>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_result_state: Option<AlertState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<AlertNotification>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<AlertState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_evaluated_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct OperandColumn {
    #[serde(default)]
    pub name: String,
    /// SUM, COUNT, COUNT_DISTINCT, AVG, MEDIAN, MIN, MAX or STDDEV over the result's rows;
    /// without one, the first row's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

/// A threshold: a constant, or a column of the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Operand {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<OperandColumn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<OperandValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct OperandValue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub double_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bool_value: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AlertNotification {
    /// Also announce the return to OK (a change to TRIGGERED is always announced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_on_ok: Option<bool>,
    /// While TRIGGERED, announce again once this long has passed since the last announcement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrigger_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<Subscription>,
}

/// Where announcements go: `destination_id` names a webhook of the workspace (signed in its
/// flavor's scheme); `user_email` is kept as sent (tarn sends no mail).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Subscription {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSchedule {
    pub quartz_cron_schedule: String,
    pub timezone_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_status: Option<String>,
}

impl AlertSchedule {
    pub fn paused(&self) -> bool {
        self.pause_status.as_deref() == Some("PAUSED")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertState {
    Unknown,
    Ok,
    Triggered,
    Error,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::Ok => "OK",
            Self::Triggered => "TRIGGERED",
            Self::Error => "ERROR",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "UNKNOWN" => Ok(Self::Unknown),
            "OK" => Ok(Self::Ok),
            "TRIGGERED" => Ok(Self::Triggered),
            "ERROR" => Ok(Self::Error),
            other => Err(Error::invalid(format!(
                "Invalid alert state '{other}': use UNKNOWN, OK, TRIGGERED or ERROR"
            ))),
        }
    }
}

/// How a value compares with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    GreaterThan,
    GreaterThanOrEqual,
    LessThan,
    LessThanOrEqual,
    Equal,
    NotEqual,
    IsNull,
    IsNotNull,
}

impl Comparison {
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "GREATER_THAN" => Self::GreaterThan,
            "GREATER_THAN_OR_EQUAL" => Self::GreaterThanOrEqual,
            "LESS_THAN" => Self::LessThan,
            "LESS_THAN_OR_EQUAL" => Self::LessThanOrEqual,
            "EQUAL" => Self::Equal,
            "NOT_EQUAL" => Self::NotEqual,
            "IS_NULL" => Self::IsNull,
            "IS_NOT_NULL" => Self::IsNotNull,
            other => {
                return Err(Error::invalid(format!(
                    "Invalid comparison_operator '{other}': use GREATER_THAN, GREATER_THAN_OR_EQUAL, LESS_THAN, LESS_THAN_OR_EQUAL, EQUAL, NOT_EQUAL, IS_NULL or IS_NOT_NULL"
                )));
            }
        })
    }

    /// Whether it needs a threshold.
    pub fn binary(self) -> bool {
        !matches!(self, Self::IsNull | Self::IsNotNull)
    }
}

/// The aggregations a source or threshold column may take.
pub const AGGREGATIONS: [&str; 8] = [
    "SUM",
    "COUNT",
    "COUNT_DISTINCT",
    "AVG",
    "MEDIAN",
    "MIN",
    "MAX",
    "STDDEV",
];
const MAX_QUERY: usize = 100_000;
const MAX_NAME: usize = 255;

impl AlertSettings {
    /// The checks that need nothing but the settings (the query is planned by the caller).
    pub fn validate(&self) -> Result<Comparison> {
        if self.display_name.trim().is_empty() {
            return Err(Error::invalid("display_name is required"));
        }
        if self.display_name.len() > MAX_NAME {
            return Err(Error::invalid(format!(
                "display_name may hold at most {MAX_NAME} characters"
            )));
        }
        if self.query_text.trim().is_empty() {
            return Err(Error::invalid("query_text is required"));
        }
        if self.query_text.len() > MAX_QUERY {
            return Err(Error::invalid(format!(
                "query_text may hold at most {MAX_QUERY} characters"
            )));
        }
        let evaluation = &self.evaluation;
        let comparison = Comparison::parse(&evaluation.comparison_operator)?;
        check_column("evaluation.source", &evaluation.source)?;
        match (&evaluation.threshold, comparison.binary()) {
            (None, true) => {
                return Err(Error::invalid(format!(
                    "evaluation.threshold is required with {}",
                    evaluation.comparison_operator
                )));
            }
            (Some(threshold), _) => match (&threshold.column, &threshold.value) {
                (Some(column), None) => check_column("evaluation.threshold.column", column)?,
                (None, Some(value)) => {
                    let given = [
                        value.double_value.is_some(),
                        value.string_value.is_some(),
                        value.bool_value.is_some(),
                    ];
                    if given.iter().filter(|g| **g).count() != 1 {
                        return Err(Error::invalid(
                            "evaluation.threshold.value needs exactly one of double_value, string_value and bool_value",
                        ));
                    }
                    if value.double_value.is_some_and(|v| !v.is_finite()) {
                        return Err(Error::invalid(
                            "evaluation.threshold.value.double_value must be a finite number",
                        ));
                    }
                }
                _ => {
                    return Err(Error::invalid(
                        "evaluation.threshold needs exactly one of column and value",
                    ));
                }
            },
            (None, false) => {}
        }
        if let Some(notification) = &evaluation.notification {
            if notification.retrigger_seconds.is_some_and(|s| s < 0) {
                return Err(Error::invalid(
                    "evaluation.notification.retrigger_seconds cannot be negative",
                ));
            }
            for subscription in &notification.subscriptions {
                if subscription.destination_id.is_some() == subscription.user_email.is_some() {
                    return Err(Error::invalid(
                        "each subscription needs exactly one of destination_id and user_email",
                    ));
                }
            }
        }
        if let Some(schedule) = &self.schedule {
            if schedule.quartz_cron_schedule.trim().is_empty() {
                return Err(Error::invalid("schedule.quartz_cron_schedule is required"));
            }
            if let Some(status) = &schedule.pause_status
                && !matches!(status.as_str(), "PAUSED" | "UNPAUSED")
            {
                return Err(Error::invalid(format!(
                    "Invalid schedule.pause_status '{status}': use PAUSED or UNPAUSED"
                )));
            }
        }
        Ok(comparison)
    }

    /// The webhooks an announcement goes to.
    pub fn destinations(&self) -> Vec<String> {
        self.evaluation
            .notification
            .iter()
            .flat_map(|n| &n.subscriptions)
            .filter_map(|s| s.destination_id.clone())
            .collect()
    }
}

fn check_column(field: &str, column: &OperandColumn) -> Result<()> {
    if column.name.trim().is_empty() {
        return Err(Error::invalid(format!("{field}.name is required")));
    }
    if let Some(aggregation) = &column.aggregation
        && !AGGREGATIONS.contains(&aggregation.as_str())
    {
        return Err(Error::invalid(format!(
            "Invalid {field}.aggregation '{aggregation}': use one of {}",
            AGGREGATIONS.join(", ")
        )));
    }
    Ok(())
}

/// An alert as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: String,
    pub workspace: String,
    pub settings: AlertSettings,
    /// Its creator, whom the query runs as.
    pub owner: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub state: AlertState,
    pub last_evaluated_at: Option<i64>,
    /// When the state last changed and when it was last announced.
    pub state_changed_at: Option<i64>,
    pub last_notified_at: Option<i64>,
}

impl Alert {
    /// The AlertV2 JSON a client gets.
    pub fn info(&self) -> Value {
        let mut evaluation = self.settings.evaluation.clone();
        evaluation.state = Some(self.state);
        evaluation.last_evaluated_at = self.last_evaluated_at.map(crate::webhooks::iso_timestamp);
        let settings = AlertSettings {
            evaluation,
            ..self.settings.clone()
        };
        let mut value = serde_json::to_value(&settings).unwrap_or_default();
        if let Value::Object(fields) = &mut value {
            for (key, field) in [
                ("id", Value::from(self.id.clone())),
                ("owner_user_name", Value::from(self.owner.clone())),
                ("run_as_user_name", Value::from(self.owner.clone())),
                ("lifecycle_state", Value::from("ACTIVE")),
                (
                    "create_time",
                    Value::from(crate::webhooks::iso_timestamp(self.created_at)),
                ),
                (
                    "update_time",
                    Value::from(crate::webhooks::iso_timestamp(self.updated_at)),
                ),
            ] {
                fields.insert(key.to_string(), field);
            }
        }
        value
    }
}

/// Why an alert was evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvaluationReason {
    Schedule,
    Refresh,
    Manual,
}

impl EvaluationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Refresh => "refresh",
            Self::Manual => "manual",
        }
    }

    pub fn parse(text: &str) -> Self {
        match text {
            "schedule" => Self::Schedule,
            "refresh" => Self::Refresh,
            _ => Self::Manual,
        }
    }
}

/// One evaluation of an alert, kept as its history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub alert_id: String,
    pub evaluated_at: i64,
    pub reason: EvaluationReason,
    pub state: AlertState,
    /// The source value compared (as text), when there was one.
    pub value: Option<String>,
    pub threshold: Option<String>,
    /// Why it is ERROR or UNKNOWN.
    pub message: Option<String>,
    /// Whether this evaluation was announced (a change of state, or a retrigger).
    pub notified: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(evaluation: Value) -> AlertSettings {
        serde_json::from_value(json!({
            "display_name": "psi",
            "query_text": "SELECT 1 AS v",
            "warehouse_id": "any",
            "evaluation": evaluation,
        }))
        .expect("settings")
    }

    #[test]
    fn comparisons_need_a_threshold_of_one_kind() {
        let ok = settings(
            json!({"source": {"name": "v"}, "comparison_operator": "GREATER_THAN", "threshold": {"value": {"double_value": 0.2}}}),
        );
        assert_eq!(ok.validate().expect("valid"), Comparison::GreaterThan);
        let missing =
            settings(json!({"source": {"name": "v"}, "comparison_operator": "GREATER_THAN"}));
        assert!(missing.validate().is_err());
        let null_check =
            settings(json!({"source": {"name": "v"}, "comparison_operator": "IS_NULL"}));
        assert_eq!(null_check.validate().expect("valid"), Comparison::IsNull);
        let two = settings(
            json!({"source": {"name": "v"}, "comparison_operator": "EQUAL", "threshold": {"value": {"double_value": 1.0, "string_value": "a"}}}),
        );
        assert!(two.validate().is_err());
        let bad_op = settings(
            json!({"source": {"name": "v"}, "comparison_operator": "ABOVE", "threshold": {"value": {"double_value": 1.0}}}),
        );
        assert!(
            bad_op
                .validate()
                .expect_err("op")
                .message
                .contains("GREATER_THAN")
        );
        let bad_aggregation = settings(
            json!({"source": {"name": "v", "aggregation": "P99"}, "comparison_operator": "IS_NULL"}),
        );
        assert!(bad_aggregation.validate().is_err());
    }

    #[test]
    fn info_answers_the_state_and_the_settings_as_sent() {
        let alert = Alert {
            id: "a1".into(),
            workspace: "dev".into(),
            settings: settings(json!({"source": {"name": "v"}, "comparison_operator": "IS_NULL"})),
            owner: "alice".into(),
            created_at: 0,
            updated_at: 0,
            state: AlertState::Triggered,
            last_evaluated_at: Some(1000),
            state_changed_at: None,
            last_notified_at: None,
        };
        let info = alert.info();
        assert_eq!(info["evaluation"]["state"], "TRIGGERED");
        assert_eq!(info["evaluation"]["source"]["name"], "v");
        assert_eq!(info["id"], "a1");
        assert_eq!(info["warehouse_id"], "any");
    }
}
