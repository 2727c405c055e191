//! PostgreSQL backend: one pool for reads and writes.

use crate::common::*;
use crate::pg as db;
use db::Row;

const DIALECT: Dialect = Dialect::Postgres;

// One body of SQL for both dialects: `sql/` is compiled once here and once in the other
// backend, with this file's `db` and `DIALECT`. The list is written out in each backend, not
// made by a macro, because rustfmt does not follow modules a macro declares.
#[allow(clippy::duplicate_mod)]
#[path = "sql/alerts.rs"]
mod alerts;
#[allow(clippy::duplicate_mod)]
#[path = "sql/backend.rs"]
mod backend;
#[allow(clippy::duplicate_mod)]
#[path = "sql/catalog.rs"]
mod catalog;
#[allow(clippy::duplicate_mod)]
#[path = "sql/events.rs"]
mod events;
#[allow(clippy::duplicate_mod)]
#[path = "sql/experiments.rs"]
mod experiments;
#[allow(clippy::duplicate_mod)]
#[path = "sql/features.rs"]
mod features;
#[allow(clippy::duplicate_mod)]
#[path = "sql/identity.rs"]
mod identity;
#[allow(clippy::duplicate_mod)]
#[path = "sql/job_runs.rs"]
mod job_runs;
#[allow(clippy::duplicate_mod)]
#[path = "sql/jobs.rs"]
mod jobs;
#[allow(clippy::duplicate_mod)]
#[path = "sql/lineage.rs"]
mod lineage;
#[allow(clippy::duplicate_mod)]
#[path = "sql/logged_models.rs"]
mod logged_models;
#[allow(clippy::duplicate_mod)]
#[path = "sql/monitors.rs"]
mod monitors;
#[allow(clippy::duplicate_mod)]
#[path = "sql/permissions.rs"]
mod permissions;
#[allow(clippy::duplicate_mod)]
#[path = "sql/registry.rs"]
mod registry;
#[allow(clippy::duplicate_mod)]
#[path = "sql/runs.rs"]
mod runs;
#[allow(clippy::duplicate_mod)]
#[path = "sql/serving.rs"]
mod serving;
#[allow(clippy::duplicate_mod)]
#[path = "sql/statements.rs"]
mod statements;
#[allow(clippy::duplicate_mod)]
#[path = "sql/webhooks.rs"]
mod webhooks;
#[allow(clippy::duplicate_mod)]
#[path = "sql/workspace_files.rs"]
mod workspace_files;

pub use backend::Store;
// The SQL files are siblings that share helpers: each takes the others' through `super::*`.
use backend::*;
use catalog::*;
use events::*;
use experiments::*;
use permissions::*;
use registry::*;
use webhooks::*;
