//! `sweep generate` end to end on tiny random models exported in HF layout: streaming output,
//! seeds, early stop at `<|endoftext|>`, the token limit, the ledger, held-out titles, bad input.

use assert_cmd::cargo::cargo_bin_cmd;
use predicates::prelude::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sweep::backend::Cpu;
use sweep::checkpoint::{self, NamedTensor};
use sweep::model::GptConfig;
use sweep::store::{self, NewSweep, NewTrial, Outcome, TrialResults};
use sweep::tokenizer::Tokenizer;

const EOT: usize = 50_256;

fn tiny(vocab: usize) -> GptConfig {
    GptConfig {
        vocab_size: vocab,
        n_positions: 64,
        n_embd: 16,
        n_layer: 1,
        n_head: 2,
        dropout: 0.0,
        layer_norm_epsilon: 1e-5,
    }
}

/// A random tiny model with GPT-2's tokenizer (+ the two special tokens) in `dir`.
fn export(dir: &Path, vocab: usize) {
    let cfg = tiny(vocab);
    let model = cfg.init::<Cpu>(&Default::default(), 11);
    let tok = Tokenizer::gpt2().unwrap();
    checkpoint::export_hf(&model, &cfg, Some(tok.eot_id()), dir, |d| tok.save_hf(d)).unwrap();
}

/// Rewrites the exported weights so that `<|endoftext|>` gets logit `eot_logit` at every position
/// and every other token about 0: the final LayerNorm outputs the constant unit vector e0
/// (gain 0, bias e0), and the tied head reads the logits off column 0 of the embedding.
fn make_eot_likely(dir: &Path, eot_logit: f32) {
    let file = dir.join("model.safetensors");
    let (mut tensors, _) = checkpoint::read_safetensors(&file).unwrap();
    let find =
        |ts: &mut Vec<NamedTensor>, name: &str| ts.iter().position(|t| t.name == name).unwrap();
    let g = find(&mut tensors, "transformer.ln_f.weight");
    tensors[g].data.iter_mut().for_each(|x| *x = 0.0);
    let b = find(&mut tensors, "transformer.ln_f.bias");
    tensors[b]
        .data
        .iter_mut()
        .enumerate()
        .for_each(|(i, x)| *x = if i == 0 { 1.0 } else { 0.0 });
    let w = find(&mut tensors, "transformer.wte.weight");
    let c = tensors[w].shape[1];
    tensors[w].data[EOT * c] = eot_logit;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    checkpoint::write_safetensors(&file, &tensors, meta).unwrap();
}

fn generate(args: &[&str]) -> assert_cmd::assert::Assert {
    let mut cmd = cargo_bin_cmd!("sweep");
    cmd.arg("generate")
        .env_remove("SWEEP_DB")
        .args(args)
        .assert()
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn streams_reproducible_samples_within_the_token_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    export(&model, 50_259);
    let m = path(&model);
    let run = |seed: &str| {
        let a = generate(&[
            "--model",
            m,
            "--title",
            "BERT: Pre-training of Deep Transformers",
            "-n",
            "3",
            "--seed",
            seed,
            "--max-new-tokens",
            "12",
            "--format",
            "json",
        ])
        .success();
        json_lines(&a.get_output().stdout)
    };
    let a = run("5");
    assert_eq!(a.len(), 3, "{a:?}");
    for (k, s) in a.iter().enumerate() {
        assert_eq!(s["seed"], json!(5 + k as u64));
        let n = s["tokens"].as_u64().unwrap();
        // A random model almost never says <|endoftext|> (p ~ 1/50259), so it runs to the limit.
        assert!(n <= 12, "{s}");
        assert!(
            n == 12 && s["stop"] == "max_tokens" || s["stop"] == "eot",
            "{s}"
        );
        assert!(
            s["uses_acronym"].is_boolean(),
            "BERT title has an acronym: {s}"
        );
    }
    assert_eq!(a, run("5"), "same seed, same text");
    assert_ne!(
        a[0]["text"],
        run("6")[0]["text"],
        "another seed, another text"
    );

    // Text mode streams the first sample and prints the others and the stop reasons.
    let out = generate(&[
        "--model",
        m,
        "--title",
        "Attention Is All You Need",
        "-n",
        "2",
        "--seed",
        "1",
        "--max-new-tokens",
        "7",
        "--top-k",
        "50",
        "--temperature",
        "0.8",
        "--repetition-penalty",
        "1.2",
    ])
    .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        stdout.contains("=== [1/1] Attention Is All You Need"),
        "{stdout}"
    );
    assert!(stdout.contains("--- sample 2/2 (seed 2)"), "{stdout}");
    assert_eq!(
        stdout.matches("[7 tokens, stop: max_tokens]").count(),
        2,
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("tok/s"), "{stderr}");

    // Without the KV cache the same seed gives the same tokens.
    let greedy = |extra: &[&str]| {
        let mut args = vec![
            "--model",
            m,
            "--title",
            "A title",
            "-n",
            "1",
            "--greedy",
            "--max-new-tokens",
            "9",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        let out = json_lines(&generate(&args).success().get_output().stdout);
        out[0]["text"].as_str().unwrap().to_string()
    };
    assert_eq!(greedy(&[]), greedy(&["--no-kv-cache"]));
    assert_eq!(
        greedy(&[]),
        greedy(&["--top-p", "0", "--seed", "4"]),
        "--top-p 0 is greedy"
    );
}

#[test]
fn a_model_that_favours_endoftext_stops_early() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    export(&model, 50_259);
    // e^11 / (e^11 + 50258) ~ 0.54 per step: lengths are geometric with mean ~0.85.
    make_eot_likely(&model, 11.0);
    let out = generate(&[
        "--model",
        path(&model),
        "--title",
        "Anything",
        "-n",
        "8",
        "--seed",
        "3",
        "--max-new-tokens",
        "50",
        "--top-p",
        "1.0",
        "--format",
        "json",
    ])
    .success();
    let samples = json_lines(&out.get_output().stdout);
    assert_eq!(samples.len(), 8);
    for s in &samples {
        assert_eq!(s["stop"], "eot", "{s}");
        assert!(s["tokens"].as_u64().unwrap() < 50, "{s}");
    }
    let total: u64 = samples.iter().map(|s| s["tokens"].as_u64().unwrap()).sum();
    println!("eot-favouring model: {total} tokens over 8 samples (limit 50 each)");
    assert!(
        total < 8 * 5,
        "mean length {} should be ~0.85",
        total as f64 / 8.0
    );
}

const HEADER: &str = "\tabstract\tacm_class\tarxiv_id\tauthor_text\tcategories\tcomments\tcreated\tdoi\tnum_authors\tnum_categories\tprimary_cat\ttitle\tupdated\tcategories_list\n";

/// 40 papers in date order; the 10 newest (the test split at 2:1:1) alternate `ACRONYM: ...`
/// titles whose abstracts use the acronym, and plain titles.
fn corpus(dir: &Path) -> PathBuf {
    let mut t = HEADER.to_string();
    for i in 0..40 {
        let (title, abs) = if i >= 30 && i % 2 == 0 {
            (
                format!("XYZ{i}Net: A Network Number {i}"),
                format!("We present XYZ{i}Net, model {i}."),
            )
        } else {
            (
                format!("Paper number {i} on parsing"),
                format!("We study parsing problem {i}."),
            )
        };
        let date = format!("2018-{:02}-{:02}", 1 + i / 28, 1 + i % 28);
        t += &format!(
            "7\t{abs}\t\t1805.{i:05}\tA. Author\tcs.CL\t\t{date}\t\t1\t1\tcs.CL\t{title}\t\t[]\n"
        );
    }
    let p = dir.join("papers.tsv");
    std::fs::write(&p, t).unwrap();
    p
}

#[test]
fn trials_store_samples_and_score_held_out_titles() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("sweep.db");
    let art = tmp.path().join("trial");
    export(&art.join("model"), 50_259);
    let tsv = corpus(tmp.path());
    let config = json!({
        "model": "gpt2-tiny", "data": {"sources": [tsv], "categories": ["cs.CL"], "split": [2.0, 1.0, 1.0]},
        "block_size": 64, "batch_size": 1, "grad_accum": 1, "learning_rate": 1e-3,
        "weight_decay": 0.0, "epochs": 1,
    });
    let st = store::open(path(&db)).unwrap();
    let sweep = NewSweep {
        name: "gen".into(),
        title: None,
        description: None,
        file: None,
        profile: None,
        kind: "ablation".into(),
        spec: json!({}),
    };
    let trial = |hash: &str| NewTrial {
        hash: hash.into(),
        config: config.clone(),
        label: json!({}),
        is_baseline: false,
    };
    let rec = st
        .record_sweep(&sweep, &[trial("done"), trial("pending")])
        .unwrap();
    let (done, pending) = (rec.trial_ids[0], rec.trial_ids[1]);
    st.claim_trial(done, "w", "cpu").unwrap().unwrap();
    let outcome = Outcome::Completed {
        results: TrialResults::default(),
        artifact_dir: Some(path(&art).into()),
    };
    assert!(st.finish_trial(done, "w", &outcome).unwrap());
    drop(st);
    let (dbs, ids) = (path(&db), done.to_string());
    let cache = tmp.path().join("cache");

    // --trial stores by default: title, params, seed, uses_acronym.
    generate(&[
        "--db",
        dbs,
        "--trial",
        &ids,
        "--title",
        "BERT: Pre-training",
        "-n",
        "2",
        "--seed",
        "9",
        "--max-new-tokens",
        "5",
        "--top-p",
        "0.8",
    ])
    .success()
    .stderr(predicate::str::contains(format!(
        "stored 2 samples for trial {done}"
    )));
    let st = store::open(path(&db)).unwrap();
    let samples = st.samples(done).unwrap();
    assert_eq!(samples.len(), 2);
    let s = &samples[1].sample;
    assert_eq!(
        (s.title.as_str(), s.seed, s.reference.as_deref()),
        ("BERT: Pre-training", Some(10), None)
    );
    assert_eq!(s.params["top_p"], json!(0.8));
    assert_eq!(s.params["tokens"], json!(5));
    assert_eq!(s.params["acronym"], json!("BERT"));
    assert!(s.uses_acronym.is_some());
    // --no-store writes nothing.
    generate(&[
        "--db",
        dbs,
        "--trial",
        &ids,
        "--title",
        "X",
        "-n",
        "1",
        "--max-new-tokens",
        "2",
        "--no-store",
    ])
    .success();
    assert_eq!(st.samples(done).unwrap().len(), 2);

    // Held-out titles: the first 4 of the test split, stored beside their real abstracts.
    let out = generate(&[
        "--db",
        dbs,
        "--trial",
        &ids,
        "--from-split",
        "test",
        "--count",
        "4",
        "-n",
        "1",
        "--seed",
        "1",
        "--max-new-tokens",
        "6",
        "--cache",
        path(&cache),
    ])
    .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    // Test split = papers 30..39; titles 30, 32 have acronyms, used by both real abstracts.
    assert!(stdout.contains("real 100% (2/2)"), "{stdout}");
    let rows = st.samples(done).unwrap();
    assert_eq!(rows.len(), 6);
    let held: Vec<_> = rows[2..].iter().map(|r| &r.sample).collect();
    assert_eq!(held[0].title, "XYZ30Net: A Network Number 30");
    assert_eq!(
        held[0].reference.as_deref(),
        Some("We present XYZ30Net, model 30.")
    );
    assert_eq!(held[0].params["reference_uses_acronym"], json!(true));
    assert_eq!(held[1].params["reference_uses_acronym"], Value::Null);
    assert_eq!(held[1].uses_acronym, None);
    assert_eq!(held[0].params["split"], json!("test"));
    // A random model does not write "XYZ30Net": the generated fraction is 0 of 2.
    assert!(stdout.contains("generated 0% (0/2)"), "{stdout}");

    // --acronym-titles keeps only `ACRONYM: ...` titles.
    let out = generate(&[
        "--db",
        dbs,
        "--trial",
        &ids,
        "--from-split",
        "test",
        "--count",
        "3",
        "--acronym-titles",
        "-n",
        "1",
        "--max-new-tokens",
        "3",
        "--no-store",
        "--format",
        "json",
        "--cache",
        path(&cache),
    ])
    .success();
    let titles: Vec<String> = json_lines(&out.get_output().stdout)
        .iter()
        .map(|s| s["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        titles,
        [
            "XYZ30Net: A Network Number 30",
            "XYZ32Net: A Network Number 32",
            "XYZ34Net: A Network Number 34"
        ]
    );

    // A trial that has not completed has no model.
    generate(&["--db", dbs, "--trial", &pending.to_string(), "--title", "T"])
        .code(2)
        .stderr(predicate::str::contains(format!(
            "trial {pending} (pending) has no exported model"
        )));
    // An unknown trial, and a ledger that does not exist (not created by the attempt).
    generate(&["--db", dbs, "--trial", "999", "--title", "T"])
        .code(2)
        .stderr(predicate::str::contains("no trial 999 in the ledger"));
    let missing = tmp.path().join("nope.db");
    generate(&["--db", path(&missing), "--trial", "1", "--title", "T"])
        .code(2)
        .stderr(predicate::str::contains("does not exist"));
    assert!(!missing.exists());
}

#[test]
fn bad_input_is_rejected_with_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    export(&model, 50_259);
    let m = path(&model);
    let cases: [(&[&str], &str); 9] = [
        (&["--title", "  "], "--title is empty"),
        (
            &["--title", "T", "--top-p", "1.5"],
            "--top-p 1.5 is outside (0, 1]",
        ),
        (&["--title", "T", "--top-p", "-0.1"], "outside (0, 1]"),
        (
            &["--title", "T", "--temperature", "0"],
            "--temperature 0 must be a positive number",
        ),
        (
            &["--title", "T", "--temperature", "-1"],
            "must be a positive number",
        ),
        (
            &["--title", "T", "--max-new-tokens", "0"],
            "--max-new-tokens must be at least 1",
        ),
        (&["--title", "T", "-n", "0"], "at least 1"),
        (&["--title", "T", "--store"], "--store needs --trial"),
        (&["--from-split", "test"], "needs --data DIR"),
    ];
    for (extra, msg) in cases {
        let mut args = vec!["--model", m];
        args.extend_from_slice(extra);
        generate(&args)
            .code(2)
            .stderr(predicate::str::contains(msg));
    }
    // Titles file: missing, and empty.
    let empty = tmp.path().join("titles.txt");
    std::fs::write(&empty, "\n  \n").unwrap();
    generate(&["--model", m, "--titles", path(&empty)])
        .code(2)
        .stderr(predicate::str::contains("no titles"));
    generate(&["--model", m, "--titles", "/no/such/file"])
        .code(2)
        .stderr(predicate::str::contains("cannot read"));
    // A title too long for the context window.
    let long = "word ".repeat(80);
    generate(&["--model", m, "--title", &long])
        .code(2)
        .stderr(predicate::str::contains("shorten the title"));
    // A model directory whose embedding does not match its tokenizer.
    let odd = tmp.path().join("odd");
    export(&odd, 50_300);
    generate(&["--model", path(&odd), "--title", "T"])
        .code(2)
        .stderr(predicate::str::contains(
            "has 50259 tokens but the model embeds 50300",
        ));
    // Missing model directory; neither source; a scratch preset without weights.
    generate(&["--model", "/no/such/dir", "--title", "T"])
        .code(2)
        .stderr(predicate::str::contains(
            "model `/no/such/dir`: no such checkpoint directory; fix:",
        ));
    generate(&["--title", "T"]).code(2);
    generate(&["--model", "gpt2-tiny", "--title", "T"])
        .code(2)
        .stderr(predicate::str::contains("without weights"));
}
