//! The metric writer of a trial process: rows go to a background thread that writes them to the
//! ledger in batched transactions (every [`FLUSH_ROWS`] rows or [`FLUSH_SECS`] seconds, so a
//! training step never waits for the database) and sends a heartbeat every [`HEARTBEAT_SECS`].

use crate::store::{NewMetric, Store};
use crate::train::{MetricRow, MetricSink};
use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Metric rows buffered before a write.
pub const FLUSH_ROWS: usize = 256;
/// Longest time a metric row waits in the buffer.
pub const FLUSH_SECS: f64 = 2.0;
/// Heartbeat period of a running trial.
pub const HEARTBEAT_SECS: f64 = 5.0;

/// What the trainer sends the metric writer.
enum ToWriter {
    Row(NewMetric),
    /// Write everything buffered now, then reply (no reply if writing failed for good).
    Flush(mpsc::Sender<()>),
    Stop,
}

/// A [`MetricSink`] that hands rows to a background writer, so training never waits for the
/// database. The writer also sends heartbeats and raises `cancel` if the trial was taken away.
pub struct StoreSink {
    tx: Option<mpsc::Sender<ToWriter>>,
    handle: Option<std::thread::JoinHandle<Result<u64>>>,
    failed: Arc<Mutex<Option<String>>>,
}

impl StoreSink {
    pub fn spawn(
        store: Arc<dyn Store>,
        trial_id: i64,
        worker: String,
        cancel: Arc<AtomicBool>,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<ToWriter>();
        let failed = Arc::new(Mutex::new(None));
        let failed2 = failed.clone();
        let handle = std::thread::Builder::new()
            .name("sweep-metrics".into())
            .spawn(move || -> Result<u64> {
                let mut buf: Vec<NewMetric> = Vec::new();
                let mut written = 0u64;
                let mut last_flush = Instant::now();
                let mut last_beat = Instant::now();
                let mut failures = 0;
                let mut done = false;
                let mut acks: Vec<mpsc::Sender<()>> = Vec::new();
                while !done {
                    let wait = Duration::from_secs_f64(FLUSH_SECS.min(HEARTBEAT_SECS) / 4.0);
                    match rx.recv_timeout(wait) {
                        Ok(ToWriter::Row(row)) => buf.push(row),
                        Ok(ToWriter::Flush(ack)) => acks.push(ack),
                        Ok(ToWriter::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                            done = true
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                    }
                    let due = buf.len() >= FLUSH_ROWS
                        || last_flush.elapsed().as_secs_f64() >= FLUSH_SECS
                        || !acks.is_empty()
                        || done;
                    if due && !buf.is_empty() {
                        match store.insert_metrics(trial_id, &buf) {
                            Ok(n) => {
                                written += n;
                                buf.clear();
                                failures = 0;
                            }
                            Err(e) => {
                                failures += 1;
                                if failures >= 5 || done {
                                    let msg = format!("writing metrics to the ledger: {e:#}");
                                    *failed2.lock().unwrap_or_else(|p| p.into_inner()) =
                                        Some(msg.clone());
                                    cancel.store(true, Ordering::SeqCst);
                                    anyhow::bail!(msg);
                                }
                            }
                        }
                        last_flush = Instant::now();
                    }
                    if buf.is_empty() {
                        for ack in acks.drain(..) {
                            let _ = ack.send(());
                        }
                    }
                    if last_beat.elapsed().as_secs_f64() >= HEARTBEAT_SECS && !done {
                        last_beat = Instant::now();
                        match store.heartbeat(trial_id, &worker) {
                            // Another worker owns the trial now: stop training.
                            Ok(false) => cancel.store(true, Ordering::SeqCst),
                            Ok(true) => {}
                            Err(e) => eprintln!("warning: heartbeat failed: {e:#}"),
                        }
                    }
                }
                Ok(written)
            })
            .expect("spawning the metric writer thread");
        Self {
            tx: Some(tx),
            handle: Some(handle),
            failed,
        }
    }

    /// Flush everything and stop the writer; returns the number of new rows written.
    pub fn finish(mut self) -> Result<u64> {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(ToWriter::Stop);
        }
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| anyhow::anyhow!("the metric writer thread panicked"))?,
            None => Ok(0),
        }
    }
}

impl MetricSink for StoreSink {
    fn record(&mut self, row: &MetricRow) -> Result<()> {
        if let Some(msg) = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            anyhow::bail!(msg);
        }
        let row = NewMetric {
            step: row.step as i64,
            epoch: row.epoch,
            split: row.split.clone(),
            loss: row.loss,
            ppl: row.ppl,
            tokens_seen: row.tokens_seen as i64,
            lr: row.lr,
            tokens_per_s: row.tokens_per_s,
        };
        if let Some(tx) = &self.tx {
            tx.send(ToWriter::Row(row))
                .map_err(|_| anyhow::anyhow!("the metric writer stopped"))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        let (ack, written) = mpsc::channel();
        let sent = tx.send(ToWriter::Flush(ack)).is_ok();
        if sent && written.recv().is_ok() {
            return Ok(());
        }
        let failed = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        anyhow::bail!(failed.unwrap_or_else(|| "the metric writer stopped".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewSweep, NewTrial};
    use serde_json::json;

    #[test]
    fn store_sink_flush_writes_every_recorded_row_before_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sweep.db");
        let store: Arc<dyn Store> = Arc::from(crate::store::open(db.to_str().unwrap()).unwrap());
        let sweep = NewSweep {
            name: "s".into(),
            title: None,
            description: None,
            file: None,
            profile: None,
            kind: "grid".into(),
            spec: json!({}),
        };
        let trial = NewTrial {
            hash: "h".into(),
            config: json!({}),
            label: json!({}),
            is_baseline: false,
        };
        let id = store.record_sweep(&sweep, &[trial]).unwrap().trial_ids[0];
        let cancel = Arc::new(AtomicBool::new(false));
        let mut sink = StoreSink::spawn(store.clone(), id, "w".into(), cancel);
        let row = |step, split: &str| MetricRow {
            step,
            epoch: 0.0,
            split: split.into(),
            loss: 1.0,
            ppl: 1.0f64.exp(),
            tokens_seen: step * 10,
            lr: 0.0,
            tokens_per_s: 0.0,
            grad_norm: None,
        };
        let t0 = Instant::now();
        sink.record(&row(1, "train")).unwrap();
        sink.record(&row(1, "valid")).unwrap();
        sink.flush().unwrap();
        // Well within FLUSH_SECS: the rows are there because of the flush, not the timer.
        assert!(t0.elapsed().as_secs_f64() < FLUSH_SECS);
        assert_eq!(store.metrics(id).unwrap().len(), 2);
        sink.record(&row(2, "train")).unwrap();
        assert_eq!(sink.finish().unwrap(), 3, "rows written in all");
        assert_eq!(store.metrics(id).unwrap().len(), 3);
    }
}
