//! MLflow model directories and their scoring: the `MLmodel` file and its signature, ONNX
//! models run by tract with tarn's own ONNX-ML evaluators, the scoring payload formats of
//! MLflow's scoring server, and a micro-batching scorer that runs off the async threads.

pub mod batch;
pub mod batcher;
pub mod export;
pub mod mlmodel;
pub mod onnx;
pub mod payload;

use std::path::Path;

use tarn_core::error::{Error, ErrorCode};

pub use batcher::{Batcher, BatcherOptions};
pub use mlmodel::{MlModel, Schema, Signature};
pub use onnx::OnnxModel;
pub use payload::{Invocation, Prepared};

/// What can go wrong loading or scoring a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The model files are broken or inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// The model needs something tarn does not run (a flavor, an ONNX operator).
    #[error("the model cannot be served by tarn: {0}")]
    Unsupported(String),
    /// A scoring request that does not fit the model.
    #[error("{0}")]
    BadInput(String),
    /// The model failed on well-formed input.
    #[error("the model failed to score: {0}")]
    Scoring(String),
    /// The scorer is gone (shutting down) or over capacity.
    #[error("{0}")]
    Unavailable(String),
}

impl From<ModelError> for Error {
    fn from(error: ModelError) -> Error {
        let code = match &error {
            ModelError::Invalid(_) | ModelError::Unsupported(_) => ErrorCode::InvalidParameterValue,
            ModelError::BadInput(_) | ModelError::Scoring(_) => ErrorCode::BadRequest,
            ModelError::Unavailable(_) => ErrorCode::TemporarilyUnavailable,
        };
        Error::new(code, error.to_string())
    }
}

/// Refuses a path from a model file that could leave the model directory.
pub(crate) fn safe_relative_path(path: &str) -> Result<(), ModelError> {
    let escapes = Path::new(path).components().any(|c| {
        !matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    });
    if path.is_empty() || escapes {
        return Err(ModelError::Invalid(format!(
            "the model refers to {path:?}, which is not a path inside the model directory (no '..' or absolute paths)"
        )));
    }
    Ok(())
}

/// An MLflow model ready to score: its `MLmodel` description and the loaded ONNX graph.
#[derive(Debug, Clone)]
pub struct Model {
    pub mlmodel: MlModel,
    pub onnx: OnnxModel,
}

impl Model {
    /// Loads a model from its `MLmodel` text and a reader of the files of its directory (the
    /// ONNX file and any weights kept beside it), by path relative to the directory.
    pub fn load(
        mlmodel: &str,
        mut read_file: impl FnMut(&str) -> Result<Vec<u8>, ModelError>,
    ) -> Result<Model, ModelError> {
        let mlmodel = MlModel::parse(mlmodel)?;
        let onnx_file = mlmodel.onnx_file()?;
        let bytes = read_file(&onnx_file)?;
        // External weights are named relative to the ONNX file's folder.
        let folder = std::path::Path::new(&onnx_file)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let onnx = OnnxModel::load(&bytes, &mut |name: &str| {
            if folder.is_empty() {
                read_file(name)
            } else {
                read_file(&format!("{folder}/{name}"))
            }
        })?;
        Ok(Model { mlmodel, onnx })
    }

    /// Scores a request in one run on the calling thread: its `{"predictions": ...}` body.
    pub fn predict(&self, invocation: &Invocation, max_rows: usize) -> Result<Vec<u8>, ModelError> {
        use tract_onnx::prelude::IntoTValue;
        let prepared = self.prepare(invocation, max_rows)?;
        let outputs = self.onnx.run(
            prepared
                .feeds
                .into_iter()
                .map(IntoTValue::into_tvalue)
                .collect(),
        )?;
        payload::Predictions {
            names: self.onnx.outputs(),
            outputs: &outputs,
            range: 0..prepared.rows,
            records: prepared.records,
        }
        .to_json()
    }

    /// Runs the model once on a row of zeros, so that the first request finds it warm.
    pub fn warm_up(&self) -> Result<(), ModelError> {
        let feeds = self
            .onnx
            .inputs()
            .iter()
            .map(onnx::zeros)
            .collect::<Result<_, _>>()?;
        self.onnx.run(feeds).map(|_| ())
    }

    /// Loads an MLflow model directory on local disk.
    pub fn from_dir(dir: &Path) -> Result<Model, ModelError> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| {
                ModelError::Invalid(format!("cannot read {}: {e}", dir.join(name).display()))
            })
        };
        let mlmodel = String::from_utf8(read("MLmodel")?)
            .map_err(|_| ModelError::Invalid("the MLmodel file is not UTF-8".into()))?;
        Model::load(&mlmodel, read)
    }
}
