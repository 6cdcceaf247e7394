//! `sweep bench-sampler --ask N...`: the cost of one real ask of a search
//! (`exec::search::Searcher::ask`: the history read from the ledger, the TPE suggestion, the new
//! trial's identity hash and its compare-and-set append) with N finished trials in a SQLite
//! ledger, on the real data (bench/RESULTS.md, issue 16).

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

use crate::exec::search::{Ask, Searcher};
use crate::exec::{record, Ledger};
use crate::store::{Outcome, Store, TrialResults};

/// A TPE search over `sweeps/lr_search.toml`'s space on `data`, with room for `budget` trials.
fn sweep_text(data: &Path, budget: usize) -> String {
    format!(
        r#"[sweep]
name = "ask_bench"
kind = "tpe"
[base]
model = "gpt2-tiny"
tokenizer = "bpe-1024"
data = {{ sources = [{data:?}], categories = ["cs.CL"] }}
block_size = 128
batch_size = 8
grad_accum = 1
learning_rate = 1e-3
weight_decay = 0.0
epochs = 3
[search]
trials = {budget}
startup = 10
metric = "valid_ppl"
[space]
learning_rate = {{ log_uniform = [1e-4, 1e-2] }}
warmup_steps = {{ int = [0, 100], step = 10 }}
weight_decay = {{ uniform = [0.0, 0.1] }}
batch_size = {{ choice = [2, 4, 8, 16] }}
"#
    )
}

/// A made-up valid PPL with a bowl at lr 3e-3 (the sampler needs values, not training).
fn value(config: &Value) -> f64 {
    let lr = config["learning_rate"].as_f64().unwrap_or(1e-3);
    150.0 + 40.0 * (lr.log10() + 2.5).powi(2) + config["weight_decay"].as_f64().unwrap_or(0.0)
}

/// Asks `n` suggestions and completes each with a made-up value; then times `repeats` asks.
pub fn ask_cost(data: &Path, cache_root: &Path, n: usize, repeats: usize) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("ask.toml");
    std::fs::write(&file, sweep_text(&std::path::absolute(data)?, n + repeats))?;
    let sweep = crate::config::load(&file, None, &[])?;
    let db = dir.path().join("ask.db");
    let ledger = Ledger::open(&db.display().to_string())?;
    let batch = record(&ledger, &sweep, &[], cache_root, None)?;
    let searcher = batch.search.first().context("not a search")?;
    let s = &*ledger.store;
    for _ in 0..n {
        let id = next(searcher, s)?;
        let t = s.trial(id)?.context("appended trial")?;
        s.claim_trial(id, "bench", "cpu")?;
        let results = TrialResults {
            valid_ppl: Some(value(&t.config)),
            ..Default::default()
        };
        s.finish_trial(
            id,
            "bench",
            &Outcome::Completed {
                results,
                artifact_dir: None,
            },
        )?;
    }
    let mut ms = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t0 = Instant::now();
        next(searcher, s)?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok(
        json!({"sampler": "sweep-tpe (Searcher::ask)", "finished": n, "repeats": repeats,
              "median_ms": ms[ms.len() / 2]}),
    )
}

fn next(searcher: &Searcher, s: &dyn Store) -> Result<i64> {
    match searcher.ask(s)? {
        Ask::Trial { id, .. } => Ok(id),
        other => anyhow::bail!("the search stopped asking: {other:?}"),
    }
}
