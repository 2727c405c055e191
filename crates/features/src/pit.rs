//! The point-in-time join, on Arrow arrays.
//!
//! Semantics (documented in the README's feature store section, and what the correctness tests
//! check against pandas' `merge_asof` and DuckDB's `ASOF JOIN`): each label row `(key, t)` gets,
//! among the feature rows with the same key and feature time `<= t` (inclusive, so a value
//! stamped exactly at the event time is used), the one with the greatest feature time; with a
//! lookback window `w` that row must also have time `>= t - w` (inclusive). Every label row yields
//! exactly one output row, duplicates included; when no feature row qualifies (unknown key,
//! event before the key's first row, only rows older than the window, a null key or time) the
//! features are null or the lookup's defaults. A null value in the chosen row stays null: an
//! older value is never used instead. Ties cannot happen: the keys and the timestamp key
//! identify a feature row, writes merge on them, and a table holding two rows for one key and
//! time (written around tarn) is refused with an error naming them, rather than one picked at
//! random.
//!
//! The join groups the feature rows by key in a hash table, sorts each group by time, and
//! binary-searches each label row's group: O((n + m) log n) time, memory for the feature
//! columns it takes plus a few integers per feature row.

use std::collections::HashMap;

use tarn_core::{Error, Result};
use tarn_lake::arrow::array::{Array, ArrayRef, AsArray, Int64Array, UInt32Array};
use tarn_lake::arrow::compute::kernels::arity::unary;
use tarn_lake::arrow::compute::{cast, take};
use tarn_lake::arrow::datatypes::{DataType, Int64Type, TimeUnit};
use tarn_lake::arrow::row::{RowConverter, SortField};
use tarn_lake::arrow::util::display::array_value_to_string;

/// A timestamp or date column as microseconds since the epoch (nulls stay null). Time zones
/// do not matter: Arrow stores instants as UTC.
pub fn micros(array: &dyn Array, column: &str) -> Result<Int64Array> {
    let (multiply, divide) = match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => (1_000_000, 1),
        DataType::Timestamp(TimeUnit::Millisecond, _) | DataType::Date64 => (1_000, 1),
        DataType::Timestamp(TimeUnit::Microsecond, _) => (1, 1),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => (1, 1_000),
        DataType::Date32 => (86_400_000_000, 1),
        other => {
            return Err(Error::invalid(format!(
                "Column '{column}' has type {other}: a timestamp or date is needed"
            )));
        }
    };
    let raw = cast(array, &DataType::Int64)
        .map_err(|e| Error::internal(format!("cannot read times of '{column}': {e}")))?;
    let raw = raw.as_primitive::<Int64Type>();
    Ok(unary(raw, |v: i64| {
        v.saturating_mul(multiply).div_euclid(divide)
    }))
}

/// The rows of a feature table grouped by key, each group in time order.
pub struct FeatureIndex {
    converter: RowConverter,
    groups: HashMap<Box<[u8]>, u32>,
    /// Group `g` holds `rows[offsets[g]..offsets[g + 1]]`.
    offsets: Vec<u32>,
    rows: Vec<u32>,
    /// The time of each entry of `rows`, for time-series tables.
    times: Option<Vec<i64>>,
}

/// A key of a row as `a=1, b=x` for messages.
fn describe_key(names: &[String], keys: &[ArrayRef], row: usize) -> String {
    names
        .iter()
        .zip(keys)
        .map(|(name, array)| {
            let value = array_value_to_string(array.as_ref(), row).unwrap_or_default();
            format!("{name}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl FeatureIndex {
    /// Indexes a feature table's key columns (and times for a time-series table). Rows with a
    /// null key or time can match no label row and are left out. `table` and `key_names`
    /// name things in the error about a duplicate row.
    pub fn build(
        table: &str,
        key_names: &[String],
        keys: &[ArrayRef],
        times: Option<&Int64Array>,
    ) -> Result<Self> {
        let converter = RowConverter::new(
            keys.iter()
                .map(|k| SortField::new(k.data_type().clone()))
                .collect(),
        )
        .map_err(|e| Error::invalid(format!("cannot index the keys of {table}: {e}")))?;
        let encoded = converter
            .convert_columns(keys)
            .map_err(|e| Error::invalid(format!("cannot index the keys of {table}: {e}")))?;
        let n = encoded.num_rows();
        if n >= u32::MAX as usize {
            return Err(Error::invalid(format!(
                "{table} has {n} rows: a training set joins at most {} feature rows per table",
                u32::MAX - 1
            )));
        }
        let usable = |row: usize| {
            keys.iter().all(|k| k.is_valid(row)) && times.is_none_or(|t| t.is_valid(row))
        };
        let mut groups: HashMap<Box<[u8]>, u32> = HashMap::new();
        let mut group_of = vec![u32::MAX; n];
        let mut counts: Vec<u32> = Vec::new();
        for (row, group) in group_of.iter_mut().enumerate() {
            if !usable(row) {
                continue;
            }
            let key = encoded.row(row);
            let id = match groups.get(key.as_ref()) {
                Some(id) => *id,
                None => {
                    let id = counts.len() as u32;
                    groups.insert(key.as_ref().into(), id);
                    counts.push(0);
                    id
                }
            };
            counts[id as usize] += 1;
            *group = id;
        }
        let mut offsets = Vec::with_capacity(counts.len() + 1);
        let mut total = 0u32;
        offsets.push(0);
        for count in &counts {
            total += count;
            offsets.push(total);
        }
        let mut next: Vec<u32> = offsets[..counts.len()].to_vec();
        let mut rows = vec![0u32; total as usize];
        for (row, group) in group_of.iter().enumerate() {
            if *group != u32::MAX {
                let slot = &mut next[*group as usize];
                rows[*slot as usize] = row as u32;
                *slot += 1;
            }
        }
        let duplicate = |row: usize| {
            let what = match times {
                Some(t) => format!(
                    "{} at {}",
                    describe_key(key_names, keys, row),
                    array_value_to_string(t, row).unwrap_or_default()
                ),
                None => describe_key(key_names, keys, row),
            };
            Error::invalid(format!(
                "{table} holds more than one row for {what}: its keys must identify a row (write feature tables with merge)"
            ))
        };
        let times = match times {
            Some(t) => {
                let values = t.values();
                let mut sorted = vec![0i64; rows.len()];
                for g in 0..counts.len() {
                    let (start, end) = (offsets[g] as usize, offsets[g + 1] as usize);
                    let group = &mut rows[start..end];
                    group.sort_unstable_by_key(|r| values[*r as usize]);
                    for (i, r) in group.iter().enumerate() {
                        sorted[start + i] = values[*r as usize];
                    }
                    if let Some(pair) = group
                        .windows(2)
                        .find(|w| values[w[0] as usize] == values[w[1] as usize])
                    {
                        return Err(duplicate(pair[1] as usize));
                    }
                }
                Some(sorted)
            }
            None => {
                if let Some(g) = counts.iter().position(|c| *c > 1) {
                    return Err(duplicate(rows[offsets[g] as usize + 1] as usize));
                }
                None
            }
        };
        Ok(Self {
            converter,
            groups,
            offsets,
            rows,
            times,
        })
    }

    /// The newest row of each key (the only row, for tables without a timestamp key).
    pub fn latest_rows(&self) -> Vec<u32> {
        self.offsets
            .windows(2)
            .map(|w| self.rows[w[1] as usize - 1])
            .collect()
    }

    /// For each label row, the feature row it gets (null when none qualifies). `keys` must
    /// have the feature keys' types; `times` are the label's event times for a time-series
    /// table; `lookback` bounds how old a feature row may be, in microseconds.
    pub fn lookup(
        &self,
        keys: &[ArrayRef],
        times: Option<&Int64Array>,
        lookback: Option<i64>,
    ) -> Result<UInt32Array> {
        let encoded = self
            .converter
            .convert_columns(keys)
            .map_err(|e| Error::invalid(format!("cannot compare lookup keys: {e}")))?;
        let matched = (0..encoded.num_rows()).map(|row| {
            if !keys.iter().all(|k| k.is_valid(row)) {
                return None;
            }
            let group = *self.groups.get(encoded.row(row).as_ref())? as usize;
            let (start, end) = (
                self.offsets[group] as usize,
                self.offsets[group + 1] as usize,
            );
            match (&self.times, times) {
                (Some(feature_times), Some(label_times)) => {
                    if label_times.is_null(row) {
                        return None;
                    }
                    let t = label_times.value(row);
                    let group_times = &feature_times[start..end];
                    let before = group_times.partition_point(|ft| *ft <= t);
                    let at = before.checked_sub(1)?;
                    if lookback.is_some_and(|w| t.saturating_sub(group_times[at]) > w) {
                        return None;
                    }
                    Some(self.rows[start + at])
                }
                _ => Some(self.rows[start]),
            }
        });
        Ok(matched.collect())
    }
}

/// The values of `column` at `indices` (null where the index is null).
pub fn gather(column: &dyn Array, indices: &UInt32Array) -> Result<ArrayRef> {
    take(column, indices, None).map_err(|e| Error::internal(format!("cannot gather features: {e}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tarn_lake::arrow::array::{Float64Array, StringArray};

    use super::*;

    fn index(ids: Vec<Option<&str>>, times: Vec<Option<i64>>) -> Result<FeatureIndex> {
        let keys: Vec<ArrayRef> = vec![Arc::new(StringArray::from(ids))];
        FeatureIndex::build(
            "dev.f.t",
            &["id".to_string()],
            &keys,
            Some(&Int64Array::from(times)),
        )
    }

    fn found(
        index: &FeatureIndex,
        ids: Vec<Option<&str>>,
        times: Vec<Option<i64>>,
        lookback: Option<i64>,
    ) -> Vec<Option<u32>> {
        let keys: Vec<ArrayRef> = vec![Arc::new(StringArray::from(ids))];
        index
            .lookup(&keys, Some(&Int64Array::from(times)), lookback)
            .expect("ok")
            .iter()
            .collect()
    }

    #[test]
    fn latest_row_at_or_before_the_event_within_the_window() {
        let index = index(
            vec![Some("a"), Some("a"), Some("b"), Some("a"), None],
            vec![Some(10), Some(30), Some(5), Some(20), Some(1)],
        )
        .expect("ok");
        let got = found(
            &index,
            vec![
                Some("a"),
                Some("a"),
                Some("a"),
                Some("a"),
                Some("b"),
                Some("c"),
                None,
                Some("a"),
            ],
            vec![
                Some(9),
                Some(10),
                Some(25),
                Some(100),
                Some(5),
                Some(50),
                Some(50),
                None,
            ],
            None,
        );
        assert_eq!(
            got,
            vec![None, Some(0), Some(3), Some(1), Some(2), None, None, None]
        );
        // With a window of 10, the row at 30 is too old at 100 but just in time at 40.
        let got = found(
            &index,
            vec![Some("a"), Some("a")],
            vec![Some(100), Some(40)],
            Some(10),
        );
        assert_eq!(got, vec![None, Some(1)]);
    }

    #[test]
    fn two_rows_for_one_key_and_time_are_refused_by_name() {
        let err = index(vec![Some("a"), Some("a")], vec![Some(7), Some(7)])
            .err()
            .expect("refused");
        assert!(
            err.message
                .contains("dev.f.t holds more than one row for id=a at 7"),
            "{}",
            err.message
        );
    }

    #[test]
    fn times_of_any_unit_become_microseconds() {
        let days = tarn_lake::arrow::array::Date32Array::from(vec![Some(1), None]);
        assert_eq!(
            micros(&days, "d").expect("ok"),
            Int64Array::from(vec![Some(86_400_000_000), None])
        );
        let nanos = tarn_lake::arrow::array::TimestampNanosecondArray::from(vec![-1_500]);
        assert_eq!(micros(&nanos, "t").expect("ok").value(0), -2);
        assert!(micros(&Float64Array::from(vec![1.0]), "x").is_err());
    }
}
