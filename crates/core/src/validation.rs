//! MLflow's input rules (`mlflow/utils/validation.py`): names, lengths, batch limits. Over-long
//! param and tag values are truncated silently, as MLflow does by default; over-long keys are
//! rejected.

use crate::entities::{KeyValue, LogBatch, Metric};
use crate::{Error, Result};

pub const MAX_ENTITY_KEY_LENGTH: usize = 250;
pub const MAX_PARAM_VAL_LENGTH: usize = 6000;
pub const MAX_TAG_VAL_LENGTH: usize = 8000;
pub const MAX_EXPERIMENT_NAME_LENGTH: usize = 500;
pub const MAX_EXPERIMENT_TAG_KEY_LENGTH: usize = 250;
pub const MAX_EXPERIMENT_TAG_VAL_LENGTH: usize = 20000;
pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
pub const MAX_BATCH_LOG_REQUEST_SIZE: usize = 1024 * 1024;

fn valid_name_chars(name: &str) -> bool {
    name.chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '/' | '.' | '-' | ' ' | ':'))
}

/// `posixpath.normpath(name) != name` or it escapes: such a name would clash with another
/// when names are used as file names.
fn path_not_unique(name: &str) -> bool {
    if name.is_empty() || name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return true;
    }
    name.split('/').any(|part| part == "." || part == "..")
}

/// Names of metrics, params and tags.
pub fn validate_key(kind: &str, name: &str) -> Result<()> {
    if !valid_name_chars(name) {
        return Err(Error::invalid(format!(
            "Invalid value \"{name}\" for parameter '{kind}' supplied: Names may only contain \
             alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colon(:) and \
             slashes (/)."
        )));
    }
    if path_not_unique(name) {
        return Err(Error::invalid(format!(
            "Invalid value \"{name}\" for parameter '{kind}' supplied: Names may be treated as \
             files in certain cases, and must not resolve to other names when treated as such."
        )));
    }
    check_length(kind, name, MAX_ENTITY_KEY_LENGTH)
}

pub fn check_length(what: &str, value: &str, limit: usize) -> Result<()> {
    if value.chars().count() > limit {
        return Err(Error::invalid(format!(
            "'{what}' exceeds the maximum length of {limit} characters"
        )));
    }
    Ok(())
}

pub fn truncate(value: &str, limit: usize) -> String {
    match value.char_indices().nth(limit) {
        Some((byte_index, _)) => value[..byte_index].to_string(),
        None => value.to_string(),
    }
}

pub fn validate_metric(metric: &Metric) -> Result<()> {
    validate_key("key", &metric.key)?;
    if metric.timestamp < 0 {
        return Err(Error::invalid(format!(
            "Invalid value {} for parameter 'timestamp' supplied: metric '{}' (value={}). \
             Timestamp must be a nonnegative long (64-bit integer)",
            metric.timestamp, metric.key, metric.value
        )));
    }
    Ok(())
}

pub fn validate_param(param: &KeyValue) -> Result<KeyValue> {
    validate_key("key", &param.key)?;
    Ok(KeyValue {
        key: param.key.clone(),
        value: truncate(&param.value, MAX_PARAM_VAL_LENGTH),
    })
}

pub fn validate_run_tag(tag: &KeyValue) -> Result<KeyValue> {
    validate_key("key", &tag.key)?;
    Ok(KeyValue {
        key: tag.key.clone(),
        value: truncate(&tag.value, MAX_TAG_VAL_LENGTH),
    })
}

pub fn validate_experiment_tag(tag: &KeyValue) -> Result<()> {
    validate_key("key", &tag.key)?;
    check_length("key", &tag.key, MAX_EXPERIMENT_TAG_KEY_LENGTH)?;
    check_length("value", &tag.value, MAX_EXPERIMENT_TAG_VAL_LENGTH)
}

pub fn validate_experiment_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(format!("Invalid experiment name: '{name}'")));
    }
    check_length("name", name, MAX_EXPERIMENT_NAME_LENGTH)
}

fn batch_limit(what: &str, limit: usize, count: usize) -> Result<()> {
    if count > limit {
        return Err(Error::invalid(format!(
            "A batch logging request can contain at most {limit} {what}. Got {count} {what}. \
             Please split up {what} across multiple requests and try again."
        )));
    }
    Ok(())
}

/// Checks a log-batch request and returns it with long values truncated.
pub fn validate_batch(batch: &LogBatch) -> Result<LogBatch> {
    batch_limit("metrics", MAX_METRICS_PER_BATCH, batch.metrics.len())?;
    batch_limit("params", MAX_PARAMS_TAGS_PER_BATCH, batch.params.len())?;
    batch_limit("tags", MAX_PARAMS_TAGS_PER_BATCH, batch.tags.len())?;
    batch_limit(
        "metrics, params, and tags",
        MAX_ENTITIES_PER_BATCH,
        batch.metrics.len() + batch.params.len() + batch.tags.len(),
    )?;
    for metric in &batch.metrics {
        validate_metric(metric)?;
    }
    let mut seen = std::collections::HashSet::new();
    let duplicates: Vec<&str> = batch
        .params
        .iter()
        .filter(|p| !seen.insert(p.key.as_str()))
        .map(|p| p.key.as_str())
        .collect();
    if !duplicates.is_empty() {
        return Err(Error::invalid(format!(
            "Duplicate parameter keys have been submitted: {duplicates:?}. Please ensure the \
             request contains only one param value per param key."
        )));
    }
    Ok(LogBatch {
        metrics: batch.metrics.clone(),
        params: batch
            .params
            .iter()
            .map(validate_param)
            .collect::<Result<_>>()?,
        tags: batch
            .tags
            .iter()
            .map(validate_run_tag)
            .collect::<Result<_>>()?,
    })
}

/// Run ids: `^[a-zA-Z0-9][\w\-]{0,255}$`.
pub fn validate_run_id(run_id: &str) -> Result<()> {
    if is_id_like(run_id, 256) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "Invalid value \"{run_id}\" for parameter 'run_id' supplied"
        )))
    }
}

fn is_id_like(value: &str, max_len: usize) -> bool {
    let mut chars = value.chars();
    match chars.next() {
        Some(first) if first.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    value.len() <= max_len && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Experiment ids are integers in the SQL store.
pub fn parse_experiment_id(experiment_id: &str) -> Result<i64> {
    experiment_id
        .parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| {
            Error::invalid(format!(
                "Invalid experiment ID '{experiment_id}'. Experiment ID must be a valid integer."
            ))
        })
}

/// Clients send +-inf; MLflow stores them as +-f64::MAX.
pub fn clamp_metric_value(value: f64) -> f64 {
    if value == f64::INFINITY {
        f64::MAX
    } else if value == f64::NEG_INFINITY {
        f64::MIN
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_mlflow_rules() {
        assert!(validate_key("key", "acc/train-1 v2:x").is_ok());
        for bad in [
            "", "../x", "a/../b", "/abs", "a//b", ".", "a\0b", "a;b", "a'b",
        ] {
            assert!(
                validate_key("key", bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(validate_key("key", &"k".repeat(251)).is_err());
    }

    #[test]
    fn long_values_are_truncated_not_rejected() {
        let param = KeyValue {
            key: "p".into(),
            value: "é".repeat(6001),
        };
        assert_eq!(
            validate_param(&param).map(|p| p.value.chars().count()),
            Ok(6000)
        );
    }

    #[test]
    fn batch_limits_and_duplicate_params() {
        let metric = Metric {
            key: "m".into(),
            value: 1.0,
            timestamp: 0,
            step: 0,
            dataset_name: None,
            dataset_digest: None,
            model_id: None,
            run_id: None,
        };
        let too_many = LogBatch {
            metrics: vec![metric; 1001],
            ..Default::default()
        };
        assert!(validate_batch(&too_many).is_err());
        let dup = KeyValue {
            key: "a".into(),
            value: "1".into(),
        };
        let dups = LogBatch {
            params: vec![dup.clone(), dup],
            ..Default::default()
        };
        assert!(validate_batch(&dups).is_err());
    }

    #[test]
    fn ids() {
        assert!(validate_run_id("0123abcd").is_ok());
        assert!(validate_run_id("../etc").is_err());
        assert!(validate_run_id("").is_err());
        assert_eq!(parse_experiment_id("12"), Ok(12));
        assert!(parse_experiment_id("1 OR 1=1").is_err());
        assert_eq!(clamp_metric_value(f64::INFINITY), f64::MAX);
    }
}
