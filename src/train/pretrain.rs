//! Local pretraining for the small from-scratch presets (`init = "pretrained"` on `gpt2-tiny` or
//! `gpt2-mini`): the quick scale's stand-in for GPT-2's pretraining, trained once per preset,
//! tokenizer and data, and cached beside the token blocks.
//!
//! The paper fine-tunes models that already use long context; a from-scratch quick trial does not,
//! which reverses Table 4 (bench/RESULTS.md). Fine-tuning a checkpoint pretrained at the preset's
//! full context restores the paper's direction. It is pretrained on the training split after the
//! prefix that quick trials fine-tune on ([`PRETRAIN_SKIP_TOKENS`]): the same domain, but text the
//! fine-tuning has not seen, as the paper's arXiv abstracts are new to distilgpt2. Only
//! directions compare with the paper.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{run_trial, MetricRow, MetricSink, RunContext, TrialEnd};
use crate::model::GptConfig;
use crate::trial::{Init, Start, TrialConfig};

/// Tokens of the pretraining run (one pass over the training split after [`PRETRAIN_SKIP_TOKENS`]).
/// It runs inside the README's first command, so its size is part of that command's budget: 1.5M
/// tokens took 215 s of its 9 minutes on 2 AVX2 cores, 750k take 97 s, and every quick table keeps
/// the directions it had (bench/RESULTS.md "Trimmed quick caps").
pub const PRETRAIN_TOKENS: u64 = 750_000;

/// Tokens at the start of the training split the pretraining leaves out: the prefix that quick
/// trials fine-tune on (`max_train_tokens` up to this many), so that fine-tuning, as in the paper,
/// trains on text the model has not seen. With pretraining on the whole prefix, every fine-tuning
/// of the quick baseline ended worse than its start (valid PPL 55.7 -> 59.9 at lr 1e-4, 65.2 at
/// 3e-4, 76.1 at 1e-3; bench/RESULTS.md): it could only overfit.
pub const PRETRAIN_SKIP_TOKENS: u64 = 500_000;

/// The pretraining run for a trial that fine-tunes a locally pretrained small preset: the preset
/// (with the trial's shape overrides), tokenizer and data of the trial, at the preset's full
/// context. Also run by hand with `sweep train --set init=scratch ...` and these values.
pub fn pretrain_config(cfg: &TrialConfig) -> Result<TrialConfig> {
    let Start::LocalPretraining(preset) = cfg.start()? else {
        bail!("`{}` is not pretrained locally", cfg.model);
    };
    let shape = GptConfig::of(preset).with_overrides(cfg.n_layer, cfg.n_embd, cfg.n_head)?;
    Ok(TrialConfig {
        init: Some(Init::Scratch),
        block_size: shape.n_positions,
        batch_size: 8,
        grad_accum: 1,
        learning_rate: 1e-3,
        weight_decay: 0.0,
        epochs: 1,
        warmup_steps: 50,
        seed: 42,
        dropout: 0.1,
        max_train_tokens: Some(PRETRAIN_TOKENS),
        skip_train_tokens: Some(PRETRAIN_SKIP_TOKENS),
        max_steps: None,
        eval_every: Some(200),
        eval_tokens: Some(20_000),
        eval_block_size: None,
        ..cfg.clone()
    })
}

/// Whether `cfg` asks for a locally pretrained small preset.
pub fn wants_local_pretraining(cfg: &TrialConfig) -> bool {
    matches!(cfg.start(), Ok(Start::LocalPretraining(_)))
}

/// The identity of the local pretraining `cfg` fine-tunes from: its config's identity and the
/// trainer numerics (code that trains differently must not reuse weights older code made).
fn recipe_hash(cfg: &TrialConfig, data_hash: &str, tokenizer_id: &str) -> Result<String> {
    let config = pretrain_config(cfg)?.identity_hash(data_hash, tokenizer_id, None)?;
    Ok(crate::util::sha256_hex(
        format!("{config} trainer numerics {}", super::NUMERICS).as_bytes(),
    ))
}

/// What names the weights `cfg` starts from when it fine-tunes a local pretraining (part of the
/// trial's identity, `plan`); `None` for every other start.
pub fn recipe_id(cfg: &TrialConfig, data_hash: &str, tokenizer_id: &str) -> Option<Result<String>> {
    wants_local_pretraining(cfg).then(|| {
        recipe_hash(cfg, data_hash, tokenizer_id).map(|h| format!("local-pretraining {h}"))
    })
}

/// Where the local pretraining for `cfg` is (or will be) cached.
pub fn cached_dir(
    cfg: &TrialConfig,
    cache_root: &Path,
    data_hash: &str,
    tokenizer_id: &str,
) -> Result<PathBuf> {
    let hash = recipe_hash(cfg, data_hash, tokenizer_id)?;
    Ok(cache_root.join("pretrained").join(&hash[..16]))
}

/// Whether `cfg` will first have to pretrain (its local pretraining is not cached yet).
pub fn needs_pretraining(
    cfg: &TrialConfig,
    cache_root: &Path,
    data_hash: &str,
    tokenizer_id: &str,
) -> bool {
    wants_local_pretraining(cfg)
        && cached_dir(cfg, cache_root, data_hash, tokenizer_id)
            .map(|d| !d.join("model/config.json").is_file())
            .unwrap_or(false)
}

/// Prints pretraining progress as plain lines: it runs inside a trial, whose log keeps them and
/// whose progress line in `sweep run` shows the last one.
struct LogSink;

impl MetricSink for LogSink {
    fn record(&mut self, row: &MetricRow) -> Result<()> {
        eprintln!(
            "pretraining: step {} {} loss {:.4} ({:.0} tok/s)",
            row.step, row.split, row.loss, row.tokens_per_s
        );
        Ok(())
    }
}

/// Runs `f` on every core the process may use. Under `sweep run --jobs N` each trial's pool has
/// `cores / N` threads, but while one trial pretrains the others that need the same checkpoint
/// sleep on its lock, so the pretraining takes their cores too (on the 2-vCPU guest a block-128
/// trial trains 1.4x faster on 2 threads than on 1). Training gives the same numbers on any
/// thread count (the gradient norm sums rows in a fixed order; bench/RESULTS.md, "Trials in
/// parallel").
fn with_all_cores<T>(f: impl FnOnce() -> T + Send) -> T
where
    T: Send,
{
    #[cfg(feature = "flex")]
    {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        if cores > rayon::current_num_threads() {
            if let Ok(pool) = rayon::ThreadPoolBuilder::new().num_threads(cores).build() {
                return pool.install(f);
            }
        }
    }
    f()
}

/// The directory of the pretrained HF checkpoint for `cfg`, training it first if the cache does
/// not hold it yet; `None` when that training was interrupted (Ctrl-C, preemption), which the
/// trial reports as its own interruption: the next run resumes the pretraining from its
/// checkpoint. Concurrent trials wait on a file lock, so it is trained once.
pub fn ensure_pretrained(
    cfg: &TrialConfig,
    ctx: &RunContext,
    data_hash: &str,
    tokenizer_id: &str,
) -> Result<Option<PathBuf>> {
    if cfg.skip_train_tokens.unwrap_or(0) + cfg.max_train_tokens.unwrap_or(u64::MAX)
        > PRETRAIN_SKIP_TOKENS
    {
        eprintln!(
            "note: this trial trains beyond the first {PRETRAIN_SKIP_TOKENS} tokens of the \
             training split, on text its local pretraining has seen (set max_train_tokens to at \
             most {PRETRAIN_SKIP_TOKENS} to fine-tune on unseen text only)"
        );
    }
    let pre = pretrain_config(cfg)?;
    let dir = cached_dir(cfg, &ctx.cache_root, data_hash, tokenizer_id)?;
    let root = ctx.cache_root.join("pretrained");
    let hash = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let model = dir.join("model");
    if model.join("config.json").is_file() {
        return Ok(Some(model));
    }
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let lock_path = root.join(format!("{hash}.lock"));
    let lock =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    // SAFETY: flock on a file descriptor we own; released when `lock` is dropped.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        bail!("locking {}", lock_path.display());
    }
    if model.join("config.json").is_file() {
        return Ok(Some(model));
    }
    eprintln!(
        "pretraining {} on up to {} tokens of the training split after its first {} at block {} \
         (once; cached in {})",
        cfg.model,
        PRETRAIN_TOKENS,
        PRETRAIN_SKIP_TOKENS,
        pre.block_size,
        dir.display()
    );
    let pre_ctx = RunContext {
        work_dir: dir.clone(),
        progress: false,
        ..ctx.clone()
    };
    match with_all_cores(|| run_trial(&pre, &pre_ctx, &mut LogSink))? {
        TrialEnd::Completed(m) => {
            let mut note = File::create(dir.join("pretraining.json"))?;
            writeln!(
                note,
                "{}",
                serde_json::json!({ "config": pre, "valid_loss": m.valid_loss })
            )?;
            Ok(Some(model))
        }
        TrialEnd::Diverged { step } => bail!("pretraining {} diverged at step {step}", cfg.model),
        TrialEnd::Interrupted => Ok(None),
    }
}
