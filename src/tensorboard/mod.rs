//! TensorBoard event files of a trial's metric rows: the live sink a trial process tees beside
//! the ledger's, and the run writer `sweep export --format tensorboard` uses.
//!
//! Layout: a trial writes `ROOT/trials/<hash12>/tb/events.out.tfevents.<secs>.<host>.<pid>`, so
//! `tensorboard --logdir results/trials` shows one run per trial (named by its hash) with a
//! `run/label` text naming its sweeps and axis values. Scalars ([`scalars`]): `loss/<split>` and
//! `ppl/<split>` for every row, and for train rows `train/lr`, `train/tokens_per_s` and (live
//! only: the ledger does not keep it) `train/grad_norm`.
//!
//! Resume: [`TbSink::start_at`] copies the events at or before the resume step into a new file
//! and deletes the old ones, so the replayed steps are in the run once, whichever reader (the
//! Python `EventAccumulator` or TensorBoard's Rust data server) loads it.

pub mod event;

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::store::MetricRecord;
use crate::train::{MetricRow, MetricSink};

/// The subdirectory of a trial directory that holds its event files.
pub const TB_SUBDIR: &str = "tb";

/// The tag of the text that names a run's sweeps and axis values.
pub const LABEL_TAG: &str = "run/label";

/// The scalars TensorBoard shows for one metric row.
pub fn scalars(row: &MetricRow) -> Vec<(String, f32)> {
    let mut out = vec![
        (format!("loss/{}", row.split), row.loss as f32),
        (format!("ppl/{}", row.split), row.ppl as f32),
    ];
    if row.split == "train" {
        out.push(("train/lr".into(), row.lr as f32));
        out.push(("train/tokens_per_s".into(), row.tokens_per_s as f32));
        if let Some(g) = row.grad_norm {
            out.push(("train/grad_norm".into(), g as f32));
        }
    }
    out
}

/// Seconds since the Unix epoch, as event `wall_time`s are.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Whether TensorBoard reads `name` as an event file.
pub fn is_event_file(name: &str) -> bool {
    name.contains("tfevents")
}

/// One event file being written.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// A new event file in `dir` (created if needed), opened by its `file_version` event.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let now = now_secs();
        let name = format!(
            "events.out.tfevents.{}.{}.{}",
            now as u64,
            crate::util::hostname(),
            std::process::id()
        );
        let path = dir.join(name);
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = Self {
            path,
            out: BufWriter::new(file),
        };
        w.write(&event::file_version_event(now))?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event (an encoded `Event`, framed here).
    pub fn write(&mut self, ev: &[u8]) -> Result<()> {
        self.out
            .write_all(&event::frame(ev))
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Hands what is buffered to the file (visible to a watching TensorBoard).
    pub fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// The texts first (step 0), then one event per row.
    pub fn write_run<'a>(
        &mut self,
        texts: &[(String, String)],
        rows: impl IntoIterator<Item = (f64, &'a MetricRow)>,
    ) -> Result<()> {
        for (tag, text) in texts {
            self.write(&event::text_event(now_secs(), 0, tag, text))?;
        }
        for (wall, row) in rows {
            self.write(&event::scalars_event(wall, row.step as i64, &scalars(row)))?;
        }
        self.flush()
    }
}

/// The event files in `dir`, oldest name first.
fn event_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_event_file)
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The scalar events at or before `step` of the files in `dir` (texts are written anew).
fn events_up_to(files: &[PathBuf], step: u64) -> Result<Vec<Vec<u8>>> {
    let mut kept = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        for rec in event::records(&bytes).with_context(|| format!("reading {}", f.display()))? {
            let ev = event::decode(rec)?;
            if !ev.scalars.is_empty() && ev.step <= step as i64 {
                kept.push(rec.to_vec());
            }
        }
    }
    Ok(kept)
}

/// A [`MetricSink`] writing a trial's rows to event files in its `tb/` directory. A failure to
/// write is a warning, once, and ends the trial's TensorBoard log, not the trial: the ledger is
/// the record.
pub struct TbSink {
    dir: PathBuf,
    texts: Vec<(String, String)>,
    writer: Option<EventWriter>,
    failed: bool,
}

impl TbSink {
    /// Writes to `dir`; `texts` (such as [`LABEL_TAG`]) open each new file.
    pub fn new(dir: PathBuf, texts: Vec<(String, String)>) -> Self {
        Self {
            dir,
            texts,
            writer: None,
            failed: false,
        }
    }

    /// A new file holding the kept events of the old ones (which are removed).
    fn open(&mut self, resume: Option<u64>) -> Result<()> {
        let old = event_files(&self.dir)?;
        let kept = match resume {
            Some(step) => events_up_to(&old, step)?,
            None => Vec::new(),
        };
        let mut w = EventWriter::create(&self.dir)?;
        w.write_run(&self.texts, [])?;
        for ev in &kept {
            w.write(ev)?;
        }
        w.flush()?;
        if resume.is_some() {
            for f in old.iter().filter(|f| f.as_path() != w.path()) {
                std::fs::remove_file(f).with_context(|| format!("removing {}", f.display()))?;
            }
        }
        self.writer = Some(w);
        Ok(())
    }

    fn guard(&mut self, what: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        if self.failed {
            return Ok(());
        }
        if let Err(e) = what(self) {
            self.failed = true;
            self.writer = None;
            eprintln!(
                "warning: TensorBoard log in {} stopped: {e:#}",
                self.dir.display()
            );
        }
        Ok(())
    }
}

impl MetricSink for TbSink {
    fn start_at(&mut self, step: u64) -> Result<()> {
        self.guard(|s| s.open(Some(step)))
    }

    fn record(&mut self, row: &MetricRow) -> Result<()> {
        self.guard(|s| {
            if s.writer.is_none() {
                s.open(None)?;
            }
            let ev = event::scalars_event(now_secs(), row.step as i64, &scalars(row));
            let w = s.writer.as_mut().context("no event file")?;
            w.write(&ev)?;
            w.flush()
        })
    }

    fn flush(&mut self) -> Result<()> {
        self.guard(|s| s.writer.as_mut().map_or(Ok(()), EventWriter::flush))
    }
}

/// A ledger metric row as the trainer sent it (no grad norm: the ledger does not keep it), with
/// its wall time (`created_at`; now if it does not parse).
pub fn recorded_row(m: &MetricRecord) -> (f64, MetricRow) {
    let wall = chrono::DateTime::parse_from_rfc3339(&m.created_at)
        .map(|t| t.timestamp_millis() as f64 / 1000.0)
        .unwrap_or_else(|_| now_secs());
    let row = MetricRow {
        step: m.step.max(0) as u64,
        epoch: m.epoch,
        split: m.split.clone(),
        loss: m.loss,
        ppl: m.ppl,
        tokens_seen: m.tokens_seen.max(0) as u64,
        lr: m.lr,
        tokens_per_s: m.tokens_per_s,
        grad_norm: None,
    };
    (wall, row)
}

/// One line of a run's [`LABEL_TAG`] text: a sweep the trial belongs to and its axis values
/// there (Markdown, as TensorBoard's Text tab renders it).
pub fn membership_line(sweep: &str, label: &serde_json::Value, baseline: bool) -> String {
    let star = if baseline { " (baseline)" } else { "" };
    format!("sweep `{sweep}`: {}{star}", label_text(label))
}

/// A TensorBoard run directory name for a trial of a sweep: its axis values and the first 8
/// digits of its hash (`block_size=256-1a2b3c4d`), safe as a file name.
pub fn run_dir_name(label: &serde_json::Value, hash: &str) -> String {
    let text = label_text(label);
    let mut name: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._=,+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert_str(0, "trial");
    }
    format!("{name}-{}", &hash[..hash.len().min(8)])
}

/// `key=value` pairs of a label, comma-separated (`block_size=256,seed=1`).
pub fn label_text(label: &serde_json::Value) -> String {
    let Some(map) = label.as_object() else {
        return String::new();
    };
    map.iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            v => format!("{k}={v}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: u64, split: &str) -> MetricRow {
        MetricRow {
            step,
            epoch: 0.0,
            split: split.into(),
            loss: 2.0,
            ppl: 2f64.exp(),
            tokens_seen: step * 8,
            lr: 1e-3,
            tokens_per_s: 100.0,
            grad_norm: (split == "train").then_some(0.5),
        }
    }

    fn steps_in(dir: &Path) -> Vec<(i64, String)> {
        let files = event_files(dir).unwrap();
        let mut out = Vec::new();
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            for r in event::records(&bytes).unwrap() {
                let ev = event::decode(r).unwrap();
                for (tag, _) in ev.scalars.iter().filter(|(t, _)| t.starts_with("loss/")) {
                    out.push((ev.step, tag.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn a_resumed_sink_keeps_each_step_once() {
        let dir = tempfile::tempdir().unwrap();
        let tb = dir.path().join("tb");
        let texts = vec![(LABEL_TAG.to_string(), "block_size=64".to_string())];
        let mut sink = TbSink::new(tb.clone(), texts.clone());
        sink.start_at(0).unwrap();
        for s in [2, 4, 6] {
            sink.record(&row(s, "train")).unwrap();
        }
        sink.record(&row(4, "valid")).unwrap();
        drop(sink);
        // Killed after step 6; the checkpoint was at step 4.
        let mut sink = TbSink::new(tb.clone(), texts);
        sink.start_at(4).unwrap();
        sink.record(&row(6, "train")).unwrap();
        sink.record(&row(8, "train")).unwrap();
        let got = steps_in(&tb);
        let want: Vec<(i64, String)> = [(2, "train"), (4, "train"), (4, "valid"), (6, "train")]
            .into_iter()
            .chain([(8, "train")])
            .map(|(s, t)| (s, format!("loss/{t}")))
            .collect();
        assert_eq!(got, want);
        assert_eq!(event_files(&tb).unwrap().len(), 1, "the old file is gone");
        // One label text, the grad norm of train rows only.
        let bytes = std::fs::read(&event_files(&tb).unwrap()[0]).unwrap();
        let evs: Vec<event::Decoded> = event::records(&bytes)
            .unwrap()
            .into_iter()
            .map(|r| event::decode(r).unwrap())
            .collect();
        assert_eq!(evs.iter().filter(|e| !e.texts.is_empty()).count(), 1);
        let tags: Vec<&str> = evs[2].scalars.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            tags,
            [
                "loss/train",
                "ppl/train",
                "train/lr",
                "train/tokens_per_s",
                "train/grad_norm"
            ]
        );
    }

    #[test]
    fn run_names_carry_the_axis_values() {
        let label = serde_json::json!({"block_size": 256, "model": "gpt2/tiny"});
        assert_eq!(
            run_dir_name(&label, "0123456789abcdef"),
            "block_size=256,model=gpt2_tiny-01234567"
        );
        assert_eq!(run_dir_name(&serde_json::json!({}), "ab"), "trial-ab");
    }
}
