//! A router that remembers the paths it mounts: the authorization sweep and the API reference
//! list every route from it, so neither can miss one.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::MethodRouter;

use crate::state::AppState;

#[derive(Clone, Default)]
pub struct Mounted {
    router: Router<AppState>,
    paths: Vec<String>,
}

impl Mounted {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn route(mut self, path: &str, methods: MethodRouter<AppState>) -> Self {
        self.router = self.router.route(path, methods);
        self.paths.push(path.to_string());
        self
    }

    pub fn nest(mut self, prefix: &str, inner: Mounted) -> Self {
        self.router = self.router.nest(prefix, inner.router);
        self.paths.extend(inner.paths.into_iter().map(|path| {
            if path == "/" {
                prefix.to_string()
            } else {
                format!("{prefix}{path}")
            }
        }));
        self
    }

    pub fn merge(mut self, other: Mounted) -> Self {
        self.router = self.router.merge(other.router);
        self.paths.extend(other.paths);
        self
    }

    /// Bodies up to `bytes` for the routes mounted so far.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.router = self.router.layer(DefaultBodyLimit::max(bytes));
        self
    }

    pub fn into_parts(self) -> (Router<AppState>, Vec<String>) {
        (self.router, self.paths)
    }
}
