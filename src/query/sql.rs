//! `sweep query`: arbitrary read-only SQL over the ledger, as a table, CSV or JSON.

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sqlx::{Column, Row};

use super::{format_text_table, QueryFormat};
use crate::error::UsageError;
use crate::store::ReadOnlySql;

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
    pub(super) fn csv(&self) -> String {
        match self {
            Cell::Null => String::new(),
            other => other.display(),
        }
    }
    pub(super) fn json(&self) -> Value {
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
pub fn query(db: &str, sql: &str) -> Result<QueryResult> {
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
    let ledger = ReadOnlySql::open(db)?;
    let rows = match ledger.fetch_all(sql) {
        Ok(rows) => rows,
        Err(e) => {
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
        None => ledger.columns(sql),
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(
            (0..r.columns().len())
                .map(|i| cell_of(r, i))
                .collect::<Result<Vec<_>>>()?,
        );
    }
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
