//! The permission checks on tracking and registry objects that every caller of them makes: the
//! HTTP API, the CLI and job tasks alike.

use tarn_core::auth::{ObjectType, PermissionLevel};
use tarn_core::caller::Caller;
use tarn_core::store::MetaStore;
use tarn_core::{Error, Result};

use crate::require;

/// Experiment ids arrive as strings; checks the caller's level, then that the experiment
/// exists, and returns its id.
pub async fn experiment(
    store: &dyn MetaStore,
    caller: &Caller,
    experiment_id: &str,
    level: PermissionLevel,
) -> Result<i64> {
    let id = tarn_core::validation::parse_experiment_id(experiment_id)?;
    // Permission first: whoever may not read an id learns nothing, not even whether it exists
    // (ids are small numbers, easy to walk).
    require(
        store,
        &caller.workspace,
        &caller.principal,
        ObjectType::Experiment,
        &id.to_string(),
        level,
    )
    .await?;
    if !store.experiment_exists(&caller.workspace, id).await? {
        return Err(Error::not_found(format!(
            "No Experiment with id={id} exists"
        )));
    }
    Ok(id)
}

/// The same for a run, through its experiment; returns the experiment's id.
pub async fn run(
    store: &dyn MetaStore,
    caller: &Caller,
    run_id: &str,
    level: PermissionLevel,
) -> Result<i64> {
    tarn_core::validation::validate_run_id(run_id)?;
    let experiment_id = store.run_experiment_id(&caller.workspace, run_id).await?;
    require(
        store,
        &caller.workspace,
        &caller.principal,
        ObjectType::Experiment,
        &experiment_id.to_string(),
        level,
    )
    .await?;
    Ok(experiment_id)
}

/// Checks the caller's level on a registered model and returns the model's id.
pub async fn registered_model(
    store: &dyn MetaStore,
    caller: &Caller,
    name: &str,
    level: PermissionLevel,
) -> Result<String> {
    let id = store.registered_model_id(&caller.workspace, name).await?;
    require(
        store,
        &caller.workspace,
        &caller.principal,
        ObjectType::RegisteredModel,
        &id,
        level,
    )
    .await?;
    Ok(id)
}
