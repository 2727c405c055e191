//! The model registry's use cases, called alike by the HTTP API, the CLI and job tasks. Each
//! checks the caller's permissions itself. The registry keeps its own copy of every version's
//! files (`_registry/<model id>/<random>`), so a version never changes when its run's
//! artifacts do; the copies are made, checksummed and removed here.

pub mod copies;
pub mod versions;

pub use copies::{REGISTRY_PREFIX, UNOWNED_COPY_GRACE, remove_unowned_copies};
pub use versions::{VersionRequest, create_version, delete_model, delete_version};
