//! The event stream: every change that others react to (webhooks now; job triggers and alerts
//! next), written in the same transaction as the change. It is also the audit trail.

/// One change, written in the same transaction as the change itself. Each consumer takes it
/// from its outbox; `id` orders the trail.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Event {
    pub id: i64,
    pub workspace: String,
    pub timestamp: i64,
    pub actor: String,
    /// `registered_model`, `model_version`, `model_version_tag`, `model_version_alias`,
    /// `model_version_stage`, `registered_model_tag`, `permissions`.
    pub entity: String,
    /// `created`, `updated`, `renamed`, `deleted`, `set`, `transitioned`.
    pub action: String,
    /// The registered model's name (or the object's id for permission changes).
    pub object: String,
    /// The event's data, as MLflow's webhook payload has it.
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    pub workspace: Option<String>,
    pub after_id: i64,
    pub entity: Option<String>,
    pub object: Option<String>,
    pub actor: Option<String>,
    pub limit: u64,
}
