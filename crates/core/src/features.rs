//! The feature store's domain: feature tables (a catalog table plus its keys and provenance),
//! feature lookups, and training sets built from them with point-in-time correctness.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::ColumnInfo;
use crate::lineage::{Node, SourceRead};
use crate::{Error, Result};

/// The tag naming the training set a model was trained on: set on the run or the logged model
/// (or the version itself), it gives the version its feature spec.
pub const TRAINING_SET_TAG: &str = "tarn.training_set_id";

/// What makes a catalog table a feature table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureTable {
    pub table_id: String,
    /// `catalog.schema.table`.
    pub full_name: String,
    /// The entity keys, without the timestamp key.
    pub primary_keys: Vec<String>,
    /// The time a row's values became true, for time-series tables; with the primary keys it
    /// identifies a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_key: Option<String>,
    pub description: String,
    /// The tables the feature pipeline reads.
    pub source_tables: Vec<String>,
    /// What produced the table: a job, a run, a commit.
    pub pipeline: Pipeline,
    pub created_by: String,
    pub created_at: i64,
}

/// The pipeline that writes a feature table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// A table column's type text for timestamps and dates, the types a timestamp key may have.
pub fn is_time_type(type_text: &str) -> bool {
    let t = type_text.to_ascii_lowercase();
    t == "date" || t.starts_with("timestamp")
}

/// Checks keys against the table's columns and returns the entity keys without the timestamp
/// key (which may be listed among the primary keys, as Databricks asks).
pub fn validate_keys(
    primary_keys: &[String],
    timestamp_key: Option<&str>,
    columns: &[ColumnInfo],
) -> Result<Vec<String>> {
    let column = |name: &str| columns.iter().find(|c| c.name == name);
    let mut keys: Vec<String> = Vec::new();
    for key in primary_keys {
        if Some(key.as_str()) == timestamp_key {
            continue;
        }
        if column(key).is_none() {
            return Err(Error::invalid(format!(
                "Primary key '{key}' is not a column of the table"
            )));
        }
        if keys.contains(key) {
            return Err(Error::invalid(format!(
                "Primary key '{key}' is listed twice"
            )));
        }
        keys.push(key.clone());
    }
    if keys.is_empty() {
        return Err(Error::invalid(
            "A feature table needs at least one primary key column besides the timestamp key",
        ));
    }
    if let Some(ts) = timestamp_key {
        match column(ts) {
            None => {
                return Err(Error::invalid(format!(
                    "Timestamp key '{ts}' is not a column of the table"
                )));
            }
            Some(c) if !is_time_type(&c.type_text) => {
                return Err(Error::invalid(format!(
                    "Timestamp key '{ts}' has type {}: expected a timestamp or date",
                    c.type_text
                )));
            }
            Some(_) => {}
        }
    }
    Ok(keys)
}

/// A length of time: `90s`, `15m`, `12h`, `3d`, `500ms`, or a number of seconds.
pub fn parse_duration_micros(text: &str) -> Result<i64> {
    let text = text.trim();
    let invalid = || {
        Error::invalid(format!(
            "Invalid lookback_window '{text}': expected a number with a unit (500ms, 90s, 15m, 12h, 3d)"
        ))
    };
    let digits = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let unit_micros = match unit.trim() {
        "ms" => 1e3,
        "" | "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        "d" => 86_400e6,
        _ => return Err(invalid()),
    };
    let micros = value * unit_micros;
    if !micros.is_finite() || micros < 0.0 || micros > i64::MAX as f64 {
        return Err(invalid());
    }
    Ok(micros.round() as i64)
}

/// Where a training set's label rows come from: a table (at a version) or a SQL query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// For a query: the version of each table it reads (full name -> version), recorded by
    /// the first build so that building again reads the same rows.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<String, u64>,
}

/// Features to join onto each label row from one feature table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureLookup {
    pub table_name: String,
    /// Label columns matched to the table's primary keys, in order; the key names when empty.
    #[serde(default)]
    pub lookup_key: Vec<String>,
    /// The features to take; every column but the keys when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rename_outputs: BTreeMap<String, String>,
    /// The label column holding each row's event time; required for a time-series table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_lookup_key: Option<String>,
    /// Only feature rows at most this old at the event time qualify (`3d`, `12h`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback_window: Option<String>,
    /// Values for label rows that no feature row matches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub default_values: BTreeMap<String, serde_json::Value>,
    /// The table version to read; the latest when absent (recorded in the training set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// A feature computed from request fields and looked-up features by a SQL expression, the
/// same way when building training sets and when serving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnDemandFeature {
    pub name: String,
    pub expression: String,
}

/// Everything that defines a training set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingSetSpec {
    pub label: LabelSource,
    #[serde(default)]
    pub feature_lookups: Vec<FeatureLookup>,
    #[serde(default)]
    pub on_demand_features: Vec<OnDemandFeature>,
    /// Label or feature columns left out of the result (keys used only for joining, say).
    #[serde(default)]
    pub exclude_columns: Vec<String>,
}

/// Most lookups and on-demand features in one training set.
pub const MAX_LOOKUPS: usize = 64;

impl TrainingSetSpec {
    /// Checks the parts that need no table: the label source, names and windows.
    pub fn validate(&self) -> Result<()> {
        match (&self.label.table, &self.label.query) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "Give the label rows as a table or a query, not both",
                ));
            }
            (None, None) => {
                return Err(Error::invalid(
                    "Missing label rows: give label.table or label.query",
                ));
            }
            (None, Some(_)) if self.label.version.is_some() => {
                return Err(Error::invalid(
                    "label.version applies to label.table; pin a query's tables with VERSION AS OF",
                ));
            }
            _ => {}
        }
        if self.feature_lookups.len() + self.on_demand_features.len() > MAX_LOOKUPS {
            return Err(Error::invalid(format!(
                "At most {MAX_LOOKUPS} feature lookups and on-demand features in one training set"
            )));
        }
        for lookup in &self.feature_lookups {
            if let Some(window) = &lookup.lookback_window {
                parse_duration_micros(window)?;
                if lookup.timestamp_lookup_key.is_none() {
                    return Err(Error::invalid(format!(
                        "The lookup of {} has a lookback_window but no timestamp_lookup_key",
                        lookup.table_name
                    )));
                }
            }
        }
        for feature in &self.on_demand_features {
            if feature.name.trim().is_empty() || feature.expression.trim().is_empty() {
                return Err(Error::invalid(
                    "An on-demand feature needs a name and an expression",
                ));
            }
        }
        Ok(())
    }
}

/// A table a training set read, at the version it read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableVersion {
    pub name: String,
    pub version: u64,
}

impl TableVersion {
    /// The tables read, as the sources of a lineage edge (a training set's output table, or a
    /// model version trained on it).
    pub fn lineage_sources(tables: &[TableVersion]) -> Vec<SourceRead> {
        tables
            .iter()
            .map(|t| SourceRead {
                node: Node::table(t.name.clone()),
                version: Some(t.version as i64),
            })
            .collect()
    }
}

/// A built training set: its spec with every table pinned to the version read, so building
/// it again gives the same rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSet {
    pub training_set_id: String,
    pub workspace: String,
    pub spec: TrainingSetSpec,
    pub tables_read: Vec<TableVersion>,
    pub num_rows: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_table: Option<TableVersion>,
    pub created_by: String,
    pub created_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<ColumnInfo> {
        vec![
            ColumnInfo::new("customer_id", "bigint"),
            ColumnInfo::new("ts", "timestamp"),
            ColumnInfo::new("spend", "double"),
        ]
    }

    #[test]
    fn timestamp_key_may_be_listed_among_primary_keys() {
        let keys = validate_keys(&["customer_id".into(), "ts".into()], Some("ts"), &columns())
            .expect("ok");
        assert_eq!(keys, vec!["customer_id".to_string()]);
    }

    #[test]
    fn keys_must_be_columns_and_the_timestamp_key_a_time() {
        assert!(validate_keys(&["nope".into()], None, &columns()).is_err());
        assert!(validate_keys(&["ts".into()], Some("ts"), &columns()).is_err());
        let err =
            validate_keys(&["customer_id".into()], Some("spend"), &columns()).expect_err("refused");
        assert!(
            err.message.contains("expected a timestamp"),
            "{}",
            err.message
        );
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration_micros("3d").expect("ok"), 3 * 86_400_000_000);
        assert_eq!(parse_duration_micros("90").expect("ok"), 90_000_000);
        assert_eq!(parse_duration_micros("1.5h").expect("ok"), 5_400_000_000);
        assert_eq!(parse_duration_micros("500ms").expect("ok"), 500_000);
        assert!(parse_duration_micros("-1d").is_err());
        assert!(parse_duration_micros("3 weeks").is_err());
    }

    #[test]
    fn a_spec_names_its_label_rows_once() {
        let mut spec = TrainingSetSpec::default();
        assert!(spec.validate().is_err());
        spec.label.table = Some("dev.default.labels".into());
        spec.validate().expect("ok");
        spec.label.query = Some("SELECT 1".into());
        assert!(spec.validate().is_err());
    }
}
