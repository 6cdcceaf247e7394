//! The training loop as named steps: a [`Trainer`] takes optimizer steps until the schedule ends,
//! logging, evaluating and checkpointing between them as each falls due, then evaluates and
//! exports the model.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{ElementConversion, Tensor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::eval::{self, capped_blocks, evaluate, Blocks, EvalResult};
use super::optim::{linear_lr, AdamW, StepInfo};
use super::state::{self, TrainState};
use super::{FinalMetrics, MetricRow, MetricSink, RunContext, TrialEnd};
use crate::checkpoint::{self, CheckpointId, Resumption};
use crate::data::{self, Prepared, Split, TokenBlocks};
use crate::fused::FusedAutodiff;
use crate::model::{Gpt, GptConfig};
use crate::tokenizer::Tokenizer;
use crate::trial::TrialConfig;
use crate::util::SplitMix;

type Loss<AB> = Tensor<<AB as burn::tensor::backend::AutodiffBackend>::InnerBackend, 1>;

/// Trains (or resumes) one trial on `device`, then evaluates and exports it.
pub(super) fn run_on<AB: FusedAutodiff>(
    cfg: &TrialConfig,
    ctx: &RunContext,
    sink: &mut dyn MetricSink,
    device: AB::Device,
) -> Result<TrialEnd> {
    let wall = Instant::now();
    cfg.validate()?;
    let prepared = data::prepare_cached(&cfg.data, &ctx.cache_root)?;
    let tok = prepared.tokenizer(cfg.tokenizer, &ctx.cache_root)?;
    let Some(plan) = super::plan_model(cfg, ctx, &prepared, &tok)? else {
        return Ok(TrialEnd::Interrupted);
    };
    let splits = Splits::load(cfg, ctx, &prepared, &tok)?;
    let schedule = Schedule::new(cfg, splits.train.num_blocks())?;
    let start = state::resume_or_start::<AB>(&ctx.work_dir, cfg, &device, || {
        Ok(match &plan.pretrained {
            Some(dir) => {
                let vocab = Some(plan.cfg.vocab_size);
                checkpoint::import_hf::<AB>(dir, vocab, Some(cfg.dropout), &device)?.0
            }
            None => plan.cfg.init::<AB>(&device, cfg.seed),
        })
    })?;
    report_resumption(&start.resumption, sink)?;
    let model = start
        .model
        .with_precision(cfg.precision.unwrap_or_default());
    let mut trainer = Trainer {
        bar: progress_bar(ctx.progress, schedule.total_steps, start.state.step),
        cfg,
        ctx,
        sink,
        device,
        gcfg: plan.cfg,
        splits: &splits,
        schedule,
        last_good: start.resumption.checkpoint,
        opt: start.opt,
        st: start.state,
        order: EpochOrder::default(),
        last_ckpt: Instant::now(),
        last_beat: Instant::now(),
        last_plain: Instant::now(),
        last_step: None,
    };
    match trainer.train(model)? {
        Outcome::Trained(model) => trainer.finish(*model, &tok, wall),
        Outcome::Ended(end) => Ok(end),
    }
}

/// A trial's token blocks: the training split and the splits it is evaluated on.
struct Splits {
    train: TokenBlocks,
    valid: TokenBlocks,
    test: TokenBlocks,
    /// Validation at `eval_block_size` tokens of context.
    valid_fixed: Option<TokenBlocks>,
}

impl Splits {
    fn load(
        cfg: &TrialConfig,
        ctx: &RunContext,
        prepared: &Prepared,
        tok: &Tokenizer,
    ) -> Result<Self> {
        let blocks = |split, size| data::token_blocks(prepared, split, tok, size, &ctx.cache_root);
        Ok(Self {
            train: blocks(Split::Train, cfg.block_size)?,
            valid: blocks(Split::Valid, cfg.block_size)?,
            test: blocks(Split::Test, cfg.block_size)?,
            valid_fixed: cfg
                .eval_block_size
                .map(|n| blocks(Split::Valid, n))
                .transpose()?,
        })
    }
}

/// The step budget, fixed for the whole trial.
struct Schedule {
    /// Training blocks used per epoch (the leading ones of its shuffled order).
    blocks: usize,
    /// Index of the first of them in the split (`skip_train_tokens`).
    first_block: usize,
    steps_per_epoch: u64,
    total_steps: u64,
    tokens_per_step: u64,
    /// A train row every this many steps (about 100 per trial).
    log_every: u64,
}

impl Schedule {
    fn new(cfg: &TrialConfig, available_blocks: usize) -> Result<Self> {
        let (blocks, steps_per_epoch, total_steps) = super::schedule_sizes(cfg, available_blocks)?;
        Ok(Self {
            blocks,
            first_block: cfg.skipped_blocks(available_blocks),
            steps_per_epoch,
            total_steps,
            tokens_per_step: cfg.tokens_per_step(),
            log_every: (total_steps / 100).max(1),
        })
    }
}

/// The current epoch's block order, drawn when an epoch starts.
#[derive(Default)]
struct EpochOrder {
    epoch: Option<usize>,
    blocks: Vec<usize>,
}

/// How the training loop ended: with the schedule done, or early (cancel, divergence).
enum Outcome<AB: FusedAutodiff> {
    Trained(Box<Gpt<AB>>),
    Ended(TrialEnd),
}

/// The loop's state between optimizer steps. The weights are not part of it: each step takes
/// them and hands back the updated ones, as the optimizer does.
struct Trainer<'a, AB: FusedAutodiff> {
    cfg: &'a TrialConfig,
    ctx: &'a RunContext,
    sink: &'a mut dyn MetricSink,
    device: AB::Device,
    gcfg: GptConfig,
    splits: &'a Splits,
    schedule: Schedule,
    /// The newest good checkpoint: the one resumed from, then each one saved.
    last_good: Option<CheckpointId>,
    opt: AdamW<AB::InnerBackend>,
    st: TrainState,
    order: EpochOrder,
    bar: ProgressBar,
    last_ckpt: Instant,
    last_beat: Instant,
    last_plain: Instant,
    /// The last step's gradient norm, still on the device: read only when a train row is logged.
    last_step: Option<StepInfo<AB::InnerBackend>>,
}

impl<AB: FusedAutodiff> Trainer<'_, AB> {
    /// Takes optimizer steps until the schedule is done, a cancel or a divergence.
    fn train(&mut self, mut model: Gpt<AB>) -> Result<Outcome<AB>> {
        self.sink.start_at(self.st.step)?;
        while !self.should_stop() {
            if self.ctx.cancel.load(Ordering::SeqCst) {
                self.interrupt(&model)?;
                return Ok(Outcome::Ended(TrialEnd::Interrupted));
            }
            self.start_epoch();
            let t0 = Instant::now();
            let (updated, losses, lr) = self.optimizer_step(model);
            model = updated;
            let Some(step_loss) = self.read_losses(losses) else {
                return Ok(Outcome::Ended(self.diverged()));
            };
            AB::sync(&self.device).ok();
            self.advance(t0, step_loss);
            self.between_steps(&model, step_loss, lr)?;
        }
        self.bar.finish_and_clear();
        Ok(Outcome::Trained(Box::new(model)))
    }

    fn should_stop(&self) -> bool {
        self.st.epoch >= self.cfg.epochs || self.st.step >= self.schedule.total_steps
    }

    /// Draws the block order of the epoch the state is in, once per epoch.
    fn start_epoch(&mut self) {
        if self.order.epoch != Some(self.st.epoch) {
            self.order = EpochOrder {
                epoch: Some(self.st.epoch),
                blocks: epoch_order(self.schedule.blocks, self.cfg.seed, self.st.epoch)
                    .into_iter()
                    .map(|b| b + self.schedule.first_block)
                    .collect(),
            };
        }
    }

    /// Runs the step's micro-batches and applies the update. Returns the updated model, the
    /// micro-batches' losses (still on the device) and the step's learning rate.
    fn optimizer_step(&mut self, model: Gpt<AB>) -> (Gpt<AB>, Vec<Loss<AB>>, f64) {
        let cfg = self.cfg;
        // Dropout draws from the backend RNG: reseeding per step makes a resumed run draw
        // exactly what an uninterrupted one would. The RNG is process-global, which is one
        // reason each trial runs in a process of its own.
        AB::seed(
            &self.device,
            cfg.seed ^ self.st.step.wrapping_mul(crate::util::GOLDEN),
        );
        let total = self.schedule.total_steps;
        let lr = linear_lr(
            cfg.learning_rate,
            self.st.updates(),
            cfg.warmup_steps,
            total,
        );
        let loss_scale = self.st.loss_scaler.map(|s| s.scale);
        let (grads, losses) = self.micro_batches(&model, loss_scale);
        let model = match (loss_scale, self.st.loss_scaler.as_mut()) {
            (Some(scale), Some(scaler)) => {
                let (m, info, applied) = self.opt.step_scaled(model, grads, lr, scale);
                scaler.update(applied);
                self.st.skipped_steps += u64::from(!applied);
                self.last_step = Some(info);
                m
            }
            _ => {
                let (m, info) = self.opt.step(model, grads, lr);
                self.last_step = Some(info);
                m
            }
        };
        (model, losses, lr)
    }

    /// Forward and backward over the step's `grad_accum` micro-batches, gradients summed.
    fn micro_batches(
        &self,
        model: &Gpt<AB>,
        loss_scale: Option<f64>,
    ) -> (GradientsParams, Vec<Loss<AB>>) {
        let cfg = self.cfg;
        let mut acc = GradientsAccumulator::<Gpt<AB>>::new();
        let base = self.st.step_in_epoch as usize * cfg.batch_size * cfg.grad_accum;
        let mut losses = Vec::with_capacity(cfg.grad_accum);
        for a in 0..cfg.grad_accum {
            let start = base + a * cfg.batch_size;
            let idx = &self.order.blocks[start..start + cfg.batch_size];
            let ids = eval::batch_tensor::<AB>(&self.splits.train, idx, &self.device);
            let loss = model.loss(ids);
            losses.push(loss.clone().inner());
            // Averaging over micro-batches: each contributes loss / grad_accum.
            let loss = match loss_scale {
                Some(scale) => loss * (scale / cfg.grad_accum as f64),
                None => loss / cfg.grad_accum as f64,
            };
            let grads = loss.backward();
            acc.accumulate(model, GradientsParams::from_grads(grads, model));
        }
        (acc.grads(), losses)
    }

    /// The step's mean loss; `None` when one is not finite. The losses are read only now, once
    /// the whole step is queued: on a GPU a read mid-step would stall the queue. A diverged
    /// step's update is thrown away with the trial, so checking after it changes nothing but
    /// the wait.
    fn read_losses(&self, losses: Vec<Loss<AB>>) -> Option<f64> {
        let mut step_loss = 0.0;
        for loss in losses {
            let value = loss.into_scalar().elem::<f64>();
            if !value.is_finite() {
                return None;
            }
            step_loss += value / self.cfg.grad_accum as f64;
        }
        Some(step_loss)
    }

    fn diverged(&self) -> TrialEnd {
        self.bar.finish_and_clear();
        state::remove_all(&self.ctx.work_dir);
        TrialEnd::Diverged {
            step: self.st.step + 1,
        }
    }

    /// Counts the step just taken.
    fn advance(&mut self, t0: Instant, step_loss: f64) {
        let st = &mut self.st;
        st.train_seconds += t0.elapsed().as_secs_f64();
        st.step += 1;
        st.step_in_epoch += 1;
        st.tokens_seen += self.schedule.tokens_per_step;
        st.window_loss += step_loss;
        st.window_batches += 1;
    }

    /// Whatever falls due after a step, in this order: progress, the train row, a validation,
    /// the epoch's end, a checkpoint, a heartbeat.
    fn between_steps(&mut self, model: &Gpt<AB>, step_loss: f64, lr: f64) -> Result<()> {
        let last = self.st.step >= self.schedule.total_steps;
        let epoch_end = self.st.step_in_epoch == self.schedule.steps_per_epoch;
        self.show_progress(step_loss);
        if self.st.step.is_multiple_of(self.schedule.log_every) && !last {
            self.log_train(lr)?;
        }
        let due = self
            .cfg
            .eval_every
            .is_some_and(|e| self.st.step.is_multiple_of(e));
        if (due || epoch_end) && !last && self.st.last_valid_step != Some(self.st.step) {
            self.evaluate(model, lr)?;
        }
        if epoch_end {
            self.st.epoch += 1;
            self.st.step_in_epoch = 0;
        }
        let minutes = self.last_ckpt.elapsed().as_secs_f64() / 60.0;
        let every = self.ctx.checkpoint_minutes;
        if !last && (epoch_end || (every > 0.0 && minutes >= every)) {
            self.checkpoint(model)?;
        }
        if self.last_beat.elapsed().as_secs_f64() >= 10.0 {
            self.sink.heartbeat()?;
            self.last_beat = Instant::now();
        }
        Ok(())
    }

    fn show_progress(&mut self, step_loss: f64) {
        let (step, total) = (self.st.step, self.schedule.total_steps);
        let tps = self.st.throughput();
        self.bar.set_position(step);
        self.bar
            .set_message(format!("loss {step_loss:.4}  {tps:.0} tok/s"));
        // Without a terminal, progress is a plain line every 30 s.
        if self.ctx.progress
            && self.bar.is_hidden()
            && (self.last_plain.elapsed().as_secs() >= 30 || step == total)
        {
            eprintln!("step {step}/{total}  loss {step_loss:.4}  {tps:.0} tok/s");
            self.last_plain = Instant::now();
        }
    }

    /// Logs the running train loss since the last train row.
    fn log_train(&mut self, lr: f64) -> Result<()> {
        let loss = self.st.window_loss / self.st.window_batches as f64;
        // One read from the device per logged row (HF Trainer logs the last step's norm too).
        let norm = self.last_step.take().map(|i| i.grad_norm());
        self.record("train", loss, lr, norm)?;
        self.st.window_loss = 0.0;
        self.st.window_batches = 0;
        Ok(())
    }

    /// The periodic (and epoch-end) validation.
    fn evaluate(&mut self, model: &Gpt<AB>, lr: f64) -> Result<()> {
        let t_eval = Instant::now();
        let r = eval_split(model, &self.splits.valid, self.cfg, &self.device)?;
        self.st.eval_seconds += t_eval.elapsed().as_secs_f64();
        self.st.last_valid_step = Some(self.st.step);
        self.record("valid", r.loss, lr, None)
    }

    /// Saves a training checkpoint. Rows first: a checkpoint that got ahead of the ledger
    /// would resume past rows the kill lost (an epoch end's valid row, found by
    /// tests/cluster.rs).
    fn checkpoint(&mut self, model: &Gpt<AB>) -> Result<()> {
        self.sink.flush()?;
        let keep = self.last_good.as_ref();
        let id = state::save(
            &self.ctx.work_dir,
            model,
            &self.gcfg,
            &self.opt,
            &self.st,
            keep,
        )?;
        self.last_good = Some(id);
        self.last_ckpt = Instant::now();
        Ok(())
    }

    /// Stops on a cancel. Before the first optimizer step there is nothing to keep (and no
    /// optimizer state to write): a rerun starts over exactly as this run did. A checkpoint of
    /// this very step (an epoch's end, or the one resumed from) is not written again.
    fn interrupt(&mut self, model: &Gpt<AB>) -> Result<()> {
        let saved = self.last_good.as_ref().map(|c| c.step);
        if self.st.step > 0 && saved != Some(self.st.step) {
            self.checkpoint(model)?;
        }
        self.bar.finish_and_clear();
        Ok(())
    }

    fn record(&mut self, split: &str, loss: f64, lr: f64, grad_norm: Option<f64>) -> Result<()> {
        let st = &self.st;
        self.sink.record(&MetricRow {
            step: st.step,
            epoch: st.epoch as f64 + st.step_in_epoch as f64 / self.schedule.steps_per_epoch as f64,
            split: split.to_string(),
            loss,
            ppl: loss.exp(),
            tokens_seen: st.tokens_seen,
            lr,
            tokens_per_s: st.throughput(),
            grad_norm,
        })
    }

    /// Final full evaluations in eval mode (the train row at the last step is one of them),
    /// then the exported model; the training checkpoint is no longer needed.
    fn finish(mut self, model: Gpt<AB>, tok: &Tokenizer, wall: Instant) -> Result<TrialEnd> {
        let t_eval = Instant::now();
        let eval = |blocks: &dyn Blocks| eval_split(&model, blocks, self.cfg, &self.device);
        let train = eval(&Offset {
            blocks: &self.splits.train,
            first: self.schedule.first_block,
        })?;
        let valid = eval(&self.splits.valid)?;
        let test = eval(&self.splits.test)?;
        let fixed = self
            .splits
            .valid_fixed
            .as_ref()
            .map(|b| eval(b))
            .transpose()?;
        self.st.eval_seconds += t_eval.elapsed().as_secs_f64();
        for (split, r) in [("train", train), ("valid", valid), ("test", test)] {
            self.record(split, r.loss, 0.0, None)?;
        }
        if let (Some(r), Some(n)) = (fixed, self.cfg.eval_block_size) {
            self.record(&format!("valid@{n}"), r.loss, 0.0, None)?;
        }
        let model_dir = self.ctx.work_dir.join("model");
        let eot = Some(tok.eot_id());
        checkpoint::export_hf(&model.valid(), &self.gcfg, eot, &model_dir, |dir| {
            tok.save_hf(dir)
        })?;
        state::remove_all(&self.ctx.work_dir);
        Ok(TrialEnd::Completed(FinalMetrics {
            train_loss: train.loss,
            valid_loss: valid.loss,
            test_loss: test.loss,
            train_ppl: train.ppl,
            valid_ppl: valid.ppl,
            test_ppl: test.ppl,
            valid_loss_fixed: fixed.map(|r| r.loss),
            tokens_per_s: self.st.throughput(),
            peak_rss_bytes: super::peak_rss_bytes(),
            wall_seconds: wall.elapsed().as_secs_f64(),
            train_seconds: self.st.train_seconds,
            eval_seconds: self.st.eval_seconds,
        }))
    }
}

/// Says in the log where training starts and what was wrong with any checkpoint passed over,
/// and tells the sink (the trial's environment records it).
fn report_resumption(r: &Resumption, sink: &mut dyn MetricSink) -> Result<()> {
    if !r.is_notable() {
        return Ok(());
    }
    for bad in &r.rejected {
        eprintln!("checkpoint {bad}; not used");
    }
    match &r.checkpoint {
        Some(c) => eprintln!("resuming from checkpoint {c}"),
        None => eprintln!("no usable checkpoint: the trial starts from the beginning"),
    }
    sink.resumed(r)
}

/// The blocks of a split from `first` on: the training blocks a trial with `skip_train_tokens`
/// trains on, so that its train loss is measured on them.
struct Offset<'a> {
    blocks: &'a TokenBlocks,
    first: usize,
}

impl Blocks for Offset<'_> {
    fn len(&self) -> usize {
        self.blocks.num_blocks().saturating_sub(self.first)
    }
    fn block_size(&self) -> usize {
        self.blocks.block_size()
    }
    fn block(&self, i: usize) -> Vec<u32> {
        Blocks::block(self.blocks, self.first + i)
    }
}

/// Eval-mode loss on a split's leading blocks, within the trial's `eval_tokens` cap.
fn eval_split<AB: FusedAutodiff>(
    model: &Gpt<AB>,
    blocks: &dyn Blocks,
    cfg: &TrialConfig,
    device: &AB::Device,
) -> Result<EvalResult> {
    let n = capped_blocks(blocks.len(), blocks.block_size(), cfg.eval_tokens);
    evaluate(&model.valid(), blocks, n, cfg.batch_size, device)
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
}
