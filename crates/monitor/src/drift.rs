//! Drift between two samples of one column, with Evidently 0.7's definitions (its
//! `DataDriftPreset`) and scipy's tests, so the values in the drift metrics table are the ones
//! users get from those libraries on the same rows:
//! - Wasserstein distance normalised by the reference's standard deviation (ddof 0, at least
//!   0.001);
//! - PSI and Jensen-Shannon distance on Evidently's binning: Sturges' equal-width bins over
//!   both samples for a numeric column with more than 20 distinct reference values, one bin per
//!   value otherwise; PSI replaces empty bins per side (1e-4, or the smallest share / 1e6 when
//!   that is at most 1e-4), JS does not and takes the natural log;
//! - KS (`ks_2samp`), chi-square with expected counts scaled from the reference, and the
//!   two-proportion z-test;
//! - total variation and L-infinity distances between the categories' shares.
//!
//! Which test decides "drifted" follows Evidently's choice by reference size: up to 1000
//! reference rows KS for numeric columns with more than 5 distinct values, chi-square (or the
//! z-test for at most two values) otherwise; past 1000 rows the normed Wasserstein distance for
//! numeric columns with more than 5 distinct values, Jensen-Shannon otherwise.

use std::collections::HashMap;

use crate::kolmogorov::{Steps, ks_2samp, two_sided};
use crate::metrics::sum_of;

/// The test Evidently would choose, and its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftTest {
    KolmogorovSmirnov,
    ChiSquare,
    ZTest,
    Wasserstein,
    JensenShannon,
}

impl DriftTest {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KolmogorovSmirnov => "ks",
            Self::ChiSquare => "chisquare",
            Self::ZTest => "z",
            Self::Wasserstein => "wasserstein",
            Self::JensenShannon => "jensenshannon",
        }
    }
}

/// A test's statistic and p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    pub statistic: f64,
    pub pvalue: f64,
}

/// What comparing a column's current values with its reference values found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ColumnDrift {
    pub ks_test: Option<TestResult>,
    pub chi_squared_test: Option<TestResult>,
    pub z_test: Option<TestResult>,
    pub wasserstein_distance: Option<f64>,
    pub population_stability_index: Option<f64>,
    pub js_distance: Option<f64>,
    pub tv_distance: Option<f64>,
    pub l_infinity_distance: Option<f64>,
    /// Evidently's test for this column, its score (p-value or distance) and its verdict.
    pub test: Option<DriftTest>,
    pub score: Option<f64>,
    pub drifted: Option<bool>,
}

/// What one walk over two sorted samples finds: the figures every numeric comparison needs,
/// so a million-row reference is read once per column rather than once per figure.
struct Walk {
    reference_distinct: usize,
    both_distinct: usize,
    /// The KS statistic: the largest distance between the empirical distribution functions.
    ks_statistic: f64,
    /// scipy's `wasserstein_distance`: the area between them.
    wasserstein: f64,
}

fn walk(reference: &[f64], current: &[f64]) -> Walk {
    let (n1, n2) = (reference.len(), current.len());
    // Past its end a side reads as infinity: both samples are finite.
    let head = |values: &[f64], at: usize| values.get(at).copied().unwrap_or(f64::INFINITY);
    // F_reference - F_current scaled by n1·n2 is an integer that each value taken moves by n2
    // or -n1: exact (while n1·n2 < 2^63, billions of values a side, far past what a refresh
    // holds in memory), and no division per value (one was most of the walk's time).
    let (up, down) = (n2 as i64, n1 as i64);
    let mut scaled: i64 = 0;
    let (mut i, mut j) = (0, 0);
    let (mut a, mut b) = (head(reference, 0), head(current, 0));
    let (mut reference_distinct, mut both_distinct) = (0, 0);
    let (mut most, mut least) = (i64::MIN, i64::MAX);
    let mut area = 0.0;
    // The last distinct value, how many reference values lay at or below it, and the scaled
    // distance of the distribution functions from it to the next one.
    let (mut last, mut last_through, mut last_gap) = (0.0, 0, 0i64);
    // One value taken per turn, the smaller head; a distinct value is complete once both
    // heads lie above it.
    while a != f64::INFINITY || b != f64::INFINITY {
        let from_reference = a <= b;
        let value = if from_reference { a } else { b };
        i += usize::from(from_reference);
        j += usize::from(!from_reference);
        scaled += if from_reference { up } else { -down };
        (a, b) = (head(reference, i), head(current, j));
        if a == value || b == value {
            continue;
        }
        both_distinct += 1;
        reference_distinct += usize::from(i > last_through);
        if both_distinct > 1 {
            area += last_gap.abs() as f64 * (value - last);
        }
        most = most.max(scaled);
        least = least.min(scaled);
        (last, last_through, last_gap) = (value, i, scaled);
    }
    let scale = n1 as f64 * n2 as f64;
    Walk {
        reference_distinct,
        both_distinct,
        ks_statistic: two_sided(most as f64 / scale, least as f64 / scale),
        wasserstein: area / scale,
    }
}

/// Drift of a numeric column; both samples sorted, without nulls, NaN or infinities.
pub fn numeric(reference: &[f64], current: &[f64]) -> ColumnDrift {
    if reference.is_empty() || current.is_empty() {
        return ColumnDrift::default();
    }
    let walked = walk(reference, current);
    let both_distinct = walked.both_distinct;
    let (reference_shares, current_shares) = if walked.reference_distinct > 20 {
        sturges_shares(reference, current)
    } else {
        value_shares_sorted(reference, current)
    };
    let ks = ks_2samp(reference.len(), current.len(), walked.ks_statistic);
    let ks = TestResult {
        statistic: ks.0,
        pvalue: ks.1,
    };
    let wasserstein = walked.wasserstein / population_std(reference).max(0.001);
    let psi = psi(&reference_shares, &current_shares);
    let js = jensen_shannon(&reference_shares, &current_shares);
    let mut drift = ColumnDrift {
        ks_test: Some(ks),
        wasserstein_distance: Some(wasserstein),
        population_stability_index: Some(psi),
        js_distance: Some(js),
        ..ColumnDrift::default()
    };
    let small = reference.len() <= 1000;
    let (test, score, drifted) = if both_distinct > 5 {
        if small {
            (DriftTest::KolmogorovSmirnov, ks.pvalue, ks.pvalue <= 0.05)
        } else {
            (DriftTest::Wasserstein, wasserstein, wasserstein >= 0.1)
        }
    } else if small {
        let (reference_counts, current_counts) = value_counts_sorted(reference, current);
        categorical_test(
            &mut drift,
            &reference_counts,
            &current_counts,
            reference.len(),
            current.len(),
        )
    } else {
        (DriftTest::JensenShannon, js, js >= 0.1)
    };
    drift.test = Some(test);
    drift.score = Some(score);
    drift.drifted = Some(drifted);
    drift
}

/// Drift of a categorical column from its values' counts on each side (nulls left out).
pub fn categorical(
    reference: &HashMap<String, u64>,
    current: &HashMap<String, u64>,
) -> ColumnDrift {
    let reference_total: u64 = reference.values().sum();
    let current_total: u64 = current.values().sum();
    if reference_total == 0 || current_total == 0 {
        return ColumnDrift::default();
    }
    let mut keys: Vec<&String> = reference.keys().chain(current.keys()).collect();
    keys.sort();
    keys.dedup();
    let reference_counts: Vec<u64> = keys
        .iter()
        .map(|key| reference.get(*key).copied().unwrap_or(0))
        .collect();
    let current_counts: Vec<u64> = keys
        .iter()
        .map(|key| current.get(*key).copied().unwrap_or(0))
        .collect();
    let reference_shares = shares(&reference_counts, reference_total);
    let current_shares = shares(&current_counts, current_total);
    let js = jensen_shannon(&reference_shares, &current_shares);
    let mut drift = ColumnDrift {
        population_stability_index: Some(psi(&reference_shares, &current_shares)),
        js_distance: Some(js),
        tv_distance: Some(
            0.5 * reference_shares
                .iter()
                .zip(&current_shares)
                .map(|(p, q)| (p - q).abs())
                .sum::<f64>(),
        ),
        l_infinity_distance: Some(
            reference_shares
                .iter()
                .zip(&current_shares)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f64::max),
        ),
        chi_squared_test: Some(chi_square(
            &reference_counts,
            &current_counts,
            reference_total,
            current_total,
        )),
        ..ColumnDrift::default()
    };
    let (test, score, drifted) = if reference_total <= 1000 {
        categorical_test(
            &mut drift,
            &reference_counts,
            &current_counts,
            reference_total as usize,
            current_total as usize,
        )
    } else {
        (DriftTest::JensenShannon, js, js >= 0.1)
    };
    drift.test = Some(test);
    drift.score = Some(score);
    drift.drifted = Some(drifted);
    drift
}

/// Evidently's test for few values and a small reference: chi-square for more than two
/// values, the two-proportion z-test otherwise. Counts are per value, in one order on both sides.
fn categorical_test(
    drift: &mut ColumnDrift,
    reference_counts: &[u64],
    current_counts: &[u64],
    reference_total: usize,
    current_total: usize,
) -> (DriftTest, f64, bool) {
    if reference_counts.len() > 2 {
        let test = chi_square(
            reference_counts,
            current_counts,
            reference_total as u64,
            current_total as u64,
        );
        drift.chi_squared_test = Some(test);
        return (DriftTest::ChiSquare, test.pvalue, test.pvalue < 0.05);
    }
    let test = z_test(
        reference_counts,
        current_counts,
        reference_total,
        current_total,
    );
    drift.z_test = Some(test);
    (DriftTest::ZTest, test.pvalue, test.pvalue < 0.05)
}

/// scipy's `chisquare(f_obs=current, f_exp=reference * n_cur / n_ref)`.
pub fn chi_square(
    reference_counts: &[u64],
    current_counts: &[u64],
    reference_total: u64,
    current_total: u64,
) -> TestResult {
    let scale = current_total as f64 / reference_total as f64;
    let statistic: f64 = reference_counts
        .iter()
        .zip(current_counts)
        .map(|(expected, observed)| {
            let expected = *expected as f64 * scale;
            let diff = *observed as f64 - expected;
            diff * diff / expected
        })
        .sum();
    let dof = reference_counts.len().saturating_sub(1) as f64;
    let pvalue = if statistic.is_infinite() {
        0.0
    } else {
        upper_regularized_gamma(dof / 2.0, statistic / 2.0)
    };
    TestResult { statistic, pvalue }
}

/// Evidently's two-proportion z-test on the share of rows holding the first value (in sorted
/// order); p = 1 when both sides hold the same single value.
fn z_test(
    reference_counts: &[u64],
    current_counts: &[u64],
    reference_total: usize,
    current_total: usize,
) -> TestResult {
    let one_value = reference_counts.len() == 1
        || reference_counts.iter().filter(|c| **c > 0).count() == 1
            && current_counts.iter().filter(|c| **c > 0).count() == 1
            && reference_counts
                .iter()
                .zip(current_counts)
                .any(|(r, c)| *r > 0 && *c > 0);
    if one_value {
        return TestResult {
            statistic: 0.0,
            pvalue: 1.0,
        };
    }
    let (n1, n2) = (reference_total as f64, current_total as f64);
    // The share of rows that are not the first value, as Evidently codes them.
    let p1 = (reference_total as u64 - reference_counts[0]) as f64 / n1;
    let p2 = (current_total as u64 - current_counts[0]) as f64 / n2;
    let pooled = (p1 * n1 + p2 * n2) / (n1 + n2);
    let z = (p1 - p2) / (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    let pvalue = 2.0 * (1.0 - normal_cdf(z.abs()));
    TestResult {
        statistic: z,
        pvalue,
    }
}

fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Q(a, x), the regularized upper incomplete gamma function (chi-square's survival function
/// is Q(k/2, x/2)): the series below a + 1, the continued fraction above it.
pub fn upper_regularized_gamma(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if a <= 0.0 {
        return 0.0;
    }
    let log_prefix = a * x.ln() - x - libm::lgamma(a);
    if x < a + 1.0 {
        let mut sum = 1.0 / a;
        let mut term = sum;
        let mut ap = a;
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-17 {
                break;
            }
        }
        (1.0 - sum * log_prefix.exp()).clamp(0.0, 1.0)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (log_prefix.exp() * h).clamp(0.0, 1.0)
    }
}

/// numpy's `std` (ddof 0) with its pairwise mean.
pub fn population_std(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mean = sum_of(values, |v| v) / n;
    (sum_of(values, |v| (v - mean) * (v - mean)) / n).sqrt()
}

/// Counts per distinct value of the union, in sorted order, on both sides.
fn value_counts_sorted(a: &[f64], b: &[f64]) -> (Vec<u64>, Vec<u64>) {
    Steps::new(a, b)
        .map(|step| {
            (
                (step.a_through - step.a_below) as u64,
                (step.b_through - step.b_below) as u64,
            )
        })
        .unzip()
}

fn value_shares_sorted(a: &[f64], b: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (left, right) = value_counts_sorted(a, b);
    (
        shares(&left, a.len() as u64),
        shares(&right, b.len() as u64),
    )
}

fn shares(counts: &[u64], total: u64) -> Vec<f64> {
    counts.iter().map(|c| *c as f64 / total as f64).collect()
}

/// numpy's `histogram_bin_edges(both, bins="sturges")` and each side's share per bin.
fn sturges_shares(a: &[f64], b: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let total = a.len() + b.len();
    let bins = ((total as f64).log2() + 1.0).ceil() as usize;
    let low = a[0].min(b[0]);
    let high = a[a.len() - 1].max(b[b.len() - 1]);
    let (low, high) = if low == high {
        (low - 0.5, high + 0.5)
    } else {
        (low, high)
    };
    let edges = linspace(low, high, bins + 1);
    let count = |values: &[f64]| -> Vec<f64> {
        let mut counts = Vec::with_capacity(bins);
        for bin in 0..bins {
            let start = values.partition_point(|v| *v < edges[bin]);
            let end = if bin + 1 == bins {
                values.partition_point(|v| *v <= edges[bin + 1])
            } else {
                values.partition_point(|v| *v < edges[bin + 1])
            };
            counts.push((end - start) as f64 / values.len() as f64);
        }
        counts
    };
    (count(a), count(b))
}

/// numpy's `linspace(start, stop, num)` to the last bit.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let div = (num - 1) as f64;
    let delta = stop - start;
    let step = delta / div;
    let mut values: Vec<f64> = (0..num)
        .map(|i| {
            if step == 0.0 {
                i as f64 / div * delta + start
            } else {
                i as f64 * step + start
            }
        })
        .collect();
    if let Some(last) = values.last_mut() {
        *last = stop;
    }
    values
}

/// Evidently's PSI, empty bins filled per side.
pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
    let reference = fill_zeros(reference);
    let current = fill_zeros(current);
    reference
        .iter()
        .zip(&current)
        .map(|(p, q)| (p - q) * (p / q).ln())
        .sum()
}

fn fill_zeros(shares: &[f64]) -> Vec<f64> {
    let smallest = shares
        .iter()
        .copied()
        .filter(|share| *share != 0.0)
        .fold(f64::INFINITY, f64::min);
    let fill = if smallest <= 0.0001 {
        smallest / 1e6
    } else {
        0.0001
    };
    shares
        .iter()
        .map(|share| if *share == 0.0 { fill } else { *share })
        .collect()
}

/// scipy's `jensenshannon(p, q)`: natural log, each side normalised to sum 1.
pub fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
    let (sum_p, sum_q) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    let mut divergence = 0.0;
    for (p, q) in p.iter().zip(q) {
        let (p, q) = (p / sum_p, q / sum_q);
        let m = (p + q) / 2.0;
        divergence += relative_entropy(p, m) + relative_entropy(q, m);
    }
    (divergence / 2.0).max(0.0).sqrt()
}

fn relative_entropy(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kolmogorov::Step;

    fn close(ours: f64, theirs: f64) {
        assert!((ours - theirs).abs() < 1e-12, "{ours} != {theirs}");
    }

    #[test]
    fn chi_square_survival_equals_scipy() {
        for (dof, x, expected) in [
            (3.0, 2.5, 0.4752910833430205),
            (7.0, 30.0, 9.495972508134177e-05),
            (1.0, 0.5, 0.47950012218695337),
            (10.0, 3.0, 0.9814240637778593),
            (99.0, 120.0, 0.07424385580596692),
        ] {
            close(upper_regularized_gamma(dof / 2.0, x / 2.0), expected);
        }
    }

    #[test]
    fn wasserstein_equals_scipy() {
        let mut a: Vec<f64> = (0..300)
            .map(|i| ((i * 7919) % 1000) as f64 / 100.0 - 5.0)
            .collect();
        let mut b: Vec<f64> = (0..451)
            .map(|i| ((i * 104729) % 997) as f64 / 90.0 - 5.3)
            .collect();
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        close(walk(&a, &b).wasserstein, 0.26470375297692383);
        close(population_std(&a), 2.902468776748511);
    }

    /// The walk's figures equal the ones each step of the merged samples defines (to rounding:
    /// the walk divides once, at the end), ties within and across the samples included.
    #[test]
    fn one_walk_finds_what_each_step_defines() {
        let mut a: Vec<f64> = (0..3000)
            .map(|i| f64::from((i * 7919) % 613) / 7.0)
            .collect();
        let mut b: Vec<f64> = (0..2000)
            .map(|i| f64::from((i * 104729) % 997) / 11.0 - 3.0)
            .collect();
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        for (a, b) in [(&a, &b), (&b, &a), (&a, &a)] {
            let (n1, n2) = (a.len() as f64, b.len() as f64);
            let (mut most, mut least, mut area) = (f64::NEG_INFINITY, f64::INFINITY, 0.0);
            let mut previous: Option<f64> = None;
            let steps: Vec<Step> = Steps::new(a, b).collect();
            for step in &steps {
                let gap = step.a_through as f64 / n1 - step.b_through as f64 / n2;
                most = most.max(gap);
                least = least.min(gap);
                if let Some(previous) = previous {
                    let below = step.a_below as f64 / n1 - step.b_below as f64 / n2;
                    area += below.abs() * (step.value - previous);
                }
                previous = Some(step.value);
            }
            let walked = walk(a, b);
            assert_eq!(walked.both_distinct, steps.len());
            assert_eq!(
                walked.reference_distinct,
                steps.iter().filter(|s| s.a_through > s.a_below).count()
            );
            close(walked.ks_statistic, two_sided(most, least));
            close(walked.wasserstein, area);
        }
    }

    #[test]
    fn psi_fills_empty_bins_per_side_and_js_does_not() {
        let reference = [0.5, 0.5, 0.0];
        let current = [0.25, 0.25, 0.5];
        let filled: [f64; 3] = [0.5, 0.5, 0.0001];
        let expected: f64 = filled
            .iter()
            .zip(&current)
            .map(|(p, q)| (p - q) * (p / q).ln())
            .sum();
        close(psi(&reference, &current), expected);
        let divergence = 2.0 * 0.5 * (0.5f64 / 0.375).ln()
            + 2.0 * 0.25 * (0.25f64 / 0.375).ln()
            + 0.5 * (0.5f64 / 0.25).ln();
        close(
            jensen_shannon(&reference, &current),
            (divergence / 2.0).sqrt(),
        );
    }

    #[test]
    fn evidently_picks_its_test_by_reference_size_and_distinct_values() {
        let small: Vec<f64> = (0..100).map(f64::from).collect();
        assert_eq!(
            numeric(&small, &small).test,
            Some(DriftTest::KolmogorovSmirnov)
        );
        let large: Vec<f64> = (0..2000).map(f64::from).collect();
        assert_eq!(numeric(&large, &large).test, Some(DriftTest::Wasserstein));
        let few: Vec<f64> = (0..2000).map(|i| f64::from(i % 3)).collect();
        let mut sorted_few = few.clone();
        sorted_few.sort_by(f64::total_cmp);
        assert_eq!(
            numeric(&sorted_few, &sorted_few).test,
            Some(DriftTest::JensenShannon)
        );
        let pair: Vec<f64> = (0..100).map(|i| f64::from(i % 2)).collect();
        let mut sorted_pair = pair.clone();
        sorted_pair.sort_by(f64::total_cmp);
        let same = numeric(&sorted_pair, &sorted_pair);
        assert_eq!(same.test, Some(DriftTest::ZTest));
        assert_eq!(same.score, Some(1.0));
    }
}
