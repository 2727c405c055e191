//! The event stream: every change that others react to (webhooks now; job triggers and alerts
//! next), written in the same transaction as the change. It is also the audit trail.
//!
//! A change is stored as `entity`, `action` and `data` (its payload as JSON), so the trail can be
//! filtered in SQL and delivered as MLflow's webhook payloads, and read back into [`Change`]:
//! consumers match on variants, never on strings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::catalog::{PermissionsChange, SecurableType, TableType};
use crate::registry::Stage;
use crate::serving::EndpointConfig;

/// The scope of changes to principals, groups and tokens, which belong to no workspace.
pub const ACCOUNT: &str = "account";

/// One change, written in the same transaction as the change itself. Each consumer takes it
/// from its outbox; `id` orders the trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: i64,
    pub workspace: String,
    pub timestamp: i64,
    pub actor: String,
    /// What the change is about, as stored: the registered model's name, the table's full name,
    /// the endpoint's or webhook's id, `object_type/id` for permissions, the principal's name.
    pub object: String,
    pub change: Change,
}

/// What changed. The `rename` of each variant is its stored `entity.action`; the fields are its
/// payload, named and shaped as MLflow's webhook payloads have them (versions as text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data")]
pub enum Change {
    #[serde(rename = "registered_model.created")]
    ModelCreated {
        name: String,
        tags: BTreeMap<String, String>,
        description: String,
    },
    #[serde(rename = "registered_model.renamed")]
    ModelRenamed { name: String, previous_name: String },
    #[serde(rename = "registered_model.updated")]
    ModelUpdated { name: String, description: String },
    #[serde(rename = "registered_model.deleted")]
    ModelDeleted { name: String },
    #[serde(rename = "registered_model_tag.set")]
    ModelTagSet {
        name: String,
        key: String,
        value: String,
    },
    #[serde(rename = "registered_model_tag.deleted")]
    ModelTagDeleted { name: String, key: String },
    #[serde(rename = "model_version.created")]
    VersionCreated {
        name: String,
        #[serde(with = "as_text")]
        version: i64,
        source: String,
        run_id: Option<String>,
        model_id: Option<String>,
        tags: BTreeMap<String, String>,
        description: String,
    },
    #[serde(rename = "model_version.updated")]
    VersionUpdated {
        name: String,
        #[serde(with = "as_text")]
        version: i64,
        description: String,
    },
    #[serde(rename = "model_version.deleted")]
    VersionDeleted {
        name: String,
        #[serde(with = "as_text")]
        version: i64,
    },
    #[serde(rename = "model_version_tag.set")]
    VersionTagSet {
        name: String,
        #[serde(with = "as_text")]
        version: i64,
        key: String,
        value: String,
    },
    #[serde(rename = "model_version_tag.deleted")]
    VersionTagDeleted {
        name: String,
        #[serde(with = "as_text")]
        version: i64,
        key: String,
    },
    /// A version moved between stages; `system` when the move archived it on another's way in.
    #[serde(rename = "model_version_stage.transitioned")]
    StageTransitioned {
        name: String,
        #[serde(with = "as_text")]
        version: i64,
        from_stage: Stage,
        to_stage: Stage,
        system: bool,
        comment: String,
    },
    #[serde(rename = "model_version_alias.created")]
    AliasSet {
        name: String,
        alias: String,
        #[serde(with = "as_text")]
        version: i64,
    },
    #[serde(rename = "model_version_alias.deleted")]
    AliasDeleted { name: String, alias: String },
    #[serde(rename = "transition_request.created")]
    TransitionRequested {
        name: String,
        #[serde(with = "as_text")]
        version: i64,
        from_stage: Stage,
        to_stage: Stage,
        comment: String,
        #[serde(with = "as_text")]
        request_id: i64,
    },
    #[serde(rename = "transition_request.approved")]
    TransitionRequestApproved(RequestResolved),
    #[serde(rename = "transition_request.rejected")]
    TransitionRequestRejected(RequestResolved),
    #[serde(rename = "transition_request.cancelled")]
    TransitionRequestCancelled(RequestResolved),
    #[serde(rename = "comment.created")]
    CommentCreated(CommentText),
    #[serde(rename = "comment.updated")]
    CommentUpdated(CommentText),
    #[serde(rename = "comment.deleted")]
    CommentDeleted {
        name: String,
        #[serde(with = "as_text")]
        version: i64,
        #[serde(with = "as_text")]
        id: i64,
    },
    #[serde(rename = "permissions.updated")]
    PermissionsUpdated(ObjectGrants),
    #[serde(rename = "permissions.replaced")]
    PermissionsReplaced(ObjectGrants),

    #[serde(rename = "schema.created")]
    SchemaCreated { full_name: String },
    #[serde(rename = "schema.updated")]
    SchemaUpdated {
        full_name: String,
        comment: Option<String>,
    },
    /// A schema dropped, with the tables dropped with it.
    #[serde(rename = "schema.deleted")]
    SchemaDeleted {
        full_name: String,
        tables: Vec<String>,
    },
    #[serde(rename = "table.created")]
    TableCreated {
        full_name: String,
        table_type: TableType,
        storage_location: String,
    },
    #[serde(rename = "table.schema_changed")]
    TableSchemaChanged {
        full_name: String,
        columns: Vec<String>,
    },
    /// A new version of a table's data: written through tarn (`outside` false, with the
    /// tables it read) or by another Delta writer, found in the table's log.
    #[serde(rename = "table.committed")]
    TableCommitted {
        full_name: String,
        version: i64,
        operation: String,
        #[serde(default)]
        sources: Vec<String>,
        outside: bool,
    },
    /// New files under a directory a job's file arrival trigger watches, found by listing it:
    /// how many, and the first of them.
    #[serde(rename = "files.arrived")]
    FilesArrived {
        location: String,
        count: usize,
        files: Vec<String>,
    },
    #[serde(rename = "table.deleted")]
    TableDeleted {
        full_name: String,
        table_type: TableType,
    },
    /// Unity Catalog grants changed on a catalog, schema or table.
    #[serde(rename = "securable.permissions_changed")]
    GrantsChanged {
        securable_type: SecurableType,
        securable: String,
        changes: Vec<PermissionsChange>,
    },
    #[serde(rename = "securable.tags_changed")]
    TagsChanged {
        securable_type: SecurableType,
        securable: String,
        set: BTreeMap<String, String>,
        unset: Vec<String>,
    },
    #[serde(rename = "catalog.bound")]
    CatalogBound(CatalogBinding),
    #[serde(rename = "catalog.unbound")]
    CatalogUnbound(CatalogBinding),

    #[serde(rename = "feature_table.created")]
    FeatureTableCreated {
        name: String,
        primary_keys: Vec<String>,
        timestamp_key: Option<String>,
    },
    /// Values of a feature table written to the online store.
    #[serde(rename = "feature_table.published")]
    FeaturesPublished {
        table_name: String,
        mode: String,
        from_version: Option<u64>,
        version: u64,
        keys_written: u64,
        keys_removed: u64,
        ttl: Option<String>,
        refresh: Option<String>,
    },

    #[serde(rename = "serving_endpoint.created")]
    EndpointCreated(EndpointChange),
    #[serde(rename = "serving_endpoint.updated")]
    EndpointUpdated(EndpointChange),
    #[serde(rename = "serving_endpoint.deleted")]
    EndpointDeleted {
        /// Absent from events written before it was recorded.
        #[serde(default)]
        id: String,
        name: String,
    },

    #[serde(rename = "job.created")]
    JobCreated(JobChange),
    /// Reset or updated: the settings after the change.
    #[serde(rename = "job.updated")]
    JobUpdated(JobChange),
    #[serde(rename = "job.deleted")]
    JobDeleted { job_id: i64, name: String },
    /// A run of a job started (a repair's start too).
    #[serde(rename = "job_run.started")]
    JobRunStarted(JobRunChange),
    #[serde(rename = "job_run.succeeded")]
    JobRunSucceeded(JobRunChange),
    /// Ended without success: failed, timed out, cancelled or skipped.
    #[serde(rename = "job_run.failed")]
    JobRunFailed(JobRunChange),

    #[serde(rename = "monitor.created")]
    MonitorCreated(MonitorChange),
    #[serde(rename = "monitor.updated")]
    MonitorUpdated(MonitorChange),
    #[serde(rename = "monitor.deleted")]
    MonitorDeleted { table_name: String },
    /// A refresh of a monitor's metrics ended: SUCCESS, FAILED or CANCELED, with the source
    /// table version its metrics reflect.
    #[serde(rename = "monitor_refresh.finished")]
    MonitorRefreshFinished {
        table_name: String,
        refresh_id: i64,
        state: String,
        source_version: Option<i64>,
        message: Option<String>,
    },

    #[serde(rename = "alert.created")]
    AlertCreated(AlertChange),
    #[serde(rename = "alert.updated")]
    AlertUpdated(AlertChange),
    #[serde(rename = "alert.deleted")]
    AlertDeleted {
        alert_id: String,
        display_name: String,
    },
    /// An evaluation changed an alert's state, or announced a state again (a retrigger).
    #[serde(rename = "alert.state_changed")]
    AlertStateChanged(AlertStateChange),

    #[serde(rename = "webhook.created")]
    WebhookCreated(WebhookChange),
    #[serde(rename = "webhook.updated")]
    WebhookUpdated(WebhookChange),
    #[serde(rename = "webhook.deleted")]
    WebhookDeleted { id: String },

    /// A user, group or service principal.
    #[serde(rename = "principal.created")]
    PrincipalCreated { name: String, kind: String },
    #[serde(rename = "principal.activated")]
    PrincipalActivated { name: String },
    #[serde(rename = "principal.deactivated")]
    PrincipalDeactivated { name: String },
    /// Deactivated, out of every group and workspace, its tokens revoked.
    #[serde(rename = "principal.deleted")]
    PrincipalDeleted { name: String },
    /// Its SCIM attributes replaced.
    #[serde(rename = "principal.updated")]
    PrincipalUpdated { name: String, attributes: Value },
    #[serde(rename = "principal.password_set")]
    PasswordSet { name: String },
    #[serde(rename = "group.member_added")]
    GroupMemberAdded { group: String, member: String },
    #[serde(rename = "group.member_removed")]
    GroupMemberRemoved { group: String, member: String },
    /// An access token issued; the token itself is never recorded.
    #[serde(rename = "token.created")]
    TokenCreated {
        id: String,
        principal: String,
        expires_at: Option<i64>,
    },
    #[serde(rename = "token.revoked")]
    TokenRevoked { id: String },
    #[serde(rename = "workspace.created")]
    WorkspaceCreated { name: String },
    #[serde(rename = "workspace.member_added")]
    WorkspaceMemberAdded { workspace: String, member: String },
    #[serde(rename = "workspace.member_removed")]
    WorkspaceMemberRemoved { workspace: String, member: String },
}

/// An alert's settings after a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertChange {
    pub alert_id: String,
    pub display_name: String,
    pub settings: Value,
}

/// An alert's evaluation that is announced: its state before and after, the value compared
/// and the threshold, and the webhooks its subscriptions name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertStateChange {
    pub alert_id: String,
    pub display_name: String,
    pub state: String,
    pub previous_state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub query_text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
}

/// A monitor's settings after a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorChange {
    pub table_name: String,
    pub monitor_version: i64,
    pub settings: Value,
}

/// A transition request approved, rejected or cancelled, with the requests it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestResolved {
    pub name: String,
    #[serde(with = "as_text")]
    pub version: i64,
    pub from_stage: Stage,
    pub to_stage: Stage,
    pub comment: String,
    #[serde(with = "all_as_text")]
    pub request_ids: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommentText {
    pub name: String,
    #[serde(with = "as_text")]
    pub version: i64,
    pub comment: String,
    #[serde(with = "as_text")]
    pub id: i64,
}

/// The grants on a registry or tracking object after a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectGrants {
    pub object_type: String,
    pub object_id: String,
    pub grants: Vec<ObjectGrant>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectGrant {
    pub principal: String,
    pub permission_level: String,
}

/// A catalog bound to (or unbound from) a workspace that may read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogBinding {
    pub catalog: String,
    pub workspace: String,
    pub access: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRunChange {
    /// Absent for a one-time run.
    pub job_id: Option<i64>,
    pub run_id: i64,
    pub run_name: String,
    pub trigger: String,
    pub run_as: String,
    /// Once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_state: Option<String>,
    #[serde(default)]
    pub state_message: String,
    /// The webhooks the job's `webhook_notifications` name for this event: they are told
    /// whatever events they subscribe to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobChange {
    pub job_id: i64,
    pub name: String,
    /// The job's settings as stored.
    pub settings: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointChange {
    /// Absent from events written before it was recorded.
    #[serde(default)]
    pub id: String,
    pub name: String,
    pub config: EndpointConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookChange {
    pub id: String,
    pub flavor: String,
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub status: String,
    pub model_name: Option<String>,
}

/// A change as its rows store it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChange {
    pub entity: String,
    pub action: String,
    pub data: Value,
}

/// Grants and tags on the catalog's securables are stored under the securable's type (`table`,
/// `schema`, `catalog`), so the audit trail of a table lists them with the table's other changes.
const SECURABLE: &str = "securable";

impl Change {
    /// Whether the change can alter who may do what, or what a name resolves to: a server's
    /// caches of credentials, memberships, passed checks and lookups forget what they hold.
    pub fn changes_access(&self) -> bool {
        matches!(
            self,
            Self::ModelRenamed { .. }
                | Self::ModelDeleted { .. }
                | Self::PermissionsUpdated(_)
                | Self::PermissionsReplaced(_)
                | Self::SchemaDeleted { .. }
                | Self::TableDeleted { .. }
                | Self::GrantsChanged { .. }
                | Self::CatalogBound(_)
                | Self::CatalogUnbound(_)
                | Self::FeatureTableCreated { .. }
                | Self::FeaturesPublished { .. }
                | Self::EndpointCreated(_)
                | Self::EndpointUpdated(_)
                | Self::EndpointDeleted { .. }
                | Self::PrincipalActivated { .. }
                | Self::PrincipalDeactivated { .. }
                | Self::PrincipalDeleted { .. }
                | Self::PasswordSet { .. }
                | Self::GroupMemberAdded { .. }
                | Self::GroupMemberRemoved { .. }
                | Self::TokenRevoked { .. }
                | Self::WorkspaceMemberAdded { .. }
                | Self::WorkspaceMemberRemoved { .. }
        )
    }

    /// The change's `entity`, `action` and payload, as stored.
    pub fn store(&self) -> crate::Result<StoredChange> {
        let tagged = serde_json::to_value(self)
            .map_err(|err| crate::Error::internal_from("cannot encode an event", err))?;
        let kind = tagged["kind"].as_str().unwrap_or_default();
        let (entity, action) = kind.split_once('.').unwrap_or((kind, ""));
        let data = tagged["data"].clone();
        let entity = match (entity, &data["securable_type"]) {
            (SECURABLE, Value::String(securable_type)) => securable_type.clone(),
            _ => entity.to_string(),
        };
        Ok(StoredChange {
            entity,
            action: action.to_string(),
            data,
        })
    }

    /// Reads a stored change back; an unknown kind or a payload of the wrong shape is an error.
    pub fn from_stored(entity: &str, action: &str, mut data: Value) -> serde_json::Result<Self> {
        let entity = if matches!(action, "permissions_changed" | "tags_changed") {
            if let Value::Object(fields) = &mut data {
                fields
                    .entry("securable_type")
                    .or_insert_with(|| Value::String(entity.to_string()));
            }
            SECURABLE
        } else {
            entity
        };
        serde_json::from_value(serde_json::json!({
            "kind": format!("{entity}.{action}"),
            "data": data,
        }))
    }

    /// What the change is about, as the `object` column stores it.
    pub fn object(&self) -> String {
        if let Some(model) = self.model_name() {
            return model.to_string();
        }
        match self {
            Self::SchemaCreated { full_name }
            | Self::SchemaUpdated { full_name, .. }
            | Self::SchemaDeleted { full_name, .. }
            | Self::TableCreated { full_name, .. }
            | Self::TableSchemaChanged { full_name, .. }
            | Self::TableCommitted { full_name, .. }
            | Self::FilesArrived {
                location: full_name,
                ..
            }
            | Self::TableDeleted { full_name, .. }
            | Self::GrantsChanged {
                securable: full_name,
                ..
            }
            | Self::TagsChanged {
                securable: full_name,
                ..
            }
            | Self::FeatureTableCreated {
                name: full_name, ..
            }
            | Self::FeaturesPublished {
                table_name: full_name,
                ..
            }
            | Self::MonitorCreated(MonitorChange {
                table_name: full_name,
                ..
            })
            | Self::MonitorUpdated(MonitorChange {
                table_name: full_name,
                ..
            })
            | Self::MonitorDeleted {
                table_name: full_name,
            }
            | Self::MonitorRefreshFinished {
                table_name: full_name,
                ..
            } => full_name.clone(),
            Self::CatalogBound(binding) | Self::CatalogUnbound(binding) => binding.catalog.clone(),
            Self::JobCreated(JobChange { job_id, .. })
            | Self::JobUpdated(JobChange { job_id, .. })
            | Self::JobDeleted { job_id, .. } => job_id.to_string(),
            Self::JobRunStarted(run) | Self::JobRunSucceeded(run) | Self::JobRunFailed(run) => {
                run.run_id.to_string()
            }
            Self::PermissionsUpdated(grants) | Self::PermissionsReplaced(grants) => {
                format!("{}/{}", grants.object_type, grants.object_id)
            }
            Self::AlertCreated(AlertChange { alert_id, .. })
            | Self::AlertUpdated(AlertChange { alert_id, .. })
            | Self::AlertDeleted { alert_id, .. }
            | Self::AlertStateChanged(AlertStateChange { alert_id, .. }) => alert_id.clone(),
            Self::EndpointCreated(EndpointChange { id, .. })
            | Self::EndpointUpdated(EndpointChange { id, .. })
            | Self::EndpointDeleted { id, .. }
            | Self::WebhookCreated(WebhookChange { id, .. })
            | Self::WebhookUpdated(WebhookChange { id, .. })
            | Self::WebhookDeleted { id }
            | Self::TokenRevoked { id } => id.clone(),
            Self::PrincipalCreated { name, .. }
            | Self::PrincipalActivated { name }
            | Self::PrincipalDeactivated { name }
            | Self::PrincipalUpdated { name, .. }
            | Self::PrincipalDeleted { name }
            | Self::PasswordSet { name }
            | Self::WorkspaceCreated { name }
            | Self::GroupMemberAdded { group: name, .. }
            | Self::GroupMemberRemoved { group: name, .. }
            | Self::TokenCreated {
                principal: name, ..
            }
            | Self::WorkspaceMemberAdded {
                workspace: name, ..
            }
            | Self::WorkspaceMemberRemoved {
                workspace: name, ..
            } => name.clone(),
            // Registry changes answered above.
            _ => String::new(),
        }
    }

    /// The registered model a registry change is about.
    pub fn model_name(&self) -> Option<&str> {
        match self {
            Self::ModelCreated { name, .. }
            | Self::ModelRenamed { name, .. }
            | Self::ModelUpdated { name, .. }
            | Self::ModelDeleted { name }
            | Self::ModelTagSet { name, .. }
            | Self::ModelTagDeleted { name, .. }
            | Self::VersionCreated { name, .. }
            | Self::VersionUpdated { name, .. }
            | Self::VersionDeleted { name, .. }
            | Self::VersionTagSet { name, .. }
            | Self::VersionTagDeleted { name, .. }
            | Self::StageTransitioned { name, .. }
            | Self::AliasSet { name, .. }
            | Self::AliasDeleted { name, .. }
            | Self::TransitionRequested { name, .. }
            | Self::CommentDeleted { name, .. }
            | Self::TransitionRequestApproved(RequestResolved { name, .. })
            | Self::TransitionRequestRejected(RequestResolved { name, .. })
            | Self::TransitionRequestCancelled(RequestResolved { name, .. })
            | Self::CommentCreated(CommentText { name, .. })
            | Self::CommentUpdated(CommentText { name, .. }) => Some(name),
            _ => None,
        }
    }
}

/// The audit trail's JSON: the stored columns, payload under `data`.
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Row<'a> {
            id: i64,
            workspace: &'a str,
            timestamp: i64,
            actor: &'a str,
            entity: &'a str,
            action: &'a str,
            object: &'a str,
            data: &'a Value,
        }
        let stored = self.change.store().map_err(serde::ser::Error::custom)?;
        Row {
            id: self.id,
            workspace: &self.workspace,
            timestamp: self.timestamp,
            actor: &self.actor,
            entity: &stored.entity,
            action: &stored.action,
            object: &self.object,
            data: &stored.data,
        }
        .serialize(serializer)
    }
}

/// Numbers MLflow's payloads carry as text (`"version": "3"`).
mod as_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

mod all_as_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(values: &[i64], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(values.iter().map(i64::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<i64>, D::Error> {
        Vec::<String>::deserialize(deserializer)?
            .iter()
            .map(|text| text.parse().map_err(serde::de::Error::custom))
            .collect()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Privilege;

    fn round_trip(change: Change) -> StoredChange {
        let stored = change.store().expect("stores");
        let back = Change::from_stored(&stored.entity, &stored.action, stored.data.clone())
            .expect("reads back");
        assert_eq!(back, change);
        stored
    }

    #[test]
    fn registry_payloads_keep_mlflow_shape() {
        let stored = round_trip(Change::StageTransitioned {
            name: "fraud".into(),
            version: 3,
            from_stage: Stage::Staging,
            to_stage: Stage::Production,
            system: false,
            comment: String::new(),
        });
        assert_eq!(stored.entity, "model_version_stage");
        assert_eq!(stored.action, "transitioned");
        assert_eq!(stored.data["version"], "3");
        assert_eq!(stored.data["to_stage"], "Production");
        let stored = round_trip(Change::TransitionRequestApproved(RequestResolved {
            name: "fraud".into(),
            version: 3,
            from_stage: Stage::None,
            to_stage: Stage::Staging,
            comment: "ok".into(),
            request_ids: vec![7, 9],
        }));
        assert_eq!(
            (stored.entity.as_str(), stored.action.as_str()),
            ("transition_request", "approved")
        );
        assert_eq!(stored.data["request_ids"], serde_json::json!(["7", "9"]));
    }

    #[test]
    fn grants_are_stored_under_the_securable_type() {
        let stored = round_trip(Change::GrantsChanged {
            securable_type: SecurableType::Table,
            securable: "main.sales.orders".into(),
            changes: vec![PermissionsChange {
                principal: "alice".into(),
                add: vec![Privilege::Select],
                remove: vec![],
            }],
        });
        assert_eq!(stored.entity, "table");
        assert_eq!(stored.action, "permissions_changed");
        // Rows written before the type was in the payload read back too.
        let mut old = stored.data.clone();
        old.as_object_mut()
            .expect("object")
            .remove("securable_type");
        let back = Change::from_stored("table", "permissions_changed", old).expect("reads");
        assert!(matches!(
            back,
            Change::GrantsChanged {
                securable_type: SecurableType::Table,
                ..
            }
        ));
    }

    #[test]
    fn unknown_or_misshapen_changes_are_errors() {
        assert!(Change::from_stored("model_version", "exploded", serde_json::json!({})).is_err());
        assert!(
            Change::from_stored(
                "model_version",
                "deleted",
                serde_json::json!({"name": "m", "version": "three"})
            )
            .is_err()
        );
    }
}
