//! Statistics of seed replicates as pure functions: intervals of a mean, paired and Welch t
//! tests, the exact sign-flip permutation test, rliable's probability of improvement, the
//! verdict of an effect, and Dodge et al.'s expected validation performance ([`evp`]).
//!
//! The Student t distribution is statrs's; the rest is a few lines each, written here because
//! no well-kept crate has them with scipy's conventions (the sign-flip test's tie tolerance,
//! rliable's 0.5 for equal samples, expected maxima *without* replacement). Every function is
//! checked against scipy.stats on `tests/fixtures/stats/reference.json`, which
//! `scripts/stats_reference.py` writes (see its docstring for each definition).

pub mod effect;
pub mod evp;
#[cfg(test)]
mod tests;

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

pub use effect::{compare, Effect, Method};
pub use evp::{expected_best, Expected};

/// The confidence level of every interval here.
pub const LEVEL: f64 = 0.95;

/// The default flat threshold: relative changes within ±0.1% are "no effect" (`[sweep] flat`).
pub const FLAT: f64 = 1e-3;

/// The largest n of the exact sign-flip test (2^12 = 4,096 sign patterns).
pub const SIGN_FLIP_MAX: usize = 12;

/// The p-quantile of Student's t with `df` degrees of freedom (`df` may be fractional: Welch).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, df) {
        Ok(t) => {
            // statrs inverts the incomplete beta to ~1e-10; two Newton steps on its (exact) CDF
            // bring the quantile to scipy's within 1e-12.
            let mut x = t.inverse_cdf(p);
            for _ in 0..2 {
                let pdf = statrs::distribution::Continuous::pdf(&t, x);
                if pdf > 0.0 && x.is_finite() {
                    x -= (t.cdf(x) - p) / pdf;
                }
            }
            x
        }
        Err(_) => f64::NAN,
    }
}

/// Two-sided p-value of a t statistic: `2 P(T > |t|)`.
pub fn t_two_sided_p(t: f64, df: f64) -> f64 {
    if t.is_nan() {
        return f64::NAN;
    }
    match StudentsT::new(0.0, 1.0, df) {
        Ok(d) => (2.0 * d.sf(t.abs())).min(1.0),
        Err(_) => f64::NAN,
    }
}

/// The sample mean.
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// The sample standard deviation (n - 1); `None` under 2 values.
pub fn sd(xs: &[f64]) -> Option<f64> {
    (xs.len() >= 2).then(|| {
        let m = mean(xs);
        (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
    })
}

/// n, mean, sd and the 95% Student t interval of the mean of some replicates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// `None` for a single value.
    pub sd: Option<f64>,
    /// `None` for a single value: one seed gives no interval.
    pub ci95: Option<[f64; 2]>,
}

impl Summary {
    /// `None` without values.
    pub fn of(xs: &[f64]) -> Option<Summary> {
        if xs.is_empty() {
            return None;
        }
        let m = mean(xs);
        let s = sd(xs);
        let ci95 = s.map(|s| {
            let hw =
                t_quantile(0.5 + LEVEL / 2.0, (xs.len() - 1) as f64) * s / (xs.len() as f64).sqrt();
            [m - hw, m + hw]
        });
        Some(Summary {
            n: xs.len(),
            mean: m,
            sd: s,
            ci95,
        })
    }

    /// Half the interval's width (the `±` of tables).
    pub fn half_width(&self) -> Option<f64> {
        self.ci95.map(|[lo, hi]| (hi - lo) / 2.0)
    }
}

/// A t test of a mean (one-sample or paired) or of a difference of means (Welch).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TTest {
    /// The mean (of the differences), or the difference of the two means.
    pub estimate: f64,
    pub ci95: [f64; 2],
    pub t: f64,
    pub df: f64,
    /// Two-sided; `None` when undefined (every difference exactly zero).
    pub p: Option<f64>,
}

/// The test of `estimate` with standard error `se`: a zero `se` (identical differences) gives a
/// zero-width interval and p = 0, or no p at all when the estimate is 0 too.
fn t_test(estimate: f64, se: f64, df: f64) -> TTest {
    let hw = t_quantile(0.5 + LEVEL / 2.0, df) * se;
    let (t, p) = if se > 0.0 {
        let t = estimate / se;
        (t, Some(t_two_sided_p(t, df)))
    } else if estimate != 0.0 {
        (estimate.signum() * f64::INFINITY, Some(0.0))
    } else {
        (f64::NAN, None)
    };
    TTest {
        estimate,
        ci95: [estimate - hw, estimate + hw],
        t,
        df,
        p,
    }
}

/// One-sample t test of `d` against 0 (the paired test on differences); `None` under 2 values.
pub fn one_sample(d: &[f64]) -> Option<TTest> {
    let s = sd(d)?;
    let n = d.len() as f64;
    Some(t_test(mean(d), s / n.sqrt(), n - 1.0))
}

/// The paired t test of `a - b` (same seed on both sides, in the same order).
pub fn paired(a: &[f64], b: &[f64]) -> Option<TTest> {
    if a.len() != b.len() {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    one_sample(&d)
}

/// Welch's t test of `mean(a) - mean(b)` (unequal variances, Welch-Satterthwaite degrees of
/// freedom); `None` unless both sides have 2 values or more.
pub fn welch(a: &[f64], b: &[f64]) -> Option<TTest> {
    let (sa, sb) = (sd(a)?, sd(b)?);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (va, vb) = (sa * sa / na, sb * sb / nb);
    let se = (va + vb).sqrt();
    let df = if va + vb > 0.0 {
        (va + vb).powi(2) / (va * va / (na - 1.0) + vb * vb / (nb - 1.0))
    } else {
        na + nb - 2.0
    };
    Some(t_test(mean(a) - mean(b), se, df))
}

/// The exact two-sided sign-flip permutation p of the mean of `d` (the paired permutation test):
/// every one of the 2^n sign patterns, p = 2 x the smaller tail, capped at 1, with scipy's
/// relative tolerance for ties (`permutation_test(..., permutation_type="samples")`). `None`
/// for an empty `d` or above [`SIGN_FLIP_MAX`] values.
pub fn sign_flip_p(d: &[f64]) -> Option<f64> {
    let n = d.len();
    if n == 0 || n > SIGN_FLIP_MAX {
        return None;
    }
    let observed = mean(d);
    let gamma = (observed * f64::EPSILON * 100.0).abs();
    let (mut less, mut greater) = (0usize, 0usize);
    let total = 1usize << n;
    for mask in 0..total {
        let s: f64 = d
            .iter()
            .enumerate()
            .map(|(i, x)| if mask >> i & 1 == 1 { -x } else { *x })
            .sum::<f64>()
            / n as f64;
        less += usize::from(s <= observed + gamma);
        greater += usize::from(s >= observed - gamma);
    }
    let tail = less.min(greater) as f64 / total as f64;
    Some((2.0 * tail).min(1.0))
}

/// rliable's probability of improvement of `x` over `y` (higher is better): P(X > Y) + P(X = Y)/2
/// over all pairs (the Mann-Whitney U statistic over n_x n_y), 0.5 when the samples are equal.
pub fn prob_improvement(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.is_empty() || y.is_empty() {
        return None;
    }
    if x == y {
        return Some(0.5);
    }
    let mut u = 0.0;
    for a in x {
        for b in y {
            u += if a > b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            };
        }
    }
    Some(u / (x.len() * y.len()) as f64)
}

/// How a relative change compares with the flat threshold, from its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The whole interval above `+flat`.
    Up,
    /// The whole interval below `-flat`.
    Down,
    /// The whole interval within `±flat`: no effect at this threshold (an equivalence decision,
    /// not "no significance").
    Flat,
    /// Anything else, and every estimate without an interval (one seed).
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Up => "up",
            Verdict::Down => "down",
            Verdict::Flat => "flat",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// Up, down or flat.
    pub fn is_decided(self) -> bool {
        self != Verdict::Inconclusive
    }
}

/// The verdict of a relative change with interval `ci95` at threshold `flat`.
pub fn verdict(ci95: Option<[f64; 2]>, flat: f64) -> Verdict {
    let Some([lo, hi]) = ci95 else {
        return Verdict::Inconclusive;
    };
    if lo > flat {
        Verdict::Up
    } else if hi < -flat {
        Verdict::Down
    } else if lo >= -flat && hi <= flat {
        Verdict::Flat
    } else {
        Verdict::Inconclusive
    }
}

/// The smallest number of seeds n >= 2 whose 95% interval half-width, `t(0.975, n-1) sd /
/// sqrt(n)`, falls below `margin`; `None` when even `cap` seeds would not (or `margin <= 0`).
pub fn seeds_needed(sd: f64, margin: f64, cap: usize) -> Option<usize> {
    // NaN margins fail `margin > 0` too.
    if margin.is_nan() || margin <= 0.0 || !sd.is_finite() {
        return None;
    }
    (2..=cap)
        .find(|&n| t_quantile(0.5 + LEVEL / 2.0, (n - 1) as f64) * sd / (n as f64).sqrt() < margin)
}
