//! Who is acting, and in which workspace. Every permission check and every recorded change
//! starts from a `Caller`: the server's extractor builds one per request, the CLI one per
//! command, background work one from the stored owner it acts for.

use crate::auth::Principal;
use crate::registry::Actor;

/// The workspace served when a path has no `/ws/{name}` prefix.
pub const DEFAULT_WORKSPACE: &str = "dev";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The workspace the call works in.
    pub workspace: String,
    /// The authenticated principal, with its groups (their grants are its own too).
    pub principal: Principal,
}

impl Caller {
    pub fn new(workspace: impl Into<String>, principal: Principal) -> Self {
        Self {
            workspace: workspace.into(),
            principal,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.principal.is_admin
    }

    /// Whom the metadata store records as having made a change.
    pub fn actor(&self) -> Actor {
        Actor::from(&self.principal)
    }
}
