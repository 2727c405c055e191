//! What one group of rows (a window, a model, a slice) says about one column: the profile
//! metrics, and the model's quality where labels are known. Definitions follow numpy (linear
//! quantiles), Spark (`stddev` is the sample standard deviation) and scikit-learn (precision,
//! recall and F1 per class with zero for an empty denominator, `weighted` by label support;
//! ROC-AUC by ranks with ties averaged; MAPE over max(|y|, machine epsilon); R² of a constant
//! label 1 when predicted exactly, else 0).

use std::collections::{BTreeMap, HashMap};

/// The quantiles every numeric column reports, in order.
pub const QUANTILES: [f64; 11] = [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0];
/// How many frequent items a text column reports.
pub const FREQUENT_ITEMS: usize = 10;

/// The profile metrics of one column in one group.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ColumnProfile {
    pub count: u64,
    pub num_nulls: u64,
    pub num_nan: Option<u64>,
    pub num_zeros: Option<u64>,
    pub avg: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub stddev: Option<f64>,
    pub quantiles: Option<Vec<f64>>,
    pub median: Option<f64>,
    pub distinct_count: Option<u64>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub avg_length: Option<f64>,
    pub frequent_items: Option<Vec<(String, u64)>>,
}

impl ColumnProfile {
    fn percent(&self, part: Option<u64>) -> Option<f64> {
        (self.count > 0).then(|| part.map(|part| 100.0 * part as f64 / self.count as f64))?
    }

    pub fn percent_null(&self) -> Option<f64> {
        self.percent(Some(self.num_nulls))
    }

    pub fn percent_nan(&self) -> Option<f64> {
        self.percent(self.num_nan)
    }

    pub fn percent_zeros(&self) -> Option<f64> {
        self.percent(self.num_zeros)
    }

    /// Distinct values per non-null value, in percent.
    pub fn percent_distinct(&self) -> Option<f64> {
        let present = self.count - self.num_nulls;
        (present > 0).then(|| {
            self.distinct_count
                .map(|d| 100.0 * d as f64 / present as f64)
        })?
    }
}

/// The profile of a numeric column from its values in the group: `sorted` holds the non-null,
/// non-NaN values in order.
pub fn numeric_profile(count: u64, num_nulls: u64, num_nan: u64, sorted: &[f64]) -> ColumnProfile {
    // Zeros (-0.0 and 0.0) lie together in order: two searches count them. A value is new
    // where it differs from the one before.
    let zeros =
        (sorted.partition_point(|v| *v <= 0.0) - sorted.partition_point(|v| *v < 0.0)) as u64;
    let distinct = match sorted.first() {
        None => 0,
        Some(_) => 1 + sorted.windows(2).filter(|pair| pair[0] != pair[1]).count() as u64,
    };
    let mut profile = ColumnProfile {
        count,
        num_nulls,
        num_nan: Some(num_nan),
        num_zeros: Some(zeros),
        distinct_count: Some(distinct),
        ..ColumnProfile::default()
    };
    if sorted.is_empty() {
        return profile;
    }
    let n = sorted.len() as f64;
    let mean = sum_of(sorted, |v| v) / n;
    profile.avg = Some(mean);
    profile.min = sorted.first().copied();
    profile.max = sorted.last().copied();
    profile.stddev = (sorted.len() > 1)
        .then(|| (sum_of(sorted, |v| (v - mean) * (v - mean)) / (n - 1.0)).sqrt());
    let quantiles: Vec<f64> = QUANTILES.iter().map(|q| quantile(sorted, *q)).collect();
    profile.median = Some(quantile(sorted, 0.5));
    profile.quantiles = Some(quantiles);
    profile
}

/// The sum of `term` over `values`, kept in eight running sums as numpy's pairwise summation
/// keeps them: one running sum waits for each addition to end before the next starts (4
/// cycles a value), eight let them overlap. Empty: -0.0, as `Iterator::sum`.
pub fn sum_of(values: &[f64], term: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [-0.0f64; 8];
    let mut chunks = values.chunks_exact(lanes.len());
    for chunk in &mut chunks {
        for (lane, value) in lanes.iter_mut().zip(chunk) {
            *lane += term(*value);
        }
    }
    let rest = chunks
        .remainder()
        .iter()
        .fold(-0.0, |sum, value| sum + term(*value));
    let [a, b, c, d, e, f, g, h] = lanes;
    ((a + b) + (c + d)) + ((e + f) + (g + h)) + rest
}

/// numpy's linear quantile of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let low = position.floor() as usize;
    let high = (low + 1).min(sorted.len() - 1);
    let fraction = position - low as f64;
    if fraction == 0.0 {
        sorted[low]
    } else {
        sorted[low] + (sorted[high] - sorted[low]) * fraction
    }
}

/// The profile of a text (or boolean) column from its values' counts and lengths.
pub fn text_profile(count: u64, num_nulls: u64, counts: &HashMap<String, u64>) -> ColumnProfile {
    let mut profile = ColumnProfile {
        count,
        num_nulls,
        distinct_count: Some(counts.len() as u64),
        ..ColumnProfile::default()
    };
    let present: u64 = counts.values().sum();
    if present > 0 {
        let lengths = counts
            .iter()
            .map(|(value, count)| (value.chars().count() as u64, *count));
        let (mut shortest, mut longest, mut total) = (u64::MAX, 0u64, 0u64);
        for (length, count) in lengths {
            shortest = shortest.min(length);
            longest = longest.max(length);
            total += length * count;
        }
        profile.min_length = Some(shortest);
        profile.max_length = Some(longest);
        profile.avg_length = Some(total as f64 / present as f64);
    }
    let mut items: Vec<(String, u64)> = counts.iter().map(|(k, v)| (k.clone(), *v)).collect();
    items.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    items.truncate(FREQUENT_ITEMS);
    profile.frequent_items = Some(items);
    profile
}

/// A metric per class, and its macro and support-weighted averages.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PerClass {
    pub one_vs_all: BTreeMap<String, f64>,
    pub macro_avg: f64,
    pub weighted: f64,
}

/// Model quality of a classifier in one group.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Classification {
    pub accuracy: f64,
    pub precision: PerClass,
    pub recall: PerClass,
    pub f1: PerClass,
    /// (prediction, label, count) for every pair seen.
    pub confusion: Vec<(String, String, u64)>,
    /// From probabilities of the positive class, for two classes.
    pub roc_auc: Option<f64>,
    pub log_loss: Option<f64>,
}

/// Quality of a classifier from (prediction, label) pairs, with the positive class's
/// probability per pair when known.
pub fn classification(
    pairs: &[(&str, &str)],
    probabilities: Option<&[f64]>,
) -> Option<Classification> {
    if pairs.is_empty() {
        return None;
    }
    let mut confusion: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for (prediction, label) in pairs {
        *confusion.entry((prediction, label)).or_default() += 1;
    }
    let mut classes: Vec<&str> = pairs.iter().flat_map(|(p, l)| [*p, *l]).collect();
    classes.sort_unstable();
    classes.dedup();
    let total = pairs.len() as f64;
    let correct = pairs.iter().filter(|(p, l)| p == l).count() as f64;
    let (mut precision, mut recall, mut f1) = (
        PerClass::default(),
        PerClass::default(),
        PerClass::default(),
    );
    let mut support_total = 0.0;
    for class in &classes {
        let tp = confusion.get(&(*class, *class)).copied().unwrap_or(0) as f64;
        let predicted = pairs.iter().filter(|(p, _)| p == class).count() as f64;
        let actual = pairs.iter().filter(|(_, l)| l == class).count() as f64;
        let p = if predicted > 0.0 { tp / predicted } else { 0.0 };
        let r = if actual > 0.0 { tp / actual } else { 0.0 };
        let f = if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
        for (metric, value) in [(&mut precision, p), (&mut recall, r), (&mut f1, f)] {
            metric.one_vs_all.insert(class.to_string(), value);
            metric.macro_avg += value / classes.len() as f64;
            metric.weighted += value * actual;
        }
        support_total += actual;
    }
    for metric in [&mut precision, &mut recall, &mut f1] {
        metric.weighted /= support_total;
    }
    let mut result = Classification {
        accuracy: correct / total,
        precision,
        recall,
        f1,
        confusion: confusion
            .into_iter()
            .map(|((p, l), c)| (p.to_string(), l.to_string(), c))
            .collect(),
        ..Classification::default()
    };
    let mut labels: Vec<&str> = pairs.iter().map(|(_, l)| *l).collect();
    labels.sort_unstable();
    labels.dedup();
    if let (Some(probabilities), [_, positive]) = (probabilities, labels.as_slice()) {
        let truth: Vec<bool> = pairs.iter().map(|(_, l)| l == positive).collect();
        result.roc_auc = Some(roc_auc(&truth, probabilities));
        let eps = f64::EPSILON;
        let loss = truth
            .iter()
            .zip(probabilities)
            .map(|(is_positive, p)| {
                let p = p.clamp(eps, 1.0 - eps);
                if *is_positive {
                    -p.ln()
                } else {
                    -(1.0 - p).ln()
                }
            })
            .sum::<f64>()
            / total;
        result.log_loss = Some(loss);
    }
    Some(result)
}

/// The area under the ROC curve: the Mann-Whitney statistic with tied scores sharing ranks.
fn roc_auc(truth: &[bool], scores: &[f64]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let mut ranks = vec![0.0; scores.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && scores[order[end + 1]] == scores[order[start]] {
            end += 1;
        }
        let rank = (start + end) as f64 / 2.0 + 1.0;
        for index in &order[start..=end] {
            ranks[*index] = rank;
        }
        start = end + 1;
    }
    let positives = truth.iter().filter(|t| **t).count() as f64;
    let negatives = truth.len() as f64 - positives;
    let rank_sum: f64 = truth
        .iter()
        .zip(&ranks)
        .filter(|(t, _)| **t)
        .map(|(_, r)| r)
        .sum();
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// Model quality of a regressor in one group.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Regression {
    pub mean_squared_error: f64,
    pub root_mean_squared_error: f64,
    pub mean_absolute_error: f64,
    pub mean_absolute_percentage_error: f64,
    pub r2_score: f64,
}

/// Quality of a regressor from (prediction, label) pairs.
pub fn regression(pairs: &[(f64, f64)]) -> Option<Regression> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let mse = pairs.iter().map(|(p, y)| (y - p) * (y - p)).sum::<f64>() / n;
    let mae = pairs.iter().map(|(p, y)| (y - p).abs()).sum::<f64>() / n;
    let mape = pairs
        .iter()
        .map(|(p, y)| (y - p).abs() / y.abs().max(f64::EPSILON))
        .sum::<f64>()
        / n;
    let mean = pairs.iter().map(|(_, y)| y).sum::<f64>() / n;
    let total: f64 = pairs.iter().map(|(_, y)| (y - mean) * (y - mean)).sum();
    let residual: f64 = pairs.iter().map(|(p, y)| (y - p) * (y - p)).sum();
    let r2 = if total == 0.0 {
        if residual == 0.0 { 1.0 } else { 0.0 }
    } else {
        1.0 - residual / total
    };
    Some(Regression {
        mean_squared_error: mse,
        root_mean_squared_error: mse.sqrt(),
        mean_absolute_error: mae,
        mean_absolute_percentage_error: mape,
        r2_score: r2,
    })
}

/// Where the numbers to sort go: each is made a key as it comes (negatives flipped whole,
/// positives by the sign, so that unsigned order is the numbers' order) and counted by its
/// top digit.
pub struct Unsorted<'a> {
    keys: &'a mut Vec<u64>,
    /// None for a few numbers, sorted by comparison.
    counts: Option<&'a mut [usize]>,
}

impl Unsorted<'_> {
    #[inline]
    pub fn push(&mut self, value: f64) {
        let bits = value.to_bits();
        let key = if bits >> 63 == 1 {
            !bits
        } else {
            bits | (1 << 63)
        };
        self.keys.push(key);
        if let Some(counts) = self.counts.as_mut() {
            counts[(key >> (64 - TOP_BITS)) as usize] += 1;
        }
    }
}

/// The numbers `fill` pushes, sorted in `f64::total_cmp`'s order. They are sorted by their
/// keys' bits, most significant first: the top 16 bits (sign, exponent and 4 bits of
/// mantissa) bucket them, real data filling a few hundred buckets small enough for the core's
/// cache; each bucket is split by its next bits, a digit sized to it, and so on until the
/// runs are a few keys long. Measured on a million normal values: 14 ms, where four 16-bit LSD
/// radix passes (whose writes to 65,536 places per pass miss the cache) took 22 ms and
/// `sort_unstable` 28 ms. The numbers go straight into the sort's buffer, so the sorted
/// result is the only new memory written.
///
/// `at_most`: how many numbers `fill` may push (fewer than a few thousand are sorted by
/// comparison).
pub fn sorted_numbers(at_most: usize, fill: impl FnOnce(&mut Unsorted<'_>)) -> Vec<f64> {
    const RADIX_FROM: usize = 4096;
    thread_local! {
        /// Room for the keys and a copy, and for the digits' counts, kept between sorts: fresh
        /// buffers per column would be paged in (and zeroed by the kernel) every time.
        static SCRATCH: std::cell::RefCell<(Vec<u64>, Vec<u64>, Vec<usize>)> =
            const { std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
    }
    let unkey = |key: &u64| {
        let bits = if key >> 63 == 1 {
            key & !(1 << 63)
        } else {
            !key
        };
        f64::from_bits(bits)
    };
    SCRATCH.with_borrow_mut(|(keys, spare, counts)| {
        keys.clear();
        counts.clear();
        // Only a radix sort reads the counts: a few numbers are not worth zeroing them.
        let radix = at_most >= RADIX_FROM;
        if radix {
            counts.resize(1 << TOP_BITS, 0);
        }
        fill(&mut Unsorted {
            keys,
            counts: radix.then_some(counts.as_mut_slice()),
        });
        let n = keys.len();
        if !radix || n < RADIX_FROM {
            keys.sort_unstable();
            return keys.iter().map(unkey).collect();
        }
        if counts.contains(&n) {
            counts.clear();
            sort_keys(keys, spare_of(spare, n), 64 - TOP_BITS, counts);
            return keys.iter().map(unkey).collect();
        }
        let spare = spare_of(spare, n);
        split(keys, spare, 64 - TOP_BITS, counts, 0);
        spare.iter().map(unkey).collect()
    })
}

/// The first `n` places of `spare`, grown to hold them.
fn spare_of(spare: &mut Vec<u64>, n: usize) -> &mut [u64] {
    if spare.len() < n {
        spare.resize(n, 0);
    }
    &mut spare[..n]
}

/// The width of the first digit: the sign, the exponent and 4 bits of mantissa.
const TOP_BITS: u32 = 16;

/// Moves `keys` into `spare` by their digit at `shift`, whose count each value has in
/// `counts[level..]` (as many places as the digit has values), then sorts each run there:
/// the keys end sorted in `spare`. Deeper levels count after `level`.
fn split(keys: &mut [u64], spare: &mut [u64], shift: u32, counts: &mut Vec<usize>, level: usize) {
    let places = counts.len() - level;
    let mask = (places - 1) as u64;
    let digit = |key: u64| level + ((key >> shift) & mask) as usize;
    // Each digit's start, then, as its keys are placed, its end.
    let mut start = 0;
    for count in &mut counts[level..] {
        (*count, start) = (start, start + *count);
    }
    for key in keys.iter() {
        let end = &mut counts[digit(*key)];
        spare[*end] = *key;
        *end += 1;
    }
    let mut start = 0;
    for place in level..level + places {
        let end = counts[place];
        let run = &mut spare[start..end];
        if run.len() <= SHORT {
            insertion_sort(run);
        } else {
            sort_keys(run, &mut keys[start..end], shift, counts);
        }
        start = end;
    }
}

/// Runs this short are sorted by insertion.
const SHORT: usize = 32;

fn insertion_sort(keys: &mut [u64]) {
    for at in 1..keys.len() {
        let key = keys[at];
        let mut to = at;
        while to > 0 && keys[to - 1] > key {
            keys[to] = keys[to - 1];
            to -= 1;
        }
        keys[to] = key;
    }
}

/// Sorts `keys` that agree on their bits from `unsorted_bits` up, by their lower bits, with
/// `spare` (as long) to move them through and room after `counts`' end to count digits.
fn sort_keys(keys: &mut [u64], spare: &mut [u64], unsorted_bits: u32, counts: &mut Vec<usize>) {
    if unsorted_bits == 0 {
        return;
    }
    // A digit with about half as many values as there are keys.
    let bits = (usize::BITS - keys.len().leading_zeros() - 1)
        .clamp(1, 16)
        .min(unsorted_bits);
    let shift = unsorted_bits - bits;
    let mask = (1u64 << bits) - 1;
    let level = counts.len();
    counts.resize(level + (1 << bits), 0);
    for key in keys.iter() {
        counts[level + ((*key >> shift) & mask) as usize] += 1;
    }
    // A digit all keys share moves nothing; keys all equal are sorted.
    if counts[level..].contains(&keys.len()) {
        counts.truncate(level);
        if keys.iter().all(|key| *key == keys[0]) {
            return;
        }
        return sort_keys(keys, spare, shift, counts);
    }
    split(keys, spare, shift, counts, level);
    counts.truncate(level);
    keys.copy_from_slice(spare);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_sort_orders_as_total_cmp_does() {
        // Spread values, specials, a cluster sharing its top 30 bits (one bucket, one
        // sub-bucket, sorted by its lower digits) and a run of one value.
        let values: Vec<f64> = (0..20_000)
            .map(|i| ((i * 7919) % 10_007) as f64 / 37.0 - 135.0)
            .chain([
                0.0,
                -0.0,
                f64::INFINITY,
                f64::NEG_INFINITY,
                1e-310,
                -1e-310,
                f64::MAX,
                f64::MIN,
            ])
            .chain((0..30_000i64).map(|i| 1.0 + ((i * 104_729) % 30_011) as f64 * 1e-12))
            .chain(std::iter::repeat_n(2.5, 5_000))
            .collect();
        // A few (sorted by comparison), and all; fewer than promised, too, and none.
        assert!(sorted_numbers(10_000, |_| {}).is_empty());
        for (values, at_most) in [
            (&values[..100], 100),
            (&values[..], values.len()),
            (&values[..], usize::MAX),
        ] {
            let sorted = sorted_numbers(at_most, |out| values.iter().for_each(|v| out.push(*v)));
            let mut expected = values.to_vec();
            expected.sort_by(f64::total_cmp);
            assert_eq!(
                sorted.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                expected.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }
}
