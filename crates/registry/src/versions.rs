//! Creating and deleting model versions, with the registry's copies of their files.

use tarn_artifacts::ArtifactStore;
use tarn_core::auth::PermissionLevel;
use tarn_core::caller::Caller;
use tarn_core::entities::KeyValue;
use tarn_core::features::{TRAINING_SET_TAG, TableVersion, TrainingSet};
use tarn_core::lineage::{NewLineage, Node};
use tarn_core::registry::{self, ModelVersion, NewModelVersion};
use tarn_core::store::MetaStore;
use tarn_core::{Error, ErrorCode, Result};
use tarn_identity::access;

use crate::copies::{new_copy_location, remove_copies};

/// A new version as MLflow's `CreateModelVersion` asks for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionRequest {
    pub name: String,
    /// `models:/<model id>`, `models:/<name>/<version>`, `runs:/<run id>/<path>` or
    /// `mlflow-artifacts:/...` of the caller's workspace.
    pub source: String,
    pub run_id: Option<String>,
    pub run_link: Option<String>,
    pub description: String,
    pub tags: Vec<KeyValue>,
    pub model_id: Option<String>,
}

/// Creates a version of a registered model the caller may edit from a source they may read:
/// copies the source's files into the registry with their checksum, records the training set
/// the version was trained on (its tag, its run's or its logged model's) and the lineage from
/// that set's tables, and stores the version with its event. A refused or failed create leaves
/// no copy behind.
pub async fn create_version(
    store: &dyn MetaStore,
    artifacts: &ArtifactStore,
    caller: &Caller,
    request: VersionRequest,
) -> Result<ModelVersion> {
    for tag in &request.tags {
        registry::validate_registry_tag(tag)?;
    }
    registry::validate_description(&request.description)?;
    let model_id =
        access::registered_model(store, caller, &request.name, PermissionLevel::CanEdit).await?;
    let run_id = request.run_id.filter(|r| !r.is_empty());
    if let Some(run_id) = &run_id {
        access::run(store, caller, run_id, PermissionLevel::CanRead).await?;
    }
    let resolved = resolve_source(store, caller, &request.source).await?;
    let location = new_copy_location(&model_id);
    let new = NewModelVersion {
        name: request.name,
        run_id: run_id.or(resolved.run_id),
        run_link: request.run_link.filter(|l| !l.is_empty()),
        description: request.description,
        tags: request.tags,
        model_id: request
            .model_id
            .filter(|m| !m.is_empty())
            .or(resolved.model_id),
        storage_location: location.clone(),
        checksum: String::new(),
        source: request.source,
    };
    let created = copy_and_store(store, artifacts, caller, &resolved.folder, new).await;
    if created.is_err() {
        remove_copies(artifacts, &caller.workspace, &[location]).await;
    }
    created
}

/// The part of a create after which a failure must remove the copy.
async fn copy_and_store(
    store: &dyn MetaStore,
    artifacts: &ArtifactStore,
    caller: &Caller,
    folder: &str,
    mut new: NewModelVersion,
) -> Result<ModelVersion> {
    let (files, checksum) = artifacts
        .copy_tree_with_checksum(&caller.workspace, folder, &new.storage_location)
        .await?;
    if files == 0 {
        return Err(Error::invalid(format!(
            "Unable to fetch model from model URI source artifact location '{}': it holds no files",
            new.source
        )));
    }
    new.checksum = checksum;
    let training_set = training_set_of(store, caller, &new).await?;
    if let Some(set) = &training_set
        && !new.tags.iter().any(|t| t.key == TRAINING_SET_TAG)
    {
        new.tags.push(KeyValue {
            key: TRAINING_SET_TAG.to_string(),
            value: set.training_set_id.clone(),
        });
    }
    let version = store
        .create_model_version(&caller.workspace, &new, &caller.actor())
        .await?;
    if let Some(set) = training_set {
        record_features_of_version(store, caller, &version, &set).await;
    }
    Ok(version)
}

/// Deletes a registered model the caller manages, with its versions and their copies.
pub async fn delete_model(
    store: &dyn MetaStore,
    artifacts: &ArtifactStore,
    caller: &Caller,
    name: &str,
) -> Result<()> {
    access::registered_model(store, caller, name, PermissionLevel::CanManage).await?;
    let locations = store
        .delete_registered_model(&caller.workspace, name, &caller.actor())
        .await?;
    remove_copies(artifacts, &caller.workspace, &locations).await;
    Ok(())
}

/// Deletes a version of a model the caller manages, with its copy.
pub async fn delete_version(
    store: &dyn MetaStore,
    artifacts: &ArtifactStore,
    caller: &Caller,
    name: &str,
    version: i64,
) -> Result<()> {
    access::registered_model(store, caller, name, PermissionLevel::CanManage).await?;
    let location = store
        .delete_model_version(&caller.workspace, name, version, &caller.actor())
        .await?;
    remove_copies(artifacts, &caller.workspace, &[location]).await;
    Ok(())
}

/// What a version's source names: a folder of this workspace's artifacts, and the lineage
/// the source implies (a logged model's run).
#[derive(Default)]
struct ResolvedSource {
    folder: String,
    run_id: Option<String>,
    model_id: Option<String>,
}

/// Resolves `models:/<model_id>`, `models:/<name>/<version>`, `runs:/<run_id>/<path>` or
/// `mlflow-artifacts:/...` after checking the caller may read it.
async fn resolve_source(
    store: &dyn MetaStore,
    caller: &Caller,
    source: &str,
) -> Result<ResolvedSource> {
    let unsupported = || {
        Error::invalid(format!(
            "Unsupported model version source '{source}': use a models:/, runs:/ or \
             mlflow-artifacts:/ URI of this workspace"
        ))
    };
    let mut resolved = ResolvedSource::default();
    if let Some(rest) = source.strip_prefix("models:/") {
        match rest.split_once('/') {
            None if !rest.is_empty() => {
                let model = store.get_logged_model(&caller.workspace, rest).await?;
                resolved.folder = model.info.artifact_uri;
                resolved.run_id = model.info.source_run_id;
                resolved.model_id = Some(rest.to_string());
            }
            Some((name, version)) => {
                let version = registry::parse_version(version)?;
                access::registered_model(store, caller, name, PermissionLevel::CanRead).await?;
                let from = store
                    .get_model_version(&caller.workspace, name, version)
                    .await?;
                // Registry copies are readable to whoever may read the model: done.
                resolved.folder = from.storage_location;
                resolved.run_id = from.run_id;
                resolved.model_id = from.model_id;
                return Ok(resolved);
            }
            None => return Err(unsupported()),
        }
    } else if let Some(rest) = source.strip_prefix("runs:/") {
        let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
        let experiment_id = access::run(store, caller, run_id, PermissionLevel::CanRead).await?;
        // Runs' artifact roots are always this (tarn refuses custom locations).
        resolved.folder = format!(
            "mlflow-artifacts:/{experiment_id}/{run_id}/artifacts/{}",
            path.trim_matches('/')
        );
        resolved.run_id = Some(run_id.to_string());
    } else if source.starts_with("mlflow-artifacts:") {
        resolved.folder = source.to_string();
    } else {
        return Err(unsupported());
    }
    resolved.folder = resolved
        .folder
        .strip_prefix("mlflow-artifacts:")
        .ok_or_else(unsupported)?
        .trim_matches('/')
        .to_string();
    tarn_artifacts::validate_relative_path(&resolved.folder)?;
    let experiment_id = resolved.folder.split('/').next().unwrap_or("");
    access::experiment(store, caller, experiment_id, PermissionLevel::CanRead).await?;
    Ok(resolved)
}

/// The training set a new version was trained on, named by the tag on the request, its run or
/// its logged model; refused when the tag names no training set of this workspace.
async fn training_set_of(
    store: &dyn MetaStore,
    caller: &Caller,
    new: &NewModelVersion,
) -> Result<Option<TrainingSet>> {
    let tagged = |tags: &[KeyValue]| {
        tags.iter()
            .find(|t| t.key == TRAINING_SET_TAG)
            .map(|t| t.value.clone())
    };
    let mut id = tagged(&new.tags);
    if id.is_none()
        && let Some(run_id) = &new.run_id
    {
        id = store
            .run_tag(&caller.workspace, run_id, TRAINING_SET_TAG)
            .await?;
    }
    if id.is_none()
        && let Some(model_id) = &new.model_id
    {
        let model = store.get_logged_model(&caller.workspace, model_id).await?;
        id = tagged(&model.info.tags);
    }
    let Some(id) = id else {
        return Ok(None);
    };
    match store.get_training_set(&caller.workspace, &id).await {
        Ok(set) => Ok(Some(set)),
        Err(err) if err.code == ErrorCode::ResourceDoesNotExist => Err(Error::invalid(format!(
            "Tag {TRAINING_SET_TAG} names training set '{id}', which workspace '{}' does not have",
            caller.workspace
        ))),
        Err(err) => Err(err),
    }
}

/// Links a version to the tables its training set read, at the versions read: the feature
/// tables (and label tables) -> model version edges of the lineage graph.
async fn record_features_of_version(
    store: &dyn MetaStore,
    caller: &Caller,
    version: &ModelVersion,
    set: &TrainingSet,
) {
    let sources = TableVersion::lineage_sources(&set.tables_read);
    let write = NewLineage::new(
        Node::model_version(&caller.workspace, &version.name, version.version),
        Some(version.version),
        "CREATE MODEL VERSION",
        caller.principal.name.clone(),
    )
    .reading(sources);
    store.record_committed_write(&write).await;
}
