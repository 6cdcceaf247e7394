//! What training costs before it runs: a trial's model shape and FLOPs per token, a device's
//! measured training rate, and the timed training steps that `sweep bench-train` and that
//! measurement share.

use std::time::Instant;

use anyhow::Result;
use burn::optim::GradientsParams;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};

use super::optim::{AdamW, AdamWConfig};
use crate::backend::DeviceSpec;
use crate::checkpoint;
use crate::error::UsageError;
use crate::fused::FusedAutodiff;
use crate::model::{GptConfig, GPT2_VOCAB};
use crate::trial::{Precision, TokenizerSpec, TrialConfig};

/// The shape a trial trains, read without loading weights or the data.
pub fn model_shape(cfg: &TrialConfig) -> Result<GptConfig> {
    let mut shape = match (cfg.model.preset(), cfg.model.hub()) {
        (Some(p), _) => GptConfig::of(p).with_overrides(cfg.n_layer, cfg.n_embd, cfg.n_head)?,
        // Resolving a Hub model downloads its config.json, not its weights.
        (None, Some(h)) => checkpoint::read_hf_config(&checkpoint::hub::resolve(&h)?.dir)?,
        (None, None) => checkpoint::read_hf_config(&checkpoint::model_dir(&cfg.model)?)?,
    };
    shape.vocab_size = match cfg.tokenizer {
        TokenizerSpec::Gpt2 => GPT2_VOCAB,
        TokenizerSpec::Bpe(n) => n,
    };
    Ok(shape)
}

/// Training FLOPs per token of a trial (forward and backward, at its block size).
pub fn trial_flops_per_token(cfg: &TrialConfig) -> Result<f64> {
    Ok(model_shape(cfg)?.train_flops_per_token(cfg.block_size) as f64)
}

/// Step times of `steps` training steps (after `warmup`) of a randomly initialised model on
/// random tokens: forward, loss, backward and an AdamW step, one wait at the end of each step as
/// the trainer does. `on_step(i, loss, seconds, [forward, backward, optimizer, queued])` sees
/// every step; the phase times need `phases` (waits after the forward and backward passes too).
#[allow(clippy::too_many_arguments)]
pub fn timed_steps<AB: FusedAutodiff>(
    cfg: &GptConfig,
    precision: Precision,
    batch: usize,
    block: usize,
    warmup: usize,
    steps: usize,
    phases: bool,
    device: &AB::Device,
    mut on_step: impl FnMut(usize, f64, f64, [f64; 4]),
) -> Result<Vec<(f64, [f64; 4])>> {
    if block > cfg.n_positions {
        return Err(UsageError(format!(
            "block size {block} exceeds the model's context of {}",
            cfg.n_positions
        ))
        .into());
    }
    let mut model = cfg.init::<AB>(device, 0).with_precision(precision);
    let mut opt = AdamW::<AB::InnerBackend>::new(AdamWConfig::new(0.01));
    let mut rng = crate::util::SplitMix::new(1);
    let mut out = Vec::new();
    for i in 0..warmup + steps {
        let ids: Vec<i32> = (0..batch * block)
            .map(|_| (rng.next_u64() % cfg.vocab_size as u64) as i32)
            .collect();
        let ids = Tensor::<AB, 2, Int>::from_data(TensorData::new(ids, [batch, block]), device);
        AB::sync(device).ok();
        let t0 = Instant::now();
        let loss = model.loss(ids);
        if phases {
            AB::sync(device).ok();
        }
        let t1 = Instant::now();
        let grads = GradientsParams::from_grads(loss.clone().backward(), &model);
        if phases {
            AB::sync(device).ok();
        }
        let t2 = Instant::now();
        model = opt.step(model, grads, 1e-4).0;
        let queued = t0.elapsed();
        let value = loss.into_scalar().elem::<f64>();
        AB::sync(device).ok();
        let t3 = Instant::now();
        let dt = (t3 - t0).as_secs_f64();
        let phase = [t1 - t0, t2 - t1, t3 - t2, queued].map(|d| d.as_secs_f64());
        on_step(i, value, dt, phase);
        if i >= warmup {
            out.push((dt, phase));
        }
    }
    Ok(out)
}

/// The training rate of `device` in FLOP/s, measured on a mid-sized shape (4 layers x 256,
/// vocabulary 8,192, 8 x 128 tokens per step; about 2 s on 2 CPU cores). Large models reach
/// a higher rate than this on most devices, so estimates made with it err long.
pub fn measure_flops(device: &str) -> Result<f64> {
    crate::on_backend!(DeviceSpec::parse(device)?, train, |B, dev| measure_on::<B>(
        dev
    ))
}

fn measure_on<AB: FusedAutodiff>(device: AB::Device) -> Result<f64> {
    let cfg = GptConfig {
        vocab_size: 8192,
        ..GptConfig::of(crate::trial::Preset::Gpt2Mini)
    };
    let (batch, block) = (8, 128);
    let steps = timed_steps::<AB>(
        &cfg,
        Precision::F32,
        batch,
        block,
        1,
        2,
        false,
        &device,
        |_, _, _, _| {},
    )?;
    let mut times: Vec<f64> = steps.iter().map(|s| s.0).collect();
    times.sort_by(f64::total_cmp);
    let flops = cfg.train_flops_per_token(block) as f64 * (batch * block) as f64;
    Ok(flops / times[0])
}
