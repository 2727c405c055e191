//! A monitor's metrics over time for the whole table (no slice, every model): per column and
//! window the count, nulls and mean, and the drift verdicts against the previous window and the
//! baseline. What `tarn monitors show` prints and the charts draw.

use std::collections::BTreeMap;

use tarn_core::caller::Caller;
use tarn_core::catalog::Privilege;
use tarn_core::monitors::Monitor;
use tarn_core::store::MetaStore;
use tarn_core::{Error, Result};
use tarn_lake::access::table_for;
use tarn_lake::arrow::array::{
    Array, AsArray, BooleanArray, Float64Array, Int64Array, StringArray, StructArray,
};
use tarn_lake::arrow::compute::cast;
use tarn_lake::arrow::datatypes::{DataType, TimestampMicrosecondType};
use tarn_lake::arrow::record_batch::RecordBatch;
use tarn_lake::catalog::location_of;
use tarn_lake::{At, Lake};

use crate::manage;
use crate::tables::TABLE_ROW;
use crate::windows::Window;

/// A drift verdict in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftPoint {
    pub test: String,
    pub score: f64,
    pub drifted: bool,
}

/// One window of one column.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Point {
    pub count: i64,
    pub percent_null: Option<f64>,
    pub avg: Option<f64>,
    pub consecutive: Option<DriftPoint>,
    pub baseline: Option<DriftPoint>,
    /// On the `:table` row: the share of drifted columns against the baseline.
    pub share_drifted: Option<f64>,
    /// On the `:table` row: the model's accuracy (classification) or RMSE (regression).
    pub quality: Option<(String, f64)>,
}

/// A column's windows, oldest first (`:table` for the table's own row).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub column: String,
    pub data_type: String,
    pub points: BTreeMap<Option<Window>, Point>,
}

#[derive(Debug, Clone)]
pub struct Overview {
    pub monitor: Monitor,
    /// The granularity shown; None for a snapshot.
    pub granularity: Option<String>,
    pub source_version: Option<i64>,
    pub columns: Vec<Series>,
}

impl Overview {
    /// The windows any column has, oldest first.
    pub fn windows(&self) -> Vec<Option<Window>> {
        let mut windows: Vec<Option<Window>> = self
            .columns
            .iter()
            .flat_map(|s| s.points.keys().copied())
            .collect();
        windows.sort();
        windows.dedup();
        windows
    }
}

/// A text column as plain strings (a scan may hand back views).
fn strings(batch: &RecordBatch, name: &str) -> Result<StringArray> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| Error::internal(format!("a metrics table lacks the text column {name}")))?;
    let text = cast(column, &DataType::Utf8)
        .map_err(|e| Error::internal_from(format!("cannot read column {name}"), e))?;
    Ok(text.as_string::<i32>().clone())
}

fn doubles<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Float64Array> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt())
        .ok_or_else(|| Error::internal(format!("a metrics table lacks the number column {name}")))
}

fn window_at(batch: &RecordBatch, row: usize) -> Option<Window> {
    let windows: &StructArray = batch.column_by_name("window")?.as_struct_opt()?;
    if windows.is_null(row) {
        return None;
    }
    let start = windows
        .column(0)
        .as_primitive_opt::<TimestampMicrosecondType>()?;
    let end = windows
        .column(1)
        .as_primitive_opt::<TimestampMicrosecondType>()?;
    Some(Window {
        start: start.value(row),
        end: end.value(row),
    })
}

fn text(array: &StringArray, row: usize) -> Option<&str> {
    array.is_valid(row).then(|| array.value(row))
}

fn number(array: &Float64Array, row: usize) -> Option<f64> {
    array.is_valid(row).then(|| array.value(row))
}

async fn read(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    name: &str,
) -> Result<Vec<RecordBatch>> {
    let table = table_for(store, caller, name, Privilege::Select).await?;
    let (_, batches, _) = lake
        .read_columns(&location_of(&table)?, &table.full_name, At::Latest, None)
        .await?;
    Ok(batches)
}

/// The monitor's whole-table metrics at `granularity` (its first when None).
pub async fn overview(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    table_name: &str,
    granularity: Option<&str>,
) -> Result<Overview> {
    let monitor = manage::get(store, caller, table_name).await?;
    let granularity = granularity_of(&monitor, granularity)?;
    let (profile_name, drift_name) = monitor.metrics_tables();
    let profile = read(lake, store, caller, &profile_name).await?;
    let drift = read(lake, store, caller, &drift_name).await?;
    from_metrics(monitor, granularity, &profile, &drift)
}

/// The granularity to show: `wanted` when the monitor has it, else its first (None for a
/// snapshot).
pub fn granularity_of(monitor: &Monitor, wanted: Option<&str>) -> Result<Option<String>> {
    let granularities: Vec<String> = monitor
        .settings
        .profile()?
        .windows()
        .map(|(_, g)| g.to_vec())
        .unwrap_or_default();
    match wanted {
        Some(wanted) if granularities.iter().any(|g| g == wanted) => Ok(Some(wanted.to_string())),
        Some(wanted) => Err(Error::invalid(format!(
            "The monitor has no granularity \"{wanted}\": it has {granularities:?}"
        ))),
        None => Ok(granularities.first().cloned()),
    }
}

/// The overview from the rows of the monitor's profile and drift metrics tables, however they
/// were read (from the lake here, through the table data API by `tarn monitors`).
pub fn from_metrics(
    monitor: Monitor,
    granularity: Option<String>,
    profile: &[RecordBatch],
    drift: &[RecordBatch],
) -> Result<Overview> {
    let mut columns: BTreeMap<String, Series> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut source_version = None;
    // The rows of the whole table (no slice, every model) at the granularity shown.
    let whole_rows = |batch: &RecordBatch| -> Result<Vec<bool>> {
        let (slices, models, granularities) = (
            strings(batch, "slice_key")?,
            strings(batch, "model_id")?,
            strings(batch, "granularity")?,
        );
        Ok((0..batch.num_rows())
            .map(|row| {
                text(&slices, row).is_none()
                    && text(&models, row).is_none()
                    && text(&granularities, row) == granularity.as_deref()
            })
            .collect())
    };
    for batch in profile {
        let log_types = strings(batch, "log_type")?;
        let names = strings(batch, "column_name")?;
        let types = strings(batch, "data_type")?;
        let counts: &Int64Array = batch
            .column_by_name("count")
            .and_then(|c| c.as_primitive_opt())
            .ok_or_else(|| Error::internal("a profile table lacks count"))?;
        let versions: &Int64Array = batch
            .column_by_name("logging_table_commit_version")
            .and_then(|c| c.as_primitive_opt())
            .ok_or_else(|| Error::internal("a profile table lacks its version"))?;
        let (avg, nulls) = (doubles(batch, "avg")?, doubles(batch, "percent_null")?);
        let accuracy = doubles(batch, "accuracy_score")?;
        let rmse = doubles(batch, "root_mean_squared_error")?;
        for (row, whole) in whole_rows(batch)?.into_iter().enumerate() {
            if log_types.value(row) != "INPUT" || !whole {
                continue;
            }
            source_version = Some(versions.value(row));
            let name = names.value(row).to_string();
            if !columns.contains_key(&name) {
                order.push(name.clone());
            }
            let series = columns.entry(name.clone()).or_insert_with(|| Series {
                column: name,
                data_type: types.value(row).to_string(),
                points: BTreeMap::new(),
            });
            let point = series.points.entry(window_at(batch, row)).or_default();
            point.count = counts.value(row);
            point.avg = number(avg, row);
            point.percent_null = number(nulls, row);
            point.quality = match (number(accuracy, row), number(rmse, row)) {
                (Some(value), _) => Some(("accuracy".to_string(), value)),
                (None, Some(value)) => Some(("RMSE".to_string(), value)),
                (None, None) => None,
            };
        }
    }
    for batch in drift {
        let kinds = strings(batch, "drift_type")?;
        let names = strings(batch, "column_name")?;
        let tests = strings(batch, "drift_test")?;
        let scores = doubles(batch, "drift_score")?;
        let shares = doubles(batch, "share_of_drifted_columns")?;
        let drifted: &BooleanArray = batch
            .column_by_name("drift_detected")
            .and_then(|c| c.as_boolean_opt())
            .ok_or_else(|| Error::internal("a drift table lacks drift_detected"))?;
        for (row, whole) in whole_rows(batch)?.into_iter().enumerate() {
            if !whole {
                continue;
            }
            let Some(point) = columns
                .get_mut(names.value(row))
                .and_then(|s| s.points.get_mut(&window_at(batch, row)))
            else {
                continue;
            };
            let baseline = kinds.value(row) == "BASELINE";
            if names.value(row) == TABLE_ROW {
                if baseline {
                    point.share_drifted = number(shares, row);
                }
                continue;
            }
            let verdict = match (text(&tests, row), number(scores, row)) {
                (Some(test), Some(score)) => Some(DriftPoint {
                    test: test.to_string(),
                    score,
                    drifted: drifted.is_valid(row) && drifted.value(row),
                }),
                _ => None,
            };
            if baseline {
                point.baseline = verdict;
            } else {
                point.consecutive = verdict;
            }
        }
    }
    let columns = order
        .into_iter()
        .filter_map(|name| columns.remove(&name))
        .collect();
    Ok(Overview {
        monitor,
        granularity,
        source_version,
        columns,
    })
}
