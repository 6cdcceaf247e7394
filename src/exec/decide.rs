//! Seeds until decided (`sweep run --until-decided [--max-seeds N]`): more seed replicates for
//! the rows whose change from the baseline row is still `inconclusive`, until each row is
//! decided (up, down or flat, [`crate::stats::verdict`]) or has N seeds.
//!
//! Like a search, its state is the ledger. The seeds come from one fixed sequence: the sweep's
//! `seeds` (else the baseline's own seed), then 1, 2, 3, ... (each seed once). A row's next seed
//! depends only on its own replicates and the baseline's replicates of the same seeds, and only
//! once all of them have finished, so the trials a sweep ends with do not depend on the order in
//! which trials finish, on `--jobs`, on the executor, or on a kill and resume. A new replicate
//! joins the sweep through [`Store::append_trial`] (a compare-and-set on the number of trials),
//! so workers and Slurm tasks that ask at once add each replicate once. The rule that decides
//! is valid perplexity, the paper's headline metric.

use crate::config;
use crate::plan::{label_text, Identifier};
use crate::stats::{self, Verdict};
use crate::store::{NewTrial, Store, SweepRecord, SweepTrial, TrialState};
use crate::trial::TrialConfig;
use anyhow::{Context, Result};
use serde_json::{json, Map, Value as Json};
use std::path::{Path, PathBuf};

/// The key of a sweep's recorded spec that says it runs until decided.
pub const SPEC_KEY: &str = "until_decided";
/// The metric a row is decided on.
pub const METRIC: &str = "valid_ppl";
/// Appends lost to other workers before giving up.
const MAX_RACES: usize = 256;

/// `--until-decided --max-seeds N`: the seed sequence, `max_seeds` long.
#[derive(Debug, Clone, PartialEq)]
pub struct UntilDecided {
    pub seeds: Vec<u64>,
}

impl UntilDecided {
    /// The sequence of a sweep file: its seeds (else its baseline's seed), then 1, 2, 3, ...
    pub fn new(sweep: &config::Sweep, max_seeds: usize) -> Self {
        let start = match &sweep.seeds {
            Some(s) => s.clone(),
            None => sweep
                .trials
                .iter()
                .find(|t| t.is_baseline)
                .map(|t| vec![t.config.seed])
                .unwrap_or_default(),
        };
        Self {
            seeds: sequence(&start, max_seeds),
        }
    }

    pub fn max_seeds(&self) -> usize {
        self.seeds.len()
    }

    pub fn spec_json(&self) -> Json {
        json!({ "max_seeds": self.max_seeds(), "seeds": self.seeds, "metric": METRIC })
    }

    /// What [`UntilDecided::spec_json`] recorded (`None`: the sweep was not run until decided).
    pub fn from_spec(spec: &Json) -> Option<Self> {
        let seeds = spec
            .get(SPEC_KEY)?
            .get("seeds")?
            .as_array()?
            .iter()
            .map(Json::as_u64)
            .collect::<Option<Vec<u64>>>()?;
        Some(Self { seeds })
    }
}

/// `start`, then 1, 2, 3, ... (skipping seeds already in it), `len` seeds in all.
pub fn sequence(start: &[u64], len: usize) -> Vec<u64> {
    let mut out: Vec<u64> = start.iter().copied().take(len).collect();
    let mut next = 1;
    while out.len() < len {
        if !out.contains(&next) {
            out.push(next);
        }
        next += 1;
    }
    out
}

/// What a sweep needs next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Needs {
    /// (a member of the row to copy, by index into the members; the seed to add), baseline
    /// replicates before the rows' that need them.
    pub add: Vec<(usize, u64)>,
    /// Unfinished members a decision waits for (running, pending or interrupted).
    pub waiting: Vec<i64>,
}

/// A member counts as finished when it will not produce another number without a rerun.
fn finished(t: &SweepTrial) -> bool {
    t.state.is_done() || t.state == TrialState::Failed
}

/// The members of each row (label without `seed`), rows in position order.
fn rows(members: &[SweepTrial]) -> Vec<Vec<usize>> {
    let mut keys: Vec<Map<String, Json>> = Vec::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let key = m.row_key();
        match keys.iter().position(|k| *k == key) {
            Some(r) => out[r].push(i),
            None => {
                keys.push(key);
                out.push(vec![i]);
            }
        }
    }
    out
}

/// The completed (seed, valid PPL) of some members.
fn values(members: &[SweepTrial], idx: &[usize]) -> Vec<(i64, f64)> {
    idx.iter()
        .map(|&i| &members[i])
        .filter(|m| m.state == TrialState::Completed)
        .filter_map(|m| Some((m.seed()?, m.results.get(METRIC).filter(|v| v.is_finite())?)))
        .collect()
}

/// The replicates to add now and the trials a decision waits for (pure: the members of the
/// sweep in position order).
pub fn needs(members: &[SweepTrial], until: &UntilDecided, flat: f64) -> Needs {
    let mut out = Needs::default();
    let rows = rows(members);
    let Some(base) = rows
        .iter()
        .find(|r| r.iter().any(|&i| members[i].is_baseline))
    else {
        return out;
    };
    let seeds_of = |r: &[usize]| -> Vec<i64> {
        let mut s: Vec<i64> = r.iter().filter_map(|&i| members[i].seed()).collect();
        s.sort_unstable();
        s.dedup();
        s
    };
    let base_seeds = seeds_of(base);
    let mut base_added: Vec<u64> = Vec::new();
    for row in rows.iter().filter(|r| *r != base) {
        let seeds = seeds_of(row);
        if seeds.len() >= until.max_seeds() {
            continue;
        }
        let related: Vec<usize> = base
            .iter()
            .copied()
            .filter(|&i| members[i].seed().is_some_and(|s| seeds.contains(&s)))
            .chain(row.iter().copied())
            .collect();
        let waiting: Vec<i64> = related
            .iter()
            .filter(|&&i| !finished(&members[i]))
            .map(|&i| members[i].trial.id)
            .collect();
        if !waiting.is_empty() {
            for id in waiting {
                if !out.waiting.contains(&id) {
                    out.waiting.push(id);
                }
            }
            continue;
        }
        let ours = values(members, row);
        let theirs: Vec<(i64, f64)> = values(members, base)
            .into_iter()
            .filter(|(s, _)| seeds.contains(s))
            .collect();
        if ours.is_empty() || theirs.is_empty() {
            continue; // every replicate of a side failed: more seeds would not decide it
        }
        let decided = stats::compare(&ours, &theirs, flat, true)
            .is_some_and(|e| e.verdict != Verdict::Inconclusive);
        if decided {
            continue;
        }
        let Some(&next) = until.seeds.iter().find(|s| !seeds.contains(&(**s as i64))) else {
            continue;
        };
        if !base_seeds.contains(&(next as i64)) && !base_added.contains(&next) {
            base_added.push(next);
            out.add.push((base[0], next));
        }
        out.add.push((row[0], next));
    }
    out
}

/// What asking for the next replicate gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Ask {
    /// A new replicate of the sweep, to run.
    Trial { id: i64, label: String },
    /// Nothing to add until these trials finish.
    Wait(Vec<i64>),
    /// Every row is decided or has its seeds.
    Spent,
}

/// Adds the replicates of one sweep that runs until decided.
#[derive(Debug, Clone)]
pub struct Decider {
    pub until: UntilDecided,
    pub sweep_id: i64,
    /// The sweep's ledger name.
    pub name: String,
    pub flat: f64,
    cache_root: PathBuf,
}

impl Decider {
    pub fn new(until: UntilDecided, sweep_id: i64, name: &str, flat: f64, cache: &Path) -> Self {
        Self {
            until,
            sweep_id,
            name: name.to_string(),
            flat,
            cache_root: cache.to_path_buf(),
        }
    }

    /// The decider of a recorded sweep (`sweep worker`, Slurm tasks), from its spec alone.
    pub fn from_record(rec: &SweepRecord, cache_root: &Path) -> Option<Self> {
        let until = UntilDecided::from_spec(&rec.spec)?;
        let flat = rec
            .spec
            .get("flat")
            .and_then(Json::as_f64)
            .unwrap_or(stats::FLAT);
        Some(Self::new(until, rec.id, &rec.name, flat, cache_root))
    }

    /// Appends the next replicate the sweep needs (or says why there is none).
    pub fn ask(&self, s: &dyn Store) -> Result<Ask> {
        for _ in 0..MAX_RACES {
            let members = s.sweep_trials(self.sweep_id)?;
            let needs = needs(&members, &self.until, self.flat);
            let Some(&(from, seed)) = needs.add.first() else {
                return Ok(if needs.waiting.is_empty() {
                    Ask::Spent
                } else {
                    Ask::Wait(needs.waiting)
                });
            };
            let trial = self.replicate(&members[from], seed)?;
            let label = label_text(&trial.label);
            if let Some(id) = s.append_trial(self.sweep_id, members.len() as i64, &trial)? {
                return Ok(Ask::Trial { id, label });
            }
        }
        anyhow::bail!(
            "sweep {}: lost {MAX_RACES} appends in a row to other workers",
            self.name
        )
    }

    /// The replicate of `row`'s trial with `seed`.
    fn replicate(&self, row: &SweepTrial, seed: u64) -> Result<NewTrial> {
        let mut config: TrialConfig = serde_json::from_value(row.config.clone())
            .with_context(|| format!("sweep {}: trial {}'s config", self.name, row.id))?;
        config.seed = seed;
        let identity = Identifier::new(&self.cache_root).identify(&config)?;
        let mut label = row.row_key();
        label.insert("seed".into(), Json::from(seed));
        Ok(NewTrial {
            hash: identity.hash,
            config: serde_json::to_value(&config)?,
            label: Json::Object(label),
            is_baseline: row.is_baseline,
        })
    }
}

/// The deciders of recorded sweeps (those run until decided).
pub fn deciders_of(sweeps: &[SweepRecord], cache_root: &Path) -> Vec<Decider> {
    sweeps
        .iter()
        .filter_map(|r| Decider::from_record(r, cache_root))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{TrialRecord, TrialResults};

    /// A member: row `row` ("base" is the baseline), `seed`, state and valid PPL.
    fn m(id: i64, row: &str, seed: i64, state: TrialState, ppl: f64) -> SweepTrial {
        SweepTrial {
            sweep_id: 1,
            position: id,
            label: json!({ "wd": row, "seed": seed }),
            is_baseline: row == "base",
            trial: TrialRecord {
                id,
                config: json!({ "seed": seed }),
                state,
                results: TrialResults {
                    valid_ppl: Some(ppl),
                    ..Default::default()
                },
                ..Default::default()
            },
        }
    }

    use TrialState::{Completed as C, Failed as F, Running as R};

    #[test]
    fn the_sequence_starts_with_the_sweeps_seeds() {
        assert_eq!(sequence(&[42], 4), [42, 1, 2, 3]);
        assert_eq!(sequence(&[42, 1, 2], 5), [42, 1, 2, 3, 4]);
        assert_eq!(sequence(&[3, 1], 4), [3, 1, 2, 4]);
        assert_eq!(sequence(&[7, 8, 9], 2), [7, 8]);
    }

    #[test]
    fn undecided_rows_get_the_next_seed_and_the_baseline_with_them() {
        let until = UntilDecided {
            seeds: sequence(&[42, 1], 4),
        };
        let members = vec![
            m(1, "base", 42, C, 100.0),
            m(2, "up", 42, C, 120.0),
            m(3, "noisy", 42, C, 101.0),
            m(4, "base", 1, C, 102.0),
            m(5, "up", 1, C, 122.5),
            m(6, "noisy", 1, C, 100.0),
        ];
        // "up": +20% and +20.1%: decided. "noisy": +1% and -2%: inconclusive -> seed 2, and
        // the baseline gets seed 2 first.
        let n = needs(&members, &until, stats::FLAT);
        assert_eq!(n.add, [(0, 2), (2, 2)]);
        assert!(n.waiting.is_empty());
        // While the baseline's seed-2 replicate runs, "noisy" waits for it.
        let mut more = members.clone();
        more.push(m(7, "base", 2, R, 0.0));
        more.push(m(8, "noisy", 2, C, 99.0));
        let n = needs(&more, &until, stats::FLAT);
        assert_eq!((n.add.clone(), n.waiting.clone()), (vec![], vec![7]));
        // At max_seeds nothing more is added, decided or not.
        let full = UntilDecided {
            seeds: sequence(&[42, 1], 2),
        };
        assert_eq!(needs(&members, &full, stats::FLAT), Needs::default());
    }

    #[test]
    fn a_failed_side_is_not_waited_for_and_rows_without_numbers_get_no_seeds() {
        let until = UntilDecided {
            seeds: sequence(&[42], 3),
        };
        let members = vec![
            m(1, "base", 42, C, 100.0),
            m(2, "broken", 42, F, 0.0),
            m(3, "one", 42, C, 130.0),
        ];
        // One seed: no interval, so "one" is inconclusive and gets seed 1 (the baseline too);
        // "broken" has no number and gets nothing.
        let n = needs(&members, &until, stats::FLAT);
        assert_eq!(n.add, [(0, 1), (2, 1)]);
        assert!(n.waiting.is_empty());
        // No baseline row: nothing to decide against.
        let no_base: Vec<SweepTrial> = members[1..].to_vec();
        assert_eq!(needs(&no_base, &until, stats::FLAT), Needs::default());
    }

    #[test]
    fn the_spec_round_trips() {
        let u = UntilDecided {
            seeds: vec![42, 1, 2],
        };
        let spec = json!({ SPEC_KEY: u.spec_json() });
        assert_eq!(UntilDecided::from_spec(&spec), Some(u));
        assert_eq!(UntilDecided::from_spec(&json!({})), None);
    }
}
