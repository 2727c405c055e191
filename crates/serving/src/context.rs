//! What the serving runtime works with.

use std::path::PathBuf;
use std::sync::Arc;

use tarn_artifacts::ArtifactStore;
use tarn_core::store::MetaStore;
use tarn_features::online::{LookupCache, OnlineStore};
use tarn_lake::Lake;

/// What the serving runtime reads: the registry, the models' files, the lake its inference
/// tables live in, and the online store features are looked up in.
#[derive(Clone)]
pub struct ServingContext {
    pub store: Arc<dyn MetaStore>,
    pub artifacts: ArtifactStore,
    pub lake: Arc<Lake>,
    pub online: Arc<dyn OnlineStore>,
    /// Tables lookups resolved recently.
    pub lookups: Arc<LookupCache>,
    /// Where inference rows wait until their table holds them.
    pub inference_spool: PathBuf,
}
