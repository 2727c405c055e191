//! SCIM 2.0 (RFC 7643, 7644) over tarn's principals, at the paths the Databricks SDK uses
//! (`/api/2.0/preview/scim/v2/{Users,Groups,ServicePrincipals,Me}`), so identity providers and
//! scripts provision users, groups and service principals.
//!
//! A resource's `id` is the principal's id. The name is `userName` for a user, `displayName`
//! for a group, `applicationId` for a service principal (made up when not given); tarn does
//! not rename principals, so a request changing it is refused. `active`, `password` (write
//! only), group `members` and a user's or service principal's `groups` are tarn's own; every
//! other attribute (display name, name parts, emails, external id, entitlements, roles, ...) is
//! kept as sent and returned exactly. The `workspace-access` entitlement is membership of the
//! workspace the URL names: creating a user or service principal there makes it a member.
//! Principals are account-wide, so every workspace lists them all. DELETE deactivates the
//! principal, takes it out of every group and workspace and revokes its tokens; its name stays
//! taken, and creating it again brings it back. Reading needs membership of the workspace;
//! changes need an admin.

pub mod filter;
pub mod patch;

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};
use tarn_core::auth::{PrincipalKind, require_admin};
use tarn_core::caller::Caller;
use tarn_core::store::{MetaStore, PrincipalRecord};
use tarn_core::{Error, ErrorCode, Result};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const SERVICE_PRINCIPAL_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServicePrincipal";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub use patch::PATCH_SCHEMA;

/// The entitlement that is membership of the workspace.
const WORKSPACE_ACCESS: &str = "workspace-access";
/// Most resources one page holds (and the page size when none is asked).
pub const MAX_PAGE: usize = 10_000;
/// Largest kept attributes of one principal, as JSON.
pub const MAX_ATTRIBUTES_BYTES: usize = 64 * 1024;

/// The kinds of SCIM resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    User,
    Group,
    ServicePrincipal,
}

impl Resource {
    fn kind(self) -> PrincipalKind {
        match self {
            Self::User => PrincipalKind::User,
            Self::Group => PrincipalKind::Group,
            Self::ServicePrincipal => PrincipalKind::ServicePrincipal,
        }
    }

    fn of(kind: PrincipalKind) -> Self {
        match kind {
            PrincipalKind::User => Self::User,
            PrincipalKind::Group => Self::Group,
            PrincipalKind::ServicePrincipal => Self::ServicePrincipal,
        }
    }

    fn schema(self) -> &'static str {
        match self {
            Self::User => USER_SCHEMA,
            Self::Group => GROUP_SCHEMA,
            Self::ServicePrincipal => SERVICE_PRINCIPAL_SCHEMA,
        }
    }

    /// The attribute holding the principal's name.
    fn name_key(self) -> &'static str {
        match self {
            Self::User => "userName",
            Self::Group => "displayName",
            Self::ServicePrincipal => "applicationId",
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
            Self::ServicePrincipal => "ServicePrincipal",
        }
    }

    fn collection(self) -> &'static str {
        match self {
            Self::User => "Users",
            Self::Group => "Groups",
            Self::ServicePrincipal => "ServicePrincipals",
        }
    }

    fn not_found(self, id: &str) -> Error {
        Error::not_found(format!("{} {id} does not exist", self.type_name()))
    }
}

/// Every principal with its memberships, as one request sees them.
struct Directory {
    principals: Vec<PrincipalRecord>,
    by_id: HashMap<i64, usize>,
    /// (group id, member id).
    memberships: Vec<(i64, i64)>,
    workspace_members: HashSet<i64>,
}

impl Directory {
    async fn read(store: &dyn MetaStore, workspace: &str) -> Result<Self> {
        let principals = store.list_principals(None).await?;
        let by_id = principals
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id, i))
            .collect();
        Ok(Self {
            principals,
            by_id,
            memberships: store.group_memberships().await?,
            workspace_members: store
                .workspace_members(workspace)
                .await?
                .into_iter()
                .map(|p| p.id)
                .collect(),
        })
    }

    fn by_id(&self, id: i64) -> Option<&PrincipalRecord> {
        self.by_id
            .get(&id)
            .map(|i| &self.principals[*i])
            .filter(|p| p.deleted_at.is_none())
    }

    /// The live principal of `resource`'s kind with SCIM id `id`.
    fn find(&self, resource: Resource, id: &str) -> Result<&PrincipalRecord> {
        id.parse::<i64>()
            .ok()
            .and_then(|id| self.by_id(id))
            .filter(|p| p.kind == resource.kind())
            .ok_or_else(|| resource.not_found(id))
    }

    fn reference(&self, id: i64) -> Option<Value> {
        let p = self.by_id(id)?;
        let resource = Resource::of(p.kind);
        Some(json!({
            "value": id.to_string(),
            "display": p.name,
            "$ref": format!("{}/{id}", resource.collection()),
            "type": resource.type_name(),
        }))
    }

    /// The principal as a SCIM resource.
    fn render(&self, p: &PrincipalRecord) -> Value {
        let resource = Resource::of(p.kind);
        let mut body = Map::new();
        body.insert("schemas".into(), json!([resource.schema()]));
        body.insert("id".into(), json!(p.id.to_string()));
        body.insert(resource.name_key().into(), json!(p.name));
        if let Some(kept) = p.attributes.as_object() {
            for (key, value) in kept {
                body.insert(key.clone(), value.clone());
            }
        }
        if resource != Resource::Group {
            body.insert("active".into(), json!(p.active));
            // Entitlements as sent, with workspace access as membership has it now.
            let member = self.workspace_members.contains(&p.id);
            let key = body
                .keys()
                .find(|k| k.eq_ignore_ascii_case("entitlements"))
                .cloned()
                .unwrap_or_else(|| "entitlements".to_string());
            let mut entitlements = body
                .get(&key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let listed = entitlements.iter().any(is_workspace_access);
            if member && !listed {
                entitlements.push(json!({ "value": WORKSPACE_ACCESS }));
            } else if !member && listed {
                entitlements.retain(|e| !is_workspace_access(e));
            }
            if !entitlements.is_empty() || body.contains_key(&key) {
                body.insert(key, Value::Array(entitlements));
            }
        }
        let groups: Vec<Value> = self
            .memberships
            .iter()
            .filter(|(_, member)| *member == p.id)
            .filter_map(|(group, _)| self.reference(*group))
            .map(|mut group| {
                group["type"] = json!("direct");
                group
            })
            .collect();
        if !groups.is_empty() {
            body.insert("groups".into(), Value::Array(groups));
        }
        if resource == Resource::Group {
            let members: Vec<Value> = self
                .memberships
                .iter()
                .filter(|(group, _)| *group == p.id)
                .filter_map(|(_, member)| self.reference(*member))
                .collect();
            body.insert("members".into(), Value::Array(members));
        }
        body.insert(
            "meta".into(),
            json!({
                "resourceType": resource.type_name(),
                "created": tarn_core::webhooks::iso_timestamp(p.created_at),
                "location": format!("/api/2.0/preview/scim/v2/{}/{}", resource.collection(), p.id),
            }),
        );
        Value::Object(body)
    }
}

fn is_workspace_access(entitlement: &Value) -> bool {
    filter::member(entitlement, "value").and_then(Value::as_str) == Some(WORKSPACE_ACCESS)
}

/// What a request asks a principal to be.
#[derive(Debug, Default)]
struct Desired {
    name: Option<String>,
    active: Option<bool>,
    password: Option<String>,
    /// Ids of the groups it should be in (`groups`), when given.
    groups: Option<Vec<i64>>,
    /// Ids of a group's members, when given.
    members: Option<Vec<i64>>,
    /// Whether it should be a member of the workspace, when entitlements are given.
    workspace_access: Option<bool>,
    attributes: Value,
}

fn ids_of(resource: Resource, key: &str, list: &Value) -> Result<Vec<i64>> {
    let items = list
        .as_array()
        .ok_or_else(|| Error::invalid(format!("{key} must be a list")))?;
    items
        .iter()
        .map(|item| {
            let value = filter::member(item, "value");
            let id = match value {
                Some(Value::String(s)) => s.parse::<i64>().ok(),
                Some(Value::Number(n)) => n.as_i64(),
                _ => None,
            };
            id.ok_or_else(|| {
                Error::invalid(format!(
                    "Each of a {}'s {key} needs a \"value\" naming a principal id",
                    resource.type_name()
                ))
            })
        })
        .collect()
}

impl Desired {
    fn from(resource: Resource, body: &Value) -> Result<Self> {
        let object = body.as_object().ok_or_else(|| {
            Error::invalid(format!("A {} must be a JSON object", resource.type_name()))
        })?;
        let mut desired = Self::default();
        let mut attributes = Map::new();
        for (key, value) in object {
            let lower = key.to_ascii_lowercase();
            if lower == resource.name_key().to_ascii_lowercase() {
                let name = value.as_str().ok_or_else(|| {
                    Error::invalid(format!("{} must be a string", resource.name_key()))
                })?;
                desired.name = Some(name.to_string());
                continue;
            }
            match lower.as_str() {
                "schemas" | "id" | "meta" => {}
                "active" => {
                    desired.active = Some(match value {
                        Value::Bool(b) => *b,
                        // Some identity providers send booleans as text.
                        Value::String(s) if s.eq_ignore_ascii_case("true") => true,
                        Value::String(s) if s.eq_ignore_ascii_case("false") => false,
                        _ => return Err(Error::invalid("active must be true or false")),
                    });
                }
                "password" => {
                    if resource != Resource::User {
                        return Err(Error::invalid("Only users have passwords"));
                    }
                    let password = value
                        .as_str()
                        .ok_or_else(|| Error::invalid("password must be a string"))?;
                    desired.password = Some(password.to_string());
                }
                "groups" => desired.groups = Some(ids_of(resource, "groups", value)?),
                "members" => {
                    if resource != Resource::Group {
                        return Err(Error::invalid(format!(
                            "A {} has no members",
                            resource.type_name()
                        )));
                    }
                    desired.members = Some(ids_of(resource, "members", value)?);
                }
                _ => {
                    if lower == "entitlements" && resource != Resource::Group {
                        let listed = value
                            .as_array()
                            .ok_or_else(|| Error::invalid("entitlements must be a list"))?;
                        desired.workspace_access = Some(listed.iter().any(is_workspace_access));
                    }
                    attributes.insert(key.clone(), value.clone());
                }
            }
        }
        let attributes = Value::Object(attributes);
        let size = serde_json::to_vec(&attributes).map_or(usize::MAX, |b| b.len());
        if size > MAX_ATTRIBUTES_BYTES {
            return Err(Error::invalid(format!(
                "A {}'s attributes may take at most {MAX_ATTRIBUTES_BYTES} bytes; these take {size}",
                resource.type_name()
            )));
        }
        desired.attributes = attributes;
        Ok(desired)
    }
}

impl Desired {
    /// Refuses what cannot be made (unknown groups or members, a group in itself, a short
    /// password) before anything is written; the password's hash.
    fn check(&self, directory: &Directory, own_id: Option<i64>) -> Result<Option<String>> {
        if let Some(groups) = &self.groups {
            for id in groups {
                match directory.by_id(*id) {
                    Some(group) if group.kind == PrincipalKind::Group => {}
                    _ => return Err(Error::invalid(format!("Group {id} does not exist"))),
                }
            }
        }
        if let Some(members) = &self.members {
            for id in members {
                if directory.by_id(*id).is_none() {
                    return Err(Error::invalid(format!(
                        "Member {id} does not exist: members are users, groups or service principals by id"
                    )));
                }
                if Some(*id) == own_id {
                    return Err(Error::invalid("A group cannot be its own member"));
                }
            }
        }
        match &self.password {
            Some(password) if password.chars().count() < 8 => {
                Err(Error::invalid("A password needs at least 8 characters"))
            }
            Some(password) => Ok(Some(crate::hash_password(password)?)),
            None => Ok(None),
        }
    }
}

/// Makes `p` what `desired` says, change by change.
async fn apply(
    store: &dyn MetaStore,
    caller: &Caller,
    directory: &Directory,
    p: &PrincipalRecord,
    desired: Desired,
    password_hash: Option<String>,
) -> Result<()> {
    let resource = Resource::of(p.kind);
    let actor = caller.principal.name.as_str();
    if let Some(name) = &desired.name
        && *name != p.name
    {
        return Err(Error::invalid(format!(
            "{} cannot change ('{}' to '{name}'): tarn does not rename principals",
            resource.name_key(),
            p.name
        )));
    }
    if let Some(active) = desired.active
        && active != p.active
    {
        if !active && p.id == caller.principal.id {
            return Err(Error::invalid("You cannot deactivate yourself"));
        }
        store.set_active(&p.name, active, actor).await?;
    }
    if let Some(hash) = password_hash {
        store.set_password_hash(&p.name, &hash, actor).await?;
    }
    if desired.attributes != p.attributes {
        store
            .set_principal_attributes(&p.name, &desired.attributes, actor)
            .await?;
    }
    if let Some(access) = desired.workspace_access {
        let member = directory.workspace_members.contains(&p.id);
        if access && !member {
            store
                .add_workspace_member(&caller.workspace, &p.name, actor)
                .await?;
        } else if !access && member {
            store
                .remove_workspace_member(&caller.workspace, &p.name, actor)
                .await?;
        }
    }
    let current = |in_group: &dyn Fn(&(i64, i64)) -> Option<i64>| -> HashSet<i64> {
        directory.memberships.iter().filter_map(in_group).collect()
    };
    if let Some(groups) = desired.groups {
        let wanted: HashSet<i64> = groups.into_iter().collect();
        let now = current(&|(g, m)| (*m == p.id).then_some(*g));
        for id in wanted.difference(&now) {
            if let Some(group) = directory.by_id(*id) {
                store.add_group_member(&group.name, &p.name, actor).await?;
            }
        }
        for id in now.difference(&wanted) {
            if let Some(group) = directory.by_id(*id) {
                store
                    .remove_group_member(&group.name, &p.name, actor)
                    .await?;
            }
        }
    }
    if let Some(members) = desired.members {
        let wanted: HashSet<i64> = members.into_iter().collect();
        let now = current(&|(g, m)| (*g == p.id).then_some(*m));
        for id in wanted.difference(&now) {
            if let Some(member) = directory.by_id(*id) {
                store.add_group_member(&p.name, &member.name, actor).await?;
            }
        }
        for id in now.difference(&wanted) {
            if let Some(member) = directory.by_id(*id) {
                store
                    .remove_group_member(&p.name, &member.name, actor)
                    .await?;
            }
        }
    }
    Ok(())
}

/// The principal `id` of `resource`'s kind, as SCIM shows it.
pub async fn get(
    store: &dyn MetaStore,
    caller: &Caller,
    resource: Resource,
    id: &str,
) -> Result<Value> {
    let directory = Directory::read(store, &caller.workspace).await?;
    Ok(directory.render(directory.find(resource, id)?))
}

/// The caller, as SCIM shows it (`/Me`).
pub async fn me(store: &dyn MetaStore, caller: &Caller) -> Result<Value> {
    let directory = Directory::read(store, &caller.workspace).await?;
    let me = directory
        .by_id(caller.principal.id)
        .ok_or_else(|| Error::not_found("The caller's principal does not exist"))?;
    Ok(directory.render(me))
}

/// What a list asks for (RFC 7644 §3.4.2).
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub filter: Option<String>,
    /// 1-based; 1 when not given.
    pub start_index: Option<i64>,
    pub count: Option<i64>,
    pub sort_by: Option<String>,
    pub descending: bool,
    /// Comma-separated attributes to return (besides `id` and `schemas`).
    pub attributes: Option<String>,
    /// Comma-separated attributes to leave out.
    pub excluded_attributes: Option<String>,
}

/// A page of the principals of `resource`'s kind matching the query.
pub async fn list(
    store: &dyn MetaStore,
    caller: &Caller,
    resource: Resource,
    query: &ListQuery,
) -> Result<Value> {
    let filter = query.filter.as_deref().map(filter::parse).transpose()?;
    let sort_by = query
        .sort_by
        .as_deref()
        .map(filter::attribute_path)
        .transpose()?;
    let start = match query.start_index {
        None => 1,
        Some(n) if n >= 1 => n as usize,
        // RFC 7644: a startIndex below 1 is read as 1.
        Some(_) => 1,
    };
    let count = match query.count {
        None => MAX_PAGE,
        Some(n) if n < 0 => 0,
        Some(n) => (n as usize).min(MAX_PAGE),
    };
    let directory = Directory::read(store, &caller.workspace).await?;
    let mut found: Vec<Value> = directory
        .principals
        .iter()
        .filter(|p| p.kind == resource.kind() && p.deleted_at.is_none())
        .map(|p| directory.render(p))
        .filter(|r| filter.as_ref().is_none_or(|f| f.matches(r)))
        .collect();
    if let Some(path) = &sort_by {
        let key = |r: &Value| sort_key(r, path);
        found.sort_by_key(key);
        if query.descending {
            found.reverse();
        }
    }
    let total = found.len();
    let page: Vec<Value> = found
        .into_iter()
        .skip(start - 1)
        .take(count)
        .map(|r| project(r, query))
        .collect();
    Ok(json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": page.len(),
        "Resources": page,
    }))
}

/// What a resource sorts by: the first value at `path`, as lowercase text.
fn sort_key(resource: &Value, path: &[String]) -> String {
    let mut value = Some(resource);
    for key in path {
        value = value.and_then(|v| match v {
            Value::Array(items) => items.first().and_then(|i| filter::member(i, key)),
            other => filter::member(other, key),
        });
    }
    match value {
        Some(Value::String(s)) => s.to_lowercase(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Keeps the attributes asked for (and `id`, `schemas`), without those excluded.
fn project(resource: Value, query: &ListQuery) -> Value {
    let names = |list: &Option<String>| -> Option<Vec<String>> {
        list.as_deref().map(|l| {
            l.split(',')
                .filter_map(|a| filter::attribute_path(a.trim()).ok())
                .filter_map(|p| p.into_iter().next())
                .map(|a| a.to_ascii_lowercase())
                .collect()
        })
    };
    let (wanted, excluded) = (names(&query.attributes), names(&query.excluded_attributes));
    let Value::Object(map) = resource else {
        return resource;
    };
    Value::Object(
        map.into_iter()
            .filter(|(key, _)| {
                let lower = key.to_ascii_lowercase();
                let always = lower == "id" || lower == "schemas";
                always
                    || (wanted.as_ref().is_none_or(|w| w.contains(&lower))
                        && excluded.as_ref().is_none_or(|e| !e.contains(&lower)))
            })
            .collect(),
    )
}

/// Creates a principal of `resource`'s kind and makes it a member of the caller's workspace;
/// one deleted before comes back. Admins only.
pub async fn create(
    store: &dyn MetaStore,
    caller: &Caller,
    resource: Resource,
    body: &Value,
) -> Result<Value> {
    require_admin(&caller.principal)?;
    let mut desired = Desired::from(resource, body)?;
    let name = match (desired.name.take(), resource) {
        (Some(name), _) => name,
        (None, Resource::ServicePrincipal) => uuid::Uuid::new_v4().to_string(),
        (None, _) => {
            return Err(Error::invalid(format!(
                "Missing value for required attribute '{}'",
                resource.name_key()
            )));
        }
    };
    let actor = caller.principal.name.as_str();
    let password_hash = desired.check(&Directory::read(store, &caller.workspace).await?, None)?;
    let existing = match store.get_principal(&name).await {
        Ok(p) => Some(p),
        Err(err) if err.code == ErrorCode::ResourceDoesNotExist => None,
        Err(err) => return Err(err),
    };
    match existing {
        Some(p) if p.kind != resource.kind() || p.deleted_at.is_none() => {
            return Err(Error::new(
                ErrorCode::ResourceAlreadyExists,
                format!("A principal named '{name}' already exists"),
            ));
        }
        Some(_) => store.set_active(&name, true, actor).await?,
        None => {
            crate::create_principal(store, &name, resource.kind(), false, None, actor).await?;
        }
    }
    store
        .add_workspace_member(&caller.workspace, &name, actor)
        .await?;
    if desired.workspace_access == Some(false) {
        // Made here, it is a member here; entitlements say what it is entitled to besides.
        desired.workspace_access = None;
    }
    let directory = Directory::read(store, &caller.workspace).await?;
    let p = store.get_principal(&name).await?;
    apply(store, caller, &directory, &p, desired, password_hash).await?;
    get(store, caller, resource, &p.id.to_string()).await
}

/// Replaces what a principal is (PUT): its kept attributes become the body's; `active`,
/// `groups`, `members` and entitlements change where the body gives them. Admins only.
pub async fn replace(
    store: &dyn MetaStore,
    caller: &Caller,
    resource: Resource,
    id: &str,
    body: &Value,
) -> Result<Value> {
    require_admin(&caller.principal)?;
    let desired = Desired::from(resource, body)?;
    let directory = Directory::read(store, &caller.workspace).await?;
    let p = directory.find(resource, id)?;
    let password_hash = desired.check(&directory, Some(p.id))?;
    apply(store, caller, &directory, p, desired, password_hash).await?;
    get(store, caller, resource, id).await
}

/// Applies PATCH operations to a principal, all or none of them. Admins only.
pub async fn modify(
    store: &dyn MetaStore,
    caller: &Caller,
    resource: Resource,
    id: &str,
    request: &Value,
) -> Result<Value> {
    require_admin(&caller.principal)?;
    let directory = Directory::read(store, &caller.workspace).await?;
    let p = directory.find(resource, id)?;
    let patched = patch::apply(&directory.render(p), request)?;
    let mut desired = Desired::from(resource, &patched)?;
    if desired.members.is_none() && resource == Resource::Group {
        // Every member removed: the attribute is gone.
        desired.members = Some(Vec::new());
    }
    if desired.workspace_access.is_none() && resource != Resource::Group {
        desired.workspace_access = Some(false);
    }
    let password_hash = desired.check(&directory, Some(p.id))?;
    apply(store, caller, &directory, p, desired, password_hash).await?;
    get(store, caller, resource, id).await
}

/// Deletes a principal (see the module's notes). Admins only; not oneself.
pub async fn delete(
    store: &dyn MetaStore,
    caller: &Caller,
    resource: Resource,
    id: &str,
) -> Result<()> {
    require_admin(&caller.principal)?;
    let directory = Directory::read(store, &caller.workspace).await?;
    let p = directory.find(resource, id)?;
    if p.id == caller.principal.id {
        return Err(Error::invalid("You cannot delete yourself"));
    }
    store
        .delete_principal(&p.name, &caller.principal.name)
        .await
}
