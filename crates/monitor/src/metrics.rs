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
    // Zeros, the sum (from -0.0, as `Iterator::sum` starts) and the distinct values in one
    // read of the millions of values.
    let (mut zeros, mut sum, mut distinct) = (0u64, -0.0, 0u64);
    let mut previous = None;
    for value in sorted {
        zeros += u64::from(*value == 0.0);
        sum += value;
        distinct += u64::from(previous != Some(*value));
        previous = Some(*value);
    }
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
    let mean = sum / n;
    profile.avg = Some(mean);
    profile.min = sorted.first().copied();
    profile.max = sorted.last().copied();
    profile.stddev = (sorted.len() > 1)
        .then(|| (sorted.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)).sqrt());
    let quantiles: Vec<f64> = QUANTILES.iter().map(|q| quantile(sorted, *q)).collect();
    profile.median = Some(quantile(sorted, 0.5));
    profile.quantiles = Some(quantiles);
    profile
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

/// Sorts numbers in `f64::total_cmp`'s order; large slices by a radix sort of their bits
/// (four passes of 16 bits, counted in one read), several times faster than a comparison sort
/// on the millions of values a window holds. Each thread keeps its scratch buffer between
/// sorts: a fresh one per column would be paged in (and zeroed by the kernel) every time.
pub fn sort_numbers(values: &mut [f64]) {
    const RADIX_FROM: usize = 4096;
    const BITS: usize = 16;
    const DIGITS: usize = 1 << BITS;
    const PASSES: usize = 64usize.div_ceil(BITS);
    const MASK: u64 = (DIGITS - 1) as u64;
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    if values.len() < RADIX_FROM {
        values.sort_unstable_by(f64::total_cmp);
        return;
    }
    // The bits ordered as the numbers are (negatives flipped whole, positives by the sign),
    // kept in the slice's own storage while it is sorted.
    let key = |value: f64| {
        let bits = value.to_bits();
        if bits >> 63 == 1 {
            !bits
        } else {
            bits | (1 << 63)
        }
    };
    let unkey = |key: u64| {
        let bits = if key >> 63 == 1 {
            key & !(1 << 63)
        } else {
            !key
        };
        f64::from_bits(bits)
    };
    let digit = |key: u64, pass: usize| ((key >> (pass * BITS)) & MASK) as usize;
    // Each pass's counts, one after another (on the heap: 2 MiB would not fit a thread's
    // stack in a debug build).
    let mut counts = vec![0usize; PASSES * DIGITS];
    for value in values.iter_mut() {
        let bits = key(*value);
        *value = f64::from_bits(bits);
        for pass in 0..PASSES {
            counts[pass * DIGITS + digit(bits, pass)] += 1;
        }
    }
    SCRATCH.with_borrow_mut(|scratch| {
        if scratch.len() < values.len() {
            scratch.resize(values.len(), 0.0);
        }
        let scratch = &mut scratch[..values.len()];
        let mut sorted_in_values = true;
        for (pass, counts) in counts.chunks_exact_mut(DIGITS).enumerate() {
            // A digit every key shares moves nothing.
            if counts.contains(&values.len()) {
                continue;
            }
            let mut offset = 0;
            for count in counts.iter_mut() {
                let here = *count;
                *count = offset;
                offset += here;
            }
            let (from, to): (&[f64], &mut [f64]) = if sorted_in_values {
                (&*values, &mut *scratch)
            } else {
                (&*scratch, &mut *values)
            };
            for value in from {
                let slot = &mut counts[digit(value.to_bits(), pass)];
                to[*slot] = *value;
                *slot += 1;
            }
            sorted_in_values = !sorted_in_values;
        }
        if !sorted_in_values {
            values.copy_from_slice(scratch);
        }
    });
    for value in values.iter_mut() {
        *value = unkey(value.to_bits());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_radix_sort_orders_as_total_cmp_does() {
        let mut values: Vec<f64> = (0..20_000)
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
            .collect();
        let mut expected = values.clone();
        expected.sort_by(f64::total_cmp);
        sort_numbers(&mut values);
        assert_eq!(
            values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            expected.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
