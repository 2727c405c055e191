//! Dynamic value references (`{{job.run_id}}`, `{{tasks.train.values.auc}}`) as Databricks
//! resolves them at run time. Checked when a job is saved: a reference in a known namespace
//! that names nothing (a misspelt field, a task or job parameter the job does not have) is
//! refused; text that is not a reference at all (`{{ not one }}`) passes through as written.

use std::collections::BTreeSet;

use serde_json::Value;
use tarn_core::{Error, Result};

/// The fields of a time (`job.start_time.*`, `job.trigger.time.*`).
const TIME_FIELDS: [&str; 11] = [
    "iso_date",
    "iso_datetime",
    "timestamp_ms",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "is_weekday",
    "day_of_week",
];
/// The fields of the task being run (`task.*`).
const TASK_FIELDS: [&str; 4] = ["name", "run_id", "execution_count", "notebook_path"];
/// The fields of another task of the run (`tasks.<key>.*`), besides `values.<name>`.
const OTHER_TASK_FIELDS: [&str; 4] = ["run_id", "result_state", "error_code", "execution_count"];
/// Databricks' references from before the namespaces, still accepted.
const LEGACY: [&str; 7] = [
    "job_id",
    "run_id",
    "start_date",
    "start_time",
    "task_retry_count",
    "parent_run_id",
    "task_key",
];

/// Checks every reference in the tasks of `settings` against the job's task keys and
/// parameter names.
pub fn check(
    settings: &Value,
    tasks: BTreeSet<String>,
    parameters: BTreeSet<String>,
) -> Result<()> {
    let known = Known { tasks, parameters };
    let Some(tasks) = settings.get("tasks").and_then(Value::as_array) else {
        return Ok(());
    };
    for task in tasks {
        let key = task.get("task_key").and_then(Value::as_str).unwrap_or("");
        let mut problem = None;
        visit_strings(task, &mut |text| {
            if problem.is_none() {
                problem = references(text)
                    .into_iter()
                    .find_map(|reference| known.refuse(&reference));
            }
        });
        if let Some(problem) = problem {
            return Err(Error::invalid(format!("Task '{key}': {problem}")));
        }
    }
    Ok(())
}

struct Known {
    tasks: BTreeSet<String>,
    parameters: BTreeSet<String>,
}

impl Known {
    /// Why `path` names nothing, if it is in a known namespace and does.
    fn refuse(&self, path: &[String]) -> Option<String> {
        let parts: Vec<&str> = path.iter().map(String::as_str).collect();
        let shown = path.join(".");
        let unknown = || Some(format!("the reference {{{{{shown}}}}} names nothing"));
        match parts.as_slice() {
            [legacy] if LEGACY.contains(legacy) => None,
            ["job", "id" | "name" | "run_id" | "repair_count"] => None,
            ["job", "start_time", field] | ["job", "trigger", "time", field]
                if TIME_FIELDS.contains(field) =>
            {
                None
            }
            ["job", "trigger", "type"] | ["job", "trigger", "file_arrival", "location"] => None,
            ["job", "parameters", name] => (!self.parameters.contains(*name)).then(|| {
                format!("the reference {{{{{shown}}}}} names job parameter '{name}', which the job does not declare")
            }),
            ["job", ..] => unknown(),
            ["task", field] if TASK_FIELDS.contains(field) => None,
            ["task", ..] => unknown(),
            ["tasks", key, rest @ ..] => {
                if !self.tasks.contains(*key) {
                    return Some(format!(
                        "the reference {{{{{shown}}}}} names task '{key}', which is not a task of this job"
                    ));
                }
                match rest {
                    [field] if OTHER_TASK_FIELDS.contains(field) => None,
                    ["values", _] => None,
                    _ => unknown(),
                }
            }
            ["workspace", "id" | "url"] => None,
            ["workspace", ..] => unknown(),
            ["input", ..] => None,
            // Not a namespace Databricks knows: left to pass through as text.
            _ => None,
        }
    }
}

/// `text` with each reference `lookup` knows replaced by its value; the rest stays as written.
pub fn resolve(text: &str, lookup: &dyn Fn(&[&str]) -> Option<String>) -> String {
    let mut resolved = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            break;
        };
        resolved.push_str(&rest[..start]);
        let value = parse_path(after[..end].trim()).and_then(|path| {
            let parts: Vec<&str> = path.iter().map(String::as_str).collect();
            lookup(&parts)
        });
        match value {
            Some(value) => resolved.push_str(&value),
            None => resolved.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    resolved.push_str(rest);
    resolved
}

/// A time's fields as `{{job.start_time.*}}` gives them, in UTC.
pub fn time_field(millis: i64, field: &str) -> Option<String> {
    use chrono::{Datelike, Timelike};
    let time = chrono::DateTime::from_timestamp_millis(millis)?;
    Some(match field {
        "iso_date" => time.format("%Y-%m-%d").to_string(),
        "iso_datetime" => time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "timestamp_ms" => millis.to_string(),
        "year" => time.year().to_string(),
        "month" => time.month().to_string(),
        "day" => time.day().to_string(),
        "hour" => time.hour().to_string(),
        "minute" => time.minute().to_string(),
        "second" => time.second().to_string(),
        "is_weekday" => (time.weekday().number_from_monday() <= 5).to_string(),
        "day_of_week" => time.weekday().number_from_monday().to_string(),
        _ => return None,
    })
}

/// Calls `f` with every string in `value`, keys of objects included.
fn visit_strings(value: &Value, f: &mut impl FnMut(&str)) {
    match value {
        Value::String(text) => f(text),
        Value::Array(items) => items.iter().for_each(|item| visit_strings(item, f)),
        Value::Object(fields) => {
            for (key, item) in fields {
                f(key);
                visit_strings(item, f);
            }
        }
        _ => {}
    }
}

/// The well-formed references in `text`, each as its path; anything else between braces is
/// not a reference and is left alone.
pub fn references(text: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            break;
        };
        if let Some(path) = parse_path(after[..end].trim()) {
            found.push(path);
        }
        rest = &after[end + 2..];
    }
    found
}

/// `a.b.c`, where a part may be back-quoted to hold any character but a back quote.
pub fn parse_path(text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'`') {
            chars.next();
            loop {
                match chars.next()? {
                    '`' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    part.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
        }
        if part.is_empty() {
            return None;
        }
        parts.push(part);
        match chars.next() {
            None => return Some(parts),
            Some('.') => {}
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn checked(settings: Value) -> Result<()> {
        let names = |list: &str, field: &str| -> BTreeSet<String> {
            settings[list]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| item[field].as_str().map(str::to_string))
                .collect()
        };
        check(
            &settings,
            names("tasks", "task_key"),
            names("parameters", "name"),
        )
    }

    #[test]
    fn paths_are_read_with_back_quotes_and_malformed_text_is_no_reference() {
        assert_eq!(
            references("run {{job.run_id}} of {{ job.parameters.`my param` }}"),
            vec![
                vec!["job".to_string(), "run_id".into()],
                vec!["job".to_string(), "parameters".into(), "my param".into()],
            ]
        );
        assert!(references("{{ not a reference }} and {{}} and {{job.}}").is_empty());
        assert!(references("{{ unclosed").is_empty());
    }

    #[test]
    fn references_resolve_to_their_values_and_the_rest_stays() {
        let lookup = |path: &[&str]| match path {
            ["job", "run_id"] => Some("42".to_string()),
            ["job", "parameters", "my param"] => Some("x y".to_string()),
            _ => None,
        };
        assert_eq!(
            resolve(
                "run {{job.run_id}}/{{ job.parameters.`my param` }} {{job.other}} {{ no }} {{",
                &lookup
            ),
            "run 42/x y {{job.other}} {{ no }} {{"
        );
        assert_eq!(time_field(0, "iso_date").as_deref(), Some("1970-01-01"));
        assert_eq!(time_field(0, "is_weekday").as_deref(), Some("true"));
        assert_eq!(time_field(0, "day_of_week").as_deref(), Some("4"));
    }

    #[test]
    fn references_are_checked_against_the_job() {
        let job = |parameter: &str| {
            json!({
                "parameters": [{"name": "day", "default": "2026-12-06"}],
                "tasks": [
                    {"task_key": "train", "spark_python_task": {"python_file": "t.py"}},
                    {"task_key": "report", "depends_on": [{"task_key": "train"}],
                     "spark_python_task": {"python_file": "r.py", "parameters": [parameter]}},
                ],
            })
        };
        for good in [
            "{{job.id}}",
            "{{job.run_id}}-{{task.name}}",
            "{{job.parameters.day}}",
            "{{job.start_time.iso_date}}",
            "{{tasks.train.values.auc}}",
            "{{tasks.train.result_state}}",
            "{{run_id}}",
            "{{ some text }}",
            "{{secrets.scope.key}}",
        ] {
            checked(job(good)).unwrap_or_else(|err| panic!("{good}: {err}"));
        }
        for (bad, reason) in [
            ("{{job.runid}}", "{{job.runid}} names nothing"),
            ("{{job.parameters.month}}", "job parameter 'month'"),
            (
                "{{tasks.evaluate.values.auc}}",
                "task 'evaluate', which is not a task",
            ),
            ("{{tasks.train.output}}", "names nothing"),
            ("{{job.start_time.century}}", "names nothing"),
            ("{{task.key}}", "names nothing"),
        ] {
            let err = checked(job(bad)).expect_err(bad);
            assert!(
                err.message.contains(reason) && err.message.starts_with("Task 'report'"),
                "{bad}: {}",
                err.message
            );
        }
    }
}
