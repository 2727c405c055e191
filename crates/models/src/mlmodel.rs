//! The `MLmodel` file of an MLflow model directory: its flavors, signature and input example.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::ModelError;

/// What tarn reads of an `MLmodel` file.
#[derive(Debug, Clone, PartialEq)]
pub struct MlModel {
    /// Flavor name → its configuration (`onnx: {data: model.onnx, ...}`).
    pub flavors: BTreeMap<String, serde_json::Value>,
    pub signature: Option<Signature>,
    /// The input example's file in the model directory, if one was saved.
    pub input_example: Option<String>,
    pub run_id: Option<String>,
    pub model_uuid: Option<String>,
}

/// A model signature: the input schema, the output schema and the inference params.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub inputs: Schema,
    pub outputs: Option<Schema>,
    pub params: Vec<ParamSpec>,
}

/// Inputs described as named columns (a DataFrame) or as tensors.
#[derive(Debug, Clone, PartialEq)]
pub enum Schema {
    Columns(Vec<ColumnSpec>),
    Tensors(Vec<TensorSchema>),
}

/// The type of a column in a column-based schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Double,
    Float,
    Long,
    Integer,
    Boolean,
    String,
    Binary,
    Datetime,
}

impl ColumnType {
    fn parse(name: &str) -> Option<ColumnType> {
        Some(match name {
            "double" => ColumnType::Double,
            "float" => ColumnType::Float,
            "long" => ColumnType::Long,
            "integer" => ColumnType::Integer,
            "boolean" => ColumnType::Boolean,
            "string" => ColumnType::String,
            "binary" => ColumnType::Binary,
            "datetime" => ColumnType::Datetime,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Double => "double",
            ColumnType::Float => "float",
            ColumnType::Long => "long",
            ColumnType::Integer => "integer",
            ColumnType::Boolean => "boolean",
            ColumnType::String => "string",
            ColumnType::Binary => "binary",
            ColumnType::Datetime => "datetime",
        }
    }

    pub fn numeric(self) -> bool {
        matches!(
            self,
            ColumnType::Double | ColumnType::Float | ColumnType::Long | ColumnType::Integer
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: String,
    pub column_type: ColumnType,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TensorSchema {
    pub name: Option<String>,
    /// numpy dtype name (`float32`, `float64`, `int64`, ...).
    pub dtype: String,
    /// `-1` marks a free dimension.
    pub shape: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub param_type: String,
    pub default: serde_json::Value,
}

#[derive(Deserialize)]
struct RawMlModel {
    #[serde(default)]
    flavors: BTreeMap<String, serde_json::Value>,
    signature: Option<RawSignature>,
    saved_input_example_info: Option<RawExample>,
    run_id: Option<String>,
    model_uuid: Option<String>,
}

/// MLflow stores each schema as a JSON string inside the YAML.
#[derive(Deserialize)]
struct RawSignature {
    inputs: Option<String>,
    outputs: Option<String>,
    params: Option<String>,
}

#[derive(Deserialize)]
struct RawExample {
    artifact_path: Option<String>,
}

#[derive(Deserialize)]
struct RawColumn {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    #[serde(default = "required_by_default")]
    required: bool,
    #[serde(rename = "tensor-spec")]
    tensor_spec: Option<RawTensorSpec>,
}

fn required_by_default() -> bool {
    true
}

#[derive(Deserialize)]
struct RawTensorSpec {
    dtype: String,
    shape: Vec<i64>,
}

#[derive(Deserialize)]
struct RawParam {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    default: serde_json::Value,
}

impl MlModel {
    pub fn parse(text: &str) -> Result<MlModel, ModelError> {
        let raw: RawMlModel = serde_norway::from_str(text)
            .map_err(|e| ModelError::Invalid(format!("the MLmodel file is not valid: {e}")))?;
        let signature = match raw.signature {
            Some(RawSignature {
                inputs: Some(inputs),
                outputs,
                params,
            }) => Some(Signature {
                inputs: parse_schema(&inputs, "inputs")?,
                outputs: outputs
                    .as_deref()
                    .map(|o| parse_schema(o, "outputs"))
                    .transpose()?,
                params: params
                    .as_deref()
                    .map(parse_params)
                    .transpose()?
                    .unwrap_or_default(),
            }),
            _ => None,
        };
        Ok(MlModel {
            flavors: raw.flavors,
            signature,
            input_example: raw.saved_input_example_info.and_then(|e| e.artifact_path),
            run_id: raw.run_id,
            model_uuid: raw.model_uuid,
        })
    }

    /// The ONNX file of the `onnx` flavor, relative to the model directory.
    pub fn onnx_file(&self) -> Result<String, ModelError> {
        let Some(onnx) = self.flavors.get("onnx") else {
            let flavors: Vec<&str> = self.flavors.keys().map(String::as_str).collect();
            return Err(ModelError::Unsupported(format!(
                "tarn serves models with the onnx flavor; this one has {}",
                if flavors.is_empty() {
                    "no flavor".to_string()
                } else {
                    flavors.join(", ")
                }
            )));
        };
        let data = onnx
            .get("data")
            .and_then(|d| d.as_str())
            .unwrap_or("model.onnx");
        crate::error::safe_relative_path(data)?;
        Ok(data.to_string())
    }
}

fn parse_schema(text: &str, what: &str) -> Result<Schema, ModelError> {
    let bad = |e: String| ModelError::Invalid(format!("the signature's {what} are not valid: {e}"));
    let columns: Vec<RawColumn> = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    if columns.iter().all(|c| c.kind == "tensor") && !columns.is_empty() {
        return columns
            .into_iter()
            .map(|c| {
                let spec = c
                    .tensor_spec
                    .ok_or_else(|| bad("a tensor without tensor-spec".into()))?;
                Ok(TensorSchema {
                    name: c.name,
                    dtype: spec.dtype,
                    shape: spec.shape,
                })
            })
            .collect::<Result<_, _>>()
            .map(Schema::Tensors);
    }
    columns
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let column_type = ColumnType::parse(&c.kind)
                .ok_or_else(|| bad(format!("column type {:?} is not supported", c.kind)))?;
            Ok(ColumnSpec {
                name: c.name.unwrap_or_else(|| i.to_string()),
                column_type,
                required: c.required,
            })
        })
        .collect::<Result<_, _>>()
        .map(Schema::Columns)
}

fn parse_params(text: &str) -> Result<Vec<ParamSpec>, ModelError> {
    let params: Vec<RawParam> = serde_json::from_str(text)
        .map_err(|e| ModelError::Invalid(format!("the signature's params are not valid: {e}")))?;
    Ok(params
        .into_iter()
        .map(|p| ParamSpec {
            name: p.name,
            param_type: p.kind,
            default: p.default,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONNX_MLMODEL: &str = r#"artifact_path: model
flavors:
  onnx:
    code: null
    data: model.onnx
    onnx_version: 1.23.2
    providers:
    - CPUExecutionProvider
  python_function:
    data: model.onnx
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.onnx
    python_version: 3.11.7
mlflow_version: 3.17.2
model_uuid: 6f1c1f0e
run_id: 0a1b2c
saved_input_example_info:
  artifact_path: input_example.json
  pandas_orient: split
  type: dataframe
signature:
  inputs: '[{"type": "double", "name": "f0", "required": true}, {"type": "long", "name": "f1", "required": false}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
  params: '[{"name": "threshold", "type": "double", "default": 0.5, "shape": null}]'
"#;

    #[test]
    fn reads_flavor_signature_and_example() {
        let model = MlModel::parse(ONNX_MLMODEL).expect("valid MLmodel");
        assert_eq!(model.onnx_file().expect("onnx flavor"), "model.onnx");
        assert_eq!(model.input_example.as_deref(), Some("input_example.json"));
        assert_eq!(model.run_id.as_deref(), Some("0a1b2c"));
        let signature = model.signature.expect("signature");
        assert_eq!(
            signature.inputs,
            Schema::Columns(vec![
                ColumnSpec {
                    name: "f0".into(),
                    column_type: ColumnType::Double,
                    required: true
                },
                ColumnSpec {
                    name: "f1".into(),
                    column_type: ColumnType::Long,
                    required: false
                },
            ])
        );
        assert_eq!(
            signature.outputs,
            Some(Schema::Tensors(vec![TensorSchema {
                name: None,
                dtype: "int64".into(),
                shape: vec![-1]
            }]))
        );
        assert_eq!(signature.params[0].name, "threshold");
    }

    #[test]
    fn refuses_other_flavors_and_escaping_paths() {
        let sklearn = "flavors:\n  sklearn:\n    pickled_model: model.pkl\n";
        let error = MlModel::parse(sklearn)
            .expect("parses")
            .onnx_file()
            .expect_err("no onnx");
        assert!(error.to_string().contains("sklearn"), "{error}");
        let escaping = "flavors:\n  onnx:\n    data: ../../etc/passwd\n";
        let error = MlModel::parse(escaping)
            .expect("parses")
            .onnx_file()
            .expect_err("escapes");
        assert!(error.to_string().contains(".."), "{error}");
        assert!(MlModel::parse("flavors: [unclosed").is_err());
    }
}
