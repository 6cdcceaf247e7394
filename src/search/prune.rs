//! The pruners: whether a trial should stop at one of its validation evaluations, from its own
//! curve and the other trials' curves (validation loss by step; lower is better).
//!
//! ASHA follows Optuna's `SuccessiveHalvingPruner`: rung `r` sits at `min_steps *
//! reduction_factor^r` steps; a trial reaching a rung continues when its value is among the best
//! `1/reduction_factor` of all values recorded at that rung so far (its own included; with fewer
//! than `reduction_factor` of them, only the best continues). The median rule follows Optuna's
//! `MedianPruner`: after `startup_trials` completed trials and `warmup_steps`, a trial whose best
//! value so far is worse than the median of the completed trials' values at the same step stops.
//!
//! Hyperband (Li et al., JMLR 2018) runs several ASHA brackets side by side, as Optuna's
//! `HyperbandPruner` does: bracket `b` has its first rung at `min_steps * reduction_factor^b`, so
//! bracket 0 is the aggressive one and the last bracket hardly prunes; there are
//! `floor(log_eta(max_steps / min_steps)) + 1` of them, and a trial competes only with the trials
//! of its own bracket. Bracket `b` gets Optuna's (and the paper's) share of the trials,
//! `ceil(n * eta^s / (s + 1))` with `s = n - 1 - b`. Which bracket a trial is in is a pure function
//! of the search seed and the trial's index ([`bracket_of`]): where Optuna hashes each trial
//! independently, the trials here walk a golden-ratio (Weyl) sequence from a seeded start, so any
//! prefix of the search — the 30 trials of a small budget, or the first 10 of them — holds each
//! bracket's share to within 2.5 trials (over the first 200; about 3.5 over the first 1,000)
//! instead of a binomial draw whose spread grows with the square root of the count. A rung at or
//! past the trial's own last step is no rung: deciding there would save nothing.
//!
//! The rungs count a [`Resource`]: optimizer steps (the default, as Optuna counts its
//! `report` calls), or training tokens (`min_tokens` in `[prune]`). With the batch size in the
//! space, a step is a different amount of training for each trial: at step 20 a batch-2 trial
//! has seen 5k tokens and a batch-16 trial 41k, so a step rung compares unequal budgets and
//! prunes the small batches that win at the end. Counted in tokens, every trial of the search
//! meets a rung with the same budget spent, and gets its brackets from the same maximum
//! (bench/RESULTS.md, "Pruning on tokens").

use serde::{Deserialize, Serialize};

/// What a pruner's rungs count (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// Optimizer steps.
    #[default]
    Steps,
    /// Training tokens seen (`tokens_seen` of the evaluation rows).
    Tokens,
}

impl Resource {
    pub fn is_steps(&self) -> bool {
        *self == Resource::Steps
    }
    /// Where an evaluation at `step`, having trained on `tokens`, sits on this resource's axis.
    pub fn at(&self, step: u64, tokens: u64) -> u64 {
        match self {
            Resource::Steps => step,
            Resource::Tokens => tokens,
        }
    }
    /// The unit's name in messages ("steps", "tokens").
    pub fn unit(&self) -> &'static str {
        match self {
            Resource::Steps => "steps",
            Resource::Tokens => "tokens",
        }
    }
}

/// `[prune]` of a search sweep. ASHA's and Hyperband's `min` and `max` count their `resource`;
/// in the sweep's spec they keep the names `min_steps` and `max_steps` whatever it is (older
/// ledgers read the same), with `"resource": "tokens"` beside them when they count tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum Pruner {
    #[default]
    None,
    Asha {
        #[serde(rename = "min_steps")]
        min: u64,
        reduction_factor: u64,
        #[serde(default, skip_serializing_if = "Resource::is_steps")]
        resource: Resource,
    },
    Median {
        startup_trials: usize,
        warmup_steps: u64,
    },
    Hyperband {
        #[serde(rename = "min_steps")]
        min: u64,
        /// `None`: each trial's own length ([`Pruner::for_trial`] fills it in).
        #[serde(rename = "max_steps")]
        max: Option<u64>,
        reduction_factor: u64,
        #[serde(default, skip_serializing_if = "Resource::is_steps")]
        resource: Resource,
    },
}

/// The validation curve of one trial: `(x, value)` in order, `x` in its pruner's [`Resource`]
/// (the step, or the tokens seen, of each evaluation).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Curve {
    pub trial: i64,
    pub points: Vec<(u64, f64)>,
    /// The trial completed (the median rule compares with completed trials only).
    pub completed: bool,
    /// Its Hyperband bracket (Hyperband compares trials of the same bracket only).
    pub bracket: Option<u32>,
}

impl Curve {
    /// The first value at or after `step`: where a trial evaluating every few steps met a rung.
    fn at_or_after(&self, step: u64) -> Option<f64> {
        self.points.iter().find(|(s, _)| *s >= step).map(|p| p.1)
    }
    fn at(&self, step: u64) -> Option<f64> {
        self.points.iter().find(|(s, _)| *s == step).map(|p| p.1)
    }
}

/// Why a trial was pruned, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub method: String,
    /// Where the decision was taken: the evaluation's step, or its tokens seen when `resource`
    /// is tokens.
    pub step: u64,
    /// What `step` and the rungs count.
    #[serde(default, skip_serializing_if = "Resource::is_steps")]
    pub resource: Resource,
    /// ASHA's or Hyperband's rung (ASHA: at `min * reduction_factor^rung`; Hyperband: at
    /// `min * reduction_factor^(bracket + rung)`).
    pub rung: Option<u32>,
    /// Hyperband's bracket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bracket: Option<u32>,
    /// The trial's value compared (ASHA, Hyperband: at the rung; median: its best so far).
    pub value: f64,
    /// The value it had to reach.
    pub threshold: f64,
    /// How many values the threshold was taken from.
    pub compared_with: usize,
    /// The trial's last validation value (at `step`): what TPE ranks pruned trials by. Absent in
    /// ledgers written before it was recorded, where `value` stands in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<f64>,
}

impl Decision {
    pub fn sentence(&self) -> String {
        let at = match self.resource {
            Resource::Steps => format!("step {}", self.step),
            Resource::Tokens => format!("{} tokens", self.step),
        };
        match (self.bracket, self.rung) {
            (Some(b), Some(r)) => format!(
                "pruned by Hyperband in bracket {b} at rung {r} ({at}): valid loss {:.4} is \
                 worse than {:.4}, the cut for the best share of {} trial(s) of the bracket at \
                 that rung",
                self.value, self.threshold, self.compared_with
            ),
            (None, Some(r)) => format!(
                "pruned by ASHA at rung {r} ({at}): valid loss {:.4} is worse than {:.4}, the \
                 cut for the best share of {} trial(s) at that rung",
                self.value, self.threshold, self.compared_with
            ),
            _ => format!(
                "pruned by the median rule at step {}: best valid loss {:.4} is worse than the \
                 median {:.4} of {} completed trial(s) at that step",
                self.step, self.value, self.threshold, self.compared_with
            ),
        }
    }

    /// The (step, value) TPE ranks this pruned trial by: its last evaluation (the step in the
    /// pruner's resource, the same for every trial of the search).
    pub fn last_point(&self) -> (u64, f64) {
        (self.step, self.last.unwrap_or(self.value))
    }
}

impl Pruner {
    pub fn is_none(&self) -> bool {
        matches!(self, Pruner::None)
    }

    /// What the rungs count (steps for the pruners without rungs).
    pub fn resource(&self) -> Resource {
        match *self {
            Pruner::Asha { resource, .. } | Pruner::Hyperband { resource, .. } => resource,
            _ => Resource::Steps,
        }
    }

    /// The pruner of one trial that trains `steps` optimizer steps on `tokens` training tokens:
    /// Hyperband's default `max` becomes its length in the pruner's resource; the other pruners
    /// are the same for every trial.
    pub fn for_trial(self, steps: u64, tokens: u64) -> Pruner {
        match self {
            Pruner::Hyperband {
                min,
                max: None,
                reduction_factor,
                resource,
            } => Pruner::Hyperband {
                min,
                max: Some(resource.at(steps, tokens)),
                reduction_factor,
                resource,
            },
            p => p,
        }
    }

    /// Hyperband's bracket for suggestion `index` of a search seeded `seed` (`None` for the other
    /// pruners, and for Hyperband before [`Pruner::for_trial`] has given it a `max`).
    pub fn bracket(&self, seed: u64, index: u64) -> Option<Placement> {
        let Pruner::Hyperband {
            min,
            max: Some(max),
            reduction_factor,
            ..
        } = *self
        else {
            return None;
        };
        let (min, eta) = (min.max(1), reduction_factor.max(2));
        let brackets = bracket_count(min, max, eta);
        let bracket = bracket_of(seed, index, brackets, eta);
        Some(Placement {
            bracket,
            brackets,
            first_rung: rung_step(min, eta, bracket),
            max_steps: max,
        })
    }

    /// Should `me`, which has just recorded its last point, stop? `others` are the other trials
    /// of the search (any state).
    pub fn decide(&self, me: &Curve, others: &[Curve]) -> Option<Decision> {
        let &(step, last) = me.points.last()?;
        let d = match *self {
            Pruner::None => None,
            Pruner::Asha {
                min,
                reduction_factor,
                ..
            } => {
                let rungs = Rungs {
                    first: min.max(1),
                    eta: reduction_factor.max(2),
                    end: u64::MAX,
                };
                halving(me, others.iter(), step, rungs)
            }
            Pruner::Median {
                startup_trials,
                warmup_steps,
            } => median(me, others, step, startup_trials, warmup_steps),
            Pruner::Hyperband {
                min,
                max,
                reduction_factor,
                ..
            } => {
                let bracket = me.bracket?;
                let eta = reduction_factor.max(2);
                let rungs = Rungs {
                    first: rung_step(min.max(1), eta, bracket),
                    eta,
                    end: max.unwrap_or(u64::MAX),
                };
                let same = others.iter().filter(|c| c.bracket == Some(bracket));
                halving(me, same, step, rungs).map(|d| Decision {
                    method: "hyperband".into(),
                    bracket: Some(bracket),
                    ..d
                })
            }
        }?;
        Some(Decision {
            last: Some(last),
            resource: self.resource(),
            ..d
        })
    }
}

/// Where a trial sits in Hyperband.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub bracket: u32,
    /// How many brackets a trial of this many steps has.
    pub brackets: u32,
    /// Where the bracket's first rung is (in the pruner's resource).
    pub first_rung: u64,
    /// The `max` the bracket count came from (named for the steps it counted first).
    pub max_steps: u64,
}

/// `min_steps * eta^k`, saturating.
fn rung_step(min_steps: u64, eta: u64, k: u32) -> u64 {
    (0..k).fold(min_steps, |s, _| s.saturating_mul(eta))
}

/// Hyperband's bracket count: `floor(log_eta(max / min)) + 1`, i.e. how many of `min * eta^k`
/// (k = 0, 1, ...) are at most `max`; at least 1.
pub fn bracket_count(min_steps: u64, max_steps: u64, eta: u64) -> u32 {
    let mut n = 1;
    while rung_step(min_steps, eta, n) <= max_steps && rung_step(min_steps, eta, n) < u64::MAX {
        n += 1;
    }
    n
}

/// Each bracket's share of the trials, as Optuna's `HyperbandPruner` allots them (the `n` of
/// Algorithm 1 of the paper): bracket `b` of `n` gets `ceil(n * eta^s / (s + 1))`, `s = n - 1 - b`.
pub fn bracket_shares(brackets: u32, eta: u64) -> Vec<u64> {
    (0..brackets)
        .map(|b| {
            let s = brackets - 1 - b;
            let top = (brackets as u64).saturating_mul(rung_step(1, eta, s));
            top.div_ceil(s as u64 + 1)
        })
        .collect()
}

/// The bracket of suggestion `index`: a golden-ratio step from a start drawn from `seed`,
/// mapped onto the brackets' shares (see the module doc).
pub fn bracket_of(seed: u64, index: u64, brackets: u32, eta: u64) -> u32 {
    use crate::util::mix64;
    /// The golden ratio's fractional part: the most even of the Weyl sequences.
    const PHI: f64 = 0.618_033_988_749_894_9;
    let start = (mix64(seed ^ 0x4879_7065_7262_616e) >> 11) as f64 / (1u64 << 53) as f64;
    let u = (start + (index as f64 * PHI).fract()).fract();
    let shares = bracket_shares(brackets, eta);
    let total: u64 = shares.iter().sum();
    let mut below = 0u64;
    for (b, share) in shares.iter().enumerate() {
        below += share;
        if u < below as f64 / total as f64 {
            return b as u32;
        }
    }
    brackets - 1
}

/// How many of the first `trials` suggestions each bracket gets (what `[prune]` is checked with).
pub fn bracket_counts(seed: u64, trials: u64, brackets: u32, eta: u64) -> Vec<u64> {
    let mut counts = vec![0; brackets as usize];
    for i in 0..trials {
        counts[bracket_of(seed, i, brackets, eta) as usize] += 1;
    }
    counts
}

/// How many suggestions it takes until every bracket has one (`None` past a million).
pub fn trials_for_every_bracket(seed: u64, brackets: u32, eta: u64) -> Option<u64> {
    let mut seen = vec![false; brackets as usize];
    let mut missing = brackets;
    for i in 0..1u64 << 20 {
        let b = bracket_of(seed, i, brackets, eta) as usize;
        if !seen[b] {
            seen[b] = true;
            missing -= 1;
            if missing == 0 {
                return Some(i + 1);
            }
        }
    }
    None
}

/// Successive halving's rungs: at `first * eta^k` steps, those before `end`.
#[derive(Debug, Clone, Copy)]
struct Rungs {
    first: u64,
    eta: u64,
    end: u64,
}

/// The rung that `me` reached with its last point (its first point at or past the rung's step).
fn new_rung(me: &Curve, rungs: Rungs) -> Option<(u32, u64)> {
    let &(step, _) = me.points.last()?;
    let prev = me.points.iter().rev().nth(1).map(|p| p.0);
    let mut found = None;
    let (mut r, mut rung_step) = (0u32, rungs.first);
    while rung_step <= step && rung_step < rungs.end {
        if prev.is_none_or(|p| p < rung_step) {
            found = Some((r, rung_step));
        }
        r += 1;
        rung_step = rung_step.saturating_mul(rungs.eta);
    }
    found
}

/// One successive-halving decision (ASHA, and each Hyperband bracket) against `others`.
fn halving<'a>(
    me: &Curve,
    others: impl Iterator<Item = &'a Curve>,
    step: u64,
    rungs: Rungs,
) -> Option<Decision> {
    let (rung, rung_step) = new_rung(me, rungs)?;
    let value = me.at_or_after(rung_step)?;
    let mut competing: Vec<f64> = others
        .filter(|c| c.trial != me.trial)
        .filter_map(|c| c.at_or_after(rung_step))
        .filter(|v| v.is_finite())
        .collect();
    competing.push(value);
    competing.sort_by(f64::total_cmp);
    let idx = (competing.len() / rungs.eta as usize).saturating_sub(1);
    let threshold = competing[idx];
    (value > threshold || value.is_nan()).then(|| Decision {
        method: "asha".into(),
        step,
        resource: Resource::Steps,
        rung: Some(rung),
        bracket: None,
        value,
        threshold,
        compared_with: competing.len(),
        last: None,
    })
}

fn median(
    me: &Curve,
    others: &[Curve],
    step: u64,
    startup_trials: usize,
    warmup_steps: u64,
) -> Option<Decision> {
    let completed: Vec<&Curve> = others
        .iter()
        .filter(|c| c.completed && c.trial != me.trial)
        .collect();
    if completed.len() < startup_trials || step < warmup_steps {
        return None;
    }
    let mut at_step: Vec<f64> = completed
        .iter()
        .filter_map(|c| c.at(step))
        .filter(|v| v.is_finite())
        .collect();
    if at_step.is_empty() {
        return None;
    }
    at_step.sort_by(f64::total_cmp);
    let n = at_step.len();
    let threshold = if n % 2 == 1 {
        at_step[n / 2]
    } else {
        0.5 * (at_step[n / 2 - 1] + at_step[n / 2])
    };
    let best = me.points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    (best > threshold).then(|| Decision {
        method: "median".into(),
        step,
        resource: Resource::Steps,
        rung: None,
        bracket: None,
        value: best,
        threshold,
        compared_with: n,
        last: None,
    })
}

#[cfg(test)]
#[path = "prune_tests.rs"]
mod tests;
