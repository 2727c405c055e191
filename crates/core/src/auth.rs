//! Principals and the permission model shared by every securable object: experiments now,
//! registered models, tables, jobs and endpoints later. Levels are ordered per object type; a
//! principal's effective level is the highest granted to it or to any of its groups.

use serde::Serialize;

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    ServicePrincipal,
    Group,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::ServicePrincipal => "service_principal",
            Self::Group => "group",
        }
    }
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "user" => Some(Self::User),
            "service_principal" => Some(Self::ServicePrincipal),
            "group" => Some(Self::Group),
            _ => None,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub id: i64,
    pub name: String,
    pub kind: PrincipalKind,
    pub is_admin: bool,
    /// Ids of the groups it belongs to (directly).
    pub group_ids: Vec<i64>,
    /// The one workspace the credential it signed in with may act in (a token limited to
    /// one); None for passwords and unlimited tokens.
    pub only_workspace: Option<String>,
}

impl Principal {
    /// The ids whose grants apply to this principal: itself and its groups.
    pub fn grantee_ids(&self) -> Vec<i64> {
        let mut ids = Vec::with_capacity(1 + self.group_ids.len());
        ids.push(self.id);
        ids.extend_from_slice(&self.group_ids);
        ids
    }
}

/// Kinds of securable objects, each with its own ladder of levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    Experiment,
    RegisteredModel,
    ServingEndpoint,
    Job,
}

impl ObjectType {
    /// The name stored in the ACL table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Experiment => "experiment",
            Self::RegisteredModel => "registered_model",
            Self::ServingEndpoint => "serving_endpoint",
            Self::Job => "job",
        }
    }
    /// The `object_type` of the Databricks permissions API.
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::Experiment => "mlflow-experiment",
            Self::RegisteredModel => "registered-model",
            Self::ServingEndpoint => "serving-endpoint",
            Self::Job => "job",
        }
    }
    /// The levels this object type knows, lowest first.
    pub fn levels(self) -> &'static [PermissionLevel] {
        use PermissionLevel::*;
        match self {
            Self::Experiment => &[CanRead, CanEdit, CanManage],
            Self::RegisteredModel => &[
                CanRead,
                CanEdit,
                CanManageStagingVersions,
                CanManageProductionVersions,
                CanManage,
            ],
            Self::ServingEndpoint => &[CanView, CanQuery, CanManage],
            // Databricks' job levels; the owner (one per job) outranks CAN_MANAGE.
            Self::Job => &[CanView, CanManageRun, CanManage, IsOwner],
        }
    }
    /// The level exactly one principal holds, for the types that have an owner (a job's
    /// IS_OWNER, as in Databricks).
    pub fn owner_level(self) -> Option<PermissionLevel> {
        match self {
            Self::Job => Some(PermissionLevel::IsOwner),
            _ => None,
        }
    }
    /// The level a principal gets on what it creates: its owner where the type has one,
    /// CAN_MANAGE elsewhere.
    pub fn creator_level(self) -> PermissionLevel {
        self.owner_level().unwrap_or(PermissionLevel::CanManage)
    }
    /// Checks the levels of an access control list against the type's owner: a list that
    /// replaces an object's grants names exactly one owner, and a list that adds to them names
    /// none (moving ownership is not supported yet).
    pub fn check_owners(self, levels: &[PermissionLevel], replaces: bool) -> Result<()> {
        let Some(owner) = self.owner_level() else {
            return Ok(());
        };
        let owners = levels.iter().filter(|level| **level == owner).count();
        if replaces && owners != 1 {
            return Err(Error::invalid(format!(
                "The access control list of a {} needs exactly one {}, not {owners}",
                self.wire_name(),
                owner.as_str()
            )));
        }
        if !replaces && owners > 0 {
            return Err(Error::invalid(format!(
                "Moving a {} to a new owner is not supported yet; grant CAN_MANAGE instead",
                self.wire_name()
            )));
        }
        Ok(())
    }
    fn rank(self, level: PermissionLevel) -> Option<usize> {
        self.levels().iter().position(|l| *l == level)
    }
    /// Parses a level name for this object type; accepts `CAN_READ` and MLflow's `READ`.
    pub fn parse_level(self, name: &str) -> Option<PermissionLevel> {
        let level = PermissionLevel::parse(name)?;
        self.rank(level).map(|_| level)
    }
    /// Whether `granted` includes the abilities of `required`.
    pub fn satisfies(self, granted: PermissionLevel, required: PermissionLevel) -> bool {
        match (self.rank(granted), self.rank(required)) {
            (Some(g), Some(r)) => g >= r,
            _ => false,
        }
    }
    /// The highest of several levels.
    pub fn highest(
        self,
        levels: impl IntoIterator<Item = PermissionLevel>,
    ) -> Option<PermissionLevel> {
        levels
            .into_iter()
            .filter_map(|l| self.rank(l).map(|r| (r, l)))
            .max_by_key(|(r, _)| *r)
            .map(|(_, l)| l)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PermissionLevel {
    CanView,
    CanQuery,
    CanRead,
    CanEdit,
    CanManageStagingVersions,
    CanManageProductionVersions,
    CanManage,
    /// Jobs: start and cancel runs.
    CanManageRun,
    /// Jobs: the owner, as whom the job runs unless `run_as` says otherwise.
    IsOwner,
}

impl PermissionLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CanView => "CAN_VIEW",
            Self::CanQuery => "CAN_QUERY",
            Self::CanRead => "CAN_READ",
            Self::CanEdit => "CAN_EDIT",
            Self::CanManageStagingVersions => "CAN_MANAGE_STAGING_VERSIONS",
            Self::CanManageProductionVersions => "CAN_MANAGE_PRODUCTION_VERSIONS",
            Self::CanManage => "CAN_MANAGE",
            Self::CanManageRun => "CAN_MANAGE_RUN",
            Self::IsOwner => "IS_OWNER",
        }
    }
    pub fn parse(name: &str) -> Option<Self> {
        let upper = name.to_ascii_uppercase();
        let bare = upper.strip_prefix("CAN_").unwrap_or(&upper);
        match bare {
            "VIEW" => Some(Self::CanView),
            "QUERY" => Some(Self::CanQuery),
            "READ" => Some(Self::CanRead),
            "EDIT" => Some(Self::CanEdit),
            "MANAGE_STAGING_VERSIONS" => Some(Self::CanManageStagingVersions),
            "MANAGE_PRODUCTION_VERSIONS" => Some(Self::CanManageProductionVersions),
            "MANAGE" => Some(Self::CanManage),
            "MANAGE_RUN" => Some(Self::CanManageRun),
            "IS_OWNER" => Some(Self::IsOwner),
            _ => None,
        }
    }
}

/// One entry of an object's access-control list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub principal_id: i64,
    pub principal_name: String,
    pub principal_kind: PrincipalKind,
    pub level: PermissionLevel,
}

/// The decision for one principal on one object: admins pass, otherwise the highest grant of the
/// principal or its groups must include `required`.
pub fn is_allowed(
    principal: &Principal,
    object_type: ObjectType,
    grants_of_principal: &[PermissionLevel],
    required: PermissionLevel,
) -> bool {
    if principal.is_admin {
        return true;
    }
    object_type
        .highest(grants_of_principal.iter().copied())
        .is_some_and(|granted| object_type.satisfies(granted, required))
}

/// Fails with the permission-denied error unless `grants_of_principal` (the levels granted to
/// the principal and its groups on the object) include `required`; admins always pass.
pub fn require_granted(
    principal: &Principal,
    object_type: ObjectType,
    object_id: &str,
    grants_of_principal: &[PermissionLevel],
    required: PermissionLevel,
) -> Result<()> {
    if is_allowed(principal, object_type, grants_of_principal, required) {
        Ok(())
    } else {
        Err(Error::permission_denied(format!(
            "Permission denied: '{}' needs {} on {} {object_id}",
            principal.name,
            required.as_str(),
            object_type.as_str().replace('_', " ")
        )))
    }
}

/// Refuses whoever is not an admin.
pub fn require_admin(principal: &Principal) -> Result<()> {
    if principal.is_admin {
        Ok(())
    } else {
        Err(Error::permission_denied(format!(
            "'{}' is not an admin",
            principal.name
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(is_admin: bool) -> Principal {
        Principal {
            id: 7,
            name: "u".into(),
            kind: PrincipalKind::User,
            is_admin,
            group_ids: vec![9],
            only_workspace: None,
        }
    }

    #[test]
    fn a_job_keeps_exactly_one_owner() {
        use PermissionLevel::*;
        let job = ObjectType::Job;
        assert_eq!(job.creator_level(), IsOwner);
        assert_eq!(ObjectType::Experiment.creator_level(), CanManage);
        assert!(job.satisfies(IsOwner, CanManage) && !job.satisfies(CanManageRun, CanManage));
        assert!(job.check_owners(&[IsOwner, CanView], true).is_ok());
        assert!(
            job.check_owners(&[CanManage], true).is_err(),
            "no owner left"
        );
        assert!(
            job.check_owners(&[IsOwner, IsOwner], true).is_err(),
            "two owners"
        );
        assert!(job.check_owners(&[CanView], false).is_ok());
        assert!(
            job.check_owners(&[IsOwner], false).is_err(),
            "ownership moved by a patch"
        );
        assert!(
            ObjectType::Experiment
                .check_owners(&[CanManage], true)
                .is_ok(),
            "types without an owner take any list"
        );
    }

    #[test]
    fn levels_are_ordered_per_object_type() {
        use PermissionLevel::*;
        let exp = ObjectType::Experiment;
        assert!(is_allowed(&user(false), exp, &[CanEdit], CanRead));
        assert!(is_allowed(
            &user(false),
            exp,
            &[CanRead, CanManage],
            CanEdit
        ));
        assert!(!is_allowed(&user(false), exp, &[CanRead], CanEdit));
        assert!(!is_allowed(&user(false), exp, &[], CanRead));
        assert!(is_allowed(&user(true), exp, &[], CanManage));
        // A registered-model level means nothing on an experiment.
        assert!(!is_allowed(
            &user(false),
            exp,
            &[CanManageProductionVersions],
            CanRead
        ));
        let model = ObjectType::RegisteredModel;
        assert!(is_allowed(
            &user(false),
            model,
            &[CanManageProductionVersions],
            CanManageStagingVersions
        ));
        assert!(!is_allowed(
            &user(false),
            model,
            &[CanManageStagingVersions],
            CanManageProductionVersions
        ));
    }

    #[test]
    fn level_names() {
        assert_eq!(
            ObjectType::Experiment.parse_level("READ"),
            Some(PermissionLevel::CanRead)
        );
        assert_eq!(
            ObjectType::Experiment.parse_level("can_manage"),
            Some(PermissionLevel::CanManage)
        );
        assert_eq!(
            ObjectType::Experiment.parse_level("CAN_MANAGE_STAGING_VERSIONS"),
            None
        );
        assert_eq!(user(false).grantee_ids(), vec![7, 9]);
    }
}
