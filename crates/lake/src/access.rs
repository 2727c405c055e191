//! Who may do what to the lakehouse, in one place for the table API, SQL and the CLI.
//!
//! Until catalog grants arrive: a workspace reaches its own catalog only; its members read
//! schemas and tables and create new ones, which they then own; only the owner or an admin
//! writes to or drops a table.

use tarn_core::registry::Actor;
use tarn_core::store::MetaStore;
use tarn_core::{Error, Result};

/// The caller of a lakehouse operation and the workspace it works in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: i64,
    pub name: String,
    pub is_admin: bool,
    pub workspace: String,
}

impl Caller {
    /// Whom the metadata store records as having made a change.
    pub fn actor(&self) -> Actor {
        Actor {
            id: self.id,
            name: self.name.clone(),
        }
    }
}

/// A workspace reaches its own catalog; another workspace's catalog is addressed under its
/// own `/ws/{name}` prefix (cross-catalog reads arrive with catalog grants).
pub async fn reach_catalog(store: &dyn MetaStore, caller: &Caller, catalog: &str) -> Result<()> {
    if catalog == caller.workspace {
        return Ok(());
    }
    if !store.workspace_exists(catalog).await? {
        return Err(Error::not_found(format!("Catalog not found: {catalog}")));
    }
    Err(Error::permission_denied(format!(
        "Catalog '{catalog}' is not reachable from workspace '{}': use /ws/{catalog}/ to work in it",
        caller.workspace
    )))
}

/// Writing to, changing or dropping `what` is for its owner and admins.
pub fn require_owner(caller: &Caller, owner: &str, what: &str) -> Result<()> {
    if caller.is_admin || caller.name == owner {
        Ok(())
    } else {
        Err(Error::permission_denied(format!(
            "'{}' may not change {what}: only its owner '{owner}' or an admin may",
            caller.name
        )))
    }
}
