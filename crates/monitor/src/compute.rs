//! A refresh's arithmetic, apart from where the rows come from and where the metrics go: the
//! source's rows are grouped by window (per granularity), model and slice, each group's
//! columns are profiled, and each group is compared with the same group in the previous window
//! (CONSECUTIVE) and in the baseline (BASELINE). Work is spread over the machine's cores by
//! (group, column).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tarn_core::monitors::{Granularity, ProblemType};
use tarn_core::{Error, Result};
use tarn_lake::arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray};
use tarn_lake::arrow::compute::cast;
use tarn_lake::arrow::datatypes::{
    DataType, Date32Type, Date64Type, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use tarn_lake::arrow::record_batch::RecordBatch;

use crate::drift::{self, ColumnDrift};
use crate::metrics::{self, Classification, ColumnProfile, Regression};
use crate::tables::{DriftRow, Group, LogType, ProfileRow, TABLE_ROW};
use crate::windows::{Window, previous, window_of};

/// How many values of a slicing column get a slice each (the most frequent).
pub const MAX_SLICE_VALUES: usize = 100;
/// The prefix of the columns holding slicing expressions' values in the source query.
pub const SLICE_COLUMN: &str = "__tarn_slice_";

/// A name as the SQL dialect quotes it.
pub fn quoted(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// What to compute, from the monitor's settings.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Granularities by their names, for windowed profiles; empty for a snapshot.
    pub granularities: Vec<(String, Granularity)>,
    pub timestamp_col: Option<String>,
    pub model_id_col: Option<String>,
    pub quality: Option<Quality>,
    /// The slicing expressions, in the order of the source's slice columns.
    pub slicing_exprs: Vec<String>,
    /// For an incremental refresh, the windows to recompute by granularity: the others read
    /// are only compared with. None: every window, and the baseline's profile.
    pub only: Option<BTreeMap<String, BTreeSet<Window>>>,
}

/// The columns model quality is computed from.
#[derive(Debug, Clone)]
pub struct Quality {
    pub problem_type: ProblemType,
    pub prediction_col: String,
    pub label_col: String,
    pub prediction_proba_col: Option<String>,
}

/// A number column as the query's batches held it: the millions of values are not copied
/// (a copy was a third of reading a table).
#[derive(Default)]
struct Numbers {
    chunks: Vec<Float64Array>,
    /// The row each chunk starts at.
    starts: Vec<usize>,
    rows: usize,
}

impl Numbers {
    /// The values of `rows` (ascending, as groups hold them) in their order: None for a null.
    fn at<'a>(&'a self, rows: &'a [u32]) -> impl Iterator<Item = Option<f64>> + 'a {
        let mut chunk = 0;
        rows.iter().map(move |row| {
            let row = *row as usize;
            while self
                .starts
                .get(chunk + 1)
                .is_some_and(|start| row >= *start)
            {
                chunk += 1;
            }
            let array = &self.chunks[chunk];
            let at = row - self.starts[chunk];
            array.is_valid(at).then(|| array.value(at))
        })
    }

    /// Calls `take` with each value of `rows` (ascending): a chunk at a time when they are
    /// every row.
    fn for_each(&self, rows: &[u32], mut take: impl FnMut(Option<f64>)) {
        if rows.len() < self.rows {
            return self.at(rows).for_each(take);
        }
        for chunk in &self.chunks {
            match chunk.nulls() {
                None => chunk.values().iter().for_each(|value| take(Some(*value))),
                Some(_) => chunk.iter().for_each(&mut take),
            }
        }
    }
}

/// The code of a null in a text column.
const NULL: u32 = u32::MAX;

/// A text column as a code per row into its distinct values (`NULL` for a null).
struct Codes {
    codes: Vec<u32>,
    values: Vec<String>,
}

impl Codes {
    fn get(&self, row: usize) -> Option<u32> {
        let code = self.codes[row];
        (code != NULL).then_some(code)
    }

    fn text(&self, row: usize) -> Option<&str> {
        self.get(row)
            .map(|code| self.values[code as usize].as_str())
    }
}

/// A column as the groups read it.
enum Values {
    Numeric(Numbers),
    Text(Codes),
    /// Counted (rows, nulls) only: timestamps, dates, nested values; true for a null.
    Opaque(Vec<bool>),
}

struct Column {
    name: String,
    data_type: String,
    values: Values,
    /// Whether drift is computed for it (not the timestamp or the model id).
    drifts: bool,
}

/// The rows of a source (the monitored table or its baseline), decoded once into compact
/// columns (numbers as f64, text as codes) so the groups read them cheaply.
pub struct Source {
    rows: usize,
    columns: Vec<Column>,
    times: Option<Vec<Option<i64>>>,
    models: Option<Codes>,
    slices: Vec<(String, Codes)>,
    quality: Option<QualityValues>,
}

enum QualityValues {
    Classification {
        predictions: Codes,
        labels: Codes,
        probabilities: Option<Numbers>,
    },
    Regression {
        predictions: Numbers,
        labels: Numbers,
    },
}

/// Spark's name for an Arrow type, as the metrics tables' `data_type` shows it.
pub fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "bigint".into(),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => "bigint".into(),
        DataType::Float16 | DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("decimal({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp".into(),
        DataType::Timestamp(_, None) => "timestamp_ntz".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "binary".into(),
        DataType::Dictionary(_, value) => type_name(value),
        other => other.to_string().to_ascii_lowercase(),
    }
}

pub fn is_numeric(data_type: &DataType) -> bool {
    data_type.is_numeric() && !matches!(data_type, DataType::Float16)
}

pub fn is_text(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean => true,
        DataType::Dictionary(_, value) => is_text(value),
        _ => false,
    }
}

pub fn is_time(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64
    )
}

fn cast_error(column: &str, err: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::internal_from(format!("cannot read column '{column}'"), err)
}

/// Builds a number column batch by batch.
#[derive(Default)]
struct NumbersBuilder(Numbers);

impl NumbersBuilder {
    fn push(&mut self, array: &ArrayRef, column: &str) -> Result<()> {
        let cast = cast(array, &DataType::Float64).map_err(|e| cast_error(column, e))?;
        let numbers: &Float64Array = cast.as_primitive();
        if !numbers.is_empty() {
            self.0.starts.push(self.0.rows);
            self.0.rows += numbers.len();
            self.0.chunks.push(numbers.clone());
        }
        Ok(())
    }
}

/// Builds a text column's codes batch by batch.
#[derive(Default)]
struct CodesBuilder {
    index: HashMap<String, u32>,
    values: Vec<String>,
    codes: Vec<u32>,
}

impl CodesBuilder {
    fn push(&mut self, array: &ArrayRef, column: &str) -> Result<()> {
        let cast = cast(array, &DataType::Utf8).map_err(|e| cast_error(column, e))?;
        let text: &StringArray = cast.as_string();
        self.codes.reserve(text.len());
        for value in text.iter() {
            let code = match value {
                None => NULL,
                Some(value) => match self.index.get(value) {
                    Some(code) => *code,
                    None => {
                        let code = self.values.len() as u32;
                        self.index.insert(value.to_string(), code);
                        self.values.push(value.to_string());
                        code
                    }
                },
            };
            self.codes.push(code);
        }
        Ok(())
    }

    fn finish(self) -> Codes {
        Codes {
            codes: self.codes,
            values: self.values,
        }
    }

    /// Only the `keep` most frequent values keep a code (ties by value); the others become
    /// null.
    fn finish_top(self, keep: usize) -> Codes {
        let mut counts = vec![0u64; self.values.len()];
        for code in &self.codes {
            if *code != NULL {
                counts[*code as usize] += 1;
            }
        }
        let mut ranked: Vec<u32> = (0..self.values.len() as u32).collect();
        ranked.sort_by(|a, b| {
            counts[*b as usize]
                .cmp(&counts[*a as usize])
                .then_with(|| self.values[*a as usize].cmp(&self.values[*b as usize]))
        });
        ranked.truncate(keep);
        let mut recode = vec![NULL; self.values.len()];
        for (new, old) in ranked.iter().enumerate() {
            recode[*old as usize] = new as u32;
        }
        Codes {
            codes: self
                .codes
                .iter()
                .map(|code| {
                    if *code == NULL {
                        NULL
                    } else {
                        recode[*code as usize]
                    }
                })
                .collect(),
            values: ranked
                .iter()
                .map(|old| self.values[*old as usize].clone())
                .collect(),
        }
    }
}

/// Builds a column of any kind batch by batch.
enum ValuesBuilder {
    Numeric(NumbersBuilder),
    Text(CodesBuilder),
    Opaque(Vec<bool>),
}

impl ValuesBuilder {
    fn for_type(data_type: &DataType) -> Self {
        if is_numeric(data_type) {
            Self::Numeric(NumbersBuilder::default())
        } else if is_text(data_type) {
            Self::Text(CodesBuilder::default())
        } else {
            Self::Opaque(Vec::new())
        }
    }

    fn push(&mut self, array: &ArrayRef, column: &str) -> Result<()> {
        match self {
            Self::Numeric(builder) => builder.push(array, column),
            Self::Text(builder) => builder.push(array, column),
            Self::Opaque(nulls) => {
                nulls.extend((0..array.len()).map(|row| array.is_null(row)));
                Ok(())
            }
        }
    }

    fn finish(self) -> Values {
        match self {
            Self::Numeric(builder) => Values::Numeric(builder.0),
            Self::Text(builder) => Values::Text(builder.finish()),
            Self::Opaque(nulls) => Values::Opaque(nulls),
        }
    }
}

/// Microseconds since the epoch of a timestamp or date column.
pub fn micros(array: &ArrayRef, column: &str) -> Result<Vec<Option<i64>>> {
    let scaled = |values: Vec<Option<i64>>, scale: fn(i64) -> i64| {
        values.into_iter().map(|v| v.map(scale)).collect()
    };
    Ok(match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => scaled(
            array.as_primitive::<TimestampSecondType>().iter().collect(),
            |v| v * 1_000_000,
        ),
        DataType::Timestamp(TimeUnit::Millisecond, _) => scaled(
            array
                .as_primitive::<TimestampMillisecondType>()
                .iter()
                .collect(),
            |v| v * 1_000,
        ),
        DataType::Timestamp(TimeUnit::Microsecond, _) => array
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => scaled(
            array
                .as_primitive::<TimestampNanosecondType>()
                .iter()
                .collect(),
            |v| v.div_euclid(1_000),
        ),
        DataType::Date32 => array
            .as_primitive::<Date32Type>()
            .iter()
            .map(|v| v.map(|days| i64::from(days) * 86_400_000_000))
            .collect(),
        DataType::Date64 => scaled(array.as_primitive::<Date64Type>().iter().collect(), |v| {
            v * 1_000
        }),
        other => {
            return Err(Error::invalid(format!(
                "Column '{column}' is {other}: a timestamp column must be a timestamp or a date"
            )));
        }
    })
}

/// What a source is decoded into, column by column.
enum Role {
    Profiled(usize),
    Slice(usize),
    Time,
    Model,
    Prediction,
    Label,
    Probability,
}

impl Source {
    /// Decodes a query's rows (the table's columns and, after them, one text column per slicing
    /// expression, `__tarn_slice_<i>`), a batch at a time: each batch is dropped once decoded,
    /// so the rows are held about once.
    pub fn decode(
        schema: &SchemaRef,
        batches: impl IntoIterator<Item = RecordBatch>,
        plan: &Plan,
        baseline: bool,
    ) -> Result<Self> {
        let position = |name: &str| -> Result<usize> {
            schema
                .index_of(name)
                .map_err(|_| Error::invalid(format!("The monitored table has no column '{name}'")))
        };
        let mut roles: Vec<(usize, Role)> = Vec::new();
        let mut columns: Vec<(String, String, bool, ValuesBuilder)> = Vec::new();
        let mut slices: Vec<(String, CodesBuilder)> = Vec::new();
        for (index, field) in schema.fields().iter().enumerate() {
            let name = field.name();
            if let Some(slice) = name.strip_prefix(SLICE_COLUMN) {
                let slice: usize = slice.parse().unwrap_or(usize::MAX);
                let key = plan.slicing_exprs.get(slice).cloned().unwrap_or_default();
                roles.push((index, Role::Slice(slices.len())));
                slices.push((key, CodesBuilder::default()));
                continue;
            }
            if plan.timestamp_col.as_deref() == Some(name.as_str()) {
                continue;
            }
            let is_model = plan.model_id_col.as_deref() == Some(name.as_str());
            roles.push((index, Role::Profiled(columns.len())));
            columns.push((
                name.clone(),
                type_name(field.data_type()),
                !is_model,
                ValuesBuilder::for_type(field.data_type()),
            ));
        }
        let mut times: Option<Vec<Option<i64>>> = None;
        let mut models: Option<CodesBuilder> = None;
        if !baseline {
            if let Some(name) = &plan.timestamp_col {
                roles.push((position(name)?, Role::Time));
                times = Some(Vec::new());
            }
            if let Some(name) = &plan.model_id_col {
                roles.push((position(name)?, Role::Model));
                models = Some(CodesBuilder::default());
            }
        }
        let (mut predictions, mut labels, mut probabilities) = (
            ValuesBuilder::Opaque(Vec::new()),
            ValuesBuilder::Opaque(Vec::new()),
            None,
        );
        let quality = plan.quality.as_ref().filter(|_| !baseline);
        if let Some(quality) = quality {
            let (prediction, label) = match quality.problem_type {
                ProblemType::Classification => (
                    ValuesBuilder::Text(CodesBuilder::default()),
                    ValuesBuilder::Text(CodesBuilder::default()),
                ),
                ProblemType::Regression => (
                    ValuesBuilder::Numeric(NumbersBuilder::default()),
                    ValuesBuilder::Numeric(NumbersBuilder::default()),
                ),
            };
            (predictions, labels) = (prediction, label);
            roles.push((position(&quality.prediction_col)?, Role::Prediction));
            roles.push((position(&quality.label_col)?, Role::Label));
            if let Some(name) = &quality.prediction_proba_col {
                roles.push((position(name)?, Role::Probability));
                probabilities = Some(NumbersBuilder::default());
            }
        }
        let mut rows = 0;
        for batch in batches {
            rows += batch.num_rows();
            for (index, role) in &roles {
                let array = batch.column(*index);
                let name = schema.field(*index).name();
                match role {
                    Role::Profiled(column) => columns[*column].3.push(array, name)?,
                    Role::Slice(slice) => slices[*slice].1.push(array, name)?,
                    Role::Time => {
                        if let Some(times) = times.as_mut() {
                            times.extend(micros(array, name)?);
                        }
                    }
                    Role::Model => {
                        if let Some(models) = models.as_mut() {
                            models.push(array, name)?;
                        }
                    }
                    Role::Prediction => predictions.push(array, name)?,
                    Role::Label => labels.push(array, name)?,
                    Role::Probability => {
                        if let Some(probabilities) = probabilities.as_mut() {
                            probabilities.push(array, name)?;
                        }
                    }
                }
            }
        }
        let quality = match (predictions.finish(), labels.finish()) {
            (Values::Text(predictions), Values::Text(labels)) => {
                Some(QualityValues::Classification {
                    predictions,
                    labels,
                    probabilities: probabilities.map(|p| p.0),
                })
            }
            (Values::Numeric(predictions), Values::Numeric(labels)) => {
                Some(QualityValues::Regression {
                    predictions,
                    labels,
                })
            }
            _ => None,
        };
        Ok(Self {
            rows,
            columns: columns
                .into_iter()
                .map(|(name, data_type, drifts, values)| Column {
                    name,
                    data_type,
                    values: values.finish(),
                    drifts,
                })
                .collect(),
            times,
            models: models.map(CodesBuilder::finish),
            slices: slices
                .into_iter()
                .map(|(key, codes)| (key, codes.finish_top(MAX_SLICE_VALUES)))
                .collect(),
            quality,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// What a group of rows is within a window: a model (None: all) and a slice (None: all).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Member {
    model: Option<u32>,
    slice: Option<(usize, u32)>,
}

/// A column summarized in one group: its profile, and what drift compares.
struct Summary {
    profile: ColumnProfile,
    sample: Sample,
}

enum Sample {
    /// Non-null, non-NaN values in order.
    Numeric(Vec<f64>),
    Text(HashMap<String, u64>),
    None,
}

impl Sample {
    /// The values drift compares: finite numbers only, as Evidently drops NaN and infinities.
    fn finite(values: &[f64]) -> &[f64] {
        let start = values.partition_point(|v| *v == f64::NEG_INFINITY);
        let end = values.partition_point(|v| *v != f64::INFINITY);
        &values[start..end.max(start)]
    }
}

/// A group's summaries, one per column, and its model quality.
struct GroupSummary {
    group: Arc<Group>,
    rows: u64,
    columns: Vec<Summary>,
    classification: Option<Classification>,
    regression: Option<Regression>,
}

impl GroupSummary {
    /// Roughly the memory its samples hold.
    fn bytes(&self) -> usize {
        self.columns
            .iter()
            .map(|column| match &column.sample {
                Sample::Numeric(values) => values.len() * size_of::<f64>(),
                Sample::Text(counts) => counts
                    .keys()
                    .map(|value| value.len() + size_of::<(String, u64)>())
                    .sum(),
                Sample::None => 0,
            })
            .sum()
    }
}

/// A group by what it is, as text: its model and slice. Codes are not used as they differ
/// between reads of a source.
type GroupKey = (Option<String>, Option<(String, String)>);

fn key_of(group: &Group) -> GroupKey {
    let slice = match (&group.slice_key, &group.slice_value) {
        (Some(key), Some(value)) => Some((key.clone(), value.clone())),
        _ => None,
    };
    (group.model_id.clone(), slice)
}

/// The summaries of a window's groups (or the baseline's), with the names of the columns
/// they follow: what later windows are compared with, in the same refresh or, kept, in the
/// next one.
pub struct Summaries {
    columns: Vec<String>,
    groups: HashMap<GroupKey, GroupSummary>,
}

impl Summaries {
    fn of(source: &Source, groups: BTreeMap<Member, GroupSummary>) -> Self {
        Self {
            columns: source.columns.iter().map(|c| c.name.clone()).collect(),
            groups: groups
                .into_values()
                .map(|summary| (key_of(&summary.group), summary))
                .collect(),
        }
    }

    fn get(&self, key: &GroupKey) -> Option<&GroupSummary> {
        self.groups.get(key)
    }

    /// Roughly the memory they hold.
    pub fn bytes(&self) -> usize {
        self.groups.values().map(GroupSummary::bytes).sum()
    }
}

fn summarize(column: &Column, rows: &[u32]) -> Summary {
    let count = rows.len() as u64;
    match &column.values {
        Values::Numeric(numbers) => {
            let (mut nulls, mut nan) = (0u64, 0u64);
            let present = metrics::sorted_numbers(rows.len(), |present| {
                numbers.for_each(rows, |value| match value {
                    None => nulls += 1,
                    Some(value) if value.is_nan() => nan += 1,
                    Some(value) => present.push(value),
                })
            });
            Summary {
                profile: metrics::numeric_profile(count, nulls, nan, &present),
                sample: Sample::Numeric(present),
            }
        }
        Values::Text(codes) => {
            let mut nulls = 0u64;
            let mut counts: HashMap<u32, u64> = HashMap::new();
            for row in rows {
                match codes.get(*row as usize) {
                    None => nulls += 1,
                    Some(code) => *counts.entry(code).or_default() += 1,
                }
            }
            let counts: HashMap<String, u64> = counts
                .into_iter()
                .map(|(code, n)| (codes.values[code as usize].clone(), n))
                .collect();
            Summary {
                profile: metrics::text_profile(count, nulls, &counts),
                sample: Sample::Text(counts),
            }
        }
        Values::Opaque(nulls) => Summary {
            profile: ColumnProfile {
                count,
                num_nulls: rows.iter().filter(|r| nulls[**r as usize]).count() as u64,
                ..ColumnProfile::default()
            },
            sample: Sample::None,
        },
    }
}

fn quality(source: &Source, rows: &[u32]) -> (Option<Classification>, Option<Regression>) {
    match &source.quality {
        None => (None, None),
        Some(QualityValues::Classification {
            predictions,
            labels,
            probabilities,
        }) => {
            let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(rows.len());
            let mut scores: Vec<f64> = Vec::new();
            let mut scores_at = probabilities.as_ref().map(|p| p.at(rows));
            for row in rows.iter().map(|r| *r as usize) {
                // Outer None: no probability column; inner: a null score.
                let score = scores_at.as_mut().map(|at| at.next().flatten());
                let (Some(prediction), Some(label)) = (predictions.text(row), labels.text(row))
                else {
                    continue;
                };
                match score {
                    Some(Some(score)) => scores.push(score),
                    Some(None) => continue,
                    None => {}
                }
                pairs.push((prediction, label));
            }
            let scores = probabilities.as_ref().map(|_| scores.as_slice());
            (metrics::classification(&pairs, scores), None)
        }
        Some(QualityValues::Regression {
            predictions,
            labels,
        }) => {
            let pairs: Vec<(f64, f64)> = predictions
                .at(rows)
                .zip(labels.at(rows))
                .filter_map(|(prediction, label)| Some((prediction?, label?)))
                .collect();
            (None, metrics::regression(&pairs))
        }
    }
}

/// Runs `work(i)` for i in 0..count on every core, results in order.
fn parallel<T: Send>(count: usize, work: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(count.max(1));
    if threads <= 1 {
        return (0..count).map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, T)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        done.push((i, work(i)));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            // A worker that panicked fails the refresh rather than leave its share out.
            .flat_map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, result)| result).collect()
}

/// Splits a window's rows into its groups: all rows, each model, each slice value, and each
/// model's slices.
fn members(source: &Source, rows: &[u32]) -> BTreeMap<Member, Vec<u32>> {
    let all = Member {
        model: None,
        slice: None,
    };
    let mut groups = BTreeMap::from([(all, rows.to_vec())]);
    if source.models.is_none() && source.slices.is_empty() {
        return groups;
    }
    for row in rows {
        let index = *row as usize;
        let model = source.models.as_ref().and_then(|m| m.get(index));
        if model.is_some() {
            groups
                .entry(Member { model, slice: None })
                .or_default()
                .push(*row);
        }
        let models: &[Option<u32>] = if model.is_some() {
            &[None, model]
        } else {
            &[None]
        };
        for model in models {
            for (slice, (_, coded)) in source.slices.iter().enumerate() {
                if let Some(value) = coded.get(index) {
                    groups
                        .entry(Member {
                            model: *model,
                            slice: Some((slice, value)),
                        })
                        .or_default()
                        .push(*row);
                }
            }
        }
    }
    groups
}

fn group_of(
    source: &Source,
    member: &Member,
    granularity: Option<&str>,
    window: Option<Window>,
) -> Group {
    let (slice_key, slice_value) = match member.slice {
        Some((slice, value)) => {
            let (key, coded) = &source.slices[slice];
            (
                Some(key.clone()),
                Some(coded.values[value as usize].clone()),
            )
        }
        None => (None, None),
    };
    Group {
        granularity: granularity.map(str::to_string),
        window,
        model_id: member.model.and_then(|m| {
            source
                .models
                .as_ref()
                .map(|models| models.values[m as usize].clone())
        }),
        slice_key,
        slice_value,
    }
}

/// Summarizes each group's columns, spread over the cores.
fn summarize_groups(
    source: &Source,
    groups: &BTreeMap<Member, Vec<u32>>,
    granularity: Option<&str>,
    window: Option<Window>,
) -> BTreeMap<Member, GroupSummary> {
    let members: Vec<(&Member, &Vec<u32>)> = groups.iter().collect();
    let columns = source.columns.len();
    let mut summaries = parallel(members.len() * (columns + 1), |i| {
        let (_, rows) = members[i / (columns + 1)];
        match source.columns.get(i % (columns + 1)) {
            Some(column) => (Some(summarize(column, rows)), None),
            None => (None, Some(quality(source, rows))),
        }
    })
    .into_iter();
    let mut out = BTreeMap::new();
    for (member, rows) in members {
        let mut summaries_of_group = Vec::with_capacity(columns);
        let mut quality = (None, None);
        for _ in 0..=columns {
            match summaries.next() {
                Some((Some(summary), _)) => summaries_of_group.push(summary),
                Some((None, Some(found))) => quality = found,
                _ => {}
            }
        }
        out.insert(
            member.clone(),
            GroupSummary {
                group: Arc::new(group_of(source, member, granularity, window)),
                rows: rows.len() as u64,
                columns: summaries_of_group,
                classification: quality.0,
                regression: quality.1,
            },
        );
    }
    out
}

fn profile_rows(source: &Source, summary: &GroupSummary, log_type: LogType) -> Vec<ProfileRow> {
    let mut rows = Vec::with_capacity(source.columns.len() + 1);
    let non_null: Vec<String> = source
        .columns
        .iter()
        .zip(&summary.columns)
        .filter(|(_, s)| s.profile.count > s.profile.num_nulls)
        .map(|(c, _)| c.name.clone())
        .collect();
    rows.push(ProfileRow {
        group: summary.group.clone(),
        log_type,
        column_name: TABLE_ROW.into(),
        data_type: "struct".into(),
        profile: ColumnProfile {
            count: summary.rows,
            ..ColumnProfile::default()
        },
        non_null_columns: Some(non_null),
        classification: summary.classification.clone(),
        regression: summary.regression.clone(),
    });
    for (column, column_summary) in source.columns.iter().zip(&summary.columns) {
        rows.push(ProfileRow {
            group: summary.group.clone(),
            log_type,
            column_name: column.name.clone(),
            data_type: column.data_type.clone(),
            profile: column_summary.profile.clone(),
            non_null_columns: None,
            classification: None,
            regression: None,
        });
    }
    rows
}

fn difference(current: Option<f64>, compared: Option<f64>) -> Option<f64> {
    Some(current? - compared?)
}

/// Drift of each of a group's columns against `compared` (the same group earlier, or the
/// baseline's), and the `:table` row.
fn drift_rows(
    source: &Source,
    current: &GroupSummary,
    compared_columns: &[String],
    compared: &GroupSummary,
    window_cmp: Option<Window>,
    baseline: bool,
) -> Vec<DriftRow> {
    let pairs: Vec<(usize, Option<usize>)> = source
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.drifts)
        .map(|(i, c)| {
            (
                i,
                compared_columns.iter().position(|other| *other == c.name),
            )
        })
        .collect();
    let drifts = parallel(pairs.len(), |i| {
        let (column, other) = pairs[i];
        let Some(other) = other else {
            return ColumnDrift::default();
        };
        match (
            &current.columns[column].sample,
            &compared.columns[other].sample,
        ) {
            (Sample::Numeric(now), Sample::Numeric(before)) => {
                drift::numeric(Sample::finite(before), Sample::finite(now))
            }
            (Sample::Text(now), Sample::Text(before)) => drift::categorical(before, now),
            _ => ColumnDrift::default(),
        }
    });
    let mut rows = Vec::with_capacity(pairs.len() + 1);
    let (mut judged, mut drifted) = (0usize, 0usize);
    for ((column, other), drift) in pairs.into_iter().zip(drifts) {
        if let Some(verdict) = drift.drifted {
            judged += 1;
            drifted += usize::from(verdict);
        }
        let now = &current.columns[column].profile;
        let before = other.map(|other| &compared.columns[other].profile);
        let delta = |pick: fn(&ColumnProfile) -> Option<f64>| {
            before.and_then(|before| difference(pick(now), pick(before)))
        };
        rows.push(DriftRow {
            group: current.group.clone(),
            window_cmp,
            baseline,
            column_name: source.columns[column].name.clone(),
            data_type: source.columns[column].data_type.clone(),
            count_delta: delta(|p| Some(p.count as f64)),
            avg_delta: delta(|p| p.avg),
            percent_null_delta: delta(ColumnProfile::percent_null),
            percent_zeros_delta: delta(ColumnProfile::percent_zeros),
            percent_distinct_delta: delta(ColumnProfile::percent_distinct),
            non_null_columns_delta: None,
            drift,
            share_of_drifted_columns: None,
        });
    }
    let present = |names: &'_ [String], summary: &GroupSummary| -> Vec<String> {
        names
            .iter()
            .zip(&summary.columns)
            .filter(|(_, s)| s.profile.count > s.profile.num_nulls)
            .map(|(name, _)| name.clone())
            .collect()
    };
    let names: Vec<String> = source.columns.iter().map(|c| c.name.clone()).collect();
    let now_present = present(&names, current);
    let before_present = present(compared_columns, compared);
    let added = now_present
        .iter()
        .filter(|c| !before_present.contains(c))
        .count() as i32;
    let missing = before_present
        .iter()
        .filter(|c| !now_present.contains(c))
        .count() as i32;
    rows.insert(
        0,
        DriftRow {
            group: current.group.clone(),
            window_cmp,
            baseline,
            column_name: TABLE_ROW.into(),
            data_type: "struct".into(),
            count_delta: Some(current.rows as f64 - compared.rows as f64),
            avg_delta: None,
            percent_null_delta: None,
            percent_zeros_delta: None,
            percent_distinct_delta: None,
            non_null_columns_delta: Some((added, missing)),
            drift: ColumnDrift::default(),
            share_of_drifted_columns: (judged > 0).then(|| drifted as f64 / judged as f64),
        },
    );
    rows
}

/// Each window's rows. Rows mostly arrive in time order, so a run of rows in one window is
/// collected before its window is looked up.
fn rows_by_window(times: &[Option<i64>], granularity: Granularity) -> BTreeMap<Window, Vec<u32>> {
    let mut windows: BTreeMap<Window, Vec<u32>> = BTreeMap::new();
    let mut run: Option<(Window, Vec<u32>)> = None;
    for (row, time) in times.iter().enumerate() {
        let Some(time) = time else { continue };
        let window = window_of(granularity, *time);
        match &mut run {
            Some((current, rows)) if *current == window => rows.push(row as u32),
            _ => {
                if let Some((done, rows)) = run.replace((window, vec![row as u32])) {
                    windows.entry(done).or_default().extend(rows);
                }
            }
        }
    }
    if let Some((done, rows)) = run {
        windows.entry(done).or_default().extend(rows);
    }
    windows
}

/// The metrics a refresh writes, and the last window it summarized per granularity.
#[derive(Default)]
pub struct Metrics {
    pub profile: Vec<ProfileRow>,
    pub drift: Vec<DriftRow>,
    pub last: BTreeMap<String, (Window, Summaries)>,
}

/// Computes every metric of `source` (and against `baseline`): CPU-bound, run it off the async
/// threads. `earlier` holds, by granularity, a window's summaries kept from a previous refresh
/// that the source's rows may leave out: a window after it is compared with them.
pub fn compute(
    plan: &Plan,
    source: &Source,
    baseline: Option<&Source>,
    earlier: &BTreeMap<String, (Window, Arc<Summaries>)>,
) -> Metrics {
    let mut metrics = Metrics::default();
    let baseline_summaries = baseline.map(|baseline| {
        let all: Vec<u32> = (0..baseline.rows as u32).collect();
        let summaries = summarize_groups(baseline, &members(baseline, &all), None, None);
        if plan.only.is_none() {
            for summary in summaries.values() {
                metrics
                    .profile
                    .extend(profile_rows(baseline, summary, LogType::Baseline));
            }
        }
        Summaries::of(baseline, summaries)
    });
    let emit = |summaries: &BTreeMap<Member, GroupSummary>,
                previous: Option<(Window, &Summaries)>,
                metrics: &mut Metrics| {
        for summary in summaries.values() {
            metrics
                .profile
                .extend(profile_rows(source, summary, LogType::Input));
            let key = key_of(&summary.group);
            if let Some((window, earlier)) = previous
                && let Some(before) = earlier.get(&key)
            {
                metrics.drift.extend(drift_rows(
                    source,
                    summary,
                    &earlier.columns,
                    before,
                    Some(window),
                    false,
                ));
            }
            // Every model's group is compared with its slice in the baseline.
            if let Some(base) = &baseline_summaries
                && let Some(compared) = base.get(&(None, key.1))
            {
                metrics.drift.extend(drift_rows(
                    source,
                    summary,
                    &base.columns,
                    compared,
                    None,
                    true,
                ));
            }
        }
    };
    match (&source.times, plan.granularities.is_empty()) {
        (Some(times), false) => {
            for (name, granularity) in &plan.granularities {
                let windows = rows_by_window(times, *granularity);
                let wanted = plan.only.as_ref().map(|only| only.get(name));
                let mut last: Option<(Window, Summaries)> = None;
                for (window, rows) in windows {
                    let summaries =
                        summarize_groups(source, &members(source, &rows), Some(name), Some(window));
                    let before = previous(*granularity, window);
                    let earlier = match &last {
                        Some((w, s)) if *w == before => Some((*w, s)),
                        _ => earlier
                            .get(name)
                            .filter(|(w, _)| *w == before)
                            .map(|(w, s)| (*w, s.as_ref())),
                    };
                    let emitted = match wanted {
                        None => true,
                        Some(windows) => windows.is_some_and(|w| w.contains(&window)),
                    };
                    if emitted {
                        emit(&summaries, earlier, &mut metrics);
                    }
                    last = Some((window, Summaries::of(source, summaries)));
                }
                if let Some(last) = last {
                    metrics.last.insert(name.clone(), last);
                }
            }
        }
        _ => {
            let all: Vec<u32> = (0..source.rows as u32).collect();
            let summaries = summarize_groups(source, &members(source, &all), None, None);
            emit(&summaries, None, &mut metrics);
        }
    }
    metrics
}
