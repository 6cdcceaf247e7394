//! Pruning inside a trial process: after each validation evaluation, the search sweep's pruner
//! decides from the ledger's curves whether the trial goes on; if not, the trainer is asked to
//! stop (it checkpoints, as on any stop request) and the decision says why.

use crate::search::{Curve, Decision, Pruner};
use crate::store::{Reader, Store, TrialState};
use crate::train::{MetricRow, MetricSink};
use anyhow::Result;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The search sweep that prunes a trial: the first search sweep with a pruner that holds it.
pub fn pruner_of(s: &dyn Reader, trial_id: i64) -> Result<Option<(i64, Pruner)>> {
    for sweep in s.sweeps()? {
        let pruner = sweep
            .spec
            .get("search")
            .and_then(|x| x.get("prune"))
            .and_then(|p| serde_json::from_value::<Pruner>(p.clone()).ok())
            .unwrap_or_default();
        if pruner.is_none() {
            continue;
        }
        if s.sweep_trials(sweep.id)?
            .iter()
            .any(|m| m.trial.id == trial_id)
        {
            return Ok(Some((sweep.id, pruner)));
        }
    }
    Ok(None)
}

/// A [`MetricSink`] in front of the trial's own sink that prunes on validation rows.
pub struct PruningSink<'a> {
    inner: &'a mut dyn MetricSink,
    store: Arc<dyn Store>,
    sweep_id: i64,
    pruner: Pruner,
    me: Curve,
    cancel: Arc<AtomicBool>,
    decision: Option<Decision>,
}

impl<'a> PruningSink<'a> {
    pub fn new(
        inner: &'a mut dyn MetricSink,
        store: Arc<dyn Store>,
        trial_id: i64,
        (sweep_id, pruner): (i64, Pruner),
        cancel: Arc<AtomicBool>,
    ) -> Self {
        Self {
            inner,
            store,
            sweep_id,
            pruner,
            me: Curve {
                trial: trial_id,
                points: Vec::new(),
                completed: false,
            },
            cancel,
            decision: None,
        }
    }

    /// Why the trial was pruned, if it was.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }

    /// The other trials' validation curves, and which of them completed.
    fn others(&self) -> Result<Vec<Curve>> {
        let s = &*self.store;
        let completed: Vec<i64> = s
            .sweep_trials(self.sweep_id)?
            .iter()
            .filter(|m| m.state == TrialState::Completed)
            .map(|m| m.trial.id)
            .collect();
        let mut curves: BTreeMap<i64, Curve> = BTreeMap::new();
        for m in s.sweep_split_metrics(self.sweep_id, "valid")? {
            if m.trial_id == self.me.trial {
                continue;
            }
            let c = curves.entry(m.trial_id).or_insert_with(|| Curve {
                trial: m.trial_id,
                points: Vec::new(),
                completed: completed.contains(&m.trial_id),
            });
            c.points.push((m.step as u64, m.loss));
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
        if self.me.points.last().is_some_and(|p| p.0 >= row.step) {
            return Ok(());
        }
        self.me.points.push((row.step, row.loss));
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
            .map(|m| (m.step as u64, m.loss))
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
