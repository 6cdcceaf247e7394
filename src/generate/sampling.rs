//! Choosing the next token from logits: repetition penalty, temperature, top-k, nucleus (top-p) and greedy.
//!
//! The order of the filters is Hugging Face's `generate`: repetition penalty on the raw logits,
//! then temperature, then top-k, then top-p on the resulting distribution. Nucleus sampling is the
//! paper's equations (1)-(2): the smallest set `V(p)` of tokens whose cumulative probability is at
//! least `p`, probabilities renormalised by `p' = sum_{x in V(p)} P(x)`, one draw.

use anyhow::Result;
use rand::Rng;
use std::cmp::Ordering;

use crate::error::UsageError;

/// Relative slack for `cumulative >= p`: probabilities from a softmax are rounded, and a
/// distribution whose first tokens sum to exactly `p` on paper must stop there.
const CUM_EPS: f64 = 1e-12;

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SamplingParams {
    /// Nucleus mass in (0, 1]; 1 keeps every token.
    pub top_p: f64,
    /// Keep only the k most likely tokens first; 0 disables.
    pub top_k: usize,
    /// Logits are divided by this (> 0).
    pub temperature: f64,
    /// CTRL's penalty (Keskar et al. 2019) on tokens already in the sequence; 1 disables.
    pub repetition_penalty: f64,
    /// Always the most likely token (after the repetition penalty).
    pub greedy: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            top_p: 0.9,
            top_k: 0,
            temperature: 1.0,
            repetition_penalty: 1.0,
            greedy: false,
        }
    }
}

impl SamplingParams {
    /// Rejects values outside their domains, naming the flag.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| -> Result<()> { Err(UsageError(m).into()) };
        if self.greedy {
            // Temperature, top-k and top-p do not change the argmax; only the penalty matters.
        } else if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!(
                "--top-p {} is outside (0, 1]: the nucleus must keep some probability mass \
                 (use --greedy, or --top-p 0, for the most likely token)",
                self.top_p
            ));
        } else if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "--temperature {} must be a positive number (e.g. 0.7 or 1.0; use --greedy for \
                 temperature -> 0)",
                self.temperature
            ));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!(
                "--repetition-penalty {} must be a positive number (1.0 disables it; CTRL used 1.2)",
                self.repetition_penalty
            ));
        }
        Ok(())
    }
}

/// CTRL's repetition penalty: each distinct token already in `previous` has its logit divided
/// by `penalty` when positive and multiplied by it when negative (HF's
/// `RepetitionPenaltyLogitsProcessor`, which also counts the prompt).
pub fn apply_repetition_penalty(logits: &mut [f32], previous: &[u32], penalty: f64) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = vec![false; logits.len()];
    for &t in previous {
        let t = t as usize;
        if t < logits.len() && !seen[t] {
            seen[t] = true;
            let l = logits[t] as f64;
            logits[t] = if l > 0.0 { l / penalty } else { l * penalty } as f32;
        }
    }
}

/// Numerically stable softmax of `logits / temperature`, in f64.
pub fn softmax(logits: &[f32], temperature: f64) -> Vec<f64> {
    let max = logits
        .iter()
        .copied()
        .filter(|x| !x.is_nan())
        .fold(f32::NEG_INFINITY, f32::max) as f64;
    if max == f64::NEG_INFINITY {
        return vec![0.0; logits.len()];
    }
    let mut p: Vec<f64> = logits
        .iter()
        .map(|&x| {
            let x = x as f64;
            if x.is_nan() {
                0.0
            } else {
                ((x - max) / temperature).exp()
            }
        })
        .collect();
    let z: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= z);
    p
}

/// Descending probability, ties broken by the lower token id (a total, deterministic order).
fn by_prob_desc(probs: &[f64]) -> impl Fn(&u32, &u32) -> Ordering + '_ {
    move |&a, &b| {
        probs[b as usize]
            .total_cmp(&probs[a as usize])
            .then(a.cmp(&b))
    }
}

/// The index of the largest value (the lowest index among ties).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] || values[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

/// The `k` most likely token ids, most likely first (all of them when `k` is 0 or >= V).
pub fn top_k_ids(probs: &[f64], k: usize) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..probs.len() as u32).collect();
    let cmp = by_prob_desc(probs);
    if k > 0 && k < ids.len() {
        ids.select_nth_unstable_by(k - 1, &cmp);
        ids.truncate(k);
    }
    ids.sort_unstable_by(&cmp);
    ids
}

/// The nucleus of a distribution: `V(p)` in descending probability and `P'(x) = P(x) / p'`.
#[derive(Debug, Clone, PartialEq)]
pub struct Nucleus {
    pub ids: Vec<u32>,
    /// Renormalised probabilities, aligned with `ids`; they sum to 1.
    pub probs: Vec<f64>,
    /// `p'`: the probability mass of the kept set before renormalising.
    pub mass: f64,
}

/// `p * total` less a relative hair (see [`CUM_EPS`]); infinite for `p >= 1` (keep everything).
fn nucleus_target(probs: &[f64], p: f64) -> f64 {
    if p >= 1.0 {
        f64::INFINITY
    } else {
        p * probs.iter().sum::<f64>() * (1.0 - CUM_EPS)
    }
}

/// Moves the members of `V(p)` to the front of `ids` (in no particular order) and returns how
/// many there are. A quickselect on probability mass: each round splits the candidate range at
/// its median (linear-time selection) and keeps the half holding the boundary token, so the
/// cost is linear in the vocabulary even when the nucleus holds most of it (a flat distribution,
/// e.g. an untrained model), where sorting 50k tokens each step would dominate decoding.
fn nucleus_cut(ids: &mut [u32], probs: &[f64], target: f64) -> usize {
    let cmp = by_prob_desc(probs);
    // Invariant: ids[..lo] are all in V(p) with mass `acc` < target; the boundary token (the
    // last one of V(p)) is in ids[lo..hi]; ids[hi..] are all outside.
    let (mut lo, mut hi, mut acc) = (0usize, ids.len(), 0.0f64);
    while hi - lo > 64 {
        let mid = lo + (hi - lo) / 2;
        ids[lo..hi].select_nth_unstable_by(mid - lo, &cmp);
        let left: f64 = ids[lo..mid].iter().map(|&i| probs[i as usize]).sum();
        if acc + left >= target {
            hi = mid;
        } else {
            acc += left;
            lo = mid;
        }
    }
    ids[lo..hi].sort_unstable_by(&cmp);
    for (j, &i) in ids[lo..hi].iter().enumerate() {
        acc += probs[i as usize];
        if acc >= target {
            return lo + j + 1;
        }
    }
    hi
}

/// The smallest set of tokens whose cumulative probability is >= `p` (the paper's eq. 1), with
/// probabilities renormalised by its mass `p'` (eq. 2), most likely first (ties: lower id
/// first). `p >= 1` keeps every token. `probs` need not sum to 1 (zeros from top-k are fine);
/// `p` applies to their total, as when HF renormalises after top-k.
pub fn nucleus(probs: &[f64], p: f64) -> Nucleus {
    let mut ids: Vec<u32> = (0..probs.len() as u32).collect();
    let k = nucleus_cut(&mut ids, probs, nucleus_target(probs, p));
    ids.truncate(k);
    ids.sort_unstable_by(by_prob_desc(probs));
    let mass: f64 = ids.iter().map(|&i| probs[i as usize]).sum();
    let probs = ids.iter().map(|&i| probs[i as usize] / mass).collect();
    Nucleus { ids, probs, mass }
}

/// One draw from `P'` (eq. 2) without sorting the nucleus: the order in which the kept tokens
/// are walked does not change the distribution, only which `u` maps to which token.
pub fn sample_nucleus(probs: &[f64], p: f64, rng: &mut impl Rng) -> u32 {
    let mut ids: Vec<u32> = (0..probs.len() as u32).collect();
    let k = nucleus_cut(&mut ids, probs, nucleus_target(probs, p));
    ids.truncate(k);
    let kept: Vec<f64> = ids.iter().map(|&i| probs[i as usize]).collect();
    let mass: f64 = kept.iter().sum();
    let renormalised: Vec<f64> = kept.iter().map(|x| x / mass).collect();
    draw(&ids, &renormalised, rng)
}

/// One draw from a discrete distribution given as (ids, probabilities summing to ~1).
pub fn draw(ids: &[u32], probs: &[f64], rng: &mut impl Rng) -> u32 {
    let u: f64 = rng.random::<f64>(); // [0, 1)
    let mut cum = 0.0;
    for (&id, &p) in ids.iter().zip(probs) {
        cum += p;
        if u < cum {
            return id;
        }
    }
    // Rounding left the sum a hair below u: the last token with any probability.
    ids.iter()
        .zip(probs)
        .rev()
        .find(|(_, &p)| p > 0.0)
        .map(|(&id, _)| id)
        .unwrap_or(ids[0])
}

/// The next token for one sequence: `logits` [V] of the last position, `previous` every token
/// so far (prompt included) for the repetition penalty.
pub fn next_token(
    logits: &mut [f32],
    previous: &[u32],
    params: &SamplingParams,
    rng: &mut impl Rng,
) -> u32 {
    apply_repetition_penalty(logits, previous, params.repetition_penalty);
    if params.greedy {
        return argmax(logits);
    }
    let mut probs = softmax(logits, params.temperature);
    if params.top_k > 0 && params.top_k < probs.len() {
        let keep = top_k_ids(&probs, params.top_k);
        let mut filtered = vec![0.0; probs.len()];
        for i in keep {
            filtered[i as usize] = probs[i as usize];
        }
        probs = filtered;
    }
    sample_nucleus(&probs, params.top_p, rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < tol)
    }

    #[test]
    fn nucleus_keeps_the_smallest_covering_set() {
        let p = [0.1, 0.5, 0.05, 0.3, 0.05];
        // 0.5 < 0.6 <= 0.5 + 0.3: two tokens.
        let n = nucleus(&p, 0.6);
        assert_eq!(n.ids, vec![1, 3]);
        assert!((n.mass - 0.8).abs() < 1e-12);
        assert!(close(&n.probs, &[0.5 / 0.8, 0.3 / 0.8], 1e-12));
        // Exactly reaching p stops there (>=, eq. 1).
        assert_eq!(nucleus(&p, 0.8).ids, vec![1, 3]);
        assert_eq!(nucleus(&p, 0.85).ids, vec![1, 3, 0]);
        // Ties (two 0.05) resolve to the lower id, deterministically.
        assert_eq!(nucleus(&p, 0.92).ids, vec![1, 3, 0, 2]);
        // p = 1 keeps all; a tiny p keeps the argmax alone with probability 1.
        let all = nucleus(&p, 1.0);
        assert_eq!(all.ids, vec![1, 3, 0, 2, 4]);
        assert!(close(&all.probs, &[0.5, 0.3, 0.1, 0.05, 0.05], 1e-12));
        let one = nucleus(&p, 1e-9);
        assert_eq!((one.ids, one.probs), (vec![1], vec![1.0]));
    }

    #[test]
    fn nucleus_on_a_large_vocabulary_matches_a_full_sort() {
        // A Zipf-like 50k distribution: the kept set is far larger than the first 64 candidates.
        let v = 50_259;
        let raw: Vec<f64> = (0..v)
            .map(|i| 1.0 / (((i * 7919) % v) as f64 + 1.0))
            .collect();
        let z: f64 = raw.iter().sum();
        let probs: Vec<f64> = raw.iter().map(|x| x / z).collect();
        for p in [0.3, 0.9, 0.99] {
            let n = nucleus(&probs, p);
            let mut order: Vec<u32> = (0..v as u32).collect();
            order.sort_by(by_prob_desc(&probs));
            let mut cum = 0.0;
            let k = order
                .iter()
                .position(|&i| {
                    cum += probs[i as usize];
                    cum >= p
                })
                .unwrap()
                + 1;
            assert_eq!(n.ids, order[..k].to_vec(), "p = {p}");
            // 0.9 and 0.99 keep more than 64 tokens: the quickselect rounds run, not just the sort.
            assert!(p < 0.5 || n.ids.len() > 64, "p = {p}: {} kept", n.ids.len());
            let without_last: f64 = n.ids[..k - 1].iter().map(|&i| probs[i as usize]).sum();
            assert!(
                n.mass >= p && without_last < p,
                "minimal: {without_last} < {p} <= {}",
                n.mass
            );
            assert!((n.probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
    }

    #[test]
    fn empirical_frequencies_match_renormalised_probabilities() {
        let logits: Vec<f32> = [2.0f64, 1.0, 0.5, 0.0, -1.0, -3.0]
            .iter()
            .map(|&x| x as f32)
            .collect();
        let probs = softmax(&logits, 1.0);
        let n = nucleus(&probs, 0.8);
        assert_eq!(n.ids, vec![0, 1, 2], "{probs:?}");
        let params = SamplingParams {
            top_p: 0.8,
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(7);
        let draws = 200_000;
        let mut counts = [0usize; 6];
        for _ in 0..draws {
            counts[next_token(&mut logits.clone(), &[], &params, &mut rng) as usize] += 1;
        }
        assert_eq!(
            &counts[3..],
            &[0, 0, 0],
            "tokens outside V(p) are never drawn"
        );
        for (k, &id) in n.ids.iter().enumerate() {
            let freq = counts[id as usize] as f64 / draws as f64;
            let expected = n.probs[k];
            // 5 standard errors of a binomial proportion.
            let tol = 5.0 * (expected * (1.0 - expected) / draws as f64).sqrt();
            println!("token {id}: P' {expected:.4}  observed {freq:.4}  (tol {tol:.4})");
            assert!(
                (freq - expected).abs() < tol,
                "token {id}: {freq} vs {expected}"
            );
        }
    }

    #[test]
    fn sampling_a_large_nucleus_matches_p_prime() {
        // 2,000 tokens, p_i ~ 1/(i+1) shuffled over ids: V(0.8) holds hundreds of tokens.
        let v = 2_000usize;
        let raw: Vec<f64> = (0..v)
            .map(|i| 1.0 / (((i * 769) % v) as f64 + 1.0))
            .collect();
        let z: f64 = raw.iter().sum();
        let probs: Vec<f64> = raw.iter().map(|x| x / z).collect();
        let n = nucleus(&probs, 0.8);
        assert!(n.ids.len() > 200, "{} kept", n.ids.len());
        let mut inside = vec![false; v];
        n.ids.iter().for_each(|&i| inside[i as usize] = true);
        let mut rng = StdRng::seed_from_u64(3);
        let draws = 80_000;
        let mut counts = vec![0usize; v];
        for _ in 0..draws {
            counts[sample_nucleus(&probs, 0.8, &mut rng) as usize] += 1;
        }
        let outside: usize = (0..v).filter(|&i| !inside[i]).map(|i| counts[i]).sum();
        assert_eq!(outside, 0, "tokens outside V(p) were drawn");
        // The head tokens and the bottom half of the nucleus as one bucket.
        let half = n.ids.len() / 2;
        let tail_p: f64 = n.probs[half..].iter().sum();
        let tail_f = n.ids[half..]
            .iter()
            .map(|&i| counts[i as usize])
            .sum::<usize>() as f64
            / draws as f64;
        for (expected, freq) in (0..3)
            .map(|k| (n.probs[k], counts[n.ids[k] as usize] as f64 / draws as f64))
            .chain([(tail_p, tail_f)])
        {
            let tol = 5.0 * (expected * (1.0 - expected) / draws as f64).sqrt();
            assert!(
                (freq - expected).abs() < tol,
                "{freq} vs {expected} (tol {tol})"
            );
        }
    }

    #[test]
    fn temperature_top_k_penalty_and_greedy() {
        let logits = [1.0f32, 3.0, 2.0, -1.0];
        // Temperature sharpens (< 1) and flattens (> 1).
        let cold = softmax(&logits, 0.5);
        let warm = softmax(&logits, 2.0);
        assert!(cold[1] > softmax(&logits, 1.0)[1] && warm[1] < softmax(&logits, 1.0)[1]);
        assert!((cold.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(top_k_ids(&softmax(&logits, 1.0), 2), vec![1, 2]);
        // Top-k = 1 samples the argmax only.
        let params = SamplingParams {
            top_k: 1,
            top_p: 1.0,
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            assert_eq!(next_token(&mut logits.to_vec(), &[], &params, &mut rng), 1);
        }
        // CTRL penalty: positive logits divided, negative multiplied, each token once.
        let mut l = logits.to_vec();
        apply_repetition_penalty(&mut l, &[1, 1, 3], 2.0);
        assert_eq!(l, vec![1.0, 1.5, 2.0, -2.0]);
        // ... which can change the greedy choice.
        let greedy = SamplingParams {
            greedy: true,
            ..Default::default()
        };
        assert_eq!(next_token(&mut logits.to_vec(), &[], &greedy, &mut rng), 1);
        let g2 = SamplingParams {
            repetition_penalty: 2.0,
            ..greedy
        };
        assert_eq!(next_token(&mut logits.to_vec(), &[1], &g2, &mut rng), 2);
    }

    #[test]
    fn invalid_parameters_are_usage_errors() {
        for params in [
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
            SamplingParams {
                top_p: 1.5,
                ..Default::default()
            },
            SamplingParams {
                top_p: f64::NAN,
                ..Default::default()
            },
            SamplingParams {
                temperature: 0.0,
                ..Default::default()
            },
            SamplingParams {
                temperature: -1.0,
                ..Default::default()
            },
            SamplingParams {
                repetition_penalty: 0.0,
                ..Default::default()
            },
        ] {
            let e = params.validate().unwrap_err();
            assert!(e.downcast_ref::<UsageError>().is_some(), "{params:?}: {e}");
        }
        assert!(SamplingParams::default().validate().is_ok());
        let greedy = SamplingParams {
            greedy: true,
            top_p: 0.0,
            ..Default::default()
        };
        assert!(greedy.validate().is_ok());
    }
}
