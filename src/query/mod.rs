//! `sweep results`, `sweep query` and `sweep export`: the ledger as text tables, CSV, JSON, Markdown and LaTeX.
//!
//! `results` formats the paper-layout table, `sql` runs read-only SQL, `export` streams metric
//! rows; all read the ledger opened read-only by [`crate::store`].

mod best;
mod export;
mod results;
mod sql;

pub use export::{export, export_tensorboard};
pub use results::format_results;
pub use sql::{format_query, query, Cell, QueryResult};

use anyhow::Result;
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::ProfileArg;
use crate::report::data;
use crate::store::{self, DEFAULT_DB};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResultsFormat {
    Table,
    Csv,
    Json,
    Markdown,
    Latex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
    /// One TensorBoard run per trial in `--out DIR/<sweep>/` (`tensorboard --logdir DIR`).
    Tensorboard,
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// The sweep: its recorded name (`block_size`, `block_size@quick`) or its sweep file.
    pub sweep: String,
    #[command(flatten)]
    pub profile: ProfileArg,
    #[arg(long, value_enum, default_value = "table")]
    pub format: ResultsFormat,
    /// Ledger database URL or SQLite path.
    #[arg(long, env = "SWEEP_DB", default_value = DEFAULT_DB)]
    pub db: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BestFormat {
    Toml,
    Json,
}

#[derive(Debug, Args)]
pub struct BestArgs {
    /// The sweep: its recorded name (as `sweep status` lists it, e.g. `lr_search@quick`) or its
    /// sweep file, whose directory the snippet's paths are then written for.
    pub sweep: String,
    #[command(flatten)]
    pub profile: ProfileArg,
    /// `toml`: a snippet to paste into `[base]`; `json`: the trial, its value and config.
    #[arg(long, value_enum, default_value = "toml")]
    pub format: BestFormat,
    /// Rank by this metric instead of the search's (default for grids: valid_ppl).
    #[arg(long)]
    pub metric: Option<String>,
    /// Ledger database URL or SQLite path.
    #[arg(long, env = "SWEEP_DB", default_value = DEFAULT_DB)]
    pub db: String,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Read-only SQL over the ledger schema (tables sweeps, trials, sweep_trials, metrics, samples).
    pub sql: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: QueryFormat,
    /// Ledger database URL or SQLite path.
    #[arg(long, env = "SWEEP_DB", default_value = DEFAULT_DB)]
    pub db: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The sweep: its recorded name (`block_size`, `block_size@quick`) or its sweep file.
    pub sweep: String,
    #[command(flatten)]
    pub profile: ProfileArg,
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormat,
    /// Directory for `--format tensorboard` (runs go to DIR/<sweep>/); csv and json go to stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Ledger database URL or SQLite path.
    #[arg(long, env = "SWEEP_DB", default_value = DEFAULT_DB)]
    pub db: String,
}

/// Aligned plain-text table (left-aligned text columns, right-aligned numbers).
pub fn format_text_table(headers: &[String], rows: &[Vec<String>], right: &[bool]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = widths[i].saturating_sub(c.chars().count());
                if right.get(i).copied().unwrap_or(false) {
                    format!("{}{c}", " ".repeat(pad))
                } else {
                    format!("{c}{}", " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers);
    out.push('\n');
    out.push_str(
        &widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  "),
    );
    out.push('\n');
    for r in rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

/// `sweep results SWEEP`: the paper-layout table on stdout.
pub fn run_results(args: ResultsArgs) -> Result<ExitCode> {
    let name = args.profile.sweep(&args.sweep)?;
    let ledger = store::open_read_only(&args.db)?;
    // Final numbers only: the metric rows are the curves, which a table does not show.
    let records = store::load_sweep_finals(ledger.as_ref(), &name)?;
    drop(ledger);
    let table = data::paper_table(&records);
    let effects = crate::report::effects::effects(&records, &table);
    let groups = crate::report::score::reproduction(&table, &records.sweep.spec, &effects);
    print!(
        "{}",
        format_results(&table, &groups, &effects, args.format)?
    );
    Ok(ExitCode::SUCCESS)
}

/// `sweep best SWEEP`.
/// The snippet's paths are written for the sweep file given, else the one the sweep was recorded
/// from.
pub fn run_best(args: BestArgs) -> Result<ExitCode> {
    let name = args.profile.sweep(&args.sweep)?;
    let ledger = store::open_read_only(&args.db)?;
    let records = store::load_sweep_finals(ledger.as_ref(), &name)?;
    drop(ledger);
    let b = best::best(&records, args.metric.as_deref())?;
    let file = match crate::config::sweep_file_arg(&args.sweep) {
        Some(f) => Some(f.to_path_buf()),
        None => records.sweep.file.as_ref().map(PathBuf::from),
    };
    let target = file.map(|f| best::PasteTarget::beside(&f));
    let text = match args.format {
        BestFormat::Toml => best::to_toml(&b, &name, target.as_ref())?,
        BestFormat::Json => format!("{:#}\n", best::to_json(&b, &name)),
    };
    crate::util::write_stdout(&text)
}

/// `sweep query "SQL"`.
pub fn run_query(args: QueryArgs) -> Result<ExitCode> {
    let r = query(&args.db, &args.sql)?;
    print!("{}", format_query(&r, args.format)?);
    Ok(ExitCode::SUCCESS)
}

/// `sweep export SWEEP --format csv|json > file`, `sweep export SWEEP --format tensorboard --out DIR`.
pub fn run_export(args: ExportArgs) -> Result<ExitCode> {
    let name = args.profile.sweep(&args.sweep)?;
    match (&args.out, args.format) {
        (Some(out), ExportFormat::Tensorboard) => {
            let (dir, runs) = export_tensorboard(&args.db, &name, out)?;
            eprintln!(
                "wrote {runs} TensorBoard runs to {}; view them with `tensorboard --logdir {}`",
                dir.display(),
                out.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        (None, ExportFormat::Tensorboard) => return Err(export::needs_out().into()),
        (Some(_), _) => {
            return Err(crate::error::UsageError(
                "--out is for `--format tensorboard`; csv and json go to stdout: redirect them \
                 (`sweep export SWEEP --format csv > FILE`)"
                    .into(),
            )
            .into())
        }
        (None, _) => {}
    }
    let stdout = std::io::stdout();
    let mut lock = std::io::BufWriter::new(stdout.lock());
    export(&args.db, &name, args.format, &mut lock)?;
    lock.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UsageError;
    use crate::store::synth::{block_size_fixture, create_ledger, insert_sweep};
    use serde_json::Value;

    fn ledger(dir: &std::path::Path) -> String {
        let path = dir.join("q.db");
        let store = create_ledger(&path).unwrap();
        let (sweep, trials) = block_size_fixture("");
        insert_sweep(store.as_ref(), &sweep, &trials).unwrap();
        format!("sqlite://{}", path.display())
    }

    fn q(db: &str, sql: &str) -> Result<QueryResult> {
        query(db, sql)
    }

    #[test]
    fn writes_fail_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let db = ledger(dir.path());
        for sql in [
            "DROP TABLE metrics",
            "INSERT INTO sweeps (name) VALUES ('x')",
            "UPDATE trials SET state = 'pending'",
            "DELETE FROM metrics",
            "PRAGMA user_version = 7",
            "CREATE TABLE t (x INTEGER)",
            "SELECT 1; DELETE FROM metrics",
            "VACUUM INTO '/tmp/copy.db'",
            "ATTACH DATABASE 'other.db' AS o",
        ] {
            let err = q(&db, sql).unwrap_err();
            assert!(err.downcast_ref::<UsageError>().is_some(), "{sql}");
            let msg = format!("{err:#}");
            assert!(msg.contains("`sweep query` is read-only"), "{sql}: {msg}");
        }
        // Nothing changed.
        let r = q(&db, "SELECT count(*) AS n FROM metrics").unwrap();
        assert_eq!(r.rows[0][0], Cell::Int(122));
        let r = q(&db, "PRAGMA user_version").unwrap();
        assert_eq!(r.rows[0][0], Cell::Int(0));
        // A word inside a string literal is not a statement.
        let r = q(&db, "SELECT 'vacuum attach' AS s").unwrap();
        assert_eq!(r.rows[0][0], Cell::Text("vacuum attach".into()));
    }

    #[test]
    fn select_works_and_formats() {
        let dir = tempfile::tempdir().unwrap();
        let db = ledger(dir.path());
        let r = q(
            &db,
            "SELECT split, count(*) AS rows, round(avg(loss), 4) AS mean_loss, NULL AS empty \
             FROM metrics GROUP BY split ORDER BY split",
        )
        .unwrap();
        assert_eq!(r.columns, ["split", "rows", "mean_loss", "empty"]);
        assert_eq!(r.rows.len(), 2);
        insta::assert_snapshot!("query_table", format_query(&r, QueryFormat::Table).unwrap());
        insta::assert_snapshot!("query_csv", format_query(&r, QueryFormat::Csv).unwrap());
        insta::assert_snapshot!("query_json", format_query(&r, QueryFormat::Json).unwrap());
        // Empty results keep their header.
        let r = q(&db, "SELECT name, title FROM sweeps WHERE 0").unwrap();
        assert_eq!(r.columns, ["name", "title"]);
        assert!(format_query(&r, QueryFormat::Table)
            .unwrap()
            .ends_with("(0 rows)\n"));
        // Bad SQL is a usage error naming the problem.
        let err = q(&db, "SELEC 1").unwrap_err();
        assert!(format!("{err:#}").contains("query failed"), "{err:#}");
    }

    #[test]
    fn results_formats() {
        let records = {
            let dir = tempfile::tempdir().unwrap();
            let db = ledger(dir.path());
            let ledger = store::open_read_only(&db).unwrap();
            store::load_sweep(ledger.as_ref(), "block_size").unwrap()
        };
        let t = data::paper_table(&records);
        let effects = crate::report::effects::effects(&records, &t);
        let groups = crate::report::score::reproduction(&t, &records.sweep.spec, &effects);
        for (name, f) in [
            ("results_table", ResultsFormat::Table),
            ("results_markdown", ResultsFormat::Markdown),
            ("results_latex", ResultsFormat::Latex),
            ("results_csv", ResultsFormat::Csv),
            ("results_json", ResultsFormat::Json),
        ] {
            insta::assert_snapshot!(name, format_results(&t, &groups, &effects, f).unwrap());
        }
        let md = format_results(&t, &groups, &effects, ResultsFormat::Markdown).unwrap();
        assert!(md.starts_with(
            "| Model | Block Size | n | Train Loss | Valid Loss | Train PPL | Valid PPL |"
        ));
        assert!(md.contains("gpt2-tiny\\* | 512 | 2 | **3.9200 ± 0.2541**"));
    }

    #[test]
    fn export_streams_every_metric_row() {
        let dir = tempfile::tempdir().unwrap();
        let db = ledger(dir.path());
        let mut csv_out = Vec::new();
        let n = export(&db, "block_size", ExportFormat::Csv, &mut csv_out).unwrap();
        assert_eq!(n, 122);
        let text = String::from_utf8(csv_out).unwrap();
        assert_eq!(text.lines().count(), 123);
        assert!(text.starts_with("trial_id,trial_hash,label,step,epoch,split,loss,ppl,tokens_seen,lr,tokens_per_s,created_at,sweep,row,seed\n"));
        // The baseline's two seeds share a row.
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .ends_with(",block_size,\"{\"\"block_size\"\":512}\",1"),
            "{}",
            text.lines().nth(1).unwrap()
        );
        let mut json_out = Vec::new();
        export(&db, "block_size", ExportFormat::Json, &mut json_out).unwrap();
        let v: Value = serde_json::from_slice(&json_out).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 122);
        assert_eq!(arr[0]["label"]["block_size"], 512);
        assert_eq!(arr[0]["sweep"], "block_size");
        assert_eq!(
            (arr[0]["row"].clone(), arr[0]["seed"].clone()),
            (serde_json::json!({"block_size": 512}), serde_json::json!(1))
        );
        let err = export(&db, "missing", ExportFormat::Csv, &mut Vec::new()).unwrap_err();
        assert!(format!("{err:#}").contains("known sweeps: block_size"));
    }
}
