//! Tracking entities in MLflow's wire shape (snake_case proto names, unset fields omitted), so the
//! HTTP layer serialises them as they are.

use serde::{Deserialize, Serialize};

/// Proto3 JSON writes NaN as the string "NaN" (JSON has no NaN); the MLflow client's parser
/// reads it back as NaN.
fn proto_double<S: serde::Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_nan() {
        serializer.serialize_str("NaN")
    } else {
        serializer.serialize_f64(*value)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStage {
    Active,
    Deleted,
}

impl LifecycleStage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deleted => "deleted",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        [Self::Active, Self::Deleted]
            .into_iter()
            .find(|stage| stage.as_str() == value)
    }
}

/// Which lifecycle stages a search returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewType {
    #[default]
    ActiveOnly,
    DeletedOnly,
    All,
}

impl ViewType {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "ACTIVE_ONLY" | "1" => Some(Self::ActiveOnly),
            "DELETED_ONLY" | "2" => Some(Self::DeletedOnly),
            "ALL" | "3" => Some(Self::All),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: LifecycleStage,
    pub last_update_time: i64,
    pub creation_time: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
    #[serde(skip)]
    pub owner_id: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    Running,
    Scheduled,
    Finished,
    Failed,
    Killed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Scheduled => "SCHEDULED",
            Self::Finished => "FINISHED",
            Self::Failed => "FAILED",
            Self::Killed => "KILLED",
        }
    }
    /// Accepts the enum name and the proto number, both of which clients send.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "RUNNING" | "1" => Some(Self::Running),
            "SCHEDULED" | "2" => Some(Self::Scheduled),
            "FINISHED" | "3" => Some(Self::Finished),
            "FAILED" | "4" => Some(Self::Failed),
            "KILLED" | "5" => Some(Self::Killed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    pub run_id: String,
    pub run_uuid: String,
    pub run_name: String,
    pub experiment_id: String,
    pub user_id: String,
    pub status: RunStatus,
    pub start_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    pub artifact_uri: String,
    pub lifecycle_stage: LifecycleStage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub key: String,
    #[serde(serialize_with = "proto_double")]
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dataset_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dataset_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub model_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub run_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RunData {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<KeyValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub name: String,
    pub digest: String,
    pub source_type: String,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub schema: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub profile: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInput {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
    pub dataset: Dataset,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInput {
    pub model_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelOutput {
    pub model_id: String,
    pub step: i64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RunInputs {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dataset_inputs: Vec<DatasetInput>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub model_inputs: Vec<ModelInput>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RunOutputs {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub model_outputs: Vec<ModelOutput>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub info: RunInfo,
    pub data: RunData,
    pub inputs: RunInputs,
    pub outputs: RunOutputs,
}

/// What a new run starts with; the store fills in ids and the artifact URI.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub experiment_id: String,
    pub user_id: String,
    pub run_name: String,
    pub start_time: i64,
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunUpdate {
    pub status: Option<RunStatus>,
    pub end_time: Option<i64>,
    pub run_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogBatch {
    pub metrics: Vec<Metric>,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LoggedModelStatus {
    LoggedModelStatusUnspecified,
    LoggedModelPending,
    LoggedModelReady,
    LoggedModelUploadFailed,
}

impl LoggedModelStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoggedModelStatusUnspecified => "LOGGED_MODEL_STATUS_UNSPECIFIED",
            Self::LoggedModelPending => "LOGGED_MODEL_PENDING",
            Self::LoggedModelReady => "LOGGED_MODEL_READY",
            Self::LoggedModelUploadFailed => "LOGGED_MODEL_UPLOAD_FAILED",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "LOGGED_MODEL_STATUS_UNSPECIFIED" | "0" => Some(Self::LoggedModelStatusUnspecified),
            "LOGGED_MODEL_PENDING" | "1" => Some(Self::LoggedModelPending),
            "LOGGED_MODEL_READY" | "2" => Some(Self::LoggedModelReady),
            "LOGGED_MODEL_UPLOAD_FAILED" | "3" => Some(Self::LoggedModelUploadFailed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedModelInfo {
    pub model_id: String,
    pub experiment_id: String,
    pub name: String,
    pub creation_timestamp_ms: i64,
    pub last_updated_timestamp_ms: i64,
    pub artifact_uri: String,
    pub status: LoggedModelStatus,
    /// The creating principal's id (an int64 in MLflow's proto).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creator_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct LoggedModelData {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<KeyValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedModel {
    pub info: LoggedModelInfo,
    pub data: LoggedModelData,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewLoggedModel {
    pub experiment_id: String,
    pub name: String,
    pub model_type: Option<String>,
    pub source_run_id: Option<String>,
    pub creator_id: i64,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
}
