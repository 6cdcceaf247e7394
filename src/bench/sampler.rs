//! `sweep bench-sampler`: the search samplers' quality (final regret on known test functions,
//! over seeds) and cost (one suggestion from a ledger of finished trials), for bench/RESULTS.md
//! beside Optuna's (`bench/sampler.sh`, issue 16).

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Instant;

use super::functions::{self, Function};
use crate::error::UsageError;
use crate::search::{suggest, Dist, Method, Observed, Outcome};
use crate::store::synth::{self, SynthSweep, SynthTrial};
use crate::store::{SweepTrial, TrialState};

#[derive(Debug, Args)]
pub struct BenchSamplerArgs {
    /// Trials per search.
    #[arg(long, default_value_t = 50)]
    pub trials: usize,
    /// Searches per (sampler, function): seeds 0..N.
    #[arg(long, default_value_t = 30)]
    pub seeds: u64,
    /// Random trials before TPE takes over (Optuna's default: 10).
    #[arg(long, default_value_t = 10)]
    pub startup: usize,
    /// Only these functions (branin, hartmann6, lr_like); default all.
    #[arg(long)]
    pub function: Vec<String>,
    /// Time one suggestion from a ledger holding N finished trials instead (e.g. 100 1000).
    #[arg(long, num_args = 1..)]
    pub cost: Vec<usize>,
    /// Suggestions timed per ledger size (the median is reported).
    #[arg(long, default_value_t = 20)]
    pub repeats: usize,
    /// Time the real ask (`Searcher::ask`: ledger history, TPE, identity hash, append) with N
    /// finished trials of a search on `--data` instead (e.g. 100 1000).
    #[arg(long, num_args = 1..)]
    pub ask: Vec<usize>,
    /// The data of `--ask`'s search.
    #[arg(long, default_value = "data/arxiv/cs.CL.tsv.xz")]
    pub data: std::path::PathBuf,
}

/// `sweep bench-sampler`: JSON lines on stdout, one per search (quality) or per ledger size (cost).
pub fn run(args: BenchSamplerArgs) -> Result<ExitCode> {
    if !args.ask.is_empty() {
        let cache = crate::locations::CacheArgs::default().root();
        for &n in &args.ask {
            let v = super::ask::ask_cost(&args.data, &cache, n, args.repeats.max(1))?;
            println!("{v}");
        }
    } else if args.cost.is_empty() {
        quality(&args)?;
    } else {
        for &n in &args.cost {
            println!("{}", cost(n, args.repeats.max(1), args.startup)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn chosen(names: &[String]) -> Result<Vec<Function>> {
    let all = functions::all();
    if names.is_empty() {
        return Ok(all);
    }
    let known: Vec<&str> = all.iter().map(|f| f.name).collect();
    if let Some(bad) = names.iter().find(|n| !known.contains(&n.as_str())) {
        let msg = format!("--function {bad}: unknown; known: {}", known.join(", "));
        return Err(UsageError(msg).into());
    }
    Ok(all
        .into_iter()
        .filter(|f| names.iter().any(|n| n == f.name))
        .collect())
}

fn quality(args: &BenchSamplerArgs) -> Result<()> {
    let methods = [
        ("sweep-random", Method::Random),
        (
            "sweep-tpe",
            Method::Tpe {
                startup: args.startup,
            },
        ),
    ];
    for f in chosen(&args.function)? {
        for (name, method) in methods {
            for seed in 0..args.seeds {
                let best = search(&f, method, seed, args.trials);
                let line = json!({"sampler": name, "function": f.name, "seed": seed,
                                  "regret": best - f.optimum});
                println!("{line}");
            }
        }
    }
    Ok(())
}

/// The best value of one sequential search: suggestion `i` sees trials `0..i` finished.
pub fn search(f: &Function, method: Method, seed: u64, trials: usize) -> f64 {
    let space = f.dists();
    let mut history: Vec<Observed> = Vec::with_capacity(trials);
    let mut best = f64::INFINITY;
    for i in 0..trials {
        let point = suggest(&space, method, seed, i as u64, 0, &history);
        let v = (f.f)(&point);
        best = best.min(v);
        history.push(Observed {
            point,
            outcome: Outcome::Value(v),
        });
    }
    best
}

/// A search sweep's trial label: the parameter values by name (choices as their values).
fn label(f: &Function, point: &[f64]) -> Value {
    let map = f
        .space
        .iter()
        .zip(point)
        .map(|((name, dist), x)| (name.to_string(), param_json(dist, *x)))
        .collect::<serde_json::Map<_, _>>();
    Value::Object(map)
}

const SCHEDULES: [&str; 3] = ["cosine", "linear", "constant"];

fn param_json(dist: &Dist, x: f64) -> Value {
    match dist {
        Dist::Int { .. } => json!(x as i64),
        Dist::Choice { .. } => json!(SCHEDULES.get(x as usize).copied().unwrap_or("?")),
        _ => json!(x),
    }
}

/// The point of a trial read back from its label (`None` when a parameter is missing).
fn point_of(f: &Function, t: &SweepTrial) -> Option<Vec<f64>> {
    let m = t.label_map();
    f.space
        .iter()
        .map(|(name, dist)| match dist {
            Dist::Choice { .. } => {
                let v = m.get(*name)?.as_str()?;
                SCHEDULES.iter().position(|s| *s == v).map(|i| i as f64)
            }
            _ => m.get(*name)?.as_f64(),
        })
        .collect()
}

/// What a trial of the ledger tells the sampler (valid PPL as the metric).
fn observed(f: &Function, t: &SweepTrial) -> Option<Observed> {
    let outcome = match t.state {
        TrialState::Completed => Outcome::Value(t.results.valid_ppl?),
        TrialState::Diverged => Outcome::Bad,
        _ => Outcome::Running,
    };
    Some(Observed {
        point: point_of(f, t)?,
        outcome,
    })
}

/// A SQLite ledger with one search sweep of `n` completed trials over the lr-like space (random
/// points, the function's value as valid PPL).
fn cost_ledger(
    dir: &std::path::Path,
    f: &Function,
    n: usize,
) -> Result<(Box<dyn crate::store::Store>, i64)> {
    let store = synth::create_ledger(&dir.join(format!("search-{n}.db")))?;
    let trials: Vec<SynthTrial> = (0..n)
        .map(|i| {
            let p = suggest(&f.dists(), Method::Random, 1, i as u64, 0, &[]);
            let v = (f.f)(&p);
            SynthTrial {
                label: label(f, &p),
                config: json!({"model": "gpt2-tiny", "position": i}),
                state: TrialState::Completed,
                finals: Some([v, v, v, v.exp(), v, v.exp()]),
                ..Default::default()
            }
        })
        .collect();
    let sweep = SynthSweep {
        name: "search".into(),
        title: "synthetic search".into(),
        spec: json!({"search": {"method": "tpe", "metric": "valid_ppl", "direction": "minimize"}}),
        ..Default::default()
    };
    let id = synth::insert_sweep(store.as_ref(), &sweep, &trials)?;
    Ok((store, id))
}

/// Times `repeats` suggestions, each reading the sweep's trials from the open ledger, building
/// the history from their labels and results, and asking TPE for the next point.
fn cost(n: usize, repeats: usize, startup: usize) -> Result<Value> {
    let f = functions::lr_like();
    let dir = tempfile::tempdir()?;
    let (store, sweep_id) = cost_ledger(dir.path(), &f, n)?;
    let space = f.dists();
    let (mut read_ms, mut total_ms) = (Vec::new(), Vec::new());
    for r in 0..repeats {
        let t0 = Instant::now();
        let trials = store.sweep_trials(sweep_id)?;
        let history: Vec<Observed> = trials.iter().filter_map(|t| observed(&f, t)).collect();
        let t1 = Instant::now();
        let p = suggest(
            &space,
            Method::Tpe { startup },
            0,
            n as u64,
            r as u32,
            &history,
        );
        let t2 = Instant::now();
        anyhow::ensure!(
            history.len() == n && p.len() == space.len(),
            "history of {}",
            history.len()
        );
        read_ms.push((t1 - t0).as_secs_f64() * 1e3);
        total_ms.push((t2 - t0).as_secs_f64() * 1e3);
    }
    Ok(
        json!({"sampler": "sweep-tpe", "finished": n, "repeats": repeats,
              "median_ms": median(&mut total_ms), "read_median_ms": median(&mut read_ms)}),
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_to_points() {
        let f = functions::lr_like();
        let p = vec![3e-4, 0.12, 150.0, 2.0];
        let t = SweepTrial {
            label: label(&f, &p),
            ..Default::default()
        };
        assert_eq!(t.label["schedule"], "constant");
        assert_eq!(point_of(&f, &t), Some(p));
    }

    #[test]
    fn searches_are_seeded_and_tpe_finds_the_lr_bowl() {
        let f = functions::lr_like();
        let tpe = Method::Tpe { startup: 10 };
        assert_eq!(search(&f, tpe, 3, 30), search(&f, tpe, 3, 30));
        let regret = search(&f, tpe, 3, 50) - f.optimum;
        assert!((0.0..0.5).contains(&regret), "{regret}");
    }

    #[test]
    fn cost_reads_every_trial_back() {
        let v = cost(20, 2, 10).unwrap();
        assert_eq!(v["finished"], 20);
        assert!(v["median_ms"].as_f64().unwrap() >= v["read_median_ms"].as_f64().unwrap());
    }
}
