//! Trainer integration tests: the HF golden fixture (logits, loss, one AdamW step), export ->
//! import round trip, bad checkpoints, and kill-and-resume determinism.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use serde_json::Value;
use sweep::checkpoint::{self, NamedTensor};
use sweep::train::golden::Tolerances;
use sweep::trial::Precision;

type B = Flex;
type AB = Autodiff<Flex>;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn golden_logits_loss_and_one_adamw_step_match_transformers() {
    let r = sweep::train::golden::check::<AB>(
        &golden_dir(),
        Precision::F32,
        &Default::default(),
        "flex/cpu",
    )
    .unwrap();
    println!(
        "golden logits: max |ours - transformers| = {:e}",
        r.logits_max_diff
    );
    println!(
        "golden loss: ours {:.7} transformers {:.7}",
        r.loss, r.ref_loss
    );
    println!(
        "grad norm: ours {:.6} pytorch {:.6}",
        r.grad_norm, r.ref_grad_norm
    );
    println!(
        "loss after one AdamW step: ours {:.7} pytorch {:.7}",
        r.loss_after_step, r.ref_loss_after_step
    );
    println!(
        "probed parameters after the step: max |ours - pytorch| = {:e}",
        r.params_max_diff
    );
    let failures = r.failures(Tolerances::for_precision(Precision::F32));
    assert!(failures.is_empty(), "{failures:?}");
    // The tolerances are tight enough to catch a real error: a perturbed report fails.
    let mut off = r.clone();
    off.loss += 1e-3;
    assert_eq!(
        off.failures(Tolerances::for_precision(Precision::F32))
            .len(),
        1
    );
}

/// The autocast path (casts around every matmul, gradients back through them) on the CPU backend:
/// the GPU runs the same code, so this checks it is wired right, and that it is really in effect
/// (the numbers move, by about bf16's rounding).
#[test]
fn golden_check_holds_under_bf16_and_f16_autocast() {
    for p in [Precision::Bf16, Precision::F16] {
        let r =
            sweep::train::golden::check::<AB>(&golden_dir(), p, &Default::default(), "flex/cpu")
                .unwrap();
        println!("{p:?}: {r:?}");
        let failures = r.failures(Tolerances::for_precision(p));
        assert!(failures.is_empty(), "{p:?}: {failures:?}");
        assert!(
            r.logits_max_diff > 1e-5,
            "{p:?} autocast changed nothing: {r:?}"
        );
    }
}

#[test]
fn selftest_command_passes_on_cpu_and_rejects_half_precision_there() {
    let out = sweep_cmd()
        .args(["selftest", "--json", "--fixture"])
        .arg(golden_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["logits_max_diff"].as_f64().unwrap() < 1e-4, "{r}");
    sweep_cmd()
        .args(["selftest", "--precision", "bf16", "--fixture"])
        .arg(golden_dir())
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--device cuda:N"));
}

#[test]
fn export_import_round_trip_is_exact() {
    let (model, cfg) =
        checkpoint::import_hf::<B>(&golden_dir().join("model"), None, None, &Default::default())
            .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("exported");
    checkpoint::export_hf(&model, &cfg, Some(0), &out, |_| Ok(())).unwrap();
    let (back, cfg2) = checkpoint::import_hf::<B>(&out, None, None, &Default::default()).unwrap();
    assert_eq!(cfg, cfg2);
    assert_eq!(
        checkpoint::named_tensors(&model),
        checkpoint::named_tensors(&back)
    );
    // Same keys and shapes as transformers' own save_pretrained.
    let (ours, _) = checkpoint::read_safetensors(&out.join("model.safetensors")).unwrap();
    let (theirs, _) =
        checkpoint::read_safetensors(&golden_dir().join("model/model.safetensors")).unwrap();
    assert_eq!(checkpoint::shapes(&ours), checkpoint::shapes(&theirs));
    assert_eq!(ours, theirs, "exported tensors equal the HF file's");
    // `python scripts/make_golden.py --check-export DIR` loads this with transformers.
    if let Some(keep) = std::env::var_os("SWEEP_GOLDEN_EXPORT") {
        checkpoint::export_hf(&model, &cfg, Some(0), Path::new(&keep), |_| Ok(())).unwrap();
    }
    let staging: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert_eq!(staging.len(), 1, "no staging directory left behind");
}

#[test]
fn resize_adds_mean_rows_and_keeps_old_logits_order() {
    let dir = golden_dir().join("model");
    let (model, cfg) =
        checkpoint::import_hf::<B>(&dir, Some(302), None, &Default::default()).unwrap();
    assert_eq!(cfg.vocab_size, 302);
    let wte = &checkpoint::named_tensors(&model)[0];
    assert_eq!(wte.name, "wte.weight");
    let c = 32;
    let mean: Vec<f32> = (0..c)
        .map(|j| (0..300).map(|i| wte.data[i * c + j] as f64).sum::<f64>() as f32 / 300.0)
        .collect();
    assert!(max_abs_diff(&wte.data[300 * c..301 * c], &mean) < 1e-6);
    assert!(max_abs_diff(&wte.data[301 * c..], &mean) < 1e-6);
    let err = checkpoint::import_hf::<B>(&dir, Some(200), None, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("do not belong together"), "{err}");
}

#[test]
fn bad_checkpoints_name_tensors_and_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = golden_dir().join("model");
    let (tensors, meta) = checkpoint::read_safetensors(&src.join("model.safetensors")).unwrap();
    let dir = tmp.path().join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let mut broken: Vec<NamedTensor> = tensors
        .into_iter()
        .filter(|t| t.name != "transformer.h.1.mlp.c_fc.bias")
        .collect();
    let t = broken
        .iter_mut()
        .find(|t| t.name == "transformer.h.0.attn.c_attn.weight")
        .unwrap();
    t.shape = vec![96, 32];
    checkpoint::write_safetensors(&dir.join("model.safetensors"), &broken, meta).unwrap();
    let err = checkpoint::import_hf::<B>(&dir, None, None, &Default::default())
        .map(|_| ())
        .unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(msg.contains("h.0.attn.c_attn.weight: file has [96, 32], model expects [32, 96]"));
    assert!(msg.contains("missing tensor: h.1.mlp.c_fc.bias"));
    assert!(err.downcast_ref::<sweep::error::UsageError>().is_some());

    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let err = checkpoint::import_hf::<B>(&dir, None, None, &Default::default())
        .map(|_| ())
        .unwrap_err();
    assert!(
        err.to_string().contains("model.safetensors is missing"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Training: a tiny from-scratch run, and kill-and-resume determinism.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use sweep::train::sinks::VecSink;
use sweep::train::{run_trial, MetricRow, MetricSink, RunContext, TrialEnd};
use sweep::trial::{DataSpec, TrialConfig};

/// A small synthetic corpus (Kaggle JSON lines), varied enough to learn from.
fn write_corpus(dir: &Path) -> PathBuf {
    let words = [
        "language",
        "model",
        "parsing",
        "neural",
        "translation",
        "corpus",
        "semantic",
        "attention",
        "we",
        "propose",
        "a",
        "new",
        "method",
        "for",
        "the",
        "task",
        "of",
        "results",
        "show",
        "improves",
        "over",
        "baseline",
        "on",
        "dataset",
        "speech",
    ];
    let mut rng = 12345u64;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) as usize
    };
    let mut out = String::new();
    for i in 0..240 {
        let title: Vec<&str> = (0..5).map(|_| words[next() % words.len()]).collect();
        let abs: Vec<&str> = (0..40).map(|_| words[next() % words.len()]).collect();
        out += &format!(
            "{{\"id\":\"1801.{i:05}\",\"title\":\"{}\",\"abstract\":\"{}.\",\"categories\":\"cs.CL\",\"update_date\":\"2018-{:02}-{:02}\"}}\n",
            title.join(" "),
            abs.join(" "),
            1 + i / 28,
            1 + i % 28
        );
    }
    let path = dir.join("corpus.jsonl");
    std::fs::write(&path, out).unwrap();
    path
}

fn tiny_trial(source: &Path) -> TrialConfig {
    TrialConfig {
        model: "gpt2-tiny".parse().unwrap(),
        init: None,
        n_layer: Some(1),
        n_embd: Some(32),
        n_head: Some(2),
        tokenizer: "bpe-300".parse().unwrap(),
        precision: None,
        data: DataSpec {
            sources: vec![source.display().to_string()],
            categories: vec!["cs.CL".into()],
            split: [8.0, 1.0, 1.0],
        },
        block_size: 32,
        batch_size: 4,
        grad_accum: 2,
        learning_rate: 3e-3,
        weight_decay: 0.01,
        epochs: 2,
        warmup_steps: 2,
        seed: 7,
        dropout: 0.1,
        max_train_tokens: Some(32 * 8 * 6),
        skip_train_tokens: None,
        max_steps: None,
        eval_every: Some(4),
        eval_tokens: Some(32 * 8),
        eval_block_size: Some(64),
    }
}

/// Burn's backend RNG (dropout) is process-global: two trainings in one test process would draw
/// from it in turn and break each other's determinism. `sweep` runs each trial in its own
/// process; here the training tests take turns.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn training_turn() -> std::sync::MutexGuard<'static, ()> {
    TRAINING.lock().unwrap_or_else(|e| e.into_inner())
}

/// `init = "pretrained"` on a small preset pretrains it once on the training split (at the
/// preset's full context), caches the checkpoint, and fine-tunes from it; a second trial reuses it.
#[test]
fn a_small_preset_with_init_pretrained_fine_tunes_one_cached_local_pretraining() {
    let _turn = training_turn();
    let tmp = tempfile::tempdir().unwrap();
    let source = write_corpus(tmp.path());
    let ctx = |name: &str| RunContext {
        cache_root: tmp.path().join("cache"),
        progress: false,
        checkpoint_minutes: 0.0,
        ..RunContext::new(tmp.path().join(name))
    };
    let run =
        |cfg: &TrialConfig, name: &str| match run_trial(cfg, &ctx(name), &mut VecSink::default()) {
            Ok(TrialEnd::Completed(m)) => m,
            other => panic!("{name}: {other:?}"),
        };
    let pre = TrialConfig {
        init: Some(sweep::trial::Init::Pretrained),
        ..tiny_trial(&source)
    };
    // Cancelled before its first step, the pretraining ends the trial as interrupted (not
    // failed), so that the next run picks it up again.
    let stopped = RunContext {
        cancel: Arc::new(AtomicBool::new(true)),
        ..ctx("stopped")
    };
    assert!(matches!(
        run_trial(&pre, &stopped, &mut VecSink::default()).unwrap(),
        TrialEnd::Interrupted
    ));
    let a = run(&pre, "a");
    let cached: Vec<PathBuf> = std::fs::read_dir(tmp.path().join("cache/pretrained"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let weights = cached[0].join("model/model.safetensors");
    let made = std::fs::metadata(&weights).unwrap().modified().unwrap();
    let note: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cached[0].join("pretraining.json")).unwrap())
            .unwrap();
    assert_eq!(
        note["config"]["block_size"], 256,
        "pretrained at gpt2-tiny's context: {note}"
    );
    assert_eq!(
        note["config"]["n_embd"], 32,
        "with the trial's shape: {note}"
    );

    let b = run(
        &TrialConfig {
            learning_rate: 1e-3,
            ..pre.clone()
        },
        "b",
    );
    let again: Vec<_> = std::fs::read_dir(tmp.path().join("cache/pretrained"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(again.len(), 1, "the second trial reused the pretraining");
    assert_eq!(
        std::fs::metadata(&weights).unwrap().modified().unwrap(),
        made
    );

    let scratch = run(&tiny_trial(&source), "scratch");
    println!(
        "valid loss: from the local pretraining {:.4} (lr 1e-3: {:.4}), from scratch {:.4}",
        a.valid_loss, b.valid_loss, scratch.valid_loss
    );
    assert!(
        a.valid_loss < scratch.valid_loss,
        "starting from the pretrained weights should beat a from-scratch start"
    );
}

/// Cancels the run once it has logged a train row at `at_step`.
struct CancelAt {
    inner: VecSink,
    at_step: u64,
    flag: Arc<AtomicBool>,
}

impl MetricSink for CancelAt {
    fn record(&mut self, row: &MetricRow) -> anyhow::Result<()> {
        if row.split == "train" && row.step >= self.at_step {
            self.flag.store(true, Ordering::SeqCst);
        }
        self.inner.record(row)
    }
}

#[test]
fn training_learns_and_resume_reproduces_the_uninterrupted_run() {
    let _turn = training_turn();
    let tmp = tempfile::tempdir().unwrap();
    let source = write_corpus(tmp.path());
    let cfg = tiny_trial(&source);
    let ctx = |name: &str| RunContext {
        cache_root: tmp.path().join("cache"),
        progress: false,
        checkpoint_minutes: 0.0,
        ..RunContext::new(tmp.path().join(name))
    };

    // Uninterrupted.
    let a_ctx = ctx("a");
    let mut a_rows = VecSink::default();
    let TrialEnd::Completed(a) = run_trial(&cfg, &a_ctx, &mut a_rows).unwrap() else {
        panic!("run a did not complete");
    };
    println!("uninterrupted: {a:?}");
    let valid: Vec<&MetricRow> = a_rows.rows.iter().filter(|r| r.split == "valid").collect();
    assert!(valid.len() >= 3, "valid rows: {valid:?}");
    let first_train = a_rows.rows.iter().find(|r| r.split == "train").unwrap();
    assert!(
        a.valid_loss < valid[0].loss && a.train_loss < first_train.loss,
        "loss did not fall: {:?}",
        a_rows.rows
    );
    assert!(a.valid_loss_fixed.is_some());
    assert!(a_ctx.work_dir.join("model/model.safetensors").is_file());
    assert!(a_ctx.work_dir.join("model/tokenizer.json").is_file());
    assert!(!a_ctx.work_dir.join("checkpoints").exists());

    // Interrupted mid-epoch (spe = 6: step 3 is inside epoch 0), then resumed.
    let b_ctx = ctx("b");
    let mut b_sink = CancelAt {
        inner: VecSink::default(),
        at_step: 3,
        flag: b_ctx.cancel.clone(),
    };
    let end = run_trial(&cfg, &b_ctx, &mut b_sink).unwrap();
    assert_eq!(end, TrialEnd::Interrupted);
    let manifests = std::fs::read_dir(b_ctx.work_dir.join("checkpoints"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("manifest.json").is_file())
        .count();
    assert_eq!(manifests, 1, "one complete checkpoint after the cancel");
    let resumed_ctx = RunContext {
        cancel: Arc::new(AtomicBool::new(false)),
        ..b_ctx.clone()
    };
    let mut b_rows = b_sink.inner;
    let TrialEnd::Completed(b) = run_trial(&cfg, &resumed_ctx, &mut b_rows).unwrap() else {
        panic!("resumed run did not complete");
    };
    println!("resumed:       {b:?}");
    for (x, y) in [
        (a.train_loss, b.train_loss),
        (a.valid_loss, b.valid_loss),
        (a.test_loss, b.test_loss),
        (a.valid_loss_fixed.unwrap(), b.valid_loss_fixed.unwrap()),
    ] {
        assert_eq!(x, y, "final numbers differ after resume");
    }
    let key = |r: &MetricRow| (r.split.clone(), r.step, r.loss);
    let mut ka: Vec<_> = a_rows.rows.iter().map(key).collect();
    let mut kb: Vec<_> = b_rows.rows.iter().map(key).collect();
    ka.sort_by(|x, y| x.partial_cmp(y).unwrap());
    kb.sort_by(|x, y| x.partial_cmp(y).unwrap());
    assert_eq!(ka, kb, "metric curves differ after resume");
    let (ma, _) =
        checkpoint::read_safetensors(&a_ctx.work_dir.join("model/model.safetensors")).unwrap();
    let (mb, _) =
        checkpoint::read_safetensors(&b_ctx.work_dir.join("model/model.safetensors")).unwrap();
    assert_eq!(ma, mb, "exported weights differ after resume");

    // Fine-tuning a local HF checkpoint directory (the golden model: vocabulary 300, like bpe-300).
    let ft = TrialConfig {
        model: sweep::trial::ModelSpec::Dir(golden_dir().join("model")),
        n_layer: None,
        n_embd: None,
        n_head: None,
        epochs: 1,
        ..cfg.clone()
    };
    let mut rows = VecSink::default();
    let TrialEnd::Completed(m) = run_trial(&ft, &ctx("ft"), &mut rows).unwrap() else {
        panic!("fine-tuning did not complete");
    };
    let first_valid = rows.rows.iter().find(|r| r.split == "valid").unwrap().loss;
    println!(
        "fine-tuned golden model: first valid {first_valid:.4}, final {:.4}",
        m.valid_loss
    );
    assert!(m.valid_loss < first_valid);
    let exported = tmp.path().join("ft/model");
    let cfg_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(exported.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg_json["n_positions"], 64);
}

/// A hard kill between two checkpoints leaves rows in `metrics.jsonl` that the resumed run logs
/// again (it replays the steps after its checkpoint); standalone `sweep train` keeps each once.
#[test]
fn standalone_train_resumed_after_a_hard_kill_logs_each_row_once() {
    let _turn = training_turn();
    let tmp = tempfile::tempdir().unwrap();
    let source = write_corpus(tmp.path());
    let cfg = tiny_trial(&source);
    let toml = tmp.path().join("run.toml");
    std::fs::write(&toml, toml::to_string(&cfg).unwrap()).unwrap();
    let train = |out: &Path| {
        sweep_cmd()
            .args([
                "train",
                "--no-progress",
                "--checkpoint-minutes",
                "0",
                "--config",
            ])
            .arg(&toml)
            .arg("--out")
            .arg(out)
            .arg("--cache")
            .arg(tmp.path().join("cache"))
            .assert()
            .success();
    };
    let rows = |out: &Path| -> Vec<(String, u64, f64)> {
        std::fs::read_to_string(out.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<MetricRow>(l).unwrap())
            .map(|r| (r.split, r.step, r.loss))
            .collect()
    };
    let a = tmp.path().join("a");
    train(&a);

    // The killed run: a checkpoint at step 3 (spe = 6), and the rows of steps 4 and 5 logged
    // after it, as a SIGKILL before the next checkpoint leaves them.
    let b = tmp.path().join("b");
    let ctx = RunContext {
        cache_root: tmp.path().join("cache"),
        progress: false,
        checkpoint_minutes: 0.0,
        ..RunContext::new(b.clone())
    };
    let mut sink = CancelAt {
        inner: VecSink::default(),
        at_step: 3,
        flag: ctx.cancel.clone(),
    };
    assert_eq!(
        run_trial(&cfg, &ctx, &mut sink).unwrap(),
        TrialEnd::Interrupted
    );
    let killed: String = std::fs::read_to_string(a.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| serde_json::from_str::<MetricRow>(l).unwrap().step <= 5)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(b.join("metrics.jsonl"), killed).unwrap();
    train(&b);
    assert_eq!(rows(&b), rows(&a), "rows after the checkpoint logged twice");
}

#[test]
fn bad_trial_configs_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let source = write_corpus(tmp.path());
    let ctx = RunContext {
        cache_root: tmp.path().join("cache"),
        ..RunContext::new(tmp.path().join("w"))
    };
    let cases: Vec<(TrialConfig, &str)> = vec![
        (
            TrialConfig {
                batch_size: 0,
                ..tiny_trial(&source)
            },
            "batch_size: must be positive",
        ),
        (
            TrialConfig {
                grad_accum: 0,
                ..tiny_trial(&source)
            },
            "grad_accum: must be positive",
        ),
        (
            TrialConfig {
                epochs: 0,
                ..tiny_trial(&source)
            },
            "epochs: must be positive",
        ),
        (
            TrialConfig {
                model: "gpt5".parse().unwrap(),
                ..tiny_trial(&source)
            },
            "unknown model preset",
        ),
        (
            TrialConfig {
                block_size: 300,
                ..tiny_trial(&source)
            },
            "exceeds the model's context",
        ),
        (
            TrialConfig {
                model: "distilgpt2".parse().unwrap(),
                n_layer: None,
                n_embd: None,
                n_head: None,
                ..tiny_trial(&source)
            },
            "needs the gpt2 tokenizer",
        ),
    ];
    for (cfg, want) in cases {
        let err = run_trial(&cfg, &ctx, &mut VecSink::default()).unwrap_err();
        assert!(err.to_string().contains(want), "{want:?} not in {err:#}");
        assert!(
            err.downcast_ref::<sweep::error::UsageError>().is_some(),
            "{err:#}"
        );
    }
    assert!(
        !ctx.work_dir.exists(),
        "nothing written for rejected configs"
    );

    // The plan agrees with the loop: 48 blocks cap / (4 x 2) = 6 steps per epoch, 2 epochs.
    let info = sweep::train::plan_info(&tiny_trial(&source), &ctx.cache_root).unwrap();
    assert_eq!((info.steps_per_epoch, info.total_steps), (6, 12));
    assert_eq!(info.train_tokens, 6 * 8 * 32);
    let capped = TrialConfig {
        max_steps: Some(5),
        ..tiny_trial(&source)
    };
    assert_eq!(
        sweep::train::plan_info(&capped, &ctx.cache_root)
            .unwrap()
            .total_steps,
        5
    );
    let env = sweep::train::environment(&ctx);
    assert_eq!(env["backend"], "flex/cpu");
}

// ---------------------------------------------------------------------------------------------
// CLI: bad input exits 2 with a message naming the problem.

fn sweep_cmd() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("sweep").unwrap()
}

#[test]
fn cli_rejects_bad_train_and_eval_input() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    sweep_cmd()
        .args(["train", "--set", "model=gpt5", "--out"])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("missing field"));
    let source = write_corpus(tmp.path());
    let toml = tmp.path().join("run.toml");
    let cfg = TrialConfig {
        batch_size: 0,
        ..tiny_trial(&source)
    };
    std::fs::write(&toml, toml::to_string(&cfg).unwrap()).unwrap();
    sweep_cmd()
        .args(["train", "--no-progress", "--config"])
        .arg(&toml)
        .arg("--out")
        .arg(&out)
        .arg("--cache")
        .arg(tmp.path().join("cache"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains("batch_size: must be positive"));
    sweep_cmd()
        .args(["train", "--config"])
        .arg(&toml)
        .args(["--set", "batch_size=2", "--set", "model=gpt5", "--out"])
        .arg(&out)
        .arg("--cache")
        .arg(tmp.path().join("cache"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains("unknown model preset `gpt5`"));
    assert!(!out.join("model").exists());

    // A model without tokenizer files, then with a tokenizer of the wrong size.
    let text = tmp.path().join("t.txt");
    std::fs::write(&text, "some text to evaluate ".repeat(50)).unwrap();
    let golden = golden_dir().join("model");
    sweep_cmd()
        .args(["eval", "--model"])
        .arg(&golden)
        .arg("--file")
        .arg(&text)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("no tokenizer files"));
    let model = tmp.path().join("m");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(golden.join(f), model.join(f)).unwrap();
    }
    sweep::tokenizer::Tokenizer::gpt2()
        .unwrap()
        .save_hf(&model)
        .unwrap();
    sweep_cmd()
        .args(["eval", "--model"])
        .arg(&model)
        .arg("--file")
        .arg(&text)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("do not belong together"));
    sweep_cmd()
        .args(["eval", "--model"])
        .arg(&model)
        .args(["--block-size", "65", "--file"])
        .arg(&text)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--block-size 65"));
    sweep_cmd()
        .args(["eval", "--model", "gpt2-tiny", "--file"])
        .arg(&text)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("from-scratch preset"));
}
