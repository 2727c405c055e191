//! A model ready to score.

use std::path::Path;

use crate::error::ModelError;
use crate::mlmodel::MlModel;
use crate::onnx::{self, OnnxModel};

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
