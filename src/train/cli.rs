//! `sweep train` (one trial without a sweep), `sweep eval` (loss/perplexity of any model on
//! prepared data or a text file) and the hidden `sweep bench-train` (training throughput).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use super::eval::{capped_blocks, evaluate, Blocks, MemBlocks};
use super::sinks::{JsonLinesSink, StdoutSink, Tee};
use super::{peak_rss_bytes, run_trial, RunContext, TrialEnd};
use crate::backend::DeviceSpec;
use crate::checkpoint;
use crate::data::{self, Split};
use crate::error::UsageError;
use crate::fused::{FusedAutodiff, FusedOps};
use crate::model::{GptConfig, GPT2_HF_VOCAB};
use crate::trial::Precision;
use crate::trial::TrialConfig;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// A TOML file with one trial's settings (the fields of a sweep trial).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a setting, e.g. `--set learning_rate=1e-4 --set data.sources=["a.tsv.xz"]`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// `cpu` or `cuda:N`.
    #[arg(long, env = "SWEEP_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Work directory: checkpoints/, model/ (the exported HF model), metrics.jsonl, final.json.
    #[arg(long, default_value = "results/train")]
    pub out: PathBuf,
    /// Cache of prepared data, tokenizers and token files.
    #[command(flatten)]
    pub cache: crate::locations::CacheArgs,
    /// Checkpoint every N minutes (and at each epoch end); 0: epoch ends only.
    #[arg(long, default_value_t = 10.0)]
    pub checkpoint_minutes: f64,
    /// No progress bar or progress lines (metric rows are still printed).
    #[arg(long)]
    pub no_progress: bool,
}

/// Reads a trial config from an optional TOML file plus `key=value` overrides.
pub fn load_trial_config(file: Option<&Path>, sets: &[String]) -> Result<TrialConfig> {
    let mut table = match file {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            toml::from_str::<toml::Table>(&text)
                .map_err(|e| UsageError(format!("{}: {e}", p.display())))?
        }
        None => toml::Table::new(),
    };
    for s in sets {
        let (key, raw) = s.split_once('=').ok_or_else(|| {
            UsageError(format!(
                "--set {s:?}: expected KEY=VALUE, e.g. --set epochs=2"
            ))
        })?;
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        let parts: Vec<&str> = key.trim().split('.').collect();
        let mut t = &mut table;
        for p in &parts[..parts.len() - 1] {
            let entry = t
                .entry(p.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            t = entry
                .as_table_mut()
                .ok_or_else(|| UsageError(format!("--set {key}: `{p}` is not a table")))?;
        }
        t.insert(parts[parts.len() - 1].to_string(), value);
    }
    let where_ = file
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "--set values (no --config given)".into());
    toml::Value::Table(table)
        .try_into::<TrialConfig>()
        .map_err(|e| UsageError(format!("{where_}: {e}")).into())
}

pub fn run_train(args: TrainArgs) -> Result<ExitCode> {
    let cfg = load_trial_config(args.config.as_deref(), &args.set)?;
    DeviceSpec::parse(&args.device)?;
    let ctx = RunContext {
        work_dir: args.out.clone(),
        cache_root: args.cache.root(),
        device: args.device.clone(),
        // Ctrl-C or SIGTERM checkpoints and stops; a second request ends the process at once.
        cancel: crate::signals::cancel_flag(crate::signals::OnSecond::Exit),
        progress: !args.no_progress,
        checkpoint_minutes: args.checkpoint_minutes,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut json = JsonLinesSink::create(&args.out.join("metrics.jsonl"))?;
    let mut stdout = StdoutSink;
    let mut sink = Tee(vec![&mut json, &mut stdout]);
    match run_trial(&cfg, &ctx, &mut sink)? {
        TrialEnd::Completed(m) => {
            let text = serde_json::to_string_pretty(&m)?;
            std::fs::write(args.out.join("final.json"), &text)?;
            println!(
                "completed: train {:.4} valid {:.4} (ppl {:.2}) test {:.4} (ppl {:.2}); {:.0} tok/s, \
                 peak RSS {:.2} GB; model in {}",
                m.train_loss,
                m.valid_loss,
                m.valid_ppl,
                m.test_loss,
                m.test_ppl,
                m.tokens_per_s,
                m.peak_rss_bytes as f64 / 1e9,
                args.out.join("model").display()
            );
            Ok(ExitCode::SUCCESS)
        }
        TrialEnd::Diverged { step } => {
            eprintln!("diverged: the loss became NaN/inf at step {step}");
            Ok(ExitCode::from(3))
        }
        TrialEnd::Interrupted => {
            eprintln!(
                "interrupted: checkpoint in {}; run the same command again to resume",
                args.out.join(checkpoint::TRAINING_SUBDIR).display()
            );
            Ok(ExitCode::from(130))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sweep eval

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A model directory (HF layout, e.g. a trial's `model/`) or a pretrained preset from the HF cache.
    #[arg(long, required_unless_present = "trial", conflicts_with = "trial")]
    pub model: Option<String>,
    /// A completed trial of the ledger: its exported model, its prepared data and its block size.
    #[arg(long)]
    pub trial: Option<i64>,
    /// The ledger of --trial.
    #[command(flatten)]
    pub ledger: crate::locations::LedgerArgs,
    /// With --trial: the artifacts root its recorded directory is relative to (default `results`).
    #[command(flatten)]
    pub artifacts: crate::locations::ArtifactsArgs,
    /// Evaluate this split of prepared data (needs --data, or --trial).
    #[arg(long, conflicts_with = "file")]
    pub split: Option<Split>,
    /// A directory written by `sweep data prepare`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluate any text file (tokenized, concatenated and cut into blocks as in training).
    #[arg(long, required_unless_present = "split")]
    pub file: Option<PathBuf>,
    /// Tokens per block (default: the model's context length).
    #[arg(long)]
    pub block_size: Option<usize>,
    /// At most this many tokens (leading blocks) are evaluated.
    #[arg(long)]
    pub max_tokens: Option<u64>,
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    #[arg(long, env = "SWEEP_DEVICE", default_value = "cpu")]
    pub device: String,
    #[command(flatten)]
    pub cache: crate::locations::CacheArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub fn run_eval(mut args: EvalArgs) -> Result<ExitCode> {
    if let Some(id) = args.trial {
        resolve_trial_for_eval(id, &mut args)?;
    }
    if args.split.is_some() && args.data.is_none() {
        return Err(UsageError(
            "--split needs --data DIR (a `sweep data prepare` output) or --trial ID".into(),
        )
        .into());
    }
    crate::on_backend!(DeviceSpec::parse(&args.device)?, |B, dev| eval_on::<B>(
        &args, dev
    ))
}

/// Fills --model, --data and --block-size from a trial of the ledger (explicit flags win).
fn resolve_trial_for_eval(id: i64, args: &mut EvalArgs) -> Result<()> {
    let store = crate::store::open_read_only(&args.ledger.url())?;
    let (_, cfg, model_dir) = crate::artifacts::ledger_trial(&*store, id, &args.artifacts.root())?;
    args.model = Some(model_dir.display().to_string());
    if args.split.is_some() && args.data.is_none() {
        args.data = Some(data::prepare_cached(&cfg.data, &args.cache.root())?.dir);
    }
    args.block_size.get_or_insert(cfg.block_size);
    Ok(())
}

fn eval_on<B: FusedOps>(args: &EvalArgs, device: B::Device) -> Result<ExitCode> {
    if args.batch_size == 0 {
        return Err(UsageError("--batch-size must be at least 1".into()).into());
    }
    let model = args.model.as_deref().unwrap_or_default();
    let dir = checkpoint::weights_dir(model)?;
    let tok = checkpoint::dir_tokenizer(&dir, Some(model))?;
    let ck = checkpoint::read_hf_config(&dir)?;
    let block_size = args.block_size.unwrap_or(ck.n_positions);
    if block_size < 2 || block_size > ck.n_positions {
        return Err(UsageError(format!(
            "--block-size {block_size} must be between 2 and the model's context of {}",
            ck.n_positions
        ))
        .into());
    }
    // The tokenizer must match the embedding; GPT-2's two added tokens may sit on top of an
    // original 50,257-row checkpoint (rows are added only if the text uses them).
    let gpt2_plus_specials =
        ck.vocab_size == GPT2_HF_VOCAB && tok.vocab_size() == GPT2_HF_VOCAB + 2;
    if tok.vocab_size() != ck.vocab_size && !gpt2_plus_specials {
        return Err(UsageError(format!(
            "the tokenizer has {} tokens but the model in {} embeds {}: they do not belong together",
            tok.vocab_size(),
            dir.display(),
            ck.vocab_size
        ))
        .into());
    }
    let (blocks, source): (Box<dyn Blocks>, String) = match (&args.split, &args.file) {
        (Some(split), _) => {
            let data_dir = args
                .data
                .as_ref()
                .context("--split needs --data or --trial")?;
            let prepared = data::load_prepared(data_dir)?;
            let b = data::token_blocks(&prepared, *split, &tok, block_size, &args.cache.root())?;
            (
                Box::new(b),
                format!("{split} split of {}", data_dir.display()),
            )
        }
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let ids = tok.encode(&text)?;
            let b = MemBlocks { ids, block_size };
            if b.is_empty() {
                return Err(UsageError(format!(
                    "{} has fewer than {block_size} tokens: no complete block",
                    file.display()
                ))
                .into());
            }
            (Box::new(b), file.display().to_string())
        }
        (None, None) => unreachable!("clap requires --split or --file"),
    };
    let n = capped_blocks(blocks.len(), block_size, args.max_tokens);
    let max_id = (0..n).flat_map(|i| blocks.block(i)).max().unwrap_or(0) as usize;
    let resize = (max_id >= ck.vocab_size).then_some(tok.vocab_size());
    if resize.is_some() {
        eprintln!(
            "note: the text uses the added special tokens; the embedding grows to {} rows \
             (new rows = mean of the old ones, as before fine-tuning)",
            tok.vocab_size()
        );
    }
    let (model, _) = checkpoint::import_hf::<B>(&dir, resize, Some(0.0), &device)?;
    let t0 = Instant::now();
    let r = evaluate(&model, blocks.as_ref(), n, args.batch_size, &device)?;
    let secs = t0.elapsed().as_secs_f64();
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "model": dir, "source": source, "block_size": block_size,
                "blocks": r.blocks, "tokens": r.tokens, "loss": r.loss, "ppl": r.ppl,
                "seconds": secs,
            })
        ),
        Format::Text => println!(
            "{source}: loss {:.6}  ppl {:.3}  ({} blocks of {block_size}, {} predicted tokens, {:.1}s)",
            r.loss, r.ppl, r.blocks, r.tokens, secs
        ),
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// sweep bench-train (hidden): training throughput of a model shape on random tokens

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A preset (`gpt2-tiny`, `distilgpt2`, ...); weights are random.
    #[arg(long, default_value = "gpt2-tiny")]
    pub preset: String,
    #[arg(long, default_value_t = 50_259)]
    pub vocab: usize,
    #[arg(long, default_value_t = 128)]
    pub block_size: usize,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    #[arg(long, default_value_t = 8)]
    pub steps: usize,
    #[arg(long, env = "SWEEP_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Matmul precision: f32, bf16 or f16 (autocast; GPU only).
    #[arg(long, default_value = "f32")]
    pub precision: String,
    /// Wait for the device after the forward and the backward pass too, to time each phase. On
    /// a GPU those waits stall the queue, so the step itself is then slower; without the flag a
    /// step waits once, at its end, as the trainer and the PyTorch benchmark do.
    #[arg(long, default_value_t = false)]
    pub phases: bool,
}

pub fn run_bench(args: BenchArgs) -> Result<ExitCode> {
    let device = DeviceSpec::parse(&args.device)?;
    crate::train::check_precision(Precision::parse(&args.precision)?, device)?;
    crate::on_backend!(device, train, |B, dev| bench_on::<B>(&args, dev))
}

fn bench_on<AB: FusedAutodiff>(args: &BenchArgs, device: AB::Device) -> Result<ExitCode> {
    let mut cfg = GptConfig::preset(&args.preset)?;
    cfg.vocab_size = args.vocab;
    let precision = Precision::parse(&args.precision)?;
    let (b, t) = (args.batch_size, args.block_size);
    // [forward, backward, optimizer, queued] per timed step: `queued` is the host's time to
    // issue the whole step, so `queued` close to the step time means the host is the bottleneck.
    let steps = super::estimate::timed_steps::<AB>(
        &cfg,
        precision,
        b,
        t,
        args.warmup,
        args.steps,
        args.phases,
        &device,
        |i, value, dt, phase| {
            if args.phases {
                eprintln!(
                    "step {i}: loss {value:.4}  {dt:.3}s (forward {:.3}s, backward {:.3}s, \
                     optimizer {:.3}s)",
                    phase[0], phase[1], phase[2]
                );
            } else {
                eprintln!(
                    "step {i}: loss {value:.4}  {dt:.3}s ({:.3}s to queue)",
                    phase[3]
                );
            }
        },
    )?;
    let median_of = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let median = median_of(steps.iter().map(|s| s.0).collect());
    let phase_median = |k: usize| median_of(steps.iter().map(|s| s.1[k]).collect());
    println!(
        "{}",
        serde_json::json!({
            "impl": format!("burn-{}", DeviceSpec::parse(&args.device)?.describe()),
            "preset": args.preset, "params": cfg.num_params(), "block_size": t, "batch_size": b,
            "precision": precision.as_str(),
            "train_flops_per_token": cfg.train_flops_per_token(t),
            "median_step_s": median, "tokens_per_s": (b * t) as f64 / median,
            "median_queued_s": phase_median(3),
            "median_forward_s": args.phases.then(|| phase_median(0)),
            "median_backward_s": args.phases.then(|| phase_median(1)),
            "median_optimizer_s": args.phases.then(|| phase_median(2)),
            "peak_rss_bytes": peak_rss_bytes(),
        })
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_override_and_nest() {
        let cfg = load_trial_config(
            None,
            &[
                "model=gpt2-tiny".into(),
                "data.sources=[\"a.tsv\"]".into(),
                "block_size=64".into(),
                "batch_size=2".into(),
                "grad_accum=1".into(),
                "learning_rate=1e-3".into(),
                "weight_decay=0.0".into(),
                "epochs=1".into(),
                "tokenizer=bpe-512".into(),
            ],
        )
        .unwrap();
        assert_eq!(cfg.model.to_string(), "gpt2-tiny");
        assert_eq!(cfg.data.sources, vec!["a.tsv".to_string()]);
        assert_eq!(cfg.learning_rate, 1e-3);
        assert_eq!(cfg.tokenizer.to_string(), "bpe-512");
        let err = load_trial_config(None, &["model=gpt2".into()]).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
        assert!(load_trial_config(None, &["oops".into()]).is_err());
    }
}
