//! Pruning inside a trial process: after each validation evaluation, the search sweep's pruner
//! decides from the ledger's curves whether the trial goes on; if not, the trainer is asked to
//! stop (it checkpoints, as on any stop request) and the decision says why.
//!
//! Under Hyperband the trial first takes its bracket ([`Pruning::place`]: from the search seed,
//! its position in the sweep and its step count) and records it in its environment
//! (`env.hyperband`) before it trains, so that every other trial of the search, on any executor,
//! reads which bracket it competes in from the ledger.

use crate::search::{Curve, Decision, Placement, Pruner, Resource};
use crate::store::{MetricRecord, Reader, Store, SweepTrial, TrialState};
use crate::train::{MetricRow, MetricSink};
use crate::trial::TrialConfig;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How a trial of a search sweep is pruned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pruning {
    pub sweep_id: i64,
    pub pruner: Pruner,
    /// The search's seed and the trial's position in it (Hyperband's bracket comes from both).
    pub seed: u64,
    pub position: i64,
    /// Hyperband's bracket for this trial, once [`Pruning::place`]d.
    pub placement: Option<Placement>,
}

impl Pruning {
    /// Fixes what depends on the trial itself: Hyperband's default `max` (the trial's own
    /// length, from its data) and so its bracket.
    pub fn place(self, cfg: &TrialConfig, cache_root: &Path) -> Result<Self> {
        let pruner = match self.pruner {
            Pruner::Hyperband { max: None, .. } => {
                let steps = crate::train::plan_info(cfg, cache_root)?.total_steps;
                self.pruner.for_trial(steps, steps * cfg.tokens_per_step())
            }
            p => p,
        };
        Ok(Self {
            pruner,
            placement: pruner.bracket(self.seed, self.position.max(0) as u64),
            ..self
        })
    }
}

/// The search sweep that prunes a trial: the first search sweep with a pruner that holds it.
pub fn pruner_of(s: &dyn Reader, trial_id: i64) -> Result<Option<Pruning>> {
    for sweep in s.sweeps()? {
        let search = sweep.spec.get("search");
        let pruner = search
            .and_then(|x| x.get("prune"))
            .and_then(|p| serde_json::from_value::<Pruner>(p.clone()).ok())
            .unwrap_or_default();
        if pruner.is_none() {
            continue;
        }
        let seed = search
            .and_then(|x| x.get("seed"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if let Some(m) = s
            .sweep_trials(sweep.id)?
            .iter()
            .find(|m| m.trial.id == trial_id)
        {
            return Ok(Some(Pruning {
                sweep_id: sweep.id,
                pruner,
                seed,
                position: m.position,
                placement: None,
            }));
        }
    }
    Ok(None)
}

/// The Hyperband bracket a trial recorded in its environment (`env.hyperband.bracket`).
fn recorded_bracket(m: &SweepTrial) -> Option<u32> {
    let b = m.env.as_ref()?.get("hyperband")?.get("bracket")?.as_u64()?;
    u32::try_from(b).ok()
}

/// A [`MetricSink`] in front of the trial's own sink that prunes on validation rows.
pub struct PruningSink<'a> {
    inner: &'a mut dyn MetricSink,
    store: Arc<dyn Store>,
    sweep_id: i64,
    pruner: Pruner,
    /// What the curves' x counts (the pruner's resource).
    resource: Resource,
    me: Curve,
    cancel: Arc<AtomicBool>,
    decision: Option<Decision>,
}

impl<'a> PruningSink<'a> {
    pub fn new(
        inner: &'a mut dyn MetricSink,
        store: Arc<dyn Store>,
        trial_id: i64,
        pruning: Pruning,
        cancel: Arc<AtomicBool>,
    ) -> Self {
        Self {
            inner,
            store,
            sweep_id: pruning.sweep_id,
            pruner: pruning.pruner,
            resource: pruning.pruner.resource(),
            me: Curve {
                trial: trial_id,
                points: Vec::new(),
                completed: false,
                bracket: pruning.placement.map(|p| p.bracket),
            },
            cancel,
            decision: None,
        }
    }

    /// Why the trial was pruned, if it was.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }

    /// A ledger row as a point of a curve: (its step or tokens seen, its loss).
    fn point(&self, m: &MetricRecord) -> (u64, f64) {
        (
            self.resource.at(m.step as u64, m.tokens_seen as u64),
            m.loss,
        )
    }

    /// The other trials' validation curves, which of them completed and their brackets.
    fn others(&self) -> Result<Vec<Curve>> {
        let s = &*self.store;
        let members: BTreeMap<i64, (bool, Option<u32>)> = s
            .sweep_trials(self.sweep_id)?
            .iter()
            .map(|m| {
                let done = m.state == TrialState::Completed;
                (m.trial.id, (done, recorded_bracket(m)))
            })
            .collect();
        let mut curves: BTreeMap<i64, Curve> = BTreeMap::new();
        for m in s.sweep_split_metrics(self.sweep_id, "valid")? {
            if m.trial_id == self.me.trial {
                continue;
            }
            let (completed, bracket) = members.get(&m.trial_id).copied().unwrap_or_default();
            let c = curves.entry(m.trial_id).or_insert_with(|| Curve {
                trial: m.trial_id,
                points: Vec::new(),
                completed,
                bracket,
            });
            c.points.push(self.point(&m));
        }
        Ok(curves.into_values().collect())
    }
}

impl MetricSink for PruningSink<'_> {
    fn record(&mut self, row: &MetricRow) -> Result<()> {
        self.inner.record(row)?;
        if row.split != "valid" || self.decision.is_some() {
            return Ok(());
        }
        let x = self.resource.at(row.step, row.tokens_seen);
        if self.me.points.last().is_some_and(|p| p.0 >= x) {
            return Ok(());
        }
        self.me.points.push((x, row.loss));
        if let Some(d) = self.pruner.decide(&self.me, &self.others()?) {
            eprintln!("trial {}: {}", self.me.trial, d.sentence());
            self.decision = Some(d);
            self.cancel.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// A resumed trial's curve so far comes from the ledger (rows up to the checkpoint's step).
    fn start_at(&mut self, step: u64) -> Result<()> {
        self.inner.start_at(step)?;
        self.me.points = self
            .store
            .metrics(self.me.trial)?
            .iter()
            .filter(|m| m.split == "valid" && m.step as u64 <= step)
            .map(|m| self.point(m))
            .collect();
        Ok(())
    }

    fn resumed(&mut self, r: &crate::checkpoint::Resumption) -> Result<()> {
        self.inner.resumed(r)
    }

    fn heartbeat(&mut self) -> Result<()> {
        self.inner.heartbeat()
    }

    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
}
