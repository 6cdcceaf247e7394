//! One row against the baseline: the relative change per seed, paired where the baseline has
//! the row's seeds (Welch's interval otherwise), its p-values, rliable's probability of
//! improvement and the verdict.

use super::{
    mean, one_sample, prob_improvement, sd, sign_flip_p, verdict, welch, Verdict, SIGN_FLIP_MAX,
};
use serde::Serialize;

/// How an effect's interval was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Student t on the per-seed relative changes (same seed on both sides).
    Paired,
    /// The baseline lacks a seed of the row: Welch's interval of the difference of the means,
    /// divided by the baseline's mean.
    Welch,
    /// Too few values for an interval (one seed on a side).
    None,
}

/// A row's change from the baseline in one metric, as fractions (0.02 = +2%).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Effect {
    /// Paired: the pairs; Welch: the row's seeds.
    pub n: usize,
    /// The baseline's seeds with a value.
    pub n_baseline: usize,
    /// The mean of the per-seed relative changes (paired), or the change of the means.
    pub change: f64,
    pub ci95: Option<[f64; 2]>,
    /// Two-sided t test (paired, or Welch).
    pub p_value: Option<f64>,
    /// The exact sign-flip permutation p (paired, n <= 12).
    pub p_permutation: Option<f64>,
    /// P(row better than baseline), rliable's definition over the raw values of both sides.
    pub prob_improvement: Option<f64>,
    pub verdict: Verdict,
    pub method: Method,
    /// The standard deviation of one seed's relative change (paired: of the per-seed changes;
    /// Welch: of the difference of two single seeds), for the seeds-needed estimate.
    pub sd: Option<f64>,
}

/// Compares `row` with `base`, each a list of `(seed, value)` (a seed at most once a side):
/// relative changes `(row - base) / base`; `lower_is_better` orients the probability of
/// improvement (losses and perplexities). `None` when a side has no value.
pub fn compare(
    row: &[(i64, f64)],
    base: &[(i64, f64)],
    flat: f64,
    lower_is_better: bool,
) -> Option<Effect> {
    if row.is_empty() || base.is_empty() {
        return None;
    }
    let rv: Vec<f64> = row.iter().map(|p| p.1).collect();
    let bv: Vec<f64> = base.iter().map(|p| p.1).collect();
    let sign = if lower_is_better { -1.0 } else { 1.0 };
    let orient = |v: &[f64]| v.iter().map(|x| sign * x).collect::<Vec<f64>>();
    let prob = prob_improvement(&orient(&rv), &orient(&bv));
    let pairs: Option<Vec<f64>> = row
        .iter()
        .map(|(s, x)| {
            let b = base.iter().find(|(t, _)| t == s)?.1;
            Some((x - b) / b)
        })
        .collect();
    let mut e = Effect {
        n: row.len(),
        n_baseline: base.len(),
        change: 0.0,
        ci95: None,
        p_value: None,
        p_permutation: None,
        prob_improvement: prob,
        verdict: Verdict::Inconclusive,
        method: Method::None,
        sd: None,
    };
    match pairs {
        Some(rel) => {
            e.change = mean(&rel);
            e.sd = sd(&rel);
            if let Some(t) = one_sample(&rel) {
                e.method = Method::Paired;
                e.ci95 = Some(t.ci95);
                e.p_value = t.p;
                if rel.len() <= SIGN_FLIP_MAX {
                    e.p_permutation = sign_flip_p(&rel);
                }
            }
        }
        None => {
            let mb = mean(&bv);
            e.change = (mean(&rv) - mb) / mb;
            if let Some(t) = welch(&rv, &bv) {
                e.method = Method::Welch;
                let (a, b) = (t.ci95[0] / mb, t.ci95[1] / mb);
                e.ci95 = Some([a.min(b), a.max(b)]);
                e.p_value = t.p;
            }
            e.sd = sd(&rv)
                .zip(sd(&bv))
                .map(|(a, b)| (a * a + b * b).sqrt() / mb.abs());
        }
    }
    e.verdict = verdict(e.ci95, flat);
    Some(e)
}
