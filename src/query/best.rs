//! `sweep best SWEEP`: the best trial of a sweep by its search metric, with its configuration as a
//! TOML snippet to paste into `[base]` (or as JSON). With seed replicates the best *row* wins, by
//! its mean over seeds, so one lucky seed does not pick the configuration.

use crate::config::{checkout_of, spelled_in};
use crate::error::UsageError;
use crate::search::{Direction, METRICS};
use crate::stats::Summary;
use crate::store::{SweepRecords, SweepTrial, TrialState};
use crate::trial::{key_rule, KeyKind};
use anyhow::Result;
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};

/// The best completed trial of a sweep and what it was chosen by.
#[derive(Debug, Clone, PartialEq)]
pub struct Best<'a> {
    pub trial: &'a SweepTrial,
    pub metric: String,
    pub direction: Direction,
    /// The trial's value, or with replicates the row's mean over its seeds.
    pub value: f64,
    /// The seeds behind `value` (1 without replicates).
    pub n: usize,
    /// With replicates: the half-width of the mean's 95% interval.
    pub half_width: Option<f64>,
    /// Trials of the sweep by state, for the header line.
    pub completed: usize,
    pub pruned: usize,
    pub total: usize,
}

/// The objective: the search's, else `--metric` (default `valid_ppl`, minimised).
fn objective(r: &SweepRecords, metric: Option<&str>) -> Result<(String, Direction)> {
    let search = r.sweep.spec.get("search").filter(|s| !s.is_null());
    let recorded = search.and_then(|s| s.get("metric")).and_then(Json::as_str);
    let direction = search
        .and_then(|s| s.get("direction"))
        .and_then(|d| serde_json::from_value(d.clone()).ok())
        .unwrap_or_default();
    let metric = metric.or(recorded).unwrap_or("valid_ppl").to_string();
    if !METRICS.contains(&metric.as_str()) {
        return Err(UsageError(format!(
            "--metric {metric}: unknown metric; fix: use one of: {}",
            METRICS.join(", ")
        ))
        .into());
    }
    let direction = match metric.as_str() {
        _ if recorded == Some(metric.as_str()) => direction,
        "tokens_per_s" => Direction::Maximize,
        _ => Direction::Minimize,
    };
    Ok((metric, direction))
}

/// A row of a sweep: its trials' label without `seed`.
type RowKey = serde_json::Map<String, Json>;

/// The best completed trial (the first of equals, by position); with seed replicates, the first
/// trial of the row with the best mean.
pub fn best<'a>(r: &'a SweepRecords, metric: Option<&str>) -> Result<Best<'a>> {
    let (metric, direction) = objective(r, metric)?;
    let count = |s: TrialState| r.trials.iter().filter(|t| t.state == s).count();
    // Rows (label without seed) in position order, each with its completed values.
    let mut rows: Vec<(RowKey, Vec<(&SweepTrial, f64)>)> = Vec::new();
    for t in r.trials.iter().filter(|t| t.state == TrialState::Completed) {
        let Some(v) = t.results.get(&metric).filter(|v| v.is_finite()) else {
            continue;
        };
        let key = t.row_key();
        match rows.iter_mut().find(|(k, _)| *k == key) {
            Some((_, vs)) => vs.push((t, v)),
            None => rows.push((key, vec![(t, v)])),
        }
    }
    let mut best: Option<(&SweepTrial, Summary)> = None;
    for (_, vs) in &rows {
        let values: Vec<f64> = vs.iter().map(|(_, v)| *v).collect();
        let Some(s) = Summary::of(&values) else {
            continue;
        };
        if best.is_none_or(|(_, b)| direction.better(s.mean, b.mean)) {
            best = Some((vs[0].0, s));
        }
    }
    let Some((trial, s)) = best else {
        return Err(UsageError(format!(
            "sweep {}: no completed trial has {metric} yet ({} trial(s): {} completed, {} \
             pruned); fix: run it first (`sweep run FILE`), see `sweep status {}`",
            r.sweep.name,
            r.trials.len(),
            count(TrialState::Completed),
            count(TrialState::Pruned),
            r.sweep.name
        ))
        .into());
    };
    Ok(Best {
        trial,
        metric,
        direction,
        value: s.mean,
        n: s.n,
        half_width: s.half_width(),
        completed: count(TrialState::Completed),
        pruned: count(TrialState::Pruned),
        total: r.trials.len(),
    })
}

/// Where the TOML snippet is meant to go: a sweep file's directory and the checkout it is in,
/// which decide how its paths are written ([`spelled_in`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PasteTarget {
    /// The sweep file as given (for the snippet's comment).
    pub file: PathBuf,
    pub dir: PathBuf,
    pub root: PathBuf,
}

impl PasteTarget {
    /// The sweep file `file` and those beside it (a relative path is from the working directory).
    /// An absolute `file` inside its project (the one the sweep was recorded from) is named from
    /// the project's root, so the snippet's comment names no path of this machine.
    pub fn beside(file: &Path) -> PasteTarget {
        let abs = crate::util::absolute_clean(file);
        let dir = abs.parent().map(Path::to_path_buf).unwrap_or(abs.clone());
        let root = checkout_of(&dir);
        let file = match abs.strip_prefix(&root) {
            Ok(inside) if file.is_absolute() => inside.to_path_buf(),
            _ => file.to_path_buf(),
        };
        PasteTarget { file, root, dir }
    }

    /// A path value of the config as a sweep file there spells it.
    fn spell(&self, v: &Json) -> Json {
        match v.as_str() {
            Some(s) if Path::new(s).is_absolute() => Json::String(
                spelled_in(Path::new(s), &self.dir, &self.root)
                    .display()
                    .to_string(),
            ),
            _ => v.clone(),
        }
    }

    /// The config with its paths spelled for here: the files of `data.sources` (and any other
    /// key whose rule says paths) and a checkpoint directory given as `model`.
    fn config(&self, config: &Json) -> Json {
        let mut out = config.clone();
        let Some(map) = out.as_object_mut() else {
            return out;
        };
        for (k, v) in map.iter_mut() {
            match key_rule(k).map(|r| r.kind) {
                Some(KeyKind::Model) => *v = self.spell(v),
                Some(KeyKind::DataTable) => {
                    for (dk, dv) in v.as_object_mut().into_iter().flatten() {
                        if key_rule(&format!("data.{dk}")).map(|r| r.kind) == Some(KeyKind::Paths) {
                            for item in dv.as_array_mut().into_iter().flatten() {
                                *item = self.spell(item);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// The config keys in the order a `[base]` reads best: the trial's label keys (what the sweep
/// varied) first, then the rest; `data` last, as its own table. Paths are spelled for `target`.
fn ordered_config(b: &Best, target: Option<&PasteTarget>) -> Vec<(String, Json)> {
    let config = match target {
        Some(t) => t.config(&b.trial.config),
        None => b.trial.config.clone(),
    };
    let config = config.as_object().cloned().unwrap_or_default();
    let mut out: Vec<(String, Json)> = Vec::new();
    for k in b.trial.label_map().keys() {
        if let Some(v) = config.get(k) {
            out.push((k.clone(), v.clone()));
        }
    }
    for (k, v) in &config {
        if k != "data" && !v.is_null() && !out.iter().any(|(o, _)| o == k) {
            out.push((k.clone(), v.clone()));
        }
    }
    if let Some(d) = config.get("data") {
        out.push(("data".into(), d.clone()));
    }
    out
}

/// One `key = value` line; tables inline (`data = { ... }`), so the snippet stays inside `[base]`.
fn toml_line(key: &str, v: &Json) -> Result<String> {
    let value = match v {
        Json::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| Ok(format!("{k} = {}", toml::Value::try_from(x)?)))
                .collect::<Result<_>>()?;
            format!("{{ {} }}", parts.join(", "))
        }
        other => toml::Value::try_from(other)?.to_string(),
    };
    Ok(format!("{key} = {value}\n"))
}

/// A TOML snippet for `[base]`, with a comment saying where it comes from; its paths are
/// written for a sweep file in `target` (absolute without one).
pub fn to_toml(b: &Best, sweep: &str, target: Option<&PasteTarget>) -> Result<String> {
    let body: String = ordered_config(b, target)
        .iter()
        .map(|(k, v)| toml_line(k, v))
        .collect::<Result<_>>()?;
    let value = match b.half_width {
        Some(h) => format!("{} ± {h} (mean of {} seeds, 95% interval)", b.value, b.n),
        None => b.value.to_string(),
    };
    let place = match target {
        Some(t) => format!(
            "# paths are written for a sweep file beside {}\n",
            t.file.display()
        ),
        None => String::new(),
    };
    Ok(format!(
        "# best of sweep {sweep}: trial {} [{}], {} = {value} ({}; {} trial(s): {} completed, {} \
         pruned)\n{place}# paste under [base]:\n{body}",
        b.trial.id,
        b.trial.short_hash(),
        b.metric,
        b.direction.as_str(),
        b.total,
        b.completed,
        b.pruned
    ))
}

pub fn to_json(b: &Best, sweep: &str) -> Json {
    json!({
        "sweep": sweep,
        "trial": b.trial.id,
        "hash": b.trial.hash,
        "metric": b.metric,
        "direction": b.direction,
        "value": b.value,
        "n": b.n,
        "half_width": b.half_width,
        "label": b.trial.label,
        "config": b.trial.config,
        "trials": {"total": b.total, "completed": b.completed, "pruned": b.pruned},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SweepRecord, TrialRecord, TrialResults};

    fn trial(id: i64, state: TrialState, ppl: Option<f64>, lr: f64) -> SweepTrial {
        SweepTrial {
            position: id,
            label: json!({"learning_rate": lr}),
            trial: TrialRecord {
                id,
                hash: format!("{id:0>12}"),
                state,
                config: json!({"model": "gpt2-tiny", "learning_rate": lr, "max_steps": null,
                               "data": {"sources": ["/d/x.tsv"], "split": [9.0, 0.5, 0.5]},
                               "batch_size": 8}),
                results: TrialResults {
                    valid_ppl: ppl,
                    valid_loss: ppl.map(f64::ln),
                    tokens_per_s: ppl.map(|p| 1000.0 / p),
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn records(search: Json) -> SweepRecords {
        SweepRecords {
            sweep: SweepRecord {
                name: "s".into(),
                spec: json!({ "search": search }),
                ..Default::default()
            },
            trials: vec![
                trial(1, TrialState::Completed, Some(300.0), 1e-3),
                trial(2, TrialState::Pruned, None, 2e-3),
                trial(3, TrialState::Completed, Some(250.0), 3e-3),
                trial(4, TrialState::Completed, Some(f64::NAN), 4e-3),
            ],
            metrics: vec![],
            samples: vec![],
        }
    }

    #[test]
    fn picks_by_the_search_metric_and_direction() {
        let r = records(json!({"metric": "valid_ppl", "direction": "minimize"}));
        let b = best(&r, None).unwrap();
        assert_eq!(
            (b.trial.id, b.value, b.pruned, b.completed),
            (3, 250.0, 1, 3)
        );
        let r = records(json!({"metric": "valid_ppl", "direction": "maximize"}));
        assert_eq!(best(&r, None).unwrap().trial.id, 1);
        // --metric overrides; tokens/s is maximised.
        let r = records(Json::Null);
        assert_eq!(best(&r, Some("tokens_per_s")).unwrap().trial.id, 3);
        assert!(best(&r, Some("bogus")).is_err());
    }

    #[test]
    fn the_snippet_is_toml_for_base_with_the_searched_keys_first() {
        let r = records(json!({"metric": "valid_ppl"}));
        let b = best(&r, None).unwrap();
        let text = to_toml(&b, "s", None).unwrap();
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(body.starts_with("learning_rate = 0.003\n"), "{text}");
        assert!(body.ends_with("split = [9.0, 0.5, 0.5] }"), "{body}");
        let parsed: toml::Table = toml::from_str(&body).unwrap();
        assert_eq!(parsed["batch_size"].as_integer(), Some(8));
        assert_eq!(parsed["data"]["sources"][0].as_str(), Some("/d/x.tsv"));
        assert!(!parsed.contains_key("max_steps"), "nulls are left out");
        assert_eq!(to_json(&b, "s")["value"], json!(250.0));
    }

    #[test]
    fn with_seeds_the_best_row_mean_wins_over_a_lucky_seed() {
        let mut r = records(json!({"metric": "valid_ppl"}));
        // Row lr=1e-3 gets seeds 1 and 2 (300, 200, 220: mean 240); row 3e-3 stays at 250 with
        // one seed. The single best trial (200) is in the first row, and so is the best mean.
        for (id, ppl) in [(5, 200.0), (6, 220.0)] {
            let mut t = trial(id, TrialState::Completed, Some(ppl), 1e-3);
            t.label = json!({"learning_rate": 1e-3, "seed": id});
            r.trials.push(t);
        }
        let b = best(&r, None).unwrap();
        assert_eq!((b.trial.id, b.n), (1, 3));
        assert!((b.value - 240.0).abs() < 1e-9);
        assert!(b.half_width.is_some_and(|h| h > 0.0));
        assert!(to_toml(&b, "s", None)
            .unwrap()
            .contains("(mean of 3 seeds, 95% interval)"));
        // A lucky seed: row 3e-3 now has 400 and 100 (mean 250). Its 100 is the best single
        // trial, but the row's mean loses to 1e-3's 240.
        let mut t = trial(7, TrialState::Completed, Some(100.0), 3e-3);
        t.label = json!({"learning_rate": 3e-3, "seed": 7});
        r.trials.push(t);
        r.trials[2].results.valid_ppl = Some(400.0);
        let b = best(&r, None).unwrap();
        assert_eq!((b.trial.id, b.n), (1, 3), "mean 240 beats mean 250");
    }

    #[test]
    fn paths_are_written_for_the_sweep_file_they_are_pasted_into() {
        let mut r = records(json!({"metric": "valid_ppl"}));
        r.trials[2].trial.config["model"] = json!("/d/models/ckpt");
        let b = best(&r, None).unwrap();
        let snippet = |dir: &str, root: &str| {
            let target = PasteTarget {
                file: PathBuf::from("sweeps/s.toml"),
                dir: dir.into(),
                root: root.into(),
            };
            let text = to_toml(&b, "s", Some(&target)).unwrap();
            assert!(text.contains("# paths are written for a sweep file beside sweeps/s.toml\n"));
            toml::from_str::<toml::Table>(&text).unwrap()
        };
        // Inside the project: relative to the file's directory, as the file resolves them.
        let t = snippet("/d/sweeps", "/d");
        assert_eq!(t["data"]["sources"][0].as_str(), Some("../x.tsv"));
        assert_eq!(t["model"].as_str(), Some("../models/ckpt"));
        // Outside it (data on a shared disk): absolute.
        let t = snippet("/d/sweeps", "/d/sweeps");
        assert_eq!(t["data"]["sources"][0].as_str(), Some("/d/x.tsv"));
        // A model name is not a path.
        let r = records(json!({"metric": "valid_ppl"}));
        let b = best(&r, None).unwrap();
        let target = PasteTarget {
            file: PathBuf::from("s.toml"),
            dir: "/d".into(),
            root: "/d".into(),
        };
        let t: toml::Table = toml::from_str(&to_toml(&b, "s", Some(&target)).unwrap()).unwrap();
        assert_eq!(t["model"].as_str(), Some("gpt2-tiny"));
        assert_eq!(t["data"]["sources"][0].as_str(), Some("x.tsv"));
    }
}
