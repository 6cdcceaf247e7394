//! `sweep bench-replay`: searches replayed against recorded learning curves (issue 25), the way
//! multi-fidelity methods are compared (LCBench, YAHPO, HPOBench): a trial "trains" by reading
//! the validation curve recorded for the nearest configuration, eval by eval, so hundreds of
//! searches take seconds. Each search runs sweep's own sampler (`search::suggest`) and pruner
//! (`Pruner::for_trial`, `Pruner::bracket`, `Pruner::decide`, `Decision::last_point`: the
//! functions the trial process and the ledger's history call) on the space and start-up of a
//! real sweep file; `bench/replay_optuna.py` replays the same curves through Optuna.
//!
//! The surrogate: a suggested point reads the curve of the recorded configuration with the same
//! `batch_size` nearest to it in the unit cube of the other parameters (log scale for
//! `log_uniform`, linear otherwise); the sampler is told the suggested point, the curve's values.
//! `bench/replay_optuna.py` implements the same lookup.

use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::search::Search;
use crate::error::UsageError;
use crate::search::{suggest, Curve, Dist, Observed, Outcome, Pruner, Resource};

#[derive(Debug, Args)]
pub struct BenchReplayArgs {
    /// The recorded curves (bench/lr_curves.json, written by bench/replay_record.sh).
    #[arg(long, default_value = "bench/lr_curves.json")]
    pub curves: PathBuf,
    /// The sweep file whose space, sampler start-up and pruner settings are replayed.
    #[arg(long, default_value = "sweeps/lr_search.toml")]
    pub file: PathBuf,
    #[arg(long, default_value = "quick")]
    pub profile: String,
    /// Searches per (sampler, pruner): seeds 0..N.
    #[arg(long, default_value_t = 100)]
    pub seeds: u64,
    /// Each search trains until it has spent this many tokens (default: the recorded curves'
    /// mean full-trial tokens times the file's `[search] trials`).
    #[arg(long)]
    pub tokens: Option<u64>,
    /// And never more than this many trials.
    #[arg(long, default_value_t = 400)]
    pub max_trials: usize,
    /// Tell the sampler a pruned trial as the worst value (the rule before issue 25) instead of
    /// by its last evaluation: the ablation of Optuna's ranking. Labels the lines
    /// `"side": "sweep-worst"`.
    #[arg(long)]
    pub pruned_as_worst: bool,
}

/// One recorded configuration and its validation curve.
#[derive(Debug, Clone, Deserialize)]
pub struct Recorded {
    pub params: serde_json::Map<String, Value>,
    /// `(step, valid loss, tokens seen)` of each evaluation during training.
    pub curve: Vec<(u64, f64, u64)>,
    pub steps: u64,
    pub tokens: u64,
    /// The final metric (valid PPL).
    pub valid_ppl: f64,
}

#[derive(Debug, Deserialize)]
struct CurvesFile {
    configs: Vec<Recorded>,
}

/// The pruners replayed: `[prune]` of the file for the method it names, sweep's defaults for
/// the others, with ASHA's and Hyperband's `min`, `reduction_factor` and resource from the file.
fn pruners(file: &Pruner) -> Vec<(&'static str, Pruner)> {
    let (min, reduction_factor, resource) = match *file {
        Pruner::Asha {
            min,
            reduction_factor,
            resource,
        }
        | Pruner::Hyperband {
            min,
            reduction_factor,
            resource,
            ..
        } => (min, reduction_factor, resource),
        _ => (20, 3, Resource::Steps),
    };
    vec![
        ("none", Pruner::None),
        (
            "median",
            Pruner::Median {
                startup_trials: 5,
                warmup_steps: 0,
            },
        ),
        (
            "asha",
            Pruner::Asha {
                min,
                reduction_factor,
                resource,
            },
        ),
        (
            "hyperband",
            Pruner::Hyperband {
                min,
                max: None,
                reduction_factor,
                resource,
            },
        ),
    ]
}

pub fn run(args: BenchReplayArgs) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&args.curves)
        .with_context(|| format!("read {}", args.curves.display()))?;
    let recorded: CurvesFile = serde_json::from_str(&text)
        .map_err(|e| UsageError(format!("{}: {e}", args.curves.display())))?;
    let sweep = crate::config::load(&args.file, Some(&args.profile), &[])?;
    let Some(search) = sweep.search.as_ref() else {
        return Err(UsageError(format!("{}: not a search sweep", args.file.display())).into());
    };
    let table = Table::new(search, recorded.configs)?;
    let full: f64 =
        table.configs.iter().map(|c| c.tokens as f64).sum::<f64>() / table.configs.len() as f64;
    let budget = args
        .tokens
        .unwrap_or((full * search.trials as f64).round() as u64);
    let samplers = [
        ("random", crate::search::Method::Random),
        ("tpe", search.method),
    ];
    let side = if args.pruned_as_worst {
        "sweep-worst"
    } else {
        "sweep"
    };
    for (sampler, method) in samplers {
        for (pruner_name, pruner) in pruners(&search.prune) {
            for seed in 0..args.seeds {
                let run = Run {
                    method,
                    pruner,
                    seed,
                    budget,
                    max_trials: args.max_trials,
                    pruned_as_worst: args.pruned_as_worst,
                };
                let trials = replay(&table, search, &run);
                let line = json!({"side": side, "sampler": sampler, "pruner": pruner_name,
                                  "seed": seed, "budget": budget, "best_recorded": table.best,
                                  "trials": trials});
                println!("{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The recorded configurations as points of the search's space.
struct Table {
    dists: Vec<Dist>,
    /// Each configuration's point (choices as indices).
    points: Vec<Vec<f64>>,
    configs: Vec<Recorded>,
    best: f64,
}

impl Table {
    fn new(search: &Search, configs: Vec<Recorded>) -> Result<Self> {
        let mut points = Vec::new();
        for c in &configs {
            let p = search.point_of(&c.params).ok_or_else(|| {
                UsageError(format!(
                    "a recorded configuration does not fit the space: {:?}",
                    c.params
                ))
            })?;
            points.push(p);
        }
        anyhow::ensure!(!configs.is_empty(), "no recorded configurations");
        let best = configs
            .iter()
            .map(|c| c.valid_ppl)
            .fold(f64::INFINITY, f64::min);
        Ok(Self {
            dists: search.dists(),
            points,
            configs,
            best,
        })
    }

    /// The recorded configuration nearest to `point` (same choices first; see the module doc).
    fn nearest(&self, point: &[f64]) -> &Recorded {
        let distance = |q: &[f64]| -> f64 {
            self.dists
                .iter()
                .zip(point.iter().zip(q))
                .map(|(d, (&a, &b))| match *d {
                    Dist::Choice { .. } => {
                        if a == b {
                            0.0
                        } else {
                            100.0
                        }
                    }
                    Dist::LogUniform { low, high } => {
                        ((a.ln() - b.ln()) / (high.ln() - low.ln())).powi(2)
                    }
                    Dist::Uniform { low, high } => ((a - b) / (high - low)).powi(2),
                    Dist::Int { low, high, .. } => ((a - b) / (high - low) as f64).powi(2),
                })
                .sum()
        };
        let i = (0..self.points.len())
            .min_by(|&i, &j| distance(&self.points[i]).total_cmp(&distance(&self.points[j])))
            .unwrap_or(0);
        &self.configs[i]
    }
}

/// One replayed search's settings.
struct Run {
    method: crate::search::Method,
    pruner: Pruner,
    seed: u64,
    budget: u64,
    max_trials: usize,
    pruned_as_worst: bool,
}

/// One sequential search (suggestion `i` sees trials `0..i` finished) until `budget` tokens are
/// spent: per trial, the tokens it trained, its final value (none when pruned) and where it was
/// pruned.
fn replay(table: &Table, search: &Search, run: &Run) -> Vec<Value> {
    let (mut history, mut curves, mut out) = (Vec::new(), Vec::<Curve>::new(), Vec::new());
    let mut spent = 0u64;
    for i in 0..run.max_trials {
        if spent >= run.budget {
            break;
        }
        let point = suggest(&table.dists, run.method, run.seed, i as u64, 0, &history);
        let rec = table.nearest(&point);
        let mine = run.pruner.for_trial(rec.steps, rec.tokens);
        let resource = mine.resource();
        let placement = mine.bracket(run.seed, i as u64);
        let mut me = Curve {
            trial: i as i64,
            points: Vec::new(),
            completed: false,
            bracket: placement.map(|p| p.bracket),
        };
        let mut end = None;
        for &(step, loss, tokens) in &rec.curve {
            me.points.push((resource.at(step, tokens), loss));
            if let Some(d) = mine.decide(&me, &curves) {
                end = Some((d, tokens));
                break;
            }
        }
        let (outcome, tokens, line) = match end {
            Some((d, tokens)) => {
                let (step, value) = d.last_point();
                let line = json!({"tokens": tokens, "pruned_at": step,
                                  "bracket": d.bracket});
                let outcome = if run.pruned_as_worst {
                    Outcome::Bad
                } else {
                    Outcome::Pruned { step, value }
                };
                (outcome, tokens, line)
            }
            None => {
                me.completed = true;
                let v = search.direction.oriented(rec.valid_ppl);
                let line = json!({"tokens": rec.tokens, "final": rec.valid_ppl,
                                  "bracket": placement.map(|p| p.bracket)});
                (Outcome::Value(v), rec.tokens, line)
            }
        };
        spent += tokens;
        curves.push(me);
        history.push(Observed { point, outcome });
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(lr: f64, batch: i64, ppl: f64) -> Recorded {
        let params = json!({"learning_rate": lr, "batch_size": batch});
        Recorded {
            params: params.as_object().unwrap().clone(),
            curve: vec![(20, ppl.ln() + 1.0, 100), (40, ppl.ln(), 200)],
            steps: 40,
            tokens: 200,
            valid_ppl: ppl,
        }
    }

    fn table() -> Table {
        let configs = vec![
            rec(1e-4, 2, 300.0),
            rec(1e-3, 2, 150.0),
            rec(1e-3, 4, 200.0),
        ];
        Table {
            dists: vec![
                Dist::LogUniform {
                    low: 1e-4,
                    high: 1e-2,
                },
                Dist::Choice { n: 2 },
            ],
            points: vec![vec![1e-4, 0.0], vec![1e-3, 0.0], vec![1e-3, 1.0]],
            best: 150.0,
            configs,
        }
    }

    #[test]
    fn a_point_reads_the_nearest_curve_with_its_own_choices() {
        let t = table();
        // In log scale the midpoint of 1e-4 and 1e-3 is 3.16e-4.
        assert_eq!(t.nearest(&[2e-4, 0.0]).valid_ppl, 300.0);
        assert_eq!(t.nearest(&[5e-4, 0.0]).valid_ppl, 150.0);
        // batch index 1: the only configuration with it, however far its learning rate.
        assert_eq!(t.nearest(&[1e-2, 1.0]).valid_ppl, 200.0);
        assert_eq!(t.nearest(&[1e-4, 1.0]).valid_ppl, 200.0);
    }
}
