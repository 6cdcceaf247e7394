//! `sweep export`: every metric row of a sweep's trials as CSV or JSON, one trial at a time.

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};
use std::io::Write;

use super::sql::Cell;
use super::ExportFormat;
use crate::store;

const EXPORT_COLUMNS: [&str; 13] = [
    "trial_id",
    "trial_hash",
    "label",
    "step",
    "epoch",
    "split",
    "loss",
    "ppl",
    "tokens_seen",
    "lr",
    "tokens_per_s",
    "created_at",
    "sweep",
];

/// Streams every metric row of the sweep's trials to `out`, in sweep order (no row cap; one
/// trial's rows in memory at a time).
pub fn export<W: Write>(db: &str, sweep: &str, format: ExportFormat, out: &mut W) -> Result<u64> {
    let ledger = store::open_read_only(db)?;
    let info = store::read::sweep_named(ledger.as_ref(), sweep)?;
    let mut n = 0u64;
    match format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(EXPORT_COLUMNS)?;
            out.write_all(&w.into_inner().context("writing CSV")?)?;
        }
        ExportFormat::Json => out.write_all(b"[")?,
    }
    for st in ledger.sweep_trials(info.id)? {
        let label = st.label.to_string();
        for m in ledger.metrics(st.id).context("reading metrics")? {
            let cells = [
                Cell::Int(m.trial_id),
                Cell::Text(st.hash.clone()),
                Cell::Text(label.clone()),
                Cell::Int(m.step),
                Cell::Float(m.epoch),
                Cell::Text(m.split),
                Cell::Float(m.loss),
                Cell::Float(m.ppl),
                Cell::Int(m.tokens_seen),
                Cell::Float(m.lr),
                Cell::Float(m.tokens_per_s),
                Cell::Text(m.created_at),
            ];
            match format {
                ExportFormat::Csv => {
                    let mut w = csv::Writer::from_writer(Vec::new());
                    let mut rec: Vec<String> = cells.iter().map(Cell::csv).collect();
                    rec.push(info.name.clone());
                    w.write_record(&rec)?;
                    out.write_all(&w.into_inner().context("writing CSV")?)?;
                }
                ExportFormat::Json => {
                    let mut o = Map::new();
                    for (k, c) in EXPORT_COLUMNS.iter().zip(&cells) {
                        let v = if *k == "label" {
                            st.label.clone()
                        } else {
                            c.json()
                        };
                        o.insert(k.to_string(), v);
                    }
                    o.insert("sweep".into(), json!(info.name));
                    out.write_all(if n == 0 { b"\n" } else { b",\n" })?;
                    serde_json::to_writer(&mut *out, &Value::Object(o))?;
                }
            }
            n += 1;
        }
    }
    if format == ExportFormat::Json {
        out.write_all(if n == 0 { b"]\n" } else { b"\n]\n" })?;
    }
    out.flush()?;
    Ok(n)
}
