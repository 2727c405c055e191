//! What the two backends share: the dialect they differ by, how a database error is reported,
//! and the names the SQL files of `sql/` use (one scope when the files were included into one
//! module; as modules each takes them from its backend through `super::*`).

pub(crate) use async_trait::async_trait;
pub(crate) use std::collections::BTreeMap;
pub(crate) use std::collections::HashMap;
pub(crate) use tarn_core::auth::require_granted;
pub(crate) use tarn_core::auth::{Grant, ObjectType, PermissionLevel, Principal, PrincipalKind};
pub(crate) use tarn_core::catalog::{
    CatalogGrant, ColumnInfo, IngestedFile, NewSchema, NewTable, OutsideCommit, PermissionsChange,
    Privilege, PrivilegeAssignment, SchemaInfo, SecurableType, TableInfo, TableType, WatchedTable,
};
pub(crate) use tarn_core::entities::{
    Dataset, DatasetInput, Experiment, KeyValue, LifecycleStage, LogBatch, LoggedModel,
    LoggedModelData, LoggedModelInfo, LoggedModelStatus, Metric, ModelInput, ModelOutput,
    NewLoggedModel, NewRun, Run, RunData, RunInfo, RunInputs, RunOutputs, RunStatus, RunUpdate,
    ViewType,
};
pub(crate) use tarn_core::events::{self as event, Change, Event, EventQuery};
pub(crate) use tarn_core::features::{FeatureTable, TrainingSet};
pub(crate) use tarn_core::ids::now_millis;
pub(crate) use tarn_core::lineage::{
    Direction, LineageEdge, LineageWrite, NewLineage, Node, NodeKind, distinct_sources,
};
pub(crate) use tarn_core::registry::{
    Activity, ActivityType, Actor, Alias, ModelVersion, NewModelVersion, RegisteredModel,
    RequestOutcome, Stage, VersionStatus,
};
pub(crate) use tarn_core::search::{Comparator, Comparison, Entity, OrderBy, Value};
pub(crate) use tarn_core::serving::{EndpointConfig, ServingEndpoint};
pub(crate) use tarn_core::store::AlertStore;
pub(crate) use tarn_core::store::CatalogStore;
pub(crate) use tarn_core::store::FeatureStore;
pub(crate) use tarn_core::store::JobRunStore;
pub(crate) use tarn_core::store::JobStore;
pub(crate) use tarn_core::store::LineageStore;
pub(crate) use tarn_core::store::MonitorStore;
pub(crate) use tarn_core::store::ServingStore;
pub(crate) use tarn_core::store::StatementStore;
pub(crate) use tarn_core::store::WorkspaceFileStore;
pub(crate) use tarn_core::store::{
    AttemptOutcome, AttemptResult, Delivery, DeliveryQuery, WebhookStore,
};
pub(crate) use tarn_core::store::{EventStore, RegistryStore, SearchRegistry};
pub(crate) use tarn_core::store::{
    ExperimentStore, IdentityStore, LoggedModelStore, MetaStore, NewToken, Page, PermissionStore,
    PrincipalRecord, ReadableBy, RunStore, SearchExperiments, SearchLoggedModels, SearchRuns,
    TokenInfo, WorkspaceStore,
};
pub(crate) use tarn_core::webhooks::{self as hooks, Flavor, Webhook, WebhookStatus};
pub(crate) use tarn_core::{Error, Result};

/// What differs between the SQL dialects, kept small on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

pub(crate) use crate::error::db_error;

/// A write's work inside the transaction it borrows, as each backend's writer runs it.
pub(crate) type WriteFuture<'t, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 't>>;
