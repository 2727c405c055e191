//! The metrics tables' rows and their Arrow shape: Lakehouse Monitoring's columns and types
//! (`window` a struct of `start` and `end`, tests as structs of `statistic` and `pvalue`,
//! per-class metrics as structs of a map and two averages), plus tarn's own columns after
//! them (`drift_test`, `drift_score`, `drift_detected`, the dataset's share of drifted columns).

use std::sync::Arc;

use tarn_core::{Error, Result};
use tarn_lake::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Float64Builder, Int32Array, Int64Array,
    Int64Builder, ListBuilder, MapBuilder, MapFieldNames, StringArray, StringBuilder, StructArray,
    StructBuilder, TimestampMicrosecondArray,
};
use tarn_lake::arrow::buffer::NullBuffer;
use tarn_lake::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use tarn_lake::arrow::record_batch::RecordBatch;

use crate::drift::{ColumnDrift, TestResult};
use crate::metrics::{Classification, ColumnProfile, PerClass, Regression};
use crate::windows::Window;

/// The name of the row that describes the whole table rather than one column.
pub const TABLE_ROW: &str = ":table";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogType {
    Input,
    Baseline,
}

impl LogType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Input => "INPUT",
            Self::Baseline => "BASELINE",
        }
    }
}

/// What a group of rows is: its window at a granularity (none for a snapshot's or the
/// baseline's rows), model and slice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Group {
    pub granularity: Option<String>,
    pub window: Option<Window>,
    pub model_id: Option<String>,
    pub slice_key: Option<String>,
    pub slice_value: Option<String>,
}

/// One row of the profile metrics table.
#[derive(Debug, Clone)]
pub struct ProfileRow {
    pub group: Arc<Group>,
    pub log_type: LogType,
    pub column_name: String,
    pub data_type: String,
    pub profile: ColumnProfile,
    /// On the `:table` row: the columns holding at least one value.
    pub non_null_columns: Option<Vec<String>>,
    pub classification: Option<Classification>,
    pub regression: Option<Regression>,
}

/// One row of the drift metrics table.
#[derive(Debug, Clone)]
pub struct DriftRow {
    pub group: Arc<Group>,
    /// The window compared with: the previous one (CONSECUTIVE), none for the baseline.
    pub window_cmp: Option<Window>,
    pub baseline: bool,
    pub column_name: String,
    pub data_type: String,
    pub count_delta: Option<f64>,
    pub avg_delta: Option<f64>,
    pub percent_null_delta: Option<f64>,
    pub percent_zeros_delta: Option<f64>,
    pub percent_distinct_delta: Option<f64>,
    /// On the `:table` row: columns with values now and not before, and the other way.
    pub non_null_columns_delta: Option<(i32, i32)>,
    pub drift: ColumnDrift,
    /// On the `:table` row: the share of drifted columns and whether it reaches one half.
    pub share_of_drifted_columns: Option<f64>,
}

/// What every metrics row records about the refresh that made it.
#[derive(Debug, Clone, Copy)]
pub struct Provenance {
    pub source_version: i64,
    pub monitor_version: i64,
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn window_fields() -> Fields {
    Fields::from(vec![
        Field::new("start", timestamp_type(), true),
        Field::new("end", timestamp_type(), true),
    ])
}

fn test_fields() -> Fields {
    Fields::from(vec![
        Field::new("statistic", DataType::Float64, true),
        Field::new("pvalue", DataType::Float64, true),
    ])
}

fn map_names() -> MapFieldNames {
    MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    }
}

fn per_class_type() -> DataType {
    DataType::Struct(per_class_fields())
}

fn per_class_fields() -> Fields {
    let map = MapBuilder::new(
        Some(map_names()),
        StringBuilder::new(),
        Float64Builder::new(),
    )
    .finish();
    Fields::from(vec![
        Field::new("one_vs_all", map.data_type().clone(), true),
        Field::new("macro", DataType::Float64, true),
        Field::new("weighted", DataType::Float64, true),
    ])
}

fn confusion_fields() -> Fields {
    Fields::from(vec![
        Field::new("prediction", DataType::Utf8, true),
        Field::new("label", DataType::Utf8, true),
        Field::new("count", DataType::Int64, true),
    ])
}

fn frequent_fields() -> Fields {
    Fields::from(vec![
        Field::new("item", DataType::Utf8, true),
        Field::new("count", DataType::Int64, true),
    ])
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("element", item, true)))
}

/// The grouping columns both tables start with.
fn grouping_fields(drift: bool) -> Vec<Field> {
    let mut fields = vec![Field::new(
        "window",
        DataType::Struct(window_fields()),
        true,
    )];
    if drift {
        fields.push(Field::new(
            "window_cmp",
            DataType::Struct(window_fields()),
            true,
        ));
        fields.push(Field::new("drift_type", DataType::Utf8, false));
    } else {
        fields.push(Field::new("log_type", DataType::Utf8, false));
        fields.push(Field::new(
            "logging_table_commit_version",
            DataType::Int64,
            false,
        ));
    }
    fields.extend([
        Field::new("monitor_version", DataType::Int64, false),
        Field::new("granularity", DataType::Utf8, true),
        Field::new("model_id", DataType::Utf8, true),
        Field::new("slice_key", DataType::Utf8, true),
        Field::new("slice_value", DataType::Utf8, true),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("data_type", DataType::Utf8, true),
    ]);
    if drift {
        fields.push(Field::new(
            "logging_table_commit_version",
            DataType::Int64,
            false,
        ));
    }
    fields
}

pub fn profile_schema() -> SchemaRef {
    let mut fields = grouping_fields(false);
    let double = |name: &str| Field::new(name, DataType::Float64, true);
    let long = |name: &str| Field::new(name, DataType::Int64, true);
    fields.extend([
        long("count"),
        long("num_nulls"),
        double("avg"),
        double("min"),
        double("max"),
        double("stddev"),
        long("num_zeros"),
        long("num_nan"),
        Field::new("quantiles", list_of(DataType::Float64), true),
        double("median"),
        long("distinct_count"),
        long("min_length"),
        long("max_length"),
        double("avg_length"),
        Field::new(
            "frequent_items",
            list_of(DataType::Struct(frequent_fields())),
            true,
        ),
        Field::new("non_null_columns", list_of(DataType::Utf8), true),
        double("percent_nan"),
        double("percent_null"),
        double("percent_zeros"),
        double("percent_distinct"),
        double("accuracy_score"),
        Field::new("precision", per_class_type(), true),
        Field::new("recall", per_class_type(), true),
        Field::new("f1_score", per_class_type(), true),
        Field::new(
            "confusion_matrix",
            list_of(DataType::Struct(confusion_fields())),
            true,
        ),
        double("roc_auc_score"),
        double("log_loss"),
        double("mean_squared_error"),
        double("root_mean_squared_error"),
        double("mean_absolute_error"),
        double("mean_absolute_percentage_error"),
        double("r2_score"),
    ]);
    Arc::new(Schema::new(fields))
}

pub fn drift_schema() -> SchemaRef {
    let mut fields = grouping_fields(true);
    let double = |name: &str| Field::new(name, DataType::Float64, true);
    fields.extend([
        double("count_delta"),
        double("avg_delta"),
        double("percent_null_delta"),
        double("percent_zeros_delta"),
        double("percent_distinct_delta"),
        Field::new(
            "non_null_columns_delta",
            DataType::Struct(Fields::from(vec![
                Field::new("added", DataType::Int32, true),
                Field::new("missing", DataType::Int32, true),
            ])),
            true,
        ),
        double("js_distance"),
        Field::new("ks_test", DataType::Struct(test_fields()), true),
        double("wasserstein_distance"),
        double("population_stability_index"),
        Field::new("chi_squared_test", DataType::Struct(test_fields()), true),
        double("tv_distance"),
        double("l_infinity_distance"),
        Field::new("drift_test", DataType::Utf8, true),
        double("drift_score"),
        Field::new("drift_detected", DataType::Boolean, true),
        double("share_of_drifted_columns"),
        Field::new("dataset_drift", DataType::Boolean, true),
    ]);
    Arc::new(Schema::new(fields))
}

fn windows(windows: impl Iterator<Item = Option<Window>>) -> ArrayRef {
    let windows: Vec<Option<Window>> = windows.collect();
    let starts: TimestampMicrosecondArray = windows
        .iter()
        .map(|w| w.map(|w| w.start))
        .collect::<TimestampMicrosecondArray>()
        .with_timezone("UTC");
    let ends: TimestampMicrosecondArray = windows
        .iter()
        .map(|w| w.map(|w| w.end))
        .collect::<TimestampMicrosecondArray>()
        .with_timezone("UTC");
    let nulls = NullBuffer::from(windows.iter().map(Option::is_some).collect::<Vec<_>>());
    Arc::new(StructArray::new(
        window_fields(),
        vec![Arc::new(starts), Arc::new(ends)],
        Some(nulls),
    ))
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn doubles(values: impl Iterator<Item = Option<f64>>) -> ArrayRef {
    Arc::new(values.collect::<Float64Array>())
}

fn longs(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(values.collect::<Int64Array>())
}

fn tests(values: impl Iterator<Item = Option<TestResult>>) -> ArrayRef {
    let values: Vec<Option<TestResult>> = values.collect();
    let statistic = doubles(values.iter().map(|t| t.map(|t| t.statistic)));
    let pvalue = doubles(values.iter().map(|t| t.map(|t| t.pvalue)));
    let nulls = NullBuffer::from(values.iter().map(Option::is_some).collect::<Vec<_>>());
    Arc::new(StructArray::new(
        test_fields(),
        vec![statistic, pvalue],
        Some(nulls),
    ))
}

fn per_class<'a>(values: impl Iterator<Item = Option<&'a PerClass>>) -> ArrayRef {
    let values: Vec<Option<&PerClass>> = values.collect();
    let mut maps = MapBuilder::new(
        Some(map_names()),
        StringBuilder::new(),
        Float64Builder::new(),
    );
    for value in &values {
        match value {
            Some(metric) => {
                for (class, v) in &metric.one_vs_all {
                    maps.keys().append_value(class);
                    maps.values().append_value(*v);
                }
                maps.append(true).ok();
            }
            None => {
                maps.append(false).ok();
            }
        }
    }
    let macro_avg = doubles(values.iter().map(|m| m.map(|m| m.macro_avg)));
    let weighted = doubles(values.iter().map(|m| m.map(|m| m.weighted)));
    let nulls = NullBuffer::from(values.iter().map(Option::is_some).collect::<Vec<_>>());
    Arc::new(StructArray::new(
        per_class_fields(),
        vec![Arc::new(maps.finish()), macro_avg, weighted],
        Some(nulls),
    ))
}

/// A list column built by `append` for each item of each present list.
fn lists<B, T>(
    values: B,
    item: DataType,
    rows: impl Iterator<Item = Option<T>>,
    append: impl Fn(&mut B, T),
) -> ArrayRef
where
    B: tarn_lake::arrow::array::ArrayBuilder,
{
    let mut builder = ListBuilder::new(values).with_field(Field::new("element", item, true));
    for row in rows {
        match row {
            Some(items) => {
                append(builder.values(), items);
                builder.append(true);
            }
            None => builder.append(false),
        }
    }
    Arc::new(builder.finish())
}

fn string_lists<'a>(values: impl Iterator<Item = Option<&'a Vec<String>>>) -> ArrayRef {
    lists(StringBuilder::new(), DataType::Utf8, values, |b, items| {
        items.iter().for_each(|item| b.append_value(item))
    })
}

fn double_lists<'a>(values: impl Iterator<Item = Option<&'a Vec<f64>>>) -> ArrayRef {
    lists(
        Float64Builder::new(),
        DataType::Float64,
        values,
        |b, items| b.append_slice(items),
    )
}

/// A list of structs of (text, text?, count): frequent items or a confusion matrix.
fn counted_lists<'a>(
    fields: Fields,
    values: impl Iterator<Item = Option<Vec<(&'a str, Option<&'a str>, u64)>>>,
) -> ArrayRef {
    let two_texts = fields.len() == 3;
    let mut builder = ListBuilder::new(StructBuilder::from_fields(fields.clone(), 0))
        .with_field(Field::new("element", DataType::Struct(fields), true));
    for value in values {
        match value {
            Some(items) => {
                for (first, second, count) in items {
                    let entry = builder.values();
                    if let Some(builder) = entry.field_builder::<StringBuilder>(0) {
                        builder.append_value(first);
                    }
                    let count_field = if two_texts { 2 } else { 1 };
                    if two_texts && let Some(builder) = entry.field_builder::<StringBuilder>(1) {
                        builder.append_option(second);
                    }
                    if let Some(builder) = entry.field_builder::<Int64Builder>(count_field) {
                        builder.append_value(count as i64);
                    }
                    entry.append(true);
                }
                builder.append(true);
            }
            None => builder.append(false),
        }
    }
    Arc::new(builder.finish())
}

fn as_i64(value: Option<u64>) -> Option<i64> {
    value.map(|v| v as i64)
}

/// The profile metrics table's rows as one batch.
pub fn profile_batch(rows: &[ProfileRow], provenance: Provenance) -> Result<RecordBatch> {
    fn p(row: &ProfileRow) -> &ColumnProfile {
        &row.profile
    }
    fn class(row: &ProfileRow) -> Option<&Classification> {
        row.classification.as_ref()
    }
    fn reg(row: &ProfileRow) -> Option<&Regression> {
        row.regression.as_ref()
    }
    let columns: Vec<ArrayRef> = vec![
        windows(rows.iter().map(|r| r.group.window)),
        strings(rows.iter().map(|r| Some(r.log_type.as_str()))),
        longs(rows.iter().map(|_| Some(provenance.source_version))),
        longs(rows.iter().map(|_| Some(provenance.monitor_version))),
        strings(rows.iter().map(|r| r.group.granularity.as_deref())),
        strings(rows.iter().map(|r| r.group.model_id.as_deref())),
        strings(rows.iter().map(|r| r.group.slice_key.as_deref())),
        strings(rows.iter().map(|r| r.group.slice_value.as_deref())),
        strings(rows.iter().map(|r| Some(r.column_name.as_str()))),
        strings(rows.iter().map(|r| Some(r.data_type.as_str()))),
        longs(rows.iter().map(|r| Some(p(r).count as i64))),
        longs(rows.iter().map(|r| Some(p(r).num_nulls as i64))),
        doubles(rows.iter().map(|r| p(r).avg)),
        doubles(rows.iter().map(|r| p(r).min)),
        doubles(rows.iter().map(|r| p(r).max)),
        doubles(rows.iter().map(|r| p(r).stddev)),
        longs(rows.iter().map(|r| as_i64(p(r).num_zeros))),
        longs(rows.iter().map(|r| as_i64(p(r).num_nan))),
        double_lists(rows.iter().map(|r| p(r).quantiles.as_ref())),
        doubles(rows.iter().map(|r| p(r).median)),
        longs(rows.iter().map(|r| as_i64(p(r).distinct_count))),
        longs(rows.iter().map(|r| as_i64(p(r).min_length))),
        longs(rows.iter().map(|r| as_i64(p(r).max_length))),
        doubles(rows.iter().map(|r| p(r).avg_length)),
        counted_lists(
            frequent_fields(),
            rows.iter().map(|r| {
                p(r).frequent_items.as_ref().map(|items| {
                    items
                        .iter()
                        .map(|(item, count)| (item.as_str(), None, *count))
                        .collect()
                })
            }),
        ),
        string_lists(rows.iter().map(|r| r.non_null_columns.as_ref())),
        doubles(rows.iter().map(|r| p(r).percent_nan())),
        doubles(rows.iter().map(|r| p(r).percent_null())),
        doubles(rows.iter().map(|r| p(r).percent_zeros())),
        doubles(rows.iter().map(|r| p(r).percent_distinct())),
        doubles(rows.iter().map(|r| class(r).map(|c| c.accuracy))),
        per_class(rows.iter().map(|r| class(r).map(|c| &c.precision))),
        per_class(rows.iter().map(|r| class(r).map(|c| &c.recall))),
        per_class(rows.iter().map(|r| class(r).map(|c| &c.f1))),
        counted_lists(
            confusion_fields(),
            rows.iter().map(|r| {
                class(r).map(|c| {
                    c.confusion
                        .iter()
                        .map(|(p, l, n)| (p.as_str(), Some(l.as_str()), *n))
                        .collect()
                })
            }),
        ),
        doubles(rows.iter().map(|r| class(r).and_then(|c| c.roc_auc))),
        doubles(rows.iter().map(|r| class(r).and_then(|c| c.log_loss))),
        doubles(rows.iter().map(|r| reg(r).map(|m| m.mean_squared_error))),
        doubles(
            rows.iter()
                .map(|r| reg(r).map(|m| m.root_mean_squared_error)),
        ),
        doubles(rows.iter().map(|r| reg(r).map(|m| m.mean_absolute_error))),
        doubles(
            rows.iter()
                .map(|r| reg(r).map(|m| m.mean_absolute_percentage_error)),
        ),
        doubles(rows.iter().map(|r| reg(r).map(|m| m.r2_score))),
    ];
    RecordBatch::try_new(profile_schema(), columns)
        .map_err(|e| Error::internal_from("cannot assemble the profile metrics", e))
}

/// The drift metrics table's rows as one batch.
pub fn drift_batch(rows: &[DriftRow], provenance: Provenance) -> Result<RecordBatch> {
    fn d(row: &DriftRow) -> &ColumnDrift {
        &row.drift
    }
    let added: Vec<Option<(i32, i32)>> = rows.iter().map(|r| r.non_null_columns_delta).collect();
    let delta = Arc::new(StructArray::new(
        match drift_schema()
            .field_with_name("non_null_columns_delta")
            .map(|f| f.data_type().clone())
        {
            Ok(DataType::Struct(fields)) => fields,
            _ => {
                return Err(Error::internal(
                    "the drift schema lost non_null_columns_delta",
                ));
            }
        },
        vec![
            Arc::new(added.iter().map(|a| a.map(|a| a.0)).collect::<Int32Array>()) as ArrayRef,
            Arc::new(added.iter().map(|a| a.map(|a| a.1)).collect::<Int32Array>()),
        ],
        Some(NullBuffer::from(
            added.iter().map(Option::is_some).collect::<Vec<_>>(),
        )),
    ));
    let columns: Vec<ArrayRef> = vec![
        windows(rows.iter().map(|r| r.group.window)),
        windows(rows.iter().map(|r| r.window_cmp)),
        strings(rows.iter().map(|r| {
            Some(if r.baseline {
                "BASELINE"
            } else {
                "CONSECUTIVE"
            })
        })),
        longs(rows.iter().map(|_| Some(provenance.monitor_version))),
        strings(rows.iter().map(|r| r.group.granularity.as_deref())),
        strings(rows.iter().map(|r| r.group.model_id.as_deref())),
        strings(rows.iter().map(|r| r.group.slice_key.as_deref())),
        strings(rows.iter().map(|r| r.group.slice_value.as_deref())),
        strings(rows.iter().map(|r| Some(r.column_name.as_str()))),
        strings(rows.iter().map(|r| Some(r.data_type.as_str()))),
        longs(rows.iter().map(|_| Some(provenance.source_version))),
        doubles(rows.iter().map(|r| r.count_delta)),
        doubles(rows.iter().map(|r| r.avg_delta)),
        doubles(rows.iter().map(|r| r.percent_null_delta)),
        doubles(rows.iter().map(|r| r.percent_zeros_delta)),
        doubles(rows.iter().map(|r| r.percent_distinct_delta)),
        delta,
        doubles(rows.iter().map(|r| d(r).js_distance)),
        tests(rows.iter().map(|r| d(r).ks_test)),
        doubles(rows.iter().map(|r| d(r).wasserstein_distance)),
        doubles(rows.iter().map(|r| d(r).population_stability_index)),
        tests(rows.iter().map(|r| d(r).chi_squared_test)),
        doubles(rows.iter().map(|r| d(r).tv_distance)),
        doubles(rows.iter().map(|r| d(r).l_infinity_distance)),
        strings(rows.iter().map(|r| d(r).test.map(|t| t.as_str()))),
        doubles(rows.iter().map(|r| d(r).score)),
        Arc::new(rows.iter().map(|r| d(r).drifted).collect::<BooleanArray>()),
        doubles(rows.iter().map(|r| r.share_of_drifted_columns)),
        Arc::new(
            rows.iter()
                .map(|r| r.share_of_drifted_columns.map(|share| share >= 0.5))
                .collect::<BooleanArray>(),
        ),
    ];
    RecordBatch::try_new(drift_schema(), columns)
        .map_err(|e| Error::internal_from("cannot assemble the drift metrics", e))
}
