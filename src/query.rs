//! `sweep results`, `sweep query` and `sweep export`: the ledger as text tables, CSV, JSON, Markdown and LaTeX.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use futures_util::TryStreamExt;
use serde_json::{json, Map, Value};
use sqlx::{Column, Row};
use std::io::Write;
use std::process::ExitCode;

use crate::error::UsageError;
use crate::report::data::{self, PaperTable, Stat};
use crate::report::load::{self, DEFAULT_DB_URL};

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
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// Sweep name.
    pub sweep: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: ResultsFormat,
    /// Ledger database URL or SQLite path.
    #[arg(long, env = "SWEEP_DB", default_value = DEFAULT_DB_URL)]
    pub db: String,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Read-only SQL over the ledger schema (tables sweeps, trials, sweep_trials, metrics, samples).
    pub sql: String,
    #[arg(long, value_enum, default_value = "table")]
    pub format: QueryFormat,
    /// Ledger database URL or SQLite path.
    #[arg(long, env = "SWEEP_DB", default_value = DEFAULT_DB_URL)]
    pub db: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Sweep name.
    pub sweep: String,
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormat,
    /// Ledger database URL or SQLite path.
    #[arg(long, env = "SWEEP_DB", default_value = DEFAULT_DB_URL)]
    pub db: String,
}

// ---------------------------------------------------------------- paper table formats

fn cell_text(s: &Option<Stat>) -> String {
    s.as_ref().map(Stat::display).unwrap_or_else(|| "—".into())
}

/// Rows of display strings (model, axis..., metrics...) with bold flags for the metric cells.
fn display_rows(t: &PaperTable) -> Vec<(Vec<String>, Vec<bool>)> {
    t.rows
        .iter()
        .map(|r| {
            let mut cells = vec![r.model.clone()];
            cells.extend(r.axis.iter().cloned());
            let mut bold = vec![false; cells.len()];
            for (c, b) in r.cells.iter().zip(&r.bold) {
                cells.push(cell_text(c));
                bold.push(*b);
            }
            (cells, bold)
        })
        .collect()
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

fn md_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        if matches!(c, '|' | '*' | '_' | '\\' | '`' | '<' | '>' | '[' | ']') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

fn latex_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                o.push('\\');
                o.push(c);
            }
            '~' => o.push_str("\\textasciitilde{}"),
            '^' => o.push_str("\\textasciicircum{}"),
            '—' => o.push_str("---"),
            c => o.push(c),
        }
    }
    o
}

/// The paper-layout table in the given format (ends with a newline).
pub fn format_results(t: &PaperTable, format: ResultsFormat) -> Result<String> {
    let headers = t.headers();
    let n_left = 1 + t.axis_headers.len();
    let rows = display_rows(t);
    Ok(match format {
        ResultsFormat::Table => {
            let right: Vec<bool> = (0..headers.len()).map(|i| i >= n_left).collect();
            let plain: Vec<Vec<String>> = rows.iter().map(|r| r.0.clone()).collect();
            let mut s = format_text_table(&headers, &plain, &right);
            if t.rows.is_empty() {
                s.push_str("(no trials)\n");
            }
            s
        }
        ResultsFormat::Markdown => {
            let mut s = format!(
                "| {} |\n|{}|\n",
                headers
                    .iter()
                    .map(|h| md_escape(h))
                    .collect::<Vec<_>>()
                    .join(" | "),
                (0..headers.len())
                    .map(|i| if i < n_left { " --- " } else { " ---: " })
                    .collect::<Vec<_>>()
                    .join("|")
            );
            for (cells, bold) in &rows {
                let cs: Vec<String> = cells
                    .iter()
                    .zip(bold)
                    .map(|(c, b)| {
                        if *b {
                            format!("**{}**", md_escape(c))
                        } else {
                            md_escape(c)
                        }
                    })
                    .collect();
                s.push_str(&format!("| {} |\n", cs.join(" | ")));
            }
            s
        }
        ResultsFormat::Latex => {
            let spec: String = (0..headers.len())
                .map(|i| if i < n_left { 'l' } else { 'r' })
                .collect();
            let mut s = format!("\\begin{{tabular}}{{{spec}}}\n\\hline\n");
            s.push_str(
                &headers
                    .iter()
                    .map(|h| latex_escape(h))
                    .collect::<Vec<_>>()
                    .join(" & "),
            );
            s.push_str(" \\\\\n\\hline\n");
            for (cells, bold) in &rows {
                let cs: Vec<String> = cells
                    .iter()
                    .zip(bold)
                    .map(|(c, b)| {
                        let e = latex_escape(c).replace(" ± ", " $\\pm$ ");
                        if *b {
                            format!("\\textbf{{{e}}}")
                        } else {
                            e
                        }
                    })
                    .collect();
                s.push_str(&cs.join(" & "));
                s.push_str(" \\\\\n");
            }
            s.push_str("\\hline\n\\end{tabular}\n");
            s
        }
        ResultsFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let mut head = vec!["model".to_string(), "baseline".to_string()];
            head.extend(t.axis_columns().iter().map(|s| s.to_string()));
            for m in &t.metrics {
                head.push(m.key().to_string());
                head.push(format!("{}_std", m.key()));
            }
            head.push("n".into());
            head.push("states".into());
            w.write_record(&head)?;
            for r in &t.rows {
                let mut rec = vec![r.model.clone(), r.baseline.to_string()];
                rec.extend(r.axis.iter().cloned());
                for c in &r.cells {
                    rec.push(c.map(|s| s.mean.to_string()).unwrap_or_default());
                    rec.push(
                        c.and_then(|s| s.std)
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                    );
                }
                rec.push(r.trial_ids.len().to_string());
                rec.push(r.state_summary());
                w.write_record(&rec)?;
            }
            String::from_utf8(w.into_inner().context("writing CSV")?)?
        }
        ResultsFormat::Json => {
            let rows: Vec<Value> = t
                .rows
                .iter()
                .map(|r| {
                    let mut o = Map::new();
                    o.insert("model".into(), json!(r.model));
                    o.insert("baseline".into(), json!(r.baseline));
                    o.insert("axis".into(), Value::Object(r.label.clone()));
                    for (m, c) in t.metrics.iter().zip(&r.cells) {
                        o.insert(
                            m.key().into(),
                            c.map(|s| json!({"mean": s.mean, "std": s.std, "n": s.n}))
                                .unwrap_or(Value::Null),
                        );
                    }
                    o.insert(
                        "best".into(),
                        json!(t
                            .metrics
                            .iter()
                            .zip(&r.bold)
                            .filter(|(_, b)| **b)
                            .map(|(m, _)| m.key())
                            .collect::<Vec<_>>()),
                    );
                    o.insert("trial_ids".into(), json!(r.trial_ids));
                    o.insert("states".into(), json!(r.states));
                    Value::Object(o)
                })
                .collect();
            let doc = json!({
                "layout": t.layout,
                "axis": t.axis_keys,
                "columns": headers,
                "rows": rows,
            });
            let mut s = serde_json::to_string_pretty(&doc)?;
            s.push('\n');
            s
        }
    })
}

/// `sweep results SWEEP`: the paper-layout table on stdout.
pub fn run_results(args: ResultsArgs) -> Result<ExitCode> {
    let rt = crate::report::runtime()?;
    let text = rt.block_on(async {
        let pool = load::connect_read_only(&args.db).await?;
        let records = load::load_sweep(&pool, &args.sweep).await?;
        pool.close().await;
        format_results(&data::paper_table(&records), args.format)
    })?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- read-only SQL

/// One value of a query result.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Cell {
    fn display(&self) -> String {
        match self {
            Cell::Null => "NULL".into(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) => f.to_string(),
            Cell::Text(s) => s.clone(),
            Cell::Blob(b) => format!("x'{}'", hex::encode(b)),
        }
    }
    fn csv(&self) -> String {
        match self {
            Cell::Null => String::new(),
            other => other.display(),
        }
    }
    fn json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Int(i) => json!(i),
            Cell::Float(f) => json!(f),
            Cell::Text(s) => json!(s),
            Cell::Blob(b) => json!(hex::encode(b)),
        }
    }
    fn numeric(&self) -> bool {
        matches!(self, Cell::Int(_) | Cell::Float(_))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

fn cell_of(row: &sqlx::any::AnyRow, i: usize) -> Result<Cell> {
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return Ok(v.map(Cell::Int).unwrap_or(Cell::Null));
    }
    if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
        return Ok(v.map(Cell::Float).unwrap_or(Cell::Null));
    }
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return Ok(v.map(Cell::Text).unwrap_or(Cell::Null));
    }
    let v = row
        .try_get::<Option<Vec<u8>>, _>(i)
        .with_context(|| format!("decoding column {i}"))?;
    Ok(v.map(Cell::Blob).unwrap_or(Cell::Null))
}

/// Words outside string literals and comments, upper-cased (a coarse scan for statements that
/// write files even on a read-only connection).
fn sql_words(sql: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' | '`' => {
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for d in chars.by_ref() {
                    if prev == '*' && d == '/' {
                        break;
                    }
                    prev = d;
                }
            }
            c if c.is_alphanumeric() || c == '_' => {
                cur.push(c.to_ascii_uppercase());
                continue;
            }
            _ => {}
        }
        if !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

fn read_only_error(detail: &str) -> anyhow::Error {
    UsageError(format!(
        "`sweep query` is read-only: the database is opened read-only, so statements that \
         change it (INSERT, UPDATE, DELETE, DROP, CREATE, PRAGMA assignments, ...) fail. \
         Use SELECT. ({detail})"
    ))
    .into()
}

/// Runs `sql` on a read-only connection to the ledger and collects every row.
pub async fn query(db: &str, sql: &str) -> Result<QueryResult> {
    // VACUUM INTO and ATTACH can create files even with mode=ro; refuse them up front.
    let words = sql_words(sql);
    if let Some(w) = words
        .iter()
        .find(|w| *w == "VACUUM" || *w == "ATTACH" || *w == "DETACH")
    {
        return Err(read_only_error(&format!("{w} is not allowed")));
    }
    // PostgreSQL's COPY ... TO 'file' writes a server file inside a read-only transaction (for
    // roles allowed to), so it is refused like VACUUM INTO.
    if words.first().is_some_and(|w| w == "COPY") {
        return Err(read_only_error("COPY is not allowed"));
    }
    let pool = load::connect_read_only(db).await?;
    let res = sqlx::query(sql).fetch_all(&pool).await;
    let rows = match res {
        Ok(rows) => rows,
        Err(e) => {
            pool.close().await;
            let msg = e.to_string();
            let lower = msg.to_lowercase();
            // SQLite: "attempt to write a readonly database"; PostgreSQL: "cannot execute X in a
            // read-only transaction", or "transaction read-write mode must be set before any
            // query" for an attempt to switch the session back to writing.
            if lower.contains("readonly")
                || lower.contains("read-only")
                || lower.contains("read only")
                || lower.contains("read-write mode")
            {
                return Err(read_only_error(&msg));
            }
            // PostgreSQL prepares the text as one statement, so `A; B` never runs.
            if lower.contains("multiple commands into a prepared statement") {
                return Err(UsageError(format!(
                    "`sweep query` runs one statement per call on PostgreSQL; fix: split the \
                     text at its `;` and run each SELECT separately ({msg})"
                ))
                .into());
            }
            return Err(UsageError(format!("query failed: {msg}")).into());
        }
    };
    let columns: Vec<String> = match rows.first() {
        Some(r) => r.columns().iter().map(|c| c.name().to_string()).collect(),
        None => {
            use sqlx::Executor;
            match (&pool).describe(sql).await {
                Ok(d) => d.columns().iter().map(|c| c.name().to_string()).collect(),
                Err(_) => Vec::new(),
            }
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(
            (0..r.columns().len())
                .map(|i| cell_of(r, i))
                .collect::<Result<Vec<_>>>()?,
        );
    }
    pool.close().await;
    Ok(QueryResult { columns, rows: out })
}

/// A query result as an aligned table, CSV or JSON (an array of objects).
pub fn format_query(r: &QueryResult, format: QueryFormat) -> Result<String> {
    Ok(match format {
        QueryFormat::Table => {
            let right: Vec<bool> = (0..r.columns.len())
                .map(|i| {
                    !r.rows.is_empty()
                        && r.rows
                            .iter()
                            .all(|row| row[i].numeric() || row[i] == Cell::Null)
                })
                .collect();
            let rows: Vec<Vec<String>> = r
                .rows
                .iter()
                .map(|row| row.iter().map(Cell::display).collect())
                .collect();
            let mut s = format_text_table(&r.columns, &rows, &right);
            s.push_str(&format!(
                "({} row{})\n",
                r.rows.len(),
                if r.rows.len() == 1 { "" } else { "s" }
            ));
            s
        }
        QueryFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(&r.columns)?;
            for row in &r.rows {
                w.write_record(row.iter().map(Cell::csv))?;
            }
            String::from_utf8(w.into_inner().context("writing CSV")?)?
        }
        QueryFormat::Json => {
            let arr: Vec<Value> = r
                .rows
                .iter()
                .map(|row| {
                    Value::Object(
                        r.columns
                            .iter()
                            .cloned()
                            .zip(row.iter().map(Cell::json))
                            .collect(),
                    )
                })
                .collect();
            let mut s = serde_json::to_string_pretty(&arr)?;
            s.push('\n');
            s
        }
    })
}

/// `sweep query "SQL"`.
pub fn run_query(args: QueryArgs) -> Result<ExitCode> {
    let rt = crate::report::runtime()?;
    let r = rt.block_on(query(&args.db, &args.sql))?;
    print!("{}", format_query(&r, args.format)?);
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- export

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

/// Streams every metric row of the sweep's trials to `out` (no row cap, constant memory).
pub async fn export<W: Write>(
    db: &str,
    sweep: &str,
    format: ExportFormat,
    out: &mut W,
) -> Result<u64> {
    let pool = load::connect_read_only(db).await?;
    let info = load::load_sweep_info(&pool, sweep).await?;
    let mut stream = sqlx::query(
        "SELECT m.trial_id, t.hash, st.label_json, m.step, m.epoch, m.split, m.loss, m.ppl, \
         m.tokens_seen, m.lr, m.tokens_per_s, m.created_at \
         FROM metrics m JOIN sweep_trials st ON st.trial_id = m.trial_id JOIN trials t ON t.id = m.trial_id \
         WHERE st.sweep_id = $1 ORDER BY st.position, m.trial_id, m.split, m.step",
    )
    .bind(info.id)
    .fetch(&pool);
    let mut n = 0u64;
    let mut csvw = match format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(EXPORT_COLUMNS)?;
            out.write_all(&w.into_inner().context("writing CSV")?)?;
            Some(())
        }
        ExportFormat::Json => {
            out.write_all(b"[")?;
            None
        }
    };
    while let Some(row) = stream.try_next().await.context("reading metrics")? {
        let cells: Vec<Cell> = (0..12).map(|i| cell_of(&row, i)).collect::<Result<_>>()?;
        match csvw {
            Some(()) => {
                let mut w = csv::Writer::from_writer(Vec::new());
                let mut rec: Vec<String> = cells.iter().map(Cell::csv).collect();
                rec.push(info.name.clone());
                w.write_record(&rec)?;
                out.write_all(&w.into_inner().context("writing CSV")?)?;
            }
            None => {
                let mut o = Map::new();
                for (k, c) in EXPORT_COLUMNS.iter().zip(&cells) {
                    let v = if *k == "label" {
                        match c {
                            Cell::Text(t) => serde_json::from_str(t).unwrap_or(json!(t)),
                            other => other.json(),
                        }
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
    drop(stream);
    if csvw.take().is_none() {
        out.write_all(if n == 0 { b"]\n" } else { b"\n]\n" })?;
    }
    out.flush()?;
    pool.close().await;
    Ok(n)
}

/// `sweep export SWEEP --format csv|json > file`.
pub fn run_export(args: ExportArgs) -> Result<ExitCode> {
    let rt = crate::report::runtime()?;
    let stdout = std::io::stdout();
    let mut lock = std::io::BufWriter::new(stdout.lock());
    rt.block_on(export(&args.db, &args.sweep, args.format, &mut lock))?;
    lock.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::synth::{block_size_fixture, create_ledger, insert_sweep};

    fn ledger(dir: &std::path::Path) -> String {
        let path = dir.join("q.db");
        crate::report::runtime()
            .unwrap()
            .block_on(async {
                let pool = create_ledger(&path).await?;
                let (sweep, trials) = block_size_fixture("");
                insert_sweep(&pool, &sweep, &trials).await?;
                pool.close().await;
                anyhow::Ok(())
            })
            .unwrap();
        format!("sqlite://{}", path.display())
    }

    fn q(db: &str, sql: &str) -> Result<QueryResult> {
        crate::report::runtime().unwrap().block_on(query(db, sql))
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
            crate::report::runtime()
                .unwrap()
                .block_on(async {
                    let pool = load::connect_read_only(&db).await?;
                    load::load_sweep(&pool, "block_size").await
                })
                .unwrap()
        };
        let t = data::paper_table(&records);
        for (name, f) in [
            ("results_table", ResultsFormat::Table),
            ("results_markdown", ResultsFormat::Markdown),
            ("results_latex", ResultsFormat::Latex),
            ("results_csv", ResultsFormat::Csv),
            ("results_json", ResultsFormat::Json),
        ] {
            insta::assert_snapshot!(name, format_results(&t, f).unwrap());
        }
        let md = format_results(&t, ResultsFormat::Markdown).unwrap();
        assert!(md.starts_with(
            "| Model | Block Size | Train Loss | Valid Loss | Train PPL | Valid PPL |"
        ));
        assert!(md.contains("gpt2-tiny\\* | 512 | **3.9200 ± 0.0283**"));
    }

    #[test]
    fn export_streams_every_metric_row() {
        let dir = tempfile::tempdir().unwrap();
        let db = ledger(dir.path());
        let rt = crate::report::runtime().unwrap();
        let mut csv_out = Vec::new();
        let n = rt
            .block_on(export(&db, "block_size", ExportFormat::Csv, &mut csv_out))
            .unwrap();
        assert_eq!(n, 122);
        let text = String::from_utf8(csv_out).unwrap();
        assert_eq!(text.lines().count(), 123);
        assert!(text.starts_with("trial_id,trial_hash,label,step,epoch,split,loss,ppl,tokens_seen,lr,tokens_per_s,created_at,sweep\n"));
        let mut json_out = Vec::new();
        rt.block_on(export(&db, "block_size", ExportFormat::Json, &mut json_out))
            .unwrap();
        let v: Value = serde_json::from_slice(&json_out).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 122);
        assert_eq!(arr[0]["label"]["block_size"], 512);
        assert_eq!(arr[0]["sweep"], "block_size");
        let err = rt
            .block_on(export(&db, "missing", ExportFormat::Csv, &mut Vec::new()))
            .unwrap_err();
        assert!(format!("{err:#}").contains("known sweeps: block_size"));
    }
}
