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
//! columns it takes plus a few integers per feature row. Feature columns stay in the batches
//! they were read in: only the key and time columns are put end to end, and the values the
//! label rows get are gathered straight from the batches.

use foldhash::HashMap;
use foldhash::HashMapExt;

use tarn_core::{Error, Result};
use tarn_lake::arrow::array::{Array, ArrayRef, AsArray, Int64Array, UInt32Array, new_null_array};
use tarn_lake::arrow::compute::kernels::arity::unary;
use tarn_lake::arrow::compute::{cast, concat, interleave};
use tarn_lake::arrow::datatypes::{DataType, Int64Type, TimeUnit, UInt32Type};
use tarn_lake::arrow::record_batch::RecordBatch;
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
        .map_err(|e| Error::internal_from(format!("cannot read times of '{column}'"), e))?;
    let raw = raw.as_primitive::<Int64Type>();
    Ok(unary(raw, |v: i64| {
        v.saturating_mul(multiply).div_euclid(divide)
    }))
}

/// Keys to group ids.
enum Groups {
    /// A single integer key column, hashed as it is.
    Integer(HashMap<i64, u32>),
    /// Any other keys, encoded with Arrow's row format.
    Encoded(RowConverter, HashMap<Box<[u8]>, u32>),
}

/// A single key column of an integer type, as i64 (the common case, hashed without encoding).
fn integer_key(keys: &[ArrayRef]) -> Option<Int64Array> {
    let [key] = keys else { return None };
    if !key.data_type().is_integer() || *key.data_type() == DataType::UInt64 {
        return None;
    }
    let cast = cast(key, &DataType::Int64).ok()?;
    Some(cast.as_primitive::<Int64Type>().clone())
}

/// The rows of a feature table grouped by key, each group in time order.
pub struct FeatureIndex {
    groups: Groups,
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

/// The error for a second row with a key (and time) another row has.
fn duplicate_row(
    table: &str,
    key_names: &[String],
    keys: &[ArrayRef],
    times: Option<&Int64Array>,
    row: usize,
) -> Error {
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
}

/// Rows numbered by the group of their key, groups numbered as their keys first appear.
struct Grouped {
    groups: Groups,
    /// Each row's group; `u32::MAX` for rows with a null key or time, which match nothing.
    group_of: Vec<u32>,
    /// Rows per group.
    counts: Vec<u32>,
}

impl Grouped {
    fn new(table: &str, keys: &[ArrayRef], times: Option<&Int64Array>) -> Result<Self> {
        let n = keys.first().map_or(0, |k| k.len());
        if n >= u32::MAX as usize {
            return Err(Error::invalid(format!(
                "{table} has {n} rows: at most {} feature rows per table are joined or published",
                u32::MAX - 1
            )));
        }
        let usable = |row: usize| {
            keys.iter().all(|k| k.is_valid(row)) && times.is_none_or(|t| t.is_valid(row))
        };
        let mut group_of = vec![u32::MAX; n];
        let mut counts: Vec<u32> = Vec::new();
        // Puts a usable row in its key's group (`known`) or a new one, which it returns.
        let mut assign = |row: usize, known: Option<u32>| -> Option<u32> {
            let id = known.unwrap_or(counts.len() as u32);
            if known.is_none() {
                counts.push(0);
            }
            counts[id as usize] += 1;
            group_of[row] = id;
            known.is_none().then_some(id)
        };
        let groups = match integer_key(keys) {
            Some(values) => {
                let mut map: HashMap<i64, u32> = HashMap::new();
                for (row, value) in values.values().iter().enumerate() {
                    if usable(row)
                        && let Some(new) = assign(row, map.get(value).copied())
                    {
                        map.insert(*value, new);
                    }
                }
                Groups::Integer(map)
            }
            None => {
                let converter = RowConverter::new(
                    keys.iter()
                        .map(|k| SortField::new(k.data_type().clone()))
                        .collect(),
                )
                .map_err(|e| Error::invalid(format!("cannot index the keys of {table}: {e}")))?;
                let encoded = converter.convert_columns(keys).map_err(|e| {
                    Error::invalid(format!("cannot index the keys of {table}: {e}"))
                })?;
                let mut map: HashMap<Box<[u8]>, u32> = HashMap::new();
                for row in 0..n {
                    let key = encoded.row(row);
                    if usable(row)
                        && let Some(new) = assign(row, map.get(key.as_ref()).copied())
                    {
                        map.insert(key.as_ref().into(), new);
                    }
                }
                Groups::Encoded(converter, map)
            }
        };
        Ok(Self {
            groups,
            group_of,
            counts,
        })
    }
}

/// `FeatureIndex::newest_rows` for a single integer key. Tables are mostly written key by key,
/// so a row whose key is the previous row's skips the hash table.
fn newest_by_integer_key(keys: &Int64Array, times: &Int64Array) -> Vec<u32> {
    let usable = |row: usize| keys.is_valid(row) && times.is_valid(row);
    let mut newest: HashMap<i64, i64> = HashMap::new();
    let mut keep_newest = |key: i64, time: i64| {
        let known = newest.entry(key).or_insert(time);
        *known = (*known).max(time);
    };
    // The key of the current run of rows and its newest time in the run.
    let mut run: Option<(i64, i64)> = None;
    for row in (0..keys.len()).filter(|row| usable(*row)) {
        let (key, time) = (keys.value(row), times.value(row));
        match &mut run {
            Some((run_key, run_time)) if *run_key == key => *run_time = (*run_time).max(time),
            _ => {
                if let Some((run_key, run_time)) = run {
                    keep_newest(run_key, run_time);
                }
                run = Some((key, time));
            }
        }
    }
    if let Some((run_key, run_time)) = run {
        keep_newest(run_key, run_time);
    }
    let mut last: Option<(i64, i64)> = None;
    (0..keys.len())
        .filter(|row| usable(*row))
        .filter(|row| {
            let key = keys.value(*row);
            let time = match last {
                Some((last_key, time)) if last_key == key => time,
                _ => {
                    let time = newest.get(&key).copied().unwrap_or(i64::MIN);
                    last = Some((key, time));
                    time
                }
            };
            times.value(*row) == time
        })
        .map(|row| row as u32)
        .collect()
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
        let Grouped {
            groups,
            group_of,
            counts,
        } = Grouped::new(table, keys, times)?;
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
        let duplicate = |row: usize| duplicate_row(table, key_names, keys, times, row);
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
            groups,
            offsets,
            rows,
            times,
        })
    }

    /// The newest row of each key (the only row, for tables without a timestamp key), in one
    /// pass without building the index: what publishing needs. Two rows for a key's newest
    /// time (or two rows for a key without times) are refused as `build` refuses them.
    pub fn latest_rows(
        table: &str,
        key_names: &[String],
        keys: &[ArrayRef],
        times: Option<&Int64Array>,
    ) -> Result<Vec<u32>> {
        let Grouped {
            group_of, counts, ..
        } = Grouped::new(table, keys, times)?;
        let duplicate = |row: usize| duplicate_row(table, key_names, keys, times, row);
        let mut latest = vec![u32::MAX; counts.len()];
        // A second row at a group's newest time so far, cleared when a newer row comes.
        let mut tied = vec![u32::MAX; counts.len()];
        for (row, group) in group_of.iter().enumerate() {
            if *group == u32::MAX {
                continue;
            }
            let g = *group as usize;
            let best = latest[g];
            if best == u32::MAX {
                latest[g] = row as u32;
                continue;
            }
            let Some(t) = times else {
                return Err(duplicate(row));
            };
            let (mine, theirs) = (t.value(row), t.value(best as usize));
            if mine > theirs {
                latest[g] = row as u32;
                tied[g] = u32::MAX;
            } else if mine == theirs {
                tied[g] = row as u32;
            }
        }
        if let Some(row) = tied.iter().find(|r| **r != u32::MAX) {
            return Err(duplicate(*row as usize));
        }
        Ok(latest)
    }

    /// The rows at their key's newest time (every one of them when several share it, so a
    /// later pass over more rows still sees the tie), in row order; rows with a null key or
    /// time are left out. What a part of a table can contribute to `latest_rows` of the whole.
    pub fn newest_rows(table: &str, keys: &[ArrayRef], times: &Int64Array) -> Result<Vec<u32>> {
        if let Some(values) = integer_key(keys) {
            return Ok(newest_by_integer_key(&values, times));
        }
        let Grouped {
            group_of, counts, ..
        } = Grouped::new(table, keys, Some(times))?;
        let mut newest = vec![i64::MIN; counts.len()];
        for (row, group) in group_of.iter().enumerate() {
            if let Some(time) = newest.get_mut(*group as usize) {
                *time = (*time).max(times.value(row));
            }
        }
        Ok(group_of
            .iter()
            .enumerate()
            .filter(|(row, group)| {
                newest
                    .get(**group as usize)
                    .is_some_and(|time| *time == times.value(*row))
            })
            .map(|(row, _)| row as u32)
            .collect())
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
        let group_of: Box<dyn Fn(usize) -> Option<u32> + Sync> = match &self.groups {
            Groups::Integer(map) => {
                let values = integer_key(keys).ok_or_else(|| {
                    Error::internal("lookup keys of another type than the feature keys")
                })?;
                Box::new(move |row| map.get(&values.value(row)).copied())
            }
            Groups::Encoded(converter, map) => {
                let encoded = converter
                    .convert_columns(keys)
                    .map_err(|e| Error::invalid(format!("cannot compare lookup keys: {e}")))?;
                Box::new(move |row| map.get(encoded.row(row).as_ref()).copied())
            }
        };
        let rows = keys.first().map_or(0, |k| k.len());
        let find = |row: usize| {
            if !keys.iter().all(|k| k.is_valid(row)) {
                return None;
            }
            let group = group_of(row)? as usize;
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
        };
        let parts = per_core(rows, rows >= PARALLEL_MIN_ROWS, |range| {
            range.map(find).collect::<UInt32Array>()
        });
        if let [one] = parts.as_slice() {
            return Ok(one.clone());
        }
        let parts: Vec<&dyn Array> = parts.iter().map(|p| p as &dyn Array).collect();
        let matched =
            concat(&parts).map_err(|e| Error::internal_from("cannot join the matched rows", e))?;
        Ok(matched.as_primitive::<UInt32Type>().clone())
    }
}

/// Below this many rows (or gathered values) joins and gathers stay on the calling thread.
pub const PARALLEL_MIN_ROWS: usize = 100_000;

/// Runs `work` on `0..n` split into one contiguous range per core, each on a thread of its
/// own, and gives the results in range order; one range on the calling thread unless
/// `worth_it`. Joins and gathers over a million label rows are memory-bound loops that would
/// otherwise leave the second core idle.
pub fn per_core<T: Send>(
    n: usize,
    worth_it: bool,
    work: impl Fn(std::ops::Range<usize>) -> T + Sync,
) -> Vec<T> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    if !worth_it || cores < 2 || n < 2 {
        return vec![work(0..n)];
    }
    let size = n.div_ceil(cores);
    let work = &work;
    std::thread::scope(|scope| {
        let parts: Vec<_> = (0..n)
            .step_by(size)
            .map(|start| scope.spawn(move || work(start..(start + size).min(n))))
            .collect();
        parts
            .into_iter()
            .map(|part| {
                part.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// A column of rows read in several batches, put end to end (for keys and times, which the
/// index needs in one piece).
pub fn joined_column(batches: &[RecordBatch], name: &str, table: &str) -> Result<ArrayRef> {
    let parts = batches
        .iter()
        .map(|b| {
            b.column_by_name(name)
                .map(|c| c.as_ref())
                .ok_or_else(|| Error::invalid(format!("{table} has no column '{name}'")))
        })
        .collect::<Result<Vec<&dyn Array>>>()?;
    match parts.as_slice() {
        [] => Err(Error::internal(format!("no rows of {table} were read"))),
        [one] => Ok(one.slice(0, one.len())),
        _ => concat(&parts).map_err(|e| Error::internal_from(format!("cannot read {table}"), e)),
    }
}

/// Picks rows, by their number across batches read one after another, out of those batches:
/// `(batch, row)` pairs for `interleave`, a null index pointing at a one-row null array placed
/// after the batches.
pub struct Gather<'a> {
    batches: &'a [RecordBatch],
    pairs: Vec<(usize, usize)>,
}

impl<'a> Gather<'a> {
    pub fn new(batches: &'a [RecordBatch], indices: &UInt32Array) -> Self {
        let mut starts = Vec::with_capacity(batches.len());
        let mut total = 0usize;
        for batch in batches {
            starts.push(total);
            total += batch.num_rows();
        }
        let pairs = indices
            .iter()
            .map(|index| match index {
                Some(row) => {
                    let row = row as usize;
                    let batch = starts.partition_point(|start| *start <= row) - 1;
                    (batch, row - starts[batch])
                }
                None => (batches.len(), 0),
            })
            .collect();
        Self { batches, pairs }
    }

    /// The values of column `name` at the picked rows (null where the index was null).
    pub fn column(&self, name: &str, table: &str) -> Result<ArrayRef> {
        let mut parts = self
            .batches
            .iter()
            .map(|b| {
                b.column_by_name(name)
                    .cloned()
                    .ok_or_else(|| Error::invalid(format!("{table} has no column '{name}'")))
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let data_type = parts
            .first()
            .map(|p| p.data_type().clone())
            .ok_or_else(|| Error::internal(format!("no rows of {table} were read")))?;
        parts.push(new_null_array(&data_type, 1));
        let refs: Vec<&dyn Array> = parts.iter().map(|p| p.as_ref()).collect();
        interleave(&refs, &self.pairs)
            .map_err(|e| Error::internal_from("cannot gather features", e))
    }
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
    fn the_newest_row_of_each_integer_key_in_one_pass() {
        let keys: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![
            Some(1),
            Some(2),
            Some(1),
            None,
            Some(1),
        ]))];
        let names = ["id".to_string()];
        let latest = |times: Vec<Option<i64>>| {
            FeatureIndex::latest_rows("dev.f.t", &names, &keys, Some(&Int64Array::from(times)))
        };
        assert_eq!(
            latest(vec![Some(5), Some(1), Some(9), Some(99), Some(7)]).expect("ok"),
            vec![2, 1]
        );
        // Two rows at an older time leave the newest alone; two at the newest are refused.
        assert_eq!(
            latest(vec![Some(5), Some(1), Some(9), Some(99), Some(5)]).expect("ok"),
            vec![2, 1]
        );
        let err = latest(vec![Some(9), Some(1), Some(9), Some(99), Some(5)]).expect_err("refused");
        assert!(
            err.message.contains("more than one row for id=1 at 9"),
            "{}",
            err.message
        );
        // The integer path of the index agrees with the lookup of an integer key.
        let index = FeatureIndex::build(
            "dev.f.t",
            &names,
            &keys,
            Some(&Int64Array::from(vec![
                Some(5),
                Some(1),
                Some(9),
                Some(99),
                Some(7),
            ])),
        )
        .expect("index");
        let wanted: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![1, 1, 3]))];
        let found = index
            .lookup(&wanted, Some(&Int64Array::from(vec![8, 4, 8])), None)
            .expect("lookup");
        assert_eq!(found.iter().collect::<Vec<_>>(), vec![Some(4), None, None]);
    }

    #[test]
    fn the_newest_rows_of_a_part_keep_ties_and_agree_across_key_types() {
        // Key 1 in two runs (newest 9 twice: both kept for the final pass to refuse), key 2
        // once, a null key and a null time left out.
        let ids = vec![Some(1), Some(1), Some(2), Some(1), None, Some(1), Some(2)];
        let times = Int64Array::from(vec![
            Some(3),
            Some(9),
            Some(4),
            Some(9),
            Some(20),
            Some(5),
            None,
        ]);
        let integer: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(ids.clone()))];
        let text: Vec<ArrayRef> = vec![Arc::new(StringArray::from(
            ids.iter()
                .map(|id| id.map(|i| i.to_string()))
                .collect::<Vec<_>>(),
        ))];
        for keys in [&integer, &text] {
            assert_eq!(
                FeatureIndex::newest_rows("dev.f.t", keys, &times).expect("ok"),
                vec![1, 2, 3]
            );
        }
        // The latest rows of the parts' newest rows are the latest rows of the whole.
        let split = 4;
        let mut kept = Vec::new();
        for (start, len) in [(0, split), (split, ids.len() - split)] {
            let part: Vec<ArrayRef> = vec![integer[0].slice(start, len)];
            let part_times = times.slice(start, len);
            kept.extend(
                FeatureIndex::newest_rows("dev.f.t", &part, &part_times)
                    .expect("ok")
                    .into_iter()
                    .map(|row| row + start as u32),
            );
        }
        assert_eq!(kept, vec![1, 2, 3, 5]);
    }

    #[test]
    fn work_split_over_the_cores_comes_back_whole_and_in_order() {
        for (n, worth_it) in [(0, true), (1, true), (7, true), (100_001, true), (9, false)] {
            let parts = per_core(n, worth_it, |range| range.collect::<Vec<_>>());
            assert_eq!(parts.concat(), (0..n).collect::<Vec<_>>());
            if !worth_it {
                assert_eq!(parts.len(), 1);
            }
        }
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
