//! What can go wrong with a model, and how it reaches the wire.

use std::path::Path;

use tarn_core::error::{Error, ErrorCode};

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
