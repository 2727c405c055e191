//! Store traits, one per aggregate. The SQLite and PostgreSQL backends in `tarn-store` implement
//! all of them and are checked by one conformance suite. Every tracking call is scoped to a
//! workspace; ids are per workspace for experiments and global for runs and logged models.

use async_trait::async_trait;

use crate::Result;
use crate::auth::{Grant, ObjectType, PermissionLevel, Principal, PrincipalKind};
use crate::catalog::{ColumnInfo, NewSchema, NewTable, SchemaInfo, TableInfo};
use crate::entities::{
    DatasetInput, Experiment, KeyValue, LogBatch, LoggedModel, LoggedModelStatus, Metric,
    ModelOutput, NewLoggedModel, NewRun, Run, RunInfo, RunUpdate, ViewType,
};
use crate::events::{Change, Event, EventQuery};
use crate::registry::{
    Activity, Actor, ModelVersion, NewModelVersion, RegisteredModel, RequestOutcome, Stage,
};
use crate::search::{Comparison, OrderBy};
use crate::webhooks::{Flavor, Webhook};

/// Restricts a search to objects a principal may read; `None` for admins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadableBy {
    pub grantee_ids: Vec<i64>,
}

impl ReadableBy {
    pub fn for_principal(principal: &Principal) -> Option<Self> {
        (!principal.is_admin).then(|| Self {
            grantee_ids: principal.grantee_ids(),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchExperiments {
    pub filter: Vec<Comparison>,
    pub order_by: Vec<OrderBy>,
    pub view_type: ViewType,
    pub max_results: u64,
    pub offset: u64,
    pub readable_by: Option<ReadableBy>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchRuns {
    pub experiment_ids: Vec<i64>,
    pub filter: Vec<Comparison>,
    pub order_by: Vec<OrderBy>,
    pub view_type: ViewType,
    pub max_results: u64,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchLoggedModels {
    pub experiment_ids: Vec<i64>,
    pub filter: Vec<Comparison>,
    pub order_by: Vec<OrderBy>,
    pub max_results: u64,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchRegistry {
    pub filter: Vec<Comparison>,
    pub order_by: Vec<OrderBy>,
    pub max_results: u64,
    pub offset: u64,
    /// Restricts results to registered models these grantees may read.
    pub readable_by: Option<ReadableBy>,
}

/// A page of results and the offset of the next page, if there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_offset: Option<u64>,
}

#[async_trait]
pub trait ExperimentStore: Send + Sync {
    /// Creates an experiment; `artifact_location` defaults to `mlflow-artifacts:/<id>`.
    async fn create_experiment(
        &self,
        workspace: &str,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[KeyValue],
        owner_id: i64,
    ) -> Result<String>;
    async fn get_experiment(&self, workspace: &str, experiment_id: i64) -> Result<Experiment>;
    /// Whether the experiment exists (in any lifecycle stage); experiments are never removed,
    /// so backends may remember a yes.
    async fn experiment_exists(&self, workspace: &str, experiment_id: i64) -> Result<bool>;
    async fn get_experiment_by_name(&self, workspace: &str, name: &str) -> Result<Experiment>;
    async fn search_experiments(
        &self,
        workspace: &str,
        query: &SearchExperiments,
    ) -> Result<Page<Experiment>>;
    async fn rename_experiment(
        &self,
        workspace: &str,
        experiment_id: i64,
        new_name: &str,
    ) -> Result<()>;
    /// Marks the experiment and its runs deleted (restorable).
    async fn delete_experiment(&self, workspace: &str, experiment_id: i64) -> Result<()>;
    async fn restore_experiment(&self, workspace: &str, experiment_id: i64) -> Result<()>;
    async fn set_experiment_tag(
        &self,
        workspace: &str,
        experiment_id: i64,
        tag: &KeyValue,
    ) -> Result<()>;
    async fn delete_experiment_tag(
        &self,
        workspace: &str,
        experiment_id: i64,
        key: &str,
    ) -> Result<()>;
}

#[async_trait]
pub trait RunStore: Send + Sync {
    async fn create_run(&self, workspace: &str, run: &NewRun) -> Result<Run>;
    async fn get_run(&self, workspace: &str, run_id: &str) -> Result<Run>;
    /// The experiment a run belongs to, for permission checks before anything else is read.
    async fn run_experiment_id(&self, workspace: &str, run_id: &str) -> Result<i64>;
    /// One tag of a run (`None` when the run has no such tag); an unknown run is not found.
    async fn run_tag(&self, workspace: &str, run_id: &str, key: &str) -> Result<Option<String>>;
    async fn update_run(
        &self,
        workspace: &str,
        run_id: &str,
        update: &RunUpdate,
    ) -> Result<RunInfo>;
    async fn delete_run(&self, workspace: &str, run_id: &str) -> Result<()>;
    async fn restore_run(&self, workspace: &str, run_id: &str) -> Result<()>;
    /// Logs metrics, params and tags atomically: a bad param leaves nothing written.
    async fn log_batch(&self, workspace: &str, run_id: &str, batch: &LogBatch) -> Result<()>;
    async fn delete_run_tag(&self, workspace: &str, run_id: &str, key: &str) -> Result<()>;
    async fn metric_history(
        &self,
        workspace: &str,
        run_id: &str,
        key: &str,
        offset: u64,
        max_results: u64,
    ) -> Result<Page<Metric>>;
    async fn log_inputs(
        &self,
        workspace: &str,
        run_id: &str,
        datasets: &[DatasetInput],
        model_ids: &[String],
    ) -> Result<()>;
    async fn log_outputs(
        &self,
        workspace: &str,
        run_id: &str,
        models: &[ModelOutput],
    ) -> Result<()>;
    async fn search_runs(&self, workspace: &str, query: &SearchRuns) -> Result<Page<Run>>;
}

#[async_trait]
pub trait LoggedModelStore: Send + Sync {
    async fn create_logged_model(
        &self,
        workspace: &str,
        model: &NewLoggedModel,
    ) -> Result<LoggedModel>;
    async fn get_logged_model(&self, workspace: &str, model_id: &str) -> Result<LoggedModel>;
    async fn finalize_logged_model(
        &self,
        workspace: &str,
        model_id: &str,
        status: LoggedModelStatus,
    ) -> Result<LoggedModel>;
    async fn delete_logged_model(&self, workspace: &str, model_id: &str) -> Result<()>;
    async fn set_logged_model_tags(
        &self,
        workspace: &str,
        model_id: &str,
        tags: &[KeyValue],
    ) -> Result<()>;
    async fn delete_logged_model_tag(
        &self,
        workspace: &str,
        model_id: &str,
        key: &str,
    ) -> Result<()>;
    async fn log_logged_model_params(
        &self,
        workspace: &str,
        model_id: &str,
        params: &[KeyValue],
    ) -> Result<()>;
    async fn search_logged_models(
        &self,
        workspace: &str,
        query: &SearchLoggedModels,
    ) -> Result<Page<LoggedModel>>;
}

/// A token to store: the hash of its secret, never the secret.
#[derive(Debug, Clone, Copy)]
pub struct NewToken<'a> {
    pub token_id: &'a str,
    pub principal_name: &'a str,
    pub token_hash: &'a str,
    pub comment: &'a str,
    /// Milliseconds since the epoch; `None` never expires.
    pub expires_at: Option<i64>,
    /// The one workspace it may be used in; `None` for all its principal's.
    pub workspace: Option<&'a str>,
}

/// A personal access token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub token_id: String,
    pub principal_id: i64,
    pub principal_name: String,
    pub comment: String,
    pub created_at: i64,
    /// Milliseconds since the epoch; `None` never expires.
    pub expires_at: Option<i64>,
    /// The one workspace the token may be used in; `None` for all its principal's.
    pub workspace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalRecord {
    pub id: i64,
    pub name: String,
    pub kind: PrincipalKind,
    pub is_admin: bool,
    pub active: bool,
    pub created_at: i64,
    /// What identity providers keep on it through SCIM (display name, emails, external id,
    /// entitlements, roles), as they sent it.
    pub attributes: serde_json::Value,
    /// When it was deleted (SCIM's DELETE); activating it again brings it back.
    pub deleted_at: Option<i64>,
}

#[async_trait]
/// Principals and their credentials. Each change names the principal who made it (`actor`), for
/// the event it records.
pub trait IdentityStore: Send + Sync {
    /// Creates a user, service principal or group. `password_hash` only for users.
    async fn create_principal(
        &self,
        name: &str,
        kind: PrincipalKind,
        is_admin: bool,
        password_hash: Option<&str>,
        actor: &str,
    ) -> Result<PrincipalRecord>;
    async fn get_principal(&self, name: &str) -> Result<PrincipalRecord>;
    /// The principal with its groups, for work done on its behalf later (refreshes); refused
    /// (PERMISSION_DENIED) when it was deactivated.
    async fn active_principal(&self, name: &str) -> Result<Principal>;
    async fn list_principals(&self, kind: Option<PrincipalKind>) -> Result<Vec<PrincipalRecord>>;
    async fn set_password_hash(&self, name: &str, password_hash: &str, actor: &str) -> Result<()>;
    /// Activates or deactivates a principal; activating a deleted one brings it back.
    async fn set_active(&self, name: &str, active: bool, actor: &str) -> Result<()>;
    /// Deletes a principal as SCIM does: deactivated, out of every group and workspace, its
    /// tokens revoked, recording `principal.deleted`. Its name stays taken.
    async fn delete_principal(&self, name: &str, actor: &str) -> Result<()>;
    /// Replaces a principal's SCIM attributes, recording `principal.updated`.
    async fn set_principal_attributes(
        &self,
        name: &str,
        attributes: &serde_json::Value,
        actor: &str,
    ) -> Result<()>;
    /// Every group membership, as (group id, member id).
    async fn group_memberships(&self) -> Result<Vec<(i64, i64)>>;
    /// The stored password hash and the principal for basic auth; `None` when unknown or inactive.
    async fn password_login(&self, name: &str) -> Result<Option<(String, Principal)>>;
    async fn add_group_member(&self, group: &str, member: &str, actor: &str) -> Result<()>;
    async fn remove_group_member(&self, group: &str, member: &str, actor: &str) -> Result<()>;
    async fn group_members(&self, group: &str) -> Result<Vec<PrincipalRecord>>;
    async fn create_token(&self, token: &NewToken<'_>, actor: &str) -> Result<TokenInfo>;
    /// The principal behind a token hash, if the token exists, is not revoked and not expired
    /// at `now`, with the workspace the token is limited to.
    async fn principal_for_token(&self, token_hash: &str, now: i64) -> Result<Option<Principal>>;
    async fn list_tokens(&self, principal_name: Option<&str>) -> Result<Vec<TokenInfo>>;
    async fn revoke_token(&self, token_id: &str, actor: &str) -> Result<()>;
    async fn token_owner(&self, token_id: &str) -> Result<i64>;
}

#[async_trait]
pub trait WorkspaceStore: Send + Sync {
    /// Creates the workspace if it does not exist; returns whether it was created.
    async fn ensure_workspace(&self, name: &str, actor: &str) -> Result<bool>;
    async fn list_workspaces(&self) -> Result<Vec<String>>;
    async fn workspace_exists(&self, name: &str) -> Result<bool>;
    async fn add_workspace_member(
        &self,
        workspace: &str,
        principal_name: &str,
        actor: &str,
    ) -> Result<()>;
    async fn remove_workspace_member(
        &self,
        workspace: &str,
        principal_name: &str,
        actor: &str,
    ) -> Result<()>;
    async fn workspace_members(&self, workspace: &str) -> Result<Vec<PrincipalRecord>>;
    /// Whether any of the ids (a principal and its groups) is a member.
    async fn is_workspace_member(&self, workspace: &str, grantee_ids: &[i64]) -> Result<bool>;
}

#[async_trait]
pub trait PermissionStore: Send + Sync {
    /// The levels granted on one object to any of `grantee_ids`.
    async fn granted_levels(
        &self,
        workspace: &str,
        object_type: ObjectType,
        object_id: &str,
        grantee_ids: &[i64],
    ) -> Result<Vec<PermissionLevel>>;
    async fn object_grants(
        &self,
        workspace: &str,
        object_type: ObjectType,
        object_id: &str,
    ) -> Result<Vec<Grant>>;
    /// Adds or raises grants (PATCH semantics): `(principal name, level)` pairs. The change is
    /// recorded as a `permissions` event by `actor`.
    async fn update_grants(
        &self,
        workspace: &str,
        object_type: ObjectType,
        object_id: &str,
        grants: &[(String, PermissionLevel)],
        actor: &Actor,
    ) -> Result<()>;
    /// Replaces the whole list (PUT semantics).
    async fn replace_grants(
        &self,
        workspace: &str,
        object_type: ObjectType,
        object_id: &str,
        grants: &[(String, PermissionLevel)],
        actor: &Actor,
    ) -> Result<()>;
}

/// The model registry. Every change records its event (see [`Event`]) in its transaction.
#[async_trait]
pub trait RegistryStore: Send + Sync {
    async fn create_registered_model(
        &self,
        workspace: &str,
        name: &str,
        description: &str,
        tags: &[KeyValue],
        actor: &Actor,
    ) -> Result<RegisteredModel>;
    async fn get_registered_model(&self, workspace: &str, name: &str) -> Result<RegisteredModel>;
    /// The id a model's permissions are keyed by (stable across renames).
    async fn registered_model_id(&self, workspace: &str, name: &str) -> Result<String>;
    /// The current name of the model with this id.
    async fn registered_model_name(&self, workspace: &str, id: &str) -> Result<String>;
    async fn rename_registered_model(
        &self,
        workspace: &str,
        name: &str,
        new_name: &str,
        actor: &Actor,
    ) -> Result<RegisteredModel>;
    async fn update_registered_model(
        &self,
        workspace: &str,
        name: &str,
        description: &str,
        actor: &Actor,
    ) -> Result<RegisteredModel>;
    /// Deletes the model, its versions, tags, aliases and grants; returns the versions'
    /// storage locations so their artifacts can be removed.
    async fn delete_registered_model(
        &self,
        workspace: &str,
        name: &str,
        actor: &Actor,
    ) -> Result<Vec<String>>;
    async fn search_registered_models(
        &self,
        workspace: &str,
        query: &SearchRegistry,
    ) -> Result<Page<RegisteredModel>>;
    async fn set_registered_model_tag(
        &self,
        workspace: &str,
        name: &str,
        tag: &KeyValue,
        actor: &Actor,
    ) -> Result<()>;
    async fn delete_registered_model_tag(
        &self,
        workspace: &str,
        name: &str,
        key: &str,
        actor: &Actor,
    ) -> Result<()>;
    /// The newest version in each of `stages` (every stage when empty).
    async fn latest_versions(
        &self,
        workspace: &str,
        name: &str,
        stages: &[Stage],
    ) -> Result<Vec<ModelVersion>>;
    async fn create_model_version(
        &self,
        workspace: &str,
        version: &NewModelVersion,
        actor: &Actor,
    ) -> Result<ModelVersion>;
    async fn get_model_version(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
    ) -> Result<ModelVersion>;
    async fn update_model_version(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
        description: &str,
        actor: &Actor,
    ) -> Result<ModelVersion>;
    /// Where the model's versions keep their registry copies, for finding copies no version
    /// owns (left by a create that crashed before its version was stored).
    async fn version_storage_locations(&self, model_id: &str) -> Result<Vec<String>>;
    /// Deletes the version (its number is never reused); returns its storage location.
    async fn delete_model_version(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
        actor: &Actor,
    ) -> Result<String>;
    async fn search_model_versions(
        &self,
        workspace: &str,
        query: &SearchRegistry,
    ) -> Result<Page<ModelVersion>>;
    async fn set_model_version_tag(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
        tag: &KeyValue,
        actor: &Actor,
    ) -> Result<()>;
    async fn delete_model_version_tag(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
        key: &str,
        actor: &Actor,
    ) -> Result<()>;
    /// Moves a version to `stage`; with `archive_existing`, the other versions in that stage
    /// go to Archived in the same transaction. Recorded as an APPLIED_TRANSITION activity
    /// (and SYSTEM_TRANSITIONs for the archived versions) by `principal`, whose stage-aware
    /// level (`Stage::transition_level`) is checked inside the same transaction.
    #[allow(clippy::too_many_arguments)]
    async fn transition_stage(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
        stage: Stage,
        archive_existing: bool,
        comment: &str,
        principal: &Principal,
    ) -> Result<ModelVersion>;
    /// Opens a request to move a version to `to_stage`.
    async fn create_transition_request(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
        to_stage: Stage,
        comment: &str,
        actor: &Actor,
    ) -> Result<Activity>;
    /// Ends the open requests to `to_stage`: approve and reject end all of them, cancel only
    /// `requester`'s. Approving performs the transition in the same transaction.
    #[allow(clippy::too_many_arguments)]
    async fn resolve_transition_request(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
        to_stage: Stage,
        outcome: RequestOutcome,
        requester: Option<&str>,
        comment: &str,
        actor: &Actor,
    ) -> Result<Activity>;
    /// The open requests of a version, oldest first.
    async fn open_transition_requests(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
    ) -> Result<Vec<Activity>>;
    /// Everything that happened to a version, oldest first.
    async fn activities(&self, workspace: &str, name: &str, version: i64) -> Result<Vec<Activity>>;
    async fn create_comment(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
        comment: &str,
        actor: &Actor,
    ) -> Result<Activity>;
    /// A comment by id (with its model name and version set).
    async fn get_comment(&self, workspace: &str, id: i64) -> Result<Activity>;
    async fn update_comment(
        &self,
        workspace: &str,
        id: i64,
        comment: &str,
        actor: &Actor,
    ) -> Result<Activity>;
    async fn delete_comment(&self, workspace: &str, id: i64, actor: &Actor) -> Result<()>;
    async fn set_alias(
        &self,
        workspace: &str,
        name: &str,
        alias: &str,
        version: i64,
        actor: &Actor,
    ) -> Result<()>;
    async fn delete_alias(
        &self,
        workspace: &str,
        name: &str,
        alias: &str,
        actor: &Actor,
    ) -> Result<()>;
    async fn version_by_alias(
        &self,
        workspace: &str,
        name: &str,
        alias: &str,
    ) -> Result<ModelVersion>;
}

/// One delivery of one event to one webhook, with what its last attempt got.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Delivery {
    pub id: i64,
    /// Sent in the delivery headers; the same on every retry, so receivers can de-duplicate.
    pub delivery_id: String,
    pub webhook_id: String,
    pub event_id: i64,
    pub event_name: String,
    /// The exact body sent.
    pub payload: String,
    /// `pending`, `succeeded` or `failed` (gave up).
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub last_latency_ms: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What to record after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptResult {
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub latency_ms: i64,
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    RetryAt(i64),
    GaveUp,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryQuery {
    pub workspace: String,
    pub webhook_id: Option<String>,
    pub status: Option<String>,
    pub limit: u64,
}

/// Webhooks and the delivery queue they are fed from the event log.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Stores a new webhook; events already in the log are not delivered to it.
    async fn create_webhook(&self, webhook: &Webhook, actor: &Actor) -> Result<()>;
    async fn get_webhook(&self, workspace: &str, id: &str) -> Result<Webhook>;
    /// Webhooks of one flavor, newest first; `model_name` narrows Databricks listings.
    async fn list_webhooks(
        &self,
        workspace: &str,
        flavor: Flavor,
        model_name: Option<&str>,
        offset: u64,
        max_results: u64,
    ) -> Result<Page<Webhook>>;
    async fn update_webhook(&self, webhook: &Webhook, actor: &Actor) -> Result<()>;
    async fn delete_webhook(&self, workspace: &str, id: &str, actor: &Actor) -> Result<()>;
    /// Turns up to `limit` events after the outbox cursor into pending deliveries and
    /// advances the cursor, in one transaction. Returns how many events it consumed.
    async fn fan_out(&self, limit: u64, now: i64) -> Result<usize>;
    /// Takes up to `limit` due deliveries, leasing them until `lease_until` so another
    /// dispatcher (or a crash) does not send them twice at once.
    async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: u64,
    ) -> Result<Vec<(Delivery, Webhook)>>;
    async fn record_attempt(&self, id: i64, result: &AttemptResult, now: i64) -> Result<()>;
    /// The delivery log, newest first.
    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>>;
}

/// The lakehouse catalog's metadata: schemas and tables per workspace catalog. The Delta log
/// is the truth about a table's data; this is the truth about its name, owner and comments.
#[async_trait]
pub trait CatalogStore: Send + Sync {
    /// Points the tables stored under `from` (a lake root's URL) at the same paths under `to`,
    /// after their files were copied there (a restore into another lake root); how many.
    async fn relocate_tables(&self, from: &str, to: &str) -> Result<u64>;
    async fn create_schema(&self, schema: &NewSchema, actor: &Actor) -> Result<SchemaInfo>;
    async fn get_schema(&self, catalog: &str, name: &str) -> Result<SchemaInfo>;
    async fn list_schemas(
        &self,
        catalog: &str,
        max_results: u64,
        offset: u64,
    ) -> Result<Page<SchemaInfo>>;
    /// Changes what is given; `None` leaves it as it is.
    async fn update_schema(
        &self,
        catalog: &str,
        name: &str,
        comment: Option<&str>,
        properties: Option<&std::collections::BTreeMap<String, String>>,
        actor: &Actor,
    ) -> Result<SchemaInfo>;
    /// Refuses a schema that still holds tables unless `force`; returns the tables dropped
    /// with it, so the caller can remove managed data.
    async fn delete_schema(
        &self,
        catalog: &str,
        name: &str,
        force: bool,
        actor: &Actor,
    ) -> Result<Vec<TableInfo>>;
    async fn create_table(&self, table: &NewTable, actor: &Actor) -> Result<TableInfo>;
    async fn get_table(&self, catalog: &str, schema: &str, name: &str) -> Result<TableInfo>;
    async fn list_tables(
        &self,
        catalog: &str,
        schema: &str,
        max_results: u64,
        offset: u64,
    ) -> Result<Page<TableInfo>>;
    /// Records the table's columns after its schema changed (comments of kept columns stay).
    async fn set_table_columns(
        &self,
        catalog: &str,
        schema: &str,
        name: &str,
        columns: &[ColumnInfo],
        actor: &Actor,
    ) -> Result<TableInfo>;
    /// Forgets the table; returns it, so the caller can remove managed data.
    async fn delete_table(
        &self,
        catalog: &str,
        schema: &str,
        name: &str,
        actor: &Actor,
    ) -> Result<TableInfo>;
    /// The grants on these securables (full names), to check a caller's privileges.
    async fn catalog_grants_on(
        &self,
        securables: &[String],
    ) -> Result<Vec<crate::catalog::CatalogGrant>>;
    /// Who holds what on one securable, principals by name.
    async fn catalog_privileges(
        &self,
        securable: &str,
    ) -> Result<Vec<crate::catalog::PrivilegeAssignment>>;
    /// Adds and removes privileges in one transaction; unknown principals are refused.
    async fn update_catalog_grants(
        &self,
        catalog: &str,
        securable_type: crate::catalog::SecurableType,
        securable: &str,
        changes: &[crate::catalog::PermissionsChange],
        actor: &Actor,
    ) -> Result<Vec<crate::catalog::PrivilegeAssignment>>;
    /// The tags on a securable (by full name).
    async fn catalog_tags(
        &self,
        securable: &str,
    ) -> Result<std::collections::BTreeMap<String, String>>;
    /// Sets and unsets tags in one transaction (at most `MAX_TAGS` remain); returns them all.
    async fn update_catalog_tags(
        &self,
        catalog: &str,
        securable_type: crate::catalog::SecurableType,
        securable: &str,
        set: &std::collections::BTreeMap<String, String>,
        unset: &[String],
        actor: &Actor,
    ) -> Result<std::collections::BTreeMap<String, String>>;
    /// The files ingested into a table, oldest first.
    async fn ingested_files(&self, table_id: &str) -> Result<Vec<crate::catalog::IngestedFile>>;
    /// Records an ingested file; a file recorded already is refused.
    async fn record_ingested_file(&self, file: &crate::catalog::IngestedFile) -> Result<()>;
    /// Tables with data (views have none), each with the last version of its log the commit
    /// watcher has accounted for.
    async fn watched_tables(&self) -> Result<Vec<crate::catalog::WatchedTable>>;
    /// Records the commits other writers made to `table` since its watched version as
    /// `table.committed` events and moves the watched version to `latest`, in one transaction.
    /// False, recording nothing, when another watcher moved it first.
    async fn record_outside_commits(
        &self,
        table: &crate::catalog::WatchedTable,
        latest: i64,
        commits: &[crate::catalog::OutsideCommit],
    ) -> Result<bool>;
    /// The workspaces that may read `catalog` (besides its own).
    async fn catalog_bindings(&self, catalog: &str) -> Result<Vec<String>>;
    /// Lets `workspace` read `catalog`, or stops it.
    async fn set_catalog_binding(
        &self,
        catalog: &str,
        workspace: &str,
        bound: bool,
        actor: &Actor,
    ) -> Result<()>;
}

/// The lineage graph: writes, what each read, and the edges they make.
#[async_trait]
pub trait LineageStore: Send + Sync {
    /// Records one write and its sources (one read per source); returns the write's id.
    async fn record_lineage(&self, write: &crate::lineage::NewLineage) -> Result<i64>;
    /// Records a write whose data has committed. The data is in the table by then, so a
    /// failure to record is logged rather than failing the write (a client would retry and
    /// write twice).
    async fn record_committed_write(&self, write: &crate::lineage::NewLineage) {
        if let Err(err) = self.record_lineage(write).await {
            tracing::error!(
                target_name = %write.target.name,
                operation = %write.operation,
                error = %err.report(),
                "cannot record lineage"
            );
        }
    }
    /// The edges into `node` (upstream) or out of it (downstream), one per neighbour.
    async fn lineage_edges(
        &self,
        node: &crate::lineage::Node,
        direction: crate::lineage::Direction,
    ) -> Result<Vec<crate::lineage::LineageEdge>>;
    /// The newest writes to `node`, newest first.
    async fn lineage_writes(
        &self,
        node: &crate::lineage::Node,
        limit: u64,
    ) -> Result<Vec<crate::lineage::LineageWrite>>;
}

/// Feature tables' keys and provenance, and the training sets built from them.
#[async_trait]
pub trait FeatureStore: Send + Sync {
    /// Makes an existing catalog table a feature table; a table is one at most once.
    async fn create_feature_table(
        &self,
        feature_table: &crate::features::FeatureTable,
        actor: &Actor,
    ) -> Result<()>;
    async fn get_feature_table(
        &self,
        catalog: &str,
        schema: &str,
        name: &str,
    ) -> Result<crate::features::FeatureTable>;
    /// Feature tables in these catalogs whose name, description or columns contain `text`
    /// (all when empty), by full name.
    async fn search_feature_tables(
        &self,
        catalogs: &[String],
        text: &str,
        max_results: u64,
        offset: u64,
    ) -> Result<Page<crate::features::FeatureTable>>;
    async fn record_training_set(&self, training_set: &crate::features::TrainingSet) -> Result<()>;
    async fn get_training_set(
        &self,
        workspace: &str,
        training_set_id: &str,
    ) -> Result<crate::features::TrainingSet>;
}

/// Serving endpoints; each change is recorded in the event log with its actor.
#[async_trait]
pub trait ServingStore: Send + Sync {
    /// RESOURCE_ALREADY_EXISTS when the workspace has an endpoint of that name.
    async fn create_endpoint(
        &self,
        endpoint: &crate::serving::ServingEndpoint,
        actor: &Actor,
    ) -> Result<()>;
    async fn get_endpoint(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<crate::serving::ServingEndpoint>;
    /// The workspace's endpoints by name; every workspace's when `workspace` is None.
    async fn list_endpoints(
        &self,
        workspace: Option<&str>,
    ) -> Result<Vec<crate::serving::ServingEndpoint>>;
    /// Replaces the config and bumps `config_version`; returns the endpoint as stored.
    async fn update_endpoint_config(
        &self,
        workspace: &str,
        name: &str,
        config: &crate::serving::EndpointConfig,
        now: i64,
        actor: &Actor,
    ) -> Result<crate::serving::ServingEndpoint>;
    /// Deletes the endpoint and its grants; returns its id.
    async fn delete_endpoint(&self, workspace: &str, name: &str, actor: &Actor) -> Result<String>;
}

/// Jobs: their settings as sent, checked by tarn-jobs before they get here.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Stores a new job, makes `actor` its owner (IS_OWNER) and records `job.created`.
    async fn create_job(
        &self,
        workspace: &str,
        settings: &serde_json::Value,
        run_as: &str,
        now: i64,
        actor: &Actor,
    ) -> Result<crate::jobs::Job>;
    /// RESOURCE_DOES_NOT_EXIST when the workspace has no job of that id.
    async fn get_job(&self, workspace: &str, job_id: i64) -> Result<crate::jobs::Job>;
    /// The workspace's jobs by id, `name` matched exactly but for case; at most `limit` from
    /// `offset`, and whether more follow.
    async fn list_jobs(
        &self,
        workspace: &str,
        name: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<crate::jobs::Job>>;
    /// Replaces the settings (and the principal runs act as) and records `job.updated`.
    async fn replace_job_settings(
        &self,
        workspace: &str,
        job_id: i64,
        settings: &serde_json::Value,
        run_as: &str,
        actor: &Actor,
    ) -> Result<crate::jobs::Job>;
    /// Deletes the job and its grants and records `job.deleted`.
    async fn delete_job(&self, workspace: &str, job_id: i64, actor: &Actor) -> Result<()>;
}

/// Runs of jobs and their task runs. The runner decides and the executors run; each change
/// to a task run names the life-cycle state it expects to find, so a decision made on a stale
/// read changes nothing.
#[async_trait]
pub trait JobRunStore: Send + Sync {
    /// Stores a new run with its task runs (ids given here, in one id space). A run whose
    /// `idempotency_token` the workspace already holds is not made again: that run is returned.
    async fn create_job_run(&self, run: &crate::jobs::JobRun) -> Result<crate::jobs::JobRun>;
    /// The run with every attempt of its tasks; RESOURCE_DOES_NOT_EXIST when the workspace has
    /// no run of that id (a task run's id included: its run is returned).
    async fn get_job_run(&self, workspace: &str, run_id: i64) -> Result<crate::jobs::JobRun>;
    /// The workspace's runs, newest first, without their task runs unless `with_tasks`.
    async fn list_job_runs(
        &self,
        workspace: &str,
        filter: &crate::jobs::RunFilter,
        with_tasks: bool,
        offset: u64,
        limit: u64,
    ) -> Result<Page<crate::jobs::JobRun>>;
    /// Every run not yet ended, in every workspace, with its task runs: the runner's view.
    async fn active_job_runs(&self) -> Result<Vec<crate::jobs::JobRun>>;
    /// Writes a run's state and times (the runner's decisions), with the event it makes (its
    /// start or its end) in the same transaction; the cancel request stays.
    async fn update_job_run(
        &self,
        run: &crate::jobs::JobRun,
        event: Option<&crate::events::Change>,
    ) -> Result<()>;
    /// Writes task runs' states, times, claims and outputs in one transaction, each only
    /// when it is still in the life cycle paired with it (and, when `worker` is given, still
    /// claimed by it); whether each was.
    async fn update_task_runs(
        &self,
        changes: &[(&crate::jobs::TaskRun, crate::jobs::LifeCycle)],
        worker: Option<&str>,
    ) -> Result<Vec<bool>>;
    /// `update_task_runs` for one task run.
    async fn update_task_run(
        &self,
        task: &crate::jobs::TaskRun,
        expected: crate::jobs::LifeCycle,
        worker: Option<&str>,
    ) -> Result<bool> {
        let written = self.update_task_runs(&[(task, expected)], worker).await?;
        Ok(written.first() == Some(&true))
    }
    /// Adds an attempt to a run (a retry); returns it with its id.
    async fn insert_task_run(&self, task: &crate::jobs::TaskRun) -> Result<crate::jobs::TaskRun>;
    /// Claims the oldest task run ready to run for `worker`: RUNNING, started `now`, its claim
    /// held until `lease_until`. Returns it with its workspace.
    async fn claim_task_run(
        &self,
        worker: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<(String, crate::jobs::TaskRun)>>;
    /// Extends the claims `worker` holds; returns those of its task runs whose run is to be
    /// cancelled.
    async fn renew_task_runs(&self, worker: &str, lease_until: i64) -> Result<Vec<i64>>;
    /// Asks for the runs to end: of `run_id`, or of every active run of `job_id`. Returns the
    /// ids of the runs asked.
    async fn request_job_run_cancel(
        &self,
        workspace: &str,
        run_id: Option<i64>,
        job_id: Option<i64>,
    ) -> Result<Vec<i64>>;
    /// Starts a repair of an ended run: the run takes `run`'s settings, parameters and
    /// history (to which the repair's own entry is added, its id the first new task run's),
    /// goes back to PENDING, and gets the task runs `rerun`. Refused while the run is active.
    async fn repair_job_run(
        &self,
        run: &crate::jobs::JobRun,
        rerun: &[crate::jobs::TaskRun],
        now: i64,
    ) -> Result<crate::jobs::JobRun>;
    /// Deletes an ended run with its task runs.
    async fn delete_job_run(&self, workspace: &str, run_id: i64) -> Result<()>;
    /// Takes or renews the lease `name` for `holder` until `until`: granted when no one holds
    /// it, `holder` does, or its holder let it lapse before `now`. Whether it is held.
    async fn hold_lease(&self, name: &str, holder: &str, now: i64, until: i64) -> Result<bool>;
    /// What each job's schedule and triggers have seen (tarn-jobs' state, as JSON), by job.
    async fn trigger_states(&self) -> Result<Vec<(i64, serde_json::Value)>>;
    async fn save_trigger_state(&self, job_id: i64, state: &serde_json::Value) -> Result<()>;
    /// Who holds the lease `name` and until when, if anyone ever took it.
    async fn lease_holder(&self, name: &str) -> Result<Option<(String, i64)>>;
    /// The secret `name` every server on this store shares: `candidate` when none was kept
    /// yet (kept then, at `now`), else the one the first server kept.
    async fn shared_secret(&self, name: &str, candidate: &str, now: i64) -> Result<String>;
    /// Keeps the piece of a task run's log that starts at byte `offset` (a worker ships its
    /// tasks' logs this way). Shipping the same piece again changes nothing.
    async fn append_task_log(&self, task_run_id: i64, offset: i64, data: &[u8]) -> Result<()>;
    /// The shipped log of a task run from byte `from`, at most `limit` bytes, and the log's
    /// shipped length.
    async fn read_task_log(
        &self,
        task_run_id: i64,
        from: i64,
        limit: i64,
    ) -> Result<(Vec<u8>, i64)>;
}

/// Workspace files and directories, by normalized path ([`crate::files::normalize_path`]).
#[async_trait]
pub trait WorkspaceFileStore: Send + Sync {
    /// Stores a file or notebook at `path`, making the directories above it. A directory there,
    /// or a file above it, is refused; so is an existing file unless `overwrite`
    /// (RESOURCE_ALREADY_EXISTS).
    async fn put_workspace_file(
        &self,
        workspace: &str,
        path: &str,
        object_type: crate::files::ObjectType,
        language: Option<&str>,
        content: &[u8],
        overwrite: bool,
    ) -> Result<crate::files::WorkspaceObject>;
    /// Makes a directory and those above it; one already there is fine, a file in the way is
    /// refused.
    async fn make_workspace_dirs(&self, workspace: &str, path: &str) -> Result<()>;
    /// The object at `path`, if any (the root is always a directory).
    async fn workspace_object(
        &self,
        workspace: &str,
        path: &str,
    ) -> Result<Option<crate::files::WorkspaceObject>>;
    /// A file's or notebook's bytes; RESOURCE_DOES_NOT_EXIST when there is none at `path`.
    async fn workspace_file_content(&self, workspace: &str, path: &str) -> Result<Vec<u8>>;
    /// What `directory` holds, directly or (`recursive`) at any depth, by path.
    async fn list_workspace_objects(
        &self,
        workspace: &str,
        directory: &str,
        recursive: bool,
    ) -> Result<Vec<crate::files::WorkspaceObject>>;
    /// Deletes the object at `path`; a directory that holds anything only when `recursive`.
    async fn delete_workspace_object(
        &self,
        workspace: &str,
        path: &str,
        recursive: bool,
    ) -> Result<()>;
}

/// Table monitors and their refreshes, keyed by the monitored table's id.
#[async_trait]
pub trait MonitorStore: Send + Sync {
    /// Stores a new monitor and records `monitor.created`; RESOURCE_ALREADY_EXISTS when the
    /// table has one.
    async fn create_monitor(&self, monitor: &crate::monitors::Monitor, actor: &Actor)
    -> Result<()>;
    /// RESOURCE_DOES_NOT_EXIST when the table has no monitor.
    async fn get_monitor(&self, table_id: &str) -> Result<crate::monitors::Monitor>;
    /// Every monitor (the scheduler's view), by table name.
    async fn list_monitors(&self) -> Result<Vec<crate::monitors::Monitor>>;
    /// Replaces the settings, bumps `monitor_version` and records `monitor.updated`.
    async fn update_monitor(
        &self,
        table_id: &str,
        settings: &crate::monitors::MonitorSettings,
        now: i64,
        actor: &Actor,
    ) -> Result<crate::monitors::Monitor>;
    /// The outcome of the latest refresh: the status and, after a failure, why.
    async fn set_monitor_status(
        &self,
        table_id: &str,
        status: crate::monitors::MonitorStatus,
        failure: Option<&str>,
    ) -> Result<()>;
    /// Deletes the monitor with its refreshes and records `monitor.deleted` (the metrics
    /// tables stay, as Databricks leaves them).
    async fn delete_monitor(&self, table_id: &str, actor: &Actor) -> Result<()>;
    /// A new PENDING refresh; RESOURCE_CONFLICT while another is pending or running.
    async fn create_refresh(
        &self,
        table_id: &str,
        trigger: crate::monitors::RefreshTrigger,
        now: i64,
    ) -> Result<crate::monitors::Refresh>;
    async fn get_refresh(
        &self,
        table_id: &str,
        refresh_id: i64,
    ) -> Result<crate::monitors::Refresh>;
    /// The latest `limit` refreshes, newest first.
    async fn list_refreshes(
        &self,
        table_id: &str,
        limit: u64,
    ) -> Result<Vec<crate::monitors::Refresh>>;
    /// Moves a refresh found in one of `from` to `to`; an end sets `end_time_ms` to `now`
    /// and records `end`. False when it was in none of them.
    async fn transition_refresh(
        &self,
        table_id: &str,
        refresh_id: i64,
        from: &[crate::monitors::RefreshState],
        to: crate::monitors::RefreshState,
        now: i64,
        end: &crate::monitors::RefreshEnd,
    ) -> Result<bool>;
    /// The latest refresh that succeeded, with the versions it read.
    async fn last_successful_refresh(
        &self,
        table_id: &str,
    ) -> Result<Option<crate::monitors::Refresh>>;
    /// Notes that the process running a refresh is alive.
    async fn beat_refresh(&self, table_id: &str, refresh_id: i64, now: i64) -> Result<()>;
    /// The PENDING and RUNNING refreshes not heard from since `silent_since` (by their last
    /// heartbeat, or their start), with their tables' ids: their processes stopped.
    async fn stalled_refreshes(
        &self,
        silent_since: i64,
    ) -> Result<Vec<(String, crate::monitors::Refresh)>>;
}

/// A SQL statement as every server on the store sees it, so a poll, a fetch or a cancel reaches
/// it through any replica.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementRecord {
    pub id: String,
    pub workspace: String,
    /// The principal who submitted it.
    pub owner_id: i64,
    /// The server running it.
    pub server: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED` or `CANCELED`.
    pub state: String,
    /// How it ended (its result's shape, or its error), as the SQL engine describes it.
    pub outcome: Option<serde_json::Value>,
    /// Someone asked for it to stop; the server running it does.
    pub cancel_requested: bool,
    pub submitted_at: i64,
    /// When the server running it last said it still was.
    pub seen_at: i64,
}

/// SQL statements' state, shared by the servers on one store.
#[async_trait]
pub trait StatementStore: Send + Sync {
    async fn create_statement(&self, statement: &StatementRecord) -> Result<()>;
    async fn get_statement(&self, id: &str) -> Result<Option<StatementRecord>>;
    /// Records how a running statement ended; false (nothing changed) when it had ended already.
    async fn end_statement(
        &self,
        id: &str,
        state: &str,
        outcome: &serde_json::Value,
        now: i64,
    ) -> Result<bool>;
    /// Asks the server running statement `id` to stop it; nothing when it is not running.
    async fn request_statement_cancel(&self, id: &str) -> Result<()>;
    /// Marks `server`'s running statements as alive at `now`; the ids of those asked to stop.
    async fn touch_statements(&self, server: &str, now: i64) -> Result<Vec<String>>;
    /// Forgets the statements submitted before `before`; their ids.
    async fn delete_statements_before(&self, before: i64) -> Result<Vec<String>>;
}

/// The event stream: the audit trail, and what webhooks, job triggers and alerts react to.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Events in order of id, for the audit API and the outbox's subscribers.
    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>>;
    /// The id of the newest event (0: none yet), where a follower of the stream starts.
    async fn last_event_id(&self) -> Result<i64>;
    /// Records a change made outside the metadata store (a publish to the online store).
    async fn record_event(&self, workspace: &str, actor: &Actor, change: &Change) -> Result<()>;
    /// The events waiting in `consumer`'s outbox, oldest first, at most `limit`.
    async fn pending_events(&self, consumer: &str, limit: u64) -> Result<Vec<Event>>;
    /// Takes `consumer`'s events up to `up_to` out of its outbox: they were handled.
    async fn acknowledge_events(&self, consumer: &str, up_to: i64) -> Result<()>;
}

/// Alerts and their evaluations; each change to an alert, and each announced evaluation, is an
/// event in the change's transaction.
#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Stores a new alert and records `alert.created`.
    async fn create_alert(&self, alert: &crate::alerts::Alert, actor: &Actor) -> Result<()>;
    /// RESOURCE_DOES_NOT_EXIST when the workspace has no alert `id`.
    async fn get_alert(&self, workspace: &str, id: &str) -> Result<crate::alerts::Alert>;
    /// The workspace's alerts (every workspace's when None), by display name.
    async fn list_alerts(&self, workspace: Option<&str>) -> Result<Vec<crate::alerts::Alert>>;
    /// Replaces the settings and records `alert.updated`.
    async fn update_alert(
        &self,
        workspace: &str,
        id: &str,
        settings: &crate::alerts::AlertSettings,
        now: i64,
        actor: &Actor,
    ) -> Result<crate::alerts::Alert>;
    /// Deletes the alert with its history and records `alert.deleted`.
    async fn delete_alert(&self, workspace: &str, id: &str, actor: &Actor) -> Result<()>;
    /// Keeps an evaluation and sets the alert's state from it, recording `announce` as an
    /// `alert.state_changed` event in the same transaction when given.
    async fn record_evaluation(
        &self,
        evaluation: &crate::alerts::Evaluation,
        announce: Option<&crate::events::AlertStateChange>,
    ) -> Result<()>;
    /// The latest `limit` evaluations of an alert, newest first.
    async fn list_evaluations(
        &self,
        alert_id: &str,
        limit: u64,
    ) -> Result<Vec<crate::alerts::Evaluation>>;
}

/// The whole metadata store.
pub trait MetaStore:
    ExperimentStore
    + RunStore
    + LoggedModelStore
    + IdentityStore
    + WorkspaceStore
    + PermissionStore
    + RegistryStore
    + WebhookStore
    + CatalogStore
    + LineageStore
    + FeatureStore
    + ServingStore
    + JobStore
    + JobRunStore
    + WorkspaceFileStore
    + MonitorStore
    + AlertStore
    + EventStore
    + StatementStore
{
    /// `sqlite` or `postgresql`, as `server-info` reports it.
    fn backend_name(&self) -> &'static str;
}
