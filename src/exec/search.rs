//! The ask of a search sweep: its next trial, suggested from what the ledger records of the
//! search so far and appended to the sweep at claim time.
//!
//! The search's state is the ledger: the trials of the sweep in position order (position `n` is
//! suggestion `n`), their points (their labels) and outcomes. Suggestion `n` is a pure function of
//! the seed, `n` and that history ([`crate::search::suggest`]), so the same file and seed give the
//! same trials when trials finish in the same order, a killed run continues where it stopped, and
//! the budget holds across processes: a suggestion joins the sweep only through
//! [`Store::append_trial`], a compare-and-set on the number of trials.

use crate::config::{self, search::Search};
use crate::error::UsageError;
use crate::plan::{label_text, Identifier};
use crate::search::{suggest, Decision, Observed, Outcome};
use crate::store::{NewTrial, Store, SweepRecord, SweepTrial, TrialState};
use anyhow::{Context, Result};
use serde_json::Value as Json;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Draws of one suggestion before the space counts as exhausted (every draw repeated a trial).
const MAX_ATTEMPTS: u32 = 64;
/// Appends lost to other workers before giving up (each loss means the sweep grew meanwhile).
const MAX_RACES: usize = 256;

/// What asking for the next trial gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Ask {
    /// A new trial of the sweep, to run.
    Trial { id: i64, label: String },
    /// The sweep has its `[search] trials`.
    Spent,
    /// Every draw repeated a trial of the sweep: a small discrete space is fully explored.
    Exhausted,
}

/// Suggests the trials of one search sweep.
#[derive(Debug, Clone)]
pub struct Searcher {
    sweep: config::Sweep,
    pub sweep_id: i64,
    /// The sweep's ledger name.
    pub name: String,
    cache_root: PathBuf,
}

impl Searcher {
    /// Every model its suggestions may have.
    pub fn models(&self) -> Vec<crate::trial::ModelSpec> {
        self.sweep.models()
    }

    /// `None` for grid and ablation sweeps.
    pub fn new(
        sweep: &config::Sweep,
        sweep_id: i64,
        name: &str,
        cache_root: &Path,
    ) -> Option<Self> {
        sweep.search.as_ref()?;
        Some(Self {
            sweep: sweep.clone(),
            sweep_id,
            name: name.to_string(),
            cache_root: cache_root.to_path_buf(),
        })
    }

    /// The searcher of a recorded search sweep (`sweep worker`, Slurm tasks): its sweep file is
    /// read again, with the recorded profile and `--set` values.
    pub fn from_record(rec: &SweepRecord, cache_root: &Path) -> Result<Option<Self>> {
        if !matches!(rec.kind.as_deref(), Some("random" | "tpe")) {
            return Ok(None);
        }
        let file = rec.file.clone().unwrap_or_default();
        let sets: Vec<String> = rec
            .spec
            .get("sets")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let sweep = config::load(Path::new(&file), rec.profile.as_deref(), &sets).map_err(|e| {
            UsageError(format!(
                "sweep {}: a search suggests its trials from its sweep file, which does not \
                 load here: {e:#}; fix: run this where `{file}` is readable (the same path as \
                 when it was recorded), or record it again with `sweep run FILE`",
                rec.name
            ))
        })?;
        let recorded = rec.spec.get("search");
        if recorded != sweep.spec_json().get("search") {
            return Err(UsageError(format!(
                "sweep {}: `{file}` has changed since the search was recorded; fix: record the \
                 change with `sweep run {file}{}` (its finished trials are kept), or restore the \
                 file",
                rec.name,
                rec.profile
                    .as_deref()
                    .map(|p| format!(" --profile {p}"))
                    .unwrap_or_default()
            ))
            .into());
        }
        Ok(Self::new(&sweep, rec.id, &rec.name, cache_root))
    }

    fn search(&self) -> &Search {
        self.sweep
            .search
            .as_ref()
            .expect("a Searcher is only made for search sweeps")
    }

    /// The budget.
    pub fn budget(&self) -> usize {
        self.search().trials
    }

    /// The trials of the search so far as the sampler sees them.
    pub fn history(&self, members: &[SweepTrial]) -> Vec<Observed> {
        let search = self.search();
        members
            .iter()
            .filter_map(|m| {
                let point = search.point_of(m.label_map())?;
                let outcome = match m.state {
                    TrialState::Completed => match m.results.get(&search.metric) {
                        Some(v) if v.is_finite() => Outcome::Value(search.direction.oriented(v)),
                        _ => Outcome::Bad,
                    },
                    TrialState::Pruned => pruned_outcome(m),
                    TrialState::Diverged => Outcome::Bad,
                    _ => Outcome::Running,
                };
                Some(Observed { point, outcome })
            })
            .collect()
    }

    /// Suggests the next trial and appends it to the sweep (or says why there is none).
    pub fn ask(&self, s: &dyn Store) -> Result<Ask> {
        for _ in 0..MAX_RACES {
            let members = s.sweep_trials(self.sweep_id)?;
            let n = members.len();
            if n >= self.budget() {
                return Ok(Ask::Spent);
            }
            match self.try_append(s, &members)? {
                Some(ask) => return Ok(ask),
                None => continue,
            }
        }
        anyhow::bail!(
            "sweep {}: lost {MAX_RACES} appends in a row to other workers",
            self.name
        )
    }

    /// Draws suggestion `n` until it is a new trial and appends it; `None` when another worker
    /// appended first.
    fn try_append(&self, s: &dyn Store, members: &[SweepTrial]) -> Result<Option<Ask>> {
        let search = self.search();
        let n = members.len();
        let history = self.history(members);
        let taken: HashSet<&str> = members.iter().map(|m| m.hash.as_str()).collect();
        let dists = search.dists();
        let mut ider = Identifier::new(&self.cache_root);
        for attempt in 0..MAX_ATTEMPTS {
            let point = suggest(
                &dists,
                search.method,
                search.seed,
                n as u64,
                attempt,
                &history,
            );
            let resolved = self
                .sweep
                .point(&point)
                .with_context(|| format!("sweep {}: suggestion {n}", self.name))?;
            let identity = ider.identify(&resolved.config)?;
            if taken.contains(identity.hash.as_str()) {
                continue;
            }
            let label = Json::Object(resolved.label.clone());
            let trial = NewTrial {
                hash: identity.hash,
                config: serde_json::to_value(&resolved.config)?,
                label: label.clone(),
                is_baseline: false,
            };
            return Ok(s
                .append_trial(self.sweep_id, n as i64, &trial)?
                .map(|id| Ask::Trial {
                    id,
                    label: label_text(&label),
                }));
        }
        Ok(Some(Ask::Exhausted))
    }

    /// The first suggestions of a fresh random search (what `sweep plan` shows), without the
    /// ledger: random suggestions do not depend on the history.
    pub fn preview(sweep: &config::Sweep, count: usize) -> Result<Vec<config::ResolvedTrial>> {
        Self::preview_points(sweep, count)
            .iter()
            .map(|p| sweep.point(p))
            .collect()
    }

    /// The points of [`Self::preview`]'s trials.
    pub fn preview_points(sweep: &config::Sweep, count: usize) -> Vec<Vec<f64>> {
        let Some(search) = &sweep.search else {
            return Vec::new();
        };
        let dists = search.dists();
        (0..count.min(search.trials))
            .map(|i| suggest(&dists, search.method, search.seed, i as u64, 0, &[]))
            .collect()
    }
}

/// A pruned trial as TPE ranks it: its last validation step and value, from the decision its
/// pruner recorded (`env.pruned`); one without a decision ranks below every other pruned trial.
fn pruned_outcome(m: &SweepTrial) -> Outcome {
    let decision = m
        .env
        .as_ref()
        .and_then(|e| e.get("pruned"))
        .and_then(|d| serde_json::from_value::<Decision>(d.clone()).ok());
    let (step, value) = decision.map_or((0, f64::INFINITY), |d| d.last_point());
    Outcome::Pruned { step, value }
}

/// The searchers of recorded sweeps (those that are searches).
pub fn searchers_of(sweeps: &[SweepRecord], cache_root: &Path) -> Result<Vec<Searcher>> {
    let mut out = Vec::new();
    for rec in sweeps {
        if let Some(searcher) = Searcher::from_record(rec, cache_root)? {
            out.push(searcher);
        }
    }
    Ok(out)
}
