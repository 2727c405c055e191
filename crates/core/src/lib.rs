//! tarn's domain: ids, entities, error codes, the search grammar, the permission model and the
//! store traits. No I/O lives here.

pub mod alerts;
pub mod auth;
pub mod caller;
pub mod catalog;
pub mod entities;
pub mod error;
pub mod events;
pub mod features;
pub mod files;
pub mod ids;
pub mod jobs;
pub mod lineage;
pub mod monitors;
pub mod registry;
pub mod search;
pub mod serving;
pub mod signed_urls;
pub mod store;
pub mod validation;
pub mod webhooks;

pub use error::{Error, ErrorCode, Result};
