//! Metric sinks for standalone runs: JSON lines on disk, plain lines on stdout, both at once.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

use super::{MetricRow, MetricSink};

/// Appends each row as one JSON object per line.
pub struct JsonLinesSink {
    out: BufWriter<File>,
}

impl JsonLinesSink {
    pub fn create(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            out: BufWriter::new(file),
        })
    }
}

impl MetricSink for JsonLinesSink {
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

impl MetricSink for Tee<'_> {
    fn record(&mut self, row: &MetricRow) -> Result<()> {
        for s in self.0.iter_mut() {
            s.record(row)?;
        }
        Ok(())
    }
    fn heartbeat(&mut self) -> Result<()> {
        for s in self.0.iter_mut() {
            s.heartbeat()?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        for s in self.0.iter_mut() {
            s.flush()?;
        }
        Ok(())
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
