//! Custom metrics, as Lakehouse Monitoring defines them: an AGGREGATE metric is a SQL aggregate
//! expression over a group's rows (`{{input_column}}` stands for each of its input columns;
//! with `:table` the expression names columns itself and gives one value, on the `:table` row),
//! computed for the same groups as the built-in metrics (window x model x slice, and the
//! baseline); a DERIVED metric is an expression over the aggregate metrics of the same row; a
//! DRIFT metric compares a row's metrics with those of the window it is compared with or of the
//! baseline (`{{current_df}}.name` and `{{base_df}}.name`). Aggregate and derived metrics are
//! columns of the profile metrics table, drift metrics of the drift metrics table, named as the
//! metric is. They run in a DataFusion session of their own over the rows the refresh read, so
//! a definition reads nothing else.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tarn_core::monitors::{CustomMetric, CustomMetricType};
use tarn_core::{Error, Result};
use tarn_lake::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, UInt32Array};
use tarn_lake::arrow::compute::cast;
use tarn_lake::arrow::datatypes::{
    DataType, Field, Schema, SchemaRef, TimestampMicrosecondType, UInt32Type,
};
use tarn_lake::datafusion::common::ScalarValue;
use tarn_lake::datafusion::datasource::MemTable;
use tarn_lake::datafusion::prelude::SessionContext;

use crate::compute::{Plan, SLICE_COLUMN, micros, quoted};
use crate::tables::{TABLE_ROW, drift_schema, profile_schema};
use crate::windows::{previous, window_of};

/// A checked custom metric.
#[derive(Debug, Clone)]
struct Metric {
    name: String,
    kind: CustomMetricType,
    definition: String,
    input_columns: Vec<String>,
    data_type: DataType,
}

/// A monitor's custom metrics, checked.
#[derive(Debug, Clone)]
pub struct Custom {
    metrics: Vec<Metric>,
}

/// The Arrow type of `output_data_type`: a Spark type name (`double`), or a Spark struct field's
/// JSON as PySpark writes it (`{"name": "output", "type": "double", ...}`).
fn output_type(text: &str) -> Result<DataType> {
    let name = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(field)) => field
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string(),
        Ok(serde_json::Value::String(name)) => name,
        _ => text.trim().to_string(),
    };
    match name.to_ascii_lowercase().as_str() {
        "double" | "float" => Ok(DataType::Float64),
        "long" | "bigint" | "integer" | "int" | "short" | "byte" => Ok(DataType::Int64),
        "string" => Ok(DataType::Utf8),
        "boolean" => Ok(DataType::Boolean),
        _ => Err(Error::invalid(format!(
            "output_data_type {text:?} is not one tarn writes: use double, long, string or boolean"
        ))),
    }
}

impl Custom {
    /// Checks what needs nothing but the metrics; None without any.
    pub fn of(metrics: &[CustomMetric]) -> Result<Option<Custom>> {
        if metrics.is_empty() {
            return Ok(None);
        }
        let taken: BTreeSet<String> = profile_schema()
            .fields()
            .iter()
            .chain(drift_schema().fields().iter())
            .map(|f| f.name().clone())
            .collect();
        let mut checked: Vec<Metric> = Vec::new();
        for metric in metrics {
            let name = tarn_core::catalog::normalize_name("custom metric name", &metric.name)?;
            if taken.contains(&name) || checked.iter().any(|m| m.name == name) {
                return Err(Error::invalid(format!(
                    "custom metric name '{name}' is taken: name it apart from the built-in metrics and the others"
                )));
            }
            if metric.definition.trim().is_empty() {
                return Err(Error::invalid(format!(
                    "custom metric '{name}' needs a definition"
                )));
            }
            let kind = metric.metric_type;
            if kind == CustomMetricType::Aggregate
                && !metric.definition.contains("{{input_column}}")
                && !metric.input_columns.iter().any(|c| c == TABLE_ROW)
            {
                return Err(Error::invalid(format!(
                    "custom metric '{name}' must use {{{{input_column}}}}, or take :table as its input column"
                )));
            }
            if metric.input_columns.is_empty() {
                return Err(Error::invalid(format!(
                    "custom metric '{name}' needs input_columns (column names, or :table)"
                )));
            }
            checked.push(Metric {
                name,
                kind,
                definition: metric.definition.clone(),
                input_columns: metric.input_columns.clone(),
                data_type: output_type(&metric.output_data_type)?,
            });
        }
        Ok(Some(Custom { metrics: checked }))
    }

    fn of_kind(&self, kind: CustomMetricType) -> impl Iterator<Item = (usize, &Metric)> {
        self.metrics
            .iter()
            .enumerate()
            .filter(move |(_, m)| m.kind == kind)
    }

    /// The profile table's metrics (aggregate, then derived) and the drift table's.
    fn profile_metrics(&self) -> Vec<&Metric> {
        self.of_kind(CustomMetricType::Aggregate)
            .chain(self.of_kind(CustomMetricType::Derived))
            .map(|(_, m)| m)
            .collect()
    }

    fn drift_metrics(&self) -> Vec<&Metric> {
        self.of_kind(CustomMetricType::Drift)
            .map(|(_, m)| m)
            .collect()
    }

    /// Checks the metrics against the monitored table's columns (`schema`, as the source query
    /// answers them): input columns exist, and every definition plans.
    pub async fn check(&self, schema: &Schema) -> Result<()> {
        for metric in &self.metrics {
            for column in &metric.input_columns {
                if column != TABLE_ROW && schema.field_with_name(column).is_err() {
                    return Err(Error::invalid(format!(
                        "custom metric '{}' reads column '{column}', which the table lacks",
                        metric.name
                    )));
                }
            }
        }
        let empty = RecordBatch::new_empty(Arc::new(schema.clone()));
        let rows = aggregates(self, &[empty], &Grouping::table_only()).await?;
        let derived = derive(self, rows).await?;
        compare(self, &derived, &derived, &[]).await?;
        Ok(())
    }
}

/// How a source's rows are grouped: its windows by granularity (none for a snapshot or a
/// baseline), the model column and the slicing columns, as the built-in metrics group them.
struct Grouping {
    granularities: Vec<(String, tarn_core::monitors::Granularity)>,
    timestamp_col: Option<String>,
    model_id_col: Option<String>,
    slices: Vec<String>,
    baseline: bool,
}

impl Grouping {
    fn table_only() -> Self {
        Grouping {
            granularities: Vec::new(),
            timestamp_col: None,
            model_id_col: None,
            slices: Vec::new(),
            baseline: false,
        }
    }

    fn of(plan: &Plan, baseline: bool) -> Self {
        Grouping {
            granularities: if baseline {
                Vec::new()
            } else {
                plan.granularities.clone()
            },
            timestamp_col: plan.timestamp_col.clone().filter(|_| !baseline),
            model_id_col: plan.model_id_col.clone().filter(|_| !baseline),
            slices: plan.slicing_exprs.clone(),
            baseline,
        }
    }
}

/// What identifies a profile row (and the group a drift row compares).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RowKey {
    granularity: Option<String>,
    window: Option<i64>,
    baseline: bool,
    model_id: Option<String>,
    slice_key: Option<String>,
    slice_value: Option<String>,
    column_name: String,
}

/// Custom metric values by profile row, in the order of `Custom::profile_metrics`.
pub struct Values {
    profile: HashMap<RowKey, Vec<ScalarValue>>,
    /// Drift metric values by (row, compared window or None for the baseline).
    drift: HashMap<(RowKey, Option<i64>), Vec<ScalarValue>>,
}

fn fields_of(schema: &Schema) -> Vec<Field> {
    schema.fields().iter().map(|f| f.as_ref().clone()).collect()
}

const WINDOW: &str = "__tarn_window";
const MODEL: &str = "__tarn_model";

/// The rows with their group columns added: a window start per granularity and the model id
/// as text.
fn with_groups(batch: &RecordBatch, grouping: &Grouping) -> Result<RecordBatch> {
    let mut fields = fields_of(&batch.schema());
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    if let Some(timestamp) = &grouping.timestamp_col {
        let array = batch.column_by_name(timestamp).ok_or_else(|| {
            Error::invalid(format!("The monitored table has no column '{timestamp}'"))
        })?;
        let times = micros(array, timestamp)?;
        for (i, (_, granularity)) in grouping.granularities.iter().enumerate() {
            let starts: Int64Array = times
                .iter()
                .map(|t| t.map(|t| window_of(*granularity, t).start))
                .collect();
            fields.push(Field::new(format!("{WINDOW}{i}"), DataType::Int64, true));
            columns.push(Arc::new(starts));
        }
    }
    if let Some(model) = &grouping.model_id_col {
        let array = batch.column_by_name(model).ok_or_else(|| {
            Error::invalid(format!("The monitored table has no column '{model}'"))
        })?;
        let text =
            cast(array, &DataType::Utf8).map_err(|e| Error::internal_from("the model ids", e))?;
        fields.push(Field::new(MODEL, DataType::Utf8, true));
        columns.push(text);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::internal_from("the custom metrics' rows", e))
}

fn session_with(tables: &[(&str, SchemaRef, Vec<RecordBatch>)]) -> Result<SessionContext> {
    let context = SessionContext::new();
    for (name, schema, batches) in tables {
        let table = MemTable::try_new(schema.clone(), vec![batches.clone()])
            .map_err(|e| Error::internal_from("the custom metrics' rows", e))?;
        context
            .register_table(*name, Arc::new(table))
            .map_err(|e| Error::internal_from("the custom metrics' rows", e))?;
    }
    Ok(context)
}

async fn run(context: &SessionContext, sql: &str, what: &str) -> Result<Vec<RecordBatch>> {
    let frame = context
        .sql(sql)
        .await
        .map_err(|e| Error::invalid(format!("{what} does not evaluate: {e}")))?;
    frame
        .collect()
        .await
        .map_err(|e| Error::invalid(format!("{what} does not evaluate: {e}")))
}

/// The aggregate metrics of every group of `batches`: one row per group and input column.
async fn aggregates(
    custom: &Custom,
    batches: &[RecordBatch],
    grouping: &Grouping,
) -> Result<Vec<(RowKey, Vec<ScalarValue>)>> {
    let aggregates: Vec<&Metric> = custom
        .of_kind(CustomMetricType::Aggregate)
        .map(|(_, m)| m)
        .collect();
    if aggregates.is_empty() {
        return Ok(Vec::new());
    }
    let grouped: Vec<RecordBatch> = batches
        .iter()
        .map(|b| with_groups(b, grouping))
        .collect::<Result<_>>()?;
    let Some(schema) = grouped.first().map(RecordBatch::schema) else {
        return Ok(Vec::new());
    };
    let context = session_with(&[("rows", schema.clone(), grouped)])?;
    // Each aggregate metric over each of its input columns: (column, metric index, expression).
    let mut expressions: Vec<(String, usize, String)> = Vec::new();
    for (index, metric) in aggregates.iter().enumerate() {
        for column in &metric.input_columns {
            let expression = metric
                .definition
                .replace("{{input_column}}", &quoted(column));
            expressions.push((column.clone(), index, expression));
        }
    }
    let columns: BTreeSet<&String> = expressions.iter().map(|(c, _, _)| c).collect();
    let windows: Vec<Option<(String, String)>> = if grouping.granularities.is_empty() {
        vec![None]
    } else {
        grouping
            .granularities
            .iter()
            .enumerate()
            .map(|(i, (name, _))| Some((name.clone(), format!("{WINDOW}{i}"))))
            .collect()
    };
    let models: Vec<bool> = if grouping.model_id_col.is_some() {
        vec![false, true]
    } else {
        vec![false]
    };
    // A baseline read without its slicing columns (it lacks what they read) has no slices.
    let mut slices: Vec<Option<usize>> = vec![None];
    slices.extend(
        (0..grouping.slices.len())
            .filter(|i| {
                schema
                    .field_with_name(&format!("{SLICE_COLUMN}{i}"))
                    .is_ok()
            })
            .map(Some),
    );
    let mut found: Vec<(RowKey, Vec<ScalarValue>)> = Vec::new();
    for window in &windows {
        for by_model in &models {
            for slice in &slices {
                let mut keys: Vec<String> = Vec::new();
                if let Some((_, column)) = window {
                    keys.push(column.clone());
                }
                if *by_model {
                    keys.push(MODEL.into());
                }
                if let Some(slice) = slice {
                    keys.push(format!("{SLICE_COLUMN}{slice}"));
                }
                let mut select: Vec<String> = keys.iter().map(|k| quoted(k)).collect();
                select.extend(
                    expressions
                        .iter()
                        .enumerate()
                        .map(|(i, (_, _, e))| format!("CAST(({e}) AS STRING) AS `__tarn_m{i}`")),
                );
                let mut sql = format!("SELECT {} FROM rows", select.join(", "));
                if !keys.is_empty() {
                    let present: Vec<String> = keys
                        .iter()
                        .map(|k| format!("{} IS NOT NULL", quoted(k)))
                        .collect();
                    sql.push_str(&format!(" WHERE {}", present.join(" AND ")));
                    let by: Vec<String> = keys.iter().map(|k| quoted(k)).collect();
                    sql.push_str(&format!(" GROUP BY {}", by.join(", ")));
                }
                let results = run(&context, &sql, "A custom metric").await?;
                for batch in &results {
                    let text = |i: usize| texts(batch.column(i));
                    let mut at = 0;
                    let starts: Option<Vec<Option<i64>>> = window.as_ref().map(|_| {
                        at += 1;
                        batch
                            .column(at - 1)
                            .as_primitive_opt::<tarn_lake::arrow::datatypes::Int64Type>()
                            .map(|a| a.iter().collect())
                            .unwrap_or_default()
                    });
                    let model_ids = match by_model {
                        true => {
                            at += 1;
                            Some(text(at - 1)?)
                        }
                        false => None,
                    };
                    let slice_values = match slice {
                        Some(_) => {
                            at += 1;
                            Some(text(at - 1)?)
                        }
                        None => None,
                    };
                    let metric_values: Vec<Vec<Option<String>>> = (0..expressions.len())
                        .map(|i| text(at + i))
                        .collect::<Result<_>>()?;
                    for row in 0..batch.num_rows() {
                        for column in &columns {
                            let key = RowKey {
                                granularity: window.as_ref().map(|(name, _)| name.clone()),
                                window: starts.as_ref().and_then(|s| s[row]),
                                baseline: grouping.baseline,
                                model_id: model_ids.as_ref().and_then(|m| m[row].clone()),
                                slice_key: slice.map(|s| grouping.slices[s].clone()),
                                slice_value: slice_values.as_ref().and_then(|v| v[row].clone()),
                                column_name: (*column).clone(),
                            };
                            let mut values: Vec<ScalarValue> =
                                aggregates.iter().map(|m| null_of(&m.data_type)).collect();
                            for (i, (c, metric, _)) in expressions.iter().enumerate() {
                                if c == *column {
                                    values[*metric] = typed(
                                        metric_values[i][row].as_deref(),
                                        &aggregates[*metric].data_type,
                                    )?;
                                }
                            }
                            found.push((key, values));
                        }
                    }
                }
            }
        }
    }
    Ok(found)
}

/// A column's values as text, whatever string type the engine answered.
fn texts(array: &ArrayRef) -> Result<Vec<Option<String>>> {
    let text = cast(array, &DataType::Utf8)
        .map_err(|e| Error::internal_from("a custom metric's values", e))?;
    Ok(text
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

/// A null of a metric's type (Arrow arrays are built from values of one type).
fn null_of(data_type: &DataType) -> ScalarValue {
    ScalarValue::try_from(data_type).unwrap_or(ScalarValue::Null)
}

/// A value computed as text, in the metric's output type (null when it does not read as one).
fn typed(text: Option<&str>, data_type: &DataType) -> Result<ScalarValue> {
    let text = ScalarValue::Utf8(text.map(str::to_string));
    text.cast_to(data_type)
        .or_else(|_| ScalarValue::try_from(data_type))
        .map_err(|e| Error::internal_from("a custom metric's value", e))
}

/// Adds the derived metrics to each row's aggregate metrics (all in `profile_metrics` order).
async fn derive(
    custom: &Custom,
    rows: Vec<(RowKey, Vec<ScalarValue>)>,
) -> Result<HashMap<RowKey, Vec<ScalarValue>>> {
    let aggregates: Vec<&Metric> = custom
        .of_kind(CustomMetricType::Aggregate)
        .map(|(_, m)| m)
        .collect();
    let derived: Vec<&Metric> = custom
        .of_kind(CustomMetricType::Derived)
        .map(|(_, m)| m)
        .collect();
    let mut values: Vec<Vec<ScalarValue>> = rows.iter().map(|(_, v)| v.clone()).collect();
    if !derived.is_empty() {
        let (schema, batch) = metrics_batch(&aggregates, &values, "__tarn_row")?;
        let context = session_with(&[("metrics", schema, vec![batch])])?;
        let mut select = vec!["`__tarn_row`".to_string()];
        select.extend(
            derived
                .iter()
                .enumerate()
                .map(|(i, m)| format!("CAST(({}) AS STRING) AS `__tarn_d{i}`", m.definition)),
        );
        let sql = format!("SELECT {} FROM metrics", select.join(", "));
        for row in values.iter_mut() {
            row.extend(derived.iter().map(|m| null_of(&m.data_type)));
        }
        for batch in run(&context, &sql, "A derived custom metric").await? {
            let index = batch.column(0).as_primitive::<UInt32Type>();
            for (i, metric) in derived.iter().enumerate() {
                let column = texts(batch.column(i + 1))?;
                for (row, text) in column.iter().enumerate() {
                    let at = index.value(row) as usize;
                    values[at][aggregates.len() + i] = typed(text.as_deref(), &metric.data_type)?;
                }
            }
        }
    }
    Ok(rows.into_iter().map(|(k, _)| k).zip(values).collect())
}

/// A table of one row per metrics row: `index` (its position) and each metric by name.
fn metrics_batch(
    metrics: &[&Metric],
    values: &[Vec<ScalarValue>],
    index: &str,
) -> Result<(SchemaRef, RecordBatch)> {
    let mut fields = vec![Field::new(index, DataType::UInt32, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(UInt32Array::from_iter_values(
        0..values.len() as u32,
    ))];
    for (i, metric) in metrics.iter().enumerate() {
        fields.push(Field::new(&metric.name, metric.data_type.clone(), true));
        let column = if values.is_empty() {
            tarn_lake::arrow::array::new_empty_array(&metric.data_type)
        } else {
            ScalarValue::iter_to_array(values.iter().map(|v| v[i].clone()))
                .and_then(|a| Ok(cast(&a, &metric.data_type)?))
                .map_err(|e| Error::internal_from("the custom metrics", e))?
        };
        columns.push(column);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::internal_from("the custom metrics", e))?;
    Ok((schema, batch))
}

/// The drift metrics of each pair (a row's metrics, those it is compared with).
async fn compare(
    custom: &Custom,
    current: &HashMap<RowKey, Vec<ScalarValue>>,
    base: &HashMap<RowKey, Vec<ScalarValue>>,
    pairs: &[(RowKey, RowKey, Option<i64>)],
) -> Result<HashMap<(RowKey, Option<i64>), Vec<ScalarValue>>> {
    let drift = custom.drift_metrics();
    let mut found = HashMap::new();
    if drift.is_empty() {
        return Ok(found);
    }
    let profile = custom.profile_metrics();
    let empty: Vec<ScalarValue> = profile.iter().map(|m| null_of(&m.data_type)).collect();
    let current_values: Vec<Vec<ScalarValue>> = pairs
        .iter()
        .map(|(c, _, _)| current.get(c).cloned().unwrap_or_else(|| empty.clone()))
        .collect();
    let base_values: Vec<Vec<ScalarValue>> = pairs
        .iter()
        .map(|(_, b, _)| base.get(b).cloned().unwrap_or_else(|| empty.clone()))
        .collect();
    let (current_schema, current_batch) = metrics_batch(&profile, &current_values, "__tarn_pair")?;
    let (base_schema, base_batch) = metrics_batch(&profile, &base_values, "__tarn_pair")?;
    let context = session_with(&[
        ("current_df", current_schema, vec![current_batch]),
        ("base_df", base_schema, vec![base_batch]),
    ])?;
    let mut select = vec!["current_df.`__tarn_pair`".to_string()];
    select.extend(drift.iter().enumerate().map(|(i, m)| {
        let definition = m
            .definition
            .replace("{{current_df}}", "current_df")
            .replace("{{base_df}}", "base_df");
        format!("CAST(({definition}) AS STRING) AS `__tarn_r{i}`")
    }));
    let sql = format!(
        "SELECT {} FROM current_df JOIN base_df ON current_df.`__tarn_pair` = base_df.`__tarn_pair`",
        select.join(", ")
    );
    for batch in run(&context, &sql, "A drift custom metric").await? {
        let index = batch.column(0).as_primitive::<UInt32Type>();
        let columns: Vec<Vec<Option<String>>> = (0..drift.len())
            .map(|i| texts(batch.column(i + 1)))
            .collect::<Result<_>>()?;
        for row in 0..batch.num_rows() {
            let (key, _, compared) = &pairs[index.value(row) as usize];
            let values = drift
                .iter()
                .zip(&columns)
                .map(|(metric, column)| typed(column[row].as_deref(), &metric.data_type))
                .collect::<Result<Vec<_>>>()?;
            found.insert((key.clone(), *compared), values);
        }
    }
    Ok(found)
}

/// Computes the custom metrics of the rows read (and of the baseline's): every group's
/// aggregate and derived metrics, and the drift metrics of every window against the one
/// before it and against the baseline.
pub async fn compute(
    custom: &Custom,
    plan: &Plan,
    source: &[RecordBatch],
    baseline: Option<&[RecordBatch]>,
) -> Result<Values> {
    let profile = derive(
        custom,
        aggregates(custom, source, &Grouping::of(plan, false)).await?,
    )
    .await?;
    let base = match baseline {
        Some(rows) => {
            derive(
                custom,
                aggregates(custom, rows, &Grouping::of(plan, true)).await?,
            )
            .await?
        }
        None => HashMap::new(),
    };
    let mut pairs: Vec<(RowKey, RowKey, Option<i64>)> = Vec::new();
    for key in profile.keys() {
        if let (Some(name), Some(start)) = (&key.granularity, key.window)
            && let Some((_, granularity)) = plan.granularities.iter().find(|(n, _)| n == name)
        {
            let before = previous(*granularity, window_of(*granularity, start)).start;
            let earlier = RowKey {
                window: Some(before),
                ..key.clone()
            };
            if profile.contains_key(&earlier) {
                pairs.push((key.clone(), earlier, Some(before)));
            }
        }
        let in_baseline = RowKey {
            granularity: None,
            window: None,
            baseline: true,
            model_id: None,
            ..key.clone()
        };
        if base.contains_key(&in_baseline) {
            pairs.push((key.clone(), in_baseline, None));
        }
    }
    let (consecutive, against_base): (Vec<_>, Vec<_>) = pairs
        .into_iter()
        .partition(|(_, _, compared)| compared.is_some());
    let mut drift = compare(custom, &profile, &profile, &consecutive).await?;
    drift.extend(compare(custom, &profile, &base, &against_base).await?);
    let mut profile = profile;
    profile.extend(base);
    Ok(Values { profile, drift })
}

/// The text of a string column at `row` (metrics tables may come back as views).
fn text_at(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| Error::internal(format!("the metrics lack column {name}")))?;
    let text = cast(column, &DataType::Utf8)
        .map_err(|e| Error::internal_from(format!("metrics column {name}"), e))?;
    Ok(text
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

fn window_starts(batch: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    let windows = batch
        .column_by_name(name)
        .and_then(|c| c.as_struct_opt())
        .ok_or_else(|| Error::internal(format!("the metrics lack column {name}")))?;
    let starts = windows
        .column(0)
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| Error::internal(format!("{name} has no start")))?;
    Ok((0..batch.num_rows())
        .map(|row| (windows.is_valid(row) && starts.is_valid(row)).then(|| starts.value(row)))
        .collect())
}

/// The grouping keys of a metrics batch's rows.
fn row_keys(batch: &RecordBatch, drift: bool) -> Result<Vec<(RowKey, Option<i64>)>> {
    let granularity = text_at(batch, "granularity")?;
    let window = window_starts(batch, "window")?;
    let model = text_at(batch, "model_id")?;
    let slice_key = text_at(batch, "slice_key")?;
    let slice_value = text_at(batch, "slice_value")?;
    let column = text_at(batch, "column_name")?;
    let (baseline, compared) = if drift {
        let kinds = text_at(batch, "drift_type")?;
        let compared = window_starts(batch, "window_cmp")?;
        (
            kinds
                .iter()
                .map(|k| k.as_deref() == Some("BASELINE"))
                .collect::<Vec<_>>(),
            compared,
        )
    } else {
        let kinds = text_at(batch, "log_type")?;
        (
            kinds
                .iter()
                .map(|k| k.as_deref() == Some("BASELINE"))
                .collect(),
            vec![None; batch.num_rows()],
        )
    };
    Ok((0..batch.num_rows())
        .map(|row| {
            (
                RowKey {
                    granularity: granularity[row].clone(),
                    window: window[row],
                    baseline: baseline[row] && !drift,
                    model_id: model[row].clone(),
                    slice_key: slice_key[row].clone(),
                    slice_value: slice_value[row].clone(),
                    column_name: column[row].clone().unwrap_or_default(),
                },
                compared[row],
            )
        })
        .collect())
}

/// `batch` with a column per metric of `metrics`, each row's value found by `value`.
fn extended(
    batch: &RecordBatch,
    metrics: &[&Metric],
    value: impl Fn(usize, usize) -> ScalarValue,
) -> Result<RecordBatch> {
    let mut fields = fields_of(&batch.schema());
    let mut columns = batch.columns().to_vec();
    for (m, metric) in metrics.iter().enumerate() {
        fields.push(Field::new(&metric.name, metric.data_type.clone(), true));
        let column = if batch.num_rows() == 0 {
            tarn_lake::arrow::array::new_empty_array(&metric.data_type)
        } else {
            let array = ScalarValue::iter_to_array((0..batch.num_rows()).map(|row| value(row, m)))
                .map_err(|e| Error::internal_from("the custom metrics", e))?;
            cast(&array, &metric.data_type)
                .map_err(|e| Error::internal_from("the custom metrics", e))?
        };
        columns.push(column);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::internal_from("the custom metrics", e))
}

/// The profile metrics with a column per aggregate and derived metric.
pub fn extend_profile(
    custom: &Custom,
    batch: &RecordBatch,
    values: &Values,
) -> Result<RecordBatch> {
    let keys = row_keys(batch, false)?;
    let metrics = custom.profile_metrics();
    extended(batch, &metrics, |row, m| {
        values
            .profile
            .get(&keys[row].0)
            .map_or_else(|| null_of(&metrics[m].data_type), |v| v[m].clone())
    })
}

/// The drift metrics with a column per drift metric.
pub fn extend_drift(custom: &Custom, batch: &RecordBatch, values: &Values) -> Result<RecordBatch> {
    let keys = row_keys(batch, true)?;
    let metrics = custom.drift_metrics();
    extended(batch, &metrics, |row, m| {
        values
            .drift
            .get(&keys[row])
            .map_or_else(|| null_of(&metrics[m].data_type), |v| v[m].clone())
    })
}

/// The metrics tables' schemas with a monitor's custom metrics.
pub fn schemas(custom: Option<&Custom>) -> (SchemaRef, SchemaRef) {
    let (profile, drift) = (profile_schema(), drift_schema());
    let Some(custom) = custom else {
        return (profile, drift);
    };
    let with = |schema: SchemaRef, metrics: Vec<&Metric>| {
        let mut fields = fields_of(&schema);
        fields.extend(
            metrics
                .iter()
                .map(|m| Field::new(&m.name, m.data_type.clone(), true)),
        );
        Arc::new(Schema::new(fields))
    };
    (
        with(profile, custom.profile_metrics()),
        with(drift, custom.drift_metrics()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tarn_lake::arrow::array::{Float64Array, StringArray};

    fn strings(values: &[&str]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    fn metric(
        name: &str,
        kind: CustomMetricType,
        definition: &str,
        inputs: &[&str],
    ) -> CustomMetric {
        CustomMetric {
            name: name.into(),
            definition: definition.into(),
            input_columns: inputs.iter().map(|s| s.to_string()).collect(),
            output_data_type:
                r#"{"name": "output", "type": "double", "nullable": true, "metadata": {}}"#.into(),
            metric_type: kind,
        }
    }

    fn rows(values: &[f64], regions: &[&str]) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("x", DataType::Float64, true),
                Field::new(format!("{SLICE_COLUMN}0"), DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Float64Array::from(values.to_vec())),
                strings(regions),
            ],
        )
        .expect("rows")
    }

    #[tokio::test]
    async fn aggregate_derived_and_drift_metrics_follow_their_groups() {
        let custom = Custom::of(&[
            metric(
                "sum_sq",
                CustomMetricType::Aggregate,
                "sum({{input_column}} * {{input_column}})",
                &["x"],
            ),
            metric("rms", CustomMetricType::Derived, "sqrt(sum_sq / 2)", &["x"]),
            metric(
                "rms_ratio",
                CustomMetricType::Drift,
                "{{current_df}}.rms / {{base_df}}.rms",
                &["x"],
            ),
        ])
        .expect("valid")
        .expect("some");
        let plan = Plan {
            granularities: Vec::new(),
            timestamp_col: None,
            model_id_col: None,
            quality: None,
            slicing_exprs: vec!["region".into()],
            only: None,
        };
        let source = [rows(&[1.0, 3.0, 2.0, 4.0], &["eu", "eu", "us", "us"])];
        let baseline = [rows(&[1.0, 1.0, 1.0, 1.0], &["eu", "eu", "us", "us"])];
        let values = compute(&custom, &plan, &source, Some(&baseline))
            .await
            .expect("values");
        let whole = RowKey {
            granularity: None,
            window: None,
            baseline: false,
            model_id: None,
            slice_key: None,
            slice_value: None,
            column_name: "x".into(),
        };
        let eu = RowKey {
            slice_key: Some("region".into()),
            slice_value: Some("eu".into()),
            ..whole.clone()
        };
        assert_eq!(values.profile[&whole][0], ScalarValue::Float64(Some(30.0)));
        assert_eq!(values.profile[&eu][0], ScalarValue::Float64(Some(10.0)));
        assert_eq!(
            values.profile[&eu][1],
            ScalarValue::Float64(Some(5f64.sqrt()))
        );
        // The baseline's eu slice: sum_sq 2, rms 1.
        assert_eq!(
            values.drift[&(eu, None)][0],
            ScalarValue::Float64(Some(5f64.sqrt()))
        );
    }

    #[test]
    fn bad_metrics_are_refused() {
        let taken = metric(
            "avg",
            CustomMetricType::Aggregate,
            "avg({{input_column}})",
            &["x"],
        );
        assert!(
            Custom::of(&[taken])
                .expect_err("taken")
                .message
                .contains("taken")
        );
        let no_input = metric("m", CustomMetricType::Aggregate, "count(*)", &["x"]);
        assert!(Custom::of(&[no_input]).is_err());
        let mut typed = metric(
            "m",
            CustomMetricType::Aggregate,
            "avg({{input_column}})",
            &["x"],
        );
        typed.output_data_type = "map<string,int>".into();
        assert!(
            Custom::of(&[typed])
                .expect_err("type")
                .message
                .contains("output_data_type")
        );
    }
}
