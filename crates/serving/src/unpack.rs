//! Serving logs made monitorable. An endpoint's payload table holds one row per request, its
//! JSON as sent and as answered; the unpacker turns it into `<prefix>_predictions`, one row per
//! scored row: the request's fields as columns, the prediction, the positive class's
//! probability, the model that answered, the time and the request id. One server at a time
//! (the holder of the `inference-unpacker` lease) does it, continuously, as the endpoint's
//! creator: it reads only the payload commits it has not read (the payload table's change feed)
//! and records how far it read in the same Delta commit as the rows it wrote, so a crash neither
//! loses a row nor writes one twice.
//!
//! When the endpoint names a label table, labels join in on its join columns: rows whose labels
//! came first get them as they are written, and labels that come later update the rows they
//! match (read from the label table's change feed when it keeps one, else the whole table
//! again). The predictions table keeps its own change feed, so a monitor's incremental refresh
//! recomputes the windows that labels changed.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use tarn_core::caller::Caller;
use tarn_core::catalog::{ColumnInfo, Privilege, TableInfo, parse_table_name};
use tarn_core::lineage::{Node, SourceRead};
use tarn_core::serving::{AutoCaptureConfig, InferenceLabels, ServingEndpoint};
use tarn_core::store::MetaStore;
use tarn_core::{Error, ErrorCode, Result};
use tarn_lake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder,
    RecordBatch, StringBuilder, TimestampMicrosecondBuilder, UInt32Builder,
};
use tarn_lake::arrow::compute::{cast, concat_batches, take};
use tarn_lake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use tarn_lake::arrow::row::{RowConverter, SortField};
use tarn_lake::catalog::{ManagedTable, location_of};
use tarn_lake::writes::{Rows, append_progress, update_progress};
use tarn_lake::{At, Lake, columns_of_arrow};
use tarn_models::payload::{Input, Invocation};

/// The lease the unpacking server holds.
pub const UNPACKER_LEASE: &str = "inference-unpacker";
/// How long a pass's hold on the lease lasts; passes come more often than this.
pub const LEASE_TERM_MS: i64 = 30_000;
/// The progress records in the predictions table's log: the payload version and the label
/// table version read so far.
const PAYLOAD_PROGRESS: &str = "tarn.unpack.payload";
const LABELS_PROGRESS: &str = "tarn.unpack.labels";
const MILLIS_PER_DAY: i64 = 86_400_000;

/// The columns every predictions table starts with; request fields of the same name are kept
/// as `input_<name>`.
const FIXED_COLUMNS: [&str; 11] = [
    "request_id",
    "row_index",
    "client_request_id",
    "timestamp",
    "date",
    "served_entity_name",
    "model_name",
    "model_version",
    "prediction",
    "probability",
    "label",
];

/// What one pass did for one endpoint.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unpacked {
    pub endpoint: String,
    pub table: String,
    /// Scored rows written.
    pub rows: usize,
    /// Rows whose label was set by labels that came after them.
    pub labeled: usize,
}

/// One pass at `now`: when `holder` holds the lease, unpacks what every endpoint logged since
/// the last pass and joins the labels that arrived. An endpoint that fails is logged and
/// retried on the next pass; the others go on.
pub async fn tick(
    lake: &Lake,
    store: &dyn MetaStore,
    holder: &str,
    now: i64,
) -> Result<Vec<Unpacked>> {
    if !store
        .hold_lease(UNPACKER_LEASE, holder, now, now + LEASE_TERM_MS)
        .await?
    {
        return Ok(Vec::new());
    }
    let mut done = Vec::new();
    for endpoint in store.list_endpoints(None).await? {
        match unpack(lake, store, &endpoint).await {
            Ok(unpacked) if unpacked.rows > 0 || unpacked.labeled > 0 => done.push(unpacked),
            Ok(_) => {}
            Err(err) => tracing::warn!(
                workspace = %endpoint.workspace,
                endpoint = %endpoint.name,
                error = %err.report(),
                "cannot unpack the endpoint's inference table"
            ),
        }
    }
    Ok(done)
}

async fn find_table(store: &dyn MetaStore, full_name: &str) -> Result<Option<TableInfo>> {
    let (catalog, schema, name) = parse_table_name(full_name)?;
    match store.get_table(&catalog, &schema, &name).await {
        Ok(table) => Ok(Some(table)),
        Err(e) if e.code == ErrorCode::ResourceDoesNotExist => Ok(None),
        Err(e) => Err(e),
    }
}

/// Unpacks what `endpoint` logged since the last pass and joins the labels that arrived.
pub async fn unpack(
    lake: &Lake,
    store: &dyn MetaStore,
    endpoint: &ServingEndpoint,
) -> Result<Unpacked> {
    let Some(capture) = endpoint
        .config
        .auto_capture_config
        .as_ref()
        .filter(|c| c.enabled)
    else {
        return Ok(Unpacked::default());
    };
    let in_schema =
        |name: String| format!("{}.{}.{name}", capture.catalog_name, capture.schema_name);
    let Some(payload) = find_table(store, &in_schema(capture.table_name())).await? else {
        return Ok(Unpacked::default());
    };
    let principal = store.active_principal(&endpoint.creator).await?;
    let caller = Caller::new(endpoint.workspace.clone(), principal);
    let full_name = in_schema(capture.predictions_table_name());
    let mut unpacked = Unpacked {
        endpoint: endpoint.name.clone(),
        table: full_name.clone(),
        ..Unpacked::default()
    };
    let mut predictions = find_table(store, &full_name).await?;
    // How far the payload and the labels were read, from one read of the table's log.
    let (read, labels_read) = match &predictions {
        Some(table) => {
            let progress = [PAYLOAD_PROGRESS, LABELS_PROGRESS];
            let versions = lake
                .recorded_versions(&location_of(table)?, &table.full_name, &progress)
                .await?;
            (versions[0], versions[1])
        }
        None => (None, None),
    };
    if let Some((logged, version)) = logged_since(lake, &payload, read).await? {
        let existing = predictions.as_ref().map(|t| kinds_of(&t.columns));
        let mut rows = Frame::of_payload(&logged)?;
        if !rows.is_empty() {
            if let Some(labels) = &capture.labels {
                // Rows are written without labels rather than held back by a label table
                // that is missing or unreadable; later labels still join.
                let found = match rows.keys(labels) {
                    Ok(keys) => labels_for(lake, store, &caller, labels, &keys).await,
                    Err(e) => Err(e),
                };
                rows.labels = found.unwrap_or_else(|err| {
                    tracing::warn!(endpoint = %endpoint.name, error = %err.report(), "cannot look up labels");
                    None
                });
            }
            let batch = rows.to_batch(existing.as_ref().unwrap_or(&HashMap::new()))?;
            let table = match predictions.take() {
                Some(table) => table,
                None => create_table(lake, store, &caller, capture, batch.schema()).await?,
            };
            let written = append_progress(
                lake,
                store,
                &caller,
                &table,
                Rows {
                    batches: vec![batch],
                    read_from: vec![SourceRead {
                        node: Node::table(payload.full_name.clone()),
                        version: Some(version as i64),
                    }],
                },
                (PAYLOAD_PROGRESS, version as i64),
            )
            .await?;
            unpacked.rows = written.rows;
            predictions = find_table(store, &full_name).await?;
        }
    }
    if let (Some(labels), Some(table)) = (&capture.labels, &predictions) {
        unpacked.labeled =
            join_late_labels(lake, store, &caller, labels, table, labels_read).await?;
    }
    Ok(unpacked)
}

/// The payload rows committed after version `read` (every row the first time, after turning
/// the payload table's change feed on), and the version read up to; None when nothing new.
async fn logged_since(
    lake: &Lake,
    payload: &TableInfo,
    read: Option<i64>,
) -> Result<Option<(Vec<RecordBatch>, u64)>> {
    let location = location_of(payload)?;
    match read {
        None => {
            lake.enable_change_feed(&location, &payload.full_name)
                .await?;
            let (_, batches, version) = lake
                .read_columns(&location, &payload.full_name, At::Latest, None)
                .await?;
            Ok(Some((batches, version)))
        }
        Some(read) => {
            let read = read.max(0) as u64;
            let latest = lake
                .latest_version(&location, &payload.full_name, read)
                .await?;
            if latest <= read {
                return Ok(None);
            }
            let (_, changes) = lake
                .changes(&location, &payload.full_name, read + 1, Some(latest))
                .await?;
            Ok(Some((inserted(changes)?, latest)))
        }
    }
}

/// The rows a change feed inserted (appends, and the new side of updates).
fn inserted(changes: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    changes
        .into_iter()
        .map(|batch| {
            let kinds = text_column(&batch, "_change_type")?;
            let keep = kinds
                .iter()
                .map(|kind| {
                    Some(matches!(
                        kind.as_deref(),
                        Some("insert" | "update_postimage")
                    ))
                })
                .collect::<tarn_lake::arrow::array::BooleanArray>();
            tarn_lake::arrow::compute::filter_record_batch(&batch, &keep)
                .map_err(|e| Error::internal_from("the change feed's rows", e))
        })
        .collect()
}

/// A column of strings, whatever string type the reader gave.
fn text_column(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| Error::internal(format!("the rows lack column {name}")))?;
    let strings = cast(column, &DataType::Utf8)
        .map_err(|e| Error::internal_from(format!("column {name}"), e))?;
    Ok(strings
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect())
}

fn integer_column(batch: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| Error::internal(format!("the rows lack column {name}")))?;
    let integers = cast(column, &DataType::Int64)
        .map_err(|e| Error::internal_from(format!("column {name}"), e))?;
    Ok(integers
        .as_primitive::<tarn_lake::arrow::datatypes::Int64Type>()
        .iter()
        .collect())
}

/// What a column of JSON values is stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Float,
    Text,
}

impl Kind {
    /// The narrowest kind that holds every value (JSON text for objects, lists and mixes).
    fn of<'a>(values: impl Iterator<Item = &'a Value>) -> Kind {
        let mut kind: Option<Kind> = None;
        for value in values {
            let this = match value {
                Value::Null => continue,
                Value::Bool(_) => Kind::Bool,
                Value::Number(n) if n.is_i64() || n.is_u64() => Kind::Int,
                Value::Number(_) => Kind::Float,
                _ => Kind::Text,
            };
            kind = Some(match (kind, this) {
                (None, this) => this,
                (Some(a), b) if a == b => a,
                (Some(Kind::Int), Kind::Float) | (Some(Kind::Float), Kind::Int) => Kind::Float,
                _ => Kind::Text,
            });
        }
        kind.unwrap_or(Kind::Text)
    }

    fn of_type(type_text: &str) -> Kind {
        match type_text {
            "boolean" => Kind::Bool,
            "bigint" | "int" | "long" | "smallint" | "tinyint" => Kind::Int,
            "double" | "float" => Kind::Float,
            _ => Kind::Text,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Text => DataType::Utf8,
        }
    }

    /// The values as a column of this kind; a value that does not fit is null.
    fn array<'a>(self, values: impl Iterator<Item = &'a Value>) -> ArrayRef {
        match self {
            Kind::Bool => {
                let mut builder = BooleanBuilder::new();
                values.for_each(|v| builder.append_option(v.as_bool()));
                Arc::new(builder.finish())
            }
            Kind::Int => {
                let mut builder = Int64Builder::new();
                values.for_each(|v| {
                    builder.append_option(v.as_i64().or_else(|| {
                        v.as_f64()
                            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                            .map(|f| f as i64)
                    }))
                });
                Arc::new(builder.finish())
            }
            Kind::Float => {
                let mut builder = Float64Builder::new();
                values.for_each(|v| builder.append_option(v.as_f64()));
                Arc::new(builder.finish())
            }
            Kind::Text => {
                let mut builder = StringBuilder::new();
                values.for_each(|v| match v {
                    Value::Null => builder.append_null(),
                    Value::String(s) => builder.append_value(s),
                    other => builder.append_value(other.to_string()),
                });
                Arc::new(builder.finish())
            }
        }
    }
}

fn kinds_of(columns: &[ColumnInfo]) -> HashMap<String, Kind> {
    columns
        .iter()
        .map(|c| (c.name.clone(), Kind::of_type(&c.type_text)))
        .collect()
}

/// A request field's name as a column name: letters, digits and underscores, lower case;
/// `input_` before the names of the fixed columns.
fn column_name(field: &str) -> String {
    let mut name: String = field
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    if name.is_empty() {
        name.push('_');
    }
    if FIXED_COLUMNS.contains(&name.as_str()) {
        name.insert_str(0, "input_");
    }
    name
}

/// The scored rows of some requests, column by column.
#[derive(Debug, Default)]
struct Frame {
    request_id: Vec<String>,
    row_index: Vec<i64>,
    client_request_id: Vec<Option<String>>,
    timestamp_ms: Vec<i64>,
    served_entity_name: Vec<String>,
    model_name: Vec<String>,
    model_version: Vec<i64>,
    /// Request fields in the order they first appear, a value per row (null when a request
    /// lacked the field).
    fields: Vec<(String, Vec<Value>)>,
    prediction: Vec<Value>,
    probability: Vec<Option<f64>>,
    /// The labels found for the rows (None for a row without one); all None without labels.
    labels: Option<ArrayRef>,
}

impl Frame {
    fn len(&self) -> usize {
        self.request_id.len()
    }

    fn is_empty(&self) -> bool {
        self.request_id.is_empty()
    }

    /// Unpacks payload rows: each answered request (status 200) becomes its scored rows. A
    /// request or response that cannot be read is skipped with a warning (the payload table
    /// keeps it as it was).
    fn of_payload(batches: &[RecordBatch]) -> Result<Frame> {
        let mut frame = Frame::default();
        let mut positions: HashMap<String, usize> = HashMap::new();
        for batch in batches.iter().filter(|b| b.num_rows() > 0) {
            let request_id = text_column(batch, "request_id")?;
            let client_request_id = text_column(batch, "client_request_id")?;
            let timestamp_ms = integer_column(batch, "timestamp_ms")?;
            let status_code = integer_column(batch, "status_code")?;
            let request = text_column(batch, "request")?;
            let response = text_column(batch, "response")?;
            let entity = text_column(batch, "served_entity_name")?;
            let model = text_column(batch, "model_name")?;
            let version = integer_column(batch, "model_version")?;
            for row in 0..batch.num_rows() {
                if status_code[row] != Some(200) {
                    continue;
                }
                let id = request_id[row].clone().unwrap_or_default();
                let scored = match scored_rows(
                    request[row].as_deref().unwrap_or_default(),
                    response[row].as_deref().unwrap_or_default(),
                ) {
                    Ok(scored) => scored,
                    Err(message) => {
                        tracing::warn!(request_id = %id, %message, "cannot unpack a logged request");
                        continue;
                    }
                };
                for (index, (fields, prediction)) in scored.into_iter().enumerate() {
                    let at = frame.len();
                    frame.request_id.push(id.clone());
                    frame.row_index.push(index as i64);
                    frame.client_request_id.push(client_request_id[row].clone());
                    frame
                        .timestamp_ms
                        .push(timestamp_ms[row].unwrap_or_default());
                    frame
                        .served_entity_name
                        .push(entity[row].clone().unwrap_or_default());
                    frame
                        .model_name
                        .push(model[row].clone().unwrap_or_default());
                    frame.model_version.push(version[row].unwrap_or_default());
                    let (prediction, probability) = read_prediction(prediction);
                    frame.prediction.push(prediction);
                    frame.probability.push(probability);
                    for (field, value) in fields {
                        let name = column_name(&field);
                        let position = *positions.entry(name.clone()).or_insert_with(|| {
                            frame.fields.push((name, Vec::new()));
                            frame.fields.len() - 1
                        });
                        let column = &mut frame.fields[position].1;
                        column.resize(at, Value::Null);
                        column.push(value);
                    }
                }
            }
        }
        let rows = frame.len();
        for (_, column) in &mut frame.fields {
            column.resize(rows, Value::Null);
        }
        Ok(frame)
    }

    /// The rows' values of the label join columns, as a batch of those columns.
    fn keys(&self, labels: &InferenceLabels) -> Result<RecordBatch> {
        let columns = labels
            .join_columns
            .iter()
            .map(|name| {
                self.column(name, None).ok_or_else(|| {
                    Error::invalid(format!(
                        "labels.join_columns names {name}, which the endpoint's predictions lack"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        batch_of(
            labels
                .join_columns
                .iter()
                .zip(columns)
                .map(|(name, array)| (name.clone(), array))
                .collect(),
        )
    }

    /// A column by name, its kind taken from `kinds` when the table has it.
    fn column(&self, name: &str, kinds: Option<&HashMap<String, Kind>>) -> Option<ArrayRef> {
        let texts = |values: &[String]| -> ArrayRef {
            Arc::new(tarn_lake::arrow::array::StringArray::from_iter_values(
                values,
            ))
        };
        let integers = |values: &[i64]| -> ArrayRef {
            Arc::new(tarn_lake::arrow::array::Int64Array::from(values.to_vec()))
        };
        Some(match name {
            "request_id" => texts(&self.request_id),
            "row_index" => integers(&self.row_index),
            "client_request_id" => Arc::new(tarn_lake::arrow::array::StringArray::from(
                self.client_request_id.clone(),
            )),
            "served_entity_name" => texts(&self.served_entity_name),
            "model_name" => texts(&self.model_name),
            "model_version" => integers(&self.model_version),
            _ => {
                let (_, values) = self.fields.iter().find(|(n, _)| n == name)?;
                let kind = kinds
                    .and_then(|k| k.get(name).copied())
                    .unwrap_or_else(|| Kind::of(values.iter()));
                kind.array(values.iter())
            }
        })
    }

    /// The rows as the predictions table's columns: the fixed ones, then the request fields
    /// (typed as the table has them, or by their values when new).
    fn to_batch(&self, kinds: &HashMap<String, Kind>) -> Result<RecordBatch> {
        let rows = self.len();
        let mut columns: Vec<(String, ArrayRef)> = Vec::new();
        for name in ["request_id", "row_index", "client_request_id"] {
            columns.extend(self.column(name, None).map(|c| (name.to_string(), c)));
        }
        let mut timestamp = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
        let mut date = Date32Builder::with_capacity(rows);
        for millis in &self.timestamp_ms {
            timestamp.append_value(millis.saturating_mul(1000));
            date.append_value(millis.div_euclid(MILLIS_PER_DAY) as i32);
        }
        columns.push(("timestamp".into(), Arc::new(timestamp.finish())));
        columns.push(("date".into(), Arc::new(date.finish())));
        for name in ["served_entity_name", "model_name", "model_version"] {
            columns.extend(self.column(name, None).map(|c| (name.to_string(), c)));
        }
        for (name, _) in &self.fields {
            columns.extend(self.column(name, Some(kinds)).map(|c| (name.clone(), c)));
        }
        let prediction_kind = kinds
            .get("prediction")
            .copied()
            .unwrap_or_else(|| Kind::of(self.prediction.iter()));
        let prediction_type = prediction_kind.data_type();
        columns.push((
            "prediction".into(),
            prediction_kind.array(self.prediction.iter()),
        ));
        columns.push((
            "probability".into(),
            Arc::new(tarn_lake::arrow::array::Float64Array::from(
                self.probability.clone(),
            )),
        ));
        let label = match &self.labels {
            Some(labels) => cast(labels, &prediction_type).map_err(|e| {
                Error::invalid(format!("the labels cannot be read as predictions: {e}"))
            })?,
            None => tarn_lake::arrow::array::new_null_array(&prediction_type, rows),
        };
        columns.push(("label".into(), label));
        batch_of(columns)
    }
}

fn batch_of(columns: Vec<(String, ArrayRef)>) -> Result<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array)| Field::new(name, array.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, array)| array).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| Error::internal_from("the unpacked rows", e))
}

/// One scored row: the request's fields by name and the prediction as answered.
type ScoredRow = (Vec<(String, Value)>, Value);

/// The scored rows of one request.
fn scored_rows(request: &str, response: &str) -> std::result::Result<Vec<ScoredRow>, String> {
    let invocation = Invocation::parse(request.as_bytes()).map_err(|e| e.to_string())?;
    let inputs: Vec<Vec<(String, Value)>> = match invocation.input {
        Input::Frame(frame) => frame
            .rows
            .into_iter()
            .map(|cells| frame.columns.iter().cloned().zip(cells).collect())
            .collect(),
        Input::Tensors(tensors) => {
            let rows = tensors
                .first()
                .map_or(0, |t| t.shape.first().copied().unwrap_or(1));
            (0..rows)
                .map(|row| {
                    tensors
                        .iter()
                        .map(|tensor| {
                            let width: usize = tensor.shape.iter().skip(1).product();
                            let start = row * width;
                            let cells = tensor.values.get(start..start + width).unwrap_or(&[]);
                            let value = match cells {
                                [one] if tensor.shape.len() <= 1 => one.clone(),
                                many => Value::Array(many.to_vec()),
                            };
                            (
                                tensor.name.clone().unwrap_or_else(|| "inputs".into()),
                                value,
                            )
                        })
                        .collect()
                })
                .collect()
        }
    };
    let answered: Value =
        serde_json::from_str(response).map_err(|e| format!("the response is not JSON: {e}"))?;
    let predictions = match answered.get("predictions") {
        Some(Value::Array(rows)) => rows.clone(),
        // A dict of outputs, each a list of rows: made into a record per row.
        Some(Value::Object(outputs)) => (0..inputs.len())
            .map(|row| {
                Value::Object(
                    outputs
                        .iter()
                        .map(|(name, rows)| {
                            (name.clone(), rows.get(row).cloned().unwrap_or_default())
                        })
                        .collect(),
                )
            })
            .collect(),
        _ => return Err("the response holds no predictions".into()),
    };
    if predictions.len() != inputs.len() {
        return Err(format!(
            "the request holds {} rows and the response {} predictions",
            inputs.len(),
            predictions.len()
        ));
    }
    Ok(inputs.into_iter().zip(predictions).collect())
}

/// A row's prediction and, for a binary classifier that answered class probabilities, the
/// positive class's (the second class in order: `1`, `true`, `yes`). A row answered as several
/// outputs predicts its first single value (a label), and its probabilities come from its first
/// output that maps classes, or lists values, to numbers.
fn read_prediction(answered: Value) -> (Value, Option<f64>) {
    let positive = |value: &Value| -> Option<f64> {
        match value {
            Value::Object(classes) if classes.len() == 2 => classes.values().nth(1)?.as_f64(),
            Value::Array(values) if values.len() == 2 => values.get(1)?.as_f64(),
            _ => None,
        }
    };
    match answered {
        Value::Object(outputs) if outputs.len() == 1 => {
            let (_, only) = outputs.into_iter().next().unwrap_or_default();
            let probability = positive(&only);
            (only, probability)
        }
        Value::Object(outputs) => {
            let probability = outputs.values().find_map(|v| {
                matches!(v, Value::Object(_) | Value::Array(_))
                    .then(|| positive(v))
                    .flatten()
            });
            let prediction = outputs
                .values()
                .find(|v| !matches!(v, Value::Object(_) | Value::Array(_) | Value::Null))
                .cloned()
                .unwrap_or(Value::Object(outputs));
            (prediction, probability)
        }
        scalar => (scalar, None),
    }
}

/// Creates the predictions table (owned by the endpoint's creator, keeping a change feed) with
/// the columns of the first rows unpacked.
async fn create_table(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    capture: &AutoCaptureConfig,
    schema: SchemaRef,
) -> Result<TableInfo> {
    let mut columns = columns_of_arrow(&schema)?;
    for column in &mut columns {
        column.comment = match column.name.as_str() {
            "request_id" => "the request's id in the payload table",
            "row_index" => "the row's position in its request",
            "client_request_id" => "the request's client_request_id",
            "timestamp" => "when the request arrived",
            "date" => "UTC day the request arrived",
            "served_entity_name" => "served entity that answered",
            "model_name" => "registered model that answered",
            "model_version" => "its version",
            "prediction" => "the model's prediction",
            "probability" => "a binary classifier's probability of the positive class",
            "label" => "the true outcome, joined from the label table",
            _ => "",
        }
        .to_string();
    }
    let table = ManagedTable {
        catalog: capture.catalog_name.clone(),
        schema: capture.schema_name.clone(),
        name: capture.predictions_table_name(),
        columns,
        comment: "one row per scored row of a serving endpoint, unpacked from its payload table"
            .into(),
        properties: [("delta.enableChangeDataFeed".to_string(), "true".to_string())].into(),
    };
    match lake.create_managed(store, &caller.actor(), table).await {
        Ok(table) => Ok(table),
        Err(e) if e.code == ErrorCode::ResourceAlreadyExists => {
            store
                .get_table(
                    &capture.catalog_name,
                    &capture.schema_name,
                    &capture.predictions_table_name(),
                )
                .await
        }
        Err(e) => Err(e),
    }
}

/// The label table, which the endpoint's creator must be able to read.
async fn label_table(
    store: &dyn MetaStore,
    caller: &Caller,
    labels: &InferenceLabels,
) -> Result<TableInfo> {
    tarn_lake::access::table_for(store, caller, &labels.table_name, Privilege::Select).await
}

/// The labels the label table holds for `keys`' rows, in their order (null where it holds
/// none).
async fn labels_for(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    labels: &InferenceLabels,
    keys: &RecordBatch,
) -> Result<Option<ArrayRef>> {
    let table = label_table(store, caller, labels).await?;
    let found = lake
        .lookup(
            &location_of(&table)?,
            &table.full_name,
            keys.clone(),
            &labels.label_column,
        )
        .await?;
    let found: Vec<RecordBatch> = found.into_iter().filter(|b| b.num_rows() > 0).collect();
    let Some(first) = found.first() else {
        return Ok(None);
    };
    let found = concat_batches(&first.schema(), &found)
        .map_err(|e| Error::internal_from("the labels found", e))?;
    let width = keys.num_columns();
    let converter = RowConverter::new(
        keys.schema()
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect(),
    )
    .map_err(|e| Error::internal_from("the label keys", e))?;
    let found_keys = converter
        .convert_columns(&found.columns()[..width])
        .map_err(|e| Error::internal_from("the label keys", e))?;
    let mut position = HashMap::new();
    for (i, key) in found_keys.iter().enumerate() {
        position.insert(key.as_ref().to_vec(), i as u32);
    }
    let wanted = converter
        .convert_columns(keys.columns())
        .map_err(|e| Error::internal_from("the label keys", e))?;
    let mut indices = UInt32Builder::with_capacity(keys.num_rows());
    for key in wanted.iter() {
        indices.append_option(position.get(key.as_ref()).copied());
    }
    let labels = take(found.column(width), &indices.finish(), None)
        .map_err(|e| Error::internal_from("the labels found", e))?;
    Ok(Some(labels))
}

/// Sets the labels that arrived since version `read` of the label table (all of them when
/// never read) on the predictions they match; returns how many predictions changed.
async fn join_late_labels(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    labels: &InferenceLabels,
    predictions: &TableInfo,
    read: Option<i64>,
) -> Result<usize> {
    let table = label_table(store, caller, labels).await?;
    let location = location_of(&table)?;
    let read = read.map(|v| v.max(0) as u64);
    let latest = lake
        .latest_version(&location, &table.full_name, read.unwrap_or_default())
        .await?;
    if read.is_some_and(|read| read >= latest) {
        return Ok(0);
    }
    let wanted: Vec<String> = labels
        .join_columns
        .iter()
        .chain([&labels.label_column])
        .cloned()
        .collect();
    let changed = match read {
        Some(read) => lake
            .changes(&location, &table.full_name, read + 1, Some(latest))
            .await
            .and_then(|(_, rows)| inserted(rows)),
        None => Err(Error::invalid("never read")),
    };
    let (rows, version) = match changed {
        Ok(rows) => (rows, latest),
        // No change feed (or a first read): the whole table again.
        Err(_) => {
            let (_, rows, version) = lake
                .read_columns(&location, &table.full_name, At::Latest, Some(&wanted))
                .await?;
            (rows, version)
        }
    };
    let kinds = kinds_of(&predictions.columns);
    let Some(source) = late_labels(&rows, labels, &kinds)? else {
        return Ok(0);
    };
    let merged = update_progress(
        lake,
        store,
        caller,
        predictions,
        Rows {
            batches: vec![source],
            read_from: vec![SourceRead {
                node: Node::table(table.full_name.clone()),
                version: Some(version as i64),
            }],
        },
        &labels.join_columns,
        (LABELS_PROGRESS, version as i64),
    )
    .await?;
    Ok(merged.num_updated_rows)
}

/// Label rows as a merge source: the join columns typed as the predictions have them and
/// `label` typed as the predictions; the last row of each key wins. None without rows.
fn late_labels(
    rows: &[RecordBatch],
    labels: &InferenceLabels,
    kinds: &HashMap<String, Kind>,
) -> Result<Option<RecordBatch>> {
    let rows: Vec<&RecordBatch> = rows.iter().filter(|b| b.num_rows() > 0).collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let label_type = kinds
        .get("label")
        .copied()
        .unwrap_or(Kind::Text)
        .data_type();
    let mut columns: Vec<(String, DataType)> = Vec::new();
    for name in &labels.join_columns {
        let data_type = match name.as_str() {
            "request_id" | "client_request_id" | "served_entity_name" | "model_name" => {
                DataType::Utf8
            }
            "row_index" | "model_version" => DataType::Int64,
            _ => kinds
                .get(name)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "labels.join_columns names {name}, which the endpoint's predictions lack"
                    ))
                })?
                .data_type(),
        };
        columns.push((name.clone(), data_type));
    }
    let mut arrays: Vec<Vec<ArrayRef>> = vec![Vec::new(); columns.len() + 1];
    for batch in &rows {
        for (i, (name, data_type)) in columns.iter().enumerate() {
            arrays[i].push(cast_column(batch, name, data_type, &labels.table_name)?);
        }
        arrays[columns.len()].push(cast_column(
            batch,
            &labels.label_column,
            &label_type,
            &labels.table_name,
        )?);
    }
    let concatenated = arrays
        .iter()
        .map(|parts| {
            let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
            tarn_lake::arrow::compute::concat(&parts)
                .map_err(|e| Error::internal_from("the labels read", e))
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    // The last row of each key: later label rows correct earlier ones.
    let converter = RowConverter::new(
        columns
            .iter()
            .map(|(_, t)| SortField::new(t.clone()))
            .collect(),
    )
    .map_err(|e| Error::internal_from("the label keys", e))?;
    let keys = converter
        .convert_columns(&concatenated[..columns.len()])
        .map_err(|e| Error::internal_from("the label keys", e))?;
    let mut last: HashMap<Vec<u8>, u32> = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        last.insert(key.as_ref().to_vec(), i as u32);
    }
    let mut kept: Vec<u32> = last.into_values().collect();
    kept.sort_unstable();
    let indices = tarn_lake::arrow::array::UInt32Array::from(kept);
    let mut named: Vec<(String, ArrayRef)> = Vec::new();
    for (i, array) in concatenated.iter().enumerate() {
        let name = columns
            .get(i)
            .map_or_else(|| "label".to_string(), |(n, _)| n.clone());
        let kept = take(array.as_ref(), &indices, None)
            .map_err(|e| Error::internal_from("the labels read", e))?;
        named.push((name, kept));
    }
    batch_of(named).map(Some)
}

fn cast_column(
    batch: &RecordBatch,
    name: &str,
    data_type: &DataType,
    table: &str,
) -> Result<ArrayRef> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| Error::invalid(format!("the label table {table} has no column {name}")))?;
    cast(column, data_type).map_err(|e| {
        Error::invalid(format!(
            "column {name} of the label table {table} cannot be read as {data_type}: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_become_one_row_each_with_their_fields() {
        // Fields in the order the records first name them, each record's keys sorted.
        let rows = scored_rows(
            r#"{"dataframe_records": [{"x": 1.5, "id": "a"}, {"x": 2, "id": "b", "extra": true}]}"#,
            r#"{"predictions": [0, 1]}"#,
        )
        .expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[1].0,
            vec![
                ("id".to_string(), json!("b")),
                ("x".to_string(), json!(2)),
                ("extra".to_string(), json!(true)),
            ]
        );
        assert_eq!(rows[1].1, json!(1));
    }

    #[test]
    fn split_frames_and_tensors_unpack_by_row() {
        let rows = scored_rows(
            r#"{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}}"#,
            r#"{"predictions": [{"label": 1, "probabilities": {"0": 0.25, "1": 0.75}}, {"label": 0, "probabilities": {"0": 0.9, "1": 0.1}}]}"#,
        )
        .expect("split");
        assert_eq!(
            rows[1].0,
            vec![("a".into(), json!(3)), ("b".into(), json!(4))]
        );
        assert_eq!(read_prediction(rows[0].1.clone()), (json!(1), Some(0.75)));
        let tensors = scored_rows(
            r#"{"inputs": [[1.0, 2.0], [3.0, 4.0]]}"#,
            r#"{"predictions": {"variable": [10.5, 11.5]}}"#,
        )
        .expect("tensors");
        assert_eq!(tensors[1].0, vec![("inputs".into(), json!([3.0, 4.0]))]);
        assert_eq!(read_prediction(tensors[1].1.clone()), (json!(11.5), None));
    }

    #[test]
    fn mismatched_responses_are_refused() {
        let error = scored_rows(
            r#"{"dataframe_records": [{"x": 1}]}"#,
            r#"{"predictions": [1, 2]}"#,
        )
        .expect_err("mismatch");
        assert!(error.contains("1 rows and the response 2"), "{error}");
        assert!(scored_rows(r#"{"dataframe_records": [{"x": 1}]}"#, "oops").is_err());
    }

    #[test]
    fn kinds_widen_and_values_that_do_not_fit_are_null() {
        assert_eq!(Kind::of([json!(1), json!(2)].iter()), Kind::Int);
        assert_eq!(Kind::of([json!(1), json!(2.5)].iter()), Kind::Float);
        assert_eq!(Kind::of([json!(1), json!("a")].iter()), Kind::Text);
        assert_eq!(Kind::of([Value::Null, json!(true)].iter()), Kind::Bool);
        let ints = Kind::Int.array([json!(3.0), json!(3.5), json!("x")].iter());
        let ints = ints.as_primitive::<tarn_lake::arrow::datatypes::Int64Type>();
        assert_eq!(ints.iter().collect::<Vec<_>>(), vec![Some(3), None, None]);
        let texts = Kind::Text.array([json!([1, 2]), json!("s")].iter());
        assert_eq!(texts.as_string::<i32>().value(0), "[1,2]");
    }

    #[test]
    fn field_names_become_column_names() {
        assert_eq!(column_name("Sepal Length (cm)"), "sepal_length__cm_");
        assert_eq!(column_name("prediction"), "input_prediction");
        assert_eq!(column_name(""), "_");
    }
}
