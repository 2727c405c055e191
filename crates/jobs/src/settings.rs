//! Job settings in the shape of Databricks Jobs API 2.2 (`JobSettings`), checked before
//! anything is stored: the settings a client sends are kept as sent (with Databricks' defaults
//! filled in where it fills them) and read through the typed view below, which knows only the
//! fields tarn acts on; the others (clusters, libraries, notifications by e-mail) pass through.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;
use serde_json::{Map, Value};
use tarn_core::{Error, Result};

use crate::cron::{Cron, time_zone};
use crate::references;

/// The most tasks one job holds (Databricks' limit).
pub const MAX_TASKS: usize = 1000;
/// The most runs of one job at once (Databricks' limit).
pub const MAX_CONCURRENT_RUNS: i64 = 1000;
/// The longest task key.
const MAX_TASK_KEY: usize = 100;

/// The task types a job may hold and tarn runs.
pub const TASK_TYPES: [&str; 7] = [
    "notebook_task",
    "spark_python_task",
    "python_wheel_task",
    "sql_task",
    "condition_task",
    "run_job_task",
    "for_each_task",
];
/// Task types Databricks has that tarn does not run: refused by name rather than ignored.
const UNSUPPORTED_TASK_TYPES: [&str; 6] = [
    "pipeline_task",
    "dbt_task",
    "spark_jar_task",
    "spark_submit_task",
    "clean_rooms_notebook_task",
    "dashboard_task",
];

pub const RUN_IF: [&str; 6] = [
    "ALL_SUCCESS",
    "ALL_DONE",
    "NONE_FAILED",
    "AT_LEAST_ONE_SUCCESS",
    "ALL_FAILED",
    "AT_LEAST_ONE_FAILED",
];
const CONDITION_OPS: [&str; 6] = [
    "EQUAL_TO",
    "NOT_EQUAL",
    "GREATER_THAN",
    "GREATER_THAN_OR_EQUAL",
    "LESS_THAN",
    "LESS_THAN_OR_EQUAL",
];
const PAUSE_STATUS: [&str; 2] = ["PAUSED", "UNPAUSED"];
const PERIODIC_UNITS: [&str; 4] = ["MINUTES", "HOURS", "DAYS", "WEEKS"];
const TABLE_CONDITIONS: [&str; 2] = ["ANY_UPDATED", "ALL_UPDATED"];
const MODEL_CONDITIONS: [&str; 3] = ["MODEL_CREATED", "MODEL_VERSION_READY", "MODEL_ALIAS_SET"];

/// The fields of `JobSettings` tarn acts on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct JobSettings {
    pub name: Option<String>,
    pub tasks: Vec<TaskSettings>,
    pub parameters: Vec<JobParameter>,
    pub schedule: Option<Schedule>,
    pub trigger: Option<Trigger>,
    pub max_concurrent_runs: Option<i64>,
    pub timeout_seconds: Option<i64>,
    pub queue: Option<QueueSettings>,
    pub run_as: Option<RunAs>,
    pub tags: BTreeMap<String, String>,
    pub environments: Vec<Environment>,
}

/// A Python environment tasks name by `environment_key`: the packages installed for them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Environment {
    pub environment_key: String,
    pub spec: EnvironmentSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EnvironmentSpec {
    pub client: Option<String>,
    /// pip requirement lines: `pandas==2.2.3`, a wheel's path.
    pub dependencies: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TaskSettings {
    pub task_key: Option<String>,
    pub depends_on: Vec<Dependency>,
    pub run_if: Option<String>,
    pub max_retries: Option<i64>,
    pub min_retry_interval_millis: Option<i64>,
    pub retry_on_timeout: Option<bool>,
    pub timeout_seconds: Option<i64>,
    pub disabled: Option<bool>,
    pub condition_task: Option<ConditionTask>,
    pub run_job_task: Option<RunJobTask>,
    pub for_each_task: Option<Box<ForEachTask>>,
    pub environment_key: Option<String>,
    /// Every other field, the task's type among them.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Dependency {
    pub task_key: String,
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConditionTask {
    pub op: String,
    pub left: String,
    pub right: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunJobTask {
    pub job_id: Option<i64>,
    /// Values for the job's parameters; references resolve in the run that starts it.
    pub job_parameters: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ForEachTask {
    pub inputs: String,
    pub concurrency: Option<i64>,
    pub task: TaskSettings,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct JobParameter {
    pub name: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Schedule {
    pub quartz_cron_expression: String,
    pub timezone_id: String,
    pub pause_status: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Trigger {
    pub pause_status: Option<String>,
    pub periodic: Option<Periodic>,
    pub table_update: Option<TableUpdate>,
    /// Databricks' older name for `table_update`.
    pub table: Option<TableUpdate>,
    pub file_arrival: Option<FileArrival>,
    pub model: Option<ModelTrigger>,
    /// tarn's: runs when an alert changes to TRIGGERED (retraining on drift).
    pub alert: Option<AlertTrigger>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Periodic {
    pub interval: i64,
    pub unit: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TableUpdate {
    pub table_names: Vec<String>,
    pub condition: Option<String>,
    pub min_time_between_triggers_seconds: Option<i64>,
    pub wait_after_last_change_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FileArrival {
    pub url: String,
    pub min_time_between_triggers_seconds: Option<i64>,
    pub wait_after_last_change_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ModelTrigger {
    pub condition: String,
    pub securable_name: Option<String>,
    pub aliases: Vec<String>,
    pub min_time_between_triggers_seconds: Option<i64>,
    pub wait_after_last_change_seconds: Option<i64>,
}

/// A run when the alert changes to TRIGGERED, with the alert's details as the job parameters
/// of these names the job declares: `alert_id`, `alert_name`, `alert_state`, `alert_value`,
/// `alert_threshold`. `min_time_between_triggers_seconds` is the cool-down: a change within it
/// starts its run when it ends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AlertTrigger {
    pub alert_id: String,
    pub min_time_between_triggers_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct QueueSettings {
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunAs {
    pub user_name: Option<String>,
    pub service_principal_name: Option<String>,
}

impl JobSettings {
    /// The typed view of settings JSON; a field of the wrong type is refused by its path.
    pub fn read(settings: &Value) -> Result<Self> {
        serde_path_to_error::deserialize(settings).map_err(|err| {
            Error::invalid(format!(
                "Invalid job settings at '{}': {}",
                err.path(),
                err.inner()
            ))
        })
    }
}

impl TaskSettings {
    /// The task's type: the one field naming it.
    pub fn task_type(&self) -> Option<&'static str> {
        TASK_TYPES.into_iter().find(|kind| self.has(kind))
    }

    fn has(&self, kind: &str) -> bool {
        match kind {
            "condition_task" => self.condition_task.is_some(),
            "run_job_task" => self.run_job_task.is_some(),
            "for_each_task" => self.for_each_task.is_some(),
            other => self.rest.get(other).is_some_and(|value| !value.is_null()),
        }
    }

    pub fn key(&self) -> &str {
        self.task_key.as_deref().unwrap_or_default()
    }
}

/// Checks settings sent to create or reset a job and returns them as they will be stored:
/// as sent, with the defaults Databricks fills in (`max_concurrent_runs` 1, `timeout_seconds`
/// 0, `format` MULTI_TASK, a name). Nothing is stored when this refuses.
pub fn checked(settings: Value) -> Result<(Value, JobSettings)> {
    let Value::Object(mut fields) = settings else {
        return Err(Error::invalid("Job settings must be a JSON object"));
    };
    fields
        .entry("name")
        .or_insert_with(|| Value::String("Untitled".into()));
    fields
        .entry("max_concurrent_runs")
        .or_insert_with(|| Value::from(1));
    fields
        .entry("timeout_seconds")
        .or_insert_with(|| Value::from(0));
    fields
        .entry("format")
        .or_insert_with(|| Value::String("MULTI_TASK".into()));
    let settings = Value::Object(fields);
    let typed = JobSettings::read(&settings)?;
    validate(&typed)?;
    references::check(
        &settings,
        typed
            .tasks
            .iter()
            .map(|task| task.key().to_string())
            .collect(),
        typed.parameters.iter().map(|p| p.name.clone()).collect(),
    )?;
    Ok((settings, typed))
}

/// Everything that would make a job fail at run time for its settings alone.
pub fn validate(settings: &JobSettings) -> Result<()> {
    if settings.tasks.len() > MAX_TASKS {
        return Err(Error::invalid(format!(
            "A job holds at most {MAX_TASKS} tasks; this one has {}",
            settings.tasks.len()
        )));
    }
    if let Some(runs) = settings.max_concurrent_runs
        && !(0..=MAX_CONCURRENT_RUNS).contains(&runs)
    {
        return Err(Error::invalid(format!(
            "max_concurrent_runs must be between 0 and {MAX_CONCURRENT_RUNS}, not {runs}"
        )));
    }
    non_negative("timeout_seconds", settings.timeout_seconds)?;
    check_parameters(&settings.parameters)?;
    let mut keys = HashMap::new();
    for (index, task) in settings.tasks.iter().enumerate() {
        let key = check_task(task, &format!("tasks[{index}]"))?;
        if keys.insert(key.to_string(), task).is_some() {
            return Err(Error::invalid(format!(
                "Task key '{key}' is used by more than one task"
            )));
        }
    }
    let mut environments = BTreeSet::new();
    for environment in &settings.environments {
        if environment.environment_key.is_empty() {
            return Err(Error::invalid("environments: environment_key is required"));
        }
        if !environments.insert(environment.environment_key.as_str()) {
            return Err(Error::invalid(format!(
                "Environment key '{}' is used by more than one environment",
                environment.environment_key
            )));
        }
    }
    for task in &settings.tasks {
        check_dependencies(task, &keys)?;
        if let Some(key) = &task.environment_key
            && !environments.contains(key.as_str())
        {
            return Err(Error::invalid(format!(
                "Task '{}' names environment '{key}', which the job does not declare",
                task.key()
            )));
        }
    }
    if let Some(cycle) = cycle(&settings.tasks) {
        return Err(Error::invalid(format!(
            "The tasks' dependencies form a cycle: {}",
            cycle.join(" -> ")
        )));
    }
    if let Some(schedule) = &settings.schedule {
        check_schedule(schedule)?;
    }
    if let Some(trigger) = &settings.trigger {
        check_trigger(trigger)?;
    }
    Ok(())
}

fn non_negative(field: &str, value: Option<i64>) -> Result<()> {
    match value {
        Some(value) if value < 0 => Err(Error::invalid(format!(
            "{field} must not be negative, not {value}"
        ))),
        _ => Ok(()),
    }
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{field} '{value}' is not one of {}",
            allowed.join(", ")
        )))
    }
}

fn check_parameters(parameters: &[JobParameter]) -> Result<()> {
    let mut names = BTreeSet::new();
    for parameter in parameters {
        if parameter.name.is_empty() {
            return Err(Error::invalid("A job parameter needs a name"));
        }
        if parameter.default.is_none() {
            return Err(Error::invalid(format!(
                "Job parameter '{}' needs a default",
                parameter.name
            )));
        }
        if !names.insert(parameter.name.clone()) {
            return Err(Error::invalid(format!(
                "Job parameter '{}' is declared twice",
                parameter.name
            )));
        }
    }
    Ok(())
}

/// Checks one task on its own and returns its key.
fn check_task<'t>(task: &'t TaskSettings, at: &str) -> Result<&'t str> {
    let Some(key) = task.task_key.as_deref() else {
        return Err(Error::invalid(format!("{at}: task_key is required")));
    };
    if key.is_empty()
        || key.len() > MAX_TASK_KEY
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::invalid(format!(
            "Task key '{key}' must be 1 to {MAX_TASK_KEY} letters, digits, '_' or '-'"
        )));
    }
    if let Some(kind) = UNSUPPORTED_TASK_TYPES
        .into_iter()
        .find(|kind| task.rest.contains_key(*kind))
    {
        return Err(Error::invalid(format!(
            "Task '{key}': {kind} is not supported by tarn; use one of {}",
            TASK_TYPES.join(", ")
        )));
    }
    let kinds: Vec<&str> = TASK_TYPES
        .into_iter()
        .filter(|kind| task.has(kind))
        .collect();
    match kinds.as_slice() {
        [_] => {}
        [] => {
            return Err(Error::invalid(format!(
                "Task '{key}' needs one task type: one of {}",
                TASK_TYPES.join(", ")
            )));
        }
        several => {
            return Err(Error::invalid(format!(
                "Task '{key}' has more than one task type: {}",
                several.join(", ")
            )));
        }
    }
    if let Some(run_if) = &task.run_if {
        one_of(&format!("Task '{key}': run_if"), run_if, &RUN_IF)?;
    }
    if let Some(retries) = task.max_retries
        && retries < -1
    {
        return Err(Error::invalid(format!(
            "Task '{key}': max_retries must be -1 (no limit) or more, not {retries}"
        )));
    }
    non_negative(
        &format!("Task '{key}': min_retry_interval_millis"),
        task.min_retry_interval_millis,
    )?;
    non_negative(
        &format!("Task '{key}': timeout_seconds"),
        task.timeout_seconds,
    )?;
    if let Some(condition) = &task.condition_task {
        one_of(
            &format!("Task '{key}': condition_task.op"),
            &condition.op,
            &CONDITION_OPS,
        )?;
    }
    if let Some(run_job) = &task.run_job_task
        && run_job.job_id.is_none()
    {
        return Err(Error::invalid(format!(
            "Task '{key}': run_job_task.job_id is required"
        )));
    }
    if let Some(for_each) = &task.for_each_task {
        if for_each.inputs.is_empty() {
            return Err(Error::invalid(format!(
                "Task '{key}': for_each_task.inputs is required"
            )));
        }
        if let Some(concurrency) = for_each.concurrency
            && !(1..=100).contains(&concurrency)
        {
            return Err(Error::invalid(format!(
                "Task '{key}': for_each_task.concurrency must be between 1 and 100"
            )));
        }
        if for_each.task.for_each_task.is_some() {
            return Err(Error::invalid(format!(
                "Task '{key}': a for_each_task cannot hold another for_each_task"
            )));
        }
        check_task(&for_each.task, &format!("Task '{key}': for_each_task.task"))?;
    }
    Ok(key)
}

fn check_dependencies(task: &TaskSettings, keys: &HashMap<String, &TaskSettings>) -> Result<()> {
    let key = task.key();
    let mut seen = BTreeSet::new();
    for dependency in &task.depends_on {
        let Some(upstream) = keys.get(&dependency.task_key) else {
            return Err(Error::invalid(format!(
                "Task '{key}' depends on '{}', which is not a task of this job",
                dependency.task_key
            )));
        };
        if dependency.task_key == key {
            return Err(Error::invalid(format!("Task '{key}' depends on itself")));
        }
        if !seen.insert(dependency.task_key.as_str()) {
            return Err(Error::invalid(format!(
                "Task '{key}' depends on '{}' twice",
                dependency.task_key
            )));
        }
        match (&dependency.outcome, upstream.condition_task.is_some()) {
            (Some(outcome), true) => one_of(
                &format!("Task '{key}': the outcome of '{}'", dependency.task_key),
                outcome,
                &["true", "false"],
            )?,
            (Some(_), false) => {
                return Err(Error::invalid(format!(
                    "Task '{key}' names an outcome of '{}', which is not a condition_task",
                    dependency.task_key
                )));
            }
            (None, _) => {}
        }
    }
    Ok(())
}

/// A cycle among the tasks' dependencies, as the keys along it, if there is one.
fn cycle(tasks: &[TaskSettings]) -> Option<Vec<String>> {
    let upstream: HashMap<&str, Vec<&str>> = tasks
        .iter()
        .map(|task| {
            (
                task.key(),
                task.depends_on
                    .iter()
                    .map(|dependency| dependency.task_key.as_str())
                    .collect(),
            )
        })
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = HashMap::new();
    for task in tasks {
        // Depth first without recursion (a chain of a thousand tasks).
        let mut path: Vec<(&str, usize)> = vec![(task.key(), 0)];
        while let Some((key, next)) = path.last().copied() {
            if next == 0 {
                match marks.get(key) {
                    Some(Mark::Done) => {
                        path.pop();
                        continue;
                    }
                    Some(Mark::Visiting) => {
                        let start = path.iter().position(|(k, _)| *k == key).unwrap_or(0);
                        return Some(path[start..].iter().map(|(k, _)| k.to_string()).collect());
                    }
                    None => {
                        marks.insert(key, Mark::Visiting);
                    }
                }
            }
            let parents = upstream.get(key).map_or(&[][..], Vec::as_slice);
            if let Some(parent) = parents.get(next) {
                if let Some(top) = path.last_mut() {
                    top.1 += 1;
                }
                if marks.get(parent) == Some(&Mark::Visiting) {
                    let start = path.iter().position(|(k, _)| k == parent).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[start..].iter().map(|(k, _)| k.to_string()).collect();
                    cycle.push(parent.to_string());
                    return Some(cycle);
                }
                path.push((*parent, 0));
            } else {
                marks.insert(key, Mark::Done);
                path.pop();
            }
        }
    }
    None
}

fn check_schedule(schedule: &Schedule) -> Result<()> {
    let cron: Cron = schedule
        .quartz_cron_expression
        .parse()
        .map_err(|err: crate::cron::CronError| Error::invalid(err.to_string()))?;
    if schedule.timezone_id.is_empty() {
        return Err(Error::invalid("schedule.timezone_id is required"));
    }
    let zone = time_zone(&schedule.timezone_id).map_err(Error::invalid)?;
    if let Some(status) = &schedule.pause_status {
        one_of("schedule.pause_status", status, &PAUSE_STATUS)?;
    }
    if cron.next_after(chrono::Utc::now(), zone).is_none() {
        return Err(Error::invalid(format!(
            "The schedule '{cron}' never fires again"
        )));
    }
    Ok(())
}

fn check_trigger(trigger: &Trigger) -> Result<()> {
    if let Some(status) = &trigger.pause_status {
        one_of("trigger.pause_status", status, &PAUSE_STATUS)?;
    }
    let table = trigger.table_update.as_ref().or(trigger.table.as_ref());
    let kinds = [
        trigger.periodic.is_some(),
        table.is_some(),
        trigger.file_arrival.is_some(),
        trigger.model.is_some(),
        trigger.alert.is_some(),
    ];
    match kinds.iter().filter(|given| **given).count() {
        1 => {}
        0 => {
            return Err(Error::invalid(
                "A trigger needs one of periodic, table_update, file_arrival, model or alert",
            ));
        }
        _ => {
            return Err(Error::invalid(
                "A trigger takes only one of periodic, table_update, file_arrival, model and alert",
            ));
        }
    }
    if let Some(alert) = &trigger.alert {
        if alert.alert_id.trim().is_empty() {
            return Err(Error::invalid("trigger.alert.alert_id is required"));
        }
        non_negative(
            "trigger.alert.min_time_between_triggers_seconds",
            alert.min_time_between_triggers_seconds,
        )?;
    }
    if let Some(periodic) = &trigger.periodic {
        if periodic.interval < 1 {
            return Err(Error::invalid(
                "trigger.periodic.interval must be at least 1",
            ));
        }
        one_of("trigger.periodic.unit", &periodic.unit, &PERIODIC_UNITS)?;
    }
    if let Some(table) = table {
        if table.table_names.is_empty() {
            return Err(Error::invalid(
                "trigger.table_update.table_names needs at least one table",
            ));
        }
        if let Some(condition) = &table.condition {
            one_of(
                "trigger.table_update.condition",
                condition,
                &TABLE_CONDITIONS,
            )?;
        }
        non_negative(
            "trigger.table_update.min_time_between_triggers_seconds",
            table.min_time_between_triggers_seconds,
        )?;
        non_negative(
            "trigger.table_update.wait_after_last_change_seconds",
            table.wait_after_last_change_seconds,
        )?;
    }
    if let Some(files) = &trigger.file_arrival {
        if files.url.is_empty() {
            return Err(Error::invalid("trigger.file_arrival.url is required"));
        }
        watched_directory(&files.url)?;
        non_negative(
            "trigger.file_arrival.min_time_between_triggers_seconds",
            files.min_time_between_triggers_seconds,
        )?;
        non_negative(
            "trigger.file_arrival.wait_after_last_change_seconds",
            files.wait_after_last_change_seconds,
        )?;
    }
    if let Some(model) = &trigger.model {
        one_of(
            "trigger.model.condition",
            &model.condition,
            &MODEL_CONDITIONS,
        )?;
        if model.condition == "MODEL_ALIAS_SET" && model.aliases.is_empty() {
            return Err(Error::invalid(
                "trigger.model with MODEL_ALIAS_SET needs the aliases to watch",
            ));
        }
    }
    Ok(())
}

/// The local directory a file arrival trigger's `url` names: `file:///path` or `/path`.
pub fn watched_directory(url: &str) -> Result<std::path::PathBuf> {
    let path = std::path::Path::new(url.strip_prefix("file://").unwrap_or(url));
    if !path.is_absolute()
        || path
            .components()
            .any(|part| matches!(part, std::path::Component::ParentDir))
    {
        return Err(Error::invalid(format!(
            "trigger.file_arrival.url '{url}' must be a local directory: file:///path or /path"
        )));
    }
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn python(key: &str, depends_on: &[&str]) -> Value {
        json!({
            "task_key": key,
            "spark_python_task": {"python_file": "/jobs/step.py"},
            "depends_on": depends_on.iter().map(|k| json!({"task_key": k})).collect::<Vec<_>>(),
        })
    }

    fn refused(settings: Value) -> String {
        checked(settings).expect_err("refused").message
    }

    #[test]
    fn settings_come_back_as_sent_with_databricks_defaults() {
        let sent = json!({
            "name": "nightly",
            "tasks": [python("ingest", &[]), python("train", &["ingest"])],
            "tags": {"team": "ml"},
            "job_clusters": [{"job_cluster_key": "c", "new_cluster": {"num_workers": 3}}],
        });
        let (stored, typed) = checked(sent.clone()).expect("valid");
        for (field, value) in sent.as_object().expect("object") {
            assert_eq!(&stored[field], value, "{field} is kept as sent");
        }
        assert_eq!(stored["max_concurrent_runs"], 1);
        assert_eq!(stored["timeout_seconds"], 0);
        assert_eq!(stored["format"], "MULTI_TASK");
        assert_eq!(typed.tasks[1].task_type(), Some("spark_python_task"));
        let (unnamed, _) = checked(json!({})).expect("an empty job");
        assert_eq!(unnamed["name"], "Untitled");
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        let cases = [
            (json!([]), "JSON object"),
            (
                json!({"tasks": [{"spark_python_task": {}}]}),
                "task_key is required",
            ),
            (json!({"tasks": [python("a b", &[])]}), "letters, digits"),
            (
                json!({"tasks": [python("a", &[]), python("a", &[])]}),
                "more than one task",
            ),
            (
                json!({"tasks": [python("a", &["b"])]}),
                "not a task of this job",
            ),
            (json!({"tasks": [python("a", &["a"])]}), "depends on itself"),
            (
                json!({"tasks": [python("a", &["c"]), python("b", &["a"]), python("c", &["b"])]}),
                "cycle: a -> c -> b -> a",
            ),
            (json!({"tasks": [{"task_key": "a"}]}), "needs one task type"),
            (
                json!({"tasks": [{"task_key": "a", "spark_python_task": {}, "notebook_task": {}}]}),
                "more than one task type: notebook_task, spark_python_task",
            ),
            (
                json!({"tasks": [{"task_key": "a", "dbt_task": {}}]}),
                "dbt_task is not supported",
            ),
            (
                json!({"tasks": [{"task_key": "a", "spark_python_task": {}, "run_if": "SOMETIMES"}]}),
                "run_if 'SOMETIMES'",
            ),
            (
                json!({"tasks": [{"task_key": "a", "spark_python_task": {}, "max_retries": -2}]}),
                "max_retries",
            ),
            (
                json!({"tasks": [{"task_key": "a", "condition_task": {"op": "LIKE", "left": "1", "right": "2"}}]}),
                "condition_task.op 'LIKE'",
            ),
            (
                json!({"tasks": [python("a", &[]), {"task_key": "b", "spark_python_task": {}, "depends_on": [{"task_key": "a", "outcome": "true"}]}]}),
                "not a condition_task",
            ),
            (json!({"tasks": "none"}), "at 'tasks'"),
            (json!({"max_concurrent_runs": 5000}), "max_concurrent_runs"),
            (
                json!({"schedule": {"quartz_cron_expression": "0 0 25 * * ?", "timezone_id": "UTC"}}),
                "hours '25'",
            ),
            (
                json!({"schedule": {"quartz_cron_expression": "0 0 1 * * ?", "timezone_id": "Mars/Base"}}),
                "Unknown timezone_id 'Mars/Base'",
            ),
            (
                json!({"schedule": {"quartz_cron_expression": "0 0 1 1 1 ? 2020", "timezone_id": "UTC"}}),
                "never fires again",
            ),
            (json!({"trigger": {}}), "needs one of periodic"),
            (
                json!({"trigger": {"periodic": {"interval": 1, "unit": "HOURS"}, "model": {"condition": "MODEL_CREATED"}}}),
                "only one of",
            ),
            (
                json!({"trigger": {"periodic": {"interval": 0, "unit": "HOURS"}}}),
                "interval must be at least 1",
            ),
            (
                json!({"trigger": {"table_update": {"table_names": []}}}),
                "at least one table",
            ),
            (json!({"parameters": [{"name": "day"}]}), "needs a default"),
        ];
        for (settings, reason) in cases {
            let message = refused(settings.clone());
            assert!(
                message.contains(reason),
                "{settings}: {message} (wanted {reason})"
            );
        }
    }

    #[test]
    fn a_long_chain_and_a_wide_fan_are_no_cycle() {
        let mut tasks = vec![python("t0", &[])];
        for i in 1..1000 {
            let previous = format!("t{}", i - 1);
            tasks.push(python(&format!("t{i}"), &[previous.as_str()]));
        }
        checked(json!({"tasks": tasks})).expect("a chain of 1000 tasks");
        let mut fan = vec![python("start", &[])];
        let middle: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
        for key in &middle {
            fan.push(python(key, &["start"]));
        }
        let all: Vec<&str> = middle.iter().map(String::as_str).collect();
        fan.push(python("end", &all));
        checked(json!({"tasks": fan})).expect("fan-out and fan-in");
    }
}
