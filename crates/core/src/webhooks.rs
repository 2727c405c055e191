//! Webhooks: subscriptions to the event stream in the two formats users' tooling speaks.
//! `Mlflow`: MLflow 3's `{entity, action, timestamp, data}` envelope, `X-MLflow-*` headers.
//! `Databricks`: the registry-webhooks flat payload (`event`, `model_name`, ...) with
//! `X-Databricks-Signature`. This module maps events to each format's event names and
//! payloads; delivery lives in the server.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::events::{Change, CommentText, Event, StoredChange};
use crate::registry::Stage;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    Mlflow,
    Databricks,
}

impl Flavor {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mlflow => "mlflow",
            Self::Databricks => "databricks",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        [Self::Mlflow, Self::Databricks]
            .into_iter()
            .find(|flavor| flavor.as_str() == value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WebhookStatus {
    Active,
    Disabled,
    /// Databricks: fires only through the test endpoint.
    TestMode,
}

impl WebhookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Disabled => "DISABLED",
            Self::TestMode => "TEST_MODE",
        }
    }
    pub fn parse(value: &str) -> Result<Self> {
        match value.to_ascii_uppercase().as_str() {
            "ACTIVE" => Ok(Self::Active),
            "DISABLED" => Ok(Self::Disabled),
            "TEST_MODE" => Ok(Self::TestMode),
            _ => Err(Error::invalid(format!(
                "Invalid webhook status '{value}': use ACTIVE, DISABLED or TEST_MODE"
            ))),
        }
    }
}

/// A subscription. Events are stored as this flavor's names: `model_version.created` for
/// MLflow, `MODEL_VERSION_CREATED` for Databricks.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub workspace: String,
    pub flavor: Flavor,
    pub name: String,
    pub description: String,
    pub url: String,
    /// Write-only: never rendered.
    pub secret: Option<String>,
    /// Databricks `http_url_spec.authorization`: a whole `Authorization` header value.
    pub authorization: Option<String>,
    pub enable_ssl_verification: bool,
    /// Databricks: only this model's events (registry-wide when `None`).
    pub model_name: Option<String>,
    pub events: Vec<String>,
    pub status: WebhookStatus,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
}

/// MLflow's entity/action pairs, plus tarn's extensions for what MLflow 3 does not emit
/// (stage transitions, transition requests, comments, renames and deletions, and commits to
/// tables, by tarn or by other Delta writers).
pub const MLFLOW_EVENTS: &[&str] = &[
    "registered_model.created",
    "registered_model.updated",
    "registered_model.renamed",
    "registered_model.deleted",
    "registered_model_tag.set",
    "registered_model_tag.deleted",
    "model_version.created",
    "model_version.updated",
    "model_version.deleted",
    "model_version_tag.set",
    "model_version_tag.deleted",
    "model_version_alias.created",
    "model_version_alias.deleted",
    "model_version_stage.transitioned",
    "transition_request.created",
    "transition_request.approved",
    "transition_request.rejected",
    "transition_request.cancelled",
    "comment.created",
    "table.committed",
    "files.arrived",
    "job_run.started",
    "job_run.succeeded",
    "job_run.failed",
    "alert.state_changed",
];

pub const DATABRICKS_EVENTS: &[&str] = &[
    "MODEL_VERSION_CREATED",
    "MODEL_VERSION_TRANSITIONED_STAGE",
    "TRANSITION_REQUEST_CREATED",
    "COMMENT_CREATED",
    "REGISTERED_MODEL_CREATED",
    "MODEL_VERSION_TAG_SET",
    "MODEL_VERSION_TRANSITIONED_TO_STAGING",
    "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION",
    "MODEL_VERSION_TRANSITIONED_TO_ARCHIVED",
    "TRANSITION_REQUEST_TO_STAGING_CREATED",
    "TRANSITION_REQUEST_TO_PRODUCTION_CREATED",
    "TRANSITION_REQUEST_TO_ARCHIVED_CREATED",
];

/// `{entity, action}` (either case) to the stored `entity.action` name.
pub fn mlflow_event_name(entity: &str, action: &str) -> Result<String> {
    let name = format!(
        "{}.{}",
        entity.to_ascii_lowercase(),
        action.to_ascii_lowercase()
    );
    if MLFLOW_EVENTS.contains(&name.as_str()) {
        Ok(name)
    } else {
        Err(Error::invalid(format!(
            "Invalid webhook event {entity}/{action}; supported: {}",
            MLFLOW_EVENTS.join(", ")
        )))
    }
}

/// The stored name back in the REST shape: `{"entity": "MODEL_VERSION", "action": "CREATED"}`.
pub fn mlflow_event_json(name: &str) -> Value {
    let (entity, action) = name.split_once('.').unwrap_or((name, ""));
    json!({ "entity": entity.to_ascii_uppercase(), "action": action.to_ascii_uppercase() })
}

pub fn validate_databricks_event(name: &str) -> Result<()> {
    if DATABRICKS_EVENTS.contains(&name) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "Invalid registry webhook event '{name}'; supported: {}",
            DATABRICKS_EVENTS.join(", ")
        )))
    }
}

/// The names under which `change` (stored as `stored`) is announced in `flavor`; empty when
/// that format has none.
pub fn event_names(flavor: Flavor, change: &Change, stored: &StoredChange) -> Vec<String> {
    match flavor {
        Flavor::Mlflow => {
            let key = format!("{}.{}", stored.entity, stored.action);
            if MLFLOW_EVENTS.contains(&key.as_str()) {
                vec![key]
            } else {
                Vec::new()
            }
        }
        Flavor::Databricks => {
            // A move to Staging, Production or Archived is announced under its own name too.
            let staged = |all: &str, stage: &Stage, named: &dyn Fn(&str) -> String| {
                let mut names = vec![all.to_string()];
                if *stage != Stage::None {
                    names.push(named(&stage.as_str().to_ascii_uppercase()));
                }
                names
            };
            match change {
                Change::ModelCreated { .. } => vec!["REGISTERED_MODEL_CREATED".into()],
                Change::VersionCreated { .. } => vec!["MODEL_VERSION_CREATED".into()],
                Change::VersionTagSet { .. } => vec!["MODEL_VERSION_TAG_SET".into()],
                Change::CommentCreated(_) => vec!["COMMENT_CREATED".into()],
                Change::StageTransitioned { to_stage, .. } => {
                    staged("MODEL_VERSION_TRANSITIONED_STAGE", to_stage, &|stage| {
                        format!("MODEL_VERSION_TRANSITIONED_TO_{stage}")
                    })
                }
                Change::TransitionRequested { to_stage, .. } => {
                    staged("TRANSITION_REQUEST_CREATED", to_stage, &|stage| {
                        format!("TRANSITION_REQUEST_TO_{stage}_CREATED")
                    })
                }
                _ => Vec::new(),
            }
        }
    }
}

/// Whether `webhook` subscribes to `event` (its change stored as `stored`, computed once per
/// event by the caller); returns the matching names.
pub fn matching_names(webhook: &Webhook, event: &Event, stored: &StoredChange) -> Vec<String> {
    if webhook.workspace != event.workspace || webhook.status != WebhookStatus::Active {
        return Vec::new();
    }
    if let Some(model) = &webhook.model_name
        && Some(model.as_str()) != event.change.model_name()
    {
        return Vec::new();
    }
    let named = match &event.change {
        Change::JobRunStarted(run) | Change::JobRunSucceeded(run) | Change::JobRunFailed(run) => {
            run.notify.contains(&webhook.id)
        }
        Change::AlertStateChanged(change) => change.notify.contains(&webhook.id),
        _ => false,
    };
    event_names(webhook.flavor, &event.change, stored)
        .into_iter()
        .filter(|name| named || webhook.events.iter().any(|e| e == name))
        .collect()
}

/// MLflow's ISO-8601 UTC timestamp (`2026-11-25T02:13:47.123000+00:00`) from milliseconds.
pub fn iso_timestamp(millis: i64) -> String {
    let (year, month, day, hour, minute, second, milli) = crate::ids::utc_parts(millis);
    format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{:06}+00:00",
        milli * 1000
    )
}

/// The JSON body delivered for `event` (its change stored as `stored`) under `name` to
/// `webhook`.
pub fn payload(webhook: &Webhook, name: &str, event: &Event, stored: &StoredChange) -> Value {
    match webhook.flavor {
        Flavor::Mlflow => {
            let (entity, action) = name.split_once('.').unwrap_or((name, ""));
            json!({
                "entity": entity,
                "action": action,
                "timestamp": iso_timestamp(event.timestamp),
                "data": stored.data,
                "workspace": event.workspace,
            })
        }
        Flavor::Databricks => databricks_payload(webhook, name, event),
    }
}

fn databricks_payload(webhook: &Webhook, name: &str, event: &Event) -> Value {
    let model = event.change.model_name().unwrap_or_default();
    let mut body = json!({
        "event": name,
        "webhook_id": webhook.id,
        "event_timestamp": event.timestamp,
        "model_name": model,
    });
    let actor = &event.actor;
    let mut moved = |version: i64, from: &Stage, to: &Stage| {
        body["version"] = json!(version.to_string());
        body["from_stage"] = json!(from);
        body["to_stage"] = json!(to);
    };
    let text = match &event.change {
        Change::StageTransitioned {
            version,
            from_stage,
            to_stage,
            ..
        } => {
            moved(*version, from_stage, to_stage);
            format!(
                "{actor} moved version {version} of {model} from {} to {}.",
                from_stage.as_str(),
                to_stage.as_str()
            )
        }
        Change::TransitionRequested {
            version,
            from_stage,
            to_stage,
            comment,
            ..
        } => {
            moved(*version, from_stage, to_stage);
            body["comment"] = json!(comment);
            format!(
                "{actor} requested moving version {version} of {model} from {} to {}.",
                from_stage.as_str(),
                to_stage.as_str()
            )
        }
        Change::VersionTagSet {
            version,
            key,
            value,
            ..
        } => {
            body["version"] = json!(version.to_string());
            body["tags"] = json!([{ "key": key, "value": value }]);
            format!("{actor} set a tag on version {version} of {model}.")
        }
        Change::CommentCreated(CommentText {
            version, comment, ..
        }) => {
            body["version"] = json!(version.to_string());
            body["comment"] = json!(comment);
            format!("{actor} commented on version {version} of {model}.")
        }
        Change::VersionCreated { version, .. } => {
            body["version"] = json!(version.to_string());
            format!("{actor} created version {version} of {model}.")
        }
        _ => format!("{actor} created registered model {model}."),
    };
    body["text"] = json!(text);
    body
}

/// A representative event for the test endpoints: the first subscribed name, on a made-up
/// version of the webhook's model.
pub fn example_event(webhook: &Webhook, name: &str, now: i64) -> Event {
    let model = webhook
        .model_name
        .clone()
        .unwrap_or_else(|| "example-model".into());
    let version = 1;
    let change = match name {
        n if n.contains("TRANSITION_REQUEST") || n.starts_with("transition_request") => {
            Change::TransitionRequested {
                name: model.clone(),
                version,
                from_stage: Stage::None,
                to_stage: Stage::Production,
                comment: "example".into(),
                request_id: 1,
            }
        }
        n if n.contains("TRANSITIONED") || n.starts_with("model_version_stage") => {
            Change::StageTransitioned {
                name: model.clone(),
                version,
                from_stage: Stage::None,
                to_stage: Stage::Production,
                system: false,
                comment: String::new(),
            }
        }
        n if n.contains("TAG") || n.contains("tag") => Change::VersionTagSet {
            name: model.clone(),
            version,
            key: "example_key".into(),
            value: "example_value".into(),
        },
        n if n.contains("COMMENT") || n.starts_with("comment") => {
            Change::CommentCreated(CommentText {
                name: model.clone(),
                version,
                comment: "example".into(),
                id: 1,
            })
        }
        n if n.starts_with("REGISTERED_MODEL") || n.starts_with("registered_model") => {
            Change::ModelCreated {
                name: model.clone(),
                tags: BTreeMap::new(),
                description: "example".into(),
            }
        }
        n if n.contains("alias") => Change::AliasSet {
            name: model.clone(),
            alias: "example_alias".into(),
            version,
        },
        _ => Change::VersionCreated {
            name: model.clone(),
            version,
            source: "models:/m-example".into(),
            run_id: Some("example".into()),
            model_id: None,
            tags: BTreeMap::new(),
            description: "example".into(),
        },
    };
    Event {
        id: 0,
        workspace: webhook.workspace.clone(),
        timestamp: now,
        actor: "tarn".into(),
        object: model,
        change,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(change: Change) -> Event {
        Event {
            id: 1,
            workspace: "dev".into(),
            timestamp: 1_795_572_827_587,
            actor: "alice".into(),
            object: "fraud".into(),
            change,
        }
    }

    fn stored(event: &Event) -> StoredChange {
        event.change.store().expect("stored")
    }

    fn hook(flavor: Flavor, events: &[&str], model: Option<&str>) -> Webhook {
        Webhook {
            id: "w1".into(),
            workspace: "dev".into(),
            flavor,
            name: "h".into(),
            description: String::new(),
            url: "https://example.com".into(),
            secret: None,
            authorization: None,
            enable_ssl_verification: true,
            model_name: model.map(str::to_string),
            events: events.iter().map(|e| e.to_string()).collect(),
            status: WebhookStatus::Active,
            creation_timestamp: 0,
            last_updated_timestamp: 0,
        }
    }

    #[test]
    fn stage_transitions_map_to_both_databricks_names() {
        let moved = event(Change::StageTransitioned {
            name: "fraud".into(),
            version: 3,
            from_stage: Stage::Staging,
            to_stage: Stage::Production,
            system: false,
            comment: String::new(),
        });
        let webhook = hook(
            Flavor::Databricks,
            &[
                "MODEL_VERSION_TRANSITIONED_STAGE",
                "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION",
            ],
            Some("fraud"),
        );
        assert_eq!(
            matching_names(&webhook, &moved, &stored(&moved)),
            vec![
                "MODEL_VERSION_TRANSITIONED_STAGE",
                "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION"
            ]
        );
        let body = payload(
            &webhook,
            "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION",
            &moved,
            &stored(&moved),
        );
        assert_eq!(body["event"], "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION");
        assert_eq!(
            (
                &body["model_name"],
                &body["version"],
                &body["from_stage"],
                &body["to_stage"]
            ),
            (
                &json!("fraud"),
                &json!("3"),
                &json!("Staging"),
                &json!("Production")
            )
        );
        assert_eq!(body["event_timestamp"], 1_795_572_827_587_i64);
        // Another model's webhook hears nothing.
        let other = hook(
            Flavor::Databricks,
            &["MODEL_VERSION_TRANSITIONED_STAGE"],
            Some("churn"),
        );
        assert!(matching_names(&other, &moved, &stored(&moved)).is_empty());
    }

    #[test]
    fn mlflow_envelope() {
        let created = event(Change::VersionCreated {
            name: "fraud".into(),
            version: 1,
            source: "models:/m-1".into(),
            run_id: None,
            model_id: None,
            tags: BTreeMap::new(),
            description: String::new(),
        });
        let webhook = hook(Flavor::Mlflow, &["model_version.created"], None);
        assert_eq!(
            matching_names(&webhook, &created, &stored(&created)),
            vec!["model_version.created"]
        );
        let body = payload(
            &webhook,
            "model_version.created",
            &created,
            &stored(&created),
        );
        assert_eq!(body["entity"], "model_version");
        assert_eq!(body["action"], "created");
        assert_eq!(body["timestamp"], "2026-11-25T02:13:47.587000+00:00");
        assert_eq!(body["data"]["version"], "1");
        assert_eq!(
            mlflow_event_name("MODEL_VERSION", "CREATED")
                .ok()
                .as_deref(),
            Some("model_version.created")
        );
        assert!(mlflow_event_name("RUN", "CREATED").is_err());
        assert_eq!(
            mlflow_event_json("model_version_alias.created"),
            json!({"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"})
        );
        // Disabled webhooks and other workspaces hear nothing.
        let mut disabled = webhook.clone();
        disabled.status = WebhookStatus::Disabled;
        assert!(matching_names(&disabled, &created, &stored(&created)).is_empty());
        let mut elsewhere = webhook;
        elsewhere.workspace = "prod".into();
        assert!(matching_names(&elsewhere, &created, &stored(&created)).is_empty());
    }
}
