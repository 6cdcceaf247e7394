//! Sweep-level summaries for the report header and the index page: trial counts by state, time
//! spent, key-term usage of the samples, and their display formats.

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

use crate::store::SweepRecords;

/// Trials per state, and summed wall time split into GPU and CPU devices.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Totals {
    pub trials: usize,
    pub by_state: BTreeMap<String, usize>,
    pub gpu_seconds: f64,
    pub cpu_seconds: f64,
    pub first_started: Option<String>,
    pub last_finished: Option<String>,
}

pub fn totals(records: &SweepRecords) -> Totals {
    let mut t = Totals {
        trials: records.trials.len(),
        ..Default::default()
    };
    for tr in &records.trials {
        *t.by_state.entry(tr.state.to_string()).or_insert(0) += 1;
        let secs = tr.results.wall_seconds.unwrap_or(0.0);
        let dev = tr.device.as_deref().unwrap_or("cpu");
        if dev.starts_with("cuda") || dev.starts_with("gpu") || dev.starts_with("wgpu") {
            t.gpu_seconds += secs;
        } else {
            t.cpu_seconds += secs;
        }
        if let Some(s) = &tr.started_at {
            if t.first_started.as_ref().is_none_or(|f| s < f) {
                t.first_started = Some(s.clone());
            }
        }
        if let Some(f) = &tr.finished_at {
            if t.last_finished.as_ref().is_none_or(|l| f > l) {
                t.last_finished = Some(f.clone());
            }
        }
    }
    t
}

/// Overall sweep state for the index page: running > pending > failed/diverged > completed.
pub fn sweep_state(by_state: &BTreeMap<String, usize>) -> String {
    if by_state.is_empty() {
        return "empty".into();
    }
    for s in ["running", "pending", "interrupted", "failed", "diverged"] {
        if by_state.contains_key(s) {
            return if s == "failed" || s == "diverged" {
                "completed with failures".into()
            } else {
                s.into()
            };
        }
    }
    "completed".into()
}

/// `1h 02m 03s`, `4m 05s`, `12.3s`.
pub fn format_duration(secs: f64) -> String {
    if !secs.is_finite() {
        return "—".into();
    }
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h {:02}m {:02}s", s / 3600, (s % 3600) / 60, s % 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{secs:.1}s")
    }
}

/// `1.2 GiB`, `340.0 MiB`.
pub fn format_bytes(b: i64) -> String {
    let b = b as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    }
}

/// The paper's §4.6 finding, measured: of the samples generated for acronym titles
/// (`ACRONYM: full name`), how many use the acronym, next to the real abstracts of those titles.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KeyTermScore {
    pub trial_id: i64,
    /// Generated samples whose title has an acronym.
    pub generated: usize,
    pub generated_using: usize,
    /// Distinct titles with a real abstract and an acronym.
    pub real: usize,
    pub real_using: usize,
}

/// One score per trial that has samples with an acronym title (`uses_acronym` set). The real side
/// counts each title once, from `params.reference_uses_acronym`, however many samples it has.
pub fn key_term_scores(records: &SweepRecords) -> Vec<KeyTermScore> {
    let mut out: Vec<KeyTermScore> = Vec::new();
    let mut seen_titles: std::collections::BTreeSet<(i64, String)> = Default::default();
    for s in &records.samples {
        let Some(uses) = s.uses_acronym else { continue };
        let idx = match out.iter().position(|k| k.trial_id == s.trial_id) {
            Some(i) => i,
            None => {
                out.push(KeyTermScore {
                    trial_id: s.trial_id,
                    generated: 0,
                    generated_using: 0,
                    real: 0,
                    real_using: 0,
                });
                out.len() - 1
            }
        };
        let k = &mut out[idx];
        k.generated += 1;
        k.generated_using += usize::from(uses);
        let real = s
            .params
            .get("reference_uses_acronym")
            .and_then(Value::as_bool);
        if let Some(real) = real {
            if seen_titles.insert((s.trial_id, s.title.clone())) {
                k.real += 1;
                k.real_using += usize::from(real);
            }
        }
    }
    out
}

#[cfg(test)]
mod key_term_tests {
    use super::*;
    use crate::store::{NewSample, SampleRecord};
    use serde_json::json;

    fn sample(trial_id: i64, title: &str, uses: Option<bool>, real: Option<bool>) -> SampleRecord {
        SampleRecord {
            sample: NewSample {
                trial_id,
                title: title.into(),
                uses_acronym: uses,
                params: real
                    .map(|r| json!({ "reference_uses_acronym": r }))
                    .unwrap_or_default(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn counts_generated_per_sample_and_real_per_title() {
        let records = SweepRecords {
            samples: vec![
                sample(1, "BERT: Pre-training", Some(true), Some(true)),
                sample(1, "BERT: Pre-training", Some(false), Some(true)),
                sample(1, "ELMo: Deep contextualized", Some(false), Some(false)),
                sample(1, "A title without acronym", None, None),
                sample(2, "GPT: x", Some(true), None),
            ],
            ..Default::default()
        };
        let scores = key_term_scores(&records);
        assert_eq!(
            scores,
            vec![
                KeyTermScore {
                    trial_id: 1,
                    generated: 3,
                    generated_using: 1,
                    real: 2,
                    real_using: 1
                },
                KeyTermScore {
                    trial_id: 2,
                    generated: 1,
                    generated_using: 1,
                    real: 0,
                    real_using: 0
                },
            ]
        );
    }
}
