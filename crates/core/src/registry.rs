//! The model registry's entities in MLflow's wire shape, its stages and its input rules
//! (`mlflow/utils/validation.py`, `model_version_stages.py`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::auth::{PermissionLevel, Principal};
use crate::entities::KeyValue;
use crate::{Error, Result};

pub const MAX_REGISTRY_TAG_KEY_LENGTH: usize = 250;
pub const MAX_REGISTRY_TAG_VALUE_LENGTH: usize = 100_000;
pub const MAX_ALIAS_LENGTH: usize = 255;
pub const MAX_DESCRIPTION_LENGTH: usize = 65_535;
/// `registered-models/search` refuses more per page (MLflow's threshold).
pub const MAX_REGISTERED_MODELS_PER_PAGE: u64 = 1000;
/// `model-versions/search` refuses more per page.
pub const MAX_MODEL_VERSIONS_PER_PAGE: u64 = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    None,
    Staging,
    Production,
    Archived,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::None,
        Stage::Staging,
        Stage::Production,
        Stage::Archived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Staging => "Staging",
            Self::Production => "Production",
            Self::Archived => "Archived",
        }
    }

    /// Case-insensitive, as MLflow's `get_canonical_stage`.
    pub fn parse(value: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(value))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "Invalid Model Version stage: {value}. Value must be one of None, Staging, \
                     Production, Archived."
                ))
            })
    }

    /// Stages whose current versions `archive_existing_versions` may archive.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Staging | Self::Production)
    }

    /// The level moving a version from `from` to this stage needs: Production managers for
    /// anything touching Production, staging managers for the rest.
    pub fn change_level(self, from: Stage) -> PermissionLevel {
        if from == Stage::Production || self == Stage::Production {
            PermissionLevel::CanManageProductionVersions
        } else {
            PermissionLevel::CanManageStagingVersions
        }
    }

    /// The level a transition into this stage needs; archiving the versions in Production
    /// moves them out of it.
    pub fn transition_level(self, from: Stage, archive_existing: bool) -> PermissionLevel {
        if archive_existing && self == Stage::Production {
            PermissionLevel::CanManageProductionVersions
        } else {
            self.change_level(from)
        }
    }
}

impl Serialize for Stage {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Stage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(|err| serde::de::Error::custom(err.message))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VersionStatus {
    PendingRegistration,
    FailedRegistration,
    Ready,
}

impl VersionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingRegistration => "PENDING_REGISTRATION",
            Self::FailedRegistration => "FAILED_REGISTRATION",
            Self::Ready => "READY",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::PendingRegistration,
            Self::FailedRegistration,
            Self::Ready,
        ]
        .into_iter()
        .find(|status| status.as_str() == value)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alias {
    pub alias: String,
    #[serde(serialize_with = "version_string")]
    pub version: i64,
}

/// Versions are int64 in the store and strings on the wire.
fn version_string<S: Serializer>(
    version: &i64,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(&version.to_string())
}

fn is_empty(value: &str) -> bool {
    value.is_empty()
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegisteredModel {
    pub name: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "is_empty")]
    pub description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latest_versions: Vec<ModelVersion>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<Alias>,
    /// Stable across renames; what permissions and registry storage are keyed by.
    #[serde(skip)]
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelVersion {
    pub name: String,
    #[serde(serialize_with = "version_string")]
    pub version: i64,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub current_stage: Stage,
    #[serde(skip_serializing_if = "is_empty")]
    pub description: String,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub status: VersionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_link: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// The registry-owned copy of the artifacts, relative to the workspace's artifact root.
    #[serde(skip)]
    pub storage_location: String,
    /// SHA-256 over the copied files' paths, sizes and digests.
    #[serde(skip)]
    pub checksum: String,
    #[serde(skip)]
    pub registered_model_id: String,
}

/// What `model-versions/create` stores once the artifacts are copied.
#[derive(Debug, Clone, PartialEq)]
pub struct NewModelVersion {
    pub name: String,
    pub source: String,
    pub run_id: Option<String>,
    pub run_link: Option<String>,
    pub description: String,
    pub tags: Vec<KeyValue>,
    pub model_id: Option<String>,
    pub storage_location: String,
    pub checksum: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ActivityType {
    AppliedTransition,
    RequestedTransition,
    ApprovedRequest,
    RejectedRequest,
    CancelledRequest,
    SystemTransition,
    NewComment,
}

impl ActivityType {
    pub const ALL: [ActivityType; 7] = [
        Self::AppliedTransition,
        Self::RequestedTransition,
        Self::ApprovedRequest,
        Self::RejectedRequest,
        Self::CancelledRequest,
        Self::SystemTransition,
        Self::NewComment,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AppliedTransition => "APPLIED_TRANSITION",
            Self::RequestedTransition => "REQUESTED_TRANSITION",
            Self::ApprovedRequest => "APPROVED_REQUEST",
            Self::RejectedRequest => "REJECTED_REQUEST",
            Self::CancelledRequest => "CANCELLED_REQUEST",
            Self::SystemTransition => "SYSTEM_TRANSITION",
            Self::NewComment => "NEW_COMMENT",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }
}

/// One entry of a version's activity history; a transition request is a
/// `REQUESTED_TRANSITION` activity that is still open, a comment a `NEW_COMMENT` one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Activity {
    /// Databricks sends ids as strings.
    #[serde(serialize_with = "version_string")]
    pub id: i64,
    pub activity_type: ActivityType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_stage: Option<Stage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_stage: Option<Stage>,
    pub user_id: String,
    #[serde(skip_serializing_if = "is_empty")]
    pub comment: String,
    #[serde(skip_serializing_if = "is_empty")]
    pub system_comment: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    /// Set on requests: whether the request is still open.
    #[serde(skip)]
    pub open: bool,
    #[serde(skip)]
    pub model_name: String,
    #[serde(skip)]
    pub version: i64,
}

/// How an open transition request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Performs the transition (optionally archiving the target stage's versions).
    Approve {
        archive_existing: bool,
    },
    Reject,
    /// Withdraws the request of one requester.
    Cancel,
}

/// Who makes a change, recorded with its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: i64,
    pub name: String,
}

impl From<&Principal> for Actor {
    fn from(principal: &Principal) -> Self {
        Self {
            id: principal.id,
            name: principal.name.clone(),
        }
    }
}

pub fn validate_model_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid(
            "Missing value for required parameter 'name'.",
        ));
    }
    if name.contains('/') || name.contains(':') {
        return Err(Error::invalid(format!(
            "Invalid model name '{name}'. Names cannot contain '/' or ':'."
        )));
    }
    if name.contains('\0') || name.len() > 256 {
        return Err(Error::invalid(format!(
            "Invalid model name '{}': at most 256 bytes, no NUL characters.",
            name.replace('\0', "\\0")
        )));
    }
    if name == "." || name == ".." {
        return Err(Error::invalid(format!(
            "Invalid value \"{name}\" for parameter 'name' supplied: Names may be treated as \
             files in certain cases, and must not resolve to other names when treated as such."
        )));
    }
    Ok(())
}

pub fn parse_version(version: &str) -> Result<i64> {
    version
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| {
            Error::invalid(format!(
                "Parameter 'version' must be an integer, got '{version}'."
            ))
        })
}

pub fn validate_alias(alias: &str) -> Result<()> {
    if alias.is_empty() {
        return Err(Error::invalid(
            "Registered model alias name cannot be empty.",
        ));
    }
    if !alias
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::invalid(format!(
            "Invalid alias name: '{}'. Names may only contain alphanumerics, underscores (_), \
             and dashes (-).",
            alias.replace('\0', "\\0")
        )));
    }
    if alias.len() > MAX_ALIAS_LENGTH {
        return Err(Error::invalid(format!(
            "Registered model alias name '{}...' had length {}, which exceeded length limit of \
             {MAX_ALIAS_LENGTH}",
            &alias[..alias.char_indices().nth(20).map_or(alias.len(), |(i, _)| i)],
            alias.len()
        )));
    }
    Ok(())
}

/// Aliases a client may set: not `latest`, not `v<N>` (those name versions).
pub fn validate_settable_alias(alias: &str) -> Result<()> {
    validate_alias(alias)?;
    if alias.eq_ignore_ascii_case("latest") {
        return Err(Error::invalid(
            "'latest' alias name (case insensitive) is reserved.",
        ));
    }
    let mut chars = alias.chars();
    if matches!(chars.next(), Some('v' | 'V'))
        && !alias[1..].is_empty()
        && alias[1..].chars().all(|c| c.is_ascii_digit())
    {
        return Err(Error::invalid(format!(
            "Version alias name '{alias}' is reserved."
        )));
    }
    Ok(())
}

pub fn validate_registry_tag(tag: &KeyValue) -> Result<()> {
    crate::validation::validate_key("key", &tag.key)?;
    crate::validation::check_length("key", &tag.key, MAX_REGISTRY_TAG_KEY_LENGTH)?;
    crate::validation::check_length("value", &tag.value, MAX_REGISTRY_TAG_VALUE_LENGTH)?;
    Ok(())
}

pub fn validate_description(description: &str) -> Result<()> {
    crate::validation::check_length("description", description, MAX_DESCRIPTION_LENGTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_parse_case_insensitively() {
        assert_eq!(Stage::parse("production").ok(), Some(Stage::Production));
        assert_eq!(Stage::parse("NONE").ok(), Some(Stage::None));
        let err = Stage::parse("prod").expect_err("invalid");
        assert!(
            err.message
                .starts_with("Invalid Model Version stage: prod.")
        );
    }

    #[test]
    fn alias_rules() {
        assert!(validate_settable_alias("champion").is_ok());
        assert!(validate_settable_alias("blue-green_2").is_ok());
        for bad in ["", "a b", "x/y", "latest", "LATEST", "v1", "V12", "a\0"] {
            assert!(validate_settable_alias(bad).is_err(), "{bad:?}");
        }
        assert!(validate_settable_alias("v").is_ok());
        assert!(validate_settable_alias("v1a").is_ok());
        assert!(validate_settable_alias(&"a".repeat(256)).is_err());
    }

    #[test]
    fn model_names_and_versions() {
        assert!(validate_model_name("fraud detector").is_ok());
        for bad in ["", "  ", "a/b", "a:b", "..", "a\0"] {
            assert!(validate_model_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_version("3").ok(), Some(3));
        for bad in ["0", "-1", "x", "1.5", ""] {
            assert!(parse_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn versions_are_strings_on_the_wire() {
        let alias = Alias {
            alias: "champion".into(),
            version: 3,
        };
        assert_eq!(
            serde_json::to_value(&alias).expect("json"),
            serde_json::json!({"alias": "champion", "version": "3"})
        );
    }
}
