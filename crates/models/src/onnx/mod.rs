//! ONNX models scored by tract, with tarn's evaluators for the ONNX-ML operators.
//!
//! Loading does everything that can fail before the first request: the graph is cut down to
//! what its outputs need (ZipMap, which turns probabilities into a list of maps, is dropped
//! and its input answers under its name), every operator left must be one tarn runs, and the
//! plan is optimised for a batch of any size.

mod ops;
pub mod tree;

use std::collections::HashSet;
use std::sync::Arc;

use tract_onnx::pb::tensor_shape_proto::dimension::Value as Dimension;
use tract_onnx::pb::type_proto::Value as TypeValue;
use tract_onnx::pb::{GraphProto, ModelProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::{DimLike, TDim, format_err};

use crate::error::ModelError;

/// The element type of a model input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    F32,
    F64,
    I32,
    I64,
    Bool,
    String,
}

impl ElementType {
    fn from_onnx(code: i32) -> Option<ElementType> {
        Some(match code {
            1 => ElementType::F32,
            6 => ElementType::I32,
            7 => ElementType::I64,
            8 => ElementType::String,
            9 => ElementType::Bool,
            11 => ElementType::F64,
            _ => return None,
        })
    }

    pub(crate) fn datum_type(self) -> DatumType {
        match self {
            ElementType::F32 => DatumType::F32,
            ElementType::F64 => DatumType::F64,
            ElementType::I32 => DatumType::I32,
            ElementType::I64 => DatumType::I64,
            ElementType::Bool => DatumType::Bool,
            ElementType::String => DatumType::String,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ElementType::F32 => "float32",
            ElementType::F64 => "float64",
            ElementType::I32 => "int32",
            ElementType::I64 => "int64",
            ElementType::Bool => "bool",
            ElementType::String => "string",
        }
    }
}

/// A graph input or output: its name, element type and shape (`None` for a free dimension).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub element: ElementType,
    pub shape: Vec<Option<usize>>,
    /// For an output a ZipMap made: its keys (the class labels), so that each row is answered
    /// as the map `{label: probability}` MLflow's scoring server answers.
    pub map_keys: Option<Vec<String>>,
}

impl TensorSpec {
    /// Values per row: the product of the dimensions after the first (1 for a vector).
    pub fn row_width(&self) -> Option<usize> {
        self.shape
            .iter()
            .skip(1)
            .try_fold(1usize, |width, dim| dim.map(|d| width * d))
    }

    /// Whether the first dimension is free, so that requests can be scored together.
    pub fn batched(&self) -> bool {
        self.shape.first().is_some_and(Option::is_none)
    }
}

/// A loaded ONNX model, ready to run on any number of rows.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

fn framework() -> tract_onnx::Onnx {
    let mut framework = tract_onnx::onnx()
        .with_ignore_output_types(true)
        .with_ignore_output_shapes(true);
    ops::register(&mut framework.op_register);
    framework
}

fn invalid(error: impl std::fmt::Display) -> ModelError {
    ModelError::Invalid(format!("{error:#}"))
}

impl OnnxModel {
    /// Loads a model whose weights are all inside `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<OnnxModel, ModelError> {
        OnnxModel::load(bytes, &mut |name: &str| {
            Err(ModelError::Invalid(format!(
                "the model keeps weights in {name:?}, outside the file"
            )))
        })
    }

    /// Loads a model; `read_file` gives the files beside it that hold external weights (as
    /// `mlflow.onnx.save_model` writes by default).
    pub fn load(
        bytes: &[u8],
        read_file: &mut dyn FnMut(&str) -> Result<Vec<u8>, ModelError>,
    ) -> Result<OnnxModel, ModelError> {
        let framework = framework();
        let mut proto = framework
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|e| ModelError::Invalid(format!("not an ONNX model: {e:#}")))?;
        let graph = proto
            .graph
            .as_mut()
            .ok_or_else(|| invalid("the ONNX model has no graph"))?;
        inline_external_data(graph, read_file)?;
        let maps = drop_zipmaps(graph);
        prune(graph);
        let unsupported: Vec<String> = graph
            .node
            .iter()
            .filter(|node| !framework.op_register.0.contains_key(&node.op_type))
            .map(|node| {
                let domain = if node.domain.is_empty() {
                    "ai.onnx"
                } else {
                    &node.domain
                };
                format!("{} ({domain}, node {:?})", node.op_type, node.name)
            })
            .collect();
        if !unsupported.is_empty() {
            return Err(ModelError::Unsupported(unsupported.join(", ")));
        }
        let inputs = graph_inputs(graph)?;
        let mut model = load(&framework, &proto)?;
        let batch = model.sym("batch");
        for (i, input) in inputs.iter().enumerate() {
            let dims: Vec<TDim> = input
                .shape
                .iter()
                .map(|d| d.map_or_else(|| TDim::from(batch.clone()), TDim::from))
                .collect();
            model
                .set_input_fact(i, input.element.datum_type().fact(dims).into())
                .map_err(invalid)?;
        }
        let typed = model.into_optimized().map_err(invalid)?;
        let outputs = typed
            .output_outlets()
            .map_err(invalid)?
            .iter()
            .map(|outlet| {
                let fact = typed.outlet_fact(*outlet)?;
                let name = typed
                    .outlet_label(*outlet)
                    .map_or_else(|| typed.node(outlet.node).name.clone(), str::to_string);
                let map_keys = maps
                    .iter()
                    .find(|(output, _)| *output == name)
                    .map(|(_, keys)| keys.clone());
                Ok(TensorSpec {
                    name,
                    element: element_of(fact.datum_type)
                        .ok_or_else(|| format_err!("output type {:?}", fact.datum_type))?,
                    shape: fact.shape.iter().map(|d| d.to_usize().ok()).collect(),
                    map_keys,
                })
            })
            .collect::<TractResult<Vec<_>>>()
            .map_err(invalid)?;
        let plan = typed.into_runnable().map_err(invalid)?;
        Ok(OnnxModel {
            plan,
            inputs,
            outputs,
        })
    }

    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    /// Runs the model on one tensor per input, in input order.
    pub fn run(&self, inputs: TVec<TValue>) -> Result<TVec<TValue>, ModelError> {
        let failed = |e: TractError| ModelError::Scoring(format!("{e:#}"));
        let outputs = self.plan.run(inputs).map_err(failed)?;
        // tract keeps integer tensors that might be shapes as symbolic dimensions.
        outputs
            .into_iter()
            .map(|output| {
                if output.datum_type() == DatumType::TDim {
                    Ok(output
                        .cast_to::<i64>()
                        .map_err(failed)?
                        .into_owned()
                        .into_tvalue())
                } else {
                    Ok(output)
                }
            })
            .collect()
    }
}

/// One row of zeros (empty strings) for an input, free dimensions taken as 1.
pub(crate) fn zeros(input: &TensorSpec) -> Result<TValue, ModelError> {
    let shape: Vec<usize> = input.shape.iter().map(|d| d.unwrap_or(1)).collect();
    let tensor = if input.element == ElementType::String {
        let count = shape.iter().product();
        tract_onnx::tract_hir::tract_ndarray::ArrayD::from_shape_vec(
            shape,
            vec![String::new(); count],
        )
        .map(IntoTensor::into_tensor)
        .map_err(invalid)?
    } else {
        Tensor::zero_dt(input.element.datum_type(), &shape).map_err(invalid)?
    };
    Ok(tensor.into_tvalue())
}

fn element_of(datum: DatumType) -> Option<ElementType> {
    Some(match datum {
        DatumType::F32 => ElementType::F32,
        DatumType::F64 => ElementType::F64,
        DatumType::I32 => ElementType::I32,
        DatumType::I64 | DatumType::TDim => ElementType::I64,
        DatumType::Bool => ElementType::Bool,
        DatumType::String => ElementType::String,
        _ => return None,
    })
}

/// Translates the graph; an operator tarn registers may still refuse its attributes here.
fn load(framework: &tract_onnx::Onnx, proto: &ModelProto) -> Result<InferenceModel, ModelError> {
    framework.model_for_proto_model(proto).map_err(invalid)
}

/// The inputs a caller feeds: graph inputs that no initializer provides.
fn graph_inputs(graph: &GraphProto) -> Result<Vec<TensorSpec>, ModelError> {
    let initialized: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    graph
        .input
        .iter()
        .filter(|input| !initialized.contains(input.name.as_str()))
        .map(|input| {
            let Some(TypeValue::TensorType(tensor)) =
                input.r#type.as_ref().and_then(|t| t.value.as_ref())
            else {
                return Err(invalid(format!("input {:?} is not a tensor", input.name)));
            };
            let element = ElementType::from_onnx(tensor.elem_type).ok_or_else(|| {
                invalid(format!(
                    "input {:?} has element type {}, which tarn cannot feed",
                    input.name, tensor.elem_type
                ))
            })?;
            let shape = tensor
                .shape
                .as_ref()
                .map(|shape| {
                    shape
                        .dim
                        .iter()
                        .map(|d| match d.value {
                            Some(Dimension::DimValue(v)) if v > 0 => usize::try_from(v).ok(),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_else(|| vec![None, None]);
            Ok(TensorSpec {
                name: input.name.clone(),
                element,
                shape,
                map_keys: None,
            })
        })
        .collect()
}

/// ONNX's EXTERNAL data location: the tensor's bytes are in another file.
const EXTERNAL: i32 = 1;

/// Reads the weights kept in files beside the model into the tensors, so that tract needs no
/// directory. Each file is named relative to the model and must stay inside its directory.
fn inline_external_data(
    graph: &mut GraphProto,
    read_file: &mut dyn FnMut(&str) -> Result<Vec<u8>, ModelError>,
) -> Result<(), ModelError> {
    let mut files: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
    for tensor in &mut graph.initializer {
        if tensor.data_location != Some(EXTERNAL) {
            continue;
        }
        let entry = |key: &str| {
            tensor
                .external_data
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.value.clone())
        };
        let location = entry("location").ok_or_else(|| {
            invalid(format!(
                "tensor {:?} is external but names no file",
                tensor.name
            ))
        })?;
        let number = |key: &str| -> Result<Option<usize>, ModelError> {
            entry(key)
                .map(|v| {
                    v.parse::<usize>()
                        .map_err(|_| invalid(format!("tensor {:?}: bad {key} {v:?}", tensor.name)))
                })
                .transpose()
        };
        let (offset, length) = (number("offset")?.unwrap_or(0), number("length")?);
        crate::error::safe_relative_path(&location)?;
        if !files.contains_key(&location) {
            let bytes = read_file(&location)?;
            files.insert(location.clone(), bytes);
        }
        let file = &files[&location];
        let end = length
            .map_or(Some(file.len()), |l| offset.checked_add(l))
            .filter(|end| *end <= file.len() && offset <= *end)
            .ok_or_else(|| {
                invalid(format!(
                    "tensor {:?} reaches past the end of {location:?}",
                    tensor.name
                ))
            })?;
        tensor.raw_data = file[offset..end].to_vec();
        tensor.external_data.clear();
        tensor.data_location = None;
    }
    Ok(())
}

/// Removes each ZipMap node, renaming the tensor it reads to the name of its output: the
/// probabilities are then a tensor under the name the exporter gave the maps. Returns each such
/// output with the map's keys, which the answer uses again.
fn drop_zipmaps(graph: &mut GraphProto) -> Vec<(String, Vec<String>)> {
    let mut maps = Vec::new();
    while let Some(at) = graph.node.iter().position(|n| n.op_type == "ZipMap") {
        let zipmap = graph.node.remove(at);
        let (Some(from), Some(to)) = (zipmap.input.first(), zipmap.output.first()) else {
            continue;
        };
        let keys = zipmap.attribute.iter().find_map(|a| match a.name.as_str() {
            "classlabels_int64s" => Some(a.ints.iter().map(i64::to_string).collect::<Vec<_>>()),
            "classlabels_strings" => Some(
                a.strings
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            _ => None,
        });
        if let Some(keys) = keys {
            maps.push((to.clone(), keys));
        }
        for node in &mut graph.node {
            for name in node.input.iter_mut().chain(node.output.iter_mut()) {
                if name == from {
                    name.clone_from(to);
                }
            }
        }
        // A graph output that was the probabilities themselves is now the renamed one.
        graph.output.retain(|output| &output.name != from);
        for output in &mut graph.output {
            if &output.name == to {
                output.r#type = None;
            }
        }
    }
    maps
}

/// Keeps only the nodes the graph outputs depend on (nodes come in topological order).
fn prune(graph: &mut GraphProto) {
    let mut needed: HashSet<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let mut keep = vec![false; graph.node.len()];
    for (i, node) in graph.node.iter().enumerate().rev() {
        if node.output.iter().any(|o| needed.contains(o)) {
            keep[i] = true;
            needed.extend(node.input.iter().filter(|name| !name.is_empty()).cloned());
        }
    }
    let mut flags = keep.into_iter();
    graph.node.retain(|_| flags.next().unwrap_or(false));
}
