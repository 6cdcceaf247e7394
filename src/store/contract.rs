//! The [`Store`] contract as executable checks, run against every implementation.
//!
//! Each check gets a fresh, empty store from `make`; `read_only` opens its URL a second time
//! through [`open_read_only`] and [`ReadOnlySql`]. `tests/sweep.rs` runs the suite against
//! SQLite, and against PostgreSQL when `SWEEP_TEST_PG_URL` is set.

use super::*;
use anyhow::{ensure, Result};
use serde_json::json;
use std::sync::Arc;

type Make<'a> = &'a dyn Fn() -> Result<Arc<dyn Store>>;
type Check = fn(Make) -> Result<()>;

/// Run every check; the first failure is returned with the check's name.
pub fn run_all(make: Make) -> Result<()> {
    let checks: [(&str, Check); 14] = [
        ("record_sweep", record_sweep),
        ("shared_trials", shared_trials),
        ("claim_is_exclusive", claim_is_exclusive),
        ("lifecycle", lifecycle),
        ("stale_worker_cannot_write", stale_worker_cannot_write),
        ("metrics_dedup", metrics_dedup),
        ("reset", reset),
        ("samples", samples),
        ("sweep_reads", sweep_reads),
        ("sweep_curves", sweep_curves),
        ("read_only", read_only),
        ("append_is_a_compare_and_set", append_is_a_compare_and_set),
        (
            "record_sweep_row_keeps_trials",
            record_sweep_row_keeps_trials,
        ),
        ("pruned", pruned),
    ];
    for (name, check) in checks {
        check(make).map_err(|e| e.context(format!("store contract check `{name}` failed")))?;
    }
    Ok(())
}

fn sweep(name: &str) -> NewSweep {
    NewSweep {
        name: name.into(),
        title: Some("T".into()),
        description: None,
        file: Some("x.toml".into()),
        profile: None,
        kind: "ablation".into(),
        spec: json!({"axes": [], "references": [{"valid_ppl": 21.9143}]}),
    }
}

fn trial(hash: &str, label: Json, is_baseline: bool) -> NewTrial {
    NewTrial {
        hash: hash.into(),
        config: json!({"model": "gpt2-tiny", "hash_for_test": hash}),
        label,
        is_baseline,
    }
}

fn metric(step: i64, split: &str, loss: f64) -> NewMetric {
    NewMetric {
        step,
        epoch: step as f64 / 10.0,
        split: split.into(),
        loss,
        ppl: loss.exp(),
        tokens_seen: step * 100,
        lr: 1e-3,
        tokens_per_s: 50.0,
    }
}

fn record_sweep(make: Make) -> Result<()> {
    let s = make()?;
    let trials = [
        trial("aaa", json!({"block_size": 512}), true),
        trial("bbb", json!({"block_size": 256}), false),
    ];
    let r = s.record_sweep(&sweep("t4"), &trials)?;
    ensure!(
        r.trial_ids.len() == 2 && r.created == 2,
        "two new trials: {r:?}"
    );
    let sw = s
        .sweep_by_name("t4")?
        .ok_or_else(|| anyhow::anyhow!("sweep missing"))?;
    ensure!(sw.id == r.sweep_id && sw.kind.as_deref() == Some("ablation"));
    ensure!(
        sw.spec["references"][0]["valid_ppl"] == json!(21.9143),
        "spec kept"
    );
    let st = s.sweep_trials(r.sweep_id)?;
    ensure!(st.len() == 2, "membership");
    ensure!(st[0].trial.hash == "aaa" && st[0].is_baseline && st[0].position == 0);
    ensure!(st[1].label == json!({"block_size": 256}) && !st[1].is_baseline);
    ensure!(st[0].trial.state == TrialState::Pending && st[0].trial.attempts == 0);
    // Re-recording with a different membership replaces it and keeps one sweep row.
    let r2 = s.record_sweep(&sweep("t4"), &trials[1..])?;
    ensure!(r2.sweep_id == r.sweep_id && r2.created == 0);
    ensure!(
        s.sweep_trials(r.sweep_id)?.len() == 1,
        "membership replaced"
    );
    ensure!(s.sweeps()?.len() == 1);
    ensure!(s.sweep_by_name("nope")?.is_none());
    Ok(())
}

fn shared_trials(make: Make) -> Result<()> {
    let s = make()?;
    let a = s.record_sweep(
        &sweep("t3"),
        &[trial("base", json!({}), true), trial("x", json!({}), false)],
    )?;
    let id = a.trial_ids[0];
    let c = s
        .claim_trial(id, "w1", "cpu")?
        .ok_or_else(|| anyhow::anyhow!("claim"))?;
    ensure!(c.state == TrialState::Running);
    let b = s.record_sweep(
        &sweep("t5"),
        &[trial("base", json!({}), true), trial("y", json!({}), false)],
    )?;
    ensure!(
        b.trial_ids[0] == id && b.created == 1,
        "baseline shared, not duplicated"
    );
    ensure!(
        s.trial(id)?.map(|t| t.state) == Some(TrialState::Running),
        "re-recording keeps the state of known trials"
    );
    ensure!(s.trial_by_hash("base")?.map(|t| t.id) == Some(id));
    Ok(())
}

fn claim_is_exclusive(make: Make) -> Result<()> {
    let s = make()?;
    let r = s.record_sweep(&sweep("c"), &[trial("h", json!({}), false)])?;
    let id = r.trial_ids[0];
    let winners: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                scope.spawn(move || s.claim_trial(id, &format!("w{i}"), "cpu"))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("claim thread panicked"))?
                    .map(|c| c.is_some())
            })
            .collect::<Result<Vec<_>>>()
    })?;
    ensure!(
        winners.iter().filter(|w| **w).count() == 1,
        "exactly one claim wins: {winners:?}"
    );
    let t = s.trial(id)?.ok_or_else(|| anyhow::anyhow!("trial"))?;
    ensure!(t.attempts == 1 && t.state == TrialState::Running);
    ensure!(
        s.claim_trial(id, "late", "cpu")?.is_none(),
        "running is not claimable"
    );
    Ok(())
}

fn lifecycle(make: Make) -> Result<()> {
    let s = make()?;
    let r = s.record_sweep(&sweep("l"), &[trial("h", json!({}), false)])?;
    let id = r.trial_ids[0];
    ensure!(!s.heartbeat(id, "w")?, "no heartbeat before a claim");
    s.claim_trial(id, "w", "cpu")?;
    ensure!(s.heartbeat(id, "w")?, "owner heartbeats");
    s.set_env(id, &json!({"backend": "flex"}))?;
    // Interrupted -> claimable again, attempts counts claims.
    ensure!(s.finish_trial(id, "w", &Outcome::Interrupted { error: None })?);
    ensure!(s.trial(id)?.map(|t| t.state) == Some(TrialState::Interrupted));
    s.claim_trial(id, "w2", "cpu")?
        .ok_or_else(|| anyhow::anyhow!("reclaim interrupted"))?;
    ensure!(s.finish_trial(
        id,
        "w2",
        &Outcome::Failed {
            error: "boom".into(),
            exit_status: Some(101)
        }
    )?);
    let t = s.trial(id)?.ok_or_else(|| anyhow::anyhow!("trial"))?;
    ensure!(
        t.state == TrialState::Failed
            && t.error.as_deref() == Some("boom")
            && t.exit_status == Some(101)
    );
    s.claim_trial(id, "w3", "cpu")?
        .ok_or_else(|| anyhow::anyhow!("reclaim failed"))?;
    let results = TrialResults {
        train_loss: Some(3.0),
        valid_loss: Some(3.1),
        valid_ppl: Some(3.1f64.exp()),
        tokens_per_s: Some(100.0),
        peak_rss_bytes: Some(1 << 30),
        ..Default::default()
    };
    ensure!(s.finish_trial(
        id,
        "w3",
        &Outcome::Completed {
            results: results.clone(),
            artifact_dir: Some("results/trials/h".into())
        }
    )?);
    let t = s.trial(id)?.ok_or_else(|| anyhow::anyhow!("trial"))?;
    ensure!(t.state == TrialState::Completed && t.attempts == 3 && t.error.is_none());
    ensure!(t.results == results, "results stored: {:?}", t.results);
    ensure!(t.env == Some(json!({"backend": "flex"})));
    ensure!(t.artifact_dir.as_deref() == Some("results/trials/h"));
    ensure!(t.finished_at.is_some() && t.started_at.is_some());
    ensure!(
        s.claim_trial(id, "w4", "cpu")?.is_none(),
        "completed is not claimable"
    );
    ensure!(s.trials_in_state(TrialState::Completed)?.len() == 1);
    ensure!(s.trials_in_state(TrialState::Running)?.is_empty());
    Ok(())
}

fn stale_worker_cannot_write(make: Make) -> Result<()> {
    let s = make()?;
    let r = s.record_sweep(&sweep("s"), &[trial("h", json!({}), false)])?;
    let id = r.trial_ids[0];
    s.claim_trial(id, "old", "cpu")?;
    // The scheduler finds "old" dead and marks it interrupted; a new worker takes over.
    ensure!(s.finish_trial(
        id,
        "old",
        &Outcome::Interrupted {
            error: Some("worker gone".into())
        }
    )?);
    s.claim_trial(id, "new", "cpu")?;
    ensure!(
        !s.heartbeat(id, "old")?,
        "old worker's heartbeat is refused"
    );
    ensure!(
        !s.finish_trial(
            id,
            "old",
            &Outcome::Failed {
                error: "late".into(),
                exit_status: None
            }
        )?,
        "old worker cannot finish the new attempt"
    );
    ensure!(s.trial(id)?.map(|t| t.worker) == Some(Some("new".into())));
    Ok(())
}

fn metrics_dedup(make: Make) -> Result<()> {
    let s = make()?;
    let r = s.record_sweep(&sweep("m"), &[trial("h", json!({}), false)])?;
    let id = r.trial_ids[0];
    let batch: Vec<_> = (1..=5)
        .map(|i| metric(i, "train", 5.0 - i as f64 * 0.1))
        .collect();
    ensure!(s.insert_metrics(id, &batch)? == 5);
    // A resume re-sends steps 4-5 (different values must not overwrite) and adds 6.
    let again = vec![
        metric(4, "train", 9.0),
        metric(5, "train", 9.0),
        metric(6, "train", 4.0),
        metric(5, "valid", 4.5),
    ];
    ensure!(s.insert_metrics(id, &again)? == 2, "duplicates ignored");
    let all = s.metrics(id)?;
    ensure!(all.len() == 7);
    ensure!(
        all.iter()
            .filter(|m| m.split == "train")
            .map(|m| m.step)
            .collect::<Vec<_>>()
            == vec![1, 2, 3, 4, 5, 6]
    );
    ensure!(
        (all.iter()
            .find(|m| m.split == "train" && m.step == 4)
            .map(|m| m.loss)
            .unwrap_or(0.0)
            - 4.6)
            .abs()
            < 1e-12
    );
    ensure!(s.last_metric(id, "train")?.map(|m| m.step) == Some(6));
    ensure!(s.last_metric(id, "test")?.is_none());
    ensure!(s.insert_metrics(id, &[])? == 0);
    Ok(())
}

fn reset(make: Make) -> Result<()> {
    let s = make()?;
    let r = s.record_sweep(&sweep("r"), &[trial("h", json!({}), false)])?;
    let id = r.trial_ids[0];
    s.claim_trial(id, "w", "cpu")?;
    s.insert_metrics(id, &[metric(1, "train", 3.0)])?;
    ensure!(!s.reset_trial(id)?, "no reset while running");
    s.finish_trial(
        id,
        "w",
        &Outcome::Completed {
            results: TrialResults {
                valid_loss: Some(1.0),
                ..Default::default()
            },
            artifact_dir: None,
        },
    )?;
    ensure!(s.reset_trial(id)?);
    let t = s.trial(id)?.ok_or_else(|| anyhow::anyhow!("trial"))?;
    ensure!(t.state == TrialState::Pending && t.results == TrialResults::default());
    ensure!(s.metrics(id)?.is_empty(), "metrics deleted on reset");
    Ok(())
}

fn samples(make: Make) -> Result<()> {
    let s = make()?;
    let r = s.record_sweep(&sweep("g"), &[trial("h", json!({}), false)])?;
    let id = r.trial_ids[0];
    let a = NewSample {
        trial_id: id,
        title: "Attention Is All You Need".into(),
        reference: Some("The dominant ...".into()),
        text: "We propose ...".into(),
        params: json!({"top_p": 0.9}),
        seed: Some(7),
        uses_acronym: Some(true),
    };
    let b = NewSample {
        reference: None,
        seed: None,
        uses_acronym: None,
        ..a.clone()
    };
    let ia = s.insert_sample(&a)?;
    let ib = s.insert_sample(&b)?;
    ensure!(ib > ia);
    let got = s.samples(id)?;
    ensure!(
        got.len() == 2 && got[0].sample == a && got[1].sample == b,
        "{got:?}"
    );
    Ok(())
}

fn sample(trial_id: i64, text: &str) -> NewSample {
    NewSample {
        trial_id,
        title: "T".into(),
        reference: None,
        text: text.into(),
        params: json!({}),
        seed: None,
        uses_acronym: None,
    }
}

fn sweep_reads(make: Make) -> Result<()> {
    let s = make()?;
    let a = s.record_sweep(
        &sweep("a"),
        &[trial("a2", json!({}), false), trial("a1", json!({}), true)],
    )?;
    let b = s.record_sweep(&sweep("b"), &[trial("b1", json!({}), false)])?;
    let (a2, a1, b1) = (a.trial_ids[0], a.trial_ids[1], b.trial_ids[0]);
    s.insert_metrics(a1, &[metric(2, "valid", 3.0), metric(1, "train", 3.5)])?;
    s.insert_metrics(a2, &[metric(3, "train", 3.0), metric(1, "train", 4.0)])?;
    s.insert_metrics(b1, &[metric(1, "train", 9.0)])?;
    for (t, text) in [(a2, "x"), (b1, "y"), (a1, "z"), (a2, "w")] {
        s.insert_sample(&sample(t, text))?;
    }
    let got: Vec<(i64, String, i64)> = s
        .sweep_metrics(a.sweep_id)?
        .into_iter()
        .map(|m| (m.trial_id, m.split, m.step))
        .collect();
    let mut want = vec![
        (a1, "train".to_string(), 1),
        (a1, "valid".to_string(), 2),
        (a2, "train".to_string(), 1),
        (a2, "train".to_string(), 3),
    ];
    want.sort();
    ensure!(got == want, "sweep metrics by trial, split, step: {got:?}");
    let texts: Vec<(i64, String)> = s
        .sweep_samples(a.sweep_id)?
        .into_iter()
        .map(|x| (x.trial_id, x.sample.text))
        .collect();
    let mut want = vec![
        (a2, "x".to_string()),
        (a2, "w".to_string()),
        (a1, "z".into()),
    ];
    want.sort_by_key(|w| w.0);
    ensure!(texts == want, "sweep samples by trial, then id: {texts:?}");
    ensure!(s.sweep_metrics(b.sweep_id)?.len() == 1 && s.sweep_samples(b.sweep_id)?.len() == 1);
    Ok(())
}

/// Two full series of 10 train steps, one pruned after 4, two valid rows each, and a trial of
/// another sweep; thinned by the series budget, by the split budget, and not at all.
fn sweep_curves(make: Make) -> Result<()> {
    let s = make()?;
    let a = s.record_sweep(
        &sweep("a"),
        &[
            trial("c1", json!({}), true),
            trial("c2", json!({}), false),
            trial("c3", json!({}), false),
        ],
    )?;
    let other = s.record_sweep(&sweep("b"), &[trial("d1", json!({}), false)])?;
    let series = |steps: std::ops::RangeInclusive<i64>| -> Vec<NewMetric> {
        let mut v: Vec<NewMetric> = steps.map(|st| metric(st * 10, "train", 1.0)).collect();
        v.extend([metric(50, "valid", 2.0), metric(100, "valid", 1.5)]);
        v
    };
    let [c1, c2, c3] = [a.trial_ids[0], a.trial_ids[1], a.trial_ids[2]];
    s.insert_metrics(c1, &series(1..=10))?;
    s.insert_metrics(c3, &series(1..=10))?;
    s.insert_metrics(c2, &series(1..=4))?;
    s.insert_metrics(other.trial_ids[0], &series(1..=10))?;
    let got = |per_series: usize, per_split: usize| -> Result<Vec<(i64, String, i64)>> {
        let b = CurveBudget {
            per_series,
            per_split,
        };
        Ok(s.sweep_curves(a.sweep_id, b)?
            .into_iter()
            .map(|m| (m.trial_id, m.split, m.step))
            .collect())
    };
    let rows = |t: i64, split: &str, steps: &[i64]| -> Vec<(i64, String, i64)> {
        steps.iter().map(|&st| (t, split.to_string(), st)).collect()
    };
    let want = |train_full: &[i64], train_pruned: &[i64]| {
        let mut w = Vec::new();
        for (t, train) in [(c1, train_full), (c2, train_pruned), (c3, train_full)] {
            w.extend(rows(t, "train", train));
            w.extend(rows(t, "valid", &[50, 100]));
        }
        w.sort();
        w
    };
    // Whole: both budgets hold every row, in sweep_metrics' order.
    let all: Vec<(i64, String, i64)> = s
        .sweep_metrics(a.sweep_id)?
        .into_iter()
        .map(|m| (m.trial_id, m.split, m.step))
        .collect();
    ensure!(got(10, 1000)? == all, "within budget: {:?}", got(10, 1000)?);
    // 10 rows per series at most 3 -> stride 4: rows 1, 5, 9 and the last; the pruned series
    // keeps its first and last, at the same steps as the full ones; valid is whole.
    let by_series = got(3, 1000)?;
    let w = want(&[10, 50, 90, 100], &[10, 40]);
    ensure!(by_series == w, "per series: {by_series:?}, want {w:?}");
    // 24 train rows, at most 8 -> stride 3: rows 1, 4, 7, 10 (the last); 1, 4 of the pruned.
    let by_split = got(100, 8)?;
    let w = want(&[10, 40, 70, 100], &[10, 40]);
    ensure!(by_split == w, "per split: {by_split:?}, want {w:?}");
    Ok(())
}

fn read_only(make: Make) -> Result<()> {
    let s = make()?;
    let r = s.record_sweep(&sweep("ro"), &[trial("h", json!({"block_size": 64}), true)])?;
    let id = r.trial_ids[0];
    s.claim_trial(id, "w", "cpu")?;
    s.insert_metrics(id, &[metric(1, "train", 3.0), metric(2, "train", 2.5)])?;
    s.insert_sample(&sample(id, "x"))?;
    let ro = open_read_only(s.url())?;
    let records = load_sweep(ro.as_ref(), "ro")?;
    ensure!(records.sweep == s.sweep_by_name("ro")?.unwrap_or_default());
    ensure!(records.trials == s.sweep_trials(r.sweep_id)?);
    ensure!(records.trials[0].state == TrialState::Running);
    ensure!(records.metrics == s.metrics(id)? && records.samples == s.samples(id)?);
    let err = load_sweep(ro.as_ref(), "nope")
        .err()
        .map(|e| format!("{e:#}"));
    ensure!(
        err.as_deref() == Some("unknown sweep `nope`; known sweeps: ro"),
        "{err:?}"
    );
    // Raw SQL on the read-only connection reads, and every write is refused by the database.
    let sql = ReadOnlySql::open(s.url())?;
    ensure!(sql.fetch_all("SELECT * FROM metrics")?.len() == 2);
    for write in [
        "DELETE FROM metrics",
        "UPDATE trials SET state = 'pending'",
        "CREATE TABLE t (x INTEGER)",
    ] {
        ensure!(sql.fetch_all(write).is_err(), "{write} was not refused");
    }
    ensure!(
        s.metrics(id)?.len() == 2 && s.trial(id)?.map(|t| t.state) == Some(TrialState::Running)
    );
    Ok(())
}

fn append_is_a_compare_and_set(make: Make) -> Result<()> {
    let s = make()?;
    let sweep_id = s.record_sweep_row(&sweep("search"))?;
    ensure!(
        s.append_trial(sweep_id, 1, &trial("a", json!({}), false))?
            .is_none(),
        "position 1 of an empty sweep is refused"
    );
    // Eight workers append different suggestions at position 0: one wins.
    let won: Vec<Option<i64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                scope.spawn(move || {
                    s.append_trial(
                        sweep_id,
                        0,
                        &trial(&format!("p{i}"), json!({"i": i}), false),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("append thread panicked"))?
            })
            .collect::<Result<Vec<_>>>()
    })?;
    ensure!(
        won.iter().flatten().count() == 1,
        "exactly one append wins: {won:?}"
    );
    let members = s.sweep_trials(sweep_id)?;
    ensure!(members.len() == 1 && members[0].position == 0);
    ensure!(
        s.trials_in_state(TrialState::Pending)?.len() == 1,
        "the losers' trials were not inserted"
    );
    let first = members[0].trial.hash.clone();
    ensure!(
        s.append_trial(sweep_id, 1, &trial(&first, json!({}), false))?
            .is_none(),
        "a trial is a member once"
    );
    let id = s
        .append_trial(sweep_id, 1, &trial("b", json!({"lr": 1e-4}), false))?
        .ok_or_else(|| anyhow::anyhow!("append at position 1"))?;
    let members = s.sweep_trials(sweep_id)?;
    ensure!(members.len() == 2 && members[1].trial.id == id);
    ensure!(members[1].label == json!({"lr": 1e-4}));
    // A trial known from another sweep joins without a new row.
    let other = s.record_sweep(&sweep("grid"), &[trial("g", json!({}), false)])?;
    let gid = s.append_trial(sweep_id, 2, &trial("g", json!({}), false))?;
    ensure!(gid == Some(other.trial_ids[0]), "the known trial is reused");
    Ok(())
}

fn record_sweep_row_keeps_trials(make: Make) -> Result<()> {
    let s = make()?;
    let id = s.record_sweep_row(&sweep("search"))?;
    s.append_trial(id, 0, &trial("a", json!({}), false))?;
    let mut changed = sweep("search");
    changed.title = Some("new title".into());
    ensure!(s.record_sweep_row(&changed)? == id, "same sweep, same id");
    ensure!(s.sweep_trials(id)?.len() == 1, "its trials are kept");
    let row = s
        .sweep_by_name("search")?
        .ok_or_else(|| anyhow::anyhow!("sweep row"))?;
    ensure!(row.title.as_deref() == Some("new title"));
    Ok(())
}

fn pruned(make: Make) -> Result<()> {
    let s = make()?;
    let r = s.record_sweep(&sweep("p"), &[trial("h", json!({}), false)])?;
    let id = r.trial_ids[0];
    s.claim_trial(id, "w", "cpu")?;
    s.insert_metrics(id, &[metric(10, "valid", 4.0)])?;
    let why = "pruned by ASHA at rung 0 (step 10)".to_string();
    ensure!(s.finish_trial(id, "w", &Outcome::Pruned { error: why.clone() })?);
    let t = s.trial(id)?.ok_or_else(|| anyhow::anyhow!("trial"))?;
    ensure!(t.state == TrialState::Pruned && t.error == Some(why));
    s.insert_metrics(id, &[metric(10, "train", 4.5)])?;
    let valid = s.sweep_split_metrics(r.sweep_id, "valid")?;
    ensure!(valid.len() == 1 && valid[0].loss == 4.0 && valid[0].trial_id == id);
    ensure!(
        s.metrics(id)?.len() == 2,
        "a pruned trial keeps its metrics"
    );
    ensure!(s.claim_trial(id, "w2", "cpu")?.is_none(), "pruned is final");
    Ok(())
}
