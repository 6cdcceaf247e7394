//! The trainer: runs one trial (HF Trainer semantics: AdamW, linear decay, global clipping,
//! gradient accumulation), evaluates it, checkpoints it resumably and exports the model.

pub mod cli;
pub mod eval;
pub mod golden;
pub mod optim;
pub mod pretrain;
pub mod sinks;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ElementConversion;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::backend::DeviceSpec;
use crate::checkpoint;
use crate::data::{self, Split, TokenBlocks};
use crate::error::UsageError;
use crate::fused::FusedAutodiff;
use crate::model::{Gpt, GptConfig, Precision, SplitMix};
use crate::tokenizer::Tokenizer;
use crate::trial::TrialConfig;
use eval::{capped_blocks, evaluate, Blocks};
use optim::{linear_lr, AdamW, AdamWConfig, LossScaler};

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
}

/// Where metric rows go (SQLite in sweeps; JSON lines + stdout standalone).
pub trait MetricSink {
    fn record(&mut self, row: &MetricRow) -> Result<()>;
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
            cache_root: data::default_cache_root(),
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

/// Rejects numbers that cannot train (zero batch/accum/epochs, tiny blocks, bad rates).
pub fn validate(cfg: &TrialConfig) -> Result<()> {
    let bad = |m: String| -> Result<()> { Err(UsageError(m).into()) };
    for (name, v) in [
        ("batch_size", cfg.batch_size),
        ("grad_accum", cfg.grad_accum),
        ("epochs", cfg.epochs),
    ] {
        if v == 0 {
            return bad(format!("{name} must be at least 1"));
        }
    }
    if cfg.block_size < 2 {
        return bad(format!(
            "block_size must be at least 2 (one input and one target), got {}",
            cfg.block_size
        ));
    }
    if !(cfg.learning_rate.is_finite() && cfg.learning_rate > 0.0) {
        return bad(format!(
            "learning_rate must be positive, got {}",
            cfg.learning_rate
        ));
    }
    if !(cfg.weight_decay.is_finite() && cfg.weight_decay >= 0.0) {
        return bad(format!(
            "weight_decay must be >= 0, got {}",
            cfg.weight_decay
        ));
    }
    if !(0.0..1.0).contains(&cfg.dropout) {
        return bad(format!("dropout must be in [0, 1), got {}", cfg.dropout));
    }
    if cfg.max_steps == Some(0) || cfg.eval_every == Some(0) {
        return bad("max_steps and eval_every must be at least 1 when set".into());
    }
    if cfg.eval_block_size.is_some_and(|n| n < 2) {
        return bad("eval_block_size must be at least 2".into());
    }
    match cfg.init.as_deref() {
        None | Some("pretrained") | Some("scratch") => Ok(()),
        Some(other) => bad(format!(
            "init must be `pretrained` or `scratch`, got `{other}`"
        )),
    }
}

/// Where the weights come from and the final model shape.
struct ModelPlan {
    cfg: GptConfig,
    /// `Some(dir)`: load this HF checkpoint; `None`: GPT-2 initialisation from the seed.
    pretrained: Option<PathBuf>,
}

/// Resolves `cfg.model` + `cfg.init` + overrides + the tokenizer's vocabulary into a model plan.
fn model_plan(cfg: &TrialConfig, vocab_size: usize) -> Result<ModelPlan> {
    let name = cfg.model.as_str();
    let is_dir = Path::new(name).is_dir();
    let pretrained_source = GptConfig::is_pretrained_preset(name) || is_dir;
    let scratch = match cfg.init.as_deref() {
        Some("scratch") => true,
        Some("pretrained") if !pretrained_source => {
            return Err(UsageError(format!(
                "`{name}` has no pretrained weights; use init = \"scratch\", a pretrained model \
                 ({}), or a small preset ({}), which is pretrained locally",
                crate::model::PRETRAINED_PRESETS.join(", "),
                crate::model::SCRATCH_PRESETS.join(", ")
            ))
            .into())
        }
        _ => !pretrained_source,
    };
    let (mut gcfg, dir) = if is_dir {
        (
            checkpoint::read_hf_config(Path::new(name))?,
            Some(PathBuf::from(name)),
        )
    } else {
        (GptConfig::preset(name)?, None)
    };
    gcfg.dropout = cfg.dropout;
    let check = |m: String| -> Result<()> { Err(UsageError(m).into()) };
    if !scratch {
        // GPT-2's weights only make sense with GPT-2's tokenizer; a local checkpoint may come
        // with any tokenizer whose vocabulary is exactly its embedding's.
        if cfg.tokenizer != "gpt2" && (!is_dir || vocab_size != gcfg.vocab_size) {
            check(format!(
                "pretrained `{name}` needs the gpt2 tokenizer (or one with exactly its {} \
                 tokens), not `{}`",
                gcfg.vocab_size, cfg.tokenizer
            ))?;
        }
        for (field, want, have) in [
            ("n_layer", cfg.n_layer, gcfg.n_layer),
            ("n_embd", cfg.n_embd, gcfg.n_embd),
            ("n_head", cfg.n_head, gcfg.n_head),
        ] {
            if want.is_some_and(|w| w != have) {
                check(format!(
                    "cannot override {field} of pretrained `{name}` ({have}); use init = \"scratch\""
                ))?;
            }
        }
        let dir = match dir {
            Some(d) => d,
            None => checkpoint::resolve_model_dir(name)?,
        };
        let ck = checkpoint::read_hf_config(&dir)?;
        if vocab_size < ck.vocab_size {
            check(format!(
                "the tokenizer `{}` has {vocab_size} tokens but `{name}` embeds {}: they do not \
                 belong together",
                cfg.tokenizer, ck.vocab_size
            ))?;
        }
        gcfg = GptConfig {
            vocab_size,
            dropout: cfg.dropout,
            ..ck
        };
        return finish_plan(cfg, gcfg, Some(dir));
    }
    gcfg = gcfg.with_overrides(cfg.n_layer, cfg.n_embd, cfg.n_head)?;
    gcfg.vocab_size = vocab_size;
    finish_plan(cfg, gcfg, None)
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
    validate(cfg)?;
    let prepared = data::prepare_cached(&cfg.data, cache_root)?;
    let tok = Tokenizer::for_spec(&cfg.tokenizer, &prepared, cache_root)?;
    let tokens = data::split_token_count(&prepared, Split::Train, &tok, cache_root)?;
    let (_, spe, total) = schedule_sizes(cfg, tokens / cfg.block_size)?;
    Ok(TrialPlanInfo {
        train_tokens: spe * (cfg.batch_size * cfg.grad_accum * cfg.block_size) as u64,
        steps_per_epoch: spe,
        total_steps: total,
    })
}

/// (training blocks used per epoch, optimizer steps per epoch, total steps). Incomplete
/// accumulation groups at an epoch's end are dropped.
fn schedule_sizes(cfg: &TrialConfig, available_blocks: usize) -> Result<(usize, u64, u64)> {
    let mut blocks = available_blocks;
    if let Some(cap) = cfg.max_train_tokens {
        blocks = blocks.min(cap as usize / cfg.block_size);
    }
    let per_step = cfg.batch_size * cfg.grad_accum;
    let spe = (blocks / per_step) as u64;
    if spe == 0 {
        return Err(UsageError(format!(
            "only {blocks} training blocks of {} tokens, but one optimizer step needs \
             batch_size x grad_accum = {per_step}",
            cfg.block_size
        ))
        .into());
    }
    let mut total = spe * cfg.epochs as u64;
    if let Some(m) = cfg.max_steps {
        total = total.min(m);
    }
    Ok((blocks, spe, total))
}

/// Everything besides weights that a training checkpoint must restore.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainState {
    config: TrialConfig,
    /// Optimizer steps taken.
    step: u64,
    epoch: usize,
    /// Optimizer steps taken inside `epoch` (the data position in its shuffled order).
    step_in_epoch: u64,
    tokens_seen: u64,
    train_seconds: f64,
    /// Time inside evaluations (measurement, not training); older checkpoints lack it.
    #[serde(default)]
    eval_seconds: f64,
    /// Running train loss since the last logged train row.
    window_loss: f64,
    window_batches: u64,
    last_valid_step: Option<u64>,
    /// f16 autocast's loss scale (None at f32 and bf16); older checkpoints lack it.
    #[serde(default)]
    loss_scaler: Option<LossScaler>,
    /// Steps skipped because their f16 gradients overflowed: they count as steps (of the data
    /// and the step budget) but not as updates, so the learning-rate schedule and AdamW's bias
    /// correction do not advance (HF Trainer with a GradScaler).
    #[serde(default)]
    skipped_steps: u64,
}

/// Runs (or resumes) one trial on the device named in `ctx`.
pub fn run_trial(
    cfg: &TrialConfig,
    ctx: &RunContext,
    sink: &mut dyn MetricSink,
) -> Result<TrialEnd> {
    let device = DeviceSpec::parse(&ctx.device)?;
    check_precision(cfg.precision.unwrap_or_default(), device)?;
    match device {
        DeviceSpec::Cpu => run_on::<crate::backend::CpuTrain>(cfg, ctx, sink, Default::default()),
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(n) => {
            run_on::<crate::backend::CudaTrain>(cfg, ctx, sink, crate::backend::cuda_device(n)?)
        }
        #[allow(unreachable_patterns)]
        other => Err(UsageError(format!("device {other:?} is not compiled in")).into()),
    }
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

/// Shuffled block order of one epoch: a Fisher-Yates permutation seeded by (seed, epoch).
fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = SplitMix::new(seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
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

struct Evals<'a> {
    valid: &'a TokenBlocks,
    test: &'a TokenBlocks,
    valid_fixed: Option<&'a TokenBlocks>,
}

fn run_on<AB: FusedAutodiff>(
    cfg: &TrialConfig,
    ctx: &RunContext,
    sink: &mut dyn MetricSink,
    device: AB::Device,
) -> Result<TrialEnd> {
    let wall = Instant::now();
    validate(cfg)?;
    let prepared = data::prepare_cached(&cfg.data, &ctx.cache_root)?;
    let tok = Tokenizer::for_spec(&cfg.tokenizer, &prepared, &ctx.cache_root)?;
    let plan = if pretrain::wants_local_pretraining(cfg) {
        // Fine-tune the cached local pretraining of the small preset, as if it were an HF dir.
        let Some(dir) = pretrain::ensure_pretrained(cfg, ctx, &prepared.hash, tok.id())? else {
            return Ok(TrialEnd::Interrupted);
        };
        let local = TrialConfig {
            model: dir.display().to_string(),
            init: None,
            n_layer: None,
            n_embd: None,
            n_head: None,
            ..cfg.clone()
        };
        model_plan(&local, tok.vocab_size())?
    } else {
        model_plan(cfg, tok.vocab_size())?
    };
    let gcfg = plan.cfg.clone();
    let blocks = |split, size| data::token_blocks(&prepared, split, &tok, size, &ctx.cache_root);
    let train = blocks(Split::Train, cfg.block_size)?;
    let valid = blocks(Split::Valid, cfg.block_size)?;
    let test = blocks(Split::Test, cfg.block_size)?;
    let valid_fixed = match cfg.eval_block_size {
        Some(n) => Some(blocks(Split::Valid, n)?),
        None => None,
    };
    let (n_train, spe, total_steps) = schedule_sizes(cfg, train.num_blocks())?;

    let ckpt_dir = ctx.work_dir.join("checkpoint");
    let mut opt = AdamW::<AB::InnerBackend>::new(AdamWConfig::new(cfg.weight_decay));
    let (mut model, mut st) =
        match checkpoint::load_training::<AB, TrainState>(&ckpt_dir, cfg.dropout, &device)? {
            Some((model, ck)) => {
                if ck.state.config != *cfg {
                    return Err(UsageError(format!(
                        "{} holds a checkpoint of a different configuration; remove it or use \
                         another work directory",
                        ckpt_dir.display()
                    ))
                    .into());
                }
                opt.load_named(
                    ck.optimizer,
                    ck.state.step - ck.state.skipped_steps,
                    &device,
                )
                .with_context(|| format!("restoring optimizer from {}", ckpt_dir.display()))?;
                (model, ck.state)
            }
            None => {
                let model = match &plan.pretrained {
                    Some(dir) => {
                        checkpoint::import_hf::<AB>(
                            dir,
                            Some(gcfg.vocab_size),
                            Some(cfg.dropout),
                            &device,
                        )?
                        .0
                    }
                    None => gcfg.init::<AB>(&device, cfg.seed),
                };
                let st = TrainState {
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
                };
                (model, st)
            }
        };
    model = model.with_precision(cfg.precision.unwrap_or_default());

    let per_step_tokens = (cfg.batch_size * cfg.grad_accum * cfg.block_size) as u64;
    let log_every = (total_steps / 100).max(1);
    let bar = progress_bar(ctx.progress, total_steps, st.step);
    let mut last_ckpt = Instant::now();
    let mut last_beat = Instant::now();
    let mut last_plain = Instant::now();
    let evals = Evals {
        valid: &valid,
        test: &test,
        valid_fixed: valid_fixed.as_ref(),
    };
    let epoch_of = |st: &TrainState| st.epoch as f64 + st.step_in_epoch as f64 / spe as f64;
    let throughput = |st: &TrainState| st.tokens_seen as f64 / st.train_seconds.max(1e-9);

    'epochs: while st.epoch < cfg.epochs && st.step < total_steps {
        let order = epoch_order(n_train, cfg.seed, st.epoch);
        while st.step_in_epoch < spe {
            if st.step >= total_steps {
                break 'epochs;
            }
            if ctx.cancel.load(Ordering::SeqCst) {
                // Before the first optimizer step there is nothing to keep (and no optimizer
                // state to write): a rerun starts over exactly as this run did.
                if st.step > 0 {
                    sink.flush()?;
                    save(&ckpt_dir, &model, &gcfg, &opt, &st)?;
                }
                bar.finish_and_clear();
                return Ok(TrialEnd::Interrupted);
            }
            let t0 = Instant::now();
            // Dropout draws from the backend RNG: reseeding per step makes a resumed run draw
            // exactly what an uninterrupted one would. The RNG is process-global, which is one
            // reason each trial runs in a process of its own.
            AB::seed(
                &device,
                cfg.seed ^ st.step.wrapping_mul(crate::model::GOLDEN),
            );
            let updates = st.step - st.skipped_steps;
            let lr = linear_lr(cfg.learning_rate, updates, cfg.warmup_steps, total_steps);
            let loss_scale = st.loss_scaler.map(|s| s.scale);
            let mut acc = GradientsAccumulator::<Gpt<AB>>::new();
            let base = st.step_in_epoch as usize * cfg.batch_size * cfg.grad_accum;
            let mut losses = Vec::with_capacity(cfg.grad_accum);
            for a in 0..cfg.grad_accum {
                let start = base + a * cfg.batch_size;
                let idx = &order[start..start + cfg.batch_size];
                let ids = eval::batch_tensor::<AB>(&train, idx, &device);
                let loss = model.loss(ids);
                losses.push(loss.clone().inner());
                // Averaging over micro-batches: each contributes loss / grad_accum.
                let loss = match loss_scale {
                    Some(scale) => loss * (scale / cfg.grad_accum as f64),
                    None => loss / cfg.grad_accum as f64,
                };
                let grads = loss.backward();
                acc.accumulate(&model, GradientsParams::from_grads(grads, &model));
            }
            model = match (loss_scale, st.loss_scaler.as_mut()) {
                (Some(scale), Some(scaler)) => {
                    let (m, _, applied) = opt.step_scaled(model, acc.grads(), lr, scale);
                    scaler.update(applied);
                    st.skipped_steps += u64::from(!applied);
                    m
                }
                _ => opt.step(model, acc.grads(), lr).0,
            };
            // The losses are read only now, once the whole step is queued: on a GPU a read
            // mid-step would stall the queue. A diverged step's update is thrown away with the
            // trial, so checking after it changes nothing but the wait.
            let mut step_loss = 0.0;
            for loss in losses {
                let value = loss.into_scalar().elem::<f64>();
                if !value.is_finite() {
                    bar.finish_and_clear();
                    let _ = std::fs::remove_dir_all(&ckpt_dir);
                    return Ok(TrialEnd::Diverged { step: st.step + 1 });
                }
                step_loss += value / cfg.grad_accum as f64;
            }
            AB::sync(&device).ok();
            st.train_seconds += t0.elapsed().as_secs_f64();
            st.step += 1;
            st.step_in_epoch += 1;
            st.tokens_seen += per_step_tokens;
            st.window_loss += step_loss;
            st.window_batches += 1;
            bar.set_position(st.step);
            bar.set_message(format!("loss {step_loss:.4}  {:.0} tok/s", throughput(&st)));
            // Without a terminal, progress is a plain line every 30 s.
            if ctx.progress
                && bar.is_hidden()
                && (last_plain.elapsed().as_secs() >= 30 || st.step == total_steps)
            {
                eprintln!(
                    "step {}/{}  loss {step_loss:.4}  {:.0} tok/s",
                    st.step,
                    total_steps,
                    throughput(&st)
                );
                last_plain = Instant::now();
            }
            let last = st.step >= total_steps;
            if st.step % log_every == 0 && !last {
                let loss = st.window_loss / st.window_batches as f64;
                sink.record(&MetricRow {
                    step: st.step,
                    epoch: epoch_of(&st),
                    split: "train".into(),
                    loss,
                    ppl: loss.exp(),
                    tokens_seen: st.tokens_seen,
                    lr,
                    tokens_per_s: throughput(&st),
                })?;
                st.window_loss = 0.0;
                st.window_batches = 0;
            }
            let epoch_end = st.step_in_epoch == spe;
            let due = cfg.eval_every.is_some_and(|e| st.step % e == 0);
            if (due || epoch_end) && !last && st.last_valid_step != Some(st.step) {
                let t_eval = Instant::now();
                let r = eval_split(&model, evals.valid, cfg, &device)?;
                st.eval_seconds += t_eval.elapsed().as_secs_f64();
                st.last_valid_step = Some(st.step);
                sink.record(&row(
                    &st,
                    epoch_of(&st),
                    "valid",
                    r.loss,
                    lr,
                    throughput(&st),
                ))?;
            }
            if epoch_end {
                st.epoch += 1;
                st.step_in_epoch = 0;
            }
            let minutes = last_ckpt.elapsed().as_secs_f64() / 60.0;
            if !last
                && (epoch_end
                    || (ctx.checkpoint_minutes > 0.0 && minutes >= ctx.checkpoint_minutes))
            {
                // Rows first: a checkpoint that got ahead of the ledger would resume past rows
                // the kill lost (an epoch end's valid row, found by tests/cluster.rs).
                sink.flush()?;
                save(&ckpt_dir, &model, &gcfg, &opt, &st)?;
                last_ckpt = Instant::now();
            }
            if last_beat.elapsed().as_secs_f64() >= 10.0 {
                sink.heartbeat()?;
                last_beat = Instant::now();
            }
            if epoch_end {
                continue 'epochs;
            }
        }
    }
    bar.finish_and_clear();

    // Final full evaluations in eval mode; the train row at the last step is this one.
    let lr = 0.0;
    let epoch = epoch_of(&st);
    let tps = throughput(&st);
    let t_eval = Instant::now();
    let train_r = eval_split(&model, &train, cfg, &device)?;
    let valid_r = eval_split(&model, evals.valid, cfg, &device)?;
    let test_r = eval_split(&model, evals.test, cfg, &device)?;
    let fixed = match evals.valid_fixed {
        Some(b) => Some(eval_split(&model, b, cfg, &device)?),
        None => None,
    };
    st.eval_seconds += t_eval.elapsed().as_secs_f64();
    for (split, r) in [("train", train_r), ("valid", valid_r), ("test", test_r)] {
        sink.record(&row(&st, epoch, split, r.loss, lr, tps))?;
    }
    if let (Some(r), Some(n)) = (fixed, cfg.eval_block_size) {
        sink.record(&row(&st, epoch, &format!("valid@{n}"), r.loss, lr, tps))?;
    }
    let inner = model.valid();
    checkpoint::export_hf(
        &inner,
        &gcfg,
        Some(tok.eot_id()),
        &ctx.work_dir.join("model"),
        |dir| tok.save_hf(dir),
    )?;
    let _ = std::fs::remove_dir_all(&ckpt_dir);
    Ok(TrialEnd::Completed(FinalMetrics {
        train_loss: train_r.loss,
        valid_loss: valid_r.loss,
        test_loss: test_r.loss,
        train_ppl: train_r.ppl,
        valid_ppl: valid_r.ppl,
        test_ppl: test_r.ppl,
        valid_loss_fixed: fixed.map(|r| r.loss),
        tokens_per_s: tps,
        peak_rss_bytes: peak_rss_bytes(),
        wall_seconds: wall.elapsed().as_secs_f64(),
        train_seconds: st.train_seconds,
        eval_seconds: st.eval_seconds,
    }))
}

fn row(st: &TrainState, epoch: f64, split: &str, loss: f64, lr: f64, tps: f64) -> MetricRow {
    MetricRow {
        step: st.step,
        epoch,
        split: split.to_string(),
        loss,
        ppl: loss.exp(),
        tokens_seen: st.tokens_seen,
        lr,
        tokens_per_s: tps,
    }
}

/// Eval-mode loss on a split's leading blocks, within the trial's `eval_tokens` cap.
fn eval_split<AB: FusedAutodiff>(
    model: &Gpt<AB>,
    blocks: &dyn Blocks,
    cfg: &TrialConfig,
    device: &AB::Device,
) -> Result<eval::EvalResult> {
    let n = capped_blocks(blocks.len(), blocks.block_size(), cfg.eval_tokens);
    evaluate(&model.valid(), blocks, n, cfg.batch_size, device)
}

fn save<AB: AutodiffBackend>(
    dir: &Path,
    model: &Gpt<AB>,
    gcfg: &GptConfig,
    opt: &AdamW<AB::InnerBackend>,
    st: &TrainState,
) -> Result<()> {
    checkpoint::save_training(dir, model, gcfg, &opt.to_named(), st)
        .with_context(|| format!("writing training checkpoint {}", dir.display()))
}

fn progress_bar(enabled: bool, total: u64, pos: u64) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] step {pos}/{len}  {msg}  ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_position(pos);
    bar
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

    #[test]
    fn epoch_orders_are_seeded_permutations() {
        let a = epoch_order(100, 42, 0);
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(100, 42, 0));
        assert_ne!(a, epoch_order(100, 42, 1));
        assert_ne!(a, epoch_order(100, 43, 0));
    }

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
