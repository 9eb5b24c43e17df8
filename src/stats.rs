//! Pure statistics over the samples of one benchmark series (and comparisons
//! of two series): robust summaries, percentile-bootstrap confidence
//! intervals, ratios of medians and a permutation test. No I/O happens here;
//! every function is a deterministic function of its arguments.
//!
//! Conventions used throughout:
//! - Percentiles use linear interpolation between closest ranks, the default
//!   (`method="linear"`) of `numpy.percentile`; see [`percentile`].
//! - Randomness comes only from [`rand_pcg::Pcg64`] (PCG XSL-RR 128/64)
//!   seeded with `SeedableRng::seed_from_u64`, whose output is documented as
//!   value-stable. Integers in `0..n` are drawn with this module's own
//!   unbiased Lemire method on top of `next_u64`, so results never depend on
//!   how a `rand` release implements ranges: the same data and seed give the
//!   same numbers forever.
//! - Statistics that do not refer to input positions are computed from a
//!   sorted copy, so they do not depend on the input order (bit for bit).

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};

/// Number of bootstrap resamples used by [`summarize`] and [`ratio_of_medians`].
pub const BOOTSTRAP_RESAMPLES: usize = 10_000;

/// Modified Z-score above which (in absolute value) a sample is an outlier
/// (Iglewicz and Hoaglin's recommendation).
pub const OUTLIER_Z: f64 = 3.5;

/// Fewest samples for which a 95% confidence interval of the median
/// exists without assuming a distribution: with 6, the interval from the
/// smallest to the largest covers the median with probability
/// 1 − 2·(1/2)⁶ = 96.9%; with 5 only 93.8%, with 3 only 75%. Below this,
/// reports show the range and say it is one.
pub const CI_MIN_N: usize = 6;

/// Fewest samples for which outliers are looked for: the median absolute
/// deviation of 3 or 4 values says nothing about what is unusual (three
/// values 1% apart can flag one).
pub const OUTLIER_MIN_N: usize = 5;

/// Descriptive statistics of one series of samples.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median (the 50th [`percentile`]; mean of the two middle values when `n` is even).
    pub median: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (denominator `n - 1`); 0.0 when `n < 2`.
    pub stddev: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Median absolute deviation from the median, raw (not scaled by 1.4826).
    pub mad: f64,
    /// Relative standard deviation, `stddev / |mean|`; 0.0 when the mean is 0.
    pub rsd: f64,
    /// Distribution-free 95% confidence interval of the median (see
    /// [`median_ci95`]); `None` when `n < CI_MIN_N`, where no such interval
    /// exists and only the range (`min`, `max`) can be shown.
    pub ci95: Option<Interval>,
    /// Indices into the input (ascending) of the samples whose modified Z-score
    /// `0.6745 * (x - median) / mad` exceeds [`OUTLIER_Z`] in absolute value.
    /// Empty when `n < OUTLIER_MIN_N`, and when `mad == 0`: then more than
    /// half of the samples equal the median, the score is undefined
    /// (division by zero), and every other sample would be "infinitely" far
    /// away, which says nothing useful.
    pub outliers: Vec<usize>,
}

impl Summary {
    /// What to show beside the median: the 95% confidence interval when
    /// there is one, else the range of the values, said to be one.
    pub fn spread(&self) -> Spread {
        match &self.ci95 {
            Some(ci) => Spread {
                lo: ci.lo,
                hi: ci.hi,
                is_ci: true,
                n: self.n,
            },
            None => Spread {
                lo: self.min,
                hi: self.max,
                is_ci: false,
                n: self.n,
            },
        }
    }
}

/// The interval a report shows beside a median.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
    /// Whether it is a 95% confidence interval (else the range).
    pub is_ci: bool,
    /// Values behind it.
    pub n: usize,
}

impl Spread {
    /// `95% CI` or `range (n = 3)`.
    pub fn label(&self) -> String {
        if self.is_ci {
            "95% CI".into()
        } else {
            format!("range (n = {})", self.n)
        }
    }
}

/// A closed interval `[lo, hi]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Interval {
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

impl Interval {
    /// True when `lo <= x <= hi`.
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// Ratio of the medians of two series, with a bootstrap confidence interval.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ratio {
    /// `median(current) / median(baseline)`.
    pub value: f64,
    /// Percentile-bootstrap 95% confidence interval of the ratio.
    pub ci95: Interval,
}

/// Summarizes one series.
///
/// Returns `None` for an empty slice, and also when any sample is NaN or
/// infinite: such a series is a measurement error, not data to summarize.
/// Apart from `outliers` (positions in `samples`), the result does not depend
/// on the order of `samples`. Values within a few orders of magnitude of
/// `f64::MAX` can make `mean` and `stddev` overflow to infinity.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    let sorted = finite_sorted(samples)?;
    let n = sorted.len();
    let median = percentile(&sorted, 50.0);
    let mean = sorted.iter().sum::<f64>() / n as f64;
    let stddev = if n < 2 {
        0.0
    } else {
        let squares: f64 = sorted.iter().map(|x| (x - mean) * (x - mean)).sum();
        (squares / (n - 1) as f64).sqrt()
    };
    let mut deviations: Vec<f64> = sorted.iter().map(|x| (x - median).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    let mad = percentile(&deviations, 50.0);
    let outliers = if mad > 0.0 && n >= OUTLIER_MIN_N {
        let z = |x: f64| 0.6745 * (x - median) / mad;
        (0..n)
            .filter(|&i| z(samples[i]).abs() > OUTLIER_Z)
            .collect()
    } else {
        Vec::new()
    };
    Some(Summary {
        n,
        median,
        mean,
        stddev,
        min: sorted[0],
        max: sorted[n - 1],
        mad,
        rsd: if mean == 0.0 {
            0.0
        } else {
            stddev / mean.abs()
        },
        ci95: median_ci95(&sorted),
        outliers,
    })
}

/// Distribution-free 95% confidence interval of the median, from order
/// statistics: `[x(k), x(n+1−k)]` of the sorted samples, with the largest
/// `k` whose coverage `1 − 2·P(Binomial(n, ½) ≤ k − 1)` is still at least
/// 95% (the classic sign-test interval; it assumes only independent
/// samples from one continuous distribution). `None` for fewer than
/// [`CI_MIN_N`] samples: then even the full range covers less than 95%.
/// The slice must be sorted.
pub fn median_ci95(sorted: &[f64]) -> Option<Interval> {
    let n = sorted.len();
    if n < CI_MIN_N {
        return None;
    }
    // P(Bin(n, 1/2) <= j), accumulated in log space for large n.
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_binom = 0.0_f64; // ln C(n, 0)
    let mut cdf = 0.0_f64;
    let mut k = 1;
    for j in 0..n / 2 {
        cdf += (ln_binom + ln_half_n).exp();
        // Coverage of [x(j+1), x(n-j)] is 1 - 2 P(Bin <= j).
        if 1.0 - 2.0 * cdf >= 0.95 {
            k = j + 1;
        } else {
            break;
        }
        ln_binom += ((n - j) as f64).ln() - ((j + 1) as f64).ln();
    }
    Some(Interval {
        lo: sorted[k - 1],
        hi: sorted[n - k],
    })
}

/// The `p`-th percentile (`p` in `[0, 100]`, clamped) of an ascending slice.
///
/// Definition (numpy's default, `method="linear"`): with `h = p/100 * (n-1)`,
/// the result interpolates linearly between the values at ranks `floor(h)`
/// and `floor(h) + 1` (0-based). So the 0th percentile is the minimum, the
/// 100th the maximum, and the 50th the usual median. Returns NaN for an empty
/// slice or a NaN `p`. The slice is not checked to be sorted.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() || p.is_nan() {
        return f64::NAN;
    }
    let last = sorted.len() - 1;
    let h = p.clamp(0.0, 100.0) / 100.0 * last as f64;
    let lo = (h.floor() as usize).min(last);
    lerp(sorted[lo], sorted[(lo + 1).min(last)], h - lo as f64)
}

/// Median of `samples` in any order (the 50th [`percentile`]: the mean of the
/// two middle values when the length is even). NaN for an empty slice.
pub fn median(samples: &[f64]) -> f64 {
    percentile(&sorted_copy(samples), 50.0)
}

/// `median(current) / median(baseline)` with a 95% percentile-bootstrap
/// confidence interval: [`BOOTSTRAP_RESAMPLES`] times, both series are
/// resampled independently (with replacement) and the ratio of the resampled
/// medians is taken; the bounds are the 2.5th and 97.5th [`percentile`]s.
///
/// Returns `None` when either series is empty or holds a NaN or infinity,
/// when the baseline median is 0, or when either series holds a negative
/// value: a ratio only means something on a ratio scale (a memory *drop*
/// that can be negative has none). If the baseline contains zeros, resampled
/// baseline medians can be 0, and the bounds may then be infinite or NaN.
pub fn ratio_of_medians(current: &[f64], baseline: &[f64], seed: u64) -> Option<Ratio> {
    let current = finite_sorted(current)?;
    let baseline = finite_sorted(baseline)?;
    if current.first()? < &0.0 || baseline.first()? < &0.0 {
        return None;
    }
    let base_median = percentile(&baseline, 50.0);
    if base_median == 0.0 {
        return None;
    }
    let value = percentile(&current, 50.0) / base_median;
    let mut rng = Pcg64::seed_from_u64(seed);
    let (mut counts_c, mut counts_b) = (vec![0; current.len()], vec![0; baseline.len()]);
    let ratios = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let c = resample_median(&current, &mut counts_c, &mut rng);
            c / resample_median(&baseline, &mut counts_b, &mut rng)
        })
        .collect();
    Some(Ratio {
        value,
        ci95: percentile_interval(ratios),
    })
}

/// Two-sided permutation test for a difference of medians; returns a p-value.
///
/// Test statistic: `|median(a) - median(b)|`. Under the null hypothesis the
/// labels "a" and "b" are exchangeable, so the pooled samples are re-split
/// into groups of sizes `a.len()` and `b.len()`, and the p-value is the share
/// of splits whose statistic is at least the observed one (with a relative
/// tolerance of `100 * f64::EPSILON`, as SciPy does, so rounding cannot
/// drop ties).
///
/// - Exact test: when the number of distinct splits `C(a.len() + b.len(),
///   a.len())` is at most `resamples`, every split is enumerated once and
///   `p = count / C` (the observed split counts, so `p >= 1/C`). `seed` is
///   then unused.
/// - Monte Carlo: otherwise `resamples` random splits are drawn and
///   `p = (count + 1) / (resamples + 1)`, the add-one correction that counts
///   the observed split and keeps the test valid (never `p = 0`).
///
/// Returns 1.0 (no evidence of a difference) when either input is empty or
/// holds a NaN or infinity.
pub fn permutation_test(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> f64 {
    if finite_sorted(a).is_none() || finite_sorted(b).is_none() {
        return 1.0;
    }
    let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    let (na, n) = (a.len(), pooled.len());
    let (mut buf_a, mut buf_b) = (Vec::with_capacity(na), Vec::with_capacity(n - na));
    let observed = median_gap(a, b, &mut buf_a, &mut buf_b);
    let threshold = observed - observed * 100.0 * f64::EPSILON;

    if let Some(splits) = binomial_at_most(n, na, resamples) {
        let mut in_a = vec![false; n];
        let mut idx: Vec<usize> = (0..na).collect();
        let (mut xa, mut xb) = (Vec::with_capacity(na), Vec::with_capacity(n - na));
        let mut count = 0usize;
        loop {
            in_a.fill(false);
            idx.iter().for_each(|&i| in_a[i] = true);
            xa.clear();
            xb.clear();
            for (&x, &selected) in pooled.iter().zip(&in_a) {
                if selected { xa.push(x) } else { xb.push(x) }
            }
            if median_gap(&xa, &xb, &mut buf_a, &mut buf_b) >= threshold {
                count += 1;
            }
            if !next_combination(&mut idx, n) {
                break;
            }
        }
        return count as f64 / splits as f64;
    }

    let mut rng = Pcg64::seed_from_u64(seed);
    let mut pool = pooled;
    let mut count = 0usize;
    for _ in 0..resamples {
        // Partial Fisher-Yates: a uniformly random choice of the first `na`.
        for i in 0..na {
            pool.swap(i, i + below(&mut rng, n - i));
        }
        if median_gap(&pool[..na], &pool[na..], &mut buf_a, &mut buf_b) >= threshold {
            count += 1;
        }
    }
    (count + 1) as f64 / (resamples + 1) as f64
}

// ---- helpers ----

fn sorted_copy(samples: &[f64]) -> Vec<f64> {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// Sorted copy, or `None` when empty or when any value is NaN or infinite.
fn finite_sorted(samples: &[f64]) -> Option<Vec<f64>> {
    if samples.is_empty() || !samples.iter().all(|x| x.is_finite()) {
        return None;
    }
    Some(sorted_copy(samples))
}

/// numpy's `_lerp`: `a + (b-a)*t`, computed from `b` when `t >= 0.5` so that
/// `t = 1` gives exactly `b`. Falls back to a form that cannot overflow.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let d = b - a;
    if t == 0.0 || a == b {
        a
    } else if !d.is_finite() {
        a * (1.0 - t) + b * t
    } else if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    }
}

/// Sorts `values` and returns its 2.5th and 97.5th percentiles.
fn percentile_interval(mut values: Vec<f64>) -> Interval {
    values.sort_by(f64::total_cmp);
    Interval {
        lo: percentile(&values, 2.5),
        hi: percentile(&values, 97.5),
    }
}

/// Uniform integer in `0..n` (`n >= 1`) from one or more `next_u64` draws,
/// by Lemire's unbiased multiply-and-reject method ("Fast Random Integer
/// Generation in an Interval", 2019).
fn below(rng: &mut Pcg64, n: usize) -> usize {
    let n = n.max(1) as u64;
    let mut m = u128::from(rng.next_u64()) * u128::from(n);
    if (m as u64) < n {
        let threshold = n.wrapping_neg() % n;
        while (m as u64) < threshold {
            m = u128::from(rng.next_u64()) * u128::from(n);
        }
    }
    (m >> 64) as usize
}

/// Median of one bootstrap resample of the non-empty ascending slice `sorted`:
/// draws `n` indices with replacement, counting how often each is drawn; the
/// sorted resample is then `sorted[i]` repeated `counts[i]` times, so its
/// median is read off the counts. Equals [`percentile`]`(resample, 50)`.
fn resample_median(sorted: &[f64], counts: &mut [usize], rng: &mut Pcg64) -> f64 {
    let n = sorted.len();
    counts.fill(0);
    for _ in 0..n {
        counts[below(rng, n)] += 1;
    }
    let at_rank = |rank: usize| {
        let mut seen = 0;
        for (x, c) in sorted.iter().zip(counts.iter()) {
            seen += c;
            if seen > rank {
                return *x;
            }
        }
        f64::NAN // unreachable: the counts add up to n
    };
    let t = if n.is_multiple_of(2) { 0.5 } else { 0.0 };
    lerp(at_rank((n - 1) / 2), at_rank(n / 2), t)
}

/// `|median(a) - median(b)|`, using the buffers to sort copies.
fn median_gap(a: &[f64], b: &[f64], buf_a: &mut Vec<f64>, buf_b: &mut Vec<f64>) -> f64 {
    let median_of = |xs: &[f64], buf: &mut Vec<f64>| {
        buf.clear();
        buf.extend_from_slice(xs);
        buf.sort_by(f64::total_cmp);
        percentile(buf, 50.0)
    };
    (median_of(a, buf_a) - median_of(b, buf_b)).abs()
}

/// `C(n, k)` when it is at most `limit`, else `None` (never overflows).
fn binomial_at_most(n: usize, k: usize, limit: usize) -> Option<usize> {
    let k = k.min(n - k);
    let mut c: u128 = 1;
    // C(n, i + 1) = C(n, i) * (n - i) / (i + 1), exact at every step and
    // increasing while i < n/2, so stopping at the first value over the
    // limit is correct; c <= limit < 2^64 keeps the product below 2^128.
    for i in 0..k {
        c = c * (n - i) as u128 / (i + 1) as u128;
        if c > limit as u128 {
            return None;
        }
    }
    Some(c as usize)
}

/// Advances `idx` (ascending indices into `0..n`) to the next combination in
/// lexicographic order; false when it was the last one.
fn next_combination(idx: &mut [usize], n: usize) -> bool {
    let k = idx.len();
    for i in (0..k).rev() {
        if idx[i] < n - k + i {
            idx[i] += 1;
            for j in i + 1..k {
                idx[j] = idx[j - 1] + 1;
            }
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference numbers were computed independently with Python 3.11 and
    // numpy 2.4.6 (np.median, np.mean, np.std(ddof=1), np.percentile with its
    // default method="linear", itertools.combinations for exact permutation
    // counts). The golden bootstrap/permutation values come from a separate
    // Python re-implementation of the same algorithm: rand_core's
    // seed_from_u64 (PCG32 seed expansion), rand_pcg's Lcg128Xsl64 (PCG
    // XSL-RR 128/64), Lemire's bounded integers, np.percentile on each
    // resample (a throwaway script, not part of the repository).

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    /// Uniform values in [lo, hi) from the module's generator.
    fn uniform(rng: &mut Pcg64, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n)
            .map(|_| lo + (hi - lo) * ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64))
            .collect()
    }

    #[test]
    fn summary_matches_numpy_with_one_outlier() {
        let s = summarize(&[1.0, 2.0, 3.0, 4.0, 100.0]).unwrap();
        assert_eq!(s.n, 5);
        assert_eq!(
            (s.median, s.mean, s.min, s.max, s.mad),
            (3.0, 22.0, 1.0, 100.0, 1.0)
        );
        assert!(close(s.stddev, 43.617656975128774), "{}", s.stddev);
        assert!(close(s.rsd, 1.9826207715967625), "{}", s.rsd);
        // z = 0.6745 * (x - 3) / 1 = [-1.349, -0.6745, 0, 0.6745, 65.4265]
        assert_eq!(s.outliers, vec![4]);
        // Five values: even their range covers the median with 93.8% only.
        assert_eq!(s.ci95, None);
    }

    #[test]
    fn summary_matches_numpy_on_even_length_series() {
        let y = [10.2, 9.8, 10.1, 10.0, 9.9, 10.4, 13.5, 10.3];
        let s = summarize(&y).unwrap();
        assert!(close(s.median, 10.149999999999999));
        assert!(close(s.mean, 10.525));
        assert!(close(s.stddev, 1.218605760695394));
        assert!(close(s.mad, 0.20000000000000018));
        assert!(close(s.rsd, 0.11578202001856475));
        assert_eq!(s.outliers, vec![6]); // z(13.5) = 11.297875
        // n = 8: only [x(1), x(8)] reaches 95% (99.2%; [x(2), x(7)] is 93.0%).
        assert_eq!(s.ci95, Some(Interval { lo: 9.8, hi: 13.5 }));
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        let a = [15.0, 20.0, 35.0, 40.0, 50.0];
        let b = [0.3, 1.7, 2.2, 2.9, 4.15, 8.0, 9.25];
        let cases: [(f64, f64, f64); 11] = [
            (0.0, 15.0, 0.3),
            (2.5, 15.5, 0.51),
            (10.0, 17.0, 1.1400000000000001),
            (25.0, 20.0, 1.9500000000000002),
            (33.3, 24.979999999999997, 2.199),
            (50.0, 35.0, 2.9),
            (75.0, 40.0, 6.075),
            (90.0, 46.0, 8.5),
            (97.5, 49.0, 9.0625),
            (99.9, 49.96000000000001, 9.242500000000001),
            (100.0, 50.0, 9.25),
        ];
        for (p, want_a, want_b) in cases {
            assert!(
                close(percentile(&a, p), want_a),
                "a p={p}: {}",
                percentile(&a, p)
            );
            assert!(
                close(percentile(&b, p), want_b),
                "b p={p}: {}",
                percentile(&b, p)
            );
        }
        assert_eq!(percentile(&a, -5.0), 15.0);
        assert_eq!(percentile(&a, 250.0), 50.0);
        assert!(percentile(&[], 50.0).is_nan());
        assert!(percentile(&a, f64::NAN).is_nan());
    }

    #[test]
    fn median_of_even_and_odd_lengths() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[3.5, 1.25, 10.0, 7.75, 2.0, 6.0]), 4.75);
        assert_eq!(median(&[9.0, 1.0, 5.0]), 5.0);
        assert_eq!(median(&[7.0]), 7.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn rejects_empty_and_non_finite_input() {
        assert_eq!(summarize(&[]), None);
        assert_eq!(summarize(&[1.0, f64::NAN]), None);
        assert_eq!(summarize(&[f64::INFINITY, 1.0]), None);
        assert_eq!(summarize(&[f64::NEG_INFINITY]), None);
    }

    #[test]
    fn single_sample_collapses() {
        let s = summarize(&[4.5]).unwrap();
        assert_eq!(
            (s.n, s.median, s.mean, s.stddev, s.mad, s.rsd),
            (1, 4.5, 4.5, 0.0, 0.0, 0.0)
        );
        assert_eq!(s.ci95, None);
        assert!(s.outliers.is_empty());
    }

    #[test]
    fn zero_mad_flags_nothing_and_zero_mean_gives_zero_rsd() {
        let s = summarize(&[5.0, 5.0, 5.0, 5.0, 100.0]).unwrap();
        assert_eq!(s.mad, 0.0);
        assert!(s.outliers.is_empty());
        let s = summarize(&[-1.0, 1.0]).unwrap();
        assert_eq!((s.mean, s.rsd), (0.0, 0.0));
    }

    #[test]
    fn input_order_only_changes_outlier_indices() {
        let y = [10.2, 9.8, 10.1, 10.0, 9.9, 10.4, 13.5, 10.3, 9.7];
        let mut rev = y;
        rev.reverse();
        let (s, r) = (summarize(&y).unwrap(), summarize(&rev).unwrap());
        assert_eq!(s.outliers, vec![6]);
        assert_eq!(r.outliers, vec![2]);
        assert_eq!(
            Summary {
                outliers: vec![],
                ..s
            },
            Summary {
                outliers: vec![],
                ..r
            }
        );
    }

    #[test]
    fn generator_matches_python_replication() {
        let mut rng = Pcg64::seed_from_u64(42);
        let first = [rng.next_u64(), rng.next_u64(), rng.next_u64()];
        assert_eq!(
            first,
            [
                4178418447715145737,
                4410739922618931473,
                14034899209665866285
            ]
        );
    }

    /// The sign-test interval's ranks, against the binomial tables: n = 6
    /// to 8 give the range, 9 to 11 the second values, 20 the sixth (from
    /// below: P(Bin(20, ½) ≤ 5) = 0.0207, P(≤ 6) = 0.0577).
    #[test]
    fn median_ci_ranks_follow_the_binomial_coverage() {
        let ranks = |n: usize| {
            let sorted: Vec<f64> = (1..=n).map(|i| i as f64).collect();
            median_ci95(&sorted).map(|c| (c.lo as usize, c.hi as usize))
        };
        for n in 0..6 {
            assert_eq!(ranks(n), None, "n = {n}");
        }
        assert_eq!(ranks(6), Some((1, 6)));
        assert_eq!(ranks(8), Some((1, 8)));
        assert_eq!(ranks(9), Some((2, 8)));
        assert_eq!(ranks(11), Some((2, 10)));
        assert_eq!(ranks(12), Some((3, 10)));
        assert_eq!(ranks(20), Some((6, 15)));
        assert_eq!(ranks(100), Some((40, 61)));
    }

    /// Three values 1% apart: no outlier is flagged (it used to be).
    #[test]
    fn few_values_flag_no_outlier() {
        let s = summarize(&[100.0, 100.2, 101.0]).unwrap();
        assert!(s.outliers.is_empty() && s.ci95.is_none());
        let s = summarize(&[100.0, 100.1, 100.2, 100.3, 150.0]).unwrap();
        assert_eq!(s.outliers, vec![4]);
    }

    #[test]
    fn median_ci_of_200_uniform_samples_is_narrow() {
        let data = uniform(&mut Pcg64::seed_from_u64(2024), 200, 0.0, 1.0);
        let s = summarize(&data).unwrap();
        let ci = s.ci95.clone().unwrap();
        assert!(ci.contains(s.median), "{ci:?} {}", s.median);
        assert!(ci.contains(0.5), "{ci:?}"); // true median
        // Asymptotic width: 2 * 1.96 / (2 * f(m) * sqrt(n)) = 0.139 for U(0,1).
        let width = ci.hi - ci.lo;
        assert!(width > 0.07 && width < 0.21, "width {width}");
    }

    #[test]
    fn permutation_exact_small_case() {
        // 20 splits of {1..6} into 3+3; |median gap| >= 3 only for
        // {1,2,3}|{4,5,6}, {1,2,4}|{3,5,6} and their mirrors: p = 4/20.
        let (a, b) = ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]);
        assert_eq!(permutation_test(&a, &b, 20, 1), 0.2);
        assert_eq!(permutation_test(&a, &b, 1000, 2), 0.2); // seed unused
        // One resample short of exact: Monte Carlo, p = (count+1)/20.
        let mc = permutation_test(&a, &b, 19, 1);
        assert!(mc > 0.0 && mc <= 1.0 && (mc * 20.0).fract() == 0.0, "{mc}");
        // itertools enumeration: 2 of C(7,4) = 35 splits.
        let p = permutation_test(&[1.2, 3.4, 2.2, 5.0], &[4.1, 6.3, 7.7], 35, 0);
        assert!(close(p, 2.0 / 35.0), "{p}");
    }

    #[test]
    fn permutation_monte_carlo_matches_python_replication() {
        let a = [10.2, 9.8, 10.1, 10.0, 9.9, 10.4, 13.5, 10.3, 10.05, 9.95];
        let b = [10.4, 10.6, 10.1, 10.9, 10.3, 10.7, 10.2, 11.0, 10.5, 10.45];
        // C(20,10) = 184756 > 1000: 12 of 1000 random splits reach the gap.
        assert!(close(permutation_test(&a, &b, 1000, 11), 13.0 / 1001.0));
    }

    #[test]
    fn permutation_detects_clear_difference_and_handles_edges() {
        let mut rng = Pcg64::seed_from_u64(5);
        let a = uniform(&mut rng, 20, 10.0, 11.0);
        let b = uniform(&mut rng, 20, 12.0, 13.0);
        let p = permutation_test(&a, &b, 10_000, 3);
        assert!(p < 0.01, "{p}");
        assert_eq!(permutation_test(&[], &b, 100, 3), 1.0);
        assert_eq!(permutation_test(&a, &[], 100, 3), 1.0);
        assert_eq!(permutation_test(&a, &[f64::NAN], 100, 3), 1.0);
        assert_eq!(permutation_test(&a, &a, 100, 3), 1.0);
        assert_eq!(permutation_test(&a, &b, 0, 3), 1.0);
    }

    #[test]
    fn permutation_false_positive_rate_is_near_nominal() {
        let mut rng = Pcg64::seed_from_u64(77);
        let pairs = 200;
        let hits = (0..pairs)
            .filter(|&i| {
                let a = uniform(&mut rng, 10, 0.0, 1.0);
                let b = uniform(&mut rng, 10, 0.0, 1.0);
                permutation_test(&a, &b, 1000, i) < 0.05
            })
            .count();
        let rate = hits as f64 / pairs as f64;
        // With these fixed seeds the rate is 13/200 = 0.065 (nominal 0.05).
        // The lower bound catches a test that never rejects.
        assert!((0.01..=0.10).contains(&rate), "{rate}");
    }

    #[test]
    fn ratio_of_doubled_series_is_two() {
        let base = uniform(&mut Pcg64::seed_from_u64(8), 30, 1.0, 2.0);
        let doubled: Vec<f64> = base.iter().map(|x| 2.0 * x).collect();
        let r = ratio_of_medians(&doubled, &base, 4).unwrap();
        assert_eq!(r.value, 2.0);
        assert!(
            r.ci95.contains(2.0) && r.ci95.lo > 1.5 && r.ci95.hi < 2.5,
            "{r:?}"
        );
        assert_eq!(r, ratio_of_medians(&doubled, &base, 4).unwrap());
    }

    #[test]
    fn ratio_matches_python_replication_and_rejects_bad_input() {
        let cur = [12.1, 11.8, 12.6, 12.0, 13.1, 11.9, 12.4];
        let base = [10.0, 10.3, 9.7, 10.1, 9.9, 10.6];
        let r = ratio_of_medians(&cur, &base, 3).unwrap();
        assert!(close(r.value, 1.2039800995024874));
        assert!(close(r.ci95.lo, 1.1578947368421053), "{r:?}");
        assert!(close(r.ci95.hi, 1.2663316582914574), "{r:?}");
        assert_eq!(ratio_of_medians(&[], &base, 3), None);
        assert_eq!(ratio_of_medians(&cur, &[], 3), None);
        assert_eq!(ratio_of_medians(&cur, &[0.0, 0.0, 1.0], 3), None);
        assert_eq!(ratio_of_medians(&[f64::NAN], &base, 3), None);
        assert_eq!(ratio_of_medians(&cur, &[-1.0, 2.0, 3.0], 3), None);
        assert_eq!(ratio_of_medians(&[-0.5, 1.0], &base, 3), None);
    }
}
