//! Metric sinks for standalone runs: JSON lines on disk, plain lines on stdout, both at once.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{MetricRow, MetricSink};

/// Appends each row as one JSON object per line.
pub struct JsonLinesSink {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonLinesSink {
    pub fn create(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(append(path)?),
        })
    }
}

fn append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

impl MetricSink for JsonLinesSink {
    /// Drops the rows past `step` (and a line cut short by a kill), so that the replayed steps'
    /// rows are not in the file twice.
    fn start_at(&mut self, step: u64) -> Result<()> {
        let text = std::fs::read_to_string(&self.path)
            .with_context(|| format!("reading {}", self.path.display()))?;
        let kept: String = text
            .lines()
            .filter(|l| serde_json::from_str::<MetricRow>(l).is_ok_and(|r| r.step <= step))
            .map(|l| format!("{l}\n"))
            .collect();
        if kept.len() == text.len() {
            return Ok(());
        }
        let staged = self.path.with_extension("jsonl.tmp");
        std::fs::write(&staged, kept)
            .and_then(|()| std::fs::rename(&staged, &self.path))
            .with_context(|| format!("rewriting {}", self.path.display()))?;
        self.out = BufWriter::new(append(&self.path)?);
        Ok(())
    }

    fn record(&mut self, row: &MetricRow) -> Result<()> {
        serde_json::to_writer(&mut self.out, row)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        Ok(())
    }
}

/// Prints evaluation rows as plain lines (running train loss is on the progress bar instead).
pub struct StdoutSink;

impl MetricSink for StdoutSink {
    fn record(&mut self, row: &MetricRow) -> Result<()> {
        if row.split != "train" {
            println!(
                "step {:>6}  epoch {:>5.2}  {:<10} loss {:.4}  ppl {:.2}  tokens {}",
                row.step, row.epoch, row.split, row.loss, row.ppl, row.tokens_seen
            );
        }
        Ok(())
    }
}

/// Sends every row to several sinks.
pub struct Tee<'a>(pub Vec<&'a mut dyn MetricSink>);

impl Tee<'_> {
    fn each(&mut self, mut f: impl FnMut(&mut dyn MetricSink) -> Result<()>) -> Result<()> {
        self.0.iter_mut().try_for_each(|s| f(&mut **s))
    }
}

impl MetricSink for Tee<'_> {
    fn record(&mut self, row: &MetricRow) -> Result<()> {
        self.each(|s| s.record(row))
    }
    fn start_at(&mut self, step: u64) -> Result<()> {
        self.each(|s| s.start_at(step))
    }
    fn resumed(&mut self, r: &crate::checkpoint::Resumption) -> Result<()> {
        self.each(|s| s.resumed(r))
    }
    fn heartbeat(&mut self) -> Result<()> {
        self.each(|s| s.heartbeat())
    }
    fn flush(&mut self) -> Result<()> {
        self.each(|s| s.flush())
    }
}

/// Keeps rows in memory (tests, and callers that want the curve back).
#[derive(Default)]
pub struct VecSink {
    pub rows: Vec<MetricRow>,
}

impl MetricSink for VecSink {
    fn record(&mut self, row: &MetricRow) -> Result<()> {
        // Rows are unique per (split, step); a resumed run may send some again.
        if !self
            .rows
            .iter()
            .any(|r| r.split == row.split && r.step == row.step)
        {
            self.rows.push(row.clone());
        }
        Ok(())
    }
}
