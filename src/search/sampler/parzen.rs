//! Multivariate TPE as Optuna 5's default `TPESampler` does it: the finished trials split into the
//! best `min(ceil(n / 10), 25)` ("below") and the rest plus running trials ("above"), completed
//! trials ranked first, then pruned ones (Optuna's `_split_trials`, see [`split`]); each side is
//! a mixture of product kernels (one truncated normal per numeric parameter in its TPE
//! coordinates, one smoothed categorical per choice) plus a prior kernel over the whole space; 24
//! candidates drawn from the "below" mixture, the one with the largest `ln l(x) - ln g(x)` wins.
//!
//! Kernels are products over parameters, so the sampler learns which parameter values go
//! *together* (the univariate `tpe` crate models each parameter alone); bandwidths follow Optuna's
//! neighbour rule with its "magic clip", old trials are down-weighted past 25 as in Optuna.

use super::{Observed, Outcome};
use crate::search::Dist;
use rand_search::rngs::StdRng;
use rand_search::RngExt;

/// Candidates drawn from the "below" mixture per suggestion (Optuna's `n_ei_candidates`).
const CANDIDATES: usize = 24;
/// Weight of the prior kernel relative to one trial's kernel (Optuna's `prior_weight`).
const PRIOR_WEIGHT: f64 = 1.0;

/// The next point (in parameter units) from the trials so far.
pub(super) fn suggest(space: &[Dist], rng: &mut StdRng, history: &[Observed]) -> Vec<f64> {
    let (below, above) = split(space, history);
    let l = Mixture::new(space, &below);
    let g = Mixture::new(space, &above);
    let mut best: Option<(f64, Vec<f64>)> = None;
    for _ in 0..CANDIDATES {
        let x = l.sample(space, rng);
        let score = l.log_pdf(space, &x) - g.log_pdf(space, &x);
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, x));
        }
    }
    best.map(|(_, x)| x).unwrap_or_default()
}

/// Optuna's `default_gamma`: how many of `n` finished trials are "good".
fn n_below(n: usize) -> usize {
    n.div_ceil(10).min(25)
}

/// The points of the good and of the other trials, each in trial order, as Optuna 5's
/// `_split_trials` draws the line: of the `n_below` good places, completed trials take as many as
/// they can (best value first); pruned trials fill the rest, the one that got furthest (latest
/// last evaluation) first and, at the same step, the lower value (a NaN last). Running trials are
/// always "above" (constant liar), and so are diverged ones; trials whose point does not fit the
/// space (a space changed since) are left out.
fn split<'a>(space: &[Dist], history: &'a [Observed]) -> (Vec<&'a [f64]>, Vec<&'a [f64]>) {
    let fits = |o: &Observed| o.point.len() == space.len() && o.point.iter().all(|x| x.is_finite());
    let finished = history
        .iter()
        .filter(|o| o.outcome != Outcome::Running)
        .count();
    let mut completed: Vec<(f64, usize)> = Vec::new();
    let mut pruned: Vec<(u64, f64, usize)> = Vec::new();
    for (i, o) in history.iter().enumerate().filter(|(_, o)| fits(o)) {
        match o.outcome {
            Outcome::Value(v) if v.is_finite() => completed.push((v, i)),
            Outcome::Pruned { step, value } => {
                pruned.push((step, if value.is_nan() { f64::INFINITY } else { value }, i))
            }
            _ => {}
        }
    }
    completed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    pruned.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    let n = n_below(finished);
    let from_pruned = n.saturating_sub(completed.len());
    let mut is_below = vec![false; history.len()];
    let good = completed.iter().take(n).map(|c| c.1);
    for i in good.chain(pruned.iter().take(from_pruned).map(|p| p.2)) {
        is_below[i] = true;
    }
    let (mut below, mut above) = (Vec::new(), Vec::new());
    for (i, o) in history.iter().enumerate().filter(|(_, o)| fits(o)) {
        if is_below[i] {
            below.push(o.point.as_slice());
        } else {
            above.push(o.point.as_slice());
        }
    }
    (below, above)
}

/// Optuna's `default_weights`: the oldest trials ramp up from `1/n`, the newest 25 weigh 1.
fn trial_weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let step = |i: usize| {
        if ramp == 1 {
            1.0 / n as f64
        } else {
            1.0 / n as f64 + (1.0 - 1.0 / n as f64) * i as f64 / (ramp - 1) as f64
        }
    };
    (0..ramp)
        .map(step)
        .chain(std::iter::repeat_n(1.0, 25))
        .collect()
}

/// One parameter's kernels, one per trial plus the prior (last).
enum Kernels {
    /// Truncated normals on `[lo, hi]` in TPE coordinates; `ln_z` is each one's log mass there.
    Numeric {
        mu: Vec<f64>,
        sigma: Vec<f64>,
        ln_z: Vec<f64>,
        lo: f64,
        hi: f64,
    },
    /// Each kernel's log probability per choice.
    Choice { ln_p: Vec<Vec<f64>> },
}

/// A mixture of product kernels over the whole space.
struct Mixture {
    ln_w: Vec<f64>,
    w: Vec<f64>,
    dims: Vec<Kernels>,
}

impl Mixture {
    fn new(space: &[Dist], points: &[&[f64]]) -> Self {
        let mut w = trial_weights(points.len());
        w.push(PRIOR_WEIGHT);
        let total: f64 = w.iter().sum();
        w.iter_mut().for_each(|x| *x /= total);
        let dims = space
            .iter()
            .enumerate()
            .map(|(d, dist)| {
                let xs: Vec<f64> = points.iter().map(|p| p[d]).collect();
                kernels(dist, &xs)
            })
            .collect();
        Mixture {
            ln_w: w.iter().map(|x| x.ln()).collect(),
            w,
            dims,
        }
    }

    fn sample(&self, space: &[Dist], rng: &mut StdRng) -> Vec<f64> {
        let u: f64 = rng.random();
        let mut acc = 0.0;
        let k = self
            .w
            .iter()
            .position(|w| {
                acc += w;
                u < acc
            })
            .unwrap_or(self.w.len() - 1);
        space
            .iter()
            .zip(&self.dims)
            .map(|(dist, kern)| match kern {
                Kernels::Numeric {
                    mu, sigma, lo, hi, ..
                } => dist.snap(trunc_normal(rng, mu[k], sigma[k], *lo, *hi)),
                Kernels::Choice { ln_p } => categorical(rng, &ln_p[k]) as f64,
            })
            .collect()
    }

    fn log_pdf(&self, space: &[Dist], x: &[f64]) -> f64 {
        let terms: Vec<f64> = (0..self.w.len())
            .map(|k| {
                self.ln_w[k]
                    + space
                        .iter()
                        .zip(&self.dims)
                        .zip(x)
                        .map(|((dist, kern), xd)| kernel_ln_pdf(dist, kern, k, *xd))
                        .sum::<f64>()
            })
            .collect();
        log_sum_exp(&terms)
    }
}

/// A parameter's kernels from the trials' values (parameter units).
fn kernels(dist: &Dist, xs: &[f64]) -> Kernels {
    if let Dist::Choice { n } = *dist {
        return choice_kernels(n, xs);
    }
    let (lo, hi) = dist.tpe_bounds();
    let mut mu: Vec<f64> = xs.iter().map(|x| dist.to_tpe(*x)).collect();
    let mut sigma = bandwidths(&mu, lo, hi);
    mu.push(0.5 * (lo + hi));
    sigma.push(hi - lo);
    let ln_z = mu
        .iter()
        .zip(&sigma)
        .map(|(m, s)| ln_normal_mass(*m, *s, lo, hi))
        .collect();
    Kernels::Numeric {
        mu,
        sigma,
        ln_z,
        lo,
        hi,
    }
}

/// Optuna's bandwidths: the larger gap to a sorted neighbour (the ends of the range count only
/// for a single point), clipped to `[(hi - lo) / min(100, n + 2), hi - lo]`.
fn bandwidths(mu: &[f64], lo: f64, hi: f64) -> Vec<f64> {
    let n = mu.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|a, b| mu[*a].total_cmp(&mu[*b]));
    let sorted: Vec<f64> = order.iter().map(|i| mu[*i]).collect();
    let at = |i: isize| -> f64 {
        match i {
            -1 => lo,
            i if i as usize == n => hi,
            i => sorted[i as usize],
        }
    };
    let mut s: Vec<f64> = (0..n as isize)
        .map(|i| (at(i) - at(i - 1)).max(at(i + 1) - at(i)))
        .collect();
    if n >= 2 {
        s[0] = sorted[1] - sorted[0];
        s[n - 1] = sorted[n - 1] - sorted[n - 2];
    }
    let (min_s, max_s) = ((hi - lo) / (100f64).min(n as f64 + 2.0), hi - lo);
    let mut out = vec![0.0; n];
    for (j, i) in order.iter().enumerate() {
        out[*i] = s[j].clamp(min_s, max_s);
    }
    out
}

/// Per trial: `PRIOR_WEIGHT / (n + 1)` on every choice plus 1 on its own, normalised; the prior
/// kernel is uniform.
fn choice_kernels(n_choices: usize, xs: &[f64]) -> Kernels {
    let n_kernels = xs.len() + 1;
    let base = PRIOR_WEIGHT / n_kernels as f64;
    let mut ln_p: Vec<Vec<f64>> = xs
        .iter()
        .map(|x| {
            let mut row = vec![base; n_choices];
            if let Some(c) = row.get_mut(*x as usize) {
                *c += 1.0;
            }
            let sum: f64 = row.iter().sum();
            row.iter().map(|p| (p / sum).ln()).collect()
        })
        .collect();
    ln_p.push(vec![-(n_choices as f64).ln(); n_choices]);
    Kernels::Choice { ln_p }
}

/// The log density (continuous parameters) or log mass of the value's grid cell (ints) of
/// parameter value `x` under kernel `k`.
fn kernel_ln_pdf(dist: &Dist, kern: &Kernels, k: usize, x: f64) -> f64 {
    match kern {
        Kernels::Choice { ln_p } => ln_p[k]
            .get(x as usize)
            .copied()
            .unwrap_or(f64::NEG_INFINITY),
        Kernels::Numeric {
            mu,
            sigma,
            ln_z,
            lo,
            hi,
        } => {
            let (m, s) = (mu[k], sigma[k]);
            match *dist {
                Dist::Int { step, log, .. } => {
                    let half = 0.5 * step as f64;
                    let tr = |v: f64| {
                        if log {
                            v.max(f64::MIN_POSITIVE).ln()
                        } else {
                            v
                        }
                    };
                    let (a, b) = (tr(x - half).max(*lo), tr(x + half).min(*hi));
                    ln_normal_mass(m, s, a, b) - ln_z[k]
                }
                _ => {
                    let z = (dist.to_tpe(x) - m) / s;
                    -0.5 * z * z - s.ln() - LN_SQRT_2PI - ln_z[k]
                }
            }
        }
    }
}

const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// `ln P(a < X < b)` for `X ~ N(mu, s)`, accurate in the tails (computed on the side of the
/// mean the interval lies on; a density-times-width bound where even that underflows).
fn ln_normal_mass(mu: f64, s: f64, a: f64, b: f64) -> f64 {
    let (za, zb) = ((a - mu) / s, (b - mu) / s);
    if zb <= za {
        return f64::NEG_INFINITY;
    }
    let mass = if za >= 0.0 {
        upper_tail(za) - upper_tail(zb)
    } else if zb <= 0.0 {
        upper_tail(-zb) - upper_tail(-za)
    } else {
        1.0 - upper_tail(-za) - upper_tail(zb)
    };
    if mass > 1e-300 {
        return mass.ln();
    }
    let near = za.abs().min(zb.abs());
    -0.5 * near * near - LN_SQRT_2PI + (zb - za).ln()
}

/// `P(Z > z)` for a standard normal: `erfc(z / sqrt 2) / 2`.
fn upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7
/// everywhere, so tail masses stay accurate).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// A draw of `N(mu, s)` truncated to `[lo, hi)` (rejection; the means lie inside, so at least a
/// third of the draws are accepted; uniform after 200 misses).
fn trunc_normal(rng: &mut StdRng, mu: f64, s: f64, lo: f64, hi: f64) -> f64 {
    for _ in 0..200 {
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let x = mu + s * z;
        if x >= lo && x < hi {
            return x;
        }
    }
    lo + rng.random::<f64>() * (hi - lo)
}

fn categorical(rng: &mut StdRng, ln_p: &[f64]) -> usize {
    let u: f64 = rng.random();
    let mut acc = 0.0;
    ln_p.iter()
        .position(|lp| {
            acc += lp.exp();
            u < acc
        })
        .unwrap_or(ln_p.len().saturating_sub(1))
}

fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erfc_and_tail_masses_match_reference_values() {
        // erfc(0.5), erfc(2), erfc(-1) from tables.
        assert!((erfc(0.5) - 0.479_500_122).abs() < 1e-7);
        assert!((erfc(2.0) / 0.004_677_734_981 - 1.0).abs() < 1e-6);
        assert!((erfc(-1.0) - 1.842_700_793).abs() < 1e-7);
        // P(-1 < Z < 1) and a far tail: P(10 < Z < 11) ~ phi(10)/10 (Mills' ratio, ~1%).
        assert!((ln_normal_mass(0.0, 1.0, -1.0, 1.0) - 0.682_689_492_f64.ln()).abs() < 1e-6);
        let tail = ln_normal_mass(0.0, 1.0, 10.0, 11.0);
        assert!(
            (tail - (-50.0 - LN_SQRT_2PI - 10f64.ln())).abs() < 0.02,
            "{tail}"
        );
    }

    #[test]
    fn bandwidths_and_weights_follow_optunas_rules() {
        // Sorted 0.1, 0.2, 0.6 on [0, 1]: ends take the inner gap, the middle the larger one; the
        // clip is 1 / min(100, 3 + 2) = 0.2.
        let s = bandwidths(&[0.6, 0.1, 0.2], 0.0, 1.0);
        assert_eq!(s.len(), 3);
        assert!(
            (s[0] - 0.4).abs() < 1e-12 && (s[1] - 0.2).abs() < 1e-12,
            "{s:?}"
        );
        assert!((s[2] - 0.4).abs() < 1e-12);
        // One point: the larger distance to an end; clipped below at (hi - lo) / 3.
        assert!((bandwidths(&[0.9], 0.0, 1.0)[0] - 0.9).abs() < 1e-12);
        assert!((bandwidths(&[0.5, 0.5], 0.0, 1.0)[0] - 0.25).abs() < 1e-12);
        let w = trial_weights(30);
        assert_eq!(w.len(), 30);
        assert!((w[0] - 1.0 / 30.0).abs() < 1e-12 && w[4] == 1.0 && w[29] == 1.0);
        assert_eq!(n_below(49), 5);
        assert_eq!(n_below(1000), 25);
    }

    #[test]
    fn the_best_trials_are_below_and_running_ones_above() {
        let o = |x: f64, outcome| Observed {
            point: vec![x],
            outcome,
        };
        let h = vec![
            o(0.1, Outcome::Value(3.0)),
            o(0.2, Outcome::Value(1.0)),
            o(0.3, Outcome::Running),
            o(0.4, Outcome::Bad),
            Observed {
                point: vec![],
                outcome: Outcome::Value(0.0),
            },
        ];
        let space = [Dist::Uniform {
            low: 0.0,
            high: 1.0,
        }];
        let (below, above) = split(&space, &h);
        assert_eq!(below, vec![&[0.2][..]]);
        assert_eq!(above, vec![&[0.1][..], &[0.3][..], &[0.4][..]]);
    }

    #[test]
    fn pruned_trials_fill_the_good_places_that_completed_ones_leave_as_optuna_does() {
        let o = |x: f64, outcome| Observed {
            point: vec![x],
            outcome,
        };
        let pruned = |step, value| Outcome::Pruned { step, value };
        let space = [Dist::Uniform {
            low: 0.0,
            high: 1.0,
        }];
        // 22 finished trials: ceil(22 / 10) = 3 good places. One completed trial takes the first;
        // the two pruned trials that got furthest (step 60) take the others, the lower value
        // first; a lower value at an earlier step does not count; NaN ranks last at its step.
        let mut h = vec![
            o(0.01, pruned(20, 0.5)),
            o(0.02, pruned(60, 4.0)),
            o(0.03, Outcome::Value(9.0)),
            o(0.04, pruned(60, f64::NAN)),
            o(0.05, pruned(60, 3.0)),
            o(0.06, Outcome::Running),
            o(0.07, pruned(60, 3.5)),
            o(0.08, Outcome::Bad),
        ];
        h.extend((0..15).map(|i| o(0.5 + i as f64 * 0.01, pruned(20, 1.0 + i as f64))));
        let (below, above) = split(&space, &h);
        assert_eq!(below, vec![&[0.03][..], &[0.05][..], &[0.07][..]]);
        assert_eq!(above.len(), h.len() - 3);
        assert!(above.contains(&&[0.06][..]) && above.contains(&&[0.08][..]));
        // With three completed trials they take every good place: no pruned trial is good.
        h[1].outcome = Outcome::Value(8.0);
        h[3].outcome = Outcome::Value(10.0);
        let (below, _) = split(&space, &h);
        assert_eq!(below, vec![&[0.02][..], &[0.03][..], &[0.04][..]]);
        // Only pruned trials: the furthest ones are the good ones (here step 60, values 3.0, 3.5,
        // 4.0), not those with the lowest value at an earlier step (0.5 at step 20).
        let only: Vec<Observed> = h
            .iter()
            .map(|x| match x.outcome {
                Outcome::Value(_) => o(x.point[0], pruned(60, 4.0)),
                _ => x.clone(),
            })
            .collect();
        let (below, _) = split(&space, &only);
        assert_eq!(below, vec![&[0.02][..], &[0.05][..], &[0.07][..]]);
    }
}
