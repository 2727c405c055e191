//! The scoring request and response formats of MLflow's scoring server (and Databricks'
//! serving endpoints): `dataframe_split`, `dataframe_records`, `instances` and `inputs`, plus
//! `params`; `{"predictions": ...}` back. A request is checked against the model's signature and
//! turned into the model's input tensors before it reaches a scoring thread.

use std::ops::Range;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::tract_ndarray::{ArrayD, IxDyn};

use crate::error::ModelError;
use crate::mlmodel::{ColumnSpec, ColumnType, Schema};
use crate::model::Model;
use crate::onnx::{ElementType, TensorSpec};

const INPUT_FIELDS: [&str; 4] = [
    "dataframe_split",
    "dataframe_records",
    "instances",
    "inputs",
];
/// Fields a request may carry beside its input (`return_features`: tarn's, for models that
/// look up features).
const OTHER_FIELDS: [&str; 4] = [
    "params",
    "client_request_id",
    "usage_context",
    "return_features",
];

/// A parsed scoring request.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub input: Input,
    pub params: Map<String, Value>,
    pub client_request_id: Option<String>,
    /// Answer the features looked up for each row beside the predictions.
    pub return_features: bool,
}

/// Rows with named columns, or tensors.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Frame(Frame),
    Tensors(Vec<NamedTensor>),
}

/// A table of JSON cells, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// A tensor given as nested JSON lists, flattened, with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: Option<String>,
    pub shape: Vec<usize>,
    pub values: Vec<Value>,
}

fn bad(message: impl Into<String>) -> ModelError {
    ModelError::BadInput(message.into())
}

impl Invocation {
    pub fn parse(body: &[u8]) -> Result<Invocation, ModelError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| bad(format!("the request body is not valid JSON: {e}")))?;
        let Value::Object(mut fields) = value else {
            return Err(bad("the request body must be a JSON object"));
        };
        let inputs: Vec<&str> = fields
            .keys()
            .map(String::as_str)
            .filter(|k| !OTHER_FIELDS.contains(k))
            .collect();
        if inputs.len() != 1 || !INPUT_FIELDS.contains(&inputs[0]) {
            return Err(bad(format!(
                "the request must hold exactly one of the input fields {}; it holds {:?}",
                INPUT_FIELDS.join(", "),
                inputs
            )));
        }
        let field = inputs[0].to_string();
        let body = fields.remove(&field).unwrap_or(Value::Null);
        let input = match field.as_str() {
            "dataframe_split" => Input::Frame(split_frame(body)?),
            "dataframe_records" => Input::Frame(records_frame(body, "dataframe_records")?),
            "instances" => instances(body)?,
            _ => inputs_field(body)?,
        };
        let params = match fields.remove("params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(params)) => params,
            Some(_) => return Err(bad("params must be a JSON object")),
        };
        let client_request_id = match fields.remove("client_request_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(id),
            Some(_) => return Err(bad("client_request_id must be a string")),
        };
        let return_features = match fields.remove("return_features") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(flag)) => flag,
            Some(_) => return Err(bad("return_features must be true or false")),
        };
        Ok(Invocation {
            input,
            params,
            client_request_id,
            return_features,
        })
    }

    /// How many rows the request scores.
    pub fn rows(&self) -> usize {
        match &self.input {
            Input::Frame(frame) => frame.rows.len(),
            Input::Tensors(tensors) => tensors
                .first()
                .map_or(0, |t| t.shape.first().copied().unwrap_or(1)),
        }
    }
}

fn split_frame(body: Value) -> Result<Frame, ModelError> {
    let Value::Object(mut split) = body else {
        return Err(bad(
            "dataframe_split must be an object with columns and data",
        ));
    };
    let Some(Value::Array(data)) = split.remove("data") else {
        return Err(bad("dataframe_split needs data, a list of rows"));
    };
    let rows = data
        .into_iter()
        .map(|row| match row {
            Value::Array(cells) => Ok(cells),
            scalar => Ok(vec![scalar]),
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let columns = match split.remove("columns") {
        Some(Value::Array(columns)) => columns
            .into_iter()
            .map(|c| match c {
                Value::String(name) => Ok(name),
                other => Ok(other.to_string()),
            })
            .collect::<Result<Vec<_>, ModelError>>()?,
        None => (0..rows.first().map_or(0, Vec::len))
            .map(|i| i.to_string())
            .collect(),
        Some(_) => return Err(bad("dataframe_split columns must be a list of names")),
    };
    if let Some((i, row)) = rows
        .iter()
        .enumerate()
        .find(|(_, row)| row.len() != columns.len())
    {
        return Err(bad(format!(
            "dataframe_split row {i} has {} values for {} columns",
            row.len(),
            columns.len()
        )));
    }
    Ok(Frame { columns, rows })
}

fn records_frame(body: Value, field: &str) -> Result<Frame, ModelError> {
    let Value::Array(records) = body else {
        return Err(bad(format!("{field} must be a list of records")));
    };
    let mut columns: Vec<String> = Vec::new();
    let mut objects = Vec::with_capacity(records.len());
    for record in records {
        let Value::Object(record) = record else {
            return Err(bad(format!(
                "each of {field} must be an object of column values"
            )));
        };
        for key in record.keys() {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
        objects.push(record);
    }
    let rows = objects
        .into_iter()
        .map(|mut record| {
            columns
                .iter()
                .map(|c| record.remove(c).unwrap_or(Value::Null))
                .collect()
        })
        .collect();
    Ok(Frame { columns, rows })
}

/// `instances`: a list of records (a frame) or a list of rows (one tensor).
fn instances(body: Value) -> Result<Input, ModelError> {
    match &body {
        Value::Array(items) if items.first().is_some_and(Value::is_object) => {
            let frame = records_frame(body, "instances")?;
            if frame.rows.iter().flatten().any(Value::is_array) {
                return frame_to_tensors(frame);
            }
            Ok(Input::Frame(frame))
        }
        Value::Array(_) => Ok(Input::Tensors(vec![tensor(None, body)?])),
        _ => Err(bad("instances must be a list")),
    }
}

/// Records whose values are lists: one tensor per key, stacked over the records.
fn frame_to_tensors(frame: Frame) -> Result<Input, ModelError> {
    let mut tensors = Vec::with_capacity(frame.columns.len());
    for (i, name) in frame.columns.iter().enumerate() {
        let column = Value::Array(frame.rows.iter().map(|row| row[i].clone()).collect());
        tensors.push(tensor(Some(name.clone()), column)?);
    }
    Ok(Input::Tensors(tensors))
}

/// `inputs`: a list (one tensor) or an object of named tensors.
fn inputs_field(body: Value) -> Result<Input, ModelError> {
    match body {
        Value::Object(named) => Ok(Input::Tensors(
            named
                .into_iter()
                .map(|(name, value)| tensor(Some(name), value))
                .collect::<Result<_, _>>()?,
        )),
        Value::Array(_) => Ok(Input::Tensors(vec![tensor(None, body)?])),
        _ => Err(bad("inputs must be a list or an object of named lists")),
    }
}

/// Flattens nested lists, refusing ragged ones.
fn tensor(name: Option<String>, value: Value) -> Result<NamedTensor, ModelError> {
    let mut shape = Vec::new();
    let mut probe = &value;
    while let Value::Array(items) = probe {
        shape.push(items.len());
        match items.first() {
            Some(first) => probe = first,
            None => break,
        }
    }
    // Grown as the values are read, not sized from the shape the first items claim: a small
    // ragged request can claim a shape of billions (or overflow the product).
    let mut values = Vec::new();
    flatten(value, &shape, &mut values).map_err(|_| {
        bad(format!(
            "the tensor{} is ragged: every list at one depth must have the same length",
            name.as_deref().map(|n| format!(" {n}")).unwrap_or_default()
        ))
    })?;
    Ok(NamedTensor {
        name,
        shape,
        values,
    })
}

fn flatten(value: Value, shape: &[usize], out: &mut Vec<Value>) -> Result<(), ()> {
    match (value, shape.split_first()) {
        (Value::Array(items), Some((len, rest))) if items.len() == *len => items
            .into_iter()
            .try_for_each(|item| flatten(item, rest, out)),
        (Value::Array(_), _) => Err(()),
        (scalar, None) => {
            out.push(scalar);
            Ok(())
        }
        (_, Some(_)) => Err(()),
    }
}

/// A request turned into model inputs: one tensor per ONNX input, first axis the rows.
#[derive(Debug)]
pub struct Prepared {
    pub feeds: TVec<Tensor>,
    pub rows: usize,
    /// Frames are answered as records, tensors as a dict of outputs (as MLflow does).
    pub records: bool,
}

impl Model {
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
        Predictions {
            names: self.onnx.outputs(),
            outputs: &outputs,
            range: 0..prepared.rows,
            records: prepared.records,
        }
        .to_json()
    }

    /// Checks a request against the signature and the ONNX inputs and builds the input tensors.
    pub fn prepare(
        &self,
        invocation: &Invocation,
        max_rows: usize,
    ) -> Result<Prepared, ModelError> {
        let rows = invocation.rows();
        if rows == 0 {
            return Err(bad("the request holds no rows"));
        }
        if rows > max_rows {
            return Err(bad(format!(
                "the request holds {rows} rows; at most {max_rows} are scored per request"
            )));
        }
        let inputs = self.onnx.inputs();
        let columns = match &self.mlmodel.signature {
            Some(signature) => match &signature.inputs {
                Schema::Columns(columns) => Some(columns.as_slice()),
                Schema::Tensors(_) => None,
            },
            None => None,
        };
        match &invocation.input {
            Input::Frame(frame) => {
                let feeds = frame_feeds(frame, columns, inputs)?;
                Ok(Prepared {
                    feeds,
                    rows,
                    records: true,
                })
            }
            Input::Tensors(tensors) => {
                let feeds = tensor_feeds(tensors, inputs)?;
                Ok(Prepared {
                    feeds,
                    rows,
                    records: false,
                })
            }
        }
    }
}

/// Orders a frame's columns by the signature (checking presence and types) and feeds them to
/// the ONNX inputs: all columns into a single input, or one column per named input.
fn frame_feeds(
    frame: &Frame,
    signature: Option<&[ColumnSpec]>,
    inputs: &[TensorSpec],
) -> Result<TVec<Tensor>, ModelError> {
    let position = |name: &str| frame.columns.iter().position(|c| c == name);
    // (column index in the frame or None when an optional column is absent, expected type)
    let chosen: Vec<(String, Option<usize>, Option<ColumnType>)> = match signature {
        Some(specs) => {
            let missing: Vec<&str> = specs
                .iter()
                .filter(|s| s.required && position(&s.name).is_none())
                .map(|s| s.name.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(bad(format!("Model is missing inputs {missing:?}.")));
            }
            specs
                .iter()
                .map(|s| (s.name.clone(), position(&s.name), Some(s.column_type)))
                .collect()
        }
        None => frame
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), Some(i), None))
            .collect(),
    };
    for (name, at, expected) in &chosen {
        if let (Some(at), Some(expected)) = (at, expected) {
            check_column(name, *expected, frame.rows.iter().map(|row| &row[*at]))?;
        }
    }
    let rows = frame.rows.len();
    if let [input] = inputs {
        let width = input.row_width();
        if width.is_some_and(|w| w != chosen.len()) && input.shape.len() >= 2 {
            return Err(bad(format!(
                "the model takes {} values per row in input {}; the request gives {} columns",
                width.unwrap_or_default(),
                input.name,
                chosen.len()
            )));
        }
        let cells = frame.rows.iter().flat_map(|row| {
            chosen
                .iter()
                .map(move |(_, at, _)| at.map_or(&Value::Null, |at| &row[at]))
        });
        let shape = if input.shape.len() >= 2 {
            vec![rows, chosen.len()]
        } else {
            vec![rows]
        };
        if input.shape.len() < 2 && chosen.len() != 1 {
            return Err(bad(format!(
                "the model takes one value per row; the request gives {} columns",
                chosen.len()
            )));
        }
        return Ok(tvec![build(input, &shape, cells, &|i| chosen
            [i % chosen.len()]
        .0
        .clone())?]);
    }
    inputs
        .iter()
        .map(|input| {
            let at = chosen
                .iter()
                .find(|(name, _, _)| *name == input.name)
                .and_then(|(_, at, _)| *at)
                .ok_or_else(|| bad(format!("Model is missing inputs [{:?}].", input.name)))?;
            let shape = if input.shape.len() >= 2 {
                vec![rows, 1]
            } else {
                vec![rows]
            };
            build(
                input,
                &shape,
                frame.rows.iter().map(|row| &row[at]),
                &|_| input.name.clone(),
            )
        })
        .collect()
}

fn check_column<'a>(
    name: &str,
    expected: ColumnType,
    cells: impl Iterator<Item = &'a Value>,
) -> Result<(), ModelError> {
    for cell in cells {
        let fits = match cell {
            Value::Null => true,
            Value::Number(n) => match expected {
                ColumnType::Double | ColumnType::Float => true,
                ColumnType::Long | ColumnType::Integer => n.is_i64() || n.is_u64(),
                _ => false,
            },
            Value::Bool(_) => expected == ColumnType::Boolean,
            Value::String(_) => {
                matches!(
                    expected,
                    ColumnType::String | ColumnType::Binary | ColumnType::Datetime
                )
            }
            _ => false,
        };
        if !fits {
            return Err(bad(format!(
                "Incompatible input types for column {name}: the signature says {}, the request gives {cell}",
                expected.name()
            )));
        }
    }
    Ok(())
}

fn tensor_feeds(
    tensors: &[NamedTensor],
    inputs: &[TensorSpec],
) -> Result<TVec<Tensor>, ModelError> {
    let rows = tensors
        .first()
        .and_then(|t| t.shape.first())
        .copied()
        .unwrap_or(0);
    if let Some(t) = tensors.iter().find(|t| t.shape.first() != Some(&rows)) {
        return Err(bad(format!(
            "tensor {} has {} rows where the others have {rows}",
            t.name.as_deref().unwrap_or("input"),
            t.shape.first().copied().unwrap_or(0)
        )));
    }
    inputs
        .iter()
        .map(|input| {
            let given = match tensors {
                [single]
                    if inputs.len() == 1
                        && single.name.as_ref().is_none_or(|n| *n == input.name) =>
                {
                    single
                }
                _ => tensors
                    .iter()
                    .find(|t| t.name.as_deref() == Some(input.name.as_str()))
                    .ok_or_else(|| bad(format!("Model is missing inputs [{:?}].", input.name)))?,
            };
            let mut shape = given.shape.clone();
            // A list of rows of one value each fits an input of shape [N, 1].
            if shape.len() + 1 == input.shape.len() && input.shape.last() == Some(&Some(1)) {
                shape.push(1);
            }
            let fits = shape.len() == input.shape.len()
                && shape
                    .iter()
                    .zip(&input.shape)
                    .skip(1)
                    .all(|(given, want)| want.is_none_or(|w| w == *given));
            if !fits {
                let want: Vec<String> = input
                    .shape
                    .iter()
                    .map(|d| d.map_or("-1".to_string(), |d| d.to_string()))
                    .collect();
                return Err(bad(format!(
                    "input {} has shape {shape:?}; the model takes [{}]",
                    input.name,
                    want.join(", ")
                )));
            }
            build(input, &shape, given.values.iter(), &|_| input.name.clone())
        })
        .collect()
}

/// Builds one input tensor of the model's element type from JSON cells.
fn build<'a>(
    input: &TensorSpec,
    shape: &[usize],
    cells: impl Iterator<Item = &'a Value>,
    column_of: &dyn Fn(usize) -> String,
) -> Result<Tensor, ModelError> {
    let wrong = |i: usize, cell: &Value| {
        bad(format!(
            "Incompatible input types for column {}: the model takes {}, the request gives {cell}",
            column_of(i),
            input.element.name()
        ))
    };
    let dims = IxDyn(shape);
    let tensor = match input.element {
        ElementType::F32 | ElementType::F64 => {
            let values = cells
                .enumerate()
                .map(|(i, cell)| match cell {
                    Value::Number(n) => n.as_f64().ok_or_else(|| wrong(i, cell)),
                    Value::Null => Ok(f64::NAN),
                    Value::Bool(b) => Ok(f64::from(u8::from(*b))),
                    _ => Err(wrong(i, cell)),
                })
                .collect::<Result<Vec<f64>, _>>()?;
            if input.element == ElementType::F32 {
                let values: Vec<f32> = values.into_iter().map(|v| v as f32).collect();
                ArrayD::from_shape_vec(dims, values).map(IntoTensor::into_tensor)
            } else {
                ArrayD::from_shape_vec(dims, values).map(IntoTensor::into_tensor)
            }
        }
        ElementType::I64 | ElementType::I32 => {
            let values = cells
                .enumerate()
                .map(|(i, cell)| match cell {
                    Value::Number(n) => n.as_i64().ok_or_else(|| wrong(i, cell)),
                    Value::Bool(b) => Ok(i64::from(*b)),
                    _ => Err(wrong(i, cell)),
                })
                .collect::<Result<Vec<i64>, _>>()?;
            if input.element == ElementType::I32 {
                let values = values
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| {
                        i32::try_from(v).map_err(|_| {
                            bad(format!(
                                "{v} does not fit the int32 input of column {}",
                                column_of(i)
                            ))
                        })
                    })
                    .collect::<Result<Vec<i32>, _>>()?;
                ArrayD::from_shape_vec(dims, values).map(IntoTensor::into_tensor)
            } else {
                ArrayD::from_shape_vec(dims, values).map(IntoTensor::into_tensor)
            }
        }
        ElementType::Bool => {
            let values = cells
                .enumerate()
                .map(|(i, cell)| cell.as_bool().ok_or_else(|| wrong(i, cell)))
                .collect::<Result<Vec<bool>, _>>()?;
            ArrayD::from_shape_vec(dims, values).map(IntoTensor::into_tensor)
        }
        ElementType::String => {
            let values = cells
                .enumerate()
                .map(|(i, cell)| match cell {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(wrong(i, cell)),
                })
                .collect::<Result<Vec<String>, _>>()?;
            ArrayD::from_shape_vec(dims, values).map(IntoTensor::into_tensor)
        }
    };
    tensor.map_err(|e| bad(format!("input {}: {e}", input.name)))
}

/// The `{"predictions": ...}` body for rows `range` of the outputs of a (possibly batched) run.
pub struct Predictions<'a> {
    pub names: &'a [TensorSpec],
    pub outputs: &'a [TValue],
    pub range: Range<usize>,
    pub records: bool,
}

impl Predictions<'_> {
    pub fn to_json(&self) -> Result<Vec<u8>, ModelError> {
        serde_json::to_vec(self).map_err(|e| ModelError::Scoring(e.to_string()))
    }
}

impl Serialize for Predictions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut body = serializer.serialize_map(Some(1))?;
        if self.records {
            body.serialize_entry("predictions", &Records(self))?;
        } else {
            body.serialize_entry("predictions", &Columns(self))?;
        }
        body.end()
    }
}

struct Records<'p, 'a>(&'p Predictions<'a>);
struct Columns<'p, 'a>(&'p Predictions<'a>);
struct Record<'p, 'a>(&'p Predictions<'a>, usize);
/// One output's values for a range of rows (`scalars` when each row holds one value).
struct OutputRows<'a> {
    tensor: &'a Tensor,
    rows: Range<usize>,
    scalars: bool,
    /// Answer each row as a map from these keys to the row's values (a dropped ZipMap's).
    keys: Option<&'a [String]>,
}
/// One value, or the nested lists of a row of a multi-dimensional output.
struct Cell<'a> {
    tensor: &'a Tensor,
    start: usize,
    shape: &'a [usize],
}

impl Serialize for Records<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut rows = serializer.serialize_seq(Some(self.0.range.len()))?;
        for row in self.0.range.clone() {
            rows.serialize_element(&Record(self.0, row))?;
        }
        rows.end()
    }
}

impl Serialize for Record<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut record = serializer.serialize_map(Some(self.0.outputs.len()))?;
        for (spec, tensor) in self.0.names.iter().zip(self.0.outputs) {
            let rows = OutputRows {
                tensor,
                rows: self.1..self.1 + 1,
                scalars: true,
                keys: spec.map_keys.as_deref(),
            };
            record.serialize_entry(&spec.name, &RowCell(&rows, self.1))?;
        }
        record.end()
    }
}

/// The value of one row: a scalar when the row holds one value, else nested lists.
struct RowCell<'r, 'a>(&'r OutputRows<'a>, usize);

impl Serialize for RowCell<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let tensor = self.0.tensor;
        let inner = tensor.shape().get(1..).unwrap_or(&[]);
        let width: usize = inner.iter().product();
        if let Some(keys) = self.0.keys.filter(|keys| keys.len() == width) {
            let mut map = serializer.serialize_map(Some(width))?;
            for (i, key) in keys.iter().enumerate() {
                map.serialize_entry(
                    key,
                    &Cell {
                        tensor,
                        start: self.1 * width + i,
                        shape: &[],
                    },
                )?;
            }
            return map.end();
        }
        if width == 1 && self.0.scalars {
            Cell {
                tensor,
                start: self.1 * width,
                shape: &[],
            }
            .serialize(serializer)
        } else {
            Cell {
                tensor,
                start: self.1 * width,
                shape: inner,
            }
            .serialize(serializer)
        }
    }
}

impl Serialize for Columns<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut columns = serializer.serialize_map(Some(self.0.outputs.len()))?;
        for (spec, tensor) in self.0.names.iter().zip(self.0.outputs) {
            let rows = OutputRows {
                tensor,
                rows: self.0.range.clone(),
                scalars: false,
                keys: spec.map_keys.as_deref(),
            };
            columns.serialize_entry(&spec.name, &rows)?;
        }
        columns.end()
    }
}

impl Serialize for OutputRows<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut rows = serializer.serialize_seq(Some(self.rows.len()))?;
        for row in self.rows.clone() {
            rows.serialize_element(&RowCell(self, row))?;
        }
        rows.end()
    }
}

impl Serialize for Cell<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Some((len, rest)) = self.shape.split_first() {
            let stride: usize = rest.iter().product();
            let mut list = serializer.serialize_seq(Some(*len))?;
            for i in 0..*len {
                list.serialize_element(&Cell {
                    tensor: self.tensor,
                    start: self.start + i * stride,
                    shape: rest,
                })?;
            }
            return list.end();
        }
        let error = |e: TractError| serde::ser::Error::custom(format!("{e:#}"));
        let at = self.start;
        let view = self.tensor.try_as_plain_ram().map_err(error)?;
        match self.tensor.datum_type() {
            DatumType::F32 => {
                serialize_float(view.as_slice::<f32>().map_err(error)?[at], serializer)
            }
            DatumType::F64 => {
                let v = view.as_slice::<f64>().map_err(error)?[at];
                if v.is_finite() {
                    serializer.serialize_f64(v)
                } else {
                    serializer.serialize_none()
                }
            }
            DatumType::I64 => serializer.serialize_i64(view.as_slice::<i64>().map_err(error)?[at]),
            DatumType::I32 => serializer.serialize_i32(view.as_slice::<i32>().map_err(error)?[at]),
            DatumType::Bool => {
                serializer.serialize_bool(view.as_slice::<bool>().map_err(error)?[at])
            }
            DatumType::String => {
                serializer.serialize_str(&view.as_slice::<String>().map_err(error)?[at])
            }
            other => Err(serde::ser::Error::custom(format!(
                "cannot answer a {other:?} output"
            ))),
        }
    }
}

/// f32 in its shortest form (0.8, not 0.800000011920929); NaN and infinities as null.
fn serialize_float<S: Serializer>(value: f32, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_finite() {
        serializer.serialize_f32(value)
    } else {
        serializer.serialize_none()
    }
}
