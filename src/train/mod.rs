//! The trainer: runs one trial (HF Trainer semantics: AdamW, linear decay, global clipping,
//! gradient accumulation), evaluates it, checkpoints it resumably and exports the model.

pub mod cli;
pub mod estimate;
pub mod eval;
pub mod golden;
pub mod optim;
pub mod pretrain;
pub mod sinks;
mod state;
mod trainer;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::backend::DeviceSpec;
use crate::checkpoint;
use crate::data::{self, Split};
use crate::error::UsageError;
use crate::model::GptConfig;
use crate::trial::{ModelSpec, Precision, Preset, Start, TokenizerSpec, TrialConfig};

/// One logged number: running train loss, or an evaluation on a split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    pub step: u64,
    pub epoch: f64,
    /// `train` | `valid` | `test` | `valid@N` (fixed-context evaluation at N tokens).
    pub split: String,
    pub loss: f64,
    pub ppl: f64,
    pub tokens_seen: u64,
    pub lr: f64,
    pub tokens_per_s: f64,
    /// Global gradient norm before clipping of the last step of a running train row (None for
    /// evaluations). Not in the ledger; TensorBoard logs show it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
}

/// Where metric rows go (SQLite in sweeps; JSON lines + stdout standalone).
pub trait MetricSink {
    fn record(&mut self, row: &MetricRow) -> Result<()>;
    /// Called once before the first optimizer step with the step training starts from (0, or
    /// the resumed checkpoint's). A killed run may have recorded rows past it, which the steps
    /// replayed from there record again.
    fn start_at(&mut self, _step: u64) -> Result<()> {
        Ok(())
    }
    /// Called once before [`MetricSink::start_at`] when the run resumed from a checkpoint or
    /// passed over one that failed verification: where it starts and what it found.
    fn resumed(&mut self, _resumption: &checkpoint::Resumption) -> Result<()> {
        Ok(())
    }
    /// Called about every 10 s while training, to show the trial is alive.
    fn heartbeat(&mut self) -> Result<()> {
        Ok(())
    }
    /// Makes every row recorded so far durable. Called before each training checkpoint, so a
    /// run resumed from that checkpoint never lacks a row from before it.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A completed trial's numbers (final full evaluations, eval mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalMetrics {
    pub train_loss: f64,
    pub valid_loss: f64,
    pub test_loss: f64,
    pub train_ppl: f64,
    pub valid_ppl: f64,
    pub test_ppl: f64,
    pub valid_loss_fixed: Option<f64>,
    pub tokens_per_s: f64,
    pub peak_rss_bytes: u64,
    pub wall_seconds: f64,
    /// Time inside optimizer steps (forward, backward, update), excluding evaluation.
    pub train_seconds: f64,
    /// Time inside evaluations (periodic valid and the final train/valid/test passes).
    pub eval_seconds: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TrialEnd {
    Completed(FinalMetrics),
    Diverged { step: u64 },
    Interrupted,
}

/// Runtime choices that do not change a trial's numbers.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// Per trial: checkpoints in `work_dir/checkpoint`, the exported HF model in `work_dir/model`.
    pub work_dir: PathBuf,
    pub cache_root: PathBuf,
    /// `cpu` | `cuda:N`.
    pub device: String,
    /// Set to stop at the next optimizer step (checkpoint, then `TrialEnd::Interrupted`).
    pub cancel: Arc<AtomicBool>,
    pub progress: bool,
    /// Also checkpoint every this many minutes (0: only at epoch ends and on cancel).
    pub checkpoint_minutes: f64,
}

impl RunContext {
    pub fn new(work_dir: PathBuf) -> Self {
        Self {
            work_dir,
            cache_root: crate::locations::cache_root(None),
            device: "cpu".into(),
            cancel: Arc::new(AtomicBool::new(false)),
            progress: false,
            checkpoint_minutes: 10.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TrialPlanInfo {
    pub train_tokens: u64,
    pub steps_per_epoch: u64,
    pub total_steps: u64,
}

/// Refuses, once and before anything is recorded, a sweep whose trials start from pretrained
/// weights that this machine cannot get: a Hub model that cannot be fetched (no network with an
/// empty cache, a missing or gated repository: [`checkpoint::hub`] says which and the fix), a
/// checkpoint directory without its files, or a block size beyond a model's context. Hub models
/// are downloaded here (progress on stderr), so that every trial finds them in the cache.
pub fn preflight_models<'a>(configs: impl Iterator<Item = &'a TrialConfig>) -> Result<()> {
    let mut checked: Vec<(Start, usize)> = Vec::new();
    for cfg in configs {
        let start = cfg.start()?;
        let longest = cfg.block_size.max(cfg.eval_block_size.unwrap_or(0));
        if checked.iter().any(|(s, n)| *s == start && *n >= longest) {
            continue;
        }
        let name = cfg.model.to_string();
        let refuse = |e: String| {
            UsageError(format!(
                "{e}; nothing was recorded. Or run the CPU-scale version of the experiment \
                 (`--profile quick`), which trains small presets"
            ))
        };
        // Both name the model in their errors.
        let dir = match &start {
            Start::Hub(h) => checkpoint::hub::fetch(h).map(|r| r.dir),
            Start::Checkpoint(d) => checkpoint::model_dir(&ModelSpec::Dir(d.clone())),
            Start::LocalPretraining(_) | Start::Scratch => continue,
        }
        .map_err(|e| refuse(format!("{e:#}")))?;
        let shape = checkpoint::read_hf_config(&dir)
            .map_err(|e| refuse(format!("model `{name}`: {e:#}")))?;
        if longest > shape.n_positions {
            return Err(UsageError(format!(
                "model `{name}`: block_size/eval_block_size {longest} exceeds its context of {} \
                 positions (n_positions in its config.json); nothing was recorded. fix: use \
                 block_size <= {}",
                shape.n_positions, shape.n_positions
            ))
            .into());
        }
        checked.push((start, longest));
    }
    Ok(())
}

/// The trial's model plan; `None` when the local pretraining it starts from was interrupted.
fn plan_model(
    cfg: &TrialConfig,
    ctx: &RunContext,
    prepared: &data::Prepared,
    tok: &crate::tokenizer::Tokenizer,
) -> Result<Option<ModelPlan>> {
    let start = cfg.start()?;
    if !matches!(start, Start::LocalPretraining(_)) {
        return model_plan(cfg, &start, tok.vocab_size()).map(Some);
    }
    // Fine-tune the cached local pretraining of the small preset, as an HF directory.
    let Some(dir) = pretrain::ensure_pretrained(cfg, ctx, &prepared.hash, tok.id())? else {
        return Ok(None);
    };
    let local = TrialConfig {
        n_layer: None,
        n_embd: None,
        n_head: None,
        ..cfg.clone()
    };
    model_plan(&local, &Start::Checkpoint(dir), tok.vocab_size()).map(Some)
}

/// Where the weights come from and the final model shape.
struct ModelPlan {
    cfg: GptConfig,
    /// `Some(dir)`: load this HF checkpoint; `None`: GPT-2 initialisation from the seed.
    pretrained: Option<PathBuf>,
}

/// Resolves where the weights start ([`TrialConfig::start`]), the shape overrides and the
/// tokenizer's vocabulary into a model plan. A small preset's local pretraining comes in as the
/// checkpoint directory it was saved to.
fn model_plan(cfg: &TrialConfig, start: &Start, vocab_size: usize) -> Result<ModelPlan> {
    let name = cfg.model.to_string();
    // The checkpoint's shape: a hub preset's is known before its weights are looked up, so a
    // mismatch is reported as such on machines without the weights too.
    let (shape, dir) = match start {
        Start::Hub(h) => match h.preset() {
            Some(p) => (GptConfig::of(p), None),
            None => {
                let dir = checkpoint::hub::fetch(h)?.dir;
                (checkpoint::read_hf_config(&dir)?, Some(dir))
            }
        },
        Start::Checkpoint(d) if !d.is_dir() => {
            return Err(UsageError(format!(
                "unknown model preset `{name}` (and no checkpoint directory of that name); known \
                 presets: {}, {}",
                Preset::names(true),
                Preset::names(false)
            ))
            .into())
        }
        Start::Checkpoint(d) => (checkpoint::read_hf_config(d)?, Some(d.clone())),
        Start::LocalPretraining(p) => bail!(
            "the local pretraining of `{}` must be resolved to its directory first",
            p.name()
        ),
        Start::Scratch => return scratch_plan(cfg, vocab_size),
    };
    check_pretrained_shape(
        cfg,
        &shape,
        matches!(start, Start::Checkpoint(_)),
        vocab_size,
    )?;
    let dir = match dir {
        Some(d) => d,
        None => checkpoint::model_dir(&cfg.model)?,
    };
    let ck = checkpoint::read_hf_config(&dir)?;
    if vocab_size < ck.vocab_size {
        return Err(UsageError(format!(
            "the tokenizer `{}` has {vocab_size} tokens but `{name}` embeds {}: they do not \
             belong together",
            cfg.tokenizer, ck.vocab_size
        ))
        .into());
    }
    let gcfg = GptConfig {
        vocab_size,
        dropout: cfg.dropout,
        ..ck
    };
    finish_plan(cfg, gcfg, Some(dir))
}

/// A from-scratch model: the preset's (or directory's) shape with the trial's overrides.
fn scratch_plan(cfg: &TrialConfig, vocab_size: usize) -> Result<ModelPlan> {
    let mut gcfg = match cfg.model.preset() {
        Some(p) => GptConfig::of(p),
        None => checkpoint::read_hf_config(&checkpoint::model_dir(&cfg.model)?)?,
    };
    gcfg.dropout = cfg.dropout;
    gcfg = gcfg.with_overrides(cfg.n_layer, cfg.n_embd, cfg.n_head)?;
    gcfg.vocab_size = vocab_size;
    finish_plan(cfg, gcfg, None)
}

/// Refuses a tokenizer or shape override that pretrained weights of `shape` cannot take.
fn check_pretrained_shape(
    cfg: &TrialConfig,
    shape: &GptConfig,
    is_dir: bool,
    vocab_size: usize,
) -> Result<()> {
    let name = &cfg.model;
    let check = |m: String| -> Result<()> { Err(UsageError(m).into()) };
    // GPT-2's weights only make sense with GPT-2's tokenizer; a local checkpoint may come with
    // any tokenizer whose vocabulary is exactly its embedding's.
    if cfg.tokenizer != TokenizerSpec::Gpt2 && (!is_dir || vocab_size != shape.vocab_size) {
        check(format!(
            "pretrained `{name}` needs the gpt2 tokenizer (or one with exactly its {} tokens), \
             not `{}`",
            shape.vocab_size, cfg.tokenizer
        ))?;
    }
    for (field, want, have) in [
        ("n_layer", cfg.n_layer, shape.n_layer),
        ("n_embd", cfg.n_embd, shape.n_embd),
        ("n_head", cfg.n_head, shape.n_head),
    ] {
        if want.is_some_and(|w| w != have) {
            check(format!(
                "cannot override {field} of pretrained `{name}` ({have}); use init = \"scratch\""
            ))?;
        }
    }
    Ok(())
}

fn finish_plan(
    cfg: &TrialConfig,
    gcfg: GptConfig,
    pretrained: Option<PathBuf>,
) -> Result<ModelPlan> {
    for (what, n) in [
        ("block_size", Some(cfg.block_size)),
        ("eval_block_size", cfg.eval_block_size),
    ] {
        if let Some(n) = n.filter(|&n| n > gcfg.n_positions) {
            return Err(UsageError(format!(
                "{what} {n} exceeds the model's context of {} positions",
                gcfg.n_positions
            ))
            .into());
        }
    }
    Ok(ModelPlan {
        cfg: gcfg,
        pretrained,
    })
}

/// Steps and token counts of a trial, without training (for `sweep plan`).
pub fn plan_info(cfg: &TrialConfig, cache_root: &Path) -> Result<TrialPlanInfo> {
    cfg.validate()?;
    let prepared = data::prepare_cached(&cfg.data, cache_root)?;
    let tok = prepared.tokenizer(cfg.tokenizer, cache_root)?;
    let tokens = data::split_token_count(&prepared, Split::Train, &tok, cache_root)?;
    let (_, spe, total) = schedule_sizes(cfg, tokens / cfg.block_size)?;
    Ok(TrialPlanInfo {
        train_tokens: spe * cfg.tokens_per_step(),
        steps_per_epoch: spe,
        total_steps: total,
    })
}

/// (training blocks used per epoch, optimizer steps per epoch, total steps)
/// ([`TrialConfig::schedule`]), refusing a split too small for one optimizer step.
fn schedule_sizes(cfg: &TrialConfig, available_blocks: usize) -> Result<(usize, u64, u64)> {
    let (blocks, spe, total) = cfg.schedule(available_blocks);
    if spe == 0 {
        return Err(UsageError(format!(
            "only {blocks} training blocks of {} tokens, but one optimizer step needs \
             batch_size x grad_accum = {}",
            cfg.block_size,
            cfg.batch_size * cfg.grad_accum
        ))
        .into());
    }
    Ok((blocks, spe, total))
}

/// Runs (or resumes) one trial on the device named in `ctx`.
pub fn run_trial(
    cfg: &TrialConfig,
    ctx: &RunContext,
    sink: &mut dyn MetricSink,
) -> Result<TrialEnd> {
    let device = DeviceSpec::parse(&ctx.device)?;
    check_precision(cfg.precision.unwrap_or_default(), device)?;
    crate::on_backend!(device, train, |B, dev| trainer::run_on::<B>(
        cfg, ctx, sink, dev
    ))
}

/// Autocast to bf16/f16 is for GPUs: the CPU backend has no half-precision matmul worth using.
pub fn check_precision(precision: Precision, device: DeviceSpec) -> Result<()> {
    if precision != Precision::F32 && device == DeviceSpec::Cpu {
        return Err(UsageError(format!(
            "precision = \"{}\" runs matmuls on GPU tensor cores; use --device cuda:N, or \
             precision = \"f32\" on the CPU",
            precision.as_str()
        ))
        .into());
    }
    Ok(())
}

/// Peak resident set size of this process (Linux `VmHWM`), 0 where unknown.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// The trainer's numerics version. Bump it whenever a change makes the same config and seed
/// train to different weights: a kernel that rounds differently, a new dropout hash. It is part
/// of the cache key of local pretrainings, so a start cached by older code is not reused, and is
/// recorded with every trial. 2: the vectorised `exp`, fused AdamW and LM loss of 2026-11-26.
/// 3: f16 autocast with dynamic loss scaling, and the clipping coefficient computed in f32 on
/// GPUs (CPU results are unchanged from 2).
pub const NUMERICS: u32 = 3;

/// Facts about where a trial ran: backend, device, crate version, trainer numerics, git commit
/// and dirtiness.
pub fn environment(ctx: &RunContext) -> serde_json::Value {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    });
    let backend = DeviceSpec::parse(&ctx.device)
        .map(|d| d.describe())
        .unwrap_or_else(|_| ctx.device.clone());
    serde_json::json!({
        "backend": backend,
        "device": ctx.device,
        "crate_version": env!("CARGO_PKG_VERSION"),
        "burn_version": "0.21.0",
        "trainer_numerics": NUMERICS,
        "git_commit": git(&["rev-parse", "HEAD"]),
        "git_dirty": git(&["status", "--porcelain"]).map(|s| !s.is_empty()),
        "cpu": cpu,
        "threads": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "os": std::env::consts::OS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_train_tokens: Option<u64>, skip: Option<u64>) -> TrialConfig {
        serde_json::from_value(serde_json::json!({
            "model": "gpt2-tiny", "data": {"sources": ["x.tsv"]}, "block_size": 100,
            "batch_size": 2, "grad_accum": 1, "learning_rate": 1e-3, "weight_decay": 0.0,
            "epochs": 2, "max_train_tokens": max_train_tokens, "skip_train_tokens": skip,
        }))
        .unwrap()
    }

    #[test]
    fn skipped_tokens_leave_the_schedule_in_whole_blocks() {
        // 50 blocks; skipping 1,050 tokens leaves out 10 whole blocks.
        assert_eq!(schedule_sizes(&cfg(None, None), 50).unwrap(), (50, 25, 50));
        assert_eq!(
            schedule_sizes(&cfg(None, Some(1_050)), 50).unwrap(),
            (40, 20, 40)
        );
        // The cap counts from the first block after the skipped ones.
        assert_eq!(
            schedule_sizes(&cfg(Some(600), Some(1_000)), 50).unwrap(),
            (6, 3, 6)
        );
        // At most half of the split is left out: a small data set still trains.
        assert_eq!(
            schedule_sizes(&cfg(None, Some(5_000)), 50).unwrap(),
            (25, 12, 24)
        );
    }

    #[test]
    fn only_local_pretrainings_name_their_recipe_in_the_identity() {
        let scratch = cfg(None, None);
        assert!(pretrain::recipe_id(&scratch, "d", "t").is_none());
        let mut fine = scratch.clone();
        fine.init = Some(crate::trial::Init::Pretrained);
        let id = pretrain::recipe_id(&fine, "d", "t").unwrap().unwrap();
        assert!(id.starts_with("local-pretraining "), "{id}");
        // The recipe follows the data it pretrains on.
        assert_ne!(id, pretrain::recipe_id(&fine, "d2", "t").unwrap().unwrap());
    }
}
