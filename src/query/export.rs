//! `sweep export`: every metric row of a sweep's trials as CSV or JSON, one trial at a time, or
//! as TensorBoard runs in a directory. Each row names its trial's `row` (the label without
//! `seed`: what seed replicates share, to group by) and `seed`.

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::sql::Cell;
use super::ExportFormat;
use crate::error::UsageError;
use crate::store;
use crate::tensorboard::{self, EventWriter};

const EXPORT_COLUMNS: [&str; 15] = [
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
    "row",
    "seed",
];

/// Streams every metric row of the sweep's trials to `out`, in sweep order (no row cap; one
/// trial's rows in memory at a time).
pub fn export<W: Write>(db: &str, sweep: &str, format: ExportFormat, out: &mut W) -> Result<u64> {
    if format == ExportFormat::Tensorboard {
        return Err(needs_out().into());
    }
    let ledger = store::open_read_only(db)?;
    let info = store::read::sweep_named(ledger.as_ref(), sweep)?;
    let mut n = 0u64;
    match format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(EXPORT_COLUMNS)?;
            out.write_all(&w.into_inner().context("writing CSV")?)?;
        }
        _ => out.write_all(b"[")?,
    }
    for st in ledger.sweep_trials(info.id)? {
        let label = st.label.to_string();
        let row = Value::Object(st.row_key());
        let seed = st.seed();
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
                    rec.push(row.to_string());
                    rec.push(seed.map(|s| s.to_string()).unwrap_or_default());
                    w.write_record(&rec)?;
                    out.write_all(&w.into_inner().context("writing CSV")?)?;
                }
                _ => {
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
                    o.insert("row".into(), row.clone());
                    o.insert("seed".into(), json!(seed));
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

/// The usage error of `--format tensorboard` without a directory.
pub fn needs_out() -> UsageError {
    UsageError(
        "`sweep export --format tensorboard` writes a directory of event files: pass --out DIR \
         (then `tensorboard --logdir DIR`)"
            .into(),
    )
}

/// Writes one TensorBoard run per trial of the sweep that has metric rows, in
/// `out/<sweep>/<axis values>-<hash8>/`, and returns that directory and the number of runs. The
/// runs are staged in a temp directory inside `out` and renamed into place (replacing an earlier
/// export of the sweep), so a failure leaves no half-written export.
pub fn export_tensorboard(db: &str, sweep: &str, out: &Path) -> Result<(PathBuf, usize)> {
    let ledger = store::open_read_only(db)?;
    let info = store::read::sweep_named(ledger.as_ref(), sweep)?;
    let unwritable = |what: &str, e: &dyn std::fmt::Display| -> anyhow::Error {
        UsageError(format!(
            "cannot write the TensorBoard export to `{}`: {what}: {e}; pass --out with a \
             writable directory",
            out.display()
        ))
        .into()
    };
    std::fs::create_dir_all(out).map_err(|e| unwritable("creating it", &e))?;
    let stage = tempfile::Builder::new()
        .prefix(".sweep-export-")
        .tempdir_in(out)
        .map_err(|e| unwritable("creating a temp directory in it", &e))?;
    let mut runs = 0;
    for st in ledger.sweep_trials(info.id)? {
        let metrics = ledger.metrics(st.id).context("reading metrics")?;
        if metrics.is_empty() {
            continue;
        }
        let rows: Vec<_> = metrics.iter().map(tensorboard::recorded_row).collect();
        let text = format!(
            "{}\n\ntrial {}, hash `{}`",
            tensorboard::membership_line(&info.name, &st.label, st.is_baseline),
            st.id,
            st.short_hash()
        );
        let dir = stage
            .path()
            .join(tensorboard::run_dir_name(&st.label, &st.hash));
        let mut w = EventWriter::create(&dir)?;
        w.write_run(
            &[(tensorboard::LABEL_TAG.to_string(), text)],
            rows.iter().map(|(wall, r)| (*wall, r)),
        )?;
        runs += 1;
    }
    let dest = out.join(crate::report::file_stem(&info.name));
    replace_dir(stage, &dest).map_err(|e| unwritable("moving the export into place", &e))?;
    Ok((dest, runs))
}

/// Renames the staged directory to `dest`, replacing what was there.
fn replace_dir(stage: tempfile::TempDir, dest: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Temp directories are private (0700); an export is an ordinary readable directory.
        std::fs::set_permissions(stage.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    let old = dest.exists().then(|| dest.with_extension("old-export"));
    if let Some(old) = &old {
        let _ = std::fs::remove_dir_all(old);
        std::fs::rename(dest, old)?;
    }
    let staged = stage.keep();
    if let Err(e) = std::fs::rename(&staged, dest) {
        if let Some(old) = &old {
            let _ = std::fs::rename(old, dest);
        }
        let _ = std::fs::remove_dir_all(&staged);
        return Err(e);
    }
    if let Some(old) = &old {
        std::fs::remove_dir_all(old)?;
    }
    Ok(())
}
