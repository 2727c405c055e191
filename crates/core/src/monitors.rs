//! Table monitors in the shape of Databricks Lakehouse Monitoring (`/api/2.1/unity-catalog/
//! tables/{table}/monitor`): a profile type (inference log, time series or snapshot), time
//! windows, slices, a baseline, where the metrics tables go and when refreshes run. Checked
//! here for what can be checked without the table; tarn-monitor checks the rest against its
//! columns.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a client sends to create or update a monitor (the SDK's fields; those tarn has no use
/// for, such as `warehouse_id`, are taken and kept as sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MonitorSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_table_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_metrics: Vec<CustomMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_log: Option<InferenceLog>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_series: Option<TimeSeries>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slicing_exprs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<MonitorSchedule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_classification_config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_builtin_dashboard: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warehouse_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_monitor_failure_msg: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceLog {
    pub problem_type: ProblemType,
    pub timestamp_col: String,
    pub granularities: Vec<String>,
    pub prediction_col: String,
    pub model_id_col: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_col: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_proba_col: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProblemType {
    #[serde(rename = "PROBLEM_TYPE_CLASSIFICATION")]
    Classification,
    #[serde(rename = "PROBLEM_TYPE_REGRESSION")]
    Regression,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSeries {
    pub timestamp_col: String,
    pub granularities: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSchedule {
    pub quartz_cron_expression: String,
    pub timezone_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_status: Option<String>,
}

impl MonitorSchedule {
    pub fn paused(&self) -> bool {
        self.pause_status.as_deref() == Some("PAUSED")
    }
}

/// A metric of the user's, computed with the built-in ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomMetric {
    pub name: String,
    pub definition: String,
    pub input_columns: Vec<String>,
    pub output_data_type: String,
    #[serde(rename = "type")]
    pub metric_type: CustomMetricType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CustomMetricType {
    #[serde(rename = "CUSTOM_METRIC_TYPE_AGGREGATE")]
    Aggregate,
    #[serde(rename = "CUSTOM_METRIC_TYPE_DERIVED")]
    Derived,
    #[serde(rename = "CUSTOM_METRIC_TYPE_DRIFT")]
    Drift,
}

/// The kind of analysis a monitor does, from its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    InferenceLog(InferenceLog),
    TimeSeries(TimeSeries),
    Snapshot,
}

impl Profile {
    /// The timestamp column and granularities of a windowed profile.
    pub fn windows(&self) -> Option<(&str, &[String])> {
        match self {
            Self::InferenceLog(log) => Some((&log.timestamp_col, &log.granularities)),
            Self::TimeSeries(series) => Some((&series.timestamp_col, &series.granularities)),
            Self::Snapshot => None,
        }
    }
}

/// How many slice expressions a monitor takes.
pub const MAX_SLICING_EXPRS: usize = 20;
/// The longest slice expression or custom metric definition.
const MAX_EXPRESSION: usize = 4096;

impl MonitorSettings {
    /// Exactly one profile type.
    pub fn profile(&self) -> Result<Profile> {
        match (&self.inference_log, &self.time_series, &self.snapshot) {
            (Some(log), None, None) => Ok(Profile::InferenceLog(log.clone())),
            (None, Some(series), None) => Ok(Profile::TimeSeries(series.clone())),
            (None, None, Some(_)) => Ok(Profile::Snapshot),
            (None, None, None) => Err(Error::invalid(
                "A monitor needs a profile type: one of inference_log, time_series or snapshot",
            )),
            _ => Err(Error::invalid(
                "A monitor has one profile type: give only one of inference_log, time_series and snapshot",
            )),
        }
    }

    /// The checks that need nothing but the settings.
    pub fn validate(&self) -> Result<Profile> {
        let profile = self.profile()?;
        if let Some((timestamp_col, granularities)) = profile.windows() {
            if timestamp_col.trim().is_empty() {
                return Err(Error::invalid("timestamp_col must name a column"));
            }
            if granularities.is_empty() {
                return Err(Error::invalid(
                    "granularities must hold at least one granularity, such as \"1 day\"",
                ));
            }
            let mut seen = Vec::new();
            for text in granularities {
                let granularity = Granularity::parse(text)?;
                if seen.contains(&granularity) {
                    return Err(Error::invalid(format!(
                        "Granularity \"{text}\" is given twice"
                    )));
                }
                seen.push(granularity);
            }
        }
        if let Profile::InferenceLog(log) = &profile {
            for (field, value) in [
                ("prediction_col", &log.prediction_col),
                ("model_id_col", &log.model_id_col),
            ] {
                if value.trim().is_empty() {
                    return Err(Error::invalid(format!("{field} must name a column")));
                }
            }
        }
        match self.output_schema_name.as_deref() {
            None | Some("") => {
                return Err(Error::invalid(
                    "output_schema_name must name the schema (catalog.schema) the metrics tables go to",
                ));
            }
            Some(name) => {
                let parts: Vec<&str> = name.split('.').collect();
                if parts.len() != 2 || parts.iter().any(|part| part.trim().is_empty()) {
                    return Err(Error::invalid(format!(
                        "output_schema_name '{name}' must be catalog.schema"
                    )));
                }
            }
        }
        if self.slicing_exprs.len() > MAX_SLICING_EXPRS {
            return Err(Error::invalid(format!(
                "A monitor takes at most {MAX_SLICING_EXPRS} slicing expressions"
            )));
        }
        for expr in &self.slicing_exprs {
            if expr.trim().is_empty() || expr.len() > MAX_EXPRESSION {
                return Err(Error::invalid(format!(
                    "A slicing expression is a column or a predicate of at most {MAX_EXPRESSION} bytes"
                )));
            }
        }
        for metric in &self.custom_metrics {
            if metric.definition.len() > MAX_EXPRESSION {
                return Err(Error::invalid(format!(
                    "custom metric '{}': a definition holds at most {MAX_EXPRESSION} bytes",
                    metric.name
                )));
            }
        }
        if let Some(schedule) = &self.schedule {
            if schedule.quartz_cron_expression.trim().is_empty() {
                return Err(Error::invalid(
                    "schedule.quartz_cron_expression must be a Quartz cron expression",
                ));
            }
            if let Some(status) = schedule.pause_status.as_deref()
                && !matches!(status, "PAUSED" | "UNPAUSED" | "UNSPECIFIED")
            {
                return Err(Error::invalid(format!(
                    "schedule.pause_status '{status}' is not PAUSED or UNPAUSED"
                )));
            }
        }
        Ok(profile)
    }
}

/// A time window's length: fixed (minutes, hours, days, weeks; windows start at multiples of
/// it from the Unix epoch, as Spark's `window` makes them) or calendar (months, years).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Fixed { micros: i64 },
    Months(u32),
}

const MINUTE: i64 = 60_000_000;

impl Granularity {
    /// The granularities Lakehouse Monitoring takes: 5 minutes, 30 minutes, 1 hour, 1 day, 1 to
    /// 4 weeks, 1 month, 1 year.
    pub fn parse(text: &str) -> Result<Self> {
        let normalized = text.trim().to_ascii_lowercase();
        let parsed = match normalized.as_str() {
            "5 minutes" => Some(Self::Fixed { micros: 5 * MINUTE }),
            "30 minutes" => Some(Self::Fixed {
                micros: 30 * MINUTE,
            }),
            "1 hour" => Some(Self::Fixed {
                micros: 60 * MINUTE,
            }),
            "1 day" => Some(Self::Fixed {
                micros: 1440 * MINUTE,
            }),
            "1 month" => Some(Self::Months(1)),
            "1 year" => Some(Self::Months(12)),
            other => other
                .strip_suffix(" weeks")
                .or_else(|| other.strip_suffix(" week"))
                .and_then(|count| count.parse::<i64>().ok())
                .filter(|count| (1..=4).contains(count))
                .map(|count| Self::Fixed {
                    micros: count * 7 * 1440 * MINUTE,
                }),
        };
        parsed.ok_or_else(|| {
            Error::invalid(format!(
                "Invalid granularity \"{text}\": use one of \"5 minutes\", \"30 minutes\", \"1 hour\", \"1 day\", \"<n> week(s)\" (n from 1 to 4), \"1 month\", \"1 year\""
            ))
        })
    }
}

/// A monitor as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    /// The monitored table's id and full name.
    pub table_id: String,
    pub table_name: String,
    /// The workspace it was created from.
    pub workspace: String,
    pub settings: MonitorSettings,
    pub status: MonitorStatus,
    /// Bumped by each update; the metrics rows record the version that made them.
    pub monitor_version: i64,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Why the latest refresh failed, cleared by the next success.
    pub latest_failure: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorStatus {
    Active,
    Error,
}

impl MonitorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "MONITOR_STATUS_ACTIVE",
            Self::Error => "MONITOR_STATUS_ERROR",
        }
    }

    pub fn parse(text: &str) -> Self {
        if text == Self::Error.as_str() {
            Self::Error
        } else {
            Self::Active
        }
    }
}

impl Monitor {
    /// The metrics tables' full names: `<output schema>.<table>_profile_metrics` and
    /// `_drift_metrics`.
    pub fn metrics_tables(&self) -> (String, String) {
        let schema = self
            .settings
            .output_schema_name
            .as_deref()
            .unwrap_or_default();
        let table = self
            .table_name
            .rsplit('.')
            .next()
            .unwrap_or(&self.table_name);
        (
            format!("{schema}.{table}_profile_metrics"),
            format!("{schema}.{table}_drift_metrics"),
        )
    }

    /// The monitor as the API shows it (the SDK's `MonitorInfo`).
    pub fn info(&self) -> serde_json::Value {
        let (profile, drift) = self.metrics_tables();
        let mut info = serde_json::to_value(&self.settings).unwrap_or_default();
        if let serde_json::Value::Object(fields) = &mut info {
            fields.insert("table_name".into(), self.table_name.clone().into());
            fields.insert("status".into(), self.status.as_str().into());
            fields.insert("monitor_version".into(), self.monitor_version.into());
            fields.insert("profile_metrics_table_name".into(), profile.into());
            fields.insert("drift_metrics_table_name".into(), drift.into());
            fields.remove("warehouse_id");
            fields.remove("skip_builtin_dashboard");
            match &self.latest_failure {
                Some(message) => {
                    fields.insert("latest_monitor_failure_msg".into(), message.clone().into());
                }
                None => {
                    fields.remove("latest_monitor_failure_msg");
                }
            }
        }
        info
    }
}

/// A refresh of a monitor's metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refresh {
    pub refresh_id: i64,
    pub state: RefreshState,
    pub start_time_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub trigger: RefreshTrigger,
    /// What a successful refresh read, for the next one to start from.
    #[serde(skip)]
    pub versions: Option<RefreshVersions>,
}

/// How a refresh ended: why it failed or was cancelled, and what a success read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshEnd {
    pub message: Option<String>,
    pub versions: Option<RefreshVersions>,
}

/// The versions a refresh computed its metrics from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshVersions {
    pub source: i64,
    pub baseline: Option<i64>,
    pub monitor: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefreshState {
    Pending,
    Running,
    Success,
    Failed,
    Canceled,
}

impl RefreshState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Success => "SUCCESS",
            Self::Failed => "FAILED",
            Self::Canceled => "CANCELED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "PENDING" => Self::Pending,
            "RUNNING" => Self::Running,
            "SUCCESS" => Self::Success,
            "FAILED" => Self::Failed,
            "CANCELED" => Self::Canceled,
            _ => return None,
        })
    }

    pub fn is_active(self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefreshTrigger {
    Manual,
    Schedule,
}

impl RefreshTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "MANUAL",
            Self::Schedule => "SCHEDULE",
        }
    }

    pub fn parse(text: &str) -> Self {
        if text == "SCHEDULE" {
            Self::Schedule
        } else {
            Self::Manual
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granularities_are_lakehouse_monitorings() {
        assert_eq!(
            Granularity::parse("1 day").expect("day"),
            Granularity::Fixed {
                micros: 86_400_000_000
            }
        );
        assert_eq!(
            Granularity::parse("2 weeks").expect("weeks"),
            Granularity::Fixed {
                micros: 14 * 86_400_000_000
            }
        );
        assert_eq!(
            Granularity::parse("1 year").expect("year"),
            Granularity::Months(12)
        );
        for bad in ["1 days", "7 minutes", "5 weeks", "", "1 fortnight"] {
            assert!(Granularity::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_need_one_profile_type_and_an_output_schema() {
        let mut settings = MonitorSettings {
            output_schema_name: Some("main.monitoring".into()),
            ..MonitorSettings::default()
        };
        assert!(settings.validate().is_err());
        settings.snapshot = Some(serde_json::json!({}));
        assert_eq!(settings.validate().expect("snapshot"), Profile::Snapshot);
        settings.time_series = Some(TimeSeries {
            timestamp_col: "ts".into(),
            granularities: vec!["1 day".into()],
        });
        assert!(settings.validate().is_err());
        settings.snapshot = None;
        settings.output_schema_name = Some("monitoring".into());
        assert!(settings.validate().is_err());
    }
}
