//! Scoring Arrow record batches, for batch and streaming scoring: the model's input columns
//! (named by its signature) become its input tensors without passing through JSON, and each
//! output comes back as an Arrow column.

use std::sync::Arc;

use arrow_array::builder::{Float32Builder, ListBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow_schema::DataType;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::tract_ndarray::ArrayD;

use crate::error::ModelError;
use crate::mlmodel::Schema;
use crate::model::Model;
use crate::onnx::{ElementType, TensorSpec};

fn bad(message: impl Into<String>) -> ModelError {
    ModelError::BadInput(message.into())
}

impl Model {
    /// The columns the model reads, in the order it reads them: the signature's, else `None`
    /// (every column of the input, in its order).
    pub fn input_columns(&self) -> Option<Vec<String>> {
        match self.mlmodel.signature.as_ref().map(|s| &s.inputs) {
            Some(Schema::Columns(columns)) => {
                Some(columns.iter().map(|c| c.name.clone()).collect())
            }
            _ => None,
        }
    }

    /// Scores every row of `batch`; returns one column per model output, named as the output.
    pub fn score_batch(&self, batch: &RecordBatch) -> Result<Vec<(String, ArrayRef)>, ModelError> {
        let names = self.input_columns().unwrap_or_else(|| {
            batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        });
        let columns = names
            .iter()
            .map(|name| {
                batch
                    .column_by_name(name)
                    .cloned()
                    .ok_or_else(|| bad(format!("the input has no column {name}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rows = batch.num_rows();
        let inputs = self.onnx.inputs();
        let feeds: TVec<TValue> = match inputs {
            [input] => tvec![matrix(input, &columns, &names, rows)?.into_tvalue()],
            _ => inputs
                .iter()
                .map(|input| {
                    let at = names
                        .iter()
                        .position(|n| *n == input.name)
                        .ok_or_else(|| bad(format!("the input has no column {}", input.name)))?;
                    matrix(input, &columns[at..=at], &names[at..=at], rows)
                        .map(IntoTValue::into_tvalue)
                })
                .collect::<Result<_, _>>()?,
        };
        let outputs = self.onnx.run(feeds)?;
        self.onnx
            .outputs()
            .iter()
            .zip(outputs.iter())
            .map(|(spec, tensor)| Ok((spec.name.clone(), to_arrow(tensor)?)))
            .collect()
    }
}

/// Columns as one input tensor, row-major: [rows, columns] (or [rows] for a rank-1 input).
fn matrix(
    input: &TensorSpec,
    columns: &[ArrayRef],
    names: &[String],
    rows: usize,
) -> Result<Tensor, ModelError> {
    let width = columns.len();
    if let Some(wanted) = input
        .row_width()
        .filter(|w| *w != width && input.shape.len() >= 2)
    {
        return Err(bad(format!(
            "the model takes {wanted} values per row in input {}; {width} columns were given",
            input.name
        )));
    }
    let shape: Vec<usize> = if input.shape.len() >= 2 {
        vec![rows, width]
    } else {
        vec![rows]
    };
    match input.element {
        ElementType::F32 | ElementType::F64 => {
            let mut values = vec![0f64; rows * width];
            for (c, column) in columns.iter().enumerate() {
                let floats = as_f64(column, &names[c])?;
                for (r, value) in floats.iter().enumerate() {
                    values[r * width + c] = value.unwrap_or(f64::NAN);
                }
            }
            let tensor = if input.element == ElementType::F32 {
                let values: Vec<f32> = values.into_iter().map(|v| v as f32).collect();
                ArrayD::from_shape_vec(shape, values).map(IntoTensor::into_tensor)
            } else {
                ArrayD::from_shape_vec(shape, values).map(IntoTensor::into_tensor)
            };
            tensor.map_err(|e| bad(format!("input {}: {e}", input.name)))
        }
        ElementType::I64 => {
            let mut values = vec![0i64; rows * width];
            for (c, column) in columns.iter().enumerate() {
                let ints = column.as_primitive_opt::<Int64Type>().ok_or_else(|| {
                    bad(format!(
                        "column {} must be bigint for input {}",
                        names[c], input.name
                    ))
                })?;
                if ints.null_count() > 0 {
                    return Err(bad(format!(
                        "column {} has nulls; input {} takes integers",
                        names[c], input.name
                    )));
                }
                for (r, value) in ints.values().iter().enumerate() {
                    values[r * width + c] = *value;
                }
            }
            ArrayD::from_shape_vec(shape, values)
                .map(IntoTensor::into_tensor)
                .map_err(|e| bad(e.to_string()))
        }
        other => Err(bad(format!(
            "input {} takes {}, which batch scoring does not feed yet",
            input.name,
            other.name()
        ))),
    }
}

/// A numeric column as optional f64 values.
fn as_f64(column: &ArrayRef, name: &str) -> Result<Vec<Option<f64>>, ModelError> {
    let values = match column.data_type() {
        DataType::Float64 => column.as_primitive::<Float64Type>().iter().collect(),
        DataType::Float32 => column
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| v.map(f64::from))
            .collect(),
        DataType::Int64 => column
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.map(|v| v as f64))
            .collect(),
        DataType::Int32 => column
            .as_primitive::<Int32Type>()
            .iter()
            .map(|v| v.map(f64::from))
            .collect(),
        DataType::Boolean => column
            .as_boolean()
            .iter()
            .map(|v| v.map(|b| f64::from(u8::from(b))))
            .collect(),
        other => return Err(bad(format!("column {name} is {other}, not a number"))),
    };
    Ok(values)
}

/// An output tensor as an Arrow column: one value per row, or a list per row.
fn to_arrow(tensor: &Tensor) -> Result<ArrayRef, ModelError> {
    let fail = |e: TractError| ModelError::Scoring(format!("{e:#}"));
    let shape = tensor.shape();
    let rows = shape.first().copied().unwrap_or(1);
    let width: usize = shape.iter().skip(1).product();
    let view = tensor.try_as_plain_ram().map_err(fail)?;
    let array: ArrayRef = match (tensor.datum_type(), width) {
        (DatumType::F32, 1) => Arc::new(Float32Array::from(
            view.as_slice::<f32>().map_err(fail)?.to_vec(),
        )),
        (DatumType::F32, _) => {
            let values = view.as_slice::<f32>().map_err(fail)?;
            let mut lists =
                ListBuilder::with_capacity(Float32Builder::with_capacity(values.len()), rows);
            for row in values.chunks(width.max(1)) {
                lists.values().append_slice(row);
                lists.append(true);
            }
            Arc::new(lists.finish())
        }
        (DatumType::F64, 1) => Arc::new(Float64Array::from(
            view.as_slice::<f64>().map_err(fail)?.to_vec(),
        )),
        (DatumType::I64, 1) => Arc::new(Int64Array::from(
            view.as_slice::<i64>().map_err(fail)?.to_vec(),
        )),
        (DatumType::I32, 1) => Arc::new(Int32Array::from(
            view.as_slice::<i32>().map_err(fail)?.to_vec(),
        )),
        (DatumType::Bool, 1) => Arc::new(BooleanArray::from(
            view.as_slice::<bool>().map_err(fail)?.to_vec(),
        )),
        (DatumType::String, 1) => Arc::new(StringArray::from(
            view.as_slice::<String>().map_err(fail)?.to_vec(),
        )),
        (other, width) => {
            return Err(ModelError::Scoring(format!(
                "cannot write an output of {other:?} with {width} values per row"
            )));
        }
    };
    Ok(array)
}
