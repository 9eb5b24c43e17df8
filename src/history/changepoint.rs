//! Change points: where a series of per-run medians shifted for real.
//!
//! # Method
//!
//! Binary segmentation (Vostrikova 1981) with `compare`'s permutation test
//! ([`crate::stats::permutation_test`], the same test and resolution as
//! `isobench compare`) as the significance test, corrected for the number
//! of splits scanned — the approach of E-divisive-style detectors such as
//! MongoDB's (Daly et al., "Creating a Virtuous Cycle in Performance
//! Testing at MongoDB", ICPE 2020), with medians instead of energy
//! distances so that it agrees with `compare`:
//!
//! 1. In a segment of `n` runs, every split point `k` that leaves at least
//!    [`Settings::min_segment`] runs on each side is a candidate (`K` of
//!    them). The split is *located* by Pettitt's statistic (Pettitt 1979):
//!    the Mann–Whitney count `U_k = Σ_{i<k} Σ_{j≥k} sign(x_j − x_i)`,
//!    standardized by its null deviation `sqrt(k (n − k) (n + 1) / 3)`;
//!    the candidate with the largest `|z_k|` is chosen. A rank statistic,
//!    like a median, is not moved by one wild run, and unlike the gap
//!    between two medians it peaks sharply at a step (the medians' gap is
//!    flat over every split whose sides keep their majorities, so it would
//!    not say *where*).
//! 2. The permutation test compares the two sides there. Because the split
//!    was chosen as the most extreme of `K`, its raw p-value is corrected
//!    by Bonferroni: `p_adj = min(1, K · p)`. Up to the permutation noise,
//!    the chosen split is the one with the smallest p-value, so this bounds
//!    the chance of a false change point in a segment of pure noise by
//!    `alpha`. The test draws enough permutations
//!    (`max(compare::PERMUTATIONS, 10 · K / alpha)`) that a real shift can
//!    reach `p_adj < alpha` however many splits there are.
//! 3. A split is a change point when `p_adj < alpha` *and* the medians
//!    differ by at least the noise threshold (`compare`'s `--noise`,
//!    5% by default): a shift too small to matter is not reported however
//!    certain. Each side is then searched again; a segment without a
//!    change point ends the search there.
//!
//! A limit of binary segmentation: a shift that is undone later (a
//! "bump": up at run 20, back down at run 40) splits into two halves whose
//! medians may barely differ, and can go unseen; steps that keep their
//! direction, and a single regression, are what it finds.
//!
//! Why not test each split at `alpha` (no correction)? With 40 splits a
//! series of pure noise would show a "change" most of the time. Why
//! per-run medians, not every repetition pooled? The repetitions of one
//! run share its conditions (host load, build); runs are the independent
//! units, so each contributes one value. The permutation test's RNG is
//! seeded ([`Settings::seed`]), so the same history gives the same change
//! points every time.

use crate::compare;
use crate::stats;

/// How change points are searched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Family-wise significance level per segment.
    pub alpha: f64,
    /// The smallest shift of the median that counts, in percent.
    pub noise_pct: f64,
    /// The fewest runs on either side of a change point.
    pub min_segment: usize,
    /// Seed of the permutation test.
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        let t = compare::Thresholds::default();
        Settings {
            alpha: t.alpha,
            noise_pct: t.noise_pct,
            min_segment: 5,
            seed: compare::SEED,
        }
    }
}

/// A shift found in a series.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangePoint {
    /// Index of the first value after the shift.
    pub index: usize,
    /// Median of the segment before it.
    pub before: f64,
    /// Median of the segment after it.
    pub after: f64,
    /// The shift in percent of `before`.
    pub change_pct: f64,
    /// The permutation test's p-value, corrected for the splits scanned.
    pub p_adjusted: f64,
}

/// The change points of `values` (per-run medians in time order), by index.
pub fn find(values: &[f64], settings: &Settings) -> Vec<ChangePoint> {
    let mut out = Vec::new();
    if values.iter().all(|v| v.is_finite()) {
        segment(values, 0, settings, &mut out);
    }
    out.sort_by_key(|c| c.index);
    out
}

fn segment(values: &[f64], offset: usize, s: &Settings, out: &mut Vec<ChangePoint>) {
    let m = s.min_segment.max(2);
    let n = values.len();
    if n < 2 * m {
        return;
    }
    let candidates = n - 2 * m + 1;
    let sign = |a: f64, b: f64| (a > b) as i64 - (a < b) as i64;
    // U(k + 1) = U(k) + Σ_j sign(x_j − x_k), from U(0) = 0.
    let mut u = 0i64;
    let mut best = m;
    let mut best_z = f64::NEG_INFINITY;
    for k in 0..n - m {
        u += values.iter().map(|&x| sign(x, values[k])).sum::<i64>();
        let split = k + 1;
        if split < m {
            continue;
        }
        let sd = (split as f64 * (n - split) as f64 * (n + 1) as f64 / 3.0).sqrt();
        let z = (u as f64).abs() / sd;
        if z > best_z {
            best = split;
            best_z = z;
        }
    }
    let (left, right) = values.split_at(best);
    let before = stats::median(left);
    let after = stats::median(right);
    let change_pct = if before != 0.0 {
        (after - before) / before.abs() * 100.0
    } else {
        f64::INFINITY
    };
    if change_pct.abs() < s.noise_pct {
        return;
    }
    let resamples = compare::PERMUTATIONS.max((10.0 * candidates as f64 / s.alpha).ceil() as usize);
    let seed = s.seed ^ ((offset + best) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let p = stats::permutation_test(left, right, resamples, seed);
    let p_adjusted = (p * candidates as f64).min(1.0);
    if p_adjusted >= s.alpha {
        return;
    }
    out.push(ChangePoint {
        index: offset + best,
        before,
        after,
        change_pct,
        p_adjusted,
    });
    segment(left, offset, s, out);
    segment(right, offset + best, s, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Per-run medians of `reps` repetitions with ±`noise` relative noise
    /// (sum of 4 uniforms, near normal), times `step` from run `at` on.
    pub fn series(seed: u64, runs: usize, at: usize, step: f64, noise: f64) -> Vec<f64> {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
        (0..runs)
            .map(|i| {
                let level = if i >= at { 100.0 * step } else { 100.0 };
                let reps: Vec<f64> = (0..6)
                    .map(|_| {
                        let u: f64 = (0..4)
                            .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
                            .sum();
                        level * (1.0 + noise * u)
                    })
                    .collect();
                stats::median(&reps)
            })
            .collect()
    }

    #[test]
    fn a_step_at_run_30_of_50_is_found_there() {
        for seed in 0..5 {
            // Run 30 (1-based) is index 29: the first run after the step.
            let values = series(seed, 50, 29, 1.2, 0.1);
            let found = find(&values, &Settings::default());
            assert_eq!(found.len(), 1, "seed {seed}: {found:?}");
            let c = &found[0];
            assert!((28..=30).contains(&c.index), "seed {seed}: {c:?}");
            assert!((15.0..25.0).contains(&c.change_pct), "{c:?}");
            assert!(c.p_adjusted < 0.01, "{c:?}");
        }
    }

    #[test]
    fn pure_noise_has_no_change_point() {
        for seed in 100..120 {
            let mut values = series(seed, 50, 50, 1.0, 0.1);
            let found = find(&values, &Settings::default());
            assert!(found.is_empty(), "seed {seed}: {found:?}");
            // One wild run is not a shift.
            values[25] *= 3.0;
            let found = find(&values, &Settings::default());
            assert!(found.is_empty(), "seed {seed}, one outlier: {found:?}");
        }
    }

    #[test]
    fn noise_without_the_noise_threshold_rarely_fires() {
        // With the 5% floor off, only the corrected test stands between
        // noise and a false alarm: at alpha 0.01, at most a few of 40.
        let settings = Settings {
            noise_pct: 0.0,
            ..Settings::default()
        };
        let alarms = (200..240)
            .filter(|&seed| !find(&series(seed, 50, 50, 1.0, 0.1), &settings).is_empty())
            .count();
        assert!(alarms <= 2, "{alarms} false alarms in 40 noise series");
    }

    #[test]
    fn two_steps_are_both_found_and_short_series_have_none() {
        let mut values = series(7, 60, 20, 1.3, 0.05);
        for v in &mut values[40..] {
            *v *= 1.3;
        }
        let found: Vec<usize> = find(&values, &Settings::default())
            .iter()
            .map(|c| c.index)
            .collect();
        assert!(found.len() == 2, "{found:?}");
        assert!(
            (19..=21).contains(&found[0]) && (39..=41).contains(&found[1]),
            "{found:?}"
        );
        assert!(find(&values[..9], &Settings::default()).is_empty());
        assert!(find(&[1.0, f64::NAN, 2.0], &Settings::default()).is_empty());
    }
}
