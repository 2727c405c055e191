//! MLflow model directories and their scoring: the `MLmodel` file and its signature, ONNX
//! models run by tract with tarn's own ONNX-ML evaluators, the scoring payload formats of
//! MLflow's scoring server, and a micro-batching scorer that runs off the async threads.

pub mod batch;
pub mod batcher;
mod error;
pub mod export;
pub mod mlmodel;
mod model;
pub mod onnx;
pub mod payload;

pub use batcher::{Batcher, BatcherOptions};
pub use error::ModelError;
pub use mlmodel::{MlModel, Schema, Signature};
pub use model::Model;
pub use onnx::OnnxModel;
pub use payload::{Invocation, Prepared};
