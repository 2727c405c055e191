//! The registry's copies of versions' files: where they live, and removing those no version
//! owns.

use std::collections::HashSet;
use std::time::Duration;

use tarn_artifacts::ArtifactStore;
use tarn_core::store::MetaStore;
use tarn_core::{ErrorCode, Result};

/// Where registry-owned copies live, relative to a workspace's artifact root.
pub const REGISTRY_PREFIX: &str = "_registry";

/// How long a registry copy no version owns is left alone: a create on this or another
/// replica may still be about to store its version.
pub const UNOWNED_COPY_GRACE: Duration = Duration::from_secs(3600);

/// A fresh folder for a copy of one of the model's versions.
pub(crate) fn new_copy_location(model_id: &str) -> String {
    format!(
        "{REGISTRY_PREFIX}/{model_id}/{}",
        tarn_core::ids::hex32(rand::random())
    )
}

/// Removes registry copies after their rows are gone; a failure leaves only unreachable files
/// (the sweep removes them later).
pub(crate) async fn remove_copies(
    artifacts: &ArtifactStore,
    workspace: &str,
    locations: &[String],
) {
    for location in locations {
        if let Err(err) = artifacts.delete(workspace, location).await {
            tracing::warn!(location, error = %err.report(), "could not remove registry copy");
        }
    }
}

/// Removes registry copies that no version owns and that nothing wrote to for `grace`: what a
/// create interrupted between its copy and its version (a crash, a dropped request) or a
/// delete interrupted before its files went left behind. Returns how many it removed.
pub async fn remove_unowned_copies(
    store: &dyn MetaStore,
    artifacts: &ArtifactStore,
    grace: Duration,
) -> Result<usize> {
    let mut removed = 0;
    for workspace in store.list_workspaces().await? {
        let models = match artifacts.list(&workspace, REGISTRY_PREFIX).await {
            Ok(models) => models,
            Err(err) if err.code == ErrorCode::ResourceDoesNotExist => continue,
            Err(err) => return Err(err),
        };
        for model in models {
            if !model.is_dir {
                continue;
            }
            let owned: HashSet<String> = store
                .version_storage_locations(&model.path)
                .await?
                .into_iter()
                .collect();
            let folder = format!("{REGISTRY_PREFIX}/{}", model.path);
            let untouched = artifacts
                .folders_untouched_for(&workspace, &folder, grace)
                .await?;
            for copy in untouched.into_iter().filter(|copy| !owned.contains(copy)) {
                tracing::info!(%workspace, copy, "removing a registry copy no version owns");
                artifacts.delete(&workspace, &copy).await?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}
