//! Jobs as the store keeps them: the settings as the client sent them (checked by tarn-jobs,
//! Databricks' defaults filled in), who created the job and as whom its tasks run.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub job_id: i64,
    pub workspace: String,
    pub creator_user_name: String,
    /// The principal the job's tasks act as: the creator unless `run_as` names another.
    pub run_as_user_name: String,
    /// `JobSettings` as sent.
    pub settings: Value,
    /// Milliseconds since the epoch.
    pub created_time: i64,
}

impl Job {
    pub fn name(&self) -> &str {
        name_in(&self.settings)
    }
}

/// A job's name from its settings (`Untitled` when they have none, as Databricks names it).
pub fn name_in(settings: &Value) -> &str {
    settings
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("Untitled")
}
