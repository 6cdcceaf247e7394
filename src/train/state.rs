//! The training state a checkpoint carries besides the weights, and resuming from it.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::optim::{AdamW, AdamWConfig, LossScaler};
use crate::checkpoint::{self, CheckpointId, Resumption};
use crate::error::UsageError;
use crate::fused::FusedAutodiff;
use crate::model::{Gpt, GptConfig};
use crate::trial::{Precision, TrialConfig};

/// Everything besides weights that a training checkpoint must restore.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TrainState {
    pub config: TrialConfig,
    /// Optimizer steps taken.
    pub step: u64,
    pub epoch: usize,
    /// Optimizer steps taken inside `epoch` (the data position in its shuffled order).
    pub step_in_epoch: u64,
    pub tokens_seen: u64,
    pub train_seconds: f64,
    /// Time inside evaluations (measurement, not training); older checkpoints lack it.
    #[serde(default)]
    pub eval_seconds: f64,
    /// Running train loss since the last logged train row.
    pub window_loss: f64,
    pub window_batches: u64,
    pub last_valid_step: Option<u64>,
    /// f16 autocast's loss scale (None at f32 and bf16); older checkpoints lack it.
    #[serde(default)]
    pub loss_scaler: Option<LossScaler>,
    /// Steps skipped because their f16 gradients overflowed: they count as steps (of the data
    /// and the step budget) but not as updates, so the learning-rate schedule and AdamW's bias
    /// correction do not advance (HF Trainer with a GradScaler).
    #[serde(default)]
    pub skipped_steps: u64,
}

impl TrainState {
    fn new(cfg: &TrialConfig) -> Self {
        Self {
            config: cfg.clone(),
            step: 0,
            epoch: 0,
            step_in_epoch: 0,
            tokens_seen: 0,
            train_seconds: 0.0,
            eval_seconds: 0.0,
            window_loss: 0.0,
            window_batches: 0,
            last_valid_step: None,
            loss_scaler: (cfg.precision == Some(Precision::F16)).then(LossScaler::new),
            skipped_steps: 0,
        }
    }

    /// Optimizer updates applied (steps less the skipped ones): the schedule's position.
    pub fn updates(&self) -> u64 {
        self.step - self.skipped_steps
    }

    /// Tokens per second of training time so far.
    pub fn throughput(&self) -> f64 {
        self.tokens_seen as f64 / self.train_seconds.max(1e-9)
    }
}

/// Where a trial's weights and optimizer start, and from which checkpoint.
pub(super) struct Start<AB: FusedAutodiff> {
    pub model: Gpt<AB>,
    pub opt: AdamW<AB::InnerBackend>,
    pub state: TrainState,
    pub resumption: Resumption,
}

/// Resumes from the newest good checkpoint under `work_dir` (it must be of this very config),
/// else starts from `fresh()`'s weights at step 0. Checkpoints that fail verification are
/// passed over and reported in the start's [`Resumption`], as is a checkpoint of the layout
/// before manifests, which cannot be verified.
pub(super) fn resume_or_start<AB: FusedAutodiff>(
    work_dir: &Path,
    cfg: &TrialConfig,
    device: &AB::Device,
    fresh: impl FnOnce() -> Result<Gpt<AB>>,
) -> Result<Start<AB>> {
    let mut opt = AdamW::<AB::InnerBackend>::new(AdamWConfig::new(cfg.weight_decay));
    let dir = work_dir.join(checkpoint::TRAINING_SUBDIR);
    let (found, mut rejected) =
        checkpoint::load_newest::<AB, TrainState>(&dir, cfg.dropout, device)?;
    let legacy = work_dir.join(checkpoint::LEGACY_SUBDIR);
    if legacy.join("state.json").is_file() {
        rejected.push(checkpoint::Rejected {
            name: legacy.display().to_string(),
            step: None,
            problem: "written by an older sweep without a manifest, so its files cannot be \
                      verified; not used, and deleted once a new checkpoint is complete"
                .into(),
        });
    }
    let Some(found) = found else {
        return Ok(Start {
            model: fresh()?,
            opt,
            state: TrainState::new(cfg),
            resumption: Resumption {
                checkpoint: None,
                rejected,
            },
        });
    };
    let ck = found.checkpoint;
    if ck.state.config != *cfg {
        return Err(UsageError(format!(
            "{} holds a checkpoint of a different configuration; remove it or use another work \
             directory",
            dir.display()
        ))
        .into());
    }
    opt.load_named(ck.optimizer, ck.state.updates(), device)
        .with_context(|| {
            format!(
                "restoring optimizer from {}",
                dir.join(&found.id.name).display()
            )
        })?;
    Ok(Start {
        model: found.model,
        opt,
        state: ck.state,
        resumption: Resumption {
            checkpoint: Some(found.id),
            rejected,
        },
    })
}

/// Writes a training checkpoint of the weights, the optimizer and the state under `work_dir`,
/// keeping `keep` (the newest good one before it) and deleting the rest.
pub(super) fn save<AB: FusedAutodiff>(
    work_dir: &Path,
    model: &Gpt<AB>,
    gcfg: &GptConfig,
    opt: &AdamW<AB::InnerBackend>,
    st: &TrainState,
    keep: Option<&CheckpointId>,
) -> Result<CheckpointId> {
    let dir = work_dir.join(checkpoint::TRAINING_SUBDIR);
    let id = checkpoint::save_training(&dir, model, gcfg, &opt.to_named(), st, st.step, keep)
        .with_context(|| format!("writing a training checkpoint in {}", dir.display()))?;
    // The old layout's checkpoint is superseded by a complete one.
    let _ = std::fs::remove_dir_all(work_dir.join(checkpoint::LEGACY_SUBDIR));
    Ok(id)
}

/// Removes a run's checkpoints (the trial is done, or diverged and cannot resume).
pub(super) fn remove_all(work_dir: &Path) {
    for sub in [checkpoint::TRAINING_SUBDIR, checkpoint::LEGACY_SUBDIR] {
        let _ = std::fs::remove_dir_all(work_dir.join(sub));
    }
}

#[cfg(test)]
mod tests {
    use crate::util::SplitMix;

    /// A resumed run continues from the running sums in `state.json`; a float that comes back
    /// one ulp off makes its next logged train loss differ from the uninterrupted run's (seen in
    /// tests/cluster.rs). serde_json parses exactly only with `float_roundtrip`.
    #[test]
    fn checkpoint_state_floats_round_trip_exactly_through_json() {
        let mut rng = SplitMix::new(3);
        let mut off = 0;
        for _ in 0..100_000 {
            // Sums of losses and seconds: magnitudes 1e-3..1e6 with full 53-bit mantissas.
            let x = f64::from_bits(rng.next_u64() >> 12 | 0x3ff0_0000_0000_0000) - 1.0;
            let x = x * 10f64.powi((rng.next_u64() % 10) as i32 - 3);
            let back: f64 = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
            off += (back.to_bits() != x.to_bits()) as usize;
        }
        assert_eq!(off, 0, "{off} of 100000 f64s changed through JSON");
    }
}
