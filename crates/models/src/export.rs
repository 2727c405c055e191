//! MLflow ONNX model directories for models trained by tarn itself (the quickstart's linear
//! regression): a real ONNX graph (`ai.onnx.ml` `LinearRegressor`) and an `MLmodel` with the
//! `onnx` and `python_function` flavors and a column signature, so tarn serves it and the stock
//! `mlflow.pyfunc.load_model` loads it.

use prost::Message;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
use tract_onnx::pb::type_proto::{self, Tensor};
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};

/// ONNX's FLOAT element type.
const FLOAT: i32 = 1;

/// `y = coefficients · x + intercept` over named double columns.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    pub features: Vec<String>,
    pub coefficients: Vec<f32>,
    pub intercept: f32,
}

fn float_tensor(name: &str, dims: Vec<dimension::Value>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(Tensor {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .into_iter()
                        .map(|d| Dimension {
                            value: Some(d),
                            ..Dimension::default()
                        })
                        .collect(),
                }),
            })),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}

impl LinearModel {
    /// The ONNX model: input `X` `[N, features]` float, output `variable` `[N, 1]`.
    pub fn onnx(&self) -> Vec<u8> {
        let attribute = |name: &str, kind: AttributeType| AttributeProto {
            name: name.into(),
            r#type: kind as i32,
            ..AttributeProto::default()
        };
        let node = NodeProto {
            name: "LinearRegressor".into(),
            op_type: "LinearRegressor".into(),
            domain: "ai.onnx.ml".into(),
            input: vec!["X".into()],
            output: vec!["variable".into()],
            attribute: vec![
                AttributeProto {
                    floats: self.coefficients.clone(),
                    ..attribute("coefficients", AttributeType::Floats)
                },
                AttributeProto {
                    floats: vec![self.intercept],
                    ..attribute("intercepts", AttributeType::Floats)
                },
                AttributeProto {
                    i: 1,
                    ..attribute("targets", AttributeType::Int)
                },
            ],
            ..NodeProto::default()
        };
        let batch = dimension::Value::DimParam("N".into());
        let graph = GraphProto {
            name: "tarn_linear_regression".into(),
            node: vec![node],
            input: vec![float_tensor(
                "X",
                vec![
                    batch.clone(),
                    dimension::Value::DimValue(self.features.len() as i64),
                ],
            )],
            output: vec![float_tensor(
                "variable",
                vec![batch, dimension::Value::DimValue(1)],
            )],
            ..GraphProto::default()
        };
        let opset = |domain: &str, version| OperatorSetIdProto {
            domain: domain.into(),
            version,
        };
        ModelProto {
            ir_version: 8,
            producer_name: "tarn".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            opset_import: vec![opset("", 17), opset("ai.onnx.ml", 3)],
            graph: Some(graph),
            ..ModelProto::default()
        }
        .encode_to_vec()
    }

    /// The `MLmodel` file of the directory holding `model.onnx`.
    pub fn mlmodel(&self, run_id: &str, created: &str) -> String {
        let inputs: Vec<serde_json::Value> = self
            .features
            .iter()
            .map(|name| serde_json::json!({ "type": "double", "name": name, "required": true }))
            .collect();
        let outputs = serde_json::json!([{ "type": "tensor", "tensor-spec": { "dtype": "float32", "shape": [-1, 1] } }]);
        // The schemas are JSON strings inside the YAML, quoted as YAML single-quoted scalars.
        let quote =
            |value: &serde_json::Value| format!("'{}'", value.to_string().replace('\'', "''"));
        format!(
            "artifact_path: model\nflavors:\n  onnx:\n    code: null\n    data: model.onnx\n    onnx_version: 1.17.0\n    providers:\n    - CPUExecutionProvider\n  python_function:\n    data: model.onnx\n    loader_module: mlflow.onnx\nmodel_uuid: {run_id}-linear\nrun_id: {run_id}\nsignature:\n  inputs: {}\n  outputs: {}\n  params: null\nutc_time_created: '{created}'\n",
            quote(&serde_json::Value::Array(inputs)),
            quote(&outputs),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::payload::Invocation;

    #[test]
    fn an_exported_linear_model_scores_its_formula() {
        let linear = LinearModel {
            features: vec!["x0".into(), "x1".into()],
            coefficients: vec![3.0, -2.0],
            intercept: 0.5,
        };
        let bytes = linear.onnx();
        let model = Model::load(&linear.mlmodel("r1", "2026-01-01 00:00:00"), |name| {
            assert_eq!(name, "model.onnx");
            Ok(bytes.clone())
        })
        .expect("loads");
        let request = Invocation::parse(br#"{"dataframe_records": [{"x1": 1.0, "x0": 2.0}]}"#)
            .expect("request");
        let answer: serde_json::Value =
            serde_json::from_slice(&model.predict(&request, 10).expect("scores")).expect("json");
        assert_eq!(answer["predictions"][0]["variable"], 4.5);
    }
}
