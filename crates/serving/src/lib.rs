//! The serving runtime, used by `tarn server` (serving endpoints), `tarn serve` (one model) and
//! `tarn score` (a table): models loaded from the registry and warmed, endpoints rolled out
//! without failing a request, feature lookups for versions trained on a training set, and the
//! inference table every endpoint request is logged to, unpacked into one row per prediction.

mod context;
pub mod endpoints;
pub mod features;
pub mod inference;
mod manage;
mod scoring;
mod spool;
pub mod unpack;

pub use context::ServingContext;
pub use endpoints::{
    Endpoints, Invoked, LiveEndpoint, LiveEntity, SYNC_EVERY, load_model, resolve_ref,
};
pub use scoring::{Limits, score, score_invocation};
