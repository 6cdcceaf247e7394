//! The pruners: whether a trial should stop at one of its validation evaluations, from its own
//! curve and the other trials' curves (validation loss by step; lower is better).
//!
//! ASHA follows Optuna's `SuccessiveHalvingPruner`: rung `r` sits at `min_steps *
//! reduction_factor^r` steps; a trial reaching a rung continues when its value is among the best
//! `1/reduction_factor` of all values recorded at that rung so far (its own included; with fewer
//! than `reduction_factor` of them, only the best continues). The median rule follows Optuna's
//! `MedianPruner`: after `startup_trials` completed trials and `warmup_steps`, a trial whose best
//! value so far is worse than the median of the completed trials' values at the same step stops.

use serde::{Deserialize, Serialize};

/// `[prune]` of a search sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum Pruner {
    #[default]
    None,
    Asha {
        min_steps: u64,
        reduction_factor: u64,
    },
    Median {
        startup_trials: usize,
        warmup_steps: u64,
    },
}

/// The validation curve of one trial: `(step, value)` in step order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Curve {
    pub trial: i64,
    pub points: Vec<(u64, f64)>,
    /// The trial completed (the median rule compares with completed trials only).
    pub completed: bool,
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
    /// The evaluation step the decision was taken at.
    pub step: u64,
    /// ASHA's rung (its step is `min_steps * reduction_factor^rung`).
    pub rung: Option<u32>,
    /// The trial's value compared (ASHA: at the rung; median: its best so far).
    pub value: f64,
    /// The value it had to reach.
    pub threshold: f64,
    /// How many values the threshold was taken from.
    pub compared_with: usize,
}

impl Decision {
    pub fn sentence(&self) -> String {
        match self.rung {
            Some(r) => format!(
                "pruned by ASHA at rung {r} (step {}): valid loss {:.4} is worse than {:.4}, the \
                 cut for the best share of {} trial(s) at that rung",
                self.step, self.value, self.threshold, self.compared_with
            ),
            None => format!(
                "pruned by the median rule at step {}: best valid loss {:.4} is worse than the \
                 median {:.4} of {} completed trial(s) at that step",
                self.step, self.value, self.threshold, self.compared_with
            ),
        }
    }
}

impl Pruner {
    pub fn is_none(&self) -> bool {
        matches!(self, Pruner::None)
    }

    /// Should `me`, which has just recorded its last point, stop? `others` are the other trials
    /// of the search (any state).
    pub fn decide(&self, me: &Curve, others: &[Curve]) -> Option<Decision> {
        let &(step, _) = me.points.last()?;
        match *self {
            Pruner::None => None,
            Pruner::Asha {
                min_steps,
                reduction_factor,
            } => asha(me, others, step, min_steps.max(1), reduction_factor.max(2)),
            Pruner::Median {
                startup_trials,
                warmup_steps,
            } => median(me, others, step, startup_trials, warmup_steps),
        }
    }
}

/// The rung that `me` reached with its last point (its first point at or past the rung's step).
fn new_rung(me: &Curve, min_steps: u64, eta: u64) -> Option<(u32, u64)> {
    let &(step, _) = me.points.last()?;
    let prev = me.points.iter().rev().nth(1).map(|p| p.0);
    let mut found = None;
    let (mut r, mut rung_step) = (0u32, min_steps);
    while rung_step <= step {
        if prev.is_none_or(|p| p < rung_step) {
            found = Some((r, rung_step));
        }
        r += 1;
        rung_step = rung_step.saturating_mul(eta);
    }
    found
}

fn asha(me: &Curve, others: &[Curve], step: u64, min_steps: u64, eta: u64) -> Option<Decision> {
    let (rung, rung_step) = new_rung(me, min_steps, eta)?;
    let value = me.at_or_after(rung_step)?;
    let mut competing: Vec<f64> = others
        .iter()
        .filter(|c| c.trial != me.trial)
        .filter_map(|c| c.at_or_after(rung_step))
        .filter(|v| v.is_finite())
        .collect();
    competing.push(value);
    competing.sort_by(f64::total_cmp);
    let idx = (competing.len() / eta as usize).saturating_sub(1);
    let threshold = competing[idx];
    (value > threshold || value.is_nan()).then(|| Decision {
        method: "asha".into(),
        step,
        rung: Some(rung),
        value,
        threshold,
        compared_with: competing.len(),
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
        rung: None,
        value: best,
        threshold,
        compared_with: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(trial: i64, points: &[(u64, f64)], completed: bool) -> Curve {
        Curve {
            trial,
            points: points.to_vec(),
            completed,
        }
    }

    const ASHA: Pruner = Pruner::Asha {
        min_steps: 10,
        reduction_factor: 3,
    };

    #[test]
    fn asha_keeps_the_best_third_at_each_rung() {
        // Rungs at 10, 30, 90. Five trials reached rung 0 with values 1..5.
        let others: Vec<Curve> = (1..=5)
            .map(|i| curve(i, &[(10, i as f64), (20, i as f64)], false))
            .collect();
        // Six values at the rung (five + mine): the best 6/3 = 2 continue.
        let good = curve(9, &[(10, 1.5)], false);
        assert_eq!(ASHA.decide(&good, &others), None);
        let bad = curve(9, &[(10, 2.5)], false);
        let d = ASHA.decide(&bad, &others).unwrap();
        assert_eq!(
            (d.rung, d.step, d.threshold, d.compared_with),
            (Some(0), 10, 2.0, 6)
        );
        // Between rungs nothing is decided, whatever the value.
        let between = curve(9, &[(10, 1.5), (20, 99.0)], false);
        assert_eq!(ASHA.decide(&between, &others), None);
    }

    #[test]
    fn asha_with_fewer_than_eta_values_lets_only_the_best_continue() {
        let others = vec![curve(1, &[(10, 2.0)], false)];
        assert!(ASHA
            .decide(&curve(2, &[(10, 2.5)], false), &others)
            .is_some());
        assert!(ASHA
            .decide(&curve(2, &[(10, 1.5)], false), &others)
            .is_none());
        // The first trial at a rung always continues.
        assert!(ASHA.decide(&curve(2, &[(10, 9.0)], false), &[]).is_none());
    }

    #[test]
    fn asha_meets_a_rung_at_the_first_evaluation_past_it() {
        // Evaluating every 25 steps: rung 0 (10) at step 25, rung 1 (30) at step 50.
        let others = vec![curve(1, &[(25, 1.0), (50, 0.5)], false)];
        let d = ASHA
            .decide(&curve(2, &[(25, 0.9), (50, 0.8)], false), &others)
            .unwrap();
        assert_eq!((d.rung, d.threshold), (Some(1), 0.5));
        assert!(ASHA
            .decide(&curve(2, &[(25, 0.9)], false), &others)
            .is_none());
    }

    #[test]
    fn median_compares_the_best_so_far_with_completed_trials_at_the_step() {
        let median = Pruner::Median {
            startup_trials: 2,
            warmup_steps: 10,
        };
        let others = vec![
            curve(1, &[(10, 1.0), (20, 0.8)], true),
            curve(2, &[(10, 3.0), (20, 2.0)], true),
            curve(3, &[(10, 0.1), (20, 0.1)], false), // running: not compared
        ];
        // Median at step 20 of the completed: (0.8 + 2.0) / 2 = 1.4.
        assert!(median
            .decide(&curve(4, &[(10, 1.0), (20, 1.5)], false), &others)
            .is_none());
        let d = median
            .decide(&curve(4, &[(10, 1.6), (20, 1.5)], false), &others)
            .unwrap();
        assert_eq!((d.value, d.threshold, d.compared_with), (1.5, 1.4, 2));
        // Before the warm-up, or with fewer completed trials than startup_trials: never.
        assert!(median
            .decide(&curve(4, &[(5, 9.0)], false), &others)
            .is_none());
        assert!(median
            .decide(&curve(4, &[(10, 9.0)], false), &others[..1])
            .is_none());
    }
}
