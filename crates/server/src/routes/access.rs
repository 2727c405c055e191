//! The permission checks that several APIs share.

use tarn_core::Error;
use tarn_core::auth::{ObjectType, PermissionLevel};
use tarn_core::caller::Caller;

use crate::error::ApiResult;
use crate::state::AppState;

/// Experiment ids arrive as strings; check the experiment exists, then the caller's level.
pub async fn experiment_access(
    state: &AppState,
    ctx: &Caller,
    experiment_id: &str,
    level: PermissionLevel,
) -> ApiResult<i64> {
    let id = tarn_core::validation::parse_experiment_id(experiment_id)?;
    // Permission first: whoever may not read an id learns nothing, not even whether it exists
    // (ids are small numbers, easy to walk).
    tarn_identity::require(
        state.store.as_ref(),
        &ctx.workspace,
        &ctx.principal,
        ObjectType::Experiment,
        &id.to_string(),
        level,
    )
    .await?;
    if !state.store.experiment_exists(&ctx.workspace, id).await? {
        return Err(Error::not_found(format!("No Experiment with id={id} exists")).into());
    }
    Ok(id)
}

/// The same for a run, through its experiment.
pub async fn run_access(
    state: &AppState,
    ctx: &Caller,
    run_id: &str,
    level: PermissionLevel,
) -> ApiResult<i64> {
    tarn_core::validation::validate_run_id(run_id)?;
    let experiment_id = state
        .store
        .run_experiment_id(&ctx.workspace, run_id)
        .await?;
    tarn_identity::require(
        state.store.as_ref(),
        &ctx.workspace,
        &ctx.principal,
        ObjectType::Experiment,
        &experiment_id.to_string(),
        level,
    )
    .await?;
    Ok(experiment_id)
}
